#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "common/clock.h"
#include "common/key_groups.h"
#include "common/state_format.h"
#include "common/metrics.h"
#include "proto/checkpoint.pb.h"

namespace rocksdb {
class Cache;
class WriteBufferManager;
}  // namespace rocksdb

namespace sluice::state {

namespace internal {
class DeltaBytes;  // internal/delta_file.h
}  // namespace internal

// Identifies a registered state within one backend.
using StateId = int;

enum class StateKind { kValue, kList, kMap };

// A key of KeyedStateBackend::Prefetch(): the serialized key and its key group.
struct KeyInGroup {
  absl::string_view key;
  int key_group = 0;
};
enum class TimerDomain { kEventTime = 0, kProcessingTime = 1 };

struct StateBackendOptions {
  std::string local_dir;         // the backend's private working directory (created; wiped first)
  std::string operator_id;       // for handles and errors
  int max_parallelism = kDefaultMaxParallelism;
  KeyGroupRange range{0, kDefaultMaxParallelism - 1};  // key groups this subtask owns
  size_t cache_bytes = 32 << 20;         // budget of the in-memory write-back cache
  size_t block_cache_bytes = 32 << 20;   // RocksDB block cache (data blocks), when not shared
  size_t write_buffer_bytes = 64 << 20;  // one RocksDB memtable (at most two exist)
  // A block cache and write buffer manager shared with the worker's other backends (its
  // StateMemory, memory_budget.h); null: a block cache of block_cache_bytes of its own.
  std::shared_ptr<rocksdb::Cache> shared_block_cache;
  std::shared_ptr<rocksdb::WriteBufferManager> write_buffer_manager;
  Clock* clock = Clock::Real();   // for TTL (processing time)
  // The dirty entries one eviction writes (and the entries SnapshotSync() moves from the last
  // delta file into RocksDB) go into one SST file that RocksDB ingests (no memtable inserts, no
  // memtable flush of them) when there are at least this many; fewer go through the memtable
  // (cheaper than a file for a few entries).
  size_t snapshot_ingest_min_entries = 4096;
  // The first snapshot of a backend opened empty (no restored state) writes every changed entry
  // into its delta file, none into RocksDB (no entry has a history to tell hot from new; see
  // SnapshotSync()), while the cache holds at most min(8 MiB, cache_bytes / 8) (a bound of that
  // delta's bytes: a larger first interval goes into RocksDB). False: it writes them into
  // RocksDB, as every later snapshot does with new entries (tests of that path).
  bool first_snapshot_all_hot = true;
  // The backend remembers the keys it wrote to RocksDB (and those it restored) in a filter
  // (internal/written_key_filter.h: about 10-20 bits per key, counted in cache_bytes, dropped
  // if it outgrows half of them), so a read of a key RocksDB never received (a new key) costs a
  // filter probe instead of a RocksDB lookup. False: every cache miss reads RocksDB.
  bool new_key_filter = true;
  // Named in every kDataLoss error about this backend's state (restore and reads).
  StateOrigin origin;
  // Where the backend publishes its cache hits and misses and its approximate size (live SST
  // files + memtables + cache bytes): every kStatsInterval cache reads, at SnapshotSync() and
  // when it closes. Null: not published.
  std::shared_ptr<Counter> cache_hits;
  std::shared_ptr<Counter> cache_misses;
  std::shared_ptr<Gauge> size_bytes;
  // Set to the bytes of the snapshots' delta files held in memory (internal::DeltaBytesPool:
  // being written, waiting for or in their upload, and the spare) whenever they change. Null:
  // not published.
  std::shared_ptr<Gauge> delta_bytes;
};

// A snapshot whose synchronous part is done: a RocksDB checkpoint (hard links) in a local
// directory and the bytes of the delta file of the entries RocksDB lacks (if any) in memory,
// ready to be stored in checkpoint storage in the background. When RocksDB did not change since
// the snapshot of the last successful upload, there is no local RocksDB checkpoint: the snapshot
// names that upload's RocksDB files (all shared, already in storage) and has only its delta.
struct PendingSnapshot {
  int64_t checkpoint_id = 0;
  // The RocksDB checkpoint; "" when the snapshot reuses uploaded files.
  std::string local_checkpoint_dir;
  // The delta file's bytes (null if none): a copy made by SnapshotSync(), which later changes
  // to the state do not reach; the upload writes them into storage (on its own thread).
  std::shared_ptr<const internal::DeltaBytes> delta;
  // Reusing: the reused files (as the last upload named them) and the job checkpoint directory
  // they are in.
  std::vector<proto::StateFile> reused_files;
  std::string reused_dir;
};

// Keyed state of one operator subtask, in RocksDB, organised by key groups as in Flink.
//
// Every RocksDB key is [key group: 2 bytes big-endian][state id: 1 byte][key length varint]
// [key bytes][user key (map state) / timer fields]. A bounded write-back cache sits in front of
// RocksDB so hot keys cost no RocksDB round trip; dirty entries go to RocksDB in write batches
// when evicted, and into a snapshot's delta file (RocksDB at the snapshot after, if unchanged
// by then) at snapshots. Timers live in memory and reach RocksDB only in snapshots.
//
// Threading: owned and used by one task thread, except UploadSnapshot(), which may run on a
// background thread concurrently with further processing (it only reads the local checkpoint
// directory made by SnapshotSync()). Not otherwise thread-safe.
class KeyedStateBackend {
 public:
  // Opens an empty backend.
  static absl::StatusOr<std::unique_ptr<KeyedStateBackend>> Open(const StateBackendOptions& options);
  // Opens a backend holding the key groups of options.range found in `handles` (snapshots of
  // one or more previous subtasks, possibly with other ranges: rescaling). `job_checkpoint_dir`
  // is the job's directory in checkpoint storage (holding shared/ and the private dirs).
  static absl::StatusOr<std::unique_ptr<KeyedStateBackend>> Restore(
      const StateBackendOptions& options, const std::vector<proto::KeyedStateHandle>& handles,
      const std::string& job_checkpoint_dir);

  virtual ~KeyedStateBackend() = default;

  // Registers (or finds) state `name`. ttl_ms > 0: entries expire that long after their last
  // write (processing time) and read as absent.
  virtual StateId RegisterState(const std::string& name, StateKind kind, int64_t ttl_ms = 0) = 0;

  // Sets the key the state calls below refer to. `key` is the serialized key; its key group
  // must be in the backend's range (kInvalidArgument otherwise, from the calls below).
  virtual void SetCurrentKey(absl::string_view key, int key_group) = 0;
  // The current key (valid until the next SetCurrentKey or FireTimers).
  virtual absl::string_view CurrentKey() const = 0;

  // Value state. Get returns false (and leaves *value alone) when absent or expired.
  virtual absl::StatusOr<bool> Get(StateId id, std::string* value) = 0;
  virtual absl::Status Put(StateId id, absl::string_view value) = 0;
  virtual absl::Status Delete(StateId id) = 0;
  // A read-ahead for value state `id` of `keys` (a batch about to be processed; duplicates and
  // keys outside the backend's range are allowed and skipped): loads those the cache does not
  // hold with one batched RocksDB read, so their Get()s that follow find them in the cache.
  // Only a hint: state reads and writes give exactly what they give without it (an entry the
  // cache evicts again before its Get() is read again), and the backend may skip it (e.g.
  // while nearly every read hits a cache under 1 MiB, or while nearly every read hits and the
  // caller reads with Get() rather than GetOfBatch()). The cache stays within its budget
  // (evicting, if needed, also entries it loaded). kInvalidArgument for an unknown id or another
  // kind, kUnavailable when RocksDB fails, kDataLoss for a malformed stored value.
  virtual absl::Status Prefetch(StateId id, absl::Span<const KeyInGroup> keys) = 0;
  // Get() and Put() of value state `id` for keys[i], where `keys` is the span of the last
  // Prefetch(id, keys) (a batch's read-modify-write: all its reads, then all its writes): they
  // give and store exactly what SetCurrentKey(keys[i]) followed by Get() / Put() does, but may
  // reuse the cache entry the read-ahead found for keys[i] (no second hash and lookup; a Put()
  // after another key's Get() otherwise looks its key up again). The current key afterwards is
  // unspecified: call SetCurrentKey() before other state calls.
  virtual absl::StatusOr<bool> GetOfBatch(StateId id, absl::Span<const KeyInGroup> keys,
                                          size_t i, std::string* value) {
    SetCurrentKey(keys[i].key, keys[i].key_group);
    return Get(id, value);
  }
  virtual absl::Status PutOfBatch(StateId id, absl::Span<const KeyInGroup> keys, size_t i,
                                  absl::string_view value) {
    SetCurrentKey(keys[i].key, keys[i].key_group);
    return Put(id, value);
  }

  // List state.
  virtual absl::Status Append(StateId id, absl::string_view element) = 0;
  virtual absl::Status GetList(StateId id, std::vector<std::string>* out) = 0;
  virtual absl::Status ClearList(StateId id) = 0;

  // Map state.
  virtual absl::StatusOr<bool> MapGet(StateId id, absl::string_view user_key, std::string* value) = 0;
  virtual absl::Status MapPut(StateId id, absl::string_view user_key, absl::string_view value) = 0;
  virtual absl::Status MapRemove(StateId id, absl::string_view user_key) = 0;
  virtual absl::Status MapEntries(StateId id,
                                  std::vector<std::pair<std::string, std::string>>* out) = 0;

  // Visits every key (and its key group) that has value state `id` (for emitting final
  // results). Calls SetCurrentKey as it goes.
  virtual absl::Status ForEachKey(StateId id,
                                  const std::function<absl::Status(absl::string_view key)>& fn) = 0;

  // Timers per key. Pending timers are held in memory (ordered by timestamp; they are not
  // counted in cache_bytes) and written into RocksDB under their key groups by SnapshotSync(),
  // so they survive restore and rescaling; Restore() loads those of its key groups. Registering
  // the same (key, timestamp, domain) twice keeps one timer; deleting an absent one is a no-op.
  virtual absl::Status RegisterTimer(TimerDomain domain, int64_t timestamp) = 0;
  virtual absl::Status DeleteTimer(TimerDomain domain, int64_t timestamp) = 0;
  // Removes and fires, in timestamp order, every timer of `domain` with timestamp <= `up_to`,
  // also those the callbacks register (a timer registered earlier than the next pending one
  // fires before it). The callback runs with the timer's key set as current key.
  virtual absl::Status FireTimers(TimerDomain domain, int64_t up_to,
                                  const std::function<absl::Status(int64_t timestamp)>& fn) = 0;
  // A lower bound of the timestamps of the timers of `domain` (the earliest pending one;
  // INT64_MAX when there is none): FireTimers() with an earlier `up_to` fires nothing. Cheap
  // (no I/O).
  virtual int64_t NextTimerLowerBound(TimerDomain domain) const = 0;

  // Synchronous part of a snapshot: writes the cache entries changed in this interval and the
  // one before (hot) into a delta file (internal/delta_file.h) instead of RocksDB, and the other
  // entries RocksDB lacks (new ones, and those in the last delta file unchanged since) into
  // RocksDB (as one ingested SST file from snapshot_ingest_min_entries on; the first snapshot of a
  // backend opened empty puts them all into the delta file while they are few:
  // first_snapshot_all_hot); flushes the memtable and makes a RocksDB checkpoint (hard
  // links) under the local directory (none when RocksDB did not change since the snapshot of
  // the last successful upload: the snapshot then names that upload's files,
  // PendingSnapshot::reused_files). The delta file is built in memory (PendingSnapshot::delta)
  // and written by the upload. The checkpoint plus its
  // delta file hold every entry; an entry changed in every interval reaches RocksDB only when
  // evicted. Nothing is fsynced (the upload makes the copies durable). Short; runs on the task
  // thread. On an error (kAborted, kUnavailable) nothing is lost: the next snapshot writes what
  // this one did not.
  virtual absl::StatusOr<PendingSnapshot> SnapshotSync(int64_t checkpoint_id) = 0;
  // Asynchronous part: copies the snapshot to checkpoint storage. SST files go to
  // <job_checkpoint_dir>/shared/ unless this backend already uploaded them for an earlier
  // checkpoint (incremental); the rest (MANIFEST, CURRENT, OPTIONS, the delta file) to
  // <job_checkpoint_dir>/<private_dir>/ (the delta file written there from memory). Removes the
  // local checkpoint directory afterwards. After a failure (kAborted) the next snapshot makes a RocksDB checkpoint.
  virtual absl::StatusOr<proto::KeyedStateHandle> UploadSnapshot(
      const PendingSnapshot& snapshot, const std::string& job_checkpoint_dir,
      const std::string& private_dir) = 0;

  // The write-back cache's budget (StateBackendOptions::cache_bytes: half of this backend's
  // share of the worker's --state-memory, memory_budget.h). Operators that keep state of their
  // own in memory (the aggregate's in-memory path) count it against this budget.
  virtual size_t CacheBudgetBytes() const = 0;
  // Sets aside `bytes` of the cache's budget (at most all of it) for state the operator holds
  // in memory itself: the cache keeps within the rest, evicting down to it at the next state
  // call that may evict. 0 gives the whole budget back.
  virtual void ReserveCacheBytes(size_t bytes) = 0;
  // Bytes the cache holds now (for metrics and the memory budget test).
  virtual size_t CacheBytesForTest() const = 0;
  // Keys looked up in RocksDB so far (by Get and batched reads), for tests of what the cache
  // and the new-key filter spare.
  virtual uint64_t StoreReadsForTest() const = 0;
  // Lookups of keys in the write-back cache's index so far (0 if the backend does not count
  // them), for tests of what GetOfBatch() and PutOfBatch() spare.
  virtual uint64_t CacheLookupsForTest() const { return 0; }
  // An integer property of the backend's store (RocksDB's GetIntProperty(), e.g.
  // "rocksdb.num-files-at-level0"); -1 when it has none. For tests of the store's tuning.
  virtual int64_t StoreIntPropertyForTest(const std::string& name) const { return -1; }

  // Names this backend's operator subtask and restored checkpoint in kDataLoss errors
  // (StateBackendOptions::origin); for state formats layered on top (aggregating state).
  virtual const StateOrigin& origin() const = 0;
};

}  // namespace sluice::state
