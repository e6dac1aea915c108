#include "worker/internal/input_gate.h"

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/clock.h"

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

void InputGate::Push(BufferItem item) {
  absl::MutexLock lock(&mu_);
  if (closed_) return;
  queue_.push_back(std::move(item));
}

absl::optional<BufferItem> InputGate::Poll(int64_t deadline_nanos) {
  absl::MutexLock lock(&mu_);
  auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !queue_.empty() || woken_ || closed_;
  };
  int64_t now = Clock::Real()->NowNanos();
  if (deadline_nanos > now) {
    mu_.AwaitWithTimeout(absl::Condition(&ready), absl::Nanoseconds(deadline_nanos - now));
  }
  woken_ = false;
  if (queue_.empty()) return absl::nullopt;
  BufferItem item = std::move(queue_.front());
  queue_.pop_front();
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
    queue_.clear();
    listeners.swap(listeners_);
  }
  for (auto& weak : listeners) {
    if (auto l = weak.lock()) l->GateClosed();
  }
}

size_t InputGate::QueuedForTest() const {
  absl::MutexLock lock(&mu_);
  return queue_.size();
}

LocalChannel::LocalChannel(std::shared_ptr<InputGate> gate, int channel)
    : gate_(std::move(gate)), channel_(channel), credits_(gate_->credits_per_channel()) {}

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
