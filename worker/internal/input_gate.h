#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/optional.h"
#include "common/watermark.h"
#include "worker/internal/data_item.h"

namespace sluice::worker {

// Hears that the consumer freed buffers of one channel, so the producer may send more.
// Implementations are thread-safe and never block.
class CreditListener {
 public:
  virtual ~CreditListener() = default;
  virtual void AddCredit(int n) = 0;
  // The consuming task is gone; the channel should be torn down.
  virtual void GateClosed() {}
};

// The input side of a task: buffers from all its input channels, one bounded queue per channel.
//
// Producers (local channel writers on other task threads, gRPC reactors for remote channels)
// Push() only when they hold a credit for the channel, so a channel never queues more than
// `credits_per_channel` buffers: memory is bounded and Push() never blocks.
// The owning task thread Poll()s and, after it has consumed a buffer, calls ReleaseCredit()
// which tells the channel's producer. Thread-safe.
//
// Which channel Poll() takes from (input selection by event time, cf. Flink's InputSelectable
// and watermark alignment): the channel of the earliest queued arrival, unless the queued
// channel with the lowest watermark is surely behind it in event time, i.e. its last polled
// watermark plus its last watermark step is below the first's last polled watermark; then that
// channel. A channel that has not had a watermark yet is never preferred, and the earliest
// arrival is overtaken at most kMaxOvertakes times in a row (a channel whose watermark stays
// low while its data keeps coming must not starve the others: Flink's alignment is opt-in and
// bounded by a maximum drift; ours is bounded by a share of the reads). So an input that falls behind in event time is read before
// one that runs ahead, and the leader's buffers wait in its queue, holding its credits, which
// backpressures its producer; inputs within a watermark step of each other are read in arrival
// order (a channel's watermark is only known in steps, and preferring by it alone makes inputs
// that advance together take turns running a step ahead: Nexmark q4's bids then waited for their
// auctions, 0.7-0.9 -> 6-16 rows per probe). A channel with nothing queued is never waited for
// (no deadlock with barrier alignment, idle or ended channels), and items of one channel are
// taken in their arrival order. Announcements of priority barriers come before everything.
class InputGate {
 public:
  InputGate(int num_channels, int credits_per_channel)
      : num_channels_(num_channels), credits_per_channel_(credits_per_channel),
        channels_(num_channels), listeners_(num_channels) {}

  int num_channels() const { return num_channels_; }
  int credits_per_channel() const { return credits_per_channel_; }

  // Sets who receives credits of `channel` (a local writer or a remote stream). The gate keeps
  // only a weak reference; the producer side owns the listener.
  void SetListener(int channel, std::shared_ptr<CreditListener> listener);

  // Enqueues a buffer. Dropped silently after Close() (the task is gone). A buffer carrying
  // a watermark is enqueued as its pieces (SplitCarriedWatermark()): the task applies the
  // watermark after the records before it, and returns the credit after the last piece.
  // A priority barrier (`priority`) is also announced: its announcement goes ahead of every
  // queued item except earlier announcements (Flink's priority events), with copies of the
  // items of its channel it overtakes; then the priority listener is called. So is a
  // `timeoutable` barrier (in place, with credit; Flink's EventAnnouncement): the task's
  // alignment timeout then starts when it arrives, not when it is reached, and a switch to
  // unaligned stores the copies. Items of a channel out of range are dropped.
  void Push(BufferItem item);

  // Called (under the gate's lock: it must not call back into the gate) when a priority
  // barrier arrives, so the task can stop waiting for output credit. Set before producers
  // connect; cleared by Close().
  void SetPriorityListener(std::function<void()> listener);

  // The announcement at the front of the queue, if any; never waits.
  absl::optional<BufferItem> PollPriority();
  // Whether an announcement is queued (cheap: no lock; for checks between records).
  bool HasAnnouncement() const { return has_announcement_.load(std::memory_order_relaxed); }

  // Waits until a buffer is available, `deadline_nanos` (monotonic, Clock::Real()) passes, or
  // the gate is woken. Returns nullopt on timeout or wake-up. Takes an announcement first, else
  // the head of a channel chosen as the class comment says. O(channels with queued items) under
  // the lock, once per buffer: channels with nothing queued are not looked at.
  absl::optional<BufferItem> Poll(int64_t deadline_nanos);

  // Returns one credit of `channel` to its producer.
  void ReleaseCredit(int channel);

  // Wakes a waiting Poll() (used for cancellation).
  void Wake();
  // Drops queued buffers, refuses new ones, and tells every listener.
  void Close();

  size_t QueuedForTest() const;
  // The newest watermark Poll() returned from `channel` (kNoWatermark: none yet).
  int64_t PolledWatermarkForTest(int channel) const;
  int64_t PolledStepForTest(int channel) const;
  // How many channels Poll() has looked at to choose one, over all its calls.
  int64_t ChannelsScannedForTest() const;

  // How many Poll()s in a row may take another channel before the earliest arrival.
  static constexpr int kMaxOvertakes = 16;

 private:
  struct Queued {
    uint64_t seq;  // arrival order over all channels
    BufferItem item;
  };
  struct ChannelQueue {
    std::deque<Queued> items;
    // The newest watermark Poll() returned from this channel, and how far it advanced the one
    // before (0 for the first): the channel's queued records stand in event time about within
    // [watermark, watermark + step] (the producer's next watermark is about one step on).
    int64_t watermark = kNoWatermark;
    int64_t step = 0;
    // Its position in queued_channels_ while `items` is not empty.
    size_t queued_at = 0;
  };

  // Queues `item` on its channel. REQUIRES: mu_ held.
  void Enqueue(BufferItem item) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Takes the first item of `channel` (REQUIRES: it has one, mu_ held); a channel left empty
  // leaves queued_channels_.
  BufferItem PopFront(ChannelQueue& channel) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const int num_channels_;
  const int credits_per_channel_;
  mutable absl::Mutex mu_;
  std::vector<ChannelQueue> channels_ ABSL_GUARDED_BY(mu_);
  // The channels whose `items` are not empty, in no particular order (Poll() looks only at
  // these: a gate of many channels, a few of them busy, costs what the busy ones cost).
  std::vector<ChannelQueue*> queued_channels_ ABSL_GUARDED_BY(mu_);
  int64_t channels_scanned_ ABSL_GUARDED_BY(mu_) = 0;  // ChannelsScannedForTest()
  std::deque<BufferItem> announcements_ ABSL_GUARDED_BY(mu_);  // taken before any channel
  size_t queued_ ABSL_GUARDED_BY(mu_) = 0;  // items in channels_
  uint64_t next_seq_ ABSL_GUARDED_BY(mu_) = 0;
  int overtakes_ ABSL_GUARDED_BY(mu_) = 0;  // Poll()s in a row that passed the earliest arrival
  // Weak: producers own their listeners (a local producer also holds the gate).
  std::vector<std::weak_ptr<CreditListener>> listeners_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  bool woken_ ABSL_GUARDED_BY(mu_) = false;
  std::atomic<bool> has_announcement_{false};  // !announcements_.empty()
  std::function<void()> priority_listener_ ABSL_GUARDED_BY(mu_);
};

// Sends buffers of one channel, blocking while it has no credit.
class ChannelWriter {
 public:
  virtual ~ChannelWriter() = default;
  // Sends one buffer; blocks until a credit is available. Returns kCancelled after Cancel(),
  // kUnavailable when the channel broke.
  virtual absl::Status Send(BufferItem item) = 0;
  // Sends `item` if a credit is available by `deadline_nanos` (Clock::Real(); 0: now, without
  // waiting) and Interrupt() was not called meanwhile. Returns whether it was sent (if not,
  // `item` is left as it was); errors as Send().
  virtual absl::StatusOr<bool> Offer(BufferItem& item, int64_t deadline_nanos) = 0;
  // Sends barrier `item` at once, without credit, behind the buffers already sent (Flink's
  // priority events): the consumer announces it ahead of its queue and returns no credit.
  // Never blocks. Errors as Send().
  virtual absl::Status SendPriority(BufferItem item) = 0;
  // Makes a waiting Offer() (or the next one that would wait) return false; any thread.
  virtual void Interrupt() = 0;
  // After the end-of-partition mark was sent: waits until the receiver has everything.
  virtual absl::Status Close() = 0;
  // Unblocks Send() and Close(); safe from any thread.
  virtual void Cancel() = 0;
  // Nanoseconds Send() spent waiting for credit (read by any thread).
  virtual int64_t CreditWaitNanos() const = 0;
};

// A channel between two tasks of one worker: buffers go straight into the consumer's gate.
class LocalChannel final : public ChannelWriter, public CreditListener {
 public:
  LocalChannel(std::shared_ptr<InputGate> gate, int channel);

  // The task's writer for `channel` of `gate`, registered as the channel's credit listener.
  static std::unique_ptr<ChannelWriter> Connect(std::shared_ptr<InputGate> gate, int channel);

  absl::Status Send(BufferItem item) override;
  absl::StatusOr<bool> Offer(BufferItem& item, int64_t deadline_nanos) override;
  absl::Status SendPriority(BufferItem item) override;
  void Interrupt() override;
  absl::Status Close() override { return absl::OkStatus(); }
  void Cancel() override;
  int64_t CreditWaitNanos() const override;
  void AddCredit(int n) override;
  void GateClosed() override;

 private:
  std::shared_ptr<InputGate> gate_;
  const int channel_;
  mutable absl::Mutex mu_;
  int credits_ ABSL_GUARDED_BY(mu_);
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool gate_closed_ ABSL_GUARDED_BY(mu_) = false;
  bool interrupted_ ABSL_GUARDED_BY(mu_) = false;
  int64_t wait_nanos_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace sluice::worker
