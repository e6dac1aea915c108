#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace sluice::cli {

struct NexmarkBenchOptions {
  std::vector<std::string> queries;  // empty: every query with both a job file and a loop
  int64_t events = 20'000'000;
  int workers = 2;
  int parallelism = 2;
  int reps = 1;  // runs per query; the one with the median engine events per CPU-second is reported
  // The jobs' checkpoint interval (their CHECKPOINT_INTERVAL; a long one, e.g. 1h, leaves only
  // the final checkpoint at the end of input: the per-interval cost is the difference).
  std::string checkpoint_interval = "1s";
  std::string job_dir;  // where q*.yaml are ("": the source tree's bench/nexmark)
  std::string bin_dir;  // sluice-coordinator and sluice-worker ("": LocalCluster's default)
};

// `sluice bench nexmark`: starts a local cluster (`workers` workers, enough slots for
// `parallelism`), runs each query's job file over `events` events with checkpoints every `checkpoint_interval`
// (RocksDB state), measures wall time and the CPU seconds of every Sluice process (from
// /proc), runs the query's hand-written loop (bench/nexmark/loops.h) in this process, and
// prints per run, and per query (the run with the median engine events per CPU-second of
// `reps`) as a summary table beside Flink's published per-core figures, plus one
// `BENCH nexmark_<query> ...` line each. Stops the cluster at the end.
// Returns kInvalidArgument for an unknown query or bad options, kNotFound for a missing job
// file, and the job's error (kAborted) if a run fails.
absl::Status RunNexmarkBench(const NexmarkBenchOptions& options, std::ostream& out);

}  // namespace sluice::cli
