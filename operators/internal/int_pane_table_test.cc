// IntPaneTable against a hash map model: inserts, finds, erases (backward shift) and growth,
// with the keys a probe sequence meets at the table's end and the int64 limits.

#include "operators/internal/int_pane_table.h"

#include <cstdint>
#include <limits>
#include <map>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "gtest/gtest.h"

namespace sluice::ops::internal {
namespace {

TEST(IntPaneTableTest, MatchesAMapAcrossInsertsErasesAndGrowth) {
  constexpr int64_t kMin = std::numeric_limits<int64_t>::min();
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  for (const bool half_load : {false, true}) {
  SCOPED_TRACE(half_load);
  IntPaneTable table;
  table.SetWords(3);
  if (half_load) table.SetHalfLoad();
  absl::flat_hash_map<int64_t, std::vector<int64_t>> model;
  std::vector<int64_t> keys = {0, -1, 1, kMin, kMax, kMin + 1, kMax - 1};
  for (int64_t k = 0; k < 300; ++k) keys.push_back(k * 977 - 5000);
  uint64_t x = 3;
  for (int step = 0; step < 40000; ++step) {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    // Few keys at first, so that the table grows and shrinks through erases.
    const int64_t key = keys[(x >> 33) % (step < 20000 ? 40 : keys.size())];
    const int op = static_cast<int>((x >> 20) % 3);
    if (step == 30000) table.Reserve(500);  // keys stay where Find looks for them
    if (op == 0) {
      bool inserted;
      int64_t* words = table.FindOrInsert(key, &inserted);
      auto [it, is_new] = model.try_emplace(key, std::vector<int64_t>(3, 0));
      ASSERT_EQ(inserted, is_new) << key;
      for (int w = 0; w < 3; ++w) ASSERT_EQ(words[w], it->second[w]) << key;
      for (int w = 0; w < 3; ++w) it->second[w] = words[w] = static_cast<int64_t>(x >> (w * 8)) ^ key;
    } else if (op == 1) {
      ASSERT_EQ(table.Erase(key), model.erase(key) == 1) << key;
    } else {
      const int64_t* words = table.Find(key);
      auto it = model.find(key);
      ASSERT_EQ(words != nullptr, it != model.end()) << key;
      if (words != nullptr) {
        for (int w = 0; w < 3; ++w) ASSERT_EQ(words[w], it->second[w]) << key;
      }
    }
    ASSERT_EQ(table.size(), model.size());
  }
  std::map<int64_t, std::vector<int64_t>> seen;
  table.ForEach([&](int64_t key, const int64_t* words) { seen[key].assign(words, words + 3); });
  ASSERT_EQ(seen.size(), model.size());
  for (const auto& [key, words] : seen) EXPECT_EQ(words, model.at(key)) << key;
  EXPECT_GT(model.size(), 100u);
  }
}

// Reserve(n) makes one array big enough for n keys at the table's load (3/4, or 1/2 with
// SetHalfLoad()), and inserting them grows it no more.
TEST(IntPaneTableTest, ReserveMakesRoomForItsKeysAtTheTablesLoad) {
  for (const bool half_load : {false, true}) {
    SCOPED_TRACE(half_load);
    IntPaneTable table;
    table.SetWords(1);
    if (half_load) table.SetHalfLoad();
    table.Reserve(78);
    const size_t capacity = half_load ? 256 : 128;  // 79 keys above 64 (half of 128) and 3/4 of 64
    EXPECT_EQ(table.CapacityForTest(), capacity);
    for (int64_t k = 0; k < 78; ++k) {
      bool inserted;
      table.FindOrInsert(k * 7919, &inserted)[0] = k;
      ASSERT_TRUE(inserted);
    }
    EXPECT_EQ(table.CapacityForTest(), capacity);
    EXPECT_EQ(table.BytesPerKey(), half_load ? 64u : 43u);  // 16-byte slots at 1/4 or 3/8 load
    for (int64_t k = 0; k < 78; ++k) EXPECT_EQ(table.Find(k * 7919)[0], k);
    table.Reserve(10);  // never shrinks
    EXPECT_EQ(table.CapacityForTest(), capacity);
  }
}

}  // namespace
}  // namespace sluice::ops::internal
