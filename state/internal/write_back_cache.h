#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <utility>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "state/internal/written_key_filter.h"

namespace sluice::state::internal {

// Blocks of bytes for the write-back cache's entries, carved from 256 KiB chunks, no heap node
// (and no malloc header or 8-byte rounding) per block. A block's size is its size class
// (ClassSize()): the byte count itself from 8 to 256 bytes, then steps of about 1.25x (so a
// block that grows by appends is copied O(log n) times). Freed blocks go to a free list of
// their class, which the next Allocate() of that class reuses; blocks of more than
// kMaxChunkBlock bytes get their own heap buffer. Chunks are released only by the destructor.
// A position stays valid until Free().
//
// Threading: one thread. Not thread-safe.
class BlockArena {
 public:
  static constexpr size_t kChunkBytes = size_t{1} << 18;
  static constexpr size_t kMaxChunkBlock = size_t{32} << 10;
  static constexpr size_t kMinBlock = 8;  // a free block holds the next position of its list

  BlockArena() = default;
  // At most `max_chunks` chunks (tests; the default is what positions address: 512 GiB):
  // beyond, blocks are allocated one by one.
  explicit BlockArena(size_t max_chunks) : max_chunks_(max_chunks) {}
  BlockArena(const BlockArena&) = delete;
  BlockArena& operator=(const BlockArena&) = delete;

  // The block size that holds `n` bytes (at least kMinBlock).
  static size_t ClassSize(size_t n) { return ClassOf(n).size; }
  // A block of ClassSize(n) bytes; returns its position.
  uint64_t Allocate(size_t n);
  // Returns the block at `pos` of ClassSize(n) bytes (REQUIRES: allocated with n' where
  // ClassSize(n') == ClassSize(n)).
  void Free(uint64_t pos, size_t n);
  char* At(uint64_t pos) {
    return (pos & kLargeBit) != 0 ? large_[pos & ~kLargeBit].get()
                                  : chunks_[pos >> kChunkShift].get() + (pos & kChunkMask);
  }
  const char* At(uint64_t pos) const { return const_cast<BlockArena*>(this)->At(pos); }
  // Bytes of chunks and large buffers held (in use or free).
  size_t reserved_bytes() const { return reserved_; }

 private:
  static constexpr int kChunkShift = 18;
  static constexpr uint64_t kChunkMask = kChunkBytes - 1;
  // Positions fit in 40 bits (the cache's slots keep 40): 512 GiB of chunks.
  static constexpr uint64_t kLargeBit = uint64_t{1} << 39;
  static constexpr uint64_t kNoBlock = ~uint64_t{0};
  struct Class {
    size_t size;
    size_t index;  // of its free list
  };
  static Class ClassOf(size_t n);
  // A block of `size` bytes of its own (position with kLargeBit).
  uint64_t AllocateLarge(size_t size);

  std::vector<std::unique_ptr<char[]>> chunks_;
  size_t chunk_used_ = kChunkBytes;  // bytes used of chunks_.back()
  std::vector<uint64_t> free_heads_;  // per class index: the first free block (kNoBlock: none)
  std::vector<std::unique_ptr<char[]>> large_;
  std::vector<uint64_t> free_large_;  // ids in large_ not in use
  size_t reserved_ = 0;
  size_t max_chunks_ = kLargeBit >> kChunkShift;
};

// The bounded write-back cache in front of a backend's RocksDB: entries of (key -> value
// payload, expiry, flags), where a "deleted" entry records that the key is absent (a tombstone
// to write, or a negative lookup).
//
// Representation: an entry is a 16-byte slot (its block's position, flags, key and value
// lengths) in one vector and one block of a BlockArena holding [expiry: 8 bytes, only once an
// expiry was set][key][value], exactly as large as its size class (a 7-byte key with a 25-byte
// value takes 32 bytes); an open-addressing index with linear probing finds them: 8-byte cells
// of (32 bits of the key's hash, slot number), at most 70% full, deletions by backward shift.
// A lookup reads one index cell (and its neighbours in the same cache line), then the one slot
// whose hash bits match and its block. No std::string, map node or malloc per entry. `bytes()`
// counts kEntryOverhead (the slot and an index share of two cells at half load) plus the
// block per live entry against the budget. A block may hold room beyond its entry's bytes (up
// to kMaxRoom, the slot's `room`): Insert() can reserve it for the value a new key is about to
// get, and a value that grows into it keeps its block (no second allocation and copy).
//
// Eviction is incremental (CLOCK, second chance): MakeRoom() advances a hand over the slots,
// clearing reference bits and dropping clean unreferenced entries until the cache is within
// budget. Dirty (and pending) unreferenced entries it meets are set aside; only when the clean ones do not
// suffice (or a batch of them, kEvictBatch, was met) are those written in one WriteFn batch and
// dropped. So clean entries go first, dirty ones leave in batches, and nothing flushes the
// whole cache to make room.
//
// A Ref (slot number) stays valid until the next MakeRoom() or Erase(); Insert may move slots
// in memory but keeps Refs.
//
// The store filter (EnableStoreFilter()): the cache then remembers every key it hands to a
// WriteFn (and those NoteInStore() names) in a WrittenKeyFilter, so MayBeInStore() can answer
// for a key that the store never received (a new key: its first read then costs a filter
// probe, no store lookup). The filter's bytes count in bytes(); once they would exceed half the
// budget it is dropped and MayBeInStore() is true from then on.
//
// Threading: one thread (the backend's task thread). Not thread-safe.
class WriteBackCache {
 public:
  using Ref = uint32_t;
  static constexpr Ref kNone = ~Ref{0};
  // Dirty entries written per batch by MakeRoom(): up to the larger of this and a quarter of
  // the entries (a backend ingests such a batch as one SST file: bigger files, fewer L0 files
  // to compact and to look up).
  static constexpr size_t kEvictBatch = 32768;
  // Entries per WriteFn call of FlushDirty().
  static constexpr size_t kFlushBatch = 8192;
  // Bytes counted per entry beyond its block: the slot and its share of the index.
  static constexpr size_t kEntryOverhead = 32;
  // The most bytes a block holds beyond its entry's (the slot's 8-bit `room`).
  static constexpr size_t kMaxRoom = 255;

  // Writes the entries `refs` (in key order) to the store in one batch (key(), deleted(),
  // expiry(), value()). On OK the cache marks them clean (in_db = !deleted); an error leaves
  // them as they were and is returned to the caller of FlushDirty()/MakeRoom()/Snapshot().
  using WriteFn = absl::FunctionRef<absl::Status(absl::Span<const Ref> refs)>;
  // A snapshot's delta file (see Snapshot()): `add(r)` appends the hot entry r (key(),
  // deleted(), expiry(), value()) while Snapshot() passes over it; `finish()` completes the
  // file after the store's write succeeded (not called when no entry was added). An error of
  // finish() fails the snapshot: its entries stay dirty.
  struct DeltaFns {
    absl::FunctionRef<void(Ref r)> add;
    absl::FunctionRef<absl::Status()> finish;
  };

  // A budget above kMaxBudgetBytes is taken as kMaxBudgetBytes: block positions have 40 bits
  // (512 GiB of blocks), which leaves room for the dirty entries eviction cannot write yet.
  static constexpr size_t kMaxBudgetBytes = size_t{1} << 38;
  explicit WriteBackCache(size_t budget_bytes);
  ~WriteBackCache();
  WriteBackCache(const WriteBackCache&) = delete;
  WriteBackCache& operator=(const WriteBackCache&) = delete;

  // The hash of `key` that the index and the store filter both use (WrittenKeyFilter::Hash):
  // a caller that looks a key up more than once (Peek() then Insert(), MayBeInStoreHashed())
  // computes it once and passes it to the functions below that take one.
  static uint64_t HashKey(absl::string_view key) { return WrittenKeyFilter::Hash(key); }

  // The entry of `key` for a read: counts a hit (and sets its reference bit) or a miss. The
  // first read of an entry marked prefetched counts as the miss it would have been.
  Ref Find(absl::string_view key) { return Find(key, HashKey(key)); }
  Ref Find(absl::string_view key, uint64_t hash);
  // Counts and references entry r as Find() of its key does (a read of r found by an earlier
  // lookup, e.g. a read-ahead's, that the caller kept while frees() did not change).
  void Touch(Ref r);
  // References entry r (as FindOrInsert() does: not counted as a read).
  void Reference(Ref r) { slots_[r].flags |= kReferenced; }
  // The entry of `key` without counting or referencing it (kNone if not cached).
  Ref Peek(absl::string_view key) const { return Peek(key, HashKey(key)); }
  Ref Peek(absl::string_view key, uint64_t hash) const;
  // A new entry for `key` (REQUIRES: not cached): deleted, clean, in_db, referenced, no expiry.
  // Its block has room for a value of `value_room` bytes (a hint: counted in bytes() from now
  // on; ignored where the block would hold more than kMaxRoom bytes beyond the key), so the
  // first SetValue() of up to that many bytes writes in place.
  Ref Insert(absl::string_view key) { return Insert(key, HashKey(key)); }
  Ref Insert(absl::string_view key, uint64_t hash, size_t value_room = 0);
  // The entry of `key` for a blind write (inserted if absent); sets its reference bit.
  Ref FindOrInsert(absl::string_view key);
  // Drops an entry (REQUIRES: clean).
  void Erase(Ref r);
  // Marks an entry that a read-ahead loaded before any read asked for it (so hits and misses
  // count as without the read-ahead; see Find()).
  void MarkPrefetched(Ref r) { slots_[r].flags |= kPrefetched; }

  absl::string_view key(Ref r) const { return {KeyData(slots_[r]), slots_[r].key_len}; }
  absl::string_view value(Ref r) const {
    return {KeyData(slots_[r]) + slots_[r].key_len, slots_[r].value_len};
  }
  void SetValue(Ref r, absl::string_view v);
  void AppendValue(Ref r, absl::string_view v);
  int64_t expiry(Ref r) const {
    const Slot& s = slots_[r];
    if ((s.flags & kHasExpiry) == 0) return 0;
    int64_t e;
    std::memcpy(&e, arena_.At(s.pos), sizeof(e));
    return e;
  }
  void set_expiry(Ref r, int64_t e);
  bool deleted(Ref r) const { return (slots_[r].flags & kDeleted) != 0; }
  void set_deleted(Ref r, bool d) { SetFlag(r, kDeleted, d); }
  // RocksDB may hold the key (false: deleting it needs no tombstone).
  bool in_db(Ref r) const { return (slots_[r].flags & kInDb) != 0; }
  void set_in_db(Ref r, bool b) { SetFlag(r, kInDb, b); }
  // An entry is in one of three states: clean (the store agrees with it), dirty (changed since
  // the last Snapshot(); the store may lack it) or pending (written into the last snapshot's
  // delta file and unchanged since, but not into the store).
  bool dirty(Ref r) const { return (slots_[r].flags & kDirty) != 0; }
  bool pending(Ref r) const { return (slots_[r].flags & kPending) != 0; }
  // Dirty (also a pending entry: it changed since its snapshot).
  void MarkDirty(Ref r);
  // Clean without a write: the entry agrees with the store (e.g. a delete of a key that never
  // reached it).
  void MarkClean(Ref r);

  // Writes every entry the store lacks (dirty or pending), in key order across all its WriteFn
  // batches (each of at most `batch` entries); entries stay cached. On an error the entries not
  // written stay as they were.
  absl::Status FlushDirty(WriteFn write, size_t batch = kFlushBatch);
  // The cache's part of a snapshot that keeps hot entries out of the store. Hot: dirty and
  // also written by the previous Snapshot() (changed in two intervals in a row). The pending
  // entries that did not change since the last snapshot and the dirty ones that are not hot
  // (new, or quiet for a while) go to the store (`write`, one call in key order; they become
  // clean), the hot ones into the snapshot's delta file (`delta.add` for each, in no order,
  // then `delta.finish`; they become pending). Afterwards the store plus that delta file hold
  // every entry: an entry changed in every interval is written once per snapshot, into a file,
  // and reaches the store only when evicted or when an interval leaves it unchanged; an entry
  // written once (state that only grows) reaches the store once. Empty spans are not passed.
  // One pass over the dirty list classifies the entries, hands the hot ones to `delta.add` and
  // changes their flags (hot entries stay listed): at 50K hot entries the snapshot touches each
  // slot and block once (six passes over the slots before session 27). On an error nothing is
  // lost: entries not written keep their state (hot ones stay dirty), and the next Snapshot()
  // writes them (an entry made pending by a snapshot that failed later is written to the store
  // by the next one).
  // `all_dirty_hot`: every dirty entry counts as hot, written by the last snapshot or not (the
  // first snapshot of a store that holds no state yet, where no entry has a history: at 50K
  // keys per subtask written every interval, its ingestion into the store was ~17 ms of the task
  // thread, against 3.5-5 ms for a delta of them). An entry it puts into the delta and that does
  // not change again reaches the store at the next snapshot (written twice, once).
  absl::Status Snapshot(WriteFn write, DeltaFns delta, bool all_dirty_hot = false);
  // Forgets which entries the last Snapshot() wrote (for a snapshot taken without Snapshot(),
  // e.g. by FlushDirty(): the entries changed after it are not hot).
  void ForgetSnapped();
  // Evicts until bytes() <= budget - reserved (see the class comment and Reserve()); the dirty
  // entries it writes go to `write` in key order. Cheap when within budget.
  absl::Status MakeRoom(WriteFn write) {
    if (bytes_ <= budget_ - reserved_) return absl::OkStatus();
    return Evict(write);
  }

  // Starts the store filter (see the class comment) with a first part of `first_capacity` keys;
  // a no-op after the first call.
  // REQUIRES: the store holds no key yet, or the caller names each one it holds with
  // NoteInStore() before the next MayBeInStore().
  void EnableStoreFilter(size_t first_capacity);
  // False only if the store filter is on and the store never received `key`.
  bool MayBeInStore(absl::string_view key) const {
    return filter_ == nullptr || filter_->MayContain(HashKey(key));
  }
  // Adds a key the store holds that the cache did not write (e.g. restored) to the filter.
  void NoteInStore(absl::string_view key);
  // Notes that MayBeInStore() of entry r's key was false when r was inserted: its first write
  // then adds it to the store filter without probing the filter for it first (at 10M keys with
  // 64 MiB per worker, a probe of every part per evicted key).
  void NoteFilterMiss(Ref r) {
    if (filter_ != nullptr) slots_[r].flags |= kFilterMiss;
  }
  // Starts loading the memory that Peek(), Find() and Insert(), and MayBeInStoreHashed() of the
  // key of `hash` (HashKey(key)) read: a batch calls it for each of its keys first, so the
  // lookups that follow overlap their cache misses.
  void PrefetchKey(uint64_t hash) const {
    if (!cells_.empty()) __builtin_prefetch(&cells_[Tag(hash) & (cells_.size() - 1)]);
    if (filter_ != nullptr) filter_->Prefetch(hash);
  }
  // For a batch's lookups, after PrefetchKey() of each of its keys: starts loading the slot,
  // or the block (key and value, as PrefetchEntry()), of the entry the key of `hash` most
  // likely has (the first of its home cell and the next whose tag matches; none if neither
  // does). A batch calls these for keys a few, then fewer, places ahead of its Peek()s, so that
  // each Peek() finds its cell, slot and key loaded instead of waiting for each in turn
  // (3 dependent misses a key once the cache outgrows the CPU's caches).
  void PrefetchSlotOf(uint64_t hash) const {
    const Ref r = LikelyRef(hash);
    if (r != kNone) PrefetchSlot(r);
  }
  void PrefetchEntryOf(uint64_t hash) const {
    const Ref r = LikelyRef(hash);
    if (r != kNone) PrefetchEntry(r);
  }
  // Starts loading the slot of entry r, or the bytes (key, value) of entry r, for a pass over
  // entries in an order that is not the memory's.
  void PrefetchSlot(Ref r) const { __builtin_prefetch(&slots_[r]); }
  // An entry's block may span two cache lines (a 40-byte block does in 3 of 5 positions): both
  // its first and its last byte are loaded, so the value a write copies does not miss.
  void PrefetchEntry(Ref r) const {
    const Slot& s = slots_[r];
    const char* p = arena_.At(s.pos);
    __builtin_prefetch(p);
    __builtin_prefetch(p + Used(s) - 1);
  }
  // MayBeInStore() of the key of `hash` (HashKey(key)).
  bool MayBeInStoreHashed(uint64_t hash) const {
    return filter_ == nullptr || filter_->MayContain(hash);
  }
  bool store_filter_on() const { return filter_ != nullptr; }

  size_t bytes() const { return bytes_; }
  size_t budget() const { return budget_; }
  // Sets aside `bytes` of the budget (at most all of it) for memory its owner holds elsewhere:
  // MakeRoom() evicts down to the rest from its next call. 0 gives the whole budget back. The
  // store filter's limit (half the budget) does not change.
  void Reserve(size_t bytes) { reserved_ = std::min(bytes, budget_); }
  size_t size() const { return live_; }
  size_t dirty_count() const { return dirty_count_; }
  size_t pending_count() const { return pending_count_; }
  // Entries dropped so far (by MakeRoom() or Erase()): a Ref taken when frees() was n is
  // still valid while frees() == n.
  uint64_t frees() const { return frees_; }
  // Index lookups so far (Peek(), Find(), FindOrInsert()), for tests of what a caller spares.
  uint64_t lookups() const { return lookups_; }
  // Dirty and pending entries MakeRoom() wrote to the store so far (the cache is full).
  uint64_t evicted_writes() const { return evicted_writes_; }
  uint64_t hits() const { return hits_; }
  uint64_t misses() const { return misses_; }
  // Where entry r's block lives (for tests of which writes keep it).
  uint64_t BlockPositionForTest(Ref r) const { return slots_[r].pos; }

 private:
  enum Flag : uint16_t {
    kLive = 1,
    kDirty = 2,
    kDeleted = 4,
    kReferenced = 8,
    kInDb = 16,
    kListed = 32,  // in dirty_ (which may also hold stale or repeated slot numbers)
    kVictim = 64,  // taken by the running Evict()
    kPrefetched = 128,  // MarkPrefetched() and not read since
    kHasExpiry = 256,  // the block starts with 8 bytes of expiry
    kInFilter = 512,  // the key is in the store filter (added by an earlier write)
    kPending = 1024,  // in the last snapshot's delta file, not in the store (never with kDirty)
    kSnapped = 2048,  // changed by the last successful Snapshot() (listed in snapped_)
    kFilterMiss = 4096,  // the store filter said the key was never written (NoteFilterMiss())
  };
  // An entry: its block in arena_ holds [expiry (kHasExpiry)][key][value] and is exactly
  // Capacity() = BlockArena::ClassSize(Used() + room) bytes.
  struct Slot {
    uint64_t pos : 40;  // in arena_ (positions use 40 bits)
    uint64_t room : 8;  // bytes of the block beyond Used() (0: its size class, as before)
    uint64_t flags : 16;
    uint32_t key_len;
    uint32_t value_len;
  };
  static_assert(sizeof(Slot) == 16, "slot layout");

  // An index cell: `tag` is the low 32 bits of the key's hash (its home cell is tag & mask),
  // `ref` the slot (kNone: empty).
  struct Cell {
    uint32_t tag = 0;
    Ref ref = kNone;
  };
  static uint32_t Tag(uint64_t hash) { return static_cast<uint32_t>(hash); }
  // PrefetchSlotOf()'s guess: the entry of the first of the home cell of `hash` and the next
  // with its tag (a tag's false match only loads an entry in vain), kNone if neither has it.
  Ref LikelyRef(uint64_t hash) const {
    if (cells_.empty()) return kNone;
    const size_t mask = cells_.size() - 1;
    const uint32_t tag = Tag(hash);
    const size_t i = tag & mask;
    if (cells_[i].tag == tag && cells_[i].ref != kNone) return cells_[i].ref;
    const Cell& next = cells_[(i + 1) & mask];
    return next.tag == tag ? next.ref : kNone;
  }
  // The index cell holding `key` (or the empty cell where the probe ended: cells_[i].ref ==
  // kNone).
  size_t Probe(absl::string_view key, uint32_t tag) const;
  void IndexInsert(Ref r, uint32_t tag);
  // Removes r's cell, found by its tag and slot number (no key compared).
  void IndexErase(Ref r, uint32_t tag);
  void GrowIndex();

  static size_t ExpiryBytes(const Slot& s) { return (s.flags & kHasExpiry) != 0 ? 8 : 0; }
  static size_t Used(const Slot& s) { return ExpiryBytes(s) + s.key_len + s.value_len; }
  static size_t Capacity(const Slot& s) { return BlockArena::ClassSize(Used(s) + s.room); }
  const char* KeyData(const Slot& s) const { return arena_.At(s.pos) + ExpiryBytes(s); }
  void SetFlag(Ref r, uint16_t flag, bool on) {
    if (on) {
      slots_[r].flags |= flag;
    } else {
      slots_[r].flags &= ~flag;
    }
  }
  // Gives slot r a block for `value_len` value bytes (with the expiry prefix if `has_expiry`),
  // keeping its expiry (0 when it had none), its key and the first `keep_value` value bytes:
  // its own block where that fits the same size class, or where the value grows into the
  // block's room; else a new one.
  void Relayout(Ref r, bool has_expiry, size_t value_len, size_t keep_value);
  // Drops entry r, of HashKey() `hash`.
  void Free(Ref r, uint64_t hash);
  absl::Status Evict(WriteFn write);
  // Writes `refs` (all dirty or pending) and marks them clean; on an error they stay as they
  // were. `hashes` (if not empty): HashKey() of each of `refs`.
  absl::Status WriteAndClean(absl::Span<const Ref> refs, WriteFn write,
                             absl::Span<const uint64_t> hashes = {});
  // Moves the live listed entries of dirty_ that are dirty or pending into victims_ (in list
  // order), unlisting the rest; dirty_ is left empty.
  void TakeListed();
  // Lists `refs` in dirty_ again (after they were taken by TakeListed()).
  void Relist(absl::Span<const Ref> refs);
  // Drops stale and repeated slot numbers from dirty_ when it grew much beyond its entries.
  void CompactDirtyList();
  // SortByKey() sorts this many refs or more by radix, fewer by std::sort.
  static constexpr size_t kRadixSortMin = 1024;
  // Sorts `refs` by key (byte-wise), as std::sort comparing key() would; `hashes` (if given)
  // gets HashKey() of each sorted ref's key.
  void SortByKey(std::vector<Ref>* refs, std::vector<uint64_t>* hashes = nullptr);
  // Adds `key` (of HashKey() `hash`) to the store filter (if on), counting its
  // growth in bytes_ and dropping it when it outgrows half the budget.
  // `absent`: the filter is known to lack it (no probe first).
  void AddToFilter(uint64_t hash, bool absent = false);

  const size_t budget_;
  size_t reserved_ = 0;  // Reserve()
  BlockArena arena_;
  std::vector<Slot> slots_;
  std::vector<Ref> free_;
  std::vector<Cell> cells_;  // a power of two in size (or empty)
  size_t live_ = 0;
  size_t bytes_ = 0;
  size_t hand_ = 0;  // CLOCK hand over slots_
  std::vector<Ref> dirty_;  // the dirty and pending entries (and stale slot numbers)
  size_t dirty_count_ = 0;
  size_t pending_count_ = 0;
  std::vector<Ref> victims_;  // scratch of Evict() and FlushDirty(); Snapshot()'s hot entries
  std::vector<Ref> unchanged_;  // scratch of Snapshot(): what goes to the store
  std::vector<Ref> cold_;  // scratch of Snapshot(): dirty entries that are not hot
  // The entries the last successful Snapshot() marked kSnapped: first the ones it wrote to the
  // store (snapped_cold_ of them), then the hot ones (still listed in dirty_ unless
  // TakeListed() ran since: list_taken_).
  std::vector<Ref> snapped_;
  size_t snapped_cold_ = 0;
  bool list_taken_ = false;  // TakeListed() ran since the last successful Snapshot()
  // Scratch of SortByKey(): (prefix, position in sort_refs_) pairs, the refs and their hashes.
  std::vector<std::pair<uint64_t, uint32_t>> by_prefix_;
  std::vector<std::pair<uint64_t, uint32_t>> radix_tmp_;
  std::vector<Ref> sort_refs_;
  std::vector<uint64_t> sort_hashes_;
  std::vector<uint32_t> radix_counts_;                // scratch of SortByKey()
  std::vector<uint64_t> hashes_;  // scratch of WriteAndClean()
  std::vector<uint64_t> absent_hashes_;  // scratch of WriteAndClean(): of kFilterMiss entries
  std::vector<uint64_t> victim_hashes_;  // scratch of Evict(): HashKey() of each victim
  uint64_t hits_ = 0;
  uint64_t misses_ = 0;
  uint64_t frees_ = 0;
  mutable uint64_t lookups_ = 0;  // lookups()
  uint64_t evicted_writes_ = 0;
  std::unique_ptr<WrittenKeyFilter> filter_;  // the store filter; null: off
  bool filter_started_ = false;  // EnableStoreFilter() was called (filter_ may be dropped since)
};

}  // namespace sluice::state::internal
