// A windowed top_n restored from a savepoint, on a real cluster: kafka -> key_by -> window (with
// allowed_lateness, so a late record fires its window again as an update row) -> key_by
// window_end -> top_n -> file. A record that arrives after the restore, late for a window that
// fired (and went through the top_n) before the savepoint, makes the window send its update row
// to the top_n, which must judge it late as it does without a restore: every window's ranked
// rows are committed exactly once, against the ranking computed here from the input.

#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "tests/cluster_fixture.h"
#include "tests/exactly_once_check.h"
#include "tests/kafka_fixture.h"

namespace sluice::testing {
namespace {

class TopNRestoreTest : public ClusterTest {
 protected:
  void TearDown() override {
    kafka_.reset();
    ClusterTest::TearDown();
  }

  // Appends `records` (key, ts) as JSON lines to partition `partition` of topic events.
  void Produce(int partition, const std::vector<std::pair<int64_t, int64_t>>& records) {
    std::string lines;
    for (const auto& [key, ts] : records) absl::StrAppend(&lines, "{\"key\": ", key, ", \"ts\": ", ts, "}\n");
    kafka_->Produce("events", partition, lines);
  }

  // Without idle_timeout: after the restore neither partition gets records until phase 3,
  // which kcat writes one partition after the other; an idle partition would let the other's
  // watermark fire window [10 s, 11 s) without its records (made late, so update rows the
  // top_n drops), whenever the restore took longer than the timeout. Every partition here gets
  // records up to the end, so event time needs no idleness to move on.
  std::string Job(const std::string& windows, const std::string& top) const {
    return KafkaKeyedEventsJob("top-n-restore", kafka_->bootstrap(), absl::StrCat(R"y(  - id: windows
    type: window
    tumble: 1s
    time_field: ts
    allowed_lateness: 5s
    aggregates: [{fn: count, as: n}]
  - {id: window_rows, type: file, path: )y", windows, R"y(, input: windows}
  - {id: by_end, type: key_by, key: [window_end], input: windows}
  - {id: top, type: top_n, n: 1, order_by: n}
  - {id: top_rows, type: file, path: )y", top, R"y(}
)y"), /*idle_timeout=*/"");
  }

  std::unique_ptr<KafkaProcess> kafka_;
};

// The committed lines of those of `dirs` that exist (a sink makes its directory when it opens).
std::vector<std::string> Committed(const std::vector<std::string>& dirs) {
  std::vector<std::string> existing;
  for (const std::string& d : dirs) {
    if (std::filesystem::exists(d)) existing.push_back(d);
  }
  return ReadCommittedLines(existing);
}

// (window_end, key) of the committed top rows in `dirs`, with how often each was committed.
std::map<std::pair<int64_t, int64_t>, int> TopRows(const std::vector<std::string>& dirs) {
  std::map<std::pair<int64_t, int64_t>, int> rows;
  for (const std::string& line : Committed(dirs)) {
    auto j = nlohmann::json::parse(line);
    EXPECT_EQ(j["rank"].get<int64_t>(), 1) << line;
    rows[{j["window_end"].get<int64_t>(), j["key"].get<int64_t>()}]++;
  }
  return rows;
}

TEST_F(TopNRestoreTest, ARowLateForAWindowFiredBeforeTheSavepointIsNotRankedAgain) {
  StartCluster(2, 2, 3000);
  kafka_ = std::make_unique<KafkaProcess>(dir_, std::vector<std::string>{"events:2"});
  ASSERT_FALSE(kafka_->bootstrap().empty()) << kafka_->Log();

  // Both partitions, in event-time order: phase 1 over [0, 10 s) (the watermark reaches
  // 9890 ms: windows [0, 1 s) .. [8 s, 9 s) fire), phase 3 over [10 s, 12 s) (windows up to
  // [10 s, 11 s) fire).
  std::map<int64_t, std::map<int64_t, int64_t>> counts;  // window_end -> key -> records
  auto phase = [&](int64_t from_ts, int64_t n) {
    for (int p = 0; p < 2; ++p) {
      std::vector<std::pair<int64_t, int64_t>> records;
      for (int64_t i = 0; i < n; ++i) {
        const int64_t ts = from_ts + i * 10;
        const int64_t key = (i * i + p * 3 + ts / 1000) % 5;
        records.push_back({key, ts});
        counts[ts / 1000 * 1000 + 1000][key]++;
      }
      Produce(p, records);
    }
  };
  phase(0, 1000);
  if (HasFatalFailure()) return;
  const std::string windows_before = dir_ + "/windows-before", top_before = dir_ + "/top-before";
  const std::string job = Submit(Job(windows_before, top_before));
  auto ends_of = [](const std::map<std::pair<int64_t, int64_t>, int>& rows) {
    std::set<int64_t> ends;
    for (const auto& [row, n] : rows) ends.insert(row.first);
    return ends;
  };
  ASSERT_TRUE(WaitFor([&] { return ends_of(TopRows({top_before})).size() == 9; },
                      std::chrono::seconds(60), "the top rows of windows [0, 9 s) committed",
                      std::chrono::milliseconds(100)));
  auto savepoint = client_->Savepoint(job, dir_ + "/savepoints", /*stop=*/true);
  ASSERT_OK(savepoint);
  ASSERT_EQ(WaitForEnd(job, std::chrono::seconds(20)).state(), proto::JOB_CANCELLED);

  // Phase 2: late for window [8 s, 9 s), which fired, but within its allowed lateness.
  Produce(0, {{4, 8500}});
  const std::string windows_after = dir_ + "/windows-after", top_after = dir_ + "/top-after";
  auto restored = client_->SubmitRestoring(Job(windows_after, top_after), "job.yaml", 0, *savepoint, false);
  ASSERT_OK(restored);
  const std::string job2 = restored->job_id();
  // The window's update row is committed: the top_n has seen it.
  ASSERT_TRUE(WaitFor([&] { return !Committed({windows_after}).empty(); },
                      std::chrono::seconds(60), "the update row of window [8 s, 9 s)",
                      std::chrono::milliseconds(100)));
  for (const std::string& line : Committed({windows_after})) {
    auto j = nlohmann::json::parse(line);
    EXPECT_TRUE(j["update"].get<bool>()) << line;
    EXPECT_EQ(j["window_end"].get<int64_t>(), 9000) << line;
    EXPECT_EQ(j["key"].get<int64_t>(), 4) << line;
    EXPECT_EQ(j["n"].get<int64_t>(), counts[9000][4] + 1) << line;
  }
  phase(10000, 200);
  if (HasFatalFailure()) return;
  ASSERT_TRUE(WaitFor([&] { return ends_of(TopRows({top_after})).count(11000) == 1; },
                      std::chrono::seconds(60), "the top rows of window [10 s, 11 s) committed",
                      std::chrono::milliseconds(100)));
  // One more checkpoint, for anything the top_n emitted after those rows.
  const int64_t last = LatestCompletedCheckpoint(WaitForCheckpoint(job2, 0, std::chrono::seconds(20)));
  WaitForCheckpoint(job2, last, std::chrono::seconds(20));
  ASSERT_OK(client_->Cancel(job2));
  const proto::JobInfo info = WaitForEnd(job2, std::chrono::seconds(20));

  // Expected: per window [0, 11 s), the keys with the most records (ties all kept), of the
  // records on time; the late record's update row is late for the top_n.
  std::map<std::pair<int64_t, int64_t>, int> expected;
  for (const auto& [end, keys] : counts) {
    if (end > 11000) continue;
    int64_t best = 0;
    for (const auto& [key, n] : keys) best = std::max(best, n);
    for (const auto& [key, n] : keys) {
      if (n == best) expected[{end, key}] = 1;
    }
  }
  EXPECT_EQ(TopRows({top_before, top_after}), expected);
  const proto::OperatorInfo* top = FindOperator(info, "top");
  ASSERT_NE(top, nullptr);
  EXPECT_EQ(top->late_records_dropped(), 1u);
}

}  // namespace
}  // namespace sluice::testing
