#pragma once

#include <deque>
#include <utility>
#include <functional>
#include <map>
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
#include "common/filesystem.h"
#include "common/http_server.h"
#include "common/metrics.h"
#include "coordinator/checkpoint_coordinator.h"
#include "coordinator/ha_store.h"
#include "coordinator/worker_registry.h"
#include "grpcpp/grpcpp.h"
#include "plan/job_graph.h"
#include "plan/operator_type.h"
#include "plan/plan_codec.h"
#include "proto/checkpoint.pb.h"
#include "proto/control.grpc.pb.h"

namespace sluice::coordinator {

struct CoordinatorOptions {
  std::string checkpoint_dir = "/tmp/sluice-checkpoints";  // <dir>/<job>/chk-<id>/...
  std::string savepoint_dir = "/tmp/sluice-savepoints";
  std::string ha_dir;   // durable job records; "" = none (jobs do not survive a restart)
  std::string host = "127.0.0.1";   // bind address (0.0.0.0: every interface)
  std::string advertise_address;    // host workers and the CLI reach it at; "": DefaultAdvertiseHost
  int port = 0;        // 0 picks a free port
  int http_port = 0;   // 0 picks a free port, -1 disables
  int64_t heartbeat_timeout_ms = 3000;
  // Ended jobs (finished, cancelled, failed) are kept, also in the HA store, for `sluice list`
  // and `status` after a restart; a record is dropped when it ended longer ago than this, or
  // when more than max_ended_jobs have ended (oldest first), as Flink's jobstore.
  int64_t ended_job_retention_ms = 3'600'000;
  int max_ended_jobs = 1000;
  // A restarting job waits up to this long (from its failure) for as many workers as its last
  // placement used, so that a replacement that is starting gets its share of the subtasks.
  int64_t spread_wait_ms = 2000;
  // Cluster-wide plugins: every *.so here is loaded (in the sluice-plugin-host helper, not in
  // this process) to validate jobs using their operator types; give the workers the same
  // --plugin-dir. "" = none.
  std::string plugin_dir;
  Clock* clock = Clock::Real();
  // Where checkpoints, savepoints and HA records are read and written (tests substitute a
  // fault-injecting one).
  FileSystem* file_system = FileSystem::Default();
};

// The cluster's brain: tracks workers by heartbeat, accepts jobs, plans and schedules them onto
// worker slots, deploys them, follows their tasks to a final job state, and declares a worker
// lost when its heartbeats stop (failing its jobs, naming it). The decisions live in pieces it
// owns and calls under mu_: the WorkerRegistry (workers, liveness, slots), PlaceJob() (the
// scheduler, a pure function) and one CheckpointCoordinator per job, which returns what to do
// (RPCs, storage I/O) for this class to run on its threads.
//
// Threads: gRPC callback threads run the Coordinator service (handlers only touch state under
// mu_ and never make outgoing calls nor file I/O); one dispatcher thread makes every outgoing RPC
// to workers (deploy, start, cancel) in order; one I/O thread does every checkpoint-storage and
// HA-store call (metadata writes, savepoint copies, retention and garbage collection, job
// records) in order, outside mu_, re-taking mu_ to apply the result; one planner thread plans
// submitted jobs; one monitor thread checks heartbeat ages and computes rates. Start() and
// Stop() from one thread.
class Coordinator {
 public:
  explicit Coordinator(CoordinatorOptions options);
  ~Coordinator();

  absl::Status Start();
  void Stop();

  std::string address() const { return address_; }
  int http_port() const { return http_port_; }

  // The RPC handlers' logic, callable directly (tests).
  absl::StatusOr<proto::RegisterWorkerResponse> RegisterWorker(const proto::RegisterWorkerRequest& req);
  proto::HeartbeatResponse Heartbeat(const proto::HeartbeatRequest& req);
  // A worker leaving on purpose: it is lost now (its jobs restart from their latest checkpoint
  // on the remaining slots, or wait for a replacement) and the restart uses no attempt.
  absl::Status DeregisterWorker(const proto::DeregisterWorkerRequest& req);
  // /readyz: OK once the HA store is loaded and jobs are accepted.
  absl::Status Ready() const;
  void ReportTaskState(const proto::TaskStatus& status);
  absl::StatusOr<proto::SubmitJobResponse> SubmitJob(const proto::SubmitJobRequest& req);
  proto::ListJobsResponse ListJobs();
  absl::StatusOr<proto::JobInfo> GetJob(const std::string& job_id);
  // A long poll: calls `done` with the job's info (as GetJob()) once the job has ended, or once
  // `timeout_ms` (capped at kMaxWaitJobMs) have passed with its info as of then; at once when
  // the job is unknown (kNotFound), has ended, timeout_ms <= 0 or the coordinator stops. `done`
  // runs under the coordinator's lock (on a gRPC, monitor or caller thread): it must not block
  // nor call back into the coordinator.
  using WaitJobCallback = std::function<void(absl::StatusOr<proto::JobInfo>)>;
  static constexpr int64_t kMaxWaitJobMs = 60'000;
  void WaitJob(const std::string& job_id, int64_t timeout_ms, WaitJobCallback done);
  absl::Status CancelJob(const std::string& job_id);
  proto::ListWorkersResponse ListWorkers();
  void AcknowledgeCheckpoint(const proto::CheckpointAck& ack);
  // Starts a savepoint; `done` is called (on some thread) with its path or an error.
  absl::Status TriggerSavepoint(const proto::SavepointRequest& req,
                                std::function<void(absl::StatusOr<std::string>)> done);
  // Calls `fn` (on the I/O thread, without mu_) once every job record persisted so far is
  // durable (or could not be written): the service answers SubmitJob and CancelJob only then.
  void WhenDurable(std::function<void()> fn);
  // SubmitJob() on the planner thread (planning may run the plugin helper for seconds, and a
  // restore reads the savepoint's metadata: neither may run on a gRPC callback thread); `done`
  // is called once the job's record is durable, or with the error.
  void SubmitJobAsync(proto::SubmitJobRequest req,
                      std::function<void(absl::StatusOr<proto::SubmitJobResponse>)> done);

 private:
  // Plans a job: a helper process loads the plugins it names and --plugin-dir's and validates
  // their operators (options by the plugin's own hook, with the operator's position); their
  // types, with what the helper accepted, go into a copy of the catalog the job is parsed with.
  // A plugin that crashes or hangs in the helper refuses the job (kInvalidArgument naming it).
  absl::StatusOr<plan::JobSpec> PlanJob(const std::string& yaml, const std::string& name,
                                        int parallelism) const;
  // The plan of a job read back from its HA record (the stored plan, or for records without
  // one, the job planned again from its YAML with PlanJob()).
  absl::StatusOr<plan::PlannedJob> RecoveredPlan(const proto::JobRecord& r) const;
  class Service;

  struct TaskEntry {
    std::string worker_id;
    std::string data_address;
    proto::TaskState state = proto::TASK_DEPLOYING;
    std::string error;
    std::vector<uint64_t> records_in;   // per operator of the vertex
    std::vector<uint64_t> records_out;
    std::vector<uint64_t> records_skipped;
    std::vector<uint64_t> late_records_dropped;
    // Keyed operators' state (has_state, cache hits and misses, size), as last reported.
    std::vector<proto::OperatorCounters> op_state;
    bool end_of_input = false;
    // Event time, as last reported (a gauge, not a maximum): watermark_ms is meaningful with
    // has_watermark.
    bool has_watermark = false;
    int64_t watermark_ms = 0;
    bool watermark_idle = false;
  };
  using SavepointReplies = std::vector<std::pair<SavepointCallback, absl::StatusOr<std::string>>>;
  struct Job {
    std::string id;
    proto::SubmitJobRequest request;  // kept for GetJob (`sluice rescale` resubmits its YAML)
    std::shared_ptr<const plan::JobSpec> spec;
    std::shared_ptr<const plan::JobGraph> graph;
    // spec and graph as made at submission (plan/plan_codec.h): stored in the HA record and
    // sent in every deployment, so every attempt, also after a coordinator restart, runs it.
    std::shared_ptr<const proto::JobPlan> plan;
    proto::JobState state = proto::JOB_CREATED;
    std::string error;
    absl::StatusCode error_code = absl::StatusCode::kOk;  // of `error`, when a task reported one
    int64_t attempt = 1;
    int64_t submit_ms = 0;
    int64_t end_ms = 0;
    std::vector<std::vector<TaskEntry>> tasks;  // [vertex][subtask]
    std::map<std::string, int> slots_held;      // worker id -> slots
    // Checkpoints and recovery: the pending checkpoint, the latest completed one (the restore
    // point), retention and history. Made once the job's id and spec are known.
    std::unique_ptr<CheckpointCoordinator> checkpoints;
    std::string restored_from;
    int restarts = 0;
    int64_t restart_at_nanos = 0;
    int64_t restarting_since_nanos = 0;  // when the current RESTARTING began
    // Recovered from the HA store after a coordinator restart: resuming is not a restart of
    // the job's own making and uses no attempt.
    bool resuming = false;
    // While RESTARTING without enough free slots: how many it needs and since when.
    int waiting_for_slots = 0;
    int64_t waiting_since_nanos = 0;
    int64_t waiting_since_ms = 0;
    int placement_workers = 0;            // distinct workers of the last placement
    int64_t restored_checkpoint_id = 0;   // what the current attempt restored from
    std::string stopped_with_savepoint;   // `stop --savepoint`: the savepoint's path
    // Callers of that stop, answered once the job's slots are free (ReleaseSlots), so that a job
    // submitted right after (`sluice rescale`) finds them; or at stop_replies_deadline_nanos
    // if the tasks take longer to stop.
    SavepointReplies stop_replies;
    int64_t stop_replies_deadline_nanos = 0;
    // WaitJob() callers, answered at the job's end or at their deadline (clock nanos).
    std::vector<std::pair<WaitJobCallback, int64_t>> end_waiters;
    // Rates per operator index, refreshed by the monitor thread.
    std::vector<uint64_t> prev_in, prev_out;
    int64_t prev_nanos = 0;
    std::vector<double> in_rate, out_rate;
    void ResetRates(int64_t now_nanos) {
      const size_t n = spec->operators.size();
      prev_in.assign(n, 0);
      prev_out.assign(n, 0);
      in_rate.assign(n, 0);
      out_rate.assign(n, 0);
      prev_nanos = now_nanos;
    }
  };

  void Dispatch(std::function<void()> fn);
  void DispatchLoop();
  // Runs the closures of `queue` in order until stopping_ and drained; then sets *drained.
  void RunQueue(std::deque<std::function<void()>>* queue, bool* drained);
  void MonitorLoop();
  void DeployJob(const std::string& job_id);
  void HandleTaskState(Job& job, const proto::TaskStatus& st) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // `planned`: not the job's failure (a worker left on purpose): the restart uses no attempt.
  // `permanent`: no restart can help (a worker refused the deployment with kFailedPrecondition,
  // e.g. it cannot load a plugin of the job): the job fails whatever its restart strategy.
  // `code`: the failure's status code when known (a task's report), kept with the reason.
  void FailJob(Job& job, const std::string& reason, bool planned = false, bool permanent = false,
               absl::StatusCode code = absl::StatusCode::kOk) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CancelTasksOnWorkers(Job& job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void MaybeCompleteJob(Job& job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Gives the job's slots back to the registry and answers its stop_replies.
  void ReleaseSlots(Job& job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // `planned`: the worker left on purpose; restarting its jobs uses no attempt. Nothing if it
  // is no longer registered.
  void LoseWorker(const std::string& worker_id, const std::string& why, bool planned = false)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Fails the tasks of a worker already taken out of the registry.
  void WorkerLostLocked(const WorkerEntry& w, const std::string& why, bool planned)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Places the job's subtasks on free slots (scheduler.h) and takes them in the registry.
  absl::Status ScheduleLocked(Job& job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Answers savepoint callers on the dispatcher thread.
  void ReplyLocked(SavepointReplies replies) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Carries out what the job's checkpoint coordinator asked for, in CheckpointActions' order.
  void ApplyLocked(Job& job, CheckpointActions actions) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // On the I/O thread, with mu_ re-taken: applies the outcome of writing a completed checkpoint;
  // if it became the job's latest, queues the job record naming it, and after that the commit.
  void FinishCheckpointLocked(const std::string& job_id, int64_t attempt, std::shared_ptr<const CheckpointWrite> w,
                              const CheckpointWriteResult& result) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RestartTick(Job& job, int64_t now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SendToWorkers(Job& job, bool complete, const CheckpointActions::ToTasks& what)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Queues the job's record for the I/O thread (records are written in the order queued).
  void PersistLocked(const Job& job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The job's HA record as of now.
  proto::JobRecord RecordLocked(const Job& job) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Reads the HA store and the jobs' checkpoint directories (file I/O: call without mu_), and
  // returns the jobs to resume or keep for status.
  std::vector<Job> LoadFromHaStore();
  // Installs the jobs LoadFromHaStore() returned.
  void InstallRecoveredLocked(std::vector<Job> recovered) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Drops ended jobs past the retention rule (options_.ended_job_retention_ms,
  // max_ended_jobs) from memory and queues the deletion of their records.
  void ExpireEndedJobsLocked(int64_t now_ms) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Whether an RPC to `worker` failed because nobody listens at its address any more (its
  // channel could not connect), as opposed to a slow or overloaded peer.
  static bool PeerGone(const grpc::Status& s, grpc::Channel* channel);
  bool CheckpointingLocked(const Job& job) const { return job.spec->checkpoint.enabled(); }
  proto::JobInfo JobInfoLocked(const Job& job) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // JobInfoLocked() with what GetJob() adds (the job's file, name and parallelism override).
  proto::JobInfo CallerJobInfoLocked(const Job& job) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Answers the job's WaitJob() callers: all of them if the job has ended or `all`, else those
  // whose deadline is past `now_nanos`.
  void AnswerWaitersLocked(Job& job, int64_t now_nanos, bool all = false) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  static bool IsTerminal(proto::JobState s);

  // Constant after construction.
  const CoordinatorOptions options_;
  // The operator types jobs are validated against: built-ins and connectors (their options
  // halves; the coordinator runs no operator).
  const plan::OperatorTypeCatalog catalog_;
  MetricsRegistry metrics_;
  HttpStatusServer http_;
  std::unique_ptr<Service> service_;
  std::unique_ptr<grpc::Server> server_;
  std::string address_;
  int http_port_ = -1;
  const checkpoint::CheckpointStorage storage_;
  const std::unique_ptr<const HaStore> ha_;  // null without options_.ha_dir
  std::thread dispatcher_;
  std::thread io_;
  std::thread planner_;
  std::thread monitor_;

  // Guarded by mu_.
  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool ready_ ABSL_GUARDED_BY(mu_) = false;
  WorkerRegistry registry_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, Job> jobs_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> job_order_ ABSL_GUARDED_BY(mu_);
  std::deque<std::function<void()>> dispatch_queue_ ABSL_GUARDED_BY(mu_);
  // File I/O for the I/O thread, in order; io_done_ once it has drained and exited.
  std::deque<std::function<void()>> io_queue_ ABSL_GUARDED_BY(mu_);
  bool io_done_ ABSL_GUARDED_BY(mu_) = false;
  // Submissions for the planner thread; plan_done_ once it has drained and exited.
  std::deque<std::function<void()>> plan_queue_ ABSL_GUARDED_BY(mu_);
  bool plan_done_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace sluice::coordinator
