#include "coordinator/checkpoint_coordinator.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "checkpoint/checkpoint_storage.h"
#include "common/status_matchers.h"
#include "common/testing/fault_injecting_filesystem.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sluice::coordinator {
namespace {

using ::sluice::testing::FaultInjectingFileSystem;
using ::sluice::testing::FsOp;
using ::sluice::testing::StatusIs;
using ::testing::HasSubstr;

constexpr int64_t kMs = 1'000'000;

// One job of two vertices ("src", "sink") of parallelism 2: four tasks, operators "src" and
// "sink". Interval 1 s, timeout 500 ms.
class CheckpointCoordinatorTest : public ::testing::Test {
 protected:
  void SetUp() override { Make(/*tolerable_failures=*/0); }
  void Make(int tolerable_failures, int retain = 3) {
    auto spec = std::make_shared<plan::JobSpec>();
    spec->name = "t";
    spec->max_parallelism = 128;
    spec->checkpoint.interval_ms = 1000;
    spec->checkpoint.timeout_ms = 500;
    spec->checkpoint.tolerable_failures = tolerable_failures;
    spec->checkpoint.retain = retain;
    spec->operators.resize(2);
    spec->operators[0].id = "src";
    spec->operators[1].id = "sink";
    auto graph = std::make_shared<plan::JobGraph>();
    graph->vertices.resize(2);
    for (int v = 0; v < 2; ++v) {
      graph->vertices[v].id = v;
      graph->vertices[v].parallelism = 2;
      graph->vertices[v].name = spec->operators[v].id;
    }
    cc_ = std::make_unique<CheckpointCoordinator>("job-1", "/ck/job-1", spec, graph, &clock_);
  }
  static proto::CheckpointAck Ack(int64_t id, int vertex, int subtask) {
    proto::CheckpointAck ack;
    ack.mutable_task()->set_job_id("job-1");
    ack.mutable_task()->set_vertex(vertex);
    ack.mutable_task()->set_subtask(subtask);
    ack.set_checkpoint_id(id);
    ack.mutable_state()->set_vertex(vertex);
    ack.mutable_state()->set_subtask(subtask);
    auto* op = ack.mutable_state()->add_operator_state();
    op->set_operator_id(vertex == 0 ? "src" : "sink");
    op->add_entries(absl::StrCat("state of ", vertex, "-", subtask));  // 12 bytes
    return ack;
  }
  // Every task acks `id`; returns the actions of the last ack.
  CheckpointActions AckAll(int64_t id) {
    CheckpointActions out;
    for (int v = 0; v < 2; ++v) {
      for (int s = 0; s < 2; ++s) {
        out = CheckpointActions();
        cc_->Acknowledge(Ack(id, v, s), 4, &out);
      }
    }
    return out;
  }
  CheckpointActions Tick(bool all_input_ended = false) {
    CheckpointActions out;
    cc_->Tick(all_input_ended, &out);
    return out;
  }
  std::vector<proto::CheckpointInfo> History() const {
    proto::JobInfo info;
    cc_->AddTo(&info);
    return {info.checkpoints().begin(), info.checkpoints().end()};
  }
  // Triggers the next checkpoint (the interval has passed) and returns its id.
  int64_t TriggerNext() {
    clock_.AdvanceNanos(1000 * kMs);
    CheckpointActions out = Tick();
    EXPECT_TRUE(out.trigger.has_value());
    return out.trigger ? out.trigger->id : -1;
  }
  // Completes checkpoint `id` through a successful write: returns the commit.
  CheckpointCommit Complete(int64_t id) {
    CheckpointActions out = AckAll(id);
    EXPECT_NE(out.write, nullptr);
    CheckpointWriteResult written = CheckpointCoordinator::Write(storage_, *out.write);
    CheckpointActions after;
    std::optional<CheckpointCommit> c = cc_->OnWritten(*out.write, written, true, true, true, &after);
    EXPECT_TRUE(c.has_value());
    return c ? *c : CheckpointCommit();
  }

  FakeClock clock_;
  FaultInjectingFileSystem fs_;
  checkpoint::CheckpointStorage storage_{&fs_};
  std::unique_ptr<CheckpointCoordinator> cc_;
};

TEST_F(CheckpointCoordinatorTest, AcksFromEveryTaskCompleteIt) {
  CheckpointActions out = Tick();
  ASSERT_TRUE(out.trigger.has_value());
  EXPECT_EQ(out.trigger->id, 1);
  EXPECT_FALSE(out.trigger->final);
  EXPECT_FALSE(out.trigger->aligned);
  // Three of four acks: still pending; a repeated ack does not count twice.
  for (int i = 0; i < 3; ++i) {
    out = CheckpointActions();
    cc_->Acknowledge(Ack(1, i / 2, i % 2), 4, &out);
    EXPECT_EQ(out.write, nullptr);
  }
  cc_->Acknowledge(Ack(1, 0, 0), 4, &out);
  EXPECT_EQ(out.write, nullptr);
  EXPECT_EQ(History().back().status(), "IN_PROGRESS");
  clock_.AdvanceNanos(20 * kMs);
  cc_->Acknowledge(Ack(1, 1, 1), 4, &out);
  ASSERT_NE(out.write, nullptr);
  const proto::CheckpointMetadata& md = *out.write->metadata;
  EXPECT_EQ(md.job_id(), "job-1");
  EXPECT_EQ(md.checkpoint_id(), 1);
  EXPECT_EQ(md.max_parallelism(), 128);
  EXPECT_EQ(md.subtasks_size(), 4);
  EXPECT_EQ(std::vector<std::string>(md.operator_ids().begin(), md.operator_ids().end()),
            (std::vector<std::string>{"src", "sink"}));
  // The vertex layout, which a restore of in-flight data must match.
  EXPECT_EQ(std::vector<std::string>(md.vertex_names().begin(), md.vertex_names().end()),
            (std::vector<std::string>{"src", "sink"}));
  EXPECT_EQ(md.full_size(), 4 * 12);
  EXPECT_EQ(md.incremental_size(), 4 * 12);
  // While its metadata is written, it shows in progress and nothing else is triggered.
  clock_.AdvanceNanos(5000 * kMs);
  EXPECT_FALSE(Tick().trigger.has_value());
  EXPECT_EQ(History().back().status(), "IN_PROGRESS");

  CheckpointWriteResult written = CheckpointCoordinator::Write(storage_, *out.write);
  ASSERT_OK(written.metadata_path);
  CheckpointActions after;
  std::optional<CheckpointCommit> c = cc_->OnWritten(*out.write, written, true, true, true, &after);
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->path, "/ck/job-1/chk-1");
  EXPECT_EQ(c->keep, std::set<int64_t>{1});
  EXPECT_FALSE(c->stop);
  EXPECT_EQ(cc_->latest_metadata(), "/ck/job-1/chk-1/_metadata");
  EXPECT_EQ(cc_->latest_dir(), "/ck/job-1");
  ASSERT_EQ(History().size(), 1u);
  EXPECT_EQ(History()[0].status(), "COMPLETED");
  EXPECT_EQ(History()[0].duration_ms(), 5020);
  absl::StatusOr<proto::CheckpointMetadata> read = storage_.ReadMetadata(cc_->latest_metadata());
  ASSERT_OK(read);
  EXPECT_EQ(read->subtasks_size(), 4);
}

TEST_F(CheckpointCoordinatorTest, AMissingAckTimesOutAtExactlyTheTimeout) {
  Make(/*tolerable_failures=*/1);
  ASSERT_EQ(Tick().trigger->id, 1);
  CheckpointActions ignored;
  cc_->Acknowledge(Ack(1, 0, 0), 4, &ignored);
  clock_.AdvanceNanos(500 * kMs);
  CheckpointActions out = Tick();
  EXPECT_TRUE(out.discard.empty());
  EXPECT_TRUE(cc_->has_pending());
  clock_.AdvanceNanos(1);
  out = Tick();
  EXPECT_FALSE(cc_->has_pending());
  EXPECT_EQ(out.discard, std::vector<int64_t>{1});
  EXPECT_FALSE(out.fail_job.has_value());  // one failure is tolerated
  EXPECT_EQ(History().back().status(), "ABORTED");
  EXPECT_EQ(History().back().reason(), "timed out after 500 ms");
  EXPECT_EQ(History().back().duration_ms(), 500);
  // The interval (counted from the trigger) has not passed: nothing new yet.
  EXPECT_FALSE(out.trigger.has_value());
}

TEST_F(CheckpointCoordinatorTest, AnAckForAnOlderOrAbortedCheckpointIsIgnored) {
  ASSERT_EQ(Tick().trigger->id, 1);
  clock_.AdvanceNanos(501 * kMs);
  CheckpointActions out = Tick();  // 1 times out
  EXPECT_EQ(out.discard, std::vector<int64_t>{1});
  const int64_t id = TriggerNext();
  ASSERT_EQ(id, 2);
  // Every task's ack of checkpoint 1 arrives late: nothing happens.
  out = AckAll(1);
  EXPECT_EQ(out.write, nullptr);
  EXPECT_TRUE(out.discard.empty());
  EXPECT_TRUE(cc_->has_pending());
  // An ack of a vertex the job does not have is ignored too.
  cc_->Acknowledge(Ack(2, 7, 0), 4, &out);
  EXPECT_EQ(out.write, nullptr);
  EXPECT_NE(AckAll(2).write, nullptr);
}

TEST_F(CheckpointCoordinatorTest, ADeclinedCheckpointAborts) {
  Make(/*tolerable_failures=*/1);
  ASSERT_EQ(Tick().trigger->id, 1);
  proto::CheckpointAck ack = Ack(1, 1, 1);
  ack.set_declined(true);
  ack.set_reason("snapshot failed: disk full");
  CheckpointActions out;
  cc_->Acknowledge(ack, 4, &out);
  EXPECT_FALSE(cc_->has_pending());
  EXPECT_EQ(out.discard, std::vector<int64_t>{1});
  EXPECT_FALSE(out.fail_job.has_value());
  EXPECT_EQ(History().back().reason(), "task sink#1 declined: snapshot failed: disk full");
  EXPECT_EQ(cc_->consecutive_failures(), 1);
  // The other tasks' acks find nothing pending.
  EXPECT_EQ(AckAll(1).write, nullptr);
}

TEST_F(CheckpointCoordinatorTest, ConsecutiveFailuresPastTheToleranceFailTheJobOver) {
  Make(/*tolerable_failures=*/2);
  // 1: timeout; 2: declined; 3: completes (resets the count); 4, 5: time out; 6: metadata
  // cannot be written: the third consecutive failure.
  ASSERT_EQ(Tick().trigger->id, 1);
  clock_.AdvanceNanos(501 * kMs);
  EXPECT_FALSE(Tick().fail_job.has_value());
  ASSERT_EQ(TriggerNext(), 2);
  proto::CheckpointAck declined = Ack(2, 0, 0);
  declined.set_declined(true);
  CheckpointActions out;
  cc_->Acknowledge(declined, 4, &out);
  EXPECT_FALSE(out.fail_job.has_value());
  EXPECT_EQ(cc_->consecutive_failures(), 2);
  ASSERT_EQ(TriggerNext(), 3);
  Complete(3);
  EXPECT_EQ(cc_->consecutive_failures(), 0);
  for (int64_t id : {4, 5}) {
    ASSERT_EQ(TriggerNext(), id);
    clock_.AdvanceNanos(501 * kMs);
    EXPECT_FALSE(Tick().fail_job.has_value());
  }
  ASSERT_EQ(TriggerNext(), 6);
  fs_.SetHook([](FsOp op, const std::string& path) {
    return op == FsOp::kWrite && path.find("_metadata") != std::string::npos
               ? absl::ResourceExhaustedError("No space left on device")
               : absl::OkStatus();
  });
  out = AckAll(6);
  ASSERT_NE(out.write, nullptr);
  CheckpointWriteResult written = CheckpointCoordinator::Write(storage_, *out.write);
  EXPECT_THAT(written.metadata_path, StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("No space")));
  CheckpointActions after;
  EXPECT_FALSE(cc_->OnWritten(*out.write, written, true, true, true, &after).has_value());
  EXPECT_EQ(after.discard, std::vector<int64_t>{6});
  ASSERT_TRUE(after.fail_job.has_value());
  EXPECT_EQ(*after.fail_job,
            "checkpoint 6 aborted: cannot write metadata: No space left on device; 3 consecutive checkpoint "
            "failure(s) exceed checkpoint.tolerable_failures (2)");
  EXPECT_EQ(History().back().reason(), "cannot write metadata: No space left on device");
  EXPECT_EQ(cc_->latest_metadata(), "/ck/job-1/chk-3/_metadata");
  EXPECT_EQ(cc_->consecutive_failures(), 0);
  // A job failed over by a timeout takes no new checkpoint in the same tick.
  Make(/*tolerable_failures=*/0);
  ASSERT_EQ(Tick().trigger->id, 1);
  clock_.AdvanceNanos(2000 * kMs);
  out = Tick();
  ASSERT_TRUE(out.fail_job.has_value());
  EXPECT_EQ(*out.fail_job,
            "checkpoint 1 timed out after 500 ms; 1 consecutive checkpoint failure(s) exceed "
            "checkpoint.tolerable_failures (0)");
  EXPECT_FALSE(out.trigger.has_value());
}

TEST_F(CheckpointCoordinatorTest, TasksAreNotifiedOnlyAfterTheDurableRecord) {
  ASSERT_EQ(Tick().trigger->id, 1);
  CheckpointActions out = AckAll(1);
  ASSERT_NE(out.write, nullptr);
  CheckpointWriteResult written = CheckpointCoordinator::Write(storage_, *out.write);
  CheckpointActions after;
  std::optional<CheckpointCommit> c = cc_->OnWritten(*out.write, written, true, true, true, &after);
  ASSERT_TRUE(c.has_value());
  EXPECT_FALSE(after.notify_complete.has_value());  // the metadata alone commits nothing
  // The record could not be written: nothing is committed (the next checkpoint commits it).
  CheckpointActions failed;
  CheckpointCoordinator::OnRecordWritten(*c, absl::UnavailableError("power lost"), true, &failed);
  EXPECT_FALSE(failed.notify_complete.has_value());
  // The job restarted meanwhile: its new attempt's tasks are not told either.
  CheckpointActions restarted;
  CheckpointCoordinator::OnRecordWritten(*c, absl::OkStatus(), false, &restarted);
  EXPECT_FALSE(restarted.notify_complete.has_value());
  CheckpointActions durable;
  CheckpointCoordinator::OnRecordWritten(*c, absl::OkStatus(), true, &durable);
  ASSERT_TRUE(durable.notify_complete.has_value());
  EXPECT_EQ(durable.notify_complete->id, 1);
  EXPECT_FALSE(durable.notify_complete->final);
}

TEST_F(CheckpointCoordinatorTest, RetentionKeepsTheNewestAndCleanUpDeletesTheRest) {
  Make(/*tolerable_failures=*/0, /*retain=*/2);
  ASSERT_EQ(Tick().trigger->id, 1);
  Complete(1);
  ASSERT_EQ(TriggerNext(), 2);
  Complete(2);
  ASSERT_EQ(TriggerNext(), 3);
  CheckpointCommit c = Complete(3);
  EXPECT_EQ(c.keep, (std::set<int64_t>{2, 3}));
  CheckpointCoordinator::CleanUp(storage_, "/ck/job-1", c);
  EXPECT_FALSE(fs_.Exists("/ck/job-1/chk-1"));
  EXPECT_TRUE(fs_.Exists("/ck/job-1/chk-2/_metadata"));
  EXPECT_TRUE(fs_.Exists("/ck/job-1/chk-3/_metadata"));
}

TEST_F(CheckpointCoordinatorTest, ACheckpointWrittenAfterARestartIsDiscardedAndASavepointStillReported) {
  std::vector<absl::StatusOr<std::string>> replies;
  CheckpointActions out;
  cc_->TriggerSavepoint("/sp", false, [&](absl::StatusOr<std::string> r) { replies.push_back(r); }, &out);
  ASSERT_TRUE(out.trigger.has_value());
  EXPECT_TRUE(out.trigger->aligned);  // savepoints are aligned
  out = AckAll(1);
  ASSERT_NE(out.write, nullptr);
  CheckpointWriteResult written = CheckpointCoordinator::Write(storage_, *out.write);
  ASSERT_OK(written.savepoint_path);
  CheckpointActions after;
  EXPECT_FALSE(cc_->OnWritten(*out.write, written, /*same_attempt=*/false, false, true, &after).has_value());
  EXPECT_EQ(cc_->latest_metadata(), "");
  EXPECT_EQ(after.discard, std::vector<int64_t>{1});
  EXPECT_EQ(History().back().reason(), "the job restarted while its metadata was written");
  ASSERT_EQ(after.replies.size(), 1u);  // answered once, with the copy's path
  after.replies[0].first(after.replies[0].second);
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(*replies[0], "/sp/savepoint-job-1-1");
}

TEST_F(CheckpointCoordinatorTest, ASavepointSupersedesThePendingCheckpointAndStopsTheJob) {
  ASSERT_EQ(Tick().trigger->id, 1);
  CheckpointActions out;
  cc_->TriggerSavepoint("/sp", /*stop_after=*/true, [](absl::StatusOr<std::string>) {}, &out);
  EXPECT_EQ(out.discard, std::vector<int64_t>{1});
  EXPECT_EQ(History().front().reason(), "superseded by a savepoint");
  EXPECT_EQ(cc_->consecutive_failures(), 0);  // not a failure
  ASSERT_TRUE(out.trigger.has_value());
  EXPECT_EQ(out.trigger->id, 2);
  CheckpointCommit c = Complete(2);
  EXPECT_TRUE(c.stop);
  EXPECT_EQ(c.path, "/sp/savepoint-job-1-2");
  // The record saying the job stopped could not be written: the caller hears it did not stop.
  CheckpointActions failed;
  CheckpointCoordinator::OnRecordWritten(c, absl::UnavailableError("disk gone"), true, &failed);
  ASSERT_EQ(failed.replies.size(), 1u);
  EXPECT_THAT(failed.replies[0].second,
              StatusIs(absl::StatusCode::kUnavailable,
                       "savepoint /sp/savepoint-job-1-2 was taken but the job was not stopped: disk gone"));
}

TEST_F(CheckpointCoordinatorTest, OnceAllInputEndedThePendingCheckpointMakesWayForTheFinalOne) {
  ASSERT_EQ(Tick().trigger->id, 1);
  CheckpointActions out = Tick(/*all_input_ended=*/true);
  EXPECT_EQ(out.discard, std::vector<int64_t>{1});
  EXPECT_EQ(History().front().reason(), "all input ended; taking the final checkpoint instead");
  ASSERT_TRUE(out.trigger.has_value());
  EXPECT_EQ(out.trigger->id, 2);
  EXPECT_TRUE(out.trigger->final);
  EXPECT_EQ(cc_->consecutive_failures(), 0);
  EXPECT_FALSE(Tick(true).trigger.has_value());  // the final one is pending
}

TEST_F(CheckpointCoordinatorTest, ARestoredJobContinuesItsIdsAndNothingIsTriggeredBeforeTheInterval) {
  cc_->SetRestorePoint("/ck/job-1/chk-7/_metadata", "/ck/job-1", 9, {6, 7});
  cc_->ResetForAttempt();
  EXPECT_FALSE(Tick().trigger.has_value());
  clock_.AdvanceNanos(1000 * kMs);
  CheckpointActions out = Tick();
  ASSERT_TRUE(out.trigger.has_value());
  EXPECT_EQ(out.trigger->id, 9);
  EXPECT_EQ(Complete(9).keep, (std::set<int64_t>{6, 7, 9}));
}

}  // namespace
}  // namespace sluice::coordinator
