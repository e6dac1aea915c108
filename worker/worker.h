#pragma once

#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "checkpoint/checkpoint_storage.h"
#include "common/clock.h"
#include "common/filesystem.h"
#include "common/http_server.h"
#include "common/metrics.h"
#include "grpcpp/grpcpp.h"
#include "operators/registry.h"
#include "proto/control.grpc.pb.h"
#include "proto/data.grpc.pb.h"
#include "worker/internal/data_plane.h"
#include "sdk/host/plugin_loader.h"
#include "state/memory_budget.h"
#include "worker/internal/task.h"

namespace sluice::worker {

struct WorkerOptions {
  std::string coordinator;     // host:port
  std::string host = "127.0.0.1";      // bind address (0.0.0.0: every interface)
  std::string advertise_address;       // host peers reach it at; "": DefaultAdvertiseHost(host)
  int port = 0;                // gRPC (Worker service + data plane); 0 picks a free port
  int http_port = 0;           // /healthz and /metrics; 0 picks a free port, -1 disables
  int slots = 2;
  std::string name;
  int64_t heartbeat_interval_ms = 500;
  std::string work_dir;        // local state; default: a fresh directory under /tmp
  // Cluster-wide plugins: every *.so here is loaded at Start() and its operator types
  // registered for every job. "" = none.
  std::string plugin_dir;
  // Memory for keyed state (write-back caches, RocksDB block cache and memtables), divided
  // among the slots (state/memory_budget.h); 0 = state::DefaultStateMemory(), a share of the
  // machine's or the container's memory.
  uint64_t state_memory_bytes = 0;
  // The memory this worker may use, whose share the default state memory is (0: the cgroup
  // limit, else the machine's memory).
  uint64_t memory_limit_bytes = 0;
  Clock* clock = Clock::Real();
  // Where checkpoint metadata is read (restores); outlives the worker.
  FileSystem* filesystem = FileSystem::Default();
};

// A worker process: registers with the coordinator, runs the tasks it is given, exchanges
// records with other workers, heartbeats with task states and counters.
//
// Threads: gRPC's callback threads run the Worker and DataPlane services; one heartbeat
// thread talks to the coordinator (registration, heartbeats, task-state reports) and reaps
// finished tasks; each task has its own thread. Start() and Stop() from one thread.
class Worker {
 public:
  explicit Worker(WorkerOptions options);
  ~Worker();

  // Starts serving and begins registering (in the background; the coordinator may be late).
  absl::Status Start();
  // Cancels all tasks, stops serving. Idempotent.
  void Stop();
  // Leaves the cluster on purpose (SIGTERM): stops heartbeating, tells the coordinator (which
  // restarts the affected jobs elsewhere from their latest checkpoints, using no restart
  // attempt), then Stop(). Returns the deregistration's status (the worker stops either way).
  absl::Status Leave(const std::string& reason);
  // /readyz: OK once registered with the coordinator.
  absl::Status Ready() const;

  std::string data_address() const { return data_address_; }
  int http_port() const { return http_port_; }
  MetricsRegistry* metrics() { return &metrics_; }
  // The states of the tasks of `job_id` deployed here (empty if none).
  std::vector<proto::TaskStatus> TaskStatusesForTest(const std::string& job_id) const;

 private:
  class ControlService;
  struct JobTasks {
    int64_t attempt = 0;
    std::shared_ptr<const plan::JobSpec> spec;
    std::shared_ptr<const plan::JobGraph> graph;
    // The registry of a job that names plugins (built-ins, --plugin-dir's and the job's
    // plugins); null for other jobs, which use registry_. Outlives `tasks` (declared first).
    std::shared_ptr<const ops::OperatorRegistry> registry;
    std::vector<std::unique_ptr<Task>> tasks;
    bool started = false;
  };

  // Builds the tasks of req.plan() (plan/plan_codec.h) that req.tasks names; nothing runs
  // yet. A plan this worker cannot run (newer format, inconsistent, an unknown operator type,
  // options its type refuses, a plugin that does not load) is kFailedPrecondition with the
  // operator and the reason.
  absl::Status Deploy(const proto::DeployTasksRequest& req);
  // For a job naming plugins: loads them and returns a registry with its types added to the
  // built-ins and --plugin-dir's; null when the job names none. A plugin that cannot be loaded
  // is kFailedPrecondition with the loader's reason and the job file position.
  absl::StatusOr<std::shared_ptr<const ops::OperatorRegistry>> JobRegistry(
      const plan::JobSpec& job) const;
  absl::Status Checkpoint(const proto::CheckpointTrigger& req, bool complete);
  void SendAck(proto::CheckpointAck ack);
  absl::Status StartJob(const std::string& job_id);
  void CancelJob(const std::string& job_id);
  absl::Status ResolveGate(const proto::ChannelHeader& h, std::shared_ptr<InputGate>* gate,
                           int* channel);
  absl::StatusOr<std::unique_ptr<ChannelWriter>> CreateWriter(const proto::ChannelHeader& h,
                                                              const std::string& address);
  proto::DataPlane::Stub* StubFor(const std::string& address);
  void OnTaskDone(Task* task);
  void HeartbeatLoop();
  bool Register();
  void ReapFinishedJobs();

  const WorkerOptions options_;
  const checkpoint::CheckpointStorage storage_{options_.filesystem};
  // The keyed-state memory budget and the RocksDB cache its backends share (made in Start()).
  std::unique_ptr<state::StateMemory> state_memory_;
  ops::OperatorRegistry registry_;  // built-ins, connectors, --plugin-dir's (added in Start())
  std::vector<const plugin::LoadedPlugin*> dir_plugins_;  // set in Start(), constant after
  MetricsRegistry metrics_;
  HttpStatusServer http_;
  std::unique_ptr<ControlService> control_service_;
  std::unique_ptr<DataPlaneService> data_service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<proto::Coordinator::Stub> coordinator_;
  std::string data_address_;
  std::string advertised_host_;
  std::string work_dir_;
  int http_port_ = -1;
  std::thread heartbeat_thread_;
  int64_t register_failures_ = 0;  // heartbeat thread only
  std::shared_ptr<Gauge> heartbeat_age_;

  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool leaving_ ABSL_GUARDED_BY(mu_) = false;     // Leave(): no more heartbeats or registrations
  bool registered_ ABSL_GUARDED_BY(mu_) = false;
  std::string worker_id_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, JobTasks> jobs_ ABSL_GUARDED_BY(mu_);
  std::vector<JobTasks> retired_ ABSL_GUARDED_BY(mu_);  // earlier attempts, stopping
  std::vector<proto::TaskStatus> reports_ ABSL_GUARDED_BY(mu_);  // terminal states to send
  std::map<std::string, std::unique_ptr<proto::DataPlane::Stub>> stubs_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::shared_ptr<grpc::Channel>> grpc_channels_ ABSL_GUARDED_BY(mu_);
  int64_t last_heartbeat_ok_nanos_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t heartbeat_interval_ms_ ABSL_GUARDED_BY(mu_) = options_.heartbeat_interval_ms;
  bool end_of_input_pending_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace sluice::worker
