// Operator state that cannot be decoded (issue 13): a savepoint whose operator state was
// tampered with after it was written fails the restored job with DATA_LOSS naming the job, the
// operator (id and type), the subtask and the checkpoint (the DATA_LOSS code reaches the
// coordinator's job info and `sluice status`); the job restarts only as its restart
// strategy allows (as Flink counts a failed restore), `sluice status` shows the error, and
// nothing is committed twice.

#include <algorithm>
#include <chrono>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/checkpoint.pb.h"
#include "tests/cluster_fixture.h"
#include "tests/exactly_once_check.h"

namespace sluice::testing {
namespace {

using ::testing::HasSubstr;

std::string CountingJob(const std::string& out) {
  return absl::StrCat(R"y(name: counting
parallelism: 2
checkpoint: {interval: 200ms, timeout: 20s}
restart: {strategy: fixed_delay, attempts: 2, delay: 100ms}
operators:
  - id: gen
    type: datagen
    rate: 4000
    fields:
      - {name: k, type: int64, expr: "seq % 10"}
      - {name: seq, type: int64, expr: seq}
  - {id: by_k, type: key_by, key: k}
  - {id: counts, type: aggregate, aggregates: [{fn: count, as: n}]}
  - {id: out, type: file, path: )y", out, R"y(}
)y");
}

class StateFormatTest : public ClusterTest {};

TEST_F(StateFormatTest, TamperedSavepointFailsTheRestoreWithDataLossNamed) {
  StartCluster(2, 2, 3000);
  const std::string out = dir_ + "/out";
  const std::string job = Submit(CountingJob(out));
  WaitForState(job, proto::JOB_RUNNING, std::chrono::seconds(10));
  ASSERT_GT(LatestCompletedCheckpoint(WaitForCheckpoint(job, 0, std::chrono::seconds(20))), 0);
  auto savepoint = client_->Savepoint(job, dir_ + "/savepoints", /*stop=*/true);
  ASSERT_OK(savepoint);
  ASSERT_EQ(WaitForEnd(job, std::chrono::seconds(20)).state(), proto::JOB_CANCELLED);
  const std::vector<std::string> committed = ReadCommittedLines({out});
  ASSERT_FALSE(committed.empty());

  // Give subtask 1's datagen split a format version this build does not know.
  const std::string metadata_path = *savepoint + "/_metadata";
  proto::CheckpointMetadata md;
  ASSERT_TRUE(md.ParseFromString(ReadAll(metadata_path)));
  bool tampered = false;
  for (auto& st : *md.mutable_subtasks()) {
    for (auto& h : *st.mutable_operator_state()) {
      if (h.operator_id() != "gen" || st.subtask() != 1 || h.entries_size() == 0) continue;
      ASSERT_EQ(h.entries(0)[0], 1) << "format version 1";
      (*h.mutable_entries(0))[0] = 7;
      tampered = true;
    }
  }
  ASSERT_TRUE(tampered);
  std::ofstream(metadata_path, std::ios::binary | std::ios::trunc) << md.SerializeAsString();

  auto restored = client_->SubmitRestoring(CountingJob(out), "job.yaml", 0, *savepoint, false);
  ASSERT_OK(restored);
  const std::string again = restored->job_id();
  proto::JobInfo info = WaitForEnd(again, std::chrono::seconds(60));
  ASSERT_EQ(info.state(), proto::JOB_FAILED) << info.error();
  EXPECT_EQ(info.restarts(), 2) << "a failed restore counts against the restart strategy, which ends it";
  const std::string named = absl::StrCat("cannot decode operator state (job ", again,
                                         ", operator 'gen' (type datagen), subtask 1, restored from checkpoint ",
                                         md.checkpoint_id(), "): datagen split has format version 7, newer than "
                                         "this build reads (up to 1)");
  EXPECT_THAT(info.error(), HasSubstr(named));
  // The code crossed from the worker as a fact, not only in the text.
  EXPECT_EQ(info.error_code(), static_cast<int>(absl::StatusCode::kDataLoss)) << info.error();

  std::string status;
  EXPECT_EQ(RunCommand(absl::StrCat(SLUICE_TEST_BIN_DIR, "/sluice --coordinator ", cluster_->coordinator_address(),
                                    " status ", again),
                       &status),
            0);
  EXPECT_THAT(status, HasSubstr(named)) << status;
  EXPECT_THAT(status, HasSubstr(absl::StrCat("Job ", again, " (counting): FAILED (DATA_LOSS), "))) << status;
  EXPECT_THAT(status, HasSubstr("\n  error (DATA_LOSS): task ")) << status;

  // Nothing was committed by the failed attempts, and nothing twice.
  const std::vector<std::string> after = ReadCommittedLines({out});
  EXPECT_EQ(after.size(), committed.size());
  std::map<std::string, int> seen;
  for (const std::string& line : after) EXPECT_EQ(++seen[line], 1) << line;
}

}  // namespace
}  // namespace sluice::testing
