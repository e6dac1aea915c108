#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "common/watermark.h"
#include "operators/internal/builtins.h"
#include "operators/join_base.h"
#include "operators/join_options.h"
#include "operators/join_rows.h"

namespace sluice::ops {
namespace {

int64_t sweep_slack_for_test = -1;

// interval_join (Flink's IntervalJoinOperator): per key, each input's records are kept; a
// record joins the other side's records whose time lies in its interval
// (left.ts + lower <= right.ts <= left.ts + upper), and is then kept until the watermark passes
// the last time a record of the other side could still match it:
//   a left record at t:  until the watermark exceeds t + upper  (cleanup time t + upper + 1);
//   a right record at t: until the watermark exceeds t - lower  (cleanup time t - lower + 1).
// A record with ts < watermark is late: dropped and counted, as Flink. Joined rows are emitted
// as the second record of a pair arrives; their event time is max(left.ts, right.ts), never
// behind the watermark they are emitted under. With `unique: left|right` (join_options.h) a
// record of the other input is kept only while its key's unique record has not come.
// Otherwise the join keeps what Flink's keeps: every record until its cleanup time.
//
// Kept records live in memory (a JoinRowStore, join_rows.h: per key and side encoded records
// sorted by event time), with one pending cleanup time per key in a min-heap: the watermark
// (ProcessWatermark, which runs where the event-time timers of the key would) drops the records
// it passes, so no timer and no state access per record. SnapshotState() writes the keys changed
// since the last checkpoint to the keyed backend (value state "interval_join.rows", format 2 of
// join_rows.h without flags); a restore loads its key groups' keys back (and converts format 1:
// map states "interval_join.left"/".right" with their ".index" value states). When the kept keys
// and records exceed the store's budget, every key is dropped from memory with an event-time
// timer in the backend at its earliest cleanup time (memory stays bounded); such a key is read
// back when a record of it comes or its timer fires. The watermark seen at a checkpoint is
// union operator state (JoinOperatorBase::Watermark: the smallest at a restore), so records
// replayed before the first new watermark are judged late as before the failure.
//
// Threading: the task thread only.
class IntervalJoinOperator final : public JoinOperatorBase {
 public:
  absl::Status Open(const OperatorContext& ctx, Output* output) override {
    SLUICE_ASSIGN_OR_RETURN(options_, TypedOptions<IntervalJoinOptions>(ctx));
    sweep_slack_ms_ = sweep_slack_for_test >= 0 ? sweep_slack_for_test : kIntervalJoinSweepSlackMs;
    SLUICE_RETURN_IF_ERROR(OpenJoin(ctx, output, options_->sides));
    store_.Init(this, state_->RegisterState("interval_join.rows", state::StateKind::kValue),
                state_->RegisterState("interval_join.row_blocks", state::StateKind::kValue),
                "interval join rows", /*flags=*/false,
                {options_->sides.time_field[0], options_->sides.time_field[1]});
    for (int side = 0; side < 2; ++side) scratch_[side].Resize(options_->sides.input[side].size());
    SLUICE_RETURN_IF_ERROR(RestoreWatermark(ctx));
    if (!ctx.restored) return absl::OkStatus();
    const auto loaded = [this](uint32_t slot) {
      ScheduleEarliest(slot);
      return store_.OverBudget() ? Spill() : absl::OkStatus();
    };
    SLUICE_RETURN_IF_ERROR(store_.LoadAll(loaded));
    return store_.RestoreBuckets({"interval_join.left", "interval_join.right"}, /*flag_prefix=*/false,
                                 loaded);
  }

  JoinRowStore* RowStoreForTest() override { return &store_; }

  absl::Status SnapshotState(int64_t checkpoint_id, std::vector<std::string>* entries) override {
    SnapshotWatermark(entries);
    return store_.WriteDirty();
  }
  bool UnionState() const override { return true; }

  absl::Status ProcessInput(int side, const Record& r) override {
    if (side != 0 && side != 1) return absl::InvalidArgumentError("interval_join has two inputs");
    return Join(side, r, JoinRowStore::kNoSlot);
  }

  // A batch: the keys' state prefetched (JoinRowStore::JoinBatch), the same rows out as per
  // record.
  bool PrefersBatches() const override { return true; }
  absl::Status ProcessBatch(int side, const Record* records, size_t count) override {
    if (side != 0 && side != 1) return absl::InvalidArgumentError("interval_join has two inputs");
    return store_.JoinBatch(side, records, count,
                            [&](const Record& r, uint32_t slot) { return Join(side, r, slot); });
  }

  // Joins record `r` of input `side` with the other input's kept records and keeps it. `known`:
  // its key's slot when the caller found it, else JoinRowStore::kNoSlot (the key is evaluated
  // and found or loaded here).
  absl::Status Join(int side, const Record& r, uint32_t known) {
    const int64_t ts = TimeOf(side, r);
    const int64_t watermark = Watermark();
    if (watermark != kNoWatermark && ts < watermark) {
      CountLate();
      return absl::OkStatus();
    }
    uint32_t slot = known;
    if (slot == JoinRowStore::kNoSlot) {
      EvalKey(side, r);
      SLUICE_ASSIGN_OR_RETURN(slot, store_.SlotOfEvaluated([this](uint32_t s) { ScheduleEarliest(s); }));
    }
    // Records the watermark has passed can match no record that is not late: dropped here,
    // where the key's rows are at hand, rather than by a sweep of their own.
    if (watermark != kNoWatermark) DropExpired(slot, watermark);
    JoinRowStore::Key& ks = store_.key(slot);
    const int unique = options_->unique;
    if (side == unique && !ks.rows[side].empty()) return UniqueViolated(side, r);
    // The other side's times that match: right in [ts + lower, ts + upper] for a left record,
    // left in [ts - upper, ts - lower] for a right one.
    const int other = 1 - side;
    const int64_t lo = side == 0 ? SaturatingAdd(ts, options_->lower_ms) : SaturatingAdd(ts, -options_->upper_ms);
    const int64_t hi = side == 0 ? SaturatingAdd(ts, options_->upper_ms) : SaturatingAdd(ts, -options_->lower_ms);
    const JoinRowStore::Rows& o = ks.rows[other];
    // [first, end): the matches, found from the back (they are among the newest rows).
    const size_t end =
        hi == INT64_MAX ? o.size() : JoinRowStore::FirstAtOrAfter(o, o.size(), hi + 1);
    const size_t first = JoinRowStore::FirstAtOrAfter(o, end, lo);
    if (first != end) {
      // `r`'s part of the output row once, then each match's (an interval join pads no row, so
      // the output's null bits stay clear); integer rows straight from the store.
      FillSide(side, &r);
      const bool ints =
          store_.layout(other) != JoinRowStore::RowLayout::kEncoded && FillsIntsDirectly(other);
      for (auto row = o.begin() + first; row != o.begin() + end; ++row) {
        if (ints) {
          store_.FillIntRow(other, ks, *row, &out_, OutputOffset(other));
        } else {
          SLUICE_RETURN_IF_ERROR(store_.DecodeRow(other, ks, *row, &scratch_[other]));
          FillSide(other, &scratch_[other]);
        }
        SLUICE_RETURN_IF_ERROR(output_->Emit(out_));
      }
    }
    if (unique >= 0) {
      // The key's one unique record is the only one that could ever match the other side's.
      if (side == unique) {
        store_.DropFront(slot, other, o.size());
      } else if (!ks.rows[unique].empty()) {
        return absl::OkStatus();  // joined it: nothing else can match `r`
      }
    }
    SLUICE_RETURN_IF_ERROR(store_.Append(slot, side, ts, false, options_->sides.input[side], r));
    store_.ScheduleEarlier(slot, SweepTime(CleanupTime(side, ts)));
    if (store_.OverBudget()) return Spill();
    return absl::OkStatus();
  }

  // Drops the records the watermark has passed (where their keys' event-time timers would fire,
  // before the watermark goes on).
  absl::Status ProcessWatermark(int64_t watermark) override {
    if (watermark == kMaxWatermark && store_.blocks()) {
      // The input's end: every row's cleanup time is passed, and the sweep would free every key
      // one by one (popping each from the heap); the store drops them all at once instead.
      SLUICE_RETURN_IF_ERROR(store_.DropAll());
      return output_->EmitWatermark(watermark);
    }
    // The sweep schedules a key again only after `watermark` (its records' cleanup times grow
    // with their times), so its keys can be taken a batch at a time with their rows prefetched.
    SLUICE_RETURN_IF_ERROR(
        store_.PopDueAhead(watermark, [&](uint32_t slot) { return Sweep(slot, watermark); }));
    return output_->EmitWatermark(watermark);
  }

  // A spilled key's timer (at its earliest cleanup time): the key is read back into memory, so
  // that the sweep after the timers (ProcessWatermark) drops its records. Keys in memory, and
  // the timers per record of format 1, have nothing to do here.
  absl::Status OnTimer(int64_t, TimeDomain domain, absl::string_view key) override {
    if (domain != TimeDomain::kEventTime || !store_.spilled() || store_.Find(key) != nullptr) {
      return absl::OkStatus();
    }
    uint32_t slot;
    SLUICE_ASSIGN_OR_RETURN(bool found, store_.LoadCurrent(key, &slot));
    // Swept at once (without the slack): its timer fired because records are due.
    if (found) store_.ScheduleEarlier(slot, EarliestCleanup(store_.key(slot)));  // else emptied and deleted since
    return absl::OkStatus();
  }

 private:
  int64_t CleanupTime(int side, int64_t ts) const {
    return SaturatingAdd(side == 0 ? SaturatingAdd(ts, options_->upper_ms)
                                   : SaturatingAdd(ts, -options_->lower_ms),
                         1);
  }
  int64_t EarliestCleanup(const JoinRowStore::Key& ks) const {
    int64_t t = JoinRowStore::kNever;
    for (int side = 0; side < 2; ++side) {
      if (!ks.rows[side].empty()) t = std::min(t, CleanupTime(side, ks.rows[side].front().ts));
    }
    return t;
  }

  // When a key is swept for records whose cleanup time is `cleanup`: kIntervalJoinSweepSlackMs
  // later. A key that gets records drops its passed ones as they come (Join()), so the sweep is
  // for keys that got none since: with the slack, a key is swept about once per slack of event
  // time, not about once per record (a watermark every few ms of event time would otherwise
  // sweep each key as often as it gets records), and an idle key's records stay up to the
  // slack longer in memory. Rows kept past their cleanup time match no record that is not late.
  int64_t SweepTime(int64_t cleanup) const { return SaturatingAdd(cleanup, sweep_slack_ms_); }

  // Schedules key `slot`'s sweep after its earliest cleanup time when that is earlier than the
  // one pending (a key read back from the backend, restored or converted).
  void ScheduleEarliest(uint32_t slot) {
    store_.ScheduleEarlier(slot, SweepTime(EarliestCleanup(store_.key(slot))));
  }

  // Drops the records of key `slot` that `watermark` has passed (cleanup times grow with
  // record times: they are the first rows of each input).
  void DropExpired(uint32_t slot, int64_t watermark) {
    for (int side = 0; side < 2; ++side) {
      const JoinRowStore::Rows& rows = store_.key(slot).rows[side];
      size_t due = 0;
      while (due < rows.size() && CleanupTime(side, rows[due].ts) <= watermark) ++due;
      if (due != 0) store_.DropFront(slot, side, due);
    }
  }

  // Drops the records of key `slot` that `watermark` has passed, then schedules its next sweep,
  // or forgets the key when nothing is left.
  absl::Status Sweep(uint32_t slot, int64_t watermark) {
    DropExpired(slot, watermark);
    SLUICE_ASSIGN_OR_RETURN(bool kept, store_.Release(slot));
    if (kept) store_.Schedule(slot, SweepTime(EarliestCleanup(store_.key(slot))));
    return absl::OkStatus();
  }

  // A spilled key gets an event-time timer at its earliest cleanup time (OnTimer reads it back).
  absl::Status SpillTimer(const JoinRowStore::Key& k) {
    return timers_->RegisterEventTimeTimer(EarliestCleanup(k));
  }
  // Over budget: every key leaves memory.
  absl::Status Spill() {
    return store_.Spill([this](const JoinRowStore::Key& k) { return SpillTimer(k); });
  }

  const IntervalJoinOptions* options_ = nullptr;
  int64_t sweep_slack_ms_ = kIntervalJoinSweepSlackMs;
  JoinRowStore store_;
  Record scratch_[2];  // a decoded record of each side
};

}  // namespace

void SetIntervalJoinSweepSlackForTest(int64_t ms) { sweep_slack_for_test = ms; }

std::unique_ptr<Operator> MakeIntervalJoin() { return std::make_unique<IntervalJoinOperator>(); }

}  // namespace sluice::ops
