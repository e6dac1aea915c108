#include "common/key_groups.h"

#include <vector>

#include "gtest/gtest.h"

namespace sluice {
namespace {

TEST(KeyGroupsTest, HashIsStable) {
  // Fixed values: a change here would move keys between subtasks and break restored state.
  EXPECT_EQ(HashInt64(42), HashInt64(42));
  EXPECT_EQ(HashBytes("user-17"), HashBytes(std::string("user-17")));
  EXPECT_NE(HashBytes("ab"), HashBytes("ba"));
  EXPECT_NE(HashBytes(""), HashBytes(std::string(1, '\0')));
}

TEST(KeyGroupsTest, RangesPartitionAllKeyGroups) {
  for (int max_p : {1, 7, 128, 1000}) {
    for (int p = 1; p <= std::min(max_p, 9); ++p) {
      int next = 0;
      for (int i = 0; i < p; ++i) {
        KeyGroupRange r = KeyGroupRangeForSubtask(max_p, p, i);
        EXPECT_EQ(r.first, next);
        EXPECT_GE(r.size(), 1);
        for (int kg = r.first; kg <= r.last; ++kg) {
          EXPECT_EQ(SubtaskForKeyGroup(kg, max_p, p), i) << max_p << " " << p << " " << kg;
        }
        next = r.last + 1;
      }
      EXPECT_EQ(next, max_p);
    }
  }
}

TEST(KeyGroupsTest, FastPathsGiveTheDefinedGroupsAndSubtasks) {
  // Powers of two take a mask: the key group must stay Mix64(hash) % max_parallelism, or
  // restored state would land in other key groups.
  for (int max_p : {1, 2, 7, 128, 1000, 1024, 32768}) {
    for (uint64_t h : {uint64_t{0}, uint64_t{1}, uint64_t{0x9e3779b97f4a7c15}, ~uint64_t{0},
                       HashInt64(42), HashBytes("user-17")}) {
      EXPECT_EQ(KeyGroupForHash(h, max_p), static_cast<int>(Mix64(h) % max_p)) << max_p << " " << h;
    }
  }
  EXPECT_EQ(KeyGroupForHash(HashInt64(42), 128), 75);  // fixed: a change moves keys
  for (int max_p : {1, 2, 7, 128, 1000, 1024, 32768}) {
    for (int p : {1, 2, 3, 7, 128}) {
      if (p > max_p) continue;
      for (int kg = 0; kg < max_p; ++kg) {
        ASSERT_EQ(SubtaskForKeyGroup(kg, max_p, p), static_cast<int>(int64_t{kg} * p / max_p))
            << kg << " " << max_p << " " << p;
      }
    }
  }
}

TEST(KeyGroupsTest, KeysSpreadEvenly) {
  std::vector<int> counts(4);
  for (int64_t k = 0; k < 40000; ++k) {
    int kg = KeyGroupForHash(HashInt64(k), 128);
    counts[SubtaskForKeyGroup(kg, 128, 4)]++;
  }
  for (int c : counts) {
    EXPECT_GT(c, 9000);
    EXPECT_LT(c, 11000);
  }
}

}  // namespace
}  // namespace sluice
