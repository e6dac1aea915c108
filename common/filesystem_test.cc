#include "common/filesystem.h"

#include <stdlib.h>

#include <filesystem>
#include <string>
#include <vector>

#include "common/status_matchers.h"
#include "common/testing/fault_injecting_filesystem.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sluice {
namespace {

using ::sluice::testing::FaultInjectingFileSystem;
using ::sluice::testing::FsOp;
using ::sluice::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// ---- The POSIX filesystem ------------------------------------------------------------------

class PosixFileSystemTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (std::filesystem::temp_directory_path() / "filesystem-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  FileSystem& fs_ = *FileSystem::Default();
  std::string dir_;
};

TEST_F(PosixFileSystemTest, WriteFileDurablyReplacesContentAndLeavesNoTemporary) {
  const std::string path = dir_ + "/a/b/rec.pb";
  ASSERT_OK(CreateDirsDurably(fs_, dir_ + "/a/b"));
  ASSERT_OK(WriteFileDurably(fs_, path, "one"));
  ASSERT_OK(WriteFileDurably(fs_, path, "two"));
  absl::StatusOr<std::string> read = fs_.ReadFile(path);
  ASSERT_OK(read);
  EXPECT_EQ(*read, "two");
  absl::StatusOr<std::vector<std::string>> names = fs_.ListDir(dir_ + "/a/b");
  ASSERT_OK(names);
  EXPECT_THAT(*names, ElementsAre("rec.pb"));
}

TEST_F(PosixFileSystemTest, CopyListDeleteAndErrorsNameThePath) {
  ASSERT_OK(fs_.WriteFile(dir_ + "/b", "bee"));
  ASSERT_OK(fs_.WriteFile(dir_ + "/a", "ay"));
  ASSERT_OK(CopyFileDurably(fs_, dir_ + "/a", dir_ + "/c"));
  absl::StatusOr<std::string> c = fs_.ReadFile(dir_ + "/c");
  ASSERT_OK(c);
  EXPECT_EQ(*c, "ay");
  absl::StatusOr<std::vector<std::string>> names = fs_.ListDir(dir_);
  ASSERT_OK(names);
  EXPECT_THAT(*names, ElementsAre("a", "b", "c"));
  ASSERT_OK(fs_.DeleteFile(dir_ + "/a"));
  EXPECT_FALSE(fs_.Exists(dir_ + "/a"));
  EXPECT_THAT(fs_.DeleteFile(dir_ + "/a"), StatusIs(absl::StatusCode::kNotFound, HasSubstr(dir_ + "/a")));
  EXPECT_THAT(fs_.ReadFile(dir_ + "/missing"), StatusIs(absl::StatusCode::kNotFound, HasSubstr("missing")));
  EXPECT_THAT(fs_.ListDir(dir_ + "/nodir"), StatusIs(absl::StatusCode::kNotFound, HasSubstr("nodir")));
  EXPECT_THAT(fs_.Rename(dir_ + "/gone", dir_ + "/x"), StatusIs(absl::StatusCode::kNotFound, HasSubstr("gone")));
  ASSERT_OK(fs_.CreateDirs(dir_ + "/d/e"));
  ASSERT_OK(fs_.WriteFile(dir_ + "/d/e/f", "x"));
  EXPECT_TRUE(fs_.IsDirectory(dir_ + "/d"));
  ASSERT_OK(fs_.DeleteRecursively(dir_ + "/d"));
  EXPECT_FALSE(fs_.Exists(dir_ + "/d"));
  ASSERT_OK(fs_.DeleteRecursively(dir_ + "/d"));  // missing is fine
}

// ---- The fault-injecting filesystem ----------------------------------------------------------

std::string ReadOr(FileSystem& fs, const std::string& path, const std::string& missing = "<missing>") {
  absl::StatusOr<std::string> r = fs.ReadFile(path);
  return r.ok() ? *r : missing;
}

// Writes `path` and syncs its contents (not its name).
absl::Status WriteSynced(FileSystem& fs, const std::string& path, const std::string& data) {
  absl::Status s = fs.WriteFile(path, data);
  return s.ok() ? fs.SyncFile(path) : s;
}

TEST(FaultInjectingFileSystemTest, PowerLossForgetsWhatWasNotSynced) {
  FaultInjectingFileSystem fs;
  ASSERT_OK(CreateDirsDurably(fs, "/d"));
  // Synced contents and name: survives.
  ASSERT_OK(WriteSynced(fs, "/d/durable", "kept"));
  // Name synced, contents not: comes back empty.
  ASSERT_OK(fs.WriteFile("/d/empty", "lost"));
  ASSERT_OK(fs.SyncDir("/d"));
  // Written after the sync: back to the synced contents.
  ASSERT_OK(fs.WriteFile("/d/durable", "overwritten"));
  // Contents synced, name not: gone.
  ASSERT_OK(WriteSynced(fs, "/d/nameless", "x"));
  // A directory whose parent was not synced: gone with its files.
  ASSERT_OK(fs.CreateDirs("/d/sub"));
  ASSERT_OK(WriteSynced(fs, "/d/sub/f", "y"));
  ASSERT_OK(fs.SyncDir("/d/sub"));
  EXPECT_EQ(ReadOr(fs, "/d/durable"), "overwritten");

  fs.PowerLoss();
  EXPECT_EQ(ReadOr(fs, "/d/durable"), "kept");
  EXPECT_EQ(ReadOr(fs, "/d/empty"), "");
  EXPECT_EQ(ReadOr(fs, "/d/nameless"), "<missing>");
  EXPECT_FALSE(fs.Exists("/d/sub"));
  absl::StatusOr<std::vector<std::string>> names = fs.ListDir("/d");
  ASSERT_OK(names);
  EXPECT_THAT(*names, ElementsAre("durable", "empty"));
}

TEST(FaultInjectingFileSystemTest, UnsyncedRenamesAndDeletesAreUndone) {
  FaultInjectingFileSystem fs;
  ASSERT_OK(CreateDirsDurably(fs, "/d"));
  ASSERT_OK(WriteSynced(fs, "/d/a", "A"));
  ASSERT_OK(WriteSynced(fs, "/d/b", "B"));
  ASSERT_OK(fs.SyncDir("/d"));
  auto rename_and_delete = [&] {
    ASSERT_OK(fs.Rename("/d/a", "/d/c"));
    ASSERT_OK(fs.DeleteFile("/d/b"));
    EXPECT_FALSE(fs.Exists("/d/a"));
  };
  rename_and_delete();
  fs.PowerLoss();
  EXPECT_EQ(ReadOr(fs, "/d/a"), "A");
  EXPECT_EQ(ReadOr(fs, "/d/b"), "B");
  EXPECT_FALSE(fs.Exists("/d/c"));
  // Synced, they stick.
  rename_and_delete();
  ASSERT_OK(fs.SyncDir("/d"));
  fs.PowerLoss();
  EXPECT_EQ(ReadOr(fs, "/d/c"), "A");
  EXPECT_FALSE(fs.Exists("/d/a"));
  EXPECT_FALSE(fs.Exists("/d/b"));
}

// A crash before any step of WriteFileDurably leaves the old content or the new one.
TEST(FaultInjectingFileSystemTest, WriteFileDurablyCutAtEveryStepLeavesOldOrNew) {
  int64_t steps = 0;
  {
    FaultInjectingFileSystem fs;
    ASSERT_OK(CreateDirsDurably(fs, "/d"));
    ASSERT_OK(WriteFileDurably(fs, "/d/rec", "old"));
    const int64_t before = fs.mutations();
    ASSERT_OK(WriteFileDurably(fs, "/d/rec", "new"));
    steps = fs.mutations() - before;
  }
  ASSERT_EQ(steps, 4);  // write, sync, rename, sync dir
  for (int64_t cut = 0; cut <= steps; ++cut) {
    SCOPED_TRACE(cut);
    FaultInjectingFileSystem fs;
    ASSERT_OK(CreateDirsDurably(fs, "/d"));
    ASSERT_OK(WriteFileDurably(fs, "/d/rec", "old"));
    fs.CrashAfter(cut);
    absl::Status s = WriteFileDurably(fs, "/d/rec", "new");
    EXPECT_EQ(s.ok(), cut == steps);
    fs.PowerLoss();
    // Durable once WriteFileDurably returned OK; before that, either.
    const std::string got = ReadOr(fs, "/d/rec");
    if (cut == steps) {
      EXPECT_EQ(got, "new");
    } else {
      EXPECT_THAT(got, ::testing::AnyOf("old", "new"));
    }
  }
}

TEST(FaultInjectingFileSystemTest, HookFailsCallsAndAFullDiskLeavesAPrefix) {
  FaultInjectingFileSystem fs;
  ASSERT_OK(CreateDirsDurably(fs, "/d"));
  ASSERT_OK(WriteFileDurably(fs, "/d/rec", "old"));
  fs.SetHook([](FsOp op, const std::string& path) {
    return op == FsOp::kWrite ? absl::ResourceExhaustedError(path + ": No space left on device")
                              : absl::OkStatus();
  });
  EXPECT_THAT(fs.WriteFile("/d/x", "abcdef"), StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("/d/x")));
  EXPECT_EQ(ReadOr(fs, "/d/x"), "abc");
  EXPECT_THAT(WriteFileDurably(fs, "/d/rec", "new"), StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("space")));
  EXPECT_EQ(ReadOr(fs, "/d/rec"), "old");
  EXPECT_FALSE(fs.Exists("/d/rec.tmp"));  // removed after the failure

  fs.SetHook([](FsOp op, const std::string& path) {
    return op == FsOp::kRename ? absl::UnavailableError("rename refused") : absl::OkStatus();
  });
  EXPECT_THAT(WriteFileDurably(fs, "/d/rec", "new"), StatusIs(absl::StatusCode::kUnavailable, HasSubstr("rename")));
  EXPECT_EQ(ReadOr(fs, "/d/rec"), "old");
  fs.SetHook(nullptr);
  ASSERT_OK(WriteFileDurably(fs, "/d/rec", "new"));
  EXPECT_EQ(ReadOr(fs, "/d/rec"), "new");
}

TEST(FaultInjectingFileSystemTest, CopiesAreIndependentAndMissingPathsAreNotFound) {
  FaultInjectingFileSystem fs;
  ASSERT_OK(fs.CreateDirs("/a/b"));
  ASSERT_OK(fs.WriteFile("/a/b/f", "one"));
  ASSERT_OK(fs.CopyFile("/a/b/f", "/a/g"));
  ASSERT_OK(fs.WriteFile("/a/b/f", "two"));
  EXPECT_EQ(ReadOr(fs, "/a/g"), "one");
  EXPECT_THAT(fs.CopyFile("/a/none", "/a/h"), StatusIs(absl::StatusCode::kNotFound, HasSubstr("/a/none")));
  EXPECT_THAT(fs.WriteFile("/x/y", "z"), StatusIs(absl::StatusCode::kNotFound, HasSubstr("/x/y")));
  EXPECT_THAT(fs.ListDir("/a/b/f"), StatusIs(absl::StatusCode::kNotFound, HasSubstr("/a/b/f")));
  ASSERT_OK(fs.DeleteRecursively("/a/b"));
  EXPECT_FALSE(fs.Exists("/a/b/f"));
  EXPECT_TRUE(fs.IsDirectory("/a"));
}

}  // namespace
}  // namespace sluice
