#pragma once

#include <string>

#include "absl/status/status.h"

namespace sluice {

// Durable file operations shared by the coordinator (HA records, checkpoint metadata) and
// sinks (committed output). All are safe to call from any thread; none takes a lock.

// fsyncs directory `dir`, so that a rename or a new file in it survives a machine crash.
// Returns kUnavailable with the path and errno text on failure.
absl::Status SyncDir(const std::string& dir);

// fsyncs regular file `path` (its data and size), so that its contents survive a machine crash
// once a rename or link makes them reachable. Returns kNotFound if it does not exist, else
// kUnavailable, with the path and errno text.
absl::Status SyncFile(const std::string& path);

// Moves `from` to `to` unless `to` exists, atomically (renameat2 RENAME_NOREPLACE, or
// link + unlink where the filesystem lacks it), then fsyncs the directory of `to`.
// Returns kAlreadyExists naming `to` if it exists (nothing is replaced, `from` stays),
// kNotFound if `from` does not exist, kUnavailable on other errors.
absl::Status RenameNoReplace(const std::string& from, const std::string& to);

// Whether `a` and `b` are the same file (hard links of one inode). False if either is missing.
bool SameFile(const std::string& a, const std::string& b);

}  // namespace sluice
