#include "state/internal/write_back_cache.h"

#include <algorithm>
#include <cstring>
#include <functional>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sluice::state::internal {
namespace {

using Ref = WriteBackCache::Ref;

// A store the cache writes into: key -> value ("" for a delete recorded as "<deleted>").
struct FakeStore {
  std::map<std::string, std::string> data;
  std::vector<size_t> batch_sizes;
  bool fail = false;
  absl::Status Write(const WriteBackCache& cache, absl::Span<const Ref> refs) {
    if (fail) return absl::UnavailableError("store down");
    batch_sizes.push_back(refs.size());
    for (size_t i = 1; i < refs.size(); ++i) {
      EXPECT_LT(cache.key(refs[i - 1]), cache.key(refs[i])) << "a batch not in key order";
    }
    for (Ref r : refs) {
      EXPECT_TRUE(cache.dirty(r) || cache.pending(r));
      data[std::string(cache.key(r))] =
          cache.deleted(r) ? "<deleted>" : std::string(cache.value(r));
    }
    return absl::OkStatus();
  }
};

std::string Key(int i) { return absl::StrCat("key-", i); }

// A snapshot's delta for Snapshot(): records the entries add() is given (each dirty then) and,
// at finish(), makes them `entries` (key -> value, "<deleted>" for a delete), or fails while
// `fails`.
class FakeDelta {
 public:
  explicit FakeDelta(const WriteBackCache& cache) : cache_(cache) {}
  WriteBackCache::DeltaFns fns() { return {add_, finish_}; }

  std::map<std::string, std::string> entries;
  bool fails = false;
  int adds_of_last = 0;  // add() calls of the last snapshot that called finish()

 private:
  const WriteBackCache& cache_;
  std::map<std::string, std::string> adding_;
  int adds_ = 0;
  std::function<void(Ref)> add_ = [this](Ref r) {
    EXPECT_TRUE(cache_.dirty(r));
    adding_[std::string(cache_.key(r))] =
        cache_.deleted(r) ? "<deleted>" : std::string(cache_.value(r));
    ++adds_;
  };
  std::function<absl::Status()> finish_ = [this]() -> absl::Status {
    adds_of_last = adds_;
    adds_ = 0;
    if (fails) {
      adding_.clear();
      return absl::UnavailableError("disk full");
    }
    entries = std::move(adding_);
    adding_.clear();
    return absl::OkStatus();
  };
};

// Sets `key` to `value` as a write does (inserting it if absent); marks it dirty if `dirty`.
Ref Put(WriteBackCache& cache, const std::string& key, absl::string_view value, bool dirty) {
  Ref r = cache.FindOrInsert(key);
  cache.SetValue(r, value);
  cache.set_deleted(r, false);
  if (dirty) cache.MarkDirty(r);
  return r;
}

TEST(WriteBackCacheTest, HitsMissesAndValues) {
  WriteBackCache cache(1 << 20);
  EXPECT_EQ(cache.Find("a"), WriteBackCache::kNone);
  Ref a = cache.Insert("a");
  EXPECT_TRUE(cache.deleted(a));
  EXPECT_TRUE(cache.in_db(a));
  EXPECT_FALSE(cache.dirty(a));
  cache.SetValue(a, "short");
  cache.set_deleted(a, false);
  EXPECT_EQ(cache.Find("a"), a);
  EXPECT_EQ(cache.Find("b"), WriteBackCache::kNone);
  EXPECT_EQ(cache.Peek("a"), a);  // not counted
  EXPECT_EQ(cache.hits(), 1u);
  EXPECT_EQ(cache.misses(), 2u);
  EXPECT_EQ(cache.key(a), "a");
  EXPECT_EQ(cache.value(a), "short");
  // Grows onto the heap and back inline; the key stays.
  const std::string big(100, 'x');
  cache.SetValue(a, big);
  EXPECT_EQ(cache.value(a), big);
  cache.AppendValue(a, "yz");
  EXPECT_EQ(cache.value(a), big + "yz");
  cache.SetValue(a, "v");
  EXPECT_EQ(cache.key(a), "a");
  EXPECT_EQ(cache.value(a), "v");
  // A long key.
  const std::string long_key(40, 'k');
  Ref l = cache.FindOrInsert(long_key);
  cache.SetValue(l, "w");
  EXPECT_EQ(cache.Peek(long_key), l);
  EXPECT_EQ(cache.key(l), long_key);
  EXPECT_EQ(cache.FindOrInsert(long_key), l);
  EXPECT_EQ(cache.size(), 2u);
}

TEST(WriteBackCacheTest, ByteAccounting) {
  constexpr size_t kOverhead = WriteBackCache::kEntryOverhead;
  WriteBackCache cache(1 << 20);
  Ref a = cache.Insert("a");
  EXPECT_EQ(cache.bytes(), kOverhead + 8);  // the smallest block
  cache.SetValue(a, std::string(100, 'x'));  // 101 bytes: a block of exactly 101
  EXPECT_EQ(cache.bytes(), kOverhead + 101);
  cache.set_expiry(a, 5);  // 8 bytes more for the expiry
  EXPECT_EQ(cache.bytes(), kOverhead + 109);
  cache.SetValue(a, "small");
  EXPECT_EQ(cache.bytes(), kOverhead + 14);
  cache.SetValue(a, std::string(300, 'y'));  // beyond 256 bytes: the class of 1.25x steps
  EXPECT_EQ(cache.bytes(), kOverhead + BlockArena::ClassSize(309));
  EXPECT_EQ(BlockArena::ClassSize(309), 320u);
  Ref b = cache.Insert(std::string(30, 'b'));
  EXPECT_EQ(cache.bytes(), 2 * kOverhead + 320 + 30);
  cache.Erase(b);
  cache.Erase(a);
  EXPECT_EQ(cache.bytes(), 0u);
  EXPECT_EQ(cache.size(), 0u);
}

// A new entry inserted with room for its value keeps its block when the value arrives (no
// second block and copy of the key), counts the room in bytes(), and behaves as one without
// room afterwards: a value beyond the room moves it to a block of its size class.
TEST(WriteBackCacheTest, InsertWithValueRoomKeepsTheBlockForTheFirstValue) {
  constexpr size_t kOverhead = WriteBackCache::kEntryOverhead;
  WriteBackCache cache(1 << 20);
  const std::string key = "key-007";
  Ref r = cache.Insert(key, WriteBackCache::HashKey(key), /*value_room=*/25);
  EXPECT_TRUE(cache.deleted(r));
  EXPECT_EQ(cache.value(r), "");
  EXPECT_EQ(cache.bytes(), kOverhead + 32);  // the key's 7 bytes and room for 25
  const uint64_t pos = cache.BlockPositionForTest(r);
  const std::string value(25, 'v');
  cache.SetValue(r, value);
  EXPECT_EQ(cache.BlockPositionForTest(r), pos);
  EXPECT_EQ(cache.key(r), key);
  EXPECT_EQ(cache.value(r), value);
  EXPECT_EQ(cache.bytes(), kOverhead + 32);
  cache.SetValue(r, "short");  // smaller than the block: a block of exactly 12 bytes
  EXPECT_EQ(cache.value(r), "short");
  EXPECT_EQ(cache.bytes(), kOverhead + 12);
  Ref s = cache.Insert("s", WriteBackCache::HashKey("s"), /*value_room=*/10);
  EXPECT_EQ(cache.bytes(), 2 * kOverhead + 12 + 11);
  const uint64_t s_pos = cache.BlockPositionForTest(s);
  cache.AppendValue(s, "abc");  // into the room, which keeps the rest
  cache.AppendValue(s, "defg");
  EXPECT_EQ(cache.BlockPositionForTest(s), s_pos);
  EXPECT_EQ(cache.value(s), "abcdefg");
  EXPECT_EQ(cache.bytes(), 2 * kOverhead + 12 + 11);
  cache.AppendValue(s, "hijk");  // beyond the room: a block of exactly 12
  EXPECT_EQ(cache.value(s), "abcdefghijk");
  EXPECT_EQ(cache.key(s), "s");
  EXPECT_EQ(cache.bytes(), 2 * kOverhead + 12 + 12);
  cache.set_expiry(s, 7);
  EXPECT_EQ(cache.expiry(s), 7);
  EXPECT_EQ(cache.value(s), "abcdefghijk");
  // Room beyond kMaxRoom is not reserved.
  Ref t = cache.Insert("t", WriteBackCache::HashKey("t"), /*value_room=*/1000);
  EXPECT_EQ(cache.bytes(), 3 * kOverhead + 12 + 20 + 8);
  cache.Erase(t);
  cache.Erase(s);
  cache.Erase(r);
  EXPECT_EQ(cache.bytes(), 0u);
  EXPECT_EQ(cache.size(), 0u);
}

TEST(BlockArenaTest, ClassesGrowGeometricallyAndHoldTheirSize) {
  size_t prev = 0;
  for (size_t n = 0; n < (size_t{1} << 22); n = n < 1024 ? n + 1 : n * 9 / 8) {
    const size_t c = BlockArena::ClassSize(n);
    EXPECT_GE(c, std::max(n, BlockArena::kMinBlock)) << n;
    EXPECT_GE(c, prev) << n;  // monotonic
    if (n >= BlockArena::kMinBlock && n <= 256) {
      EXPECT_EQ(c, n);
    }
    if (n > 256) {
      EXPECT_LE(c, n + n / 4 + 8) << n;  // at most ~25% unused
    }
    EXPECT_EQ(BlockArena::ClassSize(c), c) << n;  // a class holds its own size
    prev = c;
  }
}

// Blocks of every kind (small, geometric, own buffer; chunk ends) keep their bytes through
// allocations and frees in random order, and freed blocks are reused.
TEST(BlockArenaTest, BeyondItsChunksTheArenaAllocatesBlocksOneByOne) {
  BlockArena arena(/*max_chunks=*/1);
  std::vector<std::pair<uint64_t, std::string>> blocks;
  for (int i = 0; i < 3000; ++i) {  // 3000 x 120 bytes: more than one 256 KiB chunk
    const std::string bytes(120, static_cast<char>('a' + i % 26));
    const uint64_t pos = arena.Allocate(bytes.size());
    std::memcpy(arena.At(pos), bytes.data(), bytes.size());
    blocks.emplace_back(pos, bytes);
  }
  const size_t c = BlockArena::ClassSize(120);
  EXPECT_EQ(arena.reserved_bytes(), BlockArena::kChunkBytes + (3000 - BlockArena::kChunkBytes / c) * c);
  for (const auto& [pos, bytes] : blocks) {
    EXPECT_EQ(std::string(arena.At(pos), bytes.size()), bytes);
  }
  for (const auto& [pos, bytes] : blocks) arena.Free(pos, bytes.size());
  EXPECT_EQ(arena.reserved_bytes(), BlockArena::kChunkBytes);  // the chunk stays; the rest went
}

TEST(BlockArenaTest, BlocksKeepTheirBytesAndAreReused) {
  BlockArena arena;
  struct Live {
    uint64_t pos;
    size_t n;
    char fill;
  };
  std::vector<Live> live;
  std::mt19937 rng(11);
  const size_t sizes[] = {0, 1, 7, 8, 9, 32, 33, 255, 256, 257, 1000, 5000,
                          BlockArena::kMaxChunkBlock, BlockArena::kMaxChunkBlock + 1, 100000};
  for (int step = 0; step < 20000; ++step) {
    if (live.empty() || rng() % 3 != 0) {
      const size_t n = sizes[rng() % (sizeof(sizes) / sizeof(sizes[0]))];
      const char fill = static_cast<char>(rng());
      const uint64_t pos = arena.Allocate(n);
      std::memset(arena.At(pos), fill, n);
      live.push_back({pos, n, fill});
    } else {
      const size_t i = rng() % live.size();
      const Live& l = live[i];
      ASSERT_EQ(std::string(arena.At(l.pos), l.n), std::string(l.n, l.fill)) << step;
      arena.Free(l.pos, l.n);
      live[i] = live.back();
      live.pop_back();
    }
  }
  for (const Live& l : live) {
    ASSERT_EQ(std::string(arena.At(l.pos), l.n), std::string(l.n, l.fill));
  }
  // A freed block is the next one of its class.
  const uint64_t p = arena.Allocate(40);
  arena.Free(p, 40);
  EXPECT_EQ(arena.Allocate(40), p);
  arena.Free(arena.Allocate(3000), 3000);
  const size_t reserved = arena.reserved_bytes();
  for (int i = 0; i < 100; ++i) arena.Free(arena.Allocate(3000), 3000);
  EXPECT_EQ(arena.reserved_bytes(), reserved);
}

TEST(WriteBackCacheTest, FlushWritesEveryDirtyEntryOnceInBatches) {
  WriteBackCache cache(size_t{1} << 30);
  FakeStore store;
  auto write = [&](absl::Span<const Ref> refs) { return store.Write(cache, refs); };
  const int n = static_cast<int>(WriteBackCache::kFlushBatch) + 10;
  for (int i = 0; i < n; ++i) {
    Ref r = Put(cache, Key(i), absl::StrCat("v", i), /*dirty=*/true);
    cache.MarkDirty(r);  // twice: listed once
  }
  Ref gone = cache.Find(Key(0));
  cache.SetValue(gone, "");
  cache.set_deleted(gone, true);
  EXPECT_EQ(cache.dirty_count(), static_cast<size_t>(n));
  // A failing store leaves everything dirty.
  store.fail = true;
  EXPECT_FALSE(cache.FlushDirty(write).ok());
  EXPECT_EQ(cache.dirty_count(), static_cast<size_t>(n));
  store.fail = false;
  ASSERT_TRUE(cache.FlushDirty(write).ok());
  EXPECT_EQ(cache.dirty_count(), 0u);
  EXPECT_THAT(store.batch_sizes,
              ::testing::ElementsAre(WriteBackCache::kFlushBatch, static_cast<size_t>(10)));
  ASSERT_EQ(store.data.size(), static_cast<size_t>(n));
  EXPECT_EQ(store.data[Key(0)], "<deleted>");
  EXPECT_EQ(store.data[Key(n - 1)], absl::StrCat("v", n - 1));
  EXPECT_FALSE(cache.in_db(gone));  // its tombstone is written
  EXPECT_TRUE(cache.in_db(cache.Peek(Key(1))));
  store.batch_sizes.clear();
  ASSERT_TRUE(cache.FlushDirty(write).ok());  // nothing left
  EXPECT_TRUE(store.batch_sizes.empty());
  EXPECT_EQ(cache.size(), static_cast<size_t>(n));  // entries stay cached
}

// A snapshot writes the hot entries (changed since the last snapshot, which wrote them too)
// into its delta (they become pending), and the other changed ones and the pending ones left
// unchanged into the store (they become clean), so the store plus each delta hold every entry;
// FlushDirty() writes pending entries as dirty ones; a delete of a pending entry the store never
// had needs neither.
TEST(WriteBackCacheTest, SnapshotWritesHotEntriesToTheDeltaAndTheOthersToTheStore) {
  WriteBackCache cache(size_t{1} << 30);
  FakeStore store;
  auto write = [&](absl::Span<const Ref> refs) { return store.Write(cache, refs); };
  FakeDelta fake(cache);
  std::map<std::string, std::string>& delta = fake.entries;
  bool& delta_fails = fake.fails;
  using Map = std::map<std::string, std::string>;
  // New entries go to the store.
  for (int i = 0; i < 5; ++i) Put(cache, Key(i), absl::StrCat("v", i), /*dirty=*/true);
  ASSERT_TRUE(cache.Snapshot(write, fake.fns()).ok());
  EXPECT_EQ(store.data.size(), 5u);
  EXPECT_TRUE(delta.empty());
  EXPECT_EQ(cache.dirty_count() + cache.pending_count(), 0u);

  // Changed again right after: hot, into the delta.
  for (int i = 0; i < 4; ++i) Put(cache, Key(i), absl::StrCat("w", i), /*dirty=*/true);
  ASSERT_TRUE(cache.Snapshot(write, fake.fns()).ok());
  EXPECT_EQ(delta, (Map{{Key(0), "w0"}, {Key(1), "w1"}, {Key(2), "w2"}, {Key(3), "w3"}}));
  EXPECT_EQ(store.data[Key(0)], "v0");
  EXPECT_EQ(cache.pending_count(), 4u);
  EXPECT_TRUE(cache.pending(cache.Peek(Key(0))));

  // key-0 changes again (hot), key-1 is deleted (the store has it: a tombstone, hot), key-2
  // and key-3 stay unchanged (pending: to the store), key-4 changes after a quiet interval
  // (to the store), key-5 is new (to the store).
  Put(cache, Key(0), "x0", /*dirty=*/true);
  Ref one = cache.Peek(Key(1));
  cache.SetValue(one, "");
  cache.set_deleted(one, true);
  cache.MarkDirty(one);
  Put(cache, Key(4), "x4", /*dirty=*/true);
  Put(cache, Key(5), "x5", /*dirty=*/true);
  // A failing store: nothing changes.
  store.fail = true;
  EXPECT_FALSE(cache.Snapshot(write, fake.fns()).ok());
  EXPECT_EQ(cache.dirty_count(), 4u);
  EXPECT_EQ(cache.pending_count(), 2u);
  store.fail = false;
  // A failing delta: the store got its part; the hot ones stay dirty.
  delta_fails = true;
  EXPECT_FALSE(cache.Snapshot(write, fake.fns()).ok());
  EXPECT_EQ(store.data, (Map{{Key(0), "v0"}, {Key(1), "v1"}, {Key(2), "w2"}, {Key(3), "w3"},
                             {Key(4), "x4"}, {Key(5), "x5"}}));
  EXPECT_EQ(cache.dirty_count(), 2u);
  EXPECT_EQ(cache.pending_count(), 0u);
  delta_fails = false;
  ASSERT_TRUE(cache.Snapshot(write, fake.fns()).ok());
  EXPECT_EQ(delta, (Map{{Key(0), "x0"}, {Key(1), "<deleted>"}}));

  // A delete of a pending entry the store never had: clean, in no delta, not in the store.
  Ref six = Put(cache, Key(6), "v6", /*dirty=*/true);
  cache.set_in_db(six, false);
  ASSERT_TRUE(cache.Snapshot(write, fake.fns()).ok());  // key-0, key-1 to the store; key-6 too
  Put(cache, Key(6), "w6", /*dirty=*/true);
  ASSERT_TRUE(cache.Snapshot(write, fake.fns()).ok());  // key-6 hot: pending
  ASSERT_TRUE(cache.pending(six));
  store.data.erase(Key(6));
  cache.set_in_db(six, false);
  cache.SetValue(six, "");
  cache.set_deleted(six, true);
  cache.MarkClean(six);
  EXPECT_EQ(cache.pending_count(), 0u);
  ASSERT_TRUE(cache.Snapshot(write, fake.fns()).ok());
  EXPECT_EQ(store.data.count(Key(6)), 0u);

  // FlushDirty() writes a pending entry too (a scan of the store then sees everything).
  Put(cache, Key(5), "y5", /*dirty=*/true);
  ASSERT_TRUE(cache.Snapshot(write, fake.fns()).ok());  // key-5 (written last time? no): store
  Put(cache, Key(5), "z5", /*dirty=*/true);
  ASSERT_TRUE(cache.Snapshot(write, fake.fns()).ok());  // hot now: pending
  ASSERT_TRUE(cache.pending(cache.Peek(Key(5))));
  ASSERT_TRUE(cache.FlushDirty(write).ok());
  EXPECT_EQ(store.data[Key(5)], "z5");
  EXPECT_EQ(cache.pending_count(), 0u);
  EXPECT_FALSE(cache.pending(cache.Peek(Key(5))));
}

// With all_dirty_hot (the first snapshot of a store that holds no state yet) every dirty entry
// goes into the delta, none to the store, and counts as written by that snapshot: changed again
// it is hot at the next (plain) snapshot, unchanged it goes to the store there. A failed delta
// leaves them dirty and unmarked. A slot number listed twice (an entry freed, its slot reused by
// a new one) is met once.
TEST(WriteBackCacheTest, AllDirtyHotSnapshotPutsEveryChangedEntryIntoTheDelta) {
  WriteBackCache cache(size_t{1} << 30);
  FakeStore store;
  auto write = [&](absl::Span<const Ref> refs) { return store.Write(cache, refs); };
  FakeDelta fake(cache);
  using Map = std::map<std::string, std::string>;
  // key-9 listed, then freed; key-0, the next insertion, takes its slot (listed again).
  Ref nine = Put(cache, Key(9), "v9", /*dirty=*/true);
  cache.MarkClean(nine);
  cache.Erase(nine);
  for (int i = 0; i < 6; ++i) Put(cache, Key(i), absl::StrCat("v", i), /*dirty=*/true);
  fake.fails = true;
  EXPECT_FALSE(cache.Snapshot(write, fake.fns(), /*all_dirty_hot=*/true).ok());
  EXPECT_EQ(cache.dirty_count(), 6u);
  EXPECT_EQ(cache.pending_count(), 0u);
  fake.fails = false;
  ASSERT_TRUE(cache.Snapshot(write, fake.fns(), /*all_dirty_hot=*/true).ok());
  EXPECT_TRUE(store.data.empty());
  EXPECT_EQ(fake.adds_of_last, 6);
  EXPECT_EQ(fake.entries, (Map{{Key(0), "v0"}, {Key(1), "v1"}, {Key(2), "v2"}, {Key(3), "v3"},
                               {Key(4), "v4"}, {Key(5), "v5"}}));
  EXPECT_EQ(cache.dirty_count(), 0u);
  EXPECT_EQ(cache.pending_count(), 6u);

  // key-0..3 change again (hot: into the delta), key-4 and key-5 do not (to the store).
  for (int i = 0; i < 4; ++i) Put(cache, Key(i), absl::StrCat("w", i), /*dirty=*/true);
  ASSERT_TRUE(cache.Snapshot(write, fake.fns()).ok());
  EXPECT_EQ(fake.entries, (Map{{Key(0), "w0"}, {Key(1), "w1"}, {Key(2), "w2"}, {Key(3), "w3"}}));
  EXPECT_EQ(store.data, (Map{{Key(4), "v4"}, {Key(5), "v5"}}));
  EXPECT_EQ(cache.pending_count(), 4u);

  // The failed all_dirty_hot snapshot marked nothing: after a plain snapshot that failed the
  // same way, a new entry is not hot.
  WriteBackCache other(size_t{1} << 30);
  FakeStore other_store;
  auto other_write = [&](absl::Span<const Ref> refs) { return other_store.Write(other, refs); };
  FakeDelta other_fake(other);
  Put(other, Key(0), "a", /*dirty=*/true);
  other_fake.fails = true;
  EXPECT_FALSE(other.Snapshot(other_write, other_fake.fns(), /*all_dirty_hot=*/true).ok());
  other_fake.fails = false;
  ASSERT_TRUE(other.Snapshot(other_write, other_fake.fns()).ok());
  EXPECT_EQ(other_store.data, (Map{{Key(0), "a"}}));
  EXPECT_TRUE(other_fake.entries.empty());
}

// Hot means written by the last snapshot, not by any earlier one: an entry left unchanged for
// two intervals and then changed goes to the store (with one parity bit per entry, written three
// snapshots ago read as written by the last one). A snapshot that fails keeps the marks of the
// last one that succeeded, and ForgetSnapped() (a snapshot that wrote no delta) drops them.
TEST(WriteBackCacheTest, SnapshotTakesOnlyEntriesTheLastSnapshotWroteForHot) {
  WriteBackCache cache(size_t{1} << 30);
  FakeStore store;
  auto write = [&](absl::Span<const Ref> refs) { return store.Write(cache, refs); };
  FakeDelta fake(cache);
  auto keys = [&] {
    std::set<std::string> k;
    for (const auto& [key, value] : fake.entries) k.insert(key);
    return k;
  };
  Put(cache, Key(0), "v0", /*dirty=*/true);
  ASSERT_TRUE(cache.Snapshot(write, fake.fns()).ok());  // new: to the store
  for (int round = 0; round < 2; ++round) {
    Put(cache, Key(1), absl::StrCat("v1-", round), /*dirty=*/true);
    ASSERT_TRUE(cache.Snapshot(write, fake.fns()).ok());  // key-0 quiet
  }
  Put(cache, Key(0), "w0", /*dirty=*/true);
  Put(cache, Key(1), "w1", /*dirty=*/true);
  ASSERT_TRUE(cache.Snapshot(write, fake.fns()).ok());
  EXPECT_EQ(keys(), (std::set<std::string>{Key(1)}));
  EXPECT_EQ(store.data[Key(0)], "w0");
  EXPECT_FALSE(cache.pending(cache.Peek(Key(0))));
  EXPECT_TRUE(cache.pending(cache.Peek(Key(1))));

  // Both were written by that snapshot; a failed one in between changes nothing.
  Put(cache, Key(0), "x0", /*dirty=*/true);
  Put(cache, Key(1), "x1", /*dirty=*/true);
  fake.fails = true;
  EXPECT_FALSE(cache.Snapshot(write, fake.fns()).ok());
  fake.fails = false;
  ASSERT_TRUE(cache.Snapshot(write, fake.fns()).ok());
  EXPECT_EQ(keys(), (std::set<std::string>{Key(0), Key(1)}));

  // After ForgetSnapped() nothing is hot.
  cache.ForgetSnapped();
  ASSERT_TRUE(cache.FlushDirty(write).ok());
  Put(cache, Key(0), "y0", /*dirty=*/true);
  fake.entries.clear();
  ASSERT_TRUE(cache.Snapshot(write, fake.fns()).ok());
  EXPECT_TRUE(fake.entries.empty());
  EXPECT_EQ(store.data[Key(0)], "y0");
}

TEST(WriteBackCacheTest, EvictionWritesPendingEntriesBeforeDroppingThem) {
  WriteBackCache cache(size_t{1} << 30);
  FakeStore store;
  auto write = [&](absl::Span<const Ref> refs) { return store.Write(cache, refs); };
  FakeDelta fake(cache);
  for (int i = 0; i < 100; ++i) Put(cache, Key(i), absl::StrCat("v", i), /*dirty=*/true);
  ASSERT_TRUE(cache.Snapshot(write, fake.fns()).ok());  // new: to the store
  for (int i = 0; i < 100; ++i) Put(cache, Key(i), absl::StrCat("w", i), /*dirty=*/true);
  ASSERT_TRUE(cache.Snapshot(write, fake.fns()).ok());  // hot: pending
  ASSERT_EQ(cache.pending_count(), 100u);
  cache.Reserve(cache.budget());  // no room left: everything goes
  ASSERT_TRUE(cache.MakeRoom(write).ok());
  ASSERT_TRUE(cache.MakeRoom(write).ok());  // the first pass cleared the reference bits
  EXPECT_EQ(cache.size(), 0u);
  EXPECT_EQ(cache.pending_count(), 0u);
  ASSERT_EQ(store.data.size(), 100u);
  EXPECT_EQ(store.data[Key(99)], "w99");
}

// Hot entries stay in the dirty list across snapshots (the one pass keeps them listed). When
// eviction frees them, the list keeps their stale slot numbers, and new entries that reuse the
// slots are listed again: each is still written once per snapshot and counted once.
TEST(WriteBackCacheTest, SnapshotsAfterHotEntriesWereEvictedCountEachEntryOnce) {
  WriteBackCache cache(size_t{1} << 30);
  FakeStore store;
  auto write = [&](absl::Span<const Ref> refs) { return store.Write(cache, refs); };
  FakeDelta fake(cache);
  for (int round = 0; round < 2; ++round) {
    for (int i = 0; i < 100; ++i) Put(cache, Key(i), absl::StrCat("v", round), /*dirty=*/true);
    ASSERT_TRUE(cache.Snapshot(write, fake.fns()).ok());
  }
  ASSERT_EQ(cache.pending_count(), 100u);
  cache.Reserve(cache.budget());
  ASSERT_TRUE(cache.MakeRoom(write).ok());
  ASSERT_TRUE(cache.MakeRoom(write).ok());
  ASSERT_EQ(cache.size(), 0u);
  cache.Reserve(0);
  // New keys in the freed slots: new (to the store), then hot (into the delta), three times.
  for (int round = 0; round < 4; ++round) {
    for (int i = 0; i < 100; ++i) {
      Put(cache, Key(1000 + i), absl::StrCat("n", round), /*dirty=*/true);
    }
    ASSERT_TRUE(cache.Snapshot(write, fake.fns()).ok());
    EXPECT_EQ(cache.dirty_count(), 0u);
    if (round == 0) {
      EXPECT_EQ(cache.pending_count(), 0u);
      EXPECT_EQ(store.data[Key(1000)], "n0");
    } else {
      EXPECT_EQ(cache.pending_count(), 100u);
      EXPECT_EQ(fake.adds_of_last, 100);
      EXPECT_EQ(fake.entries.size(), 100u);
      EXPECT_EQ(fake.entries[Key(1099)], absl::StrCat("n", round));
    }
  }
  // Unchanged: the pending entries go to the store, once each.
  store.batch_sizes.clear();
  ASSERT_TRUE(cache.Snapshot(write, fake.fns()).ok());
  EXPECT_EQ(store.batch_sizes, std::vector<size_t>{100});
  EXPECT_EQ(cache.pending_count(), 0u);
  EXPECT_EQ(store.data[Key(1050)], "n3");
}

// A hot entry (pending: in the last delta) that turns clean (a delete of a key the store never
// received) and is unlisted by a compaction of the dirty list loses its hot mark there: after a
// quiet interval its next change goes to the store, not into the delta. (Before session 27's
// fix the mark stayed: the compaction unlisted it with kSnapped set and the next Snapshot()
// cleared marks only from the entries it wrote to the store.)
TEST(WriteBackCacheTest, AHotEntryCleanedAndCompactedAwayIsNotHotAfterAQuietInterval) {
  for (const bool by_free : {false, true}) {
    SCOPED_TRACE(by_free ? "compacted after a free" : "compacted by MarkDirty()");
    WriteBackCache cache(size_t{1} << 30);
    FakeStore store;
    auto write = [&](absl::Span<const Ref> refs) { return store.Write(cache, refs); };
    FakeDelta fake(cache);
    Put(cache, "hot", "a", /*dirty=*/true);
    ASSERT_TRUE(cache.Snapshot(write, fake.fns()).ok());  // new: to the store
    Put(cache, "hot", "b", /*dirty=*/true);
    ASSERT_TRUE(cache.Snapshot(write, fake.fns()).ok());  // hot: into the delta
    ASSERT_EQ(fake.entries, (std::map<std::string, std::string>{{"hot", "b"}}));
    Ref hot = cache.Peek("hot");
    ASSERT_TRUE(cache.pending(hot));
    cache.MarkClean(hot);
    if (by_free) {
      Ref gone = Put(cache, "gone", "x", /*dirty=*/false);
      cache.Erase(gone);
    } else {
      // Enough entries dirtied and cleaned again that MarkDirty() compacts the list.
      for (int i = 0; i < 5000; ++i) cache.MarkClean(Put(cache, Key(i), "c", /*dirty=*/true));
    }
    ASSERT_TRUE(cache.Snapshot(write, fake.fns()).ok());
    ASSERT_TRUE(cache.Snapshot(write, fake.fns()).ok());  // a quiet interval
    store.data.clear();
    fake.entries.clear();
    Put(cache, "hot", "c", /*dirty=*/true);
    ASSERT_TRUE(cache.Snapshot(write, fake.fns()).ok());
    EXPECT_EQ(store.data, (std::map<std::string, std::string>{{"hot", "c"}}));
    EXPECT_TRUE(fake.entries.empty());
    EXPECT_EQ(cache.pending_count(), 0u);
  }
}

TEST(WriteBackCacheTest, FlushWritesInOneKeyOrderAcrossBatches) {
  // Keys with bytes above 0x7f (RocksDB orders bytes unsigned), of varying length, dirtied in
  // a shuffled order, some deleted, some clean; more than two batches.
  WriteBackCache cache(size_t{1} << 30);
  const int n = 2 * static_cast<int>(WriteBackCache::kFlushBatch) + 5;
  std::vector<std::string> keys;
  for (int i = 0; i < n; ++i) {
    std::string k = absl::StrCat("k", i);
    if (i % 3 == 0) k[0] = static_cast<char>(0xe0 + i % 5);
    keys.push_back(k);
  }
  std::vector<int> order(n);
  for (int i = 0; i < n; ++i) order[i] = i;
  std::shuffle(order.begin(), order.end(), std::mt19937(7));
  std::vector<std::string> expected;  // the dirty keys, sorted as memcmp orders them
  for (int i : order) {
    const bool dirty = i % 11 != 0;
    Ref r = Put(cache, keys[i], absl::StrCat("v", i), dirty);
    if (i % 4 == 0) cache.set_deleted(r, true);
    if (dirty) expected.push_back(keys[i]);
  }
  std::sort(expected.begin(), expected.end(), [](const std::string& a, const std::string& b) {
    int c = std::memcmp(a.data(), b.data(), std::min(a.size(), b.size()));
    return c != 0 ? c < 0 : a.size() < b.size();
  });

  // The second batch fails: the first stays written (clean), the rest dirty.
  std::vector<std::string> written;
  int calls = 0;
  auto write = [&](absl::Span<const Ref> refs) -> absl::Status {
    if (++calls == 2) return absl::UnavailableError("store down");
    EXPECT_LE(refs.size(), WriteBackCache::kFlushBatch);
    for (Ref r : refs) written.emplace_back(cache.key(r));
    return absl::OkStatus();
  };
  EXPECT_FALSE(cache.FlushDirty(write).ok());
  ASSERT_EQ(written.size(), WriteBackCache::kFlushBatch);
  EXPECT_EQ(cache.dirty_count(), expected.size() - WriteBackCache::kFlushBatch);
  ASSERT_TRUE(cache.FlushDirty(write).ok());
  EXPECT_EQ(cache.dirty_count(), 0u);
  // One ascending sequence over both flushes, as the failed one would have written it.
  EXPECT_EQ(written, expected);
}

TEST(WriteBackCacheTest, FlushOrdersKeysSharingTheirFirstEightBytesByTheWholeKey) {
  // FlushDirty sorts by a key's first 8 bytes as a number and compares whole keys only on a
  // tie: keys that tie there (longer ones sharing 8 bytes, a key and itself plus zero bytes),
  // keys shorter than 8 bytes, the empty key, zero and 0xff bytes, must come out as a byte-wise
  // sort of the keys orders them.
  const std::string z(1, '\0');
  const std::string ff(1, static_cast<char>(0xff));
  std::vector<std::string> keys = {"",           z,          z + z,          "a",
                                   "a" + z,      "a" + z + z, "abcdefgh",    "abcdefgh" + z,
                                   "abcdefghi",  "abcdefghh", "abcdefgh" + ff, "abcdefg",
                                   "abcdefg" + z, "abcdefg" + ff, ff,          ff + ff,
                                   std::string(8, static_cast<char>(0xff)) + "x",
                                   std::string(8, static_cast<char>(0xff)),
                                   std::string(16, 'q') + "b", std::string(16, 'q') + "a",
                                   std::string(40, 'q'),  std::string(41, 'q')};
  std::mt19937 rng(11);
  // Random short keys over a 3-letter alphabet: many ties; more than kRadixSortMin keys, so the
  // radix sort and its runs of equal prefixes are what orders them.
  for (int i = 0; i < 3000; ++i) {
    std::string k(8 + rng() % 4, 'a');
    for (char& c : k) c = static_cast<char>("a\0\xff"[rng() % 3]);
    if (std::find(keys.begin(), keys.end(), k) == keys.end()) keys.push_back(k);
  }
  std::shuffle(keys.begin(), keys.end(), rng);
  WriteBackCache cache(size_t{1} << 30);
  for (const std::string& k : keys) Put(cache, k, "v", /*dirty=*/true);
  std::vector<std::string> expected = keys;
  std::sort(expected.begin(), expected.end(), [](const std::string& a, const std::string& b) {
    int c = std::memcmp(a.data(), b.data(), std::min(a.size(), b.size()));
    return c != 0 ? c < 0 : a.size() < b.size();
  });
  std::vector<std::string> written;
  ASSERT_TRUE(cache
                  .FlushDirty([&](absl::Span<const Ref> refs) {
                    for (Ref r : refs) written.emplace_back(cache.key(r));
                    return absl::OkStatus();
                  })
                  .ok());
  EXPECT_EQ(written, expected);
}

// Reserve() lowers the bytes MakeRoom() keeps to (clean entries dropped, dirty ones written
// first); Reserve(0) gives the whole budget back.
TEST(WriteBackCacheTest, ReservedBytesLowerTheBudgetUntilGivenBack) {
  const size_t per_entry = WriteBackCache::kEntryOverhead + 8;
  WriteBackCache cache(10 * per_entry);
  FakeStore store;
  auto write = [&](absl::Span<const Ref> refs) { return store.Write(cache, refs); };
  for (int i = 0; i < 10; ++i) Put(cache, Key(i), "v", /*dirty=*/i % 2 == 0);
  ASSERT_TRUE(cache.MakeRoom(write).ok());
  EXPECT_EQ(cache.size(), 10u);
  cache.Reserve(6 * per_entry);
  ASSERT_TRUE(cache.MakeRoom(write).ok());
  EXPECT_LE(cache.bytes(), 4 * per_entry);
  EXPECT_EQ(cache.budget(), 10 * per_entry);
  // Every key is still in the cache or was written to the store.
  for (int i = 0; i < 10; ++i) {
    EXPECT_TRUE(cache.Peek(Key(i)) != WriteBackCache::kNone || i % 2 == 1 ||
                store.data.count(Key(i)) == 1)
        << i;
  }
  cache.Reserve(0);
  for (int i = 10; i < 16; ++i) Put(cache, Key(i), "v", /*dirty=*/false);
  ASSERT_TRUE(cache.MakeRoom(write).ok());
  EXPECT_GT(cache.bytes(), 4 * per_entry);
  EXPECT_LE(cache.bytes(), cache.budget());
}

TEST(WriteBackCacheTest, EvictsCleanUnreferencedFirstThenBatchesDirtyOnes) {
  // Keys "key-<i>" with values of at most 3 bytes take blocks of 8 or 9 bytes.
  const size_t per_entry = WriteBackCache::kEntryOverhead + 8;
  WriteBackCache cache(10 * per_entry);
  FakeStore store;
  auto write = [&](absl::Span<const Ref> refs) { return store.Write(cache, refs); };
  // 0..4 dirty, 5..9 clean; all referenced at insertion.
  for (int i = 0; i < 10; ++i) Put(cache, Key(i), "v", /*dirty=*/i < 5);
  ASSERT_TRUE(cache.MakeRoom(write).ok());  // within budget: nothing happens
  EXPECT_EQ(cache.size(), 10u);
  // Touch 7 again; insert 10 and 11: two entries must go. The first turn of the hand clears
  // every reference bit; on the second the first clean unreferenced entries are 5 and 6.
  ASSERT_NE(cache.Find(Key(7)), WriteBackCache::kNone);
  cache.Insert(Key(10));
  ASSERT_TRUE(cache.MakeRoom(write).ok());
  cache.Insert(Key(11));
  ASSERT_TRUE(cache.MakeRoom(write).ok());
  EXPECT_EQ(cache.size(), 10u);
  EXPECT_LE(cache.bytes(), cache.budget());
  // The dirty entries 0..4 were met first but are not the ones dropped: clean entries go first.
  std::vector<std::string> cached;
  for (int i = 0; i < 12; ++i) {
    if (cache.Peek(Key(i)) != WriteBackCache::kNone) cached.push_back(Key(i));
  }
  EXPECT_THAT(cached, ::testing::ElementsAre(Key(0), Key(1), Key(2), Key(3), Key(4), Key(7),
                                             Key(8), Key(9), Key(10), Key(11)));
  EXPECT_TRUE(store.data.empty());
  EXPECT_EQ(cache.dirty_count(), 5u);
  // Now every entry is dirty: the ones the hand meets are written in one batch, then dropped.
  for (int i : {7, 8, 9, 10, 11}) cache.MarkDirty(cache.Peek(Key(i)));
  Ref r = cache.Insert(Key(12));
  cache.MarkDirty(r);
  ASSERT_TRUE(cache.MakeRoom(write).ok());
  EXPECT_LE(cache.bytes(), cache.budget());
  ASSERT_EQ(store.batch_sizes.size(), 1u);
  EXPECT_EQ(store.batch_sizes[0], store.data.size());
  EXPECT_EQ(cache.size() + store.data.size(), 11u);
  for (const auto& [key, value] : store.data) {
    EXPECT_EQ(cache.Peek(key), WriteBackCache::kNone) << key;  // written, then dropped
  }
}

// The store filter holds every key handed to a WriteFn (by eviction and by FlushDirty, also
// in a batch the store refused) and every key NoteInStore() named; its bytes count in bytes().
TEST(WriteBackCacheTest, StoreFilterHoldsEveryKeyWritten) {
  WriteBackCache cache(64 << 10);
  EXPECT_TRUE(cache.MayBeInStore(Key(0)));  // off: anything may be in the store
  cache.EnableStoreFilter(1024);
  ASSERT_TRUE(cache.store_filter_on());
  EXPECT_FALSE(cache.MayBeInStore(Key(0)));
  EXPECT_EQ(cache.bytes(), 0u);
  FakeStore store;
  auto write = [&](absl::Span<const Ref> refs) { return store.Write(cache, refs); };
  for (int i = 0; i < 3000; ++i) {
    Put(cache, Key(i), "v", /*dirty=*/i % 3 != 0);  // every third one never dirty
    ASSERT_TRUE(cache.MakeRoom(write).ok());
    ASSERT_LE(cache.bytes(), cache.budget());
  }
  ASSERT_TRUE(cache.FlushDirty(write).ok());
  ASSERT_TRUE(cache.store_filter_on());
  EXPECT_EQ(store.data.size(), 2000u);
  size_t entry_bytes = 0;
  for (int i = 0; i < 3000; ++i) {
    const Ref r = cache.Peek(Key(i));
    if (r != WriteBackCache::kNone) {
      entry_bytes += WriteBackCache::kEntryOverhead + BlockArena::ClassSize(Key(i).size() + 1);
    }
    if (i % 3 != 0) EXPECT_TRUE(cache.MayBeInStore(Key(i))) << i;  // every written key
  }
  EXPECT_GT(cache.bytes(), entry_bytes);  // the filter's parts
  int false_positives = 0;
  for (int i = 0; i < 3000; i += 3) false_positives += cache.MayBeInStore(Key(i));
  EXPECT_LT(false_positives, 60);  // of 1000 keys never written; ~1-3% expected
  cache.NoteInStore("restored");
  EXPECT_TRUE(cache.MayBeInStore("restored"));
  // A batch the store refuses is in the filter all the same (a false positive at worst).
  store.fail = true;
  Put(cache, "refused", "v", /*dirty=*/true);
  EXPECT_FALSE(cache.FlushDirty(write).ok());
  EXPECT_TRUE(cache.MayBeInStore("refused"));
}

// Entries whose keys the filter lacked when inserted (NoteFilterMiss()) are added without a
// probe when written: every written key is in the filter, new and known ones alike.
TEST(WriteBackCacheTest, StoreFilterHoldsKeysNotedAsFilterMisses) {
  WriteBackCache cache(size_t{1} << 30);
  cache.EnableStoreFilter(64);
  FakeStore store;
  auto write = [&](absl::Span<const Ref> refs) { return store.Write(cache, refs); };
  for (int i = 0; i < 3000; ++i) {
    ASSERT_FALSE(cache.MayBeInStore(Key(i)));
    Ref r = cache.Insert(Key(i));
    cache.NoteFilterMiss(r);
    cache.SetValue(r, "v");
    cache.set_deleted(r, false);
    cache.MarkDirty(r);
  }
  ASSERT_TRUE(cache.FlushDirty(write).ok());
  for (int i = 0; i < 3000; ++i) ASSERT_TRUE(cache.MayBeInStore(Key(i))) << i;
  int false_positives = 0;
  for (int i = 3000; i < 6000; ++i) false_positives += cache.MayBeInStore(Key(i));
  EXPECT_LT(false_positives, 180);  // of 3000 keys never written; ~1-5% expected
}

// A filter that would take more than half the budget is dropped (its bytes with it), and every
// key may then be in the store.
TEST(WriteBackCacheTest, StoreFilterIsDroppedWhenItOutgrowsHalfTheBudget) {
  WriteBackCache cache(16 << 10);
  cache.EnableStoreFilter(1024);  // parts of 1280, 2560, 5120 bytes: the third is too many
  for (int i = 0; i < 2500; ++i) cache.NoteInStore(Key(i));
  ASSERT_TRUE(cache.store_filter_on());
  EXPECT_EQ(cache.bytes(), 1280u + 2560u);
  EXPECT_FALSE(cache.MayBeInStore("never"));
  for (int i = 2500; i < 4000; ++i) cache.NoteInStore(Key(i));
  EXPECT_FALSE(cache.store_filter_on());
  EXPECT_EQ(cache.bytes(), 0u);
  EXPECT_TRUE(cache.MayBeInStore("never"));
  cache.NoteInStore("after");  // a no-op now
  EXPECT_EQ(cache.bytes(), 0u);
  cache.EnableStoreFilter(1024);  // and stays off: it would lack the keys written meanwhile
  EXPECT_FALSE(cache.store_filter_on());
}

// An entry written again while cached (a hot key at every snapshot) is in the filter from its
// first write; one evicted and cached again is added again when written. Every written key is
// in the filter at every point.
TEST(WriteBackCacheTest, StoreFilterKeepsKeysWrittenRepeatedly) {
  const size_t per_entry = WriteBackCache::kEntryOverhead + 8;
  WriteBackCache cache(64 * per_entry + 4096);
  cache.EnableStoreFilter(64);
  FakeStore store;
  auto write = [&](absl::Span<const Ref> refs) { return store.Write(cache, refs); };
  for (int round = 0; round < 20; ++round) {
    for (int i = 0; i < 200; ++i) {
      if (i % 20 != round) continue;
      Put(cache, Key(i), "v", /*dirty=*/true);
      ASSERT_TRUE(cache.MakeRoom(write).ok());
    }
    Put(cache, Key(1000), absl::StrCat("hot", round), /*dirty=*/true);  // flushed every round
    ASSERT_TRUE(cache.FlushDirty(write).ok());
    ASSERT_TRUE(cache.store_filter_on());
    for (const auto& [key, value] : store.data) ASSERT_TRUE(cache.MayBeInStore(key)) << key;
  }
  EXPECT_EQ(store.data.size(), 201u);
}

TEST(WriteBackCacheTest, DirtyEntriesAreWrittenBeforeTheyAreDropped) {
  const size_t per_entry = WriteBackCache::kEntryOverhead + 8;
  WriteBackCache cache(4 * per_entry);
  FakeStore store;
  auto write = [&](absl::Span<const Ref> refs) { return store.Write(cache, refs); };
  for (int i = 0; i < 100; ++i) {
    Put(cache, Key(i), absl::StrCat("v", i), /*dirty=*/true);
    ASSERT_TRUE(cache.MakeRoom(write).ok());
    ASSERT_LE(cache.bytes(), cache.budget());
  }
  ASSERT_TRUE(cache.FlushDirty(write).ok());
  ASSERT_EQ(store.data.size(), 100u);  // every value reached the store exactly as last set
  for (int i = 0; i < 100; ++i) EXPECT_EQ(store.data[Key(i)], absl::StrCat("v", i));
  // A failing store keeps dirty entries (over budget) instead of losing them.
  store.fail = true;
  for (int i = 100; i < 110; ++i) Put(cache, Key(i), "x", /*dirty=*/true);
  EXPECT_FALSE(cache.MakeRoom(write).ok());
  for (int i = 100; i < 110; ++i) EXPECT_NE(cache.Peek(Key(i)), WriteBackCache::kNone);
  store.fail = false;
  ASSERT_TRUE(cache.MakeRoom(write).ok());
  EXPECT_LE(cache.bytes(), cache.budget());
  ASSERT_TRUE(cache.FlushDirty(write).ok());
  for (int i = 100; i < 110; ++i) EXPECT_EQ(store.data[Key(i)], "x");
}

// Evictions of thousands of dirty entries at once (the radix sort, whose pass over the blocks
// also hashes each key for the store filter and the index erase) whose keys share their first
// eight bytes in runs: each batch reaches the store whole and in key order, every evicted key
// is in the store filter and gone from the index, and every other one is still found.
TEST(WriteBackCacheTest, LargeEvictionsKeepIndexFilterAndStoreInAgreement) {
  WriteBackCache cache(256 << 10);
  cache.EnableStoreFilter(1024);
  FakeStore store;
  auto write = [&](absl::Span<const Ref> refs) { return store.Write(cache, refs); };
  std::mt19937 rng(27);
  std::vector<std::string> keys;
  for (int i = 0; i < 20000; ++i) {
    // 8 shared bytes ("group-NN"), then a random tail: ties in every radix bucket.
    keys.push_back(absl::StrCat("group-", 10 + rng() % 20, "/", rng() % 1000000, "-", i));
    const std::string& key = keys.back();
    const bool maybe_in_store = cache.MayBeInStore(key);  // true: a false positive (~1%)
    Ref r = cache.Insert(key);
    // Half of the others added to the filter without a probe.
    if (!maybe_in_store && i % 2 == 0) cache.NoteFilterMiss(r);
    cache.SetValue(r, absl::StrCat("v", i));
    cache.set_deleted(r, false);
    cache.MarkDirty(r);
    ASSERT_TRUE(cache.MakeRoom(write).ok());
  }
  ASSERT_GE(*std::max_element(store.batch_sizes.begin(), store.batch_sizes.end()), 1024u);
  EXPECT_EQ(cache.evicted_writes(), store.data.size());
  EXPECT_EQ(cache.size() + store.data.size(), keys.size());
  for (int i = 0; i < static_cast<int>(keys.size()); ++i) {
    const Ref r = cache.Peek(keys[i]);
    if (r == WriteBackCache::kNone) {
      ASSERT_EQ(store.data.count(keys[i]), 1u) << i;
      EXPECT_EQ(store.data[keys[i]], absl::StrCat("v", i)) << i;
      EXPECT_TRUE(cache.MayBeInStore(keys[i])) << i;
    } else {
      EXPECT_EQ(cache.key(r), keys[i]) << i;
      EXPECT_EQ(cache.value(r), absl::StrCat("v", i)) << i;
      EXPECT_EQ(store.data.count(keys[i]), 0u) << i;
    }
  }
}

TEST(WriteBackCacheTest, IndexAgreesWithAMapThroughInsertsAndErases) {
  WriteBackCache cache(size_t{1} << 30);
  std::map<std::string, std::string> model;
  std::mt19937 rng(7);
  for (int step = 0; step < 200000; ++step) {
    const std::string key = Key(static_cast<int>(rng() % 5000));
    const Ref r = cache.Peek(key);
    ASSERT_EQ(r != WriteBackCache::kNone, model.count(key) == 1) << key;
    if (r == WriteBackCache::kNone) {
      const std::string value = absl::StrCat("v", step);
      cache.SetValue(cache.Insert(key), value);
      model[key] = value;
    } else if (rng() % 2 == 0) {
      ASSERT_EQ(cache.value(r), model[key]);
      cache.Erase(r);
      model.erase(key);
    }
  }
  EXPECT_EQ(cache.size(), model.size());
  for (const auto& [key, value] : model) {
    const Ref r = cache.Peek(key);
    ASSERT_NE(r, WriteBackCache::kNone) << key;
    EXPECT_EQ(cache.value(r), value);
  }
}

// Values set, appended and shrunk across size classes, with and without an expiry, read back
// as a model of them says, and the byte count is the sum of their blocks.
TEST(WriteBackCacheTest, ValuesAndExpiriesMatchAModelAcrossBlockSizes) {
  WriteBackCache cache(size_t{1} << 30);
  struct Entry {
    std::string value;
    int64_t expiry = 0;
    bool expiry_bytes = false;  // an expiry was ever set: the block keeps 8 bytes for it
  };
  std::map<std::string, Entry> model;
  std::mt19937 rng(3);
  for (int step = 0; step < 50000; ++step) {
    const std::string key = std::string(rng() % 3 == 0 ? 40 : 1, 'k') + Key(rng() % 300);
    Ref r = cache.FindOrInsert(key);
    Entry& m = model[key];
    const size_t len = rng() % 4 == 0 ? rng() % 600 : rng() % 40;
    const std::string bytes(len, static_cast<char>('a' + step % 26));
    switch (rng() % 4) {
      case 0: cache.SetValue(r, bytes); m.value = bytes; break;
      case 1: cache.AppendValue(r, bytes); m.value += bytes; break;
      case 2: {
        const int64_t e = rng() % 2 == 0 ? 0 : static_cast<int64_t>(rng()) - (int64_t{1} << 31);
        cache.set_expiry(r, e);
        m.expiry = e;
        m.expiry_bytes |= e != 0;
        break;
      }
      default:
        if (rng() % 8 == 0) {
          cache.Erase(r);
          model.erase(key);
        }
        break;
    }
  }
  size_t bytes = 0;
  for (const auto& [key, m] : model) {
    const Ref r = cache.Peek(key);
    ASSERT_NE(r, WriteBackCache::kNone) << key;
    EXPECT_EQ(cache.key(r), key);
    EXPECT_EQ(cache.value(r), m.value) << key;
    EXPECT_EQ(cache.expiry(r), m.expiry) << key;
    bytes += WriteBackCache::kEntryOverhead +
             BlockArena::ClassSize((m.expiry_bytes ? 8 : 0) + key.size() + m.value.size());
  }
  EXPECT_EQ(cache.size(), model.size());
  EXPECT_EQ(cache.bytes(), bytes);
}

TEST(WriteBackCacheTest, ABudgetBeyondWhatBlockPositionsAddressIsCapped) {
  WriteBackCache cache(size_t{1} << 45);
  EXPECT_EQ(cache.budget(), WriteBackCache::kMaxBudgetBytes);
  EXPECT_EQ(WriteBackCache(1000).budget(), 1000u);
}

}  // namespace
}  // namespace sluice::state::internal
