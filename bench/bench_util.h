#pragma once

// Small helpers shared by the benchmarks.

#include <time.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include <algorithm>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <cstdlib>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <iostream>
#include <memory>

#include "absl/strings/str_cat.h"
#include "cli/client.h"
#include "cli/local_cluster.h"

namespace sluice::bench {

// The median of `v`: its middle value, or the mean of the two middle values of an even count
// (0 when empty).
inline double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t mid = v.size() / 2;
  return v.size() % 2 == 1 ? v[mid] : v[mid - 1] + (v[mid] - v[mid - 1]) / 2;
}

// utime + stime of a process, in seconds (from /proc/<pid>/stat).
inline double CpuSeconds(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  size_t p = s.rfind(')');
  if (p == std::string::npos) return 0;
  std::vector<std::string> f;
  std::string cur;
  for (size_t i = p + 2; i < s.size(); ++i) {
    if (s[i] == ' ') {
      f.push_back(cur);
      cur.clear();
    } else {
      cur += s[i];
    }
  }
  // Fields after ")": state(0) ... utime(11) stime(12).
  if (f.size() < 13) return 0;
  return (std::stod(f[11]) + std::stod(f[12])) / sysconf(_SC_CLK_TCK);
}

// Resident set size of a process in MiB (VmRSS from /proc/<pid>/status; 0 if unreadable).
inline double RssMb(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::strtod(line.c_str() + 6, nullptr) / 1024.0;
  }
  return 0;
}

// CPU seconds the calling thread has used.
inline double ThreadCpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

// Starts a local cluster of `workers` workers with `slots` slots each (by default 2 with 1 slot,
// so parallelism 2 spans both) in a fresh temp directory; prints the error and returns null on
// failure. `state_memory` (e.g. "64MiB"; "" = the workers' default) is each worker's
// --state-memory.
// `bin_dir`: the binaries the cluster runs ("": SLUICE_BIN_DIR or the build's).
inline std::unique_ptr<cli::LocalCluster> StartBenchCluster(const std::string& prefix, int workers = 2,
                                                            int slots = 1,
                                                            const std::string& state_memory = "",
                                                            const std::string& bin_dir = "") {
  std::string dir = (std::filesystem::temp_directory_path() / (prefix + "-XXXXXX")).string();
  if (mkdtemp(dir.data()) == nullptr) return nullptr;
  cli::LocalClusterOptions o;
  o.dir = dir;
  o.workers = workers;
  o.slots = slots;
  o.log_level = "warn";
  o.die_with_parent = true;
  o.state_memory = state_memory;
  o.bin_dir = bin_dir;
  auto cluster = cli::LocalCluster::Start(o);
  if (!cluster.ok()) {
    std::cerr << "cannot start cluster: " << cluster.status() << "\n";
    return nullptr;
  }
  return std::move(*cluster);
}

// One run of a bounded job on `cluster`: submitted, polled until it ends.
struct JobRun {
  bool finished = false;  // false: failed (error) or could not be submitted
  std::string error;
  double wall_s = 0;
  double cpu_s = 0;  // utime + stime of every cluster process during the run
  double worker_rss_mb = 0;  // the largest RSS of one worker sampled during the run
};
inline JobRun RunJobToEnd(cli::LocalCluster& cluster, cli::CoordinatorClient& client,
                          const std::string& yaml, proto::JobInfo* final_info = nullptr) {
  JobRun run;
  std::vector<pid_t> pids = cluster.AllPids();
  double cpu0 = 0;
  for (pid_t p : pids) cpu0 += CpuSeconds(p);
  auto t0 = std::chrono::steady_clock::now();
  auto submitted = client.Submit(yaml, "bench.yaml", 0);
  if (!submitted.ok()) {
    run.error = submitted.status().ToString();
    return run;
  }
  proto::JobInfo info;
  while (true) {
    auto j = client.GetJob(submitted->job_id());
    if (j.ok() && (j->state() == proto::JOB_FINISHED || j->state() == proto::JOB_FAILED)) {
      info = *j;
      break;
    }
    for (int w = 0; w < cluster.worker_count(); ++w) {
      run.worker_rss_mb = std::max(run.worker_rss_mb, RssMb(cluster.worker_pid(w)));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  run.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  run.cpu_s = -cpu0;
  for (pid_t p : pids) run.cpu_s += CpuSeconds(p);
  run.finished = info.state() == proto::JOB_FINISHED;
  run.error = info.error();
  if (final_info != nullptr) *final_info = info;
  return run;
}

// Runs `yaml` (a bounded job processing `records` records) `reps` times on a fresh 2-worker
// cluster, each run followed by `loop`, a single-threaded hand-written loop doing the same work
// (it returns its thread CPU seconds and a checksum of its output). Prints a line per run, how
// to reproduce (`reproduce`) and one line `BENCH <name> ... records_per_cpu_s=...
// loop_records_per_cpu_s=... loop_ratio=...` of medians. Returns the process exit code.
inline int CompareWithLoop(const std::string& name, const std::string& reproduce,
                           const std::string& yaml, int64_t records, int reps,
                           const std::function<double(uint64_t* checksum)>& loop) {
  std::unique_ptr<cli::LocalCluster> cluster = StartBenchCluster("sluice-bench");
  if (cluster == nullptr) return 1;
  const std::string dir = cluster->options().dir;
  cli::CoordinatorClient client(cluster->coordinator_address());
  std::vector<double> rates, cpus, per_cpu, loop_per_cpu, walls;
  for (int r = 0; r < reps; ++r) {
    JobRun run = RunJobToEnd(*cluster, client, yaml);
    if (!run.finished) {
      std::cerr << "job failed: " << run.error << "\n";
      return 1;
    }
    uint64_t checksum = 0;
    const double loop_cpu = loop(&checksum);
    walls.push_back(run.wall_s);
    rates.push_back(records / run.wall_s);
    cpus.push_back(run.cpu_s);
    per_cpu.push_back(records / run.cpu_s);
    loop_per_cpu.push_back(records / loop_cpu);
    std::printf(
        "run %d: %.2f s wall, %.0f records/s, %.2f CPU s, %.0f records/CPU-s; loop %.0f "
        "records/CPU-s (checksum %llu)\n",
        r + 1, run.wall_s, records / run.wall_s, run.cpu_s, records / run.cpu_s, records / loop_cpu,
        static_cast<unsigned long long>(checksum));
  }
  cluster->Stop();
  std::filesystem::remove_all(dir);
  std::printf("reproduce: %s\n", reproduce.c_str());
  std::printf(
      "BENCH %s records=%lld wall_s=%.3f records_per_s=%.0f cpu_s=%.3f "
      "records_per_cpu_s=%.0f loop_records_per_cpu_s=%.0f loop_ratio=%.2f of_loop=%.3f\n",
      name.c_str(), static_cast<long long>(records), Median(walls), Median(rates), Median(cpus),
      Median(per_cpu), Median(loop_per_cpu), Median(loop_per_cpu) / Median(per_cpu),
      Median(per_cpu) / Median(loop_per_cpu));
  return 0;
}

}  // namespace sluice::bench
