#include "plan/plan_codec.h"

#include <functional>
#include <string>

#include "common/status.h"
#include "common/status_matchers.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "operators/aggregate_options.h"
#include "operators/datagen_options.h"
#include "operators/filter_options.h"
#include "plan/test_catalog.h"

namespace sluice::plan {
namespace {

using ::sluice::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

// Every planner feature a plan carries: job settings, plugins, two sources into a union,
// explicit hash/rebalance/broadcast edges, a chain, a key_by feeding a keyed aggregate.
constexpr char kJob[] = R"y(name: shipped
parallelism: 2
max_parallelism: 64
buffer_timeout_ms: 25
watermark_interval: 150ms
checkpoint: {interval: 1s, timeout: 30s, min_pause: 100ms, retain: 2, tolerable_failures: 1, mode: auto, aligned_timeout: 250ms}
restart: {strategy: exponential_backoff, attempts: 5, initial_delay: 50ms, max_delay: 2s, slot_wait_timeout: 9s}
plugins: [/opt/plugins/libnone.so]
operators:
  - id: a
    type: datagen
    count: 100
    rate: 1000
    fields:
      - {name: k, type: int64, expr: seq % 10}
      - {name: amount, type: double, expr: seq / 2.0}
  - id: b
    type: datagen
    parallelism: 1
    count: 5
    fields: [{name: k, type: int64, expr: seq}, {name: amount, type: double, expr: "seq * 1.5"}]
  - id: both
    type: union
    inputs: [a, {from: b, partition: rebalance}]
  - id: f
    type: filter
    where: "amount > 10 && k != 3"
  - id: by_k
    type: key_by
    key: [k, {name: parity, expr: k % 2 == 0}]
  - id: totals
    type: aggregate
    parallelism: 3
    aggregates: [{fn: count}, {fn: sum, field: amount, as: total}]
  - id: spread
    type: map
    input: {from: totals, partition: hash, key: k}
    fields: [k, count]
  - id: out
    type: blackhole
    inputs: [{from: spread, partition: broadcast}]
)y";

PlannedJob Plan(absl::string_view yaml) {
  absl::StatusOr<JobSpec> spec = ParseJobSpec(yaml, "job.yaml", TestCatalog());
  EXPECT_TRUE(spec.ok()) << spec.status();
  if (!spec.ok()) return PlannedJob();
  PlannedJob planned;
  planned.graph = BuildJobGraph(*spec);
  planned.spec = *std::move(spec);
  return planned;
}

// What the worker does with a plan: decode it, then parse the options with its catalog.
absl::StatusOr<PlannedJob> Deploy(const proto::JobPlan& plan) {
  SLUICE_ASSIGN_OR_RETURN(PlannedJob job, DecodeJobPlan(plan));
  SLUICE_RETURN_IF_ERROR(ParsePlannedOptions(TestCatalog(), &job.spec));
  return job;
}

void ExpectSameKey(const std::vector<KeySpec>& a, const std::vector<KeySpec>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].name, b[i].name);
    EXPECT_EQ(a[i].expr, b[i].expr);
  }
}

void ExpectSameJob(const PlannedJob& want, const PlannedJob& got) {
  const JobSpec& a = want.spec;
  const JobSpec& b = got.spec;
  EXPECT_EQ(a.name, b.name);
  EXPECT_EQ(a.source_name, b.source_name);
  EXPECT_EQ(a.parallelism, b.parallelism);
  EXPECT_EQ(a.max_parallelism, b.max_parallelism);
  EXPECT_EQ(a.buffer_timeout_ms, b.buffer_timeout_ms);
  EXPECT_EQ(a.watermark_interval_ms, b.watermark_interval_ms);
  EXPECT_EQ(a.checkpoint.interval_ms, b.checkpoint.interval_ms);
  EXPECT_EQ(a.checkpoint.timeout_ms, b.checkpoint.timeout_ms);
  EXPECT_EQ(a.checkpoint.min_pause_ms, b.checkpoint.min_pause_ms);
  EXPECT_EQ(a.checkpoint.retain, b.checkpoint.retain);
  EXPECT_EQ(a.checkpoint.tolerable_failures, b.checkpoint.tolerable_failures);
  EXPECT_EQ(a.checkpoint.mode, b.checkpoint.mode);
  EXPECT_EQ(a.checkpoint.aligned_timeout_ms, b.checkpoint.aligned_timeout_ms);
  EXPECT_EQ(a.restart.strategy, b.restart.strategy);
  EXPECT_EQ(a.restart.attempts, b.restart.attempts);
  EXPECT_EQ(a.restart.delay_ms, b.restart.delay_ms);
  EXPECT_EQ(a.restart.max_delay_ms, b.restart.max_delay_ms);
  EXPECT_EQ(a.restart.slot_wait_timeout_ms, b.restart.slot_wait_timeout_ms);
  ASSERT_EQ(a.plugins.size(), b.plugins.size());
  for (size_t i = 0; i < a.plugins.size(); ++i) {
    EXPECT_EQ(a.plugins[i].path, b.plugins[i].path);
    EXPECT_EQ(a.plugins[i].line, b.plugins[i].line);
    EXPECT_EQ(a.plugins[i].column, b.plugins[i].column);
  }
  ASSERT_EQ(a.operators.size(), b.operators.size());
  for (size_t i = 0; i < a.operators.size(); ++i) {
    const OperatorSpec& x = a.operators[i];
    const OperatorSpec& y = b.operators[i];
    SCOPED_TRACE(x.id);
    EXPECT_EQ(x.id, y.id);
    EXPECT_EQ(x.type, y.type);
    EXPECT_EQ(x.arity, y.arity);
    EXPECT_EQ(x.has_output, y.has_output);
    EXPECT_EQ(x.keyed, y.keyed);
    EXPECT_EQ(x.keys_output, y.keys_output);
    EXPECT_EQ(x.index, y.index);
    EXPECT_EQ(x.parallelism, y.parallelism);
    EXPECT_EQ(x.line, y.line);
    EXPECT_EQ(x.column, y.column);
    EXPECT_EQ(x.input_schema, y.input_schema);
    EXPECT_EQ(x.output_schema, y.output_schema);
    ExpectSameKey(x.key, y.key);
    ASSERT_EQ(x.side_outputs.size(), y.side_outputs.size());
    for (size_t k = 0; k < x.side_outputs.size(); ++k) {
      EXPECT_EQ(x.side_outputs[k].name, y.side_outputs[k].name);
      EXPECT_EQ(x.side_outputs[k].schema, y.side_outputs[k].schema);
    }
    EXPECT_EQ(x.options_yaml, y.options_yaml);
    ASSERT_NE(y.options, nullptr);
    ASSERT_EQ(x.inputs.size(), y.inputs.size());
    for (size_t k = 0; k < x.inputs.size(); ++k) {
      EXPECT_EQ(x.inputs[k].from, y.inputs[k].from);
      EXPECT_EQ(x.inputs[k].from_index, y.inputs[k].from_index);
      EXPECT_EQ(x.inputs[k].partition, y.inputs[k].partition);
      EXPECT_EQ(x.inputs[k].explicit_partition, y.inputs[k].explicit_partition);
      EXPECT_EQ(x.inputs[k].line, y.inputs[k].line);
      EXPECT_EQ(x.inputs[k].column, y.inputs[k].column);
      EXPECT_EQ(x.inputs[k].side_output, y.inputs[k].side_output);
      EXPECT_EQ(x.inputs[k].side_output_index, y.inputs[k].side_output_index);
      ExpectSameKey(x.inputs[k].key, y.inputs[k].key);
    }
  }
  const JobGraph& g = want.graph;
  const JobGraph& h = got.graph;
  EXPECT_EQ(g.vertex_of_op, h.vertex_of_op);
  ASSERT_EQ(g.vertices.size(), h.vertices.size());
  for (size_t v = 0; v < g.vertices.size(); ++v) {
    EXPECT_EQ(g.vertices[v].id, h.vertices[v].id);
    EXPECT_EQ(g.vertices[v].ops, h.vertices[v].ops);
    EXPECT_EQ(g.vertices[v].parallelism, h.vertices[v].parallelism);
    EXPECT_EQ(g.vertices[v].name, h.vertices[v].name);
    EXPECT_EQ(g.vertices[v].in_edges, h.vertices[v].in_edges);
    EXPECT_EQ(g.vertices[v].out_edges, h.vertices[v].out_edges);
  }
  ASSERT_EQ(g.edges.size(), h.edges.size());
  for (size_t e = 0; e < g.edges.size(); ++e) {
    EXPECT_EQ(g.edges[e].id, h.edges[e].id);
    EXPECT_EQ(g.edges[e].source_vertex, h.edges[e].source_vertex);
    EXPECT_EQ(g.edges[e].target_vertex, h.edges[e].target_vertex);
    EXPECT_EQ(g.edges[e].source_op, h.edges[e].source_op);
    EXPECT_EQ(g.edges[e].target_op, h.edges[e].target_op);
    EXPECT_EQ(g.edges[e].target_input, h.edges[e].target_input);
    EXPECT_EQ(g.edges[e].partition, h.edges[e].partition);
    EXPECT_EQ(g.edges[e].schema, h.edges[e].schema);
    EXPECT_EQ(g.edges[e].side_output, h.edges[e].side_output);
    EXPECT_EQ(g.edges[e].carry_key_groups, h.edges[e].carry_key_groups);
    ExpectSameKey(g.edges[e].key, h.edges[e].key);
  }
}

const OperatorSpec& Op(const JobSpec& job, absl::string_view id) {
  for (const OperatorSpec& op : job.operators) {
    if (op.id == id) return op;
  }
  ADD_FAILURE() << "no operator " << id;
  return job.operators.front();
}

int OpIndex(const proto::JobPlan& plan, absl::string_view id) {
  for (int i = 0; i < plan.operators_size(); ++i) {
    if (plan.operators(i).id() == id) return i;
  }
  ADD_FAILURE() << "no operator " << id;
  return 0;
}

TEST(PlanCodecTest, RoundTripEqualsThePlan) {
  const PlannedJob planned = Plan(kJob);
  ASSERT_EQ(planned.spec.operators.size(), 8u);
  const proto::JobPlan plan = EncodeJobPlan(planned.spec, planned.graph);
  EXPECT_EQ(plan.format_version(), kJobPlanFormatVersion);
  // Through bytes, as it travels.
  proto::JobPlan received;
  ASSERT_TRUE(received.ParseFromString(plan.SerializeAsString()));
  absl::StatusOr<PlannedJob> deployed = Deploy(received);
  ASSERT_OK(deployed);
  ExpectSameJob(planned, *deployed);
  // The hash edge into the aggregate carries key groups (derived from the operators again).
  const JobGraph& g = deployed->graph;
  const int totals = g.vertex_of_op[Op(deployed->spec, "totals").index];
  EXPECT_TRUE(g.edges[g.vertices[totals].in_edges[0]].carry_key_groups);
  EXPECT_EQ(deployed->spec.checkpoint.aligned_timeout_ms, 250);
  // Encoding the decoded plan again gives the same message.
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(
      plan, EncodeJobPlan(deployed->spec, deployed->graph)));
  // The options structs the worker's parser made are the submission's.
  const auto* gen = Op(deployed->spec, "a").options_as<ops::DatagenOptions>();
  ASSERT_NE(gen, nullptr);
  EXPECT_EQ(gen->count, 100);
  EXPECT_EQ(gen->rate, 1000);
  ASSERT_EQ(gen->fields.size(), 2u);
  EXPECT_EQ(gen->fields[1].name, "amount");
  EXPECT_EQ(gen->fields[1].expr, "seq / 2.0");
  const auto* filter = Op(deployed->spec, "f").options_as<ops::FilterOptions>();
  ASSERT_NE(filter, nullptr);
  EXPECT_EQ(filter->where, "amount > 10 && k != 3");
  EXPECT_NE(Op(deployed->spec, "totals").options_as<ops::AggregateOptions>(), nullptr);
  // The options text is the operator's own mapping, nothing the planner reads itself.
  EXPECT_EQ(Op(planned.spec, "f").options_yaml, "where: amount > 10 && k != 3");
  EXPECT_EQ(Op(planned.spec, "both").options_yaml, "{}");
}

// A window whose late records two operators read: the side output, its schema and the edges that
// carry it survive the trip, and a plan naming a side output its producer lacks is refused.
TEST(PlanCodecTest, SideOutputsTravelWithThePlan) {
  const PlannedJob planned = Plan(R"y(operators:
  - id: gen
    type: datagen
    fields: [{name: user, type: int64, expr: seq % 3}, {name: ts, type: timestamp, expr: seq}]
  - {id: k, type: key_by, key: user}
  - {id: w, type: window, tumble: 1s, time_field: ts, late_output: late, aggregates: [{fn: count, as: n}]}
  - {id: out, type: print, input: w}
  - {id: late_out, type: blackhole, input: w.late}
  - {id: late_filter, type: filter, where: user > 0, input: {from: w.late, partition: rebalance}}
  - {id: hole, type: blackhole}
)y");
  const proto::JobPlan plan = EncodeJobPlan(planned.spec, planned.graph);
  absl::StatusOr<PlannedJob> deployed = Deploy(plan);
  ASSERT_OK(deployed);
  ExpectSameJob(planned, *deployed);
  const OperatorSpec& late = Op(deployed->spec, "late_out");
  EXPECT_EQ(late.input_schema.ToString(), "(user int64, ts timestamp)");
  int side_edges = 0;
  for (const Edge& e : deployed->graph.edges) {
    if (e.side_output != 0) continue;
    ++side_edges;
    EXPECT_EQ(e.schema.ToString(), "(user int64, ts timestamp)");
  }
  EXPECT_EQ(side_edges, 2);

  proto::JobPlan bad = plan;
  bad.mutable_operators(OpIndex(bad, "late_out"))->mutable_inputs(0)->set_side_output("early");
  EXPECT_THAT(DecodeJobPlan(bad).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("'w' has no side output 'early'")));
  // A worker whose window type would declare no side output for these options refuses.
  bad = plan;
  bad.mutable_operators(OpIndex(bad, "w"))->mutable_side_outputs(0)->set_name("later");
  bad.mutable_operators(OpIndex(bad, "late_out"))->mutable_inputs(0)->set_side_output("later");
  bad.mutable_operators(OpIndex(bad, "late_filter"))->mutable_inputs(0)->set_side_output("later");
  EXPECT_THAT(Deploy(bad).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("declares other side outputs on this worker than the plan's")));
}

// An outer join pads one side with nulls: its nullable fields keep their nullability in the
// plan, so the worker's own schema inference agrees with it.
TEST(PlanCodecTest, NullableFieldsTravelWithThePlan) {
  const PlannedJob planned = Plan(R"y(operators:
  - id: a
    type: datagen
    fields: [{name: user, type: int64, expr: seq % 3}]
  - id: b
    type: datagen
    fields: [{name: id, type: int64, expr: seq % 3}, {name: name, type: string, expr: "'x'"}]
  - id: j
    type: join
    inputs: [{from: a, partition: hash, key: [user]}, {from: b, partition: hash, key: [id]}]
    kind: left
    ttl: 1s
  - {id: out, type: print}
)y");
  EXPECT_EQ(Op(planned.spec, "j").output_schema.ToString(), "(user int64, id int64 null, name string null)");
  absl::StatusOr<PlannedJob> deployed = Deploy(EncodeJobPlan(planned.spec, planned.graph));
  ASSERT_OK(deployed);
  ExpectSameJob(planned, *deployed);
  EXPECT_EQ(Op(deployed->spec, "j").output_schema, Op(planned.spec, "j").output_schema);
  EXPECT_EQ(Op(deployed->spec, "out").input_schema, Op(planned.spec, "j").output_schema);
}

TEST(PlanCodecTest, ScalarsThatNeedQuotingSurviveTheOptionsText) {
  const PlannedJob planned = Plan(R"y(operators:
  - id: gen
    type: datagen
    count: 3
    fields:
      - {name: s, type: string, expr: "'héllo # ' + to_string(seq)"}
      - {name: t, type: string, expr: "'yes'"}
      - {name: u, type: string, expr: "'a: b, [c] {d} & *e'"}
  - id: f
    type: filter
    where: |
      s != 'a: b'
        && t == 'yes'
  - {id: out, type: print}
)y");
  absl::StatusOr<PlannedJob> deployed = Deploy(EncodeJobPlan(planned.spec, planned.graph));
  ASSERT_OK(deployed);
  const auto* want = Op(planned.spec, "gen").options_as<ops::DatagenOptions>();
  const auto* got = Op(deployed->spec, "gen").options_as<ops::DatagenOptions>();
  ASSERT_NE(want, nullptr);
  ASSERT_NE(got, nullptr);
  ASSERT_EQ(got->fields.size(), 3u);
  EXPECT_EQ(want->fields[0].expr, "'h\xc3\xa9llo # ' + to_string(seq)");
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(got->fields[i].expr, want->fields[i].expr);
  EXPECT_EQ(Op(deployed->spec, "f").options_as<ops::FilterOptions>()->where,
            "s != 'a: b'\n  && t == 'yes'\n");
}

TEST(PlanCodecTest, DecodedPlanWithoutCatalogHasStructureButNoOptions) {
  const PlannedJob planned = Plan(kJob);
  absl::StatusOr<PlannedJob> decoded = DecodeJobPlan(EncodeJobPlan(planned.spec, planned.graph));
  ASSERT_OK(decoded);
  EXPECT_EQ(decoded->graph.vertices.size(), planned.graph.vertices.size());
  for (const OperatorSpec& op : decoded->spec.operators) EXPECT_EQ(op.options, nullptr) << op.id;
}

TEST(PlanCodecTest, WorkerRefusesUnknownOperatorTypeNamingTheOperator) {
  const PlannedJob planned = Plan(kJob);
  proto::JobPlan plan = EncodeJobPlan(planned.spec, planned.graph);
  plan.mutable_operators(OpIndex(plan, "f"))->set_type("fitler");
  const OperatorSpec& f = Op(planned.spec, "f");
  EXPECT_THAT(Deploy(plan).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr(absl::StrCat("job.yaml:", f.line, ":", f.column,
                                                    ": operator 'f' (fitler): unknown operator type "
                                                    "'fitler' on this worker (known: datagen")))));
}

TEST(PlanCodecTest, WorkerRefusesBadOptionWithOperatorAndReason) {
  const PlannedJob planned = Plan(kJob);
  proto::JobPlan plan = EncodeJobPlan(planned.spec, planned.graph);
  plan.mutable_operators(OpIndex(plan, "f"))->set_options_yaml("where: nosuch > 1");
  EXPECT_THAT(Deploy(plan).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("operator 'f' (filter): options refused by this worker: "
                                       "options of operator 'f':1:8: "),
                             HasSubstr("nosuch"))));
  plan.mutable_operators(OpIndex(plan, "f"))->set_options_yaml("wher: k > 1");
  EXPECT_THAT(Deploy(plan).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("operator 'f' (filter): options refused by this worker: options of "
                                 "operator 'f':1:1: unknown option 'wher' for filter operator 'f' "
                                 "(expected where)")));
  plan.mutable_operators(OpIndex(plan, "f"))->set_options_yaml("[where");
  EXPECT_THAT(Deploy(plan).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("operator 'f' (filter): options are not YAML")));
  // Options that parse but mean something else than at submission (another schema).
  plan = EncodeJobPlan(planned.spec, planned.graph);
  plan.mutable_operators(OpIndex(plan, "spread"))->set_options_yaml("fields: [k]");
  EXPECT_THAT(Deploy(plan).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("operator 'spread' (map): its type infers the output schema (k int64) "
                                 "on this worker, the plan says (k int64, count int64)")));
}

TEST(PlanCodecTest, WorkerRefusesTraitsThatDifferFromItsType) {
  const PlannedJob planned = Plan(kJob);
  proto::JobPlan plan = EncodeJobPlan(planned.spec, planned.graph);
  plan.mutable_operators(OpIndex(plan, "totals"))->set_keyed(false);
  EXPECT_THAT(Deploy(plan).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("operator 'totals' (aggregate): this worker's version of the type "
                                 "differs from the coordinator's")));
}

TEST(PlanCodecTest, NewerFormatIsRefused) {
  const PlannedJob planned = Plan(kJob);
  proto::JobPlan plan = EncodeJobPlan(planned.spec, planned.graph);
  plan.set_format_version(kJobPlanFormatVersion + 1);
  EXPECT_THAT(DecodeJobPlan(plan).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr(absl::StrCat("job plan format version ", kJobPlanFormatVersion + 1,
                                              " is newer than this worker's (", kJobPlanFormatVersion,
                                              "): upgrade the worker"))));
  plan.set_format_version(0);
  EXPECT_THAT(DecodeJobPlan(plan).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("the deployment carries no job plan (format version 0)")));
}

TEST(PlanCodecTest, InconsistentPlansAreRefusedNotIndexed) {
  const PlannedJob planned = Plan(kJob);
  const proto::JobPlan good = EncodeJobPlan(planned.spec, planned.graph);
  const int f = OpIndex(good, "f");
  struct Case {
    const char* name;
    std::function<void(proto::JobPlan*)> change;
    const char* error;
  };
  const Case cases[] = {
      {"input from a later operator",
       [f](proto::JobPlan* p) { p->mutable_operators(f)->mutable_inputs(0)->set_from(f + 1); },
       "input 0: reads from operator"},
      {"input out of range",
       [f](proto::JobPlan* p) { p->mutable_operators(f)->mutable_inputs(0)->set_from(-1); },
       "reads from operator -1, not an earlier one"},
      {"unknown field type",
       [f](proto::JobPlan* p) {
         p->mutable_operators(f)->mutable_output_schema()->mutable_fields(0)->set_type("decimal");
       },
       "field 'k' has unknown type 'decimal'"},
      {"unknown partitioning",
       [f](proto::JobPlan* p) {
         p->mutable_operators(f)->mutable_inputs(0)->set_partition(static_cast<proto::PlanPartition>(9));
       },
       "unknown partitioning 9"},
      {"parallelism above max",
       [f](proto::JobPlan* p) { p->mutable_operators(f)->set_parallelism(65); },
       "parallelism 65 outside 1..64"},
      {"edge to a missing vertex",
       [](proto::JobPlan* p) { p->mutable_edges(0)->set_target_vertex(99); },
       "edge 0: vertex out of range"},
      {"operator in two vertices",
       [](proto::JobPlan* p) { p->mutable_vertices(1)->add_ops(p->vertices(0).ops(0)); },
       "is out of range or in two vertices"},
      {"edge missing",
       [](proto::JobPlan* p) { p->mutable_edges()->RemoveLast(); },
       "has no edge"},
      {"no operators", [](proto::JobPlan* p) { p->clear_operators(); }, "no operators"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    proto::JobPlan plan = good;
    c.change(&plan);
    EXPECT_THAT(DecodeJobPlan(plan).status(),
                StatusIs(absl::StatusCode::kFailedPrecondition,
                         AllOf(HasSubstr("invalid job plan: "), HasSubstr(c.error))));
  }
}

}  // namespace
}  // namespace sluice::plan
