#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/metrics.h"
#include "operators/operator.h"
#include "operators/registry.h"
#include "operators/timer_service.h"
#include "plan/job_spec.h"
#include "proto/checkpoint.pb.h"
#include "worker/internal/record_writer.h"

namespace sluice::worker {

// One operator of a chain, with its record counters and (keyed operators) its timers.
struct ChainedOperator {
  const plan::OperatorSpec* spec = nullptr;
  std::unique_ptr<ops::Operator> op;
  std::shared_ptr<Counter> in;
  std::shared_ptr<Counter> out;
  std::unique_ptr<ops::TimerService> timers;  // keyed operators

  // The operator's input watermark advanced: its event-time timers due by then fire first.
  absl::Status Watermark(int64_t watermark_ms);
};

// The operators of one subtask, chained (Flink's OperatorChain): each emits straight into the
// next, the last into the task's RecordWriter. Owns the operators' lifecycle (create, open head
// first, finish head to tail, close) and is the one place that names the operator a failure
// came from (Named(), failed_operator()).
//
// Emitting through the chain: the next operator gets each record directly, or, when it
// PrefersBatches() (asked once every operator is open: an operator may decide at Open()), copies of the records (into reused Records: no allocation once grown) are
// gathered and handed over with ProcessBatch() when 256 are gathered, before a watermark or
// watermark status passes, and at Flush() (which the task calls after every step of its loop:
// a source poll, an input buffer, timers, each Finish(), and before a snapshot), so the next
// operator sees nothing else while records wait. Once `cancelled` is set, the chain stops
// (kCancelled), so a slow operator does not hold a cancelled task for the rest of a batch.
// Each output counts its records into the operators' `out`/`in` Counters as they pass (records
// gathered for a batch into `in` when handed over); the head's `in` is the task's to count. An
// operator that ForwardsUnchanged() (key_by, union) after another, without timers, is bypassed:
// the one before it emits straight into the one after it (a forward key_by between a join and
// an aggregate), or into the writer when it is the last, counting the bypassed operator's
// records too.
//
// Threads: owned by the task thread, like the operators; not thread-safe. `cancelled` is read
// with relaxed loads and may be set by any thread.
class OperatorChain {
 public:
  // Told the watermarks and idleness a source at the head emits (they are the task's).
  struct SourceWatermarks {
    std::function<void(int64_t watermark_ms)> advanced;
    std::function<void(bool idle)> idle;
  };

  explicit OperatorChain(const std::atomic<bool>* cancelled);
  ~OperatorChain();
  OperatorChain(const OperatorChain&) = delete;
  OperatorChain& operator=(const OperatorChain&) = delete;

  // Setup: appends the operator of `spec` (which outlives the chain), made by `registry`,
  // counting its records into `in` and out of it into `out`. Errors: the registry's.
  absl::Status Add(const ops::OperatorRegistry& registry, const plan::OperatorSpec* spec,
                   std::shared_ptr<Counter> in, std::shared_ptr<Counter> out);

  size_t size() const { return ops_.size(); }
  ChainedOperator& op(size_t i) { return *ops_[i]; }
  const ChainedOperator& op(size_t i) const { return *ops_[i]; }
  ChainedOperator& head() { return *ops_.front(); }

  // Wires operator i to i+1 and the last to `writer`, then opens them head first with
  // `context(i)`. `source` is used when the head is a source. Errors: the failing Open()'s,
  // named.
  absl::Status Open(RecordWriter* writer, SourceWatermarks source,
                    const std::function<ops::OperatorContext(size_t i)>& context);
  // Every operator was opened.
  bool opened() const { return opened_; }

  // Returns `s`; a failure (other than kCancelled) of operator `i` names it, unless an earlier
  // failure was named.
  absl::Status Named(size_t i, absl::Status s);
  // The operator the task's failure came from; "" if none (or not an operator's).
  const std::string& failed_operator() const { return failed_op_; }

  // Hands the records gathered for operators that prefer batches to them, head to tail.
  absl::Status Flush();
  // End of input: Finish() each operator head to tail (a Finish may emit into the next one),
  // flushing after each.
  absl::Status Finish();
  // Fires the processing-time timers that are due, of every keyed operator.
  absl::Status FireProcessingTimers();
  // When (in clock nanoseconds, given it is `now_nanos`) the next processing-time timer may be
  // due; INT64_MAX: none.
  int64_t ProcessingTimerDeadline(int64_t now_nanos) const;
  // Operator state of every operator for checkpoint `id`, into `state` (keyed state is the
  // backends' business).
  absl::Status SnapshotState(int64_t id, proto::SubtaskState* state);
  // Tells every operator that checkpoint `id` completed.
  absl::Status NotifyCheckpointComplete(int64_t id);
  // Closes every operator (also when Open() failed part way).
  void Close();

 private:
  class ChainOutput;
  class TailOutput;

  const std::atomic<bool>* const cancelled_;
  SourceWatermarks source_;  // outputs of a source head point here
  std::vector<std::unique_ptr<ChainedOperator>> ops_;
  std::vector<std::unique_ptr<ChainOutput>> chain_outputs_;  // ops_[i] -> ops_[i + 1]
  std::unique_ptr<TailOutput> tail_output_;
  // ops_[n - 2] -> writer, past a last operator that ForwardsUnchanged(); else null.
  std::unique_ptr<TailOutput> bypass_output_;
  std::string failed_op_;
  bool opened_ = false;
};

}  // namespace sluice::worker
