#include <vector>

#include "common/status.h"
#include "operators/internal/builtins.h"
#include "operators/join_base.h"
#include "operators/join_options.h"

namespace sluice::ops {
namespace {

// join (Flink's regular streaming join, without retractions): per key, every record of each
// input is kept, and each new record is joined with every kept record of the other input.
// Rows are kept `ttl` of processing time after they arrived (state TTL, OnCreateAndWrite: a
// match does not extend it), forever without a ttl.
//
// kind: left, retraction-free: a left row is emitted joined with each right row as matches
// come (never padded first and retracted later, as Flink's left join does); a left row that
// has had no match when its ttl expires is emitted once, padded with nulls; at end of input
// the left rows still unmatched are emitted padded. A left row matched once is never padded.
//
// State per key and input: a map state bucketed by arrival time (ms), each bucket a sequence
// of [matched flag byte][record]; a value state marks keys that hold left rows (for the end of
// input). Processing-time timers at arrival + ttl drop expired buckets.
class RegularJoinOperator final : public JoinOperatorBase {
 public:
  absl::Status Open(const OperatorContext& ctx, Output* output) override {
    SLUICE_ASSIGN_OR_RETURN(options_, TypedOptions<RegularJoinOptions>(ctx));
    SLUICE_RETURN_IF_ERROR(OpenJoin(ctx, output, options_->sides));
    rows_[0] = state_->RegisterState("join.left", state::StateKind::kMap);
    rows_[1] = state_->RegisterState("join.right", state::StateKind::kMap);
    left_outer_ = options_->sides.kind == JoinSides::Kind::kLeft;
    if (left_outer_) has_left_ = state_->RegisterState("join.has_left", state::StateKind::kValue);
    return absl::OkStatus();
  }

  absl::Status ProcessInput(int side, const Record& r) override {
    if (side != 0 && side != 1) return absl::InvalidArgumentError("join has two inputs");
    SetKeyFrom(side, r);
    const int64_t now = timers_->CurrentProcessingTime();
    const int other = 1 - side;
    bool matched = false;
    SLUICE_RETURN_IF_ERROR(state_->MapEntries(rows_[other], &entries_));
    for (auto& [user_key, bucket] : entries_) {
      if (Expired(TimeFromUserKey(user_key), now)) continue;  // its timer is about to drop it
      bool marked = false;
      const char* pos = bucket.data();
      const char* end = pos + bucket.size();
      while (pos < end) {
        char* flag = bucket.data() + (pos - bucket.data());
        ++pos;
        SLUICE_RETURN_IF_ERROR(DecodeOne(other, &pos, end, &other_));
        SLUICE_RETURN_IF_ERROR(side == 0 ? EmitJoined(&r, &other_) : EmitJoined(&other_, &r));
        matched = true;
        if (other == 0 && left_outer_ && *flag == 0) {
          *flag = 1;
          marked = true;
        }
      }
      if (marked) SLUICE_RETURN_IF_ERROR(state_->MapPut(rows_[other], user_key, bucket));
    }
    char buf[8];
    const absl::string_view user_key = TimeUserKey(now, buf);
    SLUICE_ASSIGN_OR_RETURN(bool found, state_->MapGet(rows_[side], user_key, &bucket_));
    if (!found) bucket_.clear();
    bucket_.push_back(matched ? 1 : 0);
    AppendTo(side, r, &bucket_);
    SLUICE_RETURN_IF_ERROR(state_->MapPut(rows_[side], user_key, bucket_));
    if (side == 0 && left_outer_ && !found) SLUICE_RETURN_IF_ERROR(state_->Put(has_left_, ""));
    if (options_->ttl_ms > 0) {
      SLUICE_RETURN_IF_ERROR(timers_->RegisterProcessingTimeTimer(now + options_->ttl_ms));
    }
    return absl::OkStatus();
  }

  // Drops the expired buckets of both inputs, emitting unmatched left rows first (left join).
  absl::Status OnTimer(int64_t timestamp, TimeDomain domain, absl::string_view) override {
    if (domain != TimeDomain::kProcessingTime) return absl::OkStatus();
    for (int side = 0; side < 2; ++side) {
      SLUICE_RETURN_IF_ERROR(state_->MapEntries(rows_[side], &entries_));
      size_t kept = 0;
      for (const auto& [user_key, bucket] : entries_) {
        if (!Expired(TimeFromUserKey(user_key), timestamp)) {
          ++kept;
          continue;
        }
        if (side == 0 && left_outer_) SLUICE_RETURN_IF_ERROR(EmitUnmatched(bucket));
        SLUICE_RETURN_IF_ERROR(state_->MapRemove(rows_[side], user_key));
      }
      if (side == 0 && left_outer_ && kept == 0) SLUICE_RETURN_IF_ERROR(state_->Delete(has_left_));
    }
    return absl::OkStatus();
  }

  // End of input: no right row can match any more, so unmatched left rows are final.
  absl::Status Finish() override {
    if (!left_outer_) return absl::OkStatus();
    return state_->ForEachKey(has_left_, [this](absl::string_view) -> absl::Status {
      SLUICE_RETURN_IF_ERROR(state_->MapEntries(rows_[0], &entries_));
      for (const auto& [user_key, bucket] : entries_) {
        SLUICE_RETURN_IF_ERROR(EmitUnmatched(bucket));
        SLUICE_RETURN_IF_ERROR(state_->MapRemove(rows_[0], user_key));
      }
      return state_->Delete(has_left_);
    });
  }

 private:
  bool Expired(int64_t arrived, int64_t now) const {
    return options_->ttl_ms > 0 && arrived + options_->ttl_ms <= now;
  }

  absl::Status EmitUnmatched(const std::string& bucket) {
    const char* pos = bucket.data();
    const char* end = pos + bucket.size();
    while (pos < end) {
      const bool matched = *pos++ != 0;
      SLUICE_RETURN_IF_ERROR(DecodeOne(0, &pos, end, &other_));
      if (!matched) SLUICE_RETURN_IF_ERROR(EmitJoined(&other_, nullptr));
    }
    return absl::OkStatus();
  }

  const RegularJoinOptions* options_ = nullptr;
  bool left_outer_ = false;
  state::StateId rows_[2] = {0, 0};
  state::StateId has_left_ = 0;
  std::vector<std::pair<std::string, std::string>> entries_;
  Record other_;
  std::string bucket_;
};

}  // namespace

std::unique_ptr<Operator> MakeRegularJoin() { return std::make_unique<RegularJoinOperator>(); }

}  // namespace sluice::ops
