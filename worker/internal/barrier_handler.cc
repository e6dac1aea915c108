#include "worker/internal/barrier_handler.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace sluice::worker {

BarrierHandler::BarrierHandler(int num_channels, Clock* clock, Mode mode, int64_t aligned_timeout_ms)
    : num_channels_(num_channels),
      clock_(clock),
      mode_(mode),
      aligned_timeout_nanos_(aligned_timeout_ms * 1'000'000),
      ended_(num_channels, false),
      remaining_(num_channels),
      blocked_(num_channels, false),
      announced_(num_channels, false),
      overtaken_(num_channels),
      processed_since_announced_(num_channels, 0) {}

absl::StatusOr<BarrierHandler::Action> BarrierHandler::OnItem(BufferItem& item) {
  const int ch = item.channel;
  if (ch < 0 || ch >= num_channels_ || ended_[ch]) {
    return absl::DataLossError(absl::StrCat("buffer for unexpected channel ", ch));
  }
  Action action;
  if (BarrierAnnouncement* announcement = item.as<BarrierAnnouncement>()) {
    const int64_t id = announcement->id;
    if (id <= last_done_ || id < current_) return action;  // late: that checkpoint is over
    if (id > current_) Start(id, true, &action);
    NoteWaited(announcement->waited_ms);
    if (announced_[ch] || blocked_[ch]) return action;
    announced_[ch] = true;
    if (unaligned_) {
      // Already unaligned (an earlier announcement of this checkpoint, taken in the same round
      // of priority events, switched): this channel's items waiting for replay precede its
      // barrier too and, processed after it was announced, would not be recorded.
      CopyReplayedOf(ch, &recorded_);
      for (BufferItem& copy : announcement->overtaken) recorded_.push_back(std::move(copy));
    } else {
      overtaken_[ch].clear();
      // Items of its channel that left the gate before the barrier arrived but wait for replay
      // (held back by an alignment Start() abandoned) precede the barrier too: ahead of the
      // gate's copies.
      CopyReplayedOf(ch, &overtaken_[ch]);
      for (BufferItem& copy : announcement->overtaken) overtaken_[ch].push_back(std::move(copy));
      processed_since_announced_[ch] = 0;
      // Its sender converted it after its own timeout: the checkpoint timed out already.
      if (mode_ == Mode::kUnaligned || (mode_ == Mode::kAuto && announcement->timed_out)) {
        SwitchToUnaligned(&action);
      }
    }
    MaybeFinish(&action);
    return action;
  }
  if (!unaligned_ && blocked_[ch]) {
    stash_.push_back(std::move(item));
    action.held = true;
    return action;
  }
  if (const Barrier* barrier = item.as<Barrier>()) {
    const int64_t id = barrier->id;
    if (id <= last_done_ || id < current_) return action;
    if (id > current_) Start(id, barrier->priority || barrier->timeoutable, &action);
    NoteWaited(barrier->waited_ms);
    if (unaligned_) {
      // In place behind what its announcement overtook; normally announced already.
      announced_[ch] = true;
    } else {
      blocked_[ch] = true;
    }
    MaybeFinish(&action);
    return action;
  }
  action.process = true;
  if (item.as<EndOfPartition>() != nullptr) {
    ended_[ch] = true;
    --remaining_;
    if (current_ > 0) MaybeFinish(&action);
    return action;
  }
  if (current_ > 0) {
    if (unaligned_) {
      if (!announced_[ch]) recorded_.push_back(item.CopyContent());
    } else if (announced_[ch]) {
      ++processed_since_announced_[ch];
    }
  }
  return action;
}

BarrierHandler::Action BarrierHandler::OnTimer() {
  Action action;
  if (clock_->NowNanos() < TimerDeadlineNanos()) return action;
  SwitchToUnaligned(&action);
  MaybeFinish(&action);
  return action;
}

std::vector<BufferItem> BarrierHandler::TakeInputState() { return std::move(complete_); }

void BarrierHandler::Start(int64_t id, bool priority, Action* action) {
  if (current_ > 0) {
    // A newer barrier overtook an unfinished checkpoint (it was abandoned).
    action->abandoned = current_;
    last_done_ = current_;
    ReleaseBlocked();
    Reset();
  }
  current_ = id;
  priority_ = priority;
  start_nanos_ = clock_->NowNanos();
  origin_nanos_ = start_nanos_;
}

void BarrierHandler::CopyReplayedOf(int ch, std::vector<BufferItem>* out) const {
  for (const BufferItem& r : replay_) {
    if (r.channel != ch) continue;
    if (r.as<Barrier>() != nullptr) break;  // what follows its channel's next barrier is after it
    out->push_back(r.CopyContent());
  }
}

void BarrierHandler::NoteWaited(int64_t waited_ms) {
  origin_nanos_ = std::min(origin_nanos_, clock_->NowNanos() - waited_ms * 1'000'000);
}

void BarrierHandler::SwitchToUnaligned(Action* action) {
  unaligned_ = true;
  action->snapshot = current_;
  action->unaligned = true;
  action->priority = priority_;
  action->alignment_ms = (clock_->NowNanos() - start_nanos_) / 1'000'000;
  action->origin_nanos = origin_nanos_;
  // Snapshotted partway through a buffer: its rest precedes its channel's barrier.
  if (partial_ != nullptr) recorded_.push_back(partial_->CopyContent());
  for (int c = 0; c < num_channels_; ++c) {
    if (blocked_[c] || !announced_[c]) continue;
    // Announced while aligning: the overtaken items not processed yet are in flight.
    std::vector<BufferItem>& copies = overtaken_[c];
    for (size_t k = processed_since_announced_[c]; k < copies.size(); ++k) {
      recorded_.push_back(std::move(copies[k]));
    }
    copies.clear();
  }
  // Blocked channels delivered their barrier: what they hold back follows it.
  for (int c = 0; c < num_channels_; ++c) announced_[c] = announced_[c] || blocked_[c];
  ReleaseBlocked();
}

void BarrierHandler::MaybeFinish(Action* action) {
  bool done = true;
  for (int c = 0; c < num_channels_ && done; ++c) {
    done = ended_[c] || (unaligned_ ? announced_[c] : blocked_[c]);
  }
  if (!done) return;
  if (unaligned_) {
    action->complete = current_;
    complete_ = std::move(recorded_);
  } else {
    action->snapshot = current_;
    action->priority = priority_;
    action->alignment_ms = (clock_->NowNanos() - start_nanos_) / 1'000'000;
    action->origin_nanos = origin_nanos_;
  }
  last_done_ = current_;
  ReleaseBlocked();
  Reset();
}

void BarrierHandler::ReleaseBlocked() {
  blocked_.assign(num_channels_, false);
  while (!stash_.empty()) {
    replay_.push_back(std::move(stash_.front()));
    stash_.pop_front();
  }
}

void BarrierHandler::Reset() {
  current_ = 0;
  priority_ = false;
  unaligned_ = false;
  announced_.assign(num_channels_, false);
  for (auto& o : overtaken_) o.clear();
  processed_since_announced_.assign(num_channels_, 0);
  recorded_.clear();
}

absl::optional<BufferItem> BarrierHandler::NextReplay() {
  if (replay_.empty()) return absl::nullopt;
  BufferItem item = std::move(replay_.front());
  replay_.pop_front();
  return item;
}

}  // namespace sluice::worker
