#include "worker/internal/input_gate.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "spdlog/spdlog.h"

namespace sluice::worker {

void InputGate::SetListener(int channel, std::shared_ptr<CreditListener> listener) {
  {
    absl::MutexLock lock(&mu_);
    if (!closed_) {
      listeners_[channel] = std::move(listener);
      return;
    }
  }
  listener->GateClosed();
}

void InputGate::Enqueue(BufferItem item) {
  ChannelQueue& channel = channels_[item.channel];
  if (channel.items.empty()) {
    channel.queued_at = queued_channels_.size();
    queued_channels_.push_back(&channel);
  }
  channel.items.push_back(Queued{next_seq_++, std::move(item)});
  ++queued_;
}

BufferItem InputGate::PopFront(ChannelQueue& channel) {
  BufferItem item = std::move(channel.items.front().item);
  channel.items.pop_front();
  --queued_;
  if (channel.items.empty()) {
    // Swap-remove: the last entry takes the channel's place.
    ChannelQueue* last = queued_channels_.back();
    queued_channels_[channel.queued_at] = last;
    last->queued_at = channel.queued_at;
    queued_channels_.pop_back();
  }
  return item;
}

void InputGate::Push(BufferItem item) {
  absl::MutexLock lock(&mu_);
  if (closed_) return;
  if (item.channel < 0 || item.channel >= num_channels_) {
    // LocalChannel::Connect() and Worker::ResolveGate() check channels: a bug if it happens.
    spdlog::error("input gate: dropped an item of channel {} (the gate has {} channels)",
                  item.channel, num_channels_);
    return;
  }
  const RecordBuffer* records = item.as<RecordBuffer>();
  if (records != nullptr && records->watermark.has_value()) {
    BufferItem pieces[3];
    const int n = SplitCarriedWatermark(std::move(item), pieces);
    for (int i = 0; i < n; ++i) Enqueue(std::move(pieces[i]));
    return;
  }
  const Barrier* barrier = item.as<Barrier>();
  if (barrier != nullptr && (barrier->priority || barrier->timeoutable)) {
    BarrierAnnouncement announcement{barrier->id, {}, barrier->timed_out, barrier->waited_ms};
    for (const Queued& queued : channels_[item.channel].items) {
      if (queued.item.as<Barrier>() != nullptr) continue;
      announcement.overtaken.push_back(queued.item.CopyContent());
    }
    announcements_.emplace_back(item.channel, std::move(announcement));
    has_announcement_.store(true, std::memory_order_relaxed);
    Enqueue(std::move(item));
    if (priority_listener_) priority_listener_();
    return;
  }
  Enqueue(std::move(item));
}

void InputGate::SetPriorityListener(std::function<void()> listener) {
  absl::MutexLock lock(&mu_);
  if (!closed_) priority_listener_ = std::move(listener);
}

absl::optional<BufferItem> InputGate::PollPriority() {
  absl::MutexLock lock(&mu_);
  if (announcements_.empty()) return absl::nullopt;
  BufferItem item = std::move(announcements_.front());
  announcements_.pop_front();
  has_announcement_.store(!announcements_.empty(), std::memory_order_relaxed);
  return item;
}

absl::optional<BufferItem> InputGate::Poll(int64_t deadline_nanos) {
  absl::MutexLock lock(&mu_);
  auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return queued_ > 0 || !announcements_.empty() || woken_ || closed_;
  };
  int64_t now = Clock::Real()->NowNanos();
  if (deadline_nanos > now) {
    mu_.AwaitWithTimeout(absl::Condition(&ready), absl::Nanoseconds(deadline_nanos - now));
  }
  woken_ = false;
  if (!announcements_.empty()) {
    BufferItem item = std::move(announcements_.front());
    announcements_.pop_front();
    has_announcement_.store(!announcements_.empty(), std::memory_order_relaxed);
    return item;
  }
  if (queued_ == 0) return absl::nullopt;
  // The earliest arrival, unless the queued channel lowest in event time is surely behind it:
  // then that channel. A channel without a watermark yet is not known to be behind, and the
  // earliest arrival is overtaken at most kMaxOvertakes times in a row, so a channel whose
  // watermark is stuck low (or a leader never read) cannot starve the others.
  // (Seqs are unique, so the choice does not depend on the order the channels are looked at.)
  ChannelQueue* first = nullptr;
  ChannelQueue* lowest = nullptr;
  channels_scanned_ += static_cast<int64_t>(queued_channels_.size());
  for (ChannelQueue* queued : queued_channels_) {
    ChannelQueue& channel = *queued;
    if (first == nullptr || channel.items.front().seq < first->items.front().seq) first = &channel;
    if (channel.watermark == kNoWatermark) continue;
    if (lowest == nullptr || channel.watermark < lowest->watermark ||
        (channel.watermark == lowest->watermark &&
         channel.items.front().seq < lowest->items.front().seq)) {
      lowest = &channel;
    }
  }
  ChannelQueue* best = first;
  if (lowest != nullptr && lowest != first && overtakes_ < kMaxOvertakes) {
    // `lowest`'s records lie within its last step past its watermark (the step is >= 0 and
    // the sum saturates).
    const int64_t reach = lowest->watermark > kMaxWatermark - lowest->step
                              ? kMaxWatermark
                              : lowest->watermark + lowest->step;
    if (reach < first->watermark) best = lowest;
  }
  overtakes_ = best == first ? 0 : overtakes_ + 1;
  BufferItem item = PopFront(*best);
  if (const WatermarkAdvance* w = item.as<WatermarkAdvance>()) {
    if (w->ms > best->watermark) {
      // The first watermark's step is unknown: 0 (its records count as at the watermark).
      // Unsigned: -5 then kMaxWatermark must not overflow; at most kMaxWatermark.
      best->step = best->watermark == kNoWatermark
                       ? 0
                       : static_cast<int64_t>(std::min<uint64_t>(
                             static_cast<uint64_t>(w->ms) - static_cast<uint64_t>(best->watermark),
                             static_cast<uint64_t>(kMaxWatermark)));
      best->watermark = w->ms;
    }
  }
  return item;
}

void InputGate::ReleaseCredit(int channel) {
  std::shared_ptr<CreditListener> listener;
  {
    absl::MutexLock lock(&mu_);
    if (closed_ || channel < 0 || channel >= static_cast<int>(listeners_.size())) return;
    listener = listeners_[channel].lock();
  }
  if (listener) listener->AddCredit(1);
}

void InputGate::Wake() {
  absl::MutexLock lock(&mu_);
  woken_ = true;
}

void InputGate::Close() {
  std::vector<std::weak_ptr<CreditListener>> listeners;
  {
    absl::MutexLock lock(&mu_);
    closed_ = true;
    for (ChannelQueue& channel : channels_) channel.items.clear();
    queued_channels_.clear();
    queued_ = 0;
    announcements_.clear();
    has_announcement_.store(false, std::memory_order_relaxed);
    priority_listener_ = nullptr;
    listeners.swap(listeners_);
  }
  for (auto& weak : listeners) {
    if (auto l = weak.lock()) l->GateClosed();
  }
}

size_t InputGate::QueuedForTest() const {
  absl::MutexLock lock(&mu_);
  return queued_ + announcements_.size();
}

int64_t InputGate::PolledWatermarkForTest(int channel) const {
  absl::MutexLock lock(&mu_);
  return channels_[channel].watermark;
}

int64_t InputGate::PolledStepForTest(int channel) const {
  absl::MutexLock lock(&mu_);
  return channels_[channel].step;
}

int64_t InputGate::ChannelsScannedForTest() const {
  absl::MutexLock lock(&mu_);
  return channels_scanned_;
}

LocalChannel::LocalChannel(std::shared_ptr<InputGate> gate, int channel)
    : gate_(std::move(gate)), channel_(channel), credits_(gate_->credits_per_channel()) {}

std::unique_ptr<ChannelWriter> LocalChannel::Connect(std::shared_ptr<InputGate> gate, int channel) {
  auto local = std::make_shared<LocalChannel>(gate, channel);
  gate->SetListener(channel, local);
  // The gate holds the channel as its credit listener; the task holds it as its writer.
  struct Holder final : ChannelWriter {
    std::shared_ptr<LocalChannel> ch;
    absl::Status Send(BufferItem item) override { return ch->Send(std::move(item)); }
    absl::StatusOr<bool> Offer(BufferItem& item, int64_t deadline_nanos) override {
      return ch->Offer(item, deadline_nanos);
    }
    absl::Status SendPriority(BufferItem item) override { return ch->SendPriority(std::move(item)); }
    void Interrupt() override { ch->Interrupt(); }
    absl::Status Close() override { return ch->Close(); }
    void Cancel() override { ch->Cancel(); }
    int64_t CreditWaitNanos() const override { return ch->CreditWaitNanos(); }
  };
  auto holder = std::make_unique<Holder>();
  holder->ch = std::move(local);
  return holder;
}

absl::StatusOr<bool> LocalChannel::Offer(BufferItem& item, int64_t deadline_nanos) {
  {
    absl::MutexLock lock(&mu_);
    auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return credits_ > 0 || cancelled_ || gate_closed_ || interrupted_;
    };
    if (!ready()) {
      const int64_t start = Clock::Real()->NowNanos();
      if (deadline_nanos > start) {
        mu_.AwaitWithTimeout(absl::Condition(&ready), absl::Nanoseconds(deadline_nanos - start));
        wait_nanos_ += Clock::Real()->NowNanos() - start;
      }
    }
    if (cancelled_) return absl::CancelledError("task cancelled");
    if (gate_closed_) return absl::CancelledError("consumer task has stopped");
    if (credits_ == 0) {
      interrupted_ = false;
      return false;
    }
    --credits_;
  }
  BufferItem sent = std::move(item);
  sent.channel = channel_;
  gate_->Push(std::move(sent));
  return true;
}

absl::Status LocalChannel::SendPriority(BufferItem item) {
  {
    absl::MutexLock lock(&mu_);
    if (cancelled_) return absl::CancelledError("task cancelled");
    if (gate_closed_) return absl::CancelledError("consumer task has stopped");
  }
  item.channel = channel_;
  if (Barrier* b = item.as<Barrier>()) b->priority = true;
  gate_->Push(std::move(item));
  return absl::OkStatus();
}

void LocalChannel::Interrupt() {
  absl::MutexLock lock(&mu_);
  interrupted_ = true;
}

absl::Status LocalChannel::Send(BufferItem item) {
  {
    absl::MutexLock lock(&mu_);
    auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return credits_ > 0 || cancelled_ || gate_closed_;
    };
    if (!ready()) {
      int64_t start = Clock::Real()->NowNanos();
      mu_.Await(absl::Condition(&ready));
      wait_nanos_ += Clock::Real()->NowNanos() - start;
    }
    if (cancelled_) return absl::CancelledError("task cancelled");
    if (gate_closed_) return absl::CancelledError("consumer task has stopped");
    --credits_;
  }
  item.channel = channel_;
  gate_->Push(std::move(item));
  return absl::OkStatus();
}

void LocalChannel::Cancel() {
  absl::MutexLock lock(&mu_);
  cancelled_ = true;
}

int64_t LocalChannel::CreditWaitNanos() const {
  absl::MutexLock lock(&mu_);
  return wait_nanos_;
}

void LocalChannel::AddCredit(int n) {
  absl::MutexLock lock(&mu_);
  credits_ += n;
}

void LocalChannel::GateClosed() {
  absl::MutexLock lock(&mu_);
  gate_closed_ = true;
}

}  // namespace sluice::worker
