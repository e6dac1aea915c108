#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "common/filesystem.h"

namespace sluice::testing {

// What a FaultInjectingFileSystem call does, for its hook.
enum class FsOp {
  kWrite,
  kRead,
  kSyncFile,
  kSyncDir,
  kRename,
  kList,
  kDelete,
  kDeleteRecursively,
  kCreateDirs,
  kCopy,
};
const char* FsOpName(FsOp op);

// An in-memory FileSystem for tests that fails on demand and loses power (after LevelDB's
// fault_injection_test and its in-memory Env). It keeps, besides what a reader sees, what a
// machine crash would leave: a file's contents as of its last SyncFile(), a directory's entries
// as of its last SyncDir(). A file whose name is durable but whose contents were never synced
// comes back empty, as on ext4.
//
// Faults: a hook runs before every call (outside the lock, so it may block, e.g. on a latch) and
// fails it by returning a status; CrashAfter(n) makes every mutating call after the next n fail
// with kUnavailable, as if the machine stopped there; PowerLoss() then forgets everything not
// durable. A write failed by the hook leaves the first half of its data in the file (a disk that
// filled up midway); every other failed call has no effect.
//
// Paths are absolute ("/a/b"; a relative path is taken from "/"), "/" always exists.
// Thread-safe.
class FaultInjectingFileSystem final : public FileSystem {
 public:
  using Hook = std::function<absl::Status(FsOp op, const std::string& path)>;

  FaultInjectingFileSystem();
  ~FaultInjectingFileSystem() override;

  absl::Status WriteFile(const std::string& path, absl::string_view data) override;
  absl::StatusOr<std::string> ReadFile(const std::string& path) override;
  absl::Status SyncFile(const std::string& path) override;
  absl::Status SyncDir(const std::string& dir) override;
  absl::Status Rename(const std::string& from, const std::string& to) override;
  absl::StatusOr<std::vector<std::string>> ListDir(const std::string& dir) override;
  absl::Status DeleteFile(const std::string& path) override;
  absl::Status DeleteRecursively(const std::string& path) override;
  absl::Status CreateDirs(const std::string& dir) override;
  absl::Status CopyFile(const std::string& from, const std::string& to) override;
  bool Exists(const std::string& path) override;
  bool IsDirectory(const std::string& path) override;

  // Called before every call with its path (for Rename and CopyFile, the target); a non-OK
  // status fails the call. Null: none.
  void SetHook(Hook hook);
  // Lets the next `n` mutating calls (all but ReadFile, ListDir, Exists, IsDirectory) succeed,
  // then fails every later one with kUnavailable "power lost". Negative: never (the default).
  void CrashAfter(int64_t n);
  // The machine loses power and comes back: every file holds its durable contents, every
  // directory its durable entries. Clears CrashAfter() (not the hook).
  void PowerLoss();
  // Mutating calls made so far (failed ones included).
  int64_t mutations() const;

 private:
  struct Node;
  // Counts a mutating call, fails it after a crash (setting *crashed), then runs the hook.
  absl::Status Before(FsOp op, const std::string& path, bool mutating, bool* crashed = nullptr);
  // The node at `path`, or null.
  Node* LookupLocked(const std::string& path) const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // The directory `path` is in, and its last component in *name; kNotFound if it is missing.
  absl::StatusOr<Node*> ParentLocked(const std::string& path, std::string* name) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // The regular file at `path`, created empty if missing; kNotFound if its directory is missing.
  absl::StatusOr<Node*> CreateFileLocked(const std::string& path) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  Hook hook_ ABSL_GUARDED_BY(mu_);
  int64_t crash_after_ ABSL_GUARDED_BY(mu_) = -1;
  int64_t mutations_ ABSL_GUARDED_BY(mu_) = 0;
  std::shared_ptr<Node> root_ ABSL_GUARDED_BY(mu_);
};

}  // namespace sluice::testing
