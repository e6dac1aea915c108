#pragma once

#include <atomic>
#include <deque>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "checkpoint/checkpoint_storage.h"
#include "common/clock.h"
#include "common/key_groups.h"
#include "common/metrics.h"
#include "operators/registry.h"
#include "plan/job_graph.h"
#include "proto/checkpoint.pb.h"
#include "proto/control.pb.h"
#include "state/keyed_state_backend.h"
#include "state/memory_budget.h"
#include "proto/data.pb.h"
#include "worker/internal/barrier_handler.h"
#include "worker/internal/input_gate.h"
#include "worker/internal/operator_chain.h"
#include "worker/internal/record_writer.h"
#include "worker/internal/snapshot_uploader.h"
#include "worker/internal/watermark_valve.h"

namespace sluice::worker {

// Creates the writer for one output channel (local or remote, the factory decides).
using ChannelFactory = std::function<absl::StatusOr<std::unique_ptr<ChannelWriter>>(
    const proto::ChannelHeader& header, const std::string& target_address)>;

// The metadata of the checkpoint a deployment restores from, read once, by the thread of the
// first task that needs it (as the first step of its restore): reading is blocking file I/O,
// which the deploy RPC's callback thread must not do. The read runs under mu_, which only task
// threads of the deployment wait for. Thread-safe.
class RestoreMetadata {
 public:
  // Reads `path` through `storage` (which outlives this) when first asked.
  RestoreMetadata(const checkpoint::CheckpointStorage* storage, std::string path);
  // Metadata already read.
  explicit RestoreMetadata(std::shared_ptr<const proto::CheckpointMetadata> metadata);

  // The metadata, read by the first call; later calls wait for it and get the same result.
  // Errors as CheckpointStorage::ReadMetadata(): kNotFound, kDataLoss (unreadable),
  // kFailedPrecondition (a newer format), each naming the file.
  absl::StatusOr<std::shared_ptr<const proto::CheckpointMetadata>> Get();

 private:
  const checkpoint::CheckpointStorage* const storage_;
  const std::string path_;
  absl::Mutex mu_;
  bool read_ ABSL_GUARDED_BY(mu_) = false;
  absl::StatusOr<std::shared_ptr<const proto::CheckpointMetadata>> result_ ABSL_GUARDED_BY(mu_);
};

// Everything a task needs to know about itself.
struct TaskDescriptor {
  std::string job_id;
  int64_t attempt = 0;
  int vertex = 0;
  int subtask = 0;
  std::shared_ptr<const plan::JobSpec> job;
  std::shared_ptr<const plan::JobGraph> graph;
  // vertex -> subtask -> data address of the worker running it
  std::vector<std::vector<std::string>> placement;
  std::string work_dir;        // local directory for this task's state backends
  // The worker's keyed-state memory, shared by `keyed_operators_per_slot` backends per slot
  // (null: the backends' default sizes). Outlives the task.
  const state::StateMemory* state_memory = nullptr;
  int keyed_operators_per_slot = 1;
  std::string checkpoint_dir;  // the job's directory in checkpoint storage; "" = no checkpoints
  std::shared_ptr<RestoreMetadata> restore;  // null: fresh start
  std::string restore_dir;     // directory the restored state's files are relative to
  // Delivers a checkpoint acknowledgement to the coordinator. Thread-safe.
  std::function<void(proto::CheckpointAck)> ack;
  // Told when the task has processed all input and waits for the final checkpoint.
  std::function<void()> on_end_of_input;
};

// Index of the channel (edge, src subtask) within the input gate of the edge's consumer.
int GateChannelIndex(const plan::JobGraph& graph, int edge, int src_subtask);
// Number of channels into one subtask of `vertex`.
int GateChannelCount(const plan::JobGraph& graph, int vertex);

// The records of `records` (a buffer of `schema`) not processed yet, when a priority event
// interrupts it: the task decoded a slice that starts `slice_bytes` before the buffer's end and
// processed `k` of its records, `done` in all; `key_groups` are the carried key groups of the
// rest (CarriedKeyGroups::Rest). `scratch` is decoded into. kDataLoss on corrupt bytes.
absl::StatusOr<RecordBuffer> RestOfRecordBuffer(const Schema& schema, const RecordBuffer& records,
                                                size_t slice_bytes, size_t k, size_t done,
                                                std::string key_groups, Record* scratch);
// Whether input channel `ch`'s buffer `records` held the records it announced
// (RecordBuffer::num_records): `decoded` were decoded from its bytes. kDataLoss naming the
// channel and both counts otherwise (e.g. in-flight buffers of a checkpoint restored into a job
// whose schema changed, which would decode as other records).
absl::Status CheckRecordCount(int ch, const RecordBuffer& records, size_t decoded);
// `status` (a decoder's error) with the input channel it came from named first, as the task's
// other errors about a received buffer ("input channel 3: corrupt varint in field 1").
absl::Status OfInputChannel(int ch, const absl::Status& status);

// One running subtask: a chain of operators driven by one thread.
//
// Lifecycle: constructed at deploy (its input gate exists from then on, so producers can
// connect), Start() spawns the thread, which opens the operators, runs until end of input,
// cancellation or failure, then reports its final state through `on_done` (called on the task
// thread). Cancel() may be called from any thread. Join() waits for the thread.
// The operators and their state belong to the task thread alone.
class Task {
 public:
  using DoneCallback = std::function<void(Task*)>;

  Task(TaskDescriptor desc, const ops::OperatorRegistry* registry, ChannelFactory channels,
       MetricsRegistry* metrics, Clock* clock, DoneCallback on_done);
  ~Task();

  void Start();
  void Cancel();
  void Join();

  // From any thread: take checkpoint `id` (sources inject its barrier; with `final`, or for a
  // task past its end of input, snapshot directly; with `aligned` (savepoints), never
  // unaligned), or learn that it completed.
  void TriggerCheckpoint(int64_t id, bool final, bool aligned = false);
  void NotifyCheckpointComplete(int64_t id);

  const TaskDescriptor& descriptor() const { return desc_; }
  const std::shared_ptr<InputGate>& gate() const { return gate_; }
  std::string name() const;  // "<job>/<vertex name>#<subtask>"

  // Thread-safe snapshot of state, error and per-operator counters.
  proto::TaskStatus Status() const;

 private:
  struct Mail {
    enum Kind { kTrigger, kNotify } kind;
    int64_t id;
    bool final;
    bool aligned;
  };

  absl::Status Run();
  absl::Status SetUpState();
  // Names an operator subtask's state in kDataLoss errors (its context and its backend).
  StateOrigin OriginOf(const plan::OperatorSpec& spec) const;
  absl::Status RunSource();
  absl::Status RunInput();
  absl::Status AwaitFinalCheckpoint();
  absl::Status HandleMail(bool source);
  // Snapshots checkpoint `id` and (`emit_barrier`) forwards its barrier, with `priority`
  // ahead of unsent output (which becomes in-flight data of the checkpoint). `unaligned`: the
  // in-flight input is still being recorded; the acknowledgement waits for CompleteUnaligned().
  // `timeoutable` (mode auto: a source's barrier, or one forwarded after aligning): the barrier
  // goes in place; while it waits in an output backlog, the acknowledgement waits in
  // output_ack_ (ResolveQueuedBarrier()). A barrier still waiting there from an earlier
  // checkpoint (aborted) is dropped with its acknowledgement. `waited_nanos`: how long the
  // checkpoint had waited before (upstream and aligning; Barrier::waited_ms): its barriers
  // carry it on, and a queued one is converted aligned_timeout after the checkpoint's start.
  absl::Status PerformCheckpoint(int64_t id, bool emit_barrier, int64_t alignment_ms,
                                 bool priority, bool unaligned, bool timeoutable = false,
                                 int64_t waited_nanos = 0);
  void CompleteUnaligned(int64_t id, std::vector<BufferItem> input);
  // output_ack_'s barrier: once it left every backlog, queues the acknowledgement (aligned);
  // if it still waits when aligned_timeout has passed since the checkpoint's start
  // (output_ack_deadline_), converts it to a priority barrier, whose overtaken output is stored
  // as in-flight data.
  absl::Status ResolveQueuedBarrier();
  // A snapshot that will not be acknowledged: removes its local RocksDB checkpoints.
  static void DropUpload(std::unique_ptr<PendingUpload> pending);
  // Feeds one input item to the barrier handler and does what it says.
  absl::Status HandleInputItem(BufferItem& item);
  absl::Status Act(const BarrierHandler::Action& action);
  // Between steps: waits until every output backlog is sent, handling mail, announced
  // barriers and the alignment timeout meanwhile (the task is backpressured).
  absl::Status AwaitOutput(bool source);
  // Restore: queues the in-flight data of the restored checkpoint (output: first in the
  // backlogs; input: restored_input_). Refuses a rescaled restore of an unaligned checkpoint.
  absl::Status RestoreChannelState();
  absl::Status ProcessItem(BufferItem& item);
  // The key groups a buffer of input channel `ch` came with (RecordBuffer::key_groups), read
  // record by record onto the decoded records (Record::carried_key_group(); -1 without).
  struct CarriedKeyGroups {
    const unsigned char* data = nullptr;  // null: none carried
    size_t size = 0;
    size_t width = 1;
    KeyGroupRange range{0, -1};  // the subtask's: a carried key group outside it is refused
    int channel = 0;
    // Sets record `i`'s carried key group (-1 when none are carried). kDataLoss if it has none
    // or one outside `range`.
    absl::Status Set(size_t i, Record* record) const {
      if (data == nullptr) {
        record->set_carried_key_group(-1);
        return absl::OkStatus();
      }
      return SetCarried(i, record);
    }
    absl::Status SetCarried(size_t i, Record* record) const;
    // Set() of records first, first + 1, ... into records[0, n), in one loop.
    absl::Status SetBatch(size_t first, Record* records, size_t n) const;
    // Whether records [0, n) each came with a key group within `range` (when any are carried):
    // kDataLoss, naming the first that did not, as SetBatch() would. The rows path calls it
    // once the whole buffer is decoded, so a corrupt varint later in a buffer is reported
    // before a bad key group earlier in it (the Records paths, which decode and SetBatch() a
    // slice at a time, report the bad key group first when it is in an earlier slice).
    absl::Status Check(size_t n) const;
    // The key groups of the records from `i` on (for the rest of a buffer).
    std::string Rest(size_t i) const;
  };
  // kDataLoss if the buffer's key groups are not one per record.
  absl::StatusOr<CarriedKeyGroups> CarriedKeyGroupsOf(int ch, const RecordBuffer& records) const;
  // Input tasks: whether a priority barrier was announced or the alignment timeout passed.
  // A priority barrier or the auto timeout may be handled now: no restored in-flight input and
  // no released (held-back) item waits, which would precede the barrier without being stored.
  bool PriorityEventsAllowed() const;
  bool PriorityEventDue() const {
    if (gate_->HasAnnouncement()) return true;
    const int64_t deadline = barriers_->TimerDeadlineNanos();
    return deadline != std::numeric_limits<int64_t>::max() && clock_->NowNanos() >= deadline;
  }
  // Handles announced priority barriers and the alignment timeout now. `rest`: partway
  // through a buffer, its records not processed yet (in-flight input if the checkpoint goes
  // unaligned now, see BarrierHandler::SetPartial()); null between buffers.
  absl::Status HandlePriorityEvents(const BufferItem* rest);
  // Passes what the input valve changed to the head operator, in order.
  absl::Status ForwardWatermark(const WatermarkValve::Changes& changes);
  // The task's watermark (input tasks: the valve's; source tasks: what the source emitted)
  // and idleness changed: publish them to Status() and the metrics. Task thread.
  void PublishWatermark(int64_t watermark_ms, bool idle);
  // `code`: a failure's status code, reported with `error` (the coordinator tells DATA_LOSS apart).
  void SetState(proto::TaskState state, const std::string& error, absl::StatusCode code = absl::StatusCode::kOk);

  const TaskDescriptor desc_;
  const ops::OperatorRegistry* registry_;
  ChannelFactory channels_;
  MetricsRegistry* metrics_;
  Clock* clock_;
  DoneCallback on_done_;
  const std::string metrics_owner_;
  // aligned when the job takes no checkpoints
  const plan::CheckpointConfig::Mode mode_;
  std::shared_ptr<InputGate> gate_;
  // The task's output. Cancel() and Interrupt() from any thread (a pending trigger or priority
  // barrier interrupts a wait for credit), the rest on the task thread.
  RecordWriter writer_;
  // The asynchronous part of snapshots (its own thread); queued and stopped by the task thread.
  SnapshotUploader uploader_;
  std::atomic<bool> cancelled_{false};
  std::thread thread_;

  // Owned by the task thread (built in Run()).
  OperatorChain chain_{&cancelled_};
  std::vector<std::unique_ptr<state::KeyedStateBackend>> backends_;  // per chained op (or null)
  bool skip_finish_ = false;
  // The checkpoint restored from (desc_.restore's, read first in Run()); null: fresh start.
  std::shared_ptr<const proto::CheckpointMetadata> restore_;
  std::unique_ptr<BarrierHandler> barriers_;  // input tasks
  std::deque<BufferItem> restored_input_;     // in-flight input to process first
  std::unique_ptr<PendingUpload> unaligned_ack_;  // snapshotted; in-flight input still recorded
  // Snapshotted; its timeoutable barrier still waits in an output backlog (mode auto), to be
  // converted at output_ack_deadline_ (clock_ nanoseconds: aligned_timeout after the
  // checkpoint's start).
  std::unique_ptr<PendingUpload> output_ack_;
  int64_t output_ack_deadline_ = 0;
  std::vector<const Schema*> schema_of_;  // per input channel: its edge's schema
  std::vector<int> input_of_;             // per input channel: the head operator's input index
  // Per input channel: its edge carries key groups (plan::Edge::carry_key_groups); then the
  // key groups this subtask owns, and their width in RecordBuffer::key_groups.
  std::vector<bool> carries_key_groups_;
  KeyGroupRange key_groups_{0, -1};
  size_t key_group_width_ = 1;
  // Per input of the head: records reused for decoding a buffer into one batch, and their width.
  std::vector<std::vector<Record>> input_batches_;
  std::vector<size_t> input_widths_;
  Record rest_scratch_;  // RestOfRecordBuffer()'s decoding
  bool head_batches_ = false;  // the head PrefersBatches(): a decoded buffer is one batch
  // Per input of the head: it PrefersIntRows(), so buffers of NOT NULL integers come to it as
  // rows (ProcessIntRows()), decoded into int_rows_.
  std::vector<bool> head_int_rows_;
  std::vector<int64_t> int_rows_;
  size_t head_inputs_ = 1;     // inputs of the head: one gets Process(), several ProcessInput()
  std::unique_ptr<WatermarkValve> valve_;  // input tasks: combines the channels' event time

  // The task's current watermark and idleness: written by the task thread, read by Status().
  std::atomic<int64_t> watermark_{kNoWatermark};
  std::atomic<bool> watermark_idle_{false};
  // Per chained operator, constant after construction (the gauges are thread-safe).
  std::vector<std::shared_ptr<Gauge>> watermark_gauges_;
  std::vector<std::shared_ptr<Gauge>> idle_gauges_;

  // Mailbox: triggers and completions from RPC threads.
  absl::Mutex mail_mu_;
  std::deque<Mail> mail_ ABSL_GUARDED_BY(mail_mu_);
  std::atomic<bool> has_mail_{false};
  std::atomic<bool> end_of_input_{false};
  int64_t final_checkpoint_ = 0;  // id of the final checkpoint this task acknowledged
  bool final_done_ = false;       // ... and that checkpoint completed
  // On cancel: passes checkpoint-complete notifications still queued to the operators.
  void DeliverNotificationsBeforeClose();

  mutable absl::Mutex mu_;
  proto::TaskState state_ ABSL_GUARDED_BY(mu_) = proto::TASK_DEPLOYING;
  std::string error_ ABSL_GUARDED_BY(mu_);
  absl::StatusCode error_code_ ABSL_GUARDED_BY(mu_) = absl::StatusCode::kOk;
  std::vector<std::pair<std::string, std::shared_ptr<Counter>>> in_counters_ ABSL_GUARDED_BY(mu_);
  std::vector<std::shared_ptr<Counter>> out_counters_ ABSL_GUARDED_BY(mu_);
  std::vector<std::shared_ptr<Counter>> skipped_counters_ ABSL_GUARDED_BY(mu_);
  std::vector<std::shared_ptr<Counter>> late_counters_ ABSL_GUARDED_BY(mu_);  // null: not keyed
  // Keyed operators' state backend statistics (its cache hits and misses, its size), which the
  // backend publishes; all null for other operators.
  struct StateStats {
    std::shared_ptr<Counter> hits;
    std::shared_ptr<Counter> misses;
    std::shared_ptr<Gauge> size_bytes;
    std::shared_ptr<Gauge> delta_bytes;
  };
  std::vector<StateStats> state_stats_ ABSL_GUARDED_BY(mu_);
};

}  // namespace sluice::worker
