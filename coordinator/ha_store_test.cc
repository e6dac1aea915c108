#include "coordinator/ha_store.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_matchers.h"
#include "common/testing/fault_injecting_filesystem.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sluice::coordinator {
namespace {

using ::sluice::testing::FaultInjectingFileSystem;
using ::sluice::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

proto::JobRecord Record(const std::string& id, int64_t attempt, const std::string& latest) {
  proto::JobRecord r;
  r.set_job_id(id);
  r.set_state(proto::JOB_RUNNING);
  r.set_attempt(attempt);
  r.set_latest_metadata(latest);
  r.mutable_request()->set_spec_yaml(absl::StrCat("name: ", id, "\n"));
  return r;
}

TEST(HaStoreTest, WritesReadsListsAndDeletesRecords) {
  FaultInjectingFileSystem fs;
  HaStore store(&fs, "/ha");
  std::vector<std::string> errors;
  EXPECT_TRUE(store.List(&errors).empty());  // no store yet
  EXPECT_TRUE(errors.empty());
  ASSERT_OK(store.Write(Record("job-b", 1, "")));
  ASSERT_OK(store.Write(Record("job-a", 2, "/ck/job-a/chk-3/_metadata")));
  absl::StatusOr<proto::JobRecord> a = store.Read("job-a");
  ASSERT_OK(a);
  EXPECT_EQ(a->attempt(), 2);
  EXPECT_EQ(a->latest_metadata(), "/ck/job-a/chk-3/_metadata");
  ASSERT_OK(fs.WriteFile("/ha/jobs/job-c.pb.tmp", "interrupted"));  // ignored
  ASSERT_OK(fs.WriteFile("/ha/jobs/job-d.pb", ""));                 // reported
  std::vector<proto::JobRecord> all = store.List(&errors);
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].job_id(), "job-a");
  EXPECT_EQ(all[1].job_id(), "job-b");
  EXPECT_THAT(errors, ElementsAre(HasSubstr("/ha/jobs/job-d.pb")));
  ASSERT_OK(store.Delete("job-a"));
  ASSERT_OK(store.Delete("job-a"));  // missing is fine
  EXPECT_THAT(store.Read("job-a"), StatusIs(absl::StatusCode::kNotFound, HasSubstr("job-a")));
  // A delete is durable once it returns.
  fs.PowerLoss();
  EXPECT_FALSE(fs.Exists(store.RecordPath("job-a")));
  ASSERT_OK(store.Read("job-b"));
}

// A power loss before any step of replacing a record leaves the old record or the new one,
// whole; once Write returned, the new one.
TEST(HaStoreTest, PowerLossDuringAWriteLeavesTheOldOrTheNewRecordNeverATornOne) {
  const proto::JobRecord old_record = Record("job-a", 1, "/ck/job-a/chk-1/_metadata");
  const proto::JobRecord new_record = Record("job-a", 2, "/ck/job-a/chk-2/_metadata");
  int64_t steps = 0;
  {
    FaultInjectingFileSystem fs;
    HaStore store(&fs, "/ha");
    ASSERT_OK(store.Write(old_record));
    const int64_t before = fs.mutations();
    ASSERT_OK(store.Write(new_record));
    steps = fs.mutations() - before;
  }
  ASSERT_GE(steps, 4);
  for (int64_t cut = 0; cut <= steps; ++cut) {
    SCOPED_TRACE(absl::StrCat("power lost after ", cut, " of ", steps, " steps"));
    FaultInjectingFileSystem fs;
    HaStore store(&fs, "/ha");
    ASSERT_OK(store.Write(old_record));
    fs.CrashAfter(cut);
    const bool written = store.Write(new_record).ok();
    fs.PowerLoss();
    absl::StatusOr<proto::JobRecord> r = store.Read("job-a");
    ASSERT_OK(r);
    const bool is_old = r->SerializeAsString() == old_record.SerializeAsString();
    const bool is_new = r->SerializeAsString() == new_record.SerializeAsString();
    EXPECT_TRUE(is_old || is_new) << r->DebugString();
    if (written) EXPECT_TRUE(is_new);
    std::vector<std::string> errors;
    EXPECT_EQ(store.List(&errors).size(), 1u);
    EXPECT_TRUE(errors.empty());
  }
  // The first record of a store, cut anywhere: none or the whole record.
  for (int64_t cut = 0; cut <= steps + 4; ++cut) {
    SCOPED_TRACE(absl::StrCat("first record, power lost after ", cut));
    FaultInjectingFileSystem fs;
    HaStore store(&fs, "/ha");
    fs.CrashAfter(cut);
    const bool written = store.Write(new_record).ok();
    fs.PowerLoss();
    absl::StatusOr<proto::JobRecord> r = store.Read("job-a");
    if (written) ASSERT_OK(r);
    if (r.ok()) {
      EXPECT_EQ(r->SerializeAsString(), new_record.SerializeAsString());
    } else {
      EXPECT_THAT(r, StatusIs(absl::StatusCode::kNotFound, HasSubstr("job-a")));
    }
  }
}

TEST(HaStoreTest, AFullDiskFailsTheWriteAndKeepsTheOldRecord) {
  FaultInjectingFileSystem fs;
  HaStore store(&fs, "/ha");
  ASSERT_OK(store.Write(Record("job-a", 1, "")));
  fs.SetHook([](testing::FsOp op, const std::string& path) {
    return op == testing::FsOp::kWrite ? absl::ResourceExhaustedError(path + ": No space left on device")
                                       : absl::OkStatus();
  });
  EXPECT_THAT(store.Write(Record("job-a", 2, "")), StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("space")));
  fs.SetHook(nullptr);
  absl::StatusOr<proto::JobRecord> r = store.Read("job-a");
  ASSERT_OK(r);
  EXPECT_EQ(r->attempt(), 1);
}

}  // namespace
}  // namespace sluice::coordinator
