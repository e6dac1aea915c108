#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/grpcpp.h"
#include "proto/data.grpc.pb.h"
#include "worker/internal/input_gate.h"

namespace sluice::worker {

// The receiving side's credit bookkeeping for one remote channel. Credits the consumer frees
// go back in batches while the producer still holds more than half of the channel's credits
// (by the receiver's count: granted minus buffers arrived), so a fast consumer answers a few
// buffers with one message instead of one each; once the producer holds half or fewer, every
// freed credit goes back at once, so it never waits for a credit held back here. Not
// thread-safe (the stream's reactor guards it).
class CreditBatcher {
 public:
  explicit CreditBatcher(int credits_per_channel) : hold_above_(credits_per_channel / 2) {}

  // The consumer freed `n` credits.
  void Freed(int n) { pending_ += n; }
  // A buffer (an item that takes a credit) arrived from the producer.
  void Arrived() { --granted_; }
  // The credits to send now, counted as granted; 0 when there are none or they are held back.
  int Take() {
    if (pending_ == 0 || granted_ > hold_above_) return 0;
    const int n = pending_;
    pending_ = 0;
    granted_ += n;
    return n;
  }

 private:
  const int hold_above_;
  int pending_ = 0;  // freed, not sent
  int granted_ = 0;  // sent, minus buffers arrived: what the producer holds or has in flight
};

// Finds the input gate and channel index a remote producer addresses.
// Returns kNotFound when the worker runs no such task.
using GateResolver = std::function<absl::Status(const proto::ChannelHeader&,
                                                std::shared_ptr<InputGate>* gate, int* channel)>;

// The receiving side of remote channels: the DataPlane gRPC service. Each Exchange stream is
// one channel; its reactor pushes buffers into the task's gate and sends credits back.
class DataPlaneService final : public proto::DataPlane::CallbackService {
 public:
  explicit DataPlaneService(GateResolver resolver) : resolver_(std::move(resolver)) {}

  grpc::ServerBidiReactor<proto::DataMessage, proto::DataMessage>* Exchange(
      grpc::CallbackServerContext* context) override;

 private:
  GateResolver resolver_;
};

// The sending side of one remote channel: a client bidi stream. Buffers are written one at a
// time (one write in flight); Send() blocks the task thread while the receiver has granted
// no credit. Owned by the task; the destructor waits for the stream to end (call Cancel() or
// Close() first).
class RemoteChannelWriter final : public ChannelWriter,
                                  public grpc::ClientBidiReactor<proto::DataMessage,
                                                                 proto::DataMessage> {
 public:
  RemoteChannelWriter(proto::DataPlane::Stub* stub, proto::ChannelHeader header,
                      const std::string& target_address);
  ~RemoteChannelWriter() override;

  absl::Status Send(BufferItem item) override;
  absl::StatusOr<bool> Offer(BufferItem& item, int64_t deadline_nanos) override;
  absl::Status SendPriority(BufferItem item) override;
  void Interrupt() override;
  absl::Status Close() override;
  void Cancel() override;
  int64_t CreditWaitNanos() const override;

  // gRPC reactions (never block).
  void OnWriteDone(bool ok) override;
  void OnReadDone(bool ok) override;
  void OnWritesDoneDone(bool ok) override {}
  void OnDone(const grpc::Status& status) override;

 private:
  void MaybeStartWrite() ABSL_LOCKS_EXCLUDED(mu_);
  void ReleaseHold() ABSL_LOCKS_EXCLUDED(mu_);
  bool IsBroken() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return broken_;
  }
  // Waits for a credit until `deadline_nanos` (INT64_MAX: for ever; interruptible unless so),
  // takes it and queues `item`. Returns false (item untouched) if none came or interrupted.
  absl::StatusOr<bool> Enqueue(BufferItem& item, int64_t deadline_nanos) ABSL_LOCKS_EXCLUDED(mu_);
  // The channel's error after cancellation or a broken stream; OK while usable.
  absl::Status UsableLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  grpc::ClientContext context_;
  const std::string name_;
  proto::DataMessage read_msg_;

  mutable absl::Mutex mu_;
  // Front is being written. Holds at most the credits granted plus one priority barrier per
  // checkpoint (those take no credit).
  std::deque<proto::DataMessage> queue_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool closing_ ABSL_GUARDED_BY(mu_) = false;
  bool writes_done_sent_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  bool broken_ ABSL_GUARDED_BY(mu_) = false;
  bool hold_released_ ABSL_GUARDED_BY(mu_) = false;
  bool interrupted_ ABSL_GUARDED_BY(mu_) = false;
  int credits_ ABSL_GUARDED_BY(mu_) = 0;
  grpc::Status final_status_ ABSL_GUARDED_BY(mu_);
  int64_t wait_nanos_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace sluice::worker
