#include "state/internal/unsynced_env.h"

#include <stdlib.h>

#include <atomic>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "rocksdb/db.h"
#include "rocksdb/utilities/checkpoint.h"

namespace sluice::state::internal {
namespace {

namespace fs = std::filesystem;

// Counts the syncs that reach the default file system (files and directories).
class CountingFileSystem : public rocksdb::FileSystemWrapper {
 public:
  explicit CountingFileSystem(std::atomic<int>* syncs)
      : FileSystemWrapper(rocksdb::FileSystem::Default()), syncs_(syncs) {}
  const char* Name() const override { return "CountingFileSystem"; }

  rocksdb::IOStatus NewWritableFile(const std::string& f, const rocksdb::FileOptions& o,
                                    std::unique_ptr<rocksdb::FSWritableFile>* r,
                                    rocksdb::IODebugContext* dbg) override {
    rocksdb::IOStatus s = target()->NewWritableFile(f, o, r, dbg);
    if (s.ok()) *r = std::make_unique<File>(std::move(*r), syncs_);
    return s;
  }
  rocksdb::IOStatus NewDirectory(const std::string& name, const rocksdb::IOOptions& o,
                                 std::unique_ptr<rocksdb::FSDirectory>* r,
                                 rocksdb::IODebugContext* dbg) override {
    rocksdb::IOStatus s = target()->NewDirectory(name, o, r, dbg);
    if (s.ok()) *r = std::make_unique<Dir>(std::move(*r), syncs_);
    return s;
  }

 private:
  class File : public rocksdb::FSWritableFileOwnerWrapper {
   public:
    File(std::unique_ptr<rocksdb::FSWritableFile> f, std::atomic<int>* syncs)
        : FSWritableFileOwnerWrapper(std::move(f)), syncs_(syncs) {}
    rocksdb::IOStatus Sync(const rocksdb::IOOptions& o, rocksdb::IODebugContext* d) override {
      ++*syncs_;
      return target()->Sync(o, d);
    }
    rocksdb::IOStatus Fsync(const rocksdb::IOOptions& o, rocksdb::IODebugContext* d) override {
      ++*syncs_;
      return target()->Fsync(o, d);
    }

   private:
    std::atomic<int>* syncs_;
  };
  class Dir : public rocksdb::FSDirectoryWrapper {
   public:
    Dir(std::unique_ptr<rocksdb::FSDirectory> d, std::atomic<int>* syncs)
        : FSDirectoryWrapper(std::move(d)), syncs_(syncs) {}
    rocksdb::IOStatus Fsync(const rocksdb::IOOptions& o, rocksdb::IODebugContext* d) override {
      ++*syncs_;
      return FSDirectoryWrapper::Fsync(o, d);
    }
    rocksdb::IOStatus FsyncWithDirOptions(const rocksdb::IOOptions& o, rocksdb::IODebugContext* d,
                                          const rocksdb::DirFsyncOptions& opts) override {
      ++*syncs_;
      return FSDirectoryWrapper::FsyncWithDirOptions(o, d, opts);
    }

   private:
    std::atomic<int>* syncs_;
  };
  std::atomic<int>* syncs_;
};

class UnsyncedEnvTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/sluice_unsynced_env_test_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    root_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }

  // Writes `data` into a fresh DB in `name` through `env` the way a backend's snapshot does
  // (memtable flush, then a RocksDB checkpoint), closes it and returns the checkpoint's dir.
  std::string WriteAndCheckpoint(rocksdb::Env* env, const std::string& name,
                                 const std::map<std::string, std::string>& data) {
    rocksdb::Options options;
    options.create_if_missing = true;
    options.env = env;
    rocksdb::DB* raw = nullptr;
    const std::string dir = (root_ / name).string();
    EXPECT_TRUE(rocksdb::DB::Open(options, dir, &raw).ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    rocksdb::WriteOptions w;
    w.disableWAL = true;
    for (const auto& [k, v] : data) EXPECT_TRUE(db->Put(w, k, v).ok());
    EXPECT_TRUE(db->Delete(w, "gone").ok());
    EXPECT_TRUE(db->Flush(rocksdb::FlushOptions()).ok());
    rocksdb::Checkpoint* cp = nullptr;
    EXPECT_TRUE(rocksdb::Checkpoint::Create(db.get(), &cp).ok());
    std::unique_ptr<rocksdb::Checkpoint> checkpoint(cp);
    const std::string cp_dir = dir + "-chk";
    EXPECT_TRUE(checkpoint->CreateCheckpoint(cp_dir).ok());
    EXPECT_TRUE(db->Close().ok());
    return cp_dir;
  }

  // Everything in the DB at `dir`, opened with the default Env.
  static std::map<std::string, std::string> ReadAll(const std::string& dir) {
    rocksdb::DB* raw = nullptr;
    EXPECT_TRUE(rocksdb::DB::OpenForReadOnly(rocksdb::Options(), dir, &raw).ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    std::map<std::string, std::string> out;
    if (db == nullptr) return out;
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions()));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      out[it->key().ToString()] = it->value().ToString();
    }
    EXPECT_TRUE(it->status().ok());
    return out;
  }

  fs::path root_;
};

TEST_F(UnsyncedEnvTest, SnapshotsReadBackTheSameWithoutAnySync) {
  std::map<std::string, std::string> data;
  for (int i = 0; i < 5000; ++i) data[absl::StrCat("key-", i)] = absl::StrCat("value-", i * 7);
  data["gone"] = "";  // deleted after the puts: absent from both
  std::map<std::string, std::string> expected = data;
  expected.erase("gone");

  // The general path: the default file system, counted.
  std::atomic<int> synced{0};
  std::unique_ptr<rocksdb::Env> counted =
      rocksdb::NewCompositeEnv(std::make_shared<CountingFileSystem>(&synced));
  std::string general = WriteAndCheckpoint(counted.get(), "general", data);
  EXPECT_GT(synced.load(), 0);  // RocksDB does sync a flush and a checkpoint by default
  EXPECT_EQ(ReadAll(general), expected);

  // The same through the unsynced file system over the counted one: no sync reaches it.
  std::atomic<int> unsynced{0};
  std::unique_ptr<rocksdb::Env> wrapped = rocksdb::NewCompositeEnv(
      NewUnsyncedFileSystem(std::make_shared<CountingFileSystem>(&unsynced)));
  std::string fast = WriteAndCheckpoint(wrapped.get(), "unsynced", data);
  EXPECT_EQ(unsynced.load(), 0);
  EXPECT_EQ(ReadAll(fast), expected);

  // And the process-wide one.
  EXPECT_EQ(ReadAll(WriteAndCheckpoint(UnsyncedEnv(), "process", data)), expected);
}

}  // namespace
}  // namespace sluice::state::internal
