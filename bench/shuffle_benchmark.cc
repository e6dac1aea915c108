// Throughput of the cross-worker shuffle: a local cluster of 2 workers runs
// datagen -> key_by -> count -> blackhole with parallelism 2 for a fixed number of records.
// Beside it, in the same run, a single-threaded hand-written loop does the same generation and
// keyed count. Prints one BENCH line with medians over the repetitions.
//
//   build/bin/shuffle_benchmark [--records N] [--keys K] [--reps R]

#include <time.h>
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
#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "bench/bench_util.h"
#include "cli/client.h"
#include "cli/local_cluster.h"

namespace {

using sluice::bench::CpuSeconds;
using sluice::bench::Median;
using sluice::bench::ThreadCpuSeconds;

// The same work as the job, by hand: generate (key, value) from seq, count per key, and hand
// each updated count to a sink (here: a checksum, so the compiler cannot drop the work).
double HandLoop(int64_t records, int64_t keys, uint64_t* checksum) {
  double start = ThreadCpuSeconds();
  absl::flat_hash_map<int64_t, int64_t> counts;
  uint64_t sum = 0;
  for (int64_t seq = 0; seq < records; ++seq) {
    int64_t key = (seq * 7919) % keys;
    sum += ++counts[key];
  }
  *checksum = sum;
  return ThreadCpuSeconds() - start;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Cross-worker shuffle throughput versus a hand-written loop"};
  int64_t records = 20'000'000;
  int64_t keys = 10'000;
  int reps = 3;
  app.add_option("--records", records, "Records per run")->capture_default_str();
  app.add_option("--keys", keys, "Distinct keys")->capture_default_str();
  app.add_option("--reps", reps, "Repetitions (medians are reported)")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  std::unique_ptr<sluice::cli::LocalCluster> cluster = sluice::bench::StartBenchCluster("sluice-bench");
  if (cluster == nullptr) return 1;
  const std::string dir = cluster->options().dir;
  sluice::cli::CoordinatorClient client(cluster->coordinator_address());
  const std::string job = absl::StrCat(R"(
name: shuffle-keyed-count
parallelism: 2
operators:
  - id: gen
    type: datagen
    count: )", records, R"(
    fields:
      - {name: key, type: int64, expr: "(seq * 7919) % )", keys, R"("}
      - {name: seq, type: int64, expr: "seq"}
  - {id: by_key, type: key_by, key: [key]}
  - {id: counts, type: aggregate, aggregates: [{fn: count, as: n}]}
  - {id: sink, type: blackhole}
)");

  std::vector<double> rates, cpus, per_cpu, loop_per_cpu, walls;
  for (int r = 0; r < reps; ++r) {
    std::vector<pid_t> pids = cluster->AllPids();
    double cpu0 = 0;
    for (pid_t p : pids) cpu0 += CpuSeconds(p);
    auto t0 = std::chrono::steady_clock::now();
    auto submitted = client.Submit(job, "bench.yaml", 0);
    if (!submitted.ok()) {
      std::cerr << submitted.status() << "\n";
      return 1;
    }
    sluice::proto::JobInfo info;
    while (true) {
      auto j = client.GetJob(submitted->job_id());
      if (j.ok() && (j->state() == sluice::proto::JOB_FINISHED || j->state() == sluice::proto::JOB_FAILED)) {
        info = *j;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    double cpu = -cpu0;
    for (pid_t p : pids) cpu += CpuSeconds(p);
    if (info.state() != sluice::proto::JOB_FINISHED) {
      std::cerr << "job failed: " << info.error() << "\n";
      return 1;
    }
    uint64_t checksum = 0;
    double loop_cpu = HandLoop(records, keys, &checksum);
    walls.push_back(wall);
    rates.push_back(records / wall);
    cpus.push_back(cpu);
    per_cpu.push_back(records / cpu);
    loop_per_cpu.push_back(records / loop_cpu);
    std::printf("run %d: %.2f s wall, %.0f records/s, %.2f CPU s, %.0f records/CPU-s; loop %.0f records/CPU-s (checksum %llu)\n",
                r + 1, wall, records / wall, cpu, records / cpu, records / loop_cpu,
                static_cast<unsigned long long>(checksum));
  }
  cluster->Stop();
  std::filesystem::remove_all(dir);
  double ratio = Median(loop_per_cpu) / Median(per_cpu);
  std::printf("reproduce: build/bin/shuffle_benchmark --records %lld --keys %lld --reps %d\n",
              static_cast<long long>(records), static_cast<long long>(keys), reps);
  std::printf("BENCH shuffle_keyed_count records=%lld wall_s=%.3f records_per_s=%.0f cpu_s=%.3f "
              "records_per_cpu_s=%.0f loop_records_per_cpu_s=%.0f loop_ratio=%.2f\n",
              static_cast<long long>(records), Median(walls), Median(rates), Median(cpus),
              Median(per_cpu), Median(loop_per_cpu), ratio);
  return 0;
}
