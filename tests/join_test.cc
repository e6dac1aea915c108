// Joins across processes: an interval join and a full outer window join of two event-time
// datagen streams (bounded out-of-orderness) on 2 workers at parallelism 2, with checkpoints,
// and a worker killed with SIGKILL mid-run (a replacement started at once); and an interval
// join stopped with a savepoint midway and restored at parallelism 1 and 3. The committed
// output must be exactly the set of rows computed independently below, each row once.

#include <signal.h>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "tests/cluster_fixture.h"
#include "tests/exactly_once_check.h"

namespace sluice::testing {
namespace {

constexpr int64_t kRecords = 20'000;  // per input
constexpr int64_t kUsers = 10;

// The inputs, as the job's datagen expressions define them (seq = 0 .. kRecords - 1). Each
// source subtask of 2 emits every other seq, out of order by at most 30 ms.
int64_t OrderTs(int64_t seq) { return seq * 10 - (seq % 5) * 15; }
int64_t PaymentTs(int64_t seq) { return seq * 10 + 3 - (seq % 4) * 12; }

// A datagen source `id` of (<id_field>, user, ts) with event time from `ts`.
// `rate` 0: as fast as it goes.
std::string Source(const std::string& id, const std::string& id_field, const std::string& ts,
                   int64_t rate) {
  return absl::StrCat("  - id: ", id, "\n    type: datagen\n    count: ", kRecords,
                      rate > 0 ? absl::StrCat("\n    rate: ", rate) : "", "\n    fields:\n", "      - {name: ", id_field,
                      ", type: int64, expr: \"seq\"}\n",
                      "      - {name: user, type: int64, expr: \"seq % ", kUsers, "\"}\n",
                      "      - {name: ts, type: timestamp, expr: \"to_timestamp(", ts, ")\"}\n",
                      "    event_time: {field: ts, max_out_of_orderness: 100ms}\n");
}

std::string Sources(int64_t rate) {
  return absl::StrCat("\n", Source("orders", "order_id", "seq * 10 - (seq % 5) * 15", rate),
                      Source("payments", "pay_id", "seq * 10 + 3 - (seq % 4) * 12", rate));
}

std::string Job(const std::string& name, const std::string& join, const std::string& out,
                int64_t rate = 4000) {
  return absl::StrCat("name: ", name, R"y(
parallelism: 2
checkpoint: {interval: 200ms, timeout: 20s}
restart: {strategy: fixed_delay, attempts: 1000, delay: 100ms}
operators:)y", Sources(rate), join, "  - {id: out, type: file, path: ", out, "}\n");
}

class JoinTest : public ClusterTest {
 protected:
  // Runs `yaml` on the cluster StartCluster() made, kills worker 1 with SIGKILL once a
  // checkpoint has completed, restarts it, and returns the committed output lines once the job
  // has finished.
  std::vector<std::string> RunWithKill(const std::string& yaml, const std::string& out) {
    const std::string job = Submit(yaml);
    const proto::JobInfo running = WaitForCheckpoint(job, 0, std::chrono::seconds(30));
    EXPECT_EQ(running.state(), proto::JOB_RUNNING) << "no checkpoint completed while it ran";
    EXPECT_OK(cluster_->KillWorker(1, SIGKILL));
    EXPECT_OK(cluster_->RestartWorker(1, -1));
    const proto::JobInfo info = WaitForEnd(job, std::chrono::seconds(120));
    EXPECT_EQ(info.state(), proto::JOB_FINISHED) << info.error();
    EXPECT_GE(info.restarts(), 1) << "the kill did not hit the job";
    return ReadCommittedLines({out});
  }
};

// Sorted, with duplicates kept: equal vectors mean every row exactly once.
std::vector<std::string> Sorted(std::vector<std::string> v) {
  std::sort(v.begin(), v.end());
  return v;
}

std::string Id(const nlohmann::json& v) { return v.is_null() ? "-" : std::to_string(v.get<int64_t>()); }

constexpr const char* kIntervalJoin = R"y(
  - id: j
    type: interval_join
    inputs: [{from: orders, partition: hash, key: [user]}, {from: payments, partition: hash, key: [user]}]
    time: ts
    lower: -150ms
    upper: 250ms
)y";

// Checks that `lines` are exactly the interval join's rows, each once.
void CheckIntervalJoin(const std::vector<std::string>& lines) {
  std::vector<std::string> got;
  for (const std::string& line : lines) {
    auto j = nlohmann::json::parse(line);
    got.push_back(absl::StrCat(Id(j["order_id"]), "|", Id(j["pay_id"])));
    EXPECT_EQ(j["left.user"], j["right.user"]) << line;
  }
  // Every (order, payment) of one user with order.ts - 150 <= payment.ts <= order.ts + 250.
  std::vector<std::string> expected;
  for (int64_t o = 0; o < kRecords; ++o) {
    for (int64_t p = o % kUsers; p < kRecords; p += kUsers) {
      const int64_t d = PaymentTs(p) - OrderTs(o);
      if (d >= -150 && d <= 250) expected.push_back(absl::StrCat(o, "|", p));
    }
  }
  ASSERT_GT(expected.size(), static_cast<size_t>(3 * kRecords));
  EXPECT_EQ(got.size(), expected.size());
  EXPECT_TRUE(Sorted(got) == Sorted(expected)) << "the output differs from the expected rows";
}

TEST_F(JoinTest, IntervalJoinSurvivesAWorkerKillExactlyOnce) {
  StartCluster(2, 2, 1500);
  const std::string out = dir_ + "/out";
  CheckIntervalJoin(RunWithKill(Job("interval-join", kIntervalJoin, out), out));
}

// Stopped with a savepoint once it has joined rows and completed a checkpoint, the job restored
// from it at parallelism 1 and at 3 (each from the same savepoint) continues: the rows committed
// before the savepoint plus those of the restored run are every row exactly once, so the records
// kept in join state (and the sources' positions) were redistributed to the new subtasks.
TEST_F(JoinTest, IntervalJoinSavepointRestoresAtOtherParallelism) {
  StartCluster(2, 3, 3000);
  const std::string before = dir_ + "/before";
  const std::string job = Submit(Job("interval-join", kIntervalJoin, before, 2000));
  const proto::JobInfo running = WaitUntil(
      job,
      [](const proto::JobInfo& i) {
        const bool checkpointed = LatestCompletedCheckpoint(i) > 0;
        const proto::OperatorInfo* j = FindOperator(i, "j");
        return (checkpointed && j != nullptr && j->records_out() > 0) ||
               i.state() == proto::JOB_FINISHED || i.state() == proto::JOB_FAILED;
      },
      std::chrono::seconds(30));
  ASSERT_EQ(running.state(), proto::JOB_RUNNING) << running.error();
  auto savepoint = client_->Savepoint(job, dir_ + "/savepoints", /*stop=*/true);
  ASSERT_OK(savepoint);
  const proto::JobInfo stopped = WaitForEnd(job, std::chrono::seconds(20));
  ASSERT_EQ(stopped.state(), proto::JOB_CANCELLED);
  const int64_t emitted_before = FindOperator(stopped, "orders")->records_out();
  ASSERT_GT(emitted_before, 0);
  ASSERT_LT(emitted_before, kRecords) << "the savepoint came after the end of the input";
  ASSERT_FALSE(ReadCommittedLines({before}).empty());

  for (int p : {1, 3}) {
    SCOPED_TRACE(absl::StrCat("restored at parallelism ", p));
    const std::string after = absl::StrCat(dir_, "/after-", p);
    auto r = client_->SubmitRestoring(Job("interval-join", kIntervalJoin, after, 0), "job.yaml", p,
                                      *savepoint, false);
    ASSERT_OK(r);
    const proto::JobInfo info = WaitForEnd(r->job_id(), std::chrono::seconds(120));
    ASSERT_EQ(info.state(), proto::JOB_FINISHED) << info.error();
    EXPECT_EQ(FindOperator(info, "j")->parallelism(), p);
    CheckIntervalJoin(ReadCommittedLines({before, after}));
  }
}

TEST_F(JoinTest, FullOuterWindowJoinSurvivesAWorkerKillExactlyOnce) {
  StartCluster(2, 2, 1500);
  const std::string out = dir_ + "/out";
  const std::vector<std::string> lines = RunWithKill(Job("window-join", R"y(
  - id: j
    type: window_join
    inputs: [{from: orders, partition: hash, key: [user]}, {from: payments, partition: hash, key: [user]}]
    time: ts
    tumble: 70ms
    kind: full
)y", out), out);
  std::vector<std::string> got;
  for (const std::string& line : lines) {
    auto j = nlohmann::json::parse(line);
    got.push_back(absl::StrCat(Id(j["order_id"]), "|", Id(j["pay_id"]), "|",
                               j["window_start"].get<int64_t>(), "|", j["window_end"].get<int64_t>()));
  }
  // Per user and 70 ms window: every pair, or each row alone when the other side is empty.
  const auto start = [](int64_t ts) { return ts - (((ts % 70) + 70) % 70); };
  std::map<std::pair<int64_t, int64_t>, std::vector<int64_t>> orders, payments;
  for (int64_t s = 0; s < kRecords; ++s) {
    orders[{s % kUsers, start(OrderTs(s))}].push_back(s);
    payments[{s % kUsers, start(PaymentTs(s))}].push_back(s);
  }
  std::vector<std::string> expected;
  for (const auto& [window, os] : orders) {
    auto it = payments.find(window);
    for (int64_t o : os) {
      if (it == payments.end()) {
        expected.push_back(absl::StrCat(o, "|-|", window.second, "|", window.second + 70));
        continue;
      }
      for (int64_t p : it->second) {
        expected.push_back(absl::StrCat(o, "|", p, "|", window.second, "|", window.second + 70));
      }
    }
  }
  int64_t padded_left = 0;
  for (const auto& [window, ps] : payments) {
    if (orders.count(window)) continue;
    for (int64_t p : ps) {
      expected.push_back(absl::StrCat("-|", p, "|", window.second, "|", window.second + 70));
      ++padded_left;
    }
  }
  ASSERT_GT(padded_left, 0) << "the data has no payment-only windows: the outer side is untested";
  EXPECT_EQ(got.size(), expected.size());
  EXPECT_TRUE(Sorted(got) == Sorted(expected)) << "the output differs from the expected rows";
}

// `unique:` joins (one side holds at most one record per key, as Nexmark's auctions), with a
// worker killed mid-run: auctions (auction_id = seq, one per key) and bids (bid_id = seq, for
// auction BidAuction(seq)), both in event time, out of order within the 100 ms allowed.
constexpr int64_t kAuctions = 2'000;
constexpr int64_t kBids = 20'000;
int64_t AuctionTs(int64_t seq) { return seq * 100 - (seq % 5) * 15; }
int64_t BidAuction(int64_t seq) { return (seq / 10 + seq % 7) % kAuctions; }
int64_t BidTs(int64_t seq) { return seq * 10 - (seq % 4) * 12; }

// Auctions and bids over the same 200 s of event time, at rates that keep them level.
std::string AuctionsAndBids(const std::string& join, const std::string& out) {
  return absl::StrCat(R"y(name: unique-join
parallelism: 2
checkpoint: {interval: 200ms, timeout: 20s}
restart: {strategy: fixed_delay, attempts: 1000, delay: 100ms}
operators:
  - id: auctions
    type: datagen
    count: )y", kAuctions, R"y(
    rate: 500
    fields:
      - {name: auction_id, type: int64, expr: "seq"}
      - {name: ts, type: timestamp, expr: "to_timestamp(seq * 100 - (seq % 5) * 15)"}
    event_time: {field: ts, max_out_of_orderness: 100ms}
  - id: bids
    type: datagen
    count: )y", kBids, R"y(
    rate: 5000
    fields:
      - {name: bid_id, type: int64, expr: "seq"}
      - {name: auction, type: int64, expr: "(seq / 10 + seq % 7) % )y", kAuctions, R"y("}
      - {name: ts, type: timestamp, expr: "to_timestamp(seq * 10 - (seq % 4) * 12)"}
    event_time: {field: ts, max_out_of_orderness: 100ms}
)y", join, "  - {id: out, type: file, path: ", out, "}\n");
}

// "<auction>|<bid>" of each committed row.
std::vector<std::string> AuctionBidPairs(const std::vector<std::string>& lines) {
  std::vector<std::string> got;
  for (const std::string& line : lines) {
    auto j = nlohmann::json::parse(line);
    EXPECT_EQ(j["auction_id"], j["auction"]) << line;
    got.push_back(absl::StrCat(Id(j["auction_id"]), "|", Id(j["bid_id"])));
  }
  return got;
}

class UniqueJoinTest : public JoinTest {
 protected:
  // Runs AuctionsAndBids with `join` as operator j on 2 workers, with a worker killed mid-run;
  // returns "<auction>|<bid>" of each committed row.
  std::vector<std::string> RunWithKill(const std::string& join) {
    StartCluster(2, 2, 1500);
    const std::string out = dir_ + "/out";
    return AuctionBidPairs(JoinTest::RunWithKill(AuctionsAndBids(join, out), out));
  }
};

// An interval join whose left input (auctions) is unique: every (auction, bid) pair with
// auction.ts - 300 ms <= bid.ts <= auction.ts + 50 ms once, though the restored job re-reads
// both inputs from the checkpoint's positions and its join state holds single auctions.
TEST_F(UniqueJoinTest, UniqueLeftIntervalJoinSurvivesAWorkerKillExactlyOnce) {
  const std::vector<std::string> got = RunWithKill(R"y(
  - id: j
    type: interval_join
    inputs: [{from: auctions, partition: hash, key: [auction_id]}, {from: bids, partition: hash, key: [auction]}]
    time: ts
    lower: -300ms
    upper: 50ms
    unique: left
)y");
  std::vector<std::string> expected;
  for (int64_t b = 0; b < kBids; ++b) {
    const int64_t a = BidAuction(b);
    const int64_t d = BidTs(b) - AuctionTs(a);
    if (d >= -300 && d <= 50) expected.push_back(absl::StrCat(a, "|", b));
  }
  ASSERT_GT(expected.size(), static_cast<size_t>(kBids / 4));
  ASSERT_LT(expected.size(), static_cast<size_t>(kBids)) << "the bounds exclude no pair";
  EXPECT_EQ(got.size(), expected.size());
  EXPECT_TRUE(Sorted(got) == Sorted(expected)) << "the output differs from the expected rows";
}

// A regular join whose right input (auctions) is unique, state kept forever: every bid joins
// its auction exactly once, whether it came before the auction (kept, then joined and dropped
// when the auction came) or after (joined at once, never kept).
TEST_F(UniqueJoinTest, UniqueRightRegularJoinSurvivesAWorkerKillExactlyOnce) {
  const std::vector<std::string> got = RunWithKill(R"y(
  - id: j
    type: join
    inputs: [{from: bids, partition: hash, key: [auction]}, {from: auctions, partition: hash, key: [auction_id]}]
    unique: right
)y");
  std::vector<std::string> expected;
  for (int64_t b = 0; b < kBids; ++b) expected.push_back(absl::StrCat(BidAuction(b), "|", b));
  EXPECT_EQ(got.size(), expected.size());
  EXPECT_TRUE(Sorted(got) == Sorted(expected)) << "the output differs from the expected rows";
}

}  // namespace
}  // namespace sluice::testing
