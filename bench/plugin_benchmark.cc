// Cost of an operator plugin in the data path: a local cluster of 2 workers runs
// datagen -> op -> blackhole with parallelism 2, where op is in turn
//   - the built-in `filter` and the plugin `positive_filter` (same predicate, half the records
//     pass; the plugin also counts them in its `kept` counter),
//   - the built-in `aggregate` (count) and the plugin `keyed_count` (a rolling count per key in
//     keyed value state), both behind the same hash edge on the same key,
//   - the built-in `aggregate` with the built-in `sum` and with the plugin aggregate function
//     `sum_sq` (its accumulators in the aggregate's plugin state, a Get and a Put per record
//     beside the built-in accumulators'), behind the same hash edge.
// The plugin is the SDK's test plugin (sdk/tests/test_operators.cc).
// The jobs run alternately within each repetition (`--pairs`: only those pairs). Each run
// reports records per CPU-second of the engine processes (coordinator + workers); one BENCH line
// per pair with the medians and ratio = plugin / built-in (target >= 0.67, issue 9).
//
//   build/bin/plugin_benchmark [--records N] [--keys K] [--reps R] [--plugin libsdk_test_plugin.so]
//                              [--pairs filter,keyed_count,aggregate_function]

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "bench/bench_util.h"
#include "cli/client.h"
#include "cli/local_cluster.h"

namespace {

using sluice::bench::CpuSeconds;
using sluice::bench::Median;

struct Variant {
  std::string name;  // e.g. "filter/builtin"
  std::string op;    // the YAML of the operator under test (list item, id: op)
  std::vector<double> per_cpu;
};

std::string Job(const std::string& name, const std::string& plugin, int64_t records, int64_t keys,
                const std::string& op) {
  return absl::StrCat("name: ", name, "\nparallelism: 2\nplugins: [", plugin, "]\n", R"(operators:
  - id: gen
    type: datagen
    count: )", records, R"(
    fields:
      - {name: key, type: int64, expr: "(seq * 7919) % )", keys, R"("}
      - {name: v, type: int64, expr: "seq % 1000"}
)", op, "  - {id: sink, type: blackhole}\n");
}

// Runs one job to completion; returns records per CPU-second of the engine processes, or < 0.
double RunOnce(sluice::cli::LocalCluster& cluster, sluice::cli::CoordinatorClient& client,
               const std::string& job, int64_t records, const std::string& label, int rep) {
  std::vector<pid_t> pids = cluster.AllPids();
  double cpu0 = 0;
  for (pid_t p : pids) cpu0 += CpuSeconds(p);
  auto t0 = std::chrono::steady_clock::now();
  auto submitted = client.Submit(job, "bench.yaml", 0);
  if (!submitted.ok()) {
    std::cerr << label << ": " << submitted.status() << "\n";
    return -1;
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
    std::cerr << label << ": job failed: " << info.error() << "\n";
    return -1;
  }
  std::printf("run %d %-16s %.2f s wall, %.2f CPU s, %.0f records/CPU-s\n", rep, label.c_str(), wall,
              cpu, records / cpu);
  std::fflush(stdout);
  return records / cpu;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Plugin operators versus the built-in ones doing the same work"};
  int64_t records = 5'000'000;
  int64_t keys = 10'000;
  int reps = 3;
  std::string plugin = SLUICE_BENCH_PLUGIN;
  std::string pairs_option = "filter,keyed_count,aggregate_function";
  app.add_option("--records", records, "Records per run")->capture_default_str();
  app.add_option("--keys", keys, "Distinct keys of the keyed count")->capture_default_str();
  app.add_option("--reps", reps, "Repetitions (medians are reported)")->capture_default_str();
  app.add_option("--plugin", plugin, "The test plugin (libsdk_test_plugin.so)")->capture_default_str();
  app.add_option("--pairs", pairs_option, "The pairs to run, comma-separated")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  plugin = std::filesystem::absolute(plugin).string();
  if (!std::filesystem::exists(plugin)) {
    std::cerr << "no plugin at " << plugin << " (build the sdk_test_plugin target)\n";
    return 1;
  }

  // Keyed ops read their input through the same hash edge on `key`; filters are chained.
  const std::string keyed_input = "    input: {from: gen, partition: hash, key: [key]}\n";
  const std::string aggregate = absl::StrCat("  - id: op\n    type: aggregate\n", keyed_input);
  struct Pair {
    const char* name;
    Variant builtin;
    Variant plugin;
  };
  const Pair all_pairs[] = {
      {"filter",
       {"filter/builtin", "  - {id: op, type: filter, where: \"v >= 500\"}\n", {}},
       {"filter/plugin", "  - {id: op, type: positive_filter, field: v, min: 499}\n", {}}},
      {"keyed_count",
       {"count/builtin", absl::StrCat(aggregate, "    aggregates: [{fn: count, as: count}]\n"), {}},
       {"count/plugin", absl::StrCat("  - id: op\n    type: keyed_count\n", keyed_input, "    key_field: key\n"),
        {}}},
      {"aggregate_function",
       {"sum/builtin", absl::StrCat(aggregate, "    aggregates: [{fn: sum, field: v, as: s}]\n"), {}},
       {"sum_sq/plugin", absl::StrCat(aggregate, "    aggregates: [{fn: sum_sq, field: v, as: s}]\n"), {}}},
  };
  const std::vector<std::string> wanted = absl::StrSplit(pairs_option, ',', absl::SkipEmpty());
  std::vector<const char*> pairs;
  std::vector<Variant> variants;  // per pair: built-in, then plugin
  for (const Pair& p : all_pairs) {
    if (std::find(wanted.begin(), wanted.end(), p.name) == wanted.end()) continue;
    pairs.push_back(p.name);
    variants.push_back(p.builtin);
    variants.push_back(p.plugin);
  }
  for (size_t i = 0; i < wanted.size(); ++i) {
    const bool known = std::any_of(std::begin(all_pairs), std::end(all_pairs),
                                   [&](const Pair& p) { return wanted[i] == p.name; });
    const bool repeated = std::find(wanted.begin(), wanted.begin() + i, wanted[i]) != wanted.begin() + i;
    if (!known || repeated) {
      std::cerr << "--pairs: '" << wanted[i] << "' "
                << (known ? "is named twice" : "is not filter, keyed_count or aggregate_function")
                << "\n";
      return 1;
    }
  }
  std::unique_ptr<sluice::cli::LocalCluster> cluster = sluice::bench::StartBenchCluster("sluice-plugin-bench");
  if (cluster == nullptr) return 1;
  const std::string dir = cluster->options().dir;
  sluice::cli::CoordinatorClient client(cluster->coordinator_address());

  int failed = 0;
  for (int r = 1; r <= reps && failed == 0; ++r) {
    for (Variant& v : variants) {
      std::string name = v.name;
      std::replace(name.begin(), name.end(), '/', '-');
      double rate = RunOnce(*cluster, client, Job(name, plugin, records, keys, v.op), records, v.name, r);
      if (rate < 0) {
        failed = 1;
        break;
      }
      v.per_cpu.push_back(rate);
    }
  }
  cluster->Stop();
  std::filesystem::remove_all(dir);
  if (failed) return 1;

  std::printf("reproduce: build/bin/plugin_benchmark --records %lld --keys %lld --reps %d --pairs %s\n",
              static_cast<long long>(records), static_cast<long long>(keys), reps, pairs_option.c_str());
  for (size_t i = 0; i < pairs.size(); ++i) {
    double builtin = Median(variants[2 * i].per_cpu);
    double plug = Median(variants[2 * i + 1].per_cpu);
    std::printf("BENCH plugin_overhead_%s builtin_records_per_cpu_s=%.0f plugin_records_per_cpu_s=%.0f ratio=%.2f\n",
                pairs[i], builtin, plug, plug / builtin);
  }
  return 0;
}
