#include "plan/operator_type.h"

#include <memory>
#include <string>

#include "common/status.h"
#include "common/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "plan/job_spec.h"
#include "plan/option_parsing.h"

namespace sluice::plan {
namespace {

using ::sluice::testing::StatusIs;

// A catalog of made-up types: the planner knows operator types only through it.
struct GenOptions final : OptionsOf<GenOptions> {
  int64_t n = 7;  // default
};
struct JoinOptions final : OptionsOf<JoinOptions> {
  std::string on;
};

OperatorTypeCatalog TestTypes() {
  OperatorTypeCatalog c;
  OperatorTraits gen;
  gen.name = "gen";
  gen.inputs = InputArity::kSource;
  gen.option_keys = {"n"};
  EXPECT_OK(c.Add(std::make_unique<TypedOperatorType<GenOptions>>(
      gen,
      [](const YAML::Node& config, const ParseContext& ctx) -> absl::StatusOr<GenOptions> {
        GenOptions o;
        SLUICE_ASSIGN_OR_RETURN(o.n, GetInt(ctx.errors(), config, "n", o.n, 1, 100));
        return o;
      },
      [](const GenOptions&, const ParseContext&) { return Schema({{"x", FieldType::kInt64}}); })));
  OperatorTraits gen2 = gen;
  gen2.name = "gen_double";
  EXPECT_OK(c.Add(std::make_unique<TypedOperatorType<GenOptions>>(
      gen2, [](const YAML::Node&, const ParseContext&) -> absl::StatusOr<GenOptions> { return GenOptions(); },
      [](const GenOptions&, const ParseContext&) { return Schema({{"y", FieldType::kDouble}}); })));
  OperatorTraits join;
  join.name = "join";
  join.inputs = InputArity::kTwo;
  join.option_keys = {"on"};
  EXPECT_OK(c.Add(std::make_unique<TypedOperatorType<JoinOptions>>(
      join,
      [](const YAML::Node& config, const ParseContext& ctx) -> absl::StatusOr<JoinOptions> {
        JoinOptions o;
        SLUICE_ASSIGN_OR_RETURN(o.on, GetString(ctx.errors(), config, "on", true));
        return o;
      },
      // Both inputs' fields: the inputs' schemas may differ.
      [](const JoinOptions&, const ParseContext& ctx) {
        std::vector<Field> f = ctx.producer(0).output_schema.fields();
        for (const Field& g : ctx.producer(1).output_schema.fields()) f.push_back(g);
        return Schema(std::move(f));
      })));
  OperatorTraits sink;
  sink.name = "out";
  sink.inputs = InputArity::kMany;
  sink.has_output = false;
  EXPECT_OK(c.Add(std::make_unique<TypedOperatorType<NoOptions>>(
      sink, [](const YAML::Node&, const ParseContext&) -> absl::StatusOr<NoOptions> { return NoOptions(); },
      [](const NoOptions&, const ParseContext&) { return Schema(); })));
  return c;
}

TEST(OperatorTypeCatalogTest, ListsSourcesTransformationsSinksAndRefusesDuplicates) {
  OperatorTypeCatalog c = TestTypes();
  EXPECT_EQ(c.KnownTypes(), "gen, gen_double, join, out");
  EXPECT_EQ(c.size(), 4u);
  EXPECT_EQ(c.Find("nope"), nullptr);
  ASSERT_NE(c.Find("join"), nullptr);
  EXPECT_EQ(c.Find("join")->min_inputs(), 2);
  EXPECT_EQ(c.Find("join")->max_inputs(), 2);
  EXPECT_EQ(c.Find("out")->min_inputs(), 1);
  EXPECT_EQ(c.Find("out")->max_inputs(), kMaxInputs);
  OperatorTraits dup;
  dup.name = "join";
  EXPECT_THAT(c.Add(std::make_unique<TypedOperatorType<NoOptions>>(
                  dup, [](const YAML::Node&, const ParseContext&) -> absl::StatusOr<NoOptions> { return NoOptions(); },
                  [](const NoOptions&, const ParseContext&) { return Schema(); })),
              StatusIs(absl::StatusCode::kAlreadyExists, "operator type 'join' already registered"));
}

TEST(OperatorTypeCatalogTest, ParseJobSpecUsesTheCatalog) {
  OperatorTypeCatalog c = TestTypes();
  auto job = ParseJobSpec(R"(operators:
  - {id: a, type: gen, n: 3}
  - {id: b, type: gen_double}
  - {id: j, type: join, inputs: [a, b], on: x}
  - {id: o, type: out}
)", "t.yaml", c);
  ASSERT_OK(job);
  const OperatorSpec& a = job->operators[0];
  EXPECT_TRUE(a.is_source());
  ASSERT_NE(a.options_as<GenOptions>(), nullptr);
  EXPECT_EQ(a.options_as<GenOptions>()->n, 3);
  EXPECT_EQ(a.options_as<JoinOptions>(), nullptr);  // typed access checks the type
  EXPECT_EQ(job->operators[1].options_as<GenOptions>()->n, 7);  // the struct's default
  const OperatorSpec& j = job->operators[2];
  EXPECT_EQ(j.arity, InputArity::kTwo);
  EXPECT_EQ(j.options_as<JoinOptions>()->on, "x");
  EXPECT_EQ(j.output_schema.ToString(), "(x int64, y double)");
  EXPECT_TRUE(job->operators[3].is_sink());

  EXPECT_THAT(ParseJobSpec("operators:\n  - {id: a, type: gen, n: 0}\n  - {id: o, type: out}\n", "t.yaml", c).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "t.yaml:2:27: 'n' must be between 1 and 100, got 0"));
  EXPECT_THAT(ParseJobSpec("operators:\n  - {id: a, type: gen}\n  - {id: j, type: join, inputs: [a], on: x}\n"
                           "  - {id: o, type: out}\n", "t.yaml", c).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "t.yaml:3:5: join operator 'j' takes 2 input(s), got 1"));
  EXPECT_THAT(ParseJobSpec("operators:\n  - {id: a, type: filter}\n", "t.yaml", c).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "t.yaml:2:19: unknown operator type 'filter' (known: gen, gen_double, join, out)"));
}

// Several inputs of one schema (kMany) is checked for every such type, sinks included.
TEST(OperatorTypeCatalogTest, ManyInputsMustShareTheSchema) {
  OperatorTypeCatalog c = TestTypes();
  EXPECT_THAT(ParseJobSpec("operators:\n  - {id: a, type: gen}\n  - {id: b, type: gen_double}\n"
                           "  - {id: o, type: out, inputs: [a, b]}\n", "t.yaml", c).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "t.yaml:4:36: out inputs must have the same schema: 'b' has (y double), 'a' has (x int64)"));
}

}  // namespace
}  // namespace sluice::plan
