#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "common/metrics.h"
#include "common/record.h"
#include "common/state_format.h"
#include "operators/timer_service.h"
#include "plan/job_spec.h"

namespace sluice::state {
class KeyedStateBackend;
}

namespace sluice::ops {

// Where an operator sends its output records. Emit() may block (backpressure: the next
// channel has no credit) and returns an error when the task is being cancelled or a
// downstream operator failed.
//
// Event time travels the same way, in order with the records: EmitWatermark() says no record
// emitted afterwards has a timestamp <= `watermark_ms` (or it is late); EmitWatermarkStatus()
// marks this output idle (downstream stops waiting for its watermarks) or active again.
// Watermarks must not move backwards. Outputs that do not carry event time drop them (the
// default).
class Output {
 public:
  virtual ~Output() = default;
  virtual absl::Status Emit(const Record& record) = 0;
  // Emit() of a record the caller no longer needs: it overwrites every value before it reads,
  // emits or snapshots the record again, so the receiver may take the record's values (swap
  // its strings out) instead of copying them. The default calls Emit().
  virtual absl::Status EmitOwned(Record* record) { return Emit(*record); }
  // EmitOwned() of records[0..n) in order, for sources that generate a batch at a time: a
  // receiver that can take a batch (the task's writer) routes it without a call per record.
  // The default calls EmitOwned() per record, stopping at the first error.
  virtual absl::Status EmitOwnedBatch(Record* records, size_t n) {
    for (size_t i = 0; i < n; ++i) {
      absl::Status s = EmitOwned(&records[i]);
      if (!s.ok()) return s;
    }
    return absl::OkStatus();
  }
  // Emits `record` to the operator's side output `side_output` (its index in
  // OperatorSpec::side_outputs; the record has that side output's schema), which the task routes
  // to the operators reading `<id>.<name>`. Dropped when nothing reads it (the default).
  virtual absl::Status EmitSide(int side_output, const Record& record) { return absl::OkStatus(); }
  virtual absl::Status EmitWatermark(int64_t watermark_ms) { return absl::OkStatus(); }
  virtual absl::Status EmitWatermarkStatus(bool idle) { return absl::OkStatus(); }
};

// What an operator is told when it is opened.
struct OperatorContext {
  const plan::JobSpec* job = nullptr;
  const plan::OperatorSpec* spec = nullptr;
  std::string job_id;
  int subtask = 0;
  int parallelism = 1;
  Clock* clock = nullptr;
  // "<job>/<operator>#<subtask>", for logs and errors.
  std::string task_name;
  int64_t attempt = 1;
  int max_parallelism = 128;
  // Keyed operators: their state backend (owned by the task), covering this subtask's key groups,
  // and their timers (kept in that backend; owned by the task).
  state::KeyedStateBackend* keyed_state = nullptr;
  TimerService* timers = nullptr;
  // Non-keyed state restored for this subtask (see Operator::SnapshotState), and from which
  // checkpoint; restored == false for a fresh start.
  bool restored = false;
  int64_t restored_checkpoint_id = 0;
  std::vector<std::string> restored_state;
  // Job, operator, subtask and restored checkpoint: what every kDataLoss error about this
  // operator's state names (StateOrigin::DataLoss), at restore and when read later.
  StateOrigin state_origin;
  // Counts input records the operator skipped by policy (bad records); owned by the task.
  Counter* records_skipped = nullptr;
  // Keyed operators: counts records dropped for arriving after their event-time state was
  // cleaned up (windows past their allowed lateness, joins past their bounds); owned by the
  // task (`sluice_operator_late_records_dropped_total`, in `sluice status`). Null otherwise.
  Counter* late_records_dropped = nullptr;
  // Whether the job takes checkpoints (sinks are transactional only then).
  bool checkpointing = false;
  // Where operators register metrics of their own (connectors: transactions, lag), labelled
  // with `metric_labels` (job, operator, subtask) and removed with the task (`metrics_owner`).
  // Null in tests that do not care.
  MetricsRegistry* metrics = nullptr;
  Labels metric_labels;
  std::string metrics_owner;
};

// The operator's options, parsed and validated at submission (plan/operator_type.h), as its
// type's options struct `T`. kFailedPrecondition if the spec holds options of another type
// (a factory registered for the wrong type). Call it once, in Open(), and keep the pointer:
// the spec owns the options and outlives the operator.
template <typename T>
absl::StatusOr<const T*> TypedOptions(const OperatorContext& ctx) {
  const T* options = ctx.spec == nullptr ? nullptr : ctx.spec->options_as<T>();
  if (options == nullptr) {
    return absl::FailedPreconditionError(
        "operator " + ctx.task_name + " was given options of another operator type");
  }
  return options;
}

// A batch of records whose fields are all NOT NULL integers (Schema::all_integral()), decoded
// as rows: record r's field f is values[r * width + f]. Its carried key groups
// (Record::carried_key_group()), when key_groups is not null: record r's is
// key_groups[r * key_group_width], little-endian in key_group_width bytes (1 or 2), already
// checked to be within the subtask's range. Valid during the call it is passed to only.
struct IntRowBatch {
  const int64_t* values = nullptr;
  size_t width = 0;
  size_t count = 0;
  const unsigned char* key_groups = nullptr;
  size_t key_group_width = 0;
  // Record r's carried key group, or -1 when none came with it.
  int KeyGroup(size_t r) const {
    if (key_groups == nullptr) return -1;
    const unsigned char* at = key_groups + r * key_group_width;
    return key_group_width == 1 ? at[0] : at[0] | (at[1] << 8);
  }
};

// The operator contract (push-based, as Arrow Acero's ExecNode):
//   Open() once, then the input records in arrival order, either one per Process() call or
//   several per ProcessBatch() call (with ProcessWatermark(), ProcessWatermarkStatus(), timers
//   and checkpoint snapshots only between calls, where they fall in the input: a batch never
//   spans a watermark or a barrier), then Finish() once when every input has ended (flush
//   anything buffered), then Close(). All calls come from the one thread of the task that owns
//   the operator: operators need no locks.
// Process() and ProcessBatch() may call Output::Emit() any number of times. A non-OK status
// fails the task with that status (the task adds the job, task and operator names).
class Operator {
 public:
  virtual ~Operator() = default;

  virtual absl::Status Open(const OperatorContext& ctx, Output* output) {
    ctx_ = ctx;
    output_ = output;
    return absl::OkStatus();
  }
  virtual absl::Status Process(const Record& record) = 0;
  // Process() of a record the operator may take values from (swap its strings out): the caller
  // overwrites every value before it reads or passes the record on again (Output::EmitOwned()).
  // Whatever the operator takes, it must give back a value of the same type. The default calls
  // Process(); single-input operators only (the task calls ProcessInput() for several inputs).
  virtual absl::Status ProcessOwned(Record* record) { return Process(*record); }
  // ProcessOwned() of records[0..n) in order, as a chained operator before this one emits them
  // in a batch (Output::EmitOwnedBatch(): a source's generated batch, a filter's kept runs),
  // called only when TakesOwnedBatches(). The default calls ProcessOwned() per record, stopping
  // at the first error. Internal to the engine: plugins are called per record or per
  // ProcessBatch().
  virtual absl::Status ProcessOwnedBatch(Record* records, size_t n) {
    for (size_t i = 0; i < n; ++i) {
      absl::Status s = ProcessOwned(&records[i]);
      if (!s.ok()) return s;
    }
    return absl::OkStatus();
  }
  // True when the operator overrides ProcessOwnedBatch() to be cheaper than a call per record
  // and takes no long per record (it never waits: a chain checks for cancellation before each
  // batch then, not before each record), as the filter (one pass of its condition over the
  // batch, its kept runs passed on as batches). Otherwise (the default) a chain hands a batch
  // over record by record, through ProcessOwned().
  virtual bool TakesOwnedBatches() const { return false; }
  // A record from input `input_index` (its position in OperatorSpec::inputs): the task calls
  // this instead of Process() when the operator has several inputs. The default ignores the
  // index (union, sinks: inputs of one schema); two-input operators derive TwoInputOperator.
  virtual absl::Status ProcessInput(int input_index, const Record& record) { return Process(record); }
  // `count` records of input `input_index`, in arrival order: the same as ProcessInput() for
  // each (what the default does), but in one call. The records are valid during the call only.
  virtual absl::Status ProcessBatch(int input_index, const Record* records, size_t count) {
    for (size_t i = 0; i < count; ++i) {
      absl::Status s = ProcessInput(input_index, records[i]);
      if (!s.ok()) return s;
    }
    return absl::OkStatus();
  }
  // True when ProcessBatch() is so much cheaper than a call per record that it pays to gather
  // records (plugins: one call across the plugin boundary per batch). The task then calls
  // ProcessBatch() instead of Process()/ProcessInput(): with each decoded input buffer when the
  // operator heads a chain, with copies of the records a chained predecessor emitted otherwise
  // (at most 256, never across a watermark, a barrier or a step of the task's loop).
  virtual bool PrefersBatches() const { return false; }
  // True when, besides PrefersBatches(), the operator folds input `input_index`'s records
  // straight from their integer values (ProcessIntRows()): asked once it is open. The task then
  // hands it each input buffer of that input whose schema is all NOT NULL integers
  // (Schema::all_integral()) as rows of int64s, with the key groups the exchange carried, not
  // as Records. Single-input heads only.
  virtual bool PrefersIntRows(int input_index) const { return false; }
  // The records of `batch` from input `input_index`, in arrival order: the same as
  // ProcessBatch() of Records holding its values and key groups. Called only when
  // PrefersIntRows(input_index); the default (an operator that says it prefers rows but does not
  // take them) returns kUnimplemented saying so, with the input and the number of rows (the task
  // adds the job, task and operator names).
  virtual absl::Status ProcessIntRows(int input_index, const IntRowBatch& batch);
  // True when the operator forwards every record, watermark and watermark status unchanged and
  // does nothing else with them (key_by, union: the task routes their records). A chain may
  // then let the operator before it emit straight past it, without calling its Process() or
  // ProcessWatermark() (its record counters still count); it is opened, finished, snapshotted
  // and closed as any other.
  virtual bool ForwardsUnchanged() const { return false; }
  virtual absl::Status Finish() { return absl::OkStatus(); }
  virtual void Close() {}

  // Event time (on the task thread, in order with Process()): the task's input watermark
  // advanced to `watermark_ms` (it never moves backwards; kMaxWatermark: event time ended).
  // The default forwards it; an operator that holds records back by event time emits what the
  // watermark releases first.
  virtual absl::Status ProcessWatermark(int64_t watermark_ms) {
    return output_->EmitWatermark(watermark_ms);
  }
  // Every input of the task turned idle (true), or one is active again (false). Forwarded by
  // default.
  virtual absl::Status ProcessWatermarkStatus(bool idle) {
    return output_->EmitWatermarkStatus(idle);
  }

  // Keyed operators: a timer registered through OperatorContext::timers is due (event time:
  // the watermark reached `timestamp_ms`, called before ProcessWatermark(); processing time:
  // the clock did). `key` (also the backend's current key) is the timer's serialized key.
  // May emit, use keyed state and register or delete timers.
  virtual absl::Status OnTimer(int64_t timestamp_ms, TimeDomain domain, absl::string_view key) {
    return absl::OkStatus();
  }

  // Checkpointing (all on the task thread).
  // Keyed operators get a KeyedStateBackend and a TimerService in their context: those whose
  // type is keyed (OperatorTraits::keyed), or that say so here.
  virtual bool IsKeyed() const { return false; }
  // Synchronous part of a snapshot: the operator's non-keyed state as a list of entries, which
  // on rescale is split round-robin over the new subtasks, or given whole to every subtask
  // when UnionState() is true. Called when barrier `checkpoint_id` has been aligned, before
  // it is forwarded.
  virtual absl::Status SnapshotState(int64_t checkpoint_id, std::vector<std::string>* entries) {
    return absl::OkStatus();
  }
  virtual bool UnionState() const { return false; }
  // Checkpoint `checkpoint_id` is complete (durable): commit what it covers.
  virtual absl::Status NotifyCheckpointComplete(int64_t checkpoint_id) { return absl::OkStatus(); }

 protected:
  OperatorContext ctx_;
  Output* output_ = nullptr;
};

inline absl::Status Operator::ProcessIntRows(int input_index, const IntRowBatch& batch) {
  return absl::UnimplementedError(absl::StrCat(
      "given ", batch.count, " rows of integers of input ", input_index,
      " (it prefers them: PrefersIntRows), but it does not implement ProcessIntRows()"));
}

// An operator of two inputs (InputArity::kTwo) whose schemas may differ, as joins: every record
// arrives through ProcessInput() with its input's index, 0 or 1 (the order of `inputs` in the
// job), decoded with that input's schema (OperatorSpec::inputs[i] names the producer; the
// task's Process() of a lone record is input 0). Watermarks arrive combined over both inputs
// (the minimum), as for any task with several input channels.
class TwoInputOperator : public Operator {
 public:
  absl::Status Process(const Record& record) final { return ProcessInput(0, record); }
  absl::Status ProcessInput(int input_index, const Record& record) override = 0;
};

// A source produces records on its own: the task calls Poll() repeatedly instead of Process().
class SourceOperator : public Operator {
 public:
  enum class State { kMore, kWait, kEnd };

  absl::Status Process(const Record&) final {
    return absl::FailedPreconditionError("a source has no input");
  }
  // Emits up to `max_records`. Returns kMore when more records are ready now, kWait when the
  // next record is not due before `*wake_at_nanos` (rate limiting), kEnd when the source is
  // exhausted (a bounded source).
  virtual absl::StatusOr<State> Poll(int max_records, int64_t* wake_at_nanos) = 0;
};

}  // namespace sluice::ops
