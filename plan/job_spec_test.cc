#include "plan/job_spec.h"

#include <string>
#include <vector>

#include "absl/strings/str_replace.h"
#include "common/error_text.h"
#include "common/key_groups.h"
#include "common/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "connectors/kafka_source_options.h"
#include "operators/file_sink_options.h"
#include "operators/datagen_options.h"
#include "plan/test_catalog.h"

namespace sluice::plan {
namespace {

using ::sluice::testing::StatusIs;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;

// The YAML literals below start on the line of `R"y(`, so line 1 of the file is the text
// right after the opening parenthesis.

absl::StatusOr<JobSpec> Parse(absl::string_view yaml, int parallelism_override = 0) {
  return ParseJobSpec(yaml, "job.yaml", TestCatalog(), parallelism_override);
}

absl::Status ParseStatus(absl::string_view yaml, int parallelism_override = 0) {
  return ParseJobSpec(yaml, "job.yaml", TestCatalog(), parallelism_override).status();
}

// Matches a kInvalidArgument whose message starts with `prefix` (e.g. "job.yaml:3:5: ") and
// contains `reason`.
::testing::Matcher<absl::Status> IsJobError(const std::string& prefix,
                                                       const std::string& reason) {
  return StatusIs(absl::StatusCode::kInvalidArgument, AllOf(StartsWith(prefix), HasSubstr(reason)));
}

const OperatorSpec& Op(const JobSpec& job, absl::string_view id) {
  for (const auto& op : job.operators) {
    if (op.id == id) return op;
  }
  ADD_FAILURE() << "no operator " << id;
  static const OperatorSpec* kNone = new OperatorSpec();
  return *kNone;
}

std::vector<std::string> Ids(const JobSpec& job) {
  std::vector<std::string> ids;
  for (const auto& op : job.operators) ids.push_back(op.id);
  return ids;
}

// ---------------------------------------------------------------------------------------------
// Valid jobs

constexpr char kLinearJob[] = R"y(name: linear
parallelism: 2
operators:
  - id: gen
    type: datagen
    count: 100
    rate: 50
    fields:
      - {name: id, type: int64, expr: seq}
      - {name: user, type: string, expr: "'u' + to_string(seq % 3)"}
      - {name: amount, type: double, expr: seq * 1.5}
  - id: big
    type: filter
    where: amount > 10
  - id: by_user
    type: key_by
    key: user
  - id: totals
    type: aggregate
    aggregates:
      - {fn: count}
      - {fn: sum, field: id}
      - {fn: avg, field: amount, as: avg_amount}
  - id: out
    type: file
    path: /tmp/sluice-out
)y";

TEST(JobSpecTest, LinearPipeline) {
  auto job = Parse(kLinearJob);
  ASSERT_OK(job);
  EXPECT_EQ(job->name, "linear");
  EXPECT_EQ(job->source_name, "job.yaml");
  EXPECT_EQ(job->parallelism, 2);
  EXPECT_EQ(job->max_parallelism, kDefaultMaxParallelism);
  EXPECT_EQ(job->buffer_timeout_ms, 10);
  ASSERT_THAT(Ids(*job), ElementsAre("gen", "big", "by_user", "totals", "out"));

  const auto& ops = job->operators;
  EXPECT_EQ(ops[0].type, "datagen");
  EXPECT_TRUE(ops[0].is_source());
  EXPECT_EQ(ops[1].type, "filter");
  EXPECT_EQ(ops[2].type, "key_by");
  EXPECT_TRUE(ops[2].keys_output);
  EXPECT_EQ(ops[3].type, "aggregate");
  EXPECT_TRUE(ops[3].keyed);
  EXPECT_EQ(ops[4].type, "file");
  EXPECT_TRUE(ops[4].is_sink());
  EXPECT_FALSE(ops[1].is_source() || ops[1].is_sink() || ops[1].keyed || ops[1].keys_output);
  for (size_t i = 0; i < ops.size(); ++i) {
    EXPECT_EQ(ops[i].index, static_cast<int>(i));
    EXPECT_EQ(ops[i].parallelism, 2) << ops[i].id;
  }
  EXPECT_TRUE(ops[0].is_source());
  EXPECT_FALSE(ops[0].is_sink());
  EXPECT_TRUE(ops[4].is_sink());
  EXPECT_FALSE(ops[4].is_source());

  // Positions of the operators: the mapping starts at the "id" key.
  EXPECT_EQ(ops[0].line, 4);
  EXPECT_EQ(ops[0].column, 5);
  EXPECT_EQ(ops[1].line, 12);
  EXPECT_EQ(ops[4].line, 24);

  // The datagen's schema comes from its fields; it has no input.
  EXPECT_TRUE(ops[0].inputs.empty());
  EXPECT_EQ(ops[0].input_schema.size(), 0u);
  const Schema gen_schema({{"id", FieldType::kInt64},
                           {"user", FieldType::kString},
                           {"amount", FieldType::kDouble}});
  EXPECT_EQ(ops[0].output_schema, gen_schema);

  // Each operator reads from the previous one by default, forward when the parallelism is equal.
  ASSERT_EQ(ops[1].inputs.size(), 1u);
  EXPECT_EQ(ops[1].inputs[0].from, "gen");
  EXPECT_EQ(ops[1].inputs[0].from_index, 0);
  EXPECT_EQ(ops[1].inputs[0].partition, Partition::kForward);
  EXPECT_FALSE(ops[1].inputs[0].explicit_partition);
  EXPECT_EQ(ops[1].input_schema, gen_schema);
  EXPECT_EQ(ops[1].output_schema, gen_schema);

  ASSERT_EQ(ops[2].key.size(), 1u);
  EXPECT_EQ(ops[2].key[0].name, "user");
  EXPECT_EQ(ops[2].key[0].expr, "user");
  EXPECT_EQ(ops[2].output_schema, gen_schema);

  // After a key_by the edge is hash-partitioned by its key.
  ASSERT_EQ(ops[3].inputs.size(), 1u);
  EXPECT_EQ(ops[3].inputs[0].from, "by_user");
  EXPECT_EQ(ops[3].inputs[0].partition, Partition::kHash);
  ASSERT_EQ(ops[3].inputs[0].key.size(), 1u);
  EXPECT_EQ(ops[3].inputs[0].key[0].expr, "user");
  ASSERT_EQ(ops[3].key.size(), 1u);
  EXPECT_EQ(ops[3].key[0].name, "user");
  EXPECT_EQ(ops[3].output_schema, Schema({{"user", FieldType::kString},
                                          {"count", FieldType::kInt64},
                                          {"sum_id", FieldType::kInt64},
                                          {"avg_amount", FieldType::kDouble}}));

  EXPECT_EQ(ops[4].inputs[0].from, "totals");
  EXPECT_EQ(ops[4].input_schema, ops[3].output_schema);
  EXPECT_EQ(ops[4].output_schema.size(), 0u);
  // Options are parsed once, here, into each type's options struct.
  ASSERT_NE(ops[4].options_as<ops::FileSinkOptions>(), nullptr);
  EXPECT_EQ(ops[4].options_as<ops::FileSinkOptions>()->path, "/tmp/sluice-out");
  EXPECT_EQ(ops[4].options_as<ops::DatagenOptions>(), nullptr);  // checked by type
  ASSERT_NE(ops[0].options_as<ops::DatagenOptions>(), nullptr);
  EXPECT_EQ(ops[0].options_as<ops::DatagenOptions>()->count, 100);
  EXPECT_EQ(ops[0].options_as<ops::DatagenOptions>()->rate, 50);
}

TEST(JobSpecTest, JobLevelOptions) {
  auto job = Parse(R"y(name: opts
parallelism: 3
max_parallelism: 16
buffer_timeout_ms: 250
operators:
  - {id: gen, type: datagen, fields: [{name: x, type: int, expr: seq}]}
  - {id: out, type: blackhole, max_rate: 100}
)y");
  ASSERT_OK(job);
  EXPECT_EQ(job->parallelism, 3);
  EXPECT_EQ(job->max_parallelism, 16);
  EXPECT_EQ(job->buffer_timeout_ms, 250);
  EXPECT_EQ(Op(*job, "out").type, "blackhole");
}

TEST(JobSpecTest, NameDefaultsToUnnamed) {
  auto job = Parse(R"y(operators:
  - {id: gen, type: datagen, fields: [{name: x, type: int64, expr: seq}]}
  - {id: out, type: print}
)y");
  ASSERT_OK(job);
  EXPECT_EQ(job->name, "unnamed");
  EXPECT_EQ(job->parallelism, 1);
  EXPECT_EQ(Op(*job, "out").type, "print");
}

TEST(JobSpecTest, ExplicitInputsWithPartitions) {
  auto job = Parse(R"y(parallelism: 2
operators:
  - id: gen
    type: datagen
    parallelism: 1
    fields:
      - {name: k, type: int64, expr: seq % 10}
      - {name: v, type: double, expr: seq}
  - id: counts
    type: aggregate
    input: {from: gen, partition: hash, key: k}
    aggregates: [{fn: count}, {fn: min, field: v}, {fn: max, field: k}]
  - id: spread
    type: map
    input: {from: counts, partition: rebalance}
    fields: [k, count]
  - id: everywhere
    type: blackhole
    inputs:
      - {from: spread, partition: broadcast}
  - id: bucketed
    type: print
    inputs:
      - from: gen
        partition: hash
        key:
          - {name: bucket, expr: k % 4}
          - v
)y");
  ASSERT_OK(job);
  const auto& gen = Op(*job, "gen");
  EXPECT_EQ(gen.parallelism, 1);
  EXPECT_EQ(gen.output_schema, Schema({{"k", FieldType::kInt64}, {"v", FieldType::kDouble}}));

  const auto& counts = Op(*job, "counts");
  EXPECT_EQ(counts.parallelism, 2);
  ASSERT_EQ(counts.inputs.size(), 1u);
  const InputSpec& in = counts.inputs[0];
  EXPECT_EQ(in.from, "gen");
  EXPECT_EQ(in.from_index, gen.index);
  EXPECT_EQ(in.partition, Partition::kHash);
  EXPECT_TRUE(in.explicit_partition);
  ASSERT_EQ(in.key.size(), 1u);
  EXPECT_EQ(in.key[0].name, "k");
  EXPECT_EQ(in.key[0].expr, "k");
  // Position of the flow mapping `{from: ...}`.
  EXPECT_EQ(in.line, 11);
  EXPECT_EQ(in.column, 12);
  ASSERT_EQ(counts.key.size(), 1u);
  EXPECT_EQ(counts.key[0].name, "k");
  EXPECT_EQ(counts.output_schema, Schema({{"k", FieldType::kInt64},
                                          {"count", FieldType::kInt64},
                                          {"min_v", FieldType::kDouble},
                                          {"max_k", FieldType::kInt64}}));

  const auto& spread = Op(*job, "spread");
  EXPECT_EQ(spread.inputs[0].partition, Partition::kRebalance);
  EXPECT_TRUE(spread.inputs[0].explicit_partition);
  EXPECT_TRUE(spread.inputs[0].key.empty());
  EXPECT_EQ(spread.output_schema, Schema({{"k", FieldType::kInt64}, {"count", FieldType::kInt64}}));

  const auto& everywhere = Op(*job, "everywhere");
  ASSERT_EQ(everywhere.inputs.size(), 1u);
  EXPECT_EQ(everywhere.inputs[0].from, "spread");
  EXPECT_EQ(everywhere.inputs[0].partition, Partition::kBroadcast);
  EXPECT_EQ(everywhere.input_schema, spread.output_schema);

  // A key list mixes {name, expr} entries and plain field names.
  const auto& bucketed = Op(*job, "bucketed");
  ASSERT_EQ(bucketed.inputs.size(), 1u);
  EXPECT_EQ(bucketed.inputs[0].partition, Partition::kHash);
  ASSERT_EQ(bucketed.inputs[0].key.size(), 2u);
  EXPECT_EQ(bucketed.inputs[0].key[0].name, "bucket");
  EXPECT_EQ(bucketed.inputs[0].key[0].expr, "k % 4");
  EXPECT_EQ(bucketed.inputs[0].key[1].name, "v");
}

TEST(JobSpecTest, UnionOfTwoDatagens) {
  auto job = Parse(R"y(operators:
  - id: a
    type: datagen
    count: 5
    fields: [{name: x, type: int64, expr: seq}]
  - id: b
    type: datagen
    count: 5
    fields: [{name: x, type: int64, expr: seq + 100}]
  - id: both
    type: union
    inputs: [a, b]
  - id: out
    type: print
)y");
  ASSERT_OK(job);
  const auto& both = Op(*job, "both");
  EXPECT_EQ(both.type, "union");
  EXPECT_EQ(both.arity, InputArity::kMany);
  ASSERT_EQ(both.inputs.size(), 2u);
  EXPECT_EQ(both.inputs[0].from, "a");
  EXPECT_EQ(both.inputs[1].from, "b");
  EXPECT_EQ(both.inputs[0].from_index, Op(*job, "a").index);
  EXPECT_EQ(both.inputs[1].from_index, Op(*job, "b").index);
  EXPECT_EQ(both.inputs[0].partition, Partition::kForward);
  EXPECT_EQ(both.inputs[1].partition, Partition::kForward);
  EXPECT_EQ(both.output_schema, Schema({{"x", FieldType::kInt64}}));
  EXPECT_EQ(Op(*job, "out").inputs[0].from, "both");
}

TEST(JobSpecTest, MapWithComputedFields) {
  auto job = Parse(R"y(operators:
  - id: gen
    type: datagen
    fields:
      - {name: id, type: int64, expr: seq}
      - {name: name, type: string, expr: "'n' + to_string(seq)"}
  - id: shaped
    type: map
    fields:
      - id
      - {name: doubled, expr: id * 2}
      - {name: label, expr: "upper(name) + '!'"}
      - {name: ratio, expr: id, type: double}
      - {name: big, expr: id > 10}
  - id: out
    type: blackhole
)y");
  ASSERT_OK(job);
  EXPECT_EQ(Op(*job, "shaped").output_schema, Schema({{"id", FieldType::kInt64},
                                                      {"doubled", FieldType::kInt64},
                                                      {"label", FieldType::kString},
                                                      {"ratio", FieldType::kDouble},
                                                      {"big", FieldType::kBool}}));
  EXPECT_EQ(Op(*job, "out").input_schema, Op(*job, "shaped").output_schema);
}

constexpr char kTwoParallelismJob[] = R"y(parallelism: 2
operators:
  - id: gen
    type: datagen
    parallelism: 1
    fields: [{name: x, type: int64, expr: seq}]
  - id: keyed
    type: key_by
    key: x % 7
  - id: agg
    type: aggregate
    parallelism: 3
    aggregates: [{fn: count}]
  - id: out
    type: print
)y";

TEST(JobSpecTest, ParallelismOverride) {
  auto job = Parse(kTwoParallelismJob, /*parallelism_override=*/4);
  ASSERT_OK(job);
  EXPECT_EQ(job->parallelism, 4);
  EXPECT_EQ(Op(*job, "gen").parallelism, 1);    // explicit: kept
  EXPECT_EQ(Op(*job, "keyed").parallelism, 4);  // default: overridden
  EXPECT_EQ(Op(*job, "agg").parallelism, 3);
  EXPECT_EQ(Op(*job, "out").parallelism, 4);

  auto plain = Parse(kTwoParallelismJob);
  ASSERT_OK(plain);
  EXPECT_EQ(plain->parallelism, 2);
  EXPECT_EQ(Op(*plain, "keyed").parallelism, 2);
  EXPECT_EQ(Op(*plain, "out").parallelism, 2);
}

TEST(JobSpecTest, DefaultPartitions) {
  auto job = Parse(kTwoParallelismJob);
  ASSERT_OK(job);
  // gen (1) -> keyed (2): not keyed and unequal parallelism, so rebalance.
  EXPECT_EQ(Op(*job, "keyed").inputs[0].partition, Partition::kRebalance);
  // keyed (2) -> agg (3): after a key_by, hash by its key whatever the parallelism.
  const auto& agg = Op(*job, "agg");
  EXPECT_EQ(agg.inputs[0].partition, Partition::kHash);
  ASSERT_EQ(agg.inputs[0].key.size(), 1u);
  EXPECT_EQ(agg.inputs[0].key[0].expr, "x % 7");
  EXPECT_EQ(agg.inputs[0].key[0].name, "key0");  // an expression, not a field name
  EXPECT_EQ(agg.output_schema,
            Schema({{"key0", FieldType::kInt64}, {"count", FieldType::kInt64}}));
  // agg (3) -> out (2): rebalance.
  EXPECT_EQ(Op(*job, "out").inputs[0].partition, Partition::kRebalance);
}

TEST(JobSpecTest, AggregateSchemaInference) {
  auto job = Parse(R"y(operators:
  - id: gen
    type: datagen
    fields:
      - {name: k, type: string, expr: "to_string(seq % 2)"}
      - {name: i, type: int64, expr: seq}
      - {name: d, type: double, expr: seq / 2.0}
      - {name: ts, type: timestamp, expr: to_timestamp(seq)}
  - id: by_k
    type: key_by
    key: [k, {name: parity, expr: i % 2 == 0}]
  - id: agg
    type: aggregate
    emit: final
    aggregates:
      - {fn: count}
      - {fn: sum, field: i}
      - {fn: sum, field: d}
      - {fn: avg, field: i}
      - {fn: avg, field: d}
      - {fn: min, field: i}
      - {fn: max, field: d}
      - {fn: min, field: ts}
      - {fn: sum, field: ts}
      - {fn: count, as: n}
  - id: out
    type: print
)y");
  ASSERT_OK(job);
  EXPECT_EQ(Op(*job, "agg").output_schema, Schema({{"k", FieldType::kString},
                                                    {"parity", FieldType::kBool},
                                                    {"count", FieldType::kInt64},
                                                    {"sum_i", FieldType::kInt64},
                                                    {"sum_d", FieldType::kDouble},
                                                    {"avg_i", FieldType::kDouble},
                                                    {"avg_d", FieldType::kDouble},
                                                    {"min_i", FieldType::kInt64},
                                                    {"max_d", FieldType::kDouble},
                                                    {"min_ts", FieldType::kTimestamp},
                                                    {"sum_ts", FieldType::kInt64},
                                                    {"n", FieldType::kInt64}}));
}

TEST(JobSpecTest, OperatorsAreSortedTopologically) {
  // The sink is written first and the union reads a source declared after it.
  auto job = Parse(R"y(operators:
  - id: out
    type: print
    input: both
  - id: a
    type: datagen
    fields: [{name: x, type: int64, expr: seq}]
  - id: both
    type: union
    inputs: [a, b]
  - id: b
    type: datagen
    fields: [{name: x, type: int64, expr: seq}]
)y");
  ASSERT_OK(job);
  const auto& ops = job->operators;
  ASSERT_EQ(ops.size(), 4u);
  for (size_t i = 0; i < ops.size(); ++i) {
    EXPECT_EQ(ops[i].index, static_cast<int>(i));
    for (const auto& in : ops[i].inputs) {
      ASSERT_GE(in.from_index, 0);
      ASSERT_LT(in.from_index, static_cast<int>(i)) << ops[i].id << " reads " << in.from;
      EXPECT_EQ(ops[in.from_index].id, in.from);
    }
  }
  EXPECT_EQ(ops.back().id, "out");
}

// ---------------------------------------------------------------------------------------------
// Invalid jobs

TEST(JobSpecErrorTest, BadYamlSyntax) {
  auto job = Parse(R"y(name: broken
operators:
  - id: gen
    type: [datagen
)y");
  EXPECT_THAT(job.status(), StatusIs(absl::StatusCode::kInvalidArgument,
                            AllOf(StartsWith("job.yaml:"), HasSubstr(": invalid YAML: "))));
  // The position is a real one, not "job.yaml: invalid YAML".
  EXPECT_THAT(std::string(job.status().message()), ::testing::ContainsRegex("^job\\.yaml:[0-9]+:[0-9]+: "));

  EXPECT_THAT(ParseStatus("a: b\n  c: d\n"), IsJobError("job.yaml:2:4: ", "invalid YAML: "));
}

TEST(JobSpecErrorTest, NotAMapping) {
  EXPECT_THAT(ParseStatus("- id: gen\n- id: out\n"),
              IsJobError("job.yaml:1:1: ", "a job must be a YAML mapping with 'operators'"));
  EXPECT_THAT(ParseStatus("just text\n"),
              IsJobError("job.yaml:1:1: ", "a job must be a YAML mapping with 'operators'"));
  EXPECT_THAT(ParseStatus(""), IsJobError("job.yaml:1:1: ", "a job must be a YAML mapping"));
}

TEST(JobSpecErrorTest, UnknownJobKey) {
  EXPECT_THAT(ParseStatus(R"y(name: x
paralelism: 2
operators: []
)y"),
              IsJobError("job.yaml:2:1: ",
                         "unknown job key 'paralelism' (expected name, parallelism, "
                         "max_parallelism, buffer_timeout_ms, watermark_interval, checkpoint, "
                         "restart, plugins, operators)"));
}

TEST(JobSpecTest, PluginsAreReadWithPositions) {
  const std::string text = R"y(name: x
plugins:
  - /opt/plugins/libdedup.so
  - plugins/libgeo.so
operators:
  - {id: gen, type: datagen, count: 1, fields: [{name: a, type: int64, expr: "seq"}]}
  - {id: out, type: print}
)y";
  auto refs = ReadJobPlugins(text, "job.yaml");
  ASSERT_OK(refs);
  ASSERT_EQ(refs->size(), 2u);
  EXPECT_EQ((*refs)[0].path, "/opt/plugins/libdedup.so");
  EXPECT_EQ((*refs)[0].line, 3);
  EXPECT_EQ((*refs)[0].column, 5);
  EXPECT_EQ((*refs)[1].path, "plugins/libgeo.so");
  EXPECT_EQ((*refs)[1].line, 4);
  auto job = ParseJobSpec(text, "job.yaml", TestCatalog());
  ASSERT_OK(job);
  ASSERT_EQ(job->plugins.size(), 2u);
  EXPECT_EQ(job->plugins[1].path, "plugins/libgeo.so");
  auto none = ReadJobPlugins("name: x\noperators: []\n", "job.yaml");
  ASSERT_OK(none);
  EXPECT_TRUE(none->empty());
}

TEST(JobSpecErrorTest, PluginsMustBeAListOfPaths) {
  EXPECT_THAT(ReadJobPlugins("plugins: libx.so\noperators: []\n", "job.yaml").status(),
              IsJobError("job.yaml:1:10: ", "'plugins' must be a list of plugin file paths"));
  EXPECT_THAT(ReadJobPlugins("plugins: [{a: 1}]\noperators: []\n", "job.yaml").status(),
              IsJobError("job.yaml:1:11: ", "a plugin must be the path of a shared library"));
}

TEST(JobSpecErrorTest, MissingOrEmptyOperators) {
  EXPECT_THAT(ParseStatus("name: x\n"), IsJobError("job.yaml:1:1: ", "a job needs 'operators'"));
  EXPECT_THAT(ParseStatus("name: x\noperators: []\n"),
              IsJobError("job.yaml:2:12: ", "'operators' must be a non-empty list"));
  EXPECT_THAT(ParseStatus("name: x\noperators: {id: gen}\n"),
              IsJobError("job.yaml:2:12: ", "'operators' must be a non-empty list"));
}

TEST(JobSpecErrorTest, OperatorNotAMapping) {
  EXPECT_THAT(ParseStatus("operators:\n  - gen\n"),
              IsJobError("job.yaml:2:5: ", "an operator must be a mapping with 'id' and 'type'"));
}

TEST(JobSpecErrorTest, MissingIdOrType) {
  EXPECT_THAT(ParseStatus("operators:\n  - type: print\n"),
              IsJobError("job.yaml:2:5: ", "missing required key 'id'"));
  EXPECT_THAT(ParseStatus("operators:\n  - id: out\n"),
              IsJobError("job.yaml:2:5: ", "missing required key 'type'"));
}

TEST(JobSpecErrorTest, BadOperatorId) {
  EXPECT_THAT(ParseStatus("operators:\n  - id: my-gen\n    type: datagen\n"),
              IsJobError("job.yaml:2:9: ",
                         "operator id 'my-gen' must be letters, digits and underscores"));
}

TEST(JobSpecErrorTest, UnknownOperatorType) {
  EXPECT_THAT(ParseStatus(R"y(operators:
  - id: gen
    type: datagen
    fields: [{name: x, type: int64, expr: seq}]
  - id: f
    type: fitler
    where: x > 1
)y"),
              IsJobError("job.yaml:6:11: ",
                         "unknown operator type 'fitler' (known: datagen, nexmark, kafka, filter, map, key_by, "
                         "aggregate, window, top_n, local_top_n, union, interval_join, join, window_join, file, print, "
                         "blackhole, kafka_sink)"));
}

TEST(JobSpecErrorTest, UnknownOption) {
  EXPECT_THAT(ParseStatus(R"y(operators:
  - id: gen
    type: datagen
    fields: [{name: x, type: int64, expr: seq}]
  - id: f
    type: filter
    wehre: x > 1
)y"),
              IsJobError("job.yaml:7:5: ",
                         "unknown option 'wehre' for filter operator 'f' (expected where)"));
  EXPECT_THAT(ParseStatus(R"y(operators:
  - id: gen
    type: datagen
    fields: [{name: x, type: int64, expr: seq}]
    cuont: 3
)y"),
              IsJobError("job.yaml:5:5: ", "unknown option 'cuont' for datagen operator 'gen' "
                                           "(expected count, rate, fields, event_time)"));
  EXPECT_THAT(ParseStatus(R"y(operators:
  - {id: a, type: datagen, fields: [{name: x, type: int64, expr: seq}]}
  - {id: b, type: datagen, fields: [{name: x, type: int64, expr: seq}]}
  - {id: u, type: union, inputs: [a, b], mode: all}
)y"),
              IsJobError("job.yaml:4:42: ",
                         "unknown option 'mode' for union operator 'u' (it takes none)"));
}

TEST(JobSpecErrorTest, DuplicateId) {
  EXPECT_THAT(ParseStatus(R"y(operators:
  - id: gen
    type: datagen
    fields: [{name: x, type: int64, expr: seq}]
  - id: gen
    type: print
)y"),
              IsJobError("job.yaml:5:9: ", "duplicate operator id 'gen'"));
}

TEST(JobSpecErrorTest, UnknownInput) {
  EXPECT_THAT(ParseStatus(R"y(operators:
  - id: gen
    type: datagen
    fields: [{name: x, type: int64, expr: seq}]
  - id: out
    type: print
    input: gne
)y"),
              IsJobError("job.yaml:7:12: ", "operator 'out' reads from unknown operator 'gne'"));
  EXPECT_THAT(ParseStatus(R"y(operators:
  - id: gen
    type: datagen
    fields: [{name: x, type: int64, expr: seq}]
  - id: out
    type: print
    inputs:
      - gen
      - {from: nope, partition: rebalance}
)y"),
              IsJobError("job.yaml:9:9: ", "operator 'out' reads from unknown operator 'nope'"));
}

TEST(JobSpecErrorTest, BadInputSpec) {
  constexpr char kHead[] = R"y(operators:
  - id: gen
    type: datagen
    fields: [{name: x, type: int64, expr: seq}]
  - id: out
    type: print
)y";
  EXPECT_THAT(ParseStatus(std::string(kHead) + "    input: {from: gen, partition: hash}\n"),
              IsJobError("job.yaml:7:12: ", "partition: hash needs a 'key'"));
  EXPECT_THAT(ParseStatus(std::string(kHead) + "    input: {from: gen, key: x}\n"),
              IsJobError("job.yaml:7:29: ", "'key' is only allowed with partition: hash"));
  EXPECT_THAT(ParseStatus(std::string(kHead) + "    input: {from: gen, partition: shuffle}\n"),
              IsJobError("job.yaml:7:35: ", "unknown partition 'shuffle' (expected forward, "
                                            "hash, rebalance or broadcast)"));
  EXPECT_THAT(ParseStatus(std::string(kHead) + "    input: {from: gen, partiton: hash}\n"),
              IsJobError("job.yaml:7:24: ",
                         "unknown key 'partiton' in input (expected from, partition, key)"));
  EXPECT_THAT(ParseStatus(std::string(kHead) + "    input: gen\n    inputs: [gen]\n"),
              IsJobError("job.yaml:5:5: ", "give either 'input' or 'inputs', not both"));
  EXPECT_THAT(ParseStatus(std::string(kHead) + "    input: {from: gen, partition: hash, key: y}\n"),
              IsJobError("job.yaml:7:", "unknown field 'y'"));
}

TEST(JobSpecErrorTest, WrongNumberOfInputs) {
  EXPECT_THAT(ParseStatus(R"y(operators:
  - id: f
    type: filter
    where: true
)y"),
              IsJobError("job.yaml:2:5: ",
                         "filter operator 'f' needs an 'input' (no previous operator to read from)"));
  EXPECT_THAT(ParseStatus(R"y(operators:
  - {id: a, type: datagen, fields: [{name: x, type: int64, expr: seq}]}
  - {id: u, type: union}
)y"),
              IsJobError("job.yaml:3:5: ", "union operator 'u' takes 2 to 64 input(s), got 1"));
  EXPECT_THAT(ParseStatus(R"y(operators:
  - {id: a, type: datagen, fields: [{name: x, type: int64, expr: seq}]}
  - {id: b, type: datagen, input: a, fields: [{name: x, type: int64, expr: seq}]}
)y"),
              IsJobError("job.yaml:3:5: ", "datagen is a source and takes no input"));
}

TEST(JobSpecErrorTest, Cycle) {
  EXPECT_THAT(ParseStatus(R"y(operators:
  - id: gen
    type: datagen
    fields: [{name: x, type: int64, expr: seq}]
  - id: out
    type: print
  - id: a
    type: filter
    input: b
    where: x > 1
  - id: b
    type: filter
    input: a
    where: x < 5
)y"),
              IsJobError("job.yaml:7:5: ", "the job graph has a cycle through operators a, b"));
}

TEST(JobSpecErrorTest, ReadsFromItself) {
  EXPECT_THAT(ParseStatus(R"y(operators:
  - id: gen
    type: datagen
    fields: [{name: x, type: int64, expr: seq}]
  - id: f
    type: filter
    input: f
    where: true
)y"),
              IsJobError("job.yaml:7:12: ", "operator 'f' reads from itself"));
}

TEST(JobSpecErrorTest, ReadsFromSink) {
  EXPECT_THAT(ParseStatus(R"y(operators:
  - id: gen
    type: datagen
    fields: [{name: x, type: int64, expr: seq}]
  - id: out
    type: print
  - id: again
    type: blackhole
    input: out
)y"),
              IsJobError("job.yaml:9:12: ",
                         "operator 'again' reads from sink 'out', which has no output"));
  // Without an explicit input there is nothing to read from after a sink.
  EXPECT_THAT(ParseStatus(R"y(operators:
  - id: gen
    type: datagen
    fields: [{name: x, type: int64, expr: seq}]
  - id: out
    type: print
  - id: again
    type: blackhole
)y"),
              IsJobError("job.yaml:7:5: ", "blackhole operator 'again' needs an 'input'"));
}

TEST(JobSpecErrorTest, FilterNotBool) {
  EXPECT_THAT(ParseStatus(R"y(operators:
  - id: gen
    type: datagen
    fields: [{name: x, type: int64, expr: seq}]
  - id: f
    type: filter
    where: x + 1
  - id: out
    type: print
)y"),
              IsJobError("job.yaml:7:12: ", "filter condition must be bool, got int64"));
}

TEST(JobSpecErrorTest, UnknownFieldInExpression) {
  EXPECT_THAT(ParseStatus(R"y(operators:
  - id: gen
    type: datagen
    fields: [{name: price, type: double, expr: seq}]
  - id: f
    type: filter
    where: pirce > 1
  - id: out
    type: print
)y"),
              IsJobError("job.yaml:7:12: ",
                         "in expression \"pirce > 1\": column 1: unknown field 'pirce' "
                         "(fields: price)"));
  // In a map field.
  EXPECT_THAT(ParseStatus(R"y(operators:
  - id: gen
    type: datagen
    fields: [{name: price, type: double, expr: seq}]
  - id: m
    type: map
    fields:
      - price
      - {name: twice, expr: 2 * prcie}
  - id: out
    type: print
)y"),
              IsJobError("job.yaml:9:9: ", "unknown field 'prcie'"));
  // In a key.
  EXPECT_THAT(ParseStatus(R"y(operators:
  - id: gen
    type: datagen
    fields: [{name: price, type: double, expr: seq}]
  - id: k
    type: key_by
    key: user
  - id: out
    type: print
)y"),
              IsJobError("job.yaml:7:10: ", "unknown field 'user'"));
  // In an aggregate.
  EXPECT_THAT(ParseStatus(R"y(operators:
  - id: gen
    type: datagen
    fields: [{name: price, type: double, expr: seq}]
  - id: k
    type: key_by
    key: price
  - id: agg
    type: aggregate
    aggregates:
      - {fn: sum, field: cost}
  - id: out
    type: print
)y"),
              IsJobError("job.yaml:11:26: ",
                         "unknown field 'cost' (input has (price double))"));
  // In a datagen field: its expressions see only `seq`.
  EXPECT_THAT(ParseStatus(R"y(operators:
  - id: gen
    type: datagen
    fields:
      - name: x
        type: int64
        expr: sequence
  - id: out
    type: print
)y"),
              IsJobError("job.yaml:7:15: ", "unknown field 'sequence' (fields: seq)"));
}

TEST(JobSpecErrorTest, BadParallelism) {
  constexpr char kOp[] = R"y(operators:
  - id: gen
    type: datagen
    parallelism: 0
    fields: [{name: x, type: int64, expr: seq}]
  - id: out
    type: print
)y";
  EXPECT_THAT(ParseStatus(kOp), IsJobError("job.yaml:4:18: ",
                                     "'parallelism' must be between 1 and 1024, got 0"));
  EXPECT_THAT(ParseStatus("parallelism: 0\noperators: []\n"),
              IsJobError("job.yaml:1:14: ", "'parallelism' must be between 1 and 1024, got 0"));
  EXPECT_THAT(ParseStatus("parallelism: two\noperators: []\n"),
              IsJobError("job.yaml:1:14: ", "'parallelism' must be an integer, got 'two'"));
  EXPECT_THAT(ParseStatus(R"y(max_parallelism: 4
operators:
  - id: gen
    type: datagen
    parallelism: 8
    fields: [{name: x, type: int64, expr: seq}]
  - id: out
    type: print
)y"),
              IsJobError("job.yaml:5:18: ", "parallelism 8 exceeds max_parallelism 4"));
}

TEST(JobSpecErrorTest, DefaultParallelismExceedsMaxParallelism) {
  // The operators inherit the job's parallelism, which is above max_parallelism: the error is
  // reported at the first operator (it has no 'parallelism' key of its own).
  constexpr char kJob[] = R"y(parallelism: 8
max_parallelism: 4
operators:
  - id: gen
    type: datagen
    fields: [{name: x, type: int64, expr: seq}]
  - id: out
    type: print
)y";
  EXPECT_THAT(ParseStatus(kJob), IsJobError("job.yaml:4:5: ", "parallelism 8 exceeds max_parallelism 4"));
  // The same through a command-line override.
  EXPECT_THAT(ParseStatus(R"y(operators:
  - id: gen
    type: datagen
    fields: [{name: x, type: int64, expr: seq}]
  - id: out
    type: print
)y", /*parallelism_override=*/200),
              IsJobError("job.yaml:2:5: ", "parallelism 200 exceeds max_parallelism 128"));
}

TEST(JobSpecErrorTest, ForwardEdgeWithUnequalParallelism) {
  EXPECT_THAT(ParseStatus(R"y(operators:
  - id: gen
    type: datagen
    parallelism: 2
    fields: [{name: x, type: int64, expr: seq}]
  - id: out
    type: print
    input: {from: gen, partition: forward}
)y"),
              IsJobError("job.yaml:8:12: ",
                         "forward edge from 'gen' (parallelism 2) to 'out' (parallelism 1) needs "
                         "equal parallelism; use rebalance or hash"));
}

TEST(JobSpecErrorTest, AggregateWithoutKeyedInput) {
  EXPECT_THAT(ParseStatus(R"y(operators:
  - id: gen
    type: datagen
    fields: [{name: x, type: int64, expr: seq}]
  - id: agg
    type: aggregate
    aggregates: [{fn: count}]
  - id: out
    type: print
)y"),
              IsJobError("job.yaml:5:5: ",
                         "aggregate 'agg' needs a keyed input: put a key_by before it or read "
                         "with partition: hash and a key"));
}

TEST(JobSpecErrorTest, BadAggregates) {
  constexpr char kHead[] = R"y(operators:
  - id: gen
    type: datagen
    fields: [{name: k, type: string, expr: to_string(seq)}, {name: x, type: int64, expr: seq}]
  - id: by_k
    type: key_by
    key: k
  - id: agg
    type: aggregate
)y";
  auto with = [&](const std::string& rest) {
    return ParseStatus(std::string(kHead) + rest + "  - id: out\n    type: print\n");
  };
  EXPECT_THAT(with("    aggregates: [{fn: median, field: x}]\n"),
              IsJobError("job.yaml:10:23: ", "unknown aggregate function 'median' (expected "
                                             "count, sum, min, max, avg, first, last)"));
  EXPECT_THAT(with("    aggregates: [{fn: sum, field: k}]\n"),
              IsJobError("job.yaml:10:35: ", "sum needs a numeric field; 'k' is string"));
  EXPECT_THAT(with("    aggregates: [{fn: first, field: k}]\n"),
              IsJobError("job.yaml:10:37: ", "first of aggregate takes a field of any type but "
                                             "string; 'k' is string"));
  EXPECT_THAT(with("    aggregates: [{fn: sum}]\n"),
              IsJobError("job.yaml:10:18: ", "missing required key 'field'"));
  EXPECT_THAT(with("    aggregates: [{fn: count, as: k}]\n"),
              IsJobError("job.yaml:10:18: ", "duplicate output field 'k'"));
  EXPECT_THAT(with("    aggregates: [{fn: count}]\n    emit: sometimes\n"),
              IsJobError("job.yaml:11:11: ", "'emit' must be 'updates' or 'final'"));
  EXPECT_THAT(with("    emit: final\n"),
              IsJobError("job.yaml:8:5: ", "aggregate needs 'aggregates'"));
}

TEST(JobSpecErrorTest, UnionWithDifferentSchemas) {
  EXPECT_THAT(ParseStatus(R"y(operators:
  - id: a
    type: datagen
    fields: [{name: x, type: int64, expr: seq}]
  - id: b
    type: datagen
    fields: [{name: x, type: double, expr: seq}]
  - id: both
    type: union
    inputs:
      - a
      - b
  - id: out
    type: print
)y"),
              IsJobError("job.yaml:12:9: ",
                         "union inputs must have the same schema: 'b' has (x double), 'a' has "
                         "(x int64)"));
}

TEST(JobSpecErrorTest, NoSink) {
  EXPECT_THAT(ParseStatus(R"y(operators:
  - id: gen
    type: datagen
    fields: [{name: x, type: int64, expr: seq}]
  - id: f
    type: filter
    where: x > 3
)y"),
              IsJobError("job.yaml:1:1: ", "the job has no sink (file, kafka_sink, print or blackhole)"));
}

TEST(JobSpecErrorTest, DatagenFieldProblems) {
  EXPECT_THAT(ParseStatus(R"y(operators:
  - id: gen
    type: datagen
    fields:
      - name: label
        type: string
        expr: seq * 2
  - id: out
    type: print
)y"),
              IsJobError("job.yaml:7:15: ",
                         "expression has type int64 but field 'label' is string"));
  EXPECT_THAT(ParseStatus(R"y(operators:
  - id: gen
    type: datagen
    fields:
      - name: x
        type: integer
        expr: seq
  - id: out
    type: print
)y"),
              IsJobError("job.yaml:6:15: ", "unknown field type 'integer'"));
  EXPECT_THAT(ParseStatus(R"y(operators:
  - id: gen
    type: datagen
    fields:
      - {name: x, type: int64, expr: seq}
      - {name: x, type: int64, expr: seq + 1}
  - id: out
    type: print
)y"),
              IsJobError("job.yaml:6:9: ", "duplicate field 'x'"));
  EXPECT_THAT(ParseStatus(R"y(operators:
  - id: gen
    type: datagen
    count: -5
    fields: [{name: x, type: int64, expr: seq}]
  - id: out
    type: print
)y"),
              IsJobError("job.yaml:4:12: ", "'count' must be between 0 and"));
  EXPECT_THAT(ParseStatus(R"y(operators:
  - id: gen
    type: datagen
    count: 5
  - id: out
    type: print
)y"),
              IsJobError("job.yaml:2:5: ", "datagen needs 'fields'"));
}

TEST(JobSpecErrorTest, FileSinkNeedsPath) {
  EXPECT_THAT(ParseStatus(R"y(operators:
  - id: gen
    type: datagen
    fields: [{name: x, type: int64, expr: seq}]
  - id: out
    type: file
)y"),
              IsJobError("job.yaml:5:5: ", "missing required key 'path'"));
}

}  // namespace
}  // namespace sluice::plan

namespace sluice::plan {
namespace {

TEST(JobSpecKeyedInputTest, AggregateAfterKeyByWithRebalanceIsRejected) {
  auto r = ParseJobSpec(R"(parallelism: 2
operators:
  - {id: a, type: datagen, fields: [{name: k, type: int64, expr: seq}]}
  - {id: b, type: key_by, key: [k]}
  - {id: c, type: aggregate, inputs: [{from: b, partition: rebalance}], aggregates: [{fn: count}]}
  - {id: d, type: blackhole}
)", "job.yaml", TestCatalog());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(std::string(r.status().message()),
            "job.yaml:5:39: aggregate 'c' reads from key_by 'b' with partition: rebalance, which "
            "splits keys across subtasks; use partition: hash");
}

TEST(JobSpecKeyedInputTest, ParallelismOverrideIsRangeChecked) {
  auto r = ParseJobSpec("operators:\n  - {id: a, type: datagen, fields: [{name: k, type: int64, expr: seq}]}\n"
                        "  - {id: d, type: blackhole}\n", "job.yaml", TestCatalog(), 5000);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(std::string(r.status().message()), "job.yaml: parallelism override must be between 1 and 1024, got 5000");
}

}  // namespace
}  // namespace sluice::plan

namespace sluice::plan {
namespace {

// ---------------------------------------------------------------------------------------------
// Event time

std::string KafkaJob(const std::string& extra, const std::string& format = "json") {
  return "watermark_interval: 100ms\noperators:\n"
         "  - id: events\n"
         "    type: kafka\n"
         "    bootstrap: localhost:9092\n"
         "    topic: events\n"
         "    format: " + format + "\n" +
         (format == "raw" ? "" : "    fields: [{name: user, type: int64}, {name: ts, type: timestamp}, {name: name, type: string}]\n") +
         extra +
         "  - {id: out, type: print}\n";
}

TEST(JobSpecEventTimeTest, FieldOfTheRecord) {
  auto job = Parse(KafkaJob("    event_time: {field: ts, max_out_of_orderness: 2s, idle_timeout: 30s}\n"
                            "    partition_discovery: 10s\n"));
  ASSERT_OK(job);
  EXPECT_EQ(job->watermark_interval_ms, 100);
  const OperatorSpec& events = Op(*job, "events");
  const auto* options = events.options_as<connectors::KafkaSourceOptions>();
  ASSERT_NE(options, nullptr);
  ASSERT_TRUE(options->event_time.has_value());
  const EventTimeSpec& et = *options->event_time;
  EXPECT_EQ(et.field, "ts");
  EXPECT_EQ(et.field_index, 1);
  EXPECT_FALSE(et.from_kafka_timestamp);
  EXPECT_EQ(et.max_out_of_orderness_ms, 2000);
  EXPECT_EQ(et.idle_timeout_ms, 30000);
  EXPECT_EQ(options->partition_discovery_ms, 10000);
  EXPECT_EQ(events.output_schema.size(), 3u);
}

TEST(JobSpecEventTimeTest, KafkaTimestampAddsAField) {
  auto job = Parse(KafkaJob("    event_time: {kafka_timestamp: kts}\n", "raw"));
  ASSERT_OK(job);
  const OperatorSpec& events = Op(*job, "events");
  const auto& et = events.options_as<connectors::KafkaSourceOptions>()->event_time;
  ASSERT_TRUE(et.has_value());
  EXPECT_TRUE(et->from_kafka_timestamp);
  EXPECT_EQ(et->field_index, 2);
  EXPECT_EQ(et->max_out_of_orderness_ms, 0);
  EXPECT_EQ(et->idle_timeout_ms, 0);
  EXPECT_EQ(events.output_schema.ToString(), "(key string, value string, kts timestamp)");
  EXPECT_EQ(Op(*job, "out").input_schema, events.output_schema);
}

TEST(JobSpecEventTimeTest, DefaultsWithoutEventTime) {
  auto job = Parse(KafkaJob(""));
  ASSERT_OK(job);
  const auto* options = Op(*job, "events").options_as<connectors::KafkaSourceOptions>();
  ASSERT_NE(options, nullptr);
  EXPECT_FALSE(options->event_time.has_value());
  // The defaults of the options struct.
  EXPECT_EQ(options->topics, std::vector<std::string>{"events"});
  EXPECT_EQ(options->format, connectors::KafkaSourceOptions::Format::kJson);
  EXPECT_EQ(options->start, connectors::KafkaSourceOptions::Start::kEarliest);
  EXPECT_EQ(options->on_error, connectors::KafkaSourceOptions::OnError::kFail);
  EXPECT_EQ(options->group, "");
  EXPECT_FALSE(options->bounded);
  EXPECT_EQ(options->partition_discovery_ms, 30000);
  auto plain = Parse("operators:\n  - {id: a, type: datagen, fields: [{name: k, type: int64, expr: seq}]}\n"
                     "  - {id: d, type: blackhole}\n");
  ASSERT_OK(plain);
  EXPECT_EQ(plain->watermark_interval_ms, 200);
}

TEST(JobSpecEventTimeTest, DatagenTakesAField) {
  auto job = Parse(R"y(operators:
  - id: gen
    type: datagen
    fields: [{name: k, type: int64, expr: seq}, {name: ts, type: timestamp, expr: "to_timestamp(seq * 10)"}]
    event_time: {field: ts, max_out_of_orderness: 50ms}
  - {id: d, type: blackhole}
)y");
  ASSERT_OK(job);
  const auto& et = Op(*job, "gen").options_as<ops::DatagenOptions>()->event_time;
  ASSERT_TRUE(et.has_value());
  EXPECT_EQ(et->field_index, 1);
  EXPECT_EQ(et->max_out_of_orderness_ms, 50);
}

TEST(JobSpecEventTimeTest, ErrorsArePositioned) {
  // Line 9 holds the option under test.
  EXPECT_THAT(ParseStatus(KafkaJob("    event_time: ts\n")),
              IsJobError("job.yaml:9:17: ", "'event_time' must be a mapping {field | kafka_timestamp, "
                                            "max_out_of_orderness, idle_timeout}"));
  EXPECT_THAT(ParseStatus(KafkaJob("    event_time: {max_out_of_orderness: 1s}\n")),
              IsJobError("job.yaml:9:17: ", "event_time needs 'field'"));
  EXPECT_THAT(ParseStatus(KafkaJob("    event_time: {field: ts, kafka_timestamp: kts}\n")),
              IsJobError("job.yaml:9:46: ", "give either 'field' or 'kafka_timestamp' in event_time, not both"));
  EXPECT_THAT(ParseStatus(KafkaJob("    event_time: {field: tss}\n")),
              IsJobError("job.yaml:9:25: ", "unknown event-time field 'tss' (the source has (user int64, "
                                            "ts timestamp, name string))"));
  EXPECT_THAT(ParseStatus(KafkaJob("    event_time: {field: name}\n")),
              IsJobError("job.yaml:9:25: ", "event-time field 'name' is string; it must be a timestamp or "
                                            "int64 (milliseconds since the epoch)"));
  EXPECT_THAT(ParseStatus(KafkaJob("    event_time: {kafka_timestamp: ts}\n")),
              IsJobError("job.yaml:9:35: ", "field 'ts' already exists in"));
  EXPECT_THAT(ParseStatus(KafkaJob("    event_time: {field: ts, max_out_of_orderness: soon}\n")),
              IsJobError("job.yaml:9:51: ", "'max_out_of_orderness': bad duration 'soon'"));
  EXPECT_THAT(ParseStatus(KafkaJob("    event_time: {field: ts, idle_timeout: -1s}\n")),
              IsJobError("job.yaml:9:43: ", "'idle_timeout': bad duration '-1s'"));
  EXPECT_THAT(ParseStatus(KafkaJob("    event_time: {field: ts, max_lateness: 1s}\n")),
              IsJobError("job.yaml:9:29: ", "unknown key 'max_lateness' in event_time (expected field, "
                                            "idle_timeout, kafka_timestamp, max_out_of_orderness)"));
  EXPECT_THAT(ParseStatus(KafkaJob("    partition_discovery: often\n")),
              IsJobError("job.yaml:9:26: ", "'partition_discovery': bad duration 'often'"));
  EXPECT_THAT(ParseStatus(KafkaJob("    bounded: true\n    partition_discovery: 5s\n")),
              IsJobError("job.yaml:10:26: ", "a bounded kafka source reads the partitions that exist at start"));
  EXPECT_THAT(ParseStatus("watermark_interval: 0ms\noperators:\n"
                          "  - {id: a, type: datagen, fields: [{name: k, type: int64, expr: seq}]}\n"
                          "  - {id: d, type: blackhole}\n"),
              IsJobError("job.yaml:1:21: ", "'watermark_interval' must be between 1ms and 1h"));
  EXPECT_THAT(ParseStatus(R"y(operators:
  - id: gen
    type: datagen
    fields: [{name: k, type: int64, expr: seq}]
    event_time: {kafka_timestamp: ts}
  - {id: d, type: blackhole}
)y"),
              IsJobError("job.yaml:5:18: ", "unknown key 'kafka_timestamp' in event_time (expected field, "
                                            "idle_timeout, max_out_of_orderness)"));
}

}  // namespace
}  // namespace sluice::plan

namespace sluice::plan {
namespace {

TEST(JobSpecKafkaTest, TopicsListIsCheckedWithPositions) {
  // Line 9 holds the option under test (KafkaJob puts `topic: events` on line 6).
  std::string with_topics = KafkaJob("    topics: [a, b]\n");
  EXPECT_THAT(ParseStatus(with_topics),
              IsJobError("job.yaml:9:13: ", "give either 'topic' or 'topics', not both"));
  auto only_topics = [](const std::string& topics) {
    std::string job = KafkaJob("");
    return absl::StrReplaceAll(job, {{"    topic: events\n", "    topics: " + topics + "\n"}});
  };
  ASSERT_OK(Parse(only_topics("[a, b]")));
  EXPECT_THAT(ParseStatus(only_topics("[]")),
              IsJobError("job.yaml:6:13: ", "'topics' must be a non-empty list of topic names"));
  EXPECT_THAT(ParseStatus(only_topics("[a, a]")),
              IsJobError("job.yaml:6:17: ", "topic 'a' is listed twice"));
  EXPECT_THAT(ParseStatus(only_topics("[\"a:b\"]")),
              IsJobError("job.yaml:6:14: ", "a topic name must be a non-empty string without ':'"));
}

}  // namespace
}  // namespace sluice::plan

namespace sluice::plan {
namespace {

// ---------------------------------------------------------------------------------------------
// Inputs that must not get the wrong answer (hostile sizes, bytes and values)

// A job whose filter (line 3, column 34) is `where`.
std::string FilterJob(const std::string& where) {
  return "operators:\n  - {id: a, type: datagen, fields: [{name: k, type: int64, expr: seq}]}\n"
         "  - {id: b, type: filter, where: \"" +
         where + "\"}\n  - {id: c, type: blackhole}\n";
}

TEST(JobSpecInputTest, DeeplyNestedFilterGivesAShortErrorWithAnExcerpt) {
  const std::string parens(100000, '(');
  EXPECT_THAT(ParseStatus(FilterJob(parens + "k > 1" + std::string(100000, ')'))),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "job.yaml:3:34: in expression \"..." + std::string(60, '(') +
                           "...\": column 257: expression nested deeper than 256 levels"));
  std::string nots;
  for (int i = 0; i < 100000; ++i) nots += "not ";
  EXPECT_THAT(ParseStatus(FilterJob(nots + "k > 1")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "job.yaml:3:34: in expression \"...t not not not not not not not not not not "
                       "not not not not no...\": column 1025: expression nested deeper than 256 "
                       "levels"));
}

TEST(JobSpecInputTest, ShortExpressionsAreQuotedWhole) {
  EXPECT_THAT(ParseStatus(FilterJob("kk > 1")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "job.yaml:3:34: in expression \"kk > 1\": column 1: unknown field 'kk' "
                       "(fields: k)"));
  // Long, with the error at the end: the excerpt ends there.
  std::string sum = "k";
  for (int i = 0; i < 100; ++i) sum += " + k";
  EXPECT_THAT(ParseStatus(FilterJob(sum + " > kk")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "job.yaml:3:34: in expression \"...+ k + k + k + k + k + k + k + k + k + k + k "
                       "+ k + k + k > kk\": column 405: unknown field 'kk' (fields: k)"));
}

TEST(JobSpecInputTest, EveryErrorMessageIsCapped) {
  const std::string type(100000, 'x');
  absl::Status s = ParseStatus("operators:\n  - {id: a, type: " + type + "}\n");
  EXPECT_THAT(s, IsJobError("job.yaml:2:19: unknown operator type 'xxxxxxxx", "... (98"));
  EXPECT_LE(s.message().size(), kMaxErrorMessageBytes + 32);
}

TEST(JobSpecInputTest, NonUtf8AndNulBytesAreRefusedWithTheirPosition) {
  EXPECT_THAT(ParseStatus(FilterJob("k > 1 and '\xff' == 'a'")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "job.yaml:3:46: invalid UTF-8 (byte 0xff): a job file must be UTF-8 text"));
  // Multi-byte characters count as one column each.
  EXPECT_THAT(ParseStatus("name: \"h\xc3\xa9h\xc3\xa9\xc0\xaf\"\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "job.yaml:1:12: invalid UTF-8 (byte 0xc0): a job file must be UTF-8 text"));
  EXPECT_THAT(CheckJobText("a\n\xed\xa0\x80", "f"),  // a UTF-16 surrogate
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("f:2:1: invalid UTF-8 (byte 0xed)")));
  EXPECT_THAT(CheckJobText("\xe2\x82", "f"),  // truncated
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("f:1:1: invalid UTF-8 (byte 0xe2)")));
  EXPECT_THAT(CheckJobText("\xf4\x90\x80\x80", "f"),  // above U+10FFFF
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("f:1:1: invalid UTF-8 (byte 0xf4)")));
  EXPECT_OK(CheckJobText("\xef\xbb\xbfname: \"\xe2\x82\xac \xf0\x9f\x98\x80\"\n", "f"));

  EXPECT_THAT(ParseStatus(FilterJob(std::string("k > 1 and '\0' == 'a'", 20))),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "job.yaml:3:46: NUL byte: a job file must be text"));
}

TEST(JobSpecInputTest, JobFilesAreAtMostOneMiB) {
  std::string comment = "# " + std::string(kMaxJobFileBytes, 'x') + "\n";
  std::string job = FilterJob("k > 1");
  EXPECT_THAT(ParseStatus(comment + job),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "job.yaml: job file exceeds the limit of 1 MiB (1048576 bytes)"));
  comment = "# " + std::string(kMaxJobFileBytes - job.size() - 3, 'x') + "\n";
  ASSERT_EQ(comment.size() + job.size(), kMaxJobFileBytes);
  EXPECT_OK(Parse(comment + job));
}

TEST(JobSpecInputTest, CheckpointIntervalBelowTenMillisecondsIsRefused) {
  const std::string job = FilterJob("k > 1");
  EXPECT_THAT(ParseStatus("checkpoint: {interval: 0ms}\n" + job),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "job.yaml:1:24: checkpoint interval must be at least 10ms, got 0ms (leave out "
                       "the checkpoint section to take no checkpoints)"));
  EXPECT_THAT(ParseStatus("checkpoint: {interval: 9ms}\n" + job),
              IsJobError("job.yaml:1:24: ", "checkpoint interval must be at least 10ms, got 9ms"));
  EXPECT_THAT(ParseStatus("checkpoint: {timeout: 1s}\n" + job),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "job.yaml:1:13: checkpoint needs an 'interval' (at least 10ms; leave out the "
                       "checkpoint section to take no checkpoints)"));
  auto ok = Parse("checkpoint: {interval: 10ms}\n" + job);
  ASSERT_OK(ok);
  EXPECT_TRUE(ok->checkpoint.enabled());
  EXPECT_EQ(ok->checkpoint.interval_ms, 10);
  auto off = Parse(job);
  ASSERT_OK(off);
  EXPECT_FALSE(off->checkpoint.enabled());
}

TEST(JobSpecInputTest, CheckpointModeAndAlignedTimeout) {
  const std::string job = FilterJob("k > 1");
  auto dflt = Parse("checkpoint: {interval: 1s}\n" + job);
  ASSERT_OK(dflt);
  EXPECT_EQ(dflt->checkpoint.mode, CheckpointConfig::Mode::kAuto);
  EXPECT_EQ(dflt->checkpoint.aligned_timeout_ms, 1000);
  auto aligned = Parse("checkpoint: {interval: 1s, mode: aligned}\n" + job);
  ASSERT_OK(aligned);
  EXPECT_EQ(aligned->checkpoint.mode, CheckpointConfig::Mode::kAligned);
  auto unaligned = Parse("checkpoint: {interval: 1s, mode: unaligned}\n" + job);
  ASSERT_OK(unaligned);
  EXPECT_EQ(unaligned->checkpoint.mode, CheckpointConfig::Mode::kUnaligned);
  auto timeout = Parse("checkpoint: {interval: 1s, mode: auto, aligned_timeout: 200ms}\n" + job);
  ASSERT_OK(timeout);
  EXPECT_EQ(timeout->checkpoint.aligned_timeout_ms, 200);
  EXPECT_THAT(ParseStatus("checkpoint: {interval: 1s, mode: sometimes}\n" + job),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "job.yaml:1:34: checkpoint mode must be aligned, unaligned or auto, got "
                       "'sometimes'"));
  EXPECT_THAT(ParseStatus("checkpoint: {interval: 1s, mode: aligned, aligned_timeout: 1s}\n" + job),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "job.yaml:1:60: checkpoint aligned_timeout applies to mode: auto only "
                       "(aligned never switches, unaligned never aligns)"));
}

}  // namespace
}  // namespace sluice::plan

namespace sluice::plan {
namespace {

// ---------------------------------------------------------------------------------------------
// Side outputs

constexpr char kLateOutputJob[] = R"y(operators:
  - id: gen
    type: datagen
    fields: [{name: user, type: int64, expr: seq % 3}, {name: ts, type: timestamp, expr: seq}]
  - {id: k, type: key_by, key: user}
  - id: w
    type: window
    tumble: 1s
    time_field: ts
    late_output: late
    aggregates: [{fn: count, as: n}]
  - {id: out, type: print, input: w}
  - {id: late_out, type: file, path: /tmp/late, input: w.late}
  - {id: late_filter, type: filter, where: user > 0, input: {from: w.late, partition: rebalance}}
  - {id: hole, type: blackhole}
)y";

TEST(JobSpecSideOutputTest, ReadByIdDotName) {
  auto job = Parse(kLateOutputJob);
  ASSERT_OK(job);
  const OperatorSpec& w = Op(*job, "w");
  ASSERT_EQ(w.side_outputs.size(), 1u);
  EXPECT_EQ(w.side_outputs[0].name, "late");
  EXPECT_EQ(w.side_outputs[0].schema.ToString(), "(user int64, ts timestamp)");
  const OperatorSpec& late = Op(*job, "late_out");
  ASSERT_EQ(late.inputs.size(), 1u);
  EXPECT_EQ(late.inputs[0].from, "w");
  EXPECT_EQ(late.inputs[0].side_output, "late");
  EXPECT_EQ(late.inputs[0].side_output_index, 0);
  EXPECT_EQ(late.input_schema.ToString(), "(user int64, ts timestamp)");
  EXPECT_EQ(Op(*job, "late_filter").inputs[0].partition, Partition::kRebalance);
  EXPECT_EQ(Op(*job, "late_filter").output_schema.ToString(), "(user int64, ts timestamp)");
  // The main output is unchanged.
  EXPECT_EQ(Op(*job, "out").inputs[0].side_output_index, -1);
  EXPECT_EQ(Op(*job, "out").input_schema.ToString(),
            "(user int64, window_start timestamp, window_end timestamp, n int64, update bool)");
  EXPECT_TRUE(job->warnings.empty());
}

TEST(JobSpecSideOutputTest, UnreadSideOutputIsAWarning) {
  auto job = Parse(R"y(operators:
  - {id: gen, type: datagen, fields: [{name: user, type: int64, expr: seq}]}
  - {id: k, type: key_by, key: user}
  - {id: w, type: window, tumble: 1s, time_field: user, late_output: late, aggregates: [{fn: count}]}
  - {id: out, type: print}
)y");
  ASSERT_OK(job);
  EXPECT_THAT(job->warnings,
              ElementsAre("side output 'w.late' is read by no operator: its records are dropped"));
}

TEST(JobSpecSideOutputTest, Errors) {
  const std::string base = R"y(operators:
  - {id: gen, type: datagen, fields: [{name: user, type: int64, expr: seq}]}
  - {id: k, type: key_by, key: user}
  - {id: w, type: window, tumble: 1s, time_field: user, late_output: late, aggregates: [{fn: count}]}
)y";
  EXPECT_THAT(ParseStatus(base + "  - {id: out, type: print, input: w.early}\n"),
              IsJobError("job.yaml:5:35: ",
                         "operator 'out' reads side output 'early' of 'w', which has only late"));
  EXPECT_THAT(ParseStatus(base + "  - {id: out, type: print, input: k.late}\n"),
              IsJobError("job.yaml:5:35: ",
                         "operator 'out' reads side output 'late' of 'k', which has no side outputs"));
  EXPECT_THAT(ParseStatus(base + "  - {id: out, type: print, input: w.late.x}\n"),
              IsJobError("job.yaml:5:35: ", "must be an operator id or '<operator id>.<side output>'"));
  EXPECT_THAT(ParseStatus(base + "  - {id: out, type: print, input: nope.late}\n"),
              IsJobError("job.yaml:5:35: ", "reads from unknown operator 'nope'"));
  EXPECT_THAT(ParseStatus(R"y(operators:
  - {id: gen, type: datagen, fields: [{name: user, type: int64, expr: seq}]}
  - {id: k, type: key_by, key: user}
  - {id: w, type: window, tumble: 1s, time_field: user, late_output: "late one", aggregates: [{fn: count}]}
  - {id: out, type: print}
)y"),
              IsJobError("job.yaml:4:70: ", "'late_output' must be a name"));
}

// A duration of 2^63 ms or more does not fit: an error at the option's position, not an
// unchecked conversion.
TEST(JobSpecErrorTest, DurationTooLargeIsAnError) {
  EXPECT_THAT(ParseStatus(KafkaJob("    partition_discovery: 9223372036854775807s\n")),
              IsJobError("job.yaml:9:26: ", "'partition_discovery': duration '9223372036854775807s' is too large: at "
                                            "most 9223372036854775807ms"));
  EXPECT_THAT(ParseStatus(KafkaJob("    partition_discovery: 99999999999999999999999999ms\n")),
              IsJobError("job.yaml:9:26: ", "is too large"));
  EXPECT_THAT(ParseDurationMs("9223372036854775808"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("too large")));
  auto ok = ParseDurationMs("106751991167h");  // 3.8e17 ms: fits
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(*ok, int64_t{106751991167} * 3600000);
}

// As Flink's keyBy: a key that may be null is refused at plan time, at the key's position.
TEST(JobSpecErrorTest, NullableKeyIsRefused) {
  const std::string job = R"y(operators:
  - {id: l, type: datagen, fields: [{name: k, type: int64, expr: seq}]}
  - {id: r, type: datagen, fields: [{name: k, type: int64, expr: seq}, {name: v, type: int64, expr: seq}]}
  - id: j
    type: join
    kind: left
    ttl: 1s
    inputs: [{from: l, partition: hash, key: [k]}, {from: r, partition: hash, key: [k]}]
  - {id: by_v, type: key_by, key: KEY}
  - {id: agg, type: aggregate, aggregates: [{fn: count}]}
  - {id: out, type: print}
)y";
  EXPECT_THAT(ParseStatus(absl::StrReplaceAll(job, {{"KEY", "v"}})),
              IsJobError("job.yaml:9:35: ", "key 'v' may be null (it reads a nullable field of (left.k int64, "
                                            "right.k int64 null, v int64 null)); keys must not be null: use "
                                            "coalesce(v, <default>) or filter out is_null(v) first"));
  EXPECT_THAT(ParseStatus(absl::StrReplaceAll(job, {{"KEY", "[left.k, \"v + 1\"]"}})),
              IsJobError("job.yaml:9:44: ", "key 'v + 1' may be null"));
  EXPECT_OK(ParseStatus(absl::StrReplaceAll(job, {{"KEY", "\"coalesce(v, -1)\""}})));
  EXPECT_OK(ParseStatus(absl::StrReplaceAll(job, {{"KEY", "left.k"}})));
}

}  // namespace
}  // namespace sluice::plan
