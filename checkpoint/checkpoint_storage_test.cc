#include "checkpoint/checkpoint_storage.h"

#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_matchers.h"
#include "common/testing/fault_injecting_filesystem.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sluice::checkpoint {
namespace {

using ::sluice::testing::FaultInjectingFileSystem;
using ::sluice::testing::FsOp;
using ::sluice::testing::StatusIs;
using ::testing::AnyOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr char kJobDir[] = "/ck/job-1";

std::string Sst(int n) { return absl::StrFormat("%06d.sst", n); }

// A job directory as workers and the coordinator leave it. Every file's expected contents are
// kept, so that a test can check a recovered checkpoint byte for byte.
class CheckpointStorageTest : public ::testing::Test {
 protected:
  // Uploads a state file durably, as RocksDbBackend::UploadSnapshot does (temporary, fsync,
  // rename, fsync dir) before the worker acknowledges.
  void Upload(const std::string& rel, const std::string& content) {
    const std::string path = JoinPath(kJobDir, rel);
    ASSERT_OK(CreateDirsDurably(fs_, DirName(path)));
    ASSERT_OK(fs_.WriteFile(path + ".tmp", content));
    ASSERT_OK(fs_.SyncFile(path + ".tmp"));
    ASSERT_OK(fs_.Rename(path + ".tmp", path));
    ASSERT_OK(fs_.SyncDir(DirName(path)));
    contents_[rel] = content;
  }

  // Checkpoint `id` of one keyed subtask whose backend `backend` holds SSTs `ssts`; uploads the
  // SSTs it has not uploaded before and its private files.
  proto::CheckpointMetadata Checkpoint(int64_t id, const std::string& backend, const std::vector<int>& ssts) {
    proto::CheckpointMetadata md;
    md.set_job_id("job-1");
    md.set_checkpoint_id(id);
    md.set_max_parallelism(128);
    auto* st = md.add_subtasks();
    auto* h = st->add_keyed();
    h->set_operator_id("agg");
    h->set_backend_id(backend);
    h->set_private_dir(absl::StrCat("chk-", id, "/0-0-agg"));
    for (int n : ssts) {
      auto* f = h->add_files();
      f->set_shared(true);
      f->set_local_name(Sst(n));
      f->set_name(absl::StrCat(backend, "-", Sst(n)));
      const std::string rel = absl::StrCat("shared/", f->name());
      if (!contents_.count(rel)) Upload(rel, absl::StrCat("sst ", n, " of ", backend));
    }
    auto* f = h->add_files();
    f->set_name("MANIFEST-000001");
    f->set_local_name("MANIFEST-000001");
    Upload(absl::StrCat(h->private_dir(), "/", f->name()), absl::StrCat("manifest of ", id));
    auto* op = st->add_operator_state();
    op->set_operator_id("source");
    op->add_entries(absl::StrCat("offset at ", id));
    return md;
  }

  // Every file `md` references exists with the contents it was uploaded with.
  void ExpectFullyReadable(const proto::CheckpointMetadata& md) {
    for (const std::string& rel : CheckpointStorage::ReferencedFiles(md)) {
      absl::StatusOr<std::string> got = fs_.ReadFile(JoinPath(kJobDir, rel));
      ASSERT_OK(got) << rel;
      EXPECT_EQ(*got, contents_[rel]) << rel;
    }
  }

  std::vector<std::string> Shared() {
    absl::StatusOr<std::vector<std::string>> names = fs_.ListDir(JoinPath(kJobDir, "shared"));
    return names.ok() ? *names : std::vector<std::string>{};
  }

  FaultInjectingFileSystem fs_;
  CheckpointStorage storage_{&fs_};
  std::map<std::string, std::string> contents_;  // relative path -> contents
};

TEST_F(CheckpointStorageTest, WritesAndReadsMetadataWithItsFormatVersion) {
  proto::CheckpointMetadata md = Checkpoint(4, "b1", {1, 2});
  absl::StatusOr<std::string> path = storage_.WriteMetadata(kJobDir, md);
  ASSERT_OK(path);
  EXPECT_EQ(*path, "/ck/job-1/chk-4/_metadata");
  absl::StatusOr<proto::CheckpointMetadata> read = storage_.ReadMetadata(*path);
  ASSERT_OK(read);
  EXPECT_EQ(read->format_version(), kMetadataFormatVersion);
  EXPECT_EQ(read->checkpoint_id(), 4);
  EXPECT_EQ(read->subtasks(0).operator_state(0).entries(0), "offset at 4");
  EXPECT_FALSE(fs_.Exists(*path + ".tmp"));
}

TEST_F(CheckpointStorageTest, OlderMetadataReadsAndANewerFormatIsRefusedNamingIt) {
  ASSERT_OK(fs_.CreateDirs("/ck/job-1/chk-1"));
  proto::CheckpointMetadata md = Checkpoint(1, "b1", {1});
  md.clear_format_version();  // as written before metadata was versioned
  ASSERT_OK(fs_.WriteFile("/ck/job-1/chk-1/_metadata", md.SerializeAsString()));
  absl::StatusOr<proto::CheckpointMetadata> old = storage_.ReadMetadata("/ck/job-1/chk-1/_metadata");
  ASSERT_OK(old);
  EXPECT_EQ(old->checkpoint_id(), 1);

  md.set_format_version(kMetadataFormatVersion + 1);
  ASSERT_OK(fs_.WriteFile("/ck/job-1/chk-1/_metadata", md.SerializeAsString()));
  EXPECT_THAT(storage_.ReadMetadata("/ck/job-1/chk-1/_metadata"),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr(absl::StrCat("format version ", kMetadataFormatVersion + 1))));
  EXPECT_THAT(storage_.FindLatestCompleted(kJobDir), StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("chk-1")));

  ASSERT_OK(fs_.WriteFile("/ck/job-1/chk-1/_metadata", "\xff\xff garbage"));
  EXPECT_THAT(storage_.ReadMetadata("/ck/job-1/chk-1/_metadata"),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("/ck/job-1/chk-1/_metadata")));
  EXPECT_THAT(storage_.ReadMetadata("/ck/job-1/chk-9/_metadata"), StatusIs(absl::StatusCode::kNotFound, HasSubstr("chk-9")));
}

TEST_F(CheckpointStorageTest, ResolvesCheckpointsAndSavepoints) {
  proto::CheckpointMetadata md = Checkpoint(3, "b1", {1});
  ASSERT_OK(storage_.WriteMetadata(kJobDir, md));
  absl::StatusOr<RestorePoint> chk = storage_.ResolveRestorePath("/ck/job-1/chk-3");
  ASSERT_OK(chk);
  EXPECT_EQ(chk->metadata_path, "/ck/job-1/chk-3/_metadata");
  EXPECT_EQ(chk->dir, "/ck/job-1");
  absl::StatusOr<std::string> sp = storage_.CopySavepoint(kJobDir, md, "/sp");
  ASSERT_OK(sp);
  EXPECT_EQ(*sp, "/sp/savepoint-job-1-3");
  absl::StatusOr<RestorePoint> sav = storage_.ResolveRestorePath(*sp + "/_metadata");
  ASSERT_OK(sav);
  EXPECT_EQ(sav->dir, "/sp/savepoint-job-1-3");
  EXPECT_THAT(storage_.ResolveRestorePath("/nowhere"), StatusIs(absl::StatusCode::kNotFound, HasSubstr("/nowhere")));
}

// The whole completion of checkpoint N as the coordinator runs it (metadata, then retention with
// retain 1, then shared-file GC), cut by a power loss before each of its steps: recovery finds
// N-1 or N, whichever is durable, and every file it references is there with its contents.
TEST_F(CheckpointStorageTest, PowerLossAtEveryStepOfCheckpointNLeavesNMinus1OrN) {
  auto setup = [&]() -> proto::CheckpointMetadata {
    proto::CheckpointMetadata prev = Checkpoint(6, "b1", {3, 5});
    EXPECT_OK(storage_.WriteMetadata(kJobDir, prev));
    Upload("shared/b1-" + Sst(7), "uploaded by aborted checkpoint 7");  // then compacted away
    return Checkpoint(8, "b1", {5, 8, 9});
  };
  auto complete = [&](const proto::CheckpointMetadata& md) -> int {  // steps that succeeded
    int ok = 0;
    if (!storage_.WriteMetadata(kJobDir, md).ok()) return ok;
    ++ok;
    if (!storage_.Subsume(kJobDir, {md.checkpoint_id()}).ok()) return ok;
    ++ok;
    if (!storage_.CollectSharedGarbage(kJobDir, md).ok()) return ok;
    return ++ok;
  };
  int64_t steps = 0;
  {
    proto::CheckpointMetadata md = setup();
    const int64_t before = fs_.mutations();
    ASSERT_EQ(complete(md), 3);
    steps = fs_.mutations() - before;
    // Retention and GC did their job: checkpoint 6's own SST and the aborted upload are gone.
    EXPECT_THAT(Shared(), ElementsAre("b1-" + Sst(5), "b1-" + Sst(8), "b1-" + Sst(9)));
    EXPECT_FALSE(fs_.Exists("/ck/job-1/chk-6"));
  }
  ASSERT_GE(steps, 10);
  for (int64_t cut = 0; cut <= steps; ++cut) {
    SCOPED_TRACE(absl::StrCat("power lost after ", cut, " of ", steps, " steps"));
    fs_.PowerLoss();
    ASSERT_OK(fs_.DeleteRecursively("/ck"));
    contents_.clear();
    proto::CheckpointMetadata md = setup();
    fs_.CrashAfter(cut);
    const int done = complete(md);
    fs_.PowerLoss();
    absl::StatusOr<CompletedCheckpoint> latest = storage_.FindLatestCompleted(kJobDir);
    ASSERT_OK(latest);
    EXPECT_THAT(latest->id, AnyOf(6, 8));
    if (done >= 1) EXPECT_EQ(latest->id, 8);  // WriteMetadata returned OK: it is durable
    ExpectFullyReadable(latest->metadata);
    EXPECT_EQ(latest->metadata.subtasks(0).operator_state(0).entries(0), absl::StrCat("offset at ", latest->id));
  }
}

TEST_F(CheckpointStorageTest, AFailedMetadataRenameLeavesTheEarlierCheckpointLatest) {
  ASSERT_OK(storage_.WriteMetadata(kJobDir, Checkpoint(1, "b1", {1})));
  proto::CheckpointMetadata md = Checkpoint(2, "b1", {1, 2});
  fs_.SetHook([](FsOp op, const std::string& path) {
    return op == FsOp::kRename && path == "/ck/job-1/chk-2/_metadata" ? absl::UnavailableError("rename failed: EIO")
                                                                        : absl::OkStatus();
  });
  EXPECT_THAT(storage_.WriteMetadata(kJobDir, md), StatusIs(absl::StatusCode::kUnavailable, HasSubstr("EIO")));
  fs_.SetHook(nullptr);
  EXPECT_FALSE(fs_.Exists("/ck/job-1/chk-2/_metadata"));
  EXPECT_FALSE(fs_.Exists("/ck/job-1/chk-2/_metadata.tmp"));
  absl::StatusOr<CompletedCheckpoint> latest = storage_.FindLatestCompleted(kJobDir);
  ASSERT_OK(latest);
  EXPECT_EQ(latest->id, 1);
  // The same after a power loss.
  fs_.PowerLoss();
  latest = storage_.FindLatestCompleted(kJobDir);
  ASSERT_OK(latest);
  EXPECT_EQ(latest->id, 1);
  ExpectFullyReadable(latest->metadata);
}

TEST_F(CheckpointStorageTest, AFullDiskFailsTheMetadataWriteWithTheReason) {
  proto::CheckpointMetadata md = Checkpoint(1, "b1", {1});
  fs_.SetHook([](FsOp op, const std::string& path) {
    return op == FsOp::kWrite ? absl::ResourceExhaustedError(absl::StrCat("cannot write ", path, ": No space left on device"))
                              : absl::OkStatus();
  });
  EXPECT_THAT(storage_.WriteMetadata(kJobDir, md),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("No space left on device")));
  fs_.SetHook(nullptr);
  EXPECT_THAT(storage_.FindLatestCompleted(kJobDir), StatusIs(absl::StatusCode::kNotFound, HasSubstr(kJobDir)));
}

TEST_F(CheckpointStorageTest, RecoverySkipsACheckpointWhoseFilesAreMissing) {
  proto::CheckpointMetadata one = Checkpoint(1, "b1", {1});
  ASSERT_OK(storage_.WriteMetadata(kJobDir, one));
  proto::CheckpointMetadata two = Checkpoint(2, "b1", {1, 2});
  ASSERT_OK(storage_.WriteMetadata(kJobDir, two));
  ASSERT_OK(fs_.DeleteFile("/ck/job-1/shared/b1-" + Sst(2)));
  EXPECT_THAT(storage_.VerifyFiles(kJobDir, two), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("b1-" + Sst(2))));
  absl::StatusOr<CompletedCheckpoint> latest = storage_.FindLatestCompleted(kJobDir);
  ASSERT_OK(latest);
  EXPECT_EQ(latest->id, 1);
}

// Shared files: every file a retained checkpoint references stays; an aborted checkpoint's
// uploads go once the backend has moved past them; files a pending checkpoint may be uploading
// (newer SST numbers) and files of backends not in the completed checkpoint stay.
TEST_F(CheckpointStorageTest, GarbageCollectionKeepsReferencedFilesAndRemovesAbortedUploads) {
  proto::CheckpointMetadata one = Checkpoint(1, "b1", {2, 4});
  ASSERT_OK(storage_.WriteMetadata(kJobDir, one));
  Upload("shared/b1-" + Sst(6), "aborted checkpoint 2");
  Upload("shared/b1-" + Sst(1), "compacted before checkpoint 1, upload of a crashed attempt");
  Upload("shared/b2-" + Sst(1), "another backend, not in checkpoint 3");
  proto::CheckpointMetadata three = Checkpoint(3, "b1", {4, 8, 9});
  ASSERT_OK(storage_.WriteMetadata(kJobDir, three));
  Upload("shared/b1-" + Sst(10) + ".tmp", "checkpoint 4 uploading");
  Upload("shared/b1-" + Sst(11), "checkpoint 4 uploaded");

  absl::StatusOr<int> deleted = storage_.CollectSharedGarbage(kJobDir, three);
  ASSERT_OK(deleted);
  EXPECT_EQ(*deleted, 2);  // b1-6 (aborted) and b1-1
  EXPECT_THAT(Shared(), ElementsAre("b1-" + Sst(2), "b1-" + Sst(4), "b1-" + Sst(8), "b1-" + Sst(9),
                                    "b1-" + Sst(10) + ".tmp", "b1-" + Sst(11), "b2-" + Sst(1)));
  ExpectFullyReadable(one);  // still retained: b1-2 stays
  ExpectFullyReadable(three);

  // Retention drops checkpoint 1: its own files go, shared ones checkpoint 3 uses stay.
  ASSERT_OK(storage_.Subsume(kJobDir, {3}));
  EXPECT_FALSE(fs_.Exists("/ck/job-1/chk-1"));
  EXPECT_THAT(Shared(), ElementsAre("b1-" + Sst(4), "b1-" + Sst(8), "b1-" + Sst(9), "b1-" + Sst(10) + ".tmp",
                                    "b1-" + Sst(11), "b2-" + Sst(1)));
  ExpectFullyReadable(three);

  // Unreadable metadata: what it references is unknown, so nothing goes.
  ASSERT_OK(fs_.CreateDirs("/ck/job-1/chk-2"));
  ASSERT_OK(fs_.WriteFile("/ck/job-1/chk-2/_metadata", "torn"));
  EXPECT_THAT(storage_.CollectSharedGarbage(kJobDir, three), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("chk-2")));
}

// A backend's MANIFEST, CURRENT and OPTIONS copies in shared/ (named by content, reused by
// later checkpoints while unchanged): an aborted checkpoint's copies go once the backend
// referenced a later one; those a retained or pending checkpoint may reference stay.
TEST_F(CheckpointStorageTest, GarbageCollectionRemovesAbortedManifestCurrentAndOptionsCopies) {
  auto add_shared = [&](proto::CheckpointMetadata* md, const std::string& local, const std::string& name) {
    auto* f = md->mutable_subtasks(0)->mutable_keyed(0)->add_files();
    f->set_shared(true);
    f->set_local_name(local);
    f->set_name(name);
    Upload("shared/" + name, name);
  };
  proto::CheckpointMetadata one = Checkpoint(1, "b1", {2});
  add_shared(&one, "MANIFEST-000005", "b1-MANIFEST-000005-100");
  ASSERT_OK(storage_.WriteMetadata(kJobDir, one));
  for (const char* name : {"b1-MANIFEST-000005-200", "b1-MANIFEST-000004-900", "b1-CURRENT-MANIFEST-000004",
                           "b1-OPTIONS-000005", "b1-OPTIONS-000006.tmp"}) {
    Upload(absl::StrCat("shared/", name), "aborted");
  }
  proto::CheckpointMetadata three = Checkpoint(3, "b1", {2});
  add_shared(&three, "MANIFEST-000005", "b1-MANIFEST-000005-300");
  add_shared(&three, "CURRENT", "b1-CURRENT-MANIFEST-000005");
  add_shared(&three, "OPTIONS-000007", "b1-OPTIONS-000007");
  ASSERT_OK(storage_.WriteMetadata(kJobDir, three));
  for (const char* name : {"b1-MANIFEST-000005-400", "b1-MANIFEST-000006-10.tmp", "b1-CURRENT-MANIFEST-000006",
                           "b1-OPTIONS-000009", "b2-MANIFEST-000001-10", "b2-OPTIONS-000001"}) {
    Upload(absl::StrCat("shared/", name), "pending, or another backend");
  }

  absl::StatusOr<int> deleted = storage_.CollectSharedGarbage(kJobDir, three);
  ASSERT_OK(deleted);
  EXPECT_EQ(*deleted, 5);
  EXPECT_THAT(Shared(), ElementsAre("b1-" + Sst(2), "b1-CURRENT-MANIFEST-000005", "b1-CURRENT-MANIFEST-000006",
                                    "b1-MANIFEST-000005-100", "b1-MANIFEST-000005-300", "b1-MANIFEST-000005-400",
                                    "b1-MANIFEST-000006-10.tmp", "b1-OPTIONS-000007", "b1-OPTIONS-000009",
                                    "b2-MANIFEST-000001-10", "b2-OPTIONS-000001"));
  ExpectFullyReadable(one);
  ExpectFullyReadable(three);
}

TEST_F(CheckpointStorageTest, SavepointCopyIsSelfContainedAndDurable) {
  proto::CheckpointMetadata md = Checkpoint(5, "b1", {1, 3});
  ASSERT_OK(storage_.WriteMetadata(kJobDir, md));
  absl::StatusOr<std::string> root = storage_.CopySavepoint(kJobDir, md, "/savepoints/x");
  ASSERT_OK(root);
  fs_.PowerLoss();
  ASSERT_OK(fs_.DeleteRecursively(kJobDir));  // the savepoint needs nothing of the job dir
  absl::StatusOr<proto::CheckpointMetadata> read = storage_.ReadMetadata(*root + "/_metadata");
  ASSERT_OK(read);
  ASSERT_OK(storage_.VerifyFiles(*root, *read));
  for (const std::string& rel : CheckpointStorage::ReferencedFiles(*read)) {
    absl::StatusOr<std::string> got = fs_.ReadFile(JoinPath(*root, rel));
    ASSERT_OK(got);
    EXPECT_EQ(*got, contents_[rel]);
  }
}

}  // namespace
}  // namespace sluice::checkpoint
