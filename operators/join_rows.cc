#include "operators/join_rows.h"

#include <algorithm>
#include <atomic>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/record_codec.h"
#include "common/state_format.h"
#include "operators/join_base.h"

namespace sluice::ops {
namespace {

// The format of the stored rows (format 1 was the bucket layout of join_base.h).
constexpr int kRowsFormat = 2;
constexpr size_t kDefaultMaxBytes = size_t{512} << 20;
size_t max_bytes_for_test = 0;
bool blocks_for_test = true;
std::atomic<uint64_t> compactions_for_test{0};

// A varint (as PutVarint64) at `p`; returns its end.
char* WriteVarint(uint64_t v, char* p) {
  for (; v >= 0x80; v >>= 7) *p++ = static_cast<char>(v | 0x80);
  *p++ = static_cast<char>(v);
  return p;
}

}  // namespace

void SetJoinMemoryForTest(size_t bytes) { max_bytes_for_test = bytes; }
uint64_t JoinArenaCompactionsForTest() { return compactions_for_test.load(std::memory_order_relaxed); }
void SetJoinBlocksForTest(bool on) { blocks_for_test = on; }

uint32_t JoinRowArena::NewChunk(size_t capacity) {
  uint32_t index;
  if (capacity == kChunkBytes && !free_chunks_.empty()) {
    index = free_chunks_.back();
    free_chunks_.pop_back();
  } else {
    if (!free_indexes_.empty()) {
      index = free_indexes_.back();
      free_indexes_.pop_back();
    } else if (chunks_.size() < max_chunks_) {
      index = static_cast<uint32_t>(chunks_.size());
      chunks_.emplace_back();
    } else {
      return kNoChunk;
    }
    chunks_[index].data.reset(new char[capacity]);  // not zeroed: only written bytes are read
    chunks_[index].capacity = static_cast<uint32_t>(capacity);
  }
  Chunk& c = chunks_[index];
  c.used = 0;
  c.live = 0;
  c.evacuating = false;
  held_bytes_ += c.capacity;
  return index;
}

void JoinRowArena::Release(uint32_t index) {
  Chunk& c = chunks_[index];
  held_bytes_ -= c.capacity;
  c.evacuating = false;
  if (c.capacity == kChunkBytes && free_chunks_.size() < kKeptFree) {
    free_chunks_.push_back(index);
    return;
  }
  c.data.reset();
  c.capacity = 0;
  free_indexes_.push_back(index);
}

char* JoinRowArena::Reserve(size_t bound) {
  if (bound >= kChunkBytes) {  // a chunk of its own
    if (bound > UINT32_MAX) return nullptr;
    pending_ = NewChunk(bound);
    return pending_ == kNoChunk ? nullptr : chunks_[pending_].data.get();
  }
  // A record starts below kChunkBytes (so its offset fits in the reference).
  if (current_ == kNoChunk || chunks_[current_].capacity - chunks_[current_].used <= bound) {
    // The old one is released when its last record is freed; from now on it counts as waste
    // as far as it is freed.
    if (current_ != kNoChunk) movable_waste_ += Movable(chunks_[current_]);
    current_ = NewChunk(kChunkBytes);
    if (current_ == kNoChunk) {
      pending_ = kNoChunk;
      return nullptr;
    }
  }
  pending_ = current_;
  Chunk& c = chunks_[current_];
  return c.data.get() + c.used;
}

uint32_t JoinRowArena::Commit(size_t size) {
  Chunk& c = chunks_[pending_];
  const uint32_t ref = (pending_ << kOffsetBits) | c.used;  // a large record's chunk: offset 0
  c.used += static_cast<uint32_t>(size);
  c.live += static_cast<uint32_t>(size);
  live_bytes_ += size;
  return ref;
}

void JoinRowArena::Free(uint32_t ref, size_t size) {
  const uint32_t index = ref >> kOffsetBits;
  Chunk& c = chunks_[index];
  const size_t movable = index == current_ ? 0 : Movable(c);
  c.live -= static_cast<uint32_t>(size);
  live_bytes_ -= size;
  if (index != current_) movable_waste_ += (c.live != 0 ? Movable(c) : 0) - movable;
  if (c.live != 0) return;
  if (index == current_) {
    c.used = 0;  // written again from the start
  } else {
    Release(index);
  }
}

void JoinRowArena::Clear() {
  chunks_.clear();
  free_chunks_.clear();
  free_indexes_.clear();
  current_ = kNoChunk;
  pending_ = kNoChunk;
  held_bytes_ = 0;
  live_bytes_ = 0;
  movable_waste_ = 0;
}

void JoinRowArena::BeginCompaction() {
  for (uint32_t i = 0; i < chunks_.size(); ++i) {
    Chunk& c = chunks_[i];
    c.evacuating = i != current_ && c.live != 0 && c.live < c.used;
  }
}

uint32_t JoinRowArena::Move(uint32_t ref, size_t size) {
  if (!chunks_[ref >> kOffsetBits].evacuating) return ref;
  // The copy goes to the current chunk or a new one: never a marked one. A chunk index is
  // free: the marked chunk's own is released by Free() once its last record moves, and a
  // small record needs at most one new chunk.
  char* to = Reserve(size);
  if (to == nullptr) return ref;  // no index left: the record stays
  std::memcpy(to, data(ref), size);
  const uint32_t moved = Commit(size);
  Free(ref, size);
  return moved;
}

void JoinRowArena::EndCompaction() {
  for (Chunk& c : chunks_) c.evacuating = false;
}

void JoinRowStore::Init(JoinOperatorBase* op, state::StateId id, state::StateId blocks,
                        absl::string_view what, bool flags, const int (&time_fields)[2]) {
  op_ = op;
  state_ = op->state_;
  id_ = id;
  blocks_id_ = blocks;
  what_ = std::string(what);
  flags_ = flags;
  int_keys_ = op->int_key();
  blocks_on_ = int_keys_ && blocks_for_test;
  max_bytes_ = max_bytes_for_test != 0 ? max_bytes_for_test : kDefaultMaxBytes;
  for (int side = 0; side < 2; ++side) {
    const Schema& schema = op->sides_->input[side];
    scratch_[side].Resize(schema.size());
    layout_[side] = RowLayout::kEncoded;
    kept_count_[side] = 0;
    stored_at_[side].clear();
    time_field_[side] = -1;
    const int key_field = int_keys_ ? op->int_key_field_[side] : -1;
    key_field_[side] = key_field;
    if (!schema.all_integral()) continue;
    std::vector<int8_t> at(schema.size());
    size_t kept = 0;
    for (size_t i = 0; i < schema.size() && kept <= kMaxKept; ++i) {
      if (static_cast<int>(i) == key_field) {
        at[i] = kAtKey;
      } else if (static_cast<int>(i) == time_fields[side]) {
        at[i] = kAtTime;
      } else if (kept < kMaxKept) {
        kept_[side][kept] = static_cast<uint8_t>(i);
        at[i] = static_cast<int8_t>(kept++);
      } else {
        kept = kMaxKept + 1;  // too many: encoded
      }
    }
    if (kept > kMaxKept) continue;
    kept_count_[side] = kept;
    stored_at_[side] = std::move(at);
    time_field_[side] = time_fields[side] != key_field ? time_fields[side] : -1;
    layout_[side] = kept <= 1 && !flags ? RowLayout::kInline : RowLayout::kInts;
  }
}

uint32_t JoinRowStore::NewSlot(absl::string_view key, int key_group) {
  uint32_t slot;
  if (!free_.empty()) {
    slot = free_.back();
    free_.pop_back();
  } else {
    slot = static_cast<uint32_t>(keys_.size());
    keys_.emplace_back();
    key_bytes_.emplace_back();
    block_place_.emplace_back();
  }
  Key& k = keys_[slot];
  key_bytes_[slot].assign(key.data(), key.size());
  k.key_group = key_group;
  k.live = true;
  k.dirty = false;
  k.in_backend = false;
  k.in_block = false;
  k.scheduled = kNever;
  if (int_keys_) {
    // `key` came from EvalKey or a restore's KeyGroupOf, which decoded it: it decodes.
    k.int_key = 0;
    JoinOperatorBase::IntKeyOfBytes(key, &k.int_key);
    slot_of_int_.emplace(k.int_key, slot);
  } else {
    slot_of_.emplace(key_bytes_[slot], slot);
  }
  bytes_ += Overhead(key);
  if (blocks_on_) AddToBlock(slot);
  return slot;
}

void JoinRowStore::AddToBlock(uint32_t slot) {
  const Key& k = keys_[slot];
  const int64_t range = k.int_key >> kJoinBlockShift;
  const auto kg = static_cast<size_t>(k.key_group);
  if (kg >= last_block_of_group_.size()) last_block_of_group_.resize(kg + 1, kNoBlock);
  uint32_t& last = last_block_of_group_[kg];
  if (last == kNoBlock || blocks_[last].range != range) {
    auto [it, added] = block_of_.try_emplace(std::make_pair(k.key_group, range), kNoBlock);
    if (added) {
      if (!free_blocks_.empty()) {
        it->second = free_blocks_.back();
        free_blocks_.pop_back();
      } else {
        it->second = static_cast<uint32_t>(blocks_.size());
        blocks_.emplace_back();
      }
      Block& b = blocks_[it->second];
      b.key_group = k.key_group;
      b.range = range;
      b.dirty = false;
      b.stored = false;
      block_bytes_ += kBlockBytes;
    }
    last = it->second;
  }
  std::vector<uint32_t>& members = blocks_[last].members;
  block_place_[slot] = BlockPlace{last, static_cast<uint32_t>(members.size())};
  members.push_back(slot);
}

void JoinRowStore::RemoveFromBlock(uint32_t slot) {
  const BlockPlace place = block_place_[slot];
  Block& block = blocks_[place.block];
  const uint32_t moved = block.members.back();
  block.members[place.index] = moved;
  block_place_[moved].index = place.index;
  block.members.pop_back();
  if (keys_[slot].in_block || (block.members.empty() && block.stored)) {
    MarkBlockDirty(place.block);  // rewritten without the key, or deleted
  } else if (block.members.empty() && !block.dirty) {
    FreeBlock(place.block);
  }
}

void JoinRowStore::FreeBlock(uint32_t b) {
  Block& block = blocks_[b];
  block_of_.erase(std::make_pair(block.key_group, block.range));
  const auto kg = static_cast<size_t>(block.key_group);
  if (last_block_of_group_[kg] == b) last_block_of_group_[kg] = kNoBlock;
  block.members.clear();  // keeps its capacity for the block that takes the index
  block.stored = false;
  block.dirty = false;
  free_blocks_.push_back(b);
  block_bytes_ -= kBlockBytes;
}

void JoinRowStore::FreeSlot(uint32_t slot) {
  Key& k = keys_[slot];
  bytes_ -= Overhead(key_bytes_[slot]);
  if (int_keys_) {
    slot_of_int_.erase(k.int_key);
  } else {
    slot_of_.erase(key_bytes_[slot]);
  }
  if (blocks_on_) RemoveFromBlock(slot);
  k.live = false;
  ++k.generation;
  ClearRows(&k);
  free_.push_back(slot);
}

void JoinRowStore::ClearRows(Key* k) {
  for (int side = 0; side < 2; ++side) {
    Rows& rows = k->rows[side];
    FreeRows(side, rows.begin(), rows.end());
    const size_t heap = HeapBytes(rows);
    rows.clear();
    Recount(heap, rows);
  }
}

absl::StatusOr<uint32_t> JoinRowStore::Load(absl::string_view key, int key_group) {
  if (spilled_) {
    state_->SetCurrentKey(key, key_group);
    SLUICE_ASSIGN_OR_RETURN(bool found, state_->Get(id_, &value_));
    if (found) return AddStored(key, key_group);
  }
  return NewSlot(key, key_group);
}

absl::StatusOr<bool> JoinRowStore::LoadCurrent(absl::string_view key, uint32_t* slot) {
  key_scratch_.assign(key.data(), key.size());  // `key` may view the backend's current key
  SLUICE_ASSIGN_OR_RETURN(bool found, state_->Get(id_, &value_));
  if (!found) return false;
  SLUICE_ASSIGN_OR_RETURN(int key_group, op_->KeyGroupOf(key_scratch_));
  SLUICE_ASSIGN_OR_RETURN(*slot, AddStored(key_scratch_, key_group));
  return true;
}

absl::StatusOr<uint32_t> JoinRowStore::AddStored(absl::string_view key, int key_group) {
  const uint32_t slot = NewSlot(key, key_group);
  Key& k = keys_[slot];
  k.in_backend = true;
  SLUICE_RETURN_IF_ERROR(Parse(value_, &k));
  return slot;
}

void JoinRowStore::Insert(Rows* rows, int64_t ts, uint32_t ref, size_t size, bool flag) {
  // Records mostly arrive in time order: the common case appends. Otherwise the row goes after
  // those of its time (upper_bound), found from the back: a late record's place is among the
  // newest rows.
  size_t pos = rows->size();
  if (pos != 0 && (*rows)[pos - 1].ts > ts) pos = FirstAtOrAfter(*rows, pos, ts + 1);
  Row& row = pos == rows->size() ? rows->emplace_back() : rows->insert_at(pos);
  row.ts = ts;
  row.ref = ref;
  row.size = static_cast<uint32_t>(size);
  row.flag = flag ? 1 : 0;
}

absl::Status JoinRowStore::Exhausted() const {
  return absl::ResourceExhaustedError(
      absl::StrCat(what_, ": more records in memory than the store can address (",
                   JoinRowArena::kMaxChunks, " chunks)"));
}

absl::Status JoinRowStore::AppendToArena(uint32_t slot, int side, int64_t ts, bool flag,
                                         const Schema& schema, const Record& r) {
  Rows* const rows = &keys_[slot].rows[side];
  if (layout_[side] != RowLayout::kEncoded) {
    SLUICE_RETURN_IF_ERROR(InsertInts(side, ts, flag, r, rows));
  } else {
    char* const to = arena_.Reserve(EncodedSizeBound(schema, r));
    if (to == nullptr) return Exhausted();
    const size_t size = static_cast<size_t>(EncodeRecordTo(schema, r, to) - to);
    const size_t heap = HeapBytes(*rows);
    Insert(rows, ts, arena_.Commit(size), size, flag);
    Recount(heap, *rows);
  }
  MarkDirty(slot);
  return absl::OkStatus();
}

absl::Status JoinRowStore::InsertInts(int side, int64_t ts, bool flag, const Record& r, Rows* rows) {
  const size_t heap = HeapBytes(*rows);
  if (layout_[side] == RowLayout::kInline) {
    InsertValue(rows, ts, StoreInts(side, r, nullptr));
    Recount(heap, *rows);
    return absl::OkStatus();
  }
  const size_t size = IntRowBytes(side);
  char* const to = arena_.Reserve(size);
  if (to == nullptr) return Exhausted();
  int64_t values[kMaxKept];
  StoreInts(side, r, values);
  std::memcpy(to, values, 8 * kept_count_[side]);
  Insert(rows, ts, arena_.Commit(size), size, flag);
  Recount(heap, *rows);
  return absl::OkStatus();
}

absl::Status JoinRowStore::DecodeRow(int side, const Key& k, const Row& row,
                                     Record* record) const {
  if (layout_[side] == RowLayout::kEncoded) {
    const char* pos = arena_.data(row.ref);
    return op_->DecodeOne(side, &pos, pos + row.size, record);
  }
  const size_t n = stored_at_[side].size();
  if (record->size() != n) record->Resize(n);
  const char* const stored = StoredInts(side, row);
  for (size_t i = 0; i < n; ++i) (*record)[i].i = IntField(side, k, row, stored, i);
  return absl::OkStatus();
}

char* JoinRowStore::EncodeIntRow(int side, const Key& k, const Row& row, char* p) const {
  const char* const stored = StoredInts(side, row);
  const size_t n = stored_at_[side].size();
  for (size_t i = 0; i < n; ++i) p = WriteVarint(ZigZag(IntField(side, k, row, stored, i)), p);
  return p;
}

void JoinRowStore::DropFront(uint32_t slot, int side, size_t n) {
  if (n == 0) return;
  Key& k = keys_[slot];
  Rows& rows = k.rows[side];
  FreeRows(side, rows.begin(), rows.begin() + n);
  const size_t heap = HeapBytes(rows);
  rows.drop_front(n);
  Recount(heap, rows);
  MarkDirty(slot);
}

void JoinRowStore::DropFrom(uint32_t slot, int side, size_t first) {
  Rows& rows = keys_[slot].rows[side];
  if (first >= rows.size()) return;
  FreeRows(side, rows.begin() + first, rows.end());
  const size_t heap = HeapBytes(rows);
  rows.truncate(first);
  Recount(heap, rows);
  MarkDirty(slot);
}

absl::StatusOr<bool> JoinRowStore::Release(uint32_t slot) {
  Key& k = keys_[slot];
  const bool kept = !k.empty();
  if (!kept) {
    if (k.in_backend) {
      SetCurrentKey(slot);
      SLUICE_RETURN_IF_ERROR(state_->Delete(id_));
    }
    FreeSlot(slot);
  }
  if (arena_.NeedsCompaction()) CompactArena();
  return kept;
}

void JoinRowStore::CompactArena() {
  compactions_for_test.fetch_add(1, std::memory_order_relaxed);
  arena_.BeginCompaction();
  for (size_t slot = 0; slot < keys_.size(); ++slot) {
    Key& k = keys_[slot];
    if (!k.live) continue;
    for (int side = 0; side < 2; ++side) {
      if (layout_[side] == RowLayout::kInline) continue;
      for (Row& row : k.rows[side]) row.ref = arena_.Move(row.ref, row.size);
    }
  }
  arena_.EndCompaction();
}

absl::Status JoinRowStore::WriteDirty() {
  for (uint32_t slot : dirty_) {
    Key& k = keys_[slot];
    k.listed = false;
    if (!k.live || !k.dirty) continue;
    k.dirty = false;
    if (blocks_on_) {
      if (StoredBytes(k) > kJoinBlockMaxKeyBytes) {  // an entry of its own
        SetCurrentKey(slot);
        SLUICE_RETURN_IF_ERROR(state_->Put(id_, EncodeRows(k)));
        k.in_backend = true;
        if (k.in_block) MarkBlockDirty(block_place_[slot].block);  // leaves its block
        continue;
      }
      if (k.in_backend) {  // an entry of its own before (or restored from one): its block's now
        SetCurrentKey(slot);
        SLUICE_RETURN_IF_ERROR(state_->Delete(id_));
        k.in_backend = false;
      }
      if (!k.empty() || k.in_block) MarkBlockDirty(block_place_[slot].block);
      continue;
    }
    SetCurrentKey(slot);
    if (k.empty()) {
      if (k.in_backend) SLUICE_RETURN_IF_ERROR(state_->Delete(id_));
      k.in_backend = false;
      continue;
    }
    SLUICE_RETURN_IF_ERROR(state_->Put(id_, EncodeRows(k)));
    k.in_backend = true;
  }
  dirty_.clear();
  for (uint32_t b : dirty_blocks_) SLUICE_RETURN_IF_ERROR(WriteBlock(b));
  dirty_blocks_.clear();
  return absl::OkStatus();
}

absl::Status JoinRowStore::WriteBlock(uint32_t b) {
  Block& block = blocks_[b];
  block.dirty = false;
  size_t with_rows = 0;
  for (const uint32_t slot : block.members) {
    Key& k = keys_[slot];
    k.in_block = !k.empty() && !k.in_backend;  // else no rows, or an entry of its own
    if (k.in_block) ++with_rows;
  }
  PutBlockKey(block.key_group, block.range, &block_key_);
  if (with_rows == 0) {
    if (block.stored) {
      state_->SetCurrentKey(block_key_, block.key_group);
      SLUICE_RETURN_IF_ERROR(state_->Delete(blocks_id_));
      block.stored = false;
    }
    if (block.members.empty()) FreeBlock(b);
    return absl::OkStatus();
  }
  block_value_.assign(1, static_cast<char>(kJoinBlockFormat));
  PutVarint64(with_rows, &block_value_);
  for (const uint32_t slot : block.members) {
    const Key& k = keys_[slot];
    if (!k.in_block) continue;
    const std::string& key = key_bytes_[slot];
    PutVarint64(key.size(), &block_value_);
    block_value_.append(key);
    const absl::string_view value = EncodeRows(k);
    PutVarint64(value.size(), &block_value_);
    block_value_.append(value.data(), value.size());
  }
  state_->SetCurrentKey(block_key_, block.key_group);
  SLUICE_RETURN_IF_ERROR(state_->Put(blocks_id_, block_value_));
  block.stored = true;
  return absl::OkStatus();
}

JoinRowStore::Stats JoinRowStore::StatsForTest() const {
  Stats stats;
  for (size_t slot = 0; slot < keys_.size(); ++slot) {
    stats.keys += keys_[slot].live;
    stats.dirty_keys += keys_[slot].live && keys_[slot].dirty;
  }
  stats.dirty_list = dirty_.size();
  stats.blocks = block_of_.size();
  for (const auto& [group_range, b] : block_of_) stats.block_members += blocks_[b].members.size();
  stats.bytes = bytes_ + block_bytes_;
  stats.row_list_bytes = row_list_bytes_;
  return stats;
}

absl::Status JoinRowStore::DropAll() {
  if (!blocks_on_) {
    return absl::FailedPreconditionError(
        absl::StrCat(what_, ": DropAll needs every key in memory (blocks), the store has spilled"));
  }
  for (uint32_t slot = 0; slot < keys_.size(); ++slot) {
    Key& k = keys_[slot];
    if (!k.live || !k.in_backend) continue;
    SetCurrentKey(slot);
    SLUICE_RETURN_IF_ERROR(state_->Delete(id_));
  }
  std::vector<uint32_t> unstored;  // freed after the walk over block_of_, which they leave
  for (const auto& [group_range, b] : block_of_) {
    Block& block = blocks_[b];
    block.members.clear();  // slots start over
    if (block.stored) {
      MarkBlockDirty(b);  // deleted at the next WriteDirty()
    } else if (!block.dirty) {
      unstored.push_back(b);
    }
  }
  for (const uint32_t b : unstored) FreeBlock(b);
  ForgetKeys();
  return absl::OkStatus();
}

void JoinRowStore::ForgetKeys() {
  keys_.clear();
  key_bytes_.clear();
  block_place_.clear();
  arena_.Clear();
  slot_of_.clear();
  slot_of_int_.clear();
  free_.clear();
  dirty_.clear();  // the keys' `listed` went with them
  heap_.clear();
  bytes_ = 0;
  row_list_bytes_ = 0;  // the row lists went with keys_
  ++spills_;  // slots found before are stale
}

absl::Status JoinRowStore::BlocksToEntries() {
  for (uint32_t slot = 0; slot < keys_.size(); ++slot) {
    Key& k = keys_[slot];
    if (!k.live) continue;
    const bool current = k.in_backend && !k.dirty;  // its own entry holds what it holds
    k.dirty = false;
    k.listed = false;
    k.in_block = false;
    if (current || (k.empty() && !k.in_backend)) continue;
    SetCurrentKey(slot);
    if (k.empty()) {
      SLUICE_RETURN_IF_ERROR(state_->Delete(id_));
      k.in_backend = false;
      continue;
    }
    SLUICE_RETURN_IF_ERROR(state_->Put(id_, EncodeRows(k)));
    k.in_backend = true;
  }
  for (const uint32_t slot : dirty_) keys_[slot].listed = false;  // freed slots' too
  dirty_.clear();
  for (const Block& block : blocks_) {
    if (!block.stored) continue;
    PutBlockKey(block.key_group, block.range, &block_key_);
    state_->SetCurrentKey(block_key_, block.key_group);
    SLUICE_RETURN_IF_ERROR(state_->Delete(blocks_id_));
  }
  blocks_on_ = false;
  blocks_ = {};
  free_blocks_ = {};
  block_of_ = {};
  last_block_of_group_ = {};
  dirty_blocks_ = {};
  block_bytes_ = 0;
  return absl::OkStatus();
}

absl::string_view JoinRowStore::EncodeRows(const Key& k) {
  size_t bound = 1;
  for (int side = 0; side < 2; ++side) {
    const Rows& rows = k.rows[side];
    bound += 10;
    if (layout_[side] != RowLayout::kEncoded) {
      bound += rows.size() * (8 + 1 + 5 + 10 * stored_at_[side].size());
      continue;
    }
    for (const Row& row : rows) bound += 8 + 1 + 5 + row.size;
  }
  if (encoded_capacity_ < bound) {
    encoded_capacity_ = std::max(bound, 2 * encoded_capacity_);
    encoded_.reset(new char[encoded_capacity_]);
  }
  char* p = encoded_.get();
  *p++ = static_cast<char>(kRowsFormat);
  for (int side = 0; side < 2; ++side) {
    const Rows& rows = k.rows[side];
    p = WriteVarint(rows.size(), p);
    for (const Row& row : rows) {
      const uint64_t ts = static_cast<uint64_t>(row.ts);
      for (int b = 0; b < 8; ++b) p[b] = static_cast<char>(ts >> (8 * b));  // PutFixed64LE's
      p += 8;
      if (flags_) *p++ = static_cast<char>(row.flag);
      if (layout_[side] != RowLayout::kEncoded) {
        // The record after its size, which is known once it is written: a fields' varints take
        // at most 127 bytes for up to 12 fields (one size byte), else they move up.
        char* const record = p + 1;
        const size_t size = static_cast<size_t>(EncodeIntRow(side, k, row, record) - record);
        if (size < 0x80) {
          *p = static_cast<char>(size);
          p = record + size;
        } else {
          char size_bytes[10];
          const size_t size_len = static_cast<size_t>(WriteVarint(size, size_bytes) - size_bytes);
          std::memmove(p + size_len, record, size);
          std::memcpy(p, size_bytes, size_len);
          p += size_len + size;
        }
        continue;
      }
      p = WriteVarint(row.size, p);
      std::memcpy(p, arena_.data(row.ref), row.size);
      p += row.size;
    }
  }
  return absl::string_view(encoded_.get(), static_cast<size_t>(p - encoded_.get()));
}

absl::Status JoinRowStore::Spill(const std::function<absl::Status(const Key&)>& each) {
  if (blocks_on_) SLUICE_RETURN_IF_ERROR(BlocksToEntries());
  SLUICE_RETURN_IF_ERROR(WriteDirty());
  for (uint32_t slot = 0; slot < keys_.size(); ++slot) {
    if (!keys_[slot].live) continue;
    SetCurrentKey(slot);
    if (each) SLUICE_RETURN_IF_ERROR(each(keys_[slot]));
  }
  ForgetKeys();
  spilled_ = true;
  return absl::OkStatus();
}

absl::Status JoinRowStore::Parse(absl::string_view value, Key* k) {
  absl::string_view body;
  SLUICE_ASSIGN_OR_RETURN(int version,
                          ReadStateVersion(op_->ctx_.state_origin, what_, value, kRowsFormat, &body));
  if (version != kRowsFormat) {
    return op_->ctx_.state_origin.DataLoss(
        absl::StrCat(what_, " of format ", version, ", expected ", kRowsFormat));
  }
  const char* p = body.data();
  const char* end = p + body.size();
  for (int side = 0; side < 2; ++side) {
    uint64_t count;
    p = GetVarint64(p, end, &count);
    if (p == nullptr) return Corrupt(value, "a side's count");
    for (uint64_t i = 0; i < count; ++i) {
      if (end - p < (flags_ ? 9 : 8)) return Corrupt(value, "a record's time");
      const int64_t ts = static_cast<int64_t>(GetFixed64LE(p));
      p += 8;
      bool flag = false;
      if (flags_) {
        if (static_cast<unsigned char>(*p) > 1) return Corrupt(value, "a record's flag");
        flag = *p++ != 0;
      }
      uint64_t size;
      p = GetVarint64(p, end, &size);
      if (p == nullptr) return Corrupt(value, "a record's size");
      if (static_cast<uint64_t>(end - p) < size) return Corrupt(value, "a record");
      SLUICE_RETURN_IF_ERROR(AddChecked(side, ts, flag, p, size, k));
      p += size;
    }
  }
  if (p != end) return Corrupt(value, "the end");
  return absl::OkStatus();
}

absl::Status JoinRowStore::Corrupt(absl::string_view value, absl::string_view where) const {
  return op_->ctx_.state_origin.DataLoss(
      absl::StrCat(what_, " (", value.size(), " bytes) do not decode at ", where));
}

absl::Status JoinRowStore::AddChecked(int side, int64_t ts, bool flag, const char* p, size_t size,
                                      Key* k) {
  const char* pos = p;
  SLUICE_RETURN_IF_ERROR(op_->DecodeOne(side, &pos, p + size, &scratch_[side]));
  if (pos != p + size) {
    return op_->ctx_.state_origin.DataLoss(absl::StrCat("a record of the ", what_, " has bytes left over"));
  }
  if (layout_[side] != RowLayout::kEncoded) {
    const int time_field = time_field_[side];
    if (time_field < 0 || scratch_[side].GetInt(time_field) == ts) {
      return AddDecoded(side, ts, flag, scratch_[side], k);
    }
    // A row whose time is not its time field's (the job's time option named another field
    // when it was written): kept at its stored time with its fields as they are, as encoded
    // rows keep it, and so are the input's other rows from now on.
    SLUICE_RETURN_IF_ERROR(ToEncoded(side));
  }
  return AddBytes(side, ts, flag, p, size, k);
}

absl::Status JoinRowStore::AddDecoded(int side, int64_t ts, bool flag, const Record& r, Key* k) {
  for (size_t i = 0; i < stored_at_[side].size(); ++i) {
    if (stored_at_[side][i] == kAtKey && r.GetInt(i) != k->int_key) {
      return op_->ctx_.state_origin.DataLoss(
          absl::StrCat("a record of the ", what_, " has another key than its row"));
    }
  }
  return InsertInts(side, ts, flag, r, &k->rows[side]);
}

absl::Status JoinRowStore::ToEncoded(int side) {
  const RowLayout layout = layout_[side];
  const size_t bound = 10 * stored_at_[side].size();
  for (uint32_t slot = 0; slot < keys_.size(); ++slot) {
    Key& k = keys_[slot];
    if (!k.live) continue;
    for (Row& row : k.rows[side]) {
      char* const to = arena_.Reserve(bound);
      if (to == nullptr) return Exhausted();
      const size_t size = static_cast<size_t>(EncodeIntRow(side, k, row, to) - to);
      const uint32_t values = row.ref;  // kInts: the values' arena bytes
      const size_t values_size = row.size;
      row.ref = arena_.Commit(size);  // before the Free: the last free of a chunk resets it
      row.size = static_cast<uint32_t>(size);
      if (layout == RowLayout::kInts) arena_.Free(values, values_size);
      if (layout == RowLayout::kInline) row.flag = 0;  // the value overlaid it; no flags then
    }
  }
  layout_[side] = RowLayout::kEncoded;
  return absl::OkStatus();
}

absl::Status JoinRowStore::AddBytes(int side, int64_t ts, bool flag, const char* p, size_t size,
                                    Key* k) {
  char* const to = arena_.Reserve(size);
  if (to == nullptr) return Exhausted();
  std::memcpy(to, p, size);
  Rows* const rows = &k->rows[side];
  const size_t heap = HeapBytes(*rows);
  Insert(rows, ts, arena_.Commit(size), size, flag);
  Recount(heap, *rows);
  return absl::OkStatus();
}

absl::Status JoinRowStore::LoadAll(const std::function<absl::Status(uint32_t)>& loaded) {
  SLUICE_RETURN_IF_ERROR(state_->ForEachKey(id_, [&](absl::string_view key) -> absl::Status {
    if (Find(key) != nullptr) return absl::OkStatus();  // read back already after a spill
    uint32_t slot;
    SLUICE_ASSIGN_OR_RETURN(bool found, LoadCurrent(key, &slot));
    if (!found) return absl::OkStatus();
    // Into its block, its entry deleted, at the next WriteDirty (a key beyond a block's keeps
    // its entry, current as it is).
    if (blocks_on_ && StoredBytes(keys_[slot]) <= kJoinBlockMaxKeyBytes) MarkDirty(slot);
    return loaded(slot);
  }));
  std::vector<std::string> block_keys;  // listed first: a spill below deletes blocks
  SLUICE_RETURN_IF_ERROR(state_->ForEachKey(blocks_id_, [&](absl::string_view key) {
    block_keys.emplace_back(key);
    return absl::OkStatus();
  }));
  for (const std::string& block_key : block_keys) SLUICE_RETURN_IF_ERROR(LoadBlock(block_key, loaded));
  return absl::OkStatus();
}

absl::Status JoinRowStore::LoadBlock(const std::string& block_key,
                                     const std::function<absl::Status(uint32_t)>& loaded) {
  size_t block_size = 0;  // the value's, once read
  const auto corrupt = [&](absl::string_view why) {
    return op_->ctx_.state_origin.DataLoss(
        absl::StrCat(what_, " block (", block_size, " bytes): ", why));
  };
  int kg = 0;
  int64_t range = 0;
  if (!ParseBlockKey(block_key, &kg, &range)) return corrupt("its key is not 12 bytes");
  state_->SetCurrentKey(block_key, kg);
  SLUICE_ASSIGN_OR_RETURN(bool found, state_->Get(blocks_id_, &block_value_));
  if (!found) return absl::OkStatus();
  const std::string block = std::move(block_value_);  // `loaded` may spill, which writes
  block_value_.clear();
  block_size = block.size();
  const char* p = block.data();
  const char* end = p + block.size();
  if (p == end || static_cast<uint8_t>(*p) != kJoinBlockFormat) {
    return corrupt(absl::StrCat("format ", p == end ? -1 : static_cast<int>(static_cast<uint8_t>(*p)),
                                ", expected ", kJoinBlockFormat));
  }
  uint64_t count = 0;
  p = GetVarint64(p + 1, end, &count);
  if (p == nullptr) return corrupt("no count");
  for (uint64_t i = 0; i < count; ++i) {
    uint64_t key_size = 0;
    p = GetVarint64(p, end, &key_size);
    if (p == nullptr || static_cast<uint64_t>(end - p) < key_size) return corrupt("a key cut short");
    const std::string key(p, key_size);
    p += key_size;
    uint64_t value_size = 0;
    p = GetVarint64(p, end, &value_size);
    if (p == nullptr || static_cast<uint64_t>(end - p) < value_size) return corrupt("a value cut short");
    value_.assign(p, value_size);
    p += value_size;
    int64_t value = 0;
    if (!JoinOperatorBase::IntKeyOfBytes(key, &value) || value >> kJoinBlockShift != range) {
      return corrupt("a key out of its range");
    }
    SLUICE_ASSIGN_OR_RETURN(int key_group, op_->KeyGroupOf(key));
    if (key_group != kg) return corrupt("a key of another key group");
    if (Find(key) != nullptr) return corrupt("a key held twice");
    const uint32_t slot = NewSlot(key, key_group);
    SLUICE_RETURN_IF_ERROR(Parse(value_, &keys_[slot]));
    keys_[slot].in_block = blocks_on_;
    if (!blocks_on_) MarkDirty(slot);  // spilled since: the key goes to a per-key entry
    SLUICE_RETURN_IF_ERROR(loaded(slot));
  }
  if (p != end) return corrupt("bytes left over");
  if (blocks_on_) {  // it holds what the backend holds: clean
    const auto it = block_of_.find(std::make_pair(kg, range));
    if (it != block_of_.end()) blocks_[it->second].stored = true;
    return absl::OkStatus();
  }
  state_->SetCurrentKey(block_key, kg);
  return state_->Delete(blocks_id_);
}

absl::Status JoinRowStore::RestoreBuckets(const std::string (&names)[2], bool flag_prefix,
                                          const std::function<absl::Status(uint32_t)>& loaded) {
  for (int side = 0; side < 2; ++side) {
    const state::StateId buckets = state_->RegisterState(names[side], state::StateKind::kMap);
    const state::StateId index_id = state_->RegisterState(names[side] + ".index", state::StateKind::kValue);
    BucketIndex index(state_, index_id);
    SLUICE_RETURN_IF_ERROR(state_->ForEachKey(index_id, [&](absl::string_view key) -> absl::Status {
      const std::string key_copy(key);  // SetCurrentKey below may move what `key` views
      SLUICE_RETURN_IF_ERROR(index.Load());
      SLUICE_ASSIGN_OR_RETURN(int key_group, op_->KeyGroupOf(key_copy));
      const uint32_t* found_slot = Find(key_copy);
      uint32_t slot;
      if (found_slot != nullptr) {
        slot = *found_slot;
      } else {
        SLUICE_ASSIGN_OR_RETURN(slot, Load(key_copy, key_group));
      }
      state_->SetCurrentKey(key_copy, key_group);
      for (size_t b = 0; b < index.size(); ++b) {
        SLUICE_ASSIGN_OR_RETURN(bool found, state_->MapGet(buckets, index.user_key(b), &value_));
        if (!found) continue;
        SLUICE_ASSIGN_OR_RETURN(absl::string_view body, BucketBody(op_->ctx_.state_origin, value_));
        const int64_t ts = index.time(b);
        const char* pos = body.data();
        const char* end = pos + body.size();
        while (pos < end) {
          bool flag = false;
          if (flag_prefix) flag = *pos++ != 0;
          const char* start = pos;
          SLUICE_RETURN_IF_ERROR(op_->DecodeOne(side, &pos, end, &scratch_[side]));
          SLUICE_RETURN_IF_ERROR(AddChecked(side, ts, flag, start, pos - start, &keys_[slot]));
        }
        SLUICE_RETURN_IF_ERROR(state_->MapRemove(buckets, index.user_key(b)));
      }
      index.EraseFront(index.size());
      SLUICE_RETURN_IF_ERROR(index.Store());
      MarkDirty(slot);
      return loaded(slot);
    }));
  }
  return absl::OkStatus();
}

}  // namespace sluice::ops
