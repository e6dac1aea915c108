#include "state/internal/written_key_filter.h"

#include <algorithm>

#include "common/key_groups.h"

namespace sluice::state::internal {
namespace {

// Odd multipliers that spread the low half of a hash over the 32 bits of each word.
constexpr uint32_t kSalts[8] = {0x47b6137bU, 0x44974d91U, 0x8824ad5bU, 0xa2b7289dU,
                                0x705495c7U, 0x2df1424bU, 0x9efc4947U, 0x5c6bfb31U};

}  // namespace

WrittenKeyFilter::WrittenKeyFilter(size_t first_capacity)
    : first_capacity_(std::max<size_t>(first_capacity, 64)) {}

uint64_t WrittenKeyFilter::PartHash(uint64_t hash, size_t index) {
  return index == 0 ? hash : Mix64(hash + index * 0x9e3779b97f4a7c15ULL);
}

bool WrittenKeyFilter::PartContains(const Part& part, uint64_t h) {
  const Block& b = BlockOf(part, h);
  const uint32_t lo = static_cast<uint32_t>(h);
  bool all = true;
  for (int i = 0; i < 8; ++i) all &= ((b.words[i] >> ((lo * kSalts[i]) >> 27)) & 1) != 0;
  return all;
}

void WrittenKeyFilter::PartAdd(Part& part, uint64_t h) {
  Block& b = const_cast<Block&>(BlockOf(part, h));
  const uint32_t lo = static_cast<uint32_t>(h);
  for (int i = 0; i < 8; ++i) b.words[i] |= uint32_t{1} << ((lo * kSalts[i]) >> 27);
}

void WrittenKeyFilter::AddPart(size_t capacity) {
  const size_t num_blocks = std::max<size_t>(1, (capacity * kBitsPerKey + 255) / 256);
  Part part;
  part.blocks.reset(new Block[num_blocks]());
  part.num_blocks = static_cast<uint32_t>(num_blocks);
  part.capacity = capacity;
  part.keys = 0;
  parts_.push_back(std::move(part));
  bytes_ += num_blocks * sizeof(Block);
}

bool WrittenKeyFilter::MayContain(uint64_t hash) const {
  for (size_t i = 0; i < parts_.size(); ++i) {
    if (PartContains(parts_[i], PartHash(hash, i))) return true;
  }
  return false;
}

void WrittenKeyFilter::Prefetch(uint64_t hash) const {
  for (size_t i = 0; i < parts_.size(); ++i) {
    __builtin_prefetch(&BlockOf(parts_[i], PartHash(hash, i)));
  }
}

void WrittenKeyFilter::PrefetchNewest(uint64_t hash) const {
  if (!parts_.empty()) {
    __builtin_prefetch(&BlockOf(parts_.back(), PartHash(hash, parts_.size() - 1)));
  }
}

void WrittenKeyFilter::Add(uint64_t hash) {
  if (!MayContain(hash)) AddAbsent(hash);
}

void WrittenKeyFilter::AddAbsent(uint64_t hash) {
  if (parts_.empty() || parts_.back().keys >= parts_.back().capacity) {
    AddPart(parts_.empty() ? first_capacity_ : parts_.back().capacity * 2);
  }
  Part& part = parts_.back();
  PartAdd(part, PartHash(hash, parts_.size() - 1));
  ++part.keys;
  ++keys_;
}

}  // namespace sluice::state::internal
