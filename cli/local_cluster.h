#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace sluice::cli {

struct LocalClusterOptions {
  std::string dir;              // logs, pid files and address files go here
  int workers = 2;
  int slots = 2;                // per worker
  std::string bin_dir;          // where sluice-coordinator and sluice-worker live
  int64_t heartbeat_timeout_ms = 3000;
  std::string log_level = "info";
  // Kill the processes when the process that started them dies (tests, benchmarks). The CLI
  // leaves this off so the cluster outlives `sluice cluster start`.
  bool die_with_parent = false;
  int start_timeout_ms = 20000;
  // Cluster-wide plugins: the coordinator's and every worker's --plugin-dir ("" = none).
  std::string plugin_dir;
  // Also start the embedded Kafka endpoint (sluice-kafka) with these topics (NAME:PARTITIONS).
  bool kafka = false;
  std::vector<std::string> kafka_topics;
  // Every worker's --state-memory (its keyed-state memory budget, e.g. "2GiB"); "" = the
  // worker's default (a share of the machine's or container's memory).
  std::string state_memory;
};

// Paths inside a local cluster's directory.
inline std::string CheckpointDirOf(const std::string& dir) { return dir + "/checkpoints"; }
inline std::string SavepointDirOf(const std::string& dir) { return dir + "/savepoints"; }
inline std::string HaDirOf(const std::string& dir) { return dir + "/ha"; }

// A process of a local cluster as its directory records it: <name>.pid holds its pid and
// <name>.cmd the command line that starts it again (one argument a line; the coordinator's
// carries the ports it bound on its first start).
struct RecordedProcess {
  std::string name;               // "coordinator", "worker-<i>" or "kafka"
  std::vector<std::string> args;  // args[0] is the binary's path
  pid_t pid = -1;                 // -1 when there is no pid file
  // The pid is alive and runs `args` (checked in /proc/<pid>/cmdline, since pids get reused).
  bool running = false;
};

// Reads every process recorded in `dir` (coordinator first, then workers by index, then kafka)
// and checks which are running. Returns kNotFound if `dir` records no process.
absl::StatusOr<std::vector<RecordedProcess>> ReadRecordedProcesses(const std::string& dir);

// A coordinator and workers as real background processes on loopback, for the CLI's
// `cluster start/stop/add-worker`, integration tests and benchmarks. Each process logs to
// <dir>/<name>.log and is recorded in <dir>/<name>.pid and <dir>/<name>.cmd, so that another
// process (a later `sluice cluster start`) can tell what still runs and start what is missing:
// the coordinator binds the port it chose on its first start again, so workers (which are given
// its address, not a file) find it again. Worker i is named w<i>, keeps its state in
// <dir>/worker-<i>-state and writes its data address to <dir>/worker-<i>.addr.
// Not thread-safe; one `LocalCluster` per directory at a time.
class LocalCluster {
 public:
  // Starts the coordinator, then the workers, and waits until all workers have registered.
  // Returns kAlreadyExists if a process recorded in `options.dir` still runs; records of
  // processes that no longer run are replaced.
  static absl::StatusOr<std::unique_ptr<LocalCluster>> Start(LocalClusterOptions options);
  // Takes over the cluster recorded in `options.dir` and starts the recorded processes that do
  // not run: the coordinator on its recorded address first, then workers with their recorded
  // command lines (slots, name, work dir); waits until every recorded worker has registered.
  // Only `dir`, `bin_dir`, `die_with_parent` and `start_timeout_ms` of `options` are used.
  // Appends the names of the processes it started to `*started`. Returns kNotFound if nothing
  // is recorded in the directory, kAlreadyExists (starting nothing) if everything recorded runs,
  // kFailedPrecondition if a process could not be started (e.g. its port is taken).
  // A recorded embedded Kafka endpoint that no longer runs is not restarted (its data is gone).
  // The object it returns is released (see Release()).
  static absl::StatusOr<std::unique_ptr<LocalCluster>> Resume(LocalClusterOptions options,
                                                              std::vector<std::string>* started);
  // Takes over the running cluster recorded in `options.dir` without starting anything. The
  // object it returns is released (see Release()).
  // Returns kNotFound if nothing is recorded there, kFailedPrecondition if its coordinator
  // does not run.
  static absl::StatusOr<std::unique_ptr<LocalCluster>> Attach(LocalClusterOptions options);
  // Stops the cluster whose pid files are in `dir` (SIGTERM, then SIGKILL after a grace
  // period) and removes its records. Returns kNotFound if no cluster is recorded there.
  static absl::Status StopDir(const std::string& dir, int grace_ms = 10000);
  // The directory holding sluice-coordinator / sluice-worker: $SLUICE_BIN_DIR, else the
  // directory of the running executable.
  static std::string DefaultBinDir();

  // Stops the processes unless Release() was called (as by Attach and Resume).
  ~LocalCluster();

  const std::string& coordinator_address() const { return coordinator_address_; }
  // The embedded Kafka endpoint's bootstrap address ("" when not started).
  const std::string& kafka_bootstrap() const { return kafka_bootstrap_; }
  int coordinator_http_port() const { return coordinator_http_port_; }
  const LocalClusterOptions& options() const { return options_; }
  pid_t coordinator_pid() const { return coordinator_pid_; }
  // Number of worker indexes (running or not).
  int worker_count() const { return static_cast<int>(worker_pids_.size()); }
  pid_t worker_pid(int i) const { return worker_pids_[i]; }
  std::vector<pid_t> AllPids() const;
  // Leaves the processes running when this object is destroyed (the CLI's cluster outlives
  // it). Stop() still stops them.
  void Release() { released_ = true; }

  // Sends `signal` to worker i and, for a fatal signal, reaps it.
  absl::Status KillWorker(int i, int signal);
  // Starts worker i again with its recorded command line (after KillWorker) and waits until
  // `expected_workers` are registered (< 0: does not wait).
  absl::Status RestartWorker(int i, int expected_workers);
  // Starts one more worker offering `slots` slots (<= 0: as many as the first recorded worker,
  // else options().slots), records it like the others and waits until the coordinator lists
  // it. Returns its index.
  absl::StatusOr<int> AddWorker(int slots);
  // The data address worker i registers with (from <dir>/worker-<i>.addr).
  absl::StatusOr<std::string> WorkerDataAddress(int i) const;
  // kill -9 the coordinator, then start it again with the same directories and address.
  absl::Status KillCoordinator();
  absl::Status RestartCoordinator();
  // Waits until the coordinator lists `n` workers.
  absl::Status WaitForWorkers(int n, int timeout_ms);
  // SIGTERM everything and wait (SIGKILL after the grace period).
  void Stop();

 private:
  explicit LocalCluster(LocalClusterOptions options) : options_(std::move(options)) {}
  // Records `args` as <name>.cmd, starts them with output to <name>.log, records <name>.pid.
  absl::StatusOr<pid_t> Spawn(const std::string& name, const std::vector<std::string>& args);
  std::vector<std::string> WorkerArgs(int i, int slots) const;
  absl::Status StartWorkerProcess(int i, const std::vector<std::string>& args);
  // Starts the coordinator with `args`, waits until it serves, and records the ports it bound
  // in coordinator.cmd so that the next start binds them again.
  absl::Status StartCoordinatorProcess(std::vector<std::string> args);
  absl::Status StartKafkaProcess();
  // Waits until process `name` (`pid`) has written its address file; returns the contents.
  absl::StatusOr<std::string> AwaitAddressFile(const std::string& name, pid_t pid, const std::string& file);
  // Waits until the coordinator lists the data address of each of `workers` (indexes).
  absl::Status WaitForRegistered(const std::vector<int>& workers);
  // Reads coordinator.addr into coordinator_address_ and coordinator_http_port_.
  absl::Status ReadCoordinatorAddress();

  LocalClusterOptions options_;
  std::string coordinator_address_;
  int coordinator_http_port_ = -1;
  pid_t coordinator_pid_ = -1;
  std::vector<pid_t> worker_pids_;
  pid_t kafka_pid_ = -1;
  std::string kafka_bootstrap_;
  bool stopped_ = false;
  bool released_ = false;
};

}  // namespace sluice::cli
