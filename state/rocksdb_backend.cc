// The RocksDB implementation of KeyedStateBackend (see keyed_state_backend.h for the contract
// and state/internal/key_codec.h for the byte layouts).

#include <algorithm>
#include <cstdarg>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/btree_set.h"
#include "absl/container/flat_hash_map.h"
#include "absl/hash/hash.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "common/file_util.h"
#include "common/filesystem.h"
#include "common/status.h"
#include "rocksdb/cache.h"
#include "rocksdb/db.h"
#include "rocksdb/env.h"
#include "rocksdb/iterator.h"
#include "rocksdb/filter_policy.h"
#include "rocksdb/options.h"
#include "rocksdb/slice_transform.h"
#include "rocksdb/sst_file_writer.h"
#include "rocksdb/table.h"
#include "rocksdb/utilities/checkpoint.h"
#include "rocksdb/write_buffer_manager.h"
#include "rocksdb/write_batch.h"
#include "state/internal/delta_file.h"
#include "state/internal/key_codec.h"
#include "state/internal/unsynced_env.h"
#include "state/internal/write_back_cache.h"
#include "state/internal/written_key_filter.h"
#include "state/keyed_state_backend.h"

namespace sluice::state {
namespace {

namespace fs = std::filesystem;
using internal::kTimerStateId;

// The backend publishes its statistics (StateBackendOptions) every this many cache reads.
constexpr uint64_t kStatsInterval = 1 << 14;
// Rescale restore writes into the new DB in batches of about this size.
constexpr size_t kRestoreBatchBytes = 4 << 20;
// Prefetch() reads ahead while at least 1 in kPrefetchMinMissShare cache reads missed, over
// windows of kPrefetchDecisionReads reads, or while the cache holds kPrefetchMinCacheBytes or
// more and the caller reused the entries found (GetOfBatch() since the last decision): its
// index cells, slots and blocks then miss the CPU's nearest caches (1 MiB: half the L2 of the
// machines here), where a batch's lookups overlap their memory loads and
// GetOfBatch()/PutOfBatch() reuse the entries found, while a Get() and a Put() per key each
// wait for a cell, a slot and a block in turn (session 28: at 100K keys, ~3 MB of cache a
// subtask, the aggregate's task thread used a third less CPU; at 10K keys, 0.3 MB, no gain).
// A caller that reads with Get() and Put() after it (the aggregate with a plugin aggregate
// function) pays the read-ahead's pass on top of its own lookups: at 100K keys its task
// threads used ~6% more CPU with it than without (session 29), so for it the size does not
// keep the read-ahead on.
constexpr uint64_t kPrefetchDecisionReads = 1 << 12;
constexpr uint64_t kPrefetchMinMissShare = 16;
constexpr size_t kPrefetchMinCacheBytes = size_t{1} << 20;
// The first snapshot of a backend opened empty puts its changed entries into the delta file
// (first_snapshot_all_hot) only while the cache holds at most this many bytes (and at most an
// eighth of its budget): the cache's bytes bound the delta's (an entry's block and its 32 bytes
// of slot and index against the delta's key, value and a few bytes of lengths), and a delta is
// encoded in memory on the task thread, outside the state budget, and read whole into memory
// and replayed through memtables by a restore. A larger first interval goes into RocksDB, as
// every later snapshot's new entries do.
constexpr size_t kFirstDeltaMaxBytes = size_t{8} << 20;

absl::string_view ToView(const rocksdb::Slice& s) { return absl::string_view(s.data(), s.size()); }
rocksdb::Slice ToSlice(absl::string_view s) { return rocksdb::Slice(s.data(), s.size()); }

// Converts a RocksDB status. Not-found and corruption keep their meaning; anything else gets
// `other` (callers pick it by what their caller should do).
absl::Status FromRocks(const rocksdb::Status& s, absl::string_view context,
                       absl::StatusCode other = absl::StatusCode::kInternal) {
  if (s.ok()) return absl::OkStatus();
  absl::StatusCode code = other;
  if (s.IsNotFound() || s.IsPathNotFound()) {
    code = absl::StatusCode::kNotFound;
  } else if (s.IsCorruption()) {
    code = absl::StatusCode::kDataLoss;
  }
  return absl::Status(code, absl::StrCat(context, ": ", s.ToString()));
}

absl::Status FromFs(const std::error_code& ec, absl::string_view what, const fs::path& path,
                    absl::StatusCode other = absl::StatusCode::kUnavailable) {
  absl::StatusCode code =
      ec == std::errc::no_such_file_or_directory ? absl::StatusCode::kNotFound : other;
  return absl::Status(code, absl::StrCat(what, " ", path.string(), ": ", ec.message()));
}

// Copies `from` to `to` through a temporary name, so a partial `to` is never visible. With
// `durable`, the copy is fsynced before the rename (its directory is the caller's to sync).
absl::Status CopyAtomically(const fs::path& from, const fs::path& to, bool durable = false) {
  fs::path tmp = to;
  tmp += ".tmp";
  std::error_code ec;
  fs::copy_file(from, tmp, fs::copy_options::overwrite_existing, ec);
  if (ec) {
    std::error_code ignored;
    fs::remove(tmp, ignored);
    return FromFs(ec, absl::StrCat("cannot copy to ", tmp.string(), " from"), from);
  }
  if (durable) {
    absl::Status s = SyncFile(tmp.string());
    if (!s.ok()) {
      std::error_code ignored;
      fs::remove(tmp, ignored);
      return s;
    }
  }
  fs::rename(tmp, to, ec);
  if (ec) return FromFs(ec, "cannot rename into place", to);
  return absl::OkStatus();
}

// Makes `to` a durable copy of `from` through a temporary name, as CopyAtomically(from, to,
// /*durable=*/true) does, but as a hard link of `from` where the filesystem allows it (the
// checkpoint storage on the working directory's filesystem): no bytes are copied, only the
// data not yet on disk is fsynced. REQUIRES: nothing writes to `from` any more (an SST file).
// Falls back to a copy where linking fails (another filesystem, or one without hard links).
absl::Status LinkOrCopyDurably(const fs::path& from, const fs::path& to) {
  fs::path tmp = to;
  tmp += ".tmp";
  std::error_code ec;
  fs::remove(tmp, ec);  // left over from a failed attempt
  fs::create_hard_link(from, tmp, ec);
  if (ec) return CopyAtomically(from, to, /*durable=*/true);
  absl::Status s = SyncFile(tmp.string());
  if (s.ok()) {
    fs::rename(tmp, to, ec);
    if (!ec) return absl::OkStatus();
    s = FromFs(ec, "cannot rename into place", to);
  }
  std::error_code ignored;
  fs::remove(tmp, ignored);
  return s;
}

// Wipes and (re)creates a directory.
absl::Status ResetDir(const fs::path& dir) {
  std::error_code ec;
  fs::remove_all(dir, ec);
  if (ec) return FromFs(ec, "cannot remove", dir);
  fs::create_directories(dir, ec);
  if (ec) return FromFs(ec, "cannot create", dir);
  return absl::OkStatus();
}

// A file name from a handle must be a plain name: it is joined to directories we write to.
bool IsPlainFileName(const std::string& name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string::npos &&
         name.find('\0') == std::string::npos;
}

// The name under `<job dir>/shared/` of a snapshot's file `name` (of `size` bytes, in the local
// snapshot directory `local`) that later snapshots of the same DB can share, or "" for a file
// uploaded privately each time. Every name of one content: an SST (RocksDB never writes to a
// finished one), an OPTIONS file (never rewritten: new options get a new number), the MANIFEST
// by its size (the checkpoint holds a prefix of the append-only live MANIFEST, so a name and a
// size are one content within a DB) and CURRENT by the MANIFEST it names. In the steady state
// of hot keys (every change in the delta file, RocksDB unchanged) a snapshot so creates and
// syncs only its delta file in storage. kUnavailable when CURRENT cannot be read.
absl::StatusOr<std::string> SharedNameOf(const std::string& backend_id, const fs::path& local,
                                         const std::string& name, int64_t size) {
  if (absl::EndsWith(name, ".sst") || absl::StartsWith(name, "OPTIONS-")) {
    return absl::StrCat(backend_id, "-", name);
  }
  if (absl::StartsWith(name, "MANIFEST-")) return absl::StrCat(backend_id, "-", name, "-", size);
  if (name == "CURRENT") {
    std::ifstream in(local / name, std::ios::binary);
    std::string manifest;
    if (!std::getline(in, manifest)) {
      return absl::UnavailableError(absl::StrCat("cannot read ", (local / name).string()));
    }
    if (absl::StartsWith(manifest, "MANIFEST-") && IsPlainFileName(manifest) &&
        static_cast<int64_t>(manifest.size()) + 1 == size) {
      return absl::StrCat(backend_id, "-CURRENT-", manifest);
    }
  }
  return std::string();
}

std::string RandomHexId() {
  std::random_device rd;
  std::string out;
  static constexpr char kHex[] = "0123456789abcdef";
  for (int i = 0; i < 4; ++i) {
    uint32_t v = rd();
    for (int j = 0; j < 8; ++j) {
      out.push_back(kHex[v & 0xf]);
      v >>= 4;
    }
  }
  return out;
}

bool Intersects(const proto::KeyGroupRangeProto& r, const KeyGroupRange& range) {
  return r.first() <= range.last && range.first <= r.last();
}

absl::Status ValidateOptions(const StateBackendOptions& o) {
  if (o.local_dir.empty()) return absl::InvalidArgumentError("state backend: empty local_dir");
  if (o.clock == nullptr) return absl::InvalidArgumentError("state backend: null clock");
  if (o.max_parallelism <= 0 || o.max_parallelism > kUpperMaxParallelism) {
    return absl::InvalidArgumentError(
        absl::StrCat("state backend: max_parallelism ", o.max_parallelism, " out of range"));
  }
  if (o.range.first < 0 || o.range.first > o.range.last || o.range.last >= o.max_parallelism) {
    return absl::InvalidArgumentError(absl::StrCat("state backend: bad key-group range [",
                                                   o.range.first, ", ", o.range.last, "]"));
  }
  return absl::OkStatus();
}

absl::Status ValidateHandle(const proto::KeyedStateHandle& h, int max_parallelism) {
  if (h.range().first() < 0 || h.range().first() > h.range().last() ||
      h.range().last() >= max_parallelism) {
    return absl::DataLossError(absl::StrCat("keyed state handle of ", h.operator_id(),
                                            " has a bad key-group range [", h.range().first(),
                                            ", ", h.range().last(), "]"));
  }
  if (!h.private_dir().empty() &&
      (h.private_dir().find("..") != std::string::npos || h.private_dir()[0] == '/')) {
    return absl::DataLossError(
        absl::StrCat("keyed state handle has a bad private_dir '", h.private_dir(), "'"));
  }
  for (const proto::StateFile& f : h.files()) {
    if (!IsPlainFileName(f.name()) || !IsPlainFileName(f.local_name()) || f.size() < 0) {
      return absl::DataLossError(absl::StrCat("keyed state handle has a bad file entry '",
                                              f.name(), "' -> '", f.local_name(), "'"));
    }
  }
  return absl::OkStatus();
}

// Whether `f` is a snapshot's delta file (internal/delta_file.h), not a RocksDB file.
bool IsDeltaFile(const proto::StateFile& f) {
  return !f.shared() && f.local_name() == internal::kDeltaFileName;
}

// Reads the delta file of `h` (if it has one) from checkpoint storage into *out (empty: none),
// checking its size. kNotFound: missing; kDataLoss: the wrong size.
absl::Status ReadDeltaOf(const proto::KeyedStateHandle& h, const fs::path& job_dir,
                         std::string* out) {
  out->clear();
  for (const proto::StateFile& f : h.files()) {
    if (!IsDeltaFile(f)) continue;
    const fs::path path = job_dir / h.private_dir() / f.name();
    SLUICE_ASSIGN_OR_RETURN(*out, FileSystem::Default()->ReadFile(path.string()));
    if (out->size() != static_cast<size_t>(f.size())) {
      return absl::DataLossError(absl::StrCat("state file ", path.string(), " has ", out->size(),
                                              " bytes, the handle says ", f.size()));
    }
  }
  return absl::OkStatus();
}

// Copies the files of `h` but its delta file from checkpoint storage into `dir` (created; wiped
// first), checking their sizes. kNotFound: a file is missing; kDataLoss: a file has the wrong size.
absl::Status MaterializeHandle(const proto::KeyedStateHandle& h, const fs::path& job_dir,
                               const fs::path& dir) {
  SLUICE_RETURN_IF_ERROR(ResetDir(dir));
  for (const proto::StateFile& f : h.files()) {
    if (IsDeltaFile(f)) continue;  // applied on top of the DB (ApplyDelta)
    fs::path from = f.shared() ? job_dir / "shared" / f.name() : job_dir / h.private_dir() / f.name();
    fs::path to = dir / f.local_name();
    SLUICE_RETURN_IF_ERROR(CopyAtomically(from, to));
    std::error_code ec;
    uintmax_t size = fs::file_size(to, ec);
    if (ec) return FromFs(ec, "cannot stat", to);
    if (size != static_cast<uintmax_t>(f.size())) {
      return absl::DataLossError(absl::StrCat("state file ", from.string(), " has ", size,
                                              " bytes, the handle says ", f.size()));
    }
  }
  return absl::OkStatus();
}

// RocksDB's info log of a working copy that every open wipes: nobody reads it, and making it
// (a LOG file, the options dumped as text, old LOGs renamed) was part of every subtask's open.
class NoInfoLog final : public rocksdb::Logger {
 public:
  NoInfoLog() : rocksdb::Logger(rocksdb::InfoLogLevel::HEADER_LEVEL) {}
  using rocksdb::Logger::Logv;
  void Logv(const char*, va_list) override {}
};

// The largest memtable bloom filter (MakeDbOptions()).
constexpr size_t kMemtableBloomBytes = size_t{256} << 10;

// Options tuned for point lookups of state keys: whole-key bloom filters in the SSTs and the
// memtable (a Get of a key that never existed, e.g. a new window, touches no data block), a
// block cache, and write buffers sized from the backend's options.
rocksdb::Options MakeDbOptions(const StateBackendOptions& o) {
  rocksdb::Options options;
  rocksdb::BlockBasedTableOptions table;
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  table.whole_key_filtering = true;
  table.block_cache = o.shared_block_cache != nullptr ? o.shared_block_cache
                                                      : rocksdb::NewLRUCache(o.block_cache_bytes);
  // Index and filter blocks stay in the table readers (not evicted by data blocks).
  options.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  options.memtable_whole_key_filtering = true;
  // RocksDB sizes the memtable's bloom filter as this ratio of the write buffer and allocates
  // and zeroes it whole with every memtable (at each open and after each flush): 0.05 of a
  // 64 MiB buffer was 3.4 MB, ~5% of the CPU of a tiny job's keyed subtasks. Evictions and
  // snapshots of many entries bypass the memtable (ingested SSTs), so it holds few entries
  // (it is flushed at every snapshot): at most kMemtableBloomBytes (10 bits a key for 200K).
  options.memtable_prefix_bloom_size_ratio =
      std::min(0.05, static_cast<double>(kMemtableBloomBytes) /
                         static_cast<double>(std::max<size_t>(o.write_buffer_bytes, 1)));
  // The cache writes dirty entries in key order (WriteEntries): with a hint per key group the
  // skip list continues each insert from the last one of its key group, climbing only the levels
  // the gap needs, instead of searching from the top (the plain insert's splice is recomputed
  // whole unless the key lands right next to the previous one).
  options.memtable_insert_with_hint_prefix_extractor.reset(rocksdb::NewFixedPrefixTransform(2));
  options.write_buffer_size = o.write_buffer_bytes;
  options.write_buffer_manager = o.write_buffer_manager;
  options.max_write_buffer_number = 2;
  options.create_if_missing = true;
  // Closing discards the working copy (state is recovered from checkpoints), so no flush.
  options.avoid_flush_during_shutdown = true;
  // No info LOG, and no periodic stats dumps or persistence into it: a fixed cost of every
  // job (each subtask opens its DB), not state work.
  static const auto* no_info_log = new std::shared_ptr<rocksdb::Logger>(std::make_shared<NoInfoLog>());
  options.info_log = *no_info_log;
  options.stats_dump_period_sec = 0;
  options.stats_persist_period_sec = 0;
  options.max_background_jobs = 2;
  // Checkpoints flush the memtable every interval and evictions ingest an SST file per batch,
  // making many L0 files: compact them less eagerly. An evicted batch's keys span the whole
  // key range, so each L0->L1 compaction rewrites all of L1: at 32 files (16 in session 24, 8
  // before) state that outgrows the cache is rewritten a quarter as often as at 8 (10M keys
  // with 64 MiB per worker: compaction was 30% of the workers' CPU at 8, 22% at 16). Reads
  // pay a filter probe per L0 file only for keys RocksDB may hold (the cache's store filter
  // answers for keys never written). Writes slow down at 64 L0 files and stop at 96
  // (defaults 20 and 36).
  options.level0_file_num_compaction_trigger = 32;
  options.level0_slowdown_writes_trigger = 64;
  options.level0_stop_writes_trigger = 96;
  // Flushes and compactions do not compare every key they write with the one before and copy
  // it (RocksDB's OutputValidator, on by default; its Add() was ~6% of a compaction thread's
  // samples at 10M keys with 64 MiB per worker). Their inputs are RocksDB's own sorted files
  // and the cache's ingested batches, whose order SstFileWriter checks as it writes them.
  options.check_flush_compaction_key_order = false;
  // No compression at L0 and L1, where state rewritten every interval lives and is compacted
  // again soon (Snappy was 2-17% of the workers' CPU in keyed Nexmark queries); deeper levels,
  // where state that only grows settles, keep Snappy.
  options.compression_per_level = {rocksdb::kNoCompression, rocksdb::kNoCompression,
                                   rocksdb::kSnappyCompression};
  return options;
}

// Options for the SST files a snapshot ingests: those of the DB without compression (an
// SstFileWriter uses the last level's; the file lands in L0).
rocksdb::Options MakeIngestOptions(const rocksdb::Options& db_options) {
  rocksdb::Options options = db_options;
  options.compression_per_level.clear();
  options.compression = rocksdb::kNoCompression;
  return options;
}

// Reads the state names stored under kMetaPrefix: (id, name, kind).
struct StoredStateMeta {
  int id;
  std::string name;
  StateKind kind;
};

absl::Status ReadMeta(rocksdb::DB* db, const std::string& where,
                      std::vector<StoredStateMeta>* out) {
  out->clear();
  std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions()));
  for (it->Seek(ToSlice(internal::kMetaPrefix));
       it->Valid() && absl::StartsWith(ToView(it->key()), internal::kMetaPrefix); it->Next()) {
    absl::string_view name = ToView(it->key()).substr(internal::kMetaPrefix.size());
    absl::string_view value = ToView(it->value());
    if (value.size() != 2 || static_cast<uint8_t>(value[0]) >= internal::kMaxStates ||
        static_cast<uint8_t>(value[1]) > static_cast<uint8_t>(StateKind::kMap)) {
      return absl::DataLossError(absl::StrCat("bad state metadata in ", where));
    }
    out->push_back({static_cast<uint8_t>(value[0]), std::string(name),
                    static_cast<StateKind>(static_cast<uint8_t>(value[1]))});
  }
  return FromRocks(it->status(), absl::StrCat("reading state metadata in ", where),
                   absl::StatusCode::kDataLoss);
}

// Checks the format version of a snapshot's DB (internal/key_codec.h): kDataLoss when it is
// newer than this build reads or malformed.
absl::Status CheckFormat(rocksdb::DB* db, const std::string& where) {
  std::string v;
  rocksdb::Status s = db->Get(rocksdb::ReadOptions(), ToSlice(internal::kFormatKey), &v);
  if (s.IsNotFound()) return absl::OkStatus();  // format 0
  SLUICE_RETURN_IF_ERROR(FromRocks(s, absl::StrCat("reading the state format in ", where),
                                   absl::StatusCode::kDataLoss));
  const std::string what = absl::StrCat("keyed state in ", where);
  if (v.size() != 1 || v[0] == 0) return absl::DataLossError(absl::StrCat(what, " has a malformed format entry"));
  if (static_cast<uint8_t>(v[0]) > internal::kFormatVersion) {
    return absl::DataLossError(NewerStateVersionText(what, static_cast<uint8_t>(v[0]), internal::kFormatVersion));
  }
  return absl::OkStatus();
}

// The RocksDB keyed state backend.
//
// Lifecycle: made by Open()/Restore() (which wipe options.local_dir and open
// <local_dir>/db); closed and its local directory removed on destruction.
// REQUIRES: no UploadSnapshot() is running when it is destroyed.
//
// Threading: one task thread, except UploadSnapshot() (see the interface).
class RocksDbBackend final : public KeyedStateBackend {
 public:
  explicit RocksDbBackend(const StateBackendOptions& options)
      : options_(options), db_dir_((fs::path(options.local_dir) / "db").string()),
        backend_id_(RandomHexId()),
        cache_(options.cache_bytes) {
    write_options_.disableWAL = true;  // memtables are flushed for every snapshot
  }

  ~RocksDbBackend() override {
    PublishStats();
    if (db_ != nullptr) {
      rocksdb::Status s = db_->Close();
      (void)s;
      db_.reset();
    }
    std::error_code ec;
    fs::remove_all(options_.local_dir, ec);
  }

  absl::Status OpenEmpty() {
    SLUICE_RETURN_IF_ERROR(ResetDir(options_.local_dir));
    SLUICE_RETURN_IF_ERROR(OpenDb(/*create=*/true));
    EnableNewKeyFilter();  // RocksDB holds no state key yet
    first_snapshot_all_hot_ = options_.first_snapshot_all_hot;  // no entry has a history
    return WriteFormat();
  }

  // Starts the cache's filter of the keys RocksDB holds (options_.new_key_filter), its first
  // part sized for about the entries the cache holds (64 bytes each), within [1K, 1M] keys.
  // REQUIRES: RocksDB holds no state key yet, or the caller names each to the cache.
  void EnableNewKeyFilter() {
    if (!options_.new_key_filter) return;
    cache_.EnableStoreFilter(std::clamp<size_t>(options_.cache_bytes / 64, 1 << 10, 1 << 20));
  }

  // Records this build's format version in the DB (snapshots carry it).
  absl::Status WriteFormat() {
    const char v = static_cast<char>(internal::kFormatVersion);
    return FromRocks(db_->Put(write_options_, ToSlice(internal::kFormatKey), rocksdb::Slice(&v, 1)),
                     absl::StrCat(options_.operator_id, ": writing the state format version"),
                     absl::StatusCode::kUnavailable);
  }

  absl::Status RestoreFrom(const std::vector<proto::KeyedStateHandle>& handles,
                           const std::string& job_checkpoint_dir);
  const StateOrigin& origin() const override { return options_.origin; }

  StateId RegisterState(const std::string& name, StateKind kind, int64_t ttl_ms) override;
  // Builds the current key's RocksDB key once ([kg][id placeholder][len][key] in key_buf_),
  // so each state access only patches the state id (BuildKey).
  void SetCurrentKey(absl::string_view key, int key_group) override {
    current_key_.assign(key.data(), key.size());  // first: `key` may view key_buf_
    char header[8];  // [kg: 2][id: 1][varint32 length: up to 5]
    const size_t header_len = internal::EncodeStateKeyHeader(
        header, key_group, 0, static_cast<uint32_t>(current_key_.size()));
    key_buf_.assign(header, header_len);
    key_buf_.append(current_key_);
    state_key_len_ = key_buf_.size();
    current_kg_ = key_group;
    key_valid_ = options_.range.Contains(key_group);
    last_id_ = -1;
  }

  absl::StatusOr<bool> Get(StateId id, std::string* value) override;
  absl::Status Put(StateId id, absl::string_view value) override;
  absl::Status Delete(StateId id) override;
  absl::Status Prefetch(StateId id, absl::Span<const KeyInGroup> keys) override;
  uint64_t CacheLookupsForTest() const override { return cache_.lookups(); }
  absl::StatusOr<bool> GetOfBatch(StateId id, absl::Span<const KeyInGroup> keys, size_t i,
                                  std::string* value) override;
  absl::Status PutOfBatch(StateId id, absl::Span<const KeyInGroup> keys, size_t i,
                          absl::string_view value) override;

  absl::Status Append(StateId id, absl::string_view element) override;
  absl::Status GetList(StateId id, std::vector<std::string>* out) override;
  absl::Status ClearList(StateId id) override;

  absl::StatusOr<bool> MapGet(StateId id, absl::string_view user_key, std::string* value) override;
  absl::Status MapPut(StateId id, absl::string_view user_key, absl::string_view value) override;
  absl::Status MapRemove(StateId id, absl::string_view user_key) override;
  absl::Status MapEntries(StateId id,
                          std::vector<std::pair<std::string, std::string>>* out) override;

  absl::Status ForEachKey(StateId id,
                          const std::function<absl::Status(absl::string_view key)>& fn) override;

  absl::Status RegisterTimer(TimerDomain domain, int64_t timestamp) override;
  absl::Status DeleteTimer(TimerDomain domain, int64_t timestamp) override;
  absl::Status FireTimers(TimerDomain domain, int64_t up_to,
                          const std::function<absl::Status(int64_t timestamp)>& fn) override;

  absl::StatusOr<PendingSnapshot> SnapshotSync(int64_t checkpoint_id) override;
  absl::StatusOr<proto::KeyedStateHandle> UploadSnapshot(
      const PendingSnapshot& snapshot, const std::string& job_checkpoint_dir,
      const std::string& private_dir) override;

  size_t CacheBudgetBytes() const override { return options_.cache_bytes; }
  void ReserveCacheBytes(size_t bytes) override { cache_.Reserve(bytes); }
  size_t CacheBytesForTest() const override { return cache_.bytes(); }
  uint64_t StoreReadsForTest() const override { return store_reads_; }
  int64_t StoreIntPropertyForTest(const std::string& name) const override {
    if (db_ == nullptr) return -1;
    uint64_t v = 0;
    if (db_->GetIntProperty(name, &v)) return static_cast<int64_t>(v);
    std::string text;  // properties with a number as text ("rocksdb.num-files-at-level<N>")
    int64_t parsed = 0;
    return db_->GetProperty(name, &text) && absl::SimpleAtoi(text, &parsed) ? parsed : -1;
  }
  absl::string_view CurrentKey() const override { return current_key_; }
  int64_t NextTimerLowerBound(TimerDomain domain) const override {
    const int d = static_cast<int>(domain);
    if (d != 0 && d != 1) return std::numeric_limits<int64_t>::min();
    return timers_[d].empty() ? std::numeric_limits<int64_t>::max()
                              : timers_[d].begin()->timestamp;
  }

 private:
  struct StateInfo {
    std::string name;
    StateKind kind = StateKind::kValue;
    int64_t ttl_ms = 0;
    // The size of the value last written (value state without TTL, at most the cache's
    // kMaxRoom): a key read as absent gets a cache block with room for it (InsertLoaded()).
    uint32_t value_room = 0;
    bool in_use = false;      // a name is bound to this id (registered or restored)
    bool registered = false;  // RegisterState() handed this id out
  };

  // A shared file this backend uploaded (or restored from): its name in <dir>/shared/. A
  // checkpoint names it instead of uploading it again only when it goes to the same `dir` (a job
  // restored from a savepoint checkpoints elsewhere: there the file must be uploaded).
  struct UploadedFile {
    std::string name;
    int64_t size;
    std::string dir;
  };

  // A pending timer, held in memory (ordered by timestamp, then key group and key) and written
  // to RocksDB only by SnapshotSync(), as Flink keeps heap timers beside RocksDB state.
  struct Timer {
    int64_t timestamp;
    int key_group;
    std::string key;
  };
  // (timestamp, key group, key) of a timer, for lookups without building a Timer.
  struct TimerRef {
    int64_t timestamp;
    int key_group;
    absl::string_view key;
  };
  struct TimerLess {
    using is_transparent = void;
    template <typename A, typename B>
    bool operator()(const A& a, const B& b) const {
      if (a.timestamp != b.timestamp) return a.timestamp < b.timestamp;
      if (a.key_group != b.key_group) return a.key_group < b.key_group;
      return absl::string_view(a.key) < absl::string_view(b.key);
    }
  };
  // A timer of a domain, as a key of timer_changes_ (TimerId; TimerIdRef for lookups).
  struct TimerId {
    int domain;
    int64_t timestamp;
    int key_group;
    std::string key;
  };
  struct TimerIdRef {
    int domain;
    int64_t timestamp;
    int key_group;
    absl::string_view key;
  };
  struct TimerIdHash {
    using is_transparent = void;
    template <typename T>
    size_t operator()(const T& t) const {
      return absl::HashOf(t.domain, t.timestamp, t.key_group, absl::string_view(t.key));
    }
  };
  struct TimerIdEq {
    using is_transparent = void;
    template <typename A, typename B>
    bool operator()(const A& a, const B& b) const {
      return a.domain == b.domain && a.timestamp == b.timestamp && a.key_group == b.key_group &&
             absl::string_view(a.key) == absl::string_view(b.key);
    }
  };
  // Records that timer `t` was added to (present) or removed from memory: RocksDB, which
  // holds the timers of the last WriteTimers() (or restore), now differs from memory in it,
  // or agrees again (then it leaves timer_changes_).
  void NoteTimerChange(const TimerIdRef& t, bool present) {
    auto it = timer_changes_.find(t);
    if (it != timer_changes_.end()) {
      timer_changes_.erase(it);  // back to what RocksDB holds
    } else {
      timer_changes_.emplace(TimerId{t.domain, t.timestamp, t.key_group, std::string(t.key)},
                             present);
    }
  }

  absl::Status OpenDb(bool create);
  // Binds `name` to an id without handing it out (restore); kDataLoss on a kind conflict.
  absl::StatusOr<int> BindState(const std::string& name, StateKind kind, int wanted_id);
  // Copies the key groups of options_.range out of the snapshot of `handle` materialized in
  // `dir`, then applies its delta file (from checkpoint storage under `job_dir`).
  absl::Status CopyKeyGroups(const proto::KeyedStateHandle& handle, const fs::path& dir,
                             const fs::path& job_dir);
  // Writes the entries of the delta file of `handle` (none: a no-op) within options_.range into
  // RocksDB, state ids mapped through `remap` (256 entries, -1: unknown: kDataLoss).
  absl::Status ApplyDelta(const proto::KeyedStateHandle& handle, const fs::path& job_dir,
                          const int* remap);
  // After a restore of the same key groups: starts the new-key filter with every state key of
  // the restored DB. kDataLoss when RocksDB cannot read them.
  absl::Status FillNewKeyFilter();
  absl::Status WriteMeta();
  // Makes the timers stored in RocksDB those in memory: writes timer_changes_ (a put per
  // timer added since the last call, a delete per stored timer removed).
  absl::Status WriteTimers();
  // Loads the timers of options_.range stored in RocksDB into memory (after a restore).
  absl::Status LoadTimers();

  // OK if `id` is a registered state of `kind` and the current key is in range.
  absl::Status CheckState(StateId id, StateKind kind) const;
  absl::Status CheckAccess(StateId id, StateKind kind) const {
    if (ABSL_PREDICT_TRUE(key_valid_ && id >= 0 && id < static_cast<int>(states_.size()) &&
                          states_[id].registered && states_[id].kind == kind)) {
      return absl::OkStatus();
    }
    SLUICE_RETURN_IF_ERROR(CheckState(id, kind));
    return KeyError();
  }
  absl::Status KeyError() const;
  absl::Status CheckDomain(TimerDomain domain) const;

  // key_buf_ = the RocksDB key of the current key's state `id` (+ user key).
  void BuildKey(StateId id, absl::string_view user_key = absl::string_view()) {
    if (key_buf_.size() != state_key_len_) key_buf_.resize(state_key_len_);
    key_buf_[2] = static_cast<char>(id);
    if (!user_key.empty()) key_buf_.append(user_key.data(), user_key.size());
  }
  int64_t ExpiryFor(StateId id) const {
    int64_t ttl = states_[id].ttl_ms;
    return ttl > 0 ? options_.clock->WallMillis() + ttl : 0;
  }

  using Ref = internal::WriteBackCache::Ref;
  // The cache entry of key_buf_ (payload without the expiry prefix), loaded from RocksDB on a
  // miss; expired entries come back deleted (and dirty, so RocksDB drops them too). Valid until
  // the next MaybeEvict().
  // An absent key's new entry gets room for `value_room` value bytes (InsertLoaded()).
  absl::StatusOr<Ref> Lookup(size_t value_room = 0);
  // An expired cached entry `e` becomes deleted (and dirty, so RocksDB drops it too).
  void CheckExpired(Ref e);
  // The entry the last Prefetch(id, keys) found for keys[i] if it is still valid (no entry
  // freed since) and holds keys[i]'s state key; kNone otherwise.
  Ref BatchRef(StateId id, absl::Span<const KeyInGroup> keys, size_t i) const;
  // Caches what RocksDB returned for `key` (of WriteBackCache::HashKey() `hash`; status `s`:
  // OK with the stored value `stored`, or not found) in a new entry (REQUIRES: `key` is not
  // cached). An absent key's entry gets room for a value of `value_room` bytes (a read of
  // absent value state is most often followed by its first write: one block, not two).
  // kUnavailable for a RocksDB error, kDataLoss for a malformed value.
  absl::StatusOr<Ref> InsertLoaded(absl::string_view key, uint64_t hash, const rocksdb::Status& s,
                                   absl::string_view stored, size_t value_room = 0);
  // The room InsertLoaded() gives an absent key of value state `id`.
  size_t ValueRoom(StateId id) const { return states_[id].value_room; }
  // Publishes cache hits and misses (their growth since the last call) and the state size.
  void PublishStats();
  // Sets cache entry `e` to `value` (dirty), expiring as state `id` does.
  void SetEntry(Ref e, StateId id, absl::string_view value);
  // Sets the entry of key_buf_ (no RocksDB read) to `value`, expiring as state `id` does.
  absl::Status WriteValue(StateId id, absl::string_view value);
  absl::Status WriteTombstone();
  // Writes the cache entries `refs` to RocksDB in one WriteBatch (the cache's WriteFn).
  absl::Status WriteEntries(absl::Span<const Ref> refs);
  // Writes the cache entries `refs` (REQUIRES: in key order) into one SST file and ingests it
  // into RocksDB (the cache's WriteFn for SnapshotSync()). On an error RocksDB is unchanged.
  absl::Status IngestEntries(absl::Span<const Ref> refs);
  // The RocksDB value of cache entry `e` (not deleted), in stored_buf_ (valid until the next
  // call).
  rocksdb::Slice StoredValue(Ref e);
  // Writes every entry RocksDB lacks (dirty or pending) in batches; entries stay cached, clean.
  absl::Status FlushDirty() {
    return cache_.FlushDirty([this](absl::Span<const Ref> refs) { return WriteEntries(refs); });
  }
  // Keeps the cache within options_.cache_bytes (incremental eviction, WriteBackCache).
  absl::Status MaybeEvict() {
    return cache_.MakeRoom([this](absl::Span<const Ref> refs) { return EvictEntries(refs); });
  }
  // Writes the dirty (or pending) entries the cache evicts, and those SnapshotSync() moves from
  // the last delta file into RocksDB (the cache's WriteFn for MakeRoom() and Snapshot()): from
  // options_.snapshot_ingest_min_entries on as one ingested SST file (in key order), else in a
  // WriteBatch. Without memtable inserts (a skip-list splice per key, ~30% of the CPU at 10M
  // keys with 64 MiB) and their flush later.
  absl::Status EvictEntries(absl::Span<const Ref> refs);
  // Appends cache entry `e` to delta_ (the cache's DeltaFns::add for SnapshotSync()).
  void AddToDelta(Ref e) {
    if (cache_.deleted(e)) {
      delta_.Delete(cache_.key(e));
    } else {
      delta_.Put(cache_.key(e), cache_.expiry(e), cache_.value(e));
    }
  }
  // Writes the snapshot's delta file (its bytes) into `private_path` durably (the caller
  // syncs the directory) and returns its entry for the handle (kAborted on failure).
  absl::StatusOr<proto::StateFile> UploadDelta(const internal::DeltaBytes& delta,
                                               const fs::path& private_path);
  // Sorts the handle's files by local name (as every handle lists them).
  static void SortFiles(proto::KeyedStateHandle* handle);
  // Identifies what RocksDB holds: its last sequence number (every write), its live files and
  // the MANIFEST's size (every flush, compaction and ingestion). Equal signatures: same content.
  absl::StatusOr<std::string> DbSignature();
  // UploadSnapshot() of a snapshot with a RocksDB checkpoint, and of one reusing the RocksDB
  // files of the last upload (PendingSnapshot::local_checkpoint_dir empty).
  absl::StatusOr<proto::KeyedStateHandle> UploadCheckpoint(const PendingSnapshot& snapshot,
                                                           const std::string& job_checkpoint_dir,
                                                           const std::string& private_dir);
  absl::StatusOr<proto::KeyedStateHandle> UploadReusing(const PendingSnapshot& snapshot,
                                                        const std::string& job_checkpoint_dir,
                                                        const std::string& private_dir);
  proto::KeyedStateHandle NewHandle(const std::string& private_dir) const;

  // Constant after construction.
  const StateBackendOptions options_;
  const std::string db_dir_;
  const std::string backend_id_;
  rocksdb::WriteOptions write_options_;
  rocksdb::ReadOptions read_options_;

  // Task thread only.
  std::unique_ptr<rocksdb::DB> db_;
  std::vector<StateInfo> states_;  // by id
  absl::flat_hash_map<std::string, int> state_ids_;
  bool meta_dirty_ = false;
  std::string current_key_;
  // key_buf_ starts with the current key's state key [kg][id][len][key] (state_key_len_
  // bytes), then what BuildKey() appended.
  size_t state_key_len_ = 0;
  int current_kg_ = -1;
  bool key_valid_ = false;
  // The cache entry of the current key's value state last_id_ found by the last Get() (-1:
  // none), valid while the cache has freed no entry since (cache_.frees() == last_frees_):
  // a Put() of the same state after it needs no second lookup (read-modify-write).
  StateId last_id_ = -1;
  Ref last_ref_ = 0;
  uint64_t last_frees_ = 0;
  internal::WriteBackCache cache_;
  std::vector<Ref> sorted_refs_;  // scratch of WriteEntries()
  internal::DeltaWriter delta_;  // the delta file SnapshotSync() writes (into memory)
  // The buffers of delta files, recycled when their uploads drop them (thread-safe).
  std::shared_ptr<internal::DeltaBytesPool> delta_pool_ =
      std::make_shared<internal::DeltaBytesPool>(options_.delta_bytes);
  uint64_t evicted_writes_at_snapshot_ = 0;  // cache_.evicted_writes() at the last SnapshotSync()
  // What RocksDB held when SnapshotSync() last made a RocksDB checkpoint (DbSignature()), and
  // that snapshot's checkpoint id (-1: none yet).
  std::string db_signature_;
  int64_t signature_checkpoint_id_ = -1;
  // Prefetch(): whether it reads ahead (decided every kPrefetchDecisionReads cache reads from
  // their miss share, the cache's size and batch_reads_), the cache's reads and misses at the
  // last decision, and scratch.
  bool prefetch_on_ = true;
  // GetOfBatch() was called since the last decision (in prefetch_on_'s padding).
  bool batch_reads_ = false;
  // Opened empty and no snapshot has passed its cache step since (cleared once that step
  // succeeds, also when it was skipped or over the cap, whatever fails after it):
  // the next one puts every entry it writes into its delta file (WriteBackCache::Snapshot()'s
  // all_dirty_hot), none into RocksDB, if the cache is within kFirstDeltaMaxBytes and its
  // budget's eighth. (Here, in
  // prefetch_on_'s padding: declared after evicted_writes_at_snapshot_ it moved every later
  // member, the record path's prefetch_* among them, by 8 bytes.)
  bool first_snapshot_all_hot_ = false;
  uint64_t prefetch_reads_ = 0;
  uint64_t prefetch_misses_ = 0;
  std::string prefetch_buf_;
  std::vector<std::pair<size_t, size_t>> prefetch_spans_;  // (offset, length) in prefetch_buf_
  std::vector<uint64_t> prefetch_hashes_;  // WriteBackCache::HashKey() of each span
  std::vector<size_t> prefetch_index_;     // the index in `keys` of each span
  // The offset in prefetch_buf_ of keys[i]'s state key, for each i with a prefetch_refs_ entry
  // (BatchRef() compares the caller's keys with these copies, not with the entries' bytes).
  std::vector<size_t> prefetch_key_at_;
  // The cache entry the last Prefetch() found or inserted for each of its keys (kNone: none,
  // e.g. read by its MultiGet), of state prefetch_id_, valid while cache_.frees() is
  // prefetch_frees_: GetOfBatch() and PutOfBatch() reuse them.
  std::vector<Ref> prefetch_refs_;
  StateId prefetch_id_ = -1;
  uint64_t prefetch_frees_ = 0;
  // cache_.frees() when prefetch_refs_ were complete, before Prefetch()'s own eviction: while
  // it is unchanged, every entry of prefetch_refs_ is live (else BatchRef() checks its key).
  uint64_t prefetch_refs_frees_ = 0;
  std::vector<rocksdb::Slice> prefetch_keys_;
  std::vector<rocksdb::PinnableSlice> prefetch_values_;
  std::vector<rocksdb::Status> prefetch_statuses_;
  uint64_t store_reads_ = 0;  // StoreReadsForTest()
  uint64_t published_hits_ = 0;
  uint64_t published_misses_ = 0;
  uint64_t next_publish_ = kStatsInterval;  // cache reads (hits + misses) when to publish
  rocksdb::WriteBatch batch_;
  // Pending timers per domain. RocksDB holds those of the last WriteTimers() (or restore)
  // except the ones in timer_changes_: true, added since (not stored); false, removed since
  // (stored). A timer added and removed between two snapshots never reaches RocksDB.
  absl::btree_set<Timer, TimerLess> timers_[2];
  absl::flat_hash_map<TimerId, bool, TimerIdHash, TimerIdEq> timer_changes_;
  std::string key_buf_;
  std::string value_buf_;
  std::vector<char> stored_buf_;  // StoredValue()'s
  std::string read_buf_;
  std::string prefix_buf_;

  // Shared between the task thread (Restore) and the uploader.
  absl::Mutex upload_mu_;
  absl::flat_hash_map<std::string, UploadedFile> uploaded_ ABSL_GUARDED_BY(upload_mu_);
  // shared/ directories with a new entry not synced yet (an upload failed in between).
  std::set<std::string> unsynced_shared_dirs_ ABSL_GUARDED_BY(upload_mu_);
  // The RocksDB files of the last successful upload that made a RocksDB checkpoint (all shared),
  // for snapshots that find RocksDB unchanged since (checkpoint_id -1: none; an upload that
  // fails clears it, so the next snapshot makes a RocksDB checkpoint again).
  struct LastUpload {
    int64_t checkpoint_id = -1;
    std::string dir;
    std::vector<proto::StateFile> files;
  };
  LastUpload last_upload_ ABSL_GUARDED_BY(upload_mu_);
};

absl::Status RocksDbBackend::OpenDb(bool create) {
  rocksdb::Options options = MakeDbOptions(options_);
  options.create_if_missing = create;
  // A disposable working copy: no fsync (internal/unsynced_env.h); snapshots are made durable
  // by UploadSnapshot().
  options.env = internal::UnsyncedEnv();
  rocksdb::DB* db = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(options, db_dir_, &db);
  if (!s.ok()) {
    return FromRocks(s, absl::StrCat("cannot open RocksDB in ", db_dir_),
                     create ? absl::StatusCode::kUnavailable : absl::StatusCode::kDataLoss);
  }
  db_.reset(db);
  return absl::OkStatus();
}

absl::StatusOr<int> RocksDbBackend::BindState(const std::string& name, StateKind kind,
                                              int wanted_id) {
  auto it = state_ids_.find(name);
  if (it != state_ids_.end()) {
    if (states_[it->second].kind != kind) {
      return absl::DataLossError(absl::StrCat("state '", name, "' restored with two kinds"));
    }
    return it->second;
  }
  int id = wanted_id;
  if (id < 0 || (id < static_cast<int>(states_.size()) && states_[id].in_use)) {
    id = static_cast<int>(states_.size());
  }
  if (id >= internal::kMaxStates) {
    return absl::DataLossError(absl::StrCat("too many states restoring '", name, "'"));
  }
  if (id >= static_cast<int>(states_.size())) states_.resize(id + 1);
  states_[id].name = name;
  states_[id].kind = kind;
  states_[id].in_use = true;
  state_ids_[name] = id;
  meta_dirty_ = true;
  return id;
}

StateId RocksDbBackend::RegisterState(const std::string& name, StateKind kind, int64_t ttl_ms) {
  auto it = state_ids_.find(name);
  int id;
  if (it != state_ids_.end()) {
    id = it->second;
    if (states_[id].kind != kind) return -1;  // every call with -1 fails kInvalidArgument
  } else {
    if (states_.size() >= static_cast<size_t>(internal::kMaxStates)) return -1;
    id = static_cast<int>(states_.size());
    states_.emplace_back();
    states_[id].name = name;
    states_[id].kind = kind;
    states_[id].in_use = true;
    state_ids_[name] = id;
    meta_dirty_ = true;
  }
  states_[id].registered = true;
  states_[id].ttl_ms = std::max<int64_t>(ttl_ms, 0);
  return id;
}

absl::Status RocksDbBackend::CheckState(StateId id, StateKind kind) const {
  if (id < 0 || id >= static_cast<int>(states_.size()) || !states_[id].registered) {
    return absl::InvalidArgumentError(absl::StrCat(options_.operator_id, ": unknown state id ", id));
  }
  if (states_[id].kind != kind) {
    return absl::InvalidArgumentError(absl::StrCat(options_.operator_id, ": state '",
                                                   states_[id].name, "' has another kind"));
  }
  return absl::OkStatus();
}

absl::Status RocksDbBackend::KeyError() const {
  return absl::InvalidArgumentError(absl::StrCat(
      options_.operator_id, ": current key group ", current_kg_, " is not in [",
      options_.range.first, ", ", options_.range.last, "]"));
}

absl::Status RocksDbBackend::CheckDomain(TimerDomain domain) const {
  int d = static_cast<int>(domain);
  if (d != 0 && d != 1) return absl::InvalidArgumentError("bad timer domain");
  if (!key_valid_) return KeyError();
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// Cache

void RocksDbBackend::PublishStats() {
  if (options_.cache_hits != nullptr) options_.cache_hits->Add(cache_.hits() - published_hits_);
  if (options_.cache_misses != nullptr) {
    options_.cache_misses->Add(cache_.misses() - published_misses_);
  }
  published_hits_ = cache_.hits();
  published_misses_ = cache_.misses();
  next_publish_ = published_hits_ + published_misses_ + kStatsInterval;
  if (options_.size_bytes == nullptr || db_ == nullptr) return;
  uint64_t sst = 0;
  uint64_t memtables = 0;
  if (!db_->GetIntProperty(rocksdb::DB::Properties::kLiveSstFilesSize, &sst)) sst = 0;
  if (!db_->GetIntProperty(rocksdb::DB::Properties::kCurSizeAllMemTables, &memtables)) memtables = 0;
  options_.size_bytes->Set(static_cast<double>(sst + memtables + cache_.bytes()));
}

absl::StatusOr<RocksDbBackend::Ref> RocksDbBackend::Lookup(size_t value_room) {
  if (cache_.hits() + cache_.misses() >= next_publish_) PublishStats();
  const uint64_t hash = internal::WriteBackCache::HashKey(key_buf_);
  Ref e = cache_.Find(key_buf_, hash);
  if (e == internal::WriteBackCache::kNone && !cache_.MayBeInStoreHashed(hash)) {
    absl::StatusOr<Ref> absent = InsertLoaded(key_buf_, hash, rocksdb::Status::NotFound(),
                                              absl::string_view(), value_room);
    if (absent.ok()) cache_.NoteFilterMiss(*absent);
    return absent;
  }
  if (e != internal::WriteBackCache::kNone) {
    CheckExpired(e);
    return e;
  }
  ++store_reads_;
  rocksdb::Status s = db_->Get(read_options_, ToSlice(key_buf_), &read_buf_);
  return InsertLoaded(key_buf_, hash, s, read_buf_, value_room);
}

void RocksDbBackend::CheckExpired(Ref e) {
  const int64_t expiry = cache_.expiry(e);
  if (!cache_.deleted(e) && expiry != 0 && expiry <= options_.clock->WallMillis()) {
    cache_.SetValue(e, absl::string_view());
    cache_.set_deleted(e, true);
    cache_.set_expiry(e, 0);
    cache_.MarkDirty(e);
  }
}

absl::StatusOr<RocksDbBackend::Ref> RocksDbBackend::InsertLoaded(absl::string_view key,
                                                                 uint64_t hash,
                                                                 const rocksdb::Status& s,
                                                                 absl::string_view stored,
                                                                 size_t value_room) {
  if (!s.ok() && !s.IsNotFound()) {
    return FromRocks(s, absl::StrCat(options_.operator_id, ": state read"),
                     absl::StatusCode::kUnavailable);
  }
  int64_t expiry = 0;
  absl::string_view payload;
  if (s.ok() && !internal::DecodeStoredValue(stored, &expiry, &payload)) {
    return options_.origin.DataLoss("malformed state value");
  }
  Ref e = cache_.Insert(key, hash, s.ok() ? 0 : value_room);  // deleted, clean
  cache_.set_in_db(e, s.ok());
  if (s.ok()) {
    if (expiry != 0 && expiry <= options_.clock->WallMillis()) {
      cache_.MarkDirty(e);  // lazily deletes it from RocksDB
    } else {
      cache_.SetValue(e, payload);
      cache_.set_expiry(e, expiry);
      cache_.set_deleted(e, false);
    }
  }
  return e;
}

absl::Status RocksDbBackend::Prefetch(StateId id, absl::Span<const KeyInGroup> keys) {
  SLUICE_RETURN_IF_ERROR(CheckState(id, StateKind::kValue));
  // Decide from the reads since the last decision whether reading ahead pays: not while
  // nearly every read hits a cache small enough for the CPU's caches or a caller that reads
  // with Get() (then the read-ahead would only add its pass over the batch's keys).
  const uint64_t reads = cache_.hits() + cache_.misses();
  if (reads - prefetch_reads_ >= kPrefetchDecisionReads) {
    const uint64_t misses = cache_.misses() - prefetch_misses_;
    prefetch_on_ = misses * kPrefetchMinMissShare >= reads - prefetch_reads_ ||
                   (cache_.bytes() >= kPrefetchMinCacheBytes && batch_reads_);
    batch_reads_ = false;
    prefetch_reads_ = reads;
    prefetch_misses_ = cache_.misses();
  }
  prefetch_refs_.clear();
  if (!prefetch_on_ || keys.empty()) return absl::OkStatus();
  prefetch_refs_.assign(keys.size(), internal::WriteBackCache::kNone);
  prefetch_key_at_.resize(keys.size());
  prefetch_id_ = id;
  // The state keys, one after another in prefetch_buf_; the memory their cache and filter
  // lookups read is loaded for all of them before the first lookup.
  prefetch_buf_.clear();
  prefetch_spans_.clear();
  prefetch_hashes_.clear();
  prefetch_index_.clear();
  for (size_t k_index = 0; k_index < keys.size(); ++k_index) {
    const KeyInGroup& k = keys[k_index];
    if (!options_.range.Contains(k.key_group)) continue;
    prefetch_index_.push_back(k_index);
    const size_t start = prefetch_buf_.size();
    prefetch_key_at_[k_index] = start;
    char header[8];
    const size_t header_len = internal::EncodeStateKeyHeader(
        header, k.key_group, id, static_cast<uint32_t>(k.key.size()));
    prefetch_buf_.append(header, header_len);
    prefetch_buf_.append(k.key.data(), k.key.size());
    prefetch_spans_.emplace_back(start, prefetch_buf_.size() - start);
  }
  for (const auto& [start, len] : prefetch_spans_) {
    const absl::string_view state_key(prefetch_buf_.data() + start, len);
    prefetch_hashes_.push_back(internal::WriteBackCache::HashKey(state_key));
    cache_.PrefetchKey(prefetch_hashes_.back());
  }
  // Those the cache lacks. A key RocksDB never received is cached as absent here (its Get()
  // then needs neither the filter nor RocksDB); the others are read below. The cells are
  // loading; each key's slot is loaded 16 keys ahead of its lookup and its block 8 keys ahead
  // (from the slot by then loaded), so the lookups overlap those misses too.
  size_t kept = 0;
  const size_t spans = prefetch_spans_.size();
  constexpr size_t kSlotAhead = 16;
  constexpr size_t kEntryAhead = 8;
  for (size_t i = 0; i < std::min(spans, kSlotAhead); ++i) {
    cache_.PrefetchSlotOf(prefetch_hashes_[i]);
  }
  for (size_t i = 0; i < spans; ++i) {
    if (i + kSlotAhead < spans) cache_.PrefetchSlotOf(prefetch_hashes_[i + kSlotAhead]);
    if (i + kEntryAhead < spans) cache_.PrefetchEntryOf(prefetch_hashes_[i + kEntryAhead]);
    const absl::string_view state_key(prefetch_buf_.data() + prefetch_spans_[i].first,
                                      prefetch_spans_[i].second);
    const uint64_t hash = prefetch_hashes_[i];
    const Ref cached = cache_.Peek(state_key, hash);
    if (cached != internal::WriteBackCache::kNone) {
      prefetch_refs_[prefetch_index_[i]] = cached;
      continue;
    }
    if (!cache_.MayBeInStoreHashed(hash)) {
      SLUICE_ASSIGN_OR_RETURN(Ref e, InsertLoaded(state_key, hash, rocksdb::Status::NotFound(),
                                                  absl::string_view(), ValueRoom(id)));
      cache_.MarkPrefetched(e);
      cache_.NoteFilterMiss(e);
      prefetch_refs_[prefetch_index_[i]] = e;
      continue;
    }
    prefetch_spans_[kept++] = prefetch_spans_[i];
  }
  prefetch_spans_.resize(kept);
  if (prefetch_spans_.empty()) {
    prefetch_refs_frees_ = cache_.frees();
    SLUICE_RETURN_IF_ERROR(MaybeEvict());
    prefetch_frees_ = cache_.frees();
    return absl::OkStatus();
  }
  // MultiGet wants its keys sorted (it then shares filter, index and block work among them).
  prefetch_keys_.clear();
  for (const auto& [start, len] : prefetch_spans_) {
    prefetch_keys_.emplace_back(prefetch_buf_.data() + start, len);
  }
  std::sort(prefetch_keys_.begin(), prefetch_keys_.end(),
            [](const rocksdb::Slice& a, const rocksdb::Slice& b) { return a.compare(b) < 0; });
  prefetch_keys_.erase(std::unique(prefetch_keys_.begin(), prefetch_keys_.end()),
                       prefetch_keys_.end());
  const size_t n = prefetch_keys_.size();
  if (prefetch_values_.size() < n) prefetch_values_.resize(n);
  prefetch_statuses_.assign(n, rocksdb::Status());
  store_reads_ += n;
  db_->MultiGet(read_options_, db_->DefaultColumnFamily(), n, prefetch_keys_.data(),
                prefetch_values_.data(), prefetch_statuses_.data(), /*sorted_input=*/true);
  absl::Status status;
  for (size_t i = 0; i < n; ++i) {
    if (status.ok()) {
      const absl::string_view key = ToView(prefetch_keys_[i]);
      absl::StatusOr<Ref> e =
          InsertLoaded(key, internal::WriteBackCache::HashKey(key), prefetch_statuses_[i],
                       ToView(prefetch_values_[i]), ValueRoom(id));
      if (e.ok()) {
        cache_.MarkPrefetched(*e);
      } else {
        status = e.status();
      }
    }
    prefetch_values_[i].Reset();
  }
  SLUICE_RETURN_IF_ERROR(status);
  prefetch_refs_frees_ = cache_.frees();
  // Back within the budget (the loaded entries are clean and referenced: the hand drops
  // older unreferenced ones first).
  SLUICE_RETURN_IF_ERROR(MaybeEvict());
  prefetch_frees_ = cache_.frees();
  return absl::OkStatus();
}

RocksDbBackend::Ref RocksDbBackend::BatchRef(StateId id, absl::Span<const KeyInGroup> keys,
                                             size_t i) const {
  if (id != prefetch_id_ || i >= prefetch_refs_.size() || prefetch_refs_.size() != keys.size() ||
      cache_.frees() != prefetch_frees_) {
    return internal::WriteBackCache::kNone;
  }
  const Ref e = prefetch_refs_[i];
  if (e == internal::WriteBackCache::kNone) return e;
  // Its key must be keys[i]'s (the caller's span is the one Prefetch() saw).
  const absl::string_view key = keys[i].key;
  char header[8];
  const size_t header_len = internal::EncodeStateKeyHeader(header, keys[i].key_group, id,
                                                           static_cast<uint32_t>(key.size()));
  absl::string_view stored;
  if (prefetch_frees_ == prefetch_refs_frees_) {
    // No entry freed since Prefetch() took e for the state key it copied into prefetch_buf_:
    // compared with that copy, which a batch reads in order (the entry's own bytes are
    // scattered: comparing them was a cache miss per key, ~12% of the task thread at 10M keys
    // with 64 MiB per worker).
    const size_t at = prefetch_key_at_[i];
    if (at + header_len + key.size() > prefetch_buf_.size()) {
      return internal::WriteBackCache::kNone;
    }
    stored = absl::string_view(prefetch_buf_.data() + at, header_len + key.size());
  } else {
    // Prefetch()'s eviction freed entries, maybe e: its slot's own key.
    stored = cache_.key(e);
  }
  if (stored.size() != header_len + key.size() ||
      stored.substr(0, header_len) != absl::string_view(header, header_len) ||
      stored.substr(header_len) != key) {
    return internal::WriteBackCache::kNone;
  }
  return e;
}

absl::StatusOr<bool> RocksDbBackend::GetOfBatch(StateId id, absl::Span<const KeyInGroup> keys,
                                                size_t i, std::string* value) {
  batch_reads_ = true;
  const Ref e = BatchRef(id, keys, i);
  if (e == internal::WriteBackCache::kNone) {
    SetCurrentKey(keys[i].key, keys[i].key_group);
    return Get(id, value);
  }
  key_valid_ = false;  // the current key is unspecified now
  last_id_ = -1;
  if (cache_.hits() + cache_.misses() >= next_publish_) PublishStats();
  cache_.Touch(e);
  CheckExpired(e);
  if (cache_.deleted(e)) return false;
  const absl::string_view v = cache_.value(e);
  value->assign(v.data(), v.size());
  return true;
}

absl::Status RocksDbBackend::PutOfBatch(StateId id, absl::Span<const KeyInGroup> keys, size_t i,
                                        absl::string_view value) {
  const Ref e = BatchRef(id, keys, i);
  if (e == internal::WriteBackCache::kNone) {
    SetCurrentKey(keys[i].key, keys[i].key_group);
    return Put(id, value);
  }
  key_valid_ = false;
  last_id_ = -1;
  cache_.Reference(e);  // as FindOrInsert() does
  SetEntry(e, id, value);
  return MaybeEvict();
}

void RocksDbBackend::SetEntry(Ref e, StateId id, absl::string_view value) {
  if (states_[id].ttl_ms == 0) {  // with TTL the expiry prefix moves the key anyway
    states_[id].value_room = static_cast<uint32_t>(
        std::min<size_t>(value.size(), internal::WriteBackCache::kMaxRoom));
  }
  cache_.SetValue(e, value);
  cache_.set_deleted(e, false);
  cache_.set_expiry(e, ExpiryFor(id));
  cache_.MarkDirty(e);
}

absl::Status RocksDbBackend::WriteValue(StateId id, absl::string_view value) {
  SetEntry(cache_.FindOrInsert(key_buf_), id, value);
  return MaybeEvict();
}

absl::Status RocksDbBackend::WriteTombstone() {
  Ref e = cache_.FindOrInsert(key_buf_);
  cache_.SetValue(e, absl::string_view());
  cache_.set_deleted(e, true);
  cache_.set_expiry(e, 0);
  if (cache_.in_db(e)) {
    cache_.MarkDirty(e);
  } else {
    cache_.MarkClean(e);  // never reached RocksDB
  }
  return MaybeEvict();
}

absl::Status RocksDbBackend::WriteEntries(absl::Span<const Ref> refs) {
  // In key order: the memtable's skip list then finds each insertion point from the last one
  // (its splice) instead of from the top.
  sorted_refs_.assign(refs.begin(), refs.end());
  auto key_less = [this](Ref a, Ref b) { return cache_.key(a) < cache_.key(b); };
  // FlushDirty() passes its batches already sorted.
  if (!std::is_sorted(sorted_refs_.begin(), sorted_refs_.end(), key_less)) {
    std::sort(sorted_refs_.begin(), sorted_refs_.end(), key_less);
  }
  batch_.Clear();
  for (Ref e : sorted_refs_) {
    rocksdb::Status s;
    s = cache_.deleted(e) ? batch_.Delete(ToSlice(cache_.key(e)))
                          : batch_.Put(ToSlice(cache_.key(e)), StoredValue(e));
    if (!s.ok()) return FromRocks(s, "state write batch");
  }
  rocksdb::Status s = db_->Write(write_options_, &batch_);
  if (!s.ok()) {
    return FromRocks(s, absl::StrCat(options_.operator_id, ": writing state to ", db_dir_),
                     absl::StatusCode::kUnavailable);
  }
  return absl::OkStatus();
}

absl::Status RocksDbBackend::EvictEntries(absl::Span<const Ref> refs) {
  if (refs.size() < options_.snapshot_ingest_min_entries) return WriteEntries(refs);
  return IngestEntries(refs);  // the cache passes them in key order
}

rocksdb::Slice RocksDbBackend::StoredValue(Ref e) {
  // AppendStoredValue()'s layout written with plain stores into a buffer that only grows (an
  // eviction calls this once per entry: std::string's appends are calls, not inlined).
  const absl::string_view payload = cache_.value(e);
  const size_t size = internal::kExpiryBytes + payload.size();
  if (stored_buf_.size() < size) stored_buf_.resize(std::max(size, 2 * stored_buf_.size()));
  internal::EncodeFixed64BE(stored_buf_.data(), static_cast<uint64_t>(cache_.expiry(e)));
  std::memcpy(stored_buf_.data() + internal::kExpiryBytes, payload.data(), payload.size());
  return rocksdb::Slice(stored_buf_.data(), size);
}

absl::Status RocksDbBackend::IngestEntries(absl::Span<const Ref> refs) {
  const std::string path = (fs::path(options_.local_dir) / "ingest.sst").string();
  // An ingested file is a hard link shared with the DB (and, after an upload, a checkpoint):
  // the writer below truncates its path, so a name left by an earlier failed removal must go
  // first, never be opened.
  std::error_code remove_ec;
  fs::remove(path, remove_ec);
  if (remove_ec) {
    return absl::UnavailableError(absl::StrCat(options_.operator_id, ": removing ", path,
                                               " before ingesting state: ",
                                               remove_ec.message()));
  }
  // The DB's options: its comparator, table format (bloom filters) and Env. The written pages
  // stay in the page cache: UploadSnapshot() copies the file next, and compaction reads it.
  rocksdb::SstFileWriter writer(rocksdb::EnvOptions(), MakeIngestOptions(db_->GetOptions()),
                                /*column_family=*/nullptr, /*invalidate_page_cache=*/false);
  rocksdb::Status s = writer.Open(path);
  for (size_t i = 0; s.ok() && i < refs.size(); ++i) {
    // The refs come in key order, their entries scattered in memory: load each one's slot and
    // then its bytes a few entries ahead.
    if (i + 16 < refs.size()) cache_.PrefetchSlot(refs[i + 16]);
    if (i + 8 < refs.size()) cache_.PrefetchEntry(refs[i + 8]);
    const Ref e = refs[i];
    s = cache_.deleted(e) ? writer.Delete(ToSlice(cache_.key(e)))
                          : writer.Put(ToSlice(cache_.key(e)), StoredValue(e));
  }
  if (s.ok()) s = writer.Finish();
  if (s.ok()) {
    rocksdb::IngestExternalFileOptions ingest;
    ingest.move_files = true;           // a hard link, no copy
    ingest.write_global_seqno = false;  // the sequence number lives in the MANIFEST only
    // Overlapping memtable entries (older: written by evictions) are flushed first.
    ingest.allow_blocking_flush = true;
    s = db_->IngestExternalFile({path}, ingest);
  }
  std::error_code ec;
  fs::remove(path, ec);  // moved on success; a partial file on failure
  if (!s.ok()) {
    return FromRocks(s, absl::StrCat(options_.operator_id, ": ingesting state into ", db_dir_),
                     absl::StatusCode::kAborted);
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// Value, list and map state

absl::StatusOr<bool> RocksDbBackend::Get(StateId id, std::string* value) {
  SLUICE_RETURN_IF_ERROR(CheckAccess(id, StateKind::kValue));
  // Room is made before the lookup (the cache may exceed its budget by this one entry until
  // the next access), so the entry stays valid for a Put() that follows.
  last_id_ = -1;
  SLUICE_RETURN_IF_ERROR(MaybeEvict());
  BuildKey(id);
  SLUICE_ASSIGN_OR_RETURN(Ref e, Lookup(ValueRoom(id)));
  bool found = !cache_.deleted(e);
  if (found) {
    absl::string_view v = cache_.value(e);
    value->assign(v.data(), v.size());
  }
  last_id_ = id;
  last_ref_ = e;
  last_frees_ = cache_.frees();
  return found;
}

absl::Status RocksDbBackend::Put(StateId id, absl::string_view value) {
  SLUICE_RETURN_IF_ERROR(CheckAccess(id, StateKind::kValue));
  if (id == last_id_ && cache_.frees() == last_frees_) {
    SetEntry(last_ref_, id, value);  // read-modify-write: the Get() found the entry
    return MaybeEvict();
  }
  BuildKey(id);
  return WriteValue(id, value);
}

absl::Status RocksDbBackend::Delete(StateId id) {
  SLUICE_RETURN_IF_ERROR(CheckAccess(id, StateKind::kValue));
  BuildKey(id);
  return WriteTombstone();
}

absl::Status RocksDbBackend::Append(StateId id, absl::string_view element) {
  SLUICE_RETURN_IF_ERROR(CheckAccess(id, StateKind::kList));
  BuildKey(id);
  SLUICE_ASSIGN_OR_RETURN(Ref e, Lookup());
  if (cache_.deleted(e)) {
    cache_.SetValue(e, absl::string_view());
    cache_.set_deleted(e, false);
  }
  value_buf_.clear();
  internal::AppendListElement(&value_buf_, element);
  cache_.AppendValue(e, value_buf_);
  cache_.set_expiry(e, ExpiryFor(id));
  cache_.MarkDirty(e);
  return MaybeEvict();
}

absl::Status RocksDbBackend::GetList(StateId id, std::vector<std::string>* out) {
  SLUICE_RETURN_IF_ERROR(CheckAccess(id, StateKind::kList));
  BuildKey(id);
  SLUICE_ASSIGN_OR_RETURN(Ref e, Lookup());
  if (cache_.deleted(e)) {
    out->clear();
  } else if (!internal::DecodeList(cache_.value(e), out)) {
    out->clear();
    return options_.origin.DataLoss(absl::StrCat("malformed list state '",
                                            states_[id].name, "'"));
  }
  return MaybeEvict();
}

absl::Status RocksDbBackend::ClearList(StateId id) {
  SLUICE_RETURN_IF_ERROR(CheckAccess(id, StateKind::kList));
  BuildKey(id);
  return WriteTombstone();
}

absl::StatusOr<bool> RocksDbBackend::MapGet(StateId id, absl::string_view user_key,
                                            std::string* value) {
  SLUICE_RETURN_IF_ERROR(CheckAccess(id, StateKind::kMap));
  BuildKey(id, user_key);
  SLUICE_ASSIGN_OR_RETURN(Ref e, Lookup());
  bool found = !cache_.deleted(e);
  if (found) {
    absl::string_view v = cache_.value(e);
    value->assign(v.data(), v.size());
  }
  SLUICE_RETURN_IF_ERROR(MaybeEvict());
  return found;
}

absl::Status RocksDbBackend::MapPut(StateId id, absl::string_view user_key,
                                    absl::string_view value) {
  SLUICE_RETURN_IF_ERROR(CheckAccess(id, StateKind::kMap));
  BuildKey(id, user_key);
  return WriteValue(id, value);
}

absl::Status RocksDbBackend::MapRemove(StateId id, absl::string_view user_key) {
  SLUICE_RETURN_IF_ERROR(CheckAccess(id, StateKind::kMap));
  BuildKey(id, user_key);
  return WriteTombstone();
}

absl::Status RocksDbBackend::MapEntries(StateId id,
                                        std::vector<std::pair<std::string, std::string>>* out) {
  out->clear();
  SLUICE_RETURN_IF_ERROR(CheckAccess(id, StateKind::kMap));
  SLUICE_RETURN_IF_ERROR(FlushDirty());  // RocksDB now agrees with the cache
  BuildKey(id);
  const int64_t now = options_.clock->WallMillis();
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(read_options_));
  for (it->Seek(ToSlice(key_buf_)); it->Valid() && absl::StartsWith(ToView(it->key()), key_buf_);
       it->Next()) {
    int64_t expiry;
    absl::string_view payload;
    if (!internal::DecodeStoredValue(ToView(it->value()), &expiry, &payload)) {
      return options_.origin.DataLoss(absl::StrCat("malformed map state '",
                                              states_[id].name, "'"));
    }
    if (expiry != 0 && expiry <= now) continue;
    absl::string_view user_key = ToView(it->key()).substr(key_buf_.size());
    out->emplace_back(std::string(user_key), std::string(payload));
  }
  return FromRocks(it->status(), absl::StrCat(options_.operator_id, ": reading map state"),
                   absl::StatusCode::kUnavailable);
}

absl::Status RocksDbBackend::ForEachKey(
    StateId id, const std::function<absl::Status(absl::string_view key)>& fn) {
  SLUICE_RETURN_IF_ERROR(CheckState(id, StateKind::kValue));
  SLUICE_RETURN_IF_ERROR(FlushDirty());
  const int64_t now = options_.clock->WallMillis();
  // The iterator reads an implicit snapshot, so `fn` may change state as it goes; keys it
  // deletes before we reach them are skipped through the cache.
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(read_options_));
  internal::DecodedStateKey decoded;
  for (int kg = options_.range.first; kg <= options_.range.last; ++kg) {
    prefix_buf_.clear();
    internal::AppendStatePrefix(&prefix_buf_, kg, static_cast<uint8_t>(id));
    for (it->Seek(ToSlice(prefix_buf_));
         it->Valid() && absl::StartsWith(ToView(it->key()), prefix_buf_); it->Next()) {
      int64_t expiry;
      absl::string_view payload;
      if (!internal::DecodeStateKey(ToView(it->key()), &decoded) ||
          !internal::DecodeStoredValue(ToView(it->value()), &expiry, &payload)) {
        return options_.origin.DataLoss(absl::StrCat("malformed value state '",
                                                states_[id].name, "'"));
      }
      if (expiry != 0 && expiry <= now) continue;
      const Ref cached = cache_.Peek(ToView(it->key()));
      if (cached != internal::WriteBackCache::kNone && cache_.deleted(cached)) continue;
      SetCurrentKey(decoded.key, kg);
      SLUICE_RETURN_IF_ERROR(fn(current_key_));
    }
  }
  return FromRocks(it->status(), absl::StrCat(options_.operator_id, ": iterating keys"),
                   absl::StatusCode::kUnavailable);
}

// ---------------------------------------------------------------------------------------------
// Timers

absl::Status RocksDbBackend::RegisterTimer(TimerDomain domain, int64_t timestamp) {
  SLUICE_RETURN_IF_ERROR(CheckDomain(domain));
  auto& timers = timers_[static_cast<int>(domain)];
  const TimerRef ref{timestamp, current_kg_, current_key_};
  if (timers.find(ref) == timers.end()) {
    timers.insert(Timer{timestamp, current_kg_, current_key_});
    NoteTimerChange({static_cast<int>(domain), timestamp, current_kg_, current_key_}, true);
  }
  return absl::OkStatus();
}

absl::Status RocksDbBackend::DeleteTimer(TimerDomain domain, int64_t timestamp) {
  SLUICE_RETURN_IF_ERROR(CheckDomain(domain));
  auto& timers = timers_[static_cast<int>(domain)];
  auto it = timers.find(TimerRef{timestamp, current_kg_, current_key_});
  if (it != timers.end()) {
    timers.erase(it);
    NoteTimerChange({static_cast<int>(domain), timestamp, current_kg_, current_key_}, false);
  }
  return absl::OkStatus();
}

absl::Status RocksDbBackend::FireTimers(TimerDomain domain, int64_t up_to,
                                        const std::function<absl::Status(int64_t)>& fn) {
  int d = static_cast<int>(domain);
  if (d != 0 && d != 1) return absl::InvalidArgumentError("bad timer domain");
  auto& timers = timers_[d];
  // Timers the callbacks register (or delete) take effect in the set at once, so they fire in
  // timestamp order with the rest.
  while (!timers.empty() && timers.begin()->timestamp <= up_to) {
    auto it = timers.begin();
    const int64_t timestamp = it->timestamp;
    SetCurrentKey(it->key, it->key_group);
    timers.erase(it);
    NoteTimerChange({d, timestamp, current_kg_, current_key_}, false);
    SLUICE_RETURN_IF_ERROR(fn(timestamp));
  }
  return absl::OkStatus();
}

absl::Status RocksDbBackend::WriteTimers() {
  if (timer_changes_.empty()) return absl::OkStatus();
  // In key order (the memtable inserts each from the last one's splice).
  std::vector<std::pair<std::string, bool>> writes;
  writes.reserve(timer_changes_.size());
  for (const auto& [t, present] : timer_changes_) {
    std::string key;
    internal::AppendTimerKey(&key, t.key_group, t.domain, t.timestamp, t.key);
    writes.emplace_back(std::move(key), present);
  }
  std::sort(writes.begin(), writes.end());
  rocksdb::WriteBatch batch;
  rocksdb::Status s;
  auto write = [&]() {
    if (s.ok()) s = db_->Write(write_options_, &batch);
    batch.Clear();
  };
  for (const auto& [key, present] : writes) {
    s = present ? batch.Put(ToSlice(key), rocksdb::Slice()) : batch.Delete(ToSlice(key));
    if (!s.ok()) break;
    if (batch.GetDataSize() >= kRestoreBatchBytes) write();
  }
  write();
  if (!s.ok()) {
    // Puts and deletes repeat safely: the changes stay for the next attempt.
    return FromRocks(s, absl::StrCat(options_.operator_id, ": writing timers"),
                     absl::StatusCode::kAborted);
  }
  timer_changes_.clear();
  return absl::OkStatus();
}

absl::Status RocksDbBackend::LoadTimers() {
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(read_options_));
  internal::DecodedTimerKey decoded;
  for (int kg = options_.range.first; kg <= options_.range.last; ++kg) {
    prefix_buf_.clear();
    internal::AppendStatePrefix(&prefix_buf_, kg, kTimerStateId);
    for (it->Seek(ToSlice(prefix_buf_));
         it->Valid() && absl::StartsWith(ToView(it->key()), prefix_buf_); it->Next()) {
      if (!internal::DecodeTimerKey(ToView(it->key()), &decoded) || decoded.domain > 1) {
        return absl::DataLossError("malformed timer");  // named by Restore()
      }
      timers_[decoded.domain].insert(
          Timer{decoded.timestamp, kg, std::string(decoded.key)});
    }
  }
  timer_changes_.clear();
  return FromRocks(it->status(), absl::StrCat(options_.operator_id, ": loading timers"),
                   absl::StatusCode::kDataLoss);
}

// ---------------------------------------------------------------------------------------------
// Snapshots

absl::Status RocksDbBackend::WriteMeta() {
  if (!meta_dirty_) return absl::OkStatus();
  rocksdb::WriteBatch batch;
  for (size_t id = 0; id < states_.size(); ++id) {
    if (!states_[id].in_use) continue;
    std::string key(internal::kMetaPrefix);
    key += states_[id].name;
    char value[2] = {static_cast<char>(id), static_cast<char>(states_[id].kind)};
    rocksdb::Status s = batch.Put(key, rocksdb::Slice(value, 2));
    if (!s.ok()) return FromRocks(s, "state metadata batch");
  }
  rocksdb::Status s = db_->Write(write_options_, &batch);
  if (!s.ok()) return FromRocks(s, "writing state metadata", absl::StatusCode::kUnavailable);
  meta_dirty_ = false;
  return absl::OkStatus();
}

absl::StatusOr<proto::StateFile> RocksDbBackend::UploadDelta(const internal::DeltaBytes& delta,
                                                             const fs::path& private_path) {
  const std::string name(internal::kDeltaFileName);
  absl::Status s = internal::WriteDeltaFile(delta, (private_path / name).string());
  if (!s.ok()) return absl::AbortedError(absl::StrCat(options_.operator_id, ": ", s.message()));
  proto::StateFile f;
  f.set_local_name(name);
  f.set_name(name);
  f.set_shared(false);
  f.set_size(static_cast<int64_t>(delta.size()));
  return f;
}

void RocksDbBackend::SortFiles(proto::KeyedStateHandle* handle) {
  std::sort(handle->mutable_files()->begin(), handle->mutable_files()->end(),
            [](const proto::StateFile& a, const proto::StateFile& b) {
              return a.local_name() < b.local_name();
            });
}

absl::StatusOr<std::string> RocksDbBackend::DbSignature() {
  std::vector<std::string> files;
  uint64_t manifest_size = 0;
  rocksdb::Status s = db_->GetLiveFiles(files, &manifest_size, /*flush_memtable=*/false);
  if (!s.ok()) return FromRocks(s, "listing live files", absl::StatusCode::kAborted);
  std::sort(files.begin(), files.end());
  std::string signature = absl::StrCat(db_->GetLatestSequenceNumber(), " ", manifest_size);
  for (const std::string& f : files) absl::StrAppend(&signature, " ", f);
  return signature;
}

absl::StatusOr<PendingSnapshot> RocksDbBackend::SnapshotSync(int64_t checkpoint_id) {
  SLUICE_RETURN_IF_ERROR(WriteMeta());
  // Hot entries (changed in this interval and the one before) go into the delta file, moved
  // into the checkpoint below; the others RocksDB lacks (new, changed after a quiet interval,
  // or in the last delta and unchanged since) into RocksDB (as one ingested SST file from
  // snapshot_ingest_min_entries on, as evictions do). Hot entries so stay out of RocksDB: no
  // memtable inserts, ingested files or compaction of them at every interval.
  // The first snapshot of a backend opened empty takes every changed entry for hot (none has
  // a history yet; at 100K keys each was ingested into RocksDB there, ~17 ms of the task thread
  // per 50K keys, and never written to RocksDB again), while its delta stays small
  // (min(kFirstDeltaMaxBytes, the cache's budget / 8)).
  // But while the cache evicts dirty entries (its working set does not fit), entries written
  // into a delta file would soon be written again by eviction: then every entry RocksDB lacks
  // goes into RocksDB, and there is no delta file.
  std::shared_ptr<internal::DeltaBytes> delta;
  const bool evicting = cache_.evicted_writes() != evicted_writes_at_snapshot_;
  evicted_writes_at_snapshot_ = cache_.evicted_writes();
  auto to_store = [this](absl::Span<const Ref> refs) { return EvictEntries(refs); };
  if (evicting) {
    SLUICE_RETURN_IF_ERROR(cache_.FlushDirty(to_store, std::numeric_limits<size_t>::max()));
    cache_.ForgetSnapped();  // an entry changed next is not hot: this snapshot wrote no delta
  } else {
    // The delta is encoded into memory during the cache's one pass over its dirty list (a
    // buffer recycled from an earlier upload); the upload writes the file.
    std::shared_ptr<internal::DeltaBytes> bytes = delta_pool_->Take();
    delta_.Open(bytes.get());
    SLUICE_RETURN_IF_ERROR(cache_.Snapshot(
        to_store, {[this](Ref e) { AddToDelta(e); },
                   [&]() -> absl::Status {
                     absl::Status s = delta_.Finish();
                     if (!s.ok()) {
                       return absl::AbortedError(absl::StrCat(options_.operator_id, ": ", s.message()));
                     }
                     delta = std::move(bytes);
                     return absl::OkStatus();
                   }},
        first_snapshot_all_hot_ &&
            cache_.bytes() <= std::min(kFirstDeltaMaxBytes, options_.cache_bytes / 8)));
  }
  first_snapshot_all_hot_ = false;
  SLUICE_RETURN_IF_ERROR(WriteTimers());
  rocksdb::FlushOptions flush_options;
  flush_options.wait = true;
  // Now, even if L0 is past its slowdown trigger: else the flush (and the task thread) waits
  // for compactions to bring L0 down first. Only this thread writes, and it is here.
  flush_options.allow_write_stall = true;
  rocksdb::Status s = db_->Flush(flush_options);
  if (!s.ok()) {
    return FromRocks(s, absl::StrCat("flushing ", db_dir_), absl::StatusCode::kAborted);
  }
  PublishStats();
  PendingSnapshot snapshot;
  snapshot.checkpoint_id = checkpoint_id;
  snapshot.delta = std::move(delta);
  // RocksDB unchanged since the snapshot of the last successful upload (every changed entry hot,
  // in the delta file): name that upload's files instead of making a RocksDB checkpoint (mkdir,
  // links, a MANIFEST copy, renames, and their removal after the upload).
  SLUICE_ASSIGN_OR_RETURN(std::string signature, DbSignature());
  std::error_code ec;
  if (signature == db_signature_) {
    absl::MutexLock lock(&upload_mu_);
    if (last_upload_.checkpoint_id >= 0 && last_upload_.checkpoint_id == signature_checkpoint_id_) {
      snapshot.reused_files = last_upload_.files;
      snapshot.reused_dir = last_upload_.dir;
    }
  }
  if (!snapshot.reused_dir.empty()) return snapshot;
  db_signature_ = std::move(signature);
  signature_checkpoint_id_ = checkpoint_id;
  fs::path dir = fs::path(options_.local_dir) / absl::StrCat("chk-", checkpoint_id);
  snapshot.local_checkpoint_dir = dir.string();
  fs::remove_all(dir, ec);  // left over from a failed attempt
  if (ec) return FromFs(ec, "cannot remove", dir, absl::StatusCode::kAborted);
  rocksdb::Checkpoint* raw = nullptr;
  s = rocksdb::Checkpoint::Create(db_.get(), &raw);
  std::unique_ptr<rocksdb::Checkpoint> checkpoint(raw);
  if (s.ok()) s = checkpoint->CreateCheckpoint(snapshot.local_checkpoint_dir);
  if (!s.ok()) {
    return FromRocks(s, absl::StrCat("creating RocksDB checkpoint ", dir.string()),
                     absl::StatusCode::kAborted);
  }
  // (Should this fail, the entries now pending reach RocksDB or the next delta file at the
  // next snapshot.)
  return snapshot;
}

absl::StatusOr<proto::KeyedStateHandle> RocksDbBackend::UploadSnapshot(
    const PendingSnapshot& snapshot, const std::string& job_checkpoint_dir,
    const std::string& private_dir) {
  if (private_dir.empty() || private_dir == "shared" || private_dir.find("..") != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("bad private_dir '", private_dir, "'"));
  }
  absl::StatusOr<proto::KeyedStateHandle> handle =
      snapshot.local_checkpoint_dir.empty()
          ? UploadReusing(snapshot, job_checkpoint_dir, private_dir)
          : UploadCheckpoint(snapshot, job_checkpoint_dir, private_dir);
  if (!handle.ok()) {
    absl::MutexLock lock(&upload_mu_);
    last_upload_ = LastUpload();
  }
  return handle;
}

proto::KeyedStateHandle RocksDbBackend::NewHandle(const std::string& private_dir) const {
  proto::KeyedStateHandle handle;
  handle.set_operator_id(options_.operator_id);
  handle.mutable_range()->set_first(options_.range.first);
  handle.mutable_range()->set_last(options_.range.last);
  handle.set_backend_id(backend_id_);
  handle.set_private_dir(private_dir);
  return handle;
}

absl::StatusOr<proto::KeyedStateHandle> RocksDbBackend::UploadReusing(
    const PendingSnapshot& snapshot, const std::string& job_checkpoint_dir,
    const std::string& private_dir) {
  std::error_code ec;
  if (snapshot.reused_dir != job_checkpoint_dir) {
    // Uploaded elsewhere (all shared): linked or copied from there.
    const fs::path from = fs::path(snapshot.reused_dir) / "shared";
    const fs::path to = fs::path(job_checkpoint_dir) / "shared";
    fs::create_directories(to, ec);
    if (ec) return FromFs(ec, "cannot create", to, absl::StatusCode::kAborted);
    for (const proto::StateFile& f : snapshot.reused_files) {
      absl::Status s = LinkOrCopyDurably(from / f.name(), to / f.name());
      if (!s.ok()) return absl::AbortedError(s.ToString());
    }
    absl::Status s = SyncDir(to.string());
    if (!s.ok()) return absl::AbortedError(s.ToString());
  }
  proto::KeyedStateHandle handle = NewHandle(private_dir);
  int64_t full_size = 0;
  int64_t incremental_size = 0;
  for (const proto::StateFile& f : snapshot.reused_files) {
    *handle.add_files() = f;
    full_size += f.size();
  }
  const fs::path private_path = fs::path(job_checkpoint_dir) / private_dir;
  fs::create_directories(private_path, ec);  // there even when empty, as UploadCheckpoint() does
  if (ec) return FromFs(ec, "cannot create", private_path, absl::StatusCode::kAborted);
  if (snapshot.delta != nullptr) {
    SLUICE_ASSIGN_OR_RETURN(*handle.add_files(), UploadDelta(*snapshot.delta, private_path));
    absl::Status s = SyncDir(private_path.string());
    if (!s.ok()) return absl::AbortedError(s.ToString());
    full_size += static_cast<int64_t>(snapshot.delta->size());
    incremental_size += static_cast<int64_t>(snapshot.delta->size());
    SortFiles(&handle);
  }
  handle.set_full_size(full_size);
  handle.set_incremental_size(incremental_size);
  return handle;
}

absl::StatusOr<proto::KeyedStateHandle> RocksDbBackend::UploadCheckpoint(
    const PendingSnapshot& snapshot, const std::string& job_checkpoint_dir,
    const std::string& private_dir) {
  const fs::path local(snapshot.local_checkpoint_dir);
  const fs::path shared_dir = fs::path(job_checkpoint_dir) / "shared";
  const fs::path private_path = fs::path(job_checkpoint_dir) / private_dir;
  std::error_code ec;
  for (const fs::path& dir : {shared_dir, private_path}) {
    fs::create_directories(dir, ec);
    if (ec) return FromFs(ec, "cannot create", dir, absl::StatusCode::kAborted);
  }
  std::vector<std::pair<std::string, int64_t>> files;  // (name, size)
  for (fs::directory_iterator it(local, ec), end; !ec && it != end; it.increment(ec)) {
    if (!it->is_regular_file()) continue;
    uintmax_t size = it->file_size(ec);
    if (ec) break;
    files.emplace_back(it->path().filename().string(), static_cast<int64_t>(size));
  }
  if (ec) return FromFs(ec, "cannot list snapshot", local, absl::StatusCode::kAborted);
  std::sort(files.begin(), files.end());

  proto::KeyedStateHandle handle = NewHandle(private_dir);
  int64_t full_size = 0;
  int64_t incremental_size = 0;
  bool all_shared = true;  // but the delta file: reusable by later snapshots
  // The delta file first, outside upload_mu_ (which SnapshotSync() may wait for).
  proto::StateFile delta_file;
  if (snapshot.delta != nullptr) {
    SLUICE_ASSIGN_OR_RETURN(delta_file, UploadDelta(*snapshot.delta, private_path));
  }
  absl::MutexLock lock(&upload_mu_);
  for (const auto& [name, size] : files) {
    proto::StateFile* f = handle.add_files();
    f->set_local_name(name);
    f->set_size(size);
    full_size += size;
    absl::StatusOr<std::string> shared_name = SharedNameOf(backend_id_, local, name, size);
    if (!shared_name.ok()) return absl::AbortedError(shared_name.status().ToString());
    if (shared_name->empty()) {
      all_shared = false;
      f->set_shared(false);
      f->set_name(name);
      // RocksDB's checkpoint may share a log file with the live DB: a copy.
      absl::Status s = CopyAtomically(local / name, private_path / name, /*durable=*/true);
      if (!s.ok()) return absl::AbortedError(s.ToString());
      incremental_size += size;
      continue;
    }
    f->set_shared(true);
    auto it = uploaded_.find(name);
    // An SST restored from another backend's checkpoint keeps that backend's name.
    if (it != uploaded_.end() && it->second.size == size && it->second.dir == job_checkpoint_dir &&
        (absl::EndsWith(name, ".sst") || it->second.name == *shared_name)) {
      f->set_name(it->second.name);
      continue;
    }
    absl::Status s = LinkOrCopyDurably(local / name, shared_dir / *shared_name);
    if (!s.ok()) return absl::AbortedError(s.ToString());
    unsynced_shared_dirs_.insert(shared_dir.string());
    uploaded_[name] = UploadedFile{*shared_name, size, job_checkpoint_dir};
    f->set_name(*shared_name);
    incremental_size += size;
  }
  // The renames above must survive a machine crash before the handle is acknowledged (the
  // coordinator then counts the checkpoint complete). The entries of the private directory
  // and its parents are made durable by the coordinator before it counts the checkpoint
  // complete (CheckpointStorage::WriteMetadata() syncs chk-<id> and the job directory).
  if (snapshot.delta != nullptr) {
    full_size += delta_file.size();
    incremental_size += delta_file.size();
    *handle.add_files() = std::move(delta_file);
    SortFiles(&handle);
  }
  while (!unsynced_shared_dirs_.empty()) {  // only where something was linked
    absl::Status s = SyncDir(*unsynced_shared_dirs_.begin());
    if (!s.ok()) return absl::AbortedError(s.ToString());
    unsynced_shared_dirs_.erase(unsynced_shared_dirs_.begin());
  }
  {
    absl::Status s = SyncDir(private_path.string());
    if (!s.ok()) return absl::AbortedError(s.ToString());
  }
  handle.set_full_size(full_size);
  handle.set_incremental_size(incremental_size);
  fs::remove_all(local, ec);
  if (ec) return FromFs(ec, "cannot remove snapshot", local, absl::StatusCode::kAborted);
  last_upload_ = LastUpload();
  if (all_shared) {
    last_upload_.checkpoint_id = snapshot.checkpoint_id;
    last_upload_.dir = job_checkpoint_dir;
    for (const proto::StateFile& f : handle.files()) {
      if (f.local_name() != internal::kDeltaFileName) last_upload_.files.push_back(f);
    }
  }
  return handle;
}

// ---------------------------------------------------------------------------------------------
// Restore

absl::Status RocksDbBackend::RestoreFrom(const std::vector<proto::KeyedStateHandle>& handles,
                                         const std::string& job_checkpoint_dir) {
  std::vector<const proto::KeyedStateHandle*> relevant;
  for (const proto::KeyedStateHandle& h : handles) {
    SLUICE_RETURN_IF_ERROR(ValidateHandle(h, options_.max_parallelism));
    if (Intersects(h.range(), options_.range)) relevant.push_back(&h);
  }
  const fs::path job_dir(job_checkpoint_dir);
  if (relevant.size() == 1 && relevant[0]->range().first() == options_.range.first &&
      relevant[0]->range().last() == options_.range.last) {
    // Same key groups: the snapshot becomes our DB as it is.
    const proto::KeyedStateHandle& h = *relevant[0];
    SLUICE_RETURN_IF_ERROR(ResetDir(options_.local_dir));
    SLUICE_RETURN_IF_ERROR(MaterializeHandle(h, job_dir, db_dir_));
    SLUICE_RETURN_IF_ERROR(OpenDb(/*create=*/false));
    SLUICE_RETURN_IF_ERROR(CheckFormat(db_.get(), db_dir_));
    SLUICE_RETURN_IF_ERROR(WriteFormat());
    std::vector<StoredStateMeta> meta;
    SLUICE_RETURN_IF_ERROR(ReadMeta(db_.get(), db_dir_, &meta));
    for (const StoredStateMeta& m : meta) {
      SLUICE_ASSIGN_OR_RETURN(int id, BindState(m.name, m.kind, m.id));
      if (id != m.id) return absl::DataLossError(absl::StrCat("duplicate state id in ", db_dir_));
    }
    meta_dirty_ = false;
    int identity[256];
    for (int i = 0; i < 256; ++i) identity[i] = i;
    SLUICE_RETURN_IF_ERROR(ApplyDelta(h, job_dir, identity));
    SLUICE_RETURN_IF_ERROR(FillNewKeyFilter());
    // Unchanged SSTs keep their shared names, so the next checkpoint is incremental.
    absl::MutexLock lock(&upload_mu_);
    for (const proto::StateFile& f : h.files()) {
      // Only SSTs: the restored DB writes a new MANIFEST, CURRENT and OPTIONS.
      if (f.shared() && absl::EndsWith(f.local_name(), ".sst")) {
        uploaded_[f.local_name()] = UploadedFile{f.name(), f.size(), job_checkpoint_dir};
      }
    }
    return LoadTimers();
  }
  // Rescaling: copy our key groups out of every overlapping snapshot.
  SLUICE_RETURN_IF_ERROR(OpenEmpty());
  first_snapshot_all_hot_ = false;  // RocksDB gets the restored state
  for (size_t i = 0; i < relevant.size(); ++i) {
    fs::path dir = fs::path(options_.local_dir) / absl::StrCat("restore-", i);
    absl::Status s = MaterializeHandle(*relevant[i], job_dir, dir);
    if (s.ok()) s = CopyKeyGroups(*relevant[i], dir, job_dir);
    std::error_code ec;
    fs::remove_all(dir, ec);
    SLUICE_RETURN_IF_ERROR(s);
  }
  return LoadTimers();
}

absl::Status RocksDbBackend::FillNewKeyFilter() {
  EnableNewKeyFilter();
  if (!cache_.store_filter_on()) return absl::OkStatus();
  rocksdb::ReadOptions read;
  read.fill_cache = false;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(read));
  // Every key group's entries sort before kFormatKey and the state meta.
  for (it->SeekToFirst(); it->Valid() && cache_.store_filter_on(); it->Next()) {
    const absl::string_view k = ToView(it->key());
    if (k.size() < 3 || internal::DecodeFixed16BE(k.data()) > options_.range.last) break;
    if (static_cast<uint8_t>(k[2]) != kTimerStateId) cache_.NoteInStore(k);
  }
  return FromRocks(it->status(), absl::StrCat("reading the keys of ", db_dir_),
                   absl::StatusCode::kDataLoss);
}

absl::Status RocksDbBackend::CopyKeyGroups(const proto::KeyedStateHandle& handle,
                                           const fs::path& dir, const fs::path& job_dir) {
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::OpenForReadOnly(MakeDbOptions(options_), dir.string(), &raw);
  if (!s.ok()) {
    return FromRocks(s, absl::StrCat("cannot open snapshot of ", handle.operator_id(), " in ",
                                     dir.string()),
                     absl::StatusCode::kDataLoss);
  }
  std::unique_ptr<rocksdb::DB> src(raw);
  SLUICE_RETURN_IF_ERROR(CheckFormat(src.get(), dir.string()));
  std::vector<StoredStateMeta> meta;
  SLUICE_RETURN_IF_ERROR(ReadMeta(src.get(), dir.string(), &meta));
  int remap[256];
  std::fill(std::begin(remap), std::end(remap), -1);
  remap[kTimerStateId] = kTimerStateId;
  for (const StoredStateMeta& m : meta) {
    SLUICE_ASSIGN_OR_RETURN(remap[m.id], BindState(m.name, m.kind, m.id));
  }

  const int first = std::max(options_.range.first, handle.range().first());
  const int last = std::min(options_.range.last, handle.range().last());
  std::string start;
  internal::PutFixed16BE(&start, static_cast<uint16_t>(first));
  std::unique_ptr<rocksdb::Iterator> it(src->NewIterator(rocksdb::ReadOptions()));
  rocksdb::WriteBatch batch;
  std::string key;
  for (it->Seek(ToSlice(start)); it->Valid(); it->Next()) {
    absl::string_view k = ToView(it->key());
    // Past our key groups: also kFormatKey and the state meta, which sort after all of them.
    if (k.size() >= 2 && internal::DecodeFixed16BE(k.data()) > last) break;
    if (k.size() < 3) {
      return absl::DataLossError(absl::StrCat("malformed state key in ", dir.string()));
    }
    int id = remap[static_cast<uint8_t>(k[2])];
    if (id < 0) {
      return absl::DataLossError(absl::StrCat("state id ", static_cast<int>(static_cast<uint8_t>(k[2])),
                                              " without metadata in ", dir.string()));
    }
    key.assign(k.data(), k.size());
    key[2] = static_cast<char>(id);
    if (id != kTimerStateId) cache_.NoteInStore(key);
    s = batch.Put(key, it->value());
    if (s.ok() && batch.GetDataSize() >= kRestoreBatchBytes) {
      s = db_->Write(write_options_, &batch);
      batch.Clear();
    }
    if (!s.ok()) return FromRocks(s, "writing restored state", absl::StatusCode::kUnavailable);
  }
  SLUICE_RETURN_IF_ERROR(FromRocks(it->status(), absl::StrCat("reading snapshot in ", dir.string()),
                                   absl::StatusCode::kDataLoss));
  s = db_->Write(write_options_, &batch);
  if (!s.ok()) return FromRocks(s, "writing restored state", absl::StatusCode::kUnavailable);
  it.reset();
  s = src->Close();
  (void)s;
  return ApplyDelta(handle, job_dir, remap);
}

absl::Status RocksDbBackend::ApplyDelta(const proto::KeyedStateHandle& handle,
                                        const fs::path& job_dir, const int* remap) {
  std::string data;
  SLUICE_RETURN_IF_ERROR(ReadDeltaOf(handle, job_dir, &data));
  if (data.empty()) return absl::OkStatus();
  const std::string where = (job_dir / handle.private_dir()).string();
  const int first = std::max(options_.range.first, handle.range().first());
  const int last = std::min(options_.range.last, handle.range().last());
  rocksdb::WriteBatch batch;
  std::string key;
  SLUICE_RETURN_IF_ERROR(internal::ReadDelta(
      data, where, [&](absl::string_view k, bool deleted, absl::string_view value) {
        if (k.size() < 3) {
          return absl::DataLossError(absl::StrCat("malformed state key in the delta of ", where));
        }
        const int kg = internal::DecodeFixed16BE(k.data());
        if (kg < first || kg > last) return absl::OkStatus();  // another subtask's now
        const int id = remap[static_cast<uint8_t>(k[2])];
        if (id < 0 || id == kTimerStateId) {
          return absl::DataLossError(
              absl::StrCat("state id ", static_cast<int>(static_cast<uint8_t>(k[2])),
                           " without metadata in the delta of ", where));
        }
        key.assign(k.data(), k.size());
        key[2] = static_cast<char>(id);
        rocksdb::Status s = deleted ? batch.Delete(key) : batch.Put(key, ToSlice(value));
        if (!deleted) cache_.NoteInStore(key);
        if (s.ok() && batch.GetDataSize() >= kRestoreBatchBytes) {
          s = db_->Write(write_options_, &batch);
          batch.Clear();
        }
        return FromRocks(s, "writing restored state", absl::StatusCode::kUnavailable);
      }));
  return FromRocks(db_->Write(write_options_, &batch), "writing restored state",
                   absl::StatusCode::kUnavailable);
}

}  // namespace

absl::StatusOr<std::unique_ptr<KeyedStateBackend>> KeyedStateBackend::Open(
    const StateBackendOptions& options) {
  SLUICE_RETURN_IF_ERROR(ValidateOptions(options));
  auto backend = std::make_unique<RocksDbBackend>(options);
  SLUICE_RETURN_IF_ERROR(backend->OpenEmpty());
  return std::unique_ptr<KeyedStateBackend>(std::move(backend));
}

absl::StatusOr<std::unique_ptr<KeyedStateBackend>> KeyedStateBackend::Restore(
    const StateBackendOptions& options, const std::vector<proto::KeyedStateHandle>& handles,
    const std::string& job_checkpoint_dir) {
  SLUICE_RETURN_IF_ERROR(ValidateOptions(options));
  auto backend = std::make_unique<RocksDbBackend>(options);
  absl::Status s = backend->RestoreFrom(handles, job_checkpoint_dir);
  // Every corrupt snapshot is named with its operator subtask and checkpoint, here only.
  if (absl::IsDataLoss(s)) return options.origin.DataLoss(s.message());
  SLUICE_RETURN_IF_ERROR(s);
  return std::unique_ptr<KeyedStateBackend>(std::move(backend));
}

}  // namespace sluice::state
