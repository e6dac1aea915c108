// Unit test of regex_extract against the SDK's fake host. Exits 0 when every check passes.
#include <cstdio>
#include <string>
#include <vector>

#include "sluice/testing.h"

extern "C" const sluice_plugin* sluice_plugin_init_v1(sluice_error* error);

namespace {

int failures = 0;

void Check(bool ok, const std::string& what) {
  if (!ok) {
    std::fprintf(stderr, "FAILED: %s\n", what.c_str());
    ++failures;
  }
}

sluice::sdk::testing::HarnessOptions Options(const std::string& json) {
  sluice::sdk::testing::HarnessOptions o;
  o.type = "regex_extract";
  o.options_json = json;
  o.input = {{"email", sluice::sdk::FieldType::kString}, {"n", sluice::sdk::FieldType::kInt64}};
  return o;
}

}  // namespace

int main() {
  {
    sluice::sdk::testing::Harness h(&sluice_plugin_init_v1,
                                    Options(R"({"field":"email","pattern":"@(.+)$","as":"domain","default":"-"})"));
    Check(h.Open().ok(), "open");
    Check(h.ProcessBatch({{"ann@example.com", 1}, {"nobody", 2}, {"bo@x.org", 3}}).ok(), "process");
    std::vector<std::string> want = {R"({"email":"ann@example.com","n":1,"domain":"example.com"})",
                                     R"({"email":"nobody","n":2,"domain":"-"})",
                                     R"({"email":"bo@x.org","n":3,"domain":"x.org"})"};
    Check(h.output() == want, "extracted domains");
    Check(h.CounterValue("unmatched") == 1, "unmatched counter");
  }
  {
    sluice::sdk::testing::Harness h(&sluice_plugin_init_v1,
                                    Options(R"({"field":"email","pattern":"(","as":"domain"})"));
    sluice::sdk::Status s = h.Validate();
    Check(!s.ok() && s.message().rfind("option 'pattern' is not a valid regular expression: ", 0) == 0,
          "bad pattern refused: " + s.message());
  }
  {
    sluice::sdk::testing::Harness h(&sluice_plugin_init_v1,
                                    Options(R"({"field":"email","pattern":"@(.+)$","as":"domain","group":2})"));
    sluice::sdk::Status s = h.Validate();
    Check(s.message() == "option 'group' is 2 but the pattern has 1 groups", "bad group refused: " + s.message());
  }
  if (failures == 0) std::printf("regex_extract_test: all checks passed\n");
  return failures == 0 ? 0 : 1;
}
