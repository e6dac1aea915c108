// The cost of exactly-once: the shuffle benchmark's keyed count with state in RocksDB, run with
// checkpoints every second and without, in the same run; checkpoint duration and size; the
// duration of checkpoints under backpressure (a slow sink); and the time from kill -9 of a
// worker to the job running again.
//
//   build/bin/checkpoint_benchmark [--records N] [--keys K] [--reps R] [--mode M]
//                                  [--aligned-timeout T] [--backpressure-only | --throughput-only]
//                                  [--heap-state] [--concurrent [--control] [--other-bin-dir D]]
//
// The count keeps its state in the keyed state backend (`state: backend`), so checkpoints
// snapshot RocksDB as they claim to; --heap-state runs the aggregate's default (`state: auto`:
// int64 keys in memory, written to the backend at each snapshot) instead. The header line and
// every BENCH line say which (state=backend or state=heap).
//
// The overhead is reported per CPU-second (the headline: all processes' CPU, so work moved to
// background threads still counts, and other load on a shared machine barely moves it) and per
// wall second until the sink had every record (excluding the final checkpoint a bounded job
// waits for at its end, a fixed cost per job and not per interval), each as the median of the
// ratios of the runs paired in the same repetition. --concurrent runs the two jobs of a pair at
// the same time on two clusters instead of one after the other (see RunConcurrent()); with
// --control neither job of a pair checkpoints, so its "overhead" is the method's own noise (an
// A/A test: session 28 measured -7.6..+1.5%, mostly within +-1.5%; BENCH
// checkpoint_control_concurrent). --other-bin-dir DIR runs one cluster from DIR, the other from
// this build (swapped every repetition, the submission order swapped every second pair) and the
// checkpointed job on both: two builds' checkpointed jobs under the same load (with --control:
// their jobs without checkpoints); a pair whose completed checkpoints differ by more than 1 is
// rejected.

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "bench/bench_util.h"
#include "cli/client.h"
#include "cli/local_cluster.h"

namespace {

using sluice::bench::CpuSeconds;
using sluice::bench::Median;

using Clock = std::chrono::steady_clock;

// `heap_state`: the aggregate's default `state: auto` (in memory); else `state: backend`.
std::string Job(bool heap_state, int64_t records, int64_t keys, const std::string& checkpoint,
                const std::string& sink, int64_t rate = 0) {
  return absl::StrCat("name: bench\nparallelism: 2\n", checkpoint, R"(
operators:
  - id: gen
    type: datagen
)", records > 0 ? absl::StrCat("    count: ", records, "\n") : "", "    rate: ", rate, R"(
    fields:
      - {name: key, type: int64, expr: "(seq * 7919) % )", keys, R"("}
  - {id: by_key, type: key_by, key: [key]}
  - {id: counts, type: aggregate, state: )", heap_state ? "auto" : "backend", R"(, aggregates: [{fn: count, as: n}]}
  - )", sink, "\n");
}

uint64_t SinkIn(const sluice::proto::JobInfo& j);

// Waits for job `id` to end. `processed_s` (if given): the seconds from `t0` until the job
// first reported its sink had received `records` records (-1: never), seen every 20 ms (the
// coordinator's long poll, which answers at the end at once: polling GetJob every 5 ms cost the
// coordinator ~7% of a core, counted in the CPU figures, more in the longer checkpointed runs).
sluice::proto::JobInfo WaitEnd(sluice::cli::CoordinatorClient& c, const std::string& id,
                               uint64_t records = 0, Clock::time_point t0 = {},
                               double* processed_s = nullptr) {
  if (processed_s != nullptr) *processed_s = -1;
  while (true) {
    auto j = c.WaitJob(id, processed_s != nullptr ? 20 : 1000);
    if (processed_s != nullptr && *processed_s < 0 && j.ok() && SinkIn(*j) >= records) {
      *processed_s = std::chrono::duration<double>(Clock::now() - t0).count();
    }
    if (j.ok() && (j->state() == sluice::proto::JOB_FINISHED || j->state() == sluice::proto::JOB_FAILED ||
                   j->state() == sluice::proto::JOB_CANCELLED)) {
      return *j;
    }
    if (!j.ok()) std::this_thread::sleep_for(std::chrono::milliseconds(5));  // not a busy loop
  }
}

uint64_t SinkIn(const sluice::proto::JobInfo& j) {
  for (const auto& v : j.vertices()) {
    for (const auto& o : v.operators()) {
      if (o.id() == "sink") return o.records_in();
    }
  }
  return 0;
}

// Prints `BENCH <name>`: the pairs' CPU overheads (1 - with/without ratio, %): quartiles,
// median and how many are within 5%. On this shared machine one pair's overhead moves by +-10
// points with other load, so a median needs many pairs; its quartiles say how far to trust it.
void PrintPairs(const std::vector<double>& cpu_ratios, const char* name, int64_t records,
                int64_t keys, const char* state_name) {
  std::vector<double> overhead;
  for (double c : cpu_ratios) overhead.push_back(100.0 * (1 - c));
  std::sort(overhead.begin(), overhead.end());
  auto quartile = [&](double q) {
    return overhead.empty() ? 0.0 : overhead[static_cast<size_t>(q * (overhead.size() - 1) + 0.5)];
  };
  const long within = std::count_if(overhead.begin(), overhead.end(), [](double o) { return o <= 5.0; });
  std::printf("BENCH %s records=%lld keys=%lld state=%s pairs=%zu cpu_overhead_pct_q1=%.1f "
              "median=%.1f q3=%.1f pairs_within_5pct=%ld\n",
              name, static_cast<long long>(records), static_cast<long long>(keys), state_name,
              overhead.size(), quartile(0.25), Median(overhead), quartile(0.75), within);
}

// --concurrent: each repetition runs the job without checkpoints on one cluster and with them
// on another at the same time (the clusters swap roles every repetition), so both see the same
// load from the rest of the machine; a cluster's CPU (all its processes) is its job's.
// Returns the per-repetition CPU ratios (with / without), or an empty vector on an error;
// `per_checkpoint_ms` gets each pair's CPU difference divided by its checkpoints (the run's
// length, and so its number of checkpoints, grows with the machine's load; this does not).
// `control` (--control): neither job checkpoints (the ratios are the method's own noise).
// `other_bin_dir` (--other-bin-dir): one cluster runs those binaries, the other this build's,
// both the same job (checkpointed unless `control`), so each pair compares two builds under the
// same load; the ratios are then the other build's CPU / this build's. The clusters start again
// every repetition with the builds swapped, and every second pair of repetitions submits to
// cluster b first (which cluster runs which build and which job is submitted first both
// alternate). A pair whose clusters' completed checkpoints differ by more than 1 is rejected
// (printed, no ratio).
std::vector<double> RunConcurrent(int reps, const std::function<std::string(bool)>& job,
                                  std::vector<double>* per_checkpoint_ms,
                                  const std::string& other_bin_dir = "", bool control = false) {
  const bool builds = !other_bin_dir.empty();
  std::unique_ptr<sluice::cli::LocalCluster> clusters[2];
  std::optional<sluice::cli::CoordinatorClient> clients[2];
  auto stop = [&] {
    for (auto& c : clusters) {
      if (c == nullptr) continue;
      const std::string dir = c->options().dir;
      c->Stop();
      std::filesystem::remove_all(dir);
      c.reset();
    }
  };
  // (Re)starts the clusters, cluster `other` (0 or 1; -1: neither) on other_bin_dir.
  auto start = [&](int other) {
    stop();
    for (int c = 0; c < 2; ++c) {
      const char* prefix = c == 0 ? "sluice-cpbench-a" : "sluice-cpbench-b";
      clusters[c] = sluice::bench::StartBenchCluster(prefix, 2, 1, "", c == other ? other_bin_dir : "");
      if (clusters[c] == nullptr) return false;
      clients[c].emplace(clusters[c]->coordinator_address());
    }
    return true;
  };
  if (!builds && !start(-1)) return {};
  std::vector<double> ratios;
  for (int r = 0; r < reps; ++r) {
    const int on_cluster = r % 2;  // the cluster running the checkpointed job (or the other build)
    if (builds && !start(on_cluster)) return {};
    const int first = builds ? (r / 2) % 2 : 0;  // the cluster submitted to first
    double cpu[2] = {0, 0};
    std::string ids[2];
    for (int c = 0; c < 2; ++c) {
      for (pid_t p : clusters[c]->AllPids()) cpu[c] -= CpuSeconds(p);
    }
    for (int c : {first, 1 - first}) {
      auto s = clients[c]->Submit(job(!control && (builds || c == on_cluster)), "bench.yaml", 0);
      if (!s.ok()) {
        std::cerr << s.status() << "\n";
        return {};
      }
      ids[c] = s->job_id();
    }
    // Both waited for at once (long polls, no polling), each cluster's CPU read when its job ended.
    sluice::proto::JobInfo infos[2];
    std::thread waiters[2];
    for (int c = 0; c < 2; ++c) {
      waiters[c] = std::thread([&, c] {
        infos[c] = WaitEnd(*clients[c], ids[c]);
        for (pid_t p : clusters[c]->AllPids()) cpu[c] += CpuSeconds(p);
      });
    }
    for (auto& w : waiters) w.join();
    int checkpoints[2] = {0, 0};
    for (int c = 0; c < 2; ++c) {
      const sluice::proto::JobInfo& info = infos[c];
      if (info.state() != sluice::proto::JOB_FINISHED) {
        std::cerr << "job failed: " << info.error() << "\n";
        return {};
      }
      // Ids count up from 1; the history holds only the last 10.
      for (const auto& cp : info.checkpoints()) {
        if (cp.status() == "COMPLETED") {
          checkpoints[c] = std::max<int>(checkpoints[c], cp.checkpoint_id());
        }
      }
    }
    if (builds) {
      const int other = on_cluster, self = 1 - on_cluster;
      std::printf("builds pair %d (%s): this build %.2f CPU s, %d checkpoints (cluster %c); other "
                  "build %.2f CPU s, %d checkpoints (cluster %c); cluster %c submitted first",
                  r + 1, control ? "no checkpoints" : "checkpoints 1s", cpu[self],
                  checkpoints[self], 'a' + self, cpu[other], checkpoints[other], 'a' + other,
                  'a' + first);
      if (std::abs(checkpoints[0] - checkpoints[1]) > 1) {
        std::printf(": rejected (checkpoint counts differ by more than 1)\n");
        continue;
      }
      ratios.push_back(cpu[other] / cpu[self]);
      std::printf(", this_minus_other_pct=%.1f\n", 100.0 * (cpu[self] / cpu[other] - 1));
      continue;
    }
    const double off = cpu[1 - on_cluster], on = cpu[on_cluster];
    ratios.push_back(off / on);
    if (control) {
      std::printf("control pair %d: no checkpoints on either cluster, %.2f CPU s (cluster %c) and "
                  "%.2f CPU s (cluster %c), difference_pct=%.1f\n",
                  r + 1, on, 'a' + on_cluster, off, 'a' + (1 - on_cluster), 100.0 * (1 - off / on));
      continue;
    }
    const int n = checkpoints[on_cluster];
    if (n > 0) per_checkpoint_ms->push_back(1e3 * (on - off) / n);
    std::printf("concurrent pair %d: no checkpoints %.2f CPU s, checkpoints 1s %.2f CPU s (%d "
                "checkpoints), cpu_overhead_pct=%.1f, cpu_ms_per_checkpoint=%.0f\n",
                r + 1, off, on, n, 100.0 * (1 - off / on), n > 0 ? 1e3 * (on - off) / n : 0.0);
  }
  stop();
  return ratios;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Throughput with and without checkpoints, checkpoint cost, recovery time"};
  int64_t records = 20'000'000;
  int64_t keys = 10'000;  // as the foundation's shuffle benchmark
  int reps = 3;
  app.add_option("--records", records, "Records per run")->capture_default_str();
  app.add_option("--keys", keys, "Distinct keys (state size)")->capture_default_str();
  app.add_option("--reps", reps, "Repetitions (medians are reported)")->capture_default_str();
  std::string mode = "auto";
  app.add_option("--mode", mode, "Checkpoint mode of every checkpointed job")
      ->check(CLI::IsMember({"aligned", "unaligned", "auto"}))
      ->capture_default_str();
  std::string aligned_timeout;
  app.add_option("--aligned-timeout", aligned_timeout,
                 "With --mode auto: alignment time before switching to unaligned (e.g. 200ms; "
                 "default: the job default)");
  bool backpressure_only = false;
  app.add_flag("--backpressure-only", backpressure_only,
               "Measure only checkpoints under backpressure (section 2)");
  bool throughput_only = false;
  app.add_flag("--throughput-only", throughput_only,
               "Measure only the throughput with and without checkpoints (section 1)")
      ->excludes("--backpressure-only");
  bool heap_state = false;
  app.add_flag("--heap-state", heap_state,
               "The aggregate's in-memory path (state: auto) instead of the backend's");
  bool concurrent = false;
  app.add_flag("--concurrent", concurrent,
               "Only the with/without comparison, each pair run at the same time on two clusters");
  std::string other_bin_dir;
  app.add_option("--other-bin-dir", other_bin_dir,
                 "With --concurrent: one cluster runs these binaries (which one alternates) and "
                 "both jobs checkpoint (neither with --control; two builds compared under the same load)")
      ->needs("--concurrent");
  bool control = false;
  app.add_flag("--control", control,
               "With --concurrent: both jobs of each pair without checkpoints (the pairs' noise)")
      ->needs("--concurrent");
  CLI11_PARSE(app, argc, argv);
  const char* state_name = heap_state ? "heap" : "backend";
  std::printf("keyed count state: %s\n", state_name);
  // The checkpoint options every checkpointed job gets besides its interval.
  const std::string mode_options = absl::StrCat(
      ", mode: ", mode, aligned_timeout.empty() ? "" : absl::StrCat(", aligned_timeout: ", aligned_timeout));

  if (concurrent) {
    const std::string with_cp = absl::StrCat("checkpoint: {interval: 1s, retain: 2", mode_options, "}\n");
    std::vector<double> per_checkpoint_ms;
    std::vector<double> ratios = RunConcurrent(
        reps,
        [&](bool on) {
          return Job(heap_state, records, keys, on ? with_cp : "", "{id: sink, type: blackhole}");
        },
        &per_checkpoint_ms, other_bin_dir, control);
    if (!other_bin_dir.empty()) {
      std::vector<double> pct;
      for (double r : ratios) pct.push_back(100.0 * (1 / r - 1));
      std::printf("BENCH %s records=%lld keys=%lld pairs=%zu rejected=%zu "
                  "this_minus_other_pct_median=",
                  control ? "checkpoint_builds_control_concurrent" : "checkpoint_builds_concurrent",
                  static_cast<long long>(records), static_cast<long long>(keys), pct.size(),
                  static_cast<size_t>(reps) - pct.size());
      if (pct.empty()) {
        std::printf("none (every pair rejected or failed)\n");
        return 1;
      }
      std::printf("%.1f\n", Median(pct));
      return 0;
    }
    if (ratios.empty()) return 1;
    if (control) {
      // An A/A test: the "overhead" of a job over the same job (the pairs' noise); no checkpoints.
      PrintPairs(ratios, "checkpoint_control_concurrent", records, keys, state_name);
      return 0;
    }
    PrintPairs(ratios, "checkpoint_overhead_concurrent", records, keys, state_name);
    std::printf("BENCH checkpoint_cpu_per_checkpoint keys=%lld cpu_ms_median=%.0f\n",
                static_cast<long long>(keys), Median(per_checkpoint_ms));
    return 0;
  }
  std::unique_ptr<sluice::cli::LocalCluster> cluster = sluice::bench::StartBenchCluster("sluice-cpbench");
  if (cluster == nullptr) return 1;
  const std::string dir = cluster->options().dir;
  sluice::cli::CoordinatorClient client(cluster->coordinator_address());
  const std::string sink = "{id: sink, type: blackhole}";
  const std::string with_cp = absl::StrCat("checkpoint: {interval: 1s, retain: 2", mode_options, "}\n");

  // 1. Throughput, alternating without / with checkpoints.
  std::vector<double> rate_off, rate_on, cpu_off, cpu_on, cp_ms, cp_size, cp_uploaded;
  // Per repetition: with / without, per wall second until processed and per CPU-second.
  std::vector<double> wall_ratio, cpu_ratio;
  for (int r = 0; r < reps && !backpressure_only; ++r) {
    // Odd repetitions run the checkpointed job first: a cost of going first or second (the
    // state a job leaves behind, load that rises or falls) then falls on both sides alike.
    double processed_rep[2] = {0, 0}, cpu_rep[2] = {0, 0};
    for (bool on : {r % 2 != 0, r % 2 == 0}) {
      double cpu0 = 0;
      for (pid_t p : cluster->AllPids()) cpu0 += CpuSeconds(p);
      auto t0 = Clock::now();
      auto s = client.Submit(Job(heap_state, records, keys, on ? with_cp : "", sink), "bench.yaml", 0);
      if (!s.ok()) {
        std::cerr << s.status() << "\n";
        return 1;
      }
      double processed = 0;
      auto info = WaitEnd(client, s->job_id(), records, t0, &processed);
      double wall = std::chrono::duration<double>(Clock::now() - t0).count();
      double cpu = -cpu0;
      for (pid_t p : cluster->AllPids()) cpu += CpuSeconds(p);
      if (info.state() != sluice::proto::JOB_FINISHED) {
        std::cerr << "job failed: " << info.error() << "\n";
        return 1;
      }
      (on ? rate_on : rate_off).push_back(records / wall);
      (on ? cpu_on : cpu_off).push_back(cpu);
      processed_rep[on] = processed;
      cpu_rep[on] = cpu;
      int completed = 0;
      for (const auto& c : info.checkpoints()) {
        if (c.status() != "COMPLETED") continue;
        ++completed;
        cp_ms.push_back(c.duration_ms());
        cp_size.push_back(c.full_size());
        cp_uploaded.push_back(c.incremental_size());
      }
      std::printf("run %d %s: %.2f s (all records at the sink after %.2f s), %.0f records/s, "
                  "%.2f CPU s%s\n", r + 1, on ? "checkpoints 1s" : "no checkpoints", wall, processed,
                  records / wall, cpu,
                  on ? absl::StrCat(", ", completed, " checkpoints").c_str() : "");
    }
    wall_ratio.push_back(processed_rep[0] / processed_rep[1]);
    cpu_ratio.push_back(cpu_rep[0] / cpu_rep[1]);
    std::printf("pair %d: cpu_overhead_pct=%.1f\n", r + 1, 100.0 * (1 - cpu_ratio.back()));
  }

  // 2. Checkpoints under backpressure: the sink takes 20K records/s per subtask.
  auto slow = throughput_only ? absl::StatusOr<sluice::proto::SubmitJobResponse>(absl::CancelledError())
                              : client.Submit(Job(heap_state, 0, keys, absl::StrCat("checkpoint: {interval: 1s, timeout: 60s", mode_options, "}\n"),
                                "{id: sink, type: blackhole, max_rate: 20000}"),
                            "slow.yaml", 0);
  std::vector<double> bp_ms;
  if (slow.ok()) {
    std::this_thread::sleep_for(std::chrono::seconds(25));
    auto info = client.GetJob(slow->job_id());
    if (info.ok()) {
      for (const auto& c : info->checkpoints()) {
        if (c.status() != "COMPLETED") continue;
        bp_ms.push_back(c.duration_ms());
        std::printf("backpressure checkpoint %lld: %lld ms, %s, alignment %lld ms, in-flight %lld bytes\n",
                    static_cast<long long>(c.checkpoint_id()), static_cast<long long>(c.duration_ms()),
                    c.unaligned() ? "unaligned" : "aligned", static_cast<long long>(c.alignment_ms()),
                    static_cast<long long>(c.persisted_bytes()));
      }
    }
    (void)client.Cancel(slow->job_id());
    WaitEnd(client, slow->job_id());
  }

  // 3. Recovery: kill -9 a worker under a running checkpointed job, start a replacement, and
  // time until the job's new attempt is running and its sink receives records again.
  std::vector<double> recovery_s;
  for (int r = 0; r < reps && !backpressure_only && !throughput_only; ++r) {
    auto job = client.Submit(Job(heap_state, 0, keys, absl::StrCat("checkpoint: {interval: 500ms", mode_options,
                                                       "}\nrestart: {attempts: 10, delay: 100ms}\n"),
                                 sink, 200000),
                             "recover.yaml", 0);
    if (!job.ok()) break;
    std::this_thread::sleep_for(std::chrono::seconds(3));
    auto before = client.GetJob(job->job_id());
    int64_t attempt = before.ok() ? before->attempt() : 1;
    auto t0 = Clock::now();
    if (!cluster->KillWorker(r % 2, SIGKILL).ok() || !cluster->RestartWorker(r % 2, -1).ok()) break;
    double seconds = -1;
    while (Clock::now() - t0 < std::chrono::seconds(60)) {
      auto j = client.GetJob(job->job_id());
      if (j.ok() && j->state() == sluice::proto::JOB_RUNNING && j->attempt() > attempt && SinkIn(*j) > 0) {
        seconds = std::chrono::duration<double>(Clock::now() - t0).count();
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    std::printf("recovery %d: %.2f s\n", r + 1, seconds);
    if (seconds > 0) recovery_s.push_back(seconds);
    (void)client.Cancel(job->job_id());
    WaitEnd(client, job->job_id());
    cluster->WaitForWorkers(2, 20000).IgnoreError();
  }
  cluster->Stop();
  std::filesystem::remove_all(dir);

  double off = Median(rate_off), on = Median(rate_on);
  std::printf("reproduce: build/bin/checkpoint_benchmark --records %lld --keys %lld --reps %d --mode %s%s%s%s\n",
              static_cast<long long>(records), static_cast<long long>(keys), reps, mode.c_str(),
              aligned_timeout.empty() ? "" : absl::StrCat(" --aligned-timeout ", aligned_timeout).c_str(),
              backpressure_only ? " --backpressure-only" : throughput_only ? " --throughput-only" : "",
              heap_state ? " --heap-state" : "");
  std::printf("BENCH checkpoint_overhead records=%lld state=%s records_per_s_no_checkpoints=%.0f "
              "records_per_s_checkpoints_1s=%.0f throughput_ratio=%.3f slowdown_pct=%.1f "
              "records_per_cpu_s_no_checkpoints=%.0f records_per_cpu_s_checkpoints=%.0f\n",
              static_cast<long long>(records), state_name, off, on, on / off, 100.0 * (1 - on / off),
              records / Median(cpu_off), records / Median(cpu_on));
  // The headline: medians of the per-repetition ratios (with / without).
  std::printf("BENCH checkpoint_overhead_paired records=%lld keys=%lld state=%s cpu_ratio=%.3f "
              "cpu_overhead_pct=%.1f wall_ratio_until_processed=%.3f wall_overhead_pct=%.1f\n",
              static_cast<long long>(records), static_cast<long long>(keys), state_name,
              Median(cpu_ratio),
              100.0 * (1 - Median(cpu_ratio)), Median(wall_ratio),
              100.0 * (1 - Median(wall_ratio)));
  PrintPairs(cpu_ratio, "checkpoint_overhead_pairs", records, keys, state_name);
  std::printf("BENCH checkpoint_cost state=%s duration_ms_median=%.0f full_size_bytes_median=%.0f "
              "uploaded_bytes_median=%.0f backpressure_duration_ms_median=%.0f backpressure_checkpoints=%zu\n",
              state_name, Median(cp_ms), Median(cp_size), Median(cp_uploaded), Median(bp_ms), bp_ms.size());
  std::printf("BENCH recovery kill_to_running_s_median=%.2f runs=%zu\n", Median(recovery_s),
              recovery_s.size());
  return 0;
}
