#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/hash/hash.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace sluice::state::internal {

// The bounded write-back cache in front of a backend's RocksDB: entries of (key -> value
// payload, expiry, flags), where a "deleted" entry records that the key is absent (a tombstone
// to write, or a negative lookup).
//
// Representation: entries are fixed 48-byte slots in one vector, key and value bytes inline
// when together they fit in 24 bytes, else in one heap buffer per entry; an open-addressing
// index with linear probing finds them: 8-byte cells of (32 bits of the key's hash, slot
// number), at most 70% full, deletions by backward shift. A lookup reads one index cell (and
// its neighbours in the same cache line) and then the one slot whose hash bits match. No
// std::string or map node per entry. `bytes()` counts each live entry's slot, index share and
// heap buffer against the budget.
//
// Eviction is incremental (CLOCK, second chance): MakeRoom() advances a hand over the slots,
// clearing reference bits and dropping clean unreferenced entries until the cache is within
// budget. Dirty unreferenced entries it meets are set aside; only when the clean ones do not
// suffice (or kEvictBatch dirty ones were met) are those written in one WriteFn batch and
// dropped. So clean entries go first, dirty ones leave in batches, and nothing flushes the
// whole cache to make room.
//
// A Ref (slot number) stays valid until the next MakeRoom() or Erase(); Insert may move slots
// in memory but keeps Refs.
//
// Threading: one thread (the backend's task thread). Not thread-safe.
class WriteBackCache {
 public:
  using Ref = uint32_t;
  static constexpr Ref kNone = ~Ref{0};
  // Dirty entries written per batch by MakeRoom() (at least, when there are as many).
  static constexpr size_t kEvictBatch = 32768;
  // Entries per WriteFn call of FlushDirty().
  static constexpr size_t kFlushBatch = 8192;
  // Bytes counted per entry beyond its heap buffer: the slot and its share of the index.
  static constexpr size_t kEntryOverhead = 64;

  // Writes the dirty entries `refs` to the store in one batch (key(), deleted(), expiry(),
  // value()). On OK the cache marks them clean (in_db = !deleted); an error leaves them dirty
  // and is returned to the caller of FlushDirty()/MakeRoom().
  using WriteFn = absl::FunctionRef<absl::Status(absl::Span<const Ref> refs)>;

  explicit WriteBackCache(size_t budget_bytes);
  ~WriteBackCache();
  WriteBackCache(const WriteBackCache&) = delete;
  WriteBackCache& operator=(const WriteBackCache&) = delete;

  // The entry of `key` for a read: counts a hit (and sets its reference bit) or a miss. The
  // first read of an entry marked prefetched counts as the miss it would have been.
  Ref Find(absl::string_view key);
  // The entry of `key` without counting or referencing it (kNone if not cached).
  Ref Peek(absl::string_view key) const;
  // A new entry for `key` (REQUIRES: not cached): deleted, clean, in_db, referenced, no expiry.
  Ref Insert(absl::string_view key);
  // The entry of `key` for a blind write (inserted if absent); sets its reference bit.
  Ref FindOrInsert(absl::string_view key);
  // Drops an entry (REQUIRES: clean).
  void Erase(Ref r);
  // Marks an entry that a read-ahead loaded before any read asked for it (so hits and misses
  // count as without the read-ahead; see Find()).
  void MarkPrefetched(Ref r) { slots_[r].flags |= kPrefetched; }

  absl::string_view key(Ref r) const { return {Data(slots_[r]), slots_[r].key_len}; }
  absl::string_view value(Ref r) const {
    return {Data(slots_[r]) + slots_[r].key_len, slots_[r].value_len};
  }
  void SetValue(Ref r, absl::string_view v);
  void AppendValue(Ref r, absl::string_view v);
  int64_t expiry(Ref r) const { return slots_[r].expiry; }
  void set_expiry(Ref r, int64_t e) { slots_[r].expiry = e; }
  bool deleted(Ref r) const { return (slots_[r].flags & kDeleted) != 0; }
  void set_deleted(Ref r, bool d) { SetFlag(r, kDeleted, d); }
  // RocksDB may hold the key (false: deleting it needs no tombstone).
  bool in_db(Ref r) const { return (slots_[r].flags & kInDb) != 0; }
  void set_in_db(Ref r, bool b) { SetFlag(r, kInDb, b); }
  bool dirty(Ref r) const { return (slots_[r].flags & kDirty) != 0; }
  void MarkDirty(Ref r);
  // Clean without a write: the entry agrees with the store (e.g. a delete of a key that never
  // reached it).
  void MarkClean(Ref r);

  // Writes every dirty entry, in key order across all its WriteFn batches (each of at most
  // `batch` entries); entries stay cached. On an error the entries not written stay dirty.
  absl::Status FlushDirty(WriteFn write, size_t batch = kFlushBatch);
  // Evicts until bytes() <= budget (see the class comment). Cheap when within budget.
  absl::Status MakeRoom(WriteFn write) {
    if (bytes_ <= budget_) return absl::OkStatus();
    return Evict(write);
  }

  size_t bytes() const { return bytes_; }
  size_t budget() const { return budget_; }
  size_t size() const { return live_; }
  size_t dirty_count() const { return dirty_count_; }
  // Entries dropped so far (by MakeRoom() or Erase()): a Ref taken when frees() was n is
  // still valid while frees() == n.
  uint64_t frees() const { return frees_; }
  uint64_t hits() const { return hits_; }
  uint64_t misses() const { return misses_; }

 private:
  static constexpr size_t kInline = 24;
  enum Flag : uint8_t {
    kLive = 1,
    kDirty = 2,
    kDeleted = 4,
    kReferenced = 8,
    kInDb = 16,
    kListed = 32,  // in dirty_ (which may also hold stale or repeated slot numbers)
    kVictim = 64,  // taken by the running Evict()
    kPrefetched = 128,  // MarkPrefetched() and not read since
  };
  struct Slot {
    int64_t expiry = 0;
    uint32_t key_len = 0;
    uint32_t value_len = 0;
    uint32_t capacity = kInline;  // bytes at Data(); > kInline: `heap` owns them
    uint8_t flags = 0;
    union {
      char inline_bytes[kInline];
      char* heap;
    };
  };
  static_assert(sizeof(Slot) == 48, "slot layout");

  // An index cell: `tag` is the low 32 bits of the key's hash (its home cell is tag & mask),
  // `ref` the slot (kNone: empty).
  struct Cell {
    uint32_t tag = 0;
    Ref ref = kNone;
  };
  static uint32_t Tag(absl::string_view key) {
    return static_cast<uint32_t>(absl::HashOf(key));
  }
  // The index cell holding `key` (or the empty cell where the probe ended: cells_[i].ref ==
  // kNone).
  size_t Probe(absl::string_view key, uint32_t tag) const;
  void IndexInsert(Ref r, uint32_t tag);
  void IndexErase(Ref r);
  void GrowIndex();

  static const char* Data(const Slot& s) {
    return s.capacity > kInline ? s.heap : s.inline_bytes;
  }
  static char* Data(Slot& s) { return s.capacity > kInline ? s.heap : s.inline_bytes; }
  static size_t HeapBytes(const Slot& s) { return s.capacity > kInline ? s.capacity : 0; }
  void SetFlag(Ref r, uint8_t flag, bool on) {
    if (on) {
      slots_[r].flags |= flag;
    } else {
      slots_[r].flags &= ~flag;
    }
  }
  // Makes room for `bytes` key+value bytes in slot r, keeping the first `keep` bytes.
  void Reserve(Ref r, size_t bytes, size_t keep, bool grow_geometrically);
  void Free(Ref r);
  absl::Status Evict(WriteFn write);
  // Writes `refs` (all dirty) and marks them clean; on an error they stay dirty.
  absl::Status WriteAndClean(absl::Span<const Ref> refs, WriteFn write);
  // Drops stale and repeated slot numbers from dirty_ when it grew much beyond dirty_count_.
  void CompactDirtyList();
  // Sorts `refs` by key (byte-wise), as std::sort comparing key() would.
  void SortByKey(std::vector<Ref>* refs);

  const size_t budget_;
  std::vector<Slot> slots_;
  std::vector<Ref> free_;
  std::vector<Cell> cells_;  // a power of two in size (or empty)
  size_t live_ = 0;
  size_t bytes_ = 0;
  size_t hand_ = 0;  // CLOCK hand over slots_
  std::vector<Ref> dirty_;
  size_t dirty_count_ = 0;
  std::vector<Ref> victims_;  // scratch of Evict() and FlushDirty()
  std::vector<std::pair<uint64_t, Ref>> by_prefix_;  // scratch of SortByKey()
  uint64_t hits_ = 0;
  uint64_t misses_ = 0;
  uint64_t frees_ = 0;
};

}  // namespace sluice::state::internal
