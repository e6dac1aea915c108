#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/filesystem.h"
#include "proto/checkpoint.pb.h"

namespace sluice::checkpoint {

// The checkpoint metadata format this build writes. Metadata of an earlier version (including 0,
// written before the format was versioned) keeps reading; a newer one is refused.
inline constexpr int32_t kMetadataFormatVersion = 1;
inline constexpr char kMetadataFileName[] = "_metadata";

// Where a restore reads: the metadata file and the directory its state files are relative to
// (a checkpoint's job directory, or a savepoint's root).
struct RestorePoint {
  std::string metadata_path;
  std::string dir;
};

// A completed checkpoint found in a job directory.
struct CompletedCheckpoint {
  int64_t id = 0;
  std::string metadata_path;
  proto::CheckpointMetadata metadata;
};

// Checkpoint storage: the layout of a job's checkpoint directory and every file operation on it,
// for the coordinator (writing metadata, retention, garbage collection, savepoint copies) and the
// worker (reading the metadata it restores from).
//
//   <job dir>/chk-<id>/_metadata          a checkpoint's metadata; it is complete once this is
//                                         durable (written temp, fsynced, renamed, dir fsynced)
//   <job dir>/chk-<id>/<vertex>-<subtask>-<operator>/...   its private state files
//   <job dir>/shared/<backend id>-<sst>  SST files, shared by incremental checkpoints (also
//                                         MANIFEST, CURRENT and OPTIONS copies, named by content)
//   <savepoint dir>/savepoint-<job>-<id>/ a self-contained copy: _metadata and every file
//
// Every call does blocking I/O on the FileSystem: never call under a state mutex or on a gRPC
// callback thread. Stateless apart from the FileSystem pointer, so thread-safe; calls on one job
// directory that delete (Subsume, CollectSharedGarbage, Discard) must not run concurrently with
// each other.
class CheckpointStorage {
 public:
  // REQUIRES: `fs` outlives this.
  explicit CheckpointStorage(FileSystem* fs = FileSystem::Default()) : fs_(fs) {}

  static std::string CheckpointDir(const std::string& job_dir, int64_t id);
  static std::string MetadataPath(const std::string& job_dir, int64_t id);
  // Every file a checkpoint references, relative to its directory ("shared/<name>" or
  // "<private dir>/<name>").
  static std::set<std::string> ReferencedFiles(const proto::CheckpointMetadata& md);

  // Writes `md` (with format_version set) as <job_dir>/chk-<id>/_metadata, durably: the
  // checkpoint directory is created (and made durable) first, the metadata is written to a
  // temporary, fsynced, renamed into place and its directory fsynced. On failure nothing is
  // readable under the final name. Returns the metadata's path, or the failing call's status
  // (kResourceExhausted for a full disk, kUnavailable otherwise).
  absl::StatusOr<std::string> WriteMetadata(const std::string& job_dir,
                                            proto::CheckpointMetadata md) const;

  // Reads a metadata file. kNotFound if it is missing; kDataLoss if it cannot be decoded;
  // kFailedPrecondition if it was written in a newer format than this build reads (naming both
  // versions).
  absl::StatusOr<proto::CheckpointMetadata> ReadMetadata(const std::string& path) const;

  // Finds the metadata of a checkpoint or savepoint given its directory or the file itself.
  // kNotFound (naming `path`) if there is none.
  absl::StatusOr<RestorePoint> ResolveRestorePath(const std::string& path) const;

  // The ids of chk-<id> directories in `job_dir`, whatever they hold, ascending; empty if the
  // directory is missing.
  std::vector<int64_t> ListCheckpointDirs(const std::string& job_dir) const;

  // The latest checkpoint of `job_dir` that is complete: its metadata reads and every file it
  // references exists. Checkpoints whose metadata is missing or unreadable (a crash while it was
  // written) are skipped. kNotFound if there is none; kFailedPrecondition for a newer format.
  absl::StatusOr<CompletedCheckpoint> FindLatestCompleted(const std::string& job_dir) const;

  // Whether every file `md` references exists under `dir`; kDataLoss naming the first missing.
  absl::Status VerifyFiles(const std::string& dir, const proto::CheckpointMetadata& md) const;

  // Removes chk-<id> (an aborted checkpoint's private files). OK if it is missing.
  absl::Status Discard(const std::string& job_dir, int64_t id) const;

  // Retention: deletes every checkpoint of `job_dir` older than the newest of `keep` that is not
  // in `keep`, with the files only they reference (their metadata first, so a crash midway never
  // leaves a metadata naming deleted files). Checkpoints newer than the newest kept (pending
  // ones) are untouched. Returns the first failure after trying everything.
  absl::Status Subsume(const std::string& job_dir, const std::set<int64_t>& keep) const;

  // Deletes shared files that no checkpoint can reference any more: a file <backend>-<n>.sst
  // (or its upload temporary) that no chk-*/_metadata in `job_dir` references, whose backend took
  // part in `completed` and whose SST number n is below the highest that backend referenced there.
  // RocksDB never reuses a file number, and a backend's checkpoint lists every live SST, so such a
  // file left that backend's database before `completed` and will never be referenced again:
  // files uploaded by aborted checkpoints or compacted away. The same for the backend's shared
  // <backend>-MANIFEST-<n>-<size> (below the (number, size) `completed` referenced: a MANIFEST
  // only grows, then rolls over to a higher number), <backend>-CURRENT-MANIFEST-<n> and
  // <backend>-OPTIONS-<n> (below the number referenced). Files a pending checkpoint is
  // uploading are newer than every file of `completed` and are never touched; a backend that did
  // not take part in `completed` keeps all its files. If any metadata in `job_dir` cannot be read,
  // deletes nothing and returns that status. Returns how many files were deleted.
  absl::StatusOr<int> CollectSharedGarbage(const std::string& job_dir,
                                           const proto::CheckpointMetadata& completed) const;

  // Copies checkpoint `md` of `job_dir` into <savepoint_dir>/savepoint-<job>-<id>/, self-contained
  // and durable: every referenced file copied (fsynced), directories fsynced, then the metadata
  // written as WriteMetadata does. Returns the savepoint's directory.
  absl::StatusOr<std::string> CopySavepoint(const std::string& job_dir, const proto::CheckpointMetadata& md,
                                            const std::string& savepoint_dir) const;

 private:
  FileSystem* const fs_;
};

}  // namespace sluice::checkpoint
