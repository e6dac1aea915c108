// Unit test of dedup against the SDK's fake host. Exits 0 when every check passes.
#include <cstdio>
#include <string>
#include <vector>

#include "sluice/testing.h"

extern "C" const sluice_plugin* sluice_plugin_init_v1(sluice_error* error);

namespace {

using sluice::sdk::FieldType;
using sluice::sdk::testing::Harness;
using sluice::sdk::testing::HarnessOptions;

int failures = 0;

void Check(bool ok, const std::string& what) {
  if (!ok) {
    std::fprintf(stderr, "FAILED: %s\n", what.c_str());
    ++failures;
  }
}

std::string Join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += x + "\n";
  return s;
}

void CheckOutput(const Harness& h, const std::vector<std::string>& want, const std::string& what) {
  Check(h.output() == want, what + ": got\n" + Join(h.output()) + "want\n" + Join(want));
}

HarnessOptions Options(const std::string& json) {
  HarnessOptions o;
  o.type = "dedup";
  o.options_json = json;
  o.input = {
      {"id", FieldType::kString}, {"ts", FieldType::kTimestamp}, {"amount", FieldType::kInt64}};
  o.key = {"id"};
  return o;
}

}  // namespace

int main() {
  {  // Repeats within the bound are dropped; the timer clears the key at the window's end.
    Harness h(&sluice_plugin_init_v1, Options(R"({"time_field":"ts","within_ms":100})"));
    Check(h.Open().ok(), "open");
    Check(h.ProcessBatch({{"p1", 1000, 5}, {"p2", 1010, 7}, {"p1", 1050, 5}, {"p1", 1099, 5}}).ok(),
          "process");
    CheckOutput(h, {R"({"id":"p1","ts":1000,"amount":5})", R"({"id":"p2","ts":1010,"amount":7})"},
                "first of each key passes");
    Check(h.PendingTimers() ==
              std::vector<std::string>{R"(event@1100 {"id":"p1"})", R"(event@1110 {"id":"p2"})"},
          "one timer per key at the window's end: " + Join(h.PendingTimers()));
    Check(h.AdvanceWatermark(1100).ok(), "watermark 1100");
    Check(h.PendingTimers() == std::vector<std::string>{R"(event@1110 {"id":"p2"})"},
          "p1's timer fired");
    // p1's state is gone: a late repeat (event time still inside the old window) passes again;
    // p2's window is open until 1110.
    Check(h.ProcessBatch({{"p1", 1060, 5}, {"p2", 1109, 7}}).ok(), "process after watermark");
    CheckOutput(h,
                {R"({"id":"p1","ts":1000,"amount":5})", R"({"id":"p2","ts":1010,"amount":7})",
                 R"({"id":"p1","ts":1060,"amount":5})"},
                "cleared key passes, open window still drops");
    Check(h.CounterValue("passed") == 3 && h.CounterValue("duplicates") == 3, "counters");
    Check(h.watermarks() == std::vector<int64_t>{1100}, "watermark forwarded");
  }
  {  // An event past the window before the watermark got there opens a new window and moves the
     // timer.
    Harness h(&sluice_plugin_init_v1, Options(R"({"time_field":"ts","within_ms":100})"));
    Check(h.Open().ok(), "open 2");
    Check(h.ProcessBatch({{"a", 0, 1}, {"a", 150, 2}, {"a", 200, 3}, {"a", 250, 4}}).ok(),
          "process 2");
    CheckOutput(h,
                {R"({"id":"a","ts":0,"amount":1})", R"({"id":"a","ts":150,"amount":2})",
                 R"({"id":"a","ts":250,"amount":4})"},
                "windows restart after within_ms");
    Check(h.PendingTimers() == std::vector<std::string>{R"(event@350 {"id":"a"})"},
          "only the latest window's timer");
  }
  {  // TTL: with the watermark stalled, the state still expires in processing time.
    HarnessOptions o = Options(R"({"time_field":"ts","within_ms":100000,"ttl_ms":50})");
    o.processing_time_ms = 0;
    Harness h(&sluice_plugin_init_v1, o);
    Check(h.Open().ok(), "open 3");
    Check(h.Process({"k", 10, 1}).ok() && h.Process({"k", 20, 2}).ok(), "process 3");
    Check(h.AdvanceProcessingTime(50).ok(), "clock");
    Check(h.Process({"k", 30, 3}).ok(), "process after ttl");
    CheckOutput(h, {R"({"id":"k","ts":10,"amount":1})", R"({"id":"k","ts":30,"amount":3})"},
                "ttl expired the state");
    // The first window's timer must not clear the second window's state.
    Check(h.AdvanceWatermark(100010).ok() && h.Process({"k", 40, 4}).ok(), "old timer fires");
    Check(h.output().size() == 2, "the second window still drops after the first window's timer");
    Check(h.AdvanceWatermark(100030).ok() && h.Process({"k", 50, 5}).ok(), "second timer fires");
    Check(h.output().size() == 3, "cleared by its own timer");
  }
  {  // Options are checked at submission.
    Harness h(&sluice_plugin_init_v1, Options(R"({"time_field":"ts","within_ms":0})"));
    Check(h.Validate().message() == "option 'within_ms' must be positive, got 0",
          "within_ms checked");
    Harness h2(&sluice_plugin_init_v1, Options(R"({"time_field":"ts"})"));
    Check(h2.Validate().message() == "missing required option 'within_ms'", "within_ms required");
    Harness h3(&sluice_plugin_init_v1, Options(R"({"time_field":"id","within_ms":5})"));
    std::string m = h3.Open().message();
    Check(m == "option 'time_field': the input has no timestamp or int64 field 'id'",
          "time field type checked: " + m);
  }
  if (failures == 0) std::printf("dedup_test: all checks passed\n");
  return failures == 0 ? 0 : 1;
}
