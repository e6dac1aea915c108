#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <new>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/record.h"
#include "common/status.h"
#include "operators/join_base.h"
#include "state/keyed_state_backend.h"

namespace sluice::ops {

// Memory of kept keys and records above which a JoinRowStore spills; 0 restores the default
// (512 MiB per subtask). For tests: takes effect for stores initialised afterwards.
void SetJoinMemoryForTest(size_t bytes);
// How many times JoinRowStores of this process compacted their arenas (tests).
uint64_t JoinArenaCompactionsForTest();
// Whether stores initialised afterwards may checkpoint their keys as blocks (JoinRowStore):
// false writes one entry per key, as the stores did before blocks (tests of old checkpoints).
void SetJoinBlocksForTest(bool on);

// A JoinRowStore's blocks (format kJoinBlockFormat): the keys of one key group whose integer
// value >> kJoinBlockShift is the same share a block, stored under PutBlockKey(key group,
// value >> kJoinBlockShift) in the store's blocks state.
inline constexpr int kJoinBlockShift = 14;
// A key whose stored rows take more bytes than this has an entry of its own, not a place in its
// block: a block is rewritten whole for one changed key, so it holds small keys only.
inline constexpr size_t kJoinBlockMaxKeyBytes = 256;
inline constexpr int kJoinBlockFormat = 1;

// The encoded records of a JoinRowStore, in chunks of 64 KiB: a record is written in place at
// the end of the current chunk (a new one when it does not fit; a record larger than a chunk gets
// a chunk of its own) and stays there until moved by a compaction. Freeing a record counts its
// bytes off its chunk; a chunk whose records are all freed is reused (a few are kept, the rest
// returned to the allocator). So a record is written once, and no per-key buffer grows by
// copying itself. The joins drop records roughly in arrival order (the watermark or the ttl
// sweeps them), so chunks mostly empty as a whole; when freed bytes held by partly live chunks
// outgrow the live ones (NeedsCompaction), the store moves the live records out of those
// chunks (BeginCompaction, Move, EndCompaction). A record is named by a 32-bit reference: its
// chunk's index << 16 | its offset in the chunk (so at most 65536 chunks).
//
// Threading: the owning store's.
class JoinRowArena {
 public:
  static constexpr int kOffsetBits = 16;
  static constexpr size_t kChunkBytes = size_t{1} << kOffsetBits;
  static constexpr uint32_t kMaxChunks = uint32_t{1} << (32 - kOffsetBits);

  JoinRowArena() = default;
  // At most `max_chunks` chunks (<= kMaxChunks): tests reach the limit with it.
  explicit JoinRowArena(uint32_t max_chunks) : max_chunks_(max_chunks) {}

  // Room for `bound` bytes, where the caller writes a record before Commit()ing its size
  // (<= bound). nullptr when every chunk index is in use (the store's budget keeps it far).
  char* Reserve(size_t bound);
  // The reference of the record just written at Reserve()'s pointer, `size` bytes long.
  uint32_t Commit(size_t size);
  const char* data(uint32_t ref) const {
    return chunks_[ref >> kOffsetBits].data.get() + (ref & (kChunkBytes - 1));
  }
  // The `size` bytes at `ref` are no longer used.
  void Free(uint32_t ref, size_t size);
  // Forgets every record (a spill).
  void Clear();

  // Memory of the chunks holding records, and bytes of those records.
  size_t held_bytes() const { return held_bytes_; }
  size_t live_bytes() const { return live_bytes_; }
  // Half of the chunk indexes are in use: the store must let go of its records (a spill).
  bool NearlyFull() const { return chunks_.size() - free_indexes_.size() > max_chunks_ / 2; }

  // Compaction: NeedsCompaction() when the memory a compaction would give back (the partly
  // freed chunks' but the current one's, movable_waste()) exceeds both the live bytes and 32
  // chunks. Slack it cannot give back does not count: the unwritten end of a chunk whose
  // records all live, or of a large record's chunk (its bound beyond its size), so wide
  // records whose size bound is far above their size never trigger compactions that move
  // nothing. BeginCompaction() marks the partly freed chunks (not the current one); then Move()
  // gives every live record's new reference (copied out of a marked chunk, or the same);
  // EndCompaction() after all were moved (the marked chunks are then free).
  bool NeedsCompaction() const {
    return movable_waste_ > live_bytes_ && movable_waste_ > 32 * kChunkBytes;
  }
  size_t movable_waste() const { return movable_waste_; }
  void BeginCompaction();
  uint32_t Move(uint32_t ref, size_t size);
  void EndCompaction();

 private:
  struct Chunk {
    std::unique_ptr<char[]> data;
    uint32_t capacity = 0;  // kChunkBytes, or a large record's bound
    uint32_t used = 0;      // bytes written (bump pointer)
    uint32_t live = 0;      // bytes not freed
    bool evacuating = false;
  };
  static constexpr size_t kKeptFree = 16;  // empty chunks kept for reuse

  // A chunk index with `capacity` bytes (a kept free chunk when it is kChunkBytes), or
  // kNoChunk when every index is in use.
  static constexpr uint32_t kNoChunk = UINT32_MAX;
  uint32_t NewChunk(size_t capacity);
  void Release(uint32_t index);
  // What a compaction would give back of chunk `c` when it is not the current one.
  static size_t Movable(const Chunk& c) { return c.live < c.used ? c.capacity - c.live : 0; }

  uint32_t max_chunks_ = kMaxChunks;
  std::vector<Chunk> chunks_;
  std::vector<uint32_t> free_chunks_;   // empty chunks of kChunkBytes with memory
  std::vector<uint32_t> free_indexes_;  // indexes without memory
  uint32_t current_ = kNoChunk;         // where small records go
  uint32_t pending_ = kNoChunk;         // Reserve()'s chunk
  size_t held_bytes_ = 0;
  size_t live_bytes_ = 0;
  size_t movable_waste_ = 0;  // Movable() summed over the chunks but the current one
};

// Entries by index (JoinRowStore's keys by slot) in chunks of 2^kShift entries that never move:
// a new chunk when the last is full, and an entry constructed in place when it is added. So
// growing copies no entry and touches each page once, where a vector that doubles copies every
// entry and touches fresh pages for the copy (most of q4's workers' page faults were
// std::vector<Key> growing). An index reaches its entry through the chunk table (a few pointers,
// kept in cache). Threading: the owner's.
template <typename T, int kShift>
class JoinSlotChunks {
 public:
  static constexpr size_t kPerChunk = size_t{1} << kShift;

  JoinSlotChunks() = default;
  JoinSlotChunks(const JoinSlotChunks&) = delete;
  JoinSlotChunks& operator=(const JoinSlotChunks&) = delete;
  ~JoinSlotChunks() { clear(); }

  T& operator[](size_t i) { return chunks_[i >> kShift][i & (kPerChunk - 1)]; }
  const T& operator[](size_t i) const { return chunks_[i >> kShift][i & (kPerChunk - 1)]; }
  size_t size() const { return size_; }
  // A new entry (value-initialised) at index size() - 1.
  T& emplace_back() {
    if ((size_ & (kPerChunk - 1)) == 0 && (size_ >> kShift) == chunks_.size()) {
      chunks_.push_back(static_cast<T*>(
          ::operator new(kPerChunk * sizeof(T), std::align_val_t{alignof(T)})));
    }
    T* const entry = &chunks_[size_ >> kShift][size_ & (kPerChunk - 1)];
    ++size_;
    return *new (entry) T();
  }
  // Destroys every entry and returns the chunks' memory.
  void clear() {
    for (size_t i = 0; i < size_; ++i) (*this)[i].~T();
    for (T* chunk : chunks_) ::operator delete(chunk, std::align_val_t{alignof(T)});
    chunks_.clear();
    size_ = 0;
  }

 private:
  std::vector<T*> chunks_;  // owned: kPerChunk entries each, the first size_ constructed
  size_t size_ = 0;
};

// One input's rows of a key (JoinRowStore::Rows), in time order: up to kInline inline, more on
// the heap, and back inline when they shrink to kInline again. The oldest rows are dropped by
// advancing a head: the rows after them stay where they are (absl::InlinedVector's erase moved
// every kept row down, and the loads of a key's heap rows for that move were most of
// DropFront's time). The room before the head is taken back when an append finds the end full:
// inline rows are moved down (they share the key's cache lines); heap rows are moved down when
// the room before the head is at least a quarter of the block (so at most three rows are moved
// per row dropped, amortised), otherwise the heap block doubles. Taking the room back at half
// the block let ~10 rows slide through blocks of 32 (each append soon on a cold line); at a
// quarter they stay in blocks of 16. `T` is trivially copyable (rows are moved with memcpy).
// Threading: the owner's.
template <typename T, uint32_t kInline>
class JoinRowList {
  static_assert(std::is_trivially_copyable_v<T> && std::is_trivially_destructible_v<T>);

 public:
  JoinRowList() {}
  JoinRowList(const JoinRowList&) = delete;
  JoinRowList& operator=(const JoinRowList&) = delete;
  ~JoinRowList() {
    if (on_heap()) ::operator delete(heap_);
  }

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  // Rows the storage holds from its start (those before the head included).
  size_t capacity() const { return capacity_; }
  bool on_heap() const { return capacity_ > kInline; }
  T* data() { return base() + head_; }
  const T* data() const { return base() + head_; }
  T* begin() { return data(); }
  T* end() { return data() + size_; }
  const T* begin() const { return data(); }
  const T* end() const { return data() + size_; }
  T& operator[](size_t i) { return data()[i]; }
  const T& operator[](size_t i) const { return data()[i]; }
  T& front() { return data()[0]; }
  const T& front() const { return data()[0]; }
  T& back() { return data()[size_ - 1]; }
  const T& back() const { return data()[size_ - 1]; }

  // A new value-initialised row at the end.
  T& emplace_back() {
    if (head_ + size_ == capacity_) MakeRoom();
    T* const p = base() + head_ + size_;
    ++size_;
    return *new (p) T();
  }
  // A new value-initialised row before the `i`-th (<= size()); the rows from the `i`-th on move
  // up by one.
  T& insert_at(size_t i) {
    if (head_ + size_ == capacity_) MakeRoom();
    T* const p = data() + i;
    std::memmove(p + 1, p, (size_ - i) * sizeof(T));
    ++size_;
    return *new (p) T();
  }
  // Drops the first `n` (<= size()) rows.
  void drop_front(size_t n) {
    head_ += static_cast<uint32_t>(n);
    size_ -= static_cast<uint32_t>(n);
    if (size_ == 0) head_ = 0;
    Shrink();
  }
  // Keeps the first `n` (<= size()) rows.
  void truncate(size_t n) {
    size_ = static_cast<uint32_t>(n);
    if (size_ == 0) head_ = 0;
    Shrink();
  }
  void clear() {
    if (on_heap()) ::operator delete(heap_);
    head_ = size_ = 0;
    capacity_ = kInline;
  }

 private:
  T* base() { return on_heap() ? heap_ : inline_; }
  const T* base() const { return on_heap() ? heap_ : inline_; }
  // The end is full: the rows move down to the start, or to a heap block twice as large.
  void MakeRoom() {
    if (head_ != 0 && (!on_heap() || head_ >= capacity_ / 4)) {
      T* const b = base();
      std::memmove(b, b + head_, size_ * sizeof(T));
      head_ = 0;
      return;
    }
    const uint32_t capacity = 2 * capacity_;
    T* const block = static_cast<T*>(::operator new(capacity * sizeof(T)));
    std::memcpy(block, data(), size_ * sizeof(T));
    if (on_heap()) ::operator delete(heap_);
    heap_ = block;
    capacity_ = capacity;
    head_ = 0;
  }
  // Rows on the heap that fit inline again move back.
  void Shrink() {
    if (!on_heap() || size_ > kInline) return;
    T* const block = heap_;  // inline_ overlays it
    std::memcpy(inline_, block + head_, size_ * sizeof(T));
    ::operator delete(block);
    head_ = 0;
    capacity_ = kInline;
  }

  uint32_t head_ = 0;  // the first row's index in the storage
  uint32_t size_ = 0;
  uint32_t capacity_ = kInline;
  union {
    T* heap_;            // when on_heap()
    T inline_[kInline];  // otherwise
  };
};

// The records a join (interval_join, join) keeps, per key in memory, as Flink's heap keyed
// state keeps them: the encoded records in the store's JoinRowArena (written once, in place) and
// per key and input references to them sorted by time. The owning operator decides
// what a record's time means (event time for interval_join, arrival time for join) and when
// rows are dropped; the store does the memory, the backend and the bytes:
// - WriteDirty() (the operator's SnapshotState) writes the keys changed since the last call as
//   one value-state entry per key, [format 2] then per input [count: varint] and per record
//   [ts: fixed64 LE] ([flag: 1 byte] when the store keeps flags) [size: varint] [record], and
//   deletes the entries of keys left empty. So checkpoints, restores and rescaling (by key
//   group) cover the whole state.
//   That is the spill path's layout. While every key is in memory and the keys are integers
//   (JoinOperatorBase::int_key()), WriteDirty() writes blocks instead (session 27): the keys of
//   one key group whose value >> kJoinBlockShift is the same share one value of the blocks state
//   (its key: PutBlockKey), [format 1][keys: varint] then per key [key size: varint][key bytes]
//   [value size: varint][the key's value, as its per-key entry], rewritten whole when one of its
//   keys changed, came or left (deleted once empty); a key whose rows take more than
//   kJoinBlockMaxKeyBytes keeps an entry of its own. So the backend's work at a checkpoint is
//   per changed block, not per changed key (Nexmark q4's auction ids grow: the newest ranges of
//   each key group), and keys that leave (the sweep, the input's end) cost no delete each.
// - Beyond its memory budget, Spill() writes the changed keys out and forgets every key; a key
//   is then read back when the operator asks for it (Load, LoadCurrent). A spill first turns
//   the blocks into per-key entries (deleting the blocks); the store keeps per-key entries
//   from then on.
// - LoadAll() reads the keys of the restored key groups back, from per-key entries (those of
//   checkpoints before blocks too: they move into blocks at the next WriteDirty, which deletes
//   the entries) and blocks (any parallelism: a block is keyed state of its key group);
//   RestoreBuckets() converts the bucket layout of format 1 (join_base.h).
//
// Threading: the owning operator's task thread only.
class JoinRowStore {
 public:
  static constexpr int64_t kNever = INT64_MAX;

  // A kept record: its time, and where its fields are (RowLayout): the record's bytes in the
  // arena (`ref`, `size` bytes), or with kInline the one stored field's value in the eight bytes
  // of `ref`, `size` and `flag` (only in stores without flags): written by set_value(), read
  // where the other layout's values are read, at StoredInts().
  struct Row {
    int64_t ts;
    uint32_t ref;       // the record in the store's arena
    uint32_t size : 31;
    uint32_t flag : 1;  // the operator's (join: a left row has matched)

    void set_value(int64_t v) { std::memcpy(reinterpret_cast<char*>(this) + 8, &v, 8); }
  };
  // How an input's rows keep their fields in memory (stored bytes are the same for all: the
  // record codec's, written at WriteDirty):
  // - kEncoded: the record codec's bytes in the arena (any schema).
  // - kInts: an input of NOT NULL integers and timestamps only (Schema::all_integral()): its
  //   fields as int64 values in the arena (8 bytes each), but the key's field (integer keys read
  //   from a bare field: the key's int_key) and the row's time field (`time_field` at Init: the
  //   row's ts), which the row's key and time give back. No varint encoding on Append, no
  //   decoding of a match.
  // - kInline: kInts with at most one field left, in a store without flags: that value in the
  //   row itself (Row::set_value()), nothing in the arena.
  enum class RowLayout : uint8_t { kEncoded, kInts, kInline };
  // One input's kept records of a key, sorted by time: up to kInlineRows inline, so that a
  // key's state sits in the five cache lines of its Key (Nexmark's joins keep a few records per
  // key and input; join_benchmark's interval join 6-10 per input, whose heap rows were one more
  // cache miss per record with 4 inline); more go to the heap, and back inline when they are
  // dropped again. Dropping the oldest advances a head (JoinRowList).
  static constexpr size_t kInlineRows = 8;
  using Rows = JoinRowList<Row, kInlineRows>;
  // A key in memory: what a record's join reads, in one block of cache lines (its serialized
  // form, which only the backend needs, is kept apart: key_bytes()).
  struct alignas(64) Key {
    int64_t int_key = 0;         // the key's value when the operator's keys are integers
    int key_group = 0;
    uint32_t generation = 0;     // bumped when the slot is freed (the operator's stale entries)
    bool live = false;           // the slot holds a key
    bool dirty = false;          // changed since last written to the backend
    bool in_backend = false;     // the backend holds a value for the key (maybe an older one)
    bool in_block = false;       // its block (blocks()) holds it as last written
    bool listed = false;         // in the store's list of changed slots (a freed one's too)
    int64_t scheduled = kNever;  // the key's pending sweep (or the operator's timer) time
    Rows rows[2];
    bool empty() const { return rows[0].empty() && rows[1].empty(); }
  };
  static_assert(sizeof(Key) == 5 * 64, "a key's entry is five cache lines");
  static_assert(sizeof(Row) == 16 && offsetof(Row, ref) == 8,
                "a kInline row's value is the eight bytes after ts");

  // `op` decodes records and key groups; `id` is the value state of the rows (per-key entries),
  // `blocks` the value state of their blocks, `what` names them in errors ("interval join
  // rows"); `flags`: a flag byte per record in the backend; `time_fields`: per input, the field
  // whose value is always a row's time (interval_join's event time), or -1 (RowLayout).
  void Init(JoinOperatorBase* op, state::StateId id, state::StateId blocks, absl::string_view what,
            bool flags, const int (&time_fields)[2] = kNoTimeFields);
  static constexpr int kNoTimeFields[2] = {-1, -1};
  // How input `side`'s rows are kept (set at Init).
  RowLayout layout(int side) const { return layout_[side]; }
  // True while WriteDirty() writes blocks (integer keys, no spill so far).
  bool blocks() const { return blocks_on_; }

  Key& key(uint32_t slot) { return keys_[slot]; }
  // Key `slot` serialized (the backend's key).
  const std::string& key_bytes(uint32_t slot) const { return key_bytes_[slot]; }
  // Makes key `slot` the backend's current key.
  void SetCurrentKey(uint32_t slot) {
    state_->SetCurrentKey(key_bytes_[slot], keys_[slot].key_group);
  }
  // The slot of serialized key `key` in memory, or nullptr.
  const uint32_t* Find(absl::string_view key) const {
    if (int_keys_) {
      int64_t value;
      return JoinOperatorBase::IntKeyOfBytes(key, &value) ? FindInt(value) : nullptr;
    }
    auto it = slot_of_.find(key);
    return it == slot_of_.end() ? nullptr : &it->second;
  }
  // REQUIRES: the operator's keys are integers (JoinOperatorBase::int_key()). The slot of key
  // `value` in memory, or nullptr.
  const uint32_t* FindInt(int64_t value) const {
    auto it = slot_of_int_.find(value);
    return it == slot_of_int_.end() ? nullptr : &it->second;
  }
  static constexpr uint32_t kNoSlot = UINT32_MAX;
  // A batch of input `side`'s records (the operators' ProcessBatch), as a software pipeline:
  // while record i is joined (`join(record, slot)`, in order), record i + kLag's rows are
  // prefetched, record i + 2 kLag's key is looked up and its entry prefetched, and record
  // i + 3 kLag's key is evaluated and its place in the hash table prefetched (integer keys are
  // read as values, JoinOperatorBase::int_key(), not serialized). `slot` is the one
  // found, or kNoSlot when the key was not in memory or a spill since made it stale (`join` then
  // looks it up as for a single record). The same as `join(record, kNoSlot)` per record, but a
  // record's join does not wait for its key's state to come from memory (cache misses were most
  // of a join's time), and each level's loads have kLag records' time to arrive (a chunk of 16
  // evaluated, then looked up, then joined left the first joins of each chunk waiting for the
  // entries just prefetched).
  template <typename JoinFn>
  absl::Status JoinBatch(int side, const Record* records, size_t count, JoinFn join) {
    size_t evaluated = 0;  // records whose keys were evaluated (and hash slots prefetched)
    size_t looked_up = 0;  // ... looked up (and entries prefetched)
    size_t prefetched = 0;  // ... whose rows were prefetched
    for (size_t i = 0; i < count; ++i) {
      for (const size_t end = std::min(count, i + 3 * kLag + 1); evaluated < end; ++evaluated) {
        Ahead& a = ahead_[evaluated & kAheadMask];
        if (int_keys_) {
          // The record's key value kLag records before it is read (the task's decoded records
          // have gone from the cache: that load was the pipeline's largest stall).
          if (key_field_[side] >= 0 && evaluated + kLag < count) {
            Prefetch(&records[evaluated + kLag][key_field_[side]]);
          }
          a.int_key = op_->IntKeyOf(side, records[evaluated]);
          slot_of_int_.prefetch(a.int_key);
        } else {
          op_->EvalKey(side, records[evaluated]);
          a.key.assign(op_->key_bytes());
          slot_of_.prefetch(a.key);
        }
      }
      for (const size_t end = std::min(count, i + 2 * kLag + 1); looked_up < end; ++looked_up) {
        Ahead& a = ahead_[looked_up & kAheadMask];
        const uint32_t* slot = int_keys_ ? FindInt(a.int_key) : Find(a.key);
        a.slot = slot != nullptr ? *slot : kNoSlot;
        a.spills = spills_;
        if (slot != nullptr) PrefetchKey(*slot);
      }
      for (const size_t end = std::min(count, i + kLag + 1); prefetched < end; ++prefetched) {
        const Ahead& a = ahead_[prefetched & kAheadMask];
        if (a.slot != kNoSlot && a.spills == spills_) PrefetchRows(a.slot);
      }
      const Ahead& a = ahead_[i & kAheadMask];
      SLUICE_RETURN_IF_ERROR(join(records[i], a.spills == spills_ ? a.slot : kNoSlot));
    }
    return absl::OkStatus();
  }
  // The slot of `key` (of `key_group`), which is not in memory: read back from the backend
  // after a spill (then key(slot).in_backend), or a new empty key. Sets the backend's current
  // key when it reads. kDataLoss when the stored value does not decode.
  absl::StatusOr<uint32_t> Load(absl::string_view key, int key_group);
  // The slot of the key `op` last evaluated (JoinOperatorBase::EvalKey): in memory, or Load()ed
  // and then passed to `loaded(slot)`.
  template <typename Fn>
  absl::StatusOr<uint32_t> SlotOfEvaluated(Fn loaded) {
    const uint32_t* found = int_keys_ ? FindInt(op_->EvaluatedIntKey()) : Find(op_->key_bytes());
    if (found != nullptr) return *found;
    SLUICE_ASSIGN_OR_RETURN(uint32_t slot, Load(op_->key_bytes(), op_->EvaluatedKeyGroup()));
    loaded(slot);
    return slot;
  }
  // The backend's current key `key` (not in memory) read back into *slot; false when it has
  // no value. kDataLoss when it does not decode.
  absl::StatusOr<bool> LoadCurrent(absl::string_view key, uint32_t* slot);

  // Appends record `r` of input `side` (schema `schema`) at time `ts` to key `slot`, marking
  // it dirty. kResourceExhausted when the arena has no chunk left (far beyond the budget).
  absl::Status Append(uint32_t slot, int side, int64_t ts, bool flag, const Schema& schema,
                      const Record& r) {
    if (layout_[side] != RowLayout::kInline) return AppendToArena(slot, side, ts, flag, schema, r);
    Rows* const rows = &keys_[slot].rows[side];
    const size_t heap = HeapBytes(*rows);
    InsertValue(rows, ts, StoreInts(side, r, nullptr));
    Recount(heap, *rows);
    MarkDirty(slot);
    return absl::OkStatus();
  }
  // The index of the first of `rows`' first `n` whose time is >= `t` (n when none), as
  // std::lower_bound, but searched from the back: steps of 1, 2, 4, ... back from n, then a
  // binary search within the last step. A record's partners and place are among its key's newest
  // rows (records come roughly in time order), so this touches the last cache lines of the rows,
  // which JoinBatch prefetched, where a binary search over all of them reads its middle ones
  // (cache misses: most of a join's time when keys keep tens of rows).
  static size_t FirstAtOrAfter(const Rows& rows, size_t n, int64_t t) {
    size_t lo = n;    // the answer is >= lo ...
    size_t hi = n;    // ... and <= hi
    size_t step = 1;
    while (lo > 0 && rows[lo - 1].ts >= t) {
      hi = lo - 1;
      lo = lo > step ? lo - step : 0;
      step *= 2;
    }
    return static_cast<size_t>(
        std::lower_bound(rows.begin() + lo, rows.begin() + hi, t,
                         [](const Row& a, int64_t v) { return a.ts < v; }) -
        rows.begin());
  }
  // Row `row` of input `side` of key `k` into `record` (the input's fields), whatever its
  // layout. kDataLoss when encoded bytes do not decode.
  absl::Status DecodeRow(int side, const Key& k, const Row& row, Record* record) const;
  // REQUIRES: layout(side) is not kEncoded. Row `row` of input `side` of key `k` as int64 values
  // (Value::i) into (*out)[base ...] (the input's fields in order; null bits untouched).
  void FillIntRow(int side, const Key& k, const Row& row, Record* out, size_t base) const {
    const char* const stored = StoredInts(side, row);
    const size_t n = stored_at_[side].size();
    for (size_t i = 0; i < n; ++i) (*out)[base + i].i = IntField(side, k, row, stored, i);
  }
  // Drops the first `n` rows of input `side` of key `slot`, marking it dirty.
  void DropFront(uint32_t slot, int side, size_t n);
  // Drops the rows of input `side` of key `slot` from the `first`-th on, marking it dirty.
  void DropFrom(uint32_t slot, int side, size_t first);
  // After rows were dropped: an empty key is deleted from the backend and forgotten (returns
  // false); otherwise returns true. Either way the arena is compacted when mostly freed (rows'
  // references change; slots and keys stay).
  absl::StatusOr<bool> Release(uint32_t slot);
  void MarkDirty(uint32_t slot) {
    Key& k = keys_[slot];
    if (k.dirty) return;
    k.dirty = true;
    if (k.listed) return;  // listed before it was freed and taken again
    k.listed = true;
    dirty_.push_back(slot);
  }

  // Drops every key and row at once (the interval join at the input's end: every row expires):
  // the stored blocks are deleted at the next WriteDirty() (one delete per block), restored
  // per-key entries at once; no key is freed one by one. kFailedPrecondition unless blocks()
  // (after a spill, keys not in memory are in the backend).
  absl::Status DropAll();
  // Writes the keys changed since the last call to the backend (deleting those left empty):
  // their blocks while blocks(), else per-key entries.
  absl::Status WriteDirty();
  bool OverBudget() const {
    return bytes_ + block_bytes_ + row_list_bytes_ + arena_.held_bytes() > max_bytes_ ||
           arena_.NearlyFull();
  }
  // Writes the changed keys out and forgets every key; `each` runs first for every key in
  // memory with the backend's current key set to it (e.g. to register a timer).
  absl::Status Spill(const std::function<absl::Status(const Key&)>& each);
  // Sweeps: one pending time per key (Key::scheduled) in a min-heap. Schedule() sets key
  // `slot`'s, ScheduleEarlier() only when `time` is earlier than the one pending; PopDue() calls
  // `fn(slot)` for each key whose time is <= `up_to`, earliest first, with its time cleared
  // (`fn` may schedule it again or release it). A spill forgets them with the keys.
  void Schedule(uint32_t slot, int64_t time) {
    keys_[slot].scheduled = time;
    heap_.push_back(SweepEntry{time, slot, keys_[slot].generation});
    std::push_heap(heap_.begin(), heap_.end(), Later);
  }
  void ScheduleEarlier(uint32_t slot, int64_t time) {
    if (time < keys_[slot].scheduled) Schedule(slot, time);
  }
  template <typename Fn>
  absl::Status PopDue(int64_t up_to, Fn fn) {
    while (!heap_.empty() && heap_.front().time <= up_to) {
      std::pop_heap(heap_.begin(), heap_.end(), Later);
      const SweepEntry e = heap_.back();
      heap_.pop_back();
      Key& k = keys_[e.slot];
      if (!k.live || k.generation != e.generation || k.scheduled != e.time) continue;  // stale
      k.scheduled = kNever;
      SLUICE_RETURN_IF_ERROR(fn(e.slot));
    }
    return absl::OkStatus();
  }

  // As PopDue, for an `fn` that reads each key's oldest rows and schedules it again only later
  // than `up_to`, so that the order among keys due together does not matter to it (the interval
  // join's sweep): the due keys are popped up to kDueBatch at a time, then each key's entry and
  // oldest rows are prefetched a few keys ahead of its `fn` (the sweep's loads of keys gone cold
  // since their last record were most of its time).
  template <typename Fn>
  absl::Status PopDueAhead(int64_t up_to, Fn fn) {
    while (!heap_.empty() && heap_.front().time <= up_to) {
      due_.clear();
      while (!heap_.empty() && heap_.front().time <= up_to && due_.size() < kDueBatch) {
        std::pop_heap(heap_.begin(), heap_.end(), Later);
        due_.push_back(heap_.back());
        heap_.pop_back();
      }
      const size_t n = due_.size();
      const uint64_t spills = spills_;
      size_t entries = 0;  // keys whose entries were prefetched
      size_t rows = 0;     // ... and then their oldest rows
      for (size_t i = 0; i < n && spills == spills_; ++i) {  // a spill forgot every key
        for (const size_t end = std::min(n, i + 2 * kSweepLag + 1); entries < end; ++entries) {
          PrefetchKey(due_[entries].slot);
        }
        for (const size_t end = std::min(n, i + kSweepLag + 1); rows < end; ++rows) {
          PrefetchOldest(due_[rows].slot);
        }
        const SweepEntry& e = due_[i];
        Key& k = keys_[e.slot];
        if (!k.live || k.generation != e.generation || k.scheduled != e.time) continue;  // stale
        k.scheduled = kNever;
        SLUICE_RETURN_IF_ERROR(fn(e.slot));
      }
    }
    return absl::OkStatus();
  }

  // What the store holds (tests): live keys, those changed since the last WriteDirty() and the
  // entries of its list of changed slots, the blocks in memory and their member entries, and
  // the memory of keys and blocks the budget counts (the arena's and the row lists' apart), and
  // the row lists' heap blocks (row_list_bytes).
  struct Stats {
    size_t keys = 0;
    size_t dirty_keys = 0;
    size_t dirty_list = 0;
    size_t blocks = 0;
    size_t block_members = 0;
    size_t bytes = 0;
    size_t row_list_bytes = 0;
  };
  Stats StatsForTest() const;

  // True after a spill: keys not in memory may be in the backend.
  bool spilled() const { return spilled_; }
  // Every key in memory (live slots), for `fn(slot)`.
  template <typename Fn>
  absl::Status ForEachInMemory(Fn fn) {
    for (uint32_t slot = 0; slot < keys_.size(); ++slot) {
      if (keys_[slot].live) SLUICE_RETURN_IF_ERROR(fn(slot));
    }
    return absl::OkStatus();
  }

  // Reads every key the backend holds that is not in memory back (at a restore: the restored
  // key groups'); `loaded(slot)` for each (which spills when the store is over budget).
  absl::Status LoadAll(const std::function<absl::Status(uint32_t)>& loaded);
  // Format 1: map states `names[side]` of buckets under 8-byte time keys (join_base.h), with
  // ".index" value states, each record after a flag byte when `flag_prefix`: moves every key's
  // records into memory (marked dirty, so written in format 2 at the next checkpoint) and
  // deletes the old entries; `loaded(slot)` for each key (as for LoadAll).
  absl::Status RestoreBuckets(const std::string (&names)[2], bool flag_prefix,
                              const std::function<absl::Status(uint32_t)>& loaded);

 private:
  struct SweepEntry {
    int64_t time;
    uint32_t slot;
    uint32_t generation;
  };
  static bool Later(const SweepEntry& a, const SweepEntry& b) { return a.time > b.time; }
  // JoinBatch()'s pipeline: records between one level's prefetch and the next level's use.
  static constexpr size_t kLag = 8;
  static constexpr size_t kAheadMask = 31;  // JoinBatch()'s ring: >= 3 kLag + 1 records
  static_assert(3 * kLag + 1 <= kAheadMask + 1);
  static constexpr size_t kDueBatch = 256;  // PopDueAhead(): keys popped at a time
  static constexpr size_t kSweepLag = 4;    // ... between a key's prefetch levels and its sweep
  // Keys per chunk of keys_ (and key_bytes_): 1024 (320 KiB of Keys).
  static constexpr int kKeyChunkShift = 10;
  // A record of JoinBatch() ahead of its join: its key, and the slot found for it (kNoSlot: not
  // in memory) with the spill count then (a spill since makes the slot stale).
  struct Ahead {
    std::string key;  // serialized, or
    int64_t int_key = 0;  // ... the value when int_keys_
    uint32_t slot = kNoSlot;
    uint64_t spills = 0;
  };

  // JoinBatch()'s hints: key `slot`'s entry; once it has arrived, its inputs' rows (both ends).
  void PrefetchKey(uint32_t slot) const {
    const char* p = reinterpret_cast<const char*>(&keys_[slot]);
    for (size_t line = 0; line < sizeof(Key); line += 64) Prefetch(p + line);
  }
  // Only rows on the heap (more than kInlineRows): inline ones came with the entry.
  void PrefetchRows(uint32_t slot) const {
    const Key& k = keys_[slot];
    for (const Rows& rows : k.rows) {
      if (rows.size() <= kInlineRows) continue;
      Prefetch(rows.data());
      Prefetch(&rows.back());
    }
  }
  // PopDueAhead()'s hint, once key `slot`'s entry has arrived: its inputs' oldest rows on the
  // heap, and what freeing the key reads (FreeSlot: its hash-table slot, by value for integer
  // keys, its serialized key's size and its place in its block): a sweep empties most keys that
  // get no more records (Nexmark q4's auctions), and the first two loads were most of
  // FreeSlot's time.
  void PrefetchOldest(uint32_t slot) const {
    const Key& k = keys_[slot];
    for (const Rows& rows : k.rows) {
      if (rows.size() > kInlineRows) Prefetch(rows.data());
    }
    if (int_keys_) slot_of_int_.prefetch(k.int_key);
    Prefetch(&key_bytes_[slot]);
    if (blocks_on_) Prefetch(&block_place_[slot]);
  }
  // A prefetch the compiler keeps (GCC 12 dropped __builtin_prefetch of the rows at -O3).
  static void Prefetch(const void* p) {
#if defined(__x86_64__)
    asm volatile("prefetcht0 %0" : : "m"(*static_cast<const char*>(p)));
#else
    __builtin_prefetch(p);
#endif
  }

  uint32_t NewSlot(absl::string_view key, int key_group);
  void FreeSlot(uint32_t slot);
  // Blocks (class comment). A block's members are the slots of its live keys (in it or not as
  // last written); each live key's place (block and index in its members) is in block_place_, so
  // that a freed key leaves its block at once (swapped with the last member). A block goes when
  // it has no member and the backend does not hold it: at once (FreeSlot), or when the next
  // WriteDirty() deletes it. So memory for blocks follows the live keys, checkpoints or not.
  static constexpr uint32_t kNoBlock = UINT32_MAX;
  struct Block {
    int key_group = 0;
    int64_t range = 0;
    bool dirty = false;   // in dirty_blocks_ (only a stored block between WriteDirty() calls)
    bool stored = false;  // the backend holds it
    std::vector<uint32_t> members;
  };
  struct BlockPlace {
    uint32_t block = kNoBlock;
    uint32_t index = 0;  // in its members
  };
  // Memory of a block in use beyond its members (counted in block_bytes_): the Block, its
  // block_of_ entry (with the table's slack) and its indexes in the block lists.
  static constexpr size_t kBlockBytes = sizeof(Block) + 40;
  // Files key `slot` (new, live) in its block, made when absent.
  void AddToBlock(uint32_t slot);
  // Key `slot` (being freed) leaves its block; the block goes when nothing holds it.
  void RemoveFromBlock(uint32_t slot);
  // Block `b` (no member, not stored, not dirty) is forgotten; its index is taken again.
  void FreeBlock(uint32_t b);
  void MarkBlockDirty(uint32_t b) {
    if (blocks_[b].dirty) return;
    blocks_[b].dirty = true;
    dirty_blocks_.push_back(b);
  }
  // Rewrites block `b` from its members (deleted from the backend when none has rows in it;
  // forgotten when it has none).
  absl::Status WriteBlock(uint32_t b);
  // Forgets every key, its rows and sweep (a spill, DropAll).
  void ForgetKeys();
  // Every key in memory to a per-key entry (unless its own entry is current), every stored
  // block deleted; blocks() is false after.
  absl::Status BlocksToEntries();
  // The keys of stored block `block_key` into memory (`loaded(slot)` for each, as LoadAll).
  absl::Status LoadBlock(const std::string& block_key,
                         const std::function<absl::Status(uint32_t)>& loaded);
  void ClearRows(Key* k);
  // Moves the live rows out of the arena's partly freed chunks (JoinRowArena::NeedsCompaction).
  void CompactArena();
  static size_t Overhead(absl::string_view key) {  // with its block place and member entry
    return sizeof(Key) + sizeof(std::string) + 2 * key.size() + 16 + 12;
  }
  // What key `k`'s rows take stored, roughly: more than kJoinBlockMaxKeyBytes keeps an entry
  // of its own.
  size_t StoredBytes(const Key& k) const {
    size_t bytes = 0;
    for (int side = 0; side < 2; ++side) {
      if (layout_[side] == RowLayout::kEncoded) {
        for (const Row& row : k.rows[side]) bytes += row.size + 10;
      } else {
        // 10 + up to 6 bytes a field (an epoch-ms timestamp's zig-zag varint; the encoded size
        // is not known without encoding).
        bytes += k.rows[side].size() * (10 + 6 * stored_at_[side].size());
      }
    }
    return bytes;
  }
  // value_ (a stored value) into a new slot of `key`.
  absl::StatusOr<uint32_t> AddStored(absl::string_view key, int key_group);
  absl::Status Parse(absl::string_view value, Key* k);
  absl::Status AddChecked(int side, int64_t ts, bool flag, const char* p, size_t size, Key* k);
  absl::Status Corrupt(absl::string_view value, absl::string_view where) const;
  // Inserts a row (`ts`, `ref`, `size`, `flag`) into `rows` after those of its time. Written
  // field by field in place: a Row built on the stack and copied in is a 16-byte load of
  // narrower stores just made, which waits for them to reach the cache (no store forwarding).
  static void Insert(Rows* rows, int64_t ts, uint32_t ref, size_t size, bool flag);
  // As Insert, for a kInline row of `value`.
  static void InsertValue(Rows* rows, int64_t ts, int64_t value) {
    size_t pos = rows->size();
    if (pos != 0 && (*rows)[pos - 1].ts > ts) pos = FirstAtOrAfter(*rows, pos, ts + 1);
    Row& row = pos == rows->size() ? rows->emplace_back() : rows->insert_at(pos);
    row.ts = ts;
    row.set_value(value);
  }
  // Append() of a row in the arena (kInts, kEncoded).
  absl::Status AppendToArena(uint32_t slot, int side, int64_t ts, bool flag, const Schema& schema,
                             const Record& r);
  // Record `r`'s kept values as a row of input `side` (kInts or kInline) at `ts` into `rows`.
  // kResourceExhausted as Append.
  absl::Status InsertInts(int side, int64_t ts, bool flag, const Record& r, Rows* rows);
  // The `size` bytes at `p` into the arena as a row of input `side` at `ts` of key `k`.
  absl::Status AddBytes(int side, int64_t ts, bool flag, const char* p, size_t size, Key* k);
  absl::Status Exhausted() const;
  // Key `k`'s stored value (format 2), sized first and then written in one pass into
  // encoded_ (valid until the next call).
  absl::string_view EncodeRows(const Key& k);

  // A row of input `side` (layout kInts or kInline) of key `k`, its kept values at `stored`
  // (8 bytes each, maybe unaligned): field i's value.
  int64_t IntField(int side, const Key& k, const Row& row, const char* stored, size_t i) const {
    const int8_t at = stored_at_[side][i];
    if (at == kAtKey) return k.int_key;
    if (at == kAtTime) return row.ts;
    int64_t v;
    std::memcpy(&v, stored + 8 * at, 8);
    return v;
  }
  // Where row `row`'s kept values are (kInts or kInline): in the arena, or in the row.
  const char* StoredInts(int side, const Row& row) const {
    return layout_[side] == RowLayout::kInline ? reinterpret_cast<const char*>(&row) + 8
                                               : arena_.data(row.ref);
  }
  // Row `row` of input `side` (kInts or kInline) in the record codec's bytes at `p`
  // (room for 10 bytes a field); returns the end.
  char* EncodeIntRow(int side, const Key& k, const Row& row, char* p) const;
  // Record `r` (decoded into the scratch) as a row of input `side` of key `k` at `ts`, its time
  // field (if left out) being `ts`. kDataLoss when its key field is not the key's (not kept:
  // RowLayout).
  absl::Status AddDecoded(int side, int64_t ts, bool flag, const Record& r, Key* k);
  // Input `side` (kInts or kInline) becomes kEncoded: every row in memory is encoded into the
  // arena (a restore of rows whose time is not their time field's). kResourceExhausted as Append.
  absl::Status ToEncoded(int side);
  // The fields of `r` kept for a row of input `side` (kInts: `to`; kInline: the returned value).
  int64_t StoreInts(int side, const Record& r, int64_t* to) const {
    const uint8_t* f = kept_[side];
    const size_t n = kept_count_[side];
    if (layout_[side] == RowLayout::kInline) return n == 0 ? 0 : r.GetInt(f[0]);
    for (size_t j = 0; j < n; ++j) to[j] = r.GetInt(f[j]);
    return 0;
  }
  // Bytes of a kInts row in the arena (at least 8: an arena record is never empty).
  size_t IntRowBytes(int side) const { return 8 * std::max<size_t>(kept_count_[side], 1); }
  // The heap block of a key's row list (rows beyond kInlineRows; those inline are in the Key,
  // which Overhead() counts): the budget counts it in row_list_bytes_ for every layout (a
  // kInline row has no arena bytes). Recount(before, rows) after `rows` changed, `before` its
  // HeapBytes() then.
  static size_t HeapBytes(const Rows& rows) {
    return rows.on_heap() ? rows.capacity() * sizeof(Row) : 0;
  }
  void Recount(size_t before, const Rows& rows) {
    row_list_bytes_ = row_list_bytes_ + HeapBytes(rows) - before;
  }
  // Frees the arena bytes of rows [first, end) of input `side` (not kInline).
  void FreeRows(int side, const Row* first, const Row* end) {
    if (layout_[side] == RowLayout::kInline) return;
    for (; first != end; ++first) arena_.Free(first->ref, first->size);
  }

  JoinOperatorBase* op_ = nullptr;
  state::KeyedStateBackend* state_ = nullptr;
  state::StateId id_ = 0;
  state::StateId blocks_id_ = 0;
  std::string what_;
  bool flags_ = false;
  size_t max_bytes_ = 0;
  // RowLayout per input: kInts and kInline keep at most kMaxKept fields, by index (kept_), and
  // per field where its value is (stored_at_: an index into the kept ones, kAtKey or kAtTime).
  static constexpr size_t kMaxKept = 32;
  static constexpr int8_t kAtKey = -1;
  static constexpr int8_t kAtTime = -2;
  RowLayout layout_[2] = {RowLayout::kEncoded, RowLayout::kEncoded};
  int key_field_[2] = {-1, -1};  // per input, its key's field when int_keys_ and a bare field
  int time_field_[2] = {-1, -1};  // per input, the time field left out (kAtTime), or -1
  uint8_t kept_[2][kMaxKept] = {};
  size_t kept_count_[2] = {0, 0};
  std::vector<int8_t> stored_at_[2];

  JoinRowArena arena_;                                  // the records' bytes
  JoinSlotChunks<Key, kKeyChunkShift> keys_;            // by slot (entries never move)
  JoinSlotChunks<std::string, kKeyChunkShift> key_bytes_;  // by slot: the keys serialized
  bool int_keys_ = false;                               // keys filed by value (op's int_key())
  absl::flat_hash_map<std::string, uint32_t> slot_of_;  // live keys' slots, or when int_keys_
  absl::flat_hash_map<int64_t, uint32_t> slot_of_int_;  // ... by value
  std::vector<uint32_t> free_;                          // free slots
  std::vector<uint32_t> dirty_;                         // slots changed since WriteDirty()
  std::vector<SweepEntry> heap_;                        // min-heap by time
  std::vector<SweepEntry> due_;                         // PopDueAhead(): the keys popped
  bool blocks_on_ = false;                              // blocks()
  JoinSlotChunks<BlockPlace, kKeyChunkShift> block_place_;  // by slot (blocks())
  std::vector<Block> blocks_;                           // by index (free ones in free_blocks_)
  std::vector<uint32_t> free_blocks_;
  absl::flat_hash_map<std::pair<int, int64_t>, uint32_t> block_of_;  // (key group, range)
  std::vector<uint32_t> last_block_of_group_;           // by key group: the block filed last
  std::vector<uint32_t> dirty_blocks_;                  // blocks to write at WriteDirty()
  std::string block_value_;
  std::string block_key_;
  size_t bytes_ = 0;                                    // memory of the keys (roughly)
  size_t block_bytes_ = 0;                              // kBlockBytes per block in use
  size_t row_list_bytes_ = 0;                           // the row lists' heap blocks (HeapBytes)
  bool spilled_ = false;
  uint64_t spills_ = 0;            // ForgetKeys() calls (slots found before one are stale)
  Ahead ahead_[kAheadMask + 1];    // JoinBatch()'s ring, by record index
  std::string value_;
  std::unique_ptr<char[]> encoded_;  // EncodeRows()
  size_t encoded_capacity_ = 0;
  std::string key_scratch_;
  Record scratch_[2];
};

}  // namespace sluice::ops
