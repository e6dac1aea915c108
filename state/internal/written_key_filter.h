#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/strings/string_view.h"
#include "common/key_groups.h"

namespace sluice::state::internal {

// An approximate set of keys that only grows (a scalable bloom filter): MayContain() is true
// for every key added and, for a key never added, false except for a small share of false
// positives (about 1% per part, see below). The write-back cache keeps one of the keys it wrote
// to its store, so a read of a key never written needs no store lookup.
//
// Representation: a sequence of split block bloom filters (as Parquet's and Impala's): a part
// is an array of 32-byte blocks of eight 32-bit words, sized for `capacity` keys at
// kBitsPerKey bits each; a key sets one bit in each word of one block (its block picked by the
// high half of its hash, the bits by the low half times eight odd salts), so a probe reads one
// half cache line per part. Keys go into the newest part until it holds its capacity, then a
// part of twice the capacity follows (keys already held, or falsely seen as held, are not
// added or counted again), so a probe reads O(log(keys / first capacity)) parts and memory
// stays about kBitsPerKey * 2 bits per distinct key.
//
// Threading: one thread. Not thread-safe.
class WrittenKeyFilter {
 public:
  static constexpr size_t kBitsPerKey = 10;

  // The first part holds `first_capacity` keys (at least 64); parts are allocated as keys
  // arrive.
  explicit WrittenKeyFilter(size_t first_capacity);
  WrittenKeyFilter(const WrittenKeyFilter&) = delete;
  WrittenKeyFilter& operator=(const WrittenKeyFilter&) = delete;

  // The hash the other calls take (stable across processes and builds).
  static uint64_t Hash(absl::string_view key) { return HashBytes(key); }

  // Adds the key of `hash`.
  void Add(uint64_t hash);
  // Adds the key of `hash`, known to be absent (MayContain(hash) was false and it was not added
  // since), without probing for it first.
  void AddAbsent(uint64_t hash);
  // False: the key of `hash` was never added.
  bool MayContain(uint64_t hash) const;
  // Starts loading the memory MayContain(hash) and Add(hash) read (for batches: a probe then
  // waits for no memory load).
  void Prefetch(uint64_t hash) const;
  // Starts loading the memory AddAbsent(hash) reads (the newest part's block).
  void PrefetchNewest(uint64_t hash) const;

  // Bytes of the parts allocated.
  size_t bytes() const { return bytes_; }
  // Keys counted (distinct keys added, less those falsely seen as present).
  size_t keys() const { return keys_; }
  size_t parts() const { return parts_.size(); }

 private:
  struct Block {
    uint32_t words[8];
  };
  struct Part {
    std::unique_ptr<Block[]> blocks;
    uint32_t num_blocks;
    size_t capacity;
    size_t keys;
  };
  // The hash part `index` uses (parts are independent of one another).
  static uint64_t PartHash(uint64_t hash, size_t index);
  static const Block& BlockOf(const Part& part, uint64_t h) {
    return part.blocks[((h >> 32) * part.num_blocks) >> 32];
  }
  static bool PartContains(const Part& part, uint64_t h);
  static void PartAdd(Part& part, uint64_t h);
  void AddPart(size_t capacity);

  const size_t first_capacity_;
  std::vector<Part> parts_;
  size_t bytes_ = 0;
  size_t keys_ = 0;
};

}  // namespace sluice::state::internal
