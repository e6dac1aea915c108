#pragma once

// Test-only helpers for the keyed operators' unit tests (window_test, top_n_test,
// operators_test): an output recording rows as JSON, one operator subtask over a real RocksDB
// backend with its timers, driven by hand (records, watermarks, a fake clock), and an aggregate
// function standing in for a plugin's.

#include <stdlib.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "common/key_groups.h"
#include "common/metrics.h"
#include "common/record.h"
#include "common/status.h"
#include "common/status_matchers.h"
#include "gtest/gtest.h"
#include "operators/operator.h"
#include "operators/registry.h"
#include "operators/timer_service.h"
#include "plan/aggregate_function.h"
#include "plan/job_spec.h"
#include "state/keyed_state_backend.h"

namespace sluice::ops::internal {

// The max_parallelism the harnessed jobs declare.
inline constexpr int kHarnessMaxParallelism = 16;

// A test aggregate function, as a plugin's would be: "spread", max - min of an int64 field;
// accumulator [min][max] (16 bytes; 0 bytes: no value yet, a null result); refuses other
// types. `version` is its accumulator version (a test changes it to see restores refused).
class SpreadFunction final : public plan::AggregateFunction {
 public:
  const std::string& name() const override { return name_; }
  const std::string& origin() const override { return origin_; }
  absl::StatusOr<FieldType> ResultType(FieldType in) const override {
    if (in != FieldType::kInt64) return absl::InvalidArgumentError("spread takes int64");
    return FieldType::kInt64;
  }
  bool Runnable() const override { return true; }
  uint32_t AccumulatorVersion() const override { return version; }
  absl::Status Create(FieldType, std::string* acc) const override {
    acc->clear();
    return absl::OkStatus();
  }
  absl::Status Add(FieldType, const Value& v, std::string* acc) const override {
    int64_t mm[2] = {v.i, v.i};
    return Combine(mm, acc);
  }
  absl::Status Merge(FieldType, absl::string_view other, std::string* acc) const override {
    if (other.empty()) return absl::OkStatus();
    int64_t mm[2];
    std::memcpy(mm, other.data(), sizeof(mm));
    return Combine(mm, acc);
  }
  absl::Status Result(FieldType, absl::string_view acc, Value* out, bool* is_null) const override {
    *is_null = acc.empty();
    if (acc.empty()) return absl::OkStatus();
    int64_t mm[2];
    std::memcpy(mm, acc.data(), sizeof(mm));
    out->i = mm[1] - mm[0];
    return absl::OkStatus();
  }
  uint32_t version = 1;

 private:
  static absl::Status Combine(const int64_t* mm, std::string* acc) {
    int64_t cur[2] = {mm[0], mm[1]};
    if (!acc->empty()) {
      std::memcpy(cur, acc->data(), sizeof(cur));
      cur[0] = std::min(cur[0], mm[0]);
      cur[1] = std::max(cur[1], mm[1]);
    }
    acc->assign(reinterpret_cast<const char*>(cur), sizeof(cur));
    return absl::OkStatus();
  }
  const std::string name_ = "spread";
  const std::string origin_ = "the test";
};

// Records main and side output as JSON lines.
class JsonOutput final : public Output {
 public:
  JsonOutput(const Schema* main, const Schema* side) : main_(main), side_(side) {}
  absl::Status Emit(const Record& r) override {
    rows.emplace_back();
    AppendRecordJson(*main_, r, &rows.back());
    return absl::OkStatus();
  }
  absl::Status EmitSide(int side_output, const Record& r) override {
    side.emplace_back(absl::StrCat(side_output, ":"));
    AppendRecordJson(*side_, r, &side.back());
    return absl::OkStatus();
  }
  std::vector<std::string> rows;
  std::vector<std::string> side;

 private:
  const Schema* main_;
  const Schema* side_;
};

// One keyed operator subtask with its own RocksDB backend and timers, opened as the task
// would open it (with late and skipped counters of its own). Test-only.
class KeyedSubtask {
 public:
  KeyedSubtask(const OperatorRegistry& registry, const plan::JobSpec& job,
               const plan::OperatorSpec& spec, std::unique_ptr<state::KeyedStateBackend> backend,
               FakeClock* clock, int subtask, int parallelism,
               std::vector<std::string> restored_state = {})
      : backend_(std::move(backend)),
        timers_(backend_.get(), clock),
        out_(&spec.output_schema, &spec.input_schema),
        late_() {
    auto op = registry.Create(spec);
    EXPECT_OK(op);
    op_ = *std::move(op);
    OperatorContext ctx;
    ctx.job = &job;
    ctx.spec = &spec;
    ctx.subtask = subtask;
    ctx.parallelism = parallelism;
    ctx.clock = clock;
    ctx.task_name = absl::StrCat("job/", spec.id, "#", subtask);
    ctx.max_parallelism = job.max_parallelism;
    ctx.keyed_state = backend_.get();
    ctx.timers = &timers_;
    ctx.records_skipped = &skipped_;
    ctx.late_records_dropped = &late_;
    ctx.restored = !restored_state.empty();
    ctx.restored_checkpoint_id = ctx.restored ? 1 : 0;
    ctx.state_origin = StateOrigin("job", spec.id, spec.type, subtask, ctx.restored_checkpoint_id);
    ctx.restored_state = std::move(restored_state);
    open_status_ = op_->Open(ctx, &out_);
  }

  // What the operator's Open() returned (Start/Restore of KeyedOperatorTest check it).
  const absl::Status& open_status() const { return open_status_; }

  absl::Status Watermark(int64_t wm) {
    SLUICE_RETURN_IF_ERROR(timers_.AdvanceWatermark(wm, op_.get()));
    return op_->ProcessWatermark(wm);
  }
  absl::Status ProcessingTime() { return timers_.FireProcessingTimers(op_.get()); }

  Operator* op() { return op_.get(); }
  state::KeyedStateBackend* backend() { return backend_.get(); }
  JsonOutput& out() { return out_; }
  uint64_t late_dropped() const { return late_.Value(); }
  uint64_t skipped() const { return skipped_.Value(); }

 private:
  std::unique_ptr<state::KeyedStateBackend> backend_;
  TimerService timers_;
  std::unique_ptr<Operator> op_;
  JsonOutput out_;
  Counter late_;
  Counter skipped_;
  absl::Status open_status_;
};

// A job whose operator after `tail` (YAML list items) reads (left.user int64, ts timestamp,
// right.user int64 null, amount int64 null), keyed by left.user: the rows of a left join, whose
// right side may be null. Test-only.
inline std::string NullableAmountJob(const std::string& tail) {
  return R"y(max_parallelism: 16
operators:
  - {id: l, type: datagen, count: 1, fields: [{name: user, type: int64, expr: seq}, {name: ts, type: timestamp, expr: seq}]}
  - {id: r, type: datagen, count: 1, fields: [{name: user, type: int64, expr: seq}, {name: amount, type: int64, expr: seq}]}
  - id: j
    type: join
    kind: left
    ttl: 1s
    inputs: [{from: l, partition: hash, key: [user]}, {from: r, partition: hash, key: [user]}]
  - {id: k, type: key_by, key: left.user}
)y" + tail;
}
// A record of that schema; nullopt: no right side (null right.user and amount).
inline Record NullableAmountInput(int64_t user, int64_t ts, std::optional<int64_t> amount) {
  Record r(4);
  r[0].i = user;
  r[1].i = ts;
  r[2].i = user;
  r[3].i = amount.value_or(0);  // a null's value is never read
  r.SetNullTo(2, !amount.has_value());
  r.SetNullTo(3, !amount.has_value());
  return r;
}

// A fixture with the built-in operators, a fake clock (at 1,000,000 ms) and a temp dir for
// backends: LoadJob() plans a job, StartSubtask() opens its operator under test.
class KeyedOperatorTest : public ::testing::Test {
 protected:
  KeyedOperatorTest() { EXPECT_OK(RegisterBuiltinOperators(&registry_)); }

  void SetUp() override {
    char tmpl[] = "/tmp/sluice_keyed_op_test_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    root_ = tmpl;
  }
  void TearDown() override {
    subtasks_.clear();
    std::error_code ec;
    std::filesystem::remove_all(root_, ec);
  }

  // Plans `yaml` (which declares max_parallelism: kHarnessMaxParallelism); spec_ is operator `id`.
  absl::Status LoadJob(const std::string& yaml, const std::string& id) {
    SLUICE_ASSIGN_OR_RETURN(job_, plan::ParseJobSpec(yaml, "job.yaml", registry_.catalog()));
    spec_ = nullptr;
    for (const auto& op : job_.operators) {
      if (op.id == id) spec_ = &op;
    }
    if (spec_ == nullptr) return absl::NotFoundError(absl::StrCat("no operator ", id));
    return absl::OkStatus();
  }

  state::StateBackendOptions BackendOptions(KeyGroupRange range) {
    state::StateBackendOptions o;
    o.local_dir = (root_ / absl::StrCat("b", next_dir_++)).string();
    o.operator_id = spec_->id;
    o.max_parallelism = kHarnessMaxParallelism;
    o.range = range;
    o.clock = &clock_;
    o.origin = StateOrigin("job", spec_->id, spec_->type, 0, 0);
    o.cache_bytes = cache_bytes_;
    return o;
  }

  // Opens spec_ as the only subtask (parallelism 1) over a new backend.
  KeyedSubtask& StartSubtask() {
    auto b = state::KeyedStateBackend::Open(BackendOptions({0, kHarnessMaxParallelism - 1}));
    EXPECT_OK(b);
    subtasks_.push_back(
        std::make_unique<KeyedSubtask>(registry_, job_, *spec_, *std::move(b), &clock_, 0, 1));
    EXPECT_OK(subtasks_.back()->open_status());
    return *subtasks_.back();
  }

  // A checkpoint of one subtask: its keyed state uploaded under root_/job, and its operator
  // state.
  struct Checkpoint {
    proto::KeyedStateHandle keyed;
    std::vector<std::string> operator_state;
  };
  absl::StatusOr<Checkpoint> TakeCheckpoint(KeyedSubtask& s, int64_t id) {
    Checkpoint c;
    // As the task does it: the operator's SnapshotState first (it may write keyed state), then
    // the backend's snapshot.
    SLUICE_RETURN_IF_ERROR(s.op()->SnapshotState(id, &c.operator_state));
    SLUICE_ASSIGN_OR_RETURN(state::PendingSnapshot pending, s.backend()->SnapshotSync(id));
    SLUICE_ASSIGN_OR_RETURN(
        c.keyed,
        s.backend()->UploadSnapshot(pending, JobDir(), absl::StrCat("chk-", id, "/", spec_->id)));
    return c;
  }
  // Opens spec_ as subtask `subtask` of `parallelism`, restored from `checkpoint` (checkpoint
  // 1 in its StateOrigin); the backend's or the operator's error if either fails.
  absl::StatusOr<KeyedSubtask*> Restore(const Checkpoint& checkpoint, int subtask,
                                        int parallelism) {
    state::StateBackendOptions o =
        BackendOptions(KeyGroupRangeForSubtask(kHarnessMaxParallelism, parallelism, subtask));
    o.origin = StateOrigin("job", spec_->id, spec_->type, subtask, 1);
    SLUICE_ASSIGN_OR_RETURN(auto b, state::KeyedStateBackend::Restore(o, {checkpoint.keyed}, JobDir()));
    subtasks_.push_back(std::make_unique<KeyedSubtask>(registry_, job_, *spec_, std::move(b),
                                                       &clock_, subtask, parallelism,
                                                       checkpoint.operator_state));
    SLUICE_RETURN_IF_ERROR(subtasks_.back()->open_status());
    return subtasks_.back().get();
  }
  std::string JobDir() const { return (root_ / "job").string(); }

  OperatorRegistry registry_;
  FakeClock clock_{1'000'000'000'000};
  plan::JobSpec job_;
  const plan::OperatorSpec* spec_ = nullptr;
  std::filesystem::path root_;
  int next_dir_ = 0;
  size_t cache_bytes_ = 32 << 20;  // the backends' write-back cache budget
  std::vector<std::unique_ptr<KeyedSubtask>> subtasks_;
};

}  // namespace sluice::ops::internal
