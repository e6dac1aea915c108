// Unit test of enrich against the SDK's fake host. Exits 0 when every check passes.
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

// Input 0: payments (user, amount); input 1: tier changes (name, tier, limit), keyed by user /
// name.
HarnessOptions Options(const std::string& json) {
  HarnessOptions o;
  o.type = "enrich";
  o.options_json = json;
  o.input = {{"user", FieldType::kString}, {"amount", FieldType::kInt64}};
  o.key = {"user"};
  o.input2 = {
      {"name", FieldType::kString}, {"tier", FieldType::kString}, {"limit", FieldType::kDouble}};
  o.key2 = {"name"};
  return o;
}

}  // namespace

int main() {
  {  // The latest tier per key, written by input 1, read by input 0.
    Harness h(&sluice_plugin_init_v1, Options(R"({"field":"tier","default":"none"})"));
    Check(h.Open().ok(), "open");
    Check(h.Process(0, {"ann", 10}).ok(), "event before any tier");
    Check(h.ProcessBatch(1, {{"ann", "gold", 1.5}, {"bob", "silver", 2.0}}).ok(), "tiers");
    Check(h.ProcessBatch(0, {{"ann", 20}, {"bob", 30}, {"cid", 40}}).ok(), "events");
    Check(h.Process(1, {"ann", "platinum", 9.0}).ok(), "ann's tier changes");
    Check(h.Process(0, {"ann", 50}).ok(), "event after the change");
    CheckOutput(h,
                {R"({"user":"ann","amount":10,"tier":"none"})",
                 R"({"user":"ann","amount":20,"tier":"gold"})",
                 R"({"user":"bob","amount":30,"tier":"silver"})",
                 R"({"user":"cid","amount":40,"tier":"none"})",
                 R"({"user":"ann","amount":50,"tier":"platinum"})"},
                "enriched events");
    Check(h.CounterValue("enriched") == 3 && h.CounterValue("missing") == 2, "counters");
    Check(h.output_schema().size() == 3 && h.output_schema()[2].name == "tier" &&
              h.output_schema()[2].type == FieldType::kString,
          "output schema: input 0's fields, then tier");
  }
  {  // A double field under another name; events without a value dropped.
    Harness h(&sluice_plugin_init_v1,
              Options(R"({"field":"limit","as":"max","on_missing":"drop"})"));
    Check(h.Open().ok(), "open 2");
    Check(h.Process(0, {"ann", 1}).ok() && h.Process(1, {"ann", "gold", 2.5}).ok() &&
              h.Process(0, {"ann", 2}).ok(),
          "process 2");
    CheckOutput(h, {R"({"user":"ann","amount":2,"max":2.5})"}, "double value, missing dropped");
  }
  {  // TTL: the stored value expires (processing time).
    HarnessOptions o = Options(R"({"field":"tier","ttl_ms":100})");
    o.processing_time_ms = 0;
    Harness h(&sluice_plugin_init_v1, o);
    Check(h.Open().ok(), "open 3");
    Check(h.Process(1, {"ann", "gold", 0.0}).ok() && h.Process(0, {"ann", 1}).ok(), "process 3");
    Check(h.AdvanceProcessingTime(100).ok() && h.Process(0, {"ann", 2}).ok(), "after ttl");
    CheckOutput(
        h, {R"({"user":"ann","amount":1,"tier":"gold"})", R"({"user":"ann","amount":2,"tier":""})"},
        "value expired");
  }
  {  // Submission-time checks.
    Harness a(&sluice_plugin_init_v1, Options(R"({"field":"tier","on_missing":"skip"})"));
    Check(a.Validate().message() == "option 'on_missing' must be default or drop, got 'skip'",
          "on_missing checked");
    Harness b(&sluice_plugin_init_v1, Options(R"({"field":"nope"})"));
    Check(b.Open().message() == "input 1 has no field 'nope'", "field checked");
    Harness c(&sluice_plugin_init_v1, Options(R"({"field":"tier","as":"amount"})"));
    Check(c.Open().message() ==
              "input 0 already has a field 'amount' (choose another name with 'as')",
          "as checked");
    Harness d(&sluice_plugin_init_v1, Options(R"({"field":"limit","default":"x"})"));
    Check(d.Open().message() == "option 'default' is for a string field; 'limit' is double",
          "default checked");
  }
  if (failures == 0) std::printf("enrich_test: all checks passed\n");
  return failures == 0 ? 0 : 1;
}
