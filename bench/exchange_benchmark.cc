// The engine's per-record floor under every keyed benchmark: a local cluster of 2 workers runs
// datagen (window_benchmark's records, bench/keyed_datagen.h) -> key_by -> blackhole with
// parallelism 2 and checkpoints every second, so half of the records cross between workers and
// every record is hashed, encoded, sent, decoded and handed to an operator, and nothing else.
// Beside it, in the same run, a single-threaded hand-written loop generates the same records
// and hashes their keys into two partitions' counters (the same stable hash and key groups).
// window_benchmark and join_benchmark cannot do better than this job's records per CPU-second.
// Prints one BENCH line with medians over the repetitions.
//
//   build/bin/exchange_benchmark [--records N] [--keys K] [--reps R]

#include <cstdint>

#include "bench/keyed_datagen.h"
#include "common/key_groups.h"

namespace {

using sluice::bench::ThreadCpuSeconds;

// The job's work by hand: per record its key and event time (as the datagen expressions), the
// key's stable hash (KeyHasher's for one int64 field), key group and partition of 2; per
// partition a count and a sum of event times, folded into a checksum.
double HandLoop(int64_t records, int64_t keys, uint64_t* checksum) {
  constexpr uint64_t kKeyHashSeed = 0x1234567;  // KeyHasher's seed
  constexpr int kMaxParallelism = sluice::kDefaultMaxParallelism;
  const double start = ThreadCpuSeconds();
  uint64_t count[2] = {0, 0};
  uint64_t ts_sum[2] = {0, 0};
  for (int64_t seq = 0; seq < records; ++seq) {
    const int64_t key = sluice::bench::KeyedDatagenKey(seq, keys);
    const int64_t ts = sluice::bench::KeyedDatagenTs(seq);
    const uint64_t hash = sluice::HashCombine(kKeyHashSeed, sluice::HashInt64(key));
    const int partition = sluice::SubtaskForKeyGroup(
        sluice::KeyGroupForHash(hash, kMaxParallelism), kMaxParallelism, 2);
    ++count[partition];
    ts_sum[partition] += static_cast<uint64_t>(ts);
  }
  *checksum = count[0] * 31 + count[1] + ts_sum[0] * 7 + ts_sum[1];
  return ThreadCpuSeconds() - start;
}

}  // namespace

int main(int argc, char** argv) {
  return sluice::bench::KeyedDatagenMain(
      argc, argv, "Per-record cost of a keyed exchange between 2 workers versus a hand-written loop",
      "exchange", "build/bin/exchange_benchmark", "exchange", "  - {id: sink, type: blackhole}\n",
      HandLoop);
}
