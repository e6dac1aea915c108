// Throughput of an event-time tumbling-window count per key (issue 10): a local cluster of 2
// workers runs datagen (out of order within 500 ms, bounded-out-of-orderness watermarks;
// exchange_benchmark's records, bench/keyed_datagen.h) -> key_by -> window (1 s tumbling,
// count) -> blackhole with parallelism 2 and checkpoints every second. Beside it, in the same run, a single-threaded hand-written loop does the same
// generation and windowing (counts per key and window in hash maps, windows fired as the
// watermark passes them). Prints one BENCH line with medians over the repetitions.
//
//   build/bin/window_benchmark [--records N] [--keys K] [--reps R]

#include <algorithm>
#include <cstdint>
#include <map>

#include "absl/container/flat_hash_map.h"
#include "bench/keyed_datagen.h"

namespace {

using sluice::bench::ThreadCpuSeconds;

constexpr int64_t kWindowMs = 1000;
constexpr int64_t kOutOfOrderMs = sluice::bench::kKeyedDatagenOutOfOrderMs;

// The job's work by hand: per record, its key and window; counts per window and key; every
// 2000 records a watermark (largest timestamp - out-of-orderness - 1) fires the windows it
// passed, each (key, count) into a checksum.
double HandLoop(int64_t records, int64_t keys, uint64_t* checksum) {
  const double start = ThreadCpuSeconds();
  std::map<int64_t, absl::flat_hash_map<int64_t, int64_t>> windows;
  int64_t max_ts = INT64_MIN;
  uint64_t sum = 0;
  int64_t watermark = INT64_MIN;
  auto fire_until = [&](int64_t wm) {
    watermark = wm;
    while (!windows.empty() && windows.begin()->first + kWindowMs - 1 <= watermark) {
      for (const auto& [key, n] : windows.begin()->second) sum += key * 31 + n;
      windows.erase(windows.begin());
    }
  };
  for (int64_t seq = 0; seq < records; ++seq) {
    const int64_t key = sluice::bench::KeyedDatagenKey(seq, keys);
    const int64_t ts = sluice::bench::KeyedDatagenTs(seq);
    max_ts = std::max(max_ts, ts);
    const int64_t window = ts - ((ts % kWindowMs) + kWindowMs) % kWindowMs;
    if (window + kWindowMs - 1 > watermark) ++windows[window][key];  // else late: dropped
    if (seq % 2000 == 1999) fire_until(max_ts - kOutOfOrderMs - 1);
  }
  fire_until(INT64_MAX);
  *checksum = sum;
  return ThreadCpuSeconds() - start;
}

}  // namespace

int main(int argc, char** argv) {
  return sluice::bench::KeyedDatagenMain(
      argc, argv, "Event-time window count throughput versus a hand-written loop", "window_count",
      "build/bin/window_benchmark", "window-count",
      "  - {id: windows, type: window, tumble: 1s, time_field: ts, aggregates: [{fn: count, as: n}]}\n"
      "  - {id: sink, type: blackhole}\n",
      HandLoop);
}
