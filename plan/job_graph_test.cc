#include "plan/job_graph.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "plan/job_spec.h"
#include "plan/test_catalog.h"

namespace sluice::plan {
namespace {

using ::testing::ElementsAre;
using ::testing::UnorderedElementsAre;

JobSpec MustParse(absl::string_view yaml) {
  auto job = ParseJobSpec(yaml, "job.yaml", TestCatalog());
  EXPECT_TRUE(job.ok()) << job.status();
  return job.ok() ? *std::move(job) : JobSpec();
}

int IndexOf(const JobSpec& job, absl::string_view id) {
  for (const auto& op : job.operators) {
    if (op.id == id) return op.index;
  }
  ADD_FAILURE() << "no operator " << id;
  return -1;
}

std::vector<std::string> VertexNames(const JobGraph& g) {
  std::vector<std::string> names;
  for (const auto& v : g.vertices) names.push_back(v.name);
  return names;
}

// Checks the cross references of a graph: ids are positions, every operator is in exactly the
// vertex vertex_of_op names, and every edge is listed by both of its ends.
void ExpectConsistent(const JobSpec& job, const JobGraph& g) {
  ASSERT_EQ(g.vertex_of_op.size(), job.operators.size());
  std::vector<int> seen(job.operators.size());
  for (size_t v = 0; v < g.vertices.size(); ++v) {
    const Vertex& vx = g.vertices[v];
    EXPECT_EQ(vx.id, static_cast<int>(v));
    ASSERT_FALSE(vx.ops.empty());
    for (int op : vx.ops) {
      seen[op]++;
      EXPECT_EQ(g.vertex_of_op[op], vx.id);
      EXPECT_EQ(job.operators[op].parallelism, vx.parallelism);
    }
    for (int e : vx.in_edges) EXPECT_EQ(g.edges[e].target_vertex, vx.id);
    for (int e : vx.out_edges) EXPECT_EQ(g.edges[e].source_vertex, vx.id);
  }
  for (int n : seen) EXPECT_EQ(n, 1);
  for (size_t e = 0; e < g.edges.size(); ++e) {
    const Edge& ed = g.edges[e];
    EXPECT_EQ(ed.id, static_cast<int>(e));
    EXPECT_EQ(g.vertices[ed.source_vertex].ops.back(), ed.source_op);
    EXPECT_EQ(g.vertices[ed.target_vertex].ops.front(), ed.target_op);
    const OperatorSpec& source = job.operators[ed.source_op];
    EXPECT_EQ(ed.schema, ed.side_output < 0 ? source.output_schema
                                            : source.side_outputs[ed.side_output].schema);
  }
}

TEST(JobGraphTest, ChainsForwardOperatorsAndSplitsAtHash) {
  JobSpec job = MustParse(R"y(parallelism: 2
operators:
  - id: gen
    type: datagen
    fields:
      - {name: user, type: string, expr: "to_string(seq % 5)"}
      - {name: amount, type: int64, expr: seq}
  - id: big
    type: filter
    where: amount > 3
  - id: by_user
    type: key_by
    key: user
  - id: totals
    type: aggregate
    aggregates: [{fn: sum, field: amount}]
  - id: out
    type: file
    path: /tmp/out
)y");
  JobGraph g = BuildJobGraph(job);
  ExpectConsistent(job, g);
  ASSERT_EQ(g.vertices.size(), 2u);
  EXPECT_THAT(VertexNames(g), ElementsAre("gen -> big -> by_user", "totals -> out"));
  EXPECT_THAT(g.vertices[0].ops,
              ElementsAre(IndexOf(job, "gen"), IndexOf(job, "big"), IndexOf(job, "by_user")));
  EXPECT_THAT(g.vertices[1].ops, ElementsAre(IndexOf(job, "totals"), IndexOf(job, "out")));
  EXPECT_EQ(g.vertices[0].parallelism, 2);
  EXPECT_EQ(g.vertices[1].parallelism, 2);
  EXPECT_THAT(g.vertex_of_op, ElementsAre(0, 0, 0, 1, 1));

  ASSERT_EQ(g.edges.size(), 1u);
  const Edge& e = g.edges[0];
  EXPECT_EQ(e.source_vertex, 0);
  EXPECT_EQ(e.target_vertex, 1);
  EXPECT_EQ(e.source_op, IndexOf(job, "by_user"));
  EXPECT_EQ(e.target_op, IndexOf(job, "totals"));
  EXPECT_EQ(e.partition, Partition::kHash);
  ASSERT_EQ(e.key.size(), 1u);
  EXPECT_EQ(e.key[0].name, "user");
  EXPECT_EQ(e.key[0].expr, "user");
  EXPECT_EQ(e.schema, Schema({{"user", FieldType::kString}, {"amount", FieldType::kInt64}}));
  EXPECT_THAT(g.vertices[0].out_edges, ElementsAre(0));
  EXPECT_TRUE(g.vertices[0].in_edges.empty());
  EXPECT_THAT(g.vertices[1].in_edges, ElementsAre(0));
  EXPECT_TRUE(g.vertices[1].out_edges.empty());
  EXPECT_EQ(g.SlotsNeeded(), 2);
}

TEST(JobGraphTest, NoChainingAcrossRebalance) {
  JobSpec job = MustParse(R"y(operators:
  - id: gen
    type: datagen
    fields: [{name: x, type: int64, expr: seq}]
  - id: out
    type: print
    input: {from: gen, partition: rebalance}
)y");
  JobGraph g = BuildJobGraph(job);
  ExpectConsistent(job, g);
  EXPECT_THAT(VertexNames(g), ElementsAre("gen", "out"));
  ASSERT_EQ(g.edges.size(), 1u);
  EXPECT_EQ(g.edges[0].partition, Partition::kRebalance);
  EXPECT_TRUE(g.edges[0].key.empty());
}

TEST(JobGraphTest, NoChainingAcrossBroadcast) {
  JobSpec job = MustParse(R"y(operators:
  - id: gen
    type: datagen
    fields: [{name: x, type: int64, expr: seq}]
  - id: out
    type: print
    input: {from: gen, partition: broadcast}
)y");
  JobGraph g = BuildJobGraph(job);
  ExpectConsistent(job, g);
  EXPECT_THAT(VertexNames(g), ElementsAre("gen", "out"));
  ASSERT_EQ(g.edges.size(), 1u);
  EXPECT_EQ(g.edges[0].partition, Partition::kBroadcast);
}

TEST(JobGraphTest, NoChainingAcrossUnequalParallelism) {
  JobSpec job = MustParse(R"y(parallelism: 3
operators:
  - id: gen
    type: datagen
    parallelism: 1
    fields: [{name: x, type: int64, expr: seq}]
  - id: f
    type: filter
    where: x > 0
  - id: m
    type: map
    fields: [x, {name: y, expr: x * 2}]
  - id: out
    type: blackhole
    parallelism: 2
)y");
  JobGraph g = BuildJobGraph(job);
  ExpectConsistent(job, g);
  EXPECT_THAT(VertexNames(g), ElementsAre("gen", "f -> m", "out"));
  EXPECT_EQ(g.vertices[0].parallelism, 1);
  EXPECT_EQ(g.vertices[1].parallelism, 3);
  EXPECT_EQ(g.vertices[2].parallelism, 2);
  ASSERT_EQ(g.edges.size(), 2u);
  EXPECT_EQ(g.edges[0].source_vertex, 0);
  EXPECT_EQ(g.edges[0].target_vertex, 1);
  EXPECT_EQ(g.edges[0].partition, Partition::kRebalance);
  EXPECT_EQ(g.edges[1].source_vertex, 1);
  EXPECT_EQ(g.edges[1].target_vertex, 2);
  EXPECT_EQ(g.edges[1].source_op, IndexOf(job, "m"));
  EXPECT_EQ(g.edges[1].partition, Partition::kRebalance);
  EXPECT_EQ(g.edges[1].schema, Schema({{"x", FieldType::kInt64}, {"y", FieldType::kInt64}}));
  EXPECT_EQ(g.SlotsNeeded(), 3);
}

TEST(JobGraphTest, NoChainingOnFanOut) {
  JobSpec job = MustParse(R"y(operators:
  - id: gen
    type: datagen
    fields: [{name: x, type: int64, expr: seq}]
  - id: evens
    type: filter
    where: x % 2 == 0
  - id: odds
    type: filter
    input: gen
    where: x % 2 == 1
  - id: out_evens
    type: print
    input: evens
  - id: out_odds
    type: blackhole
    input: odds
)y");
  JobGraph g = BuildJobGraph(job);
  ExpectConsistent(job, g);
  // gen has two consumers, so neither filter joins its chain; each filter has one consumer.
  EXPECT_THAT(VertexNames(g),
              UnorderedElementsAre("gen", "evens -> out_evens", "odds -> out_odds"));
  ASSERT_EQ(g.edges.size(), 2u);
  const int gen_v = g.vertex_of_op[IndexOf(job, "gen")];
  EXPECT_EQ(g.vertices[gen_v].out_edges.size(), 2u);
  for (const Edge& e : g.edges) {
    EXPECT_EQ(e.source_vertex, gen_v);
    EXPECT_EQ(e.source_op, IndexOf(job, "gen"));
    EXPECT_EQ(e.partition, Partition::kForward);
  }
  EXPECT_NE(g.edges[0].target_vertex, g.edges[1].target_vertex);
  EXPECT_EQ(g.SlotsNeeded(), 1);
}

TEST(JobGraphTest, UnionHasTwoInEdges) {
  JobSpec job = MustParse(R"y(parallelism: 2
operators:
  - id: a
    type: datagen
    fields: [{name: x, type: int64, expr: seq}]
  - id: b
    type: datagen
    fields: [{name: x, type: int64, expr: seq}]
  - id: both
    type: union
    inputs: [a, b]
  - id: out
    type: print
)y");
  JobGraph g = BuildJobGraph(job);
  ExpectConsistent(job, g);
  EXPECT_THAT(VertexNames(g), ElementsAre("a", "b", "both -> out"));
  ASSERT_EQ(g.edges.size(), 2u);
  const int union_v = g.vertex_of_op[IndexOf(job, "both")];
  EXPECT_EQ(g.vertex_of_op[IndexOf(job, "out")], union_v);
  EXPECT_THAT(g.vertices[union_v].in_edges, ElementsAre(0, 1));
  EXPECT_EQ(g.edges[0].source_op, IndexOf(job, "a"));
  EXPECT_EQ(g.edges[1].source_op, IndexOf(job, "b"));
  for (const Edge& e : g.edges) {
    EXPECT_EQ(e.target_vertex, union_v);
    EXPECT_EQ(e.target_op, IndexOf(job, "both"));
    EXPECT_EQ(e.partition, Partition::kForward);
  }
}

// Each edge says which input of its consumer it feeds: the position in the consumer's
// `inputs`, whatever the operators' order in the file.
TEST(JobGraphTest, EdgesKnowTheirTargetInput) {
  JobSpec job = MustParse(R"y(operators:
  - {id: a, type: datagen, fields: [{name: x, type: int64, expr: seq}]}
  - {id: b, type: datagen, fields: [{name: x, type: int64, expr: seq}]}
  - {id: both, type: union, inputs: [b, {from: a, partition: rebalance}]}
  - {id: out, type: print}
)y");
  JobGraph g = BuildJobGraph(job);
  ASSERT_EQ(g.edges.size(), 2u);
  EXPECT_EQ(g.edges[0].source_op, IndexOf(job, "b"));
  EXPECT_EQ(g.edges[0].target_input, 0);
  EXPECT_EQ(g.edges[1].source_op, IndexOf(job, "a"));
  EXPECT_EQ(g.edges[1].target_input, 1);
  EXPECT_EQ(g.edges[1].partition, Partition::kRebalance);
}

// Key groups cross a hash edge only into a keyed head whose chain keys nothing else: not into
// an operator without state, not over a forward edge, and not into a chain with a second keyed
// operator (a key_by at parallelism 1 keys the same records by another key).
TEST(JobGraphTest, KeyGroupsCrossOnlyHashEdgesIntoAKeyedHeadAlone) {
  JobSpec job = MustParse(R"y(operators:
  - {id: gen, type: datagen, fields: [{name: k, type: int64, expr: seq}, {name: ts, type: timestamp, expr: seq}]}
  - {id: by_k, type: key_by, key: [k]}
  - {id: counts, type: window, tumble: 1s, time_field: ts, aggregates: [{fn: count, as: n}]}
  - {id: by_n, type: key_by, key: [n]}
  - {id: sums, type: window, parallelism: 1, tumble: 1s, time_field: window_start, aggregates: [{fn: count, as: m}]}
  - {id: by_m, type: key_by, key: [m]}
  - {id: top, type: top_n, parallelism: 1, n: 1, order_by: m, inputs: [{from: by_m, partition: forward}]}
  - {id: by_top, type: key_by, key: [m]}
  - {id: out, type: print}
)y");
  JobGraph g = BuildJobGraph(job);
  ExpectConsistent(job, g);
  std::vector<std::pair<std::string, bool>> carried;
  for (const Edge& e : g.edges) carried.emplace_back(job.operators[e.target_op].id, e.carry_key_groups);
  EXPECT_THAT(VertexNames(g), ElementsAre("gen -> by_k", "counts -> by_n", "sums -> by_m -> top -> by_top", "out"));
  EXPECT_THAT(carried, ElementsAre(std::pair<std::string, bool>("counts", true),
                                   std::pair<std::string, bool>("sums", false),
                                   std::pair<std::string, bool>("out", false)));
}

// Nexmark q4's shape: a join hash-partitions auctions by `id` and bids by `auction`; its rows
// pass a filter and a map that keeps `id` (and `auction`), then a key_by. The planner follows
// the fields the operators copy (FieldOrigins) and plans `by_id -> top` forward, chained into
// the join's vertex, exactly when the key_by's key is a key the stream is already partitioned
// by at the same parallelism: a different key, a computed field or another parallelism still
// shuffles.
constexpr char kJoinedFields[] = "[id, category, auction, price]";
struct KeyedAfterJoin {
  std::string fields = kJoinedFields;
  std::string key = "[id]";
  int top_parallelism = 2;
};

JobSpec ParseKeyedAfterJoin(const KeyedAfterJoin& c) {
  return MustParse(absl::StrCat(R"y(parallelism: 2
operators:
  - id: auctions
    type: datagen
    fields:
      - {name: id, type: int64, expr: seq}
      - {name: category, type: int64, expr: "seq % 5"}
      - {name: ts, type: timestamp, expr: seq}
  - id: bids
    type: datagen
    fields:
      - {name: auction, type: int64, expr: "seq % 10"}
      - {name: price, type: int64, expr: seq}
      - {name: ts, type: timestamp, expr: seq}
  - id: joined
    type: interval_join
    inputs: [{from: auctions, partition: hash, key: [id]}, {from: bids, partition: hash, key: [auction]}]
    time: ts
    lower: 0s
    upper: 1s
  - {id: cheap, type: filter, where: "price < 100"}
  - {id: fields, type: map, fields: )y", c.fields, R"y(}
  - {id: by_id, type: key_by, key: )y", c.key, R"y(}
  - {id: top, type: aggregate, parallelism: )y", c.top_parallelism, R"y(, aggregates: [{fn: max, field: price}]}
  - {id: out, type: print}
)y"));
}

TEST(JobGraphTest, KeyByOfAStreamPartitionedByItsKeyStaysForward) {
  JobSpec job = ParseKeyedAfterJoin({});
  JobGraph g = BuildJobGraph(job);
  ExpectConsistent(job, g);
  EXPECT_THAT(VertexNames(g),
              UnorderedElementsAre("auctions", "bids", "joined -> cheap -> fields -> by_id -> top -> out"));
  ASSERT_EQ(g.edges.size(), 2u);
  for (const Edge& e : g.edges) {
    EXPECT_EQ(e.target_op, IndexOf(job, "joined"));
    EXPECT_EQ(e.partition, Partition::kHash);
  }
  const OperatorSpec& top = job.operators[IndexOf(job, "top")];
  EXPECT_EQ(top.inputs[0].partition, Partition::kForward);
  ASSERT_EQ(top.key.size(), 1u);
  EXPECT_EQ(top.key[0].expr, "id");
  // Field indices: the join's `id` (left) and `auction` (right), then where the map puts them.
  EXPECT_THAT(job.operators[IndexOf(job, "joined")].partitioned_by,
              UnorderedElementsAre(ElementsAre(0), ElementsAre(3)));
  EXPECT_THAT(job.operators[IndexOf(job, "fields")].partitioned_by,
              UnorderedElementsAre(ElementsAre(0), ElementsAre(2)));
  // The aggregate's key field is a copy of `id`: its output is partitioned by it too.
  EXPECT_THAT(top.partitioned_by, ElementsAre(ElementsAre(0)));

  // The right input's key, kept by the map, is one too.
  JobSpec by_auction = ParseKeyedAfterJoin({kJoinedFields, "[auction]"});
  EXPECT_EQ(by_auction.operators[IndexOf(by_auction, "top")].inputs[0].partition, Partition::kForward);
}

TEST(JobGraphTest, KeyByOfAStreamPartitionedByAnotherKeyShuffles) {
  const std::vector<KeyedAfterJoin> shuffled = {
      {kJoinedFields, "[id, category]"},  // another key
      {kJoinedFields, "[category]"},
      {kJoinedFields, "[price]"},
      {"[{name: id, expr: id + 0}, category, price]", "[id]"},  // computed, not copied
      {"[{name: id, expr: category}, price]", "[id]"},          // another field named id
      {kJoinedFields, "[id]", 3},                                // another parallelism
  };
  for (const KeyedAfterJoin& c : shuffled) {
    SCOPED_TRACE(absl::StrCat("fields ", c.fields, " key ", c.key, " p ", c.top_parallelism));
    JobSpec job = ParseKeyedAfterJoin(c);
    JobGraph g = BuildJobGraph(job);
    ExpectConsistent(job, g);
    const OperatorSpec& top = job.operators[IndexOf(job, "top")];
    EXPECT_EQ(top.inputs[0].partition, Partition::kHash);
    ASSERT_GE(g.edges.size(), 3u);
    EXPECT_EQ(g.edges[2].source_op, IndexOf(job, "by_id"));
    EXPECT_EQ(g.edges[2].target_op, IndexOf(job, "top"));
    EXPECT_EQ(g.edges[2].partition, Partition::kHash);
    EXPECT_EQ(g.vertex_of_op[IndexOf(job, "by_id")], g.vertex_of_op[IndexOf(job, "joined")]);
  }
}

// A source's stream is partitioned by no key, and an aggregate's only by its key: a second
// key_by of the same key after an aggregate by it needs no exchange, one by an aggregated
// field does. An explicit `partition: forward` from a
// key_by whose input is not partitioned by its key is still refused.
TEST(JobGraphTest, OnlyKeysThatTravelWithTheRecordsKeepAnEdgeForward) {
  JobSpec job = MustParse(R"y(parallelism: 2
operators:
  - {id: gen, type: datagen, fields: [{name: k, type: int64, expr: "seq % 7"}, {name: v, type: int64, expr: seq}]}
  - {id: by_k, type: key_by, key: [k]}
  - {id: sums, type: aggregate, aggregates: [{fn: sum, field: v, as: total}]}
  - {id: again, type: key_by, key: [k]}
  - {id: counts, type: aggregate, aggregates: [{fn: count, as: n}]}
  - {id: by_n, type: key_by, key: [n]}
  - {id: tops, type: aggregate, aggregates: [{fn: count, as: m}]}
  - {id: out, type: print}
)y");
  JobGraph g = BuildJobGraph(job);
  ExpectConsistent(job, g);
  EXPECT_THAT(VertexNames(g), ElementsAre("gen -> by_k", "sums -> again -> counts -> by_n",
                                          "tops -> out"));
  EXPECT_EQ(job.operators[IndexOf(job, "sums")].inputs[0].partition, Partition::kHash);
  EXPECT_EQ(job.operators[IndexOf(job, "counts")].inputs[0].partition, Partition::kForward);
  EXPECT_EQ(job.operators[IndexOf(job, "tops")].inputs[0].partition, Partition::kHash);

  auto refused = ParseJobSpec(R"y(parallelism: 2
operators:
  - {id: gen, type: datagen, fields: [{name: k, type: int64, expr: "seq % 7"}]}
  - {id: by_k, type: key_by, key: [k]}
  - {id: counts, type: aggregate, inputs: [{from: by_k, partition: forward}], aggregates: [{fn: count}]}
  - {id: out, type: print}
)y", "job.yaml", TestCatalog());
  EXPECT_THAT(refused.status(),
              testing::StatusIs(absl::StatusCode::kInvalidArgument,
                       ::testing::HasSubstr("job.yaml:5:44: aggregate 'counts' reads from key_by 'by_k' "
                                            "with partition: forward, which splits keys across "
                                            "subtasks; use partition: hash")));
}

TEST(JobGraphTest, SlotsNeededIsMaxParallelism) {
  JobSpec job = MustParse(R"y(parallelism: 2
operators:
  - id: gen
    type: datagen
    parallelism: 1
    fields: [{name: x, type: int64, expr: seq}]
  - id: k
    type: key_by
    key: x
    parallelism: 5
  - id: agg
    type: aggregate
    parallelism: 3
    aggregates: [{fn: count}]
  - id: out
    type: print
)y");
  JobGraph g = BuildJobGraph(job);
  ExpectConsistent(job, g);
  EXPECT_THAT(VertexNames(g), ElementsAre("gen", "k", "agg", "out"));
  EXPECT_EQ(g.SlotsNeeded(), 5);
  EXPECT_EQ(JobGraph().SlotsNeeded(), 0);
}

TEST(JobGraphTest, IsDeterministic) {
  constexpr char kJob[] = R"y(parallelism: 2
operators:
  - {id: a, type: datagen, fields: [{name: x, type: int64, expr: seq}]}
  - {id: b, type: datagen, fields: [{name: x, type: int64, expr: seq}]}
  - {id: u, type: union, inputs: [a, b]}
  - {id: k, type: key_by, key: x}
  - {id: agg, type: aggregate, aggregates: [{fn: count}]}
  - {id: out, type: print}
)y";
  JobGraph g1 = BuildJobGraph(MustParse(kJob));
  JobGraph g2 = BuildJobGraph(MustParse(kJob));
  EXPECT_EQ(VertexNames(g1), VertexNames(g2));
  EXPECT_EQ(g1.vertex_of_op, g2.vertex_of_op);
  ASSERT_EQ(g1.edges.size(), g2.edges.size());
  for (size_t i = 0; i < g1.edges.size(); ++i) {
    EXPECT_EQ(g1.edges[i].source_op, g2.edges[i].source_op);
    EXPECT_EQ(g1.edges[i].target_op, g2.edges[i].target_op);
    EXPECT_EQ(g1.edges[i].partition, g2.edges[i].partition);
  }
}

TEST(EdgeTest, Connects) {
  Edge forward;
  forward.partition = Partition::kForward;
  EXPECT_TRUE(forward.Connects(1, 1));
  EXPECT_FALSE(forward.Connects(0, 1));
  for (Partition p : {Partition::kHash, Partition::kRebalance, Partition::kBroadcast}) {
    Edge e;
    e.partition = p;
    EXPECT_TRUE(e.Connects(0, 1)) << PartitionName(p);
    EXPECT_TRUE(e.Connects(1, 1)) << PartitionName(p);
  }
}

TEST(PartitionTest, Names) {
  EXPECT_EQ(PartitionName(Partition::kForward), "forward");
  EXPECT_EQ(PartitionName(Partition::kHash), "hash");
  EXPECT_EQ(PartitionName(Partition::kRebalance), "rebalance");
  EXPECT_EQ(PartitionName(Partition::kBroadcast), "broadcast");
}

}  // namespace
}  // namespace sluice::plan

namespace sluice::plan {
namespace {

// A side output gets its own edge, with the side output's schema; its reader never chains to
// the producer, and the producer (having two consumers) ends its chain.
TEST(JobGraphTest, SideOutputEdges) {
  JobSpec job = MustParse(R"y(operators:
  - {id: gen, type: datagen, fields: [{name: user, type: int64, expr: seq}]}
  - {id: k, type: key_by, key: user}
  - {id: w, type: window, tumble: 1s, time_field: user, late_output: late, aggregates: [{fn: count}]}
  - {id: f, type: filter, where: count > 1}
  - {id: out, type: print}
  - {id: late_out, type: print, input: w.late}
)y");
  JobGraph g = BuildJobGraph(job);
  ExpectConsistent(job, g);
  EXPECT_THAT(VertexNames(g), UnorderedElementsAre("gen -> k", "w", "f -> out", "late_out"));
  const int w = IndexOf(job, "w");
  std::vector<std::pair<int, std::string>> from_w;
  for (const Edge& e : g.edges) {
    if (e.source_op != w) continue;
    from_w.push_back({e.side_output, e.schema.ToString()});
    EXPECT_EQ(e.partition, Partition::kForward);
  }
  EXPECT_THAT(from_w, UnorderedElementsAre(
                          std::pair<int, std::string>{-1, "(user int64, window_start timestamp, "
                                                          "window_end timestamp, count int64, "
                                                          "update bool)"},
                          std::pair<int, std::string>{0, "(user int64)"}));
  // Only the side output read: still no chaining.
  JobSpec only_side = MustParse(R"y(operators:
  - {id: gen, type: datagen, fields: [{name: user, type: int64, expr: seq}]}
  - {id: k, type: key_by, key: user}
  - {id: w, type: window, tumble: 1s, time_field: user, late_output: late, aggregates: [{fn: count}]}
  - {id: late_out, type: print, input: w.late}
)y");
  EXPECT_THAT(VertexNames(BuildJobGraph(only_side)), UnorderedElementsAre("gen -> k", "w", "late_out"));
}

}  // namespace
}  // namespace sluice::plan
