#include <vector>

#include "common/status.h"
#include "common/watermark.h"
#include "operators/internal/builtins.h"
#include "operators/join_base.h"
#include "operators/join_options.h"

namespace sluice::ops {
namespace {

// interval_join (Flink's IntervalJoinOperator): per key, each input's records are kept in a map
// state, bucketed by event time; a record joins the other side's records whose time lies in its
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
    buffer_[0] = state_->RegisterState("interval_join.left", state::StateKind::kMap);
    buffer_[1] = state_->RegisterState("interval_join.right", state::StateKind::kMap);
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
    SLUICE_RETURN_IF_ERROR(state_->MapEntries(buffer_[other], &entries_));
    for (const auto& [user_key, bucket] : entries_) {
      const int64_t other_ts = TimeFromUserKey(user_key);
      if (other_ts < lo || other_ts > hi) continue;
      size_t n = 0;
      SLUICE_RETURN_IF_ERROR(DecodeBucket(other, bucket, &records_, &n));
      for (size_t i = 0; i < n; ++i) {
        SLUICE_RETURN_IF_ERROR(side == 0 ? EmitJoined(&r, &records_[i]) : EmitJoined(&records_[i], &r));
      }
    }
    char buf[8];
    const absl::string_view user_key = TimeUserKey(ts, buf);
    SLUICE_ASSIGN_OR_RETURN(bool found, state_->MapGet(buffer_[side], user_key, &bucket_));
    if (!found) bucket_.clear();
    AppendTo(side, r, &bucket_);
    SLUICE_RETURN_IF_ERROR(state_->MapPut(buffer_[side], user_key, bucket_));
    return timers_->RegisterEventTimeTimer(CleanupTime(side, ts));
  }

  // Drops the buckets of both sides whose cleanup time has come.
  absl::Status OnTimer(int64_t timestamp, TimeDomain domain, absl::string_view) override {
    if (domain != TimeDomain::kEventTime) return absl::OkStatus();
    for (int side = 0; side < 2; ++side) {
      SLUICE_RETURN_IF_ERROR(state_->MapEntries(buffer_[side], &entries_));
      for (const auto& entry : entries_) {
        if (CleanupTime(side, TimeFromUserKey(entry.first)) <= timestamp) {
          SLUICE_RETURN_IF_ERROR(state_->MapRemove(buffer_[side], entry.first));
        }
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
  std::vector<std::pair<std::string, std::string>> entries_;
  std::vector<Record> records_;
  std::string bucket_;
};

}  // namespace

std::unique_ptr<Operator> MakeIntervalJoin() { return std::make_unique<IntervalJoinOperator>(); }

}  // namespace sluice::ops
