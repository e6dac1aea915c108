#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "common/clock.h"
#include "common/key_groups.h"
#include "common/record.h"
#include "common/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "operators/key_hasher.h"
#include "operators/operator.h"
#include "operators/registry.h"
#include "state/keyed_state_backend.h"
#include "plan/job_spec.h"

namespace sluice::ops {
namespace {

using ::sluice::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Copies every emitted record (the operators reuse theirs).
class CollectingOutput final : public Output {
 public:
  absl::Status Emit(const Record& record) override {
    records.push_back(record);
    return absl::OkStatus();
  }
  std::vector<Record> records;
};

// An output whose Emit fails, as when the task is being cancelled.
class FailingOutput final : public Output {
 public:
  absl::Status Emit(const Record&) override { return absl::CancelledError("task cancelled"); }
};

class OperatorsTest : public ::testing::Test {
 protected:
  std::vector<std::unique_ptr<state::KeyedStateBackend>> backends_;
  OperatorsTest() { RegisterBuiltinOperators(&registry_); }

  // Parses `yaml` as the job the operators under test belong to.
  void Load(const std::string& yaml) {
    auto job = plan::ParseJobSpec(yaml, "job.yaml");
    ASSERT_OK(job);
    job_ = *std::move(job);
  }

  const plan::OperatorSpec& Spec(absl::string_view id) const {
    for (const auto& op : job_.operators) {
      if (op.id == id) return op;
    }
    ADD_FAILURE() << "no operator " << id;
    return job_.operators.front();
  }

  // Creates and opens operator `id` of the loaded job as subtask `subtask` of `parallelism`.
  absl::StatusOr<std::unique_ptr<Operator>> Open(absl::string_view id, int subtask = 0,
                                                 int parallelism = 1, Output* output = nullptr) {
    const plan::OperatorSpec& spec = Spec(id);
    auto op = registry_.Create(spec);
    if (!op.ok()) return op.status();
    OperatorContext ctx;
    ctx.job = &job_;
    ctx.spec = &spec;
    ctx.job_id = "job-1";
    ctx.subtask = subtask;
    ctx.parallelism = parallelism;
    ctx.clock = &clock_;
    ctx.task_name = absl::StrCat("job-1/", spec.id, "#", subtask);
    ctx.max_parallelism = job_.max_parallelism;
    if ((*op)->IsKeyed()) {
      // A real RocksDB backend in a temp dir, covering this subtask's key groups.
      state::StateBackendOptions o;
      o.local_dir = absl::StrCat(::testing::TempDir(), "/sluice-ops-", getpid(), "-", backends_.size());
      o.operator_id = spec.id;
      o.max_parallelism = job_.max_parallelism;
      o.range = KeyGroupRangeForSubtask(job_.max_parallelism, parallelism, subtask);
      o.clock = &clock_;
      auto backend = state::KeyedStateBackend::Open(o);
      if (!backend.ok()) return backend.status();
      ctx.keyed_state = backend->get();
      backends_.push_back(std::move(*backend));
    }
    absl::Status s = (*op)->Open(ctx, output != nullptr ? output : &out_);
    if (!s.ok()) return s;
    return op;
  }

  absl::StatusOr<std::unique_ptr<SourceOperator>> OpenSource(absl::string_view id, int subtask = 0,
                                                             int parallelism = 1) {
    auto op = Open(id, subtask, parallelism);
    if (!op.ok()) return op.status();
    auto* source = dynamic_cast<SourceOperator*>(op->get());
    if (source == nullptr) return absl::InternalError(absl::StrCat(id, " is not a source"));
    op->release();
    return std::unique_ptr<SourceOperator>(source);
  }

  // The int64 value `field` of every collected record.
  std::vector<int64_t> Ints(size_t field) const {
    std::vector<int64_t> v;
    for (const auto& r : out_.records) v.push_back(r.GetInt(field));
    return v;
  }

  OperatorRegistry registry_;
  FakeClock clock_;
  plan::JobSpec job_;
  CollectingOutput out_;
};

// ---------------------------------------------------------------------------------------------
// Registry

TEST_F(OperatorsTest, RegistryKnowsEveryBuiltinType) {
  Load(R"y(operators:
  - {id: gen, type: datagen, fields: [{name: x, type: int64, expr: seq}]}
  - {id: f, type: filter, where: x > 0}
  - {id: m, type: map, fields: [x]}
  - {id: k, type: key_by, key: x}
  - {id: agg, type: aggregate, aggregates: [{fn: count}]}
  - {id: g2, type: datagen, fields: [{name: x, type: int64, expr: seq}]}
  - {id: u, type: union, inputs: [m, g2]}
  - {id: file_out, type: file, path: /unused, input: u}
  - {id: print_out, type: print, input: u}
  - {id: hole, type: blackhole, input: u}
)y");
  for (const auto& spec : job_.operators) {
    auto op = registry_.Create(spec);
    ASSERT_OK(op) << spec.type;
    EXPECT_NE(*op, nullptr);
  }
}

TEST_F(OperatorsTest, RegistryRejectsUnknownAndDuplicateTypes) {
  plan::OperatorSpec spec;
  spec.type = "sort";
  EXPECT_THAT(registry_.Create(spec),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("no operator type 'sort'")));
  EXPECT_THAT(registry_.Register("filter", [](const plan::OperatorSpec&) {
    return std::unique_ptr<Operator>();
  }),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("'filter' already registered")));
  EXPECT_OK(registry_.Register("sort", [](const plan::OperatorSpec&) {
    return std::unique_ptr<Operator>();
  }));
  EXPECT_OK(registry_.Create(spec));
}

// ---------------------------------------------------------------------------------------------
// datagen

constexpr char kDatagenJob[] = R"y(operators:
  - id: gen
    type: datagen
    count: 6
    fields:
      - {name: id, type: int64, expr: seq}
      - {name: sq, type: int64, expr: seq * seq}
      - {name: name, type: string, expr: "'n' + to_string(seq)"}
      - {name: even, type: bool, expr: seq % 2 == 0}
      - {name: half, type: double, expr: seq / 2.0}
      - {name: as_double, type: double, expr: seq}
  - id: out
    type: blackhole
)y";

TEST_F(OperatorsTest, DatagenBoundedProducesSeqDerivedValues) {
  Load(kDatagenJob);
  auto gen = OpenSource("gen");
  ASSERT_OK(gen);
  int64_t wake = -1;
  auto state = (*gen)->Poll(4, &wake);
  ASSERT_OK(state);
  EXPECT_EQ(*state, SourceOperator::State::kMore);
  EXPECT_EQ(out_.records.size(), 4u);
  state = (*gen)->Poll(100, &wake);
  ASSERT_OK(state);
  EXPECT_EQ(*state, SourceOperator::State::kEnd);
  ASSERT_EQ(out_.records.size(), 6u);
  for (int64_t seq = 0; seq < 6; ++seq) {
    const Record& r = out_.records[seq];
    ASSERT_EQ(r.size(), 6u);
    EXPECT_EQ(r.GetInt(0), seq);
    EXPECT_EQ(r.GetInt(1), seq * seq);
    EXPECT_EQ(r.GetString(2), absl::StrCat("n", seq));
    EXPECT_EQ(r.GetBool(3), seq % 2 == 0);
    EXPECT_DOUBLE_EQ(r.GetDouble(4), seq / 2.0);
    EXPECT_DOUBLE_EQ(r.GetDouble(5), static_cast<double>(seq));  // int64 stored as double
  }
  // Exhausted: further polls end at once and emit nothing.
  state = (*gen)->Poll(100, &wake);
  ASSERT_OK(state);
  EXPECT_EQ(*state, SourceOperator::State::kEnd);
  EXPECT_EQ(out_.records.size(), 6u);
  EXPECT_EQ(wake, -1);  // never rate limited
}

TEST_F(OperatorsTest, DatagenExactBatchEndsOnNextPoll) {
  Load(kDatagenJob);
  auto gen = OpenSource("gen");
  ASSERT_OK(gen);
  int64_t wake = 0;
  auto state = (*gen)->Poll(6, &wake);
  ASSERT_OK(state);
  EXPECT_EQ(*state, SourceOperator::State::kMore);
  EXPECT_EQ(out_.records.size(), 6u);
  state = (*gen)->Poll(6, &wake);
  ASSERT_OK(state);
  EXPECT_EQ(*state, SourceOperator::State::kEnd);
  EXPECT_EQ(out_.records.size(), 6u);
}

TEST_F(OperatorsTest, DatagenCountZeroEndsImmediately) {
  Load(R"y(operators:
  - {id: gen, type: datagen, count: 0, fields: [{name: x, type: int64, expr: seq}]}
  - {id: out, type: print}
)y");
  auto gen = OpenSource("gen");
  ASSERT_OK(gen);
  int64_t wake = 0;
  auto state = (*gen)->Poll(10, &wake);
  ASSERT_OK(state);
  EXPECT_EQ(*state, SourceOperator::State::kEnd);
  EXPECT_TRUE(out_.records.empty());
}

TEST_F(OperatorsTest, DatagenSplitsSequenceAcrossSubtasks) {
  Load(R"y(operators:
  - {id: gen, type: datagen, count: 10, fields: [{name: x, type: int64, expr: seq * 10}]}
  - {id: out, type: print}
)y");
  auto odd = OpenSource("gen", /*subtask=*/1, /*parallelism=*/2);
  ASSERT_OK(odd);
  int64_t wake = 0;
  auto state = (*odd)->Poll(100, &wake);
  ASSERT_OK(state);
  EXPECT_EQ(*state, SourceOperator::State::kEnd);
  EXPECT_THAT(Ints(0), ElementsAre(10, 30, 50, 70, 90));

  out_.records.clear();
  auto even = OpenSource("gen", /*subtask=*/0, /*parallelism=*/2);
  ASSERT_OK(even);
  state = (*even)->Poll(100, &wake);
  ASSERT_OK(state);
  EXPECT_EQ(*state, SourceOperator::State::kEnd);
  EXPECT_THAT(Ints(0), ElementsAre(0, 20, 40, 60, 80));
}

TEST_F(OperatorsTest, DatagenRateLimitWaitsOnTheClock) {
  // 10 records/s: one every 100 ms, the first at once.
  Load(R"y(operators:
  - {id: gen, type: datagen, rate: 10, fields: [{name: x, type: int64, expr: seq}]}
  - {id: out, type: print}
)y");
  const int64_t start = clock_.NowNanos();
  constexpr int64_t kStep = 100'000'000;
  auto gen = OpenSource("gen");
  ASSERT_OK(gen);
  int64_t wake = 0;
  auto state = (*gen)->Poll(100, &wake);
  ASSERT_OK(state);
  EXPECT_EQ(*state, SourceOperator::State::kWait);
  EXPECT_EQ(wake, start + kStep);
  EXPECT_THAT(Ints(0), ElementsAre(0));

  // Not yet due: nothing more.
  clock_.AdvanceNanos(kStep - 1);
  state = (*gen)->Poll(100, &wake);
  ASSERT_OK(state);
  EXPECT_EQ(*state, SourceOperator::State::kWait);
  EXPECT_EQ(wake, start + kStep);
  EXPECT_EQ(out_.records.size(), 1u);

  clock_.AdvanceNanos(1);
  state = (*gen)->Poll(100, &wake);
  ASSERT_OK(state);
  EXPECT_EQ(*state, SourceOperator::State::kWait);
  EXPECT_EQ(wake, start + 2 * kStep);
  EXPECT_THAT(Ints(0), ElementsAre(0, 1));

  // 200 ms later two more are due (at 200 and 300 ms).
  clock_.AdvanceNanos(2 * kStep);
  state = (*gen)->Poll(100, &wake);
  ASSERT_OK(state);
  EXPECT_EQ(*state, SourceOperator::State::kWait);
  EXPECT_EQ(wake, start + 4 * kStep);
  EXPECT_THAT(Ints(0), ElementsAre(0, 1, 2, 3));

  // max_records still caps a batch that is due.
  clock_.AdvanceNanos(10 * kStep);
  state = (*gen)->Poll(2, &wake);
  ASSERT_OK(state);
  EXPECT_EQ(*state, SourceOperator::State::kMore);
  EXPECT_THAT(Ints(0), ElementsAre(0, 1, 2, 3, 4, 5));
}

TEST_F(OperatorsTest, DatagenRateIsForTheWholeSource) {
  // 10 records/s over 2 subtasks: each subtask emits one every 200 ms.
  Load(R"y(operators:
  - {id: gen, type: datagen, rate: 10, fields: [{name: x, type: int64, expr: seq}]}
  - {id: out, type: print}
)y");
  const int64_t start = clock_.NowNanos();
  auto gen = OpenSource("gen", /*subtask=*/1, /*parallelism=*/2);
  ASSERT_OK(gen);
  int64_t wake = 0;
  auto state = (*gen)->Poll(100, &wake);
  ASSERT_OK(state);
  EXPECT_EQ(*state, SourceOperator::State::kWait);
  EXPECT_EQ(wake, start + 200'000'000);
  clock_.AdvanceNanos(200'000'000);
  state = (*gen)->Poll(100, &wake);
  ASSERT_OK(state);
  EXPECT_EQ(*state, SourceOperator::State::kWait);
  EXPECT_EQ(wake, start + 400'000'000);
  EXPECT_THAT(Ints(0), ElementsAre(1, 3));
}

TEST_F(OperatorsTest, DatagenPropagatesEmitErrors) {
  Load(kDatagenJob);
  FailingOutput failing;
  auto op = Open("gen", 0, 1, &failing);
  ASSERT_OK(op);
  auto* gen = dynamic_cast<SourceOperator*>(op->get());
  ASSERT_NE(gen, nullptr);
  int64_t wake = 0;
  EXPECT_THAT(gen->Poll(10, &wake), StatusIs(absl::StatusCode::kCancelled, "task cancelled"));
  // A source takes no input records.
  EXPECT_THAT(gen->Process(Record(6)), StatusIs(absl::StatusCode::kFailedPrecondition,
                                                HasSubstr("a source has no input")));
}

// ---------------------------------------------------------------------------------------------
// filter, map, key_by, union

constexpr char kRowsJob[] = R"y(operators:
  - id: gen
    type: datagen
    fields:
      - {name: id, type: int64, expr: seq}
      - {name: name, type: string, expr: "'n' + to_string(seq)"}
      - {name: price, type: double, expr: seq * 1.5}
  - id: f
    type: filter
    where: id % 3 == 0 or name == 'special'
  - id: m
    type: map
    input: gen
    fields:
      - name
      - {name: shout, expr: "upper(name) + '!'"}
      - {name: total, expr: price * 2}
      - {name: id_d, expr: id, type: double}
      - {name: cheap, expr: price < 5}
  - id: k
    type: key_by
    input: gen
    key: name
  - id: out
    type: print
    input: f
)y";

Record Row(int64_t id, absl::string_view name, double price) {
  Record r(3);
  r.SetInt(0, id);
  r.SetString(1, name);
  r.SetDouble(2, price);
  return r;
}

TEST_F(OperatorsTest, FilterKeepsMatchingRecords) {
  Load(kRowsJob);
  auto f = Open("f");
  ASSERT_OK(f);
  for (int64_t id = 0; id < 8; ++id) {
    ASSERT_OK((*f)->Process(Row(id, id == 5 ? "special" : "plain", id * 0.5)));
  }
  ASSERT_OK((*f)->Finish());
  (*f)->Close();
  EXPECT_THAT(Ints(0), ElementsAre(0, 3, 5, 6));
  ASSERT_EQ(out_.records.size(), 4u);
  // Records pass through unchanged.
  EXPECT_EQ(out_.records[2].GetString(1), "special");
  EXPECT_DOUBLE_EQ(out_.records[2].GetDouble(2), 2.5);
  EXPECT_DOUBLE_EQ(out_.records[3].GetDouble(2), 3.0);
}

TEST_F(OperatorsTest, MapComputesFields) {
  Load(kRowsJob);
  auto m = Open("m");
  ASSERT_OK(m);
  ASSERT_OK((*m)->Process(Row(7, "ab", 1.25)));
  ASSERT_OK((*m)->Process(Row(-2, "xyz", 10)));
  ASSERT_EQ(out_.records.size(), 2u);
  const Record& a = out_.records[0];
  ASSERT_EQ(a.size(), 5u);
  EXPECT_EQ(a.GetString(0), "ab");
  EXPECT_EQ(a.GetString(1), "AB!");
  EXPECT_DOUBLE_EQ(a.GetDouble(2), 2.5);
  EXPECT_DOUBLE_EQ(a.GetDouble(3), 7.0);
  EXPECT_TRUE(a.GetBool(4));
  const Record& b = out_.records[1];
  EXPECT_EQ(b.GetString(0), "xyz");
  EXPECT_EQ(b.GetString(1), "XYZ!");
  EXPECT_DOUBLE_EQ(b.GetDouble(2), 20.0);
  EXPECT_DOUBLE_EQ(b.GetDouble(3), -2.0);
  EXPECT_FALSE(b.GetBool(4));
}

TEST_F(OperatorsTest, KeyByAndUnionPassRecordsThrough) {
  Load(kRowsJob);
  auto k = Open("k");
  ASSERT_OK(k);
  ASSERT_OK((*k)->Process(Row(4, "four", 6)));
  ASSERT_EQ(out_.records.size(), 1u);
  EXPECT_EQ(out_.records[0].GetInt(0), 4);
  EXPECT_EQ(out_.records[0].GetString(1), "four");
  EXPECT_DOUBLE_EQ(out_.records[0].GetDouble(2), 6.0);

  Load(R"y(operators:
  - {id: a, type: datagen, fields: [{name: x, type: int64, expr: seq}]}
  - {id: b, type: datagen, fields: [{name: x, type: int64, expr: seq}]}
  - {id: u, type: union, inputs: [a, b]}
  - {id: out, type: print}
)y");
  out_.records.clear();
  auto u = Open("u");
  ASSERT_OK(u);
  Record r(1);
  r.SetInt(0, 11);
  ASSERT_OK((*u)->Process(r));
  r.SetInt(0, 12);
  ASSERT_OK((*u)->Process(r));
  EXPECT_THAT(Ints(0), ElementsAre(11, 12));
}

// ---------------------------------------------------------------------------------------------
// aggregate

constexpr char kAggregateJob[] = R"y(operators:
  - id: gen
    type: datagen
    fields:
      - {name: k, type: string, expr: "to_string(seq % 2)"}
      - {name: v, type: int64, expr: seq}
      - {name: d, type: double, expr: seq / 2.0}
  - id: by_k
    type: key_by
    key: k
  - id: agg
    type: aggregate
    emit: EMIT
    aggregates:
      - {fn: count}
      - {fn: sum, field: v}
      - {fn: min, field: v}
      - {fn: max, field: v}
      - {fn: avg, field: v}
      - {fn: sum, field: d}
      - {fn: min, field: d}
      - {fn: max, field: d}
      - {fn: avg, field: d}
  - id: out
    type: print
)y";

Record KVD(absl::string_view k, int64_t v, double d) {
  Record r(3);
  r.SetString(0, k);
  r.SetInt(1, v);
  r.SetDouble(2, d);
  return r;
}

// One aggregate output row: key, count, sum_v, min_v, max_v, avg_v, sum_d, min_d, max_d, avg_d.
struct AggRow {
  std::string k;
  int64_t count, sum_v, min_v, max_v;
  double avg_v, sum_d, min_d, max_d, avg_d;
};

void ExpectRow(const Record& r, const AggRow& want) {
  ASSERT_EQ(r.size(), 10u);
  EXPECT_EQ(r.GetString(0), want.k);
  EXPECT_EQ(r.GetInt(1), want.count) << want.k;
  EXPECT_EQ(r.GetInt(2), want.sum_v) << want.k;
  EXPECT_EQ(r.GetInt(3), want.min_v) << want.k;
  EXPECT_EQ(r.GetInt(4), want.max_v) << want.k;
  EXPECT_DOUBLE_EQ(r.GetDouble(5), want.avg_v) << want.k;
  EXPECT_DOUBLE_EQ(r.GetDouble(6), want.sum_d) << want.k;
  EXPECT_DOUBLE_EQ(r.GetDouble(7), want.min_d) << want.k;
  EXPECT_DOUBLE_EQ(r.GetDouble(8), want.max_d) << want.k;
  EXPECT_DOUBLE_EQ(r.GetDouble(9), want.avg_d) << want.k;
}

std::vector<Record> AggregateInput() {
  return {KVD("a", 5, 0.5), KVD("b", 10, 2.0), KVD("a", -3, 1.5), KVD("a", 7, -1.0),
          KVD("b", 4, 4.0)};
}

TEST_F(OperatorsTest, AggregateEmitsUpdates) {
  Load(absl::StrReplaceAll(kAggregateJob, {{"EMIT", "updates"}}));
  EXPECT_EQ(Spec("agg").output_schema.size(), 10u);
  auto agg = Open("agg");
  ASSERT_OK(agg);
  for (const Record& r : AggregateInput()) ASSERT_OK((*agg)->Process(r));
  ASSERT_EQ(out_.records.size(), 5u);  // one running row per input
  ExpectRow(out_.records[0], {"a", 1, 5, 5, 5, 5.0, 0.5, 0.5, 0.5, 0.5});
  ExpectRow(out_.records[1], {"b", 1, 10, 10, 10, 10.0, 2.0, 2.0, 2.0, 2.0});
  ExpectRow(out_.records[2], {"a", 2, 2, -3, 5, 1.0, 2.0, 0.5, 1.5, 1.0});
  ExpectRow(out_.records[3], {"a", 3, 9, -3, 7, 3.0, 1.0, -1.0, 1.5, 1.0 / 3});
  ExpectRow(out_.records[4], {"b", 2, 14, 4, 10, 7.0, 6.0, 2.0, 4.0, 3.0});
  // Finish emits nothing more in updates mode.
  ASSERT_OK((*agg)->Finish());
  EXPECT_EQ(out_.records.size(), 5u);
}

TEST_F(OperatorsTest, AggregateEmitsUpdatesByDefault) {
  Load(absl::StrReplaceAll(kAggregateJob, {{"    emit: EMIT\n", ""}}));
  auto agg = Open("agg");
  ASSERT_OK(agg);
  ASSERT_OK((*agg)->Process(KVD("z", 1, 1)));
  EXPECT_EQ(out_.records.size(), 1u);
}

TEST_F(OperatorsTest, AggregateEmitsFinal) {
  Load(absl::StrReplaceAll(kAggregateJob, {{"EMIT", "final"}}));
  auto agg = Open("agg");
  ASSERT_OK(agg);
  for (const Record& r : AggregateInput()) ASSERT_OK((*agg)->Process(r));
  EXPECT_TRUE(out_.records.empty());
  ASSERT_OK((*agg)->Finish());
  ASSERT_EQ(out_.records.size(), 2u);  // one per key
  std::sort(out_.records.begin(), out_.records.end(),
            [](const Record& x, const Record& y) { return x.GetString(0) < y.GetString(0); });
  ExpectRow(out_.records[0], {"a", 3, 9, -3, 7, 3.0, 1.0, -1.0, 1.5, 1.0 / 3});
  ExpectRow(out_.records[1], {"b", 2, 14, 4, 10, 7.0, 6.0, 2.0, 4.0, 3.0});
}

TEST_F(OperatorsTest, AggregateFinalWithoutInputEmitsNothing) {
  Load(absl::StrReplaceAll(kAggregateJob, {{"EMIT", "final"}}));
  auto agg = Open("agg");
  ASSERT_OK(agg);
  ASSERT_OK((*agg)->Finish());
  EXPECT_TRUE(out_.records.empty());
}

TEST_F(OperatorsTest, AggregateByComputedCompositeKey) {
  // Keyed by a hash partition with an expression key and a field: (bucket int64, tag string).
  Load(R"y(operators:
  - id: gen
    type: datagen
    fields:
      - {name: v, type: int64, expr: seq}
      - {name: tag, type: string, expr: "'t'"}
  - id: agg
    type: aggregate
    emit: final
    input:
      from: gen
      partition: hash
      key: [{name: bucket, expr: v % 3}, tag]
    aggregates: [{fn: count, as: n}, {fn: max, field: v, as: top}]
  - id: out
    type: print
)y");
  ASSERT_EQ(Spec("agg").output_schema,
            Schema({{"bucket", FieldType::kInt64},
                    {"tag", FieldType::kString},
                    {"n", FieldType::kInt64},
                    {"top", FieldType::kInt64}}));
  auto agg = Open("agg");
  ASSERT_OK(agg);
  Record r(2);
  for (int64_t v = 0; v < 10; ++v) {
    r.SetInt(0, v);
    r.SetString(1, v == 9 ? "u" : "t");
    ASSERT_OK((*agg)->Process(r));
  }
  ASSERT_OK((*agg)->Finish());
  std::vector<std::string> rows;
  for (const Record& o : out_.records) {
    rows.push_back(absl::StrCat(o.GetInt(0), "/", o.GetString(1), " n=", o.GetInt(2),
                                " top=", o.GetInt(3)));
  }
  std::sort(rows.begin(), rows.end());
  // bucket 0: 0,3,6 (t) and 9 (u); bucket 1: 1,4,7; bucket 2: 2,5,8.
  EXPECT_THAT(rows, ElementsAre("0/t n=3 top=6", "0/u n=1 top=9", "1/t n=3 top=7",
                                "2/t n=3 top=8"));
}

// ---------------------------------------------------------------------------------------------
// Sinks

class TempDir {
 public:
  TempDir() {
    std::string tmpl = ::testing::TempDir() + "sluice_operators_test_XXXXXX";
    char* p = mkdtemp(tmpl.data());
    EXPECT_NE(p, nullptr);
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST_F(OperatorsTest, FileSinkWritesJsonLinesPerSubtask) {
  TempDir tmp;
  const std::string dir = tmp.path() + "/out/nested";  // created on Open
  Load(absl::StrCat(R"y(operators:
  - id: gen
    type: datagen
    fields:
      - {name: id, type: int64, expr: seq}
      - {name: name, type: string, expr: to_string(seq)}
      - {name: price, type: double, expr: seq / 2.0}
      - {name: ok, type: bool, expr: seq > 0}
  - id: out
    type: file
    path: )y",
                    dir, "\n"));
  auto sink = Open("out", /*subtask=*/1, /*parallelism=*/2);
  ASSERT_OK(sink);
  Record r(4);
  r.SetInt(0, 1);
  r.SetString(1, "plain");
  r.SetDouble(2, 1.5);
  r.SetBool(3, true);
  ASSERT_OK((*sink)->Process(r));
  r.SetInt(0, -20);
  r.SetString(1, "say \"hi\"\n");
  r.SetDouble(2, 0.25);
  r.SetBool(3, false);
  ASSERT_OK((*sink)->Process(r));
  ASSERT_OK((*sink)->Finish());
  (*sink)->Close();
  EXPECT_TRUE(out_.records.empty());  // a sink emits nothing

  const std::string file = dir + "/part-1.jsonl";
  ASSERT_TRUE(std::filesystem::exists(file));
  EXPECT_FALSE(std::filesystem::exists(dir + "/part-0.jsonl"));
  EXPECT_EQ(ReadFile(file),
            "{\"id\":1,\"name\":\"plain\",\"price\":1.5,\"ok\":true}\n"
            "{\"id\":-20,\"name\":\"say \\\"hi\\\"\\n\",\"price\":0.25,\"ok\":false}\n");
}

TEST_F(OperatorsTest, FileSinkFlushesOnFinishAndLargeBuffers) {
  TempDir tmp;
  Load(absl::StrCat(R"y(operators:
  - {id: gen, type: datagen, fields: [{name: x, type: int64, expr: seq}]}
  - id: out
    type: file
    path: )y",
                    tmp.path(), "\n"));
  auto sink = Open("out");
  ASSERT_OK(sink);
  const std::string file = tmp.path() + "/part-0.jsonl";
  Record r(1);
  constexpr int kRecords = 20000;  // more than the 64 KiB buffer
  for (int i = 0; i < kRecords; ++i) {
    r.SetInt(0, i);
    ASSERT_OK((*sink)->Process(r));
  }
  // Part has been written already, without Finish.
  EXPECT_GT(std::filesystem::file_size(file), 0u);
  ASSERT_OK((*sink)->Finish());
  (*sink)->Close();
  std::ifstream in(file);
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ASSERT_EQ(line, absl::StrCat("{\"x\":", n, "}"));
    ++n;
  }
  EXPECT_EQ(n, kRecords);
}

TEST_F(OperatorsTest, FileSinkReportsUnwritableDirectory) {
  TempDir tmp;
  const std::string blocker = tmp.path() + "/file";
  std::ofstream(blocker) << "not a directory";
  Load(absl::StrCat(R"y(operators:
  - {id: gen, type: datagen, fields: [{name: x, type: int64, expr: seq}]}
  - id: out
    type: file
    path: )y",
                    blocker, "/sub\n"));
  EXPECT_THAT(Open("out"), StatusIs(absl::StatusCode::kFailedPrecondition,
                                    HasSubstr("cannot create directory")));
}

TEST_F(OperatorsTest, BlackholeSinkThrottlesOnTheClock) {
  Load(R"y(operators:
  - {id: gen, type: datagen, fields: [{name: x, type: int64, expr: seq}]}
  - {id: out, type: blackhole, max_rate: 4}
  - {id: fast, type: blackhole, input: gen}
)y");
  const int64_t start = clock_.NowNanos();
  auto slow = Open("out");
  ASSERT_OK(slow);
  Record r(1);
  for (int i = 0; i < 3; ++i) ASSERT_OK((*slow)->Process(r));
  // 4 records/s: the third is not done before 750 ms (the fake clock "sleeps" forward).
  EXPECT_EQ(clock_.NowNanos(), start + 750'000'000);

  auto fast = Open("fast");
  ASSERT_OK(fast);
  for (int i = 0; i < 100; ++i) ASSERT_OK((*fast)->Process(r));
  EXPECT_EQ(clock_.NowNanos(), start + 750'000'000);
  EXPECT_TRUE(out_.records.empty());
}

TEST_F(OperatorsTest, PrintSinkAcceptsRecords) {
  Load(R"y(operators:
  - {id: gen, type: datagen, fields: [{name: x, type: int64, expr: seq}]}
  - {id: out, type: print}
)y");
  auto sink = Open("out");
  ASSERT_OK(sink);
  Record r(1);
  r.SetInt(0, 3);
  EXPECT_OK((*sink)->Process(r));
  EXPECT_OK((*sink)->Finish());
  EXPECT_TRUE(out_.records.empty());
}

// ---------------------------------------------------------------------------------------------
// KeyHasher

Schema HasherSchema() {
  return Schema({{"user", FieldType::kString},
                 {"n", FieldType::kInt64},
                 {"d", FieldType::kDouble},
                 {"flag", FieldType::kBool},
                 {"other", FieldType::kString}});
}

Record HasherRecord(absl::string_view user, int64_t n, double d, bool flag,
                    absl::string_view other) {
  Record r(5);
  r.SetString(0, user);
  r.SetInt(1, n);
  r.SetDouble(2, d);
  r.SetBool(3, flag);
  r.SetString(4, other);
  return r;
}

std::vector<plan::KeySpec> HasherKey() {
  return {{"user", "user"}, {"bucket", "n % 4"}, {"d", "d"}, {"flag", "flag"}};
}

TEST(KeyHasherTest, EqualKeysHashEqual) {
  auto h = KeyHasher::Create(HasherKey(), HasherSchema());
  ASSERT_OK(h);
  EXPECT_EQ(h->exprs().size(), 4u);
  const uint64_t base = h->Hash(HasherRecord("alice", 1, 2.5, true, "x"));
  // Same key, different non-key field and a different n in the same bucket.
  EXPECT_EQ(h->Hash(HasherRecord("alice", 1, 2.5, true, "y")), base);
  EXPECT_EQ(h->Hash(HasherRecord("alice", 5, 2.5, true, "zzz")), base);
  // Each key component matters.
  EXPECT_NE(h->Hash(HasherRecord("bob", 1, 2.5, true, "x")), base);
  EXPECT_NE(h->Hash(HasherRecord("alice", 2, 2.5, true, "x")), base);
  EXPECT_NE(h->Hash(HasherRecord("alice", 1, 2.75, true, "x")), base);
  EXPECT_NE(h->Hash(HasherRecord("alice", 1, 2.5, false, "x")), base);
  // -0.0 and 0.0 are one key.
  EXPECT_EQ(h->Hash(HasherRecord("alice", 1, -0.0, true, "x")),
            h->Hash(HasherRecord("alice", 1, 0.0, true, "x")));
}

TEST(KeyHasherTest, StableAcrossInstancesAndBuilds) {
  auto h1 = KeyHasher::Create({{"user", "user"}}, HasherSchema());
  auto h2 = KeyHasher::Create({{"user", "user"}}, HasherSchema());
  ASSERT_OK(h1);
  ASSERT_OK(h2);
  const Record r = HasherRecord("alice", 1, 2.5, true, "x");
  EXPECT_EQ(h1->Hash(r), h2->Hash(r));
  // The documented construction from common/key_groups.h, which every process shares.
  EXPECT_EQ(h1->Hash(r), HashCombine(0x1234567, HashBytes("alice")));

  auto by_n = KeyHasher::Create({{"n", "n"}}, HasherSchema());
  ASSERT_OK(by_n);
  EXPECT_EQ(by_n->Hash(r), HashCombine(0x1234567, HashInt64(1)));
  // Golden values: a change here moves keys between subtasks and breaks restored state.
  EXPECT_EQ(h1->Hash(r), 0xaa3be9136d289f95ULL);
  EXPECT_EQ(by_n->Hash(r), 0x4deb3f639e3d5052ULL);
  // A key with no components hashes to the seed's value for every record.
  auto empty = KeyHasher::Create({}, HasherSchema());
  ASSERT_OK(empty);
  EXPECT_EQ(empty->Hash(r), 0x1234567u);
}

TEST(KeyHasherTest, BadKeyExpressionIsAnError) {
  EXPECT_THAT(KeyHasher::Create({{"u", "usr"}}, HasherSchema()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unknown field 'usr'")));
}

}  // namespace
}  // namespace sluice::ops
