#include "state/internal/write_back_cache.h"

#include <algorithm>
#include <cassert>
#include <cstring>

namespace sluice::state::internal {

BlockArena::Class BlockArena::ClassOf(size_t n) {
  if (n <= 256) return {std::max(n, kMinBlock), std::max(n, kMinBlock)};
  size_t size = 256;
  size_t index = 256;
  while (size < n) {
    size = (size + size / 4 + 7) & ~size_t{7};
    ++index;
  }
  return {size, index};
}

uint64_t BlockArena::AllocateLarge(size_t size) {
  uint64_t id;
  if (!free_large_.empty()) {
    id = free_large_.back();
    free_large_.pop_back();
  } else {
    id = large_.size();
    large_.emplace_back();
  }
  large_[id].reset(new char[size]);
  reserved_ += size;
  return id | kLargeBit;
}

uint64_t BlockArena::Allocate(size_t n) {
  const Class c = ClassOf(n);
  if (c.size > kMaxChunkBlock) return AllocateLarge(c.size);
  if (c.index < free_heads_.size() && free_heads_[c.index] != kNoBlock) {
    const uint64_t pos = free_heads_[c.index];
    std::memcpy(&free_heads_[c.index], At(pos), sizeof(uint64_t));
    // The next Allocate() of this class reads the new head's block: after an eviction the
    // list runs through blocks freed in key order, one DRAM miss each unless loaded now.
    if (free_heads_[c.index] != kNoBlock) __builtin_prefetch(At(free_heads_[c.index]));
    return pos;
  }
  if (chunk_used_ + c.size > kChunkBytes) {
    // Chunk positions stop below kLargeBit: beyond, blocks are allocated one by one (the
    // cache's budget is capped well below that; only dirty entries not written yet get here).
    if (chunks_.size() >= max_chunks_) return AllocateLarge(c.size);
    // The rest of the full chunk serves its own size class later (if it is one).
    const size_t rest = kChunkBytes - chunk_used_;
    if (rest >= kMinBlock && rest <= 256) {
      Free((static_cast<uint64_t>(chunks_.size() - 1) << kChunkShift) | chunk_used_, rest);
    }
    chunks_.emplace_back(new char[kChunkBytes]);
    reserved_ += kChunkBytes;
    chunk_used_ = 0;
  }
  const uint64_t pos = (static_cast<uint64_t>(chunks_.size() - 1) << kChunkShift) | chunk_used_;
  chunk_used_ += c.size;
  return pos;
}

void BlockArena::Free(uint64_t pos, size_t n) {
  const Class c = ClassOf(n);
  if ((pos & kLargeBit) != 0) {
    const uint64_t id = pos & ~kLargeBit;
    large_[id].reset();
    reserved_ -= c.size;
    free_large_.push_back(id);
    return;
  }
  if (c.index >= free_heads_.size()) free_heads_.resize(c.index + 1, kNoBlock);
  std::memcpy(At(pos), &free_heads_[c.index], sizeof(uint64_t));
  free_heads_[c.index] = pos;
}

WriteBackCache::WriteBackCache(size_t budget_bytes)
    : budget_(std::min(budget_bytes, kMaxBudgetBytes)) {}

WriteBackCache::~WriteBackCache() = default;

size_t WriteBackCache::Probe(absl::string_view key, uint32_t tag) const {
  const size_t mask = cells_.size() - 1;
  for (size_t i = tag & mask;; i = (i + 1) & mask) {
    const Cell& c = cells_[i];
    if (c.ref == kNone || (c.tag == tag && this->key(c.ref) == key)) return i;
  }
}

void WriteBackCache::GrowIndex() {
  std::vector<Cell> old = std::move(cells_);
  cells_.assign(old.empty() ? 1024 : old.size() * 2, Cell());
  const size_t mask = cells_.size() - 1;
  for (const Cell& c : old) {
    if (c.ref == kNone) continue;
    size_t i = c.tag & mask;
    while (cells_[i].ref != kNone) i = (i + 1) & mask;
    cells_[i] = c;
  }
}

void WriteBackCache::IndexInsert(Ref r, uint32_t tag) {
  if ((live_ + 1) * 10 > cells_.size() * 7) GrowIndex();
  const size_t i = Probe(key(r), tag);
  cells_[i] = Cell{tag, r};
  ++live_;
}

void WriteBackCache::IndexErase(Ref r, uint32_t tag) {
  const size_t mask = cells_.size() - 1;
  size_t i = tag & mask;
  while (cells_[i].ref != r) i = (i + 1) & mask;
  // Backward shift: pull later cells of the probe run into the hole unless their home lies
  // cyclically in (hole, cell].
  for (size_t j = (i + 1) & mask; cells_[j].ref != kNone; j = (j + 1) & mask) {
    const size_t home = cells_[j].tag & mask;
    const bool stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
    if (stays) continue;
    cells_[i] = cells_[j];
    i = j;
  }
  cells_[i] = Cell();
  --live_;
}

WriteBackCache::Ref WriteBackCache::Find(absl::string_view key, uint64_t hash) {
  const Ref r = Peek(key, hash);
  if (r == kNone) {
    ++misses_;
    return kNone;
  }
  Touch(r);
  return r;
}

void WriteBackCache::Touch(Ref r) {
  Slot& s = slots_[r];
  if (s.flags & kPrefetched) {
    s.flags &= ~kPrefetched;
    ++misses_;
  } else {
    ++hits_;
  }
  s.flags |= kReferenced;
}

WriteBackCache::Ref WriteBackCache::Peek(absl::string_view key, uint64_t hash) const {
  ++lookups_;
  if (live_ == 0) return kNone;
  return cells_[Probe(key, Tag(hash))].ref;
}

WriteBackCache::Ref WriteBackCache::Insert(absl::string_view key, uint64_t hash,
                                           size_t value_room) {
  Ref r;
  if (!free_.empty()) {
    r = free_.back();
    free_.pop_back();
  } else {
    r = static_cast<Ref>(slots_.size());
    slots_.emplace_back();
  }
  size_t capacity = BlockArena::ClassSize(key.size());
  if (value_room > 0) {
    const size_t roomy = BlockArena::ClassSize(key.size() + value_room);
    if (roomy - key.size() <= kMaxRoom) capacity = roomy;
  }
  const uint64_t pos = arena_.Allocate(capacity);
  Slot& s = slots_[r];
  s.pos = pos;
  s.room = capacity == BlockArena::ClassSize(key.size()) ? 0 : capacity - key.size();
  s.flags = kLive | kDeleted | kInDb | kReferenced;
  s.key_len = static_cast<uint32_t>(key.size());
  s.value_len = 0;
  if (!key.empty()) std::memcpy(arena_.At(pos), key.data(), key.size());
  bytes_ += kEntryOverhead + capacity;
  IndexInsert(r, Tag(hash));
  return r;
}

WriteBackCache::Ref WriteBackCache::FindOrInsert(absl::string_view key) {
  const uint64_t hash = HashKey(key);
  const Ref r = Peek(key, hash);
  if (r == kNone) return Insert(key, hash);
  slots_[r].flags |= kReferenced;
  return r;
}

void WriteBackCache::Relayout(Ref r, bool has_expiry, size_t value_len, size_t keep_value) {
  Slot& s = slots_[r];
  const bool had_expiry = (s.flags & kHasExpiry) != 0;
  const size_t old_used = Used(s);
  const size_t old_size = Capacity(s);
  const size_t used = (has_expiry ? 8 : 0) + s.key_len + value_len;
  const size_t size = BlockArena::ClassSize(used);
  if (has_expiry == had_expiry) {
    if (size == old_size) {  // the same size class
      s.room = 0;
      s.value_len = static_cast<uint32_t>(value_len);
      return;
    }
    if (used >= old_used && used <= old_size && old_size - used <= kMaxRoom) {
      s.room = old_size - used;  // grown into the block's room
      s.value_len = static_cast<uint32_t>(value_len);
      return;
    }
  }
  const uint64_t old_pos = s.pos;
  const uint64_t pos = arena_.Allocate(used);
  char* dst = arena_.At(pos);
  const char* src = arena_.At(old_pos);  // after Allocate(): chunks never move
  if (has_expiry) {
    if (had_expiry) {
      std::memcpy(dst, src, 8);
    } else {
      std::memset(dst, 0, 8);
    }
    dst += 8;
  }
  if (had_expiry) src += 8;
  std::memcpy(dst, src, s.key_len + keep_value);
  arena_.Free(old_pos, old_size);
  s.pos = pos;
  s.room = 0;
  s.flags = has_expiry ? (s.flags | kHasExpiry) : (s.flags & ~kHasExpiry);
  s.value_len = static_cast<uint32_t>(value_len);
  bytes_ += size;
  bytes_ -= old_size;
}

void WriteBackCache::SetValue(Ref r, absl::string_view v) {
  Relayout(r, (slots_[r].flags & kHasExpiry) != 0, v.size(), 0);
  if (!v.empty()) std::memcpy(const_cast<char*>(value(r).data()), v.data(), v.size());
}

void WriteBackCache::AppendValue(Ref r, absl::string_view v) {
  const size_t old_len = slots_[r].value_len;
  Relayout(r, (slots_[r].flags & kHasExpiry) != 0, old_len + v.size(), old_len);
  if (!v.empty()) std::memcpy(const_cast<char*>(value(r).data()) + old_len, v.data(), v.size());
}

void WriteBackCache::set_expiry(Ref r, int64_t e) {
  if ((slots_[r].flags & kHasExpiry) == 0) {
    if (e == 0) return;  // no prefix reads as 0
    Relayout(r, /*has_expiry=*/true, slots_[r].value_len, slots_[r].value_len);
  }
  std::memcpy(arena_.At(slots_[r].pos), &e, sizeof(e));
}

void WriteBackCache::MarkDirty(Ref r) {
  Slot& s = slots_[r];
  if (s.flags & kDirty) return;
  if (s.flags & kPending) {
    s.flags &= ~kPending;
    --pending_count_;
  }
  s.flags |= kDirty;
  ++dirty_count_;
  if (!(s.flags & kListed)) {
    s.flags |= kListed;
    dirty_.push_back(r);
    if (dirty_.size() > 2 * (dirty_count_ + pending_count_) + 4096) CompactDirtyList();
  }
}

void WriteBackCache::MarkClean(Ref r) {
  Slot& s = slots_[r];
  if (s.flags & kDirty) {
    s.flags &= ~kDirty;
    --dirty_count_;
  } else if (s.flags & kPending) {
    s.flags &= ~kPending;
    --pending_count_;
  }
}

void WriteBackCache::CompactDirtyList() {
  size_t kept = 0;
  for (Ref r : dirty_) {
    Slot& s = slots_[r];
    const bool unsynced = (s.flags & (kDirty | kPending)) != 0;
    // A slot number repeats only after its slot was freed and reused: the first copy keeps it.
    if ((s.flags & (kLive | kListed)) == (kLive | kListed) && unsynced) {
      dirty_[kept++] = r;
      s.flags &= ~kListed;  // marks it kept; set again below
    } else if (!unsynced) {
      // Clean: unlisted, and no longer hot (as the pass of Snapshot() unmarks the clean entries
      // it unlists): a mark left here would outlive snapped_, which the next Snapshot() clears
      // marks from, and make the entry's next change after a quiet interval count as hot.
      s.flags &= ~(kListed | kSnapped);
    }
  }
  dirty_.resize(kept);
  for (Ref r : dirty_) slots_[r].flags |= kListed;
}

void WriteBackCache::TakeListed() {
  victims_.clear();
  for (Ref r : dirty_) {
    Slot& s = slots_[r];
    if ((s.flags & kLive) == 0 || (s.flags & kListed) == 0) continue;
    s.flags &= ~kListed;
    if ((s.flags & (kDirty | kPending)) != 0) {
      victims_.push_back(r);
    }
  }
  dirty_.clear();
  list_taken_ = true;
}

void WriteBackCache::Relist(absl::Span<const Ref> refs) {
  for (Ref r : refs) {
    slots_[r].flags |= kListed;
    dirty_.push_back(r);
  }
}

void WriteBackCache::Free(Ref r, uint64_t hash) {
  IndexErase(r, Tag(hash));
  Slot& s = slots_[r];
  const size_t size = Capacity(s);
  bytes_ -= kEntryOverhead + size;
  arena_.Free(s.pos, size);
  s.pos = 0;
  s.room = 0;
  s.key_len = 0;
  s.value_len = 0;
  s.flags = 0;  // a stale copy in dirty_ is skipped (not live / not listed)
  free_.push_back(r);
  ++frees_;
}

void WriteBackCache::Erase(Ref r) { Free(r, HashKey(key(r))); }

void WriteBackCache::EnableStoreFilter(size_t first_capacity) {
  if (filter_started_) return;
  filter_started_ = true;
  filter_ = std::make_unique<WrittenKeyFilter>(first_capacity);
}

void WriteBackCache::NoteInStore(absl::string_view key) {
  if (filter_ != nullptr) AddToFilter(HashKey(key));
}

void WriteBackCache::AddToFilter(uint64_t hash, bool absent) {
  if (filter_ == nullptr) return;
  const size_t before = filter_->bytes();
  if (absent) {
    filter_->AddAbsent(hash);
  } else {
    filter_->Add(hash);
  }
  if (filter_->bytes() == before) return;
  bytes_ += filter_->bytes() - before;
  if (filter_->bytes() > budget_ / 2) {
    bytes_ -= filter_->bytes();
    filter_.reset();
  }
}

absl::Status WriteBackCache::WriteAndClean(absl::Span<const Ref> refs, WriteFn write,
                                           absl::Span<const uint64_t> hashes) {
  if (refs.empty()) return absl::OkStatus();
  // Before the write: a key the store may hold is never missing from the filter (one whose
  // write fails is only a false positive). An entry written before while cached is in it
  // already (a hot key flushed at every snapshot is added once). The filter's blocks are loaded
  // a few keys ahead.
  if (filter_ != nullptr) {
    constexpr size_t kAhead = 8;
    // An entry whose key the filter lacked when it was inserted (kFilterMiss) lacks it still
    // (only this entry's write adds it, and kInFilter says whether one did): added without a
    // probe, so only its newest part is loaded.
    hashes_.clear();
    absent_hashes_.clear();
    for (size_t i = 0; i < refs.size(); ++i) {
      const Ref r = refs[i];
      if (slots_[r].flags & kInFilter) continue;
      const uint64_t hash = hashes.empty() ? HashKey(key(r)) : hashes[i];
      (slots_[r].flags & kFilterMiss ? absent_hashes_ : hashes_).push_back(hash);
      slots_[r].flags |= kInFilter;
    }
    for (size_t i = 0; i < hashes_.size(); ++i) {
      if (filter_ == nullptr) break;
      if (i + kAhead < hashes_.size()) filter_->Prefetch(hashes_[i + kAhead]);
      AddToFilter(hashes_[i]);
    }
    for (size_t i = 0; i < absent_hashes_.size(); ++i) {
      if (filter_ == nullptr) break;
      if (i + kAhead < absent_hashes_.size()) filter_->PrefetchNewest(absent_hashes_[i + kAhead]);
      AddToFilter(absent_hashes_[i], /*absent=*/true);
    }
  }
  absl::Status s = write(refs);
  if (!s.ok()) return s;
  for (Ref r : refs) {
    Slot& slot = slots_[r];
    if (slot.flags & kDirty) {
      --dirty_count_;
    } else {
      --pending_count_;
    }
    slot.flags &= ~(kDirty | kPending);
    if (slot.flags & kDeleted) {
      slot.flags &= ~kInDb;
    } else {
      slot.flags |= kInDb;
    }
  }
  return absl::OkStatus();
}

void WriteBackCache::SortByKey(std::vector<Ref>* refs, std::vector<uint64_t>* hashes) {
  // Sorted by each key's first 8 bytes as a big-endian number (zero-padded: a zero byte is the
  // smallest, so a prefix sorts first as in a byte-wise compare), the whole keys compared only
  // where those are equal: the sort then runs over one contiguous array instead of loading two
  // slots and their heap buffers per comparison (a third of a snapshot's flush at 50K keys).
  // The pairs hold (prefix, position in sort_refs_), so that a key's hash, taken in the same
  // pass as its prefix, follows it (an eviction then reads each victim's block once before
  // writing it, not twice: 8 MB of scattered blocks per batch at 10M keys with 64 MiB per
  // worker, which the CPU's caches no longer hold by the second pass).
  const size_t n = refs->size();
  sort_refs_.assign(refs->begin(), refs->end());
  if (hashes != nullptr) sort_hashes_.resize(n);
  by_prefix_.clear();
  by_prefix_.reserve(n);
  constexpr size_t kAhead = 8;  // the entries come in slot order, their blocks scattered
  for (size_t i = 0; i < n; ++i) {
    if (i + kAhead < n) PrefetchEntry(sort_refs_[i + kAhead]);
    const absl::string_view k = key(sort_refs_[i]);
    unsigned char head[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    std::memcpy(head, k.data(), std::min<size_t>(k.size(), sizeof(head)));
    uint64_t prefix = 0;
    for (unsigned char c : head) prefix = (prefix << 8) | c;
    by_prefix_.emplace_back(prefix, static_cast<uint32_t>(i));
    if (hashes != nullptr) sort_hashes_[i] = HashKey(k);
  }
  auto by_key = [this](const std::pair<uint64_t, uint32_t>& a,
                       const std::pair<uint64_t, uint32_t>& b) {
    if (a.first != b.first) return a.first < b.first;
    return key(sort_refs_[a.second]) < key(sort_refs_[b.second]);
  };
  if (n < kRadixSortMin) {
    std::sort(by_prefix_.begin(), by_prefix_.end(), by_key);
  } else {
    // An eviction's batch (up to a quarter of the entries): a least-significant-byte-first radix
    // sort of the prefixes (a stable counting pass per byte, skipping the bytes every key shares,
    // e.g. the state id), then the runs of equal prefixes by their whole keys. At 10M keys with
    // 64 MiB per worker std::sort's compares were ~5% of the task thread.
    std::vector<uint32_t>& counts = radix_counts_;
    counts.assign(8 * 256, 0);
    for (const auto& [prefix, r] : by_prefix_) {
      for (int b = 0; b < 8; ++b) ++counts[b * 256 + ((prefix >> (8 * b)) & 0xff)];
    }
    radix_tmp_.resize(n);
    std::pair<uint64_t, uint32_t>* src = by_prefix_.data();
    std::pair<uint64_t, uint32_t>* dst = radix_tmp_.data();
    for (int b = 0; b < 8; ++b) {
      uint32_t* c = &counts[b * 256];
      if (c[(src[0].first >> (8 * b)) & 0xff] == n) continue;  // one value: already in order
      uint32_t sum = 0;
      for (int v = 0; v < 256; ++v) {
        const uint32_t count = c[v];
        c[v] = sum;
        sum += count;
      }
      for (size_t i = 0; i < n; ++i) dst[c[(src[i].first >> (8 * b)) & 0xff]++] = src[i];
      std::swap(src, dst);
    }
    if (src != by_prefix_.data()) std::copy(src, src + n, by_prefix_.data());
    for (size_t i = 0; i < n;) {
      size_t j = i + 1;
      while (j < n && by_prefix_[j].first == by_prefix_[i].first) ++j;
      if (j - i > 1) std::sort(by_prefix_.begin() + i, by_prefix_.begin() + j, by_key);
      i = j;
    }
  }
  for (size_t i = 0; i < n; ++i) (*refs)[i] = sort_refs_[by_prefix_[i].second];
  if (hashes != nullptr) {
    hashes->resize(n);
    for (size_t i = 0; i < n; ++i) (*hashes)[i] = sort_hashes_[by_prefix_[i].second];
  }
}

absl::Status WriteBackCache::FlushDirty(WriteFn write, size_t batch) {
  TakeListed();
  // All batches in one key order: after a snapshot's memtable flush the memtable is empty, so
  // every insert then appends at the end of its skip list (at 50K dirty keys, batches sorted
  // only each in itself cost 3-4x as much, the later ones interleaving with the earlier).
  SortByKey(&victims_);
  for (size_t i = 0, n = 0; i < victims_.size(); i += n) {
    n = std::min(batch, victims_.size() - i);
    absl::Status status = WriteAndClean(absl::MakeConstSpan(victims_).subspan(i, n), write);
    if (!status.ok()) {
      // What was not written stays dirty or pending: list it again.
      Relist(absl::MakeConstSpan(victims_).subspan(i));
      victims_.clear();
      return status;
    }
  }
  victims_.clear();
  return absl::OkStatus();
}

absl::Status WriteBackCache::Snapshot(WriteFn write, DeltaFns delta, bool all_dirty_hot) {
  // dirty_ may hold a slot number twice (a stale copy of a freed entry's, then the entry that
  // reused the slot). Without `all_dirty_hot` the pass below needs no compaction first: a
  // reused slot starts without kSnapped (Free() clears the flags) and only a Snapshot() marks
  // one, so the entry there is not hot at the first pass after its insertion: the first copy
  // that pass meets unlists it, and the later copies are skipped (not listed). A hot entry was
  // listed by the last pass (which dropped every other copy) or added once since (MarkDirty()
  // lists an unlisted entry only), so it is met once and kept once.
  // The last snapshot's marks on entries that are not dirty now go (a dirty one is hot now and
  // keeps its mark). Its hot entries are still listed, so the pass meets them, unless
  // TakeListed() ran since.
  // With `all_dirty_hot` an entry can be hot at the first pass after its insertion, so a
  // slot number listed twice (freed and reused) would be met twice: the list is compacted
  // first (each live unsynced entry listed once).
  if (all_dirty_hot) CompactDirtyList();
  const size_t forget = list_taken_ ? snapped_.size() : snapped_cold_;
  for (size_t i = 0; i < forget; ++i) {
    Slot& s = slots_[snapped_[i]];
    if ((s.flags & kDirty) == 0) s.flags &= ~kSnapped;
  }
  // One pass over the list: hot entries (dirty and kSnapped) go to the delta and turn pending
  // at once, staying listed (compacted in place); the pending ones (unchanged since the last
  // snapshot) and the dirty ones that are not hot are unlisted and collected for the store.
  unchanged_.clear();
  cold_.clear();
  victims_.clear();  // the hot entries
  constexpr size_t kAhead = 8;  // blocks loaded this many entries ahead, slots twice as far
  const size_t n = dirty_.size();
  size_t kept = 0;
  for (size_t i = 0; i < n; ++i) {
    if (i + 2 * kAhead < n) PrefetchSlot(dirty_[i + 2 * kAhead]);
    if (i + kAhead < n && (slots_[dirty_[i + kAhead]].flags & kLive) != 0) {
      PrefetchEntry(dirty_[i + kAhead]);
    }
    const Ref r = dirty_[i];
    Slot& s = slots_[r];
    if ((s.flags & (kLive | kListed)) != (kLive | kListed)) continue;
    // A hot entry stays listed: met again (its slot number listed twice), it would go to the
    // store as well. kVictim (Evict()'s, unused here) marks the ones met, in debug builds.
    assert((s.flags & kVictim) == 0 && "a hot entry listed twice");
    if ((s.flags & kDirty) != 0 && (all_dirty_hot || (s.flags & kSnapped) != 0)) {
      delta.add(r);
      s.flags = (s.flags & ~kDirty) | kPending;
#ifndef NDEBUG
      s.flags |= kVictim;
#endif
      victims_.push_back(r);
      dirty_[kept++] = r;
      continue;
    }
    if (s.flags & kDirty) {
      cold_.push_back(r);
    } else if (s.flags & kPending) {
      unchanged_.push_back(r);
    }
    s.flags &= ~(kListed | kSnapped);  // clean ones are unlisted too
  }
  dirty_.resize(kept);
#ifndef NDEBUG
  for (Ref r : victims_) slots_[r].flags &= ~kVictim;
#endif
  // On an error the hot entries are dirty again (still listed) and the others listed again.
  auto undo_hot = [this] {
    for (Ref r : victims_) slots_[r].flags = (slots_[r].flags & ~kPending) | kDirty;
    victims_.clear();
  };
  unchanged_.insert(unchanged_.end(), cold_.begin(), cold_.end());
  if (!unchanged_.empty()) {
    SortByKey(&unchanged_);
    absl::Status s = WriteAndClean(unchanged_, write);
    if (!s.ok()) {
      Relist(unchanged_);
      undo_hot();
      return s;
    }
  }
  if (!victims_.empty()) {
    absl::Status s = delta.finish();
    if (!s.ok()) {
      undo_hot();
      return s;
    }
  }
  pending_count_ += victims_.size();
  dirty_count_ -= victims_.size();
  if (all_dirty_hot) {
    for (Ref r : victims_) slots_[r].flags |= kSnapped;  // (marked only now: undo_hot keeps none)
  }
  // kSnapped now marks exactly the entries this snapshot changed (hot ones into its delta,
  // the others into the store): an entry the last one wrote and this one did not lost it
  // above, so a change after a quiet interval is never taken for a hot one.
  for (Ref r : cold_) slots_[r].flags |= kSnapped;
  snapped_.assign(cold_.begin(), cold_.end());
  snapped_cold_ = cold_.size();
  snapped_.insert(snapped_.end(), victims_.begin(), victims_.end());
  list_taken_ = false;
  victims_.clear();
  return absl::OkStatus();
}

void WriteBackCache::ForgetSnapped() {
  // A slot number freed and reused since keeps no mark of its old entry (Free() clears the
  // flags); a new entry there can be marked only by the snapshot being forgotten.
  for (Ref r : snapped_) slots_[r].flags &= ~kSnapped;
  snapped_.clear();
  snapped_cold_ = 0;
}

absl::Status WriteBackCache::Evict(WriteFn write) {
  victims_.clear();
  const size_t limit = 3 * slots_.size() + 1;
  for (size_t scanned = 0; scanned < limit && bytes_ > budget_ - reserved_; ++scanned) {
    if (victims_.size() >= std::max(kEvictBatch, live_ / 4)) break;
    const Ref r = static_cast<Ref>(hand_);
    if (++hand_ >= slots_.size()) hand_ = 0;
    Slot& s = slots_[r];
    if ((s.flags & kLive) == 0 || (s.flags & kVictim) != 0) continue;
    if (s.flags & kReferenced) {
      s.flags &= ~kReferenced;
      continue;
    }
    if (s.flags & (kDirty | kPending)) {
      s.flags |= kVictim;
      victims_.push_back(r);
    } else {
      Free(r, HashKey(key(r)));
    }
  }
  for (Ref r : victims_) slots_[r].flags &= ~kVictim;
  if (bytes_ > budget_ - reserved_) {
    // Not enough clean entries: write the dirty (and pending) ones met, in one batch in key
    // order, and drop them all.
    // Each victim's key is hashed once, for the store filter and for its index cell, in the
    // sort's pass over the blocks.
    SortByKey(&victims_, &victim_hashes_);
    absl::Status s = WriteAndClean(victims_, write, victim_hashes_);
    if (!s.ok()) return s;
    evicted_writes_ += victims_.size();
    // Index cells and slots loaded this many entries ahead, then the block Free() writes.
    constexpr size_t kAhead = 8;
    const size_t n = victims_.size();
    for (size_t i = 0; i < n; ++i) {
      if (i + 2 * kAhead < n) {
        __builtin_prefetch(&cells_[Tag(victim_hashes_[i + 2 * kAhead]) & (cells_.size() - 1)]);
        PrefetchSlot(victims_[i + 2 * kAhead]);
      }
      if (i + kAhead < n) __builtin_prefetch(arena_.At(slots_[victims_[i + kAhead]].pos), 1);
      Free(victims_[i], victim_hashes_[i]);
    }
  }
  victims_.clear();
  return absl::OkStatus();
}

}  // namespace sluice::state::internal
