// sluice-worker: runs tasks for a Sluice coordinator.

#include <csignal>
#include <iostream>
#include <string>
#include <tuple>

#include "absl/strings/str_cat.h"

#include "CLI/CLI.hpp"
#include "common/flags.h"
#include "common/logging.h"
#include "common/process.h"
#include "state/memory_budget.h"
#include "worker/worker.h"

int main(int argc, char** argv) {
  CLI::App app{"sluice-worker: runs the tasks a Sluice coordinator assigns"};
  sluice::worker::WorkerOptions opts;
  std::string log_level = "info";
  std::string address_file;
  std::string state_memory;
  std::string memory_limit;
  app.add_option("--coordinator", opts.coordinator, "Coordinator address host:port")->required();
  app.add_option("--host", opts.host, "Address to bind (0.0.0.0: every interface)")->capture_default_str();
  app.add_option("--advertise-address", opts.advertise_address,
                 "Host peers reach this process at (default: --host, or for 0.0.0.0 $POD_IP, else the "
                 "first non-loopback IPv4 address)");
  app.add_option("--port", opts.port, "gRPC port (0 = any free port)")->capture_default_str();
  app.add_option("--http-port", opts.http_port, "HTTP port for /metrics and /healthz (0 = any, -1 = off)")
      ->capture_default_str();
  app.add_option("--slots", opts.slots, "Task slots offered")->capture_default_str()->check(CLI::Range(1, 1024));
  app.add_option("--name", opts.name, "Name shown in status");
  app.add_option("--heartbeat-interval-ms", opts.heartbeat_interval_ms, "Heartbeat interval")
      ->capture_default_str()->check(CLI::Range(10, 60000));
  app.add_option("--work-dir", opts.work_dir, "Directory for local state (default /tmp/sluice-worker-<pid>)");
  app.add_option("--plugin-dir", opts.plugin_dir,
                 "Load every *.so here at start; their operator types are available to every job");
  app.add_option("--address-file", address_file, "Write the bound data address here once serving");
  app.add_option("--state-memory", state_memory,
                 "Memory for keyed state (write-back caches, RocksDB block cache and memtables), "
                 "divided among the slots: bytes or e.g. 512MiB, 4GiB (default: 40% of the "
                 "machine's memory, or of the container's cgroup limit when there is one)");
  app.add_option("--memory-limit", memory_limit,
                 "Memory this worker may use, e.g. its container's limit (Kubernetes: from the "
                 "downward API); the default --state-memory is 40% of it (default: the cgroup "
                 "limit, else the machine's memory)");
  app.add_option("--log-level", log_level, "trace, debug, info, warn or error")->capture_default_str();
  // Precedence: flags, then SLUICE_* environment variables, then --config FILE (YAML).
  if (absl::Status c = sluice::ApplyConfigFile(&app, argc, argv); !c.ok()) {
    std::cerr << "sluice-worker: " << c.message() << "\n";
    return 1;
  }
  sluice::BindEnvironment(&app);
  CLI11_PARSE(app, argc, argv);

  for (auto [flag, text, out] : {std::tuple("--state-memory", &state_memory, &opts.state_memory_bytes),
                                  std::tuple("--memory-limit", &memory_limit, &opts.memory_limit_bytes)}) {
    if (text->empty()) continue;
    absl::StatusOr<uint64_t> bytes = sluice::state::ParseMemorySize(*text);
    if (bytes.ok() && *bytes < (uint64_t{1} << 20)) {
      bytes = absl::InvalidArgumentError(absl::StrCat("at least 1MiB, got '", *text, "'"));
    }
    if (!bytes.ok()) {
      std::cerr << "sluice-worker: " << flag << ": " << bytes.status().message() << "\n";
      return 1;
    }
    *out = *bytes;
  }
  sluice::InitLogging("worker" + (opts.name.empty() ? "" : ":" + opts.name), log_level);
  // Block termination signals in every thread; main waits for them.
  sluice::BlockTerminationSignals();

  sluice::worker::Worker worker(opts);
  absl::Status s = worker.Start();
  if (!s.ok()) {
    spdlog::error("cannot start worker: {}", s);
    return 1;
  }
  if (!address_file.empty()) {
    absl::Status w = sluice::WriteFileAtomically(address_file, worker.data_address() + "\n");
    if (!w.ok()) spdlog::error("cannot write address file: {}", w);
  }
  int sig = sluice::WaitForTerminationSignal();
  spdlog::info("received signal {}: leaving the cluster", sig);
  // Tell the coordinator first, so that it restarts our jobs elsewhere at once instead of
  // after the heartbeat timeout (a Kubernetes pod deletion, a node drain).
  absl::Status left = worker.Leave(sig == SIGTERM ? "SIGTERM" : "SIGINT");
  if (!left.ok()) spdlog::warn("{}", left.message());
  return 0;
}
