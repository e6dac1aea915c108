#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "common/metrics.h"

namespace sluice::state::internal {

// A snapshot's delta file: the state entries its RocksDB checkpoint lacks (the write-back
// cache's entries changed in the last interval, WriteBackCache::Snapshot()), which restore
// writes on top of that checkpoint. Entries are in no particular order, each key at most once.
//
// Version 2 (written since session 26):
//   file   = magic "SLDELTA" [version: 2] entry* [entry count: 8 LE] [checksum: 8 LE]
//   entry  = [varint32 (key length << 2) | kNoExpiry | kDeleted][key]
//            ([varint32 value length][value])?        (absent for a delete)
// With kNoExpiry the stored value's 8-byte expiry is 0 and left out: `value` is its payload
// (most entries: no TTL; 8 of the ~43 bytes of a count's entry). The checksum
// (DeltaChecksum) covers every byte before it.
// Version 1 (read only):
//   entry  = 'P' [varint32 key length][key][varint32 value length][stored value]  (a put)
//          | 'D' [varint32 key length][key]                                     (a delete)
//   checksum: DeltaChecksumV1.
//
// Keys are RocksDB state keys and values stored values (key_codec.h).
inline constexpr absl::string_view kDeltaMagic("SLDELTA", 7);
inline constexpr uint8_t kDeltaVersion = 2;
// The file's name in a snapshot's directory and in its handle's files (a name RocksDB never
// gives a file, so older snapshots never have it).
inline constexpr absl::string_view kDeltaFileName("SLUICE-DELTA");

// The 64-bit checksum of version 2 files, fed in pieces: Blocks() takes whole 32-byte blocks
// (four 8-byte words, each read as a little-endian number, so a file checks the same on every
// host, hashed in four independent lanes: ~4x the speed of one chain of multiplies), Finish()
// the rest (fewer than 32 bytes). Not a stable hash for other uses: only for this file.
class DeltaChecksum {
 public:
  static constexpr size_t kBlockBytes = 32;
  void Blocks(const char* p, size_t blocks);
  uint64_t Finish(const char* tail, size_t tail_bytes);

 private:
  uint64_t lanes_[4] = {0x27D4EB2F165667C5ULL, 0x165667B19E3779F9ULL, 0x85EBCA77C2B2AE63ULL,
                        0x9E3779B185EBCA87ULL};
  uint64_t bytes_ = 0;
};
// DeltaChecksum of all of `data`.
uint64_t ChecksumOf(absl::string_view data);

// The checksum of version 1 files (one chain over 8-byte words), for reading them.
class DeltaChecksumV1 {
 public:
  void Words(const char* p, size_t words);
  uint64_t Finish(const char* tail, size_t tail_bytes);

 private:
  uint64_t h_ = 0x27D4EB2F165667C5ULL;
  uint64_t bytes_ = 0;
};
// DeltaChecksumV1 of all of `data`.
uint64_t ChecksumOfV1(absl::string_view data);

// A delta file's bytes in memory: DeltaWriter writes them on the task thread (the snapshot's
// one copy of the entries, so later changes to the cache do not reach them), and the upload
// stores them (WriteDeltaFile()) on its own thread: the kernel's copy into the page cache, the
// file's creation and its fsync leave the task thread. Immutable once DeltaWriter::Finish()
// returned; a DeltaBytesPool recycles them (their pages stay mapped).
class DeltaBytesPool;
class DeltaBytes {
 public:
  DeltaBytes() = default;
  DeltaBytes(const DeltaBytes&) = delete;
  DeltaBytes& operator=(const DeltaBytes&) = delete;

  absl::string_view view() const { return {data_.get(), size_}; }
  size_t size() const { return size_; }
  size_t capacity() const { return capacity_; }

 private:
  friend class DeltaWriter;
  friend class DeltaBytesPool;
  // Appends `n` bytes at `src` (growing the buffer if needed) with stores that bypass the CPU's
  // caches where the host has them: the bytes are read next by another thread (the upload's),
  // and the task thread's working set stays in its L2.
  void Append(const char* src, size_t n);

  std::unique_ptr<char[]> data_;
  size_t size_ = 0;
  size_t capacity_ = 0;
  DeltaBytesPool* pool_ = nullptr;  // that made it (counts its growth), or null
};

// Hands out DeltaBytes buffers and takes them back when their last owner drops them (the
// upload, after storing them), keeping up to kMaxSpare: a snapshot then writes into a buffer
// whose pages are mapped and large enough (no page faults, no growth copies). A returned buffer
// more than kMaxSpareFactor times the recent deltas' size (at least kMinCapacity) is freed
// instead, so a burst's peak does not stay. Outlives its backend while a buffer it handed out
// lives (each holds a reference to it).
//
// Memory: a buffer lives from its snapshot's SnapshotSync() until its upload stored it, so the
// pool holds the delta of every snapshot not yet uploaded (queued behind a slow upload, or of a
// checkpoint already aborted: its upload still runs) plus the spare; held_bytes() and the gauge
// count them all (capacities).
//
// Threading: thread-safe (the task thread takes, the upload's thread returns).
class DeltaBytesPool : public std::enable_shared_from_this<DeltaBytesPool> {
 public:
  static constexpr size_t kMaxSpare = 1;
  static constexpr size_t kMaxSpareFactor = 4;
  // The first capacity of a DeltaBytes (it doubles from there: 50K entries of a count take
  // 1.7 MB).
  static constexpr size_t kMinCapacity = size_t{1} << 20;

  // `held_bytes` (may be null) is set to held_bytes() whenever it changes.
  explicit DeltaBytesPool(std::shared_ptr<Gauge> held_bytes = nullptr);
  // REQUIRES: owned by a std::shared_ptr.
  std::shared_ptr<DeltaBytes> Take();
  // Bytes of the buffers this pool made that are alive: handed out (being written, or waiting
  // for or in their upload) and spare.
  size_t held_bytes() const { return held_.load(std::memory_order_relaxed); }

 private:
  friend class DeltaBytes;
  void Return(DeltaBytes* bytes);
  // A buffer of this pool grew by `bytes`.
  void Grew(size_t bytes);
  // held_ into the gauge, under mu_: the task thread (Grew) and the upload thread (Return) both
  // change held_; the last Set() reads it after the last change.
  void PublishHeld();

  const std::shared_ptr<Gauge> held_gauge_;
  std::atomic<size_t> held_{0};
  absl::Mutex mu_;
  std::vector<std::unique_ptr<DeltaBytes>> spare_ ABSL_GUARDED_BY(mu_);
  size_t recent_bytes_ ABSL_GUARDED_BY(mu_) = 0;  // see Return()
};

// memcpy(dst, src, n) with non-temporal stores where the host has them: the destination's lines
// are not loaded into (and do not evict anything from) the CPU's caches. FenceStreaming()
// orders them before later stores.
void CopyStreaming(char* dst, const char* src, size_t n);
void FenceStreaming();

// Stores `bytes` at `path` durably: written to `path`.tmp, fsynced and renamed into place (the
// caller syncs the directory). kUnavailable (naming the path) on failure, leaving no temporary.
absl::Status WriteDeltaFile(const DeltaBytes& bytes, const std::string& path);

// Writes a delta file (version 2) into a DeltaBytes, encoding the entries into a staging buffer
// of kFlushBytes (checksummed there, while in the CPU's cache) and appending it to the
// destination in pieces. Reused across snapshots (keeps its staging buffer).
//
// Threading: one thread. Not thread-safe.
class DeltaWriter {
 public:
  static constexpr size_t kFlushBytes = size_t{64} << 10;

  DeltaWriter() = default;
  DeltaWriter(const DeltaWriter&) = delete;
  DeltaWriter& operator=(const DeltaWriter&) = delete;

  // Starts a new file in `out` (its bytes replaced). `out` must live until Finish().
  void Open(DeltaBytes* out);
  // Appends a put of the stored value [expiry_ms: 8 BE][payload] (key_codec.h), without
  // building it. The first error is kept and returned by Finish().
  void Put(absl::string_view key, int64_t expiry_ms, absl::string_view payload);
  // Appends a put of `stored_value` as it is (written as the one above when it is a stored
  // value without expiry).
  void Put(absl::string_view key, absl::string_view stored_value);
  void Delete(absl::string_view key);
  // Appends the trailer: the DeltaBytes of Open() then hold the whole file. kAborted if an entry
  // exceeded the format's lengths (the bytes are then not a file to store);
  // kFailedPrecondition if not open.
  absl::Status Finish();
  uint64_t entries() const { return entries_; }

 private:
  // Room for `bytes` more at pos_ (flushing, or growing the buffer for an entry larger than it).
  char* Reserve(size_t bytes);
  // Appends the buffer's whole checksum blocks (all of it with `all`) to out_, feeding the
  // checksum.
  void Flush(bool all);
  // Whether an entry of `key` and `value_bytes` fits the format's lengths; if not, keeps
  // kAborted for Finish() (the entry is not written).
  bool Fits(absl::string_view key, size_t value_bytes);

  DeltaBytes* out_ = nullptr;
  std::string buf_;  // its size is its capacity; [0, pos_) is filled
  size_t pos_ = 0;
  DeltaChecksum checksum_;
  uint64_t entries_ = 0;
  absl::Status status_;
};

// Calls fn(key, deleted, stored_value) for every entry of the delta file `data` (stored_value
// empty for deletes; a stored value as the writer was given it, whatever the version), after
// checking it whole: kDataLoss (naming `where`) for a file that is
// truncated, corrupt or of another magic, kFailedPrecondition for a newer version. An error of
// `fn` stops the walk and is returned. The views passed to `fn` are valid only during the call.
absl::Status ReadDelta(
    absl::string_view data, absl::string_view where,
    absl::FunctionRef<absl::Status(absl::string_view key, bool deleted, absl::string_view value)>
        fn);

}  // namespace sluice::state::internal
