#include <algorithm>
#include <map>
#include <set>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <functional>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "common/clock.h"
#include "common/key_groups.h"
#include "common/record.h"
#include "common/record_codec.h"
#include "common/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "operators/internal/window_keys.h"
#include "operators/key_hasher.h"
#include "operators/internal/keyed_test_harness.h"
#include "operators/internal/window_keys.h"
#include "operators/operator.h"
#include "operators/filter_options.h"
#include "operators/map_options.h"
#include "operators/internal/keyed_test_harness.h"
#include "operators/registry.h"
#include "state/keyed_state_backend.h"
#include "absl/strings/str_split.h"
#include "plan/expr.h"
#include "plan/job_spec.h"

namespace sluice::ops {
namespace {

using ::sluice::testing::StatusIs;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::UnorderedElementsAre;
using ::testing::UnorderedElementsAreArray;
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
  OperatorsTest() { EXPECT_OK(RegisterBuiltinOperators(&registry_)); }

  // Parses `yaml` as the job the operators under test belong to.
  void Load(const std::string& yaml) {
    auto job = plan::ParseJobSpec(yaml, "job.yaml", registry_.catalog());
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
    ctx.job_id = job_id_;
    ctx.subtask = subtask;
    ctx.parallelism = parallelism;
    ctx.clock = &clock_;
    ctx.task_name = absl::StrCat("job-1/", spec.id, "#", subtask);
    ctx.max_parallelism = job_.max_parallelism;
    ctx.attempt = attempt_;
    ctx.checkpointing = checkpointing_;
    ctx.restored = restored_;
    ctx.restored_state = restored_state_;
    ctx.restored_checkpoint_id = restored_ ? 5 : 0;
    ctx.state_origin = StateOrigin(job_id_, spec.id, spec.type, subtask, ctx.restored_checkpoint_id);
    if ((*op)->IsKeyed()) {
      // A real RocksDB backend in a temp dir, covering this subtask's key groups.
      state::StateBackendOptions o;
      o.local_dir = absl::StrCat(::testing::TempDir(), "/sluice-ops-", getpid(), "-", backends_.size());
      o.operator_id = spec.id;
      o.max_parallelism = job_.max_parallelism;
      o.range = KeyGroupRangeForSubtask(job_.max_parallelism, parallelism, subtask);
      o.clock = &clock_;
      o.origin = ctx.state_origin;
      o.cache_bytes = cache_bytes_;
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

  // What polling a datagen source gave: its events in order (records as `format` renders them,
  // "watermark <ms>", "idle <0|1>"), and after each poll its state and split entries.
  struct DatagenPolls {
    std::vector<std::string> events;
    std::vector<std::vector<std::string>> snapshots;
    std::vector<SourceOperator::State> states;
  };
  // Loads `job`, opens its operator "gen" (subtask 0 of 1) and polls it `polls` records at a
  // time, advancing the clock 2 ms after each poll (a periodic watermark at the next).
  void PollDatagen(const std::string& job, std::function<std::string(const Record&)> format,
                   const std::vector<int>& polls, DatagenPolls* result) {
    class Log final : public Output {
     public:
      Log(std::function<std::string(const Record&)> format, std::vector<std::string>* events)
          : format_(std::move(format)), events_(events) {}
      absl::Status Emit(const Record& r) override {
        events_->push_back(format_(r));
        return absl::OkStatus();
      }
      absl::Status EmitWatermark(int64_t w) override {
        events_->push_back(absl::StrCat("watermark ", w));
        return absl::OkStatus();
      }
      absl::Status EmitWatermarkStatus(bool idle) override {
        events_->push_back(absl::StrCat("idle ", idle));
        return absl::OkStatus();
      }

     private:
      std::function<std::string(const Record&)> format_;
      std::vector<std::string>* events_;
    };
    Load(job);
    Log log(std::move(format), &result->events);
    auto gen = Open("gen", 0, 1, &log);
    ASSERT_OK(gen);
    auto* source = static_cast<SourceOperator*>(gen->get());
    for (int max : polls) {
      int64_t wake = 0;
      auto state = source->Poll(max, &wake);
      ASSERT_OK(state);
      result->states.push_back(*state);
      std::vector<std::string> entries;
      ASSERT_OK(source->SnapshotState(1, &entries));
      result->snapshots.push_back(entries);
      clock_.AdvanceNanos(2'000'000);
    }
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
  // What Open() tells the operators about checkpointing and restore.
  std::string job_id_ = "job-1";
  int64_t attempt_ = 1;
  bool checkpointing_ = false;
  bool restored_ = false;
  std::vector<std::string> restored_state_;
  size_t cache_bytes_ = 32 << 20;  // the keyed state backends' write-back cache
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
  EXPECT_THAT(registry_.Register(MakeFilterType(), [](const plan::OperatorSpec&) {
    return std::unique_ptr<Operator>();
  }),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("'filter' already registered")));
  plan::OperatorTraits traits;
  traits.name = "sort";
  EXPECT_OK(registry_.Register(
      std::make_unique<plan::TypedOperatorType<plan::NoOptions>>(
          traits,
          [](const YAML::Node&, const plan::ParseContext&) -> absl::StatusOr<plan::NoOptions> {
            return plan::NoOptions();
          },
          [](const plan::NoOptions&, const plan::ParseContext& ctx) { return ctx.op().input_schema; }),
      [](const plan::OperatorSpec&) { return std::unique_ptr<Operator>(); }));
  EXPECT_OK(registry_.Create(spec));
  EXPECT_NE(registry_.catalog().Find("sort"), nullptr);
  EXPECT_EQ(registry_.catalog().KnownTypes(),
            "datagen, nexmark, filter, map, key_by, aggregate, window, top_n, local_top_n, union, interval_join, join, "
            "window_join, sort, file, print, blackhole");
  EXPECT_THAT(registry_.ReplaceFactoryForTest("nope", nullptr),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("no operator type 'nope'")));
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

// The state of one datagen split as SnapshotState encodes it: three native int64.
struct SplitState {
  int64_t base;
  int64_t stride;
  int64_t next;
};

// A datagen split entry: [version 1][base, stride, next: 8 bytes little-endian each].
SplitState DecodeSplit(const std::string& entry) {
  SplitState split{-1, -1, -1};
  EXPECT_EQ(entry.size(), 1 + sizeof(SplitState));
  if (entry.size() != 1 + sizeof(SplitState) || entry[0] != 1) return split;
  int64_t v[3];
  for (int i = 0; i < 3; ++i) {
    uint64_t x = 0;
    for (int b = 7; b >= 0; --b) x = (x << 8) | static_cast<uint8_t>(entry[1 + 8 * i + b]);
    v[i] = static_cast<int64_t>(x);
  }
  return SplitState{v[0], v[1], v[2]};
}

// Polls an unthrottled source until it ends.
absl::Status Drain(SourceOperator* source) {
  int64_t wake = 0;
  for (int i = 0; i < 1000; ++i) {
    absl::StatusOr<SourceOperator::State> state = source->Poll(7, &wake);
    if (!state.ok()) return state.status();
    if (*state == SourceOperator::State::kEnd) return absl::OkStatus();
    if (*state == SourceOperator::State::kWait) return absl::InternalError("unexpected wait");
  }
  return absl::InternalError("source did not end");
}

std::vector<int64_t> Sorted(std::vector<int64_t> v) {
  std::sort(v.begin(), v.end());
  return v;
}

std::vector<int64_t> Range(int64_t from, int64_t to, int64_t step = 1) {
  std::vector<int64_t> v;
  for (int64_t x = from; x < to; x += step) v.push_back(x);
  return v;
}

constexpr char kCountingJob[] = R"y(operators:
  - {id: gen, type: datagen, count: 20, fields: [{name: x, type: int64, expr: seq}]}
  - {id: out, type: print}
)y";

TEST_F(OperatorsTest, DatagenRestoredFromSnapshotContinuesWhereItStopped) {
  Load(kCountingJob);
  {
    auto gen = OpenSource("gen", /*subtask=*/1, /*parallelism=*/2);
    ASSERT_OK(gen);
    ASSERT_OK(Drain(gen->get()));
  }
  const std::vector<int64_t> uninterrupted = Ints(0);
  ASSERT_EQ(uninterrupted, Range(1, 20, 2));
  out_.records.clear();

  std::vector<std::string> entries;
  {
    auto gen = OpenSource("gen", 1, 2);
    ASSERT_OK(gen);
    int64_t wake = 0;
    auto state = (*gen)->Poll(4, &wake);
    ASSERT_OK(state);
    EXPECT_EQ(*state, SourceOperator::State::kMore);
    ASSERT_OK((*gen)->SnapshotState(1, &entries));
    EXPECT_FALSE((*gen)->UnionState());
    // A snapshot does not move the source.
    std::vector<std::string> again;
    ASSERT_OK((*gen)->SnapshotState(2, &again));
    EXPECT_EQ(again, entries);
  }  // the failure: everything emitted after the snapshot would be lost (here: nothing)
  ASSERT_EQ(entries.size(), 1u);
  ASSERT_EQ(entries[0].size(), 25u);
  SplitState split = DecodeSplit(entries[0]);
  EXPECT_EQ(split.base, 1);
  EXPECT_EQ(split.stride, 2);
  EXPECT_EQ(split.next, 9);  // 1, 3, 5, 7 were emitted
  EXPECT_EQ((split.next - split.base) / split.stride, static_cast<int64_t>(out_.records.size()));

  restored_ = true;
  restored_state_ = entries;
  auto gen = OpenSource("gen", 1, 2);
  ASSERT_OK(gen);
  ASSERT_OK(Drain(gen->get()));
  EXPECT_EQ(Ints(0), uninterrupted);  // before + after the restore, in order, once each

  entries.clear();
  ASSERT_OK((*gen)->SnapshotState(3, &entries));
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_GE(DecodeSplit(entries[0]).next, 20);  // exhausted
}

TEST_F(OperatorsTest, DatagenRescaledFromTwoSubtasksToOneProducesTheRestOfBoth) {
  Load(kCountingJob);
  std::vector<std::string> entries;
  for (int s = 0; s < 2; ++s) {
    auto gen = OpenSource("gen", s, 2);
    ASSERT_OK(gen);
    int64_t wake = 0;
    ASSERT_OK((*gen)->Poll(s == 0 ? 3 : 5, &wake));
    ASSERT_OK((*gen)->SnapshotState(1, &entries));
  }
  const std::vector<int64_t> before = Sorted(Ints(0));
  ASSERT_THAT(before, ElementsAre(0, 1, 2, 3, 4, 5, 7, 9));
  ASSERT_EQ(entries.size(), 2u);
  out_.records.clear();

  restored_ = true;
  restored_state_ = entries;  // one new subtask gets every split
  auto gen = OpenSource("gen", 0, 1);
  ASSERT_OK(gen);
  ASSERT_OK(Drain(gen->get()));
  const std::vector<int64_t> after = Sorted(Ints(0));
  EXPECT_THAT(after, ElementsAre(6, 8, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19));
  std::vector<int64_t> all = before;
  all.insert(all.end(), after.begin(), after.end());
  EXPECT_EQ(Sorted(all), Range(0, 20)) << "every seq exactly once";

  // It now carries both splits on.
  std::vector<std::string> now;
  ASSERT_OK((*gen)->SnapshotState(2, &now));
  ASSERT_EQ(now.size(), 2u);
  EXPECT_EQ(DecodeSplit(now[0]).base, 0);
  EXPECT_EQ(DecodeSplit(now[1]).base, 1);
}

// A datagen of event time `seq` (ms), watermarks every 10 ms, and what it emits: its records'
// times and its watermarks.
constexpr char kDatagenSeqTimeJob[] = R"y(watermark_interval: 10ms
operators:
  - {id: gen, type: datagen, fields: [{name: ts, type: int64, expr: seq}], event_time: {field: ts}}
  - {id: out, type: print}
)y";
class DatagenTimeLog final : public Output {
 public:
  absl::Status Emit(const Record& r) override {
    ts.push_back(r.GetInt(0));
    return absl::OkStatus();
  }
  absl::Status EmitWatermark(int64_t w) override {
    watermarks.push_back(w);
    return absl::OkStatus();
  }
  std::vector<int64_t> ts, watermarks;
};

// Rescaled, a subtask may carry on splits that stopped at different points; each has its own
// watermark, and the subtask emits the smallest, so the lagging split's records are not late.
TEST_F(OperatorsTest, DatagenWatermarksArePerSplit) {
  Load(kDatagenSeqTimeJob);
  DatagenTimeLog log;
  restored_ = true;
  // Old subtask 0 stopped at seq 10, old subtask 1 at seq 3.
  const SplitState splits[] = {{0, 2, 10}, {1, 2, 3}};
  for (const SplitState& split : splits) {
    restored_state_.emplace_back(reinterpret_cast<const char*>(&split), sizeof(split));
  }
  auto gen = Open("gen", 0, 1, &log);
  ASSERT_OK(gen);
  auto* source = static_cast<SourceOperator*>(gen->get());
  int64_t wake = 0;
  ASSERT_OK(source->Poll(6, &wake));
  EXPECT_THAT(log.ts, ElementsAre(10, 3, 12, 5, 14, 7));
  clock_.AdvanceNanos(10'000'000);
  ASSERT_OK(source->Poll(1, &wake));
  // The lagging split's largest timestamp is 7: the watermark is 6, not 13.
  EXPECT_THAT(log.watermarks, ElementsAre(6));
}

// A generator runs ahead of real time: besides every watermark interval of processing time,
// its watermark goes out once it has advanced by the interval in event time (checked at each
// Poll), here with a clock that never moves.
TEST_F(OperatorsTest, DatagenEmitsItsWatermarkEveryIntervalOfEventTime) {
  Load(kDatagenSeqTimeJob);
  DatagenTimeLog log;
  auto gen = Open("gen", 0, 1, &log);
  ASSERT_OK(gen);
  auto* source = static_cast<SourceOperator*>(gen->get());
  int64_t wake = 0;
  std::vector<std::vector<int64_t>> after_poll;
  for (int i = 0; i < 5; ++i) {
    ASSERT_OK(source->Poll(6, &wake));  // ts 6i .. 6i + 5
    after_poll.push_back(log.watermarks);
  }
  // At each Poll's start: max ts 5 (watermark 4, the first), 11 (10: 6 on), 17 (16: 12 on),
  // 23 (22: 6 on), so 4, 16.
  EXPECT_THAT(after_poll, ElementsAre(ElementsAre(), ElementsAre(4), ElementsAre(4), ElementsAre(4, 16),
                                      ElementsAre(4, 16)));
}

TEST_F(OperatorsTest, DatagenRescaledFromTwoSubtasksToThreeProducesTheRestOnce) {
  Load(kCountingJob);
  std::vector<std::string> entries;
  for (int s = 0; s < 2; ++s) {
    auto gen = OpenSource("gen", s, 2);
    ASSERT_OK(gen);
    int64_t wake = 0;
    ASSERT_OK((*gen)->Poll(s == 0 ? 3 : 5, &wake));
    ASSERT_OK((*gen)->SnapshotState(1, &entries));
  }
  const std::vector<int64_t> before = Ints(0);
  out_.records.clear();

  // Split redistribution as the task does it: entry k goes to new subtask k % 3, so the third
  // subtask gets nothing and ends at once.
  restored_ = true;
  std::vector<size_t> emitted_by;
  for (int s = 0; s < 3; ++s) {
    SCOPED_TRACE(s);
    restored_state_.clear();
    for (size_t k = 0; k < entries.size(); ++k) {
      if (static_cast<int>(k % 3) == s) restored_state_.push_back(entries[k]);
    }
    const size_t start = out_.records.size();
    auto gen = OpenSource("gen", s, 3);
    ASSERT_OK(gen);
    ASSERT_OK(Drain(gen->get()));
    emitted_by.push_back(out_.records.size() - start);
  }
  EXPECT_THAT(emitted_by, ElementsAre(7, 5, 0));  // 6..18 even; 11..19 odd
  std::vector<int64_t> all = before;
  for (int64_t x : Ints(0)) all.push_back(x);
  EXPECT_EQ(Sorted(all), Range(0, 20)) << "every seq exactly once";
}

// A datagen's integer key and event-time fields (the keyed benchmarks' expressions), YAML lines.
constexpr char kKeyAndTimeFields[] = R"y(    fields:
      - {name: key, type: int64, expr: "(seq * 7919) % 1000"}
      - {name: ts, type: timestamp, expr: "seq / 100 - (seq * 7919) % 500"}
)y";

// A job of datagen "gen" (`count` records; `spec`: its fields and event time, YAML lines) into a
// print sink, with a watermark interval of 1 ms. `paced` gives it a rate so high that every
// record is due at once: datagen's record-by-record path, which batches must match.
std::string PacedDatagenJob(int64_t count, bool paced, absl::string_view spec) {
  return absl::StrCat("watermark_interval: 1ms\noperators:\n  - id: gen\n    type: datagen\n",
                      "    count: ", count, "\n", paced ? "    rate: 1000000000000\n" : "", spec,
                      "  - {id: out, type: print}\n");
}

// Without a rate, datagen evaluates its integer fields a batch of records at a time; with a rate
// (so high that every record is due at once) it takes the record-by-record path. Both emit
// the same records, watermarks and split state, for polls smaller and larger than a batch,
// several splits at different points (one near the end), every field type and an integer
// field read as a double or timestamp.
TEST_F(OperatorsTest, DatagenBatchesEmitWhatRecordByRecordEmits) {
  auto job = [](bool paced) {
    return PacedDatagenJob(1500, paced, absl::StrCat(kKeyAndTimeFields, R"y(
      - {name: name, type: string, expr: "'n' + to_string(seq % 7)"}
      - {name: big, type: int64, expr: "if(seq % 3 == 0, seq * seq, -seq)"}
      - {name: half, type: double, expr: seq / 2.0}
      - {name: as_double, type: double, expr: "seq * 3"}
      - {name: even, type: bool, expr: seq % 2 == 0}
    event_time: {field: ts, max_out_of_orderness: 50ms}
)y"));
  };
  // Old subtask 0 stopped at seq 10, old subtask 1 at seq 1491 (3 records left), old subtask 2
  // at 302.
  restored_ = true;
  const SplitState splits[] = {{0, 3, 10}, {1, 3, 1491}, {2, 3, 302}};
  for (const SplitState& split : splits) {
    restored_state_.emplace_back(reinterpret_cast<const char*>(&split), sizeof(split));
  }
  auto format = [](const Record& r) {
    return absl::StrCat(r.GetInt(0), ",", r.GetInt(1), ",", r.GetString(2), ",", r.GetInt(3), ",",
                        r.GetDouble(4), ",", r.GetDouble(5), ",", r.GetBool(6));
  };
  DatagenPolls polls[2];
  for (int paced = 0; paced < 2; ++paced) {
    PollDatagen(job(paced == 1), format, {1, 300, 256, 257, 7, 1000, 1000}, &polls[paced]);
  }
  const std::vector<std::string>& events = polls[0].events;
  EXPECT_EQ(std::count_if(events.begin(), events.end(),
                          [](const std::string& e) { return e[0] != 'w' && e[0] != 'i'; }),
            497 + 3 + 400);  // seq 10, 13, ..., 1498; 1491, 1494, 1497; 302, ..., 1499
  EXPECT_EQ(polls[0].events, polls[1].events);
  EXPECT_EQ(polls[0].snapshots, polls[1].snapshots);
  EXPECT_EQ(polls[0].states, polls[1].states);
  EXPECT_EQ(polls[0].states.back(), SourceOperator::State::kEnd);
}

// A count near the int64 limit: the column path's records left in the split (count - next over
// the stride) must not overflow (it made a negative batch size and wrote past the batch).
TEST_F(OperatorsTest, DatagenColumnBatchesOfACountNearTheInt64Limit) {
  restored_ = true;
  const SplitState split{0, 2, 0};
  restored_state_.emplace_back(reinterpret_cast<const char*>(&split), sizeof(split));
  DatagenPolls polls;
  PollDatagen(PacedDatagenJob(std::numeric_limits<int64_t>::max(), false,
                              "    fields:\n      - {name: seq, type: int64, expr: seq}\n"),
              [](const Record& r) { return absl::StrCat(r.GetInt(0)); }, {100}, &polls);
  std::vector<std::string> expected;
  for (int i = 0; i < 100; ++i) expected.push_back(absl::StrCat(2 * i));
  EXPECT_EQ(polls.events, expected);
  EXPECT_EQ(polls.states, std::vector<SourceOperator::State>{SourceOperator::State::kMore});
}

// One split of integer fields takes PollColumns() (columns copied into the records, one
// watermark event per batch): the same records, watermarks, idleness changes, states and split
// positions as the paced path's record by record, across batch edges, the end of the count and
// an idle output turning active before a batch's first record.
TEST_F(OperatorsTest, DatagenColumnBatchesOfOneSplitEmitWhatRecordByRecordEmits) {
  auto job = [](bool paced) {
    return PacedDatagenJob(1700, paced, absl::StrCat(kKeyAndTimeFields, R"y(
      - {name: big, type: int64, expr: "seq * 3 - 7"}
    event_time: {field: ts, max_out_of_orderness: 50ms, idle_timeout: 1ms}
)y"));
  };
  // One split, restored at seq 301 of stride 3: 467 records are left (301, 304, ..., 1699).
  restored_ = true;
  const SplitState split{1, 3, 301};
  restored_state_.emplace_back(reinterpret_cast<const char*>(&split), sizeof(split));
  auto format = [](const Record& r) {
    return absl::StrCat(r.GetInt(0), ",", r.GetInt(1), ",", r.GetInt(2));
  };
  DatagenPolls polls[2];
  for (int paced = 0; paced < 2; ++paced) {
    // Polls of 0 records let the periodic step find the split idle (no event for 1 ms).
    PollDatagen(job(paced == 1), format, {1, 255, 0, 0, 257, 7, 0, 0, 0, 100, 1000, 1000},
                &polls[paced]);
  }
  const std::vector<std::string>& events = polls[0].events;
  EXPECT_EQ(std::count_if(events.begin(), events.end(),
                          [](const std::string& e) { return e[0] != 'w' && e[0] != 'i'; }),
            467);  // seq 301, 304, ..., 1699
  // Idle after the polls of nothing, active again before the next batch's first record (seq
  // 301 + 3 * 256), idle at the end.
  EXPECT_EQ(std::count(events.begin(), events.end(), "idle 1"), 2);
  ASSERT_EQ(std::count(events.begin(), events.end(), "idle 0"), 1);
  const auto active = std::find(events.begin(), events.end(), "idle 0");
  ASSERT_NE(active + 1, events.end());
  EXPECT_EQ(*(active - 1), "idle 1");
  EXPECT_EQ(*(active + 1), "411,-401,3200");
  EXPECT_EQ(polls[0].events, polls[1].events);
  EXPECT_EQ(polls[0].snapshots, polls[1].snapshots);
  EXPECT_EQ(polls[0].states, polls[1].states);
  EXPECT_EQ(polls[0].states.back(), SourceOperator::State::kEnd);
}

// Split entries carry a format version; the unversioned layout of earlier releases (three
// native int64s) still restores; a newer version, a truncated entry or one that is no split
// fails with kDataLoss naming the job, operator, subtask and checkpoint.
TEST_F(OperatorsTest, DatagenSplitStateFormats) {
  Load(kCountingJob);
  restored_ = true;
  const SplitState old{1, 2, 15};  // format 0
  restored_state_ = {std::string(reinterpret_cast<const char*>(&old), sizeof(old))};
  {
    auto gen = OpenSource("gen", 0, 1);
    ASSERT_OK(gen);
    ASSERT_OK(Drain(gen->get()));
    EXPECT_THAT(Ints(0), ElementsAre(15, 17, 19));
  }
  std::string v1 = restored_state_[0];
  v1.insert(0, 1, '\x01');
  const std::string named = "(job job-1, operator 'gen' (type datagen), subtask 0, restored from checkpoint 5)";
  for (const auto& [entry, reason] : std::vector<std::pair<std::string, std::string>>{
           {std::string(1, '\x02') + v1.substr(1), "datagen split has format version 2, newer than this build reads (up to 1)"},
           {v1.substr(0, 20), "datagen split has 20 bytes, expected 25"},
           {"", "datagen split is empty (truncated)"},
           {std::string(1, '\x01') + std::string(24, '\0'), "datagen split (0, 0, 0) is not a split"}}) {
    restored_state_ = {entry};
    EXPECT_THAT(OpenSource("gen"), StatusIs(absl::StatusCode::kDataLoss, AllOf(HasSubstr(named), HasSubstr(reason))));
  }
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

// Logs what an operator emits, telling batches from single records: "[1 2]" for
// EmitOwnedBatch() of records with ids 1 and 2, "3" for Emit()/EmitOwned() of id 3 (field 0),
// "idle <0|1>" for a watermark status.
class BatchLog final : public Output {
 public:
  absl::Status Emit(const Record& r) override {
    log.push_back(absl::StrCat(r.GetInt(0)));
    return absl::OkStatus();
  }
  absl::Status EmitOwnedBatch(Record* records, size_t n) override {
    std::string line = "[";
    for (size_t i = 0; i < n; ++i) absl::StrAppend(&line, i == 0 ? "" : " ", records[i].GetInt(0));
    log.push_back(line + "]");
    return absl::OkStatus();
  }
  absl::Status EmitWatermarkStatus(bool idle) override {
    log.push_back(absl::StrCat("idle ", idle));
    return absl::OkStatus();
  }
  std::vector<std::string> log;
};

// Filters over (id, ni): ni (nullable) is null for ids 2 and 7 of the records below.
constexpr char kNullableFilterJob[] = R"y(operators:
  - id: gen
    type: datagen
    fields:
      - {name: s, type: string, expr: "to_string(seq)"}
      - {name: id, type: int64, expr: seq}
  - id: n
    type: map
    fields:
      - id
      - {name: ni, expr: "length(split_index(s, '/', 1))"}
  - {id: mod, type: filter, input: n, where: "id % 3 != 1"}
  - {id: mod_null, type: filter, input: n, where: "ni % 2 == 0"}
  - {id: cmp_null, type: filter, input: n, where: "ni < id"}
  - {id: none, type: filter, input: n, where: "id < 0"}
  - {id: all, type: filter, input: n, where: "id >= 0"}
  - {id: either, type: filter, input: n, where: "id == 4 or ni > 6"}
  - {id: out, type: print, input: n}
)y";

// Records (id, ni) for ids 0..9: ni = id + 2, null for ids 2 and 7.
std::vector<Record> NullableFilterInput() {
  std::vector<Record> records;
  for (int64_t id = 0; id < 10; ++id) {
    Record r(2);
    r.SetInt(0, id);
    if (id == 2 || id == 7) {
      r.SetNull(1);
    } else {
      r.SetInt(1, id + 2);
    }
    records.push_back(std::move(r));
  }
  return records;
}

// A batch passes the filter as its runs of kept records, each emitted as one batch in order;
// nulls in the condition drop the record (as Keep() does record by record); a batch keeping
// nothing emits nothing, one keeping all emits itself; a watermark status between two batches
// stays between them.
TEST_F(OperatorsTest, FilterPassesABatchOnAsItsKeptRuns) {
  Load(kNullableFilterJob);
  ASSERT_TRUE(Spec("mod_null").input_schema.field(1).nullable);
  const std::vector<std::pair<std::string, std::vector<std::string>>> cases = {
      {"mod", {"[0]", "[2 3]", "[5 6]", "[8 9]", "idle 1", "[0]", "[2 3]", "[5 6]", "[8 9]"}},
      // ni even: ids 0, 4, 6, 8 (ni null for 2 and 7).
      {"mod_null", {"[0]", "[4]", "[6]", "[8]", "idle 1", "[0]", "[4]", "[6]", "[8]"}},
      // ni < id never holds for ni = id + 2.
      {"cmp_null", {"idle 1"}},
      {"none", {"idle 1"}},
      {"all", {"[0 1 2 3 4 5 6 7 8 9]", "idle 1", "[0 1 2 3 4 5 6 7 8 9]"}},
      // A node without a batch loop of its own (or): the default, the same runs.
      {"either", {"[4 5 6]", "[8 9]", "idle 1", "[4 5 6]", "[8 9]"}},
  };
  for (const auto& [id, want] : cases) {
    SCOPED_TRACE(id);
    BatchLog log;
    auto f = Open(id, 0, 1, &log);
    ASSERT_OK(f);
    std::vector<Record> batch = NullableFilterInput();
    ASSERT_OK((*f)->ProcessOwnedBatch(batch.data(), batch.size()));
    ASSERT_OK((*f)->ProcessWatermarkStatus(true));
    batch = NullableFilterInput();
    ASSERT_OK((*f)->ProcessOwnedBatch(batch.data(), batch.size()));
    EXPECT_THAT(log.log, ElementsAreArray(want));
    // Record by record, the filter keeps the same records.
    std::vector<std::string> batched;
    for (const std::string& line : log.log) {
      if (line[0] != '[') continue;
      for (absl::string_view id_text : absl::StrSplit(line.substr(1, line.size() - 2), ' ')) {
        batched.emplace_back(id_text);
      }
    }
    BatchLog one;
    auto g = Open(id, 0, 1, &one);
    ASSERT_OK(g);
    for (int rep = 0; rep < 2; ++rep) {
      for (Record& r : NullableFilterInput()) ASSERT_OK((*g)->ProcessOwned(&r));
    }
    EXPECT_THAT(one.log, ElementsAreArray(batched));
  }
}

// A batch longer than the expression's batch (Expr::kEvalBatch, 256) is evaluated in parts; a
// run of kept records across a part's end is emitted as two batches, in order.
TEST_F(OperatorsTest, FilterBatchLongerThanAnExpressionBatch) {
  Load(kNullableFilterJob);
  ASSERT_EQ(plan::Expr::kEvalBatch, 256u);
  BatchLog log;
  auto f = Open("all", 0, 1, &log);
  ASSERT_OK(f);
  std::vector<Record> batch;
  for (int64_t id = 0; id < 600; ++id) {
    Record r(2);
    r.SetInt(0, id);
    r.SetInt(1, 0);
    batch.push_back(std::move(r));
  }
  ASSERT_OK((*f)->ProcessOwnedBatch(batch.data(), batch.size()));
  std::vector<std::string> want;
  for (int64_t from : {0, 256, 512}) {
    std::string run;
    for (int64_t id = from; id < std::min<int64_t>(from + 256, 600); ++id) {
      absl::StrAppend(&run, run.empty() ? "" : " ", id);
    }
    want.push_back("[" + run + "]");
  }
  EXPECT_THAT(log.log, ElementsAreArray(want));
}

// An operator that prefers rows of integers but does not take them says so, with the input and
// the rows it was given (the task's failure adds the job, task and operator names).
TEST_F(OperatorsTest, ProcessIntRowsNotImplementedSaysWhatHappened) {
  class PrefersRowsOnly final : public Operator {
   public:
    absl::Status Process(const Record&) override { return absl::OkStatus(); }
    bool PrefersIntRows(int) const override { return true; }
  };
  PrefersRowsOnly op;
  const int64_t values[6] = {1, 2, 3, 4, 5, 6};
  IntRowBatch rows;
  rows.values = values;
  rows.width = 2;
  rows.count = 3;
  EXPECT_THAT(op.ProcessIntRows(1, rows),
              StatusIs(absl::StatusCode::kUnimplemented,
                       "given 3 rows of integers of input 1 (it prefers them: PrefersIntRows), but "
                       "it does not implement ProcessIntRows()"));
}

// Operators read their typed options; a spec holding another type's options is refused at Open.
TEST_F(OperatorsTest, OperatorRefusesOptionsOfAnotherType) {
  Load(kRowsJob);
  ASSERT_NE(Spec("f").options_as<FilterOptions>(), nullptr);
  EXPECT_EQ(Spec("f").options_as<FilterOptions>()->where, "id % 3 == 0 or name == 'special'");
  plan::OperatorSpec wrong = Spec("f");
  wrong.options = Spec("m").options;  // map options
  auto op = registry_.Create(wrong);
  ASSERT_OK(op);
  OperatorContext ctx;
  ctx.job = &job_;
  ctx.spec = &wrong;
  ctx.clock = &clock_;
  ctx.task_name = "job-1/f#0";
  EXPECT_THAT((*op)->Open(ctx, &out_),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       "operator job-1/f#0 was given options of another operator type"));
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

// A map copies bare fields and, given the record to take (ProcessOwned), swaps one output per
// string input instead of copying: the rows equal those of EvalInto per field (the general
// path) with nulls, a field read twice, read by an expression too, type changes, empty and long
// strings, through Process(), ProcessOwned() of one reused record (as a chain gives it) and a
// filter passing owned records on.
TEST_F(OperatorsTest, MapCopiesAndTakesFieldsAsItsExpressionsEvaluate) {
  Load(R"y(operators:
  - id: gen
    type: datagen
    fields:
      - {name: s, type: string, expr: "'a/' + to_string(seq)"}
      - {name: id, type: int64, expr: seq}
      - {name: d, type: double, expr: seq * 0.5}
  - id: n
    type: map
    fields:
      - s
      - {name: ns, expr: "split_index(s, '/', 1)"}
      - {name: ni, expr: "length(split_index(s, '/', 2))"}
      - id
      - d
  - id: m
    type: map
    input: n
    fields:
      - s
      - {name: s2, expr: s}
      - {name: up, expr: "upper(s)"}
      - ns
      - {name: ns_len, expr: "length(ns)"}
      - ni
      - {name: id_t, expr: id, type: timestamp}
      - {name: id_d, expr: id, type: double}
      - d
      - {name: d2, expr: "d * 2"}
  - id: f
    type: filter
    input: n
    where: "id != 3"
  - id: out
    type: print
    input: m
)y");
  const Schema& in_schema = Spec("m").input_schema;
  const Schema& out_schema = Spec("m").output_schema;
  ASSERT_TRUE(in_schema.field(1).nullable);
  ASSERT_TRUE(in_schema.field(2).nullable);
  ASSERT_EQ(out_schema.field(6).type, FieldType::kTimestamp);
  // Inputs (s, ns, ni, id, d): nulls in either nullable field, empty and long strings.
  std::vector<Record> inputs;
  const std::string long_s(100, 'x');
  for (int k = 0; k < 8; ++k) {
    Record r(5);
    r.SetString(0, k % 3 == 0 ? "" : (k % 3 == 1 ? absl::string_view(long_s) : absl::string_view("q")));
    if (k % 2 == 0) {
      r.SetNull(1);
    } else {
      r.SetString(1, k == 5 ? long_s + "y" : std::string(k, 'n'));
    }
    if (k % 4 == 1) {
      r.SetNull(2);
    } else {
      r.SetInt(2, -k);
    }
    r.SetInt(3, k == 7 ? std::numeric_limits<int64_t>::min() : k);
    r.SetDouble(4, k == 6 ? -0.0 : k * 1.25);
    inputs.push_back(std::move(r));
  }
  // The general path: each field's expression evaluated with EvalInto.
  std::vector<Record> expected;
  for (const Record& in : inputs) {
    Record row(out_schema.size());
    for (size_t i = 0; i < out_schema.size(); ++i) {
      const auto& f = Spec("m").options_as<MapOptions>()->fields[i];
      auto e = plan::CompileExpr(f.expr, in_schema);
      ASSERT_OK(e);
      plan::EvalInto(**e, in, out_schema.field(i).type, &row, i);
    }
    expected.push_back(std::move(row));
  }
  auto expect_rows = [&](const std::vector<Record>& got, const std::vector<size_t>& which) {
    ASSERT_EQ(got.size(), which.size());
    for (size_t n = 0; n < got.size(); ++n) {
      const Record& want = expected[which[n]];
      for (size_t i = 0; i < out_schema.size(); ++i) {
        SCOPED_TRACE(absl::StrCat("input ", which[n], ", field ", out_schema.field(i).name));
        ASSERT_EQ(got[n].IsNull(i), want.IsNull(i));
        if (want.IsNull(i)) continue;
        switch (out_schema.field(i).type) {
          case FieldType::kString: EXPECT_EQ(got[n].GetString(i), want.GetString(i)); break;
          case FieldType::kDouble:
            EXPECT_EQ(std::signbit(got[n].GetDouble(i)), std::signbit(want.GetDouble(i)));
            EXPECT_EQ(got[n].GetDouble(i), want.GetDouble(i));
            break;
          default: EXPECT_EQ(got[n].GetInt(i), want.GetInt(i)); break;
        }
      }
    }
  };
  std::vector<size_t> all(inputs.size());
  for (size_t n = 0; n < all.size(); ++n) all[n] = n;
  // The const path.
  auto m = Open("m");
  ASSERT_OK(m);
  for (const Record& in : inputs) ASSERT_OK((*m)->Process(in));
  expect_rows(out_.records, all);
  // One record reused, every value overwritten per record (what a source or a decoder does);
  // whatever the map swapped into it is overwritten.
  out_.records.clear();
  auto owned = Open("m");
  ASSERT_OK(owned);
  Record reused(in_schema.size());
  for (const Record& in : inputs) {
    for (size_t i = 0; i < in_schema.size(); ++i) CopyValue(in_schema.field(i).type, in, i, &reused, i);
    ASSERT_OK((*owned)->ProcessOwned(&reused));
  }
  expect_rows(out_.records, all);
  // A filter gives the records it keeps on as owned.
  out_.records.clear();
  class ToOperator final : public Output {
   public:
    explicit ToOperator(Operator* to) : to_(to) {}
    absl::Status Emit(const Record& r) override { return to_->Process(r); }
    absl::Status EmitOwned(Record* r) override { return to_->ProcessOwned(r); }

   private:
    Operator* to_;
  };
  auto after_filter = Open("m");
  ASSERT_OK(after_filter);
  ToOperator to_map(after_filter->get());
  auto f = Open("f", 0, 1, &to_map);
  ASSERT_OK(f);
  for (const Record& in : inputs) {
    for (size_t i = 0; i < in_schema.size(); ++i) CopyValue(in_schema.field(i).type, in, i, &reused, i);
    ASSERT_OK((*f)->ProcessOwned(&reused));
  }
  expect_rows(out_.records, {0, 1, 2, 4, 5, 6, 7});
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

// ProcessBatch() (keys read ahead per batch) emits exactly what a plain map computes, as
// Process() does: batches of 1 to 513 records with keys repeated inside a batch, over caches
// that hold every key, a few or none (read-ahead entries evicted again before their record).
TEST_F(OperatorsTest, AggregateBatchesEmitWhatRecordsEmit) {
  Load(absl::StrReplaceAll(kAggregateJob, {{"EMIT", "updates"}}));
  std::vector<Record> input;
  std::vector<AggRow> want;
  std::map<std::string, AggRow> rows;
  for (int i = 0; i < 3000; ++i) {
    const std::string k = absl::StrCat("key", (i * 7919) % 311 % (i % 3 == 0 ? 5 : 311));
    const int64_t v = (i * 37) % 101 - 50;
    const double d = ((i * 13) % 17) / 4.0;
    input.push_back(KVD(k, v, d));
    auto [it, added] = rows.try_emplace(k, AggRow{k, 0, 0, v, v, 0, 0, d, d, 0});
    AggRow& r = it->second;
    r.count++;
    r.sum_v += v;
    r.min_v = std::min(r.min_v, v);
    r.max_v = std::max(r.max_v, v);
    r.avg_v = static_cast<double>(r.sum_v) / r.count;
    r.sum_d += d;
    r.min_d = std::min(r.min_d, d);
    r.max_d = std::max(r.max_d, d);
    r.avg_d = r.sum_d / r.count;
    want.push_back(r);
  }
  for (size_t cache_bytes : {size_t{32} << 20, size_t{4} << 10, size_t{0}}) {
    SCOPED_TRACE(cache_bytes);
    cache_bytes_ = cache_bytes;
    out_.records.clear();
    auto agg = Open("agg");
    ASSERT_OK(agg);
    EXPECT_TRUE((*agg)->PrefersBatches());
    size_t i = 0;
    for (size_t n : {1, 5, 64, 256, 513}) {
      for (int rep = 0; rep < 2 && i < input.size(); ++rep) {
        const size_t count = std::min(n, input.size() - i);
        ASSERT_OK((*agg)->ProcessBatch(0, input.data() + i, count));
        i += count;
      }
    }
    for (; i < input.size(); ++i) ASSERT_OK((*agg)->Process(input[i]));
    ASSERT_EQ(out_.records.size(), want.size());
    for (size_t r = 0; r < want.size(); ++r) {
      SCOPED_TRACE(r);
      ExpectRow(out_.records[r], want[r]);
    }
  }
}

// Rows as text with every bit of their values (doubles in hex), for exact comparisons.
std::vector<std::string> AggRowsExactly(const std::vector<Record>& rows) {
  std::vector<std::string> out;
  for (const Record& r : rows) {
    std::string row(r.GetString(0));
    for (size_t f = 1; f < 5; ++f) absl::StrAppend(&row, " ", r.GetInt(f));
    for (size_t f = 5; f < 10; ++f) absl::StrAppend(&row, " ", absl::StrFormat("%a", r.GetDouble(f)));
    out.push_back(std::move(row));
  }
  return out;
}

// ProcessBatch() reads each key's accumulators once per batch and writes them once at its end
// (the mini-batch path): it emits exactly what Process() per record emits (the general path),
// row for row, doubles bit for bit (their sums depend on the order), with runs of one key
// crossing batch boundaries, batches of a single key, a key first and last in a batch, and
// caches that hold every key, a few or none; with emit: final, Finish() emits the same rows.
TEST_F(OperatorsTest, AggregateBatchesReadAndWriteEachKeyOnceAsRecordsDo) {
  std::vector<Record> input;
  for (int run = 0; run < 120; ++run) {
    const std::string k = absl::StrCat("key", (run * 37) % 7);  // runs of 1 to 40 records
    for (int j = 0; j <= (run * 13) % 40; ++j) {
      const int64_t i = static_cast<int64_t>(input.size());
      input.push_back(KVD(k, (i * 7919) % 1001 - 500, ((i * 31) % 97) / 7.0 + 1e15 * (i % 3 == 0)));
    }
  }
  for (const char* emit : {"updates", "final"}) {
    Load(absl::StrReplaceAll(kAggregateJob, {{"EMIT", emit}}));
    for (size_t cache_bytes : {size_t{32} << 20, size_t{4} << 10, size_t{0}}) {
      SCOPED_TRACE(absl::StrCat(emit, " ", cache_bytes));
      cache_bytes_ = cache_bytes;
      CollectingOutput per_record, batched;
      auto general = Open("agg", 0, 1, &per_record);
      ASSERT_OK(general);
      for (const Record& r : input) ASSERT_OK((*general)->Process(r));
      ASSERT_OK((*general)->Finish());
      auto agg = Open("agg", 0, 1, &batched);
      ASSERT_OK(agg);
      size_t i = 0;
      for (size_t b = 0; i < input.size(); ++b) {
        const size_t sizes[] = {1, 2, 3, 40, 7, 64, 300, 5};
        const size_t count = std::min(sizes[b % 8], input.size() - i);
        ASSERT_OK((*agg)->ProcessBatch(0, input.data() + i, count));
        i += count;
      }
      ASSERT_OK((*agg)->Finish());
      EXPECT_EQ(per_record.records.size(), std::string(emit) == "final" ? 7u : input.size());
      EXPECT_EQ(AggRowsExactly(batched.records), AggRowsExactly(per_record.records));
    }
  }
}

// A record's carried key group (Record::carried_key_group(), set by the task from the exchange)
// is the key group the aggregate keys its state by, record by record and in batches: carried
// as the sender computes it, the rows are the general path's (which hashes the key), value
// for value; a different carried key group is another state (the count starts again).
TEST_F(OperatorsTest, AggregateKeysStateByTheCarriedKeyGroup) {
  Load(absl::StrReplaceAll(kAggregateJob, {{"EMIT", "updates"}}));
  auto hasher = KeyHasher::Create(Spec("agg").key, Spec("agg").input_schema);
  ASSERT_OK(hasher.status());
  std::vector<Record> input, carried;
  for (int i = 0; i < 600; ++i) {
    input.push_back(KVD(absl::StrCat("key", (i * 7919) % 53), i % 41 - 20, (i % 9) / 4.0));
    carried.push_back(input.back());
    carried.back().set_carried_key_group(KeyGroupForHash(hasher->Hash(input.back()), job_.max_parallelism));
  }
  CollectingOutput general, per_record, batched;
  auto a = Open("agg", 0, 1, &general);
  ASSERT_OK(a);
  for (const Record& r : input) ASSERT_OK((*a)->Process(r));
  auto b = Open("agg", 0, 1, &per_record);
  ASSERT_OK(b);
  for (const Record& r : carried) ASSERT_OK((*b)->Process(r));
  auto c = Open("agg", 0, 1, &batched);
  ASSERT_OK(c);
  for (size_t i = 0; i < carried.size(); i += 64) {
    ASSERT_OK((*c)->ProcessBatch(0, carried.data() + i, std::min<size_t>(64, carried.size() - i)));
  }
  ASSERT_EQ(general.records.size(), input.size());
  EXPECT_EQ(AggRowsExactly(per_record.records), AggRowsExactly(general.records));
  EXPECT_EQ(AggRowsExactly(batched.records), AggRowsExactly(general.records));
  Record other = carried[0];
  other.set_carried_key_group((other.carried_key_group() + 1) % job_.max_parallelism);
  ASSERT_OK((*b)->Process(other));
  EXPECT_EQ(per_record.records.back().GetInt(1), 1) << "a new key group holds no count yet";
  ASSERT_OK((*b)->Process(carried[0]));
  EXPECT_GT(per_record.records.back().GetInt(1), 2) << "its own key group has the count";
}

// RecordKey (the window's and top_n's key) takes a record's carried key group, equal to the
// one it computes from the key; without one, or set from key bytes (a timer's key), it
// computes it.
TEST_F(OperatorsTest, RecordKeyTakesTheCarriedKeyGroup) {
  Load(absl::StrReplaceAll(kAggregateJob, {{"EMIT", "updates"}}));
  internal::RecordKey key;
  ASSERT_OK(key.Init(Spec("agg"), job_.max_parallelism));
  Record r = KVD("some key", 1, 1.0);
  key.Set(r);
  const int computed = key.key_group();
  const std::string bytes = key.bytes();
  r.set_carried_key_group((computed + 5) % job_.max_parallelism);
  key.Set(r);
  EXPECT_EQ(key.key_group(), (computed + 5) % job_.max_parallelism);
  ASSERT_OK(key.SetBytes(bytes));
  EXPECT_EQ(key.key_group(), computed);
  r.set_carried_key_group(-1);
  key.Set(r);
  EXPECT_EQ(key.key_group(), computed);
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

TEST_F(OperatorsTest, AggregateRefusesMalformedAccumulatorsAsDataLoss) {
  Load(absl::StrReplaceAll(kAggregateJob, {{"EMIT", "updates"}}));
  auto agg = Open("agg");
  ASSERT_OK(agg);
  ASSERT_OK((*agg)->Process(KVD("a", 5, 0.5)));
  // The backend's current key is still "a": overwrite its accumulators with bytes of another
  // shape (what a job with other aggregates, or a torn value, would leave).
  state::KeyedStateBackend* backend = backends_.back().get();
  const state::StateId id = backend->RegisterState("accumulators", state::StateKind::kValue);
  ASSERT_OK(backend->Put(id, std::string(17, '\x07')));
  absl::Status s = (*agg)->Process(KVD("a", 1, 1.0));
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kDataLoss,
                          HasSubstr("(job job-1, operator 'agg' (type aggregate), subtask 0, not restored from "
                                    "a checkpoint): stored accumulators of a key have 17 bytes (format 7), "
                                    "expected 217 (format 1, 9 aggregates)")));
  EXPECT_EQ(out_.records.size(), 1u);  // nothing emitted from a reset accumulator
}

// As SQL: sum/min/max/avg skip nulls and are null while every value of the key was null
// (their output fields are nullable); count counts rows, count of a field its non-null values.
TEST_F(OperatorsTest, AggregatesOverOnlyNullsAreNull) {
  Load(internal::NullableAmountJob(R"y(  - id: agg
    type: aggregate
    aggregates: [{fn: count}, {fn: count, field: amount, as: n}, {fn: sum, field: amount, as: sum},
                 {fn: min, field: amount, as: min}, {fn: max, field: amount, as: max}, {fn: avg, field: amount, as: avg},
                 {fn: sum, field: left.user, as: sum_k}]
  - {id: out, type: blackhole}
)y"));
  EXPECT_EQ(Spec("agg").output_schema.ToString(),
            "(left.user int64, count int64, n int64, sum int64 null, min int64 null, max int64 null, avg double null, "
            "sum_k int64)");
  auto agg = Open("agg");
  ASSERT_OK(agg);
  for (const auto& [v, want] : std::vector<std::pair<std::optional<int64_t>, std::string>>{
           {std::nullopt, "1 0 null null null null 7"},
           {4, "2 1 4 4 4 4 14"},
           {std::nullopt, "3 1 4 4 4 4 21"},
           {-2, "4 2 2 -2 4 1 28"}}) {
    ASSERT_OK((*agg)->Process(internal::NullableAmountInput(7, 0, v)));
    const Record& out = out_.records.back();
    std::vector<std::string> got;
    for (size_t f = 1; f < 8; ++f) {
      got.push_back(out.IsNull(f) ? "null" : f == 6 ? absl::StrCat(out.GetDouble(f)) : absl::StrCat(out.GetInt(f)));
    }
    EXPECT_EQ(absl::StrJoin(got, " "), want);
  }
}

// first / last: the value of the key's first record and of its latest, in the order records
// come (Process() and batches alike, a key's first value kept across batches), skipping nulls
// as the other functions do; of the field's type, null while every value was null.
TEST_F(OperatorsTest, AggregateFirstAndLastTakeTheKeysFirstAndLatestValues) {
  // kAggregateJob with other aggregates.
  std::string job(kAggregateJob);
  const size_t from = job.find("      - {fn: count}");
  job.replace(from, job.find("  - id: out") - from,
              "      [{fn: first, field: v}, {fn: last, field: v}, {fn: first, field: d, as: fd},\n"
              "       {fn: last, field: d, as: ld}]\n");
  const std::string kJob = job;
  const auto rows = [](const std::vector<Record>& records) {
    std::vector<std::string> out;
    for (const Record& r : records) {
      out.push_back(absl::StrCat(r.GetString(0), " ", r.GetInt(1), " ", r.GetInt(2), " ",
                                 r.GetDouble(3), " ", r.GetDouble(4)));
    }
    return out;
  };
  Load(absl::StrReplaceAll(kJob, {{"EMIT", "updates"}}));
  EXPECT_EQ(Spec("agg").output_schema.ToString(),
            "(k string, first_v int64, last_v int64, fd double, ld double)");
  const std::vector<std::string> want = {"a 5 5 0.5 0.5", "b 10 10 2 2", "a 5 -3 0.5 1.5",
                                         "a 5 7 0.5 -1", "b 10 4 2 4"};
  {
    auto agg = Open("agg");
    ASSERT_OK(agg);
    for (const Record& r : AggregateInput()) ASSERT_OK((*agg)->Process(r));
    EXPECT_THAT(rows(out_.records), ElementsAreArray(want));
  }
  {
    out_.records.clear();
    auto agg = Open("agg");
    ASSERT_OK(agg);
    const std::vector<Record> input = AggregateInput();
    ASSERT_OK((*agg)->ProcessBatch(0, input.data(), 2));
    ASSERT_OK((*agg)->ProcessBatch(0, input.data() + 2, 3));
    EXPECT_THAT(rows(out_.records), ElementsAreArray(want));
  }
  Load(absl::StrReplaceAll(kJob, {{"EMIT", "final"}}));
  out_.records.clear();
  auto agg = Open("agg");
  ASSERT_OK(agg);
  const std::vector<Record> input = AggregateInput();
  ASSERT_OK((*agg)->ProcessBatch(0, input.data(), 3));
  ASSERT_OK((*agg)->Process(input[3]));
  ASSERT_OK((*agg)->Process(input[4]));
  ASSERT_OK((*agg)->Finish());
  EXPECT_THAT(rows(out_.records), UnorderedElementsAre("a 5 7 0.5 -1", "b 10 4 2 4"));

  Load(internal::NullableAmountJob(R"y(  - id: agg
    type: aggregate
    aggregates: [{fn: first, field: amount, as: first}, {fn: last, field: amount, as: last}]
  - {id: out, type: blackhole}
)y"));
  EXPECT_EQ(Spec("agg").output_schema.ToString(),
            "(left.user int64, first int64 null, last int64 null)");
  out_.records.clear();
  auto nulls = Open("agg");
  ASSERT_OK(nulls);
  for (const auto& [v, want_row] : std::vector<std::pair<std::optional<int64_t>, std::string>>{
           {std::nullopt, "null null"}, {4, "4 4"}, {std::nullopt, "4 4"}, {-2, "4 -2"}}) {
    ASSERT_OK((*nulls)->Process(internal::NullableAmountInput(7, 0, v)));
    const Record& out = out_.records.back();
    std::vector<std::string> got;
    for (size_t f = 1; f < 3; ++f) got.push_back(out.IsNull(f) ? "null" : absl::StrCat(out.GetInt(f)));
    EXPECT_EQ(absl::StrJoin(got, " "), want_row);
  }
}

TEST_F(OperatorsTest, AggregateReadsAccumulatorsWrittenWithoutFormatVersion) {
  Load(absl::StrReplaceAll(kAggregateJob, {{"EMIT", "updates"}}));
  auto agg = Open("agg");
  ASSERT_OK(agg);
  ASSERT_OK((*agg)->Process(KVD("a", 5, 0.5)));
  // Format 0: nine {int64 i, double d, int64 n} accumulators, no version byte; count = 4,
  // every other accumulator holding i = 100, d = 10.0 over n = 4 values.
  struct Acc {
    int64_t i;
    double d;
    int64_t n;
  };
  std::vector<Acc> old(9, Acc{100, 10.0, 4});
  old[0] = Acc{4, 0, 4};
  state::KeyedStateBackend* backend = backends_.back().get();
  const state::StateId id = backend->RegisterState("accumulators", state::StateKind::kValue);
  ASSERT_OK(backend->Put(id, std::string(reinterpret_cast<const char*>(old.data()),
                                         old.size() * sizeof(Acc))));
  ASSERT_OK((*agg)->Process(KVD("a", 7, 2.0)));
  ASSERT_EQ(out_.records.size(), 2u);
  // count 5; sum_v 107; min_v 100 (7 < 100 -> 7); max_v 100; avg_v 107 / 5; sum_d 12;
  // min_d 2; max_d 10; avg_d 12 / 5.
  ExpectRow(out_.records[1], {"a", 5, 107, 7, 100, 107.0 / 5, 12.0, 2.0, 10.0, 12.0 / 5});
}

// A function of the catalog (a plugin's in a cluster): rolling results per key, at the end with
// emit: final; its accumulators in their own value per key.
TEST_F(OperatorsTest, AggregateRunsTheCatalogsFunctions) {
  ASSERT_OK(registry_.AddAggregateFunction(std::make_shared<internal::SpreadFunction>()));
  // kAggregateJob with other aggregates.
  const std::string base = kAggregateJob;
  const std::string job = base.substr(0, base.find("    aggregates:")) +
                          "    aggregates: [{fn: count}, {fn: spread, field: v, as: sp}]\n"
                          "  - {id: out, type: print}\n";
  Load(absl::StrReplaceAll(job, {{"EMIT", "updates"}}));
  EXPECT_EQ(Spec("agg").output_schema.ToString(), "(k string, count int64, sp int64 null)");
  auto agg = Open("agg");
  ASSERT_OK(agg);
  for (const Record& r : AggregateInput()) ASSERT_OK((*agg)->Process(r));
  std::vector<std::string> rows;
  for (const Record& r : out_.records) {
    rows.push_back(absl::StrCat(r.GetString(0), " ", r.GetInt(1), " ", r.GetInt(2)));
  }
  EXPECT_THAT(rows, ::testing::ElementsAre("a 1 0", "b 1 0", "a 2 8", "a 3 10", "b 2 6"));
  out_.records.clear();
  Load(absl::StrReplaceAll(job, {{"EMIT", "final"}}));
  auto final_agg = Open("agg");
  ASSERT_OK(final_agg);
  for (const Record& r : AggregateInput()) ASSERT_OK((*final_agg)->Process(r));
  ASSERT_OK((*final_agg)->Finish());
  rows.clear();
  for (const Record& r : out_.records) {
    rows.push_back(absl::StrCat(r.GetString(0), " ", r.GetInt(1), " ", r.GetInt(2)));
  }
  EXPECT_THAT(rows, ::testing::UnorderedElementsAre("a 3 10", "b 2 6"));
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

  const std::string file = dir + "/part-job-1-1.jsonl";
  ASSERT_TRUE(std::filesystem::exists(file));
  EXPECT_FALSE(std::filesystem::exists(dir + "/part-job-1-0.jsonl"));
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
  const std::string file = tmp.path() + "/part-job-1-0.jsonl";
  Record r(1);
  constexpr int kRecords = 20000;  // more than the 64 KiB buffer
  for (int i = 0; i < kRecords; ++i) {
    r.SetInt(0, i);
    ASSERT_OK((*sink)->Process(r));
  }
  // Part has been written already, without Finish, but is not visible as output yet.
  EXPECT_GT(std::filesystem::file_size(tmp.path() + "/part-job-1-0.inprogress"), 0u);
  EXPECT_FALSE(std::filesystem::exists(file));
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

// Sorted names of the files in `dir`.
std::vector<std::string> FileNames(const std::string& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    names.push_back(e.path().filename().string());
  }
  EXPECT_FALSE(ec) << ec.message();
  std::sort(names.begin(), names.end());
  return names;
}

// A two-phase-commit sink's state entry of `handle` (format version 1).
std::string Entry(const std::string& handle) { return "\x01" + handle; }

std::string AbsolutePath(const std::string& path) {
  return std::filesystem::absolute(path).string();
}

std::string FileSinkJob(const std::string& dir) {
  return absl::StrCat(R"y(operators:
  - {id: gen, type: datagen, fields: [{name: x, type: int64, expr: seq}]}
  - id: out
    type: file
    path: )y",
                      dir, "\n");
}

Record X(int64_t x) {
  Record r(1);
  r.SetInt(0, x);
  return r;
}

TEST_F(OperatorsTest, FileSinkWithoutCheckpointsHasNoState) {
  TempDir tmp;
  const std::string dir = tmp.path() + "/out";
  Load(FileSinkJob(dir));
  auto sink = Open("out");
  ASSERT_OK(sink);
  ASSERT_OK((*sink)->Process(X(1)));
  std::vector<std::string> entries;
  ASSERT_OK((*sink)->SnapshotState(1, &entries));
  EXPECT_TRUE(entries.empty());
  ASSERT_OK((*sink)->NotifyCheckpointComplete(1));
  ASSERT_OK((*sink)->Finish());
  (*sink)->Close();
  EXPECT_THAT(FileNames(dir), ElementsAre("part-job-1-0.jsonl"));
  EXPECT_EQ(ReadFile(dir + "/part-job-1-0.jsonl"), "{\"x\":1}\n");
}

TEST_F(OperatorsTest, FileSinkPreCommitsOnSnapshotAndCommitsOnNotify) {
  TempDir tmp;
  const std::string dir = tmp.path() + "/out";
  Load(FileSinkJob(dir));
  checkpointing_ = true;
  auto sink = Open("out", /*subtask=*/1, /*parallelism=*/2);
  ASSERT_OK(sink);
  EXPECT_TRUE((*sink)->UnionState());
  EXPECT_THAT(FileNames(dir), ElementsAre());  // nothing before the first record
  for (int i = 0; i < 3; ++i) ASSERT_OK((*sink)->Process(X(i)));
  EXPECT_THAT(FileNames(dir), ElementsAre("part-job-1-1-1-1.inprogress"));

  // Pre-commit: the in-progress file becomes pending, durable and complete, listed by its
  // absolute path. Nothing is visible as output yet.
  std::vector<std::string> entries;
  ASSERT_OK((*sink)->SnapshotState(5, &entries));
  const std::string pending = AbsolutePath(dir + "/part-job-1-1-1-1.pending");
  ASSERT_THAT(entries, ElementsAre(Entry(pending)));
  EXPECT_TRUE(std::filesystem::path(entries[0].substr(1)).is_absolute());
  EXPECT_THAT(FileNames(dir), ElementsAre("part-job-1-1-1-1.pending"));
  const std::string content = "{\"x\":0}\n{\"x\":1}\n{\"x\":2}\n";
  EXPECT_EQ(ReadFile(pending), content);

  // Records after the barrier go to a new in-progress file.
  ASSERT_OK((*sink)->Process(X(3)));
  EXPECT_THAT(FileNames(dir), ElementsAre("part-job-1-1-1-1.pending", "part-job-1-1-1-2.inprogress"));

  // An older checkpoint does not cover it.
  ASSERT_OK((*sink)->NotifyCheckpointComplete(4));
  EXPECT_THAT(FileNames(dir), ElementsAre("part-job-1-1-1-1.pending", "part-job-1-1-1-2.inprogress"));

  // Commit: renamed to its final name, same content.
  ASSERT_OK((*sink)->NotifyCheckpointComplete(5));
  EXPECT_THAT(FileNames(dir), ElementsAre("part-job-1-1-1-1.jsonl", "part-job-1-1-1-2.inprogress"));
  EXPECT_EQ(ReadFile(dir + "/part-job-1-1-1-1.jsonl"), content);
  ASSERT_OK((*sink)->NotifyCheckpointComplete(5));  // repeated: harmless
  EXPECT_THAT(FileNames(dir), ElementsAre("part-job-1-1-1-1.jsonl", "part-job-1-1-1-2.inprogress"));

  // End of input flushes but does not commit: the final checkpoint does.
  ASSERT_OK((*sink)->Finish());
  EXPECT_THAT(FileNames(dir), ElementsAre("part-job-1-1-1-1.jsonl", "part-job-1-1-1-2.inprogress"));
  EXPECT_EQ(ReadFile(dir + "/part-job-1-1-1-2.inprogress"), "{\"x\":3}\n");

  // A checkpoint that does not complete (6) leaves its file pending; the next one (7) lists it
  // again, and completing 7 commits it. Committed files are no longer listed.
  const std::string pending2 = AbsolutePath(dir + "/part-job-1-1-1-2.pending");
  entries.clear();
  ASSERT_OK((*sink)->SnapshotState(6, &entries));
  EXPECT_THAT(entries, ElementsAre(Entry(pending2)));
  entries.clear();
  ASSERT_OK((*sink)->SnapshotState(7, &entries));
  EXPECT_THAT(entries, ElementsAre(Entry(pending2)));
  ASSERT_OK((*sink)->NotifyCheckpointComplete(7));
  EXPECT_THAT(FileNames(dir), ElementsAre("part-job-1-1-1-1.jsonl", "part-job-1-1-1-2.jsonl"));
  EXPECT_EQ(ReadFile(dir + "/part-job-1-1-1-2.jsonl"), "{\"x\":3}\n");
  entries.clear();
  ASSERT_OK((*sink)->SnapshotState(8, &entries));
  EXPECT_THAT(entries, ElementsAre());
  (*sink)->Close();
  EXPECT_THAT(FileNames(dir), ElementsAre("part-job-1-1-1-1.jsonl", "part-job-1-1-1-2.jsonl"));
  EXPECT_TRUE(out_.records.empty());
}

TEST_F(OperatorsTest, FileSinkRestoreCommitsListedFilesAndRemovesOldAttemptsLeftovers) {
  TempDir tmp;
  const std::string dir = tmp.path() + "/out";
  Load(FileSinkJob(dir));
  checkpointing_ = true;

  // Attempt 1, two subtasks. Both pre-commit for checkpoint 5, which completes, but the job
  // fails before they hear of it. Subtask 0 also pre-commits for checkpoint 6, which never
  // completes, and both have records in progress.
  std::vector<std::string> chk5;
  {
    auto s0 = Open("out", 0, 2);
    auto s1 = Open("out", 1, 2);
    ASSERT_OK(s0);
    ASSERT_OK(s1);
    ASSERT_OK((*s0)->Process(X(0)));
    ASSERT_OK((*s0)->Process(X(1)));
    ASSERT_OK((*s1)->Process(X(10)));
    ASSERT_OK((*s0)->SnapshotState(5, &chk5));
    ASSERT_OK((*s1)->SnapshotState(5, &chk5));
    ASSERT_OK((*s0)->Process(X(2)));
    std::vector<std::string> chk6;
    ASSERT_OK((*s0)->SnapshotState(6, &chk6));
    ASSERT_OK((*s0)->Process(X(3)));
    ASSERT_OK((*s1)->Process(X(11)));
    ASSERT_OK((*s0)->Finish());
    ASSERT_OK((*s1)->Finish());
  }
  ASSERT_THAT(chk5, ElementsAre(Entry(AbsolutePath(dir + "/part-job-1-0-1-1.pending")),
                                Entry(AbsolutePath(dir + "/part-job-1-1-1-1.pending"))));
  // Closing a sink removes its file in progress (no checkpoint refers to it) ...
  ASSERT_THAT(FileNames(dir), ElementsAre("part-job-1-0-1-1.pending", "part-job-1-0-1-2.pending",
                                          "part-job-1-1-1-1.pending"));
  // ... but a kill -9 leaves them behind.
  std::ofstream(dir + "/part-job-1-0-1-3.inprogress") << "{\"x\":3}\n";
  std::ofstream(dir + "/part-job-1-1-1-2.inprogress") << "{\"x\":11}\n";
  std::ofstream(dir + "/part-job-1-0-1-0.jsonl") << "{\"x\":-1}\n";  // committed long ago
  std::ofstream(dir + "/notes.txt") << "not ours\n";
  // Another job's files (say the job whose savepoint this one was started from, still running)
  // are never touched.
  std::ofstream(dir + "/part-job-0-0-1-4.pending") << "{\"x\":100}\n";
  std::ofstream(dir + "/part-job-0-0-1-5.inprogress") << "{\"x\":101}\n";
  ASSERT_THAT(FileNames(dir),
              ElementsAre("notes.txt", "part-job-0-0-1-4.pending", "part-job-0-0-1-5.inprogress",
                          "part-job-1-0-1-0.jsonl", "part-job-1-0-1-1.pending",
                          "part-job-1-0-1-2.pending", "part-job-1-0-1-3.inprogress", "part-job-1-1-1-1.pending",
                          "part-job-1-1-1-2.inprogress"));

  // Attempt 2, restored from checkpoint 5 (union state: each subtask sees every entry).
  attempt_ = 2;
  restored_ = true;
  restored_state_ = chk5;
  // Subtask 1 opens first: it leaves the restored files alone (subtask 0 recovers), and its
  // own new files survive subtask 0's cleanup.
  auto n1 = Open("out", 1, 2);
  ASSERT_OK(n1);
  ASSERT_OK((*n1)->Process(X(20)));
  std::vector<std::string> chk7;
  ASSERT_OK((*n1)->SnapshotState(7, &chk7));
  ASSERT_OK((*n1)->Process(X(21)));
  ASSERT_THAT(FileNames(dir),
              ElementsAre("notes.txt", "part-job-0-0-1-4.pending", "part-job-0-0-1-5.inprogress",
                          "part-job-1-0-1-0.jsonl", "part-job-1-0-1-1.pending",
                          "part-job-1-0-1-2.pending", "part-job-1-0-1-3.inprogress", "part-job-1-1-1-1.pending",
                          "part-job-1-1-1-2.inprogress", "part-job-1-1-2-1.pending", "part-job-1-1-2-2.inprogress"));

  auto n0 = Open("out", 0, 2);
  ASSERT_OK(n0);
  EXPECT_THAT(FileNames(dir),
              ElementsAre("notes.txt", "part-job-0-0-1-4.pending", "part-job-0-0-1-5.inprogress",
                          "part-job-1-0-1-0.jsonl", "part-job-1-0-1-1.jsonl", "part-job-1-1-1-1.jsonl",
                          "part-job-1-1-2-1.pending", "part-job-1-1-2-2.inprogress"));
  EXPECT_EQ(ReadFile(dir + "/part-job-1-0-1-1.jsonl"), "{\"x\":0}\n{\"x\":1}\n");
  EXPECT_EQ(ReadFile(dir + "/part-job-1-1-1-1.jsonl"), "{\"x\":10}\n");
  EXPECT_EQ(ReadFile(dir + "/part-job-1-0-1-0.jsonl"), "{\"x\":-1}\n");
  EXPECT_EQ(ReadFile(dir + "/part-job-1-1-2-1.pending"), "{\"x\":20}\n");

  // Recovering again (say the restored subtask 0 failed and was redeployed in the same
  // attempt) commits nothing twice and loses nothing.
  auto again = Open("out", 0, 2);
  ASSERT_OK(again);
  EXPECT_THAT(FileNames(dir),
              ElementsAre("notes.txt", "part-job-0-0-1-4.pending", "part-job-0-0-1-5.inprogress",
                          "part-job-1-0-1-0.jsonl", "part-job-1-0-1-1.jsonl", "part-job-1-1-1-1.jsonl",
                          "part-job-1-1-2-1.pending", "part-job-1-1-2-2.inprogress"));
  EXPECT_EQ(ReadFile(dir + "/part-job-1-0-1-1.jsonl"), "{\"x\":0}\n{\"x\":1}\n");

  // The restored subtask writes under its own attempt and commits as usual.
  ASSERT_OK((*n0)->Process(X(30)));
  std::vector<std::string> entries;
  ASSERT_OK((*n0)->SnapshotState(7, &entries));
  EXPECT_THAT(entries, ElementsAre(Entry(AbsolutePath(dir + "/part-job-1-0-2-1.pending"))));
  ASSERT_OK((*n0)->NotifyCheckpointComplete(7));
  ASSERT_OK((*n1)->NotifyCheckpointComplete(7));
  EXPECT_EQ(ReadFile(dir + "/part-job-1-0-2-1.jsonl"), "{\"x\":30}\n");
  EXPECT_EQ(ReadFile(dir + "/part-job-1-1-2-1.jsonl"), "{\"x\":20}\n");
}

// The file sink's state entries are [version 1][pending file path]; a path alone (format 0)
// still restores. A newer version, an empty entry, a handle that is no pending file or a pending
// file that is missing fail the restore with kDataLoss naming the job, operator, subtask and
// checkpoint.
TEST_F(OperatorsTest, FileSinkStateFormats) {
  TempDir tmp;
  const std::string dir = tmp.path() + "/out";
  Load(FileSinkJob(dir));
  checkpointing_ = true;
  restored_ = true;
  attempt_ = 2;
  const std::string named = "(job job-1, operator 'out' (type file), subtask 0, restored from checkpoint 5)";
  for (const auto& [entry, reason] : std::vector<std::pair<std::string, std::string>>{
           {"\x02" + AbsolutePath(dir + "/part-job-1-0-1-1.pending"), "sink transaction state has format version 2"},
           {"", "sink transaction state is empty (truncated)"},
           {"\x01part-job-1-0-1-1.pending", "file sink pending file 'part-job-1-0-1-1.pending' is not an absolute path"},
           {"\x01" + AbsolutePath(dir + "/part-job-1-0-1-1.inprog"), "is not an absolute path of a .pending file"},
           // Format 0, the path alone, of a pending file that is gone.
           {AbsolutePath(dir + "/part-job-1-0-1-9.pending"), "part-job-1-0-1-9.pending of a completed checkpoint is missing"}}) {
    restored_state_ = {entry};
    EXPECT_THAT(Open("out", 0, 1), StatusIs(absl::StatusCode::kDataLoss, AllOf(HasSubstr(named), HasSubstr(reason))));
  }
}

// A job restored from another job's savepoint (or an unrelated job) writing into the same
// directory: its file names differ, and a commit never replaces a file that exists.
TEST_F(OperatorsTest, FileSinkOfAnotherJobInTheSameDirectoryKeepsBothOutputs) {
  TempDir tmp;
  const std::string dir = tmp.path() + "/out";
  Load(FileSinkJob(dir));
  checkpointing_ = true;
  job_id_ = "job-a";
  auto a = Open("out", 0, 1);
  ASSERT_OK(a);
  ASSERT_OK((*a)->Process(X(1)));
  std::vector<std::string> sp;
  ASSERT_OK((*a)->SnapshotState(3, &sp));
  ASSERT_OK((*a)->NotifyCheckpointComplete(3));
  (*a)->Close();

  // Job b restores a's savepoint (checkpoint 3, already committed by a): same subtask, same
  // attempt and sequence numbers as a had, other names.
  job_id_ = "job-b";
  restored_ = true;
  restored_state_ = sp;
  auto b = Open("out", 0, 1);
  ASSERT_OK(b);
  ASSERT_OK((*b)->Process(X(2)));
  std::vector<std::string> entries;
  ASSERT_OK((*b)->SnapshotState(4, &entries));
  ASSERT_OK((*b)->NotifyCheckpointComplete(4));
  (*b)->Close();
  EXPECT_THAT(FileNames(dir), ElementsAre("part-job-a-0-1-1.jsonl", "part-job-b-0-1-1.jsonl"));
  EXPECT_EQ(ReadFile(dir + "/part-job-a-0-1-1.jsonl"), "{\"x\":1}\n");
  EXPECT_EQ(ReadFile(dir + "/part-job-b-0-1-1.jsonl"), "{\"x\":2}\n");
}

TEST_F(OperatorsTest, FileSinkCommitNeverReplacesAnExistingFile) {
  TempDir tmp;
  const std::string dir = tmp.path() + "/out";
  Load(FileSinkJob(dir));
  checkpointing_ = true;
  auto sink = Open("out", 0, 1);
  ASSERT_OK(sink);
  ASSERT_OK((*sink)->Process(X(1)));
  std::vector<std::string> entries;
  ASSERT_OK((*sink)->SnapshotState(1, &entries));
  // Somebody else's output under the very name the commit would take.
  std::ofstream(dir + "/part-job-1-0-1-1.jsonl") << "{\"other\":true}\n";
  EXPECT_THAT((*sink)->NotifyCheckpointComplete(1),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("part-job-1-0-1-1.jsonl already exists"),
                             HasSubstr("the pending file is kept"))));
  EXPECT_EQ(ReadFile(dir + "/part-job-1-0-1-1.jsonl"), "{\"other\":true}\n");
  EXPECT_EQ(ReadFile(dir + "/part-job-1-0-1-1.pending"), "{\"x\":1}\n");
}

TEST_F(OperatorsTest, FileSinkCommitInterruptedBetweenLinkAndUnlinkIsCompletedOnRedo) {
  TempDir tmp;
  const std::string dir = tmp.path() + "/out";
  Load(FileSinkJob(dir));
  checkpointing_ = true;
  {
    auto sink = Open("out", 0, 1);
    ASSERT_OK(sink);
    ASSERT_OK((*sink)->Process(X(1)));
    std::vector<std::string> entries;
    ASSERT_OK((*sink)->SnapshotState(1, &entries));
    restored_state_ = entries;
  }
  // What link + unlink leaves when the process dies in between (filesystems without renameat2).
  ASSERT_EQ(::link((dir + "/part-job-1-0-1-1.pending").c_str(), (dir + "/part-job-1-0-1-1.jsonl").c_str()), 0);
  attempt_ = 2;
  restored_ = true;
  auto again = Open("out", 0, 1);
  ASSERT_OK(again);
  EXPECT_THAT(FileNames(dir), ElementsAre("part-job-1-0-1-1.jsonl"));
  EXPECT_EQ(ReadFile(dir + "/part-job-1-0-1-1.jsonl"), "{\"x\":1}\n");
}

TEST_F(OperatorsTest, FileSinkWithoutCheckpointsNeverOverwritesAnEarlierRun) {
  TempDir tmp;
  const std::string dir = tmp.path() + "/out";
  Load(FileSinkJob(dir));
  std::ofstream((std::filesystem::create_directories(dir), dir + "/part-job-1-0.jsonl")) << "{\"x\":0}\n";
  auto sink = Open("out", 0, 1);
  ASSERT_OK(sink);
  ASSERT_OK((*sink)->Process(X(1)));
  EXPECT_THAT((*sink)->Finish(), StatusIs(absl::StatusCode::kFailedPrecondition,
                                          HasSubstr("part-job-1-0.jsonl already exists")));
  EXPECT_EQ(ReadFile(dir + "/part-job-1-0.jsonl"), "{\"x\":0}\n");
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

// Keys of bare fields are hashed in place (no expression evaluated): the same hashes as the
// same values through expressions that are not bare fields, on edge values of every type.
TEST(KeyHasherTest, BareFieldKeysHashAsTheirExpressions) {
  auto fields = KeyHasher::Create({{"user", "user"}, {"n", "n"}, {"d", "d"}, {"flag", "flag"}},
                                  HasherSchema());
  auto exprs = KeyHasher::Create({{"user", "concat(user, '')"},
                                  {"n", "n + 0"},
                                  {"d", "d * 1.0"},
                                  {"flag", "flag and true"}},
                                 HasherSchema());
  ASSERT_OK(fields);
  ASSERT_OK(exprs);
  for (const auto& e : exprs->exprs()) ASSERT_LT(e->FieldIndex(), 0) << "not the general path";
  const std::string long_user(37, 'u');
  for (absl::string_view user : {absl::string_view(""), absl::string_view("a"),
                                 absl::string_view("exactly8"), absl::string_view(long_user)}) {
    for (int64_t n : {int64_t{0}, int64_t{-1}, std::numeric_limits<int64_t>::min(),
                      std::numeric_limits<int64_t>::max()}) {
      for (double d : {0.0, -0.0, -2.5, std::numeric_limits<double>::infinity()}) {
        for (bool flag : {false, true}) {
          const Record r = HasherRecord(user, n, d, flag, "other");
          EXPECT_EQ(fields->Hash(r), exprs->Hash(r))
              << "user '" << user << "' n " << n << " d " << d << " flag " << flag;
        }
      }
    }
  }
  // One key of a different order: the order of the key's fields counts on both paths.
  auto swapped = KeyHasher::Create({{"n", "n"}, {"user", "user"}}, HasherSchema());
  auto swapped_exprs = KeyHasher::Create({{"n", "n + 0"}, {"user", "user"}}, HasherSchema());
  ASSERT_OK(swapped);
  ASSERT_OK(swapped_exprs);
  const Record r = HasherRecord("alice", 7, 1.5, true, "x");
  EXPECT_EQ(swapped->Hash(r), swapped_exprs->Hash(r));
  EXPECT_EQ(swapped->Hash(r), HashCombine(HashCombine(0x1234567, HashInt64(7)), HashBytes("alice")));
}

// HashBatch() gives Hash() of each record: a key of one integer field (its inlined loop, with
// the golden value above) and every other key (record by record).
TEST(KeyHasherTest, HashBatchIsHashOfEachRecord) {
  std::vector<Record> records;
  for (int64_t n : {int64_t{1}, int64_t{0}, int64_t{-1}, std::numeric_limits<int64_t>::min(),
                    std::numeric_limits<int64_t>::max()}) {
    records.push_back(HasherRecord(absl::StrCat("u", n), n, 0.5, n > 0, "x"));
  }
  std::vector<uint64_t> hashes(records.size());
  for (const std::vector<plan::KeySpec>& key :
       std::vector<std::vector<plan::KeySpec>>{{{"n", "n"}},
                                               {{"n", "n + 0"}},
                                               {{"user", "user"}},
                                               {{"n", "n"}, {"user", "user"}},
                                               {}}) {
    auto h = KeyHasher::Create(key, HasherSchema());
    ASSERT_OK(h);
    h->HashBatch(records.data(), records.size(), hashes.data());
    for (size_t i = 0; i < records.size(); ++i) {
      EXPECT_EQ(hashes[i], h->Hash(records[i])) << key.size() << " fields, record " << i;
    }
  }
  auto by_n = KeyHasher::Create({{"n", "n"}}, HasherSchema());
  ASSERT_OK(by_n);
  by_n->HashBatch(records.data(), 1, hashes.data());
  EXPECT_EQ(hashes[0], 0x4deb3f639e3d5052ULL);
}

TEST(KeyHasherTest, BadKeyExpressionIsAnError) {
  EXPECT_THAT(KeyHasher::Create({{"u", "usr"}}, HasherSchema()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unknown field 'usr'")));
}

// ---------------------------------------------------------------------------------------------
// Null key values: all nulls of a key component are one value (as SQL's GROUP BY), whatever the
// record's slot holds; the exchange's hash, the key bytes and the key group agree. (The planner
// refuses keys that may be null today; these are the runtime's semantics for when it does not.)

// HasherSchema() with user, n, d and flag nullable.
Schema NullableKeySchema() {
  std::vector<Field> fields = HasherSchema().fields();
  for (size_t i = 0; i < 4; ++i) fields[i].nullable = true;
  return Schema(std::move(fields));
}

// HasherRecord() of NullableKeySchema(): `null_mask` bit i makes field i null, its slot still
// holding the value given (as a record reused after a non-null value does).
Record NullableKeyRecord(absl::string_view user, int64_t n, double d, bool flag, absl::string_view other,
                         int null_mask) {
  Record r = HasherRecord(user, n, d, flag, other);
  for (size_t i = 0; i < 4; ++i) r.SetNullTo(i, (null_mask >> i) & 1);
  return r;
}

// The key record of `r` as the keyed operators evaluate it (RecordKey), and its schema.
std::pair<Schema, Record> KeyRecordOf(const std::vector<plan::KeySpec>& key, const Record& r) {
  std::vector<Field> fields;
  Record k(key.size());
  for (size_t i = 0; i < key.size(); ++i) {
    auto e = plan::CompileExpr(key[i].expr, NullableKeySchema());
    EXPECT_OK(e);
    fields.push_back({key[i].name, (*e)->type(), (*e)->nullable()});
    plan::EvalInto(**e, r, (*e)->type(), &k, i);
  }
  return {Schema(std::move(fields)), std::move(k)};
}

TEST(KeyHasherTest, NullKeyValuesHashAlikeAndAsTheirKeyRecords) {
  const std::vector<std::vector<plan::KeySpec>> keys = {
      {{"user", "user"}}, {{"n", "n"}}, {{"d", "d"}}, {{"flag", "flag"}},
      {{"user", "concat(user, '')"}}, {{"n", "n + 1"}}, {{"d", "d * 1.0"}}, {{"flag", "flag and true"}},
      {{"other", "other"}, {"n", "n"}, {"user", "user"}, {"d", "d"}, {"flag", "flag"}}};
  for (const auto& key : keys) {
    SCOPED_TRACE(key[0].expr + (key.size() > 1 ? " and more" : ""));
    auto h = KeyHasher::Create(key, NullableKeySchema());
    ASSERT_OK(h);
    std::map<int, uint64_t> hash_of_mask;  // the hash of the nulls a mask gives, one per mask
    for (int mask = 0; mask < 16; ++mask) {
      for (const auto& [user, n, d, flag] :
           std::vector<std::tuple<std::string, int64_t, double, bool>>{{"alice", 1, 2.5, true}, {"", 0, 0.0, false},
                                                                       {"bob", -7, -1.0, true}}) {
        const Record r = NullableKeyRecord(user, n, d, flag, "x", mask);
        const auto [key_schema, key_record] = KeyRecordOf(key, r);
        EXPECT_EQ(h->Hash(r), KeyHasher::HashKeyRecord(key_schema, key_record)) << "mask " << mask;
        if (key_record.HasNulls()) {
          // The same nulls whatever their slots held (and the non-null components equal: other).
          bool all_null = true;
          for (size_t i = 0; i < key_schema.size(); ++i) all_null &= key_schema.field(i).nullable == key_record.IsNull(i);
          if (all_null) {
            auto it = hash_of_mask.emplace(mask, h->Hash(r)).first;
            EXPECT_EQ(it->second, h->Hash(r)) << "mask " << mask << ": a null hashed by its slot";
          }
        } else {
          // Non-null values hash as a NOT NULL key of the same values does (unchanged routing).
          const Record plain = NullableKeyRecord(user, n, d, flag, "x", 0);
          std::vector<Field> fields = key_schema.fields();
          for (Field& f : fields) f.nullable = false;
          EXPECT_EQ(h->Hash(r), KeyHasher::HashKeyRecord(Schema(fields), KeyRecordOf(key, plain).second));
        }
      }
    }
  }
  // Golden: a null string or int64 key component is kNullHash, a value is as before nulls.
  auto by_n = KeyHasher::Create({{"n", "n"}}, NullableKeySchema());
  ASSERT_OK(by_n);
  EXPECT_EQ(by_n->Hash(NullableKeyRecord("a", 1, 0, false, "x", 0)), HashCombine(0x1234567, HashInt64(1)));
  EXPECT_EQ(by_n->Hash(NullableKeyRecord("a", 1, 0, false, "x", 2)), HashCombine(0x1234567, 0x6e756c6c6b6579ULL));
}

TEST(RecordKeyTest, ANullKeyValueIsAKeyOfItsOwn) {
  plan::OperatorSpec spec;
  spec.input_schema = NullableKeySchema();
  spec.key = {{"n", "n"}, {"user", "user"}};
  internal::RecordKey key;
  ASSERT_OK(key.Init(spec, 128));
  EXPECT_EQ(key.schema().ToString(), "(n int64 null, user string null)");
  auto hasher = KeyHasher::Create(spec.key, spec.input_schema);
  ASSERT_OK(hasher);
  struct Case {
    int64_t n;
    const char* user;
    int mask;
    std::string bytes;
  };
  // Null byte 1; a value: 0 and its encoding (zig-zag varint; length and bytes).
  const std::vector<Case> cases = {
      {5, "a", 0, std::string("\x00\x0a\x00\x01" "a", 5)},
      {5, "a", 2, std::string("\x01\x00\x01" "a", 4)},    // n null: not 5
      {9, "a", 2, std::string("\x01\x00\x01" "a", 4)},    // whatever its slot holds
      {0, "a", 0, std::string("\x00\x00\x00\x01" "a", 5)},  // 0 is not null
      {5, "", 1, std::string("\x00\x0a\x01", 3)},
      {5, "b", 3, std::string("\x01\x01", 2)},
      {7, "zz", 3, std::string("\x01\x01", 2)},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(absl::StrCat(c.n, " ", c.user, " mask ", c.mask));
    const Record r = NullableKeyRecord(c.user, c.n, 0, false, "x", c.mask);
    key.Set(r);
    EXPECT_EQ(key.bytes(), c.bytes);
    EXPECT_EQ(key.key_group(), KeyGroupForHash(hasher->Hash(r), 128));
    // Back from the bytes (a timer's key): the same key, nulls included.
    const std::string bytes = key.bytes();
    const int group = key.key_group();
    ASSERT_OK(key.SetBytes(bytes));
    EXPECT_EQ(key.bytes(), bytes);
    EXPECT_EQ(key.key_group(), group);
    EXPECT_EQ(key.record().IsNull(0), (c.mask & 2) != 0);
    EXPECT_EQ(key.record().IsNull(1), (c.mask & 1) != 0);
  }
  // A NOT NULL key encodes as the codec's NOT NULL fields: as before nulls existed.
  spec.key = {{"other", "other"}};
  internal::RecordKey plain;
  ASSERT_OK(plain.Init(spec, 128));
  plain.Set(NullableKeyRecord("a", 1, 0, false, "xy", 15));
  EXPECT_EQ(plain.bytes(), std::string("\x02xy", 3));
}

// An aggregate keyed by a nullable field: the records whose key is null are one group of their
// own, between groups of values (its slot keeps the previous record's value), on both the
// per-record and the batch path. Expected rows written here by hand.
TEST_F(OperatorsTest, AggregateNullKeysAreOneGroup) {
  for (const bool batch : {false, true}) {
    SCOPED_TRACE(batch ? "batch" : "per record");
    out_.records.clear();
    Load(internal::NullableAmountJob(R"y(  - id: agg
    type: aggregate
    aggregates: [{fn: count}, {fn: sum, field: left.user, as: users}]
  - {id: out, type: blackhole}
)y"));
    // Keyed by right.user (the planner refuses a key that may be null: set it here).
    auto& agg_spec = const_cast<plan::OperatorSpec&>(Spec("agg"));
    agg_spec.key = {{"right.user", "right.user"}};
    std::vector<Field> fields = agg_spec.output_schema.fields();
    fields[0] = {"right.user", FieldType::kInt64, true};
    agg_spec.output_schema = Schema(fields);
    auto agg = Open("agg");
    ASSERT_OK(agg);
    // (user, amount): right.user is the user when there is an amount, else null.
    std::vector<Record> input;
    for (const auto& [user, amount] : std::vector<std::pair<int64_t, std::optional<int64_t>>>{
             {1, 10}, {2, std::nullopt}, {3, 30}, {1, std::nullopt}, {0, 5}, {3, std::nullopt}, {1, 11}}) {
      input.push_back(internal::NullableAmountInput(user, 0, amount));
    }
    if (batch) {
      ASSERT_OK((*agg)->ProcessBatch(0, input.data(), input.size()));
    } else {
      for (const Record& r : input) ASSERT_OK((*agg)->Process(r));
    }
    std::vector<std::string> got;
    for (const Record& r : out_.records) {
      got.push_back(absl::StrCat(r.IsNull(0) ? "null" : absl::StrCat(r.GetInt(0)), " ", r.GetInt(1), " ", r.GetInt(2)));
    }
    EXPECT_THAT(got, ElementsAre("1 1 1", "null 1 2", "3 1 3", "null 2 3", "0 1 0", "null 3 6", "1 2 2"));
  }
}

class AggregateStateTest : public internal::KeyedOperatorTest {};

// The keys with value state `state` in `backend`.
int StoredKeysOf(state::KeyedStateBackend* backend, const std::string& state) {
  const state::StateId id = backend->RegisterState(state, state::StateKind::kValue);
  int n = 0;
  EXPECT_OK(backend->ForEachKey(id, [&n](absl::string_view) {
    ++n;
    return absl::OkStatus();
  }));
  return n;
}
// The stored blocks of an in-memory aggregate in `backend`.
int StoredAggregateBlocks(state::KeyedStateBackend* backend) { return StoredKeysOf(backend, "aggregate_blocks"); }

// The job of the checkpoint tests below: an aggregate keyed by one integer field, its state
// `state` (auto: in memory).
std::string AggregateCheckpointJob(absl::string_view state) {
  return absl::StrCat(R"y(max_parallelism: 16
operators:
  - {id: gen, type: datagen, fields: [{name: k, type: int64, expr: seq}, {name: v, type: int64, expr: seq}]}
  - {id: by_k, type: key_by, key: [k]}
  - id: agg
    type: aggregate
    emit: final
    state: )y", state, R"y(
    aggregates: [{fn: count, as: n}, {fn: max, field: v, as: top}, {fn: first, field: v, as: first}]
  - {id: out, type: print}
)y");
}

// An aggregate keyed by one integer field keeps its accumulators in memory and writes them at
// each snapshot as one block per key group and range of 2^14 key values, rewritten when one of
// its keys changed (no per-key entries): a checkpoint taken midway (twice, keys changing in
// between) restores into memory at the same parallelism and rescaled to two and three subtasks,
// and into the backend path (`state: backend`: the blocks become per-key entries), and every
// run gives the rows computed here independently. Checkpoints of per-key entries (the backend
// path's, as the in-memory path wrote them before blocks) restore into the backend path, and so
// do blocks of more keys than the state memory takes.
TEST_F(AggregateStateTest, InMemoryKeysCheckpointAsBlocksPerKeyGroup) {
  ASSERT_OK(LoadJob(AggregateCheckpointJob("auto"), "agg"));
  std::vector<Record> input;
  std::map<int64_t, std::array<int64_t, 3>> want_rows;  // k -> n, top, first
  for (int64_t i = 0; i < 3000; ++i) {
    Record r(2);
    r.SetInt(0, (i * 7919) % 257 - 100);  // 257 keys, negative ones too
    r.SetInt(1, (i * 104729) % 1009);
    auto [it, added] = want_rows.try_emplace(r.GetInt(0), std::array<int64_t, 3>{0, r.GetInt(1), r.GetInt(1)});
    it->second[0]++;
    it->second[1] = std::max(it->second[1], r.GetInt(1));
    input.push_back(std::move(r));
  }
  std::vector<std::string> want;
  for (const auto& [k, row] : want_rows) {
    want.push_back(absl::StrCat(R"({"k":)", k, R"(,"n":)", row[0], R"(,"top":)", row[1],
                                R"(,"first":)", row[2], "}"));
  }
  auto key_group = [&](const Record& r) {
    Schema key_schema({{"k", FieldType::kInt64}});
    Record key(1);
    key.SetInt(0, r.GetInt(0));
    return KeyGroupForHash(KeyHasher::HashKeyRecord(key_schema, key), internal::kHarnessMaxParallelism);
  };

  internal::KeyedSubtask& s = StartSubtask();
  // The keys with accumulators in the backend (the in-memory path writes them at snapshots).
  auto stored_keys = [](state::KeyedStateBackend* backend) { return StoredKeysOf(backend, "accumulators"); };
  std::set<std::pair<int, int64_t>> blocks;  // (key group, key >> 14) of every key
  for (const Record& r : input) blocks.emplace(key_group(r), r.GetInt(0) >> 14);
  ASSERT_OK(s.op()->ProcessBatch(0, input.data(), 1000));
  EXPECT_EQ(stored_keys(s.backend()), 0);
  EXPECT_EQ(StoredAggregateBlocks(s.backend()), 0);
  ASSERT_OK(TakeCheckpoint(s, 1).status());
  EXPECT_EQ(stored_keys(s.backend()), 0);
  EXPECT_EQ(StoredAggregateBlocks(s.backend()), static_cast<int>(blocks.size()));
  ASSERT_OK(s.op()->ProcessBatch(0, input.data() + 1000, 500));  // changes keys written at 1
  auto checkpoint = TakeCheckpoint(s, 2);
  ASSERT_OK(checkpoint);
  for (size_t i = 1500; i < input.size(); ++i) ASSERT_OK(s.op()->Process(input[i]));
  ASSERT_OK(s.op()->Finish());
  EXPECT_THAT(s.out().rows, UnorderedElementsAreArray(want));

  // The rows of `checkpoint` restored at `parallelism` and fed the rest of the input.
  auto rows_after_restore = [&](const Checkpoint& from, int parallelism, int want_entries) {
    std::vector<std::string> rows;
    for (int subtask = 0; subtask < parallelism; ++subtask) {
      auto restored = Restore(from, subtask, parallelism);
      EXPECT_OK(restored);
      if (!restored.ok()) return rows;
      const KeyGroupRange range = KeyGroupRangeForSubtask(internal::kHarnessMaxParallelism, parallelism, subtask);
      int entries = 0;  // the restored keys' per-key entries
      for (const auto& [k, row] : want_rows) {
        Record r(2);
        r.SetInt(0, k);
        entries += range.Contains(key_group(r));
      }
      EXPECT_EQ(stored_keys((*restored)->backend()), want_entries < 0 ? entries : want_entries);
      for (size_t i = 1500; i < input.size(); ++i) {
        if (range.Contains(key_group(input[i]))) EXPECT_OK((*restored)->op()->Process(input[i]));
      }
      EXPECT_OK((*restored)->op()->Finish());
      rows.insert(rows.end(), (*restored)->out().rows.begin(), (*restored)->out().rows.end());
    }
    return rows;
  };
  for (int parallelism : {1, 2, 3}) {
    SCOPED_TRACE(parallelism);
    EXPECT_THAT(rows_after_restore(*checkpoint, parallelism, 0), UnorderedElementsAreArray(want));
  }
  ASSERT_OK(LoadJob(AggregateCheckpointJob("backend"), "agg"));  // blocks into per-key entries
  for (int parallelism : {1, 3}) {
    SCOPED_TRACE(parallelism);
    EXPECT_THAT(rows_after_restore(*checkpoint, parallelism, -1), UnorderedElementsAreArray(want));
  }

  // Per-key entries (`state: backend`) restore into the backend path, also with `state: auto`.
  internal::KeyedSubtask& b = StartSubtask();
  ASSERT_OK(b.op()->ProcessBatch(0, input.data(), 1500));
  auto entries = TakeCheckpoint(b, 3);
  ASSERT_OK(entries);
  EXPECT_EQ(stored_keys(b.backend()), 257);
  EXPECT_EQ(StoredAggregateBlocks(b.backend()), 0);
  ASSERT_OK(LoadJob(AggregateCheckpointJob("auto"), "agg"));
  for (int parallelism : {1, 2, 3}) {
    SCOPED_TRACE(parallelism);
    EXPECT_THAT(rows_after_restore(*entries, parallelism, -1), UnorderedElementsAreArray(want));
  }

  // Blocks of more keys than the state memory takes in memory (~78 with a 64 KiB cache) restore
  // into memory, then move to the backend path as per-key entries.
  cache_bytes_ = 64 << 10;
  EXPECT_THAT(rows_after_restore(*checkpoint, 1, -1), UnorderedElementsAreArray(want));
}

// Beyond its cap of keys in memory (2^20 at most; fewer with the default 32 MiB cache budget) a
// subtask moves them all to the backend and goes on there: every key's row at the end counts
// all its records, those before the move and after.
TEST_F(AggregateStateTest, InMemoryKeysBeyondTheLimitMoveToTheBackend) {
  ASSERT_OK(LoadJob(R"y(max_parallelism: 16
operators:
  - {id: gen, type: datagen, fields: [{name: k, type: int64, expr: seq}]}
  - {id: by_k, type: key_by, key: [k]}
  - {id: agg, type: aggregate, emit: final, aggregates: [{fn: count, as: n}]}
  - {id: out, type: blackhole}
)y", "agg"));
  internal::KeyedSubtask& s = StartSubtask();
  constexpr int64_t kKeys = 1050 * 1000;  // > 2^20, the move midway through a batch
  std::vector<Record> batch(1000, Record(1));
  for (int64_t start = 0; start < kKeys; start += 1000) {
    for (int64_t i = 0; i < 1000; ++i) batch[i].SetInt(0, start + i);
    ASSERT_OK(s.op()->ProcessBatch(0, batch.data(), batch.size()));
  }
  for (int64_t i = 0; i < 1000; ++i) batch[i].SetInt(0, i * 1000);  // keys from before the move
  ASSERT_OK(s.op()->ProcessBatch(0, batch.data(), batch.size()));
  ASSERT_OK(s.op()->Finish());
  ASSERT_EQ(s.out().rows.size(), static_cast<size_t>(kKeys));
  int64_t twice = 0;
  for (const std::string& row : s.out().rows) twice += absl::EndsWith(row, R"("n":2})");
  EXPECT_EQ(twice, 1000);
}

// The keys with accumulators in `backend` (those the aggregate's backend path holds, and those
// its in-memory path wrote at snapshots or when it moved to the backend).
int StoredAccumulatorKeys(state::KeyedStateBackend* backend) { return StoredKeysOf(backend, "accumulators"); }

// In memory, keys close together (ids that grow) find their slots by their offset from the
// first key and the others (below the first key, far apart, the extremes of int64) in a hash
// map; each key is one of the two for good, and a checkpoint taken midway writes both: every
// key's row counts all its records, in the run and after a restore (computed here
// independently). Finish() in memory emits the rows by key group, then key (keys arrive out of
// that order, some groups' keys out of key order).
TEST_F(AggregateStateTest, InMemoryKeysCloseTogetherAndFarApartKeepTheirCounts) {
  ASSERT_OK(LoadJob(R"y(max_parallelism: 16
operators:
  - {id: gen, type: datagen, fields: [{name: k, type: int64, expr: seq}, {name: v, type: int64, expr: seq}]}
  - {id: by_k, type: key_by, key: [k]}
  - {id: agg, type: aggregate, emit: final, aggregates: [{fn: count, as: n}, {fn: max, field: v, as: top}]}
  - {id: out, type: print}
)y", "agg"));
  std::vector<Record> input;
  std::map<int64_t, std::pair<int64_t, int64_t>> want_rows;  // k -> n, top
  auto add = [&](int64_t k, int64_t v) {
    Record r(2);
    r.SetInt(0, k);
    r.SetInt(1, v);
    auto [it, added] = want_rows.try_emplace(k, 0, v);
    it->second.first++;
    it->second.second = std::max(it->second.second, v);
    input.push_back(std::move(r));
  };
  for (int64_t round = 0; round < 3; ++round) {
    for (int64_t i = 0; i < 5000; ++i) {
      add(100'000 + i * 3 + round % 2, i * 31 % 977);  // close together, growing
      if (i % 50 == 0) add(100'000 - 1 - i, i);        // below the first key
      if (i % 400 == 0) add(i << 40, round);           // far apart
    }
    add(std::numeric_limits<int64_t>::min(), round);
    add(std::numeric_limits<int64_t>::max(), round);
    add(-1, round);
  }
  // Finish() emits the rows by key group (of the 16), then key: the same order in every run.
  const Schema key_schema({{"k", FieldType::kInt64}});
  std::vector<std::tuple<int, int64_t, std::string>> ordered;
  for (const auto& [k, row] : want_rows) {
    Record key(1);
    key.SetInt(0, k);
    ordered.emplace_back(KeyGroupForHash(KeyHasher::HashKeyRecord(key_schema, key), 16), k,
                         absl::StrCat(R"({"k":)", k, R"(,"n":)", row.first, R"(,"top":)", row.second, "}"));
  }
  std::sort(ordered.begin(), ordered.end());
  std::vector<std::string> want;
  for (const auto& [group, k, row] : ordered) want.push_back(row);
  internal::KeyedSubtask& s = StartSubtask();
  const size_t half = input.size() / 2;
  for (size_t i = 0; i < half; ++i) ASSERT_OK(s.op()->Process(input[i]));
  auto checkpoint = TakeCheckpoint(s, 1);
  ASSERT_OK(checkpoint);
  EXPECT_EQ(StoredAccumulatorKeys(s.backend()), 0);
  std::set<std::pair<int, int64_t>> blocks;  // (key group, key >> 14) of the keys so far
  for (size_t i = 0; i < half; ++i) {
    Record key(1);
    key.SetInt(0, input[i].GetInt(0));
    blocks.emplace(KeyGroupForHash(KeyHasher::HashKeyRecord(key_schema, key), 16), input[i].GetInt(0) >> 14);
  }
  EXPECT_EQ(StoredAggregateBlocks(s.backend()), static_cast<int>(blocks.size()));
  ASSERT_OK(s.op()->ProcessBatch(0, input.data() + half, input.size() - half));
  ASSERT_OK(s.op()->Finish());
  EXPECT_THAT(s.out().rows, ElementsAreArray(want));

  auto restored = Restore(*checkpoint, 0, 1);
  ASSERT_OK(restored);
  for (size_t i = half; i < input.size(); ++i) ASSERT_OK((*restored)->op()->Process(input[i]));
  ASSERT_OK((*restored)->op()->Finish());
  EXPECT_THAT((*restored)->out().rows, UnorderedElementsAreArray(want));
}

// The in-memory path counts against the backend's cache budget (its share of --state-memory):
// with a 64 KiB cache a few keys stay in memory, but the subtask moves to the backend before
// it holds 64 KiB / 24 keys (each takes at least its 8-byte key in the map and in its slot and
// an 8-byte count), well below 2^20. Every key's row counts all its records.
TEST_F(AggregateStateTest, InMemoryKeysStayWithinTheStateMemoryBudget) {
  ASSERT_OK(LoadJob(R"y(max_parallelism: 16
operators:
  - {id: gen, type: datagen, fields: [{name: k, type: int64, expr: seq}]}
  - {id: by_k, type: key_by, key: [k]}
  - {id: agg, type: aggregate, emit: final, aggregates: [{fn: count, as: n}]}
  - {id: out, type: blackhole}
)y", "agg"));
  cache_bytes_ = 64 << 10;
  internal::KeyedSubtask& s = StartSubtask();
  constexpr int64_t kKeys = (64 << 10) / 24;
  Record r(1);
  for (int64_t k = 0; k < 10; ++k) {
    r.SetInt(0, k);
    ASSERT_OK(s.op()->Process(r));
  }
  EXPECT_EQ(StoredAccumulatorKeys(s.backend()), 0);  // in memory
  for (int64_t k = 10; k < kKeys; ++k) {
    r.SetInt(0, k);
    ASSERT_OK(s.op()->Process(r));
  }
  EXPECT_EQ(StoredAccumulatorKeys(s.backend()), kKeys);  // moved, then in the backend path
  for (int64_t k = 0; k < kKeys; k += 2) {  // keys from before the move: twice
    r.SetInt(0, k);
    ASSERT_OK(s.op()->Process(r));
  }
  ASSERT_OK(s.op()->Finish());
  std::vector<std::string> want;
  for (int64_t k = 0; k < kKeys; ++k) {
    want.push_back(absl::StrCat(R"({"k":)", k, R"(,"n":)", k % 2 == 0 ? 2 : 1, "}"));
  }
  EXPECT_THAT(s.out().rows, UnorderedElementsAreArray(want));
}

// `state: backend` keeps every key's accumulators in the backend from the first record (before
// any checkpoint), with the same rows as the in-memory path.
TEST_F(AggregateStateTest, BackendStateKeepsEveryKeyInTheBackend) {
  for (const std::string state : {"auto", "backend"}) {
    SCOPED_TRACE(state);
    ASSERT_OK(LoadJob(absl::StrCat(R"y(max_parallelism: 16
operators:
  - {id: gen, type: datagen, fields: [{name: k, type: int64, expr: seq}]}
  - {id: by_k, type: key_by, key: [k]}
  - {id: agg, type: aggregate, emit: final, state: )y", state, R"y(, aggregates: [{fn: count, as: n}]}
  - {id: out, type: blackhole}
)y"), "agg"));
    internal::KeyedSubtask& s = StartSubtask();
    std::vector<Record> batch(300, Record(1));
    for (int64_t i = 0; i < 300; ++i) batch[i].SetInt(0, i % 100);
    ASSERT_OK(s.op()->ProcessBatch(0, batch.data(), batch.size()));
    EXPECT_EQ(StoredAccumulatorKeys(s.backend()), state == "backend" ? 100 : 0);
    ASSERT_OK(s.op()->Finish());
    std::vector<std::string> want;
    for (int64_t k = 0; k < 100; ++k) want.push_back(absl::StrCat(R"({"k":)", k, R"(,"n":3})"));
    EXPECT_THAT(s.out().rows, UnorderedElementsAreArray(want));
  }
}

// A `state:` other than auto or backend is refused at submission, with its line and the values
// allowed.
TEST_F(AggregateStateTest, BadStateOptionIsRefused) {
  EXPECT_THAT(LoadJob(R"y(max_parallelism: 16
operators:
  - {id: gen, type: datagen, fields: [{name: k, type: int64, expr: seq}]}
  - {id: by_k, type: key_by, key: [k]}
  - id: agg
    type: aggregate
    state: heap
    aggregates: [{fn: count, as: n}]
  - {id: out, type: blackhole}
)y", "agg"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("job.yaml:7:12: 'state' must be 'auto' (in memory when the key "
                                 "allows it) or 'backend'")));
}

class NullKeyWindowTest : public internal::KeyedOperatorTest {};

// A window keyed by a nullable field: the records whose key is null are one key of their own
// in each window, its row's key null, across a checkpoint restored midway. Expected rows
// written here by hand.
TEST_F(NullKeyWindowTest, NullKeysAreOneKeyPerWindow) {
  for (const bool restore : {false, true}) {
    SCOPED_TRACE(restore ? "restored midway" : "one run");
    ASSERT_OK(LoadJob(internal::NullableAmountJob(R"y(  - id: w
    type: window
    time_field: ts
    tumble: 10ms
    aggregates: [{fn: count, as: n}, {fn: sum, field: left.user, as: users}]
  - {id: out, type: print, input: w}
)y"), "w"));
    auto& w = const_cast<plan::OperatorSpec&>(*spec_);
    w.key = {{"right.user", "right.user"}};
    std::vector<Field> fields = w.output_schema.fields();
    fields[0] = {"right.user", FieldType::kInt64, true};
    w.output_schema = Schema(fields);
    internal::KeyedSubtask* s = &StartSubtask();
    // (user, ts, amount): right.user is the user when there is an amount, else null.
    const std::vector<std::tuple<int64_t, int64_t, std::optional<int64_t>>> input = {
        {1, 0, 10}, {2, 1, std::nullopt}, {3, 2, 30}, {4, 3, std::nullopt}, {3, 12, std::nullopt},
        {5, 13, std::nullopt}, {3, 14, 1}, {6, 5, std::nullopt}};
    for (size_t i = 0; i < input.size(); ++i) {
      if (restore && i == 4) {
        auto checkpoint = TakeCheckpoint(*s, 1);
        ASSERT_OK(checkpoint);
        auto restored = Restore(*checkpoint, 0, 1);
        ASSERT_OK(restored);
        s = *restored;
      }
      const auto& [user, ts, amount] = input[i];
      ASSERT_OK(s->op()->Process(internal::NullableAmountInput(user, ts, amount)));
    }
    ASSERT_OK(s->Watermark(kMaxWatermark));
    EXPECT_THAT(s->out().rows,
                UnorderedElementsAre(R"({"right.user":1,"window_start":0,"window_end":10,"n":1,"users":1,"update":false})",
                            R"({"right.user":3,"window_start":0,"window_end":10,"n":1,"users":3,"update":false})",
                            R"({"right.user":null,"window_start":0,"window_end":10,"n":3,"users":12,"update":false})",
                            R"({"right.user":3,"window_start":10,"window_end":20,"n":1,"users":3,"update":false})",
                            R"({"right.user":null,"window_start":10,"window_end":20,"n":2,"users":8,"update":false})"));
  }
}

}  // namespace
}  // namespace sluice::ops
