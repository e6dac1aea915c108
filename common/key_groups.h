#pragma once

#include <cstdint>
#include <cstring>

#include "absl/strings/string_view.h"

namespace sluice {

// Stable hashing and key-group assignment, as in Flink's KeyGroupRangeAssignment.
//
// Hashes here must be identical in every process and every build (they decide which subtask
// owns a key and, later, where state lives), so they are our own, not absl::Hash (which is
// seeded per process).

// The 64-bit finalizer of MurmurHash3: a bijective mix with good avalanche.
inline uint64_t Mix64(uint64_t k) {
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdULL;
  k ^= k >> 33;
  k *= 0xc4ceb9fe1a85ec53ULL;
  k ^= k >> 33;
  return k;
}

inline uint64_t HashCombine(uint64_t seed, uint64_t h) {
  return Mix64(seed ^ (h + 0x9e3779b97f4a7c15ULL + (seed << 6) + (seed >> 2)));
}

inline uint64_t HashInt64(int64_t v) { return Mix64(static_cast<uint64_t>(v) ^ 0x5bd1e995ULL); }

inline uint64_t HashBytes(absl::string_view s) {
  uint64_t h = 0xcbf29ce484222325ULL ^ s.size();
  const char* p = s.data();
  size_t n = s.size();
  while (n >= 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    h = HashCombine(h, w);
    p += 8;
    n -= 8;
  }
  uint64_t tail = 0;
  std::memcpy(&tail, p, n);
  return HashCombine(h, tail);
}

// Default and upper bound of a job's max parallelism (the number of key groups).
inline constexpr int kDefaultMaxParallelism = 128;
inline constexpr int kUpperMaxParallelism = 32768;

// Key group of a key hash. REQUIRES: max_parallelism > 0.
// A power of two (the default 128) takes a mask instead of a 64-bit division (same result).
inline int KeyGroupForHash(uint64_t key_hash, int max_parallelism) {
  const uint64_t m = static_cast<uint64_t>(max_parallelism);
  const uint64_t h = Mix64(key_hash);
  return static_cast<int>((m & (m - 1)) == 0 ? h & (m - 1) : h % m);
}

// Subtask index that owns `key_group` when the operator runs with `parallelism` (a shift for
// a power-of-two max_parallelism; REQUIRES: key_group >= 0).
inline int SubtaskForKeyGroup(int key_group, int max_parallelism, int parallelism) {
  const int64_t scaled = static_cast<int64_t>(key_group) * parallelism;
  if ((max_parallelism & (max_parallelism - 1)) == 0) {
    return static_cast<int>(scaled >> __builtin_ctz(static_cast<unsigned>(max_parallelism)));
  }
  return static_cast<int>(scaled / max_parallelism);
}

// The contiguous key-group range [first, last] owned by `subtask` of `parallelism`.
struct KeyGroupRange {
  int first;
  int last;
  bool Contains(int kg) const { return kg >= first && kg <= last; }
  int size() const { return last - first + 1; }
};
inline KeyGroupRange KeyGroupRangeForSubtask(int max_parallelism, int parallelism, int subtask) {
  int first = static_cast<int>((static_cast<int64_t>(subtask) * max_parallelism + parallelism - 1) /
                               parallelism);
  int last = static_cast<int>(((static_cast<int64_t>(subtask) + 1) * max_parallelism - 1) /
                              parallelism);
  return {first, last};
}

}  // namespace sluice
