#include "state/keyed_state_backend.h"

#include <stdlib.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/clock.h"
#include "common/file_util.h"
#include "common/key_groups.h"
#include "common/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "rocksdb/db.h"
#include "state/internal/delta_file.h"
#include "state/internal/key_codec.h"

namespace sluice::state {
namespace {

namespace fs = std::filesystem;
using ::sluice::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;
using ::testing::UnorderedElementsAreArray;

constexpr int kMaxParallelism = 128;

int KeyGroupOf(const std::string& key) { return KeyGroupForHash(HashBytes(key), kMaxParallelism); }

class KeyedStateBackendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/sluice_state_test_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    job_dir_ = (root_ / "job").string();
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }

  StateBackendOptions Options(const std::string& name, KeyGroupRange range = {0, 127}) {
    StateBackendOptions o;
    o.local_dir = (root_ / "local" / name).string();
    o.operator_id = "op";
    o.max_parallelism = kMaxParallelism;
    o.range = range;
    o.clock = &clock_;
    return o;
  }

  std::unique_ptr<KeyedStateBackend> OpenOrDie(const StateBackendOptions& o) {
    auto b = KeyedStateBackend::Open(o);
    EXPECT_TRUE(b.ok()) << b.status();
    return b.ok() ? std::move(b).value() : nullptr;
  }

  // SnapshotSync + UploadSnapshot into job_dir_.
  absl::StatusOr<proto::KeyedStateHandle> Checkpoint(KeyedStateBackend* b, int64_t id,
                                                     const std::string& private_dir) {
    auto pending = b->SnapshotSync(id);
    if (!pending.ok()) return pending.status();
    return b->UploadSnapshot(*pending, job_dir_, private_dir);
  }

  // A value, a list, a map and a TTL (5 s) value state, registered in that order.
  struct FourStates {
    StateId value, list, map, ttl;
  };
  static FourStates RegisterFourStates(KeyedStateBackend* b) {
    FourStates s;
    s.value = b->RegisterState("v", StateKind::kValue);
    s.list = b->RegisterState("l", StateKind::kList);
    s.map = b->RegisterState("m", StateKind::kMap);
    s.ttl = b->RegisterState("t", StateKind::kValue, 5000);
    return s;
  }

  static void SetKey(KeyedStateBackend* b, const std::string& key) {
    b->SetCurrentKey(key, KeyGroupOf(key));
  }

  // Puts "v<i>-<round>" into state `id` of keys "k0".."k<keys - 1>".
  static void PutRound(KeyedStateBackend* b, StateId id, int keys, int round) {
    for (int i = 0; i < keys; ++i) {
      SetKey(b, absl::StrCat("k", i));
      ASSERT_OK(b->Put(id, absl::StrCat("v", i, "-", round)));
    }
  }

  static std::string GetOr(KeyedStateBackend* b, StateId id, const std::string& key,
                           const std::string& absent = "<absent>") {
    SetKey(b, key);
    std::string v;
    auto found = b->Get(id, &v);
    EXPECT_TRUE(found.ok()) << found.status();
    return found.ok() && *found ? v : absent;
  }

  fs::path root_;
  std::string job_dir_;
  FakeClock clock_;
};

TEST(KeyCodecTest, StateKeyHeaderIsTheStateKeyPrefix) {
  for (int kg : {0, 5, 127, 255, 256, 32767}) {
    for (size_t len : {size_t{0}, size_t{1}, size_t{127}, size_t{128}, size_t{20000}}) {
      const std::string key(len, 'k');
      std::string want;
      internal::AppendStateKey(&want, kg, 7, key);
      char header[8];
      const size_t n = internal::EncodeStateKeyHeader(header, kg, 7, static_cast<uint32_t>(len));
      EXPECT_EQ(std::string(header, n) + key, want) << kg << " " << len;
    }
  }
}

TEST_F(KeyedStateBackendTest, ValueListMapBasics) {
  auto b = OpenOrDie(Options("a"));
  ASSERT_NE(b, nullptr);
  StateId value = b->RegisterState("count", StateKind::kValue);
  StateId list = b->RegisterState("events", StateKind::kList);
  StateId map = b->RegisterState("by_user", StateKind::kMap);
  EXPECT_EQ(b->RegisterState("count", StateKind::kValue), value);

  b->SetCurrentKey("k1", 5);
  std::string v;
  ASSERT_OK(b->Get(value, &v));
  EXPECT_FALSE(*b->Get(value, &v));
  ASSERT_OK(b->Put(value, "one"));
  ASSERT_TRUE(*b->Get(value, &v));
  EXPECT_EQ(v, "one");
  ASSERT_OK(b->Put(value, "uno"));
  ASSERT_TRUE(*b->Get(value, &v));
  EXPECT_EQ(v, "uno");

  ASSERT_OK(b->Append(list, "a"));
  ASSERT_OK(b->Append(list, ""));
  ASSERT_OK(b->Append(list, "ccc"));
  std::vector<std::string> elements;
  ASSERT_OK(b->GetList(list, &elements));
  EXPECT_THAT(elements, ElementsAre("a", "", "ccc"));

  ASSERT_OK(b->MapPut(map, "alice", "1"));
  ASSERT_OK(b->MapPut(map, "bob", "2"));
  ASSERT_OK(b->MapPut(map, "alice", "3"));
  ASSERT_TRUE(*b->MapGet(map, "alice", &v));
  EXPECT_EQ(v, "3");
  EXPECT_FALSE(*b->MapGet(map, "carol", &v));
  std::vector<std::pair<std::string, std::string>> entries;
  ASSERT_OK(b->MapEntries(map, &entries));
  EXPECT_THAT(entries, ElementsAre(Pair("alice", "3"), Pair("bob", "2")));

  // Same key bytes, another key group: separate state. A key that is a prefix of another
  // does not see the other's map entries.
  b->SetCurrentKey("k1", 6);
  EXPECT_FALSE(*b->Get(value, &v));
  ASSERT_OK(b->GetList(list, &elements));
  EXPECT_TRUE(elements.empty());
  ASSERT_OK(b->MapEntries(map, &entries));
  EXPECT_TRUE(entries.empty());
  ASSERT_OK(b->Put(value, "other"));
  b->SetCurrentKey("k", 5);
  ASSERT_OK(b->MapEntries(map, &entries));
  EXPECT_TRUE(entries.empty());
  b->SetCurrentKey("k1", 5);
  ASSERT_TRUE(*b->Get(value, &v));
  EXPECT_EQ(v, "uno");

  // Deletes.
  ASSERT_OK(b->Delete(value));
  EXPECT_FALSE(*b->Get(value, &v));
  ASSERT_OK(b->ClearList(list));
  ASSERT_OK(b->GetList(list, &elements));
  EXPECT_TRUE(elements.empty());
  ASSERT_OK(b->Append(list, "again"));
  ASSERT_OK(b->GetList(list, &elements));
  EXPECT_THAT(elements, ElementsAre("again"));
  ASSERT_OK(b->MapRemove(map, "alice"));
  ASSERT_OK(b->MapEntries(map, &entries));
  EXPECT_THAT(entries, ElementsAre(Pair("bob", "2")));
  b->SetCurrentKey("k1", 6);
  ASSERT_TRUE(*b->Get(value, &v));
  EXPECT_EQ(v, "other");
}

TEST_F(KeyedStateBackendTest, RejectsBadIdsKindsAndKeyGroups) {
  auto b = OpenOrDie(Options("a", {10, 20}));
  ASSERT_NE(b, nullptr);
  StateId value = b->RegisterState("v", StateKind::kValue);
  EXPECT_EQ(b->RegisterState("v", StateKind::kMap), -1);
  std::string v;
  b->SetCurrentKey("k", 21);
  EXPECT_THAT(b->Put(value, "x"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("21")));
  EXPECT_THAT(b->RegisterTimer(TimerDomain::kEventTime, 1),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("21")));
  b->SetCurrentKey("k", 10);
  EXPECT_THAT(b->Get(-1, &v), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unknown")));
  EXPECT_THAT(b->Get(77, &v), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unknown")));
  EXPECT_THAT(b->Append(value, "x"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("kind")));
  ASSERT_OK(b->Put(value, "x"));

  StateBackendOptions bad = Options("bad", {0, 128});
  EXPECT_THAT(KeyedStateBackend::Open(bad), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("range")));
}

TEST_F(KeyedStateBackendTest, CacheEvictionUnderTinyBudgetKeepsValues) {
  StateBackendOptions o = Options("a");
  o.cache_bytes = 64 << 10;
  auto b = OpenOrDie(o);
  ASSERT_NE(b, nullptr);
  StateId value = b->RegisterState("v", StateKind::kValue);
  StateId list = b->RegisterState("l", StateKind::kList);
  constexpr int kKeys = 100000;
  constexpr size_t kSlack = 4 << 10;
  size_t max_bytes = 0;
  for (int i = 0; i < kKeys; ++i) {
    std::string key = absl::StrCat("key-", i);
    SetKey(b.get(), key);
    ASSERT_OK(b->Put(value, absl::StrCat("value-", i)));
    if (i % 10 == 0) {
      ASSERT_OK(b->Append(list, absl::StrCat("e", i)));
    }
    max_bytes = std::max(max_bytes, b->CacheBytesForTest());
  }
  EXPECT_LE(max_bytes, o.cache_bytes + kSlack);
  EXPECT_GT(max_bytes, 0u);
  // Overwrite and delete some, then read everything back (mostly from RocksDB).
  for (int i = 0; i < kKeys; i += 7) {
    SetKey(b.get(), absl::StrCat("key-", i));
    if (i % 2 == 0) {
      ASSERT_OK(b->Put(value, absl::StrCat("new-", i)));
    } else {
      ASSERT_OK(b->Delete(value));
    }
  }
  std::vector<std::string> elements;
  for (int i = 0; i < kKeys; ++i) {
    std::string key = absl::StrCat("key-", i);
    std::string want = i % 7 != 0 ? absl::StrCat("value-", i)
                       : i % 2 == 0 ? absl::StrCat("new-", i)
                                    : "<absent>";
    ASSERT_EQ(GetOr(b.get(), value, key), want) << key;
    ASSERT_OK(b->GetList(list, &elements));
    if (i % 10 == 0) {
      ASSERT_THAT(elements, ElementsAre(absl::StrCat("e", i)));
    } else {
      ASSERT_TRUE(elements.empty());
    }
    max_bytes = std::max(max_bytes, b->CacheBytesForTest());
  }
  EXPECT_LE(max_bytes, o.cache_bytes + kSlack);

  int visited = 0;
  ASSERT_OK(b->ForEachKey(value, [&](absl::string_view) {
    ++visited;
    return absl::OkStatus();
  }));
  EXPECT_EQ(visited, kKeys - (kKeys / 7 + 1) / 2);
}

// Get then Put of the same key (read-modify-write, as aggregates do) under budgets that evict
// between and during the calls, mixed with other states of the key, deletes, map puts (which
// grow the key buffer) and key switches: every count must come out as a plain map computes it.
TEST_F(KeyedStateBackendTest, ReadModifyWriteUnderEvictionKeepsCounts) {
  for (size_t cache_bytes : {size_t{0}, size_t{4} << 10, size_t{32} << 20}) {
    SCOPED_TRACE(cache_bytes);
    StateBackendOptions o = Options(absl::StrCat("rmw", cache_bytes));
    o.cache_bytes = cache_bytes;
    auto b = OpenOrDie(o);
    ASSERT_NE(b, nullptr);
    StateId count = b->RegisterState("count", StateKind::kValue);
    StateId other = b->RegisterState("other", StateKind::kValue);
    StateId map = b->RegisterState("m", StateKind::kMap);
    std::map<std::string, int> want;
    for (int i = 0; i < 20000; ++i) {
      const std::string key = absl::StrCat("k", (i * 7919) % 997);
      SetKey(b.get(), key);
      std::string v;
      absl::StatusOr<bool> got = b->Get(count, &v);
      ASSERT_OK(got);
      bool found = *got;
      ASSERT_EQ(found, want.count(key) > 0) << key;
      if (i % 5 == 0) ASSERT_OK(b->Put(other, absl::StrCat("o", i)));  // between Get and Put
      if (i % 11 == 0) {
        ASSERT_OK(b->MapPut(map, std::string(64, 'u'), "x"));
        ASSERT_EQ(b->CurrentKey(), key);
      }
      if (i % 13 == 0) {  // a delete of the key between its Get and Put restarts the count
        ASSERT_OK(b->Delete(count));
        found = false;
      }
      const int n = found ? std::stoi(v) + 1 : 1;
      ASSERT_OK(b->Put(count, std::to_string(n)));
      want[key] = n;
    }
    for (const auto& [key, n] : want) ASSERT_EQ(GetOr(b.get(), count, key), std::to_string(n));
  }
}

// Prefetch() is only a read-ahead: a backend that reads ahead before each batch and one that
// does not, given the same operations (reads, read-modify-writes, blind writes, deletes, TTL
// expiry, snapshots; duplicate keys and keys of other key groups in a batch; caches of 0, 2 KiB
// and 32 MiB, so prefetched entries are also evicted before their reads; evicted entries
// written in write batches or, with an ingestion threshold of 1, as ingested SST files), read
// exactly what a plain map computes.
TEST_F(KeyedStateBackendTest, PrefetchReadsWhatReadsWithoutItRead) {
  for (const auto& [cache_bytes, ingest_min] :
       std::vector<std::pair<size_t, size_t>>{{0, 4096},
                                              {2 << 10, 4096},
                                              {32 << 20, 4096},
                                              {2 << 10, 1}}) {
    SCOPED_TRACE(absl::StrCat("cache ", cache_bytes, " ingest from ", ingest_min));
    std::unique_ptr<KeyedStateBackend> backends[2];
    StateId plain[2], ttl[2];
    for (int i = 0; i < 2; ++i) {
      StateBackendOptions o =
          Options(absl::StrCat("prefetch", cache_bytes, "-", ingest_min, "-", i), {0, 63});
      o.cache_bytes = cache_bytes;
      o.snapshot_ingest_min_entries = ingest_min;
      backends[i] = OpenOrDie(o);
      ASSERT_NE(backends[i], nullptr);
      plain[i] = backends[i]->RegisterState("plain", StateKind::kValue);
      ttl[i] = backends[i]->RegisterState("ttl", StateKind::kValue, /*ttl_ms=*/1000);
    }
    struct Want {
      std::string value;
      int64_t expiry_ms = 0;  // 0: none
    };
    std::map<std::string, Want> want[2];  // by state: plain, ttl
    uint64_t rng = 42;
    auto next = [&rng](uint64_t n) {
      rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
      return (rng >> 33) % n;
    };
    std::vector<std::string> keys;
    std::vector<KeyInGroup> batch;
    int64_t now_ms = 0;
    for (int round = 0; round < 400; ++round) {
      keys.clear();
      const size_t n = 1 + next(40);
      for (size_t i = 0; i < n; ++i) keys.push_back(absl::StrCat("k", next(150)));
      batch.clear();
      for (const std::string& k : keys) batch.push_back({k, KeyGroupOf(k)});
      const int s = static_cast<int>(next(2));
      ASSERT_OK(backends[0]->Prefetch(s == 0 ? plain[0] : ttl[0], batch));
      for (const std::string& k : keys) {
        const bool in_range = KeyGroupOf(k) <= 63;
        const int op = static_cast<int>(next(4));
        auto it = want[s].find(k);
        const bool live = it != want[s].end() &&
                          (it->second.expiry_ms == 0 || it->second.expiry_ms > now_ms);
        for (int b = 0; b < 2; ++b) {
          KeyedStateBackend* be = backends[b].get();
          const StateId id = s == 0 ? plain[b] : ttl[b];
          SetKey(be, k);
          if (!in_range) {
            std::string v;
            EXPECT_THAT(be->Get(id, &v),
                        StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not in [0, 63]")));
            continue;
          }
          if (op == 0 || op == 1) {  // a read, or a read-modify-write
            std::string v;
            absl::StatusOr<bool> found = be->Get(id, &v);
            ASSERT_OK(found);
            ASSERT_EQ(*found, live) << k << " backend " << b;
            if (live) ASSERT_EQ(v, it->second.value) << k << " backend " << b;
            if (op == 1) ASSERT_OK(be->Put(id, absl::StrCat(live ? v : "", "+", round)));
          } else if (op == 2) {
            ASSERT_OK(be->Put(id, absl::StrCat("w", round)));
          } else {
            ASSERT_OK(be->Delete(id));
          }
        }
        if (!in_range || op == 0) continue;
        if (op == 3) {
          want[s].erase(k);
        } else {
          Want& w = want[s][k];
          w.value = op == 1 ? absl::StrCat(live ? it->second.value : "", "+", round)
                            : absl::StrCat("w", round);
          w.expiry_ms = s == 1 ? now_ms + 1000 : 0;
        }
      }
      if (round % 7 == 0) {
        clock_.AdvanceNanos(300'000'000);
        now_ms += 300;
      }
      if (round % 50 == 49) {
        for (int b = 0; b < 2; ++b) ASSERT_OK(backends[b]->SnapshotSync(round));
      }
    }
    for (int s = 0; s < 2; ++s) {
      for (int k = 0; k < 150; ++k) {
        const std::string key = absl::StrCat("k", k);
        if (KeyGroupOf(key) > 63) continue;
        auto it = want[s].find(key);
        const bool live = it != want[s].end() &&
                          (it->second.expiry_ms == 0 || it->second.expiry_ms > now_ms);
        for (int b = 0; b < 2; ++b) {
          EXPECT_EQ(GetOr(backends[b].get(), s == 0 ? plain[b] : ttl[b], key),
                    live ? it->second.value : "<absent>")
              << key << " backend " << b;
        }
      }
    }
  }
}

// A batch's read-modify-write as the aggregate does it: Prefetch(), GetOfBatch() of each key,
// then PutOfBatch() of each (duplicates, keys of other key groups, TTL, caches of 0, 2 KiB and
// 32 MiB, so entries are evicted between the read-ahead and the reads or writes, and a span
// other than the read-ahead's): every value is what a plain map computes.
TEST_F(KeyedStateBackendTest, BatchedReadModifyWriteKeepsCounts) {
  for (size_t cache_bytes : {size_t{0}, size_t{2} << 10, size_t{32} << 20}) {
    SCOPED_TRACE(cache_bytes);
    StateBackendOptions o = Options(absl::StrCat("batch-rmw", cache_bytes), {0, 63});
    o.cache_bytes = cache_bytes;
    auto b = OpenOrDie(o);
    ASSERT_NE(b, nullptr);
    const StateId count = b->RegisterState("count", StateKind::kValue);
    const StateId ttl = b->RegisterState("ttl", StateKind::kValue, /*ttl_ms=*/1000);
    std::map<std::string, int> want[2];
    std::map<std::string, int64_t> written_ms;  // ttl: when each key was last written
    int64_t now_ms = 0;
    uint64_t rng = 7;
    auto next = [&rng](uint64_t n) {
      rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
      return (rng >> 33) % n;
    };
    std::vector<std::string> keys;
    std::vector<KeyInGroup> batch, other;
    for (int round = 0; round < 300; ++round) {
      const int s = round % 2;
      const StateId id = s == 0 ? count : ttl;
      keys.clear();
      const size_t n = 1 + next(60);
      for (size_t i = 0; i < n; ++i) keys.push_back(absl::StrCat("k", next(200)));
      batch.clear();
      for (const std::string& k : keys) batch.push_back({k, KeyGroupOf(k)});
      ASSERT_OK(b->Prefetch(id, batch));
      // Every 5th round reads through a copy of the span in another order (not the read-ahead's).
      other.assign(batch.rbegin(), batch.rend());
      const bool reversed = round % 5 == 0;
      absl::Span<const KeyInGroup> span = reversed ? other : batch;
      std::vector<int> got(n, 0);
      for (size_t i = 0; i < n; ++i) {
        const std::string& k = reversed ? keys[n - 1 - i] : keys[i];
        std::string v;
        absl::StatusOr<bool> found = b->GetOfBatch(id, span, i, &v);
        if (KeyGroupOf(k) > 63) {
          EXPECT_THAT(found, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not in [0, 63]")));
          continue;
        }
        ASSERT_OK(found);
        auto it = want[s].find(k);
        bool live = it != want[s].end();
        if (live && s == 1 && written_ms[k] + 1000 <= now_ms) live = false;
        ASSERT_EQ(*found, live) << k;
        got[i] = live ? std::stoi(v) : 0;
        if (live) ASSERT_EQ(got[i], it->second) << k;
      }
      // A key twice in the batch: its last write wins, as one Put() after another.
      for (size_t i = 0; i < n; ++i) {
        const std::string& k = reversed ? keys[n - 1 - i] : keys[i];
        if (KeyGroupOf(k) > 63) {
          EXPECT_THAT(b->PutOfBatch(id, span, i, "x"),
                      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not in [0, 63]")));
          continue;
        }
        ASSERT_OK(b->PutOfBatch(id, span, i, std::to_string(got[i] + 1)));
        want[s][k] = got[i] + 1;
        if (s == 1) written_ms[k] = now_ms;
      }
      if (round % 3 == 0) {
        clock_.AdvanceNanos(400'000'000);
        now_ms += 400;
      }
      if (round % 40 == 39) ASSERT_OK(b->SnapshotSync(round));
    }
    for (const auto& [key, v] : want[0]) ASSERT_EQ(GetOr(b.get(), count, key), std::to_string(v));
    for (const auto& [key, v] : want[1]) {
      const bool live = written_ms[key] + 1000 > now_ms;
      ASSERT_EQ(GetOr(b.get(), ttl, key), live ? std::to_string(v) : "<absent>") << key;
    }
  }
}

// GetOfBatch() and PutOfBatch() reuse the entries Prefetch() found: a batch of new keys costs
// one index lookup per key (the read-ahead's), not three (a Get's and a Put's besides).
TEST_F(KeyedStateBackendTest, BatchedReadModifyWriteLooksEachKeyUpOnce) {
  auto b = OpenOrDie(Options("batch-lookups"));
  ASSERT_NE(b, nullptr);
  const StateId id = b->RegisterState("count", StateKind::kValue);
  std::vector<std::string> keys;
  std::vector<KeyInGroup> batch;
  for (int i = 0; i < 100; ++i) keys.push_back(absl::StrCat("key", i));
  for (const std::string& k : keys) batch.push_back({k, KeyGroupOf(k)});
  for (int round = 0; round < 2; ++round) {
    const uint64_t before = b->CacheLookupsForTest();
    ASSERT_OK(b->Prefetch(id, batch));
    for (size_t i = 0; i < batch.size(); ++i) {
      std::string v;
      absl::StatusOr<bool> found = b->GetOfBatch(id, batch, i, &v);
      ASSERT_OK(found);
      ASSERT_EQ(*found, round == 1);
      if (*found) ASSERT_EQ(v, "1");
    }
    for (size_t i = 0; i < batch.size(); ++i) {
      ASSERT_OK(b->PutOfBatch(id, batch, i, absl::StrCat(round + 1)));
    }
    EXPECT_EQ(b->CacheLookupsForTest() - before, batch.size()) << "round " << round;
  }
  for (const std::string& k : keys) EXPECT_EQ(GetOr(b.get(), id, k), "2");
}

// Counts kept as the aggregate keeps them: rounds of batches over `keys` keys (batches of
// `batch_size`, each key once per round), each a Prefetch(), GetOfBatch() of every key, then
// PutOfBatch() of its count plus one; without `batch_reads`, as the aggregate with a plugin
// aggregate function keeps them: each key's Get() and Put() after the Prefetch(). Rounds are
// numbered from `first_round` (the rounds counted before on this backend). Returns the cache
// lookups of the last round.
uint64_t CountRounds(KeyedStateBackend* b, StateId id, int keys, int batch_size, int rounds,
                     bool batch_reads = true, int first_round = 0) {
  std::vector<std::string> names;
  for (int i = 0; i < keys; ++i) names.push_back(absl::StrCat("k", i));
  uint64_t last_round_lookups = 0;
  for (int round = first_round; round < first_round + rounds; ++round) {
    const uint64_t before = b->CacheLookupsForTest();
    for (int start = 0; start < keys; start += batch_size) {
      std::vector<KeyInGroup> batch;
      for (int i = start; i < std::min(keys, start + batch_size); ++i) {
        batch.push_back({names[i], KeyGroupOf(names[i])});
      }
      EXPECT_OK(b->Prefetch(id, batch));
      std::vector<int> counts(batch.size(), 0);
      for (size_t i = 0; i < batch.size(); ++i) {
        std::string v;
        if (!batch_reads) b->SetCurrentKey(batch[i].key, batch[i].key_group);
        absl::StatusOr<bool> found = batch_reads ? b->GetOfBatch(id, batch, i, &v) : b->Get(id, &v);
        EXPECT_OK(found);
        EXPECT_EQ(found.ok() && *found, round > 0) << names[start + i];
        if (found.ok() && *found) {
          EXPECT_TRUE(absl::SimpleAtoi(v, &counts[i])) << v;
        }
      }
      for (size_t i = 0; i < batch.size(); ++i) {
        if (batch_reads) {
          EXPECT_OK(b->PutOfBatch(id, batch, i, absl::StrCat(counts[i] + 1)));
        } else {
          b->SetCurrentKey(batch[i].key, batch[i].key_group);
          EXPECT_OK(b->Put(id, absl::StrCat(counts[i] + 1)));
        }
      }
    }
    last_round_lookups = b->CacheLookupsForTest() - before;
  }
  return last_round_lookups;
}

// A cache beyond the CPU's caches (1 MiB and more) keeps the read-ahead on while every read
// hits: a batch's keys are then looked up once (the read-ahead's lookup, whose memory loads
// overlap), not twice (a Get() and a Put() per key, each waiting for an index cell, a slot and
// a block in turn). Without that, the second round's all-hit reads turned it off (less than 1 in
// 16 reads missed) and the third round cost two lookups per key. The counts are exact, in the
// cache and after a checkpoint's restore.
TEST_F(KeyedStateBackendTest, BigCacheKeepsTheReadAheadOnWhileReadsHit) {
  constexpr int kKeys = 120000;  // ~46 bytes an entry: ~5.5 MB of cache
  auto b = OpenOrDie(Options("big"));
  ASSERT_NE(b, nullptr);
  const StateId id = b->RegisterState("count", StateKind::kValue);
  EXPECT_EQ(CountRounds(b.get(), id, kKeys, 1000, 3), static_cast<uint64_t>(kKeys));
  ASSERT_GE(b->CacheBytesForTest(), size_t{1} << 20);
  for (int i = 0; i < kKeys; i += 997) EXPECT_EQ(GetOr(b.get(), id, absl::StrCat("k", i)), "3");
  absl::StatusOr<proto::KeyedStateHandle> handle = Checkpoint(b.get(), 1, "chk-1/op");
  ASSERT_OK(handle);
  b.reset();
  auto restored = KeyedStateBackend::Restore(Options("big-restored"), {*handle}, job_dir_);
  ASSERT_OK(restored);
  const StateId rid = (*restored)->RegisterState("count", StateKind::kValue);
  for (int i = 0; i < kKeys; ++i) {
    ASSERT_EQ(GetOr(restored->get(), rid, absl::StrCat("k", i)), "3") << i;
  }
}

// A caller that reads and writes with Get() and Put() after the read-ahead (the aggregate with
// a plugin aggregate function) reuses none of its entries: while every read hits, the
// read-ahead turns off in a cache of 1 MiB and more too, so the all-hit round costs a Get()'s
// and a Put()'s lookup per key and no pass of the read-ahead (kept on, a third lookup per key:
// at 100K keys the plugin aggregate's task threads used ~6% more CPU). A caller that then
// reads the read-ahead's entries (GetOfBatch()) turns it on again: one lookup per key. The
// counts are exact.
TEST_F(KeyedStateBackendTest, ReadAheadWhoseEntriesGoUnreadTurnsOffInABigCache) {
  constexpr int kKeys = 120000;  // ~5.5 MB of cache
  auto b = OpenOrDie(Options("big-get-put"));
  ASSERT_NE(b, nullptr);
  const StateId id = b->RegisterState("count", StateKind::kValue);
  EXPECT_EQ(CountRounds(b.get(), id, kKeys, 1000, 3, /*batch_reads=*/false), 2u * kKeys);
  ASSERT_GE(b->CacheBytesForTest(), size_t{1} << 20);
  for (int i = 0; i < kKeys; ++i) ASSERT_EQ(GetOr(b.get(), id, absl::StrCat("k", i)), "3") << i;
  EXPECT_EQ(CountRounds(b.get(), id, kKeys, 1000, 2, /*batch_reads=*/true, /*first_round=*/3),
            static_cast<uint64_t>(kKeys));
  for (int i = 0; i < kKeys; ++i) ASSERT_EQ(GetOr(b.get(), id, absl::StrCat("k", i)), "5") << i;
}

// A small cache (the CPU's caches hold it) turns the read-ahead off while every read hits, as
// before: the all-hit round costs a Get()'s and a Put()'s lookup per key, and no pass of the
// read-ahead. With a budget between 1 MiB and the keys' bytes, the cache evicts while the
// read-ahead is on: every count is still exact, in the cache and after a restore.
TEST_F(KeyedStateBackendTest, ReadAheadOfSmallAndEvictingCachesKeepsCounts) {
  {
    auto small = OpenOrDie(Options("small"));
    ASSERT_NE(small, nullptr);
    const StateId id = small->RegisterState("count", StateKind::kValue);
    EXPECT_EQ(CountRounds(small.get(), id, 10000, 1000, 3), 2u * 10000);  // ~430 KB of cache
    ASSERT_LT(small->CacheBytesForTest(), size_t{1} << 20);
    for (int i = 0; i < 10000; i += 97) {
      EXPECT_EQ(GetOr(small.get(), id, absl::StrCat("k", i)), "3");
    }
  }
  constexpr int kKeys = 150000;
  StateBackendOptions o = Options("evicting");
  o.cache_bytes = size_t{5} << 20;  // ~6.9 MB of entries: evictions, the cache above 1 MiB
  auto b = OpenOrDie(o);
  ASSERT_NE(b, nullptr);
  const StateId id = b->RegisterState("count", StateKind::kValue);
  CountRounds(b.get(), id, kKeys, 1000, 2);
  absl::StatusOr<proto::KeyedStateHandle> handle = Checkpoint(b.get(), 1, "chk-1/op");
  ASSERT_OK(handle);
  // A third round after the checkpoint: hits, misses and evictions mixed.
  std::vector<std::string> names;
  for (int i = 0; i < kKeys; ++i) names.push_back(absl::StrCat("k", i));
  for (int start = 0; start < kKeys; start += 1000) {
    std::vector<KeyInGroup> batch;
    for (int i = start; i < start + 1000; ++i) batch.push_back({names[i], KeyGroupOf(names[i])});
    ASSERT_OK(b->Prefetch(id, batch));
    for (size_t i = 0; i < batch.size(); ++i) {
      std::string v;
      absl::StatusOr<bool> found = b->GetOfBatch(id, batch, i, &v);
      ASSERT_OK(found);
      ASSERT_TRUE(*found) << names[start + i];
      ASSERT_EQ(v, "2") << names[start + i];
      ASSERT_OK(b->PutOfBatch(id, batch, i, "3"));
    }
  }
  EXPECT_LE(b->CacheBytesForTest(), o.cache_bytes + (size_t{1} << 20));
  for (int i = 0; i < kKeys; ++i) ASSERT_EQ(GetOr(b.get(), id, names[i]), "3") << i;
  b.reset();
  auto restored = KeyedStateBackend::Restore(Options("evicting-restored"), {*handle}, job_dir_);
  ASSERT_OK(restored);
  const StateId rid = (*restored)->RegisterState("count", StateKind::kValue);
  for (int i = 0; i < kKeys; ++i) ASSERT_EQ(GetOr(restored->get(), rid, names[i]), "2") << i;
}

// Prepare(), the setting of the tests below (the same-batch one sets up its own): a backend
// restored from a checkpoint holding counts of "key-a" (5), "key-n" (7) and "key-c" (1), so
// its cache starts empty with its CLOCK hand at the first slot, and a budget between one and
// two of these entries (no new-key filter, whose bytes would count too). A Get() of key-a
// caches it in slot 0; Prefetch() of {key-a, key-n}
// takes key-a's entry (found cached) and loads key-n, which exceeds the budget: its closing
// eviction clears both reference bits, then frees key-a's entry, and only it.
class BatchAfterPrefetchEvictionTest : public KeyedStateBackendTest {
 protected:
  void Prepare(const std::string& name) {
    ASSERT_NO_FATAL_FAILURE(CheckpointCounts(name));
    // The bytes of an empty cache and of one and two cached entries (all of one size).
    auto probe = RestoreWithBudget(name + "-probe", size_t{1} << 20);
    ASSERT_NE(probe, nullptr);
    const StateId probe_id = probe->RegisterState("count", StateKind::kValue);
    const size_t empty = probe->CacheBytesForTest();
    ASSERT_EQ(GetOr(probe.get(), probe_id, "key-a"), "5");
    one_ = probe->CacheBytesForTest();
    ASSERT_EQ(GetOr(probe.get(), probe_id, "key-n"), "7");
    two_ = probe->CacheBytesForTest();
    ASSERT_EQ(two_ - one_, one_ - empty);

    b_ = RestoreWithBudget(name, one_ + (two_ - one_) / 2);
    ASSERT_NE(b_, nullptr);
    id_ = b_->RegisterState("count", StateKind::kValue);
    ASSERT_EQ(GetOr(b_.get(), id_, "key-a"), "5");
    ASSERT_EQ(b_->CacheBytesForTest(), one_);
    ASSERT_OK(b_->Prefetch(id_, batch_));
    // key-a found cached (only key-n read from the store), key-n loaded, then one entry freed.
    ASSERT_EQ(b_->StoreReadsForTest(), 2);
    ASSERT_EQ(b_->CacheBytesForTest(), one_);
  }

  // A checkpoint (handle_) of the counts; b_ is closed.
  void CheckpointCounts(const std::string& name) {
    b_.reset();
    auto writer = OpenOrDie(Options(name + "-writer"));
    ASSERT_NE(writer, nullptr);
    const StateId id = writer->RegisterState("count", StateKind::kValue);
    for (const auto& [key, count] :
         {std::pair<std::string, int>{"key-a", 5}, {"key-n", 7}, {"key-c", 1}}) {
      SetKey(writer.get(), key);
      ASSERT_OK(writer->Put(id, std::to_string(count)));
    }
    absl::StatusOr<proto::KeyedStateHandle> handle =
        Checkpoint(writer.get(), 1, absl::StrCat("chk-1/", name));
    ASSERT_OK(handle);
    handle_ = *handle;
  }

  // A GetOfBatch() of key-c through another span (key-c at key-a's index) falls back to a Get()
  // that caches key-c in the slot Prefetch()'s eviction freed (the last freed), and evicts
  // nothing.
  void ReuseTheFreedSlotForKeyC() {
    const std::vector<KeyInGroup> other = {{"key-c", KeyGroupOf("key-c")}, batch_[1]};
    std::string v;
    absl::StatusOr<bool> found = b_->GetOfBatch(id_, other, 0, &v);
    ASSERT_OK(found);
    ASSERT_TRUE(*found);
    ASSERT_EQ(v, "1");
    ASSERT_EQ(b_->CacheBytesForTest(), two_);
  }

  // GetOfBatch() of key-a: its count, 5, read from the store (its entry was the one freed).
  void ExpectBatchReadOfKeyA() {
    const uint64_t reads = b_->StoreReadsForTest();
    std::string v;
    absl::StatusOr<bool> found = b_->GetOfBatch(id_, batch_, 0, &v);
    ASSERT_OK(found);
    ASSERT_TRUE(*found);
    ASSERT_EQ(v, "5");
    ASSERT_EQ(b_->StoreReadsForTest(), reads + 1);
  }

  std::unique_ptr<KeyedStateBackend> RestoreWithBudget(const std::string& name,
                                                       size_t cache_bytes) {
    StateBackendOptions o = Options(name);
    o.cache_bytes = cache_bytes;
    o.new_key_filter = false;
    auto b = KeyedStateBackend::Restore(o, {handle_}, job_dir_);
    EXPECT_TRUE(b.ok()) << b.status();
    return b.ok() ? std::move(b).value() : nullptr;
  }

  // Every count as a Get() reads it.
  void ExpectCounts(const std::string& a, const std::string& n, const std::string& c) {
    EXPECT_EQ(GetOr(b_.get(), id_, "key-a"), a);
    EXPECT_EQ(GetOr(b_.get(), id_, "key-n"), n);
    EXPECT_EQ(GetOr(b_.get(), id_, "key-c"), c);
  }

  const std::vector<KeyInGroup> batch_ = {{"key-a", KeyGroupOf("key-a")},
                                          {"key-n", KeyGroupOf("key-n")}};
  proto::KeyedStateHandle handle_;
  size_t one_ = 0;
  size_t two_ = 0;
  std::unique_ptr<KeyedStateBackend> b_;
  StateId id_ = -1;
};

// Prefetch()'s closing eviction freed key-a's entry and a fallback GetOfBatch() of key-c
// cached key-c in that slot: a later GetOfBatch() of key-a (then its PutOfBatch()), or a
// PutOfBatch() of key-a right after key-c took the slot (no read of key-a in between, which
// would evict first), must not take the slot, which holds key-c now. key-a's count is read and
// written, key-c's stays.
TEST_F(BatchAfterPrefetchEvictionTest, KeyInTheFreedSlotIsNotTheFirstKeys) {
  for (bool read_a : {true, false}) {
    SCOPED_TRACE(read_a ? "GetOfBatch of key-a" : "PutOfBatch of key-a alone");
    ASSERT_NO_FATAL_FAILURE(Prepare(read_a ? "reused-read" : "reused-write"));
    ASSERT_NO_FATAL_FAILURE(ReuseTheFreedSlotForKeyC());
    if (read_a) {
      ASSERT_NO_FATAL_FAILURE(ExpectBatchReadOfKeyA());
    }
    ASSERT_OK(b_->PutOfBatch(id_, batch_, 0, "6"));
    ExpectCounts("6", "7", "1");
  }
}

// The same within one batch, in the aggregate's order: key-a's entry is dirty (a Put()) and the
// whole budget is reserved, so Prefetch() of {key-c, key-a} loads key-c and its closing
// eviction frees both entries, the clean key-c's first and the dirty key-a's last (after writing
// it). GetOfBatch() of key-c (loaded by the read-ahead: no entry kept for it) falls back to a
// Get() that caches key-c in key-a's freed slot; GetOfBatch() of key-a (then PutOfBatch() of
// both) and PutOfBatch() of key-a alone must not take that slot.
TEST_F(BatchAfterPrefetchEvictionTest, KeyOfTheSameBatchInTheFreedSlotIsNotTheFirstKeys) {
  for (bool read_a : {true, false}) {
    SCOPED_TRACE(read_a ? "GetOfBatch of key-a" : "PutOfBatch of key-a alone");
    const std::string name = read_a ? "batch-read" : "batch-write";
    ASSERT_NO_FATAL_FAILURE(CheckpointCounts(name));
    b_ = RestoreWithBudget(name, size_t{1} << 20);
    ASSERT_NE(b_, nullptr);
    id_ = b_->RegisterState("count", StateKind::kValue);
    SetKey(b_.get(), "key-a");
    ASSERT_OK(b_->Put(id_, "5"));
    b_->ReserveCacheBytes(size_t{1} << 20);
    const std::vector<KeyInGroup> batch = {{"key-c", KeyGroupOf("key-c")}, batch_[0]};
    ASSERT_OK(b_->Prefetch(id_, batch));
    ASSERT_EQ(b_->StoreReadsForTest(), 1);  // key-c
    ASSERT_EQ(b_->CacheBytesForTest(), 0);
    std::string v;
    absl::StatusOr<bool> found = b_->GetOfBatch(id_, batch, 0, &v);
    ASSERT_OK(found);
    ASSERT_TRUE(*found);
    ASSERT_EQ(v, "1");
    ASSERT_EQ(b_->StoreReadsForTest(), 2);  // key-c again, into key-a's freed slot
    if (read_a) {
      found = b_->GetOfBatch(id_, batch, 1, &v);
      ASSERT_OK(found);
      ASSERT_TRUE(*found);
      ASSERT_EQ(v, "5");
      ASSERT_OK(b_->PutOfBatch(id_, batch, 0, "2"));
    }
    ASSERT_OK(b_->PutOfBatch(id_, batch, 1, "6"));
    ExpectCounts("6", "7", read_a ? "2" : "1");
  }
}

// Prefetch()'s closing eviction freed key-a's entry (a free slot: no key, no value, not marked
// deleted): GetOfBatch() of key-a does not take it and reads key-a's count (not 0 bytes).
TEST_F(BatchAfterPrefetchEvictionTest, ReadOfAKeyNeverTakesItsFreedSlot) {
  ASSERT_NO_FATAL_FAILURE(Prepare("freed-read"));
  ASSERT_NO_FATAL_FAILURE(ExpectBatchReadOfKeyA());
  ASSERT_OK(b_->PutOfBatch(id_, batch_, 0, "6"));
  ExpectCounts("6", "7", "1");
}

// Nor does PutOfBatch() of key-a right after Prefetch(): the count it writes is key-a's, in
// a checkpoint and in the cache. (The checkpoint is checked first: a write into a freed slot
// would have overwritten the cache's list of free blocks, which the next read then follows.)
TEST_F(BatchAfterPrefetchEvictionTest, WriteOfAKeyNeverTakesItsFreedSlot) {
  ASSERT_NO_FATAL_FAILURE(Prepare("freed-write"));
  ASSERT_OK(b_->PutOfBatch(id_, batch_, 0, "6"));
  absl::StatusOr<proto::KeyedStateHandle> handle =
      Checkpoint(b_.get(), 2, "chk-2/freed-write");
  ASSERT_OK(handle);
  auto restored = KeyedStateBackend::Restore(Options("freed-write-restored"), {*handle}, job_dir_);
  ASSERT_OK(restored);
  const StateId id = (*restored)->RegisterState("count", StateKind::kValue);
  ASSERT_EQ(GetOr(restored->get(), id, "key-a"), "6");
  ASSERT_EQ(GetOr(restored->get(), id, "key-n"), "7");
  ASSERT_EQ(GetOr(restored->get(), id, "key-c"), "1");
  ExpectCounts("6", "7", "1");
}

// A new key's read (absent) caches it with room for the size of the value its state last
// wrote, so the first write of its value fits the entry it has: the cache's bytes do not move
// at the write, and each key ends up taking what the first one took. Alike through Get/Put and
// through a batch's Prefetch/GetOfBatch/PutOfBatch.
TEST_F(KeyedStateBackendTest, FirstValueOfANewKeyFillsTheRoomItsReadLeft) {
  auto b = OpenOrDie(Options("value-room"));
  ASSERT_NE(b, nullptr);
  const StateId id = b->RegisterState("count", StateKind::kValue);
  const std::string value(25, 'x');
  const size_t empty = b->CacheBytesForTest();
  SetKey(b.get(), "key-a");
  ASSERT_OK(b->Put(id, value));
  const size_t one = b->CacheBytesForTest() - empty;
  SetKey(b.get(), "key-b");
  std::string v;
  absl::StatusOr<bool> found = b->Get(id, &v);
  ASSERT_OK(found);
  EXPECT_FALSE(*found);
  EXPECT_EQ(b->CacheBytesForTest() - empty, 2 * one);
  ASSERT_OK(b->Put(id, value));
  EXPECT_EQ(b->CacheBytesForTest() - empty, 2 * one);
  std::vector<std::string> keys = {"key-c", "key-d"};
  std::vector<KeyInGroup> batch;
  for (const std::string& k : keys) batch.push_back({k, KeyGroupOf(k)});
  ASSERT_OK(b->Prefetch(id, batch));
  for (size_t i = 0; i < batch.size(); ++i) {
    found = b->GetOfBatch(id, batch, i, &v);
    ASSERT_OK(found);
    EXPECT_FALSE(*found);
  }
  EXPECT_EQ(b->CacheBytesForTest() - empty, 4 * one);
  for (size_t i = 0; i < batch.size(); ++i) ASSERT_OK(b->PutOfBatch(id, batch, i, value));
  EXPECT_EQ(b->CacheBytesForTest() - empty, 4 * one);
  for (const char* k : {"key-a", "key-b", "key-c", "key-d"}) EXPECT_EQ(GetOr(b.get(), id, k), value);
}

// A read-ahead of more keys than the cache holds leaves the cache within its budget, and the
// values read after it are those stored (some were loaded and evicted again).
TEST_F(KeyedStateBackendTest, PrefetchKeepsTheCacheWithinItsBudget) {
  StateBackendOptions o = Options("prefetch-budget");
  o.cache_bytes = 8 << 10;  // about 150 of these entries
  auto b = OpenOrDie(o);
  ASSERT_NE(b, nullptr);
  const StateId id = b->RegisterState("v", StateKind::kValue);
  std::vector<std::string> keys;
  for (int i = 0; i < 2000; ++i) keys.push_back(absl::StrCat("key", i));
  for (const std::string& k : keys) {
    SetKey(b.get(), k);
    ASSERT_OK(b->Put(id, absl::StrCat("value of ", k)));
  }
  ASSERT_OK(b->SnapshotSync(1));  // all in RocksDB now
  std::vector<KeyInGroup> batch;
  for (size_t i = 0; i < 1000; ++i) batch.push_back({keys[i * 2], KeyGroupOf(keys[i * 2])});
  ASSERT_OK(b->Prefetch(id, batch));
  EXPECT_LE(b->CacheBytesForTest(), o.cache_bytes);
  for (const KeyInGroup& k : batch) {
    EXPECT_EQ(GetOr(b.get(), id, std::string(k.key)), absl::StrCat("value of ", k.key));
  }
}

// Each eviction or snapshot of many entries ingests one SST spanning the whole key range: it
// lands in L0, and an L0->L1 compaction rewrites all of L1. The store leaves 20 such files in L0
// uncompacted (the trigger is 32: at 16 a compaction would be pending or running, or would have
// emptied L0), and every value still reads back.
TEST_F(KeyedStateBackendTest, TwentyIngestedFilesStayInLevel0Uncompacted) {
  StateBackendOptions o = Options("l0-trigger");
  o.snapshot_ingest_min_entries = 1;
  auto b = OpenOrDie(o);
  ASSERT_NE(b, nullptr);
  const StateId id = b->RegisterState("v", StateKind::kValue);
  const std::string l0 = "rocksdb.num-files-at-level0";
  std::map<std::string, std::string> want;
  // Ingested files that overlap nothing below go to deeper levels first, so the rounds go on
  // until L0 holds 20 files (each round's keys span the key groups: every file overlaps).
  for (int round = 0; round < 60 && b->StoreIntPropertyForTest(l0) < 20; ++round) {
    for (int j = 0; j < 16; ++j) {
      const std::string key = absl::StrCat("k", j, "-", round);
      SetKey(b.get(), key);
      ASSERT_OK(b->Put(id, absl::StrCat("v", round)));
      want[key] = absl::StrCat("v", round);
    }
    ASSERT_OK(b->SnapshotSync(round + 1));
  }
  EXPECT_EQ(b->StoreIntPropertyForTest(l0), 20);
  EXPECT_EQ(b->StoreIntPropertyForTest("rocksdb.compaction-pending"), 0);
  EXPECT_EQ(b->StoreIntPropertyForTest("rocksdb.num-running-compactions"), 0);
  for (const auto& [key, value] : want) EXPECT_EQ(GetOr(b.get(), id, key), value) << key;
}

// RocksDB allocates and zeroes a memtable's bloom filter whole with each memtable (every open,
// every flush). Sized as 5% of a 64 MiB write buffer it was 3.4 MB of every keyed subtask's
// open; it is now at most 256 KiB, so an empty backend's state size (its memtable) stays far
// below that.
TEST_F(KeyedStateBackendTest, EmptyMemtableDoesNotHoldAFullSizeBloomFilter) {
  StateBackendOptions o = Options("bloom");
  o.write_buffer_bytes = 64 << 20;
  o.size_bytes = std::make_shared<Gauge>();
  auto backend = OpenOrDie(o);
  ASSERT_NE(backend, nullptr);
  backend.reset();  // publishes the size: SSTs (none), memtables and cache (empty)
  EXPECT_GT(o.size_bytes->Value(), 0);
  EXPECT_LT(o.size_bytes->Value(), 1 << 20);
}

// A read served by the read-ahead counts as the miss it would have been: with a cache that
// evicts nothing, hits and misses are those of the same reads without Prefetch(). And Prefetch
// refuses ids of unknown states and of other kinds.
TEST_F(KeyedStateBackendTest, PrefetchCountsItsReadsAsMisses) {
  uint64_t hits[2], misses[2];
  for (int b = 0; b < 2; ++b) {
    StateBackendOptions o = Options(absl::StrCat("count", b));
    o.cache_hits = std::make_shared<Counter>();
    o.cache_misses = std::make_shared<Counter>();
    auto backend = OpenOrDie(o);
    ASSERT_NE(backend, nullptr);
    const StateId id = backend->RegisterState("v", StateKind::kValue);
    const StateId list = backend->RegisterState("l", StateKind::kList);
    std::vector<std::string> keys;
    for (int i = 0; i < 30; ++i) keys.push_back(absl::StrCat("key", i % 20));
    std::vector<KeyInGroup> batch;
    for (const std::string& k : keys) batch.push_back({k, KeyGroupOf(k)});
    for (int pass = 0; pass < 2; ++pass) {
      // Pass 0: every key new; pass 1: every key cached (the first pass wrote them).
      if (b == 0) ASSERT_OK(backend->Prefetch(id, batch));
      for (const std::string& k : keys) {
        SetKey(backend.get(), k);
        std::string v;
        ASSERT_OK(backend->Get(id, &v));
        ASSERT_OK(backend->Put(id, "x"));
      }
    }
    EXPECT_THAT(backend->Prefetch(99, batch),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("state")));
    EXPECT_THAT(backend->Prefetch(list, batch),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("state")));
    ASSERT_OK(backend->SnapshotSync(1));  // publishes the counts
    hits[b] = o.cache_hits->Value();
    misses[b] = o.cache_misses->Value();
  }
  EXPECT_EQ(misses[1], 20u);  // the first read of each key
  EXPECT_EQ(hits[1], 40u);
  EXPECT_EQ(misses[0], misses[1]);
  EXPECT_EQ(hits[0], hits[1]);
}

// The new-key filter (StateBackendOptions::new_key_filter) only spares RocksDB reads: two
// backends, one with it and one without, given the same operations (value state read,
// read-modify-written, blindly written and deleted, with and without TTL; list appends, reads
// and clears; map gets, puts and removes; read-ahead batches; keys new and old; snapshots; a
// restore of the same key groups, then one of half of them, which fill the filter from the
// restored keys) give the same result for every call, while the one with the filter reads
// fewer keys from RocksDB. Caches of 16 KiB (the filter outgrows half of it and is dropped
// midway) and 256 KiB (it stays), evictions written in write batches or ingested.
TEST_F(KeyedStateBackendTest, NewKeyFilterChangesNoResult) {
  for (const auto& [cache_bytes, ingest_min] :
       std::vector<std::pair<size_t, size_t>>{
           {16 << 10, 4096}, {256 << 10, 4096}, {256 << 10, 1}}) {
    SCOPED_TRACE(absl::StrCat("cache ", cache_bytes, " ingest from ", ingest_min));
    const std::string name = absl::StrCat("filter", cache_bytes, "-", ingest_min);
    std::unique_ptr<KeyedStateBackend> backends[2];  // [0] with the filter, [1] without
    FourStates ids[2];
    auto options = [&](int b, const std::string& stage, KeyGroupRange range) {
      StateBackendOptions o = Options(absl::StrCat(name, "-", stage, "-", b), range);
      o.cache_bytes = cache_bytes;
      o.snapshot_ingest_min_entries = ingest_min;
      o.new_key_filter = b == 0;
      return o;
    };
    for (int b = 0; b < 2; ++b) {
      backends[b] = OpenOrDie(options(b, "open", {0, 127}));
      ASSERT_NE(backends[b], nullptr);
      ids[b] = RegisterFourStates(backends[b].get());
    }
    uint64_t rng = 7;
    auto next = [&rng](uint64_t n) {
      rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
      return (rng >> 33) % n;
    };
    // What one call gave, as text (status, found, value, list, map entries).
    auto apply = [&](KeyedStateBackend* be, const FourStates& id, int op, const std::string& key,
                     int round) -> std::string {
      SetKey(be, key);
      std::string v;
      std::vector<std::string> list;
      std::vector<std::pair<std::string, std::string>> entries;
      const StateId value = op % 2 == 0 ? id.value : id.ttl;
      const std::string user_key = absl::StrCat("u", next(3));
      absl::Status status;
      std::string out;
      switch (op) {
        case 0:
        case 1: {  // a read, then a read-modify-write
          absl::StatusOr<bool> found = be->Get(value, &v);
          status = found.status();
          if (found.ok()) {
            out = *found ? v : "<absent>";
            status = be->Put(value, absl::StrCat(*found ? v : "", "+", round));
          }
          break;
        }
        case 2:
        case 3:
          status = be->Put(value, absl::StrCat("w", round));
          break;
        case 4:
        case 5:
          status = be->Delete(value);
          break;
        case 6:
          status = be->Append(id.list, absl::StrCat("e", round));
          break;
        case 7:
          status = be->GetList(id.list, &list);
          out = absl::StrJoin(list, ",");
          break;
        case 8:
          status = be->ClearList(id.list);
          break;
        case 9: {
          absl::StatusOr<bool> found = be->MapGet(id.map, user_key, &v);
          status = found.status();
          if (found.ok()) out = *found ? v : "<absent>";
          break;
        }
        case 10:
          status = be->MapPut(id.map, user_key, absl::StrCat("m", round));
          break;
        case 11:
          status = be->MapRemove(id.map, user_key);
          break;
        default:
          status = be->MapEntries(id.map, &entries);
          for (const auto& [k, mv] : entries) absl::StrAppend(&out, k, "=", mv, ";");
          break;
      }
      return absl::StrCat(status.ToString(), " ", out);
    };
    int written = 0;  // keys k0..k<written - 1> have been used
    int64_t checkpoint = 0;
    KeyGroupRange range{0, 127};
    for (int round = 0; round < 900; ++round) {
      std::vector<std::string> keys;
      const size_t n = 1 + next(30);
      for (size_t i = 0; i < n; ++i) {
        // Half new keys, half old ones.
        keys.push_back(absl::StrCat("k", next(2) == 0 || written == 0 ? written++ : next(written)));
      }
      std::vector<KeyInGroup> batch;
      for (const std::string& k : keys) batch.push_back({k, KeyGroupOf(k)});
      const int prefetched = static_cast<int>(next(2));
      for (int b = 0; b < 2; ++b) {
        ASSERT_OK(backends[b]->Prefetch(prefetched == 0 ? ids[b].value : ids[b].ttl, batch));
      }
      for (const std::string& k : keys) {
        const int op = static_cast<int>(next(13));
        const uint64_t saved = rng;
        const std::string with = apply(backends[0].get(), ids[0], op, k, round);
        rng = saved;  // the same user key for both
        const std::string without = apply(backends[1].get(), ids[1], op, k, round);
        ASSERT_EQ(with, without) << "round " << round << " op " << op << " key " << k;
      }
      if (round % 7 == 0) clock_.AdvanceNanos(2'000'000'000);  // TTL is 5 s
      if (round % 100 == 99 || round == 300 || round == 600) {
        ++checkpoint;
        proto::KeyedStateHandle handles[2];
        for (int b = 0; b < 2; ++b) {
          auto h = Checkpoint(backends[b].get(), checkpoint,
                              absl::StrCat("chk-", checkpoint, "/", name, "-", b));
          ASSERT_OK(h);
          handles[b] = *h;
        }
        if (round == 300 || round == 600) {
          // The same key groups, then half of them (rescaling).
          if (round == 600) range = {0, 63};
          for (int b = 0; b < 2; ++b) {
            backends[b].reset();
            auto r = KeyedStateBackend::Restore(
                options(b, absl::StrCat("restore", round), range), {handles[b]}, job_dir_);
            ASSERT_OK(r);
            backends[b] = std::move(r).value();
            ids[b] = RegisterFourStates(backends[b].get());
          }
        }
      }
    }
    // Every key used, read once more.
    for (int i = 0; i < written; ++i) {
      const std::string k = absl::StrCat("k", i);
      for (int op : {0, 7, 9}) {
        const uint64_t saved = rng;
        const std::string with = apply(backends[0].get(), ids[0], op, k, 0);
        rng = saved;
        ASSERT_EQ(with, apply(backends[1].get(), ids[1], op, k, 0)) << k << " op " << op;
      }
    }
    EXPECT_GT(written, 5000);
    // (Since the last restore. With 16 KiB the filter was dropped, and the cache it shared
    // meanwhile missed more.)
    if (cache_bytes > (16 << 10)) {
      EXPECT_LT(backends[0]->StoreReadsForTest(), backends[1]->StoreReadsForTest() / 2);
    }
  }
}

// With the filter, a backend opened empty reads no key it never wrote from RocksDB (but for
// the filter's rare false positives), and neither does one restored (same key groups, or
// rescaled), whose filter holds the restored keys: those read back as they were.
TEST_F(KeyedStateBackendTest, NewKeyFilterSparesReadsOfKeysNeverWritten) {
  StateBackendOptions o = Options("written");
  o.cache_bytes = 256 << 10;  // ~2000 of these entries: most of the 10000 keys leave the cache
  auto b = OpenOrDie(o);
  ASSERT_NE(b, nullptr);
  const StateId id = b->RegisterState("v", StateKind::kValue);
  for (int i = 0; i < 10000; ++i) {
    SetKey(b.get(), absl::StrCat("old", i));
    ASSERT_OK(b->Put(id, std::string(64, static_cast<char>('a' + i % 26))));
  }
  auto handle = Checkpoint(b.get(), 1, "chk-1/written");
  ASSERT_OK(handle);
  auto handle_of_half = [&]() {  // key groups [0, 63] of the same state, as a rescale restores
    return KeyedStateBackend::Restore(Options("half", {0, 63}), {*handle}, job_dir_);
  };
  auto same = KeyedStateBackend::Restore(Options("same"), {*handle}, job_dir_);
  ASSERT_OK(same);
  auto half = handle_of_half();
  ASSERT_OK(half);
  StateBackendOptions no_filter = Options("same-without");
  no_filter.new_key_filter = false;
  auto without = KeyedStateBackend::Restore(no_filter, {*handle}, job_dir_);
  ASSERT_OK(without);
  struct Case {
    const char* name;
    KeyedStateBackend* backend;
    int last_key_group;
    bool filter;
  };
  for (const Case& c : {Case{"opened", b.get(), 127, true}, Case{"same", same->get(), 127, true},
                        Case{"half", half->get(), 63, true},
                        Case{"without", without->get(), 127, false}}) {
    SCOPED_TRACE(c.name);
    KeyedStateBackend* be = c.backend;
    const StateId v = be->RegisterState("v", StateKind::kValue);
    const uint64_t before = be->StoreReadsForTest();
    int new_keys = 0;
    for (int i = 0; i < 10000; ++i) {
      const std::string k = absl::StrCat("new", i);
      if (KeyGroupOf(k) > c.last_key_group) continue;
      ++new_keys;
      EXPECT_EQ(GetOr(be, v, k), "<absent>");
    }
    const uint64_t new_reads = be->StoreReadsForTest() - before;
    if (c.filter) {
      EXPECT_LT(new_reads, static_cast<uint64_t>(new_keys) * 3 / 100);  // ~1% false positives
    } else {
      EXPECT_EQ(new_reads, static_cast<uint64_t>(new_keys));
    }
    int old_keys = 0;
    for (int i = 0; i < 10000; ++i) {
      const std::string k = absl::StrCat("old", i);
      if (KeyGroupOf(k) > c.last_key_group) continue;
      ++old_keys;
      ASSERT_EQ(GetOr(be, v, k), std::string(64, static_cast<char>('a' + i % 26))) << k;
    }
    EXPECT_GT(old_keys, 4000);
  }
}

TEST_F(KeyedStateBackendTest, TtlExpiresEntries) {
  for (size_t cache_bytes : {size_t{32} << 20, size_t{0}}) {  // from the cache / from RocksDB
    SCOPED_TRACE(cache_bytes);
    StateBackendOptions o = Options(absl::StrCat("ttl", cache_bytes));
    o.cache_bytes = cache_bytes;
    auto b = OpenOrDie(o);
    ASSERT_NE(b, nullptr);
    StateId value = b->RegisterState("v", StateKind::kValue, /*ttl_ms=*/1000);
    StateId forever = b->RegisterState("f", StateKind::kValue);
    StateId list = b->RegisterState("l", StateKind::kList, 1000);
    StateId map = b->RegisterState("m", StateKind::kMap, 1000);
    SetKey(b.get(), "a");
    ASSERT_OK(b->Put(value, "x"));
    ASSERT_OK(b->Put(forever, "y"));
    ASSERT_OK(b->Append(list, "e1"));
    ASSERT_OK(b->MapPut(map, "u1", "1"));
    clock_.AdvanceNanos(600'000'000);
    ASSERT_OK(b->MapPut(map, "u2", "2"));  // written later: expires later
    ASSERT_OK(b->Append(list, "e2"));      // refreshes the whole list
    EXPECT_EQ(GetOr(b.get(), value, "a"), "x");
    clock_.AdvanceNanos(500'000'000);  // 1100 ms after the first writes
    EXPECT_EQ(GetOr(b.get(), value, "a"), "<absent>");
    EXPECT_EQ(GetOr(b.get(), forever, "a"), "y");
    std::string v;
    EXPECT_FALSE(*b->MapGet(map, "u1", &v));
    ASSERT_TRUE(*b->MapGet(map, "u2", &v));
    std::vector<std::pair<std::string, std::string>> entries;
    ASSERT_OK(b->MapEntries(map, &entries));
    EXPECT_THAT(entries, ElementsAre(Pair("u2", "2")));
    std::vector<std::string> elements;
    ASSERT_OK(b->GetList(list, &elements));
    EXPECT_THAT(elements, ElementsAre("e1", "e2"));
    int visited = 0;
    ASSERT_OK(b->ForEachKey(value, [&](absl::string_view) {
      ++visited;
      return absl::OkStatus();
    }));
    EXPECT_EQ(visited, 0);
    clock_.AdvanceNanos(1'000'000'000);
    ASSERT_OK(b->GetList(list, &elements));
    EXPECT_TRUE(elements.empty());
    ASSERT_OK(b->MapEntries(map, &entries));
    EXPECT_TRUE(entries.empty());
  }
}

TEST_F(KeyedStateBackendTest, TimersFireInOrderAndDedupe) {
  auto b = OpenOrDie(Options("a"));
  ASSERT_NE(b, nullptr);
  std::vector<std::pair<std::string, int64_t>> timers = {
      {"a", 30}, {"b", 10}, {"c", -5}, {"d", 20}, {"a", 10}, {"e", 100}, {"b", 10}, {"f", 25}};
  for (const auto& [key, ts] : timers) {
    SetKey(b.get(), key);
    ASSERT_OK(b->RegisterTimer(TimerDomain::kEventTime, ts));
  }
  SetKey(b.get(), "g");
  ASSERT_OK(b->RegisterTimer(TimerDomain::kProcessingTime, 15));
  SetKey(b.get(), "f");
  ASSERT_OK(b->DeleteTimer(TimerDomain::kEventTime, 25));

  std::vector<std::pair<std::string, int64_t>> fired;
  std::string current;
  auto record = [&](int64_t ts) {
    // The timer's key is the current key: read it back through state.
    fired.emplace_back(current, ts);
    return absl::OkStatus();
  };
  // Use value state to learn the current key inside the callback.
  StateId name = b->RegisterState("name", StateKind::kValue);
  for (const char* key : {"a", "b", "c", "d", "e", "f", "g"}) {
    SetKey(b.get(), key);
    ASSERT_OK(b->Put(name, key));
  }
  auto fire = [&](TimerDomain domain, int64_t up_to) {
    fired.clear();
    return b->FireTimers(domain, up_to, [&](int64_t ts) {
      std::string v;
      auto found = b->Get(name, &v);
      if (!found.ok()) return found.status();
      current = v;
      return record(ts);
    });
  };
  ASSERT_OK(fire(TimerDomain::kEventTime, 20));
  ASSERT_EQ(fired.size(), 4u);
  EXPECT_EQ(fired[0], std::make_pair(std::string("c"), int64_t{-5}));
  EXPECT_EQ(fired[1].second, 10);
  EXPECT_EQ(fired[2].second, 10);
  EXPECT_EQ((std::set<std::string>{fired[1].first, fired[2].first}),
            (std::set<std::string>{"a", "b"}));
  EXPECT_EQ(fired[3], std::make_pair(std::string("d"), int64_t{20}));
  ASSERT_OK(fire(TimerDomain::kEventTime, 20));
  EXPECT_TRUE(fired.empty());
  ASSERT_OK(fire(TimerDomain::kEventTime, 1000));
  EXPECT_THAT(fired, ElementsAre(Pair("a", 30), Pair("e", 100)));
  ASSERT_OK(fire(TimerDomain::kProcessingTime, 1000));
  EXPECT_THAT(fired, ElementsAre(Pair("g", 15)));

  // Callbacks may register due timers (they fire in the same call) and delete pending ones.
  SetKey(b.get(), "a");
  ASSERT_OK(b->RegisterTimer(TimerDomain::kEventTime, 2000));
  SetKey(b.get(), "b");
  ASSERT_OK(b->RegisterTimer(TimerDomain::kEventTime, 2001));
  std::vector<int64_t> seen;
  ASSERT_OK(b->FireTimers(TimerDomain::kEventTime, 3000, [&](int64_t ts) {
    seen.push_back(ts);
    if (ts == 2000) {
      SetKey(b.get(), "b");
      EXPECT_OK(b->DeleteTimer(TimerDomain::kEventTime, 2001));
      SetKey(b.get(), "c");
      EXPECT_OK(b->RegisterTimer(TimerDomain::kEventTime, 2500));
    }
    return absl::OkStatus();
  }));
  EXPECT_THAT(seen, ElementsAre(2000, 2500));
}

TEST_F(KeyedStateBackendTest, SnapshotRestoreSameRangeKeepsEverything) {
  StateBackendOptions o = Options("a", {0, 127});
  auto b = OpenOrDie(o);
  ASSERT_NE(b, nullptr);
  const auto [value, list, map, ttl] = RegisterFourStates(b.get());
  for (int i = 0; i < 200; ++i) {
    std::string key = absl::StrCat("k", i);
    SetKey(b.get(), key);
    ASSERT_OK(b->Put(value, absl::StrCat("v", i)));
    ASSERT_OK(b->Append(list, "x"));
    ASSERT_OK(b->Append(list, absl::StrCat("y", i)));
    ASSERT_OK(b->MapPut(map, "m1", absl::StrCat(i)));
    ASSERT_OK(b->MapPut(map, "m2", "z"));
    ASSERT_OK(b->Put(ttl, "soon"));
    ASSERT_OK(b->RegisterTimer(TimerDomain::kEventTime, 1000 - i));
  }
  auto handle = Checkpoint(b.get(), 1, "chk-1/op-0");
  ASSERT_OK(handle);
  EXPECT_FALSE(fs::exists(fs::path(o.local_dir) / "chk-1"));
  EXPECT_EQ(handle->operator_id(), "op");
  EXPECT_EQ(handle->range().first(), 0);
  EXPECT_EQ(handle->range().last(), 127);
  EXPECT_FALSE(handle->backend_id().empty());
  EXPECT_GT(handle->full_size(), 0);
  EXPECT_EQ(handle->full_size(), handle->incremental_size());
  bool has_sst = false;
  for (const auto& f : handle->files()) {
    if (f.shared()) {
      // SSTs, and MANIFEST, CURRENT and OPTIONS named by their content.
      if (absl::EndsWith(f.local_name(), ".sst")) {
        has_sst = true;
        EXPECT_EQ(f.name(), absl::StrCat(handle->backend_id(), "-", f.local_name()));
      }
      EXPECT_TRUE(absl::StartsWith(f.name(), absl::StrCat(handle->backend_id(), "-", f.local_name())))
          << f.name();
      EXPECT_TRUE(fs::exists(fs::path(job_dir_) / "shared" / f.name()));
    } else {
      EXPECT_TRUE(fs::exists(fs::path(job_dir_) / "chk-1/op-0" / f.name()));
    }
  }
  EXPECT_TRUE(has_sst);
  // Changes after the snapshot are not in it.
  SetKey(b.get(), "k0");
  ASSERT_OK(b->Put(value, "changed"));
  b.reset();

  clock_.AdvanceNanos(6'000'000'000);  // the TTL state expires
  auto restored = KeyedStateBackend::Restore(Options("b", {0, 127}), {*handle}, job_dir_);
  ASSERT_OK(restored);
  auto& r = *restored;
  // Register in another order: ids come from the snapshot's metadata.
  StateId map2 = r->RegisterState("m", StateKind::kMap);
  StateId ttl2 = r->RegisterState("t", StateKind::kValue, 5000);
  StateId value2 = r->RegisterState("v", StateKind::kValue);
  StateId list2 = r->RegisterState("l", StateKind::kList);
  std::vector<std::string> elements;
  std::vector<std::pair<std::string, std::string>> entries;
  for (int i = 0; i < 200; ++i) {
    std::string key = absl::StrCat("k", i);
    EXPECT_EQ(GetOr(r.get(), value2, key), absl::StrCat("v", i));
    EXPECT_EQ(GetOr(r.get(), ttl2, key), "<absent>");
    ASSERT_OK(r->GetList(list2, &elements));
    EXPECT_THAT(elements, ElementsAre("x", absl::StrCat("y", i)));
    ASSERT_OK(r->MapEntries(map2, &entries));
    EXPECT_THAT(entries, ElementsAre(Pair("m1", absl::StrCat(i)), Pair("m2", "z")));
  }
  std::vector<int64_t> fired;
  ASSERT_OK(r->FireTimers(TimerDomain::kEventTime, 1000, [&](int64_t ts) {
    EXPECT_EQ(GetOr(r.get(), value2, ""), "<absent>");  // any state call works here
    fired.push_back(ts);
    return absl::OkStatus();
  }));
  ASSERT_EQ(fired.size(), 200u);
  EXPECT_TRUE(std::is_sorted(fired.begin(), fired.end()));
  EXPECT_EQ(fired.front(), 801);
}

// SnapshotSync() writes many dirty entries as one ingested SST file, few through the memtable:
// both must snapshot the same state. The same workload (puts, deletes of stored and of never
// stored keys, TTL values, lists, maps; with and without evictions into the memtable between
// snapshots) runs with each path forced; every restored backend (the same range and a rescaled
// one) must equal an independent model of the state.
// The tests below run with StateBackendOptions::first_snapshot_all_hot on and off (a backend's
// first snapshot writes its entries into its delta file, or into RocksDB as later snapshots
// write new entries).
class FirstSnapshotModeTest : public KeyedStateBackendTest,
                              public ::testing::WithParamInterface<bool> {};
INSTANTIATE_TEST_SUITE_P(AllHotOrNot, FirstSnapshotModeTest, ::testing::Bool());

TEST_P(FirstSnapshotModeTest, IngestedSnapshotsEqualMemtableSnapshots) {
  constexpr int kKeys = 600;
  struct Model {
    std::map<std::string, std::string> values;
    std::map<std::string, std::vector<std::string>> lists;
    std::map<std::string, std::map<std::string, std::string>> maps;
  };
  Model model;
  {
    std::mt19937 rng(11);
    for (int round = 0; round < 3; ++round) {
      for (int i = 0; i < kKeys; ++i) {
        const std::string key = absl::StrCat("k", rng() % kKeys);
        switch (rng() % 5) {
          case 0: model.values.erase(key); break;
          case 1: model.lists[key].push_back(absl::StrCat("e", round, "-", i)); break;
          case 2: model.maps[key][absl::StrCat("u", rng() % 3)] = absl::StrCat(round); break;
          case 3: model.maps[key].erase(absl::StrCat("u", rng() % 3)); break;
          default: model.values[key] = absl::StrCat("v", round, "-", i); break;
        }
      }
    }
  }
  for (const bool ingest : {true, false}) {
    for (const size_t cache_bytes : {size_t{64} << 20, size_t{16} << 10}) {
      SCOPED_TRACE(absl::StrCat("ingest ", ingest, " cache ", cache_bytes));
      const std::string name = absl::StrCat("w", ingest, "-", cache_bytes);
      StateBackendOptions o = Options(name);
      o.cache_bytes = cache_bytes;
      o.snapshot_ingest_min_entries = ingest ? 1 : std::numeric_limits<size_t>::max();
      o.first_snapshot_all_hot = GetParam();  // round 0's entries into the delta file, or RocksDB
      auto b = OpenOrDie(o);
      ASSERT_NE(b, nullptr);
      const auto [value, list, map, ttl] = RegisterFourStates(b.get());
      // The same operations as the model, a checkpoint after each round.
      std::mt19937 rng(11);
      proto::KeyedStateHandle handle;
      for (int round = 0; round < 3; ++round) {
        for (int i = 0; i < kKeys; ++i) {
          const std::string key = absl::StrCat("k", rng() % kKeys);
          SetKey(b.get(), key);
          switch (rng() % 5) {
            case 0: ASSERT_OK(b->Delete(value)); break;
            case 1: ASSERT_OK(b->Append(list, absl::StrCat("e", round, "-", i))); break;
            case 2: ASSERT_OK(b->MapPut(map, absl::StrCat("u", rng() % 3), absl::StrCat(round))); break;
            case 3: ASSERT_OK(b->MapRemove(map, absl::StrCat("u", rng() % 3))); break;
            default: ASSERT_OK(b->Put(value, absl::StrCat("v", round, "-", i))); break;
          }
          ASSERT_OK(b->Put(ttl, "expires"));
        }
        auto h = Checkpoint(b.get(), round + 1, absl::StrCat(name, "/chk-", round + 1));
        ASSERT_OK(h);
        handle = *h;
        int ssts = 0;
        int deltas = 0;
        for (const auto& f : handle.files()) {
          ssts += absl::EndsWith(f.local_name(), ".sst") ? 1 : 0;
          deltas += f.local_name() == internal::kDeltaFileName ? 1 : 0;
        }
        if (cache_bytes < (size_t{1} << 20)) {
          // The cache evicts dirty entries: a snapshot writes every entry into RocksDB (a delta
          // file's entries would soon be written again by eviction).
          EXPECT_EQ(deltas, 0);
        } else if (round == 0 && GetParam()) {
          // The first snapshot into the delta file: RocksDB got only the memtable's state names.
          EXPECT_EQ(ssts, 1);
          EXPECT_EQ(deltas, 1);
        } else if (round == 0) {
          // New entries go to RocksDB: without evictions, the ingested file comes beside the
          // memtable's (state names); no delta file.
          EXPECT_EQ(ssts, ingest ? 2 : 1);
          EXPECT_EQ(deltas, 0);
        } else {
          EXPECT_EQ(deltas, 1);  // keys changed again
        }
      }
      b.reset();
      clock_.AdvanceNanos(6'000'000'000);  // the TTL state expires
      for (const KeyGroupRange range : {KeyGroupRange{0, 127}, KeyGroupRange{40, 90}}) {
        auto r = KeyedStateBackend::Restore(Options(absl::StrCat(name, "-r", range.first), range),
                                            {handle}, job_dir_);
        ASSERT_OK(r);
        const auto [value2, list2, map2, ttl2] = RegisterFourStates(r->get());
        for (int i = 0; i < kKeys; ++i) {
          const std::string key = absl::StrCat("k", i);
          const int kg = KeyGroupOf(key);
          if (kg < range.first || kg > range.last) continue;
          auto v = model.values.find(key);
          EXPECT_EQ(GetOr(r->get(), value2, key), v == model.values.end() ? "<absent>" : v->second)
              << key;
          EXPECT_EQ(GetOr(r->get(), ttl2, key), "<absent>") << key;
          std::vector<std::string> elements;
          ASSERT_OK((*r)->GetList(list2, &elements));
          EXPECT_EQ(elements, model.lists[key]) << key;
          std::vector<std::pair<std::string, std::string>> entries;
          ASSERT_OK((*r)->MapEntries(map2, &entries));
          const auto& m = model.maps[key];
          const std::vector<std::pair<std::string, std::string>> want(m.begin(), m.end());
          EXPECT_EQ(entries, want) << key;
        }
      }
    }
  }
}

// Timers live in memory and are rewritten into RocksDB at each snapshot: what fired or was
// deleted before a snapshot must not come back from it, at the same range or rescaled.
TEST_F(KeyedStateBackendTest, TimersInSnapshotsAreExactlyThePendingOnes) {
  auto b = OpenOrDie(Options("a"));
  ASSERT_NE(b, nullptr);
  std::map<std::pair<int64_t, std::string>, int> expected;  // (ts, key) -> key group
  for (int i = 0; i < 400; ++i) {
    std::string key = absl::StrCat("t", i);
    SetKey(b.get(), key);
    ASSERT_OK(b->RegisterTimer(TimerDomain::kEventTime, i));
    ASSERT_OK(b->RegisterTimer(TimerDomain::kEventTime, i));  // twice: fires once
    expected[{i, key}] = KeyGroupOf(key);
  }
  ASSERT_OK(Checkpoint(b.get(), 1, "chk-1"));  // timers 0..399 stored
  // Fire 0..99, delete every odd timer from 100 on, register 1000 for key t0.
  ASSERT_OK(b->FireTimers(TimerDomain::kEventTime, 99, [](int64_t) { return absl::OkStatus(); }));
  for (int i = 0; i < 100; ++i) expected.erase({i, absl::StrCat("t", i)});
  for (int i = 101; i < 400; i += 2) {
    std::string key = absl::StrCat("t", i);
    SetKey(b.get(), key);
    ASSERT_OK(b->DeleteTimer(TimerDomain::kEventTime, i));
    expected.erase({i, key});
  }
  // Changes that cancel out between two snapshots: stored t200 deleted and registered again
  // (kept), stored t300 deleted, registered, deleted (gone), new n1 registered then deleted.
  SetKey(b.get(), "t200");
  ASSERT_OK(b->DeleteTimer(TimerDomain::kEventTime, 200));
  ASSERT_OK(b->RegisterTimer(TimerDomain::kEventTime, 200));
  SetKey(b.get(), "t300");
  ASSERT_OK(b->DeleteTimer(TimerDomain::kEventTime, 300));
  ASSERT_OK(b->RegisterTimer(TimerDomain::kEventTime, 300));
  ASSERT_OK(b->DeleteTimer(TimerDomain::kEventTime, 300));
  expected.erase({300, "t300"});
  SetKey(b.get(), "n1");
  ASSERT_OK(b->RegisterTimer(TimerDomain::kProcessingTime, 2000));
  ASSERT_OK(b->DeleteTimer(TimerDomain::kProcessingTime, 2000));
  SetKey(b.get(), "t0");
  ASSERT_OK(b->RegisterTimer(TimerDomain::kEventTime, 1000));
  ASSERT_OK(b->DeleteTimer(TimerDomain::kEventTime, 5000));  // absent: no-op
  expected[{1000, "t0"}] = KeyGroupOf("t0");
  EXPECT_EQ(b->NextTimerLowerBound(TimerDomain::kEventTime), 100);
  EXPECT_EQ(b->NextTimerLowerBound(TimerDomain::kProcessingTime), INT64_MAX);
  auto handle = Checkpoint(b.get(), 2, "chk-2");
  ASSERT_OK(handle);
  b.reset();

  auto fire_all = [&](KeyedStateBackend* r) {
    std::vector<std::pair<int64_t, std::string>> fired;
    EXPECT_OK(r->FireTimers(TimerDomain::kEventTime, INT64_MAX, [&](int64_t ts) {
      fired.emplace_back(ts, std::string(r->CurrentKey()));
      return absl::OkStatus();
    }));
    return fired;
  };
  // Same range, then a snapshot of the restored backend (its stored timers are rewritten).
  auto r = KeyedStateBackend::Restore(Options("b"), {*handle}, job_dir_);
  ASSERT_OK(r);
  EXPECT_EQ((*r)->NextTimerLowerBound(TimerDomain::kEventTime), 100);
  EXPECT_EQ((*r)->NextTimerLowerBound(TimerDomain::kProcessingTime), INT64_MAX);  // n1's: gone
  SetKey(r->get(), "t100");
  ASSERT_OK((*r)->DeleteTimer(TimerDomain::kEventTime, 100));
  auto handle3 = Checkpoint(r->get(), 3, "chk-3");
  ASSERT_OK(handle3);
  std::vector<std::pair<int64_t, std::string>> want;
  for (const auto& [timer, kg] : expected) want.push_back(timer);
  ASSERT_EQ(want.front(), std::make_pair(int64_t{100}, std::string("t100")));
  want.erase(want.begin());  // deleted before checkpoint 3
  EXPECT_EQ(fire_all(r->get()), want);  // in timestamp order
  r->reset();
  auto r3 = KeyedStateBackend::Restore(Options("c"), {*handle3}, job_dir_);
  ASSERT_OK(r3);
  EXPECT_EQ(fire_all(r3->get()), want);

  // Rescaled: two subtasks split the key groups of checkpoint 3.
  std::vector<std::pair<int64_t, std::string>> both;
  for (int i = 0; i < 2; ++i) {
    KeyGroupRange range = KeyGroupRangeForSubtask(kMaxParallelism, 2, i);
    auto part =
        KeyedStateBackend::Restore(Options(absl::StrCat("p", i), range), {*handle3}, job_dir_);
    ASSERT_OK(part);
    std::vector<std::pair<int64_t, std::string>> want_part;
    for (const auto& timer : want) {
      if (range.Contains(KeyGroupOf(timer.second))) want_part.push_back(timer);
    }
    EXPECT_EQ(fire_all(part->get()), want_part) << "subtask " << i;
    both.insert(both.end(), want_part.begin(), want_part.end());
  }
  EXPECT_EQ(both.size(), want.size());
}

// A key deleted before it reached RocksDB needs no tombstone; one that reached RocksDB does.
TEST_F(KeyedStateBackendTest, DeletesBeforeAndAfterAFlushBothStick) {
  auto b = OpenOrDie(Options("a"));
  ASSERT_NE(b, nullptr);
  StateId value = b->RegisterState("v", StateKind::kValue);
  for (const char* key : {"old1", "old2", "new1"}) {
    SetKey(b.get(), key);
    ASSERT_OK(b->Put(value, key));
  }
  ASSERT_OK(Checkpoint(b.get(), 1, "chk-1"));  // old1, old2, new1 in RocksDB
  SetKey(b.get(), "new2");
  std::string v;
  ASSERT_OK(b->Get(value, &v));  // a miss: known absent from RocksDB
  ASSERT_OK(b->Put(value, "x"));
  ASSERT_OK(b->Delete(value));
  SetKey(b.get(), "new3");
  ASSERT_OK(b->Put(value, "y"));  // blind write
  ASSERT_OK(b->Delete(value));
  SetKey(b.get(), "old1");
  ASSERT_OK(b->Delete(value));
  SetKey(b.get(), "new1");
  ASSERT_OK(b->Delete(value));
  ASSERT_OK(b->Put(value, "again"));
  auto handle = Checkpoint(b.get(), 2, "chk-2");
  ASSERT_OK(handle);
  EXPECT_EQ(GetOr(b.get(), value, "old1"), "<absent>");
  EXPECT_EQ(GetOr(b.get(), value, "old2"), "old2");
  EXPECT_EQ(GetOr(b.get(), value, "new1"), "again");
  EXPECT_EQ(GetOr(b.get(), value, "new2"), "<absent>");
  EXPECT_EQ(GetOr(b.get(), value, "new3"), "<absent>");
  auto r = KeyedStateBackend::Restore(Options("b"), {*handle}, job_dir_);
  ASSERT_OK(r);
  StateId value2 = (*r)->RegisterState("v", StateKind::kValue);
  std::vector<std::string> keys;
  ASSERT_OK((*r)->ForEachKey(value2, [&](absl::string_view key) {
    keys.emplace_back(key);
    return absl::OkStatus();
  }));
  EXPECT_THAT(keys, UnorderedElementsAreArray(std::vector<std::string>{"old2", "new1"}));
  EXPECT_EQ(GetOr(r->get(), value2, "new1"), "again");
}

TEST_F(KeyedStateBackendTest, TimerCallbackSeesItsKey) {
  auto b = OpenOrDie(Options("a"));
  ASSERT_NE(b, nullptr);
  StateId value = b->RegisterState("v", StateKind::kValue);
  for (int i = 0; i < 50; ++i) {
    std::string key = absl::StrCat("key", i);
    SetKey(b.get(), key);
    ASSERT_OK(b->Put(value, key));
    ASSERT_OK(b->RegisterTimer(TimerDomain::kProcessingTime, i % 5));
  }
  auto pending = b->SnapshotSync(1);
  ASSERT_OK(pending);
  auto handle = b->UploadSnapshot(*pending, job_dir_, "p1");
  ASSERT_OK(handle);
  auto r = KeyedStateBackend::Restore(Options("b"), {*handle}, job_dir_);
  ASSERT_OK(r);
  StateId value2 = (*r)->RegisterState("v", StateKind::kValue);
  int count = 0;
  int64_t last = -1;
  ASSERT_OK((*r)->FireTimers(TimerDomain::kProcessingTime, 100, [&](int64_t ts) {
    std::string v;
    auto found = (*r)->Get(value2, &v);
    EXPECT_TRUE(found.ok() && *found);
    int i = std::stoi(v.substr(3));
    EXPECT_EQ(i % 5, ts);
    EXPECT_GE(ts, last);
    last = ts;
    ++count;
    return absl::OkStatus();
  }));
  EXPECT_EQ(count, 50);
}

std::set<std::string> SharedNames(const proto::KeyedStateHandle& h) {
  std::set<std::string> out;
  for (const auto& f : h.files()) {
    if (f.shared()) out.insert(f.name());
  }
  return out;
}

// 100,000 keys are beyond the first snapshot's delta cap (more cache than min(8 MiB,
// 32 MiB / 8) = 4 MiB): checkpoint 1's entries go into RocksDB in either mode.
TEST_P(FirstSnapshotModeTest, IncrementalCheckpointsReuseSharedFiles) {
  StateBackendOptions o = Options("a");
  o.first_snapshot_all_hot = GetParam();
  auto b = OpenOrDie(o);
  ASSERT_NE(b, nullptr);
  StateId value = b->RegisterState("v", StateKind::kValue);
  constexpr int kKeys = 100000;
  for (int i = 0; i < kKeys; ++i) {
    SetKey(b.get(), absl::StrCat("key-", i));
    ASSERT_OK(b->Put(value, absl::StrCat("value-", i, "-", i * 7919)));
  }
  auto h1 = Checkpoint(b.get(), 1, "chk-1/op");
  ASSERT_OK(h1);
  EXPECT_EQ(h1->incremental_size(), h1->full_size());
  for (const auto& f : h1->files()) EXPECT_NE(f.local_name(), internal::kDeltaFileName);
  RecordProperty("full_size_1", static_cast<int>(h1->full_size()));
  for (int i = 0; i < 10; ++i) {
    SetKey(b.get(), absl::StrCat("key-", i * 1000));
    ASSERT_OK(b->Put(value, "updated"));
  }
  auto h2 = Checkpoint(b.get(), 2, "chk-2/op");
  ASSERT_OK(h2);
  RecordProperty("incremental_size_2", static_cast<int>(h2->incremental_size()));
  EXPECT_LT(h2->incremental_size(), h2->full_size() / 5)
      << h2->incremental_size() << " of " << h2->full_size();
  std::set<std::string> shared1 = SharedNames(*h1);
  std::set<std::string> shared2 = SharedNames(*h2);
  ASSERT_FALSE(shared1.empty());
  // The ten changed entries, written by checkpoint 1 too (hot), are in its delta file.
  EXPECT_EQ(shared2, shared1);
  b.reset();

  // Fast-path restore, then the next checkpoint is incremental too.
  auto r = KeyedStateBackend::Restore(Options("b"), {*h2}, job_dir_);
  ASSERT_OK(r);
  StateId value2 = (*r)->RegisterState("v", StateKind::kValue);
  EXPECT_EQ(GetOr(r->get(), value2, "key-1000"), "updated");
  EXPECT_EQ(GetOr(r->get(), value2, "key-1001"), "value-1001-7926919");
  for (int i = 0; i < 10; ++i) {
    SetKey(r->get(), absl::StrCat("key-", i * 1000 + 1));
    ASSERT_OK((*r)->Put(value2, "updated again"));
  }
  auto h3 = Checkpoint(r->get(), 3, "chk-3/op");
  ASSERT_OK(h3);
  RecordProperty("incremental_size_3", static_cast<int>(h3->incremental_size()));
  EXPECT_LT(h3->incremental_size(), h3->full_size() / 5)
      << h3->incremental_size() << " of " << h3->full_size();
  std::set<std::string> shared3 = SharedNames(*h3);
  // The restored DB's SSTs (its MANIFEST, CURRENT and OPTIONS are new).
  for (const std::string& name : shared2) {
    if (absl::EndsWith(name, ".sst")) EXPECT_TRUE(shared3.count(name)) << name;
  }
  EXPECT_NE(h3->backend_id(), h2->backend_id());
  r->reset();

  auto r2 = KeyedStateBackend::Restore(Options("c"), {*h3}, job_dir_);
  ASSERT_OK(r2);
  StateId value3 = (*r2)->RegisterState("v", StateKind::kValue);
  EXPECT_EQ(GetOr(r2->get(), value3, "key-1001"), "updated again");
  EXPECT_EQ(GetOr(r2->get(), value3, "key-1000"), "updated");
  EXPECT_EQ(GetOr(r2->get(), value3, "key-99999"), absl::StrCat("value-99999-", 99999 * 7919));
}

// A snapshot writes the entries changed in two intervals in a row into its delta file (not
// RocksDB), new ones into RocksDB, except the first snapshot of a backend opened empty, which
// puts every entry into its delta file; entries left unchanged for an interval move into
// RocksDB at the next snapshot. Every
// checkpoint restores exactly what was there when it was taken, on the same key groups and
// rescaled, also after a snapshot whose checkpoint never completed (never uploaded), with
// deletes of entries RocksDB never had and map state.
TEST_F(KeyedStateBackendTest, ChangedEntriesGoToTheDeltaFileAndEveryCheckpointRestores) {
  auto b = OpenOrDie(Options("a"));
  ASSERT_NE(b, nullptr);
  StateId value = b->RegisterState("v", StateKind::kValue);
  StateId map = b->RegisterState("m", StateKind::kMap);
  constexpr int kKeys = 3000;
  struct Taken {
    proto::KeyedStateHandle handle;
    std::map<std::string, std::string> values;
    std::map<std::string, std::string> maps;  // key -> the value of user key "u"
  };
  std::vector<Taken> taken;
  std::map<std::string, std::string> values;
  std::map<std::string, std::string> maps;
  std::set<std::string> shared_before;
  for (int round = 0; round < 6; ++round) {
    for (int i = 0; i < kKeys; ++i) {
      const std::string key = absl::StrCat("k", i);
      SetKey(b.get(), key);
      if (round == 0 || i % 2 == 0) {  // even keys are hot, odd ones written once
        ASSERT_OK(b->Put(value, absl::StrCat("r", round, "-", i)));
        values[key] = absl::StrCat("r", round, "-", i);
      }
      if (round == 2 && i % 10 == 4) {
        ASSERT_OK(b->Delete(value));
        values.erase(key);
      }
      if (i % 100 == 0) {
        ASSERT_OK(b->MapPut(map, "u", absl::StrCat(round)));
        maps[key] = absl::StrCat(round);
      }
    }
    if (round == 3) ASSERT_OK(b->SnapshotSync(100));  // its checkpoint never completes
    auto h = Checkpoint(b.get(), round + 1, absl::StrCat("chk-", round + 1));
    ASSERT_OK(h);
    taken.push_back({*h, values, maps});
    int64_t delta_size = 0;
    for (const auto& f : h->files()) {
      if (f.local_name() == internal::kDeltaFileName) delta_size = f.size();
    }
    if (round == 0) {
      // The first snapshot: every entry (3,000 of some 10 bytes each) in the delta file, none
      // in RocksDB (it got only the state names: no file beyond one of a few hundred bytes).
      EXPECT_GT(delta_size, kKeys * 10);
      for (const auto& f : h->files()) {
        if (absl::EndsWith(f.local_name(), ".sst")) EXPECT_LT(f.size(), 4096) << f.local_name();
      }
    } else if (round == 3 || round == 4) {
      // After round 3's extra snapshot nothing changed: everything moved into RocksDB; so
      // round 4's changes follow a quiet interval: RocksDB.
      EXPECT_EQ(delta_size, 0) << "round " << round;
    } else {
      // The hot entries (at least 1,500 of some 10 bytes each) are in the delta file.
      EXPECT_GT(delta_size, 1500 * 10) << "round " << round;
    }
    if (round == 5) {
      // Only hot entries changed: RocksDB got no new file.
      EXPECT_EQ(SharedNames(*h), shared_before);
    }
    shared_before = SharedNames(*h);
  }
  b.reset();

  for (size_t c = 0; c < taken.size(); ++c) {
    for (const KeyGroupRange range :
         {KeyGroupRange{0, 127}, KeyGroupRange{0, 63}, KeyGroupRange{64, 127}}) {
      SCOPED_TRACE(absl::StrCat("checkpoint ", c + 1, " range ", range.first));
      auto r = KeyedStateBackend::Restore(
          Options(absl::StrCat("r", c, "-", range.first), range), {taken[c].handle}, job_dir_);
      ASSERT_OK(r);
      StateId value2 = (*r)->RegisterState("v", StateKind::kValue);
      StateId map2 = (*r)->RegisterState("m", StateKind::kMap);
      int checked = 0;
      for (int i = 0; i < kKeys; ++i) {
        const std::string key = absl::StrCat("k", i);
        if (!range.Contains(KeyGroupOf(key))) continue;
        auto it = taken[c].values.find(key);
        ASSERT_EQ(GetOr(r->get(), value2, key), it == taken[c].values.end() ? "<absent>" : it->second)
            << key;
        std::vector<std::pair<std::string, std::string>> entries;
        ASSERT_OK((*r)->MapEntries(map2, &entries));
        auto m = taken[c].maps.find(key);
        if (m == taken[c].maps.end()) {
          EXPECT_TRUE(entries.empty()) << key;
        } else {
          EXPECT_THAT(entries, ElementsAre(Pair("u", m->second))) << key;
        }
        ++checked;
      }
      EXPECT_GT(checked, range.last == 127 && range.first == 0 ? kKeys - 1 : kKeys / 4);
    }
  }
}

// A snapshot that finds RocksDB unchanged since the snapshot of the last successful upload makes
// no local RocksDB checkpoint: it names that upload's files and stores only its delta file. After
// a failed upload, or while the last RocksDB checkpoint is not uploaded yet, it makes one. Every
// checkpoint restores exactly.
TEST_F(KeyedStateBackendTest, SnapshotOfAnUnchangedDbReusesTheLastUploadedFiles) {
  const StateBackendOptions options = Options("a");
  auto b = OpenOrDie(options);
  ASSERT_NE(b, nullptr);
  StateId value = b->RegisterState("v", StateKind::kValue);
  auto put_all = [&](int round) { PutRound(b.get(), value, 500, round); };
  auto snapshot = [&](int id) {
    auto pending = b->SnapshotSync(id);
    EXPECT_OK(pending);
    return pending.ok() ? *pending : PendingSnapshot();
  };
  std::map<int, proto::KeyedStateHandle> handles;  // by round (= checkpoint id)
  auto upload = [&](const PendingSnapshot& p) {
    auto h = b->UploadSnapshot(p, job_dir_, absl::StrCat("chk-", p.checkpoint_id, "/op"));
    ASSERT_OK(h);
    handles[p.checkpoint_id] = *h;
  };
  // Round 1, the first snapshot, writes its keys into its delta file and RocksDB's state names
  // into a RocksDB checkpoint; from round 2 on every key is hot (delta file).
  put_all(1);
  PendingSnapshot p1 = snapshot(1);
  EXPECT_FALSE(p1.local_checkpoint_dir.empty());
  upload(p1);
  put_all(2);
  upload(snapshot(2));
  // Round 3 changes only hot keys: no RocksDB checkpoint, the files of an earlier upload.
  put_all(3);
  PendingSnapshot p3 = snapshot(3);
  EXPECT_EQ(p3.local_checkpoint_dir, "");
  EXPECT_FALSE(fs::exists(fs::path(options.local_dir) / "chk-3"));
  EXPECT_NE(p3.delta, nullptr);
  upload(p3);
  EXPECT_EQ(SharedNames(handles[3]), SharedNames(handles[2]));
  // Round 4's upload fails (its checkpoint directory cannot be made): round 5 makes a RocksDB
  // checkpoint, and round 6, snapshotted before round 5 is uploaded, one too.
  put_all(4);
  PendingSnapshot p4 = snapshot(4);
  EXPECT_EQ(p4.local_checkpoint_dir, "");
  const fs::path not_a_dir = root_ / "not-a-dir";
  { std::ofstream(not_a_dir) << "x"; }
  EXPECT_FALSE(b->UploadSnapshot(p4, not_a_dir.string(), "chk-4/op").ok());
  put_all(5);
  PendingSnapshot p5 = snapshot(5);
  EXPECT_FALSE(p5.local_checkpoint_dir.empty());
  put_all(6);
  PendingSnapshot p6 = snapshot(6);
  EXPECT_FALSE(p6.local_checkpoint_dir.empty());
  upload(p5);
  upload(p6);
  // Round 7 reuses round 6's files again.
  put_all(7);
  PendingSnapshot p7 = snapshot(7);
  EXPECT_EQ(p7.local_checkpoint_dir, "");
  upload(p7);
  EXPECT_EQ(SharedNames(handles[7]), SharedNames(handles[6]));
  // Nothing left in the working directory but the DB.
  std::vector<std::string> local;
  for (const auto& e : fs::directory_iterator(options.local_dir)) {
    local.push_back(e.path().filename().string());
  }
  EXPECT_THAT(local, ::testing::ElementsAre("db"));
  b.reset();

  for (const auto& [round, handle] : handles) {
    for (KeyGroupRange range : {KeyGroupRange{0, 127}, KeyGroupRange{64, 127}}) {
      SCOPED_TRACE(absl::StrCat("checkpoint ", round, " range ", range.first));
      auto r = KeyedStateBackend::Restore(Options(absl::StrCat("r", round, "-", range.first), range),
                                          {handle}, job_dir_);
      ASSERT_OK(r);
      StateId v = (*r)->RegisterState("v", StateKind::kValue);
      for (int i = 0; i < 500; ++i) {
        const std::string key = absl::StrCat("k", i);
        if (!range.Contains(KeyGroupOf(key))) continue;
        EXPECT_EQ(GetOr(r->get(), v, key), absl::StrCat("v", i, "-", round)) << key;
      }
    }
  }
}

// The snapshot's delta file is built in memory on the task thread and written by the upload:
// SnapshotSync() creates no delta file in the working directory (neither beside a RocksDB
// checkpoint nor alone), and the upload stores exactly the snapshot's bytes. Every checkpoint,
// of either kind (with a RocksDB checkpoint, reusing uploaded files), restores exactly.
TEST_P(FirstSnapshotModeTest, SnapshotSyncWritesNoDeltaFileTheUploadStoresIt) {
  StateBackendOptions options = Options("a");
  options.first_snapshot_all_hot = GetParam();  // round 1's entries into a delta, or RocksDB
  const bool first_delta = GetParam();
  auto b = OpenOrDie(options);
  ASSERT_NE(b, nullptr);
  StateId value = b->RegisterState("v", StateKind::kValue);
  constexpr int kKeys = 2000;
  std::map<int, proto::KeyedStateHandle> handles;
  for (int round = 1; round <= 4; ++round) {
    for (int i = 0; i < kKeys; ++i) {
      SetKey(b.get(), absl::StrCat("k", i));
      ASSERT_OK(b->Put(value, absl::StrCat("v", i, "-", round)));
    }
    auto p = b->SnapshotSync(round);
    ASSERT_OK(p);
    // Round 1's new keys go to RocksDB, or (first_delta) to a delta with RocksDB's state names
    // (a RocksDB checkpoint either way); rounds 2-4 change only hot keys: a delta, with round
    // 1's uploaded files.
    const bool has_delta = round >= 2 || first_delta;
    EXPECT_EQ(p->delta != nullptr, has_delta) << round;
    EXPECT_EQ(p->local_checkpoint_dir.empty(), round >= 2) << round;
    for (const auto& e : fs::recursive_directory_iterator(options.local_dir)) {
      const std::string name = e.path().filename().string();
      EXPECT_NE(name, std::string(internal::kDeltaFileName)) << e.path();
      EXPECT_FALSE(absl::StartsWith(name, "delta")) << e.path();
    }
    const std::string private_dir = absl::StrCat("chk-", round, "/op");
    auto h = b->UploadSnapshot(*p, job_dir_, private_dir);
    ASSERT_OK(h);
    handles[round] = *h;
    const fs::path stored = fs::path(job_dir_) / private_dir / std::string(internal::kDeltaFileName);
    ASSERT_EQ(fs::exists(stored), has_delta) << round;
    if (has_delta) {
      std::ifstream in(stored, std::ios::binary);
      std::stringstream bytes;
      bytes << in.rdbuf();
      EXPECT_EQ(bytes.str(), std::string(p->delta->view())) << round;
      EXPECT_FALSE(fs::exists(stored.string() + ".tmp"));
    }
  }
  b.reset();
  for (const auto& [round, handle] : handles) {
    SCOPED_TRACE(absl::StrCat("checkpoint ", round));
    auto r = KeyedStateBackend::Restore(Options(absl::StrCat("r", round)), {handle}, job_dir_);
    ASSERT_OK(r);
    StateId v = (*r)->RegisterState("v", StateKind::kValue);
    for (int i = 0; i < kKeys; ++i) {
      ASSERT_EQ(GetOr(r->get(), v, absl::StrCat("k", i)), absl::StrCat("v", i, "-", round)) << i;
    }
  }
}

// A snapshot's upload runs on another thread while the task thread goes on changing the same
// keys and taking further snapshots (whose delta buffers are recycled from uploads that
// finished): the checkpoint stores, and restores, the values at its snapshot, not later ones.
// Nothing forces snapshot 3's upload to overlap what follows it; snapshot 4's upload starts
// only after every key changed again, so its checkpoint tests that case deterministically
// (DeltaBytesPoolTest covers the buffers' recycling).
TEST_F(KeyedStateBackendTest, UploadRacingLaterUpdatesStoresTheSnapshotsValues) {
  auto b = OpenOrDie(Options("a"));
  ASSERT_NE(b, nullptr);
  StateId value = b->RegisterState("v", StateKind::kValue);
  constexpr int kKeys = 5000;
  auto put_all = [&](int round) { PutRound(b.get(), value, kKeys, round); };
  auto checkpoint = [&](int id) {
    auto h = Checkpoint(b.get(), id, absl::StrCat("chk-", id));
    EXPECT_OK(h);
  };
  put_all(1);
  checkpoint(1);
  put_all(2);
  checkpoint(2);  // from here on every key is hot: its value is in the delta
  put_all(3);
  auto p3 = b->SnapshotSync(3);
  ASSERT_OK(p3);
  ASSERT_NE(p3->delta, nullptr);
  absl::StatusOr<proto::KeyedStateHandle> h3;
  std::thread uploader([&] { h3 = b->UploadSnapshot(*p3, job_dir_, "chk-3/op"); });
  // While it uploads: every key changes, twice, with a snapshot (and its upload) in between.
  put_all(4);
  auto p4 = b->SnapshotSync(4);
  ASSERT_OK(p4);
  put_all(5);
  uploader.join();
  ASSERT_OK(h3);
  EXPECT_NE(p4->delta.get(), p3->delta.get());  // p3's buffer was held: not handed out again
  auto h4 = b->UploadSnapshot(*p4, job_dir_, "chk-4/op");
  ASSERT_OK(h4);
  p3->delta.reset();  // its buffer goes back to the pool: snapshot 6 may write into it
  p4->delta.reset();
  put_all(6);
  checkpoint(6);
  b.reset();
  auto r = KeyedStateBackend::Restore(Options("r"), {*h3}, job_dir_);
  ASSERT_OK(r);
  StateId v = (*r)->RegisterState("v", StateKind::kValue);
  for (int i = 0; i < kKeys; ++i) {
    ASSERT_EQ(GetOr(r->get(), v, absl::StrCat("k", i)), absl::StrCat("v", i, "-3")) << i;
  }
  auto r4 = KeyedStateBackend::Restore(Options("r4"), {*h4}, job_dir_);
  ASSERT_OK(r4);
  StateId v4 = (*r4)->RegisterState("v", StateKind::kValue);
  for (int i = 0; i < kKeys; ++i) {
    ASSERT_EQ(GetOr(r4->get(), v4, absl::StrCat("k", i)), absl::StrCat("v", i, "-4")) << i;
  }
}

// The gauge of StateBackendOptions::delta_bytes counts the delta buffers in memory: the one a
// snapshot holds until its upload drops it, then the pool's spare.
TEST_P(FirstSnapshotModeTest, DeltaBytesGaugeCountsTheDeltasInMemory) {
  StateBackendOptions o = Options("a");
  o.delta_bytes = std::make_shared<Gauge>();
  o.first_snapshot_all_hot = GetParam();  // checkpoint 1 writes a delta, or none
  auto b = OpenOrDie(o);
  ASSERT_NE(b, nullptr);
  StateId value = b->RegisterState("v", StateKind::kValue);
  auto put_all = [&](int round) { PutRound(b.get(), value, 100, round); };
  put_all(1);
  ASSERT_OK(Checkpoint(b.get(), 1, "chk-1"));
  // Nothing hot yet: no delta; or the first snapshot's, uploaded: the pool's spare.
  EXPECT_EQ(o.delta_bytes->Value(),
            GetParam() ? static_cast<double>(internal::DeltaBytesPool::kMinCapacity) : 0.0);
  put_all(2);
  auto p2 = b->SnapshotSync(2);
  ASSERT_OK(p2);
  ASSERT_NE(p2->delta, nullptr);
  EXPECT_EQ(o.delta_bytes->Value(), static_cast<double>(internal::DeltaBytesPool::kMinCapacity));
  put_all(3);
  auto p3 = b->SnapshotSync(3);  // while snapshot 2's delta is held: a second buffer
  ASSERT_OK(p3);
  EXPECT_EQ(o.delta_bytes->Value(),
            static_cast<double>(2 * internal::DeltaBytesPool::kMinCapacity));
  p2->delta.reset();
  p3->delta.reset();  // one spare kept
  EXPECT_EQ(o.delta_bytes->Value(), static_cast<double>(internal::DeltaBytesPool::kMinCapacity));
}

// Where a checkpoint's bytes went: its delta file's size and the sum of its SSTs' sizes.
std::pair<uint64_t, uint64_t> DeltaAndSstBytes(const proto::KeyedStateHandle& h) {
  std::pair<uint64_t, uint64_t> out{0, 0};
  for (const auto& f : h.files()) {
    if (f.local_name() == internal::kDeltaFileName) out.first += f.size();
    if (absl::EndsWith(f.local_name(), ".sst")) out.second += f.size();
  }
  return out;
}

// The first snapshot of a backend opened empty writes its entries into its delta file only
// while the cache holds at most min(8 MiB, cache_bytes / 8) (here 512 KiB of 4 MiB): 2,000 keys
// (~130 KB of cache) go into the delta, 20,000 (~1.3 MB, no eviction) into RocksDB and no delta
// (a delta encoded in memory outside the state budget, read whole by a restore). Every
// checkpoint of either side restores exactly.
TEST_F(KeyedStateBackendTest, FirstSnapshotGoesIntoTheDeltaOnlyBelowItsCap) {
  constexpr size_t kCap = size_t{512} << 10;
  for (const int keys : {2000, 20000}) {
    SCOPED_TRACE(absl::StrCat(keys, " keys"));
    StateBackendOptions o = Options(absl::StrCat("a", keys));
    o.cache_bytes = size_t{4} << 20;
    auto b = OpenOrDie(o);
    ASSERT_NE(b, nullptr);
    const StateId value = b->RegisterState("v", StateKind::kValue);
    PutRound(b.get(), value, keys, 1);
    const bool below = keys == 2000;
    EXPECT_EQ(b->CacheBytesForTest() <= kCap, below) << b->CacheBytesForTest();
    auto h1 = Checkpoint(b.get(), 1, absl::StrCat("c", keys, "/chk-1/op"));
    ASSERT_OK(h1);
    const auto [delta1, ssts1] = DeltaAndSstBytes(*h1);
    if (below) {
      // Every entry (some 10 bytes each) in the delta; RocksDB got the state names only.
      EXPECT_GT(delta1, uint64_t{2000} * 10);
      EXPECT_LT(ssts1, 4096u);
    } else {
      EXPECT_EQ(delta1, 0u);
      EXPECT_GT(ssts1, uint64_t{20000} * 10);
    }
    PutRound(b.get(), value, keys / 2, 2);  // half the keys change again (hot)
    auto h2 = Checkpoint(b.get(), 2, absl::StrCat("c", keys, "/chk-2/op"));
    ASSERT_OK(h2);
    b.reset();
    for (const auto& [id, handle] : {std::pair<int, proto::KeyedStateHandle>{1, *h1}, {2, *h2}}) {
      auto r = KeyedStateBackend::Restore(Options(absl::StrCat("r", keys, "-", id)), {handle},
                                          job_dir_);
      ASSERT_OK(r);
      const StateId v = (*r)->RegisterState("v", StateKind::kValue);
      for (int i = 0; i < keys; ++i) {
        const int round = id == 2 && i < keys / 2 ? 2 : 1;
        ASSERT_EQ(GetOr(r->get(), v, absl::StrCat("k", i)), absl::StrCat("v", i, "-", round))
            << "checkpoint " << id << " key " << i;
      }
    }
  }
}

// The first snapshot puts interval 1's entries into its delta file (they fit the cache and
// the cap), then interval 2 outgrows the cache: eviction writes those pending entries into
// RocksDB (and snapshot 2 every other unsynced one, no delta). Checkpoint 1 restores interval
// 1's values (its delta over RocksDB as it was), checkpoint 2 interval 2's.
TEST_F(KeyedStateBackendTest, FirstDeltaEntriesEvictedInTheNextIntervalRestoreExactly) {
  constexpr int kFirst = 1500;   // ~100 KB of cache: below the cap of 128 KiB
  constexpr int kSecond = 30000;  // ~2 MB: beyond the budget
  StateBackendOptions o = Options("a");
  o.cache_bytes = size_t{1} << 20;
  auto b = OpenOrDie(o);
  ASSERT_NE(b, nullptr);
  const StateId value = b->RegisterState("v", StateKind::kValue);
  PutRound(b.get(), value, kFirst, 1);
  auto h1 = Checkpoint(b.get(), 1, "chk-1/op");
  ASSERT_OK(h1);
  EXPECT_GT(DeltaAndSstBytes(*h1).first, uint64_t{kFirst} * 10);
  // Interval 2: the first 100 keys change, then keys up to kSecond are written (new ones):
  // interval 1's pending entries are evicted to RocksDB.
  PutRound(b.get(), value, 100, 2);
  for (int i = kFirst; i < kSecond; ++i) {
    SetKey(b.get(), absl::StrCat("k", i));
    ASSERT_OK(b->Put(value, absl::StrCat("v", i, "-2")));
  }
  auto h2 = Checkpoint(b.get(), 2, "chk-2/op");
  ASSERT_OK(h2);
  EXPECT_EQ(DeltaAndSstBytes(*h2).first, 0u);  // evicting: no delta
  b.reset();
  auto want = [&](int checkpoint, int i) -> std::string {
    if (checkpoint == 1) return i < kFirst ? absl::StrCat("v", i, "-1") : "<absent>";
    return i < 100 || i >= kFirst ? absl::StrCat("v", i, "-2") : absl::StrCat("v", i, "-1");
  };
  for (const auto& [id, handle] : {std::pair<int, proto::KeyedStateHandle>{1, *h1}, {2, *h2}}) {
    auto r = KeyedStateBackend::Restore(Options(absl::StrCat("r", id)), {handle}, job_dir_);
    ASSERT_OK(r);
    const StateId v = (*r)->RegisterState("v", StateKind::kValue);
    for (int i = 0; i < kSecond; ++i) {
      ASSERT_EQ(GetOr(r->get(), v, absl::StrCat("k", i)), want(id, i))
          << "checkpoint " << id << " key " << i;
    }
  }
}

// A first snapshot (its entries into its delta file) whose checkpoint is never uploaded: its
// entries stay pending, and the next snapshot writes those unchanged since into RocksDB and
// the changed ones into its delta. Checkpoint 2 restores every entry.
TEST_F(KeyedStateBackendTest, FirstDeltaNeverUploadedThenTheNextCheckpointRestoresExactly) {
  constexpr int kKeys = 2000;
  auto b = OpenOrDie(Options("a"));
  ASSERT_NE(b, nullptr);
  const StateId value = b->RegisterState("v", StateKind::kValue);
  PutRound(b.get(), value, kKeys, 1);
  {
    auto p1 = b->SnapshotSync(1);
    ASSERT_OK(p1);
    ASSERT_NE(p1->delta, nullptr);  // the entries went into its delta; dropped here
  }
  PutRound(b.get(), value, kKeys / 4, 2);
  auto h2 = Checkpoint(b.get(), 2, "chk-2/op");
  ASSERT_OK(h2);
  const auto [delta2, ssts2] = DeltaAndSstBytes(*h2);
  EXPECT_GT(delta2, uint64_t{kKeys / 4} * 10);     // the changed keys
  EXPECT_GT(ssts2, uint64_t{kKeys * 3 / 4} * 10);  // the others, now in RocksDB
  b.reset();
  auto r = KeyedStateBackend::Restore(Options("r"), {*h2}, job_dir_);
  ASSERT_OK(r);
  const StateId v = (*r)->RegisterState("v", StateKind::kValue);
  for (int i = 0; i < kKeys; ++i) {
    ASSERT_EQ(GetOr(r->get(), v, absl::StrCat("k", i)),
              absl::StrCat("v", i, "-", i < kKeys / 4 ? 2 : 1))
        << i;
  }
}

// On the working directory's filesystem the upload hard-links the snapshot's files instead of
// copying them: the stored SSTs are the working DB's files (one inode), and the checkpoint
// stays whole after the working DB dropped them (compaction, close) and the backend is gone.
// Across filesystems (/dev/shm, where it is another one) it copies.
// Hot keys (changed in every interval) go into the delta file and RocksDB does not change: a
// checkpoint then shares the previous one's MANIFEST, CURRENT and OPTIONS as it shares its SSTs,
// and stores nothing of its own but the delta file. It restores every entry.
TEST_F(KeyedStateBackendTest, CheckpointOfAnUnchangedDbStoresOnlyItsDeltaFile) {
  auto b = OpenOrDie(Options("a"));
  ASSERT_NE(b, nullptr);
  StateId value = b->RegisterState("v", StateKind::kValue);
  std::vector<proto::KeyedStateHandle> handles;
  for (int round = 1; round <= 4; ++round) {
    for (int i = 0; i < 500; ++i) {
      SetKey(b.get(), absl::StrCat("k", i));
      ASSERT_OK(b->Put(value, absl::StrCat("v", i, "-", round)));
    }
    auto h = Checkpoint(b.get(), round, absl::StrCat("chk-", round, "/op"));
    ASSERT_OK(h);
    handles.push_back(*h);
  }
  // Round 1 wrote the keys into RocksDB, round 2 made them hot (its delta file and a MANIFEST
  // that grew by the entries of round 1 it moved); rounds 3 and 4 changed only the delta file.
  const proto::KeyedStateHandle& h3 = handles[2];
  const proto::KeyedStateHandle& h4 = handles[3];
  std::set<std::string> shared_of_3 = SharedNames(h3);
  EXPECT_EQ(SharedNames(h4), shared_of_3);
  int64_t delta_size = -1;
  for (const proto::StateFile& f : h4.files()) {
    if (f.local_name() == internal::kDeltaFileName) {
      EXPECT_FALSE(f.shared());
      delta_size = f.size();
    } else {
      EXPECT_TRUE(f.shared()) << f.local_name();
    }
  }
  EXPECT_GT(delta_size, 0);
  EXPECT_EQ(h4.incremental_size(), delta_size);
  std::vector<std::string> private_files;
  for (const auto& e : fs::directory_iterator(fs::path(job_dir_) / "chk-4/op")) {
    private_files.push_back(e.path().filename().string());
  }
  EXPECT_THAT(private_files, ::testing::ElementsAre(std::string(internal::kDeltaFileName)));
  for (const char* name : {"CURRENT", "OPTIONS-", "MANIFEST-"}) {
    EXPECT_EQ(std::count_if(h4.files().begin(), h4.files().end(),
                            [&](const proto::StateFile& f) {
                              return f.shared() && absl::StartsWith(f.local_name(), name);
                            }),
              1)
        << name;
  }
  b.reset();

  // Checkpoint 4 restores whole, with the same key groups and rescaled.
  for (KeyGroupRange range : {KeyGroupRange{0, 127}, KeyGroupRange{0, 63}}) {
    auto r = KeyedStateBackend::Restore(Options("b", range), {h4}, job_dir_);
    ASSERT_OK(r);
    StateId v = (*r)->RegisterState("v", StateKind::kValue);
    for (int i = 0; i < 500; ++i) {
      const std::string key = absl::StrCat("k", i);
      if (KeyGroupOf(key) > range.last) continue;
      EXPECT_EQ(GetOr(r->get(), v, key), absl::StrCat("v", i, "-4")) << key;
    }
  }
}

TEST_F(KeyedStateBackendTest, UploadLinksFilesOnTheSameFilesystemAndCopiesAcross) {
  const StateBackendOptions options = Options("a");
  auto a = OpenOrDie(options);
  ASSERT_NE(a, nullptr);
  StateId id = a->RegisterState("count", StateKind::kValue);
  auto put_all = [&](int round) { PutRound(a.get(), id, 5000, round); };
  put_all(1);
  auto h1 = Checkpoint(a.get(), 1, "chk-1/a");
  ASSERT_OK(h1);
  int linked = 0;
  for (const proto::StateFile& f : h1->files()) {
    const fs::path stored = f.shared() ? fs::path(job_dir_) / "shared" / f.name()
                                       : fs::path(job_dir_) / h1->private_dir() / f.name();
    ASSERT_TRUE(fs::exists(stored)) << stored;
    if (f.shared() && SameFile(stored.string(), (fs::path(options.local_dir) / "db" / f.local_name()).string())) {
      ++linked;
    }
  }
  EXPECT_GT(linked, 0);
  EXPECT_EQ(linked, std::count_if(h1->files().begin(), h1->files().end(), [](const proto::StateFile& f) {
              // The DB's own files (MANIFEST and CURRENT are the checkpoint's copies).
              return f.shared() && (absl::EndsWith(f.local_name(), ".sst") ||
                                    absl::StartsWith(f.local_name(), "OPTIONS-"));
            }));
  // Across filesystems: copies.
  const fs::path other = "/dev/shm";
  struct stat root_stat, other_stat;
  const bool have_other = stat(root_.c_str(), &root_stat) == 0 && stat(other.c_str(), &other_stat) == 0 &&
                          root_stat.st_dev != other_stat.st_dev;
  const fs::path other_dir = other / fs::path(root_).filename();
  std::optional<proto::KeyedStateHandle> h_other;
  if (have_other) {
    put_all(2);
    auto pending = a->SnapshotSync(2);
    ASSERT_OK(pending);
    auto h = a->UploadSnapshot(*pending, other_dir.string(), "chk-2/a");
    ASSERT_OK(h);
    h_other = *h;
    for (const proto::StateFile& f : h->files()) {
      if (!f.shared()) continue;
      EXPECT_FALSE(SameFile((other_dir / "shared" / f.name()).string(),
                            (fs::path(options.local_dir) / "db" / f.local_name()).string()));
    }
  }
  // More checkpoints (compaction drops the working DB's older files), then close: the working
  // directory is removed, the stored files stay.
  for (int round = 3; round < 15; ++round) {
    put_all(round);
    ASSERT_OK(Checkpoint(a.get(), round, absl::StrCat("chk-", round, "/a")));
  }
  a.reset();
  ASSERT_FALSE(fs::exists(options.local_dir));
  auto r = KeyedStateBackend::Restore(Options("r"), {*h1}, job_dir_);
  ASSERT_OK(r);
  id = (*r)->RegisterState("count", StateKind::kValue);
  for (int i = 0; i < 5000; ++i) ASSERT_EQ(GetOr(r->get(), id, absl::StrCat("k", i)), absl::StrCat("v", i, "-1"));
  if (have_other) {
    auto r2 = KeyedStateBackend::Restore(Options("r2"), {*h_other}, other_dir.string());
    ASSERT_OK(r2);
    id = (*r2)->RegisterState("count", StateKind::kValue);
    for (int i = 0; i < 5000; ++i) ASSERT_EQ(GetOr(r2->get(), id, absl::StrCat("k", i)), absl::StrCat("v", i, "-2"));
    std::error_code ec;
    fs::remove_all(other_dir, ec);
  }
}

// A job restored from a savepoint (another directory) checkpoints into its own directory: the
// savepoint's shared files are not there, so its first checkpoint must upload them instead of
// naming them, or restoring from that checkpoint finds them missing.
TEST_F(KeyedStateBackendTest, CheckpointAfterRestoreFromAnotherDirectoryIsSelfContained) {
  auto a = OpenOrDie(Options("a"));
  ASSERT_NE(a, nullptr);
  StateId id = a->RegisterState("count", StateKind::kValue);
  for (int i = 0; i < 50; ++i) {
    SetKey(a.get(), absl::StrCat("k", i));
    ASSERT_OK(a->Put(id, absl::StrCat("v", i)));
  }
  const std::string savepoint_dir = (root_ / "savepoint").string();
  auto pending = a->SnapshotSync(1);
  ASSERT_OK(pending);
  auto sp = a->UploadSnapshot(*pending, savepoint_dir, "chk-1/sp");
  ASSERT_OK(sp);

  // The new job: same key groups, restored from the savepoint, checkpointing into job_dir_.
  auto b = KeyedStateBackend::Restore(Options("b"), {*sp}, savepoint_dir);
  ASSERT_OK(b);
  id = (*b)->RegisterState("count", StateKind::kValue);
  SetKey(b->get(), "k50");
  ASSERT_OK((*b)->Put(id, "v50"));
  auto h = Checkpoint(b->get(), 2, "chk-2/b");
  ASSERT_OK(h);
  // The savepoint goes away (a user deletes it after the job moved on); the checkpoint stands.
  fs::remove_all(savepoint_dir);
  auto c = KeyedStateBackend::Restore(Options("c"), {*h}, job_dir_);
  ASSERT_OK(c);
  id = (*c)->RegisterState("count", StateKind::kValue);
  for (int i = 0; i <= 50; ++i) EXPECT_EQ(GetOr(c->get(), id, absl::StrCat("k", i)), absl::StrCat("v", i));
}

TEST_F(KeyedStateBackendTest, RescaleTwoToThree) {
  const KeyGroupRange old_ranges[2] = {{0, 63}, {64, 127}};
  std::vector<std::unique_ptr<KeyedStateBackend>> old;
  std::vector<StateId> value_ids, map_ids;
  for (int i = 0; i < 2; ++i) {
    old.push_back(OpenOrDie(Options(absl::StrCat("old", i), old_ranges[i])));
    ASSERT_NE(old.back(), nullptr);
    // Different registration order per subtask: ids differ, names match.
    if (i == 0) {
      value_ids.push_back(old[i]->RegisterState("v", StateKind::kValue));
      map_ids.push_back(old[i]->RegisterState("m", StateKind::kMap));
    } else {
      map_ids.push_back(old[i]->RegisterState("m", StateKind::kMap));
      value_ids.push_back(old[i]->RegisterState("v", StateKind::kValue));
    }
  }
  constexpr int kKeys = 3000;
  std::map<std::string, int> key_group;
  for (int k = 0; k < kKeys; ++k) {
    std::string key = absl::StrCat("user-", k);
    int kg = KeyGroupOf(key);
    key_group[key] = kg;
    int owner = kg < 64 ? 0 : 1;
    old[owner]->SetCurrentKey(key, kg);
    ASSERT_OK(old[owner]->Put(value_ids[owner], absl::StrCat("val-", key)));
    ASSERT_OK(old[owner]->MapPut(map_ids[owner], "mk", key));
    ASSERT_OK(old[owner]->RegisterTimer(TimerDomain::kEventTime, k));
  }
  std::vector<proto::KeyedStateHandle> handles;
  for (int i = 0; i < 2; ++i) {
    auto h = Checkpoint(old[i].get(), 7, absl::StrCat("chk-7/op-", i));
    ASSERT_OK(h);
    handles.push_back(*h);
  }
  old.clear();

  std::set<std::string> all_seen;
  for (int i = 0; i < 3; ++i) {
    KeyGroupRange range = KeyGroupRangeForSubtask(kMaxParallelism, 3, i);
    auto r = KeyedStateBackend::Restore(Options(absl::StrCat("new", i), range), handles, job_dir_);
    ASSERT_OK(r);
    KeyedStateBackend* b = r->get();
    StateId map = b->RegisterState("m", StateKind::kMap);
    StateId value = b->RegisterState("v", StateKind::kValue);
    std::vector<std::string> expected;
    for (const auto& [key, kg] : key_group) {
      if (range.Contains(kg)) expected.push_back(key);
    }
    std::vector<std::string> seen;
    ASSERT_OK(b->ForEachKey(value, [&](absl::string_view key) {
      std::string k(key);
      seen.push_back(k);
      std::string v;
      auto found = b->Get(value, &v);
      EXPECT_TRUE(found.ok() && *found) << k;
      EXPECT_EQ(v, absl::StrCat("val-", k));
      found = b->MapGet(map, "mk", &v);
      EXPECT_TRUE(found.ok() && *found) << k;
      EXPECT_EQ(v, k);
      return absl::OkStatus();
    }));
    EXPECT_THAT(seen, UnorderedElementsAreArray(expected)) << "subtask " << i;
    all_seen.insert(seen.begin(), seen.end());
    int timers = 0;
    ASSERT_OK(b->FireTimers(TimerDomain::kEventTime, kKeys, [&](int64_t ts) {
      std::string v;
      auto found = b->Get(value, &v);
      EXPECT_TRUE(found.ok() && *found);
      EXPECT_EQ(v, absl::StrCat("val-user-", ts));
      ++timers;
      return absl::OkStatus();
    }));
    EXPECT_EQ(timers, static_cast<int>(expected.size()));
    // The restored backend checkpoints and restores again (fast path).
    auto h = Checkpoint(b, 8, absl::StrCat("chk-8/op-", i));
    ASSERT_OK(h);
    r->reset();
    auto again = KeyedStateBackend::Restore(Options(absl::StrCat("again", i), range), {*h}, job_dir_);
    ASSERT_OK(again);
    StateId value_again = (*again)->RegisterState("v", StateKind::kValue);
    int count = 0;
    ASSERT_OK((*again)->ForEachKey(value_again, [&](absl::string_view) {
      ++count;
      return absl::OkStatus();
    }));
    EXPECT_EQ(count, static_cast<int>(expected.size()));
  }
  EXPECT_EQ(all_seen.size(), static_cast<size_t>(kKeys));
}

TEST_F(KeyedStateBackendTest, RestoreWithMissingOrCorruptFilesFails) {
  auto b = OpenOrDie(Options("a"));
  ASSERT_NE(b, nullptr);
  StateId value = b->RegisterState("v", StateKind::kValue);
  for (int round = 0; round < 2; ++round) {  // the second time into the delta file
    for (int i = 0; i < 1000; ++i) {
      SetKey(b.get(), absl::StrCat("k", i));
      ASSERT_OK(b->Put(value, "x"));
    }
    if (round == 0) ASSERT_OK(Checkpoint(b.get(), 1, "p0"));
  }
  auto h = Checkpoint(b.get(), 2, "p");
  ASSERT_OK(h);
  const proto::StateFile* sst = nullptr;
  for (const auto& f : h->files()) {
    if (f.shared() && absl::EndsWith(f.local_name(), ".sst")) sst = &f;
  }
  ASSERT_NE(sst, nullptr);
  fs::path sst_path = fs::path(job_dir_) / "shared" / sst->name();

  // Corrupt (same size, garbage bytes): an error, not a crash.
  fs::path saved = sst_path;
  saved += ".saved";
  fs::copy_file(sst_path, saved);
  {
    std::ofstream out(sst_path, std::ios::binary | std::ios::trunc);
    out << std::string(sst->size(), 'z');
  }
  EXPECT_THAT(KeyedStateBackend::Restore(Options("b"), {*h}, job_dir_),
              StatusIs(absl::StatusCode::kDataLoss, ::testing::_));
  EXPECT_THAT(KeyedStateBackend::Restore(Options("b", {0, 63}), {*h}, job_dir_),
              StatusIs(absl::StatusCode::kDataLoss, ::testing::_));

  // Missing.
  fs::remove(sst_path);
  EXPECT_THAT(KeyedStateBackend::Restore(Options("b"), {*h}, job_dir_),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr(sst->name())));
  EXPECT_THAT(KeyedStateBackend::Restore(Options("b", {0, 63}), {*h}, job_dir_),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr(sst->name())));

  // Wrong size in the handle.
  fs::rename(saved, sst_path);
  proto::KeyedStateHandle wrong = *h;
  for (auto& f : *wrong.mutable_files()) {
    if (f.shared()) f.set_size(f.size() + 1);
  }
  EXPECT_THAT(KeyedStateBackend::Restore(Options("b"), {wrong}, job_dir_),
              StatusIs(absl::StatusCode::kDataLoss, ::testing::_));
  // A hostile file name.
  proto::KeyedStateHandle hostile = *h;
  hostile.mutable_files(0)->set_local_name("../../etc/passwd");
  EXPECT_THAT(KeyedStateBackend::Restore(Options("b"), {hostile}, job_dir_),
              StatusIs(absl::StatusCode::kDataLoss, ::testing::_));

  // The delta file (holding the 1000 entries) corrupt, of the wrong size, missing.
  const proto::StateFile* delta = nullptr;
  for (const auto& f : h->files()) {
    if (f.local_name() == internal::kDeltaFileName) delta = &f;
  }
  ASSERT_NE(delta, nullptr);
  const fs::path delta_path = fs::path(job_dir_) / h->private_dir() / delta->name();
  fs::copy_file(delta_path, saved);
  {
    std::fstream f(delta_path, std::ios::binary | std::ios::in | std::ios::out);
    f.seekp(delta->size() / 2);
    f.put('\x7f');
  }
  for (KeyGroupRange range : {KeyGroupRange{0, 127}, KeyGroupRange{0, 63}}) {
    EXPECT_THAT(KeyedStateBackend::Restore(Options("b", range), {*h}, job_dir_),
                StatusIs(absl::StatusCode::kDataLoss, HasSubstr("checksum mismatch")));
  }
  fs::remove(delta_path);
  fs::rename(saved, delta_path);
  proto::KeyedStateHandle wrong_delta = *h;
  for (auto& f : *wrong_delta.mutable_files()) {
    if (f.local_name() == internal::kDeltaFileName) f.set_size(f.size() - 1);
  }
  EXPECT_THAT(KeyedStateBackend::Restore(Options("b"), {wrong_delta}, job_dir_),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("the handle says")));
  fs::rename(delta_path, saved);
  EXPECT_THAT(KeyedStateBackend::Restore(Options("b"), {*h}, job_dir_),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr(internal::kDeltaFileName)));
  fs::rename(saved, delta_path);

  // The intact handle still restores.
  auto ok = KeyedStateBackend::Restore(Options("b"), {*h}, job_dir_);
  ASSERT_OK(ok);
  StateId value2 = (*ok)->RegisterState("v", StateKind::kValue);
  EXPECT_EQ(GetOr(ok->get(), value2, "k999"), "x");
}

// A copy of snapshot `h` (as private files under `private_dir`) after `edit` changed its DB:
// what a snapshot written by another release, or damaged, looks like.
absl::StatusOr<proto::KeyedStateHandle> RewriteSnapshot(const proto::KeyedStateHandle& h,
                                                        const std::string& job_dir,
                                                        const std::string& private_dir,
                                                        const std::function<void(rocksdb::DB*)>& edit) {
  const fs::path work = fs::path(job_dir) / (private_dir + ".work");
  fs::create_directories(work);
  for (const auto& f : h.files()) {
    fs::copy_file(f.shared() ? fs::path(job_dir) / "shared" / f.name() : fs::path(job_dir) / h.private_dir() / f.name(),
                  work / f.local_name());
  }
  rocksdb::Options options;
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(options, work.string(), &raw);
  if (!s.ok()) return absl::InternalError(s.ToString());
  std::unique_ptr<rocksdb::DB> db(raw);
  edit(db.get());
  s = db->Flush(rocksdb::FlushOptions());
  if (s.ok()) s = db->Close();
  if (!s.ok()) return absl::InternalError(s.ToString());
  db.reset();
  proto::KeyedStateHandle out = h;
  out.clear_files();
  out.set_private_dir(private_dir);
  fs::create_directories(fs::path(job_dir) / private_dir);
  for (const auto& entry : fs::directory_iterator(work)) {
    const std::string name = entry.path().filename().string();
    if (name == "LOCK" || name.rfind("LOG", 0) == 0) continue;
    fs::copy_file(entry.path(), fs::path(job_dir) / private_dir / name);
    proto::StateFile* f = out.add_files();
    f->set_name(name);
    f->set_local_name(name);
    f->set_size(static_cast<int64_t>(fs::file_size(entry.path())));
  }
  return out;
}

// The DB of a snapshot carries the backend's format version (internal/key_codec.h): one
// without it (format 0) restores as before; a newer one, or a malformed one, fails the restore
// with kDataLoss naming the operator subtask and checkpoint (StateBackendOptions::origin), as
// does a value that does not decode when it is read later.
TEST_F(KeyedStateBackendTest, FormatVersionOfSnapshots) {
  auto b = OpenOrDie(Options("a"));
  ASSERT_NE(b, nullptr);
  StateId value = b->RegisterState("v", StateKind::kValue);
  SetKey(b.get(), "k");
  ASSERT_OK(b->Put(value, "x"));
  ASSERT_OK(b->RegisterTimer(TimerDomain::kEventTime, 5));
  StateId list = b->RegisterState("l", StateKind::kList);
  ASSERT_OK(b->Append(list, "x"));
  ASSERT_OK(Checkpoint(b.get(), 1, "p1"));
  // The second checkpoint has every entry in its DB (none in a delta file): the rewrites below
  // change what restore reads.
  auto h = Checkpoint(b.get(), 2, "p");
  ASSERT_OK(h);
  StateBackendOptions restore = Options("b");
  restore.origin = StateOrigin("job-1", "op", "window", 0, 7);
  const std::string named = "(job job-1, operator 'op' (type window), subtask 0, restored from checkpoint 7)";

  auto old = RewriteSnapshot(*h, job_dir_, "old", [](rocksdb::DB* db) {
    ASSERT_TRUE(db->Delete(rocksdb::WriteOptions(), rocksdb::Slice(internal::kFormatKey.data(), 2)).ok());
  });
  ASSERT_OK(old);
  for (KeyGroupRange range : {KeyGroupRange{0, 127}, KeyGroupRange{0, 63}, KeyGroupRange{64, 127}}) {
    StateBackendOptions o = Options(absl::StrCat("old", range.first), range);
    auto r = KeyedStateBackend::Restore(o, {*old}, job_dir_);
    ASSERT_OK(r);
    StateId v2 = (*r)->RegisterState("v", StateKind::kValue);
    if (range.Contains(KeyGroupOf("k"))) {
      EXPECT_EQ(GetOr(r->get(), v2, "k"), "x");
    }
  }

  for (const char* bad : {"\x03", "", "\x01\x01"}) {
    const std::string version(bad);
    auto future = RewriteSnapshot(*h, job_dir_, absl::StrCat("bad", version.size(), bad[0] == 3), [&](rocksdb::DB* db) {
      ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), rocksdb::Slice(internal::kFormatKey.data(), 2), version).ok());
    });
    ASSERT_OK(future);
    const auto expected = version == "\x03" ? HasSubstr("has format version 3, newer than this build reads (up to 2)")
                                            : HasSubstr("malformed format entry");
    EXPECT_THAT(KeyedStateBackend::Restore(restore, {*future}, job_dir_),
                StatusIs(absl::StatusCode::kDataLoss, ::testing::AllOf(HasSubstr(named), expected)));
    restore.range = {0, 63};  // rescaling reads it too
    EXPECT_THAT(KeyedStateBackend::Restore(restore, {*future}, job_dir_),
                StatusIs(absl::StatusCode::kDataLoss, ::testing::AllOf(HasSubstr(named), expected)));
    restore.range = {0, 127};
  }

  // A value that does not decode, read later, fails with kDataLoss naming the origin too.
  auto broken = RewriteSnapshot(*h, job_dir_, "broken", [&](rocksdb::DB* db) {
    std::string key;
    internal::AppendStateKey(&key, KeyGroupOf("k"), static_cast<uint8_t>(list), "k");
    std::string value;
    internal::AppendStoredValue(&value, 0, "\x05" "ab");  // an element longer than the list
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), key, value).ok());
  });
  ASSERT_OK(broken);
  restore.local_dir += "-broken";
  auto r = KeyedStateBackend::Restore(restore, {*broken}, job_dir_);
  ASSERT_OK(r);
  StateId l2 = (*r)->RegisterState("l", StateKind::kList);
  SetKey(r->get(), "k");
  std::vector<std::string> got;
  EXPECT_THAT((*r)->GetList(l2, &got),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr(named + ": malformed list state 'l'")));
}

TEST_F(KeyedStateBackendTest, RestoreSkipsHandlesOutsideTheRange) {
  auto b = OpenOrDie(Options("a", {0, 63}));
  ASSERT_NE(b, nullptr);
  StateId value = b->RegisterState("v", StateKind::kValue);
  b->SetCurrentKey("x", 3);
  ASSERT_OK(b->Put(value, "1"));
  auto h = Checkpoint(b.get(), 1, "p");
  ASSERT_OK(h);
  // Delete its files: a handle that does not intersect must not even be read.
  fs::remove_all(fs::path(job_dir_) / "shared");
  auto r = KeyedStateBackend::Restore(Options("b", {64, 127}), {*h}, job_dir_);
  ASSERT_OK(r);
  StateId value2 = (*r)->RegisterState("v", StateKind::kValue);
  int count = 0;
  ASSERT_OK((*r)->ForEachKey(value2, [&](absl::string_view) {
    ++count;
    return absl::OkStatus();
  }));
  EXPECT_EQ(count, 0);
}

// The working copy's RocksDB keeps no info LOG (nobody reads it; making it was part of every
// subtask's open), neither at open nor after a snapshot's flush.
TEST_F(KeyedStateBackendTest, WorkingCopyKeepsNoInfoLog) {
  StateBackendOptions o = Options("log");
  auto b = OpenOrDie(o);
  ASSERT_NE(b, nullptr);
  auto logs = [&] {
    std::vector<std::string> found;
    for (const auto& e : fs::recursive_directory_iterator(o.local_dir)) {
      const std::string name = e.path().filename().string();
      if (name.rfind("LOG", 0) == 0) found.push_back(name);
    }
    return found;
  };
  EXPECT_THAT(logs(), ::testing::IsEmpty());
  StateId value = b->RegisterState("v", StateKind::kValue);
  SetKey(b.get(), "k");
  ASSERT_OK(b->Put(value, "x"));
  ASSERT_OK(Checkpoint(b.get(), 1, "chk-1/op-0"));
  EXPECT_THAT(logs(), ::testing::IsEmpty());
}

}  // namespace
}  // namespace sluice::state
