#include "common/metrics.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sluice {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(MetricsTest, RendersPrometheusText) {
  MetricsRegistry reg;
  auto c = reg.AddCounter("sluice_records_in_total", "Records in", {{"task", "a\"b"}}, "t1");
  c->Add(5);
  c->Add();
  reg.AddCallbackGauge("sluice_up", "Up", {}, [] { return 1.0; });
  std::string text = reg.RenderPrometheus();
  EXPECT_THAT(text, HasSubstr("# TYPE sluice_records_in_total counter\n"));
  EXPECT_THAT(text, HasSubstr("sluice_records_in_total{task=\"a\\\"b\"} 6\n"));
  EXPECT_THAT(text, HasSubstr("sluice_up 1\n"));
  auto g = reg.AddGauge("sluice_watermark_ms", "Watermark", {}, "t1");
  g->Set(1714557600123.0);
  auto h = reg.AddGauge("sluice_ratio", "Ratio", {}, "t1");
  h->Set(0.25);
  text = reg.RenderPrometheus();
  EXPECT_THAT(text, HasSubstr("sluice_watermark_ms 1714557600123\n")) << "milliseconds in full";
  EXPECT_THAT(text, HasSubstr("sluice_ratio 0.25\n"));
  reg.RemoveOwner("t1");
  EXPECT_THAT(reg.RenderPrometheus(), Not(HasSubstr("sluice_records_in_total")));
}

}  // namespace
}  // namespace sluice
