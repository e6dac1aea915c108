#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "common/metrics.h"
#include "common/record.h"
#include "operators/key_hasher.h"
#include "plan/job_graph.h"
#include "proto/checkpoint.pb.h"
#include "worker/internal/input_gate.h"

namespace sluice::worker {

// Bytes of encoded records after which a channel's buffer is sent.
inline constexpr size_t kOutputBufferBytes = 32 * 1024;
// Buffers a channel may hold unsent (waiting for credit) before emitting blocks the operator:
// enough for what one step (a source poll, an input buffer) normally emits, so the task waits
// for credit between steps, where it can take checkpoints (Flink's overdraft buffers).
inline constexpr size_t kOverdraftBuffers = 4;

// The output side of a task (Flink's RecordWriter and ResultPartition): the chain's last
// operator emits records, watermarks, barriers and end of partition here, and it routes them
// to every output edge (records: to the edges of the main output, or of one side output).
//
// Per edge, records are partitioned to its channels (forward, hash by key group, rebalance,
// broadcast) and encoded into one kOutputBufferBytes buffer per channel, sent when full, at
// control items (barriers, watermark status changes, end of partition), or after the job's
// buffer timeout (FlushIfDue(), by the Clock given at construction). A watermark sends
// nothing: it waits in each channel's buffer behind the records before it (a newer one
// replaces it) and rides with that buffer (proto::DataMessage), alone if no record follows
// within the buffer timeout; so a watermark waits at most the buffer timeout. A buffer without credit waits in its
// channel's backlog, in order with everything after it; the task sends backlogs between steps
// (TrySend(), WaitForCredit()), so an operator waits for credit only when one step emits more
// than kOverdraftBuffers buffers to one channel. Priority barriers (unaligned-capable) skip the
// backlog; the backlog they overtake is the checkpoint's output-side in-flight data. A
// timeoutable barrier waits in the backlog and is converted to a priority one if it is still
// there when the task's timeout passes (ConvertQueuedBarrier()).
//
// Threads: Cancel() and Interrupt() may be called from any thread (they reach the channel
// writers added so far, and Cancel() those added later). Everything else belongs to the task
// thread. After Shutdown() neither reaches a channel any more.
class RecordWriter {
 public:
  // `num_side_outputs`: side outputs the chain's last operator declares.
  RecordWriter(Clock* clock, int64_t buffer_timeout_nanos, int num_side_outputs);
  ~RecordWriter();
  RecordWriter(const RecordWriter&) = delete;
  RecordWriter& operator=(const RecordWriter&) = delete;

  // Setup, task thread, before anything is emitted: adds output edge `edge` (which outlives
  // this writer) with one writer per channel, in the order of the consumers' subtasks. Its
  // channels are numbered after those of the edges added before (the numbering of in-flight
  // data). `hasher`: the edge's key, for kHash. `metrics` (may be null): per-channel counters
  // labelled `labels` plus edge and `targets[i]`, owned by `metrics_owner`. A cancelled
  // writer cancels the channels at once.
  void AddEdge(const plan::Edge* edge, int max_parallelism,
               std::vector<std::unique_ptr<ChannelWriter>> channels, ops::KeyHasher hasher,
               MetricsRegistry* metrics, const Labels& labels, const std::string& metrics_owner,
               const std::vector<std::string>& targets);

  // Records of the main output, and of side output `side_output` (dropped if no edge reads
  // it). Errors: the channel's (kCancelled, kUnavailable).
  absl::Status Emit(const Record& r);
  // Emit() of records[0..n) in order (the same buffers); a hash edge hashes a run of keys in
  // one loop before encoding them.
  absl::Status EmitBatch(const Record* records, size_t n);
  absl::Status EmitSide(int side_output, const Record& r);
  // Control items to every edge, after everything emitted before them. A watermark is sent
  // with the next buffer of each channel (see the class comment); it never blocks.
  absl::Status EmitWatermark(int64_t watermark_ms);
  absl::Status EmitWatermarkStatus(bool idle);
  // Checkpoint barrier `id` on every channel. With `priority`, ahead of the backlog, which is
  // added to `in_flight` as output-side channel state (null: not recorded); `timed_out`: marked
  // so (see Barrier).
  // `waited_ms`: how long its checkpoint has waited (see Barrier).
  absl::Status EmitBarrier(int64_t id, bool priority, proto::ChannelStateFile* in_flight,
                           bool timed_out = false, int64_t waited_ms = 0);
  // Checkpoint barrier `id` in place on every channel (as without `priority`), marked
  // timeoutable (its checkpoint may go unaligned: a source's in mode auto, or one a task
  // forwards after aligning). Where it waits in a
  // channel's backlog behind buffers without credit, ConvertQueuedBarrier() may still send it
  // ahead of them (Flink's aligned checkpoint timeout of output buffers, FLINK-23041).
  // Its checkpoint has waited `waited_nanos` so far; the barrier says how long it has waited
  // when it leaves (Barrier::waited_ms), so a receiver's aligned_timeout counts the rest.
  // REQUIRES: no earlier one queued (HasQueuedBarrier() false).
  absl::Status EmitTimeoutableBarrier(int64_t id, int64_t waited_nanos = 0);
  // Whether the last timeoutable barrier still waits in a backlog on some channel (it leaves
  // with the backlog: TrySend(), WaitForCredit(), an emit beyond the overdraft buffers).
  bool HasQueuedBarrier() const;
  // Where the timeoutable barrier still waits: sends it with priority (and `timed_out`) ahead of
  // the backlog, whose items before it are added to `in_flight` as output-side channel state,
  // exactly as EmitBarrier() with `priority` stores them; the items after it stay queued.
  absl::Status ConvertQueuedBarrier(proto::ChannelStateFile* in_flight);
  // Takes the timeoutable barrier out of the backlogs where it still waits, unsent (its
  // checkpoint was aborted: receivers that have it on other channels give it up when the next
  // checkpoint's barrier arrives).
  void DropQueuedBarrier();
  // End of input: flushes, sends end of partition, waits until every channel has sent
  // everything and closes the channels.
  absl::Status EndOfPartition();

  // Sends every partly filled buffer and pending watermark (to the backlog if it has no
  // credit).
  absl::Status FlushAll();
  // Sends the partly filled buffers (and pending watermarks) of edges whose oldest record or
  // watermark waited the buffer timeout
  // (every one with `force`).
  absl::Status FlushIfDue(bool force);
  // When (clock nanoseconds) the next partly filled buffer times out; INT64_MAX: none.
  int64_t FlushDeadlineNanos() const;

  // Sends backlogged buffers while credit lasts, without waiting. Returns whether every
  // backlog is empty.
  absl::StatusOr<bool> TrySend();
  // Sends backlogged buffers, waiting for credit until `deadline_nanos` (Clock::Real()) or an
  // Interrupt(). Returns OK also when the backlog is left (call TrySend() to know).
  absl::Status WaitForCredit(int64_t deadline_nanos);
  bool HasBacklog() const;

  // Restore: `item`, output-side in-flight data of output channel `channel` (numbered as in
  // AddEdge()), goes into that channel's backlog, before anything emitted later. Returns false
  // if there is no such channel.
  bool PushRestored(int channel, BufferItem item);
  int num_channels() const;

  // Any thread: cancels every channel (now and added later): blocked sends return kCancelled.
  void Cancel();
  // Any thread: wakes a WaitForCredit() (or the next one) so the task can handle a priority
  // event.
  void Interrupt();
  // Task thread, at teardown: Cancel()/Interrupt() no longer reach the channels; with
  // `cancel_channels` (the task failed) they are cancelled; then the channels are destroyed.
  void Shutdown(bool cancel_channels);

 private:
  class EdgeOutput;

  Clock* const clock_;
  const int64_t buffer_timeout_nanos_;

  // Task thread.
  std::vector<std::unique_ptr<EdgeOutput>> edges_;
  std::vector<EdgeOutput*> main_;
  std::vector<std::vector<EdgeOutput*>> side_;

  // Channel writers Cancel() and Interrupt() reach.
  mutable absl::Mutex mu_;
  std::vector<ChannelWriter*> live_ ABSL_GUARDED_BY(mu_);
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace sluice::worker
