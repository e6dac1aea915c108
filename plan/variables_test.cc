#include "plan/variables.h"

#include <map>

#include "common/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sluice::plan {
namespace {

using ::sluice::testing::StatusIs;
using ::testing::HasSubstr;

std::optional<std::string> Lookup(const std::string& name) {
  static const std::map<std::string, std::string> vars = {{"KAFKA", "127.0.0.1:9092"}, {"EMPTY", ""}};
  auto it = vars.find(name);
  if (it == vars.end()) return std::nullopt;
  return it->second;
}

TEST(ExpandVariablesTest, ReplacesSetVariablesAndDefaults) {
  auto r = ExpandVariables("a: ${KAFKA}\nb: '${EMPTY}'\nc: ${MISSING:-x:y}\nd: $$5 $x\n", "job.yaml", Lookup);
  ASSERT_OK(r);
  EXPECT_EQ(*r, "a: 127.0.0.1:9092\nb: ''\nc: x:y\nd: $5 $x\n");
}

TEST(ExpandVariablesTest, UnsetVariableNamesLineAndColumn) {
  EXPECT_THAT(ExpandVariables("name: x\nops:\n  bootstrap: ${NOPE}\n", "job.yaml", Lookup),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("job.yaml:3:14: variable NOPE is not set (export it, or write ${NOPE:-default})")));
  EXPECT_THAT(ExpandVariables("a: ${KAFKA\nb: }\n", "job.yaml", Lookup),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("job.yaml:1:4: unterminated ${")));
  EXPECT_THAT(ExpandVariables("a: ${K-1}\n", "job.yaml", Lookup),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("job.yaml:1:4: bad variable name 'K-1'")));
}

}  // namespace
}  // namespace sluice::plan
