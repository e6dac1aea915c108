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
//   file   = magic "SLDELTA" [version: 1] entry* [entry count: 8 LE] [checksum: 8 LE]
//   entry  = 'P' [varint32 key length][key][varint32 value length][stored value]  (a put)
//          | 'D' [varint32 key length][key]                                     (a delete)
//
// Keys are RocksDB state keys and values stored values (key_codec.h). The checksum covers
// every byte before it (DeltaChecksum()).
inline constexpr absl::string_view kDeltaMagic("SLDELTA", 7);
inline constexpr uint8_t kDeltaVersion = 1;
// The file's name in a snapshot's directory and in its handle's files (a name RocksDB never
// gives a file, so older snapshots never have it).
inline constexpr absl::string_view kDeltaFileName("SLUICE-DELTA");

// A 64-bit checksum, fed in pieces: Words() takes whole 8-byte words, each read as a
// little-endian number (so a file checks the same on every host), Finish() the rest (fewer
// than 8 bytes). Not a stable hash for other uses: only for this file.
class DeltaChecksum {
 public:
  void Words(const char* p, size_t words);
  uint64_t Finish(const char* tail, size_t tail_bytes);

 private:
  uint64_t h_ = 0x27D4EB2F165667C5ULL;
  uint64_t bytes_ = 0;
};
// DeltaChecksum of all of `data`.
uint64_t ChecksumOf(absl::string_view data);

// Writes a delta file, streaming it to disk in pieces of about kFlushBytes (so a snapshot of
// many changed entries holds no copy of them all in memory). Not synced: the upload makes its
// copy durable. Reused across snapshots (keeps its buffer).
//
// Threading: one thread. Not thread-safe.
class DeltaWriter {
 public:
  static constexpr size_t kFlushBytes = size_t{1} << 20;

  DeltaWriter() = default;
  DeltaWriter(const DeltaWriter&) = delete;
  DeltaWriter& operator=(const DeltaWriter&) = delete;
  ~DeltaWriter();

  // Starts a new file at `path` (created or truncated). kUnavailable if it cannot be created.
  absl::Status Open(const std::string& path);
  // Appends an entry. The first write error is kept and returned by Finish().
  void Put(absl::string_view key, absl::string_view stored_value);
  void Delete(absl::string_view key);
  // Appends the trailer and closes the file. kUnavailable on a write error (the file is then
  // incomplete: the caller removes it).
  absl::Status Finish();
  uint64_t entries() const { return entries_; }

 private:
  // Writes the buffer's whole 8-byte words (all of it with `all`), feeding the checksum.
  void Flush(bool all);

  int fd_ = -1;
  std::string path_;
  std::string buf_;
  DeltaChecksum checksum_;
  uint64_t entries_ = 0;
  absl::Status status_;
};

// Calls fn(key, deleted, stored_value) for every entry of the delta file `data` (stored_value
// empty for deletes), after checking it whole: kDataLoss (naming `where`) for a file that is
// truncated, corrupt or of another magic, kFailedPrecondition for a newer version. An error of
// `fn` stops the walk and is returned.
absl::Status ReadDelta(
    absl::string_view data, absl::string_view where,
    absl::FunctionRef<absl::Status(absl::string_view key, bool deleted, absl::string_view value)>
        fn);

}  // namespace sluice::state::internal
