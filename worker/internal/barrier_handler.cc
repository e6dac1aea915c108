#include "worker/internal/barrier_handler.h"

#include "absl/strings/str_cat.h"

namespace sluice::worker {

BarrierHandler::BarrierHandler(int num_channels, Clock* clock)
    : num_channels_(num_channels),
      clock_(clock),
      ended_(num_channels, false),
      blocked_(num_channels, false),
      remaining_(num_channels) {}

absl::StatusOr<BarrierHandler::Action> BarrierHandler::OnItem(BufferItem& item) {
  const int ch = item.channel;
  if (ch < 0 || ch >= num_channels_ || ended_[ch]) {
    return absl::DataLossError(absl::StrCat("buffer for unexpected channel ", ch));
  }
  Action action;
  if (blocked_[ch]) {
    stash_.push_back(std::move(item));
    action.held = true;
    return action;
  }
  if (item.barrier > 0) {
    if (aligning_ > 0 && item.barrier > aligning_) {
      // A newer barrier overtook an unfinished alignment (that checkpoint was abandoned):
      // release the held channels and align on the new one.
      action.abandoned = aligning_;
      ReleaseBlocked();
      aligning_ = 0;
    }
    if (aligning_ == 0) {
      aligning_ = item.barrier;
      align_start_nanos_ = clock_->NowNanos();
    }
    if (item.barrier == aligning_) blocked_[ch] = true;
  } else {
    action.process = true;
    if (item.end_of_partition) {
      ended_[ch] = true;
      --remaining_;
    }
  }
  // Aligned: every channel has delivered the barrier or ended.
  if (aligning_ > 0) {
    bool aligned = true;
    for (int c = 0; c < num_channels_ && aligned; ++c) aligned = blocked_[c] || ended_[c];
    if (aligned) {
      action.snapshot = aligning_;
      action.alignment_ms = (clock_->NowNanos() - align_start_nanos_) / 1'000'000;
      aligning_ = 0;
      ReleaseBlocked();
    }
  }
  return action;
}

absl::optional<BufferItem> BarrierHandler::NextReplay() {
  if (replay_.empty()) return absl::nullopt;
  BufferItem item = std::move(replay_.front());
  replay_.pop_front();
  return item;
}

void BarrierHandler::ReleaseBlocked() {
  blocked_.assign(num_channels_, false);
  while (!stash_.empty()) {
    replay_.push_back(std::move(stash_.front()));
    stash_.pop_front();
  }
}

}  // namespace sluice::worker
