// Unit test of the percentile aggregate functions through the SDK's AggregateTester (the C ABI,
// as a window drives them). Exits 0 when every check passes.
#include <cstdio>
#include <string>

#include "sluice/testing.h"

extern "C" const sluice_plugin* sluice_plugin_init_v1(sluice_error* error);

namespace {

using sluice::sdk::FieldType;
using sluice::sdk::testing::AggregateTester;

int failures = 0;

void Check(bool ok, const std::string& what) {
  if (!ok) {
    std::fprintf(stderr, "FAILED: %s\n", what.c_str());
    ++failures;
  }
}

std::string ResultOf(AggregateTester& t, const std::string& acc) {
  std::string json;
  sluice::sdk::Status s = t.Result(acc, &json);
  return s.ok() ? json : "error: " + s.message();
}

}  // namespace

int main() {
  {  // p90 of 1..10 is 9 (rank ceil(0.9 * 10) = 9), whatever the order; median of 1..10 is 5.
    AggregateTester p90(&sluice_plugin_init_v1, "p90", FieldType::kInt64);
    AggregateTester median(&sluice_plugin_init_v1, "median", FieldType::kInt64);
    std::string a, m;
    Check(p90.Create(&a).ok() && median.Create(&m).ok(), "create");
    Check(ResultOf(p90, a) == "null", "no values: null");
    for (int v : {7, 3, 10, 1, 9, 2, 8, 4, 6, 5}) Check(p90.Add(&a, v).ok() && median.Add(&m, v).ok(), "add");
    Check(ResultOf(p90, a) == "9", "p90 of 1..10: " + ResultOf(p90, a));
    Check(ResultOf(median, m) == "5", "median of 1..10: " + ResultOf(median, m));
  }
  {  // Merging two accumulators (session windows) gives the result of all their values.
    AggregateTester p90(&sluice_plugin_init_v1, "p90", FieldType::kDouble);
    std::string a, b;
    Check(p90.Create(&a).ok() && p90.Create(&b).ok(), "create");
    for (double v : {0.5, 2.5}) Check(p90.Add(&a, v).ok(), "add a");
    for (double v : {1.5, -1.0, 4.25}) Check(p90.Add(&b, v).ok(), "add b");
    Check(p90.Merge(&a, b).ok(), "merge");
    Check(ResultOf(p90, a) == "4.25", "p90 of five doubles: " + ResultOf(p90, a));
  }
  {  // A string field is refused with the reason (the job is refused at submission).
    AggregateTester p90(&sluice_plugin_init_v1, "p90", FieldType::kString);
    FieldType out;
    sluice::sdk::Status s = p90.ResultType(&out);
    Check(!s.ok() && s.message() == "a percentile needs an int64, timestamp or double field, not string",
          "string refused: " + s.message());
  }
  if (failures == 0) std::printf("percentile_test: all checks passed\n");
  return failures == 0 ? 0 : 1;
}
