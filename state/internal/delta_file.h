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

// A 64-bit checksum of `data` (not a stable hash for other uses: only for this file).
uint64_t DeltaChecksum(absl::string_view data);

// Builds a delta file in memory. Reused across snapshots (keeps its buffer's capacity).
//
// Threading: one thread. Not thread-safe.
class DeltaWriter {
 public:
  // Starts a new file (drops what the last one held).
  void Start();
  void Put(absl::string_view key, absl::string_view stored_value);
  void Delete(absl::string_view key);
  // Appends the trailer; returns the whole file. Valid until the next Start().
  absl::string_view Finish();
  uint64_t entries() const { return entries_; }

 private:
  std::string buf_;
  uint64_t entries_ = 0;
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
