// What a user sees around a coordinator crash and around savepoints, driven through the CLI
// and the coordinator's API with real processes: ended jobs stay ended after a kill -9 of the
// coordinator, an outage of the coordinator uses no restart attempt and resumes from the latest
// checkpoint, restarting jobs wait for slots, a killed idle worker is noticed at once, and jobs
// restored from each other's savepoints into one output path lose nothing. A restarted
// coordinator deploys the plan stored with the job, and plans records without one again.

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"
#include "proto/control.pb.h"
#include "tests/cluster_fixture.h"
#include "tests/exactly_once_check.h"

namespace sluice::testing {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

constexpr int64_t kKeys = 1000;

CountingJobOptions Named(const std::string& name, const std::string& restart = "") {
  CountingJobOptions o;
  o.name = name;
  if (!restart.empty()) o.restart = restart;
  return o;
}

class CoordinatorRestartTest : public ClusterTest {
 protected:
  // Runs the CLI against the cluster; returns its exit code, output in *out.
  int Cli(const std::string& args, std::string* out) {
    out->clear();
    return RunCommand(absl::StrCat(SLUICE_TEST_BIN_DIR, "/sluice --coordinator ",
                                   cluster_->coordinator_address(), " ", args),
                      out);
  }
  std::string WriteJobFile(const std::string& name, const std::string& yaml) {
    const std::string path = dir_ + "/" + name;
    std::ofstream(path) << yaml;
    return path;
  }
  // `sluice run FILE ARGS`: the job id it prints.
  std::string Run(const std::string& file, const std::string& args = "") {
    std::string out;
    EXPECT_EQ(Cli(absl::StrCat("run ", file, " ", args), &out), 0) << out;
    std::smatch m;
    EXPECT_TRUE(std::regex_search(out, m, std::regex("job-[0-9a-f]{8}"))) << out;
    return m.empty() ? "" : m.str(0);
  }
  // `sluice stop JOB --savepoint --dir D`: the savepoint path it prints.
  std::string StopWithSavepoint(const std::string& job) {
    std::string out;
    EXPECT_EQ(Cli(absl::StrCat("stop ", job, " --savepoint --dir ", dir_, "/savepoints"), &out), 0) << out;
    std::string path(absl::StripAsciiWhitespace(out));
    EXPECT_TRUE(fs::exists(path + "/_metadata")) << out;
    return path;
  }
  // Waits until the job has completed a checkpoint after `after`; returns its id (0 on timeout).
  int64_t WaitForCheckpoint(const std::string& job, int64_t after = 0) {
    int64_t id = 0;
    WaitUntil(job, [&](const proto::JobInfo& i) {
      for (const auto& c : i.checkpoints()) {
        if (c.status() == "COMPLETED" && !c.savepoint() && c.checkpoint_id() > after) id = c.checkpoint_id();
      }
      return id > 0;
    }, std::chrono::seconds(20));
    return id;
  }
  static int64_t CommittedLines(const std::string& dir) {
    return static_cast<int64_t>(ReadCommittedLines({dir}).size());
  }
  // Files of `dir` that are not committed output.
  static std::vector<std::string> Uncommitted(const std::string& dir) {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir)) {
      if (e.path().extension() != ".jsonl") names.push_back(e.path().filename().string());
    }
    return names;
  }
  proto::JobRecord ReadRecord(const std::string& job) {
    std::ifstream in(cli::HaDirOf(dir_ + "/cluster") + "/jobs/" + job + ".pb", std::ios::binary);
    proto::JobRecord r;
    EXPECT_TRUE(in && r.ParseFromIstream(&in)) << "no HA record for " << job;
    return r;
  }
  // Replaces the job's HA record (the coordinator is down).
  void WriteRecord(const std::string& job, const proto::JobRecord& r) {
    std::ofstream out(cli::HaDirOf(dir_ + "/cluster") + "/jobs/" + job + ".pb",
                      std::ios::binary | std::ios::trunc);
    ASSERT_TRUE(r.SerializeToOstream(&out) && out.flush()) << "cannot write the HA record of " << job;
  }
  // The id of checkpoint directory .../chk-<id>/_metadata.
  static int64_t CheckpointIdOf(const std::string& metadata) {
    const std::string chk = fs::path(metadata).parent_path().filename().string();
    int64_t id = 0;
    if (!absl::StartsWith(chk, "chk-") || !absl::SimpleAtoi(chk.substr(4), &id)) return 0;
    return id;
  }
};

// Issue 8.1: finished, cancelled and stopped-with-savepoint jobs are not resumed by a
// coordinator restarted after kill -9, write nothing more, and are listed with their states.
TEST_F(CoordinatorRestartTest, EndedJobsStayEndedAfterCoordinatorCrash) {
  StartCluster(2, 3, 1500);
  const std::string finished_out = dir_ + "/finished", cancelled_out = dir_ + "/cancelled",
                    stopped_out = dir_ + "/stopped";
  std::string finished = Run(WriteJobFile("finished.yaml", CountingJob(finished_out, 20'000, 0, Named("finished"))), "--wait");
  std::string cancelled = Run(WriteJobFile("cancelled.yaml", CountingJob(cancelled_out, 0, 20'000, Named("cancelled"))));
  std::string stopped = Run(WriteJobFile("stopped.yaml", CountingJob(stopped_out, 0, 20'000, Named("stopped"))));
  ASSERT_EQ(client_->GetJob(finished)->state(), proto::JOB_FINISHED);
  ASSERT_GT(WaitForCheckpoint(cancelled), 0);
  ASSERT_GT(WaitForCheckpoint(stopped), 0);
  std::string out;
  ASSERT_EQ(Cli("cancel " + cancelled, &out), 0) << out;
  StopWithSavepoint(stopped);
  ASSERT_EQ(WaitForEnd(cancelled, std::chrono::seconds(10)).state(), proto::JOB_CANCELLED);
  ASSERT_EQ(WaitForEnd(stopped, std::chrono::seconds(10)).state(), proto::JOB_CANCELLED);
  const int64_t lines[3] = {CommittedLines(finished_out), CommittedLines(cancelled_out),
                            CommittedLines(stopped_out)};
  EXPECT_EQ(lines[0], 20'000);
  EXPECT_GT(lines[1], 0);
  EXPECT_GT(lines[2], 0);

  ASSERT_OK(cluster_->KillCoordinator());
  ASSERT_OK(cluster_->RestartCoordinator());
  ASSERT_OK(cluster_->WaitForWorkers(2, 20000));
  // The bug redeployed them as soon as slots were free; watch for three heartbeat timeouts.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(4500);
  while (std::chrono::steady_clock::now() < deadline) {
    for (const std::string& job : {finished, cancelled, stopped}) {
      auto info = client_->GetJob(job);
      ASSERT_OK(info);
      ASSERT_TRUE(info->state() == proto::JOB_FINISHED || info->state() == proto::JOB_CANCELLED)
          << job << " came back as " << proto::JobState_Name(info->state());
    }
    // Not synchronisation: nothing is awaited; the test watches, for a fixed window, that
    // something does not happen, and this spaces the looks.
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(CommittedLines(finished_out), lines[0]);
  EXPECT_EQ(CommittedLines(cancelled_out), lines[1]);
  EXPECT_EQ(CommittedLines(stopped_out), lines[2]);
  EXPECT_THAT(Uncommitted(stopped_out), ::testing::IsEmpty());

  ASSERT_EQ(Cli("list", &out), 0) << out;
  EXPECT_TRUE(std::regex_search(out, std::regex(finished + " +finished +FINISHED"))) << out;
  EXPECT_TRUE(std::regex_search(out, std::regex(cancelled + " +cancelled +CANCELLED"))) << out;
  EXPECT_TRUE(std::regex_search(out, std::regex(stopped + " +stopped +CANCELLED"))) << out;
  ASSERT_EQ(Cli("status " + stopped, &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("stopped with savepoint"));
  // No slot is held by an ended job.
  auto workers = client_->ListWorkers();
  ASSERT_OK(workers);
  for (const auto& w : workers->workers()) EXPECT_EQ(w.slots_used(), 0) << w.worker_id();
}

// Issue 8.3: a 20 s coordinator outage; the job resumes from the latest completed checkpoint
// (the one its HA record names) without using any of its 3 restart attempts, exactly once.
TEST_F(CoordinatorRestartTest, CoordinatorOutageResumesFromLatestCheckpointWithoutUsingAnAttempt) {
  StartCluster(2, 2, 1500);
  constexpr int64_t kRecords = 600'000;
  const std::string out = dir_ + "/out";
  std::string job = Submit(CountingJob(out, kRecords, 100'000,
                                       Named("outage", "{strategy: fixed_delay, attempts: 3, delay: 200ms}")));
  ASSERT_GT(WaitForCheckpoint(job, 2), 0);
  // A checkpoint shows as completed just before the job record naming it is written: wait for
  // the record, which is what a restarted coordinator reads.
  ASSERT_TRUE(WaitFor([&] {
    std::ifstream in(cli::HaDirOf(dir_ + "/cluster") + "/jobs/" + job + ".pb", std::ios::binary);
    proto::JobRecord r;
    return in && r.ParseFromIstream(&in) && CheckpointIdOf(r.latest_metadata()) > 2;
  }, std::chrono::seconds(20), "the job record to name a checkpoint after 2", std::chrono::milliseconds(10)));
  const int64_t attempt_before = client_->GetJob(job)->attempt();
  ASSERT_OK(cluster_->KillCoordinator());
  proto::JobRecord record = ReadRecord(job);
  const int64_t latest = CheckpointIdOf(record.latest_metadata());
  ASSERT_GT(latest, 2) << record.latest_metadata();
  // The record holds the job as planned at submission (what every deployment carries). Renamed
  // in the stored plan only, the job shows that name after the restart: the plan is what runs.
  ASSERT_GT(record.plan().format_version(), 0u);
  ASSERT_EQ(record.plan().operators_size(), 4);  // gen, by_key, totals, out
  ASSERT_EQ(record.plan().name(), "outage");
  record.mutable_plan()->set_name("outage_as_planned");
  WriteRecord(job, record);
  // Not synchronisation: a coordinator down for longer than the heartbeat timeout (1.5 s) many
  // times over is the outage under test.
  std::this_thread::sleep_for(std::chrono::seconds(20));
  ASSERT_OK(cluster_->RestartCoordinator());
  proto::JobInfo info = WaitForEnd(job, std::chrono::seconds(120));
  ASSERT_EQ(info.state(), proto::JOB_FINISHED) << info.error();
  EXPECT_EQ(info.restarts(), 0) << "waiting for workers used restart attempts";
  EXPECT_EQ(info.attempt(), attempt_before + 1);
  EXPECT_EQ(info.restored_checkpoint_id(), latest);
  EXPECT_EQ(info.name(), "outage_as_planned");
  CheckExactlyOnce({out}, ExpectedFor(kRecords, kKeys));
  EXPECT_EQ(ReadRecord(job).plan().SerializeAsString(), record.plan().SerializeAsString());
}

// A record written before plans were stored has the job's YAML only, and a record written by a
// newer coordinator may hold a plan of a newer format: the restarted coordinator plans both
// again from their YAML, resumes them from their latest checkpoints exactly once, and stores
// its plans.
TEST_F(CoordinatorRestartTest, RecordsWithoutAKnownPlanArePlannedAgainAndResume) {
  StartCluster(2, 2, 1500);
  constexpr int64_t kRecords = 300'000;
  const std::string outs[2] = {dir_ + "/no_plan", dir_ + "/newer_plan"};
  const std::string jobs[2] = {Submit(CountingJob(outs[0], kRecords, 100'000, Named("no_plan"))),
                               Submit(CountingJob(outs[1], kRecords, 100'000, Named("newer_plan")))};
  for (const std::string& job : jobs) ASSERT_GT(WaitForCheckpoint(job, 1), 0);
  ASSERT_OK(cluster_->KillCoordinator());
  int64_t latest[2];
  for (int i = 0; i < 2; ++i) {
    proto::JobRecord record = ReadRecord(jobs[i]);
    latest[i] = CheckpointIdOf(record.latest_metadata());
    ASSERT_GT(latest[i], 0) << record.latest_metadata();
    ASSERT_TRUE(record.has_plan());
    if (i == 0) {
      record.clear_plan();
    } else {
      // Renamed too: the name the job shows tells which plan ran.
      record.mutable_plan()->set_format_version(record.plan().format_version() + 1);
      record.mutable_plan()->set_name("from_the_newer_plan");
    }
    WriteRecord(jobs[i], record);
  }
  ASSERT_OK(cluster_->RestartCoordinator());
  for (int i = 0; i < 2; ++i) {
    SCOPED_TRACE(jobs[i]);
    proto::JobInfo info = WaitForEnd(jobs[i], std::chrono::seconds(120));
    ASSERT_EQ(info.state(), proto::JOB_FINISHED) << info.error();
    EXPECT_EQ(info.name(), i == 0 ? "no_plan" : "newer_plan");
    EXPECT_EQ(info.restored_checkpoint_id(), latest[i]);
    CheckExactlyOnce({outs[i]}, ExpectedFor(kRecords, kKeys));
    const proto::JobRecord after = ReadRecord(jobs[i]);
    EXPECT_EQ(after.plan().operators_size(), 4);
    EXPECT_EQ(after.plan().name(), info.name());
  }
}

// Issue 8.3: a job that lost a worker waits for slots (shown in status), is not failed for
// lack of them while it waits, and resumes when a replacement registers; a job whose wait
// exceeds restart.slot_wait_timeout fails saying so.
TEST_F(CoordinatorRestartTest, RestartWaitsForSlotsWithoutUsingAttempts) {
  StartCluster(2, 2, 1500);
  constexpr int64_t kRecords = 400'000;
  const std::string out = dir_ + "/out";
  // Needs all 4 slots: 2 workers x 2.
  std::string yaml = CountingJob(out, kRecords, 50'000,
                                 Named("needs-four", "{strategy: fixed_delay, attempts: 1, delay: 100ms}"));
  yaml.replace(yaml.find("parallelism: 2"), 14, "parallelism: 4");
  std::string job = Submit(yaml);
  ASSERT_GT(WaitForCheckpoint(job), 0);
  ASSERT_OK(cluster_->KillWorker(1, SIGKILL));
  proto::JobInfo waiting = WaitUntil(job, [](const proto::JobInfo& i) { return i.waiting_for_slots() > 0; },
                                     std::chrono::seconds(20));
  ASSERT_EQ(waiting.state(), proto::JOB_RESTARTING);
  EXPECT_EQ(waiting.waiting_for_slots(), 4);
  std::string status;
  ASSERT_EQ(Cli("status " + job, &status), 0) << status;
  EXPECT_THAT(status, HasSubstr("waiting for 4 slots"));
  // For longer than the restart delay times the one attempt, it keeps waiting: never FAILED.
  const auto watch_end = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (std::chrono::steady_clock::now() < watch_end) {
    ASSERT_EQ(client_->GetJob(job)->state(), proto::JOB_RESTARTING);
    // Not synchronisation: the test watches, for a fixed window, that the job does not fail;
    // this spaces the looks.
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_OK(cluster_->RestartWorker(1, 2));
  proto::JobInfo info = WaitForEnd(job, std::chrono::seconds(120));
  ASSERT_EQ(info.state(), proto::JOB_FINISHED) << info.error();
  EXPECT_EQ(info.restarts(), 1);
  CheckExactlyOnce({out}, ExpectedFor(kRecords, kKeys));

  // Now nobody comes back.
  const std::string out2 = dir_ + "/out2";
  std::string yaml2 = CountingJob(out2, 0, 10'000,
                                  Named("gives-up", "{strategy: fixed_delay, attempts: 5, delay: 100ms, slot_wait_timeout: 1s}"));
  yaml2.replace(yaml2.find("parallelism: 2"), 14, "parallelism: 4");
  std::string job2 = Submit(yaml2);
  ASSERT_GT(WaitForCheckpoint(job2), 0);
  ASSERT_OK(cluster_->KillWorker(0, SIGKILL));
  proto::JobInfo failed = WaitForEnd(job2, std::chrono::seconds(30));
  ASSERT_EQ(failed.state(), proto::JOB_FAILED);
  EXPECT_THAT(failed.error(), HasSubstr("(restart.slot_wait_timeout) for 4 slot(s); the cluster has 2 free"));
}

// Issue 8.4: an idle worker killed with kill -9 is declared lost as soon as its port refuses
// connections, long before the (here 30 s) heartbeat timeout.
TEST_F(CoordinatorRestartTest, KilledIdleWorkerIsLostBeforeTheHeartbeatTimeout) {
  StartCluster(2, 1, 30000);
  ASSERT_OK(cluster_->KillWorker(1, SIGKILL));
  EXPECT_TRUE(WaitFor([&] {
    auto w = client_->ListWorkers();
    return w.ok() && w->workers_size() == 1;
  }, std::chrono::seconds(15), "the killed worker to be dropped from the list"));
  EXPECT_THAT(ReadAll(dir_ + "/cluster/coordinator.log"), HasSubstr("its address refuses connections"));
}

// Issue 8.2: a chain of jobs restored from each other's savepoints at p=2, 3 and 1 into one
// output path, and the same job file run twice over one path: nothing committed is replaced.
TEST_F(CoordinatorRestartTest, SavepointChainIntoOnePathIsExactlyOnce) {
  StartCluster(2, 3, 3000);
  constexpr int64_t kRecords = 300'000;
  const std::string out = dir_ + "/out";
  const std::string file = WriteJobFile("job.yaml", CountingJob(out, kRecords, 60'000, Named("chain")));
  std::string first = Run(file);
  ASSERT_GT(WaitForCheckpoint(first), 0);
  std::string sp1 = StopWithSavepoint(first);
  ASSERT_EQ(WaitForEnd(first, std::chrono::seconds(10)).state(), proto::JOB_CANCELLED);

  std::string second = Run(file, "--from-savepoint " + sp1 + " -p 3");
  ASSERT_GT(WaitForCheckpoint(second), 0);
  std::string sp2 = StopWithSavepoint(second);
  ASSERT_EQ(WaitForEnd(second, std::chrono::seconds(10)).state(), proto::JOB_CANCELLED);

  std::string third = Run(file, "--from-savepoint " + sp2 + " -p 1 --wait");
  ASSERT_EQ(client_->GetJob(third)->state(), proto::JOB_FINISHED);
  std::vector<std::string> all = ReadCommittedLines({out});
  ExpectExactlyOnce(all, ExpectedFor(kRecords, kKeys));
  EXPECT_THAT(Uncommitted(out), ::testing::IsEmpty());

  // The same file again over the same path, from scratch: a second full copy next to the
  // first, every update exactly twice.
  std::string again = Run(file, "--wait");
  ASSERT_EQ(client_->GetJob(again)->state(), proto::JOB_FINISHED);
  std::vector<std::string> mine, others;
  for (const auto& e : fs::directory_iterator(out)) {
    if (e.path().extension() != ".jsonl") continue;
    std::ifstream in(e.path());
    std::string line;
    auto& into = absl::StartsWith(e.path().filename().string(), "part-" + again + "-") ? mine : others;
    while (std::getline(in, line)) into.push_back(line);
  }
  ExpectExactlyOnce(mine, ExpectedFor(kRecords, kKeys));
  ExpectExactlyOnce(others, ExpectedFor(kRecords, kKeys));
}

// `sluice rescale`: stop with a savepoint and run the same job from it at another parallelism,
// in one command; the output (one path for both runs) is exactly once.
TEST_F(CoordinatorRestartTest, RescaleCommandRestoresAtTheNewParallelism) {
  StartCluster(2, 3, 3000);
  constexpr int64_t kRecords = 300'000;
  const std::string out = dir_ + "/out";
  std::string job = Run(WriteJobFile("job.yaml", CountingJob(out, kRecords, 60'000, Named("rescaled"))));
  ASSERT_GT(WaitForCheckpoint(job), 0);
  std::string text;
  ASSERT_EQ(Cli(absl::StrCat("rescale ", job, " -p 3 --dir ", dir_, "/savepoints"), &text), 0) << text;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(text, m, std::regex("restored as (job-[0-9a-f]{8}) at parallelism 3"))) << text;
  const std::string rescaled = m.str(1);
  EXPECT_THAT(text, HasSubstr("job " + job + " stopped with savepoint " + dir_ + "/savepoints/"));
  EXPECT_EQ(WaitForEnd(job, std::chrono::seconds(10)).state(), proto::JOB_CANCELLED);
  proto::JobInfo info = WaitForEnd(rescaled, std::chrono::seconds(60));
  ASSERT_EQ(info.state(), proto::JOB_FINISHED) << info.error();
  for (const auto& v : info.vertices()) EXPECT_EQ(v.parallelism(), 3) << v.name();
  CheckExactlyOnce({out}, ExpectedFor(kRecords, kKeys));
  // A rescale of a job that is not running says so and changes nothing.
  EXPECT_EQ(Cli(absl::StrCat("rescale ", job, " -p 2"), &text), 1);
  EXPECT_THAT(text, HasSubstr("is CANCELLED, not RUNNING"));
}

// As a user in a shell: a windowless counting job on a full cluster (2 workers x 2 slots, the
// job at parallelism 2 holding 2), rescaled 2 -> 3 with `sluice rescale` (the new attempt needs
// the slots the stopped one gives back) and 3 -> 1 with `sluice stop --savepoint` and `sluice run
// --from-savepoint`, the savepoint paths relative to the user's working directory (not the
// coordinator's). The output, one path for the three runs, is exactly once.
TEST_F(CoordinatorRestartTest, RescaleTwiceOnAFullClusterWithRelativeSavepointPaths) {
  StartCluster(2, 2, 3000);
  constexpr int64_t kRecords = 300'000;
  const std::string out = dir_ + "/out";
  const std::string cwd = dir_ + "/user";
  fs::create_directories(cwd);
  auto cli_in_cwd = [&](const std::string& args, std::string* text) {
    text->clear();
    return RunCommand(absl::StrCat("cd ", cwd, " && ", SLUICE_TEST_BIN_DIR, "/sluice --coordinator ",
                                   cluster_->coordinator_address(), " ", args),
                      text);
  };
  const std::string file = WriteJobFile("job.yaml", CountingJob(out, kRecords, 40'000, Named("rescaled-twice")));
  std::string job = Run(file);
  ASSERT_GT(WaitForCheckpoint(job), 0);
  std::string text;
  ASSERT_EQ(cli_in_cwd(absl::StrCat("rescale ", job, " -p 3 --dir sp"), &text), 0) << text;
  EXPECT_THAT(text, HasSubstr("job " + job + " stopped with savepoint " + cwd + "/sp/savepoint-"));
  std::smatch m;
  ASSERT_TRUE(std::regex_search(text, m, std::regex("restored as (job-[0-9a-f]{8}) at parallelism 3"))) << text;
  const std::string second = m.str(1);
  ASSERT_GT(WaitForCheckpoint(second), 0);

  ASSERT_EQ(cli_in_cwd(absl::StrCat("stop ", second, " --savepoint --dir sp"), &text), 0) << text;
  const std::string savepoint(absl::StripAsciiWhitespace(text));
  ASSERT_TRUE(absl::StartsWith(savepoint, cwd + "/sp/savepoint-" + second)) << text;
  ASSERT_TRUE(fs::exists(savepoint + "/_metadata")) << savepoint;
  const proto::JobInfo stopped = WaitForEnd(second, std::chrono::seconds(10));
  ASSERT_EQ(stopped.state(), proto::JOB_CANCELLED);
  ASSERT_LT(FindOperator(stopped, "gen")->records_out(), static_cast<uint64_t>(kRecords))
      << "the second run read everything: the third restores nothing";
  const std::string relative = fs::path(savepoint).lexically_relative(cwd).string();
  ASSERT_EQ(cli_in_cwd(absl::StrCat("run ", file, " -p 1 --from-savepoint ", relative), &text), 0) << text;
  ASSERT_TRUE(std::regex_search(text, m, std::regex("job-[0-9a-f]{8}"))) << text;
  const proto::JobInfo info = WaitForEnd(m.str(0), std::chrono::seconds(60));
  ASSERT_EQ(info.state(), proto::JOB_FINISHED) << info.error();
  for (const auto& v : info.vertices()) EXPECT_EQ(v.parallelism(), 1) << v.name();
  CheckExactlyOnce({out}, ExpectedFor(kRecords, kKeys));
}

}  // namespace
}  // namespace sluice::testing
