#include "common/file_util.h"

#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/process.h"
#include "common/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sluice {
namespace {

using ::sluice::testing::StatusIs;
using ::testing::HasSubstr;
namespace fs = std::filesystem;

class FileUtilTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "file-util-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }
  void Write(const std::string& name, const std::string& content) { std::ofstream(dir_ + "/" + name) << content; }
  std::string Read(const std::string& name) {
    std::ifstream in(dir_ + "/" + name);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  std::string dir_;
};

TEST_F(FileUtilTest, RenameNoReplaceMovesTheFile) {
  Write("a.pending", "data");
  ASSERT_OK(RenameNoReplace(dir_ + "/a.pending", dir_ + "/a.jsonl"));
  EXPECT_FALSE(fs::exists(dir_ + "/a.pending"));
  EXPECT_EQ(Read("a.jsonl"), "data");
}

TEST_F(FileUtilTest, RenameNoReplaceNeverReplacesAnExistingFile) {
  Write("a.pending", "new");
  Write("a.jsonl", "committed earlier");
  EXPECT_THAT(RenameNoReplace(dir_ + "/a.pending", dir_ + "/a.jsonl"),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr(dir_ + "/a.jsonl")));
  EXPECT_EQ(Read("a.jsonl"), "committed earlier");
  EXPECT_EQ(Read("a.pending"), "new");
}

TEST_F(FileUtilTest, RenameNoReplaceOfAMissingFileIsNotFound) {
  EXPECT_THAT(RenameNoReplace(dir_ + "/gone", dir_ + "/x"), StatusIs(absl::StatusCode::kNotFound, HasSubstr("gone")));
}

TEST_F(FileUtilTest, SyncFileAndSyncDirNameWhatTheyCannotOpen) {
  Write("a", "data");
  ASSERT_OK(SyncFile(dir_ + "/a"));
  ASSERT_OK(SyncDir(dir_));
  EXPECT_THAT(SyncFile(dir_ + "/missing"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("cannot open " + dir_ + "/missing")));
  EXPECT_THAT(SyncDir(dir_ + "/missing"),
              StatusIs(absl::StatusCode::kNotFound,
                       HasSubstr("cannot open directory " + dir_ + "/missing")));
}

TEST_F(FileUtilTest, SameFileRecognisesHardLinks) {
  Write("a", "x");
  Write("b", "x");
  ASSERT_EQ(::link((dir_ + "/a").c_str(), (dir_ + "/c").c_str()), 0);
  EXPECT_TRUE(SameFile(dir_ + "/a", dir_ + "/c"));
  EXPECT_FALSE(SameFile(dir_ + "/a", dir_ + "/b"));
  EXPECT_FALSE(SameFile(dir_ + "/a", dir_ + "/missing"));
}

TEST_F(FileUtilTest, WriteFileAtomicallyReplacesContentAndLeavesNoTemporary) {
  ASSERT_OK(WriteFileAtomically(dir_ + "/rec.pb", "one"));
  ASSERT_OK(WriteFileAtomically(dir_ + "/rec.pb", "two"));
  EXPECT_EQ(Read("rec.pb"), "two");
  EXPECT_FALSE(fs::exists(dir_ + "/rec.pb.tmp"));
  EXPECT_THAT(WriteFileAtomically(dir_ + "/no/such/dir/rec.pb", "x"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("cannot create")));
}

}  // namespace
}  // namespace sluice
