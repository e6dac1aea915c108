#include <vector>

#include "common/status.h"
#include "common/watermark.h"
#include "operators/internal/builtins.h"
#include "operators/join_base.h"
#include "operators/join_options.h"
#include "operators/window_assigner.h"

namespace sluice::ops {
namespace {

// window_join (Flink's DataStream window join, plus outer kinds as a coGroup would give them):
// both inputs are assigned to the same tumbling or hopping event-time windows
// (window_assigner.h); per key and window, each input's records are kept in a map state bucket
// (user key: the window's last timestamp, end - 1). When the watermark reaches end - 1 (an
// event-time timer), the window's rows are emitted and its buckets dropped:
//   inner: every (left, right) pair; left: also each left row padded with nulls when the window
//   has no right row; right: the mirror; full: both. The output's event time is end - 1; it
//   ends with window_start and window_end.
// A record none of whose windows is still open (end - 1 <= watermark, as Flink) is dropped and
// counted as late; one that is late for some of its hopping windows only joins the open ones.
class WindowJoinOperator final : public JoinOperatorBase {
 public:
  absl::Status Open(const OperatorContext& ctx, Output* output) override {
    SLUICE_ASSIGN_OR_RETURN(options_, TypedOptions<WindowJoinOptions>(ctx));
    SLUICE_RETURN_IF_ERROR(OpenJoin(ctx, output, options_->sides));
    buffer_[0] = state_->RegisterState("window_join.left", state::StateKind::kMap);
    buffer_[1] = state_->RegisterState("window_join.right", state::StateKind::kMap);
    window_start_ = options_->sides.output.size() - 2;
    return absl::OkStatus();
  }

  absl::Status ProcessInput(int side, const Record& r) override {
    if (side != 0 && side != 1) return absl::InvalidArgumentError("window_join has two inputs");
    AssignWindows(options_->window, TimeOf(side, r), &windows_);
    const int64_t watermark = timers_->CurrentWatermark();
    bool keyed = false;
    bool kept = false;
    for (const TimeWindow& w : windows_) {
      const int64_t fire_at = w.max_timestamp();
      if (watermark != kNoWatermark && fire_at <= watermark) continue;  // fired already
      if (!keyed) {
        SetKeyFrom(side, r);
        keyed = true;
      }
      SLUICE_RETURN_IF_ERROR(AppendToBucket(side, buffer_[side], nullptr, fire_at, "", r));
      SLUICE_RETURN_IF_ERROR(timers_->RegisterEventTimeTimer(fire_at));
      kept = true;
    }
    if (!kept) CountLate();
    return absl::OkStatus();
  }

  // The window ending at `timestamp` + 1 fires for the timer's key.
  absl::Status OnTimer(int64_t timestamp, TimeDomain domain, absl::string_view) override {
    if (domain != TimeDomain::kEventTime) return absl::OkStatus();
    char buf[8];
    const absl::string_view user_key = TimeUserKey(timestamp, buf);
    size_t n[2] = {0, 0};
    for (int side = 0; side < 2; ++side) {
      SLUICE_ASSIGN_OR_RETURN(bool found, state_->MapGet(buffer_[side], user_key, &bucket_));
      if (!found) continue;
      SLUICE_RETURN_IF_ERROR(DecodeBucket(side, bucket_, &rows_[side], &n[side]));
      SLUICE_RETURN_IF_ERROR(state_->MapRemove(buffer_[side], user_key));
    }
    out_.SetInt(window_start_, timestamp + 1 - options_->window.size_ms);
    out_.SetInt(window_start_ + 1, timestamp + 1);
    const JoinSides& s = options_->sides;
    for (size_t i = 0; i < n[0]; ++i) {
      for (size_t j = 0; j < n[1]; ++j) SLUICE_RETURN_IF_ERROR(EmitJoined(&rows_[0][i], &rows_[1][j]));
    }
    if (n[1] == 0 && s.pads(1)) {
      for (size_t i = 0; i < n[0]; ++i) SLUICE_RETURN_IF_ERROR(EmitJoined(&rows_[0][i], nullptr));
    }
    if (n[0] == 0 && s.pads(0)) {
      for (size_t j = 0; j < n[1]; ++j) SLUICE_RETURN_IF_ERROR(EmitJoined(nullptr, &rows_[1][j]));
    }
    return absl::OkStatus();
  }

 private:
  const WindowJoinOptions* options_ = nullptr;
  state::StateId buffer_[2] = {0, 0};
  size_t window_start_ = 0;  // output index of window_start (window_end follows)
  std::vector<TimeWindow> windows_;
  std::vector<Record> rows_[2];
  std::string bucket_;
};

}  // namespace

std::unique_ptr<Operator> MakeWindowJoin() { return std::make_unique<WindowJoinOperator>(); }

}  // namespace sluice::ops
