// The join operators (interval_join, join, window_join) driven by hand: records pushed into
// each input, watermarks and a fake clock advanced explicitly, timers fired by a real
// TimerService over a real RocksDB backend; expectations are written out per test.

#include <algorithm>
#include <array>
#include <cstring>
#include <deque>
#include <map>
#include <set>
#include <utility>
#include <memory>
#include <functional>
#include <initializer_list>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "common/key_groups.h"
#include "common/metrics.h"
#include "common/record.h"
#include "common/record_codec.h"
#include "common/state_format.h"
#include "common/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "operators/internal/builtins.h"
#include "operators/join_base.h"
#include "operators/join_rows.h"
#include "operators/key_hasher.h"
#include "operators/operator.h"
#include "operators/registry.h"
#include "operators/timer_service.h"
#include "plan/job_spec.h"
#include "state/keyed_state_backend.h"

namespace sluice::ops {
namespace {

using ::sluice::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::UnorderedElementsAreArray;

// Each emitted record as its JSON line (nulls visible as null).
class JsonOutput final : public Output {
 public:
  absl::Status Emit(const Record& record) override {
    std::string line;
    AppendRecordJson(*schema, record, &line);
    lines.push_back(std::move(line));
    return absl::OkStatus();
  }
  const Schema* schema = nullptr;
  std::vector<std::string> lines;
};

// Two sources of (k int64, ts timestamp, v string) and a join `j` of them with `options`, keyed
// by `key` (a YAML list's items) on both.
// With `numeric_v`, v is a double (every field NOT NULL and fixed-width).
// `right_key`: the right input's key when it differs from the left's `key`.
std::string JoinJob(const std::string& type, const std::string& options,
                    const std::string& key = "k", bool numeric_v = false,
                    const std::string& right_key = "") {
  const std::string fields = numeric_v
      ? R"y([{name: k, type: int64, expr: "seq"}, {name: ts, type: timestamp, expr: "to_timestamp(seq)"}, {name: v, type: double, expr: "to_double(seq)"}])y"
      : R"y([{name: k, type: int64, expr: "seq"}, {name: ts, type: timestamp, expr: "to_timestamp(seq)"}, {name: v, type: string, expr: "to_string(seq)"}])y";
  return absl::StrCat("name: joins\noperators:\n",
                      "  - {id: l, type: datagen, count: 1, fields: ", fields, "}\n",
                      "  - {id: r, type: datagen, count: 1, fields: ", fields, "}\n",
                      "  - id: j\n    type: ", type, "\n",
                      "    inputs: [{from: l, partition: hash, key: [", key,
                      "]}, {from: r, partition: hash, key: [", right_key.empty() ? key : right_key, "]}]\n",
                      options, "  - {id: out, type: blackhole}\n");
}

class JoinTest : public ::testing::Test {
 protected:
  JoinTest() { EXPECT_OK(RegisterBuiltinOperators(&registry_)); }

  void Load(const std::string& type, const std::string& options, const std::string& key = "k",
            bool numeric_v = false, const std::string& right_key = "") {
    LoadYaml(JoinJob(type, options, key, numeric_v, right_key));
  }
  // A job whose operator `j` is the join under test.
  void LoadYaml(const std::string& yaml) {
    auto job = plan::ParseJobSpec(yaml, "job.yaml", registry_.catalog());
    ASSERT_OK(job);
    job_ = *std::move(job);
    for (const auto& op : job_.operators) {
      if (op.id == "j") spec_ = &op;
    }
    out_.schema = &spec_->output_schema;
  }

  std::unique_ptr<state::KeyedStateBackend> NewBackend(
      const std::vector<proto::KeyedStateHandle>& restore_from = {}) {
    state::StateBackendOptions o;
    o.local_dir = absl::StrCat(::testing::TempDir(), "/sluice-join-", getpid(), "-", backend_seq_++);
    o.operator_id = "j";
    o.max_parallelism = job_.max_parallelism;
    o.range = KeyGroupRangeForSubtask(job_.max_parallelism, parallelism_, subtask_);
    o.clock = &clock_;
    o.origin = StateOrigin("job-1", "j", spec_ != nullptr ? spec_->type : "join", 0, restore_from.empty() ? 0 : 1);
    auto b = restore_from.empty()
                 ? state::KeyedStateBackend::Open(o)
                 : state::KeyedStateBackend::Restore(o, restore_from, checkpoint_dir());
    EXPECT_OK(b.status());
    return *std::move(b);
  }

  // The context `j` is opened with: over backend_ and timers_, restored_ and restored_state_.
  OperatorContext Context() {
    OperatorContext ctx;
    ctx.job = &job_;
    ctx.spec = spec_;
    ctx.job_id = "job-1";
    ctx.clock = &clock_;
    ctx.task_name = "job-1/j#0";
    ctx.state_origin = backend_->origin();
    ctx.max_parallelism = job_.max_parallelism;
    ctx.keyed_state = backend_.get();
    ctx.timers = timers_.get();
    ctx.late_records_dropped = &late_counter_;
    ctx.restored = restored_;
    ctx.restored_state = restored_state_;
    return ctx;
  }
  // Opens `j` over `backend_` (made if absent).
  void Open() {
    if (backend_ == nullptr) backend_ = NewBackend();
    timers_ = std::make_unique<TimerService>(backend_.get(), &clock_);
    auto op = registry_.Create(*spec_);
    ASSERT_OK(op.status());
    op_ = *std::move(op);
    ASSERT_OK(op_->Open(Context(), &out_));
  }

  static Record MakeRecord(int64_t k, int64_t ts, const std::string& v) {
    Record r(3);
    r.SetInt(0, k);
    r.SetInt(1, ts);
    r.SetString(2, v);
    return r;
  }
  void Push(int side, int64_t k, int64_t ts, const std::string& v) {
    ASSERT_OK(op_->ProcessInput(side, MakeRecord(k, ts, v)));
  }
  void Watermark(int64_t wm) {
    ASSERT_OK(timers_->AdvanceWatermark(wm, op_.get()));
    ASSERT_OK(op_->ProcessWatermark(wm));
  }
  void AdvanceClockMs(int64_t ms) {
    clock_.AdvanceNanos(ms * 1'000'000);
    ASSERT_OK(timers_->FireProcessingTimers(op_.get()));
  }

  // Makes key `k` the backend's current key; returns its bytes and key group.
  std::pair<std::string, int> SetKey(int64_t k) {
    Schema key_schema({{"k", FieldType::kInt64}});
    Record key(1);
    key.SetInt(0, k);
    std::string bytes;
    EncodeRecord(key_schema, key, &bytes);
    const int kg = KeyGroupForHash(KeyHasher::HashKeyRecord(key_schema, key), job_.max_parallelism);
    backend_->SetCurrentKey(bytes, kg);
    return {bytes, kg};
  }

  // The stored value of key `k` in the row store whose per-key state is `name` ("<op>.rows"):
  // its per-key entry or its part of its block ("<op>.row_blocks"); false when neither holds
  // it, a test failure when both do. `from_block` tells which.
  bool StoredRows(int64_t k, const std::string& name, std::string* value, bool* from_block = nullptr) {
    const bool in_entry = StoredEntry(k, name, value);
    std::string in_block;
    const bool in_a_block = StoredInBlock(k, name, &in_block);
    EXPECT_FALSE(in_entry && in_a_block) << "key " << k << " is stored in " << name << " and in its block";
    if (from_block != nullptr) *from_block = !in_entry && in_a_block;
    if (!in_entry && in_a_block) *value = std::move(in_block);
    return in_entry || in_a_block;
  }
  // Key `k`'s per-key entry in `name`.
  bool StoredEntry(int64_t k, const std::string& name, std::string* value) {
    SetKey(k);
    auto found = backend_->Get(backend_->RegisterState(name, state::StateKind::kValue), value);
    EXPECT_OK(found.status());
    return found.ok() && *found;
  }
  // Key `k`'s part of its block (the blocks of `name`, "<op>.row_blocks").
  bool StoredInBlock(int64_t k, const std::string& name, std::string* value) {
    const auto [key, kg] = SetKey(k);
    std::string block_key;
    PutBlockKey(kg, k >> kJoinBlockShift, &block_key);
    backend_->SetCurrentKey(block_key, kg);
    std::string block;
    const std::string blocks_name = name.substr(0, name.size() - 4) + "row_blocks";
    auto found = backend_->Get(backend_->RegisterState(blocks_name, state::StateKind::kValue), &block);
    EXPECT_OK(found.status());
    if (!found.ok() || !*found) return false;
    EXPECT_EQ(block[0], kJoinBlockFormat);
    const char* p = block.data() + 1;
    const char* end = block.data() + block.size();
    uint64_t count = 0;
    p = GetVarint64(p, end, &count);
    for (uint64_t i = 0; p != nullptr && i < count; ++i) {
      uint64_t size = 0;
      p = GetVarint64(p, end, &size);
      const std::string stored_key(p, size);
      p = GetVarint64(p + size, end, &size);
      if (p == nullptr) break;
      if (stored_key == key) {
        value->assign(p, size);
        return true;
      }
      p += size;
    }
    EXPECT_NE(p, nullptr) << blocks_name << " does not decode";
    return false;
  }

  // Records the interval join (or with `name` "join.rows" and `flags`, the join) keeps for key
  // `k` (left, right) as its snapshot writes them: the operator's SnapshotState, then its value
  // of `name` read back and counted in format 2 ([2], per side [count: varint] and per record
  // [ts: fixed64] ([flag: 1 byte] with flags) [size: varint][record]).
  std::pair<uint32_t, uint32_t> KeptRows(int64_t k, const std::string& name = "interval_join.rows",
                                         bool flags = false) {
    std::vector<std::string> entries;
    EXPECT_OK(op_->SnapshotState(7, &entries));
    std::string value;
    if (!StoredRows(k, name, &value)) return {0, 0};
    EXPECT_EQ(value[0], 2);
    uint64_t count[2] = {0, 0};
    const char* p = value.data() + 1;
    const char* end = value.data() + value.size();
    for (int side = 0; side < 2; ++side) {
      p = GetVarint64(p, end, &count[side]);
      for (uint64_t i = 0; p != nullptr && i < count[side]; ++i) {
        uint64_t size = 0;
        p = GetVarint64(p + (flags ? 9 : 8), end, &size);
        if (p != nullptr) p += size;
      }
      if (p == nullptr) {
        ADD_FAILURE() << name << " of key " << k << " does not decode";
        return {0, 0};
      }
    }
    EXPECT_EQ(p, end);
    return {static_cast<uint32_t>(count[0]), static_cast<uint32_t>(count[1])};
  }
  std::pair<uint32_t, uint32_t> JoinRows(int64_t k) { return KeptRows(k, "join.rows", true); }

  // Entries of map state `name` for key `k` (what the join keeps for that key).
  size_t StateEntries(const std::string& name, int64_t k) {
    SetKey(k);
    std::vector<std::pair<std::string, std::string>> entries;
    EXPECT_OK(backend_->MapEntries(backend_->RegisterState(name, state::StateKind::kMap), &entries));
    return entries.size();
  }

  // Keys of value state `name` in the backend (per-key entries, or blocks).
  int StoredKeys(const std::string& name) {
    int n = 0;
    EXPECT_OK(backend_->ForEachKey(backend_->RegisterState(name, state::StateKind::kValue),
                                   [&n](absl::string_view) {
                                     ++n;
                                     return absl::OkStatus();
                                   }));
    return n;
  }
  // The blocks (key group, key >> kJoinBlockShift) of keys `keys`.
  int BlocksOf(const std::vector<int64_t>& keys) {
    std::set<std::pair<int, int64_t>> blocks;
    for (int64_t k : keys) blocks.emplace(SetKey(k).second, k >> kJoinBlockShift);
    return static_cast<int>(blocks.size());
  }
  int KeyGroupOf(int64_t k) { return SetKey(k).second; }
  // What `j`'s row store holds (JoinRowStore::StatsForTest).
  JoinRowStore::Stats Stats() {
    return static_cast<JoinOperatorBase*>(op_.get())->RowStoreForTest()->StatsForTest();
  }

  uint64_t Late() const { return static_cast<JoinOperatorBase*>(op_.get())->late_records_dropped(); }

  std::string checkpoint_dir() const { return absl::StrCat(::testing::TempDir(), "/sluice-join-cp-", getpid()); }

  // Snapshots the backend into checkpoint storage; the handle restores it.
  proto::KeyedStateHandle Snapshot(int64_t id) {
    auto pending = backend_->SnapshotSync(id);
    EXPECT_OK(pending.status());
    auto handle = backend_->UploadSnapshot(*pending, checkpoint_dir(), absl::StrCat("p", id));
    EXPECT_OK(handle.status());
    return *handle;
  }

  // Checkpoints `j` (its SnapshotState, as the task does before the backend's, then the
  // backend) and restores both into a new backend and operator, as a restarted task gets them
  // (of job `restored_job`, a YAML for LoadYaml, when given).
  void CheckpointAndRestore(const std::string& restored_job = "") {
    std::vector<std::string> entries;
    ASSERT_OK(op_->SnapshotState(1, &entries));
    proto::KeyedStateHandle handle = Snapshot(1);
    op_->Close();
    if (!restored_job.empty()) LoadYaml(restored_job);
    backend_ = NewBackend({handle});
    restored_ = true;
    restored_state_ = entries;
    Open();
    restored_ = false;
    restored_state_.clear();
  }

  // Opens a new `j` restored from what backend_ holds (new timers over it) and returns Open()'s
  // status; the operator is dropped.
  absl::Status OpenRestoredForStatus() {
    timers_ = std::make_unique<TimerService>(backend_.get(), &clock_);
    auto op = registry_.Create(*spec_);
    if (!op.ok()) return op.status();
    restored_ = true;
    const OperatorContext ctx = Context();
    restored_ = false;
    return (*op)->Open(ctx, &out_);
  }

  // Opens `j` as subtask `subtask` of `parallelism` restored from `handle` and operator state
  // `entries` (a checkpoint's), over a new backend of its key groups, with no output yet.
  void RestoreSubtask(const proto::KeyedStateHandle& handle, const std::vector<std::string>& entries,
                      int parallelism, int subtask) {
    parallelism_ = parallelism;
    subtask_ = subtask;
    backend_ = NewBackend({handle});
    restored_ = true;
    restored_state_ = entries;
    out_.lines.clear();
    Open();
    restored_ = false;
    restored_state_.clear();
  }

  // Opens `j` with a row store memory of `bytes` (SetJoinMemoryForTest).
  void OpenWithJoinMemory(size_t bytes) {
    SetJoinMemoryForTest(bytes);
    Open();
    SetJoinMemoryForTest(0);
  }
  // Opens `j` over a new backend with no output yet; with a memory budget so small that the
  // join spills (writes every key out) on every record when `spill` (until EndModelRun).
  void StartModelRun(bool spill) {
    backend_ = NewBackend();
    out_.lines.clear();
    SetJoinMemoryForTest(spill ? 4096 : 0);
    Open();
  }
  void EndModelRun() {
    SetJoinMemoryForTest(0);
    op_->Close();
    backend_.reset();
  }
  // A deterministic pseudo-random number in [0, n): the model tests' inputs.
  uint64_t Random(uint64_t n) {
    seed_ = seed_ * 6364136223846793005u + 1442695040888963407u;
    return (seed_ >> 33) % n;
  }

  // A bucket of format 1 (join_base.h) as that release wrote it: the format byte, then per
  // record `prefix` (a flag byte, or nothing) and the record (k, ts, v).
  std::string Format1Bucket(
      const std::vector<std::tuple<std::string, int64_t, int64_t, std::string>>& records) const {
    std::string b(1, '\x01');
    for (const auto& [prefix, k, ts, v] : records) {
      Record r(3);
      r.SetInt(0, k);
      r.SetInt(1, ts);
      r.SetString(2, v);
      b += prefix;
      EncodeRecord(spec_->input_schema, r, &b);
    }
    return b;
  }

  // Pushes records i = 0..39 (input i % 2, key i % 3, ts 100 + 3 i, v "x<i>") with watermark
  // 120 after the first 20 and 1000 at the end: once straight through, and once with a
  // checkpoint after the first 20 restored into a new backend and operator (whose watermark
  // restarts at 120). Returns both outputs.
  std::pair<std::vector<std::string>, std::vector<std::string>> RunStraightAndRestored() {
    const auto push = [&](int64_t from, int64_t to) {
      for (int64_t i = from; i < to; ++i) {
        Push(static_cast<int>(i % 2), i % 3, 100 + i * 3, absl::StrCat("x", i));
      }
    };
    Open();
    push(0, 20);
    Watermark(120);
    push(20, 40);
    Watermark(1000);
    std::vector<std::string> straight = std::move(out_.lines);
    out_.lines.clear();
    backend_ = NewBackend();
    Open();
    push(0, 20);
    Watermark(120);
    CheckpointAndRestore();
    EXPECT_OK(timers_->AdvanceWatermark(120, op_.get()));
    push(20, 40);
    Watermark(1000);
    return {std::move(straight), std::move(out_.lines)};
  }

  // A batch of records of one input, and a time (a watermark, a clock) reached before it.
  struct Batch {
    int side;
    int64_t time;
    std::vector<Record> records;
  };
  // 120 batches of 1 to 40 records (shorter and longer than JoinBatch's pipeline) of a few keys
  // (repeated within a batch, new ones first seen in the middle of one), times a few ms apart,
  // records up to 3 ms behind the time (late for interval_join).
  std::vector<Batch> RandomBatches() {
    std::vector<Batch> batches;
    int64_t time = 0;
    for (int b = 0; b < 120; ++b) {
      Batch batch{static_cast<int>(Random(2)), time += static_cast<int64_t>(Random(6)), {}};
      const size_t n = 1 + Random(40);
      for (size_t i = 0; i < n; ++i) {
        Record r(3);
        r.SetInt(0, static_cast<int64_t>(Random(b < 60 ? 4 : 9)));
        r.SetInt(1, time - 3 + static_cast<int64_t>(Random(30)));
        r.SetString(2, absl::StrCat(b, ".", i, std::string(Random(50), 'p')));
        batch.records.push_back(std::move(r));
      }
      batches.push_back(std::move(batch));
    }
    return batches;
  }
  // Runs `batches` through `j` record by record (ProcessInput) and a batch at a time
  // (ProcessBatch), each in memory and spilling on every record (slots found in a batch before
  // a spill are stale), with `step(batch.time)` before each batch and `finish()` at the end:
  // expects the same rows in the same order and the same late records.
  void ExpectBatchesEmitWhatRecordsEmit(const std::vector<Batch>& batches,
                                        const std::function<void(int64_t)>& step,
                                        const std::function<void()>& finish) {
    for (const bool spill : {false, true}) {
      SCOPED_TRACE(spill ? "spilling" : "in memory");
      std::vector<std::string> lines[2];
      uint64_t late[2];
      for (const bool batched : {false, true}) {
        StartModelRun(spill);
        const uint64_t late_before = late_counter_.Value();
        ASSERT_TRUE(op_->PrefersBatches());
        for (const Batch& batch : batches) {
          step(batch.time);
          if (batched) {
            ASSERT_OK(op_->ProcessBatch(batch.side, batch.records.data(), batch.records.size()));
          } else {
            for (const Record& r : batch.records) ASSERT_OK(op_->ProcessInput(batch.side, r));
          }
        }
        finish();
        lines[batched] = out_.lines;
        late[batched] = late_counter_.Value() - late_before;
        EndModelRun();
      }
      EXPECT_GT(lines[0].size(), 500u);
      EXPECT_EQ(lines[1], lines[0]);
      EXPECT_EQ(late[1], late[0]);
    }
  }

  OperatorRegistry registry_;
  FakeClock clock_;
  Counter late_counter_;
  plan::JobSpec job_;
  const plan::OperatorSpec* spec_ = nullptr;
  JsonOutput out_;
  std::unique_ptr<state::KeyedStateBackend> backend_;
  std::unique_ptr<TimerService> timers_;
  std::unique_ptr<Operator> op_;
  int backend_seq_ = 0;
  int parallelism_ = 1;  // NewBackend()'s key groups: those of subtask_ of parallelism_
  int subtask_ = 0;
  uint64_t seed_ = 12345;
  bool restored_ = false;  // what Open() tells the operator
  std::vector<std::string> restored_state_;
};


std::string Row(int64_t lk, int64_t lts, const std::string& lv, int64_t rk, int64_t rts,
                const std::string& rv) {
  return absl::StrCat(R"({"left.k":)", lk, R"(,"left.ts":)", lts, R"(,"left.v":")", lv,
                      R"(","right.k":)", rk, R"(,"right.ts":)", rts, R"(,"right.v":")", rv, R"("})");
}

// ---------------------------------------------------------------------------------------------
// Options and output schema

TEST_F(JoinTest, ClashingNamesArePrefixedAndMapReadsThem) {
  auto job = plan::ParseJobSpec(
      absl::StrCat(JoinJob("interval_join", "    time: ts\n    lower: -1s\n    upper: 1s\n"),
                   "  - {id: m, type: map, input: j, fields: [left.v, {name: sum, expr: \"left.k + right.k\"}]}\n",
                   "  - {id: out2, type: blackhole}\n"),
      "job.yaml", registry_.catalog());
  ASSERT_OK(job.status());
  for (const auto& op : job->operators) {
    if (op.id == "j") {
      EXPECT_EQ(op.output_schema.ToString(),
                "(left.k int64, left.ts timestamp, left.v string, right.k int64, right.ts "
                "timestamp, right.v string)");
    }
    if (op.id == "m") {
      EXPECT_EQ(op.output_schema.ToString(), "(left.v string, sum int64)");
    }
  }
}

TEST_F(JoinTest, SidesNamedWithAsAndOuterSidesNullable) {
  Load("window_join", "    time: ts\n    tumble: 10ms\n    kind: left\n    left_as: o\n    right_as: p\n");
  EXPECT_EQ(spec_->output_schema.ToString(),
            "(o.k int64, o.ts timestamp, o.v string, p.k int64 null, p.ts timestamp null, p.v "
            "string null, window_start timestamp, window_end timestamp)");
}

TEST_F(JoinTest, BadOptionsAreRefusedWithPositions) {
  const auto error = [&](const std::string& type, const std::string& options) {
    return plan::ParseJobSpec(JoinJob(type, options), "job.yaml", registry_.catalog()).status();
  };
  EXPECT_THAT(error("interval_join", "    time: ts\n    lower: 5ms\n    upper: 1ms\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("the interval [lower, upper] is empty")));
  EXPECT_THAT(error("interval_join", "    time: ts\n    lower: 0\n    upper: 0\n    lower_exclusive: true\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("is empty (1 ms > 0 ms")));
  EXPECT_THAT(error("interval_join", "    lower: 0\n    upper: 1s\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("needs the event-time field")));
  EXPECT_THAT(error("interval_join", "    time: v\n    lower: 0\n    upper: 1s\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("event-time field 'v' of the left input must be a NOT NULL timestamp or int64")));
  EXPECT_THAT(error("join", "    kind: left\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("kind: left needs a 'ttl'")));
  EXPECT_THAT(error("join", "    kind: full\n    ttl: 1s\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("'kind' of join must be inner, left; got 'full'")));
  EXPECT_THAT(error("join", "    unique: middle\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("job.yaml:8:13: 'unique' names the input with at most one record per key: left or right; got 'middle'")));
  EXPECT_THAT(error("join", "    unique: [left]\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("job.yaml:8:13: 'unique' names the input with at most one record per key: left or right; got a list")));
  EXPECT_THAT(error("join", "    unique:\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("left or right; got nothing")));
  EXPECT_THAT(error("window_join", "    time: ts\n    session: 1s\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not session windows")));
  // Keys of different types on the two inputs.
  const std::string job = absl::StrCat(
      JoinJob("join", "").substr(0, JoinJob("join", "").find("  - id: j")),
      "  - id: j\n    type: join\n    inputs: [{from: l, partition: hash, key: [k]}, "
      "{from: r, partition: hash, key: [v]}]\n  - {id: out, type: blackhole}\n");
  EXPECT_THAT(plan::ParseJobSpec(job, "job.yaml", registry_.catalog()).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("key component 1 is int64 on the left ('k') but string on the right ('v')")));
}

// ---------------------------------------------------------------------------------------------
// interval_join

TEST_F(JoinTest, IntervalJoinBoundsAreInclusiveAtBothEdges) {
  Load("interval_join", "    time: ts\n    lower: -2ms\n    upper: 3ms\n");
  Open();
  Push(0, 1, 100, "a");  // matches right.ts in [98, 103]
  for (int64_t ts : {97, 98, 103, 104}) Push(1, 1, ts, absl::StrCat("r", ts));
  Push(1, 2, 100, "other key");
  Push(1, 1, 200, "b");  // matches left.ts in [197, 202], left after right
  for (int64_t ts : {196, 197, 202, 203}) Push(0, 1, ts, absl::StrCat("l", ts));
  EXPECT_THAT(out_.lines, UnorderedElementsAreArray({
                              Row(1, 100, "a", 1, 98, "r98"),
                              Row(1, 100, "a", 1, 103, "r103"),
                              Row(1, 197, "l197", 1, 200, "b"),
                              Row(1, 202, "l202", 1, 200, "b"),
                          }));
}

// A key group carried with a record across the exchange (Record::carried_key_group()) is the
// one its rows are filed under: a wrong one outside the subtask's key groups fails where the
// state is written, naming that group; the right one joins as if computed.
TEST_F(JoinTest, RowsAreFiledUnderTheKeyGroupCarriedWithTheRecord) {
  Load("interval_join", "    time: ts\n    lower: -2ms\n    upper: 3ms\n");
  const KeyGroupRange mine = KeyGroupRangeForSubtask(job_.max_parallelism, 2, 0);
  const Schema key_schema({{"k", FieldType::kInt64}});
  auto key_group = [&](int64_t k) {
    Record key(1);
    key.SetInt(0, k);
    return KeyGroupForHash(KeyHasher::HashKeyRecord(key_schema, key), job_.max_parallelism);
  };
  int64_t k = 0;
  while (!mine.Contains(key_group(k))) ++k;
  const int other = mine.last + 1;  // the other subtask's
  ASSERT_LT(other, job_.max_parallelism);
  for (const bool right_group : {true, false}) {
    SCOPED_TRACE(right_group ? "carried = computed" : "carried outside the range");
    backend_.reset();
    out_.lines.clear();
    state::StateBackendOptions o;
    o.local_dir = absl::StrCat(::testing::TempDir(), "/sluice-join-", getpid(), "-", backend_seq_++);
    o.operator_id = "j";
    o.max_parallelism = job_.max_parallelism;
    o.range = mine;
    o.clock = &clock_;
    o.origin = StateOrigin("job-1", "j", "interval_join", 0, 0);
    auto b = state::KeyedStateBackend::Open(o);
    ASSERT_OK(b.status());
    backend_ = *std::move(b);
    Open();
    const int carried = right_group ? key_group(k) : other;
    Record left = MakeRecord(k, 100, "a");
    left.set_carried_key_group(carried);
    Record right = MakeRecord(k, 101, "b");
    right.set_carried_key_group(carried);
    absl::Status s = op_->ProcessInput(0, left);
    if (s.ok()) s = op_->ProcessInput(1, right);
    std::vector<std::string> entries;
    if (s.ok()) s = op_->SnapshotState(1, &entries);
    if (s.ok()) s = backend_->SnapshotSync(1).status();
    if (right_group) {
      ASSERT_OK(s);
      EXPECT_THAT(out_.lines, UnorderedElementsAreArray({Row(k, 100, "a", k, 101, "b")}));
    } else {
      EXPECT_THAT(s, StatusIs(absl::StatusCode::kInvalidArgument,
                              HasSubstr(absl::StrCat("current key group ", other, " is not in"))));
    }
    op_.reset();
  }
}

TEST_F(JoinTest, IntervalJoinExclusiveBounds) {
  Load("interval_join",
       "    time: ts\n    lower: -2ms\n    upper: 3ms\n    lower_exclusive: true\n    upper_exclusive: true\n");
  Open();
  Push(0, 1, 100, "a");  // matches right.ts in (98, 103)
  for (int64_t ts : {98, 99, 102, 103}) Push(1, 1, ts, absl::StrCat("r", ts));
  EXPECT_THAT(out_.lines, UnorderedElementsAreArray({Row(1, 100, "a", 1, 99, "r99"),
                                                     Row(1, 100, "a", 1, 102, "r102")}));
}

// interval_join sweeps keys at the watermark itself while alive (kIntervalJoinSweepSlackMs is
// 0), for the tests that assert when records leave the state.
class ExactSweeps {
 public:
  ExactSweeps() { SetIntervalJoinSweepSlackForTest(0); }
  ~ExactSweeps() { SetIntervalJoinSweepSlackForTest(-1); }
  ExactSweeps(const ExactSweeps&) = delete;
  ExactSweeps& operator=(const ExactSweeps&) = delete;
};

// With the default slack, a key's records the watermark has passed are dropped by the key's
// next record, or by a sweep kIntervalJoinSweepSlackMs of event time after their cleanup time
// when none comes; the rows out are the same.
TEST_F(JoinTest, IntervalJoinDropsPassedRecordsWithTheKeysNextRecordOrASweepAfterTheSlack) {
  static_assert(kIntervalJoinSweepSlackMs == 1000);
  Load("interval_join", "    time: ts\n    lower: -5ms\n    upper: 10ms\n");
  Open();
  Push(0, 1, 100, "a");  // cleanup 111
  Push(1, 1, 100, "b");  // cleanup 106: key 1 is swept at 1106
  Push(0, 2, 100, "c");  // key 2: cleanup 111, swept at 1111
  Watermark(200);
  EXPECT_EQ(KeptRows(1), std::make_pair(1u, 1u));  // passed, not yet swept
  EXPECT_EQ(KeptRows(2), std::make_pair(1u, 0u));
  Push(1, 1, 300, "d");  // drops a and b, joins nothing
  EXPECT_EQ(KeptRows(1), std::make_pair(0u, 1u));
  Push(0, 1, 300, "e");  // joins d
  EXPECT_EQ(KeptRows(1), std::make_pair(1u, 1u));
  Watermark(1105);
  EXPECT_EQ(KeptRows(1), std::make_pair(1u, 1u));
  Watermark(1106);  // key 1's sweep (b's time): d and e are passed too
  EXPECT_EQ(KeptRows(1), std::make_pair(0u, 0u));
  Watermark(1110);
  EXPECT_EQ(KeptRows(2), std::make_pair(1u, 0u));
  Watermark(1111);  // key 2's sweep
  EXPECT_EQ(KeptRows(2), std::make_pair(0u, 0u));
  EXPECT_THAT(out_.lines, UnorderedElementsAreArray({Row(1, 100, "a", 1, 100, "b"),
                                                     Row(1, 300, "e", 1, 300, "d")}));
}

// `unique: left` with the slack: a left record the watermark has passed but no sweep has
// dropped yet does not make the key's next left record a second one.
TEST_F(JoinTest, UniqueSideRecordPassedByTheWatermarkIsNotASecondOneBeforeItsSweep) {
  Load("interval_join", "    time: ts\n    lower: 0ms\n    upper: 10ms\n    unique: left\n");
  Open();
  Push(0, 1, 100, "a");  // cleanup 111
  Watermark(150);
  EXPECT_EQ(KeptRows(1), std::make_pair(1u, 0u));  // passed, not yet swept
  Push(0, 1, 200, "b");  // not a second record: a is passed
  Push(1, 1, 205, "r");  // joins b only
  EXPECT_EQ(KeptRows(1), std::make_pair(1u, 0u));
  EXPECT_THAT(out_.lines, UnorderedElementsAreArray({Row(1, 200, "b", 1, 205, "r")}));
}

TEST_F(JoinTest, IntervalJoinDropsStateAsTheWatermarkPassesAndCountsLateRecords) {
  const ExactSweeps exact;  // asserts when state goes
  Load("interval_join", "    time: ts\n    lower: -5ms\n    upper: 10ms\n");
  Open();
  Push(0, 1, 100, "a");  // kept until the watermark passes 110
  Push(1, 1, 100, "b");  // kept until the watermark passes 105
  Push(1, 2, 50, "c");
  EXPECT_EQ(KeptRows(1), std::make_pair(1u, 1u));
  EXPECT_EQ(KeptRows(2), std::make_pair(0u, 1u));
  Watermark(105);
  EXPECT_EQ(KeptRows(1), std::make_pair(1u, 1u));  // a left record at 105 may still match b
  EXPECT_EQ(KeptRows(2), std::make_pair(0u, 0u));  // c was written, then deleted
  Push(0, 1, 105, "d");  // not late (105 is not < 105): joins b (100 in [100, 115])
  Watermark(106);
  EXPECT_EQ(KeptRows(1), std::make_pair(2u, 0u));
  Push(1, 1, 104, "late");  // late: dropped, counted, joins nothing
  EXPECT_EQ(Late(), 1u);
  Push(1, 1, 110, "e");  // joins a (110 in [100, 110]) and d (110 in [105, 115])
  Watermark(200);
  EXPECT_EQ(KeptRows(1), std::make_pair(0u, 0u));
  EXPECT_THAT(out_.lines, UnorderedElementsAreArray({
                              Row(1, 100, "a", 1, 100, "b"),
                              Row(1, 105, "d", 1, 100, "b"),
                              Row(1, 100, "a", 1, 110, "e"),
                              Row(1, 105, "d", 1, 110, "e"),
                          }));
  EXPECT_EQ(late_counter_.Value(), 1u);  // the task's sluice_operator_late_records_dropped_total
}

TEST_F(JoinTest, IntervalJoinStateSurvivesCheckpointAndRestoreIntoANewBackend) {
  const ExactSweeps exact;  // asserts when state goes
  Load("interval_join", "    time: ts\n    lower: -10ms\n    upper: 10ms\n");
  const auto [straight, restored] = RunStraightAndRestored();
  // Left records are the even i, right the odd; a pair matches with one key (i % 3) and
  // |3 (i - j)| <= 10: j = i +- 3.
  std::vector<std::string> expected;
  for (int64_t i = 0; i < 40; i += 2) {
    for (int64_t j : {i - 3, i + 3}) {
      if (j < 0 || j >= 40) continue;
      expected.push_back(Row(i % 3, 100 + 3 * i, absl::StrCat("x", i), j % 3, 100 + 3 * j, absl::StrCat("x", j)));
    }
  }
  EXPECT_THAT(straight, UnorderedElementsAreArray(expected));
  EXPECT_THAT(restored, UnorderedElementsAreArray(expected));
  for (int64_t k = 0; k < 3; ++k) EXPECT_EQ(KeptRows(k), std::make_pair(0u, 0u));
}

// The watermark is checkpointed (union state): after a restore, a record behind the smallest
// watermark the old subtasks had seen is late before any new watermark arrives, as it was
// before the failure; rescaled state gets the smallest, not the largest.
TEST_F(JoinTest, JoinsRestoreTheSmallestCheckpointedWatermark) {
  for (const char* type : {"interval_join", "window_join"}) {
    SCOPED_TRACE(type);
    Load(type, std::string(type) == "interval_join" ? "    time: ts\n    lower: -10ms\n    upper: 10ms\n"
                                                    : "    time: ts\n    tumble: 10ms\n");
    backend_ = NewBackend();
    Open();
    std::vector<std::string> entries[2];
    Watermark(150);
    ASSERT_OK(op_->SnapshotState(1, &entries[0]));
    Watermark(240);
    ASSERT_OK(op_->SnapshotState(2, &entries[1]));
    ASSERT_EQ(entries[0].size(), 1u);
    EXPECT_TRUE(static_cast<JoinOperatorBase*>(op_.get())->UnionState());
    op_->Close();
    backend_ = NewBackend();
    restored_ = true;
    restored_state_ = {entries[1][0], entries[0][0]};  // two old subtasks: 240 and 150
    Open();
    restored_ = false;
    restored_state_.clear();
    const uint64_t late_before = Late();
    Push(0, 1, 145, "late");  // behind 150 (interval: ts < 150; window [140, 150) fired at 149)
    EXPECT_EQ(Late(), late_before + 1);
    Push(0, 1, 155, "a");  // behind 240 but not 150: kept
    Push(1, 1, 156, "b");
    EXPECT_EQ(Late(), late_before + 1);
    Watermark(1000);
    EXPECT_EQ(out_.lines.size(), 1u);
    out_.lines.clear();
    restored_state_ = {"\x01short"};
    backend_ = NewBackend();
    restored_ = true;
    auto op = registry_.Create(*spec_);
    ASSERT_OK(op.status());
    EXPECT_THAT((*op)->Open(Context(), &out_), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("join watermark state has 6 bytes")));
    restored_ = false;
    restored_state_.clear();
    op_->Close();
    backend_.reset();
  }
}

TEST_F(JoinTest, JoinStateOfAnUnknownFormatIsDataLossNotGarbage) {
  Load("interval_join", "    time: ts\n    lower: -10ms\n    upper: 10ms\n");
  backend_ = NewBackend();
  SetKey(1);
  ASSERT_OK(backend_->Put(backend_->RegisterState("interval_join.rows", state::StateKind::kValue),
                          std::string("\x09junk", 5)));
  EXPECT_THAT(OpenRestoredForStatus(),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("(job job-1, operator 'j' (type interval_join), subtask 0, not restored from a "
                                 "checkpoint): interval join rows has format version 9, newer than this build reads (up to 2)")));
  ASSERT_OK(backend_->Put(backend_->RegisterState("interval_join.rows", state::StateKind::kValue),
                          std::string("\x02\x01", 2)));  // one left record, then nothing
  EXPECT_THAT(OpenRestoredForStatus(),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("interval join rows (2 bytes) do not decode at a record's time")));
}

// State of format 1 (before the records were kept in memory): per side a map state of buckets
// by time and an index of them, written here by hand as that release wrote them, with its
// per-record cleanup timers. A restore moves it into format 2 and joins against it.
TEST_F(JoinTest, IntervalJoinRestoresStateOfFormat1) {
  const ExactSweeps exact;  // asserts when state goes
  Load("interval_join", "    time: ts\n    lower: -10ms\n    upper: 10ms\n");
  backend_ = NewBackend();
  char buf[8];
  const std::string index = absl::StrCat(std::string(1, '\x01'), TimeUserKey(100, buf));
  SetKey(1);
  ASSERT_OK(backend_->MapPut(backend_->RegisterState("interval_join.left", state::StateKind::kMap),
                             TimeUserKey(100, buf), Format1Bucket({{"", 1, 100, "a"}, {"", 1, 100, "b"}})));
  ASSERT_OK(backend_->Put(backend_->RegisterState("interval_join.left.index", state::StateKind::kValue), index));
  ASSERT_OK(backend_->RegisterTimer(TimeDomain::kEventTime, 111));
  SetKey(2);
  ASSERT_OK(backend_->MapPut(backend_->RegisterState("interval_join.right", state::StateKind::kMap),
                             TimeUserKey(100, buf), Format1Bucket({{"", 2, 100, "c"}})));
  ASSERT_OK(backend_->Put(backend_->RegisterState("interval_join.right.index", state::StateKind::kValue), index));
  ASSERT_OK(backend_->RegisterTimer(TimeDomain::kEventTime, 111));
  restored_ = true;
  Open();
  restored_ = false;
  EXPECT_EQ(StateEntries("interval_join.left", 1), 0u);  // moved to format 2
  EXPECT_EQ(StateEntries("interval_join.right", 2), 0u);
  EXPECT_EQ(KeptRows(1), std::make_pair(2u, 0u));
  EXPECT_EQ(KeptRows(2), std::make_pair(0u, 1u));
  Push(1, 1, 105, "r");
  Push(0, 2, 95, "l");
  Watermark(110);  // a, b and c are kept until the watermark passes 110; l (95) until 105
  EXPECT_EQ(KeptRows(1), std::make_pair(2u, 1u));
  EXPECT_EQ(KeptRows(2), std::make_pair(0u, 1u));
  Watermark(111);  // fires the format-1 timers too: they find nothing left to do
  EXPECT_EQ(KeptRows(1), std::make_pair(0u, 1u));  // r (105) is kept until 115
  EXPECT_EQ(KeptRows(2), std::make_pair(0u, 0u));
  Watermark(200);
  EXPECT_EQ(KeptRows(1), std::make_pair(0u, 0u));
  EXPECT_THAT(out_.lines, UnorderedElementsAreArray({Row(1, 100, "a", 1, 105, "r"), Row(1, 100, "b", 1, 105, "r"),
                                                     Row(2, 95, "l", 2, 100, "c")}));
}

// More than its memory (here 8 MiB) of kept records: they are written to the backend and
// dropped from memory, and read back when a record or the watermark (a timer) needs them.
TEST_F(JoinTest, IntervalJoinSpillsBeyondItsMemoryAndReadsBack) {
  const ExactSweeps exact;  // asserts when state goes
  Load("interval_join", "    time: ts\n    lower: 0ms\n    upper: 10ms\n");
  OpenWithJoinMemory(size_t{8} << 20);
  const std::string big(1 << 17, 'x');
  for (int64_t k = 0; k < 70; ++k) Push(0, k, 100 + k % 5, big);  // the 64th spills
  SetKey(0);
  std::string value;
  auto spilled = backend_->Get(backend_->RegisterState("interval_join.rows", state::StateKind::kValue), &value);
  ASSERT_OK(spilled.status());
  EXPECT_TRUE(*spilled);  // written by the spill (no snapshot has been taken)
  for (int64_t k = 0; k < 70; ++k) Push(1, k, 106, absl::StrCat("r", k));
  size_t joined = 0;
  for (const std::string& line : out_.lines) joined += line.find(big) != std::string::npos;
  EXPECT_EQ(joined, 70u);
  EXPECT_EQ(out_.lines.size(), 70u);
  EXPECT_EQ(KeptRows(3), std::make_pair(1u, 1u));
  Watermark(107);  // right records (cleanup 107) go, left ones (cleanup >= 111) stay
  EXPECT_EQ(KeptRows(3), std::make_pair(1u, 0u));
  Watermark(200);
  for (int64_t k : {0, 3, 69}) EXPECT_EQ(KeptRows(k), std::make_pair(0u, 0u));
}

// While every key is in memory, a checkpoint writes the rows as blocks (one per key group and
// range of 2^kJoinBlockShift key values) and no per-key entry; a block is keyed state of its
// key group, so a restore at any parallelism gives each subtask its key groups' rows.
TEST_F(JoinTest, IntervalJoinRowsCheckpointAsBlocksAndRestoreAtAnyParallelism) {
  const ExactSweeps exact;  // asserts when state goes
  Load("interval_join", "    time: ts\n    lower: 0ms\n    upper: 10ms\n");
  std::vector<int64_t> keys;  // close together and far apart, negative ones too
  for (int64_t i = 0; i < 60; ++i) keys.push_back(i * 997 - 5000);
  for (int64_t i = 0; i < 20; ++i) keys.push_back((int64_t{1} << 40) + i);
  Open();
  std::vector<std::string> expected;
  for (int64_t k : keys) {
    Push(0, k, 100, absl::StrCat("a", k));
    expected.push_back(Row(k, 100, absl::StrCat("a", k), k, 105, absl::StrCat("r", k)));
    if (k % 2 != 0) continue;
    Push(0, k, 103, absl::StrCat("b", k));
    expected.push_back(Row(k, 103, absl::StrCat("b", k), k, 105, absl::StrCat("r", k)));
  }
  EXPECT_EQ(KeptRows(-5000), std::make_pair(2u, 0u));  // snapshots
  EXPECT_EQ(KeptRows(-4003), std::make_pair(1u, 0u));
  std::vector<std::string> entries;
  ASSERT_OK(op_->SnapshotState(1, &entries));
  EXPECT_EQ(StoredKeys("interval_join.rows"), 0);
  EXPECT_EQ(StoredKeys("interval_join.row_blocks"), BlocksOf(keys));
  EXPECT_GT(BlocksOf(keys), 20);
  EXPECT_LT(BlocksOf(keys), static_cast<int>(keys.size()));
  const proto::KeyedStateHandle handle = Snapshot(1);
  op_->Close();
  for (const int parallelism : {1, 2, 3}) {
    SCOPED_TRACE(parallelism);
    std::vector<std::string> rows;
    for (int subtask = 0; subtask < parallelism; ++subtask) {
      RestoreSubtask(handle, entries, parallelism, subtask);
      const KeyGroupRange range = KeyGroupRangeForSubtask(job_.max_parallelism, parallelism, subtask);
      std::vector<int64_t> own;  // the subtask's keys: those it restores, no other
      for (int64_t k : keys) {
        if (range.Contains(KeyGroupOf(k))) own.push_back(k);
      }
      EXPECT_EQ(Stats().keys, own.size());
      EXPECT_EQ(Stats().blocks, static_cast<size_t>(BlocksOf(own)));
      for (int64_t k : own) Push(1, k, 105, absl::StrCat("r", k));
      rows.insert(rows.end(), out_.lines.begin(), out_.lines.end());
      op_->Close();
    }
    EXPECT_THAT(rows, UnorderedElementsAreArray(expected));
  }
  parallelism_ = 1;
  subtask_ = 0;
}

// A checkpoint from before blocks (one entry per key, as SetJoinBlocksForTest(false) writes
// them) restores, and its keys move into blocks at the next checkpoint, their entries deleted.
TEST_F(JoinTest, IntervalJoinRestoresPerKeyEntriesIntoBlocks) {
  const ExactSweeps exact;  // asserts when state goes
  Load("interval_join", "    time: ts\n    lower: 0ms\n    upper: 10ms\n");
  SetJoinBlocksForTest(false);
  Open();
  SetJoinBlocksForTest(true);
  std::vector<int64_t> keys;
  for (int64_t k = 0; k < 50; ++k) keys.push_back(k * 1000);
  for (int64_t k : keys) Push(0, k, 100 + k % 3, absl::StrCat("a", k));
  CheckpointAndRestore();
  EXPECT_EQ(StoredKeys("interval_join.rows"), 50);  // still there until the next checkpoint
  EXPECT_EQ(StoredKeys("interval_join.row_blocks"), 0);
  EXPECT_EQ(KeptRows(1000), std::make_pair(1u, 0u));  // snapshots: the keys go to blocks
  EXPECT_EQ(StoredKeys("interval_join.rows"), 0);
  EXPECT_EQ(StoredKeys("interval_join.row_blocks"), BlocksOf(keys));
  CheckpointAndRestore();
  std::vector<std::string> expected;
  for (int64_t k : keys) {
    Push(1, k, 105, absl::StrCat("r", k));
    expected.push_back(Row(k, 100 + k % 3, absl::StrCat("a", k), k, 105, absl::StrCat("r", k)));
  }
  EXPECT_THAT(out_.lines, UnorderedElementsAreArray(expected));
  EXPECT_EQ(KeptRows(2000), std::make_pair(1u, 1u));
}

// Keys with large rows keep entries of their own beside the blocks of small keys. Over its
// memory the store spills: the blocks become per-key entries (and are deleted), the spill path
// goes on with entries, and a restore within the memory budget moves the small keys back into
// blocks.
TEST_F(JoinTest, IntervalJoinBlocksBecomePerKeyEntriesWhenTheStoreSpills) {
  const ExactSweeps exact;  // asserts when state goes
  Load("interval_join", "    time: ts\n    lower: 0ms\n    upper: 10ms\n");
  OpenWithJoinMemory(size_t{8} << 20);
  const std::string big(1 << 17, 'x');
  std::vector<int64_t> small;  // keys 0..19: small rows, in blocks
  for (int64_t k = 0; k < 20; ++k) {
    Push(0, k, 100 + k % 5, absl::StrCat("s", k));
    small.push_back(k);
  }
  Push(0, 1000, 100, big);  // an entry of its own
  std::vector<std::string> entries;
  ASSERT_OK(op_->SnapshotState(1, &entries));
  EXPECT_EQ(StoredKeys("interval_join.rows"), 1);
  EXPECT_EQ(StoredKeys("interval_join.row_blocks"), BlocksOf(small));
  for (int64_t k = 1001; k < 1070; ++k) Push(0, k, 100 + k % 5, big);  // the 64th big one spills
  EXPECT_EQ(StoredKeys("interval_join.row_blocks"), 0);
  EXPECT_GE(StoredKeys("interval_join.rows"), 80);
  ASSERT_OK(op_->SnapshotState(2, &entries));
  EXPECT_EQ(StoredKeys("interval_join.rows"), 90);
  EXPECT_EQ(StoredKeys("interval_join.row_blocks"), 0);
  CheckpointAndRestore();  // within the default budget: into memory, small keys then in blocks
  EXPECT_EQ(KeptRows(3), std::make_pair(1u, 0u));  // snapshots
  EXPECT_EQ(KeptRows(1003), std::make_pair(1u, 0u));
  EXPECT_EQ(StoredKeys("interval_join.rows"), 70);
  EXPECT_EQ(StoredKeys("interval_join.row_blocks"), BlocksOf(small));
  std::vector<std::string> expected;
  for (int64_t k = 0; k < 20; ++k) {
    Push(1, k, 106, absl::StrCat("r", k));
    expected.push_back(Row(k, 100 + k % 5, absl::StrCat("s", k), k, 106, absl::StrCat("r", k)));
  }
  for (int64_t k = 1000; k < 1070; ++k) Push(1, k, 106, absl::StrCat("r", k));
  size_t joined = 0;
  for (const std::string& line : out_.lines) joined += line.find(big) != std::string::npos;
  EXPECT_EQ(joined, 70u);
  EXPECT_EQ(out_.lines.size(), 90u);
  for (const std::string& row : expected) {
    EXPECT_NE(std::find(out_.lines.begin(), out_.lines.end(), row), out_.lines.end()) << row;
  }
  EXPECT_EQ(KeptRows(3), std::make_pair(1u, 1u));
  EXPECT_EQ(KeptRows(1003), std::make_pair(1u, 1u));
}

// Keys that leave (the watermark's sweep, the input's end) cost no delete each: their blocks are
// rewritten without them at the next checkpoint, or deleted once empty.
TEST_F(JoinTest, IntervalJoinExpiryAndTheInputsEndDropWholeBlocks) {
  const ExactSweeps exact;  // asserts when state goes
  Load("interval_join", "    time: ts\n    lower: 0ms\n    upper: 10ms\n");
  Open();
  std::vector<int64_t> early;  // rows at 100: cleanup at 111
  std::vector<int64_t> late;   // rows at 200, in another range
  std::vector<int64_t> mixed;  // a row at 100 and one at 200
  for (int64_t k = 0; k < 40; ++k) {
    early.push_back(k);
    late.push_back((int64_t{1} << 20) + k);
    mixed.push_back((int64_t{1} << 21) + k);
  }
  for (int64_t k : early) Push(0, k, 100, "e");
  for (int64_t k : late) Push(0, k, 200, "l");
  for (int64_t k : mixed) {
    Push(0, k, 100, "m1");
    Push(1, k, 200, "m2");
  }
  const int64_t big_early = int64_t{3} << 20;  // rows beyond kJoinBlockMaxKeyBytes: own entries
  const int64_t big_late = big_early + 1;
  Push(0, big_early, 100, std::string(kJoinBlockMaxKeyBytes, 'b'));
  Push(0, big_late, 200, std::string(kJoinBlockMaxKeyBytes, 'b'));
  std::vector<int64_t> all = early;
  all.insert(all.end(), late.begin(), late.end());
  all.insert(all.end(), mixed.begin(), mixed.end());
  EXPECT_EQ(KeptRows(mixed[0]), std::make_pair(1u, 1u));  // snapshots
  EXPECT_EQ(StoredKeys("interval_join.rows"), 2);
  EXPECT_EQ(StoredKeys("interval_join.row_blocks"), BlocksOf(all));
  Watermark(111);  // the rows at 100 go
  std::vector<int64_t> kept = late;
  kept.insert(kept.end(), mixed.begin(), mixed.end());
  EXPECT_EQ(KeptRows(early[0]), std::make_pair(0u, 0u));  // snapshots
  EXPECT_EQ(StoredKeys("interval_join.rows"), 1);  // big_early's deleted as it left
  EXPECT_EQ(KeptRows(big_late), std::make_pair(1u, 0u));
  EXPECT_EQ(StoredKeys("interval_join.row_blocks"), BlocksOf(kept));
  for (int64_t k : early) EXPECT_EQ(KeptRows(k), std::make_pair(0u, 0u));
  for (int64_t k : late) EXPECT_EQ(KeptRows(k), std::make_pair(1u, 0u));
  for (int64_t k : mixed) EXPECT_EQ(KeptRows(k), std::make_pair(0u, 1u));
  Watermark(kMaxWatermark);  // the input's end
  EXPECT_EQ(KeptRows(late[0]), std::make_pair(0u, 0u));  // snapshots
  EXPECT_EQ(StoredKeys("interval_join.row_blocks"), 0);
  EXPECT_EQ(StoredKeys("interval_join.rows"), 0);
  EXPECT_TRUE(out_.lines.empty());
}

// Keys that come and go leave nothing behind in memory: with no checkpoint at all (a job may
// have none) and between checkpoints, their blocks' member entries and the blocks go with them
// (a block stored by a checkpoint when its next checkpoint deletes it), the list of changed
// slots holds each slot once, and the memory counted comes back to 0. Auction-like keys: ids
// grow, each lives shorter than the checkpoint interval.
TEST_F(JoinTest, IntervalJoinBlocksGoWithTheirKeysWithAndWithoutCheckpoints) {
  const ExactSweeps exact;  // keys leave at the watermark
  Load("interval_join", "    time: ts\n    lower: 0ms\n    upper: 10ms\n");
  Open();
  constexpr int64_t kKeys = 300;
  // Round r: kKeys new keys in two ranges of 2^kJoinBlockShift values, rows at 100 r (cleanup
  // at 100 r + 11).
  const auto round_keys = [](int64_t r) {
    std::vector<int64_t> keys;
    for (int64_t i = 0; i < kKeys; ++i) keys.push_back((r << 16) + i * 97);
    return keys;
  };
  const auto push = [&](int64_t r) {
    for (int64_t k : round_keys(r)) Push(0, k, 100 * r, "x");
  };
  for (int64_t r = 1; r <= 6; ++r) {  // no checkpoint
    SCOPED_TRACE(r);
    push(r);
    EXPECT_EQ(Stats().keys, static_cast<size_t>(kKeys));
    EXPECT_EQ(Stats().blocks, static_cast<size_t>(BlocksOf(round_keys(r))));
    EXPECT_EQ(Stats().block_members, static_cast<size_t>(kKeys));
    Watermark(100 * r + 11);  // every key leaves
    EXPECT_EQ(Stats().keys, 0u);
    EXPECT_EQ(Stats().blocks, 0u);
    EXPECT_EQ(Stats().block_members, 0u);
    EXPECT_EQ(Stats().bytes, 0u);
    EXPECT_EQ(Stats().dirty_list, static_cast<size_t>(kKeys));  // one entry per slot
  }
  EXPECT_TRUE(out_.lines.empty());
  std::vector<std::string> entries;
  // Checkpoints: round 7's keys are stored, then leave with round 8's, which never were.
  push(7);
  ASSERT_OK(op_->SnapshotState(1, &entries));
  EXPECT_EQ(StoredKeys("interval_join.row_blocks"), BlocksOf(round_keys(7)));
  push(8);
  Watermark(811);
  EXPECT_EQ(Stats().keys, 0u);
  EXPECT_EQ(Stats().blocks, static_cast<size_t>(BlocksOf(round_keys(7))));  // to be deleted
  EXPECT_EQ(Stats().block_members, 0u);
  ASSERT_OK(op_->SnapshotState(2, &entries));
  EXPECT_EQ(StoredKeys("interval_join.row_blocks"), 0);
  EXPECT_EQ(Stats().blocks, 0u);
  EXPECT_EQ(Stats().bytes, 0u);
  // A stored block whose one long-lived key stays while keys of its key group and range come
  // and go between checkpoints: its members are the live keys only, and it holds the one.
  const int64_t stays = int64_t{9} << 16;
  std::vector<int64_t> neighbours;  // same key group and range
  for (int64_t k = stays + 1; neighbours.size() < 20; ++k) {
    if (KeyGroupOf(k) == KeyGroupOf(stays)) neighbours.push_back(k);
  }
  ASSERT_EQ(neighbours.back() >> kJoinBlockShift, stays >> kJoinBlockShift);
  Push(0, stays, 10000, "stays");
  for (int64_t r = 10; r < 14; ++r) {
    SCOPED_TRACE(r);
    for (int64_t k : neighbours) Push(0, k, 100 * r, "x");
    EXPECT_EQ(Stats().block_members, neighbours.size() + 1);
    Watermark(100 * r + 11);
    EXPECT_EQ(Stats().blocks, 1u);
    EXPECT_EQ(Stats().block_members, 1u);
    ASSERT_OK(op_->SnapshotState(r, &entries));
    EXPECT_EQ(StoredKeys("interval_join.row_blocks"), 1);
    EXPECT_EQ(KeptRows(stays), std::make_pair(1u, 0u));
    EXPECT_EQ(KeptRows(neighbours[0]), std::make_pair(0u, 0u));
  }
  Watermark(kMaxWatermark);  // the input's end
  EXPECT_EQ(Stats().block_members, 0u);
  ASSERT_OK(op_->SnapshotState(20, &entries));
  EXPECT_EQ(StoredKeys("interval_join.row_blocks"), 0);
  EXPECT_EQ(Stats().blocks, 0u);
  EXPECT_EQ(Stats().bytes, 0u);
}

// A key leaving its block's member list swaps the last member into its place: that member's
// recorded place moves with it. Four keys of one key group and range; the first leaves (the
// last moves to its place), then the moved one leaves; the two left are the block's members,
// stored in it at the next checkpoint with their rows.
TEST_F(JoinTest, IntervalJoinBlockMemberMovedBySwapRemoveLeavesCleanly) {
  const ExactSweeps exact;  // keys leave at the watermark
  Load("interval_join", "    time: ts\n    lower: 0ms\n    upper: 10ms\n");
  Open();
  const int64_t first = int64_t{5} << 16;
  std::vector<int64_t> keys = {first};  // same key group and range
  for (int64_t k = first + 1; keys.size() < 4; ++k) {
    if (KeyGroupOf(k) == KeyGroupOf(first)) keys.push_back(k);
  }
  ASSERT_EQ(keys.back() >> kJoinBlockShift, first >> kJoinBlockShift);
  Push(0, keys[0], 100, "a");   // leaves at 111
  Push(0, keys[1], 1000, "b");  // stays
  Push(0, keys[2], 1000, "c");  // stays
  Push(0, keys[3], 200, "d");   // the last member: moves to keys[0]'s place, leaves at 211
  EXPECT_EQ(Stats().block_members, 4u);
  Watermark(111);
  EXPECT_EQ(Stats().block_members, 3u);
  Watermark(211);
  EXPECT_EQ(Stats().keys, 2u);
  EXPECT_EQ(Stats().blocks, 1u);
  EXPECT_EQ(Stats().block_members, 2u);
  std::vector<std::string> entries;
  ASSERT_OK(op_->SnapshotState(1, &entries));
  std::string value;
  EXPECT_TRUE(StoredInBlock(keys[1], "interval_join.rows", &value));
  EXPECT_TRUE(StoredInBlock(keys[2], "interval_join.rows", &value));
  EXPECT_FALSE(StoredInBlock(keys[0], "interval_join.rows", &value));
  EXPECT_FALSE(StoredInBlock(keys[3], "interval_join.rows", &value));
  EXPECT_EQ(KeptRows(keys[1]), std::make_pair(1u, 0u));
  EXPECT_EQ(KeptRows(keys[2]), std::make_pair(1u, 0u));
  EXPECT_TRUE(out_.lines.empty());
}

// A key whose rows grow beyond kJoinBlockMaxKeyBytes moves from its block to an entry of its
// own, and back when they shrink again; at every checkpoint it is stored in one place only, and
// a restore gives exactly its rows.
TEST_F(JoinTest, IntervalJoinKeyCrossingTheBlockLimitIsStoredInOnePlace) {
  const ExactSweeps exact;
  Load("interval_join", "    time: ts\n    lower: 0ms\n    upper: 10ms\n");
  Open();
  const int64_t k = 5;
  int64_t other = k + 1;  // keeps the block alive
  while (KeyGroupOf(other) != KeyGroupOf(k)) ++other;
  Push(0, other, 1000, "o");
  Push(0, k, 100, "s1");
  std::string value;
  bool from_block = false;
  EXPECT_EQ(KeptRows(k), std::make_pair(1u, 0u));  // snapshots
  ASSERT_TRUE(StoredRows(k, "interval_join.rows", &value, &from_block));
  EXPECT_TRUE(from_block);
  const std::string big(kJoinBlockMaxKeyBytes, 'b');
  Push(0, k, 105, big);
  EXPECT_EQ(KeptRows(k), std::make_pair(2u, 0u));
  ASSERT_TRUE(StoredRows(k, "interval_join.rows", &value, &from_block));
  EXPECT_FALSE(from_block);
  EXPECT_FALSE(StoredInBlock(k, "interval_join.rows", &value));
  Push(0, k, 200, "s2");
  Watermark(116);  // s1 and big go
  EXPECT_EQ(KeptRows(k), std::make_pair(1u, 0u));
  ASSERT_TRUE(StoredRows(k, "interval_join.rows", &value, &from_block));
  EXPECT_TRUE(from_block);
  EXPECT_FALSE(StoredEntry(k, "interval_join.rows", &value));
  Push(0, k, 201, big);  // up again, then a restore
  CheckpointAndRestore();
  EXPECT_FALSE(StoredInBlock(k, "interval_join.rows", &value));
  EXPECT_EQ(Stats().keys, 2u);
  Push(1, k, 205, "r");
  EXPECT_THAT(out_.lines, UnorderedElementsAreArray({Row(k, 200, "s2", k, 205, "r"),
                                                     Row(k, 201, big, k, 205, "r")}));
  EXPECT_EQ(KeptRows(k), std::make_pair(2u, 1u));
  EXPECT_FALSE(StoredInBlock(k, "interval_join.rows", &value));
}

// A checkpoint from before blocks: its keys with small rows move into blocks at the next
// checkpoint; a key with rows beyond kJoinBlockMaxKeyBytes keeps its entry, not rewritten
// unchanged. At the input's end (DropAll) the restored entries are deleted at once.
TEST_F(JoinTest, IntervalJoinRestoredPerKeyEntriesAndTheInputsEnd) {
  Load("interval_join", "    time: ts\n    lower: 0ms\n    upper: 10ms\n");
  SetJoinBlocksForTest(false);
  Open();
  SetJoinBlocksForTest(true);
  for (int64_t k = 0; k < 10; ++k) Push(0, k, 100, absl::StrCat("a", k));
  const std::string big(kJoinBlockMaxKeyBytes, 'b');
  Push(0, 100, 100, big);
  CheckpointAndRestore();
  EXPECT_EQ(StoredKeys("interval_join.rows"), 11);
  EXPECT_EQ(Stats().keys, 11u);
  EXPECT_EQ(Stats().dirty_keys, 10u);  // the small ones, to go into blocks
  Watermark(kMaxWatermark);  // the input's end: every entry deleted at once
  EXPECT_EQ(StoredKeys("interval_join.rows"), 0);
  EXPECT_EQ(Stats().keys, 0u);
  EXPECT_EQ(Stats().blocks, 0u);
  std::vector<std::string> entries;
  ASSERT_OK(op_->SnapshotState(2, &entries));
  EXPECT_EQ(StoredKeys("interval_join.rows"), 0);
  EXPECT_EQ(StoredKeys("interval_join.row_blocks"), 0);
  EXPECT_EQ(Stats().bytes, 0u);
  EXPECT_TRUE(out_.lines.empty());
  // Once spilled, a store has no blocks: DropAll is refused.
  ASSERT_OK(static_cast<JoinOperatorBase*>(op_.get())->RowStoreForTest()->Spill(nullptr));
  EXPECT_THAT(static_cast<JoinOperatorBase*>(op_.get())->RowStoreForTest()->DropAll(),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("blocks")));
}

// A restore whose keys exceed the memory budget spills while it reads blocks: the first spill
// comes within a block (the keys read so far go to per-key entries), the blocks after are read
// into per-key entries too (and deleted); every key joins exactly once, stored in one place.
TEST_F(JoinTest, IntervalJoinRestoreSpillsWhileReadingBlocks) {
  Load("interval_join", "    time: ts\n    lower: 0ms\n    upper: 10ms\n");
  Open();
  std::vector<int64_t> keys;
  for (int64_t k = 0; k < 3000; ++k) keys.push_back(k);  // ~23 a block
  for (int64_t k : keys) Push(0, k, 100, absl::StrCat("a", k));
  std::vector<std::string> entries;
  ASSERT_OK(op_->SnapshotState(1, &entries));
  EXPECT_EQ(StoredKeys("interval_join.row_blocks"), BlocksOf(keys));
  const proto::KeyedStateHandle handle = Snapshot(1);
  op_->Close();
  backend_ = NewBackend({handle});
  restored_ = true;
  restored_state_ = entries;
  OpenWithJoinMemory(JoinRowArena::kChunkBytes + 4096);  // a chunk and ~10 keys
  restored_ = false;
  restored_state_.clear();
  auto* store = static_cast<JoinOperatorBase*>(op_.get())->RowStoreForTest();
  EXPECT_TRUE(store->spilled());
  EXPECT_FALSE(store->blocks());
  EXPECT_EQ(StoredKeys("interval_join.row_blocks"), 0);
  ASSERT_OK(op_->SnapshotState(2, &entries));
  EXPECT_EQ(StoredKeys("interval_join.rows"), static_cast<int>(keys.size()));
  std::vector<std::string> expected;
  for (int64_t k : keys) {
    Push(1, k, 105, absl::StrCat("r", k));
    expected.push_back(Row(k, 100, absl::StrCat("a", k), k, 105, absl::StrCat("r", k)));
  }
  EXPECT_THAT(out_.lines, UnorderedElementsAreArray(expected));
  std::string value;
  for (int64_t k : {int64_t{0}, int64_t{1}, int64_t{2999}}) EXPECT_TRUE(StoredRows(k, "interval_join.rows", &value));
}

// The in-memory rows and the watermark sweep against a straightforward model (every pair of
// records that were not late when they came, with the right one's time in the left one's
// interval), over random out-of-order records and watermarks: once in memory, and once with a
// memory budget so small that every key is written out and read back again and again, with a
// checkpoint and restore in between.
TEST_F(JoinTest, IntervalJoinMatchesAModelInMemoryAndWhenSpilling) {
  for (const bool spill : {false, true}) {
    SCOPED_TRACE(spill ? "spilling" : "in memory");
    Load("interval_join", "    time: ts\n    lower: -7ms\n    upper: 12ms\n");
    StartModelRun(spill);
    struct Kept {
      int64_t k, ts;
      std::string v;
    };
    std::vector<Kept> kept[2];
    int64_t watermark = 0;
    Watermark(watermark);
    uint64_t late = 0;
    const uint64_t late_counted = late_counter_.Value();  // the task's counter, over both operators
    for (int64_t i = 0; i < 600; ++i) {
      if (i == 300) {
        CheckpointAndRestore();
        ASSERT_OK(timers_->AdvanceWatermark(watermark, op_.get()));
      }
      if (Random(5) == 0) {
        watermark += static_cast<int64_t>(Random(10));
        Watermark(watermark);
      }
      const int side = static_cast<int>(Random(2));
      const int64_t k = static_cast<int64_t>(Random(6));
      const int64_t ts = watermark - 5 + static_cast<int64_t>(Random(40));
      const std::string v = absl::StrCat(i, std::string(Random(100), 'p'));
      if (ts < watermark) {
        ++late;
      } else {
        kept[side].push_back({k, ts, v});
      }
      Push(side, k, ts, v);
    }
    Watermark(INT64_MAX);
    std::vector<std::string> expected;
    for (const Kept& l : kept[0]) {
      for (const Kept& r : kept[1]) {
        if (l.k == r.k && l.ts - 7 <= r.ts && r.ts <= l.ts + 12) expected.push_back(Row(l.k, l.ts, l.v, r.k, r.ts, r.v));
      }
    }
    EXPECT_THAT(out_.lines, UnorderedElementsAreArray(expected));
    EXPECT_GT(late, 0u);
    EXPECT_EQ(late_counter_.Value() - late_counted, late);
    for (int64_t k = 0; k < 6; ++k) EXPECT_EQ(KeptRows(k), std::make_pair(0u, 0u));
    EndModelRun();
  }
}

// The watermark sweeps every key it passed, also when more are due at once than the sweep takes
// in one batch (JoinRowStore::PopDueAhead, 256): 700 keys with a left record each at 100 and 300
// more at 200 (cleanup times 111 and 211), written by a checkpoint first; watermark 111 drops
// exactly the first 700 keys' records (deleted from the backend, nothing left to join) and keeps
// the others, which still join.
TEST_F(JoinTest, IntervalJoinSweepsEveryDueKeyBeyondOneBatch) {
  Load("interval_join", "    time: ts\n    lower: 0ms\n    upper: 10ms\n");
  Open();
  for (int64_t k = 0; k < 1000; ++k) Push(0, k, k < 700 ? 100 : 200, absl::StrCat("l", k));
  std::vector<std::string> entries;
  ASSERT_OK(op_->SnapshotState(1, &entries));
  Watermark(111);
  for (int64_t k = 0; k < 1000; ++k) {
    Push(1, k, k < 700 ? 111 : 205, absl::StrCat("r", k));
    ASSERT_EQ(KeptRows(k), std::make_pair(k < 700 ? 0u : 1u, 1u)) << "key " << k;
  }
  std::vector<std::string> expected;
  for (int64_t k = 700; k < 1000; ++k) {
    expected.push_back(Row(k, 200, absl::StrCat("l", k), k, 205, absl::StrCat("r", k)));
  }
  EXPECT_THAT(out_.lines, UnorderedElementsAreArray(expected));
}

// ProcessBatch() (keys looked up and their state prefetched records ahead, the slots found
// used for the joins) emits exactly what ProcessInput() per record emits, in the same order, and
// counts the same late records (ExpectBatchesEmitWhatRecordsEmit), with late records and
// watermarks between batches.
TEST_F(JoinTest, IntervalJoinBatchesEmitWhatRecordsEmit) {
  Load("interval_join", "    time: ts\n    lower: -7ms\n    upper: 12ms\n");
  ExpectBatchesEmitWhatRecordsEmit(
      RandomBatches(), [&](int64_t t) { Watermark(t); }, [&] { Watermark(INT64_MAX); });
}

// A key of one integral NOT NULL value (a bare field or an expression) is filed by that value
// (JoinOperatorBase::int_key(): no key bytes built, hashed or compared per record), other keys
// by their bytes; both join alike. The same random batches through interval_join and join
// (kind left, with a ttl) keyed by k, by an integer expression of k (negative and beyond 32
// bits), by to_string(k) and by [k, k] emit the same rows (the order of timers due at one time
// follows the keys' bytes) and count the same late records, in memory and spilling on every
// record, with a checkpoint and restore midway.
TEST_F(JoinTest, KeysFiledByValueOrByBytesJoinAlike) {
  const std::vector<Batch> batches = RandomBatches();
  struct Case {
    const char* type;
    const char* options;
    bool event_time;  // steps are watermarks (else the clock)
  };
  const Case cases[] = {{"interval_join", "    time: ts\n    lower: -7ms\n    upper: 12ms\n", true},
                        {"join", "    kind: left\n    ttl: 20ms\n", false}};
  const std::pair<const char*, bool> keys[] = {
      {"k", true}, {"k * 3000000000 - 4", true}, {"to_string(k)", false}, {"k, k", false}};
  for (const Case& c : cases) {
    for (const bool spill : {false, true}) {
      std::vector<std::string> first;
      uint64_t first_late = 0;
      for (const auto& [key, by_value] : keys) {
        SCOPED_TRACE(absl::StrCat(c.type, " keyed by [", key, "]", spill ? ", spilling" : ""));
        Load(c.type, c.options, key);
        StartModelRun(spill);
        EXPECT_EQ(static_cast<JoinOperatorBase*>(op_.get())->IntKeyForTest(), by_value);
        const uint64_t late_before = late_counter_.Value();
        int64_t now = 0;
        for (size_t b = 0; b < batches.size(); ++b) {
          if (b == batches.size() / 2) {
            CheckpointAndRestore();
            if (c.event_time) ASSERT_OK(timers_->AdvanceWatermark(now, op_.get()));
          }
          const Batch& batch = batches[b];
          if (c.event_time) {
            Watermark(batch.time);
          } else {
            AdvanceClockMs(batch.time - now);
          }
          now = batch.time;
          ASSERT_OK(op_->ProcessBatch(batch.side, batch.records.data(), batch.records.size()));
        }
        if (c.event_time) {
          Watermark(INT64_MAX);
        } else {
          ASSERT_OK(op_->Finish());
        }
        const uint64_t late = late_counter_.Value() - late_before;
        std::vector<std::string> lines = out_.lines;
        std::sort(lines.begin(), lines.end());
        if (first.empty()) {
          first = std::move(lines);
          first_late = late;
          EXPECT_GT(first.size(), 500u);
        } else {
          EXPECT_EQ(lines, first);
          EXPECT_EQ(late, first_late);
        }
        EndModelRun();
      }
    }
  }
}

// `unique: left`: a right record that comes while its key's left record is kept joins it and is
// not kept; right records kept before the left one go once they joined it; after the left one
// was swept, right records are kept again; a second left record of a key while one is kept
// fails (kFailedPrecondition naming the key), as it does in `join`.
TEST_F(JoinTest, UniqueSideKeepsTheOtherSideOnlyUntilItsRecordComes) {
  const ExactSweeps exact;  // asserts when state goes
  Load("interval_join", "    time: ts\n    lower: 0ms\n    upper: 10ms\n    unique: left\n");
  Open();
  Push(1, 1, 104, "early1");
  Push(1, 1, 120, "early2");  // beyond the left record's interval: joins nothing, dropped anyway
  EXPECT_EQ(KeptRows(1), std::make_pair(0u, 2u));
  Push(0, 1, 100, "a");  // joins early1
  EXPECT_EQ(KeptRows(1), std::make_pair(1u, 0u));
  Push(1, 1, 110, "r110");  // joins a (the upper edge), not kept
  Push(1, 1, 111, "r111");  // joins nothing, not kept
  EXPECT_EQ(KeptRows(1), std::make_pair(1u, 0u));
  EXPECT_THAT(op_->ProcessInput(0, MakeRecord(1, 105, "second")),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("interval_join 'j': a second record of key {\"k\":1} on the left input, declared 'unique'")));
  Watermark(111);  // a (cleanup 111) goes
  EXPECT_EQ(KeptRows(1), std::make_pair(0u, 0u));
  Push(1, 1, 130, "later");  // no left record kept: kept as without `unique`
  EXPECT_EQ(KeptRows(1), std::make_pair(0u, 1u));
  EXPECT_THAT(out_.lines, UnorderedElementsAreArray({Row(1, 100, "a", 1, 104, "early1"),
                                                     Row(1, 100, "a", 1, 110, "r110")}));

  Load("join", "    unique: right\n");
  backend_ = NewBackend();
  out_.lines.clear();
  Open();
  Push(0, 2, 1, "l1");
  Push(1, 2, 2, "auction");  // joins l1, which goes
  Push(0, 2, 3, "l3");       // joins the auction, not kept
  EXPECT_EQ(JoinRows(2), std::make_pair(0u, 1u));
  EXPECT_THAT(op_->ProcessInput(1, MakeRecord(2, 4, "again")),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("join 'j': a second record of key {\"k\":2} on the right input")));
  EXPECT_THAT(out_.lines, UnorderedElementsAreArray({Row(2, 1, "l1", 2, 2, "auction"),
                                                     Row(2, 3, "l3", 2, 2, "auction")}));
}

// A second record of a unique input is named by that input's key fields, not the other's (the
// right input's key here is `auction`, the left's `k`).
TEST_F(JoinTest, UniqueViolationNamesTheKeyOfTheInputThatBrokeIt) {
  Load("join", "    unique: right\n", "k", false, "{name: auction, expr: k}");
  backend_ = NewBackend();
  Open();
  Push(1, 3, 1, "auction");
  EXPECT_THAT(op_->ProcessInput(1, MakeRecord(3, 2, "again")),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("join 'j': a second record of key {\"auction\":3} on the right input")));
}

// The joins with `unique: left|right` emit exactly the rows of the general path (the same
// options without `unique`) and count the same late records, over random records of 40 keys
// (one of the unique input per key; the others before it, after it and after it is gone, swept
// or expired; some late), with watermarks or clock steps between some, in memory and spilling
// on every record, with a checkpoint and restore midway; in memory they keep fewer rows of the
// other input at the checkpoint (where the general path keeps many).
TEST_F(JoinTest, JoinsWithAUniqueSideEmitWhatTheGeneralPathEmits) {
  struct Event {
    int64_t step;  // >= 0: a watermark or clock time reached before the record
    int side;
    int64_t k, ts;
    std::string v;
  };
  struct Case {
    const char* type;
    const char* options;
    bool event_time;  // steps are watermarks (else the clock)
    bool keeps_many;  // the general path keeps many rows of the other input at the checkpoint
  };
  const Case cases[] = {
      {"interval_join", "    time: ts\n    lower: -7ms\n    upper: 12ms\n", true, false},
      {"interval_join", "    time: ts\n    lower: 0ms\n    upper: 30ms\n", true, false},
      {"interval_join", "    time: ts\n    lower: -50ms\n    upper: 60ms\n", true, true},
      {"join", "    ttl: 40ms\n", false, true},
      {"join", "    kind: left\n    ttl: 40ms\n", false, true},
  };
  constexpr int64_t kKeys = 40;
  for (const Case& c : cases) {
    for (const int unique : {0, 1}) {
      SCOPED_TRACE(absl::StrCat(c.type, " ", c.options, " unique ", unique));
      // Per key its unique record at a time t and 12 of the other input from t - 10 to t + 80 (some
      // after the unique one expired, for a ttl of 40 ms), arriving in
      // time order up to 8 ms behind their times; the watermark (or clock) 4 ms behind the
      // arrivals.
      std::vector<std::pair<int64_t, Event>> arrivals;
      for (int64_t k = 0; k < kKeys; ++k) {
        const int64_t t = static_cast<int64_t>(Random(200));
        arrivals.push_back({t + static_cast<int64_t>(Random(8)), {-1, unique, k, t, absl::StrCat("u", k)}});
        for (int j = 0; j < 12; ++j) {
          const int64_t ts = t - 10 + static_cast<int64_t>(Random(90));
          arrivals.push_back({ts + static_cast<int64_t>(Random(8)),
                              {-1, 1 - unique, k, ts, absl::StrCat("o", k, ".", j, std::string(Random(60), 'p'))}});
        }
      }
      // Then 300 records of 12 more keys, each input at random (the first unique one of a key
      // stays, later ones go to the other input), times a few ms apart.
      std::vector<bool> seen(kKeys + 12, false);
      for (int j = 0; j < 300; ++j) {
        const int64_t ts = 300 + j + static_cast<int64_t>(Random(20));
        const int64_t k = kKeys + static_cast<int64_t>(Random(12));
        int side = static_cast<int>(Random(2));
        if (side == unique) {
          if (seen[k]) side = 1 - unique;
          seen[k] = true;
        }
        arrivals.push_back({300 + j, {-1, side, k, ts, absl::StrCat("s", j, std::string(Random(60), 'p'))}});
      }
      std::stable_sort(arrivals.begin(), arrivals.end(),
                       [](const auto& a, const auto& b) { return a.first < b.first; });
      std::vector<Event> events;
      int64_t time = 0;
      for (auto& [arrival, e] : arrivals) {
        if (Random(4) == 0 && arrival - 4 > time) e.step = time = arrival - 4;
        events.push_back(std::move(e));
      }
      const auto step = [&](int64_t t, int64_t* now) {
        if (c.event_time) {
          Watermark(t);
        } else {
          AdvanceClockMs(t - *now);
        }
        *now = t;
      };
      std::vector<std::string> lines[2][2];  // [spill][unique]
      uint64_t late[2][2];
      uint32_t kept_other[2];  // in memory, [unique]
      for (const bool spill : {false, true}) {
        for (const bool with_unique : {false, true}) {
          Load(c.type, absl::StrCat(c.options, with_unique ? (unique == 0 ? "    unique: left\n" : "    unique: right\n") : ""));
          StartModelRun(spill);
          const uint64_t late_before = late_counter_.Value();
          int64_t now = 0;
          if (c.event_time) Watermark(0);
          for (size_t i = 0; i < events.size(); ++i) {
            if (i == events.size() / 2) {
              if (!spill) {
                uint32_t other = 0;
                for (int64_t k = 0; k < kKeys + 12; ++k) {
                  const auto rows = c.event_time ? KeptRows(k) : JoinRows(k);
                  other += unique == 0 ? rows.second : rows.first;
                }
                kept_other[with_unique] = other;
              }
              CheckpointAndRestore();
              if (c.event_time) ASSERT_OK(timers_->AdvanceWatermark(now, op_.get()));
            }
            const Event& e = events[i];
            if (e.step >= 0) step(e.step, &now);
            Push(e.side, e.k, e.ts, e.v);
          }
          if (c.event_time) {
            Watermark(INT64_MAX);
          } else {
            ASSERT_OK(op_->Finish());
          }
          lines[spill][with_unique] = out_.lines;
          late[spill][with_unique] = late_counter_.Value() - late_before;
          EndModelRun();
        }
        SCOPED_TRACE(spill ? "spilling" : "in memory");
        EXPECT_GT(lines[spill][0].size(), 30u);
        EXPECT_EQ(lines[spill][1].size(), lines[spill][0].size());
        EXPECT_THAT(lines[spill][1], UnorderedElementsAreArray(lines[spill][0]));
        EXPECT_EQ(late[spill][1], late[spill][0]);
      }
      if (c.keeps_many) {
        EXPECT_GT(kept_other[0], 20u);
        EXPECT_LT(kept_other[1], kept_other[0]);
      }
    }
  }
}

// FirstAtOrAfter (the joins' search from the newest rows back) is std::lower_bound over the
// first n rows: random sorted times with runs of equal ones, inline and on the heap, every n and
// times below, at, between and above them (and the int64 edges).
TEST(JoinRowStoreTest, FirstAtOrAfterIsLowerBoundOverTheFirstN) {
  uint64_t seed = 7;
  const auto random = [&](uint64_t n) {
    seed = seed * 6364136223846793005u + 1442695040888963407u;
    return (seed >> 33) % n;
  };
  for (int round = 0; round < 200; ++round) {
    JoinRowStore::Rows rows;
    const size_t size = random(70);
    int64_t ts = static_cast<int64_t>(random(20)) - 10;
    for (size_t i = 0; i < size; ++i) {
      ts += static_cast<int64_t>(random(3));  // 0: a run of equal times
      rows.emplace_back().ts = ts;
    }
    for (size_t n = 0; n <= size; ++n) {
      std::vector<int64_t> probes = {INT64_MIN, INT64_MAX, -12, ts + 1};
      for (size_t i = 0; i < n; ++i) {
        probes.push_back(rows[i].ts);
        probes.push_back(rows[i].ts + 1);
      }
      for (const int64_t t : probes) {
        const size_t expected = static_cast<size_t>(
            std::lower_bound(rows.begin(), rows.begin() + n, t,
                             [](const JoinRowStore::Row& a, int64_t v) { return a.ts < v; }) -
            rows.begin());
        ASSERT_EQ(JoinRowStore::FirstAtOrAfter(rows, n, t), expected) << "n " << n << " t " << t;
      }
    }
  }
}

// JoinRowList under random appends, inserts, front drops, truncations and clears (inline, on
// the heap, across both) holds exactly what a std::deque given the same operations holds, and
// a front drop leaves the kept rows where they were (no row moved: the drop only advances the
// head) unless they moved back inline.
TEST(JoinRowListTest, HoldsWhatADequeHoldsAndDropsTheOldestWithoutMovingTheRest) {
  uint64_t seed = 11;
  const auto random = [&](uint64_t n) {
    seed = seed * 6364136223846793005u + 1442695040888963407u;
    return (seed >> 33) % n;
  };
  JoinRowList<int64_t, 4> rows;
  std::deque<int64_t> model;
  int64_t next = 0;
  for (int op = 0; op < 20000; ++op) {
    const uint64_t what = random(100);
    if (what < 50) {
      rows.emplace_back() = next;
      model.push_back(next++);
    } else if (what < 60) {
      const size_t at = random(model.size() + 1);
      EXPECT_EQ(rows.insert_at(at), 0);  // value-initialised
      rows[at] = next;
      model.insert(model.begin() + at, next++);
    } else if (what < 95) {
      const size_t n = random(std::min<size_t>(model.size(), 3) + 1);
      const bool stays = model.size() - n > 4;  // stays on the heap
      const int64_t* kept = rows.data() + n;
      rows.drop_front(n);
      model.erase(model.begin(), model.begin() + n);
      if (stays) {
        ASSERT_EQ(rows.data(), kept) << "op " << op << ": rows moved by a front drop";
      }
    } else if (what < 99) {
      const size_t n = model.size() - random(std::min<size_t>(model.size(), 2) + 1);
      rows.truncate(n);
      model.resize(n);
    } else {
      rows.clear();
      model.clear();
    }
    ASSERT_EQ(rows.size(), model.size()) << "op " << op;
    ASSERT_EQ(rows.on_heap(), rows.capacity() > 4);
    if (model.size() <= 4) {
      ASSERT_FALSE(rows.on_heap()) << "op " << op;
    }
    ASSERT_TRUE(std::equal(rows.begin(), rows.end(), model.begin(), model.end())) << "op " << op;
    if (!model.empty()) {
      ASSERT_EQ(rows.front(), model.front());
      ASSERT_EQ(rows.back(), model.back());
    }
  }
}

// Rows that stay at about twice what fits inline: the heap block stops growing (the room before
// the head is taken back), and the rows keep their order.
TEST(JoinRowListTest, AStreamOfRowsThroughTheFrontNeedsABoundedBlock) {
  JoinRowList<int64_t, 8> rows;
  int64_t oldest = 0;
  for (int64_t t = 0; t < 100000; ++t) {
    rows.emplace_back() = t;
    if (rows.size() > 20) {
      rows.drop_front(3);
      oldest += 3;
    }
    ASSERT_EQ(rows.front(), oldest);
    ASSERT_EQ(rows.back(), t);
    ASSERT_LE(rows.capacity(), 64u) << t;
  }
}

// The arena under random writes and frees (sizes from 1 byte to beyond a chunk, at and around
// the chunk's edge) and compactions whenever it asks for one: every live record keeps its bytes
// wherever it moves, the live bytes are the live records' sum, a compaction leaves no more
// freed bytes than live ones (beyond the chunk being written), and freeing everything gives the
// memory back (but the current chunk).
TEST(JoinRowArenaTest, RecordsKeepTheirBytesThroughFreesAndCompactions) {
  JoinRowArena arena;
  struct Live {
    uint32_t ref;
    std::string bytes;
  };
  // Most records die soon, oldest first (as the sweeps drop them) or any; one in 30 lives long
  // (freed rarely), keeping partly freed chunks held.
  std::vector<Live> soon, long_lived;
  uint64_t seed = 42;
  const auto random = [&](uint64_t n) {
    seed = seed * 6364136223846793005u + 1442695040888963407u;
    return (seed >> 33) % n;
  };
  const auto free = [&](std::vector<Live>* list, size_t at) {
    arena.Free((*list)[at].ref, (*list)[at].bytes.size());
    list->erase(list->begin() + static_cast<std::ptrdiff_t>(at));
  };
  const size_t edge = JoinRowArena::kChunkBytes;
  const size_t sizes[] = {1, 2, 100, 1000, 4000, edge - 1, edge, edge + 1, 3 * edge};
  int compactions = 0;
  for (int i = 0; i < 30000; ++i) {
    if (soon.empty() || (soon.size() < 400 && random(2) == 0)) {
      const size_t size = random(50) == 0 ? sizes[random(9)] : 1 + random(2000);
      std::string bytes(size, static_cast<char>('a' + i % 26));
      bytes[0] = static_cast<char>(i);
      char* to = arena.Reserve(size + random(20));  // the bound may exceed what is written
      ASSERT_NE(to, nullptr);
      std::memcpy(to, bytes.data(), size);
      (i % 30 == 0 ? long_lived : soon).push_back({arena.Commit(size), std::move(bytes)});
    } else {
      free(&soon, random(4) == 0 ? random(soon.size()) : 0);
    }
    if (!long_lived.empty() && random(100) == 0) free(&long_lived, random(long_lived.size()));
    if (arena.NeedsCompaction()) {
      ++compactions;
      arena.BeginCompaction();
      for (std::vector<Live>* list : {&soon, &long_lived}) {
        for (Live& l : *list) l.ref = arena.Move(l.ref, l.bytes.size());
      }
      arena.EndCompaction();
      EXPECT_LE(arena.held_bytes() - arena.live_bytes(), arena.live_bytes() + 2 * edge);
    }
    ASSERT_LE(arena.movable_waste(), arena.held_bytes() - arena.live_bytes());
    size_t sum = 0;
    for (std::vector<Live>* list : {&soon, &long_lived}) {
      for (const Live& l : *list) sum += l.bytes.size();
    }
    ASSERT_EQ(arena.live_bytes(), sum);
  }
  EXPECT_GT(compactions, 0);
  for (std::vector<Live>* list : {&soon, &long_lived}) {
    for (const Live& l : *list) {
      ASSERT_EQ(absl::string_view(arena.data(l.ref), l.bytes.size()), l.bytes);
    }
    while (!list->empty()) free(list, list->size() - 1);
  }
  EXPECT_EQ(arena.live_bytes(), 0u);
  EXPECT_LE(arena.held_bytes(), edge);
}

// Wide records whose size bound is far above their encoded size (many integer fields: 11 bytes
// of bound, 1 written) leave slack no compaction can give back: the end of each chunk they
// filled, and a large record's own chunk beyond its size. Kept alive while small records come
// and go oldest first, they never make the arena ask for a compaction (which would move
// nothing); once most of their chunks' records are freed, it does, and the compaction gives the
// freed chunks back.
TEST(JoinRowArenaTest, SlackOfWideRecordsTriggersNoCompaction) {
  const size_t chunk = JoinRowArena::kChunkBytes;
  JoinRowArena arena;
  struct Live {
    uint32_t ref;
    size_t size;
  };
  std::vector<Live> wide, small;
  const auto add = [&](std::vector<Live>* list, size_t bound, size_t size) {
    char* to = arena.Reserve(bound);
    ASSERT_NE(to, nullptr);
    std::memset(to, 'w', size);
    list->push_back({arena.Commit(size), size});
  };
  for (int i = 0; i < 350; ++i) add(&wide, 40000, 4000);     // 7 a chunk, 37.5 KiB slack each
  for (int i = 0; i < 10; ++i) add(&wide, 3 * chunk, chunk + 1);  // chunks of their own
  // What the trigger counted before: the slack is more than the live bytes and 32 chunks.
  EXPECT_GT(arena.held_bytes() - arena.live_bytes(), arena.live_bytes());
  EXPECT_GT(arena.held_bytes() - arena.live_bytes(), 32 * chunk);
  int compactions = 0;
  const auto compact_if_asked = [&] {
    if (!arena.NeedsCompaction()) return;
    ++compactions;
    arena.BeginCompaction();
    for (std::vector<Live>* list : {&wide, &small}) {
      for (Live& l : *list) l.ref = arena.Move(l.ref, l.size);
    }
    arena.EndCompaction();
  };
  for (int i = 0; i < 20000; ++i) {
    add(&small, 300, 200);
    if (small.size() > 500) {
      arena.Free(small.front().ref, small.front().size);
      small.erase(small.begin());
    }
    compact_if_asked();
  }
  EXPECT_EQ(compactions, 0);
  // Six of each chunk's seven 4000-byte records go: now those chunks are mostly freed.
  size_t kept = 0;
  for (size_t i = 0; i < wide.size(); ++i) {
    if (i < 350 && i % 7 != 0) {
      arena.Free(wide[i].ref, wide[i].size);
    } else {
      wide[kept++] = wide[i];
    }
  }
  wide.resize(kept);
  const size_t held = arena.held_bytes();
  compact_if_asked();
  EXPECT_EQ(compactions, 1);
  EXPECT_LT(arena.held_bytes(), held - 40 * chunk);
  EXPECT_LT(arena.movable_waste(), 2 * chunk);
}

// A chunk fills to its last byte and the next record starts a new chunk; records of a chunk's
// size or more get chunks of their own (freed with them); out of chunk indexes, Reserve says so
// (nullptr) instead of reusing one, and NearlyFull() comes first (beyond half of them).
TEST(JoinRowArenaTest, ChunkEdgesLargeRecordsAndTheLastChunk) {
  const size_t chunk = JoinRowArena::kChunkBytes;
  JoinRowArena arena(/*max_chunks=*/4);
  char* a = arena.Reserve(chunk - 1);
  ASSERT_NE(a, nullptr);
  std::memset(a, 'a', chunk - 1);
  const uint32_t ra = arena.Commit(chunk - 1);
  char* b = arena.Reserve(1);  // does not fit after a (a record starts below the chunk's end)
  ASSERT_NE(b, nullptr);
  *b = 'b';
  const uint32_t rb = arena.Commit(1);
  EXPECT_NE(ra >> JoinRowArena::kOffsetBits, rb >> JoinRowArena::kOffsetBits);
  EXPECT_EQ(arena.held_bytes(), 2 * chunk);
  EXPECT_FALSE(arena.NearlyFull());
  char* big = arena.Reserve(chunk);  // a chunk of its own
  ASSERT_NE(big, nullptr);
  std::memset(big, 'c', chunk);
  const uint32_t rbig = arena.Commit(chunk);
  EXPECT_EQ(rbig & (chunk - 1), 0u);
  EXPECT_EQ(arena.held_bytes(), 3 * chunk);
  EXPECT_TRUE(arena.NearlyFull());  // 3 of 4 in use
  ASSERT_NE(arena.Reserve(2 * chunk), nullptr);
  const uint32_t rbig2 = arena.Commit(2 * chunk - 5);
  EXPECT_EQ(arena.Reserve(2 * chunk), nullptr);  // every index in use
  EXPECT_EQ(absl::string_view(arena.data(ra), chunk - 1), std::string(chunk - 1, 'a'));
  EXPECT_EQ(*arena.data(rb), 'b');
  EXPECT_EQ(absl::string_view(arena.data(rbig), chunk), std::string(chunk, 'c'));
  arena.Free(rbig, chunk);
  arena.Free(rbig2, 2 * chunk - 5);
  EXPECT_EQ(arena.held_bytes(), 2 * chunk);  // big's chunk is kept for reuse, big2's returned
  arena.Free(ra, chunk - 1);  // a's chunk is empty and not current: released
  EXPECT_EQ(arena.held_bytes(), chunk);
  ASSERT_NE(arena.Reserve(3 * chunk), nullptr);  // indexes are reused
  arena.Commit(3 * chunk);
  EXPECT_EQ(*arena.data(rb), 'b');
}

// JoinRowStore's key entries (JoinSlotChunks, 1024 per chunk as the store's): an entry keeps
// its address and contents while thousands more are added (three chunks), where a vector that
// doubles moved them all; an added entry starts value-initialised, on the 64-byte line Key asks
// for.
TEST(JoinSlotChunksTest, EntriesKeepTheirAddressesAndContentsAsTheyGrow) {
  JoinSlotChunks<JoinRowStore::Key, 10> keys;
  std::vector<const JoinRowStore::Key*> where;
  for (int64_t i = 0; i < 3000; ++i) {
    JoinRowStore::Key& k = keys.emplace_back();
    ASSERT_EQ(k.int_key, 0);
    ASSERT_FALSE(k.live);
    ASSERT_TRUE(k.empty());
    ASSERT_EQ(k.scheduled, JoinRowStore::kNever);
    ASSERT_EQ(reinterpret_cast<uintptr_t>(&k) % 64, 0u) << i;
    k.int_key = i;
    for (int64_t r = 0; r < i % 12; ++r) {  // inline (<= 8) and on the heap
      JoinRowStore::Row& row = k.rows[1].emplace_back();
      row.ts = i + r;
      row.ref = static_cast<uint32_t>(r);
    }
    where.push_back(&k);
  }
  ASSERT_EQ(keys.size(), 3000u);
  for (size_t i = 0; i < where.size(); ++i) {
    ASSERT_EQ(&keys[i], where[i]) << "entry " << i << " moved";
    ASSERT_EQ(keys[i].int_key, static_cast<int64_t>(i));
    ASSERT_EQ(keys[i].rows[1].size(), i % 12);
    for (size_t r = 0; r < i % 12; ++r) {
      ASSERT_EQ(keys[i].rows[1][r].ts, static_cast<int64_t>(i + r));
    }
  }
}

struct CountedEntry {
  CountedEntry() { ++alive; }
  ~CountedEntry() { --alive; }
  static int alive;
  int value = 7;
};
int CountedEntry::alive = 0;

// clear() destroys every entry constructed (none more), and the store grows again from 0.
TEST(JoinSlotChunksTest, ClearDestroysEveryEntryOnceAndStartsOver) {
  {
    JoinSlotChunks<CountedEntry, 2> entries;  // chunks of 4
    for (int i = 0; i < 10; ++i) entries.emplace_back().value = i;
    EXPECT_EQ(CountedEntry::alive, 10);
    entries.clear();
    EXPECT_EQ(CountedEntry::alive, 0);
    EXPECT_EQ(entries.size(), 0u);
    for (int i = 0; i < 5; ++i) EXPECT_EQ(entries.emplace_back().value, 7);
    EXPECT_EQ(entries[4].value, 7);
    EXPECT_EQ(CountedEntry::alive, 5);
  }
  EXPECT_EQ(CountedEntry::alive, 0);  // the destructor too
}

// Keys beyond one chunk of the store's key entries (1024): 2500 keys with a left record each,
// written by a checkpoint, restored into a new operator, then each joined by a right record:
// exactly one row per key, and every key keeps its rows.
TEST_F(JoinTest, IntervalJoinKeysBeyondOneChunkJoinAndRestore) {
  Load("interval_join", "    time: ts\n    lower: 0ms\n    upper: 10ms\n");
  Open();
  constexpr int64_t kKeys = 2500;
  for (int64_t k = 0; k < kKeys; ++k) Push(0, k, 100, absl::StrCat("l", k));
  std::vector<std::string> expected;
  for (int64_t k = 0; k < kKeys; k += 2) {  // half before the restore
    Push(1, k, 105, absl::StrCat("r", k));
    expected.push_back(Row(k, 100, absl::StrCat("l", k), k, 105, absl::StrCat("r", k)));
  }
  CheckpointAndRestore();
  for (int64_t k = 1; k < kKeys; k += 2) {  // the other half after it
    Push(1, k, 105, absl::StrCat("r", k));
    expected.push_back(Row(k, 100, absl::StrCat("l", k), k, 105, absl::StrCat("r", k)));
  }
  for (int64_t k = 0; k < kKeys; ++k) {
    ASSERT_EQ(KeptRows(k), std::make_pair(1u, 1u)) << "key " << k;
  }
  EXPECT_THAT(out_.lines, UnorderedElementsAreArray(expected));
}

// Records of keys kept long (far in the future) among many dropped soon leave the arena's
// chunks mostly freed: the store compacts it (moving the long-kept rows), and those rows still
// join with their exact bytes afterwards, in memory and after a checkpoint and restore.
TEST_F(JoinTest, IntervalJoinRowsMovedByArenaCompactionStillJoin) {
  Load("interval_join", "    time: ts\n    lower: 0ms\n    upper: 10ms\n");
  Open();
  const uint64_t compactions = JoinArenaCompactionsForTest();
  const std::string pad(900, 'p');
  std::vector<std::string> expected;
  for (int64_t i = 0; i < 20000; ++i) {
    if (i % 40 == 0) {
      Push(0, 100000 + i, 1'000'000, absl::StrCat("kept", i, pad));  // until the watermark passes 1,000,010
    } else {
      Push(0, i % 50, i, pad);
    }
    if (i % 100 == 99) Watermark(i - 20);
  }
  EXPECT_GT(JoinArenaCompactionsForTest(), compactions);
  for (int64_t i = 0; i < 20000; i += 40) {
    Push(1, 100000 + i, 1'000'005, "r");
    expected.push_back(Row(100000 + i, 1'000'000, absl::StrCat("kept", i, pad), 100000 + i, 1'000'005, "r"));
  }
  EXPECT_THAT(out_.lines, UnorderedElementsAreArray(expected));
  out_.lines.clear();
  CheckpointAndRestore();
  expected.clear();
  for (int64_t i = 0; i < 20000; i += 40) {
    Push(1, 100000 + i, 1'000'007, "s");
    expected.push_back(Row(100000 + i, 1'000'000, absl::StrCat("kept", i, pad), 100000 + i, 1'000'007, "s"));
  }
  EXPECT_THAT(out_.lines, UnorderedElementsAreArray(expected));
  Watermark(2'000'000);
  for (int64_t k : {100000, 119960}) EXPECT_EQ(KeptRows(k), std::make_pair(0u, 0u));
}

// ---------------------------------------------------------------------------------------------
// join (regular)

TEST_F(JoinTest, RegularInnerJoinMatchesBothWaysUntilTtlExpires) {
  Load("join", "    ttl: 1s\n");
  Open();
  Push(0, 1, 1, "a");
  Push(1, 1, 2, "b");  // joins a
  Push(0, 1, 3, "c");  // joins b
  Push(1, 2, 4, "d");
  AdvanceClockMs(999);
  Push(1, 1, 5, "e");  // joins a and c (both 999 ms old)
  AdvanceClockMs(1);   // a, b, c, d expire (they arrived in one millisecond); e stays
  EXPECT_EQ(JoinRows(1), std::make_pair(0u, 1u));
  EXPECT_EQ(JoinRows(2), std::make_pair(0u, 0u));
  Push(1, 1, 6, "f");  // nothing left to join
  AdvanceClockMs(1000);
  EXPECT_EQ(JoinRows(1), std::make_pair(0u, 0u));
  EXPECT_THAT(out_.lines, UnorderedElementsAreArray({
                              Row(1, 1, "a", 1, 2, "b"),
                              Row(1, 3, "c", 1, 2, "b"),
                              Row(1, 1, "a", 1, 5, "e"),
                              Row(1, 3, "c", 1, 5, "e"),
                          }));
}

TEST_F(JoinTest, RegularLeftJoinPadsUnmatchedRowsWhenTheirTtlExpires) {
  Load("join", "    kind: left\n    ttl: 100ms\n");
  Open();
  Push(0, 1, 1, "matched");
  Push(0, 2, 2, "lonely");
  AdvanceClockMs(50);
  Push(0, 3, 3, "late-match");
  Push(1, 1, 4, "r1");  // matched joins now
  EXPECT_THAT(out_.lines, UnorderedElementsAreArray({Row(1, 1, "matched", 1, 4, "r1")}));
  AdvanceClockMs(50);  // matched and lonely expire: lonely comes out padded
  ASSERT_EQ(out_.lines.size(), 2u);
  EXPECT_EQ(out_.lines[1],
            R"({"left.k":2,"left.ts":2,"left.v":"lonely","right.k":null,"right.ts":null,"right.v":null})");
  Push(1, 3, 5, "r3");  // late-match (50 ms old) joins
  AdvanceClockMs(100);  // late-match expires matched: nothing more
  Push(0, 4, 6, "at-end");
  ASSERT_OK(op_->Finish());  // end of input: at-end can never match
  EXPECT_THAT(out_.lines,
              UnorderedElementsAreArray({
                  Row(1, 1, "matched", 1, 4, "r1"),
                  std::string(R"({"left.k":2,"left.ts":2,"left.v":"lonely","right.k":null,"right.ts":null,"right.v":null})"),
                  Row(3, 3, "late-match", 3, 5, "r3"),
                  std::string(R"({"left.k":4,"left.ts":6,"left.v":"at-end","right.k":null,"right.ts":null,"right.v":null})"),
              }));
  EXPECT_EQ(JoinRows(4), std::make_pair(0u, 0u));
}

// Inputs without strings or nullable fields are copied into the joined row by value (not field
// by field with a null bit each): a row padded with nulls on one side, then rows with that side
// present, must show its values again, not the nulls left in the output row.
TEST_F(JoinTest, RegularLeftJoinOfNumericInputsClearsThePaddingNullsOfTheRowBefore) {
  Load("join", "    kind: left\n    ttl: 100ms\n", "k", /*numeric_v=*/true);
  Open();
  const auto push = [&](int side, int64_t k, int64_t ts, double v) {
    Record r(3);
    r.SetInt(0, k);
    r.SetInt(1, ts);
    r.SetDouble(2, v);
    ASSERT_OK(op_->ProcessInput(side, r));
  };
  push(0, 2, 2, 2.5);
  AdvanceClockMs(100);  // expires unmatched: padded with nulls on the right
  push(0, 1, 1, 1.5);
  push(1, 1, 4, 4.25);  // right side present again
  push(1, 1, 5, -5.0);
  AdvanceClockMs(100);
  push(0, 3, 6, 6.0);
  ASSERT_OK(op_->Finish());  // end of input: padded again
  EXPECT_EQ(out_.lines,
            std::vector<std::string>({
                R"({"left.k":2,"left.ts":2,"left.v":2.5,"right.k":null,"right.ts":null,"right.v":null})",
                R"({"left.k":1,"left.ts":1,"left.v":1.5,"right.k":1,"right.ts":4,"right.v":4.25})",
                R"({"left.k":1,"left.ts":1,"left.v":1.5,"right.k":1,"right.ts":5,"right.v":-5})",
                R"({"left.k":3,"left.ts":6,"left.v":6,"right.k":null,"right.ts":null,"right.v":null})",
            }));
}

TEST_F(JoinTest, RegularJoinStateSurvivesCheckpointAndRestoreIntoANewBackend) {
  Load("join", "");
  const auto [straight, restored] = RunStraightAndRestored();
  // Left records are the even i, right the odd; every pair with one key (i % 3) joins once.
  std::vector<std::string> expected;
  for (int64_t i = 0; i < 40; i += 2) {
    for (int64_t j = 1; j < 40; j += 2) {
      if (i % 3 != j % 3) continue;
      expected.push_back(Row(i % 3, 100 + 3 * i, absl::StrCat("x", i), j % 3, 100 + 3 * j, absl::StrCat("x", j)));
    }
  }
  EXPECT_THAT(straight, UnorderedElementsAreArray(expected));
  EXPECT_THAT(restored, UnorderedElementsAreArray(expected));
  EXPECT_EQ(JoinRows(0), std::make_pair(7u, 7u));  // i = 0, 6, ..., 36 and 3, 9, ..., 39
}

// A left row's matched flag survives a restore: matched rows are never padded afterwards.
TEST_F(JoinTest, RegularLeftJoinKeepsMatchedFlagsAcrossARestore) {
  Load("join", "    kind: left\n    ttl: 100ms\n");
  Open();
  Push(0, 1, 1, "matched");
  Push(0, 2, 2, "lonely");
  Push(1, 1, 3, "r1");
  CheckpointAndRestore();
  AdvanceClockMs(100);  // both left rows expire (their timers were restored): lonely is padded
  EXPECT_THAT(out_.lines, UnorderedElementsAreArray({
                              Row(1, 1, "matched", 1, 3, "r1"),
                              std::string(R"({"left.k":2,"left.ts":2,"left.v":"lonely","right.k":null,"right.ts":null,"right.v":null})"),
                          }));
  EXPECT_EQ(JoinRows(1), std::make_pair(0u, 0u));
  EXPECT_EQ(JoinRows(2), std::make_pair(0u, 0u));
}

// State of format 1 (before the rows were kept in memory): per side a map state of buckets by
// arrival time, each record after its matched flag byte, and an index of them, with a timer per
// bucket at its expiry, written here by hand as that release wrote them. A restore moves it
// into format 2; the old timers expire it.
TEST_F(JoinTest, RegularJoinRestoresStateOfFormat1) {
  Load("join", "    kind: left\n    ttl: 100ms\n");
  backend_ = NewBackend();
  char buf[8];
  const int64_t arrived = clock_.WallMillis() - 10;  // the bucket's arrival time
  SetKey(1);
  ASSERT_OK(backend_->MapPut(backend_->RegisterState("join.left", state::StateKind::kMap),
                             TimeUserKey(arrived, buf), Format1Bucket({{"\x01", 1, 7, "seen"}, {std::string(1, '\0'), 1, 7, "unseen"}})));
  ASSERT_OK(backend_->Put(backend_->RegisterState("join.left.index", state::StateKind::kValue),
                          absl::StrCat(std::string(1, '\x01'), TimeUserKey(arrived, buf))));
  ASSERT_OK(backend_->MapPut(backend_->RegisterState("join.right", state::StateKind::kMap),
                             TimeUserKey(arrived, buf), Format1Bucket({{std::string(1, '\0'), 1, 7, "r"}})));
  ASSERT_OK(backend_->Put(backend_->RegisterState("join.right.index", state::StateKind::kValue),
                          absl::StrCat(std::string(1, '\x01'), TimeUserKey(arrived, buf))));
  ASSERT_OK(backend_->RegisterTimer(TimeDomain::kProcessingTime, arrived + 100));
  restored_ = true;
  Open();
  restored_ = false;
  EXPECT_EQ(StateEntries("join.left", 1), 0u);  // moved to format 2
  EXPECT_EQ(StateEntries("join.right", 1), 0u);
  EXPECT_EQ(JoinRows(1), std::make_pair(2u, 1u));
  Push(1, 1, 8, "r2");  // joins both left rows
  AdvanceClockMs(90);   // the format-1 timer: unseen was matched by r2, nothing is padded
  EXPECT_EQ(JoinRows(1), std::make_pair(0u, 1u));  // r2 (arrived 10 ms later) stays
  AdvanceClockMs(10);
  EXPECT_EQ(JoinRows(1), std::make_pair(0u, 0u));
  EXPECT_THAT(out_.lines, UnorderedElementsAreArray({
                              Row(1, 7, "seen", 1, 8, "r2"),
                              Row(1, 7, "unseen", 1, 8, "r2"),
                          }));
}

// The in-memory rows against a straightforward model of the join (every row kept in a list,
// expiry and matching by scanning it), over random records and clock steps, kind left with a
// ttl: once in memory, and once with a memory budget so small that the store spills (every key
// written out and read back) again and again, with a checkpoint and restore in between.
TEST_F(JoinTest, RegularLeftJoinMatchesAModelInMemoryAndWhenSpilling) {
  for (const bool spill : {false, true}) {
    SCOPED_TRACE(spill ? "spilling" : "in memory");
    Load("join", "    kind: left\n    ttl: 50ms\n");
    StartModelRun(spill);
    struct ModelRow {
      int side;
      int64_t k, ts, arrived;
      std::string v;
      bool matched;
      bool gone;
    };
    std::vector<ModelRow> model;
    std::vector<std::string> expected;
    const auto padded = [](const ModelRow& l) {
      return absl::StrCat(R"({"left.k":)", l.k, R"(,"left.ts":)", l.ts, R"(,"left.v":")", l.v,
                          R"(","right.k":null,"right.ts":null,"right.v":null})");
    };
    const auto expire = [&](int64_t now, bool all) {
      for (ModelRow& m : model) {
        if (m.gone || (!all && m.arrived + 50 > now)) continue;
        m.gone = true;
        if (m.side == 0 && !m.matched) expected.push_back(padded(m));
      }
    };
    int64_t now = 0;
    for (int64_t i = 0; i < 600; ++i) {
      if (i == 300) CheckpointAndRestore();
      if (Random(4) == 0) {
        const int64_t step = static_cast<int64_t>(Random(30));
        now += step;
        expire(now, false);
        AdvanceClockMs(step);
      }
      const int side = static_cast<int>(Random(2));
      const int64_t k = static_cast<int64_t>(Random(12));
      ModelRow row{side, k, i, now, absl::StrCat(side == 0 ? "l" : "r", i, std::string(Random(200), 'p')), false, false};
      for (ModelRow& m : model) {
        if (m.gone || m.side == side || m.k != k) continue;
        row.matched = true;
        if (m.side == 0) m.matched = true;
        expected.push_back(side == 0 ? Row(k, i, row.v, m.k, m.ts, m.v) : Row(m.k, m.ts, m.v, k, i, row.v));
      }
      model.push_back(row);
      Push(side, k, i, row.v);
    }
    ASSERT_OK(op_->Finish());
    expire(now, true);
    EXPECT_THAT(out_.lines, UnorderedElementsAreArray(expected));
    EndModelRun();
  }
}

// As IntervalJoinBatchesEmitWhatRecordsEmit for `join`, kind left with a ttl: processing time
// steps between batches expire rows (unmatched left ones padded), the rest padded at the end.
TEST_F(JoinTest, RegularJoinBatchesEmitWhatRecordsEmit) {
  Load("join", "    kind: left\n    ttl: 20ms\n");
  int64_t now = 0;
  ExpectBatchesEmitWhatRecordsEmit(
      RandomBatches(),
      [&](int64_t t) {
        AdvanceClockMs(t - now);
        now = t;
      },
      [&] {
        ASSERT_OK(op_->Finish());
        now = 0;
      });
}

// ---------------------------------------------------------------------------------------------
// window_join

// Windows [0, 10) and [10, 20): key 1 on both sides, key 2 left only, key 3 right only.
class WindowJoinKindTest : public JoinTest, public ::testing::WithParamInterface<const char*> {};

std::string WRow(const std::string& left, const std::string& right, int64_t start) {
  return absl::StrCat("{", left, ",", right, R"(,"window_start":)", start, R"(,"window_end":)",
                      start + 10, "}");
}
std::string L(int64_t k, int64_t ts, const std::string& v) {
  return absl::StrCat(R"("left.k":)", k, R"(,"left.ts":)", ts, R"(,"left.v":")", v, R"(")");
}
std::string R(int64_t k, int64_t ts, const std::string& v) {
  return absl::StrCat(R"("right.k":)", k, R"(,"right.ts":)", ts, R"(,"right.v":")", v, R"(")");
}
const char kNullLeft[] = R"("left.k":null,"left.ts":null,"left.v":null)";
const char kNullRight[] = R"("right.k":null,"right.ts":null,"right.v":null)";

TEST_P(WindowJoinKindTest, FiresPerKeyAndWindowAtTheWatermark) {
  const std::string kind = GetParam();
  Load("window_join", absl::StrCat("    time: ts\n    tumble: 10ms\n    kind: ", kind, "\n"));
  Open();
  Push(0, 1, 0, "a");
  Push(0, 1, 9, "b");   // the window's last millisecond
  Push(1, 1, 5, "x");
  Push(1, 1, 10, "y");  // the next window
  Push(0, 2, 3, "only-left");
  Push(1, 3, 4, "only-right");
  Watermark(8);
  EXPECT_TRUE(out_.lines.empty()) << "fired before the watermark reached end - 1";
  Watermark(9);
  Push(0, 1, 9, "late");  // its window fired: dropped and counted
  EXPECT_EQ(Late(), 1u);
  Push(0, 1, 10, "c");
  Watermark(19);
  std::vector<std::string> expected = {WRow(L(1, 0, "a"), R(1, 5, "x"), 0),
                                       WRow(L(1, 9, "b"), R(1, 5, "x"), 0),
                                       WRow(L(1, 10, "c"), R(1, 10, "y"), 10)};
  if (kind == "left" || kind == "full") expected.push_back(WRow(L(2, 3, "only-left"), kNullRight, 0));
  if (kind == "right" || kind == "full") expected.push_back(WRow(kNullLeft, R(3, 4, "only-right"), 0));
  EXPECT_THAT(out_.lines, UnorderedElementsAreArray(expected));
  for (int64_t k = 1; k <= 3; ++k) EXPECT_EQ(KeptRows(k, "window_join.rows"), std::make_pair(0u, 0u));
}

INSTANTIATE_TEST_SUITE_P(Kinds, WindowJoinKindTest, ::testing::Values("inner", "left", "right", "full"));

TEST_F(JoinTest, WindowJoinStateSurvivesCheckpointAndRestoreIntoANewBackend) {
  Load("window_join", "    time: ts\n    tumble: 10ms\n    kind: full\n");
  const auto [straight, restored] = RunStraightAndRestored();
  // Full outer per key (i % 3) and 10 ms window: left the even i, right the odd.
  std::map<std::pair<int64_t, int64_t>, std::vector<int64_t>> side[2];
  for (int64_t i = 0; i < 40; ++i) {
    const int64_t ts = 100 + 3 * i;
    side[i % 2][{i % 3, ts - ts % 10}].push_back(i);
  }
  const auto left = [](int64_t i) { return L(i % 3, 100 + 3 * i, absl::StrCat("x", i)); };
  const auto right = [](int64_t i) { return R(i % 3, 100 + 3 * i, absl::StrCat("x", i)); };
  std::vector<std::string> expected;
  for (const auto& [w, ls] : side[0]) {
    auto it = side[1].find(w);
    for (int64_t l : ls) {
      if (it == side[1].end()) expected.push_back(WRow(left(l), kNullRight, w.second));
      if (it == side[1].end()) continue;
      for (int64_t r : it->second) expected.push_back(WRow(left(l), right(r), w.second));
    }
  }
  for (const auto& [w, rs] : side[1]) {
    if (side[0].count(w) == 0) {
      for (int64_t r : rs) expected.push_back(WRow(kNullLeft, right(r), w.second));
    }
  }
  EXPECT_THAT(straight, UnorderedElementsAreArray(expected));
  EXPECT_THAT(restored, UnorderedElementsAreArray(expected));
}

// State of format 1 (before the rows were kept in memory): per input a map state of buckets
// under the window's end - 1 with a timer per key and window, written here by hand as that
// release wrote them. Its timer brings the buckets into memory, where they join the records that
// came after the restore.
TEST_F(JoinTest, WindowJoinRestoresStateOfFormat1) {
  Load("window_join", "    time: ts\n    tumble: 10ms\n    kind: full\n");
  backend_ = NewBackend();
  char buf[8];
  SetKey(1);
  ASSERT_OK(backend_->MapPut(backend_->RegisterState("window_join.left", state::StateKind::kMap),
                             TimeUserKey(9, buf), Format1Bucket({{"", 1, 1, "a"}, {"", 1, 2, "b"}})));
  ASSERT_OK(backend_->MapPut(backend_->RegisterState("window_join.right", state::StateKind::kMap),
                             TimeUserKey(9, buf), Format1Bucket({{"", 1, 3, "x"}})));
  ASSERT_OK(backend_->RegisterTimer(TimeDomain::kEventTime, 9));
  restored_ = true;
  Open();
  restored_ = false;
  Push(1, 1, 8, "y");  // after the restore, in the same window
  Push(0, 1, 12, "c");  // the next window: no right row
  Watermark(9);
  EXPECT_EQ(StateEntries("window_join.left", 1), 0u);  // moved and fired
  EXPECT_EQ(StateEntries("window_join.right", 1), 0u);
  EXPECT_EQ(KeptRows(1, "window_join.rows"), std::make_pair(1u, 0u));
  Watermark(19);
  EXPECT_THAT(out_.lines, UnorderedElementsAreArray({
                              WRow(L(1, 1, "a"), R(1, 3, "x"), 0), WRow(L(1, 2, "b"), R(1, 3, "x"), 0),
                              WRow(L(1, 1, "a"), R(1, 8, "y"), 0), WRow(L(1, 2, "b"), R(1, 8, "y"), 0),
                              WRow(L(1, 12, "c"), kNullRight, 10),
                          }));
  EXPECT_EQ(KeptRows(1, "window_join.rows"), std::make_pair(0u, 0u));
}

// The in-memory windows against a straightforward model (every record listed, each window's
// output computed when the run ends), over random out-of-order records and watermarks, full
// outer with hopping windows: once in memory, and once with a memory budget so small that every
// key is written out and read back again and again, with a checkpoint and restore in between.
TEST_F(JoinTest, WindowJoinMatchesAModelInMemoryAndWhenSpilling) {
  for (const bool spill : {false, true}) {
    SCOPED_TRACE(spill ? "spilling" : "in memory");
    Load("window_join", "    time: ts\n    hop: {size: 20ms, slide: 10ms}\n    kind: full\n");
    StartModelRun(spill);
    // (key, window start) -> each input's kept records (ts, v)
    std::map<std::pair<int64_t, int64_t>, std::vector<std::pair<int64_t, std::string>>> model[2];
    int64_t watermark = 0;
    Watermark(watermark);
    uint64_t late = 0;
    for (int64_t i = 0; i < 600; ++i) {
      if (i == 300) {
        CheckpointAndRestore();
        ASSERT_OK(timers_->AdvanceWatermark(watermark, op_.get()));
      }
      if (Random(5) == 0) {
        watermark += static_cast<int64_t>(Random(15));
        Watermark(watermark);
      }
      const int side = static_cast<int>(Random(2));
      const int64_t k = static_cast<int64_t>(Random(6));
      const int64_t ts = watermark - 25 + static_cast<int64_t>(Random(60));
      const std::string v = absl::StrCat(i, std::string(Random(100), 'p'));
      bool kept = false;
      for (int64_t start : {ts - ((ts % 10) + 10) % 10, ts - ((ts % 10) + 10) % 10 - 10}) {
        if (start + 19 <= watermark) continue;  // that window fired already
        model[side][{k, start}].push_back({ts, v});
        kept = true;
      }
      late += kept ? 0 : 1;
      Push(side, k, ts, v);
    }
    Watermark(INT64_MAX);  // the end of input's
    std::vector<std::string> expected;
    for (const auto& [w, ls] : model[0]) {
      auto it = model[1].find(w);
      for (const auto& [lts, lv] : ls) {
        if (it == model[1].end()) {
          expected.push_back(WRow(L(w.first, lts, lv), kNullRight, w.second));
          continue;
        }
        for (const auto& [rts, rv] : it->second) expected.push_back(WRow(L(w.first, lts, lv), R(w.first, rts, rv), w.second));
      }
    }
    for (const auto& [w, rs] : model[1]) {
      if (model[0].count(w) != 0) continue;
      for (const auto& [rts, rv] : rs) expected.push_back(WRow(kNullLeft, R(w.first, rts, rv), w.second));
    }
    // WRow assumes 10 ms windows: fix window_end for 20 ms ones.
    for (std::string& e : expected) {
      const size_t at = e.find(R"("window_end":)");
      const int64_t start = std::stoll(e.substr(e.find(R"("window_start":)") + 15));
      e = absl::StrCat(e.substr(0, at), R"("window_end":)", start + 20, "}");
    }
    EXPECT_THAT(out_.lines, UnorderedElementsAreArray(expected));
    EXPECT_GT(late, 0u);
    EndModelRun();
  }
}

TEST_F(JoinTest, HoppingWindowJoinJoinsInEveryWindowOfBothRecords) {
  Load("window_join", "    time: ts\n    hop: {size: 10ms, slide: 5ms}\n");
  Open();
  Push(0, 1, 7, "a");   // windows [0, 10) and [5, 15)
  Push(1, 1, 12, "x");  // windows [5, 15) and [10, 20)
  Push(1, 1, 3, "y");   // windows [-5, 5) and [0, 10)
  Watermark(100);
  EXPECT_THAT(out_.lines, UnorderedElementsAreArray({
                              WRow(L(1, 7, "a"), R(1, 3, "y"), 0),
                              absl::StrCat("{", L(1, 7, "a"), ",", R(1, 12, "x"),
                                           R"(,"window_start":5,"window_end":15})"),
                          }));
  EXPECT_EQ(Late(), 0u);
}


// Nulls downstream: an aggregate after an outer join skips null values (count counts rows).
TEST_F(JoinTest, AggregateAfterAnOuterJoinSkipsNulls) {
  auto job = plan::ParseJobSpec(
      absl::StrCat(JoinJob("window_join", "    time: ts\n    tumble: 10ms\n    kind: left\n"),
                   "  - {id: by, type: key_by, input: j, key: [left.k]}\n",
                   "  - id: agg\n    type: aggregate\n",
                   "    aggregates: [{fn: count, as: n}, {fn: sum, field: right.k, as: s}, "
                   "{fn: max, field: right.ts, as: m}, {fn: avg, field: right.k, as: a}]\n",
                   "  - {id: out2, type: blackhole}\n"),
      "job.yaml", registry_.catalog());
  ASSERT_OK(job.status());
  job_ = *std::move(job);
  const plan::OperatorSpec* agg = nullptr;
  for (const auto& op : job_.operators) {
    if (op.id == "agg") agg = &op;
  }
  ASSERT_NE(agg, nullptr);
  backend_ = NewBackend();
  auto op = registry_.Create(*agg);
  ASSERT_OK(op.status());
  OperatorContext ctx;
  ctx.job = &job_;
  ctx.spec = agg;
  ctx.clock = &clock_;
  ctx.max_parallelism = job_.max_parallelism;
  ctx.keyed_state = backend_.get();
  out_.schema = &agg->output_schema;
  ASSERT_OK((*op)->Open(ctx, &out_));
  // (left.k, left.ts, left.v, right.k, right.ts, right.v, window_start, window_end)
  Record r(8);
  r.SetInt(0, 1);
  r.SetInt(3, 5);
  r.SetInt(4, 7);
  ASSERT_OK((*op)->Process(r));
  r.SetNull(3);
  r.SetNull(4);
  r.SetNull(5);
  r.SetInt(3, 1000);  // a stale value under the null: must not count
  r.SetInt(4, 1000);
  ASSERT_OK((*op)->Process(r));
  EXPECT_EQ(out_.lines.back(), R"({"left.k":1,"n":2,"s":5,"m":7,"a":5})");
}

// ---------------------------------------------------------------------------------------------
// Rows of integer inputs kept as values (JoinRowStore::RowLayout)

// A job of two datagen inputs with fields `left` and `right` (YAML lists) and a join `j` of
// `type` with `options`, keyed by `key` (a YAML list's items) on both.
std::string IntJoinJob(const std::string& type, const std::string& options, const std::string& left,
                       const std::string& right, const std::string& key = "k") {
  return absl::StrCat("name: joins\noperators:\n",
                      "  - {id: l, type: datagen, count: 1, fields: ", left, "}\n",
                      "  - {id: r, type: datagen, count: 1, fields: ", right, "}\n",
                      "  - id: j\n    type: ", type, "\n",
                      "    inputs: [{from: l, partition: hash, key: [", key, "]}, {from: r, partition: hash, key: [",
                      key, "]}]\n",
                      options, "  - {id: out, type: blackhole}\n");
}
// (k, ts, v): one value besides the key and the time (kept in the row: kInline).
constexpr char kIntLeft[] =
    R"y([{name: k, type: int64, expr: "seq"}, {name: ts, type: timestamp, expr: "to_timestamp(seq)"}, {name: v, type: int64, expr: "seq"}])y";
// (id, k, ts, a): two values, the key not first (kInts).
constexpr char kIntRight[] =
    R"y([{name: id, type: int64, expr: "seq"}, {name: k, type: int64, expr: "seq"}, {name: ts, type: timestamp, expr: "to_timestamp(seq)"}, {name: a, type: int64, expr: "seq"}])y";
// (k, ts, s): a string (kEncoded).
constexpr char kStringRight[] =
    R"y([{name: k, type: int64, expr: "seq"}, {name: ts, type: timestamp, expr: "to_timestamp(seq)"}, {name: s, type: string, expr: "to_string(seq)"}])y";

// Values of every varint length, negative ones and the int64 range's ends.
int64_t WideValue(int64_t i) {
  switch (i % 6) {
    case 0: return i;
    case 1: return -i * 1000003;
    case 2: return INT64_MAX - i;
    case 3: return INT64_MIN + i;
    case 4: return i << 40;
    default: return -(i << 20);
  }
}

// A record of integer values `values`.
Record IntRecord(std::initializer_list<int64_t> values) {
  Record r(values.size());
  size_t i = 0;
  for (const int64_t v : values) r.SetInt(i++, v);
  return r;
}

// A record of input `side` with key `k` and time `ts`: left (k, ts, v), right (id, k, ts, a)
// or, with `string_right`, (k, ts, s); its other values from `i`.
Record IntSideRecord(int side, bool string_right, int64_t k, int64_t ts, int64_t i) {
  if (side == 0) return IntRecord({k, ts, WideValue(i)});
  if (string_right) {
    Record r(3);
    r.SetInt(0, k);
    r.SetInt(1, ts);
    r.SetString(2, absl::StrCat("s", i));
    return r;
  }
  return IntRecord({WideValue(i + 1), k, ts, WideValue(i + 2)});
}

// A key's rows as JoinRowStore writes them (format 2, no flags): [2] per input [count] per row
// [ts: fixed64 LE][size][record], input `side`'s records `*rows[side]` (schema `*schemas[side]`)
// at their time field `time[side]`'s value.
std::string RowsValue(const std::array<const Schema*, 2>& schemas,
                      const std::array<const std::vector<Record>*, 2>& rows, const std::array<int, 2>& time) {
  std::string v(1, '\x02');
  for (int side = 0; side < 2; ++side) {
    PutVarint64(rows[side]->size(), &v);
    for (const Record& r : *rows[side]) {
      const uint64_t ts = static_cast<uint64_t>(r.GetInt(time[side]));
      for (int b = 0; b < 8; ++b) v.push_back(static_cast<char>(ts >> (8 * b)));
      std::string record;
      EncodeRecord(*schemas[side], r, &record);
      PutVarint64(record.size(), &v);
      v += record;
    }
  }
  return v;
}

// The joined row of `left` and `right` (records of the join's inputs) as JsonOutput writes it:
// the output schema's values are the left input's fields, then the right's.
std::string JoinedLine(const plan::OperatorSpec& spec, const Record& left, const Record& right) {
  const Schema& out = spec.output_schema;
  Record joined(out.size());
  size_t j = 0;
  for (const Record* r : {&left, &right}) {
    for (size_t i = 0; i < r->size(); ++i, ++j) CopyValue(out.field(j).type, *r, i, &joined, j);
  }
  std::string line;
  AppendRecordJson(out, joined, &line);
  return line;
}

// The interval join of integer inputs keeps each left row's one value in the row (kInline)
// and the right rows' two values in the arena (kInts), without the key's and the time's fields,
// which it gives back from the row's key and time; with a string on the right, the right rows
// stay encoded. The joined rows equal a model's (keys and values across the int64 range), in
// memory and spilling on every record, across a checkpoint and restore, record by record and in
// batches.
TEST_F(JoinTest, IntervalJoinOfIntegerInputsKeepsValuesAndMatchesAModel) {
  using Layout = JoinRowStore::RowLayout;
  const int64_t keys[] = {-3, 0, 1, 5, int64_t{1} << 40, -(int64_t{1} << 35)};
  for (const bool string_right : {false, true}) {
    for (const bool spill : {false, true}) {
      SCOPED_TRACE(absl::StrCat(string_right ? "string right" : "integer right", spill ? ", spilling" : ", in memory"));
      LoadYaml(IntJoinJob("interval_join", "    time: ts\n    lower: -7ms\n    upper: 12ms\n", kIntLeft,
                          string_right ? kStringRight : kIntRight));
      StartModelRun(spill);
      const auto layouts = [&] {
        JoinRowStore* store = static_cast<JoinOperatorBase*>(op_.get())->RowStoreForTest();
        EXPECT_EQ(store->layout(0), Layout::kInline);
        EXPECT_EQ(store->layout(1), string_right ? Layout::kEncoded : Layout::kInts);
      };
      layouts();
      std::vector<Record> kept[2];
      std::vector<Record> pending;  // of input pending_side, pushed as one batch
      int pending_side = 0;
      const auto flush = [&] {
        if (!pending.empty()) {
          ASSERT_OK(op_->ProcessBatch(pending_side, pending.data(), pending.size()));
        }
        pending.clear();
      };
      int64_t watermark = 0;
      Watermark(watermark);
      uint64_t late = 0;
      const uint64_t late_counted = late_counter_.Value();
      for (int64_t i = 0; i < 600; ++i) {
        if (i == 300) {
          flush();
          CheckpointAndRestore();
          ASSERT_OK(timers_->AdvanceWatermark(watermark, op_.get()));
          layouts();
        }
        if (Random(5) == 0) {
          flush();
          watermark += static_cast<int64_t>(Random(10));
          Watermark(watermark);
        }
        const int side = static_cast<int>(Random(2));
        const int64_t ts = watermark - 5 + static_cast<int64_t>(Random(40));
        Record r = IntSideRecord(side, string_right, keys[Random(6)], ts, i);
        if (ts < watermark) {
          ++late;
        } else {
          kept[side].push_back(r);
        }
        if (side != pending_side || Random(4) == 0) flush();
        pending_side = side;
        pending.push_back(std::move(r));
      }
      flush();
      Watermark(INT64_MAX);
      const int right_k = string_right ? 0 : 1;
      const int right_ts = string_right ? 1 : 2;
      std::vector<std::string> expected;
      for (const Record& l : kept[0]) {
        for (const Record& r : kept[1]) {
          if (l.GetInt(0) == r.GetInt(right_k) && l.GetInt(1) - 7 <= r.GetInt(right_ts) &&
              r.GetInt(right_ts) <= l.GetInt(1) + 12) {
            expected.push_back(JoinedLine(*spec_, l, r));
          }
        }
      }
      EXPECT_GT(expected.size(), 200u);
      EXPECT_THAT(out_.lines, UnorderedElementsAreArray(expected));
      EXPECT_GT(late, 0u);
      EXPECT_EQ(late_counter_.Value() - late_counted, late);
      for (int64_t k : keys) EXPECT_EQ(KeptRows(k), std::make_pair(0u, 0u));
      EndModelRun();
    }
  }
}

// Stored rows are the record codec's, whatever the layout in memory: a checkpoint written before
// the values layout (a per-key entry and a block of integer records, built here by hand as
// a0ad6e2 wrote them) restores into it, is written back byte for byte the same (a key moved into
// its block, and every key re-encoded into its own entry by a spill), and joins. A stored record
// whose key field is not its row's key (a row the layout could not give back) is kDataLoss.
TEST_F(JoinTest, IntervalJoinRestoresIntegerRowsWrittenBeforeTheValuesLayout) {
  LoadYaml(IntJoinJob("interval_join", "    time: ts\n    lower: 0ms\n    upper: 10ms\n", kIntLeft, kIntRight));
  const Schema& left = job_.operators[0].output_schema;
  const Schema& right = job_.operators[1].output_schema;
  const auto value = [&](const std::vector<Record>& ls, const std::vector<Record>& rs) {
    return RowsValue({&left, &right}, {&ls, &rs}, {1, 2});
  };
  const std::vector<Record> left7 = {IntSideRecord(0, false, 7, 100, 2), IntSideRecord(0, false, 7, 101, 3)};
  const std::vector<Record> right7 = {IntSideRecord(1, false, 7, 100, 4)};
  const std::vector<Record> right9 = {IntSideRecord(1, false, -9, 102, 5), IntSideRecord(1, false, -9, 103, 9)};
  const std::string value7 = value(left7, right7);
  const std::string value9 = value({}, right9);
  backend_ = NewBackend();
  SetKey(7);
  ASSERT_OK(backend_->Put(backend_->RegisterState("interval_join.rows", state::StateKind::kValue), value7));
  const auto [key9, kg9] = SetKey(-9);
  std::string block_key;
  PutBlockKey(kg9, -9 >> kJoinBlockShift, &block_key);
  std::string block(1, static_cast<char>(kJoinBlockFormat));
  PutVarint64(1, &block);
  PutVarint64(key9.size(), &block);
  block += key9;
  PutVarint64(value9.size(), &block);
  block += value9;
  backend_->SetCurrentKey(block_key, kg9);
  ASSERT_OK(backend_->Put(backend_->RegisterState("interval_join.row_blocks", state::StateKind::kValue), block));
  restored_ = true;
  Open();
  restored_ = false;
  JoinRowStore* store = static_cast<JoinOperatorBase*>(op_.get())->RowStoreForTest();
  EXPECT_EQ(store->layout(0), JoinRowStore::RowLayout::kInline);
  EXPECT_EQ(store->layout(1), JoinRowStore::RowLayout::kInts);
  EXPECT_EQ(Stats().keys, 2u);
  std::vector<std::string> entries;
  ASSERT_OK(op_->SnapshotState(2, &entries));  // key 7 moves into its block, written from memory
  std::string stored;
  bool from_block = false;
  ASSERT_TRUE(StoredRows(7, "interval_join.rows", &stored, &from_block));
  EXPECT_TRUE(from_block);
  EXPECT_EQ(stored, value7);
  ASSERT_TRUE(StoredRows(-9, "interval_join.rows", &stored));
  EXPECT_EQ(stored, value9);  // its block, as restored
  ASSERT_OK(store->Spill(nullptr));  // every key written from memory into an entry of its own
  for (const auto& [k, expected] : {std::make_pair(7, value7), std::make_pair(-9, value9)}) {
    ASSERT_TRUE(StoredRows(k, "interval_join.rows", &stored, &from_block));
    EXPECT_FALSE(from_block);
    EXPECT_EQ(stored, expected) << k;
  }
  const Record l9 = IntSideRecord(0, false, -9, 95, 11);
  const Record r7 = IntSideRecord(1, false, 7, 105, 12);
  ASSERT_OK(op_->ProcessInput(0, l9));
  ASSERT_OK(op_->ProcessInput(1, r7));
  EXPECT_THAT(out_.lines, UnorderedElementsAreArray({JoinedLine(*spec_, l9, right9[0]), JoinedLine(*spec_, l9, right9[1]),
                                                     JoinedLine(*spec_, left7[0], r7), JoinedLine(*spec_, left7[1], r7)}));
  op_->Close();

  // Key 7's entry holding a left record of key 8.
  backend_ = NewBackend();
  SetKey(7);
  ASSERT_OK(backend_->Put(backend_->RegisterState("interval_join.rows", state::StateKind::kValue),
                          value({IntSideRecord(0, false, 8, 100, 2)}, {})));
  EXPECT_THAT(OpenRestoredForStatus(),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("has another key than its row")));
}

// Rows kept as values checkpoint as blocks and restore at any parallelism (each subtask gets its
// key groups' rows, as values again) and join as before the checkpoint.
TEST_F(JoinTest, IntervalJoinIntegerRowsRestoreAtAnyParallelism) {
  LoadYaml(IntJoinJob("interval_join", "    time: ts\n    lower: 0ms\n    upper: 10ms\n", kIntLeft, kIntRight));
  std::vector<int64_t> keys;
  for (int64_t i = 0; i < 60; ++i) keys.push_back(i * 997 - 5000);
  for (int64_t i = 0; i < 20; ++i) keys.push_back((int64_t{1} << 40) + i);
  Open();
  std::vector<Record> lefts;
  for (int64_t k : keys) {
    lefts.push_back(IntSideRecord(0, false, k, 100, k));
    if (k % 2 == 0) lefts.push_back(IntSideRecord(0, false, k, 103, k + 1));
  }
  for (const Record& l : lefts) ASSERT_OK(op_->ProcessInput(0, l));
  std::vector<std::string> entries;
  ASSERT_OK(op_->SnapshotState(1, &entries));
  const proto::KeyedStateHandle handle = Snapshot(1);
  op_->Close();
  for (const int parallelism : {1, 2, 3}) {
    SCOPED_TRACE(parallelism);
    std::vector<std::string> rows;
    std::vector<std::string> expected;
    for (int subtask = 0; subtask < parallelism; ++subtask) {
      RestoreSubtask(handle, entries, parallelism, subtask);
      JoinRowStore* store = static_cast<JoinOperatorBase*>(op_.get())->RowStoreForTest();
      EXPECT_EQ(store->layout(0), JoinRowStore::RowLayout::kInline);
      EXPECT_EQ(store->layout(1), JoinRowStore::RowLayout::kInts);
      const KeyGroupRange range = KeyGroupRangeForSubtask(job_.max_parallelism, parallelism, subtask);
      size_t own = 0;
      for (int64_t k : keys) {
        if (!range.Contains(KeyGroupOf(k))) continue;
        ++own;
        const Record r = IntSideRecord(1, false, k, 105, -k);
        ASSERT_OK(op_->ProcessInput(1, r));
        for (const Record& l : lefts) {
          if (l.GetInt(0) == k) expected.push_back(JoinedLine(*spec_, l, r));
        }
      }
      EXPECT_EQ(Stats().keys, own);
      rows.insert(rows.end(), out_.lines.begin(), out_.lines.end());
      op_->Close();
    }
    EXPECT_EQ(expected.size(), 120u);
    EXPECT_THAT(rows, UnorderedElementsAreArray(expected));
  }
  parallelism_ = 1;
  subtask_ = 0;
}

// The join (a store with flags) keeps integer rows as values in the arena (kInts, the time
// field kept: its rows' time is the arrival's): rows join both ways, a left row's matched flag
// survives a restore, and the unmatched one is padded when it expires.
TEST_F(JoinTest, RegularLeftJoinOfIntegerInputsKeepsValuesAndFlags) {
  LoadYaml(IntJoinJob("join", "    kind: left\n    ttl: 100ms\n", kIntLeft, kIntRight));
  Open();
  JoinRowStore* store = static_cast<JoinOperatorBase*>(op_.get())->RowStoreForTest();
  EXPECT_EQ(store->layout(0), JoinRowStore::RowLayout::kInts);
  EXPECT_EQ(store->layout(1), JoinRowStore::RowLayout::kInts);
  const Record matched = IntSideRecord(0, false, 1, 1, 3);
  const Record lonely = IntSideRecord(0, false, -2, 2, 4);
  const Record r1 = IntSideRecord(1, false, 1, 3, 5);
  ASSERT_OK(op_->ProcessInput(0, matched));
  ASSERT_OK(op_->ProcessInput(0, lonely));
  ASSERT_OK(op_->ProcessInput(1, r1));
  CheckpointAndRestore();
  const Record matched2 = IntSideRecord(0, false, 1, 4, 6);
  ASSERT_OK(op_->ProcessInput(0, matched2));  // joins r1, restored
  AdvanceClockMs(100);  // every row expires: lonely is padded
  Record padded(spec_->output_schema.size());
  for (size_t i = 0; i < 3; ++i) padded.SetInt(i, lonely.GetInt(i));
  for (size_t i = 3; i < padded.size(); ++i) padded.SetNull(i);
  std::string padded_line;
  AppendRecordJson(spec_->output_schema, padded, &padded_line);
  EXPECT_THAT(out_.lines, UnorderedElementsAreArray({JoinedLine(*spec_, matched, r1), JoinedLine(*spec_, matched2, r1),
                                                     padded_line}));
}

// window_join keeps integer rows as values too, the key's field left out (not the time field: a
// row's time is its window's firing time), and fires the joined rows of each window across a
// restore.
TEST_F(JoinTest, WindowJoinOfIntegerInputsKeepsValues) {
  LoadYaml(IntJoinJob("window_join", "    time: ts\n    tumble: 10ms\n", kIntLeft, kIntRight));
  Open();
  JoinRowStore* store = static_cast<JoinOperatorBase*>(op_.get())->RowStoreForTest();
  EXPECT_EQ(store->layout(0), JoinRowStore::RowLayout::kInts);  // k omitted: ts and v
  EXPECT_EQ(store->layout(1), JoinRowStore::RowLayout::kInts);
  const Record l = IntSideRecord(0, false, 4, 12, 3);
  const Record r = IntSideRecord(1, false, 4, 15, 4);
  const Record other = IntSideRecord(1, false, 4, 25, 5);
  ASSERT_OK(op_->ProcessInput(0, l));
  ASSERT_OK(op_->ProcessInput(1, r));
  ASSERT_OK(op_->ProcessInput(1, other));
  CheckpointAndRestore();
  Watermark(30);
  Record joined(spec_->output_schema.size());
  size_t j = 0;
  for (const Record* side : {&l, &r}) {
    for (size_t i = 0; i < side->size(); ++i) joined.SetInt(j++, side->GetInt(i));
  }
  joined.SetInt(j++, 10);
  joined.SetInt(j++, 20);
  std::string line;
  AppendRecordJson(spec_->output_schema, joined, &line);
  EXPECT_THAT(out_.lines, UnorderedElementsAreArray({line}));
}


// The budget counts the row lists' heap blocks, whatever the layout: an interval join of
// (k, ts, v) inputs (kInline: no arena bytes) with many rows per key spills once they pass it,
// and joins exactly after the spill; the heap blocks are counted while held and no more once the
// rows drop back inline.
TEST_F(JoinTest, IntervalJoinBudgetCountsTheRowListsOfInlineRows) {
  using Layout = JoinRowStore::RowLayout;
  LoadYaml(IntJoinJob("interval_join", "    time: ts\n    lower: 0ms\n    upper: 100ms\n", kIntLeft, kIntLeft));
  Open();
  JoinRowStore* store = static_cast<JoinOperatorBase*>(op_.get())->RowStoreForTest();
  EXPECT_EQ(store->layout(0), Layout::kInline);
  EXPECT_EQ(store->layout(1), Layout::kInline);
  for (int64_t i = 0; i < 40; ++i) ASSERT_OK(op_->ProcessInput(0, IntSideRecord(0, false, 1, 100 + i, i)));
  EXPECT_EQ(Stats().row_list_bytes, 64 * sizeof(JoinRowStore::Row));  // 8 inline, then 16, 32, 64
  Watermark(235);  // rows before 135 have passed (135 + 100 is the first kept row's cleanup)
  const Record right = IntSideRecord(0, false, 1, 235, 99);
  ASSERT_OK(op_->ProcessInput(1, right));  // drops the key's passed rows: 5 left, inline again
  EXPECT_EQ(KeptRows(1), std::make_pair(5u, 1u));
  EXPECT_EQ(Stats().row_list_bytes, 0u);
  op_->Close();

  backend_ = NewBackend();
  out_.lines.clear();
  OpenWithJoinMemory(4096);
  store = static_cast<JoinOperatorBase*>(op_.get())->RowStoreForTest();
  std::vector<Record> lefts;
  for (int64_t k = 1; k <= 5; ++k) {
    for (int64_t i = 0; i < 40; ++i) {
      lefts.push_back(IntSideRecord(0, false, k, 100 + i, k * 1000 + i));
      ASSERT_OK(op_->ProcessInput(0, lefts.back()));
    }
  }
  EXPECT_TRUE(store->spilled());  // 5 keys of 1 KiB of rows on the heap
  std::vector<std::string> expected;
  for (int64_t k = 1; k <= 5; ++k) {
    const Record r = IntSideRecord(0, false, k, 150, -k);
    ASSERT_OK(op_->ProcessInput(1, r));
    for (const Record& l : lefts) {
      if (l.GetInt(0) == k) expected.push_back(JoinedLine(*spec_, l, r));
    }
  }
  EXPECT_EQ(expected.size(), 200u);
  EXPECT_THAT(out_.lines, UnorderedElementsAreArray(expected));
}

// An interval join of a left input (k, ts, t2) or, `with_value`, (k, ts, t2, v) whose time
// field is `left_time` (ts or t2) and kIntRight, within [0, 10] ms: the job of the tests of a
// changed time field.
std::string TimeFieldJob(bool with_value, const std::string& left_time) {
  const std::string fields = absl::StrCat(
      R"y([{name: k, type: int64, expr: "seq"}, {name: ts, type: timestamp, expr: "to_timestamp(seq)"}, {name: t2, type: timestamp, expr: "to_timestamp(seq)"})y",
      with_value ? R"y(, {name: v, type: int64, expr: "seq"}])y" : "]");
  return IntJoinJob("interval_join",
                    absl::StrCat("    left_time: ", left_time, "\n    right_time: ts\n    lower: 0ms\n    upper: 10ms\n"),
                    fields, kIntRight);
}
// A left record of TimeFieldJob(with_value, ...).
Record TimeFieldLeft(bool with_value, int64_t k, int64_t ts, int64_t t2) {
  return with_value ? IntRecord({k, ts, t2, WideValue(ts + k)}) : IntRecord({k, ts, t2});
}

// A job restored with another time field of an input (left_time: ts -> t2): the restored rows
// stay at their stored times with their fields as stored (as encoded rows always kept them),
// the input's rows falling back to the encoded layout (from kInline, and from kInts: each key's
// first row agrees with t2, so rows are in memory as values when the second one turns the input
// back), and records after the restore are kept at their new time field's.
TEST_F(JoinTest, IntervalJoinRestoresIntegerRowsAfterTheTimeFieldChanged) {
  using Layout = JoinRowStore::RowLayout;
  for (const bool with_value : {false, true}) {
    SCOPED_TRACE(with_value ? "(k, ts, t2, v): kInts" : "(k, ts, t2): kInline");
    const auto job = [&](const std::string& left_time) { return TimeFieldJob(with_value, left_time); };
    const auto left = [&](int64_t k, int64_t ts, int64_t t2) { return TimeFieldLeft(with_value, k, ts, t2); };
    out_.lines.clear();
    LoadYaml(job("ts"));
    backend_ = NewBackend();
    Open();
    JoinRowStore* store = static_cast<JoinOperatorBase*>(op_.get())->RowStoreForTest();
    EXPECT_EQ(store->layout(0), with_value ? Layout::kInts : Layout::kInline);
    std::vector<Record> lefts;
    for (int64_t k = 1; k <= 3; ++k) {
      for (int64_t i = 0; i < 10; ++i) lefts.push_back(left(k, 100 + i, i == 0 ? 100 : 50 + i));  // kept at ts
    }
    for (const Record& l : lefts) ASSERT_OK(op_->ProcessInput(0, l));
    CheckpointAndRestore(job("t2"));
    store = static_cast<JoinOperatorBase*>(op_.get())->RowStoreForTest();
    EXPECT_EQ(store->layout(0), Layout::kEncoded);
    const Record late_left = left(2, 1, 104);  // kept at t2: 104
    ASSERT_OK(op_->ProcessInput(0, late_left));
    std::vector<std::string> expected;
    for (int64_t k = 1; k <= 3; ++k) {
      const Record r = IntSideRecord(1, false, k, 105, k);
      ASSERT_OK(op_->ProcessInput(1, r));
      for (const Record& l : lefts) {
        if (l.GetInt(0) == k && l.GetInt(1) <= 105) expected.push_back(JoinedLine(*spec_, l, r));  // 100..105
      }
      if (k == 2) expected.push_back(JoinedLine(*spec_, late_left, r));
    }
    EXPECT_EQ(expected.size(), 19u);
    EXPECT_THAT(out_.lines, UnorderedElementsAreArray(expected));
    op_->Close();
  }
}

// Every path to the encoded layout (JoinRowStore::ToEncoded, an input's rows turned from values
// back to encoded rows): only a restore reads rows whose time is not their record's value of the
// input's time field (left_time: ts -> t2), from blocks or from per-key entries, with every key
// kept in memory or spilling at every key it reads (so keys read before the change go back to
// the backend as the values' records and are read back after it). After the restore every key
// is read back mid-run by its next record, alone or in a batch, or by its timer (spilled keys)
// at a watermark. The joined rows are exact and in order (a record's matches by time), and so
// are the rows kept after the watermark, then none at the input's end. (Format 1's buckets:
// IntervalJoinRestoresFormat1IntegerRowsAfterTheTimeFieldChanged.)
TEST_F(JoinTest, IntervalJoinRowsTurnedEncodedAtARestoreJoinExactlyOnEveryPath) {
  using Layout = JoinRowStore::RowLayout;
  const ExactSweeps exact;  // kept rows asserted right after the watermark
  for (const bool with_value : {false, true}) {
    for (const bool blocks : {true, false}) {
      for (const bool spill : {false, true}) {
        SCOPED_TRACE(absl::StrCat(with_value ? "kInts" : "kInline", blocks ? ", blocks" : ", per-key entries",
                                  spill ? ", spilling" : ", in memory"));
        const auto job = [&](const std::string& left_time) { return TimeFieldJob(with_value, left_time); };
        const auto left = [&](int64_t k, int64_t ts, int64_t t2) { return TimeFieldLeft(with_value, k, ts, t2); };
        // Per key, the left rows kept, in time order, with their times.
        std::map<int64_t, std::vector<std::pair<int64_t, Record>>> kept;
        const auto keep = [&](int64_t k, int64_t time, const Record& l) {
          auto& rows = kept[k];
          auto at = rows.begin();
          while (at != rows.end() && at->first <= time) ++at;  // after the rows of its time
          rows.emplace(at, time, l);
        };
        out_.lines.clear();
        LoadYaml(job("ts"));
        backend_ = NewBackend();
        SetJoinBlocksForTest(blocks);
        Open();
        EXPECT_EQ(static_cast<JoinOperatorBase*>(op_.get())->RowStoreForTest()->layout(0),
                  with_value ? Layout::kInts : Layout::kInline);
        // Keys 1..12 at times 100 + 3 i + k % 3: every row of keys 4 and 8 but the first has
        // t2 = ts - 50, the other keys' rows agree with t2; keys 4 and 5 keep 10 rows (more than
        // a row list holds inline), the others 3.
        for (int64_t k = 1; k <= 12; ++k) {
          for (int64_t i = 0; i < (k == 4 || k == 5 ? 10 : 3); ++i) {
            const int64_t ts = 100 + 3 * i + k % 3;
            const Record l = left(k, ts, k % 4 == 0 && i > 0 ? ts - 50 : ts);
            ASSERT_OK(op_->ProcessInput(0, l));
            keep(k, ts, l);
          }
        }
        SetJoinMemoryForTest(spill ? 1 : 0);  // a spill at every key read
        CheckpointAndRestore(job("t2"));
        SetJoinMemoryForTest(0);
        SetJoinBlocksForTest(true);
        JoinRowStore* store = static_cast<JoinOperatorBase*>(op_.get())->RowStoreForTest();
        EXPECT_EQ(store->layout(0), Layout::kEncoded);
        EXPECT_EQ(store->layout(1), Layout::kInts);
        EXPECT_EQ(store->spilled(), spill);
        EXPECT_EQ(Stats().keys, spill ? 0u : 12u);
        if (spill && !blocks) {
          // The restore read a key whose rows agree with t2 first (kept as values, then spilled).
          std::string first;
          ASSERT_OK(backend_->ForEachKey(backend_->RegisterState("interval_join.rows", state::StateKind::kValue),
                                         [&](absl::string_view key) {
                                           if (first.empty()) first.assign(key.data(), key.size());
                                           return absl::OkStatus();
                                         }));
          for (int64_t k : {4, 8}) EXPECT_NE(first, SetKey(k).first);
        }
        // Kept at its t2 (104), before key 2's row of ts 105.
        const Record new_left = left(2, 1, 104);
        ASSERT_OK(op_->ProcessInput(0, new_left));
        keep(2, 104, new_left);
        std::vector<std::string> expected;
        const auto joined = [&](const Record& r) {
          const int64_t ts = r.GetInt(2);
          for (const auto& [time, l] : kept[r.GetInt(1)]) {
            if (ts - 10 <= time && time <= ts) expected.push_back(JoinedLine(*spec_, l, r));
          }
        };
        // Keys 1..6 alone, 7..12 in a batch, each right record at 108 (left rows 98..108).
        std::vector<Record> batch;
        for (int64_t k = 1; k <= 12; ++k) {
          Record r = IntSideRecord(1, false, k, 108, k);
          joined(r);
          if (k <= 6) {
            ASSERT_OK(op_->ProcessInput(1, r));
          } else {
            batch.push_back(std::move(r));
          }
        }
        ASSERT_OK(op_->ProcessBatch(1, batch.data(), batch.size()));
        // Left rows up to 101 (cleanup + 11) and the right rows (cleanup 109) go.
        Watermark(112);
        for (auto& [k, rows] : kept) {
          rows.erase(std::remove_if(rows.begin(), rows.end(), [](const auto& row) { return row.first <= 101; }),
                     rows.end());
          EXPECT_EQ(KeptRows(k), std::make_pair(static_cast<uint32_t>(rows.size()), 0u)) << k;
        }
        for (const int64_t ts : {115, 130}) {  // left rows 105..115, then 120..130 (keys 4 and 5's
                                                 // last three: beyond the inline ones)
          batch.clear();
          for (int64_t k = 1; k <= 12; ++k) {
            batch.push_back(IntSideRecord(1, false, k, ts, ts + k));
            joined(batch.back());
          }
          ASSERT_OK(op_->ProcessBatch(1, batch.data(), batch.size()));
        }
        EXPECT_GT(expected.size(), 40u);
        EXPECT_THAT(out_.lines, ::testing::ElementsAreArray(expected));
        Watermark(INT64_MAX);
        for (int64_t k = 1; k <= 12; ++k) EXPECT_EQ(KeptRows(k), std::make_pair(0u, 0u)) << k;
        op_->Close();
      }
    }
  }
}

// Format 1's buckets of integer rows (RestoreBuckets) after the time field changed (left_time:
// ts -> t2): a row stays at its bucket's time, here 100, though its t2 says 97 (a right record
// at 99 does not match it, one at 105 does), the input's rows turning encoded midway through
// the key's bucket; in memory, and spilling at every key read (the records then read their
// keys back).
TEST_F(JoinTest, IntervalJoinRestoresFormat1IntegerRowsAfterTheTimeFieldChanged) {
  LoadYaml(TimeFieldJob(/*with_value=*/false, "t2"));
  const Schema& left_schema = job_.operators[0].output_schema;
  const std::vector<Record> lefts = {IntRecord({1, 100, 100}), IntRecord({1, 100, 97}), IntRecord({2, 100, 100})};
  for (const bool spill : {false, true}) {
    SCOPED_TRACE(spill ? "spilling" : "in memory");
    out_.lines.clear();
    backend_ = NewBackend();
    char buf[8];
    const std::string index = absl::StrCat(std::string(1, '\x01'), TimeUserKey(100, buf));
    for (const int64_t k : {1, 2}) {
      std::string bucket(1, '\x01');
      for (const Record& l : lefts) {
        if (l.GetInt(0) == k) EncodeRecord(left_schema, l, &bucket);
      }
      SetKey(k);
      ASSERT_OK(backend_->MapPut(backend_->RegisterState("interval_join.left", state::StateKind::kMap),
                                 TimeUserKey(100, buf), bucket));
      ASSERT_OK(backend_->Put(backend_->RegisterState("interval_join.left.index", state::StateKind::kValue), index));
    }
    restored_ = true;
    OpenWithJoinMemory(spill ? 1 : 0);
    restored_ = false;
    JoinRowStore* store = static_cast<JoinOperatorBase*>(op_.get())->RowStoreForTest();
    EXPECT_EQ(store->layout(0), JoinRowStore::RowLayout::kEncoded);
    EXPECT_EQ(store->spilled(), spill);
    EXPECT_EQ(StateEntries("interval_join.left", 1), 0u);  // moved to format 2
    const Record r99 = IntSideRecord(1, false, 1, 99, 1);
    const Record r105 = IntSideRecord(1, false, 1, 105, 2);
    const Record r2 = IntSideRecord(1, false, 2, 110, 3);
    for (const Record& r : {r99, r105, r2}) ASSERT_OK(op_->ProcessInput(1, r));
    EXPECT_THAT(out_.lines, ::testing::ElementsAre(JoinedLine(*spec_, lefts[0], r105),
                                                   JoinedLine(*spec_, lefts[1], r105), JoinedLine(*spec_, lefts[2], r2)));
    EXPECT_EQ(KeptRows(1), std::make_pair(2u, 2u));
    op_->Close();
  }
}

// Interval joins of integer rows whose layout leaves out other fields than a bare key field and
// the time field: the left records, a checkpoint and restore, then the right records.
class IntegerRowsJoinTest : public JoinTest {
 protected:
  using Layout = JoinRowStore::RowLayout;
  // Pushes `lefts`, checkpoints and restores, pushes `rights`; expects input layouts `layouts`
  // before and after, and the joined rows of every left and right record of the same key
  // (`key_of(side, record)`) whose times (fields `time[side]`) are within [0, 10] ms.
  void JoinAcrossARestore(const std::vector<Record>& lefts, const std::vector<Record>& rights,
                          std::pair<Layout, Layout> layouts, const int (&time)[2],
                          const std::function<std::vector<int64_t>(int, const Record&)>& key_of) {
    const auto check_layouts = [&] {
      JoinRowStore* store = static_cast<JoinOperatorBase*>(op_.get())->RowStoreForTest();
      EXPECT_EQ(store->layout(0), layouts.first);
      EXPECT_EQ(store->layout(1), layouts.second);
    };
    Open();
    check_layouts();
    for (const Record& l : lefts) ASSERT_OK(op_->ProcessInput(0, l));
    CheckpointAndRestore();
    check_layouts();
    std::vector<std::string> expected;
    for (const Record& r : rights) {
      ASSERT_OK(op_->ProcessInput(1, r));
      for (const Record& l : lefts) {
        const int64_t d = r.GetInt(time[1]) - l.GetInt(time[0]);
        if (key_of(0, l) == key_of(1, r) && d >= 0 && d <= 10) expected.push_back(JoinedLine(*spec_, l, r));
      }
    }
    EXPECT_GT(expected.size(), 10u);
    EXPECT_THAT(out_.lines, UnorderedElementsAreArray(expected));
  }
};

// Keyed by the time field: the key's value gives it back (the left keeps k and v, the right
// id, k and a).
TEST_F(IntegerRowsJoinTest, TimeFieldThatIsTheKeyField) {
  LoadYaml(IntJoinJob("interval_join", "    time: ts\n    lower: 0ms\n    upper: 10ms\n", kIntLeft, kIntRight, "ts"));
  std::vector<Record> lefts;
  std::vector<Record> rights;
  for (int64_t i = 0; i < 12; ++i) {
    lefts.push_back(IntSideRecord(0, false, i % 3, 100 + i % 4, i));
    rights.push_back(IntSideRecord(1, false, -i, 100 + i % 5, i + 7));
  }
  JoinAcrossARestore(lefts, rights, {Layout::kInts, Layout::kInts}, {1, 2},
                     [](int side, const Record& r) { return std::vector<int64_t>{r.GetInt(side == 0 ? 1 : 2)}; });
}

// A key that is not a bare field (`k + 0`): its field is kept (the left keeps k and v).
TEST_F(IntegerRowsJoinTest, KeyThatIsNotABareField) {
  LoadYaml(IntJoinJob("interval_join", "    time: ts\n    lower: 0ms\n    upper: 10ms\n", kIntLeft, kIntRight,
                      "\"k + 0\""));
  std::vector<Record> lefts;
  std::vector<Record> rights;
  for (int64_t i = 0; i < 12; ++i) {
    lefts.push_back(IntSideRecord(0, false, (i % 3) << 40, 100 + i % 4, i));
    rights.push_back(IntSideRecord(1, false, (i % 4) << 40, 103 + i % 5, i + 7));
  }
  JoinAcrossARestore(lefts, rights, {Layout::kInts, Layout::kInts}, {1, 2},
                     [](int side, const Record& r) { return std::vector<int64_t>{r.GetInt(side == 0 ? 0 : 1)}; });
}

// A key of two fields (k, v): no field is left out but the time's.
TEST_F(IntegerRowsJoinTest, KeyOfSeveralFields) {
  LoadYaml(IntJoinJob("interval_join", "    time: ts\n    lower: 0ms\n    upper: 10ms\n", kIntLeft, kIntLeft, "k, v"));
  const auto record = [](int64_t k, int64_t ts, int64_t v) { return IntRecord({k, ts, v}); };
  std::vector<Record> lefts;
  std::vector<Record> rights;
  for (int64_t i = 0; i < 12; ++i) {
    lefts.push_back(record(i % 2, 100 + i % 4, WideValue(i % 3)));
    rights.push_back(record(i % 3, 104 + i % 5, WideValue(i % 2)));
  }
  JoinAcrossARestore(lefts, rights, {Layout::kInts, Layout::kInts}, {1, 1},
                     [](int, const Record& r) { return std::vector<int64_t>{r.GetInt(0), r.GetInt(2)}; });
}

// A left input of 14 fields besides (k, ts) whose values take 10 bytes each: a row's record is
// 140 bytes stored, its size two bytes (EncodeRows moves the record up after it), written as the
// record codec writes it, and restored and joined.
TEST_F(IntegerRowsJoinTest, RowsOfRecordsOfTwoSizeBytes) {
  std::string fields = R"y([{name: k, type: int64, expr: "seq"}, {name: ts, type: timestamp, expr: "to_timestamp(seq)"})y";
  for (int f = 0; f < 14; ++f) absl::StrAppend(&fields, ", {name: f", f, ", type: int64, expr: \"seq\"}");
  fields += "]";
  LoadYaml(IntJoinJob("interval_join", "    time: ts\n    lower: 0ms\n    upper: 10ms\n", fields, kIntRight));
  const Schema& left_schema = job_.operators[0].output_schema;
  std::vector<Record> lefts;
  for (int64_t i = 0; i < 6; ++i) {
    Record l(16);
    l.SetInt(0, i % 2);
    l.SetInt(1, 100 + i);
    for (int f = 0; f < 14; ++f) l.SetInt(2 + f, f % 2 == 0 ? INT64_MIN + i + f : INT64_MAX - i - f);
    lefts.push_back(std::move(l));
  }
  std::vector<Record> rights;
  for (int64_t i = 0; i < 6; ++i) rights.push_back(IntSideRecord(1, false, i % 2, 104 + i, i));
  JoinAcrossARestore(lefts, rights, {Layout::kInts, Layout::kInts}, {1, 2},
                     [](int side, const Record& r) { return std::vector<int64_t>{r.GetInt(side == 0 ? 0 : 1)}; });
  // Key 0's rows as stored: its three left rows and its right ones.
  std::string record;
  EncodeRecord(left_schema, lefts[0], &record);
  EXPECT_GE(record.size(), 128u);  // two size bytes
  const std::vector<Record> kept[2] = {{lefts[0], lefts[2], lefts[4]}, {rights[0], rights[2], rights[4]}};
  const std::string expected =
      RowsValue({&left_schema, &job_.operators[1].output_schema}, {&kept[0], &kept[1]}, {1, 2});
  std::vector<std::string> entries;
  ASSERT_OK(op_->SnapshotState(2, &entries));
  std::string stored;
  ASSERT_TRUE(StoredRows(0, "interval_join.rows", &stored));
  EXPECT_EQ(stored, expected);
}

}  // namespace
}  // namespace sluice::ops
