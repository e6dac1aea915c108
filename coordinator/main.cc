// sluice-coordinator: accepts workers and jobs, schedules and tracks them.

#include <iostream>
#include <string>

#include "CLI/CLI.hpp"
#include "common/flags.h"
#include "common/logging.h"
#include "common/process.h"
#include "coordinator/coordinator.h"

int main(int argc, char** argv) {
  CLI::App app{"sluice-coordinator: the Sluice cluster coordinator"};
  sluice::coordinator::CoordinatorOptions opts;
  std::string log_level = "info";
  std::string address_file;
  app.add_option("--host", opts.host, "Address to bind (0.0.0.0: every interface)")->capture_default_str();
  app.add_option("--advertise-address", opts.advertise_address,
                 "Host peers reach this process at (default: --host, or for 0.0.0.0 $POD_IP, else the "
                 "first non-loopback IPv4 address)");
  app.add_option("--plugin-dir", opts.plugin_dir,
                 "Load every *.so here to validate jobs using their operator types (give workers the same)");
  app.add_option("--port", opts.port, "gRPC port (0 = any free port)")->capture_default_str();
  app.add_option("--http-port", opts.http_port, "HTTP port for /metrics and /healthz (0 = any, -1 = off)")
      ->capture_default_str();
  app.add_option("--heartbeat-timeout-ms", opts.heartbeat_timeout_ms,
                 "Declare a worker lost after this long without a heartbeat")
      ->capture_default_str()->check(CLI::Range(100, 600000));
  app.add_option("--checkpoint-dir", opts.checkpoint_dir, "Checkpoint storage (shared by all workers)")
      ->capture_default_str();
  app.add_option("--savepoint-dir", opts.savepoint_dir, "Default directory for savepoints")->capture_default_str();
  app.add_option("--ha-dir", opts.ha_dir, "Durable job records: jobs resume after a coordinator restart");
  app.add_option("--ended-job-retention-ms", opts.ended_job_retention_ms,
                 "Keep records of ended jobs (list, status, HA store) this long")
      ->capture_default_str()->check(CLI::Range(int64_t{0}, int64_t{365} * 24 * 3600 * 1000));
  app.add_option("--max-ended-jobs", opts.max_ended_jobs, "Keep at most this many ended jobs (oldest dropped first)")
      ->capture_default_str()->check(CLI::Range(0, 1000000));
  app.add_option("--address-file", address_file, "Write the bound address here once serving");
  app.add_option("--log-level", log_level, "trace, debug, info, warn or error")->capture_default_str();
  // Precedence: flags, then SLUICE_* environment variables, then --config FILE (YAML).
  if (absl::Status c = sluice::ApplyConfigFile(&app, argc, argv); !c.ok()) {
    std::cerr << "sluice-coordinator: " << c.message() << "\n";
    return 1;
  }
  sluice::BindEnvironment(&app);
  CLI11_PARSE(app, argc, argv);

  sluice::InitLogging("coordinator", log_level);
  sluice::BlockTerminationSignals();

  sluice::coordinator::Coordinator coordinator(opts);
  absl::Status s = coordinator.Start();
  if (!s.ok()) {
    spdlog::error("cannot start coordinator: {}", s);
    return 1;
  }
  if (!address_file.empty()) {
    absl::Status w = sluice::WriteFileAtomically(address_file, coordinator.address() + "\n" + std::to_string(coordinator.http_port()) + "\n");
    if (!w.ok()) spdlog::error("cannot write address file: {}", w);
  }
  int sig = sluice::WaitForTerminationSignal();
  spdlog::info("received signal {}, shutting down", sig);
  coordinator.Stop();
  return 0;
}
