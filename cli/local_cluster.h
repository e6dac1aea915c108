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
  // Also start the embedded Kafka endpoint (sluice-kafka) with these topics (NAME:PARTITIONS).
  bool kafka = false;
  std::vector<std::string> kafka_topics;
};

// Paths inside a local cluster's directory.
inline std::string CheckpointDirOf(const std::string& dir) { return dir + "/checkpoints"; }
inline std::string SavepointDirOf(const std::string& dir) { return dir + "/savepoints"; }
inline std::string HaDirOf(const std::string& dir) { return dir + "/ha"; }

// A coordinator and workers as real background processes on loopback, for the CLI's
// `cluster start/stop`, integration tests and benchmarks. Each process logs to
// <dir>/<name>.log and has a pid file <dir>/<name>.pid. Not thread-safe.
class LocalCluster {
 public:
  // Starts the coordinator, then the workers, and waits until all workers have registered.
  static absl::StatusOr<std::unique_ptr<LocalCluster>> Start(LocalClusterOptions options);
  // Stops the cluster whose pid files are in `dir` (SIGTERM, then SIGKILL after a grace
  // period). Returns kNotFound if no cluster is recorded there.
  static absl::Status StopDir(const std::string& dir, int grace_ms = 10000);
  // The directory holding sluice-coordinator / sluice-worker: $SLUICE_BIN_DIR, else the
  // directory of the running executable.
  static std::string DefaultBinDir();

  ~LocalCluster();

  const std::string& coordinator_address() const { return coordinator_address_; }
  // The embedded Kafka endpoint's bootstrap address ("" when not started).
  const std::string& kafka_bootstrap() const { return kafka_bootstrap_; }
  int coordinator_http_port() const { return coordinator_http_port_; }
  const LocalClusterOptions& options() const { return options_; }
  pid_t coordinator_pid() const { return coordinator_pid_; }
  pid_t worker_pid(int i) const { return worker_pids_[i]; }
  std::vector<pid_t> AllPids() const;

  // Sends `signal` to worker i and, for a fatal signal, reaps it.
  absl::Status KillWorker(int i, int signal);
  // Starts worker i again (after KillWorker) and waits until `expected_workers` are registered
  // (< 0: does not wait).
  absl::Status RestartWorker(int i, int expected_workers);
  // kill -9 the coordinator, then start it again with the same directories.
  absl::Status KillCoordinator();
  absl::Status RestartCoordinator();
  // Waits until the coordinator lists `n` workers.
  absl::Status WaitForWorkers(int n, int timeout_ms);
  // SIGTERM everything and wait (SIGKILL after the grace period).
  void Stop();

 private:
  explicit LocalCluster(LocalClusterOptions options) : options_(std::move(options)) {}
  absl::StatusOr<pid_t> Spawn(const std::string& name, const std::vector<std::string>& args);
  absl::Status StartWorkerProcess(int i);
  absl::Status StartCoordinatorProcess();
  absl::Status StartKafkaProcess();
  // Waits until process `name` (`pid`) has written its address file; returns the contents.
  absl::StatusOr<std::string> AwaitAddressFile(const std::string& name, pid_t pid, const std::string& file);

  LocalClusterOptions options_;
  std::string coordinator_address_;
  int coordinator_http_port_ = -1;
  pid_t coordinator_pid_ = -1;
  std::vector<pid_t> worker_pids_;
  pid_t kafka_pid_ = -1;
  std::string kafka_bootstrap_;
  bool stopped_ = false;
};

}  // namespace sluice::cli
