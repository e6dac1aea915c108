#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace sluice {

// The file operations checkpoint storage and the HA store need, behind an interface (as
// LevelDB's `Env`), so that tests can substitute an in-memory, fault-injecting implementation
// (common/testing/fault_injecting_filesystem.h) and break writes, renames, syncs or the power on
// purpose.
//
// Durability follows POSIX: nothing written is durable until it is synced. File contents
// survive a machine crash once SyncFile() returned; a file's name (its creation, a rename to it,
// its deletion) once SyncDir() of its directory returned. The helpers below combine these.
//
// Paths are absolute or relative to the working directory. Implementations are thread-safe;
// every call may block on I/O, so none may run under a state mutex or on a gRPC callback thread.
//
// Status codes: kNotFound (a path that must exist does not), kResourceExhausted (the disk or a
// quota is full), kUnavailable (any other I/O error; retrying may help), each naming the path.
class FileSystem {
 public:
  virtual ~FileSystem() = default;

  // The process-wide POSIX filesystem.
  static FileSystem* Default();

  // Creates or truncates regular file `path` and writes `data` to it (not synced). A failed
  // write may leave the file holding a prefix of `data`.
  virtual absl::Status WriteFile(const std::string& path, absl::string_view data) = 0;
  // Reads all of regular file `path`.
  virtual absl::StatusOr<std::string> ReadFile(const std::string& path) = 0;
  // Makes the contents of regular file `path` durable.
  virtual absl::Status SyncFile(const std::string& path) = 0;
  // Makes the entries of directory `dir` (creations, renames, deletions in it) durable.
  virtual absl::Status SyncDir(const std::string& dir) = 0;
  // Renames `from` to `to`, atomically replacing a file at `to` (not synced).
  virtual absl::Status Rename(const std::string& from, const std::string& to) = 0;
  // The names (not paths) of the entries of directory `dir`, sorted. kNotFound if it is missing.
  virtual absl::StatusOr<std::vector<std::string>> ListDir(const std::string& dir) = 0;
  // Removes regular file `path` (not synced). kNotFound if it is missing.
  virtual absl::Status DeleteFile(const std::string& path) = 0;
  // Removes `path` and everything under it (not synced); OK if it is missing.
  virtual absl::Status DeleteRecursively(const std::string& path) = 0;
  // Creates directory `dir` and its missing parents (not synced); OK if it exists.
  virtual absl::Status CreateDirs(const std::string& dir) = 0;
  // Copies regular file `from` to `to`, replacing `to` (not synced).
  virtual absl::Status CopyFile(const std::string& from, const std::string& to) = 0;
  // Whether `path` exists (a file or a directory).
  virtual bool Exists(const std::string& path) = 0;
  virtual bool IsDirectory(const std::string& path) = 0;
};

// The parent directory of `path` ("." for a bare name).
std::string DirName(const std::string& path);
// `dir` + "/" + `name`.
std::string JoinPath(absl::string_view dir, absl::string_view name);

// Creates `dir` and its missing parents so that they survive a machine crash: each directory
// created is followed by a sync of its parent. Returns what the failing call returned.
absl::Status CreateDirsDurably(FileSystem& fs, const std::string& dir);

// Replaces `path` with `data` so that a machine crash at any point leaves the old content or the
// new one, never a torn or empty file: writes `path`.tmp, syncs it, renames it to `path` and
// syncs the directory. On failure the temporary is removed (best effort) and `path` keeps its old
// content. Returns what the failing call returned.
absl::Status WriteFileDurably(FileSystem& fs, const std::string& path, absl::string_view data);

// Copies `from` to `to` through `to`.tmp (synced, then renamed into place), so that `to` is
// either absent or complete; the caller syncs the directory of `to` (once for many copies).
absl::Status CopyFileDurably(FileSystem& fs, const std::string& from, const std::string& to);

}  // namespace sluice
