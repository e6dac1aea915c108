#include <algorithm>
#include <string>
#include <vector>

#include "common/status.h"
#include "operators/internal/builtins.h"
#include "operators/join_base.h"
#include "operators/join_options.h"
#include "operators/join_rows.h"

namespace sluice::ops {
namespace {

// join (Flink's regular streaming join, without retractions): per key, every record of each
// input is kept, and each new record is joined with every kept record of the other input.
// Rows are kept `ttl` of processing time after they arrived (state TTL, OnCreateAndWrite: a
// match does not extend it), forever without a ttl. With `unique: left|right`
// (join_options.h) a record of the other input is kept only while its key's unique record has
// not come (or has expired).
//
// kind: left, retraction-free: a left row is emitted joined with each right row as matches
// come (never padded first and retracted later, as Flink's left join does); a left row that
// has had no match when its ttl expires is emitted once, padded with nulls; at end of input
// the left rows still unmatched are emitted padded. A left row matched once is never padded.
//
// Kept rows live in memory (a JoinRowStore, join_rows.h: per key and input the encoded records
// in arrival order, each with its arrival time (ms) and, for left rows, whether it has matched),
// written to the backend at snapshots for the keys changed since the last one (value state
// "join.rows", format 2 with flags) and spilled beyond the store's memory budget. With a ttl,
// each key has one processing-time timer, at the expiry of its oldest row (not one per row):
// it drops the expired rows (padding the unmatched left ones for kind left) and registers the
// next. Format 1 (map states "join.left"/"join.right" bucketed by arrival time, each record
// after a matched flag byte, with ".index" value states) is moved into memory at a restore;
// its timers per bucket fire into the same expiry.
class RegularJoinOperator final : public JoinOperatorBase {
 public:
  absl::Status Open(const OperatorContext& ctx, Output* output) override {
    SLUICE_ASSIGN_OR_RETURN(options_, TypedOptions<RegularJoinOptions>(ctx));
    SLUICE_RETURN_IF_ERROR(OpenJoin(ctx, output, options_->sides));
    store_.Init(this, state_->RegisterState("join.rows", state::StateKind::kValue),
                state_->RegisterState("join.row_blocks", state::StateKind::kValue), "join rows",
                /*flags=*/true);
    left_outer_ = options_->sides.kind == JoinSides::Kind::kLeft;
    for (int side = 0; side < 2; ++side) scratch_[side].Resize(options_->sides.input[side].size());
    if (!ctx.restored) return absl::OkStatus();
    const auto loaded = [this](uint32_t slot) {
      Loaded(slot);
      return store_.OverBudget() ? store_.Spill(nullptr) : absl::OkStatus();
    };
    SLUICE_RETURN_IF_ERROR(store_.LoadAll(loaded));
    return store_.RestoreBuckets({"join.left", "join.right"}, /*flag_prefix=*/true, loaded);
  }

  JoinRowStore* RowStoreForTest() override { return &store_; }

  absl::Status SnapshotState(int64_t checkpoint_id, std::vector<std::string>* entries) override {
    return store_.WriteDirty();
  }

  absl::Status ProcessInput(int side, const Record& r) override {
    if (side != 0 && side != 1) return absl::InvalidArgumentError("join has two inputs");
    return Join(side, r, JoinRowStore::kNoSlot);
  }

  // A batch: the keys' state prefetched (JoinRowStore::JoinBatch), the same rows out as per
  // record.
  bool PrefersBatches() const override { return true; }
  absl::Status ProcessBatch(int side, const Record* records, size_t count) override {
    if (side != 0 && side != 1) return absl::InvalidArgumentError("join has two inputs");
    return store_.JoinBatch(side, records, count,
                            [&](const Record& r, uint32_t slot) { return Join(side, r, slot); });
  }

  // The key's oldest rows expired: drops them (emitting unmatched left rows padded first, left
  // join) and registers the timer of the next expiry.
  absl::Status OnTimer(int64_t timestamp, TimeDomain domain, absl::string_view key) override {
    if (domain != TimeDomain::kProcessingTime) return absl::OkStatus();
    uint32_t slot;
    if (const uint32_t* found = store_.Find(key)) {
      slot = *found;
    } else {
      if (!store_.spilled()) return absl::OkStatus();  // emptied and forgotten
      SLUICE_ASSIGN_OR_RETURN(bool stored, store_.LoadCurrent(key, &slot));
      if (!stored) return absl::OkStatus();
      Loaded(slot);
    }
    for (int side = 0; side < 2; ++side) {
      const JoinRowStore::Rows& rows = store_.key(slot).rows[side];
      size_t due = 0;
      while (due < rows.size() && Expired(rows[due].ts, timestamp)) ++due;
      if (side == 0 && left_outer_) SLUICE_RETURN_IF_ERROR(EmitUnmatched(slot, due));
      store_.DropFront(slot, side, due);
    }
    JoinRowStore::Key& k = store_.key(slot);
    if (k.scheduled <= timestamp) k.scheduled = JoinRowStore::kNever;
    SLUICE_ASSIGN_OR_RETURN(bool kept, store_.Release(slot));
    if (!kept || k.scheduled != JoinRowStore::kNever) return absl::OkStatus();
    k.scheduled = NextExpiry(k);  // the current key is the timer's
    return timers_->RegisterProcessingTimeTimer(k.scheduled);
  }

  // End of input: no right row can match any more, so unmatched left rows are final.
  absl::Status Finish() override {
    if (!left_outer_) return absl::OkStatus();
    const auto finish = [this](uint32_t slot) -> absl::Status {
      const size_t n = store_.key(slot).rows[0].size();
      SLUICE_RETURN_IF_ERROR(EmitUnmatched(slot, n));
      store_.DropFront(slot, 0, n);
      SLUICE_ASSIGN_OR_RETURN(bool kept, store_.Release(slot));
      if (kept && store_.OverBudget()) return store_.Spill(nullptr);
      return absl::OkStatus();
    };
    SLUICE_RETURN_IF_ERROR(store_.ForEachInMemory(finish));
    if (!store_.spilled()) return absl::OkStatus();
    return store_.LoadAll(finish);  // the spilled keys
  }

 private:
  // Joins record `r` of input `side` with the other input's kept rows and keeps it. `known`: its
  // key's slot when the caller found it, else JoinRowStore::kNoSlot (the key is evaluated and
  // found or loaded here).
  absl::Status Join(int side, const Record& r, uint32_t known) {
    uint32_t slot = known;
    if (slot == JoinRowStore::kNoSlot) {
      EvalKey(side, r);
      SLUICE_ASSIGN_OR_RETURN(slot, store_.SlotOfEvaluated([this](uint32_t s) { Loaded(s); }));
    }
    const int64_t now = timers_->CurrentProcessingTime();
    const int other = 1 - side;
    JoinRowStore::Key& k = store_.key(slot);
    const int unique = options_->unique;
    if (side == unique && !k.rows[side].empty()) return UniqueViolated(side, r);
    JoinRowStore::Rows& rows = k.rows[other];
    const bool mark = other == 0 && left_outer_;
    size_t i = 0;  // arrival order: the expired rows (their timer is about to drop them) first
    while (i < rows.size() && Expired(rows[i].ts, now)) ++i;
    const size_t first_match = i;
    const bool matched = i < rows.size();
    for (; i < rows.size(); ++i) {
      SLUICE_RETURN_IF_ERROR(store_.DecodeRow(other, k, rows[i], &scratch_[other]));
      SLUICE_RETURN_IF_ERROR(side == 0 ? EmitJoined(&r, &scratch_[other]) : EmitJoined(&scratch_[other], &r));
      if (mark) rows[i].flag = 1;  // the key is dirty: the row appended below marks it
    }
    if (unique >= 0) {
      // The key's one unique record is the only one that could ever match the other side's:
      // those it matched go (matched, so never padded); expired ones are left to their timer.
      if (side == unique) {
        store_.DropFrom(slot, other, first_match);
      } else if (matched) {
        if (mark) store_.MarkDirty(slot);  // the unique left row's flag changed
        return absl::OkStatus();  // joined the unique record: nothing else can match `r`
      }
    }
    SLUICE_RETURN_IF_ERROR(store_.Append(slot, side, now, matched, options_->sides.input[side], r));
    if (options_->ttl_ms > 0 && k.scheduled == JoinRowStore::kNever) {
      store_.SetCurrentKey(slot);
      k.scheduled = now + options_->ttl_ms;
      SLUICE_RETURN_IF_ERROR(timers_->RegisterProcessingTimeTimer(k.scheduled));
    } else if (options_->ttl_ms > 0 && side == unique && NextExpiry(k) != k.scheduled) {
      // The oldest rows went (matched the unique record): a key read back later expects a
      // timer at its oldest row's expiry (Loaded), so one is registered there; the one pending
      // finds nothing due.
      store_.SetCurrentKey(slot);
      k.scheduled = NextExpiry(k);
      SLUICE_RETURN_IF_ERROR(timers_->RegisterProcessingTimeTimer(k.scheduled));
    }
    if (store_.OverBudget()) return store_.Spill(nullptr);  // the keys' timers stay
    return absl::OkStatus();
  }

  bool Expired(int64_t arrived, int64_t now) const {
    return options_->ttl_ms > 0 && arrived + options_->ttl_ms <= now;
  }
  // The expiry of key `k`'s oldest row (REQUIRES: a ttl and a row).
  int64_t NextExpiry(const JoinRowStore::Key& k) const {
    int64_t t = JoinRowStore::kNever;
    for (const JoinRowStore::Rows& rows : k.rows) {
      if (!rows.empty()) t = std::min(t, rows.front().ts + options_->ttl_ms);
    }
    return t;
  }
  // A key read back from the backend (restored, converted or spilled before): its timer,
  // restored or registered before, is at the expiry of its oldest row.
  void Loaded(uint32_t slot) {
    JoinRowStore::Key& k = store_.key(slot);
    if (options_->ttl_ms > 0 && !k.empty()) k.scheduled = NextExpiry(k);
  }

  // Emits the unmatched ones of the first `n` left rows of key `slot`, padded with nulls.
  absl::Status EmitUnmatched(uint32_t slot, size_t n) {
    const JoinRowStore::Key& k = store_.key(slot);
    for (size_t i = 0; i < n; ++i) {
      const JoinRowStore::Row& row = k.rows[0][i];
      if (row.flag != 0) continue;
      SLUICE_RETURN_IF_ERROR(store_.DecodeRow(0, k, row, &scratch_[0]));
      SLUICE_RETURN_IF_ERROR(EmitJoined(&scratch_[0], nullptr));
    }
    return absl::OkStatus();
  }

  const RegularJoinOptions* options_ = nullptr;
  bool left_outer_ = false;
  JoinRowStore store_;
  Record scratch_[2];  // a decoded record of each side
};

}  // namespace

std::unique_ptr<Operator> MakeRegularJoin() { return std::make_unique<RegularJoinOperator>(); }

}  // namespace sluice::ops
