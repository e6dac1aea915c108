#pragma once

// IntPaneTable: the open windows of one window bucket when the window's key is one integer
// field, as fixed-size slots [key][the pane's words] in one array (open addressing, linear
// probing): a record's lookup touches one slot, with no key bytes on the heap and no memcmp.
// Only `window` uses it (window.cc's Bucket, and the index of its session keys by value).

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

#include "absl/base/attributes.h"

namespace sluice::ops::internal {

// A hash table from int64 keys to `words` int64s each, zeroed when a key is inserted.
// Pointers to a key's words stay valid until the next insertion of a new key (which may grow
// the table). Not thread-safe: the owning task thread only.
class IntPaneTable {
 public:
  // REQUIRES: no key inserted yet.
  void SetWords(size_t words) { stride_ = 1 + words; }
  // Grow at half full instead of 3/4: a lookup probes fewer slots (fewer mispredicted branches)
  // for 4/3 of the memory; for small slots looked up per record (window.cc's narrow buckets).
  // REQUIRES: no key inserted yet.
  void SetHalfLoad() { half_load_ = true; }
  size_t words() const { return stride_ - 1; }
  size_t size() const { return size_; }
  size_t CapacityForTest() const { return capacity_; }
  // Bytes of memory a key takes at the table's lowest load after growing (3/8; 1/4 with
  // SetHalfLoad()), rounded up: for memory budgets.
  size_t BytesPerKey() const {
    return half_load_ ? stride_ * sizeof(int64_t) * 4 : stride_ * sizeof(int64_t) * 8 / 3 + 1;
  }

  // Makes room for `keys` keys in all, so that inserting up to that many grows the table no
  // more (a bucket of a new window sized as the last one fired).
  void Reserve(size_t keys) {
    size_t capacity = capacity_ == 0 ? 16 : capacity_;
    while (keys + 1 > MaxKeys(capacity)) capacity *= 2;
    if (capacity != capacity_) Rehash(capacity);
  }

  // The words of `key`, or null.
  int64_t* Find(int64_t key) {
    return const_cast<int64_t*>(static_cast<const IntPaneTable*>(this)->Find(key));
  }
  const int64_t* Find(int64_t key) const {
    if (key == kEmpty) return has_empty_key_ ? empty_key_words_.data() : nullptr;
    if (capacity_ == 0) return nullptr;
    for (size_t i = Home(key);; i = (i + 1) & mask_) {
      const int64_t* slot = &slots_[i * stride_];
      if (slot[0] == key) return slot + 1;
      if (slot[0] == kEmpty) return nullptr;
    }
  }

  // Asks the CPU to bring the slot where a lookup of `key` starts into cache (a batch's later
  // keys while it works on the earlier ones); no effect on the table.
  void Prefetch(int64_t key) const {
    // (No early return: GCC 12 drops a prefetch behind one. A prefetch never faults.)
    const int64_t* slot = slots_.data() + (capacity_ == 0 ? 0 : Home(key) * stride_);
    __builtin_prefetch(slot);
    __builtin_prefetch(slot + stride_ - 1);  // its last word, maybe on the next cache line
  }

  // The words of `key`, inserted (zeroed) if absent; *inserted says which.
  int64_t* FindOrInsert(int64_t key, bool* inserted) { return FindOrInsertInlined(key, inserted); }
  // FindOrInsert(), inlined where it is called (growing is not): a record's lookup in a loop
  // over a batch (window.cc's FoldBatch).
  ABSL_ATTRIBUTE_ALWAYS_INLINE int64_t* FindOrInsertInlined(int64_t key, bool* inserted) {
    *inserted = false;
    if (key == kEmpty) {
      if (!has_empty_key_) {
        has_empty_key_ = true;
        empty_key_words_.assign(words(), 0);
        ++size_;
        *inserted = true;
      }
      return empty_key_words_.data();
    }
    if (size_ + 1 > max_keys_) Grow();
    for (size_t i = Home(key);; i = (i + 1) & mask_) {
      int64_t* slot = &slots_[i * stride_];
      if (slot[0] == key) return slot + 1;
      if (slot[0] == kEmpty) {
        slot[0] = key;
        ++size_;
        *inserted = true;
        return slot + 1;  // zeroed when the array was made
      }
    }
  }

  // Removes `key` (backward shift: no tombstones); false when absent. Other keys' words may
  // move.
  bool Erase(int64_t key) {
    if (key == kEmpty) {
      if (!has_empty_key_) return false;
      has_empty_key_ = false;
      --size_;
      return true;
    }
    if (capacity_ == 0) return false;
    size_t hole = Home(key);
    for (;; hole = (hole + 1) & mask_) {
      if (slots_[hole * stride_] == key) break;
      if (slots_[hole * stride_] == kEmpty) return false;
    }
    for (size_t j = (hole + 1) & mask_; slots_[j * stride_] != kEmpty; j = (j + 1) & mask_) {
      // The key at j stays unless the hole lies between its home and j (cyclically).
      const size_t home = Home(slots_[j * stride_]);
      const bool stays = hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
      if (stays) continue;
      std::copy_n(&slots_[j * stride_], stride_, &slots_[hole * stride_]);
      hole = j;
    }
    std::fill_n(&slots_[hole * stride_], stride_, 0);
    slots_[hole * stride_] = kEmpty;
    --size_;
    return true;
  }

  // Calls f(key, words) for every key, in no particular order. f must not insert.
  template <typename F>
  void ForEach(F&& f) const {
    if (has_empty_key_) f(kEmpty, empty_key_words_.data());
    for (size_t i = 0; i < capacity_; ++i) {
      const int64_t* slot = &slots_[i * stride_];
      if (slot[0] != kEmpty) f(slot[0], slot + 1);
    }
  }
  template <typename F>
  void ForEach(F&& f) {
    static_cast<const IntPaneTable*>(this)->ForEach(
        [&f](int64_t key, const int64_t* words) { f(key, const_cast<int64_t*>(words)); });
  }

 private:
  // Marks an unused slot; the key of that value lives in empty_key_words_.
  static constexpr int64_t kEmpty = std::numeric_limits<int64_t>::min();

  size_t Home(int64_t key) const {
    return static_cast<size_t>((static_cast<uint64_t>(key) * 0x9E3779B97F4A7C15ULL) >> shift_);
  }
  // The keys a table of `capacity` slots holds before it grows.
  size_t MaxKeys(size_t capacity) const { return half_load_ ? capacity / 2 : capacity / 4 * 3; }
  ABSL_ATTRIBUTE_NOINLINE void Grow() { Rehash(capacity_ == 0 ? 16 : 2 * capacity_); }
  // Moves the keys into a new array of `capacity` slots (a power of two, above size_).
  void Rehash(size_t capacity) {
    std::vector<int64_t> old;
    old.swap(slots_);
    const size_t old_capacity = capacity_;
    shift_ = 64;
    for (size_t c = capacity; c > 1; c >>= 1) --shift_;
    capacity_ = capacity;
    max_keys_ = MaxKeys(capacity);
    mask_ = capacity - 1;
    slots_.assign(capacity * stride_, 0);
    for (size_t i = 0; i < capacity; ++i) slots_[i * stride_] = kEmpty;
    for (size_t i = 0; i < old_capacity; ++i) {
      const int64_t* from = &old[i * stride_];
      if (from[0] == kEmpty) continue;
      size_t j = Home(from[0]);
      while (slots_[j * stride_] != kEmpty) j = (j + 1) & mask_;
      for (size_t w = 0; w < stride_; ++w) slots_[j * stride_ + w] = from[w];
    }
  }

  size_t stride_ = 1;  // int64s per slot: the key, then its words
  std::vector<int64_t> slots_;
  size_t capacity_ = 0;  // slots (a power of two; 0: no array yet)
  size_t mask_ = 0;      // capacity_ - 1
  size_t max_keys_ = 0;  // MaxKeys(capacity_): an insertion beyond it grows the table
  bool half_load_ = false;
  int shift_ = 64;       // 64 - log2(capacity_)
  size_t size_ = 0;   // keys, kEmpty's included
  bool has_empty_key_ = false;
  std::vector<int64_t> empty_key_words_;
};

}  // namespace sluice::ops::internal
