// The cost of exactly-once: the shuffle benchmark's keyed count with state in RocksDB, run with
// checkpoints every second and without, in the same run; checkpoint duration and size; the
// duration of checkpoints under backpressure (a slow sink); and the time from kill -9 of a
// worker to the job running again.
//
//   build/bin/checkpoint_benchmark [--records N] [--keys K] [--reps R] [--mode M]
//                                  [--aligned-timeout T] [--backpressure-only | --throughput-only]
//                                  [--heap-state]
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
// ratios of the runs paired in the same repetition.

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
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

// Polls job `id` until it ends. `processed_s` (if given): the seconds from `t0` until the job
// first reported its sink had received `records` records (-1: never).
sluice::proto::JobInfo WaitEnd(sluice::cli::CoordinatorClient& c, const std::string& id,
                               uint64_t records = 0, Clock::time_point t0 = {},
                               double* processed_s = nullptr) {
  if (processed_s != nullptr) *processed_s = -1;
  while (true) {
    auto j = c.GetJob(id);
    if (processed_s != nullptr && *processed_s < 0 && j.ok() && SinkIn(*j) >= records) {
      *processed_s = std::chrono::duration<double>(Clock::now() - t0).count();
    }
    if (j.ok() && (j->state() == sluice::proto::JOB_FINISHED || j->state() == sluice::proto::JOB_FAILED ||
                   j->state() == sluice::proto::JOB_CANCELLED)) {
      return *j;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
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
  CLI11_PARSE(app, argc, argv);
  const char* state_name = heap_state ? "heap" : "backend";
  std::printf("keyed count state: %s\n", state_name);
  // The checkpoint options every checkpointed job gets besides its interval.
  const std::string mode_options = absl::StrCat(
      ", mode: ", mode, aligned_timeout.empty() ? "" : absl::StrCat(", aligned_timeout: ", aligned_timeout));

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
  double processed_off = 0, cpu_rep_off = 0;
  for (int r = 0; r < reps && !backpressure_only; ++r) {
    for (bool on : {false, true}) {
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
      if (!on) {
        processed_off = processed;
        cpu_rep_off = cpu;
      } else {
        wall_ratio.push_back(processed_off / processed);
        cpu_ratio.push_back(cpu_rep_off / cpu);
      }
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
  std::printf("BENCH checkpoint_cost state=%s duration_ms_median=%.0f full_size_bytes_median=%.0f "
              "uploaded_bytes_median=%.0f backpressure_duration_ms_median=%.0f backpressure_checkpoints=%zu\n",
              state_name, Median(cp_ms), Median(cp_size), Median(cp_uploaded), Median(bp_ms), bp_ms.size());
  std::printf("BENCH recovery kill_to_running_s_median=%.2f runs=%zu\n", Median(recovery_s),
              recovery_s.size());
  return 0;
}
