#include "state/internal/huge_pages.h"

#include <cstdint>
#include <cstring>
#include <vector>

#include "gtest/gtest.h"

namespace sluice::state::internal {
namespace {

bool HugeAligned(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % kHugePageBytes == 0;
}

TEST(HugePagesTest, MappedRegionsAreAlignedZeroedAndWritable) {
  for (size_t bytes : {size_t{1}, kHugePageBytes, kHugePageBytes + 1, 3 * kHugePageBytes}) {
    void* p = MapHuge(bytes);
    ASSERT_NE(p, nullptr) << bytes;
    EXPECT_TRUE(HugeAligned(p)) << bytes;
    const std::vector<char> zeros(bytes, 0);
    EXPECT_EQ(std::memcmp(p, zeros.data(), bytes), 0) << bytes;
    std::memset(p, 0x5a, bytes);
    EXPECT_EQ(static_cast<unsigned char*>(p)[bytes - 1], 0x5a) << bytes;
    UnmapHuge(p, bytes);
  }
}

TEST(HugePagesTest, RegionOwnsItsMappingAndMoves) {
  HugeRegion a(kHugePageBytes);
  ASSERT_NE(a.data(), nullptr);
  EXPECT_TRUE(HugeAligned(a.data()));
  a.data()[7] = 'x';
  char* const p = a.data();
  HugeRegion b(std::move(a));
  EXPECT_EQ(a.data(), nullptr);  // NOLINT(bugprone-use-after-move): checks the move
  EXPECT_EQ(b.data(), p);
  EXPECT_EQ(b.data()[7], 'x');
}

TEST(HugePagesTest, VectorsFromTwoMegabytesOnAreMappedSmallerOnesAreNot) {
  std::vector<uint64_t, HugePageAllocator<uint64_t>> v;
  v.resize(1000, 3);  // 8000 bytes: from the heap (a small cache's vectors stay small)
  EXPECT_FALSE(HugeAligned(v.data()));
  v.resize(kHugePageBytes / sizeof(uint64_t) + 5, 4);  // grows into a mapped region
  EXPECT_TRUE(HugeAligned(v.data()));
  EXPECT_EQ(v[999], 3u);
  EXPECT_EQ(v[1000], 4u);
  EXPECT_EQ(v.back(), 4u);
  v.clear();
  v.shrink_to_fit();  // back to nothing: the mapping is released
  EXPECT_EQ(v.capacity(), 0u);
}

}  // namespace
}  // namespace sluice::state::internal
