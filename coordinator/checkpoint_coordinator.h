#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "checkpoint/checkpoint_storage.h"
#include "common/clock.h"
#include "plan/job_graph.h"
#include "plan/job_spec.h"
#include "proto/checkpoint.pb.h"
#include "proto/control.pb.h"

namespace sluice::coordinator {

// Answers a savepoint's caller with its path or why it failed.
using SavepointCallback = std::function<void(absl::StatusOr<std::string>)>;

// A checkpoint (or savepoint) that was triggered and is not complete yet.
struct PendingCheckpoint {
  int64_t id = 0;
  int64_t trigger_nanos = 0;
  int64_t trigger_ms = 0;
  bool final = false;
  bool savepoint = false;
  std::string savepoint_dir;
  bool stop_after = false;  // `stop --savepoint`: cancel the job once it is committed
  SavepointCallback done;   // savepoints only
  std::map<std::pair<int, int>, proto::CheckpointAck> acks;  // (vertex, subtask) -> ack
};

// Every task acknowledged: the metadata to write (and a savepoint to copy) on the I/O thread.
struct CheckpointWrite {
  std::shared_ptr<PendingCheckpoint> pending;
  std::shared_ptr<const proto::CheckpointMetadata> metadata;
  std::string dir;  // the job's checkpoint directory
};

// What writing a CheckpointWrite gave: the metadata's path and the savepoint's ("" for a
// checkpoint), or the failures.
struct CheckpointWriteResult {
  absl::StatusOr<std::string> metadata_path = std::string();
  absl::StatusOr<std::string> savepoint_path = std::string();
};

// A checkpoint that became the job's latest: the caller makes the job's record (naming it)
// durable, then calls OnRecordWritten; only if the record is durable are older checkpoints
// deleted (CleanUp).
struct CheckpointCommit {
  std::shared_ptr<PendingCheckpoint> pending;
  std::shared_ptr<const proto::CheckpointMetadata> metadata;
  std::string path;          // the checkpoint's directory, or the savepoint's
  bool stop = false;         // `stop --savepoint` of a running job: the job is to be stopped
  std::set<int64_t> keep;    // the retained checkpoints (retention deletes the others)
};

// What the caller does after a call, in this order: answer savepoint callers (dispatcher
// thread), discard aborted checkpoints' files (I/O thread), fail the job over, send a trigger
// to every task, write a completed checkpoint (I/O thread), tell the tasks a checkpoint is
// committed.
struct CheckpointActions {
  struct ToTasks {
    int64_t id = 0;
    bool final = false;
    bool aligned = false;  // savepoints are always aligned (Flink's too): no in-flight data
  };
  std::vector<std::pair<SavepointCallback, absl::StatusOr<std::string>>> replies;
  std::vector<int64_t> discard;
  std::optional<std::string> fail_job;
  std::optional<ToTasks> trigger;
  std::shared_ptr<const CheckpointWrite> write;
  std::optional<ToTasks> notify_complete;
};

// The checkpoint coordinator of one job (Flink's CheckpointCoordinator): triggers checkpoints on
// the interval (after min_pause) and the final one once all input ended, collects the tasks'
// acks, times a checkpoint out, aborts it when a task declines or the job fails, counts failures
// towards checkpoint.tolerable_failures (timeouts, declines, unwritable metadata; not aborts
// caused by a restart, a savepoint or the end of input) and then asks for the job to fail over,
// builds the metadata once every task acked, and keeps the latest completed checkpoint (the
// restore point), the retained ones and the history shown in status.
//
// Completing a checkpoint takes three steps, so that tasks commit only what a restarted
// coordinator would restore: Acknowledge() hands out a CheckpointWrite (no other checkpoint is
// triggered until it is written); the caller runs Write() on the I/O thread and passes the
// result to OnWritten(), which aborts the checkpoint or makes it the latest and hands out a
// CheckpointCommit; the caller makes the job record durable and passes the outcome to
// OnRecordWritten(), which only then asks for the tasks to be told (notify_complete), and the
// caller runs CleanUp() on the I/O thread.
//
// Not thread-safe, and makes no calls and no I/O: the Coordinator owns one per job and calls it
// under its mu_ (gRPC callback threads, the monitor thread, the I/O thread after a write);
// effects come back as CheckpointActions. The static Write() and CleanUp() do blocking I/O: the
// I/O thread runs them, without mu_. Times come from `clock`.
class CheckpointCoordinator {
 public:
  // REQUIRES: `clock` outlives this.
  CheckpointCoordinator(std::string job_id, std::string dir, std::shared_ptr<const plan::JobSpec> spec,
                        std::shared_ptr<const plan::JobGraph> graph, Clock* clock);

  // Restore point of a job submitted from a savepoint or recovered from its record: where it
  // restores from and the next checkpoint id; `retained` are its checkpoints in `dir_` still
  // covered by retention, oldest first.
  void SetRestorePoint(std::string metadata, std::string dir, int64_t next_checkpoint_id,
                       std::deque<int64_t> retained = {});

  // The monitor's periodic call for a RUNNING job: times out the pending checkpoint, aborts it
  // when all input ended (barriers cannot reach tasks whose input ended), triggers the final
  // checkpoint once all input ended, or the next periodic one. Nothing while a completed
  // checkpoint is being written, or for a job without checkpoints.
  void Tick(bool all_input_ended, CheckpointActions* out);
  // Starts a savepoint (aborting a pending checkpoint); `done` hears its path or why it failed.
  void TriggerSavepoint(std::string savepoint_dir, bool stop_after, SavepointCallback done,
                        CheckpointActions* out);
  // A task's ack (of the job's current attempt: the caller checks). Acks of another than the
  // pending checkpoint (older, aborted) are ignored; a declined one aborts it (counted); the
  // last one of `total_tasks` completes it (out->write).
  void Acknowledge(const proto::CheckpointAck& ack, size_t total_tasks, CheckpointActions* out);
  // Aborts the pending checkpoint, if any (`counts`: towards tolerable_failures).
  void Abort(const std::string& reason, bool counts, CheckpointActions* out);

  // Writes the metadata (and copies a savepoint) durably. Blocking I/O: the I/O thread.
  static CheckpointWriteResult Write(const checkpoint::CheckpointStorage& storage, const CheckpointWrite& w);
  // The outcome of Write(). A failed write aborts it (counted if `counts_failure`: the job is
  // on the attempt that took it and has not ended). `same_attempt` false (the job restarted
  // meanwhile, restoring from before it): it is discarded, never a restore point; a savepoint's
  // copy is still reported. Otherwise it becomes the latest (`job_running`: a `stop` applies)
  // and the commit is returned.
  std::optional<CheckpointCommit> OnWritten(const CheckpointWrite& w, const CheckpointWriteResult& result,
                                            bool same_attempt, bool counts_failure, bool job_running,
                                            CheckpointActions* out);
  // The job's record naming the commit was written (`written`), and the job is still on the
  // attempt (`current`): only then are the tasks told to commit. Answers a savepoint's caller.
  static void OnRecordWritten(const CheckpointCommit& c, const absl::Status& written, bool current,
                              CheckpointActions* out);
  // Retention and shared-file garbage collection after a commit's record is durable. Blocking
  // I/O: the I/O thread; failures are logged.
  static void CleanUp(const checkpoint::CheckpointStorage& storage, const std::string& dir,
                      const CheckpointCommit& c);

  // After a restart: the pending checkpoint (already aborted) is dropped, failures and pauses
  // count from now.
  void ResetForAttempt();

  // The history (last 10) and the checkpoints in progress, for status.
  void AddTo(proto::JobInfo* info) const;
  bool has_pending() const { return pending_ != nullptr; }
  int64_t next_checkpoint_id() const { return next_checkpoint_id_; }
  const std::string& latest_metadata() const { return latest_metadata_; }
  const std::string& latest_dir() const { return latest_dir_; }
  const std::string& dir() const { return dir_; }
  int consecutive_failures() const { return consecutive_failures_; }

 private:
  void Trigger(bool final, std::unique_ptr<PendingCheckpoint> p, CheckpointActions* out);
  // Records `p` as aborted (history, savepoint caller, its files discarded).
  void RecordAbort(const PendingCheckpoint& p, const std::string& reason, CheckpointActions* out);
  // Counts a failure; past tolerable_failures asks for the job to fail over with `what`.
  void CountFailure(const std::string& what, CheckpointActions* out);
  void AddHistory(proto::CheckpointInfo info);

  const std::string job_id_;
  const std::string dir_;
  const std::shared_ptr<const plan::JobSpec> spec_;
  const std::shared_ptr<const plan::JobGraph> graph_;
  Clock* const clock_;

  int64_t next_checkpoint_id_ = 1;
  int64_t last_checkpoint_end_nanos_ = 0;
  int64_t last_trigger_nanos_ = 0;
  std::unique_ptr<PendingCheckpoint> pending_;
  // A checkpoint whose metadata the I/O thread is writing (shown as in progress); no other is
  // triggered meanwhile.
  std::shared_ptr<const PendingCheckpoint> completing_;
  std::deque<int64_t> retained_;   // completed checkpoints in dir_, oldest first
  std::string latest_metadata_;    // path of the latest completed checkpoint's _metadata
  std::string latest_dir_;         // directory its files are relative to
  std::deque<proto::CheckpointInfo> history_;
  int consecutive_failures_ = 0;
};

}  // namespace sluice::coordinator
