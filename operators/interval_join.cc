#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "common/watermark.h"
#include "operators/internal/builtins.h"
#include "operators/join_base.h"
#include "operators/join_options.h"

namespace sluice::ops {
namespace {

// interval_join (Flink's IntervalJoinOperator): per key, each input's records are kept in a map
// state, bucketed by event time (with a BucketIndex of the buckets); a record joins the other side's records whose time lies in its
// interval (left.ts + lower <= right.ts <= left.ts + upper), and is then kept until the
// watermark passes the last time a record of the other side could still match it:
//   a left record at t:  until the watermark exceeds t + upper  (timer at t + upper + 1);
//   a right record at t: until the watermark exceeds t - lower  (timer at t - lower + 1).
// A record with ts < watermark is late: dropped and counted, as Flink. Joined rows are emitted
// as the second record of a pair arrives; their event time is max(left.ts, right.ts), never
// behind the watermark they are emitted under.
class IntervalJoinOperator final : public JoinOperatorBase {
 public:
  absl::Status Open(const OperatorContext& ctx, Output* output) override {
    SLUICE_ASSIGN_OR_RETURN(options_, TypedOptions<IntervalJoinOptions>(ctx));
    SLUICE_RETURN_IF_ERROR(OpenJoin(ctx, output, options_->sides));
    for (int side = 0; side < 2; ++side) {
      const std::string name = side == 0 ? "interval_join.left" : "interval_join.right";
      buffer_[side] = state_->RegisterState(name, state::StateKind::kMap);
      index_[side].emplace(state_, state_->RegisterState(name + ".index", state::StateKind::kValue));
    }
    return absl::OkStatus();
  }

  absl::Status ProcessInput(int side, const Record& r) override {
    if (side != 0 && side != 1) return absl::InvalidArgumentError("interval_join has two inputs");
    const int64_t ts = TimeOf(side, r);
    const int64_t watermark = timers_->CurrentWatermark();
    if (watermark != kNoWatermark && ts < watermark) {
      CountLate();
      return absl::OkStatus();
    }
    SetKeyFrom(side, r);
    // The other side's times that match: right in [ts + lower, ts + upper] for a left record,
    // left in [ts - upper, ts - lower] for a right one.
    const int other = 1 - side;
    const int64_t lo = side == 0 ? SaturatingAdd(ts, options_->lower_ms) : SaturatingAdd(ts, -options_->upper_ms);
    const int64_t hi = side == 0 ? SaturatingAdd(ts, options_->upper_ms) : SaturatingAdd(ts, -options_->lower_ms);
    BucketIndex& other_index = *index_[other];
    SLUICE_RETURN_IF_ERROR(other_index.Load());
    for (size_t b = other_index.LowerBound(lo); b < other_index.size() && other_index.time(b) <= hi; ++b) {
      SLUICE_ASSIGN_OR_RETURN(bool found, state_->MapGet(buffer_[other], other_index.user_key(b), &bucket_));
      if (!found) continue;
      size_t n = 0;
      SLUICE_RETURN_IF_ERROR(DecodeBucket(other, bucket_, &records_, &n));
      for (size_t i = 0; i < n; ++i) {
        SLUICE_RETURN_IF_ERROR(side == 0 ? EmitJoined(&r, &records_[i]) : EmitJoined(&records_[i], &r));
      }
    }
    SLUICE_RETURN_IF_ERROR(index_[side]->Load());
    SLUICE_RETURN_IF_ERROR(AppendToBucket(side, buffer_[side], &*index_[side], ts, "", r));
    return timers_->RegisterEventTimeTimer(CleanupTime(side, ts));
  }

  // Drops the buckets of both sides whose cleanup time has come.
  absl::Status OnTimer(int64_t timestamp, TimeDomain domain, absl::string_view) override {
    if (domain != TimeDomain::kEventTime) return absl::OkStatus();
    for (int side = 0; side < 2; ++side) {
      BucketIndex& index = *index_[side];
      SLUICE_RETURN_IF_ERROR(index.Load());
      // Cleanup times grow with bucket times: the buckets due are the oldest ones.
      size_t due = 0;
      while (due < index.size() && CleanupTime(side, index.time(due)) <= timestamp) {
        SLUICE_RETURN_IF_ERROR(state_->MapRemove(buffer_[side], index.user_key(due)));
        ++due;
      }
      if (due > 0) {
        index.EraseFront(due);
        SLUICE_RETURN_IF_ERROR(index.Store());
      }
    }
    return absl::OkStatus();
  }

 private:
  int64_t CleanupTime(int side, int64_t ts) const {
    return SaturatingAdd(side == 0 ? SaturatingAdd(ts, options_->upper_ms)
                                   : SaturatingAdd(ts, -options_->lower_ms),
                         1);
  }

  const IntervalJoinOptions* options_ = nullptr;
  state::StateId buffer_[2] = {0, 0};
  std::optional<BucketIndex> index_[2];
  std::vector<Record> records_;
  std::string bucket_;
};

}  // namespace

std::unique_ptr<Operator> MakeIntervalJoin() { return std::make_unique<IntervalJoinOperator>(); }

}  // namespace sluice::ops
