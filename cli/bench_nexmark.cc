#include "cli/bench_nexmark.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <map>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "bench/bench_util.h"
#include "bench/nexmark/jobs.h"
#include "bench/nexmark/loops.h"
#include "cli/client.h"
#include "cli/local_cluster.h"
#include "common/status.h"

namespace sluice::cli {
namespace {

// Published per-core throughput of Flink (events/s/core; 3 x 8-core nodes, RocksDB,
// checkpoints every 3 min), from /work/shared/NEXMARK.md, which has none for q14, q20, q21, q22.
const std::map<std::string, double>& FlinkPerCore() {
  static const auto* m = new std::map<std::string, double>{
      {"q0", 155e3}, {"q1", 158e3}, {"q2", 175e3}, {"q3", 152e3}, {"q4", 34e3},
      {"q5", 22e3},  {"q7", 12e3},  {"q8", 146e3}, {"q11", 40e3}};
  return *m;
}

// Flink's figure for `query`, or 0 if none is published.
double FlinkFor(const std::string& query) {
  auto it = FlinkPerCore().find(query);
  return it == FlinkPerCore().end() ? 0 : it->second;
}

struct Result {
  std::string query;
  int64_t events = 0;
  double wall_s = 0;
  double cpu_s = 0;
  int checkpoints = 0;
  double loop_cpu_s = 0;
  uint64_t loop_rows = 0;
  uint64_t loop_checksum = 0;  // printed, so the loop's work cannot be optimised away
  double per_cpu() const { return events / cpu_s; }
  double loop_per_cpu() const { return events / loop_cpu_s; }
};

double CpuOf(const std::vector<pid_t>& pids) {
  double cpu = 0;
  for (pid_t p : pids) cpu += bench::CpuSeconds(p);
  return cpu;
}

// Runs `job` to its end; fills wall time, CPU seconds and completed checkpoints.
absl::Status RunJob(LocalCluster& cluster, CoordinatorClient& client, const std::string& query,
                    const std::string& job, int parallelism, Result* r) {
  const std::vector<pid_t> pids = cluster.AllPids();
  const double cpu0 = CpuOf(pids);
  const auto t0 = std::chrono::steady_clock::now();
  SLUICE_ASSIGN_OR_RETURN(proto::SubmitJobResponse submitted,
                          client.Submit(job, absl::StrCat(query, ".yaml"), parallelism));
  // One long poll (WaitJob) answered at the job's end: polling GetJob every few ms cost the
  // coordinator CPU that this benchmark counts.
  SLUICE_ASSIGN_OR_RETURN(proto::JobInfo info, client.WaitForEnd(submitted.job_id(), /*progress_ms=*/10'000));
  r->wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r->cpu_s = CpuOf(pids) - cpu0;
  if (info.state() != proto::JOB_FINISHED) {
    return absl::AbortedError(absl::StrCat(query, " ended ", JobStateName(info.state()), ": ", info.error()));
  }
  for (const auto& c : info.checkpoints()) r->checkpoints += c.status() == "COMPLETED";
  return absl::OkStatus();
}

// The loop over the same events in this thread; its CPU seconds.
absl::Status RunLoop(const std::string& query, Result* r) {
  nexmark::Generator generator;
  uint64_t checksum = 0, rows = 0;
  const double t0 = bench::ThreadCpuSeconds();
  SLUICE_RETURN_IF_ERROR(nexmark::RunLoop(query, generator, r->events, [&](const Record& row) {
    checksum += static_cast<uint64_t>(row.GetInt(0));
    ++rows;
  }));
  r->loop_cpu_s = bench::ThreadCpuSeconds() - t0;
  r->loop_rows = rows;
  r->loop_checksum = checksum;
  return absl::OkStatus();
}

}  // namespace

absl::Status RunNexmarkBench(const NexmarkBenchOptions& options, std::ostream& out) {
  const std::string job_dir = options.job_dir.empty() ? nexmark::DefaultJobDir() : options.job_dir;
  if (options.events <= 0) return absl::InvalidArgumentError("--events must be positive");
  if (options.workers < 1 || options.parallelism < 1 || options.reps < 1) {
    return absl::InvalidArgumentError("--workers, --parallelism and --reps must be at least 1");
  }
  std::vector<std::string> queries = options.queries;
  if (queries.empty()) {
    for (const nexmark::LoopQuery& q : nexmark::LoopQueries()) {
      if (std::filesystem::exists(absl::StrCat(job_dir, "/", q.name, ".yaml"))) queries.push_back(q.name);
    }
  }
  std::map<std::string, std::string> jobs;
  for (const std::string& q : queries) {
    if (nexmark::FindLoopQuery(q) == nullptr) {
      std::vector<std::string> known;
      for (const nexmark::LoopQuery& l : nexmark::LoopQueries()) known.push_back(l.name);
      return absl::InvalidArgumentError(
          absl::StrCat("unknown Nexmark query '", q, "' (known: ", absl::StrJoin(known, ", "), ")"));
    }
    SLUICE_ASSIGN_OR_RETURN(jobs[q], nexmark::LoadJob(job_dir, q, {{"EVENTS", std::to_string(options.events)},
                                                                   {"CHECKPOINT_INTERVAL", options.checkpoint_interval}}));
  }

  const int slots = (options.parallelism + options.workers - 1) / options.workers;
  std::unique_ptr<LocalCluster> cluster = bench::StartBenchCluster("sluice-nexmark", options.workers, slots);
  if (cluster == nullptr) return absl::UnavailableError("cannot start a local cluster");
  const std::string cluster_dir = cluster->options().dir;
  CoordinatorClient client(cluster->coordinator_address());
  out << absl::StrFormat("Nexmark: %d events per query, %d worker(s) x %d slot(s), parallelism %d, "
                         "checkpoints every %s (RocksDB)\n",
                         options.events, options.workers, slots, options.parallelism,
                         options.checkpoint_interval);

  // Per query the run with the median engine events per CPU-second (and its own loop run).
  std::vector<Result> results;
  absl::Status status;
  for (const std::string& q : queries) {
    std::vector<Result> runs;
    for (int rep = 0; rep < options.reps && status.ok(); ++rep) {
      Result r;
      r.query = q;
      r.events = options.events;
      status = RunJob(*cluster, client, q, jobs[q], options.parallelism, &r);
      if (!status.ok()) break;
      status = RunLoop(q, &r);
      if (!status.ok()) break;
      out << absl::StrFormat(
          "%s: %d events in %.2f s wall, %.2f CPU s (all Sluice processes), %.0f events/CPU-s, %d "
          "checkpoints; loop %.0f events/CPU-s (%.2f CPU s, %d rows, checksum %d); engine/loop %.2f\n",
          q, r.events, r.wall_s, r.cpu_s, r.per_cpu(), r.checkpoints, r.loop_per_cpu(), r.loop_cpu_s,
          r.loop_rows, r.loop_checksum, r.per_cpu() / r.loop_per_cpu());
      runs.push_back(r);
    }
    if (!status.ok()) break;
    std::sort(runs.begin(), runs.end(),
              [](const Result& a, const Result& b) { return a.per_cpu() < b.per_cpu(); });
    // A whole run represents the query, so an even count takes the upper of its two middle
    // runs (not a mean, which no run measured).
    results.push_back(runs[runs.size() / 2]);
  }
  cluster->Stop();
  std::filesystem::remove_all(cluster_dir);
  SLUICE_RETURN_IF_ERROR(status);

  out << "\n"
      << absl::StrFormat("%-5s %12s %8s %8s %14s %14s %12s %12s %10s\n", "query", "events", "wall_s",
                         "cpu_s", "events/cpu-s", "loop ev/cpu-s", "engine/loop", "flink/core",
                         "vs flink");
  for (const Result& r : results) {
    const double flink = FlinkFor(r.query);
    out << absl::StrFormat("%-5s %12d %8.2f %8.2f %14.0f %14.0f %12.2f ", r.query, r.events, r.wall_s,
                           r.cpu_s, r.per_cpu(), r.loop_per_cpu(), r.per_cpu() / r.loop_per_cpu());
    if (flink > 0) {
      out << absl::StrFormat("%12.0f %9.1fx\n", flink, r.per_cpu() / flink);
    } else {
      out << absl::StrFormat("%12s %10s\n", "n/a", "n/a");
    }
  }
  out << absl::StrFormat(
      "reproduce: sluice bench nexmark --queries %s --events %d --workers %d --parallelism %d --reps %d\n",
      absl::StrJoin(queries, ","), options.events, options.workers, options.parallelism, options.reps);
  for (const Result& r : results) {
    // No flink_ratio for a query without a published Flink figure.
    const double flink = FlinkFor(r.query);
    out << absl::StrFormat(
        "BENCH nexmark_%s events=%d wall_s=%.3f cpu_s=%.3f events_per_cpu_s=%.0f "
        "loop_events_per_cpu_s=%.0f loop_ratio=%.2f%s checkpoints=%d\n",
        r.query, r.events, r.wall_s, r.cpu_s, r.per_cpu(), r.loop_per_cpu(), r.loop_per_cpu() / r.per_cpu(),
        flink > 0 ? absl::StrFormat(" flink_ratio=%.1f", r.per_cpu() / flink) : "", r.checkpoints);
  }
  return absl::OkStatus();
}

}  // namespace sluice::cli
