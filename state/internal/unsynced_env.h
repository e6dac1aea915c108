#pragma once

#include <memory>

#include "rocksdb/env.h"
#include "rocksdb/file_system.h"

namespace sluice::state::internal {

// The Env of every backend's working RocksDB: the default file system with every sync (file
// Sync/Fsync/RangeSync, directory Fsync) a no-op that reports success; reads, writes, renames
// and links are the default ones.
//
// Why it is safe: the working DB under StateBackendOptions::local_dir is a disposable copy.
// Nothing is ever recovered from it after a crash (a restarted subtask restores from checkpoint
// storage into a fresh directory), and the files that must survive a crash are the copies that
// UploadSnapshot() writes and fsyncs (CopyAtomically(durable=true) and SyncDir) before the
// checkpoint is acknowledged. So the fsyncs of a memtable flush, of the MANIFEST and of the
// local RocksDB checkpoint only made SnapshotSync() (the task thread) wait for the disk. Flink
// likewise treats its RocksDB working directory as ephemeral.
//
// Thread-safe (RocksDB's flush and compaction threads use it); lives for the whole process.
rocksdb::Env* UnsyncedEnv();

// The file system of UnsyncedEnv() over `target` instead of the default one (for tests).
std::shared_ptr<rocksdb::FileSystem> NewUnsyncedFileSystem(
    const std::shared_ptr<rocksdb::FileSystem>& target);

}  // namespace sluice::state::internal
