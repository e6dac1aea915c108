// Exactly-once state through failures: kill -9 of workers (and of the coordinator) while a
// checkpointed job runs; the committed output must be exactly what a failure-free run gives.
// Also savepoints with rescaling, and incremental checkpoints.

#include <algorithm>
#include <filesystem>
#include <map>
#include <random>
#include <set>

#include "absl/strings/match.h"
#include "nlohmann/json.hpp"
#include "proto/checkpoint.pb.h"
#include "tests/cluster_fixture.h"
#include "tests/exactly_once_check.h"

namespace sluice::testing {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;


class ExactlyOnceTest : public ClusterTest {
 protected:
  static std::string CheckpointsText(const proto::JobInfo& info) {
    std::string text;
    for (const auto& c : info.checkpoints()) {
      absl::StrAppend(&text, c.checkpoint_id(), " ", c.status(), " ", c.duration_ms(), "ms ",
                      c.unaligned() ? "unaligned " : "aligned ", c.persisted_bytes(), "B ",
                      c.reason(), "; ");
    }
    return text;
  }

  // How many heartbeats to the coordinator each of the 2 workers has seen fail (from its log).
  std::vector<size_t> HeartbeatFailures() const {
    std::vector<size_t> failures;
    for (int i = 0; i < 2; ++i) {
      const std::string log = ReadAll(absl::StrCat(dir_, "/cluster/worker-", i, ".log"));
      size_t n = 0;
      for (size_t at = log.find(kHeartbeatFailed); at != std::string::npos;
           at = log.find(kHeartbeatFailed, at + 1)) {
        ++n;
      }
      failures.push_back(n);
    }
    return failures;
  }
  static constexpr char kHeartbeatFailed[] = "heartbeat to coordinator failed";

  // kill -9 a random worker at random moments (some during checkpoints, which run every
  // 200 ms and take tens of ms), start a replacement each time, until the job ends.
  void KillWorkersUntilDone(const std::string& job, int kills) {
    std::mt19937 rng(12345);
    for (int k = 0; k < kills; ++k) {
      // Not synchronisation: a random moment to kill at is what this chaos loop tests.
      std::this_thread::sleep_for(std::chrono::milliseconds(700 + rng() % 900));
      auto info = client_->GetJob(job);
      ASSERT_OK(info);
      if (info->state() == proto::JOB_FINISHED) break;
      int victim = rng() % 2;
      ASSERT_OK(cluster_->KillWorker(victim, SIGKILL));
      ASSERT_OK(cluster_->RestartWorker(victim, -1));
    }
  }
};

// The same in every checkpoint mode.
class ExactlyOnceModeTest : public ExactlyOnceTest,
                            public ::testing::WithParamInterface<std::string> {};

INSTANTIATE_TEST_SUITE_P(Modes, ExactlyOnceModeTest,
                         ::testing::Values("aligned", "unaligned", "auto"),
                         [](const auto& info) { return info.param; });

TEST_P(ExactlyOnceModeTest, KillingWorkersRepeatedlyKeepsOutputExactlyOnce) {
  StartCluster(2, 2, 1500);
  constexpr int64_t kRecords = 3'000'000;
  const std::string out = dir_ + "/out";
  CountingJobOptions o;
  o.checkpoint_mode = GetParam();
  std::string job = Submit(CountingJob(out, kRecords, 300'000, o));
  WaitForState(job, proto::JOB_RUNNING, std::chrono::seconds(10));
  KillWorkersUntilDone(job, 4);
  proto::JobInfo info = WaitForEnd(job, std::chrono::seconds(240));
  ASSERT_EQ(info.state(), proto::JOB_FINISHED) << info.error();
  EXPECT_GE(info.restarts(), 1) << "the kills did not hit the job";
  CheckExactlyOnce({out}, ExpectedFor(kRecords));
  for (const auto& entry : fs::directory_iterator(out)) {
    EXPECT_EQ(entry.path().extension(), ".jsonl") << "left over: " << entry.path();
  }
}

// A slow sink holds the job back. Unaligned (and auto) checkpoints still complete, storing the
// in-flight buffers; a kill -9 during the backpressure restores them: output exactly once.
class BackpressureTest : public ExactlyOnceTest,
                         public ::testing::WithParamInterface<std::string> {};

INSTANTIATE_TEST_SUITE_P(Modes, BackpressureTest, ::testing::Values("unaligned", "auto"),
                         [](const auto& info) { return info.param; });

TEST_P(BackpressureTest, CheckpointsCompleteAndKillKeepsOutputExactlyOnce) {
  StartCluster(2, 2, 1500);
  // More than the channels hold (~10K records a buffer), so the sources stay held back for
  // seconds: 12.5 s for the whole input, which the sources alone produce in a fraction of one.
  constexpr int64_t kRecords = 1'000'000;
  const std::string out = dir_ + "/out";
  CountingJobOptions o;
  o.checkpoint_mode = GetParam();
  o.slow_sink_rate = 40'000;
  std::string job = Submit(CountingJob(out, kRecords, 0, o));
  WaitForState(job, proto::JOB_RUNNING, std::chrono::seconds(10));
  // Checkpoints keep completing while the sink holds everything back.
  int64_t latest = 0;
  for (int k = 0; k < 3; ++k) {
    proto::JobInfo info = WaitForCheckpoint(job, latest, std::chrono::seconds(5));
    ASSERT_EQ(info.state(), proto::JOB_RUNNING) << "the job ended before checkpoint " << k + 1;
    ASSERT_GT(LatestCompletedCheckpoint(info), latest) << "no checkpoint completed within 5 s: "
                                                       << CheckpointsText(info);
    latest = LatestCompletedCheckpoint(info);
  }
  proto::JobInfo info = WaitUntil(job, [](const proto::JobInfo& i) {
    for (const auto& c : i.checkpoints()) {
      if (c.status() == "COMPLETED" && c.unaligned() && c.persisted_bytes() > 0) return true;
    }
    return i.state() != proto::JOB_RUNNING;
  }, std::chrono::seconds(10));
  ASSERT_EQ(info.state(), proto::JOB_RUNNING);
  // kill -9 while in-flight data is part of the latest checkpoint.
  ASSERT_OK(cluster_->KillWorker(1, SIGKILL));
  ASSERT_OK(cluster_->RestartWorker(1, -1));
  // The new attempt restored an unaligned checkpoint: its in-flight data was replayed.
  info = WaitUntil(job, [](const proto::JobInfo& i) {
    return i.restored_checkpoint_id() > 0 || i.state() == proto::JOB_FINISHED ||
           i.state() == proto::JOB_FAILED;
  }, std::chrono::seconds(30));
  bool restored_in_flight = false;
  for (const auto& c : info.checkpoints()) {
    restored_in_flight |= c.checkpoint_id() == info.restored_checkpoint_id() && c.unaligned() &&
                          c.persisted_bytes() > 0;
  }
  EXPECT_TRUE(restored_in_flight) << "restored checkpoint " << info.restored_checkpoint_id()
                                  << " of " << CheckpointsText(info);
  info = WaitForEnd(job, std::chrono::seconds(120));
  ASSERT_EQ(info.state(), proto::JOB_FINISHED) << info.error();
  EXPECT_GE(info.restarts(), 1) << "the kill did not hit the job";
  CheckExactlyOnce({out}, ExpectedFor(kRecords));
}

// Mode auto under backpressure that drains within aligned_timeout: the sources' barriers wait
// in their backlogs (in place) and every checkpoint completes aligned, storing no in-flight
// data (before session 29 a backpressured source overtook its backlog at once and stored it).
TEST_F(ExactlyOnceTest, AutoCheckpointsStayAlignedWhenTheBacklogDrainsInTime) {
  StartCluster(2, 2, 1500);
  constexpr int64_t kRecords = 1'000'000;
  const std::string out = dir_ + "/out";
  CountingJobOptions o;
  o.checkpoint_mode = "auto";
  o.aligned_timeout = "60s";
  o.slow_sink_rate = 100'000;  // ~5 s for the input; an alignment drains ~16 buffers, ~1.6 s
  std::string job = Submit(CountingJob(out, kRecords, 0, o));
  proto::JobInfo info = WaitForEnd(job, std::chrono::seconds(120));
  ASSERT_EQ(info.state(), proto::JOB_FINISHED) << info.error();
  int completed = 0;
  for (const auto& c : info.checkpoints()) {
    if (c.status() != "COMPLETED") continue;
    ++completed;
    EXPECT_FALSE(c.unaligned()) << CheckpointsText(info);
    EXPECT_EQ(c.persisted_bytes(), 0) << CheckpointsText(info);
  }
  EXPECT_GE(completed, 2) << CheckpointsText(info);
  CheckExactlyOnce({out}, ExpectedFor(kRecords));
}

TEST_F(ExactlyOnceTest, CoordinatorCrashResumesFromLatestCheckpoint) {
  StartCluster(2, 2, 1500);
  constexpr int64_t kRecords = 1'500'000;
  const std::string out = dir_ + "/out";
  std::string job = Submit(CountingJob(out, kRecords, 300'000));
  WaitForState(job, proto::JOB_RUNNING, std::chrono::seconds(10));
  ASSERT_GT(LatestCompletedCheckpoint(WaitForCheckpoint(job, 0, std::chrono::seconds(20))), 0);
  const std::vector<size_t> failed_before = HeartbeatFailures();
  ASSERT_OK(cluster_->KillCoordinator());
  // Every worker has seen the coordinator gone before it comes back.
  ASSERT_TRUE(WaitFor([&] {
    const std::vector<size_t> failed = HeartbeatFailures();
    for (size_t i = 0; i < failed.size(); ++i) {
      if (failed[i] <= failed_before[i]) return false;
    }
    return true;
  }, std::chrono::seconds(10), "a failed heartbeat on each worker"));
  ASSERT_OK(cluster_->RestartCoordinator());
  ASSERT_OK(cluster_->WaitForWorkers(2, 20000));
  proto::JobInfo info = WaitForEnd(job, std::chrono::seconds(120));
  ASSERT_EQ(info.state(), proto::JOB_FINISHED) << info.error();
  EXPECT_GE(info.attempt(), 2);
  CheckExactlyOnce({out}, ExpectedFor(kRecords));
}

TEST_F(ExactlyOnceTest, SavepointRestoresWithOtherParallelism) {
  StartCluster(2, 3, 3000);
  constexpr int64_t kRecords = 600'000;
  const std::string out = dir_ + "/before";
  std::string job = Submit(CountingJob(out, kRecords, 150'000));
  WaitForState(job, proto::JOB_RUNNING, std::chrono::seconds(10));
  ASSERT_GT(LatestCompletedCheckpoint(WaitForCheckpoint(job, 0, std::chrono::seconds(20))), 0);
  auto savepoint = client_->Savepoint(job, dir_ + "/savepoints", /*stop=*/true);
  ASSERT_OK(savepoint);
  proto::JobInfo stopped = WaitForEnd(job, std::chrono::seconds(20));
  EXPECT_EQ(stopped.state(), proto::JOB_CANCELLED);
  EXPECT_EQ(stopped.stopped_with_savepoint(), *savepoint);
  EXPECT_EQ(stopped.error(), "");
  ASSERT_TRUE(fs::exists(*savepoint + "/_metadata"));

  for (int p : {1, 3}) {
    const std::string after = absl::StrCat(dir_, "/after-", p);
    auto r = client_->SubmitRestoring(CountingJob(after, kRecords, 0), "job.yaml", p, *savepoint, false);
    ASSERT_OK(r);
    proto::JobInfo info = WaitForEnd(r->job_id(), std::chrono::seconds(60));
    ASSERT_EQ(info.state(), proto::JOB_FINISHED) << info.error();
    EXPECT_EQ(info.vertices(1).parallelism(), p);
    // The output before the savepoint plus the output after it: exactly once.
    CheckExactlyOnce({out, after}, ExpectedFor(kRecords));
  }

  // A savepoint whose operators do not match the job is refused.
  std::string renamed = CountingJob(dir_ + "/x", kRecords, 0);
  renamed.replace(renamed.find("id: totals"), 10, "id: sums__");
  auto refused = client_->SubmitRestoring(renamed, "job.yaml", 0, *savepoint, false);
  EXPECT_THAT(refused, StatusIs(absl::StatusCode::kFailedPrecondition,
                                HasSubstr("has state for operator 'totals'")));
  auto allowed = client_->SubmitRestoring(renamed, "job.yaml", 0, *savepoint, true);
  EXPECT_OK(allowed);
}

// Restoring a savepoint at the same parallelism, then losing a worker: the restored job's own
// checkpoints must hold every file they name in the job's directory (they used to name the
// savepoint's shared files there, so recovering from them failed with NOT_FOUND).
TEST_F(ExactlyOnceTest, SavepointRestoredAtTheSameParallelismSurvivesAWorkerCrash) {
  StartCluster(2, 2, 1500);
  constexpr int64_t kRecords = 900'000;
  const std::string before = dir_ + "/before";
  std::string job = Submit(CountingJob(before, kRecords, 150'000));
  WaitForState(job, proto::JOB_RUNNING, std::chrono::seconds(10));
  ASSERT_GT(LatestCompletedCheckpoint(WaitForCheckpoint(job, 0, std::chrono::seconds(20))), 0);
  auto savepoint = client_->Savepoint(job, dir_ + "/savepoints", /*stop=*/true);
  ASSERT_OK(savepoint);
  ASSERT_EQ(WaitForEnd(job, std::chrono::seconds(20)).state(), proto::JOB_CANCELLED);

  const std::string after = dir_ + "/after";
  auto r = client_->SubmitRestoring(CountingJob(after, kRecords, 150'000), "job.yaml", 2, *savepoint, false);
  ASSERT_OK(r);
  const std::string restored = r->job_id();
  // Two completed checkpoints of the restored job (the second one is incremental over the
  // first), then kill -9 a worker: the job recovers from its own latest checkpoint.
  proto::JobInfo running = WaitUntil(restored, [](const proto::JobInfo& i) {
    int completed = 0;
    for (const auto& c : i.checkpoints()) completed += c.status() == "COMPLETED";
    return completed >= 2 || i.state() == proto::JOB_FINISHED;
  }, std::chrono::seconds(30));
  ASSERT_EQ(running.state(), proto::JOB_RUNNING) << "the job ended before the kill; slow it down";
  const int64_t own_checkpoint = LatestCompletedCheckpoint(running);
  ASSERT_OK(cluster_->KillWorker(0, SIGKILL));
  ASSERT_OK(cluster_->RestartWorker(0, -1));
  proto::JobInfo info = WaitForEnd(restored, std::chrono::seconds(120));
  ASSERT_EQ(info.state(), proto::JOB_FINISHED) << info.error();
  EXPECT_GE(info.restarts(), 1) << "the kill did not hit the job";
  EXPECT_GE(info.restored_checkpoint_id(), own_checkpoint) << "not recovered from its own checkpoint";
  CheckExactlyOnce({before, after}, ExpectedFor(kRecords));
}

TEST_F(ExactlyOnceTest, IncrementalCheckpointsUploadOnlyWhatChanged) {
  StartCluster(1, 2, 3000);
  // 1M keys quickly, then a trickle of updates to 10 keys.
  std::string job = Submit(R"(
name: incremental
parallelism: 1
checkpoint: {interval: 300ms, retain: 2}
operators:
  - id: bulk
    type: datagen
    count: 1000000
    fields: [{name: key, type: int64, expr: "seq"}]
  - id: trickle
    type: datagen
    rate: 200
    fields: [{name: key, type: int64, expr: "seq % 10"}]
  - {id: both, type: union, inputs: [bulk, trickle]}
  - {id: by_key, type: key_by, key: [key]}
  - {id: counts, type: aggregate, aggregates: [{fn: count, as: n}]}
  - {id: sink, type: blackhole}
)");
  WaitForState(job, proto::JOB_RUNNING, std::chrono::seconds(10));
  // Wait until the bulk load is in and several checkpoints have completed after it. A RocksDB
  // compaction rewrites files, so an occasional checkpoint uploads much more: judge the median.
  std::vector<proto::CheckpointInfo> after_bulk;
  int64_t seen_id = 0;
  ASSERT_TRUE(WaitFor([&] {
    auto info = client_->GetJob(job);
    if (!info.ok()) return false;
    bool bulk_done = FindOperator(*info, "bulk")->records_out() == 1000000;
    for (const auto& c : info->checkpoints()) {
      if (c.status() == "COMPLETED" && c.checkpoint_id() > seen_id) {
        seen_id = c.checkpoint_id();
        if (bulk_done) after_bulk.push_back(c);
      }
    }
    return after_bulk.size() >= 7;
  }, std::chrono::seconds(60), "7 checkpoints after the bulk load", std::chrono::milliseconds(100)))
      << after_bulk.size() << " seen";
  after_bulk.erase(after_bulk.begin());  // may still hold the tail of the bulk load
  std::sort(after_bulk.begin(), after_bulk.end(), [](const auto& a, const auto& b) {
    return a.incremental_size() < b.incremental_size();
  });
  const proto::CheckpointInfo& median = after_bulk[after_bulk.size() / 2];
  EXPECT_GT(median.full_size(), 1'000'000) << "1M keys of state";
  EXPECT_LT(median.incremental_size() * 10, median.full_size())
      << "median checkpoint uploaded " << median.incremental_size() << " of " << median.full_size();

  // Every file the retained checkpoints reference exists.
  const fs::path job_dir = fs::path(cli::CheckpointDirOf(dir_ + "/cluster")) / job;
  int checked = 0;
  for (const auto& entry : fs::directory_iterator(job_dir)) {
    if (!absl::StartsWith(entry.path().filename().string(), "chk-")) continue;
    std::ifstream in(entry.path() / "_metadata", std::ios::binary);
    proto::CheckpointMetadata md;
    if (!in || !md.ParseFromIstream(&in)) continue;  // being written or discarded
    for (const auto& st : md.subtasks()) {
      for (const auto& h : st.keyed()) {
        for (const auto& f : h.files()) {
          fs::path p = f.shared() ? job_dir / "shared" / f.name() : job_dir / h.private_dir() / f.name();
          EXPECT_TRUE(fs::exists(p)) << p;
          ++checked;
        }
      }
    }
  }
  EXPECT_GT(checked, 0);
  ASSERT_OK(client_->Cancel(job));
  EXPECT_EQ(WaitForEnd(job, std::chrono::seconds(10)).state(), proto::JOB_CANCELLED);
}

}  // namespace
}  // namespace sluice::testing
