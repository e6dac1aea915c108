#pragma once

// The exactly-once check shared by the failure tests: a keyed count/sum job emits one update
// {"key", "n", "total"} per input record; the committed output must hold, per key, updates
// numbered 1..n exactly once, the last (n) carrying the failure-free total.

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace sluice::testing {

// The job the check is made for, with checkpoints every 200 ms: datagen (`count` records, 0 =
// unbounded, at `rate`/s, 0 = as fast as possible) -> key_by key -> count/sum -> file sink.
struct CountingJobOptions {
  std::string name = "exactly-once";
  int parallelism = 2;
  int64_t keys = 1000;
  std::string restart = "{strategy: fixed_delay, attempts: 1000, delay: 100ms}";
  std::string checkpoint_mode;  // "": the default (auto)
  std::string aligned_timeout;  // mode auto: "": the default (1s)
  // > 0: totals also feed a blackhole taking this many records/s per subtask, which holds the
  // whole job back (backpressure).
  int64_t slow_sink_rate = 0;
};
inline std::string CountingJob(const std::string& out, int64_t count, int64_t rate,
                               const CountingJobOptions& o = {}) {
  return absl::StrCat("name: ", o.name, "\nparallelism: ", o.parallelism, R"(
checkpoint: {interval: 200ms, timeout: 20s, retain: 3)",
                      o.checkpoint_mode.empty() ? "" : absl::StrCat(", mode: ", o.checkpoint_mode),
                      o.aligned_timeout.empty()
                          ? ""
                          : absl::StrCat(", aligned_timeout: ", o.aligned_timeout),
                      R"(}
restart: )", o.restart, R"(
operators:
  - id: gen
    type: datagen
)", count > 0 ? absl::StrCat("    count: ", count, "\n") : "", "    rate: ", rate, R"(
    fields:
      - {name: key, type: int64, expr: "(seq * 7919) % )", o.keys, R"("}
      - {name: value, type: int64, expr: "seq % 1000"}
  - {id: by_key, type: key_by, key: [key]}
  - id: totals
    type: aggregate
    aggregates: [{fn: count, as: n}, {fn: sum, field: value, as: total}]
  - {id: out, type: file, path: )", out, "}\n",
                      o.slow_sink_rate > 0
                          ? absl::StrCat("  - {id: slow, type: blackhole, max_rate: ", o.slow_sink_rate,
                                         ", input: {from: totals}}\n")
                          : "");
}

struct Expected {
  std::map<int64_t, int64_t> count;
  std::map<int64_t, int64_t> sum;
};

// Input record s has key (s * 7919) % keys and value s % 1000.
inline Expected ExpectedFor(int64_t records, int64_t keys = 1000) {
  Expected e;
  for (int64_t s = 0; s < records; ++s) {
    int64_t k = (s * 7919) % keys;
    e.count[k]++;
    e.sum[k] += s % 1000;
  }
  return e;
}

// Update counts of a set of output lines: duplicates (same key and n twice) and keys whose
// updates are not exactly 1..n.
struct UpdateCheck {
  int64_t lines = 0;
  int64_t duplicates = 0;
  int64_t missing = 0;  // expected updates absent
  int64_t bad_keys = 0;
  std::map<int64_t, int64_t> final_sum;
};

inline UpdateCheck CheckUpdates(const std::vector<std::string>& lines, const Expected& expected) {
  UpdateCheck c;
  std::map<int64_t, std::set<int64_t>> seen;
  for (const std::string& line : lines) {
    auto j = nlohmann::json::parse(line);
    int64_t key = j["key"].get<int64_t>();
    int64_t n = j["n"].get<int64_t>();
    ++c.lines;
    if (!seen[key].insert(n).second) ++c.duplicates;
    auto it = expected.count.find(key);
    if (it != expected.count.end() && n == it->second) c.final_sum[key] = j["total"].get<int64_t>();
  }
  for (const auto& [k, n] : expected.count) {
    const auto& s = seen[k];
    for (int64_t i = 1; i <= n; ++i) c.missing += s.count(i) ? 0 : 1;
    bool exact = static_cast<int64_t>(s.size()) == n && *s.begin() == 1 && *s.rbegin() == n;
    if (!exact) ++c.bad_keys;
  }
  return c;
}

inline int64_t ExpectedLines(const Expected& expected) {
  int64_t n = 0;
  for (const auto& [k, c] : expected.count) n += c;
  return n;
}

// Committed lines (*.jsonl) of every directory in `dirs`.
inline std::vector<std::string> ReadCommittedLines(const std::vector<std::string>& dirs) {
  std::vector<std::string> lines;
  for (const auto& dir : dirs) {
    for (const auto& entry : std::filesystem::directory_iterator(dir)) {
      if (entry.path().extension() != ".jsonl") continue;
      std::ifstream in(entry.path());
      std::string line;
      while (std::getline(in, line)) lines.push_back(line);
    }
  }
  return lines;
}

inline void ExpectExactlyOnce(const std::vector<std::string>& lines, const Expected& expected) {
  UpdateCheck c = CheckUpdates(lines, expected);
  EXPECT_EQ(c.duplicates, 0) << "updates repeated";
  EXPECT_EQ(c.missing, 0) << "updates missing";
  EXPECT_EQ(c.lines, ExpectedLines(expected));
  EXPECT_EQ(c.bad_keys, 0) << "keys whose updates are not exactly 1..n";
  EXPECT_EQ(c.final_sum, expected.sum);
}

// Reads committed output (*.jsonl) of every directory in `dirs` and checks exactly-once.
inline void CheckExactlyOnce(const std::vector<std::string>& dirs, const Expected& expected) {
  ExpectExactlyOnce(ReadCommittedLines(dirs), expected);
}

}  // namespace sluice::testing
