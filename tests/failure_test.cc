// kill -9 of a worker during a job: the coordinator fails the job naming the lost worker
// within the heartbeat timeout, and the surviving worker keeps serving.

#include "tests/cluster_fixture.h"

namespace sluice::testing {
namespace {

using ::testing::HasSubstr;

class FailureTest : public ClusterTest {};

TEST_F(FailureTest, KilledWorkerFailsJobNamingTheWorker) {
  constexpr int64_t kTimeoutMs = 2000;
  StartCluster(2, 1, kTimeoutMs);
  std::string job = Submit(R"(
name: victim
parallelism: 2
operators:
  - id: gen
    type: datagen
    rate: 20000
    fields: [{name: k, type: int64, expr: "seq % 7"}]
  - id: by_k
    type: key_by
    key: [k]
  - id: counts
    type: aggregate
    aggregates: [{fn: count, as: n}]
  - id: sink
    type: blackhole
)");
  proto::JobInfo info = WaitForState(job, proto::JOB_RUNNING, std::chrono::seconds(10));
  ASSERT_EQ(info.state(), proto::JOB_RUNNING);
  // Records flow through both subtasks' channels before the kill.
  ASSERT_TRUE(WaitFor([&] {
    auto j = client_->GetJob(job);
    return j.ok() && FindOperator(*j, "sink")->records_in() > 0;
  }, std::chrono::seconds(10), "records at the sink"));

  // Which worker id belongs to worker process 1?
  auto workers = client_->ListWorkers();
  ASSERT_OK(workers);
  ASSERT_EQ(workers->workers_size(), 2);
  const std::string victim_address = workers->workers(1).data_address();
  const std::string victim = workers->workers(1).worker_id();
  int victim_index = -1;
  for (int i = 0; i < 2; ++i) {
    std::string log = ReadAll(absl::StrCat(dir_, "/cluster/worker-", i, ".log"));
    if (log.find("serving data plane on " + victim_address) != std::string::npos) victim_index = i;
  }
  ASSERT_GE(victim_index, 0);

  auto killed_at = std::chrono::steady_clock::now();
  ASSERT_OK(cluster_->KillWorker(victim_index, SIGKILL));

  // The job fails at once (its channels break) and, within the heartbeat timeout, the
  // coordinator names the lost worker as the cause.
  std::string error;
  ASSERT_TRUE(WaitFor([&] {
    auto j = client_->GetJob(job);
    if (!j.ok() || j->state() != proto::JOB_FAILED || j->error().find("lost") == std::string::npos) {
      return false;
    }
    error = j->error();
    return true;
  }, std::chrono::milliseconds(kTimeoutMs + 3000) -
         std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - killed_at),
                      "the job to fail naming a lost worker"))
      << "job error: " << client_->GetJob(job)->error();
  EXPECT_THAT(error, HasSubstr(absl::StrCat("worker ", victim, " (", victim_address, ") lost")));

  // The other worker keeps serving: it is still registered, its slot comes free once its task
  // of the failed job has ended (the job can show FAILED before), and it runs a new job to the
  // end.
  proto::ListWorkersResponse after;
  ASSERT_TRUE(WaitFor([&] {
    auto w = client_->ListWorkers();
    if (w.ok()) after = *w;
    return w.ok() && after.workers_size() == 1 && after.workers(0).slots_used() == 0;
  }, std::chrono::seconds(10), "the surviving worker alone, with its slot free"))
      << after.DebugString();
  EXPECT_NE(after.workers(0).worker_id(), victim);
  std::string job2 = Submit(R"(
name: after
operators:
  - {id: gen, type: datagen, count: 5000, fields: [{name: k, type: int64, expr: "seq % 3"}]}
  - {id: sink, type: blackhole}
)");
  proto::JobInfo info2 = WaitForEnd(job2, std::chrono::seconds(30));
  EXPECT_EQ(info2.state(), proto::JOB_FINISHED) << info2.error();
  EXPECT_EQ(FindOperator(info2, "sink")->records_in(), 5000u);

  // A job that needs more slots than remain is refused with a clear message.
  auto r = client_->Submit("name: big\nparallelism: 2\noperators:\n"
                           "  - {id: gen, type: datagen, count: 1, fields: [{name: k, type: int64, expr: \"seq\"}]}\n"
                           "  - {id: sink, type: blackhole}\n",
                           "big.yaml", 0);
  EXPECT_THAT(r, StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("needs 2 slot(s)")));
}

TEST_F(FailureTest, CheckpointsThatKeepTimingOutFailTheJobOver) {
  StartCluster(1, 2);
  // A slow sink behind a shuffle: the buffers fill up and barriers wait behind them, so every
  // checkpoint times out. With restart strategy none, exceeding the tolerance fails the job.
  std::string job = Submit(R"(
name: stuck-checkpoints
checkpoint: {interval: 100ms, timeout: 300ms, tolerable_failures: 1}
restart: {strategy: none}
operators:
  - {id: gen, type: datagen, fields: [{name: k, type: int64, expr: "seq % 7"}]}
  - {id: by_k, type: key_by, key: [k]}
  - {id: sink, type: blackhole, max_rate: 20}
)");
  proto::JobInfo info = WaitForEnd(job, std::chrono::seconds(30));
  ASSERT_EQ(info.state(), proto::JOB_FAILED) << info.error();
  EXPECT_THAT(info.error(), HasSubstr("timed out after 300 ms; 2 consecutive checkpoint failure(s) exceed "
                                      "checkpoint.tolerable_failures (1)"));
}

}  // namespace
}  // namespace sluice::testing
