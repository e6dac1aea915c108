#include "cli/bench_nexmark.h"
#include "bench/bench_util.h"

#include <sstream>

#include "common/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sluice::cli {
namespace {

using ::sluice::testing::StatusIs;
using ::testing::HasSubstr;

// Refusals come before any cluster is started.
// The benchmarks' medians (bench/bench_util.h): the middle value, the mean of the two middle
// values of an even count.
TEST(BenchUtilTest, MedianOfAnEvenCountIsTheMeanOfTheMiddles) {
  EXPECT_EQ(bench::Median({}), 0);
  EXPECT_EQ(bench::Median({3}), 3);
  EXPECT_EQ(bench::Median({9, 1, 5}), 5);
  EXPECT_EQ(bench::Median({4, 1, 10, 2}), 3);
  EXPECT_EQ(bench::Median({2, 1}), 1.5);
}

TEST(BenchNexmarkTest, RefusesUnknownQueriesAndMissingJobFiles) {
  std::ostringstream out;
  NexmarkBenchOptions o;
  o.queries = {"q0", "q6"};
  EXPECT_THAT(RunNexmarkBench(o, out),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("unknown Nexmark query 'q6' (known: q0, q1, q2, q3, q4, q5, q7, q8, q11, q14, q20, q21, q22)")));
  o.queries = {"q0"};
  o.job_dir = ::testing::TempDir() + "/no-such-dir";
  EXPECT_THAT(RunNexmarkBench(o, out), StatusIs(absl::StatusCode::kNotFound, HasSubstr("no-such-dir/q0.yaml")));
  o.job_dir.clear();
  o.events = 0;
  EXPECT_THAT(RunNexmarkBench(o, out), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--events")));
  EXPECT_TRUE(out.str().empty());
}

}  // namespace
}  // namespace sluice::cli
