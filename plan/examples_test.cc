// Every job under examples/ plans (with ${...} variables set to placeholders).

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "common/status_matchers.h"
#include "gtest/gtest.h"
#include "plan/job_spec.h"
#include "plan/test_catalog.h"
#include "plan/variables.h"

namespace sluice::plan {
namespace {

TEST(ExamplesTest, EveryExampleJobPlans) {
  int checked = 0;
  for (const auto& entry : std::filesystem::directory_iterator(SLUICE_EXAMPLES_DIR)) {
    if (entry.path().extension() != ".yaml") continue;
    SCOPED_TRACE(entry.path().string());
    std::ifstream in(entry.path());
    std::stringstream text;
    text << in.rdbuf();
    auto expanded = ExpandVariables(text.str(), entry.path().filename().string(),
                                    [](const std::string&) { return std::string("localhost:9092"); });
    ASSERT_OK(expanded);
    auto job = ParseJobSpec(*expanded, entry.path().filename().string(), TestCatalog());
    EXPECT_OK(job);
    ++checked;
  }
  EXPECT_GE(checked, 5);
}

}  // namespace
}  // namespace sluice::plan
