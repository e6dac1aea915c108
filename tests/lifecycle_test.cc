// Unbounded jobs: listing, growing counters, cancellation, backpressure from a slow sink.

#include <fstream>

#include "absl/strings/numbers.h"
#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "httplib.h"
#include "tests/cluster_fixture.h"

namespace sluice::testing {
namespace {

using ::testing::HasSubstr;

class LifecycleTest : public ClusterTest {};

constexpr char kUnbounded[] = R"(
name: endless
parallelism: 2
operators:
  - id: gen
    type: datagen
    rate: 50000
    fields:
      - {name: k, type: int64, expr: "seq % 101"}
  - id: by_k
    type: key_by
    key: [k]
  - id: counts
    type: aggregate
    aggregates: [{fn: count, as: n}]
  - id: sink
    type: blackhole
)";

TEST_F(LifecycleTest, UnboundedJobIsListedGrowsAndCancelsCleanly) {
  StartCluster(2, 2);
  std::string job = Submit(kUnbounded);
  proto::JobInfo info = WaitForState(job, proto::JOB_RUNNING, std::chrono::seconds(10));
  ASSERT_EQ(info.state(), proto::JOB_RUNNING);

  auto list = client_->ListJobs();
  ASSERT_OK(list);
  ASSERT_EQ(list->jobs_size(), 1);
  EXPECT_EQ(list->jobs(0).job_id(), job);
  EXPECT_EQ(list->jobs(0).name(), "endless");

  // Counters come with heartbeats; they must keep growing.
  auto sink_in = [&] {
    auto j = client_->GetJob(job);
    return j.ok() ? FindOperator(*j, "sink")->records_in() : 0;
  };
  uint64_t first = 0;
  ASSERT_TRUE(WaitFor([&] { return (first = sink_in()) > 0; }, std::chrono::seconds(10),
                      "the sink's first records in a heartbeat"));
  uint64_t second = first;
  EXPECT_TRUE(WaitFor([&] { return (second = sink_in()) > first; }, std::chrono::seconds(10),
                      "the sink's count to grow past " + std::to_string(first)));

  // The CLI shows operators, parallelism and placement.
  std::string out;
  ASSERT_EQ(RunCommand(absl::StrCat(SLUICE_TEST_BIN_DIR, "/sluice --coordinator ",
                                    cluster_->coordinator_address(), " status ", job), &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("RUNNING"));
  EXPECT_THAT(out, HasSubstr("counts"));
  EXPECT_THAT(out, HasSubstr("aggregate"));
  EXPECT_THAT(out, HasSubstr("[gen -> by_k] #0@w-"));

  ASSERT_OK(client_->Cancel(job));
  info = WaitForEnd(job, std::chrono::seconds(10));
  EXPECT_EQ(info.state(), proto::JOB_CANCELLED);
  for (const auto& v : info.vertices()) {
    for (const auto& s : v.subtasks()) EXPECT_EQ(s.state(), proto::TASK_CANCELLED);
  }
  // Slots are free again: the same job fits once more.
  auto workers = client_->ListWorkers();
  ASSERT_OK(workers);
  for (const auto& w : workers->workers()) EXPECT_EQ(w.slots_used(), 0);
  // Cancelling twice is an error naming the state.
  EXPECT_THAT(client_->Cancel(job), StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("CANCELLED")));
}

// Resident set size of a process in bytes, from /proc.
int64_t RssBytes(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/statm"));
  int64_t pages = 0, rss = 0;
  in >> pages >> rss;
  return rss * sysconf(_SC_PAGESIZE);
}

// Sum of sluice_channel_credit_wait_seconds over every worker's /metrics.
double CreditWaitSeconds(cli::CoordinatorClient* client) {
  auto workers = client->ListWorkers();
  double total = 0;
  if (!workers.ok()) return -1;
  for (const auto& w : workers->workers()) {
    size_t colon = w.http_address().find(':');
    httplib::Client http(w.http_address().substr(0, colon), std::stoi(w.http_address().substr(colon + 1)));
    auto res = http.Get("/metrics");
    if (!res) return -1;
    for (absl::string_view line : absl::StrSplit(res->body, '\n')) {
      if (!absl::StartsWith(line, "sluice_channel_credit_wait_seconds{")) continue;
      double v = 0;
      if (absl::SimpleAtod(line.substr(line.rfind(' ') + 1), &v)) total += v;
    }
  }
  return total;
}

TEST_F(LifecycleTest, SlowSinkSlowsTheSourceAndLosesNothing) {
  StartCluster(2, 2);
  // 200-byte records: a 32 KiB buffer holds about 160, so the credit window (8 buffers per
  // channel, 4 channels into the sinks) bounds what is in flight to a few thousand records.
  constexpr int64_t kCount = 24000;
  std::string pad(200, 'x');
  std::string yaml = absl::StrCat(R"(
name: slow-sink
parallelism: 2
operators:
  - id: gen
    type: datagen
    count: )", kCount, R"(
    fields:
      - {name: k, type: int64, expr: "seq % 13"}
      - {name: pad, type: string, expr: "')", pad, R"('"}
  - id: by_k
    type: key_by
    key: [k]
  - id: sink
    type: blackhole
    max_rate: 3000
)");
  std::string job = Submit(yaml);
  WaitForState(job, proto::JOB_RUNNING, std::chrono::seconds(10));
  // Without backpressure the source would finish in milliseconds. Sample while it runs.
  constexpr int64_t kInFlightBound = 4 * 10 * (32 * 1024 / 200 + 1) + 2 * 256;
  int samples = 0;
  for (int i = 0; i < 10; ++i) {
    // Not synchronisation: the bounds below hold at every moment of the run, and this only
    // spreads the samples over it.
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    auto info = client_->GetJob(job);
    ASSERT_OK(info);
    if (info->state() != proto::JOB_RUNNING) break;
    int64_t out = FindOperator(*info, "gen")->records_out();
    int64_t in = FindOperator(*info, "sink")->records_in();
    // Counters travel with heartbeats; allow one heartbeat of skew at the sink's rate.
    EXPECT_LT(out - in, kInFlightBound + 6000 / 2) << "source " << out << " sink " << in;
    EXPECT_LT(out, kCount) << "the source was not slowed down";
    for (pid_t p : cluster_->AllPids()) EXPECT_LT(RssBytes(p), 512LL << 20);
    if (++samples == 3) EXPECT_GT(CreditWaitSeconds(client_.get()), 0.0) << "senders never waited for credit";
  }
  EXPECT_GE(samples, 3);
  proto::JobInfo info = WaitForEnd(job, std::chrono::seconds(60));
  ASSERT_EQ(info.state(), proto::JOB_FINISHED) << info.error();
  EXPECT_EQ(FindOperator(info, "sink")->records_in(), static_cast<uint64_t>(kCount));

}

}  // namespace
}  // namespace sluice::testing
