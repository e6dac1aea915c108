// Throughput of the cross-worker shuffle: a local cluster of 2 workers runs
// datagen -> key_by -> count -> blackhole with parallelism 2 for a fixed number of records.
// Beside it, in the same run, a single-threaded hand-written loop does the same generation and
// keyed count. Prints one BENCH line with medians over the repetitions.
//
//   build/bin/shuffle_benchmark [--records N] [--keys K] [--reps R] [--state-memory SIZE]
//                               [--heap-state]
//
// The count keeps its state in the keyed state backend (`state: backend`: RocksDB behind the
// write-back cache), which is what these figures measure; --heap-state runs the aggregate's
// default (`state: auto`: an int64 key's accumulators in memory, within the state memory
// budget) instead. Every BENCH line says which (state=backend or state=heap).
//
// With --keys-sweep it runs 10K, 100K, 1M and 10M keys (or the --sweep-keys given; records:
// --sweep-records-per-key x keys, at least --sweep-min-records and at most --sweep-max-records)
// on a cluster with the workers' default state memory (unless --sweep-small-only), then on one
// with --state-memory 64MiB per worker, and prints a BENCH state_scaling_<keys> (and
// state_scaling_small_<keys>) line per key count.

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
using sluice::bench::RunJobToEnd;
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


// `heap_state`: the aggregate's default `state: auto` (in memory); else `state: backend`.
std::string JobYaml(int64_t records, int64_t keys, bool heap_state) {
  return absl::StrCat(R"(
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
  - {id: counts, type: aggregate, state: )", heap_state ? "auto" : "backend", R"(, aggregates: [{fn: count, as: n}]}
  - {id: sink, type: blackhole}
)");
}

// The keyed state's cache hit rate of a finished job (hits / reads over every keyed operator
// subtask, from the coordinator's job info); -1 when it read no state.
double CacheHitRate(const sluice::proto::JobInfo& info) {
  uint64_t hits = 0, misses = 0;
  for (const auto& v : info.vertices()) {
    for (const auto& o : v.operators()) {
      hits += o.state_cache_hits();
      misses += o.state_cache_misses();
    }
  }
  return hits + misses == 0 ? -1 : static_cast<double>(hits) / (hits + misses);
}

// Medians over the repetitions of one configuration.
struct Result {
  double wall_s = 0;
  double records_per_s = 0;
  double cpu_s = 0;
  double records_per_cpu_s = 0;
  double loop_records_per_cpu_s = 0;
  double worker_rss_mb = 0;
  double cache_hit_rate = 0;
};

// Runs the job `reps` times (each followed by the hand loop); false if a run failed.
bool Measure(sluice::cli::LocalCluster& cluster, sluice::cli::CoordinatorClient& client,
             int64_t records, int64_t keys, int reps, bool heap_state, Result* out) {
  const std::string job = JobYaml(records, keys, heap_state);
  std::vector<double> rates, cpus, per_cpu, loop_per_cpu, walls, rss, hit_rates;
  for (int r = 0; r < reps; ++r) {
    sluice::proto::JobInfo info;
    sluice::bench::JobRun run = RunJobToEnd(cluster, client, job, &info);
    if (!run.finished) {
      std::cerr << "job failed: " << run.error << "\n";
      return false;
    }
    uint64_t checksum = 0;
    double loop_cpu = HandLoop(records, keys, &checksum);
    walls.push_back(run.wall_s);
    rates.push_back(records / run.wall_s);
    cpus.push_back(run.cpu_s);
    per_cpu.push_back(records / run.cpu_s);
    loop_per_cpu.push_back(records / loop_cpu);
    rss.push_back(run.worker_rss_mb);
    hit_rates.push_back(CacheHitRate(info));
    std::printf("keys %lld run %d: %.2f s wall, %.0f records/s, %.2f CPU s, %.0f records/CPU-s, "
                "worker RSS %.0f MiB, cache hit rate %.3f; loop %.0f records/CPU-s (checksum %llu)\n",
                static_cast<long long>(keys), r + 1, run.wall_s, records / run.wall_s, run.cpu_s,
                records / run.cpu_s, run.worker_rss_mb, hit_rates.back(), records / loop_cpu,
                static_cast<unsigned long long>(checksum));
    std::fflush(stdout);
  }
  out->wall_s = Median(walls);
  out->records_per_s = Median(rates);
  out->cpu_s = Median(cpus);
  out->records_per_cpu_s = Median(per_cpu);
  out->loop_records_per_cpu_s = Median(loop_per_cpu);
  out->worker_rss_mb = Median(rss);
  out->cache_hit_rate = Median(hit_rates);
  return true;
}

// One cluster (workers with `state_memory`), every key count of the sweep.
bool Sweep(const std::string& state_memory, const std::string& name, int64_t min_records,
           int64_t max_records, int64_t records_per_key, int reps, bool heap_state,
           const std::vector<int64_t>& key_counts) {
  std::unique_ptr<sluice::cli::LocalCluster> cluster =
      sluice::bench::StartBenchCluster("sluice-bench", 2, 1, state_memory);
  if (cluster == nullptr) return false;
  const std::string dir = cluster->options().dir;
  sluice::cli::CoordinatorClient client(cluster->coordinator_address());
  double base = 0;
  bool ok = true;
  for (int64_t keys : key_counts) {
    const int64_t records = std::min(max_records, std::max(min_records, records_per_key * keys));
    Result r;
    if (!Measure(*cluster, client, records, keys, reps, heap_state, &r)) {
      ok = false;
      break;
    }
    if (base == 0) base = r.records_per_cpu_s;
    std::printf("BENCH %s_%lld keys=%lld records=%lld state_memory=%s state=%s "
                "records_per_cpu_s=%.0f worker_rss_mb=%.0f cache_hit_rate=%.3f "
                "ratio_to_10k_keys=%.3f loop_ratio=%.2f\n",
                name.c_str(), static_cast<long long>(keys), static_cast<long long>(keys),
                static_cast<long long>(records), state_memory.empty() ? "default" : state_memory.c_str(),
                heap_state ? "heap" : "backend",
                r.records_per_cpu_s, r.worker_rss_mb, r.cache_hit_rate, r.records_per_cpu_s / base,
                r.loop_records_per_cpu_s / r.records_per_cpu_s);
    std::fflush(stdout);
  }
  cluster->Stop();
  std::filesystem::remove_all(dir);
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Cross-worker shuffle throughput versus a hand-written loop"};
  int64_t records = 20'000'000;
  int64_t keys = 10'000;
  int reps = 3;
  std::string state_memory;
  bool keys_sweep = false;
  bool heap_state = false;
  int64_t sweep_min_records = 2'000'000;
  int64_t sweep_max_records = 10'000'000;
  int64_t sweep_records_per_key = 3;
  std::vector<int64_t> sweep_keys = {10'000, 100'000, 1'000'000, 10'000'000};
  bool sweep_small_only = false;
  app.add_option("--records", records, "Records per run")->capture_default_str();
  app.add_option("--keys", keys, "Distinct keys")->capture_default_str();
  app.add_option("--reps", reps, "Repetitions (medians are reported)")->capture_default_str();
  app.add_option("--state-memory", state_memory, "Workers' --state-memory (default: theirs)");
  app.add_flag("--keys-sweep", keys_sweep,
               "10K, 100K, 1M and 10M keys, with the default and a 64MiB state memory");
  app.add_option("--sweep-min-records", sweep_min_records, "Sweep: least records per run")
      ->capture_default_str();
  app.add_option("--sweep-max-records", sweep_max_records, "Sweep: most records per run")
      ->capture_default_str();
  app.add_option("--sweep-records-per-key", sweep_records_per_key, "Sweep: records per key")
      ->capture_default_str();
  app.add_option("--sweep-keys", sweep_keys,
                 "Sweep: the key counts (ratio_to_10k_keys divides by the first)")
      ->capture_default_str();
  app.add_flag("--sweep-small-only", sweep_small_only,
               "Sweep: only the cluster with 64MiB per worker");
  app.add_flag("--heap-state", heap_state,
               "The aggregate's in-memory path (state: auto) instead of the backend's");
  CLI11_PARSE(app, argc, argv);
  const char* heap_arg = heap_state ? " --heap-state" : "";

  if (keys_sweep) {
    std::string keys_arg;
    for (int64_t k : sweep_keys) keys_arg += " --sweep-keys " + std::to_string(k);
    std::printf("reproduce: build/bin/shuffle_benchmark --keys-sweep --reps %d --sweep-min-records "
                "%lld --sweep-max-records %lld --sweep-records-per-key %lld%s%s%s\n",
                reps, static_cast<long long>(sweep_min_records),
                static_cast<long long>(sweep_max_records),
                static_cast<long long>(sweep_records_per_key), keys_arg.c_str(),
                sweep_small_only ? " --sweep-small-only" : "", heap_arg);
    if (!sweep_small_only &&
        !Sweep(state_memory, "state_scaling", sweep_min_records, sweep_max_records,
               sweep_records_per_key, reps, heap_state, sweep_keys)) {
      return 1;
    }
    if (!Sweep("64MiB", "state_scaling_small", sweep_min_records, sweep_max_records,
               sweep_records_per_key, reps, heap_state, sweep_keys)) {
      return 1;
    }
    return 0;
  }

  std::unique_ptr<sluice::cli::LocalCluster> cluster =
      sluice::bench::StartBenchCluster("sluice-bench", 2, 1, state_memory);
  if (cluster == nullptr) return 1;
  const std::string dir = cluster->options().dir;
  sluice::cli::CoordinatorClient client(cluster->coordinator_address());
  Result r;
  bool ok = Measure(*cluster, client, records, keys, reps, heap_state, &r);
  cluster->Stop();
  std::filesystem::remove_all(dir);
  if (!ok) return 1;
  std::printf("reproduce: build/bin/shuffle_benchmark --records %lld --keys %lld --reps %d%s%s\n",
              static_cast<long long>(records), static_cast<long long>(keys), reps,
              state_memory.empty() ? "" : (" --state-memory " + state_memory).c_str(), heap_arg);
  std::printf("BENCH shuffle_keyed_count records=%lld state=%s wall_s=%.3f records_per_s=%.0f "
              "cpu_s=%.3f records_per_cpu_s=%.0f loop_records_per_cpu_s=%.0f loop_ratio=%.2f "
              "worker_rss_mb=%.0f cache_hit_rate=%.3f\n",
              static_cast<long long>(records), heap_state ? "heap" : "backend", r.wall_s, r.records_per_s, r.cpu_s,
              r.records_per_cpu_s, r.loop_records_per_cpu_s,
              r.loop_records_per_cpu_s / r.records_per_cpu_s, r.worker_rss_mb, r.cache_hit_rate);
  return 0;
}
