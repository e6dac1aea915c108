#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"

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

// Writes a delta file (version 2), streaming it to disk in pieces of at most kFlushBytes (so
// a snapshot of many changed entries holds no copy of them all in memory, and the piece the
// kernel copies is still in the CPU's cache). Not synced: the upload makes its copy durable.
// Reused across snapshots (keeps its buffer).
//
// Threading: one thread. Not thread-safe.
class DeltaWriter {
 public:
  static constexpr size_t kFlushBytes = size_t{64} << 10;

  DeltaWriter() = default;
  DeltaWriter(const DeltaWriter&) = delete;
  DeltaWriter& operator=(const DeltaWriter&) = delete;
  ~DeltaWriter();

  // Starts a new file at `path` (created or truncated). kUnavailable if it cannot be created.
  absl::Status Open(const std::string& path);
  // Appends a put of the stored value [expiry_ms: 8 BE][payload] (key_codec.h), without
  // building it. The first write error is kept and returned by Finish().
  void Put(absl::string_view key, int64_t expiry_ms, absl::string_view payload);
  // Appends a put of `stored_value` as it is (written as the one above when it is a stored
  // value without expiry).
  void Put(absl::string_view key, absl::string_view stored_value);
  void Delete(absl::string_view key);
  // Appends the trailer and closes the file. kUnavailable on a write error (the file is then
  // incomplete: the caller removes it).
  absl::Status Finish();
  uint64_t entries() const { return entries_; }

 private:
  // Room for `bytes` more at pos_ (flushing, or growing the buffer for an entry larger than it).
  char* Reserve(size_t bytes);
  // Writes the buffer's whole checksum blocks (all of it with `all`), feeding the checksum.
  void Flush(bool all);
  // Whether an entry of `key` and `value_bytes` fits the format's lengths; if not, keeps
  // kAborted for Finish() (the entry is not written).
  bool Fits(absl::string_view key, size_t value_bytes);

  int fd_ = -1;
  std::string path_;
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
