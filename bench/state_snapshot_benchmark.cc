// The CPU cost of keyed-state snapshots, without the rest of the engine: one RocksDB backend
// holding `--keys` keys (value state, the aggregate's count-sized values) is updated in rounds
// (every key read and written `--updates` times per round, in a scattered order as a keyed
// count sees them), alternately without snapshots and with SnapshotSync() + UploadSnapshot()
// after each round, as a checkpoint every interval does. Prints the process CPU (all threads:
// RocksDB flush and compaction count) per round of each, their difference per snapshot and per
// dirty entry, and the bytes uploaded per snapshot.
//
//   build/bin/state_snapshot_benchmark [--keys 50000] [--updates 25] [--rounds 40] [--reps 3]
//                                      [--interleaved]
//
// --interleaved: one backend, a snapshot after every other round, the upload on its own thread;
// prints the task thread's CPU per round after a snapshot and after none.
//
// checkpoint_benchmark measures the same end to end (two workers, the whole job); this one has
// no shuffles or other processes, so its spread is a fraction of that one's (bench/README.md).

#include <sys/resource.h>
#include <time.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "bench/bench_util.h"
#include "common/key_groups.h"
#include "common/status.h"
#include "state/keyed_state_backend.h"

namespace {

namespace fs = std::filesystem;
using sluice::bench::Median;
using sluice::state::KeyedStateBackend;

double ProcessCpuSeconds() {
  timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) * 1e-9;
}

// This thread's CPU: the task thread's, as a worker's per-thread figures count it.
double ThreadCpuSeconds() {
  timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) * 1e-9;
}

// This thread's context switches (voluntary and involuntary) so far.
double ThreadSwitches() {
  rusage u;
  getrusage(RUSAGE_THREAD, &u);
  return static_cast<double>(u.ru_nvcsw + u.ru_nivcsw);
}

struct Key {
  std::string bytes;
  int key_group;
};

// Keys as a keyed count over int64 fields stores them: the field's zig-zag varint.
std::vector<Key> MakeKeys(int64_t n) {
  std::vector<Key> keys;
  keys.reserve(n);
  for (int64_t i = 0; i < n; ++i) {
    std::string b;
    uint64_t v = static_cast<uint64_t>(i) << 1;
    while (v >= 0x80) {
      b.push_back(static_cast<char>((v & 0x7f) | 0x80));
      v >>= 7;
    }
    b.push_back(static_cast<char>(v));
    keys.push_back({b, sluice::KeyGroupForHash(sluice::HashInt64(i), sluice::kDefaultMaxParallelism)});
  }
  return keys;
}

struct RunResult {
  double cpu_per_round = 0;
  double update_cpu_per_round = 0;  // of the updates alone (the rest: the snapshot)
  double uploaded_per_snapshot = 0;
  double sync_wall_per_snapshot = 0;    // SnapshotSync() (the task thread's part), wall seconds
  double upload_wall_per_snapshot = 0;  // UploadSnapshot() (the uploader thread's), wall seconds
};

double WallSeconds() {
  timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) * 1e-9;
}

// A RocksDB backend working in `dir`/local.
absl::StatusOr<std::unique_ptr<KeyedStateBackend>> OpenBackend(const std::string& dir) {
  sluice::state::StateBackendOptions options;
  options.local_dir = dir + "/local";
  options.operator_id = "counts";
  return KeyedStateBackend::Open(options);
}

// One pass over all keys, in a scattered order: each key's count read, incremented and written
// (as a keyed count's accumulator: 25 bytes).
absl::Status UpdateAll(KeyedStateBackend* backend, sluice::state::StateId id, const std::vector<Key>& keys) {
  std::string value(25, '\0');
  std::string read;
  const size_t n = keys.size();
  for (size_t i = 0; i < n; ++i) {
    const Key& k = keys[(i * 7919) % n];
    backend->SetCurrentKey(k.bytes, k.key_group);
    SLUICE_ASSIGN_OR_RETURN(bool found, backend->Get(id, &read));
    uint64_t count = 0;
    if (found && read.size() >= 9) std::memcpy(&count, read.data() + 1, 8);
    ++count;
    value[0] = 1;
    std::memcpy(value.data() + 1, &count, 8);
    SLUICE_RETURN_IF_ERROR(backend->Put(id, value));
  }
  return absl::OkStatus();
}

// The updates' CPU per round after a snapshot and after none, in one backend whose rounds
// alternate (a snapshot after every other round): both under the same load, a few ms apart. As
// in a worker, SnapshotSync() runs on this (the task) thread and UploadSnapshot() on another
// thread while the next round runs; the rounds count this thread's CPU only.
struct InterleavedResult {
  double first_pass_after_snapshot = 0;  // the round's first pass over the keys, seconds
  double first_pass_after_none = 0;
  double round_after_snapshot = 0;  // all `updates` passes
  double round_after_none = 0;
  double switches_after_snapshot = 0;  // this thread's context switches per round
  double switches_after_none = 0;
  double sync_cpu = 0;  // SnapshotSync(): this (the task) thread's CPU seconds per snapshot
};

absl::StatusOr<InterleavedResult> RunInterleaved(const std::vector<Key>& keys, int updates, int rounds,
                                                 const std::string& dir) {
  SLUICE_ASSIGN_OR_RETURN(std::unique_ptr<KeyedStateBackend> backend, OpenBackend(dir));
  const sluice::state::StateId id = backend->RegisterState("accumulators", sluice::state::StateKind::kValue);
  std::vector<double> first[2], all[2], switches[2];  // [1]: after a snapshot
  std::vector<double> sync_cpu;
  bool snapshotted = false;
  std::thread uploader;
  absl::Status upload_status;
  // Rounds 0 and 1 fill the state and make every key hot (not measured).
  for (int round = 0; round < 2 + 2 * rounds; ++round) {
    const double switches0 = ThreadSwitches();
    const double cpu0 = ThreadCpuSeconds();
    SLUICE_RETURN_IF_ERROR(UpdateAll(backend.get(), id, keys));
    const double cpu1 = ThreadCpuSeconds();
    for (int u = 1; u < updates; ++u) SLUICE_RETURN_IF_ERROR(UpdateAll(backend.get(), id, keys));
    if (round >= 2) {
      first[snapshotted].push_back(cpu1 - cpu0);
      all[snapshotted].push_back(ThreadCpuSeconds() - cpu0);
      switches[snapshotted].push_back(ThreadSwitches() - switches0);
    }
    if (uploader.joinable()) uploader.join();
    SLUICE_RETURN_IF_ERROR(upload_status);
    snapshotted = round < 2 || round % 2 == 1;  // rounds 2, 4, ... after one; 3, 5, ... after none
    if (snapshotted) {
      const double sync0 = ThreadCpuSeconds();
      SLUICE_ASSIGN_OR_RETURN(sluice::state::PendingSnapshot pending, backend->SnapshotSync(round + 1));
      if (round >= 2) sync_cpu.push_back(ThreadCpuSeconds() - sync0);
      uploader = std::thread([&backend, &upload_status, &dir, pending = std::move(pending), round] {
        upload_status =
            backend->UploadSnapshot(pending, dir + "/checkpoints", absl::StrCat("chk-", round + 1)).status();
      });
    }
  }
  if (uploader.joinable()) uploader.join();
  SLUICE_RETURN_IF_ERROR(upload_status);
  backend.reset();
  std::error_code ec;
  fs::remove_all(dir, ec);
  return InterleavedResult{Median(first[1]), Median(first[0]),    Median(all[1]),
                           Median(all[0]),   Median(switches[1]), Median(switches[0]),
                           Median(sync_cpu)};
}

// One backend, `rounds` rounds of updates, with or without a snapshot after each round.
absl::StatusOr<RunResult> Run(const std::vector<Key>& keys, int updates, int rounds, bool snapshots,
                              const std::string& dir) {
  SLUICE_ASSIGN_OR_RETURN(std::unique_ptr<KeyedStateBackend> backend, OpenBackend(dir));
  const sluice::state::StateId id = backend->RegisterState("accumulators", sluice::state::StateKind::kValue);
  int64_t uploaded = 0;
  double cpu = 0;
  double update_cpu = 0;
  double sync_wall = 0;
  double upload_wall = 0;
  // Round 0 fills the state (not measured).
  for (int round = 0; round <= rounds; ++round) {
    const double cpu0 = ProcessCpuSeconds();
    for (int u = 0; u < updates; ++u) SLUICE_RETURN_IF_ERROR(UpdateAll(backend.get(), id, keys));
    if (round > 0) update_cpu += ProcessCpuSeconds() - cpu0;
    if (snapshots) {
      const double wall0 = WallSeconds();
      SLUICE_ASSIGN_OR_RETURN(sluice::state::PendingSnapshot pending, backend->SnapshotSync(round + 1));
      const double wall1 = WallSeconds();
      SLUICE_ASSIGN_OR_RETURN(sluice::proto::KeyedStateHandle handle,
                              backend->UploadSnapshot(pending, dir + "/checkpoints", absl::StrCat("chk-", round + 1)));
      if (round > 0) {
        uploaded += handle.incremental_size();
        sync_wall += wall1 - wall0;
        upload_wall += WallSeconds() - wall1;
      }
    }
    if (round > 0) cpu += ProcessCpuSeconds() - cpu0;
  }
  backend.reset();
  std::error_code ec;
  fs::remove_all(dir, ec);
  return RunResult{cpu / rounds, update_cpu / rounds, static_cast<double>(uploaded) / rounds,
                   sync_wall / rounds, upload_wall / rounds};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"CPU cost of keyed-state snapshots (SnapshotSync + UploadSnapshot)"};
  int64_t keys = 50'000;
  int updates = 25;
  int rounds = 40;
  int reps = 3;
  app.add_option("--keys", keys, "Keys in the backend (all dirty at each snapshot)")->capture_default_str();
  app.add_option("--updates", updates, "Updates of every key per round")->capture_default_str();
  app.add_option("--rounds", rounds, "Rounds (one snapshot after each)")->capture_default_str();
  app.add_option("--reps", reps, "Repetitions (medians are reported)")->capture_default_str();
  bool interleaved = false;
  app.add_flag("--interleaved", interleaved,
               "One backend per repetition, a snapshot after every other round: the updates' CPU "
               "after a snapshot against after none, under the same load");
  CLI11_PARSE(app, argc, argv);
  const std::vector<Key> key_list = MakeKeys(keys);
  const std::string dir = (fs::temp_directory_path() / absl::StrCat("sluice-snapbench-", getpid())).string();
  if (interleaved) {
    std::vector<double> first_on, first_off, all_on, all_off, sync;
    for (int r = 0; r < reps; ++r) {
      absl::StatusOr<InterleavedResult> result = RunInterleaved(key_list, updates, rounds, dir);
      if (!result.ok()) {
        std::fprintf(stderr, "%s\n", result.status().ToString().c_str());
        return 1;
      }
      std::printf("rep %d: first pass %.2f ms after a snapshot, %.2f ms after none; round %.2f / %.2f ms "
                  "(context switches %.0f / %.0f)\n",
                  r + 1, result->first_pass_after_snapshot * 1e3, result->first_pass_after_none * 1e3,
                  result->round_after_snapshot * 1e3, result->round_after_none * 1e3,
                  result->switches_after_snapshot, result->switches_after_none);
      first_on.push_back(result->first_pass_after_snapshot);
      first_off.push_back(result->first_pass_after_none);
      all_on.push_back(result->round_after_snapshot);
      all_off.push_back(result->round_after_none);
      sync.push_back(result->sync_cpu);
    }
    std::printf("BENCH state_snapshot_interleaved keys=%lld updates=%d first_pass_cpu_ms_after_snapshot=%.2f "
                "first_pass_cpu_ms_after_none=%.2f round_cpu_ms_after_snapshot=%.2f "
                "round_cpu_ms_after_none=%.2f ns_per_key_after_snapshot=%.1f sync_cpu_ms_per_snapshot=%.2f\n",
                static_cast<long long>(keys), updates, Median(first_on) * 1e3, Median(first_off) * 1e3,
                Median(all_on) * 1e3, Median(all_off) * 1e3,
                (Median(all_on) - Median(all_off)) / static_cast<double>(keys) * 1e9, Median(sync) * 1e3);
    return 0;
  }
  std::vector<double> off, on, uploaded, diff, update_off, update_on, sync_wall, upload_wall;
  for (int r = 0; r < reps; ++r) {
    for (bool snapshots : {false, true}) {
      absl::StatusOr<RunResult> result = Run(key_list, updates, rounds, snapshots, dir);
      if (!result.ok()) {
        std::fprintf(stderr, "%s\n", result.status().ToString().c_str());
        return 1;
      }
      (snapshots ? on : off).push_back(result->cpu_per_round);
      if (snapshots) {
        uploaded.push_back(result->uploaded_per_snapshot);
        sync_wall.push_back(result->sync_wall_per_snapshot);
        upload_wall.push_back(result->upload_wall_per_snapshot);
        diff.push_back(on.back() - off.back());
      }
      (snapshots ? update_on : update_off).push_back(result->update_cpu_per_round);
      std::printf("rep %d %s: %.2f ms CPU per round (%.2f ms of it the updates)\n", r + 1,
                  snapshots ? "snapshots" : "no snapshots", result->cpu_per_round * 1e3,
                  result->update_cpu_per_round * 1e3);
    }
  }
  const double per_snapshot = Median(diff);
  std::printf("BENCH state_snapshot keys=%lld updates=%d cpu_ms_per_round_no_snapshots=%.2f "
              "cpu_ms_per_round_snapshots=%.2f cpu_ms_per_snapshot=%.2f ns_per_dirty_entry=%.0f "
              "overhead_pct=%.1f uploaded_bytes_per_snapshot=%.0f update_cpu_ms_per_round_no_snapshots=%.2f "
              "update_cpu_ms_per_round_snapshots=%.2f sync_wall_ms_per_snapshot=%.2f "
              "upload_wall_ms_per_snapshot=%.2f\n",
              static_cast<long long>(keys), updates, Median(off) * 1e3, Median(on) * 1e3, per_snapshot * 1e3,
              per_snapshot / static_cast<double>(keys) * 1e9, 100.0 * per_snapshot / Median(off), Median(uploaded),
              Median(update_off) * 1e3, Median(update_on) * 1e3, Median(sync_wall) * 1e3,
              Median(upload_wall) * 1e3);
  return 0;
}
