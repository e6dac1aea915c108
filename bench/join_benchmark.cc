// Throughput of an event-time interval join (issue 10): a local cluster of 2 workers runs two
// datagen streams (orders and payments, 10K keys, each out of order within 500 ms with
// bounded-out-of-orderness watermarks) -> interval_join on the key (payment.ts within
// [order.ts - 20 ms, order.ts + 30 ms]) -> blackhole, with parallelism 2 and checkpoints every
// second. Beside it, in the same run, a single-threaded hand-written loop does the same
// generation and join (each side's records per key in hash maps, joined with the other side's
// on arrival, dropped once the watermark passes their last possible partner). Prints one BENCH
// line with medians over the repetitions; records counts the inputs of both streams.
//
//   build/bin/join_benchmark [--records N] [--keys K] [--reps R] [--rate R] [--watermark-interval D]
//
// --rate paces each input at R records/s (the sources then stay together in event time) and
// --watermark-interval sets the job's; both default to the benchmark's figures (unpaced, 200ms)
// and are for finding what the join's kept rows per key depend on.

#include <algorithm>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "bench/bench_util.h"

namespace {

using sluice::bench::ThreadCpuSeconds;

constexpr int64_t kOutOfOrderMs = 500;
constexpr int64_t kLowerMs = -20;
constexpr int64_t kUpperMs = 30;

// Record seq's key and event times (as the job's datagen expressions): 100 records per ms per
// stream, up to 499 ms early.
int64_t KeyOf(int64_t seq, int64_t keys) { return (seq * 7919) % keys; }
int64_t OrderTs(int64_t seq) { return seq / 100 - (seq * 7919) % kOutOfOrderMs; }
int64_t PaymentTs(int64_t seq) { return seq / 100 + 7 - (seq * 104729) % kOutOfOrderMs; }

struct Kept {
  int64_t ts;
  int64_t id;
};

// The job's work by hand: orders and payments interleaved (seq by seq); a record older than the
// watermark is late (dropped); otherwise it is kept under its key and joined with the other
// side's kept records of the key within the bounds, each pair into a checksum. Expired records
// (an order at t once the watermark passes t + upper, a payment once it passes t - lower) are
// removed from a key's list as the list is scanned. Every 2000 records a watermark: largest
// timestamp - out-of-orderness - 1.
double HandLoop(int64_t records, int64_t keys, uint64_t* checksum) {
  const double start = ThreadCpuSeconds();
  absl::flat_hash_map<int64_t, std::vector<Kept>> side[2];  // 0: orders, 1: payments
  int64_t max_ts = INT64_MIN;
  int64_t watermark = INT64_MIN;
  uint64_t sum = 0;
  // `mine` arrives on side `s` with key `key`; joins it with the other side.
  auto arrive = [&](int s, int64_t key, Kept mine) {
    max_ts = std::max(max_ts, mine.ts);
    if (mine.ts < watermark) return;  // late
    side[s][key].push_back(mine);
    auto it = side[1 - s].find(key);
    if (it == side[1 - s].end()) return;
    std::vector<Kept>& other = it->second;
    for (size_t i = 0; i < other.size();) {
      const Kept& o = other[i];
      // An order at t may still meet payments until t + upper; a payment at t until t - lower.
      const int64_t last = s == 1 ? o.ts + kUpperMs : o.ts - kLowerMs;
      if (last < watermark) {
        other[i] = other.back();
        other.pop_back();
        continue;
      }
      const Kept& order = s == 0 ? mine : o;
      const Kept& payment = s == 0 ? o : mine;
      const int64_t d = payment.ts - order.ts;
      if (d >= kLowerMs && d <= kUpperMs) sum += order.id * 1000003 + payment.id;
      ++i;
    }
  };
  for (int64_t seq = 0; seq < records / 2; ++seq) {
    const int64_t key = KeyOf(seq, keys);
    arrive(0, key, Kept{OrderTs(seq), seq});
    arrive(1, key, Kept{PaymentTs(seq), seq});
    if (seq % 1000 == 999) watermark = max_ts - kOutOfOrderMs - 1;
  }
  *checksum = sum;
  return ThreadCpuSeconds() - start;
}

std::string Source(const std::string& id, int64_t count, int64_t keys, const std::string& ts,
                   double rate) {
  return absl::StrCat("  - id: ", id, "\n    type: datagen\n    count: ", count,
                      rate > 0 ? absl::StrCat("\n    rate: ", rate) : std::string(),
                      "\n    fields:\n      - {name: id, type: int64, expr: seq}\n",
                      "      - {name: key, type: int64, expr: \"(seq * 7919) % ", keys, "\"}\n",
                      "      - {name: ts, type: timestamp, expr: \"", ts, "\"}\n",
                      "    event_time: {field: ts, max_out_of_orderness: 500ms}\n");
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Event-time interval join throughput versus a hand-written loop"};
  int64_t records = 4'000'000;
  int64_t keys = 10'000;
  int reps = 3;
  double rate = 0;
  std::string watermark_interval = "200ms";
  app.add_option("--records", records, "Records per run, both inputs together")->capture_default_str();
  app.add_option("--keys", keys, "Distinct keys")->capture_default_str();
  app.add_option("--reps", reps, "Repetitions (medians are reported)")->capture_default_str();
  app.add_option("--rate", rate, "Records/s per input (0: as fast as they go)")->capture_default_str();
  app.add_option("--watermark-interval", watermark_interval, "The job's watermark_interval")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  records -= records % 2;

  const std::string job = absl::StrCat(
      "name: interval-join\nparallelism: 2\ncheckpoint: {interval: 1s}\nwatermark_interval: ",
      watermark_interval, "\noperators:\n",
      Source("orders", records / 2, keys, "seq / 100 - (seq * 7919) % 500", rate),
      Source("payments", records / 2, keys, "seq / 100 + 7 - (seq * 104729) % 500", rate), R"(  - id: j
    type: interval_join
    inputs: [{from: orders, partition: hash, key: [key]}, {from: payments, partition: hash, key: [key]}]
    time: ts
    lower: -20ms
    upper: 30ms
  - {id: sink, type: blackhole}
)");
  return sluice::bench::CompareWithLoop(
      "interval_join",
      absl::StrCat("build/bin/join_benchmark --records ", records, " --keys ", keys, " --reps ", reps),
      job, records, reps, [&](uint64_t* checksum) { return HandLoop(records, keys, checksum); });
}
