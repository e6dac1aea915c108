#include "state/internal/written_key_filter.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace sluice::state::internal {
namespace {

uint64_t H(const std::string& key) { return WrittenKeyFilter::Hash(key); }

TEST(WrittenKeyFilterTest, EmptyContainsNothing) {
  WrittenKeyFilter filter(1000);
  EXPECT_FALSE(filter.MayContain(H("")));
  EXPECT_FALSE(filter.MayContain(H("a")));
  EXPECT_EQ(filter.bytes(), 0u);
  EXPECT_EQ(filter.parts(), 0u);
}

TEST(WrittenKeyFilterTest, EveryAddedKeyIsContainedAcrossGrowth) {
  WrittenKeyFilter filter(100);
  constexpr int kKeys = 100000;
  for (int i = 0; i < kKeys; ++i) {
    filter.Add(H(absl::StrCat("key-", i)));
    // Each key at once, and an early one still after every growth step.
    ASSERT_TRUE(filter.MayContain(H(absl::StrCat("key-", i)))) << i;
    ASSERT_TRUE(filter.MayContain(H("key-0"))) << i;
  }
  for (int i = 0; i < kKeys; ++i) {
    ASSERT_TRUE(filter.MayContain(H(absl::StrCat("key-", i)))) << i;
  }
  // Parts of 100, 200, 400, ... keys: 100 * (2^n - 1) >= counted keys.
  EXPECT_GE(filter.parts(), 10u);
  EXPECT_LE(filter.parts(), 11u);
  // Keys falsely seen as present are not counted (a few percent over 10 parts).
  EXPECT_LE(filter.keys(), static_cast<size_t>(kKeys));
  EXPECT_GE(filter.keys(), static_cast<size_t>(kKeys) * 85 / 100);
  // 10 bits per key of capacity: at most twice the keys' worth of bits.
  EXPECT_LE(filter.bytes(), kKeys * WrittenKeyFilter::kBitsPerKey * 2 / 8 + 64);
}

// AddAbsent() (no probe first) holds what Add() holds, across the growth of parts, and counts
// each key as Add() does.
TEST(WrittenKeyFilterTest, AddAbsentHoldsEveryKeyAcrossGrowth) {
  WrittenKeyFilter added(64);
  WrittenKeyFilter absent(64);
  for (int i = 0; i < 5000; ++i) {
    const uint64_t h = H(absl::StrCat("key-", i));
    added.Add(h);
    if (!absent.MayContain(h)) absent.AddAbsent(h);
    ASSERT_TRUE(absent.MayContain(h)) << i;
  }
  for (int i = 0; i < 5000; ++i) ASSERT_TRUE(absent.MayContain(H(absl::StrCat("key-", i)))) << i;
  EXPECT_EQ(absent.keys(), added.keys());
  EXPECT_EQ(absent.parts(), added.parts());
  EXPECT_EQ(absent.bytes(), added.bytes());
}

TEST(WrittenKeyFilterTest, AddingAKeyAgainCountsNothing) {
  WrittenKeyFilter filter(64);
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < 1000; ++i) filter.Add(H(absl::StrCat("k", i)));
  }
  const size_t keys = filter.keys();
  const size_t bytes = filter.bytes();
  EXPECT_LE(keys, 1000u);
  for (int i = 0; i < 1000; ++i) filter.Add(H(absl::StrCat("k", i)));
  EXPECT_EQ(filter.keys(), keys);
  EXPECT_EQ(filter.bytes(), bytes);
}

// The share of keys never added that MayContain() accepts (over 200K probes).
double FalsePositiveShare(const WrittenKeyFilter& filter) {
  int positives = 0;
  constexpr int kProbes = 200000;
  for (int i = 0; i < kProbes; ++i) positives += filter.MayContain(H(absl::StrCat("out-", i)));
  return static_cast<double>(positives) / kProbes;
}

TEST(WrittenKeyFilterTest, FalsePositivesAreRare) {
  // The hash is deterministic, so these shares are the same in every run.
  // One full part: ~1.25% (10 bits per key in blocks of 256 bits).
  WrittenKeyFilter one(100000);
  for (int i = 0; i < 100000; ++i) one.Add(H(absl::StrCat("in-", i)));
  ASSERT_EQ(one.parts(), 1u);
  const double share = FalsePositiveShare(one);
  EXPECT_GT(share, 0.005);
  EXPECT_LT(share, 0.016);
  // Growth: about the sum of the parts' shares (5 full parts and one half full here).
  WrittenKeyFilter grown(1 << 12);
  for (int i = 0; i < 200000; ++i) grown.Add(H(absl::StrCat("in-", i)));
  ASSERT_EQ(grown.parts(), 6u);
  EXPECT_LT(FalsePositiveShare(grown), 6 * 0.016);
}

}  // namespace
}  // namespace sluice::state::internal
