#include <optional>
#include <string>
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
// of [matched flag byte][record] after the format byte, with a BucketIndex of the buckets (which also lists the keys
// holding left rows, for the end of input). Processing-time timers at arrival + ttl drop
// expired buckets.
class RegularJoinOperator final : public JoinOperatorBase {
 public:
  absl::Status Open(const OperatorContext& ctx, Output* output) override {
    SLUICE_ASSIGN_OR_RETURN(options_, TypedOptions<RegularJoinOptions>(ctx));
    SLUICE_RETURN_IF_ERROR(OpenJoin(ctx, output, options_->sides));
    for (int side = 0; side < 2; ++side) {
      const std::string name = side == 0 ? "join.left" : "join.right";
      rows_[side] = state_->RegisterState(name, state::StateKind::kMap);
      index_id_[side] = state_->RegisterState(name + ".index", state::StateKind::kValue);
      index_[side].emplace(state_, index_id_[side]);
    }
    left_outer_ = options_->sides.kind == JoinSides::Kind::kLeft;
    return absl::OkStatus();
  }

  absl::Status ProcessInput(int side, const Record& r) override {
    if (side != 0 && side != 1) return absl::InvalidArgumentError("join has two inputs");
    SetKeyFrom(side, r);
    const int64_t now = timers_->CurrentProcessingTime();
    const int other = 1 - side;
    bool matched = false;
    BucketIndex& other_index = *index_[other];
    SLUICE_RETURN_IF_ERROR(other_index.Load());
    for (size_t b = 0; b < other_index.size(); ++b) {
      if (Expired(other_index.time(b), now)) continue;  // its timer is about to drop it
      SLUICE_ASSIGN_OR_RETURN(bool found, state_->MapGet(rows_[other], other_index.user_key(b), &bucket_));
      if (!found) continue;
      bool marked = false;
      SLUICE_ASSIGN_OR_RETURN(absl::string_view body, BucketBody(ctx_.state_origin, bucket_));
      const char* pos = body.data();
      const char* end = pos + body.size();
      while (pos < end) {
        char* flag = bucket_.data() + (pos - bucket_.data());
        ++pos;
        SLUICE_RETURN_IF_ERROR(DecodeOne(other, &pos, end, &other_));
        SLUICE_RETURN_IF_ERROR(side == 0 ? EmitJoined(&r, &other_) : EmitJoined(&other_, &r));
        matched = true;
        if (other == 0 && left_outer_ && *flag == 0) {
          *flag = 1;
          marked = true;
        }
      }
      if (marked) SLUICE_RETURN_IF_ERROR(state_->MapPut(rows_[other], other_index.user_key(b), bucket_));
    }
    SLUICE_RETURN_IF_ERROR(index_[side]->Load());
    const char flag = matched ? 1 : 0;
    SLUICE_RETURN_IF_ERROR(
        AppendToBucket(side, rows_[side], &*index_[side], now, absl::string_view(&flag, 1), r));
    if (options_->ttl_ms > 0) {
      SLUICE_RETURN_IF_ERROR(timers_->RegisterProcessingTimeTimer(now + options_->ttl_ms));
    }
    return absl::OkStatus();
  }

  // Drops the expired buckets of both inputs, emitting unmatched left rows first (left join).
  absl::Status OnTimer(int64_t timestamp, TimeDomain domain, absl::string_view) override {
    if (domain != TimeDomain::kProcessingTime) return absl::OkStatus();
    for (int side = 0; side < 2; ++side) {
      BucketIndex& index = *index_[side];
      SLUICE_RETURN_IF_ERROR(index.Load());
      size_t due = 0;  // arrival order: the expired buckets are the oldest
      while (due < index.size() && Expired(index.time(due), timestamp)) {
        if (side == 0 && left_outer_) SLUICE_RETURN_IF_ERROR(EmitUnmatched(index.user_key(due)));
        SLUICE_RETURN_IF_ERROR(state_->MapRemove(rows_[side], index.user_key(due)));
        ++due;
      }
      if (due > 0) {
        index.EraseFront(due);
        SLUICE_RETURN_IF_ERROR(index.Store());
      }
    }
    return absl::OkStatus();
  }

  // End of input: no right row can match any more, so unmatched left rows are final.
  absl::Status Finish() override {
    if (!left_outer_) return absl::OkStatus();
    return state_->ForEachKey(index_id_[0], [this](absl::string_view) -> absl::Status {
      BucketIndex& index = *index_[0];
      SLUICE_RETURN_IF_ERROR(index.Load());
      for (size_t b = 0; b < index.size(); ++b) {
        SLUICE_RETURN_IF_ERROR(EmitUnmatched(index.user_key(b)));
        SLUICE_RETURN_IF_ERROR(state_->MapRemove(rows_[0], index.user_key(b)));
      }
      index.EraseFront(index.size());
      return index.Store();
    });
  }

 private:
  bool Expired(int64_t arrived, int64_t now) const {
    return options_->ttl_ms > 0 && arrived + options_->ttl_ms <= now;
  }

  // Emits the unmatched left rows of bucket `user_key`, padded with nulls.
  absl::Status EmitUnmatched(absl::string_view user_key) {
    SLUICE_ASSIGN_OR_RETURN(bool found, state_->MapGet(rows_[0], user_key, &bucket_));
    if (!found) return absl::OkStatus();
    SLUICE_ASSIGN_OR_RETURN(absl::string_view body, BucketBody(ctx_.state_origin, bucket_));
    const char* pos = body.data();
    const char* end = pos + body.size();
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
  state::StateId index_id_[2] = {0, 0};
  std::optional<BucketIndex> index_[2];
  Record other_;
  std::string bucket_;
};

}  // namespace

std::unique_ptr<Operator> MakeRegularJoin() { return std::make_unique<RegularJoinOperator>(); }

}  // namespace sluice::ops
