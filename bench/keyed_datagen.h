#pragma once

// The keyed workload that exchange_benchmark and window_benchmark share on purpose (the same
// records, so that the exchange's figure is the floor under the window's): datagen of `records`
// records, record seq with key (seq * 7919) % keys and event time seq / 100 (100 records per
// ms) up to 499 ms early, bounded-out-of-orderness watermarks of 500 ms, then key_by the key;
// parallelism 2 and checkpoints every second. Each benchmark adds the operators after the
// key_by and its hand-written loop; the flags, the job and the BENCH line are made here.

#include <cstdint>
#include <functional>
#include <string>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "bench/bench_util.h"

namespace sluice::bench {

inline constexpr int64_t kKeyedDatagenOutOfOrderMs = 500;

// Record seq's key and event time, as the job's datagen expressions compute them.
inline int64_t KeyedDatagenKey(int64_t seq, int64_t keys) { return (seq * 7919) % keys; }
inline int64_t KeyedDatagenTs(int64_t seq) { return seq / 100 - (seq * 7919) % kKeyedDatagenOutOfOrderMs; }

// The main() of such a benchmark: parses --records, --keys and --reps, runs the job named
// `job_name` (datagen `gen` -> key_by `by_key` -> `tail`, YAML operator list items) with
// CompareWithLoop against `loop(records, keys, checksum)` (its thread CPU seconds), and prints
// the BENCH line named `bench_name` with how to reproduce it with `binary`. Returns the exit
// code.
inline int KeyedDatagenMain(
    int argc, char** argv, const std::string& description, const std::string& bench_name,
    const std::string& binary, const std::string& job_name, const std::string& tail,
    const std::function<double(int64_t records, int64_t keys, uint64_t* checksum)>& loop) {
  CLI::App app{description};
  int64_t records = 10'000'000;
  int64_t keys = 10'000;
  int reps = 3;
  app.add_option("--records", records, "Records per run")->capture_default_str();
  app.add_option("--keys", keys, "Distinct keys")->capture_default_str();
  app.add_option("--reps", reps, "Repetitions (medians are reported)")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  const std::string job = absl::StrCat(R"(
name: )", job_name, R"(
parallelism: 2
checkpoint: {interval: 1s}
operators:
  - id: gen
    type: datagen
    count: )",
                                       records, R"(
    fields:
      - {name: key, type: int64, expr: "(seq * 7919) % )",
                                       keys, R"("}
      - {name: ts, type: timestamp, expr: "seq / 100 - (seq * 7919) % 500"}
    event_time: {field: ts, max_out_of_orderness: 500ms}
  - {id: by_key, type: key_by, key: [key]}
)", tail);

  return CompareWithLoop(
      bench_name,
      absl::StrCat(binary, " --records ", records, " --keys ", keys, " --reps ", reps), job,
      records, reps, [&](uint64_t* checksum) { return loop(records, keys, checksum); });
}

}  // namespace sluice::bench
