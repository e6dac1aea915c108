#include <algorithm>
#include <string>
#include <vector>

#include "common/status.h"
#include "common/watermark.h"
#include "operators/internal/builtins.h"
#include "operators/join_base.h"
#include "operators/join_options.h"
#include "operators/join_rows.h"
#include "operators/window_assigner.h"

namespace sluice::ops {
namespace {

// window_join (Flink's DataStream window join, plus outer kinds as a coGroup would give them):
// both inputs are assigned to the same tumbling or hopping event-time windows
// (window_assigner.h); per key and window, each input's records are kept. When the watermark
// reaches the window's end - 1, its rows are emitted and dropped:
//   inner: every (left, right) pair; left: also each left row padded with nulls when the window
//   has no right row; right: the mirror; full: both. The output's event time is end - 1; it
//   ends with window_start and window_end.
// A record none of whose windows is still open (end - 1 <= watermark, as Flink) is dropped and
// counted as late; one that is late for some of its hopping windows only joins the open ones.
//
// Kept records live in memory (a JoinRowStore, join_rows.h), per key and input sorted by their
// window's end - 1 (a record once per window it is in), with one pending firing time per key
// in the store's min-heap that ProcessWatermark pops (no timer and no state access per record).
// SnapshotState() writes the keys changed since the last checkpoint (value state
// "window_join.rows", format 2 without flags); beyond the store's budget every key leaves
// memory with an event-time timer at its next firing and is read back when a record of it
// comes or the timer fires. Format 1 (map states "window_join.left"/".right" of buckets under
// end - 1, with a timer per key and window) is moved into memory when its timer fires. The
// watermark seen at a checkpoint is union operator state, as for interval_join.
class WindowJoinOperator final : public JoinOperatorBase {
 public:
  absl::Status Open(const OperatorContext& ctx, Output* output) override {
    SLUICE_ASSIGN_OR_RETURN(options_, TypedOptions<WindowJoinOptions>(ctx));
    SLUICE_RETURN_IF_ERROR(OpenJoin(ctx, output, options_->sides));
    store_.Init(this, state_->RegisterState("window_join.rows", state::StateKind::kValue),
                state_->RegisterState("window_join.row_blocks", state::StateKind::kValue),
                "window join rows", /*flags=*/false);
    window_start_ = options_->sides.output.size() - 2;
    SLUICE_RETURN_IF_ERROR(RestoreWatermark(ctx));
    if (!ctx.restored) return absl::OkStatus();
    restored_ = true;
    format1_[0] = state_->RegisterState("window_join.left", state::StateKind::kMap);
    format1_[1] = state_->RegisterState("window_join.right", state::StateKind::kMap);
    return store_.LoadAll([this](uint32_t slot) {
      ScheduleNext(slot);
      return store_.OverBudget() ? Spill() : absl::OkStatus();
    });
  }

  JoinRowStore* RowStoreForTest() override { return &store_; }

  absl::Status SnapshotState(int64_t checkpoint_id, std::vector<std::string>* entries) override {
    SnapshotWatermark(entries);
    return store_.WriteDirty();
  }
  bool UnionState() const override { return true; }

  absl::Status ProcessInput(int side, const Record& r) override {
    if (side != 0 && side != 1) return absl::InvalidArgumentError("window_join has two inputs");
    AssignWindows(options_->window, TimeOf(side, r), &windows_);
    const int64_t watermark = Watermark();
    bool kept = false;
    uint32_t slot = 0;
    for (const TimeWindow& w : windows_) {
      const int64_t fire_at = w.max_timestamp();
      if (watermark != kNoWatermark && fire_at <= watermark) continue;  // fired already
      if (!kept) {
        EvalKey(side, r);
        SLUICE_ASSIGN_OR_RETURN(slot, store_.SlotOfEvaluated([this](uint32_t s) { ScheduleNext(s); }));
        kept = true;
      }
      SLUICE_RETURN_IF_ERROR(store_.Append(slot, side, fire_at, false, options_->sides.input[side], r));
      store_.ScheduleEarlier(slot, fire_at);
    }
    if (!kept) {
      CountLate();
      return absl::OkStatus();
    }
    return store_.OverBudget() ? Spill() : absl::OkStatus();
  }

  // Fires the windows the watermark has reached, key by key (before the watermark goes on).
  absl::Status ProcessWatermark(int64_t watermark) override {
    SLUICE_RETURN_IF_ERROR(store_.PopDue(watermark, [&](uint32_t slot) { return Fire(slot, watermark); }));
    return output_->EmitWatermark(watermark);
  }

  // A spilled key's timer (at its next firing), or a timer of format 1 (per key and window):
  // the key's rows, and the format-1 buckets of that window, come into memory, where
  // ProcessWatermark (which follows the timers) fires them.
  absl::Status OnTimer(int64_t timestamp, TimeDomain domain, absl::string_view key) override {
    if (domain != TimeDomain::kEventTime) return absl::OkStatus();
    uint32_t slot;
    const uint32_t* found = store_.Find(key);
    if (found != nullptr) {
      slot = *found;
    } else if (store_.spilled()) {
      SLUICE_ASSIGN_OR_RETURN(bool stored, store_.LoadCurrent(key, &slot));
      if (stored) {
        ScheduleNext(slot);
        found = &slot;
      }
    }
    if (!restored_) return absl::OkStatus();
    key_.assign(key.data(), key.size());  // `key` is the current key: the calls below keep it
    char buf[8];
    const absl::string_view user_key = TimeUserKey(timestamp, buf);
    for (int side = 0; side < 2; ++side) {
      SLUICE_ASSIGN_OR_RETURN(bool bucket, state_->MapGet(format1_[side], user_key, &bucket_));
      if (!bucket) continue;
      if (found == nullptr) {
        SLUICE_ASSIGN_OR_RETURN(int key_group, KeyGroupOf(key_));
        SLUICE_ASSIGN_OR_RETURN(slot, store_.Load(key_, key_group));  // not stored: a new key
        found = &slot;
        state_->SetCurrentKey(key_, key_group);
      }
      size_t n = 0;
      SLUICE_RETURN_IF_ERROR(DecodeBucket(side, bucket_, &rows_[side], &n));
      for (size_t i = 0; i < n; ++i) {
        SLUICE_RETURN_IF_ERROR(
            store_.Append(slot, side, timestamp, false, options_->sides.input[side], rows_[side][i]));
      }
      store_.ScheduleEarlier(slot, timestamp);
      SLUICE_RETURN_IF_ERROR(state_->MapRemove(format1_[side], user_key));
    }
    return absl::OkStatus();
  }

 private:
  // The end - 1 of key `k`'s first window (kNever without rows).
  static int64_t NextFiring(const JoinRowStore::Key& k) {
    int64_t t = JoinRowStore::kNever;
    for (const JoinRowStore::Rows& rows : k.rows) {
      if (!rows.empty()) t = std::min(t, rows.front().ts);
    }
    return t;
  }
  void ScheduleNext(uint32_t slot) {
    const int64_t next = NextFiring(store_.key(slot));
    if (next != JoinRowStore::kNever) store_.ScheduleEarlier(slot, next);
  }

  // Fires key `slot`'s windows whose end - 1 is <= `watermark`, in time order.
  absl::Status Fire(uint32_t slot, int64_t watermark) {
    const JoinSides& s = options_->sides;
    for (;;) {
      const JoinRowStore::Key& k = store_.key(slot);
      const int64_t at = NextFiring(k);
      if (at == JoinRowStore::kNever || at > watermark) break;  // also the end of input's watermark
      size_t n[2] = {0, 0};
      for (int side = 0; side < 2; ++side) {
        const JoinRowStore::Rows& rows = k.rows[side];
        while (n[side] < rows.size() && rows[n[side]].ts == at) ++n[side];
        if (rows_[side].size() < n[side]) rows_[side].resize(n[side]);
        for (size_t i = 0; i < n[side]; ++i) {
          SLUICE_RETURN_IF_ERROR(store_.DecodeRow(side, k, rows[i], &rows_[side][i]));
        }
      }
      out_.SetInt(window_start_, at + 1 - options_->window.size_ms);
      out_.SetInt(window_start_ + 1, at + 1);
      for (size_t i = 0; i < n[0]; ++i) {
        for (size_t j = 0; j < n[1]; ++j) SLUICE_RETURN_IF_ERROR(EmitJoined(&rows_[0][i], &rows_[1][j]));
      }
      if (n[1] == 0 && s.pads(1)) {
        for (size_t i = 0; i < n[0]; ++i) SLUICE_RETURN_IF_ERROR(EmitJoined(&rows_[0][i], nullptr));
      }
      if (n[0] == 0 && s.pads(0)) {
        for (size_t j = 0; j < n[1]; ++j) SLUICE_RETURN_IF_ERROR(EmitJoined(nullptr, &rows_[1][j]));
      }
      store_.DropFront(slot, 0, n[0]);
      store_.DropFront(slot, 1, n[1]);
    }
    SLUICE_ASSIGN_OR_RETURN(bool kept, store_.Release(slot));
    if (kept) ScheduleNext(slot);
    return absl::OkStatus();
  }

  // Over budget: every key leaves memory, with a timer at its next firing (OnTimer).
  absl::Status Spill() {
    return store_.Spill([this](const JoinRowStore::Key& k) {
      return k.empty() ? absl::OkStatus() : timers_->RegisterEventTimeTimer(NextFiring(k));
    });
  }

  const WindowJoinOptions* options_ = nullptr;
  JoinRowStore store_;
  size_t window_start_ = 0;  // output index of window_start (window_end follows)
  bool restored_ = false;    // format-1 buckets may be in the backend
  state::StateId format1_[2] = {0, 0};
  std::vector<TimeWindow> windows_;
  std::vector<Record> rows_[2];  // a window's decoded records of each input
  std::string bucket_;
  std::string key_;
};

}  // namespace

std::unique_ptr<Operator> MakeWindowJoin() { return std::make_unique<WindowJoinOperator>(); }

}  // namespace sluice::ops
