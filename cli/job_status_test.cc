#include "cli/job_status.h"

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sluice::cli {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

proto::JobInfo JobWithFailure(proto::JobState state) {
  proto::JobInfo j;
  j.set_job_id("job-1");
  j.set_name("clicks");
  j.set_state(state);
  j.set_submit_time_ms(1000);
  j.set_error("cannot restart: job 'clicks' needs 2 slot(s) but the cluster has 0 free (0 worker(s))");
  return j;
}

TEST(JobStatusTest, AFailureAJobRecoveredFromIsShownAsHistory) {
  proto::JobInfo finished = JobWithFailure(proto::JOB_FINISHED);
  finished.set_end_time_ms(3500);
  std::string text = FormatJobStatus(finished, /*now_ms=*/10000);
  EXPECT_THAT(text, HasSubstr("Job job-1 (clicks): FINISHED, 2.5s\n"
                              "  earlier failure (recovered): cannot restart: job 'clicks' needs 2 "
                              "slot(s) but the cluster has 0 free (0 worker(s))\n"));
  EXPECT_THAT(text, Not(HasSubstr("last failure")));

  EXPECT_THAT(FormatJobStatus(JobWithFailure(proto::JOB_RUNNING), 10000),
              HasSubstr("\n  earlier failure (recovered): cannot restart: "));
  EXPECT_THAT(FormatJobStatus(JobWithFailure(proto::JOB_CANCELLED), 10000),
              HasSubstr("\n  earlier failure: cannot restart: "));
}

TEST(JobStatusTest, AFailureThatIsCurrentIsShownAsSuch) {
  EXPECT_THAT(FormatJobStatus(JobWithFailure(proto::JOB_FAILED), 10000),
              HasSubstr("Job job-1 (clicks): FAILED, 9.0s\n  error: cannot restart: "));
  EXPECT_THAT(FormatJobStatus(JobWithFailure(proto::JOB_RESTARTING), 10000),
              HasSubstr("\n  last failure: cannot restart: "));
}

TEST(JobStatusTest, TheFailuresStatusCodeIsShown) {
  proto::JobInfo j = JobWithFailure(proto::JOB_FAILED);
  j.set_error("cannot decode operator state (job job-1, operator 'gen' (type datagen), subtask 1)");
  j.set_error_code(static_cast<int>(absl::StatusCode::kDataLoss));
  EXPECT_THAT(FormatJobStatus(j, 10000),
              HasSubstr("Job job-1 (clicks): FAILED (DATA_LOSS), 9.0s\n"
                        "  error (DATA_LOSS): cannot decode operator state (job job-1, operator 'gen'"));
  j.set_state(proto::JOB_RESTARTING);
  EXPECT_THAT(FormatJobStatus(j, 10000),
              HasSubstr("Job job-1 (clicks): RESTARTING, 9.0s\n  last failure (DATA_LOSS): cannot decode"));
  j.set_error_code(0);  // a failure without a code (a lost worker), or from an older worker
  EXPECT_THAT(FormatJobStatus(j, 10000), HasSubstr("\n  last failure: cannot decode"));
  EXPECT_EQ(FailureCode(j), "");
}

TEST(JobStatusTest, AStopWithSavepointIsNoFailure) {
  proto::JobInfo j = JobWithFailure(proto::JOB_CANCELLED);
  j.clear_error();
  j.set_stopped_with_savepoint("/tmp/sp/savepoint-job-1-11");
  std::string text = FormatJobStatus(j, 10000);
  EXPECT_THAT(text, HasSubstr("\n  stopped with savepoint /tmp/sp/savepoint-job-1-11\n"));
  EXPECT_THAT(text, Not(HasSubstr("failure")));
}

TEST(JobStatusTest, WaitingForSlotsAndTheRestoredCheckpointAreShown) {
  proto::JobInfo j = JobWithFailure(proto::JOB_RESTARTING);
  j.set_waiting_for_slots(4);
  j.set_waiting_since_ms(7500);
  j.set_restored_checkpoint_id(17);
  std::string text = FormatJobStatus(j, 10000);
  EXPECT_THAT(text, HasSubstr("\n  waiting for 4 slots (for 2.5s; restart.slot_wait_timeout bounds it)\n"));
  EXPECT_THAT(text, HasSubstr("\n  this attempt restored checkpoint 17\n"));
}

TEST(JobStatusTest, CheckpointsShowKindAlignmentAndInFlightBytes) {
  proto::JobInfo j = JobWithFailure(proto::JOB_RUNNING);
  j.clear_error();
  proto::CheckpointInfo* a = j.add_checkpoints();
  a->set_checkpoint_id(3);
  a->set_status("COMPLETED");
  a->set_duration_ms(2100);
  a->set_alignment_ms(1460);
  a->set_unaligned(true);
  a->set_persisted_bytes(448695);
  proto::CheckpointInfo* b = j.add_checkpoints();
  b->set_checkpoint_id(4);
  b->set_status("COMPLETED");
  b->set_duration_ms(40);
  b->set_alignment_ms(2);
  std::string text = FormatJobStatus(j, 10000);
  EXPECT_THAT(text, HasSubstr("  CHKPT  STATUS        DURATION         SIZE     UPLOADED KIND       "
                              "ALIGNMENT  IN-FLIGHT\n"));
  EXPECT_THAT(text, HasSubstr("  3      COMPLETED       2100ms            0            0 unaligned     "
                              "1460ms     448695\n"));
  EXPECT_THAT(text, HasSubstr("  4      COMPLETED         40ms            0            0 aligned          "
                              "2ms          0\n"));
}

TEST(JobStatusTest, NoFailureNoLine) {
  proto::JobInfo j = JobWithFailure(proto::JOB_RUNNING);
  j.clear_error();
  EXPECT_THAT(FormatJobStatus(j, 10000), Not(HasSubstr("failure")));
}

TEST(JobStatusTest, LateRecordsDroppedAreShownUnderTheirOperator) {
  proto::JobInfo j = JobWithFailure(proto::JOB_RUNNING);
  j.clear_error();
  auto* op = j.add_vertices()->add_operators();
  op->set_id("per_minute");
  op->set_type("window");
  op->set_parallelism(2);
  EXPECT_THAT(FormatJobStatus(j, 10000), Not(HasSubstr("late records")));
  op->set_late_records_dropped(17);
  EXPECT_THAT(FormatJobStatus(j, 10000), HasSubstr("\n  per_minute "));
  EXPECT_THAT(FormatJobStatus(j, 10000), HasSubstr(" 17 late records dropped\n"));
  op->set_late_records_dropped(1);
  op->set_records_skipped(1);
  EXPECT_THAT(FormatJobStatus(j, 10000), HasSubstr(" 1 late record dropped\n"));
  EXPECT_THAT(FormatJobStatus(j, 10000), HasSubstr(" 1 bad record skipped\n"));
}

TEST(JobStatusTest, KeyedStateShowsSizeAndCacheHitRatePerSubtask) {
  proto::JobInfo j = JobWithFailure(proto::JOB_RUNNING);
  j.clear_error();
  proto::OperatorInfo* o = j.add_vertices()->add_operators();
  o->set_id("counts");
  o->set_type("aggregate");
  o->set_parallelism(2);
  o->set_has_state(true);
  o->set_state_cache_hits(750);
  o->set_state_cache_misses(250);
  o->set_state_size_bytes(3 << 20);
  for (int s = 0; s < 2; ++s) {
    proto::SubtaskStateStats* ss = o->add_subtask_states();
    ss->set_subtask(s);
    ss->set_state_cache_hits(s == 0 ? 500 : 250);
    ss->set_state_cache_misses(s == 0 ? 0 : 250);
    ss->set_state_size_bytes(s == 0 ? 1 << 20 : 2 << 20);
  }
  std::string text = FormatJobStatus(j, 10000);
  EXPECT_THAT(text, HasSubstr("state 3.0 MiB, cache hit rate 75.0% (750 hits, 250 misses)\n"));
  EXPECT_THAT(text, HasSubstr("per subtask: #0 1.0 MiB 100.0%, #1 2.0 MiB 50.0%\n"));
  o->set_has_state(false);
  EXPECT_THAT(FormatJobStatus(j, 10000), Not(HasSubstr("cache hit rate")));
  EXPECT_EQ(FormatHitRate(0, 0), "-");
  EXPECT_EQ(FormatBytes(512), "512 B");
  EXPECT_EQ(FormatBytes(uint64_t{3} << 30), "3.00 GiB");
}

}  // namespace
}  // namespace sluice::cli
