// The window operator with a real RocksDB backend, a fake clock and watermarks driven by hand.
// Expected rows are written out by hand (or, for the restore test, computed by an
// uninterrupted run).

#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/algorithm/container.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "common/clock.h"
#include "common/key_groups.h"
#include "common/metrics.h"
#include "common/record_codec.h"
#include "common/status.h"
#include "common/status_matchers.h"
#include "common/watermark.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "operators/internal/builtins.h"
#include "operators/key_hasher.h"
#include "operators/operator.h"
#include "operators/internal/keyed_test_harness.h"
#include "operators/internal/window_keys.h"
#include "operators/registry.h"
#include "operators/timer_service.h"
#include "plan/job_spec.h"
#include "state/keyed_state_backend.h"

namespace sluice::ops {
namespace {

using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAreArray;
using internal::KeyedSubtask;
using ::sluice::testing::StatusIs;

// A kInvalidArgument status whose message contains `text`.
auto Invalid(const std::string& text) {
  return ::sluice::testing::StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(text));
}

constexpr int kMaxParallelism = internal::kHarnessMaxParallelism;

// The key group of key `user` (the window's key), as the exchange computes and carries it.
int UserKeyGroup(int64_t user) {
  const Schema key_schema({{"user", FieldType::kInt64}});
  Record key(1);
  key[0].i = user;
  return KeyGroupForHash(KeyHasher::HashKeyRecord(key_schema, key), kMaxParallelism);
}

// `n` keys: the int64 limits and their neighbours, 0, -1, 1, the edges of 1-byte varints, then
// keys 7919 apart.
std::vector<int64_t> SpreadKeys(size_t n) {
  constexpr int64_t kMin = std::numeric_limits<int64_t>::min();
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  std::vector<int64_t> keys = {0, -1, 1, kMin, kMax, kMin + 1, kMax - 1, -64, 63, 64, -65};
  for (int64_t k = 0; keys.size() < n; ++k) keys.push_back(k * 7919 - 2'000'000);
  return keys;
}

// The input: user (key), ts, amount, name; windows are keyed by user.
std::string Job(const std::string& window_options) {
  return absl::StrCat(R"y(max_parallelism: 16
operators:
  - id: src
    type: datagen
    fields:
      - {name: user, type: int64, expr: seq}
      - {name: ts, type: timestamp, expr: seq}
      - {name: amount, type: int64, expr: seq}
      - {name: price, type: double, expr: seq * 1.0}
      - {name: name, type: string, expr: "'x'"}
  - {id: k, type: key_by, key: user}
  - id: w
    type: window
)y",
                      window_options, R"y(
  - {id: out, type: print, input: w}
)y");
}

// A name per amount (string accumulators).
std::string Name(int64_t amount) { return absl::StrCat("name", amount); }

std::string IntJob(const std::string& window_options);

class WindowTest : public internal::KeyedOperatorTest {
 protected:
  absl::Status Load(const std::string& window_options) {
    return LoadJob(Job(window_options), "w");
  }
  // Loads the job and opens one subtask of parallelism 1.
  KeyedSubtask& Start(const std::string& window_options) {
    EXPECT_OK(Load(window_options));
    return StartSubtask();
  }

  Record Input(int64_t user, int64_t ts, int64_t amount = 0, const std::string& name = "x") {
    Record r(spec_->input_schema.size());
    r[0].i = user;
    r[1].i = ts;
    r[2].i = amount;
    r[3].d = static_cast<double>(amount) / 2;
    r[4].s = name;
    return r;
  }
  absl::Status Add(KeyedSubtask& s, int64_t user, int64_t ts, int64_t amount = 0,
                   const std::string& name = "x") {
    return s.op()->Process(Input(user, ts, amount, name));
  }
  // *batch into s, as one ProcessBatch() (`batches`, which s must prefer) or record by record;
  // then cleared.
  absl::Status Feed(KeyedSubtask& s, bool batches, std::vector<Record>* batch) {
    if (batches) {
      if (!s.op()->PrefersBatches()) return absl::InternalError("no batches");
      SLUICE_RETURN_IF_ERROR(s.op()->ProcessBatch(0, batch->data(), batch->size()));
    } else {
      for (const Record& r : *batch) SLUICE_RETURN_IF_ERROR(s.op()->Process(r));
    }
    batch->clear();
    return absl::OkStatus();
  }
  // s's rows, then the records it sent to its side outputs (late_output), appended to `rows`.
  static void AppendOutput(KeyedSubtask& s, std::vector<std::string>* rows) {
    rows->insert(rows->end(), s.out().rows.begin(), s.out().rows.end());
    rows->insert(rows->end(), s.out().side.begin(), s.out().side.end());
  }
  // The end of a run that compares layouts: the watermark at the end of time fires what is
  // open, the layout switches go back to their defaults, and s's output (AppendOutput) is
  // appended to `rows`, then the count of late records dropped.
  absl::Status FinishRun(KeyedSubtask& s, std::vector<std::string>* rows) {
    SLUICE_RETURN_IF_ERROR(s.Watermark(kMaxWatermark));
    SetWindowFoldBatchesForTest(true);
    SetWindowIntKeyPanesForTest(true);
    SetWindowMemoryForTest(0);
    AppendOutput(s, rows);
    rows->push_back(absl::StrCat("late ", s.late_dropped()));
    return absl::OkStatus();
  }
  // Feeds a flush of DriveIntRun's rows (user, ts, amount) to s, `fast` saying whether the
  // fast paths are on, with the rows' key groups (a byte each; null: none carried).
  using IntFeed = std::function<absl::Status(KeyedSubtask& s, bool fast, const std::vector<int64_t>& values,
                                             const std::string* key_groups)>;
  // DriveRun() of IntJob(options) under a memory budget of `budget` bytes, users from `keys`,
  // the fast paths (SetWindowFoldBatchesForTest, SetWindowIntKeyPanesForTest) on per
  // fast_first before the checkpoint and fast_after after it; each flush's rows go to `feed`,
  // every fifth without key groups.
  absl::Status DriveIntRun(const std::string& options, size_t budget, const std::vector<int64_t>& keys,
                           bool fast_first, bool fast_after, const IntFeed& feed, std::vector<std::string>* out) {
    SetWindowMemoryForTest(budget);
    SetWindowFoldBatchesForTest(fast_first);
    SetWindowIntKeyPanesForTest(fast_first);
    SLUICE_RETURN_IF_ERROR(LoadJob(IntJob(options), "w"));
    KeyedSubtask* s = &StartSubtask();
    bool fast = fast_first;
    std::vector<int64_t> values;
    std::string key_groups;
    int flushes = 0;
    return DriveRun(
        &s, out, [&](uint64_t x) { return keys[(x >> 20) % keys.size()]; },
        [&](int i, int64_t user, int64_t ts, int64_t amount) {
          values.insert(values.end(), {user, ts, amount});
          key_groups.push_back(static_cast<char>(UserKeyGroup(user)));
        },
        [&]() -> absl::Status {
          SLUICE_RETURN_IF_ERROR(feed(*s, fast, values, ++flushes % 5 == 0 ? nullptr : &key_groups));
          values.clear();
          key_groups.clear();
          return absl::OkStatus();
        },
        &fast, fast_after);
  }
  // Rows of (user, ts, amount) into s as one ProcessIntRows() (which s must prefer), with their
  // key groups (a byte each) when `key_groups` is not null.
  static absl::Status FeedIntRows(KeyedSubtask& s, const std::vector<int64_t>& values, const std::string* key_groups) {
    if (!s.op()->PrefersIntRows(0)) return absl::InternalError("no rows");
    IntRowBatch batch;
    batch.values = values.data();
    batch.width = 3;
    batch.count = values.size() / 3;
    batch.key_groups = key_groups == nullptr ? nullptr : reinterpret_cast<const unsigned char*>(key_groups->data());
    batch.key_group_width = 1;
    return s.op()->ProcessIntRows(0, batch);
  }
  // A reference run's late records (`rows` from FinishRun): with a late_output in `options`, more
  // than `min_side` sent to it whole and none dropped; else none sent and some dropped.
  static void ExpectLateRecords(const std::vector<std::string>& rows, const std::string& options, long min_side) {
    const auto side = std::count_if(rows.begin(), rows.end(),
                                    [](const std::string& row) { return absl::StartsWith(row, "0:{\"user\":"); });
    if (absl::StrContains(options, "late_output")) {
      EXPECT_GT(side, min_side);
      EXPECT_EQ(rows.back(), "late 0");
    } else {
      EXPECT_EQ(side, 0);
      EXPECT_NE(rows.back(), "late 0");
    }
  }
  // The records of a run that compares ways of folding: 6000 records (user `user_of(x)` of a
  // pseudo-random x, ts around i / 20 up to 40 ms out of order and twice near the int64
  // limits, amount in [-4, 4]) given to add(i, user, ts, amount); flush() after 1, 8, 57, 100,
  // 101, ... records and before the watermark every 50; at record 3000 the output so far into
  // *rows (AppendOutput), a checkpoint, *folds = folds_after (batches and panes by integer keys on or off,
  // SetWindowFoldBatchesForTest and SetWindowIntKeyPanesForTest) and a restore into *s.
  absl::Status DriveRun(KeyedSubtask** s, std::vector<std::string>* rows, const std::function<int64_t(uint64_t)>& user_of,
                        const std::function<void(int, int64_t, int64_t, int64_t)>& add,
                        const std::function<absl::Status()>& flush, bool* folds, bool folds_after) {
    constexpr int64_t kMin = std::numeric_limits<int64_t>::min();
    constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
    uint64_t x = 7;
    size_t pending = 0;
    size_t batch_size = 1;
    auto flush_and_count = [&]() -> absl::Status {
      SLUICE_RETURN_IF_ERROR(flush());
      pending = 0;
      batch_size = batch_size * 7 % 300 + 1;  // 1, 8, 57, 100, 101, 108, ...
      return absl::OkStatus();
    };
    for (int i = 0; i < 6000; ++i) {
      if (i == 3000) {
        SLUICE_RETURN_IF_ERROR(flush_and_count());
        rows->clear();
        AppendOutput(**s, rows);
        SLUICE_ASSIGN_OR_RETURN(Checkpoint c, TakeCheckpoint(**s, 1));
        SetWindowFoldBatchesForTest(folds_after);
        SetWindowIntKeyPanesForTest(folds_after);
        *folds = folds_after;
        SLUICE_ASSIGN_OR_RETURN(*s, Restore(c, 0, 1));
      }
      x = x * 6364136223846793005ULL + 1442695040888963407ULL;
      int64_t ts = i / 20 + static_cast<int64_t>((x >> 33) % 60) - 40;
      if (i == 1234) ts = kMin + 1;
      if (i == 4321) ts = kMax - 1;
      add(i, user_of(x), ts, static_cast<int64_t>((x >> 45) % 9) - 4);
      if (++pending >= batch_size) SLUICE_RETURN_IF_ERROR(flush_and_count());
      if (i % 50 == 49) {
        SLUICE_RETURN_IF_ERROR(flush_and_count());
        SLUICE_RETURN_IF_ERROR((*s)->Watermark(i / 20 - 5));
      }
    }
    SLUICE_RETURN_IF_ERROR(flush_and_count());
    return FinishRun(**s, rows);
  }
};

// ---------------------------------------------------------------------------------------------
// Tumbling windows, assignment edges, firing at end - 1

TEST_F(WindowTest, TumblingFiresWhenTheWatermarkPassesEndMinusOne) {
  KeyedSubtask& s = Start(R"y(    tumble: {size: 10ms}
    time_field: ts
    aggregates: [{fn: count, as: n}, {fn: sum, field: amount}])y");
  EXPECT_EQ(spec_->output_schema.ToString(),
            "(user int64, window_start timestamp, window_end timestamp, n int64, sum_amount int64, "
            "update bool)");
  ASSERT_OK(Add(s, 1, 0, 1));
  ASSERT_OK(Add(s, 1, 9, 2));   // end - 1: still [0,10)
  ASSERT_OK(Add(s, 1, 10, 4));  // end: [10,20)
  ASSERT_OK(Add(s, 2, 5, 8));
  ASSERT_OK(s.Watermark(8));
  EXPECT_THAT(s.out().rows, IsEmpty());
  ASSERT_OK(s.Watermark(9));
  EXPECT_THAT(s.out().rows,
              UnorderedElementsAreArray(
                  {R"({"user":1,"window_start":0,"window_end":10,"n":2,"sum_amount":3,"update":false})",
                   R"({"user":2,"window_start":0,"window_end":10,"n":1,"sum_amount":8,"update":false})"}));
  s.out().rows.clear();
  ASSERT_OK(s.Watermark(kMaxWatermark));
  EXPECT_THAT(s.out().rows, ElementsAre(R"({"user":1,"window_start":10,"window_end":20,"n":1,"sum_amount":4,"update":false})"));
  EXPECT_EQ(s.late_dropped(), 0);
}

TEST_F(WindowTest, NegativeTimestampsAndOffsets) {
  KeyedSubtask& s = Start(R"y(    tumble: {size: 10ms}
    offset: 3ms
    time_field: ts
    aggregates: [{fn: count, as: n}])y");
  ASSERT_OK(Add(s, 1, -1));   // [-7,3)
  ASSERT_OK(Add(s, 1, -7));   // [-7,3)
  ASSERT_OK(Add(s, 1, -8));   // [-17,-7)
  ASSERT_OK(Add(s, 1, 3));    // [3,13)
  ASSERT_OK(s.Watermark(kMaxWatermark));
  EXPECT_THAT(s.out().rows,
              ElementsAre(R"({"user":1,"window_start":-17,"window_end":-7,"n":1,"update":false})",
                          R"({"user":1,"window_start":-7,"window_end":3,"n":2,"update":false})",
                          R"({"user":1,"window_start":3,"window_end":13,"n":1,"update":false})"));
}

TEST_F(WindowTest, EveryAggregateFunction) {
  KeyedSubtask& s = Start(R"y(    tumble: 100ms
    time_field: ts
    aggregates:
      - {fn: count}
      - {fn: sum, field: price}
      - {fn: min, field: amount}
      - {fn: max, field: name}
      - {fn: avg, field: amount}
      - {fn: first, field: name}
      - {fn: last, field: amount}
      - {fn: count_distinct, field: name, as: names}
      - {fn: count_distinct, field: amount, as: amounts})y");
  // Out of order: first/last go by event time, not arrival.
  ASSERT_OK(Add(s, 7, 50, 4, "c"));
  ASSERT_OK(Add(s, 7, 10, 2, "a"));
  ASSERT_OK(Add(s, 7, 90, 4, "b"));
  ASSERT_OK(Add(s, 7, 30, 9, "a"));
  ASSERT_OK(s.Watermark(99));
  EXPECT_THAT(s.out().rows,
              ElementsAre(R"({"user":7,"window_start":0,"window_end":100,"count":4,"sum_price":9.5,)"
                          R"("min_amount":2,"max_name":"c","avg_amount":4.75,"first_name":"a",)"
                          R"("last_amount":4,"names":3,"amounts":3,"update":false})"));
}

// Numeric aggregates over non-null fields only: records after a window's first are folded into
// its accumulator in place (no row), with the same results.
TEST_F(WindowTest, NumericAggregatesFoldInPlace) {
  KeyedSubtask& s = Start(R"y(    tumble: 100ms
    time_field: ts
    aggregates:
      - {fn: count}
      - {fn: sum, field: amount}
      - {fn: sum, field: price}
      - {fn: min, field: amount}
      - {fn: max, field: amount}
      - {fn: min, field: price}
      - {fn: max, field: price}
      - {fn: avg, field: price})y");
  for (const auto& [ts, amount] : std::vector<std::pair<int64_t, int64_t>>{{50, 4}, {10, -2}, {90, 9}, {30, 3}}) {
    ASSERT_OK(Add(s, 7, ts, amount));
  }
  ASSERT_OK(Add(s, 8, 20, 5));
  ASSERT_OK(s.Watermark(99));
  // price = amount / 2
  EXPECT_THAT(s.out().rows,
              UnorderedElementsAreArray(std::vector<std::string>{
                  R"({"user":7,"window_start":0,"window_end":100,"count":4,"sum_amount":14,"sum_price":7,)"
                  R"("min_amount":-2,"max_amount":9,"min_price":-1,"max_price":4.5,"avg_price":1.75,"update":false})",
                  R"({"user":8,"window_start":0,"window_end":100,"count":1,"sum_amount":5,"sum_price":2.5,)"
                  R"("min_amount":5,"max_amount":5,"min_price":2.5,"max_price":2.5,"avg_price":2.5,"update":false})"}));
}

TEST_F(WindowTest, HoppingWindows) {
  KeyedSubtask& s = Start(R"y(    hop: {size: 10ms, slide: 5ms}
    time_field: ts
    aggregates: [{fn: count, as: n}])y");
  ASSERT_OK(Add(s, 1, 4));   // [-5,5) [0,10)
  ASSERT_OK(Add(s, 1, 5));   // [0,10) [5,15)
  ASSERT_OK(Add(s, 1, 12));  // [5,15) [10,20)
  ASSERT_OK(s.Watermark(9));
  EXPECT_THAT(s.out().rows,
              ElementsAre(R"({"user":1,"window_start":-5,"window_end":5,"n":1,"update":false})",
                          R"({"user":1,"window_start":0,"window_end":10,"n":2,"update":false})"));
  ASSERT_OK(s.Watermark(kMaxWatermark));
  EXPECT_THAT(s.out().rows,
              ElementsAre(R"({"user":1,"window_start":-5,"window_end":5,"n":1,"update":false})",
                          R"({"user":1,"window_start":0,"window_end":10,"n":2,"update":false})",
                          R"({"user":1,"window_start":5,"window_end":15,"n":2,"update":false})",
                          R"({"user":1,"window_start":10,"window_end":20,"n":1,"update":false})"));
}

// Hopping windows kept per slide pane (event time, no lateness, aggregates that merge exactly)
// give the rows, in order, and the late counts of one accumulator per window: out-of-order
// records, records late for some of their windows only and for all, negative timestamps, an
// offset, and timestamps within a window length of the int64 limits (some of whose windows do
// not exist: those windows take the general path and are merged with the panes' when they fire).
TEST_F(WindowTest, SlidePanesGiveTheRowsOfOneAccumulatorPerWindow) {
  const std::string options = R"y(    hop: {size: 30ms, slide: 10ms}
    offset: 3ms
    time_field: ts
    aggregates:
      - {fn: count, as: n}
      - {fn: sum, field: amount}
      - {fn: avg, field: amount}
      - {fn: min, field: price}
      - {fn: max, field: name}
      - {fn: first, field: name}
      - {fn: last, field: amount}
      - {fn: max, field: amount})y";
  constexpr int64_t kMin = std::numeric_limits<int64_t>::min();
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  // The input, up to the last watermark (the subtask's options live as long as the job loaded
  // last: one subtask at a time).
  auto run = [&](KeyedSubtask& s) -> absl::Status {
    for (const auto& [user, ts] : std::vector<std::pair<int64_t, int64_t>>{
             {1, kMin}, {1, kMin + 12}, {2, kMin + 40}, {1, kMax - 5}, {2, kMax - 25}, {2, kMax - 40}}) {
      SLUICE_RETURN_IF_ERROR(Add(s, user, ts, 1, Name(user)));
    }
    uint64_t x = 12345;
    for (int i = 0; i < 900; ++i) {
      x = x * 6364136223846793005ULL + 1442695040888963407ULL;
      const int64_t base = -60 + i / 3;
      const int64_t ts = base + static_cast<int64_t>((x >> 33) % 50);  // up to 50 ms ahead
      const int64_t amount = static_cast<int64_t>((x >> 40) % 7);
      SLUICE_RETURN_IF_ERROR(Add(s, static_cast<int64_t>((x >> 20) % 13), ts, amount, Name(amount)));
      if (i % 40 == 39) SLUICE_RETURN_IF_ERROR(s.Watermark(base + 40));
    }
    return absl::OkStatus();
  };
  SetWindowSlidePanesForTest(false);
  KeyedSubtask& general = Start(options);
  SetWindowSlidePanesForTest(true);
  ASSERT_OK(run(general));
  ASSERT_OK(general.Watermark(kMaxWatermark));
  const std::vector<std::string> expected = general.out().rows;
  const uint64_t expected_late = general.late_dropped();
  EXPECT_GT(expected.size(), 300u);
  EXPECT_GT(expected_late, 20u);

  KeyedSubtask& panes = Start(options);
  ASSERT_OK(run(panes));
  // A checkpoint holds slide panes (format 2): the fast path ran.
  ASSERT_OK(TakeCheckpoint(panes, 1));
  const state::StateId bucket_state = panes.backend()->RegisterState("window_panes", state::StateKind::kValue);
  int slide_panes = 0;
  ASSERT_OK(panes.backend()->ForEachKey(bucket_state, [&](absl::string_view) -> absl::Status {
    std::string v;
    SLUICE_ASSIGN_OR_RETURN(bool found, panes.backend()->Get(bucket_state, &v));
    slide_panes += found && !v.empty() && v[0] == 2;
    return absl::OkStatus();
  }));
  EXPECT_GT(slide_panes, 0);
  ASSERT_OK(panes.Watermark(kMaxWatermark));
  EXPECT_EQ(panes.out().rows, expected);
  EXPECT_EQ(panes.late_dropped(), expected_late);
}

// Windows keyed by one integer field keep their panes in flat slots by the key's value
// (IntPaneTable), and sessions are found by the key's value; the rows, their order and the late
// counts are those of panes and sessions by key record bytes: keys at the int64 limits, 0 and
// negative, enough keys per bucket for its table to grow, session keys dropped and opened again,
// late records dropped and refiring within the lateness, a restore midway into either layout,
// and a memory budget that sends windows (session keys) to the backend.
TEST_F(WindowTest, IntKeyPanesGiveTheRowsOfPanesByKeyBytes) {
  constexpr int64_t kMin = std::numeric_limits<int64_t>::min();
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  std::vector<int64_t> keys = {0, -1, 1, kMin, kMax, kMin + 1, kMax - 1, -64, 63, 64, -65};
  for (int64_t k = 0; keys.size() < 700; ++k) keys.push_back(k * 7919 - 2'000'000);
  for (const char* options : {R"y(    tumble: 10ms
    time_field: ts
    allowed_lateness: 15ms
    aggregates: [{fn: count, as: n}, {fn: sum, field: amount}, {fn: min, field: price}, {fn: max, field: amount}, {fn: avg, field: amount}])y",
                              R"y(    hop: {size: 30ms, slide: 10ms}
    time_field: ts
    aggregates: [{fn: count, as: n}, {fn: sum, field: amount}, {fn: max, field: amount}])y",
                              R"y(    hop: {size: 20ms, slide: 10ms}
    time_field: ts
    allowed_lateness: 10ms
    aggregates: [{fn: count, as: n}, {fn: avg, field: price}])y",
                              R"y(    session: 3ms
    time_field: ts
    allowed_lateness: 10ms
    aggregates: [{fn: count, as: n}, {fn: sum, field: amount}, {fn: max, field: price}])y"}) {
    for (size_t budget : {size_t{0}, size_t{16} << 10}) {
      auto run = [&](bool int_first, bool int_after, std::vector<std::string>* rows) -> absl::Status {
        SetWindowMemoryForTest(budget);
        SetWindowIntKeyPanesForTest(int_first);
        KeyedSubtask* s = &Start(options);
        uint64_t x = 7;
        for (int i = 0; i < 4000; ++i) {
          if (i == 2000) {
            *rows = s->out().rows;
            SLUICE_ASSIGN_OR_RETURN(Checkpoint c, TakeCheckpoint(*s, 1));
            SetWindowIntKeyPanesForTest(int_after);
            SLUICE_ASSIGN_OR_RETURN(s, Restore(c, 0, 1));
          }
          x = x * 6364136223846793005ULL + 1442695040888963407ULL;
          const int64_t ts = i / 20 + static_cast<int64_t>((x >> 33) % 60) - 40;
          const int64_t amount = static_cast<int64_t>((x >> 45) % 9) - 4;
          SLUICE_RETURN_IF_ERROR(Add(*s, keys[(x >> 20) % keys.size()], ts, amount));
          if (i % 50 == 49) SLUICE_RETURN_IF_ERROR(s->Watermark(i / 20 - 5));
        }
        return FinishRun(*s, rows);
      };
      std::vector<std::string> general;
      const uint64_t made = WindowIntKeyPanesMadeForTest();
      ASSERT_OK(run(false, false, &general));
      EXPECT_EQ(WindowIntKeyPanesMadeForTest(), made);
      EXPECT_GT(general.size(), 1000u);
      EXPECT_NE(general.back(), "late 0");
      for (const auto& [int_first, int_after] : {std::pair{true, true}, std::pair{true, false}, std::pair{false, true}}) {
        std::vector<std::string> got;
        ASSERT_OK(run(int_first, int_after, &got));
        if (budget != 0 && absl::StrContains(options, "session")) {
          // A key's memory differs by layout, so other keys go to the backend, whose timers fire
          // them apart from the keys in memory: the same rows, in another order at equal times.
          std::sort(got.begin(), got.end());
          std::vector<std::string> sorted = general;
          std::sort(sorted.begin(), sorted.end());
          EXPECT_EQ(got, sorted) << options << " budget " << budget << " int " << int_first << int_after;
          continue;
        }
        EXPECT_EQ(got, general) << options << " budget " << budget << " int " << int_first << int_after;
      }
      // Panes, and session keys with one open session, in flat slots: the fast paths ran (a
      // budget of 16 KiB holds about a hundred session keys).
      EXPECT_GT(WindowIntKeyPanesMadeForTest(), made + (budget == 0 ? 1000 : 100)) << options << budget;
    }
  }
}

// A session key of one integer field whose one open session has not fired is kept flat in its
// index slot, and batches (ProcessBatch) prefetch the slots of keys ahead; every other case
// makes the key a node first. The rows, their order and the late counts equal those of the
// general path (keys by record bytes, a record at a time): sessions extended later and
// earlier, a second open session, a record bridging two sessions, a late record within the
// lateness merging into a fired session (a refire), drops, keys at the int64 limits, 0 and
// negative, and a checkpoint restored midway into either layout.
TEST_F(WindowTest, FlatSessionKeysGiveTheRowsOfTheGeneralPath) {
  constexpr int64_t kMin = std::numeric_limits<int64_t>::min();
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  const std::vector<int64_t> keys = {kMin, kMax, 0, -1, 5, kMin + 1, kMax - 1};
  for (const char* lateness : {"20ms", "0ms"}) {
  const std::string options = absl::StrCat(R"y(    session: 10ms
    time_field: ts
    allowed_lateness: )y", lateness, R"y(
    aggregates: [{fn: count, as: n}, {fn: sum, field: amount}, {fn: min, field: amount}, {fn: max, field: price}])y");
  // Record times (the same for every key, keys interleaved), watermarks (-1: none) and a
  // checkpoint (restored at once) after some steps.
  // The keys of `one_session` get only the records of the steps marked `all` (one open session
  // at a time: flat until they fire, without lateness).
  const std::vector<int64_t> one_session = {kMin + 2, 7, -7, kMax - 2};
  struct Step {
    std::vector<int64_t> ts;
    int64_t watermark = -1;
    bool checkpoint = false;
    bool all = false;
  };
  const std::vector<Step> steps = {
      {{0, 5}, -1, false, true},     // [0,15): extended later in place
      {{-3}, -1, false, true},       // [-3,15): earlier
      {{40}, 3, false},              // a second open session [40,50)
      {{}, 20, true},                // [-3,15) fires; kept for its lateness; checkpoint
      {{22}, -1, false},             // [22,32): a third one
      {{31}, -1, false},             // [31,41) bridges [22,32) and [40,50): [22,50)
      {{10}, -1, false},             // late, within the lateness: [-3,20) fires again
      {{60, 61}, 30, true, true},    // a new session; checkpoint
      {{-20}, 34, false},            // late beyond the lateness: dropped; [-3,20) cleaned up
      {{62, 100}, 80, false, true},  // [60,72) fires; [100,110) open at the end
  };
  auto run = [&](bool int_keys, bool int_after, bool batches, std::vector<std::string>* rows) -> absl::Status {
    SetWindowIntKeyPanesForTest(int_keys);
    KeyedSubtask* s = &Start(options);
    bool flat = int_keys;
    for (const Step& step : steps) {
      std::vector<Record> batch;
      for (int64_t ts : step.ts) {
        for (size_t k = 0; k < keys.size(); ++k) batch.push_back(Input(keys[k], ts, static_cast<int64_t>(k) - 3));
        if (!step.all) continue;
        for (size_t k = 0; k < one_session.size(); ++k) batch.push_back(Input(one_session[k], ts, static_cast<int64_t>(k)));
      }
      if (batches) {
        EXPECT_EQ(s->op()->PrefersBatches(), flat);
        for (size_t i = 0; i < batch.size(); i += 5) {
          SLUICE_RETURN_IF_ERROR(s->op()->ProcessBatch(0, batch.data() + i, std::min<size_t>(5, batch.size() - i)));
        }
      } else {
        for (const Record& r : batch) SLUICE_RETURN_IF_ERROR(s->op()->Process(r));
      }
      if (step.watermark >= 0) SLUICE_RETURN_IF_ERROR(s->Watermark(step.watermark));
      if (step.checkpoint) {
        rows->insert(rows->end(), s->out().rows.begin(), s->out().rows.end());
        SLUICE_ASSIGN_OR_RETURN(Checkpoint c, TakeCheckpoint(*s, 1));
        SetWindowIntKeyPanesForTest(int_after);
        SLUICE_ASSIGN_OR_RETURN(s, Restore(c, 0, 1));
        flat = int_after;
      }
    }
    SLUICE_RETURN_IF_ERROR(s->Watermark(kMaxWatermark));
    SetWindowIntKeyPanesForTest(true);
    rows->insert(rows->end(), s->out().rows.begin(), s->out().rows.end());
    rows->push_back(absl::StrCat("late ", s->late_dropped()));
    return absl::OkStatus();
  };
  std::vector<std::string> general;
  ASSERT_OK(run(false, false, false, &general));
  const bool late_merges = std::string(lateness) != "0ms";
  EXPECT_GT(general.size(), keys.size() * 4 + one_session.size() * 3);
  // The records at -20 (counted by the subtask restored last).
  EXPECT_EQ(general.back(), absl::StrCat("late ", keys.size()));
  // With lateness, the late record merged into the fired session: a new session of the merged
  // window.
  EXPECT_EQ(absl::c_count(general, R"({"user":0,"window_start":-3,"window_end":20,"n":4,"sum_amount":-4,"min_amount":-1,"max_price":-0.5,"update":false})"),
            late_merges ? 1 : 0);
  const uint64_t made = WindowIntKeyPanesMadeForTest();
  for (const auto& [int_first, int_after] : {std::pair{true, true}, std::pair{true, false}, std::pair{false, true}}) {
    for (bool batches : {true, false}) {
      std::vector<std::string> got;
      ASSERT_OK(run(int_first, int_after, batches, &got));
      EXPECT_EQ(got, general) << lateness << " " << int_first << int_after << batches;
    }
  }
  EXPECT_GT(WindowIntKeyPanesMadeForTest(), made);
  }
}

// Batches of flat session keys extend their sessions in place by the key's value (the records
// count as folded by batches), and flat keys fire in their record bytes' order without making
// them, also when the watermark passes every pending firing at once (the input's end): the
// rows, their order and the late counts equal those of records one at a time by key bytes.
// Keys whose record bytes (varints) differ only past their 8th byte, keys with a second open
// session (nodes) firing among flat ones, records with and without a carried key group, late
// records, with and without lateness (flat keys made nodes while every firing is taken at
// once), and a checkpoint restored midway into either layout.
TEST_F(WindowTest, FlatSessionBatchesAndFiringsGiveTheRowsOfTheGeneralPath) {
  std::vector<int64_t> keys = {0, -1, 1, std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max()};
  for (int64_t k = 1; k <= 24; ++k) keys.push_back(k << 57);  // the same first 8 bytes
  for (int64_t k = 0; keys.size() < 120; ++k) keys.push_back(k * 7919 - 1'000'000);
  const Schema key_schema({{"user", FieldType::kInt64}});
  auto key_group = [&](int64_t user) {
    Record key(1);
    key[0].i = user;
    return KeyGroupForHash(KeyHasher::HashKeyRecord(key_schema, key), kMaxParallelism);
  };
  for (const char* lateness : {"0ms", "10ms"}) {
    const std::string options = absl::StrCat(R"y(    session: 5ms
    time_field: ts
    allowed_lateness: )y", lateness, R"y(
    aggregates: [{fn: count, as: n}, {fn: sum, field: amount}, {fn: max, field: price}])y");
    auto run = [&](bool flat_first, bool flat_after, std::vector<std::string>* rows) -> absl::Status {
      SetWindowIntKeyPanesForTest(flat_first);  // the reference: sessions by key bytes
      KeyedSubtask* s = &Start(options);
      bool flat = flat_first;
      uint64_t x = 11;
      std::vector<Record> batch;
      size_t batch_size = 1;
      auto flush = [&]() -> absl::Status {
        batch_size = batch_size * 7 % 200 + 1;
        return Feed(*s, flat, &batch);
      };
      for (int i = 0; i < 8000; ++i) {
        if (i == 4000) {
          SLUICE_RETURN_IF_ERROR(flush());
          *rows = s->out().rows;
          SLUICE_ASSIGN_OR_RETURN(Checkpoint c, TakeCheckpoint(*s, 1));
          SetWindowIntKeyPanesForTest(flat_after);
          SLUICE_ASSIGN_OR_RETURN(s, Restore(c, 0, 1));
          flat = flat_after;
        }
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        const int64_t user = keys[(x >> 20) % keys.size()];
        // Mostly within a few ms of the run's time, so most records extend their key's
        // session, some late; one in 128 far ahead (a second open session: the key is a node).
        int64_t ts = i / 40 + static_cast<int64_t>((x >> 33) % 12) - 10;
        if ((x >> 40) % 128 == 0) ts += 30;
        const int64_t amount = static_cast<int64_t>((x >> 45) % 9) - 4;
        batch.push_back(Input(user, ts, amount));
        if (i % 11 != 3) batch.back().set_carried_key_group(key_group(user));
        if (batch.size() >= batch_size) SLUICE_RETURN_IF_ERROR(flush());
        if (i % 400 == 399) {
          SLUICE_RETURN_IF_ERROR(flush());
          SLUICE_RETURN_IF_ERROR(s->Watermark(i / 40 - 3));
        }
      }
      SLUICE_RETURN_IF_ERROR(flush());
      return FinishRun(*s, rows);
    };
    std::vector<std::string> general;
    const uint64_t folded = WindowBatchFoldsForTest();
    ASSERT_OK(run(false, false, &general));
    EXPECT_EQ(WindowBatchFoldsForTest(), folded);
    const bool no_lateness = std::string(lateness) == "0ms";
    EXPECT_GT(general.size(), 1000u);
    if (no_lateness) EXPECT_NE(general.back(), "late 0");
    for (const auto& [first, after] : {std::pair{true, true}, std::pair{true, false}, std::pair{false, true}}) {
      std::vector<std::string> got;
      const uint64_t before = WindowBatchFoldsForTest();
      ASSERT_OK(run(first, after, &got));
      EXPECT_EQ(got, general) << lateness << " flat " << first << after;
      // Records of a flat run's half extend a session in place in their batch (with lateness
      // fewer: a fired key stays a node for its lateness).
      EXPECT_GT(WindowBatchFoldsForTest(), before + (no_lateness ? 500 : 50)) << lateness << " flat " << first << after;
    }
  }
}

// Flat session keys leave after their firings: a firing of some keys drops them one by one, a
// firing of every key (the input's end) drops the session index whole, and both delete the keys
// a checkpoint wrote from the backend (a checkpoint after them restores none of them, so
// nothing fires twice). Counts only (a record counted without FoldValues) and with a sum: the
// rows are the general path's.
TEST_F(WindowTest, FiredFlatSessionKeysLeaveTheIndexAndTheBackend) {
  for (const char* aggregates : {"[{fn: count, as: n}]", "[{fn: count, as: n}, {fn: sum, field: amount}]"}) {
    const std::string options =
        absl::StrCat("    session: 5ms\n    time_field: ts\n    aggregates: ", aggregates);
    auto run = [&](bool flat, std::vector<std::string>* rows, uint64_t* drops) -> absl::Status {
      SetWindowIntKeyPanesForTest(flat);
      const uint64_t drops_before = WindowSessionIndexDropsForTest();
      KeyedSubtask* s = &Start(options);
      std::vector<Record> batch;
      auto flush = [&]() { return Feed(*s, flat, &batch); };
      auto take_rows = [&]() {
        rows->insert(rows->end(), s->out().rows.begin(), s->out().rows.end());
        s->out().rows.clear();
      };
      auto restart = [&](int64_t id) -> absl::Status {
        SLUICE_ASSIGN_OR_RETURN(Checkpoint c, TakeCheckpoint(*s, id));
        take_rows();
        SLUICE_ASSIGN_OR_RETURN(s, Restore(c, 0, 1));
        return absl::OkStatus();
      };
      // Keys 0..59 (ts 0..11), then a checkpoint: they are in the backend.
      for (int64_t k = 0; k < 60; ++k) {
        batch.push_back(Input(k * 7919 - 100'000, k % 10, k));
        batch.push_back(Input(k * 7919 - 100'000, k % 10 + 2, 1));
      }
      SLUICE_RETURN_IF_ERROR(flush());
      SLUICE_RETURN_IF_ERROR(restart(1));
      // Keys 60..119 (ts 20..29) and one more record for half of keys 0..59; the watermark
      // then fires keys 0..59 only (one by one), and a checkpoint after it restores 60..119.
      for (int64_t k = 0; k < 120; ++k) {
        if (k < 60 && k % 2 == 0) batch.push_back(Input(k * 7919 - 100'000, k % 10 + 3, 2));
        if (k >= 60) batch.push_back(Input(k * 7919 - 100'000, 20 + k % 10, k));
      }
      SLUICE_RETURN_IF_ERROR(flush());
      SLUICE_RETURN_IF_ERROR(s->Watermark(18));
      if (WindowSessionIndexDropsForTest() != drops_before) return absl::InternalError("dropped early");
      SLUICE_RETURN_IF_ERROR(restart(2));
      // Keys 60..119 once more, then the end of input fires every key left (the index whole),
      // and a checkpoint after it restores no session: the end of input fires nothing again.
      for (int64_t k = 60; k < 120; ++k) batch.push_back(Input(k * 7919 - 100'000, 21 + k % 10, 3));
      SLUICE_RETURN_IF_ERROR(flush());
      SLUICE_RETURN_IF_ERROR(s->Watermark(kMaxWatermark));
      SLUICE_RETURN_IF_ERROR(restart(3));
      SLUICE_RETURN_IF_ERROR(s->Watermark(kMaxWatermark));
      take_rows();
      *drops = WindowSessionIndexDropsForTest() - drops_before;
      SetWindowIntKeyPanesForTest(true);
      return absl::OkStatus();
    };
    std::vector<std::string> general, flat;
    uint64_t general_drops = 0, flat_drops = 0;
    ASSERT_OK(run(false, &general, &general_drops));
    ASSERT_OK(run(true, &flat, &flat_drops));
    EXPECT_EQ(general.size(), 120u) << aggregates;  // one session per key, each fired once
    EXPECT_EQ(flat, general) << aggregates;
    EXPECT_EQ(general_drops, 0u) << aggregates;
    EXPECT_EQ(flat_drops, 1u) << aggregates;  // the end of input's firing, not the one at 18
  }
}

// Flat session keys are checkpointed as one block per key group ("window_flat_sessions"), not
// an entry per key ("window_key_sessions"): the rows equal the general path's through a
// checkpoint restored at parallelism 2 (each subtask picks its key groups' blocks), keys
// extended, fired and made nodes (a second session) before a second checkpoint, and the end of
// input, after which neither blocks nor entries are left; a checkpoint of the general layout
// (an entry per key, as checkpoints before the blocks wrote them) restores into flat keys, whose
// entries then leave the backend.
TEST_F(WindowTest, FlatSessionKeysCheckpointAsOneBlockPerKeyGroup) {
  const Schema key_schema({{"user", FieldType::kInt64}});
  auto subtask_of = [&](int64_t user) {
    Record key(1);
    key[0].i = user;
    const int kg = KeyGroupForHash(KeyHasher::HashKeyRecord(key_schema, key), kMaxParallelism);
    return KeyGroupRangeForSubtask(kMaxParallelism, 2, 1).Contains(kg) ? 1 : 0;
  };
  // Entries of value state `name` in s's backend.
  auto entries = [](KeyedSubtask& s, const char* name) {
    size_t n = 0;
    const state::StateId id = s.backend()->RegisterState(name, state::StateKind::kValue);
    EXPECT_OK(s.backend()->ForEachKey(id, [&](absl::string_view) {
      ++n;
      return absl::OkStatus();
    }));
    return n;
  };
  constexpr int64_t kKeys = 200;
  auto key = [](int64_t k) { return k * 7919 - 100'000; };
  struct Counts {
    size_t entries[3] = {0, 0, 0};  // "window_key_sessions" after checkpoints 1, 2, 3
    size_t blocks[3] = {0, 0, 0};   // "window_flat_sessions"
  };
  const std::string options = "    session: 5ms\n    time_field: ts\n    aggregates: [{fn: count, as: n}, {fn: sum, field: amount}]";
  int64_t next_id = 1;  // checkpoint ids: each subtask's its own (its files' directory)
  auto run = [&](bool flat_first, bool flat_after, std::vector<std::string>* rows, Counts* counts) -> absl::Status {
    SetWindowIntKeyPanesForTest(flat_first);
    KeyedSubtask* s = &Start(options);
    std::vector<Record> batch;
    for (int64_t k = 0; k < kKeys; ++k) {
      batch.push_back(Input(key(k), k % 10, k));
      batch.push_back(Input(key(k), k % 10 + 2, 1));
    }
    SLUICE_RETURN_IF_ERROR(Feed(*s, flat_first, &batch));
    SLUICE_ASSIGN_OR_RETURN(Checkpoint c1, TakeCheckpoint(*s, next_id++));
    counts->entries[0] = entries(*s, "window_key_sessions");
    counts->blocks[0] = entries(*s, "window_flat_sessions");
    SetWindowIntKeyPanesForTest(flat_after);
    KeyedSubtask* sub[2];
    for (int i = 0; i < 2; ++i) {
      SLUICE_ASSIGN_OR_RETURN(sub[i], Restore(c1, i, 2));
    }
    // Half the keys extended, a fifth given a second session (a node), then a watermark that
    // fires the sessions ending by 12 only.
    std::vector<Record> batches[2];
    for (int64_t k = 0; k < kKeys; ++k) {
      if (k % 2 == 0) batches[subtask_of(key(k))].push_back(Input(key(k), k % 10 + 3, 2));
      if (k % 5 == 0) batches[subtask_of(key(k))].push_back(Input(key(k), 40 + k % 10, 3));
    }
    Checkpoint c2[2];
    for (int i = 0; i < 2; ++i) {
      SLUICE_RETURN_IF_ERROR(Feed(*sub[i], flat_after, &batches[i]));
      SLUICE_RETURN_IF_ERROR(sub[i]->Watermark(12));
      SLUICE_ASSIGN_OR_RETURN(c2[i], TakeCheckpoint(*sub[i], next_id++));
      counts->entries[1] += entries(*sub[i], "window_key_sessions");
      counts->blocks[1] += entries(*sub[i], "window_flat_sessions");
      rows->insert(rows->end(), sub[i]->out().rows.begin(), sub[i]->out().rows.end());
    }
    for (int i = 0; i < 2; ++i) {
      SLUICE_ASSIGN_OR_RETURN(KeyedSubtask * r, Restore(c2[i], i, 2));
      SLUICE_RETURN_IF_ERROR(r->Watermark(kMaxWatermark));
      SLUICE_ASSIGN_OR_RETURN(Checkpoint c3, TakeCheckpoint(*r, next_id++));
      (void)c3;
      counts->entries[2] += entries(*r, "window_key_sessions");
      counts->blocks[2] += entries(*r, "window_flat_sessions");
      rows->insert(rows->end(), r->out().rows.begin(), r->out().rows.end());
    }
    std::sort(rows->begin(), rows->end());
    SetWindowIntKeyPanesForTest(true);
    return absl::OkStatus();
  };
  std::vector<std::string> general, flat, general_then_flat;
  Counts general_counts, flat_counts, mixed_counts;
  ASSERT_OK(run(false, false, &general, &general_counts));
  ASSERT_OK(run(true, true, &flat, &flat_counts));
  ASSERT_OK(run(false, true, &general_then_flat, &mixed_counts));
  // One row per key's first session and one per second session.
  EXPECT_EQ(general.size(), static_cast<size_t>(kKeys + kKeys / 5));
  EXPECT_EQ(flat, general);
  EXPECT_EQ(general_then_flat, general);
  // The general layout: an entry per key, no blocks.
  EXPECT_EQ(general_counts.entries[0], static_cast<size_t>(kKeys));
  EXPECT_EQ(general_counts.blocks[0], 0u);
  // Flat keys: blocks, at most one per key group; entries only for the nodes (the keys with a
  // second session); nothing left after the end of input.
  EXPECT_EQ(flat_counts.entries[0], 0u);
  EXPECT_GT(flat_counts.blocks[0], 0u);
  EXPECT_LE(flat_counts.blocks[0], static_cast<size_t>(kMaxParallelism));
  EXPECT_EQ(flat_counts.entries[1], static_cast<size_t>(kKeys / 5));
  EXPECT_GT(flat_counts.blocks[1], 0u);
  EXPECT_LE(flat_counts.blocks[1], static_cast<size_t>(kMaxParallelism));
  EXPECT_EQ(flat_counts.entries[2], 0u);
  EXPECT_EQ(flat_counts.blocks[2], 0u);
  // The general layout restored into flat keys: their entries leave at the restore.
  EXPECT_EQ(mixed_counts.entries[1], static_cast<size_t>(kKeys / 5));
  EXPECT_EQ(mixed_counts.blocks[1], flat_counts.blocks[1]);
  EXPECT_EQ(mixed_counts.entries[2], 0u);
  EXPECT_EQ(mixed_counts.blocks[2], 0u);
}

// Tumbling windows and slide panes of one integer key whose aggregates fold into words take
// batches (PrefersBatches) and fold most records in place, their buckets found by the key group
// carried with the record (FoldBatch); the rows, their order and the late counts equal those of
// records one at a time by key bytes: keys at the int64 limits, 0 and negative, records without
// a carried key group, late records within and beyond the lateness, timestamps at the int64
// limits, a memory budget that sends windows to the backend, and a checkpoint restored midway
// into either way (the restored buckets found in the backend first).
TEST_F(WindowTest, FoldedBatchesGiveTheRowsOfRecordsOneAtATime) {
  const std::vector<int64_t> keys = SpreadKeys(700);
  // A quarter of the records: keys k << 57, whose record bytes (varints) differ only past their
  // 8th byte, so that firing orders some of them within a window and key group by those bytes.
  auto high_key = [](uint64_t x) { return static_cast<int64_t>((x >> 50) % 24 + 1) << 57; };
  for (const char* options : {R"y(    tumble: 10ms
    time_field: ts
    aggregates: [{fn: count, as: n}, {fn: sum, field: amount}, {fn: min, field: price}, {fn: max, field: amount}, {fn: avg, field: amount}])y",
                              R"y(    tumble: 10ms
    offset: 3ms
    time_field: ts
    allowed_lateness: 15ms
    aggregates: [{fn: count, as: n}, {fn: avg, field: price}])y",
                              R"y(    hop: {size: 30ms, slide: 10ms}
    time_field: ts
    aggregates: [{fn: count, as: n}, {fn: sum, field: amount}, {fn: max, field: amount}])y"}) {
    for (size_t budget : {size_t{0}, size_t{16} << 10}) {
      auto run = [&](bool folds_first, bool folds_after, std::vector<std::string>* rows) -> absl::Status {
        SetWindowMemoryForTest(budget);
        SetWindowFoldBatchesForTest(folds_first);
        SetWindowIntKeyPanesForTest(folds_first);  // the reference: panes by key bytes
        KeyedSubtask* s = &Start(options);
        bool folds = folds_first;
        std::vector<Record> batch;
        return DriveRun(
            &s, rows,
            [&](uint64_t x) { return (x >> 40) % 4 == 0 ? high_key(x) : keys[(x >> 20) % keys.size()]; },
            [&](int i, int64_t user, int64_t ts, int64_t amount) {
              batch.push_back(Input(user, ts, amount));
              if (i % 13 != 5) batch.back().set_carried_key_group(UserKeyGroup(user));
            },
            [&]() -> absl::Status {
              if (folds) {
                if (!s->op()->PrefersBatches()) return absl::InternalError("no batches");
                SLUICE_RETURN_IF_ERROR(s->op()->ProcessBatch(0, batch.data(), batch.size()));
              } else {
                for (const Record& r : batch) SLUICE_RETURN_IF_ERROR(s->op()->Process(r));
              }
              batch.clear();
              return absl::OkStatus();
            },
            &folds, folds_after);
      };
      std::vector<std::string> general;
      const uint64_t folded = WindowBatchFoldsForTest();
      ASSERT_OK(run(false, false, &general));
      EXPECT_EQ(WindowBatchFoldsForTest(), folded);
      EXPECT_GT(general.size(), 1000u);
      EXPECT_NE(general.back(), "late 0");
      for (const auto& [first, after] : {std::pair{true, true}, std::pair{true, false}, std::pair{false, true}}) {
        std::vector<std::string> got;
        const uint64_t before = WindowBatchFoldsForTest();
        ASSERT_OK(run(first, after, &got));
        EXPECT_EQ(got, general) << options << " budget " << budget << " folds " << first << after;
        // Records folded in place (the others: no key group carried, late, in a fired window;
        // with the budget, in windows beyond it).
        EXPECT_GT(WindowBatchFoldsForTest(), before + (budget == 0 ? 1000 : 10))
            << options << " budget " << budget << " folds " << first << after;
      }
    }
  }
}

// Job()'s without its double and string fields: its window reads (user int64, ts timestamp,
// amount int64), NOT NULL integers only.
std::string IntJob(const std::string& window_options) {
  return absl::StrReplaceAll(Job(window_options), {{"      - {name: price, type: double, expr: seq * 1.0}\n", ""},
                                                   {"      - {name: name, type: string, expr: \"'x'\"}\n", ""}});
}

// Tumbling windows and slide panes of an input of NOT NULL integers take rows of int64s
// (PrefersIntRows, ProcessIntRows: the task's decoded buffer without Records) and fold them as
// batches of Records would: the rows, their order and the late count equal those of Records one
// at a time by key bytes (panes in hash maps, no batches), for counts alone (narrow slots, and
// slide panes' words) and with sums, minimums, maximums and averages (the record made from its
// row); late records to a late_output (the record made from its row, whole);
// keys at the int64 limits, 0 and negative; rows with and without carried key groups (1 byte
// each, as the exchange carries them under max parallelism 16); late records within and beyond
// the lateness; timestamps at the int64 limits; a 16 KiB budget; a checkpoint restored midway
// into either way. A window of an input with other fields, or keyed by an expression, takes no
// rows.
TEST_F(WindowTest, IntRowsGiveTheRowsOfRecordsOneAtATime) {
  const std::vector<int64_t> keys = SpreadKeys(500);
  for (const char* options : {R"y(    tumble: 10ms
    time_field: ts
    aggregates: [{fn: count, as: n}])y",
                              R"y(    tumble: 10ms
    time_field: ts
    aggregates: [{fn: count, as: n}, {fn: sum, field: amount}, {fn: min, field: amount}, {fn: max, field: amount}])y",
                              R"y(    tumble: 10ms
    offset: 3ms
    time_field: ts
    allowed_lateness: 15ms
    aggregates: [{fn: count, as: n}, {fn: sum, field: amount}])y",
                              R"y(    tumble: 10ms
    time_field: ts
    aggregates: [{fn: avg, field: amount}, {fn: count, as: n}])y",
                              R"y(    tumble: 10ms
    time_field: ts
    late_output: late
    aggregates: [{fn: count, as: n}, {fn: sum, field: amount}])y",
                              R"y(    hop: {size: 30ms, slide: 10ms}
    time_field: ts
    aggregates: [{fn: count, as: n}])y",
                              R"y(    hop: {size: 30ms, slide: 10ms}
    time_field: ts
    aggregates: [{fn: count, as: n}, {fn: max, field: amount}, {fn: avg, field: amount}])y"}) {
    for (size_t budget : {size_t{0}, size_t{16} << 10}) {
      // rows_first/rows_after: rows of integers before/after the checkpoint, else Records one
      // at a time with panes by key bytes (the reference).
      auto run = [&](bool rows_first, bool rows_after, std::vector<std::string>* out) -> absl::Status {
        return DriveIntRun(
            options, budget, keys, rows_first, rows_after,
            [](KeyedSubtask& s, bool rows, const std::vector<int64_t>& values,
               const std::string* key_groups) -> absl::Status {
              if (rows) return FeedIntRows(s, values, key_groups);
              Record r(3);
              for (size_t i = 0; i < values.size() / 3; ++i) {
                for (size_t f = 0; f < 3; ++f) r[f].i = values[i * 3 + f];
                SLUICE_RETURN_IF_ERROR(s.op()->Process(r));
              }
              return absl::OkStatus();
            },
            out);
      };
      std::vector<std::string> general;
      ASSERT_OK(run(false, false, &general));
      EXPECT_GT(general.size(), 1000u);
      // Late records dropped and counted, or with late_output sent to it (their records whole).
      ExpectLateRecords(general, options, 100);
      for (const auto& [first, after] : {std::pair{true, true}, std::pair{true, false}, std::pair{false, true}}) {
        std::vector<std::string> got;
        const uint64_t folded = WindowBatchFoldsForTest();
        const uint64_t batches = WindowIntRowBatchesForTest();
        ASSERT_OK(run(first, after, &got));
        EXPECT_EQ(got, general) << options << " budget " << budget << " rows " << first << after;
        EXPECT_GT(WindowIntRowBatchesForTest(), batches + 50) << options << " budget " << budget;
        EXPECT_GT(WindowBatchFoldsForTest(), folded + (budget == 0 ? 1000 : 10)) << options << " budget " << budget;
      }
    }
  }
  // Other fields in the input (a double, a string), or a key that is not a field: no rows.
  ASSERT_OK(Load("    tumble: 10ms\n    time_field: ts\n    aggregates: [{fn: count, as: n}]"));
  EXPECT_TRUE(StartSubtask().op()->PrefersBatches());
  EXPECT_FALSE(StartSubtask().op()->PrefersIntRows(0));
  ASSERT_OK(LoadJob(absl::StrReplaceAll(IntJob("    tumble: 10ms\n    time_field: ts\n    aggregates: [{fn: count, as: n}]"),
                                        {{"key: user", "key: user + 1"}}),
                    "w"));
  EXPECT_FALSE(StartSubtask().op()->PrefersIntRows(0));
}

// Flat session keys of an input of NOT NULL integers take rows of int64s too (PrefersIntRows,
// ProcessIntRows into ProcessFlatBatch): the rows, their order and the late count equal those of
// the same records as batches of Records (ProcessBatch, the flat path before rows), and without
// a memory budget those of Records one at a time with sessions by key bytes (the general path).
// Sessions that merge, records that bridge two sessions, late records (dropped, within the
// lateness, sent to a late_output: the record made from its row, whole), firings at
// watermarks, timestamps at the int64 limits, rows with and without carried key groups, a 16 KiB
// budget, a checkpoint restored midway into either layout; counts only (a record counted in
// place) and with other aggregates (the record made from its row).
TEST_F(WindowTest, FlatSessionIntRowsGiveTheRowsOfRecordBatches) {
  const std::vector<int64_t> keys = SpreadKeys(300);
  for (const char* options : {R"y(    session: 30ms
    time_field: ts
    aggregates: [{fn: count, as: n}])y",
                              R"y(    session: 30ms
    time_field: ts
    allowed_lateness: 5ms
    aggregates: [{fn: count, as: n}, {fn: sum, field: amount}, {fn: max, field: amount}])y",
                              R"y(    session: 30ms
    time_field: ts
    late_output: late
    aggregates: [{fn: count, as: n}, {fn: min, field: amount}])y"}) {
    for (size_t budget : {size_t{0}, size_t{16} << 10}) {
      // flat_first/flat_after: flat session keys before/after the checkpoint (fed as rows of
      // integers when `as_rows`, else as batches of Records), else sessions by key bytes fed
      // one record at a time.
      auto run = [&](bool as_rows, bool flat_first, bool flat_after, std::vector<std::string>* out) -> absl::Status {
        std::vector<Record> records;
        return DriveIntRun(
            options, budget, keys, flat_first, flat_after,
            [&](KeyedSubtask& s, bool flat, const std::vector<int64_t>& values,
                const std::string* key_groups) -> absl::Status {
              if (flat && as_rows) return FeedIntRows(s, values, key_groups);
              records.assign(values.size() / 3, Record(3));
              for (size_t i = 0; i < records.size(); ++i) {
                for (size_t f = 0; f < 3; ++f) records[i][f].i = values[i * 3 + f];
                if (key_groups != nullptr) records[i].set_carried_key_group(static_cast<uint8_t>((*key_groups)[i]));
              }
              return Feed(s, flat, &records);
            },
            out);
      };
      std::vector<std::string> general;
      ASSERT_OK(run(false, false, false, &general));
      EXPECT_GT(general.size(), 300u);
      ExpectLateRecords(general, options, 50);
      for (const auto& [first, after] : {std::pair{true, true}, std::pair{true, false}, std::pair{false, true}}) {
        std::vector<std::string> batches;
        ASSERT_OK(run(false, first, after, &batches));
        if (budget == 0) {
          EXPECT_EQ(batches, general) << options << " flat " << first << after;
        }
        std::vector<std::string> got;
        const uint64_t folded = WindowBatchFoldsForTest();
        const uint64_t row_batches = WindowIntRowBatchesForTest();
        ASSERT_OK(run(true, first, after, &got));
        EXPECT_EQ(got, batches) << options << " budget " << budget << " flat " << first << after;
        EXPECT_GT(WindowIntRowBatchesForTest(), row_batches + 50) << options << " budget " << budget;
        // Records of a flat half extend their key's session in place.
        EXPECT_GT(WindowBatchFoldsForTest(), folded + (budget == 0 ? 300 : 10)) << options << " budget " << budget;
      }
    }
  }
  // Sessions that are not flat (early firings) take no rows.
  ASSERT_OK(LoadJob(IntJob("    session: 30ms\n    time_field: ts\n    emit_every: 5ms\n    aggregates: [{fn: count, as: n}]"), "w"));
  EXPECT_FALSE(StartSubtask().op()->PrefersIntRows(0));
}

// Rows of integers a window does not take are refused with an error that names the window's
// task and why (the task asks PrefersIntRows() first, so this is a caller's bug).
TEST_F(WindowTest, RowsOfIntegersItDoesNotTakeNameTheTaskAndWhy) {
  std::vector<int64_t> values = {1, 2, 3};
  IntRowBatch batch;
  batch.values = values.data();
  batch.width = 3;
  batch.count = 1;
  auto refusal = [&](KeyedSubtask& s) {
    EXPECT_FALSE(s.op()->PrefersIntRows(0));
    return s.op()->ProcessIntRows(0, batch);
  };
  // An input with a double and a string.
  EXPECT_THAT(refusal(Start("    tumble: 10ms\n    time_field: ts\n    aggregates: [{fn: count, as: n}]")),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       "window job/w#0: rows of integers it does not take: its input has fields other than NOT "
                       "NULL integers"));
  // A key that is not a field.
  ASSERT_OK(LoadJob(absl::StrReplaceAll(IntJob("    tumble: 10ms\n    time_field: ts\n    aggregates: [{fn: count, as: n}]"),
                                        {{"key: user", "key: user + 1"}}),
                    "w"));
  EXPECT_THAT(refusal(StartSubtask()),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       "window job/w#0: rows of integers it does not take: its key is not one integer field of its "
                       "input"));
  // Sessions with early firings.
  ASSERT_OK(LoadJob(IntJob("    session: 30ms\n    time_field: ts\n    emit_every: 5ms\n    aggregates: [{fn: count, as: n}]"), "w"));
  EXPECT_THAT(refusal(StartSubtask()),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       "window job/w#0: rows of integers it does not take: it folds neither tumbling windows, slide "
                       "panes nor flat session keys in batches"));
  // Rows narrower than its input's records; a second input.
  ASSERT_OK(LoadJob(IntJob("    session: 30ms\n    time_field: ts\n    aggregates: [{fn: count, as: n}]"), "w"));
  KeyedSubtask& s = StartSubtask();
  ASSERT_TRUE(s.op()->PrefersIntRows(0));
  batch.width = 2;
  EXPECT_THAT(s.op()->ProcessIntRows(0, batch),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       "window job/w#0: rows of 2 integers where its input has 3 fields"));
  EXPECT_FALSE(s.op()->PrefersIntRows(1));
  EXPECT_THAT(s.op()->ProcessIntRows(1, batch),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       "window job/w#0: rows of integers it does not take: it has one input"));
}

// Tumbling windows' buckets keep narrow slots (key, records, the aggregates' words) while
// batches fold into them: a checkpoint writes the bytes the panes' words give ("window_panes"
// entries equal to those of a run with narrow slots off, each bucket's keys compared in key
// order: a narrow table is larger, so its keys come in another order), a restore into either layout gives
// the same rows, and only the memory budget's general path (overflow) widens a bucket.
TEST_F(WindowTest, NarrowPanesCheckpointTheBytesOfThePanesWords) {
  const char* options = R"y(    tumble: 10ms
    time_field: ts
    aggregates: [{fn: count, as: n}, {fn: sum, field: amount}, {fn: min, field: price}, {fn: max, field: amount}, {fn: avg, field: amount}])y";
  const Schema key_schema({{"user", FieldType::kInt64}});
  auto key_group = [&](int64_t user) {
    Record key(1);
    key[0].i = user;
    return KeyGroupForHash(KeyHasher::HashKeyRecord(key_schema, key), kMaxParallelism);
  };
  struct Run {
    std::vector<std::string> panes;  // the checkpoint's "window_panes" entries: key bytes, value
    std::vector<std::string> rows;
    uint64_t narrow_made = 0;
    uint64_t widened = 0;
  };
  auto run = [&](bool narrow, bool narrow_after, size_t budget, Run* out) -> absl::Status {
    SetWindowMemoryForTest(budget);
    SetWindowNarrowPanesForTest(narrow);
    const uint64_t made = WindowNarrowBucketsMadeForTest();
    const uint64_t widened = WindowNarrowBucketsWidenedForTest();
    KeyedSubtask* s = &Start(options);
    uint64_t x = 11;
    std::vector<Record> batch;
    for (int i = 0; i < 4000; ++i) {
      x = x * 6364136223846793005ULL + 1442695040888963407ULL;
      const int64_t user = static_cast<int64_t>((x >> 20) % 600) * 7919 - 1'000'000;
      batch.push_back(Input(user, i / 100 + static_cast<int64_t>((x >> 40) % 8), static_cast<int64_t>((x >> 50) % 9) - 4));
      batch.back().set_carried_key_group(key_group(user));
      if (batch.size() == 64) {
        SLUICE_RETURN_IF_ERROR(s->op()->ProcessBatch(0, batch.data(), batch.size()));
        batch.clear();
      }
      if (i % 400 == 399) SLUICE_RETURN_IF_ERROR(s->Watermark(i / 100 - 3));
    }
    SLUICE_RETURN_IF_ERROR(s->op()->ProcessBatch(0, batch.data(), batch.size()));
    out->narrow_made = WindowNarrowBucketsMadeForTest() - made;
    out->widened = WindowNarrowBucketsWidenedForTest() - widened;
    out->rows = s->out().rows;
    SLUICE_ASSIGN_OR_RETURN(Checkpoint c, TakeCheckpoint(*s, 1));
    const state::StateId id = s->backend()->RegisterState("window_panes", state::StateKind::kValue);
    std::vector<std::string> keys;
    SLUICE_RETURN_IF_ERROR(s->backend()->ForEachKey(id, [&](absl::string_view key) {
      keys.emplace_back(key);
      return absl::OkStatus();
    }));
    for (const std::string& key : keys) {
      // [start][end][key group, 4 bytes big-endian]
      const int kg = static_cast<unsigned char>(key[18]) << 8 | static_cast<unsigned char>(key[19]);
      s->backend()->SetCurrentKey(key, kg);
      std::string value;
      SLUICE_ASSIGN_OR_RETURN(bool found, s->backend()->Get(id, &value));
      if (!found) return absl::InternalError("a key without its value");
      // The bucket's [version][overflow][count] and its keys' entries ([size][key][size][row])
      // sorted: the entries' order is the table's, which depends on its size.
      const char* p = value.data() + 2;
      const char* end = value.data() + value.size();
      uint64_t count = 0;
      p = GetVarint64(p, end, &count);
      if (p == nullptr) return absl::InternalError("a bucket without its count");
      std::vector<std::string> entries;
      for (uint64_t e = 0; e < count; ++e) {
        const char* start = p;
        for (int part = 0; part < 2; ++part) {
          uint64_t size = 0;
          p = GetVarint64(p, end, &size);
          if (p == nullptr || size > static_cast<uint64_t>(end - p)) return absl::InternalError("a bad entry");
          p += size;
        }
        entries.emplace_back(start, p);
      }
      if (p != end) return absl::InternalError("bytes after the entries");
      std::sort(entries.begin(), entries.end());
      out->panes.push_back(absl::StrCat(absl::CEscape(key), " ", absl::CEscape(value.substr(0, 2)), " ", count, " ",
                                        absl::CEscape(absl::StrJoin(entries, ""))));
    }
    std::sort(out->panes.begin(), out->panes.end());
    SetWindowNarrowPanesForTest(narrow_after);
    SLUICE_ASSIGN_OR_RETURN(s, Restore(c, 0, 1));
    for (int64_t user = -1'000'000; user < -1'000'000 + 600 * 7919; user += 7919) {
      batch.push_back(Input(user, 39));
      batch.back().set_carried_key_group(key_group(user));
    }
    SLUICE_RETURN_IF_ERROR(s->op()->ProcessBatch(0, batch.data(), batch.size()));
    SLUICE_RETURN_IF_ERROR(FinishRun(*s, &out->rows));
    SetWindowNarrowPanesForTest(true);
    SetWindowMemoryForTest(0);
    return absl::OkStatus();
  };
  Run wide;
  ASSERT_OK(run(false, false, 0, &wide));
  EXPECT_EQ(wide.narrow_made, 0u);
  EXPECT_GT(wide.panes.size(), 20u);  // two windows open, in each of its key groups
  EXPECT_GT(wide.rows.size(), 2000u);
  for (const auto& [first, after] : {std::pair{true, true}, std::pair{true, false}, std::pair{false, true}}) {
    Run got;
    ASSERT_OK(run(first, after, 0, &got));
    EXPECT_EQ(got.panes, wide.panes) << first << after;
    EXPECT_EQ(got.rows, wide.rows) << first << after;
    if (first) {
      EXPECT_GT(got.narrow_made, 50u);
      EXPECT_EQ(got.widened, 0u);  // folded and fired, never widened
    }
  }
  // A 16 KiB budget: buckets that overflow fire through the general path, widened first.
  Run wide_budget;
  ASSERT_OK(run(false, false, size_t{16} << 10, &wide_budget));
  Run narrow_budget;
  ASSERT_OK(run(true, true, size_t{16} << 10, &narrow_budget));
  EXPECT_EQ(narrow_budget.rows, wide_budget.rows);
  EXPECT_GT(narrow_budget.widened, 0u);
}

// A narrow bucket whose aggregates are all counts fires each key's row straight from its slot
// (FireNarrowCounts): the rows, their order (by key bytes: keys at the int64 limits, negative
// and of every varint length) and the late count equal those of the panes' words.
TEST_F(WindowTest, NarrowCountsFireTheRowsOfThePanesWords) {
  const char* options = R"y(    tumble: 10ms
    time_field: ts
    aggregates: [{fn: count, as: n}, {fn: count, as: m}])y";
  const Schema key_schema({{"user", FieldType::kInt64}});
  std::vector<int64_t> keys = {0, -1, 1, std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max(),
                               -64, 63, 64, -65, int64_t{1} << 49, -(int64_t{1} << 56), int64_t{1} << 62};
  for (int64_t k = 0; keys.size() < 300; ++k) keys.push_back(k * 7919 - 1'000'000);
  auto run = [&](bool narrow, std::vector<std::string>* rows, uint64_t* direct) -> absl::Status {
    SetWindowNarrowPanesForTest(narrow);
    const uint64_t before = WindowNarrowCountRowsForTest();
    KeyedSubtask& s = Start(options);
    uint64_t x = 5;
    std::vector<Record> batch;
    for (int i = 0; i < 3000; ++i) {
      x = x * 6364136223846793005ULL + 1442695040888963407ULL;
      const int64_t user = keys[(x >> 20) % keys.size()];
      batch.push_back(Input(user, i / 100 + static_cast<int64_t>((x >> 40) % 12) - 8));
      Record key(1);
      key[0].i = user;
      batch.back().set_carried_key_group(KeyGroupForHash(KeyHasher::HashKeyRecord(key_schema, key), kMaxParallelism));
      if (batch.size() == 64) {
        SLUICE_RETURN_IF_ERROR(s.op()->ProcessBatch(0, batch.data(), batch.size()));
        batch.clear();
      }
      if (i % 300 == 299) SLUICE_RETURN_IF_ERROR(s.Watermark(i / 100 - 3));
    }
    SLUICE_RETURN_IF_ERROR(s.op()->ProcessBatch(0, batch.data(), batch.size()));
    SLUICE_RETURN_IF_ERROR(FinishRun(s, rows));
    SetWindowNarrowPanesForTest(true);
    *direct = WindowNarrowCountRowsForTest() - before;
    return absl::OkStatus();
  };
  std::vector<std::string> wide;
  uint64_t wide_direct = 0;
  ASSERT_OK(run(false, &wide, &wide_direct));
  EXPECT_EQ(wide_direct, 0u);
  ASSERT_GT(wide.size(), 1000u);
  EXPECT_NE(wide.back(), "late 0");
  std::vector<std::string> narrow;
  uint64_t narrow_direct = 0;
  ASSERT_OK(run(true, &narrow, &narrow_direct));
  EXPECT_EQ(narrow, wide);
  EXPECT_EQ(narrow_direct, wide.size() - 1);  // every row (the last line is the late count)
}

// A tumbling window of integer keys fires each bucket's keys in their record bytes' order; a
// bucket holding exactly the keys its key group fired last takes their order from that firing
// instead of sorting them. Key sets that stay, shrink, grow back, and swap keys for others (as
// many keys, not the same ones), for counts alone (rows straight from narrow slots) and a count
// with a sum: the rows, in their order, equal those of firings that always sort, and the firings
// that reuse an order are exactly the buckets whose keys equal their group's last fired keys;
// the same when every bucket was restored from a checkpoint before it fired (wide buckets).
TEST_F(WindowTest, FiringsOfTheKeysFiredLastTakeTheirOrderWithoutSorting) {
  const Schema key_schema({{"user", FieldType::kInt64}});
  auto key_group = [&](int64_t user) {
    Record key(1);
    key[0].i = user;
    return KeyGroupForHash(KeyHasher::HashKeyRecord(key_schema, key), kMaxParallelism);
  };
  std::vector<int64_t> all = {0, -1, 1, std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max(),
                              -64, 63, 64, -65, int64_t{1} << 49, -(int64_t{1} << 56), int64_t{1} << 62};
  for (int64_t k = 0; all.size() < 400; ++k) all.push_back(k * 7919 - 1'000'000);
  // The keys of window [10 w, 10 w + 10): all; all again; all but some, with as many others
  // instead; the same; every other key; all again; the first 100.
  std::vector<std::vector<int64_t>> windows(7);
  windows[0] = all;
  windows[1] = all;
  for (size_t i = 0; i < all.size(); ++i) windows[2].push_back(i % 37 == 5 ? 5'000'000 + static_cast<int64_t>(i) : all[i]);
  windows[3] = windows[2];
  for (size_t i = 0; i < all.size(); i += 2) windows[4].push_back(all[i]);
  windows[5] = all;
  windows[6].assign(all.begin(), all.begin() + 100);
  // The bucket firings whose keys equal their group's last fired ones.
  uint64_t expected_reuses = 0;
  std::map<int, std::set<int64_t>> last;
  for (const std::vector<int64_t>& keys : windows) {
    std::map<int, std::set<int64_t>> groups;
    for (int64_t key : keys) groups[key_group(key)].insert(key);
    for (auto& [kg, set] : groups) {
      auto it = last.find(kg);
      if (it != last.end() && it->second == set) ++expected_reuses;
      last[kg] = set;
    }
  }
  for (const char* aggregates : {"[{fn: count, as: n}]", "[{fn: count, as: n}, {fn: sum, field: amount}]"}) {
    SCOPED_TRACE(aggregates);
    // `restored`: every window's records first, then a checkpoint and a restore (restored
    // buckets are wide), then the watermarks: the firings of wide buckets.
    auto run = [&](bool reuse, bool restored, std::vector<std::string>* rows, uint64_t* reused) -> absl::Status {
      SetWindowFireOrderReuseForTest(reuse);
      const uint64_t before = WindowFireOrdersReusedForTest();
      KeyedSubtask* s = &Start(absl::StrCat("    tumble: 10ms\n    time_field: ts\n    aggregates: ", aggregates));
      uint64_t x = 11;
      std::vector<Record> batch;
      for (size_t w = 0; w < windows.size(); ++w) {
        // Each key three times, in an order shuffled per window, at times within the window.
        std::vector<int64_t> order;
        for (int copy = 0; copy < 3; ++copy) order.insert(order.end(), windows[w].begin(), windows[w].end());
        for (size_t i = order.size(); i > 1; --i) {
          x = x * 6364136223846793005ULL + 1442695040888963407ULL;
          std::swap(order[i - 1], order[(x >> 33) % i]);
        }
        for (int64_t user : order) {
          x = x * 6364136223846793005ULL + 1442695040888963407ULL;
          batch.push_back(Input(user, static_cast<int64_t>(10 * w + (x >> 40) % 10), static_cast<int64_t>((x >> 20) % 100)));
          batch.back().set_carried_key_group(key_group(user));
          if (batch.size() == 64) SLUICE_RETURN_IF_ERROR(Feed(*s, true, &batch));
        }
        SLUICE_RETURN_IF_ERROR(Feed(*s, true, &batch));
        if (!restored) SLUICE_RETURN_IF_ERROR(s->Watermark(static_cast<int64_t>(10 * w + 9)));
      }
      if (restored) {
        SLUICE_ASSIGN_OR_RETURN(Checkpoint c, TakeCheckpoint(*s, 1));
        SLUICE_ASSIGN_OR_RETURN(s, Restore(c, 0, 1));
        for (size_t w = 0; w < windows.size(); ++w) {
          SLUICE_RETURN_IF_ERROR(s->Watermark(static_cast<int64_t>(10 * w + 9)));
        }
      }
      SLUICE_RETURN_IF_ERROR(FinishRun(*s, rows));
      SetWindowFireOrderReuseForTest(true);
      *reused = WindowFireOrdersReusedForTest() - before;
      return absl::OkStatus();
    };
    std::vector<std::string> sorted;
    uint64_t sorted_reuses = 0;
    ASSERT_OK(run(false, false, &sorted, &sorted_reuses));
    EXPECT_EQ(sorted_reuses, 0u);
    size_t keys = 0;
    for (const std::vector<int64_t>& w : windows) keys += w.size();
    ASSERT_EQ(sorted.size(), keys + 1);
    EXPECT_EQ(sorted.back(), "late 0");
    EXPECT_GT(expected_reuses, 0u);
    for (bool restored : {false, true}) {
      SCOPED_TRACE(restored ? "wide (restored) buckets" : "narrow buckets");
      std::vector<std::string> reusing;
      uint64_t reuses = 0;
      ASSERT_OK(run(true, restored, &reusing, &reuses));
      EXPECT_EQ(reusing, sorted);
      EXPECT_EQ(reuses, expected_reuses);
    }
  }
}

// A narrow bucket whose memory budget is spent mid-window: keys beyond the budget go to
// "window_overflow", the bucket is widened when it fires (GatherForFiring), and its rows are
// those of a plain map over the same records, also across a checkpoint and restore in the middle
// of a window, for a count alone and for a count and a sum; the same rows (in the same order)
// with narrow slots off. Each window opened after the last fired keeps the same number of keys
// in memory (the budget's bytes come back when a widened bucket is dropped).
TEST_F(WindowTest, NarrowBucketsThatOverflowFireTheRowsOfAPlainMap) {
  constexpr int64_t kWindows = 4;
  constexpr int kRecordsPerWindow = 3000;
  constexpr size_t kBudget = size_t{16} << 10;
  const Schema key_schema({{"user", FieldType::kInt64}});
  auto key_group = [&](int64_t user) {
    Record key(1);
    key[0].i = user;
    return KeyGroupForHash(KeyHasher::HashKeyRecord(key_schema, key), kMaxParallelism);
  };
  std::vector<int64_t> keys = {0, -1, 1, std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max(),
                               -64, 63, 64, -65};
  for (int64_t k = 0; keys.size() < 1500; ++k) keys.push_back(k * 7919 - 3'000'000);
  // The entries of window [start, start + 10) in "window_overflow", over every key group.
  auto overflowing = [&](KeyedSubtask& s, int64_t start) -> absl::StatusOr<size_t> {
    const state::StateId id = s.backend()->RegisterState("window_overflow", state::StateKind::kMap);
    size_t n = 0;
    for (int kg = 0; kg < kMaxParallelism; ++kg) {
      std::string bucket;
      internal::PutOrderedInt64(start, &bucket);
      internal::PutOrderedInt64(start + 10, &bucket);
      for (int shift = 24; shift >= 0; shift -= 8) bucket.push_back(static_cast<char>((kg >> shift) & 0xff));
      s.backend()->SetCurrentKey(bucket, kg);
      std::vector<std::pair<std::string, std::string>> entries;
      SLUICE_RETURN_IF_ERROR(s.backend()->MapEntries(id, &entries));
      n += entries.size();
    }
    return n;
  };
  for (const bool with_sum : {false, true}) {
    const std::string options = absl::StrCat(R"y(    tumble: 10ms
    time_field: ts
    aggregates: [{fn: count, as: n})y",
                                             with_sum ? ", {fn: sum, field: amount}" : "", "]");
    // The expected rows: (window start, user) -> (records, sum of amounts).
    std::map<std::pair<int64_t, int64_t>, std::pair<int64_t, int64_t>> expected_map;
    struct Run {
      std::vector<std::string> rows;
      std::vector<size_t> overflow;   // per window, before it fires
      std::vector<size_t> in_memory;  // per window: its distinct keys less its overflow
      uint64_t narrow_made = 0;
      uint64_t widened = 0;
    };
    auto run = [&](bool narrow, Run* out) -> absl::Status {
      SetWindowMemoryForTest(kBudget);
      SetWindowNarrowPanesForTest(narrow);
      const uint64_t made = WindowNarrowBucketsMadeForTest();
      const uint64_t widened = WindowNarrowBucketsWidenedForTest();
      KeyedSubtask* s = &Start(options);
      expected_map.clear();
      uint64_t x = 17;
      std::vector<Record> batch;
      size_t batch_size = 64;
      auto flush = [&]() -> absl::Status {
        SLUICE_RETURN_IF_ERROR(Feed(*s, /*batches=*/true, &batch));
        batch_size = batch_size * 7 % 200 + 1;
        return absl::OkStatus();
      };
      for (int64_t w = 0; w < kWindows; ++w) {
        std::set<int64_t> distinct;
        for (int i = 0; i < kRecordsPerWindow; ++i) {
          if (w == 1 && i == kRecordsPerWindow / 2) {  // mid-window 1, its buckets narrow and overflowing
            SLUICE_RETURN_IF_ERROR(flush());
            SLUICE_ASSIGN_OR_RETURN(size_t before, overflowing(*s, 10));
            if (before == 0) return absl::InternalError("no overflow before the checkpoint");
            SLUICE_ASSIGN_OR_RETURN(Checkpoint c, TakeCheckpoint(*s, 1));
            const std::vector<std::string> fired = s->out().rows;
            SLUICE_ASSIGN_OR_RETURN(s, Restore(c, 0, 1));
            s->out().rows = fired;
          }
          x = x * 6364136223846793005ULL + 1442695040888963407ULL;
          const int64_t user = keys[(x >> 20) % keys.size()];
          const int64_t ts = w * 10 + static_cast<int64_t>((x >> 40) % 10);
          const int64_t amount = static_cast<int64_t>((x >> 50) % 9) - 4;
          distinct.insert(user);
          auto& [n, sum] = expected_map[{w * 10, user}];
          ++n;
          sum += amount;
          batch.push_back(Input(user, ts, amount));
          batch.back().set_carried_key_group(key_group(user));
          if (batch.size() >= batch_size) SLUICE_RETURN_IF_ERROR(flush());
        }
        SLUICE_RETURN_IF_ERROR(flush());
        SLUICE_ASSIGN_OR_RETURN(size_t overflow, overflowing(*s, w * 10));
        out->overflow.push_back(overflow);
        out->in_memory.push_back(distinct.size() - overflow);
        SLUICE_RETURN_IF_ERROR(s->Watermark(w * 10 + 9));  // past the window's end: it fires
      }
      out->narrow_made = WindowNarrowBucketsMadeForTest() - made;
      out->widened = WindowNarrowBucketsWidenedForTest() - widened;
      SLUICE_RETURN_IF_ERROR(FinishRun(*s, &out->rows));
      SetWindowNarrowPanesForTest(true);
      return absl::OkStatus();
    };
    Run narrow;
    ASSERT_OK(run(true, &narrow));
    std::vector<std::string> expected;
    for (const auto& [window_user, n_sum] : expected_map) {
      expected.push_back(absl::StrCat(R"({"user":)", window_user.second, R"(,"window_start":)", window_user.first,
                                      R"(,"window_end":)", window_user.first + 10, R"(,"n":)", n_sum.first,
                                      with_sum ? absl::StrCat(R"(,"sum_amount":)", n_sum.second) : "",
                                      R"(,"update":false})"));
    }
    ASSERT_EQ(narrow.rows.back(), "late 0");
    std::vector<std::string> got(narrow.rows.begin(), narrow.rows.end() - 1);
    std::sort(got.begin(), got.end());
    std::sort(expected.begin(), expected.end());
    EXPECT_EQ(got, expected) << options;
    // Every window overflowed and was narrow when it did (window 1 before the restore: its
    // bucket is decoded wide after it).
    ASSERT_EQ(narrow.overflow.size(), static_cast<size_t>(kWindows));
    for (int64_t w = 0; w < kWindows; ++w) {
      EXPECT_GT(narrow.overflow[w], 100u) << options << " window " << w;
      EXPECT_GT(narrow.in_memory[w], 50u) << options << " window " << w;
    }
    EXPECT_EQ(narrow.narrow_made, 2 * static_cast<uint64_t>(kMaxParallelism) * 2) << options;  // windows 0 and 1, 2 and 3
    EXPECT_EQ(narrow.widened, narrow.narrow_made - kMaxParallelism) << options;  // all but window 1's
    EXPECT_EQ(narrow.in_memory[0], narrow.in_memory[2]) << options;
    EXPECT_EQ(narrow.in_memory[0], narrow.in_memory[3]) << options;

    Run wide;
    ASSERT_OK(run(false, &wide));
    EXPECT_EQ(wide.narrow_made, 0u);
    EXPECT_EQ(wide.rows, narrow.rows) << options;
    for (int64_t w = 0; w < kWindows; ++w) EXPECT_GT(wide.overflow[w], 100u) << options << " window " << w;
  }
}

// A batch whose records carry no key group (a window chained behind its key_by, no exchange)
// folds in place as one whose records carry theirs: the key group is hashed from the key.
TEST_F(WindowTest, BatchesWithoutCarriedKeyGroupsFoldInPlace) {
  KeyedSubtask& s = Start(R"y(    tumble: 10ms
    time_field: ts
    aggregates: [{fn: count, as: n}])y");
  ASSERT_TRUE(s.op()->PrefersBatches());
  std::vector<Record> first;
  for (int64_t user = 1; user <= 200; ++user) first.push_back(Input(user * 7919, 5));
  ASSERT_OK(s.op()->ProcessBatch(0, first.data(), first.size()));
  const uint64_t folded = WindowBatchFoldsForTest();
  std::vector<Record> second;
  for (int64_t user = 200; user >= 1; --user) second.push_back(Input(user * 7919, 6 + user % 4));
  ASSERT_OK(s.op()->ProcessBatch(0, second.data(), second.size()));
  EXPECT_EQ(WindowBatchFoldsForTest(), folded + 200);  // every record of keys seen
  ASSERT_OK(s.Watermark(kMaxWatermark));
  ASSERT_EQ(s.out().rows.size(), 200u);
  for (const std::string& row : s.out().rows) {
    EXPECT_THAT(row, ::testing::HasSubstr(R"("window_start":0,"window_end":10,"n":2,)")) << row;
  }
}

// A record of a slide pane whose first windows fired folds in place in a batch while the pane's
// last window has not fired (as Process() takes it), and counts in every window still open.
TEST_F(WindowTest, SlidePaneRecordsFoldInBatchesUntilTheirLastWindowFires) {
  KeyedSubtask& s = Start(R"y(    hop: {size: 30ms, slide: 10ms}
    time_field: ts
    aggregates: [{fn: count, as: n}])y");
  ASSERT_TRUE(s.op()->PrefersBatches());
  const Schema key_schema({{"user", FieldType::kInt64}});
  auto key_group = [&](int64_t user) {
    Record key(1);
    key[0].i = user;
    return KeyGroupForHash(KeyHasher::HashKeyRecord(key_schema, key), kMaxParallelism);
  };
  auto batch = [&](int64_t ts) {
    std::vector<Record> records;
    for (int64_t user = 1; user <= 3; ++user) {
      records.push_back(Input(user, ts));
      records.back().set_carried_key_group(key_group(user));
    }
    return records;
  };
  std::vector<Record> first = batch(5);  // pane [0, 10): windows [-20, 10), [-10, 20), [0, 30)
  ASSERT_OK(s.op()->ProcessBatch(0, first.data(), first.size()));
  ASSERT_OK(s.Watermark(25));  // [-20, 10) and [-10, 20) fire
  const uint64_t folded = WindowBatchFoldsForTest();
  std::vector<Record> second = batch(6);
  ASSERT_OK(s.op()->ProcessBatch(0, second.data(), second.size()));
  EXPECT_EQ(WindowBatchFoldsForTest(), folded + 3);
  ASSERT_OK(s.Watermark(kMaxWatermark));
  // Each window's rows by key group (its buckets' timers), then key.
  std::vector<int64_t> users = {1, 2, 3};
  std::sort(users.begin(), users.end(), [&](int64_t a, int64_t b) {
    return std::pair(key_group(a), a) < std::pair(key_group(b), b);
  });
  std::vector<std::string> expected;
  for (const auto& [start, n] : {std::pair{-20, 1}, std::pair{-10, 1}, std::pair{0, 2}}) {
    for (int64_t user : users) {
      expected.push_back(absl::StrCat(R"({"user":)", user, R"(,"window_start":)", start, R"(,"window_end":)",
                                      start + 30, R"(,"n":)", n, R"(,"update":false})"));
    }
  }
  EXPECT_EQ(s.out().rows, expected);
  EXPECT_EQ(s.late_dropped(), 0);
}

// Session keys of one integer field are indexed by value; the index counts in the memory
// budget: with a budget that holds a few hundred keys' sessions, the keys beyond it go to the
// backend (written at once, before any checkpoint), and fewer integer keys stay in memory than
// keys by record bytes (no index) when each key is a node (`first` does not fold in place);
// flat keys (a count) take less memory, so more of them stay; every run gives the same rows.
TEST_F(WindowTest, SessionKeysIndexedByValueCountInTheMemoryBudget) {
  constexpr int kKeys = 2000;
  constexpr size_t kBudget = size_t{64} << 10;
  // Keys in memory (not yet in the backend) after kKeys keys opened a session each; the rows.
  auto run = [&](const char* options, bool int_keys, std::vector<std::string>* rows) -> absl::StatusOr<int> {
    SetWindowMemoryForTest(kBudget);
    SetWindowIntKeyPanesForTest(int_keys);
    KeyedSubtask& s = Start(options);
    SetWindowIntKeyPanesForTest(true);
    SetWindowMemoryForTest(0);
    for (int k = 0; k < kKeys; ++k) SLUICE_RETURN_IF_ERROR(Add(s, k * 7 - 5000, k % 50, k % 3));
    const state::StateId id = s.backend()->RegisterState("window_key_sessions", state::StateKind::kValue);
    int in_backend = 0;
    SLUICE_RETURN_IF_ERROR(s.backend()->ForEachKey(id, [&](absl::string_view) {
      ++in_backend;
      return absl::OkStatus();
    }));
    SLUICE_RETURN_IF_ERROR(s.Watermark(kMaxWatermark));
    *rows = s.out().rows;
    return kKeys - in_backend;
  };
  const char* nodes = R"y(    session: 10ms
    time_field: ts
    aggregates: [{fn: count, as: n}, {fn: first, field: amount}])y";
  const char* flat = R"y(    session: 10ms
    time_field: ts
    aggregates: [{fn: count, as: n}])y";
  std::vector<std::string> by_bytes_rows, by_value_rows, flat_rows, flat_bytes_rows;
  absl::StatusOr<int> by_bytes = run(nodes, false, &by_bytes_rows);
  ASSERT_OK(by_bytes);
  absl::StatusOr<int> by_value = run(nodes, true, &by_value_rows);
  ASSERT_OK(by_value);
  absl::StatusOr<int> flat_keys = run(flat, true, &flat_rows);
  ASSERT_OK(flat_keys);
  absl::StatusOr<int> flat_by_bytes = run(flat, false, &flat_bytes_rows);
  ASSERT_OK(flat_by_bytes);
  EXPECT_GT(*by_value, 0);
  EXPECT_LT(*by_value, *by_bytes);  // the index's slots count
  EXPECT_LT(*by_bytes, kKeys);
  EXPECT_GT(*flat_keys, *by_value);  // a flat slot is smaller than a node and its index slot
  EXPECT_LT(*flat_keys, kKeys);
  EXPECT_LE(*flat_keys * 48, static_cast<int>(kBudget));  // 48 bytes a slot at least
  EXPECT_LT(*flat_by_bytes, *flat_keys);
  EXPECT_EQ(by_value_rows.size(), static_cast<size_t>(kKeys));
  std::sort(by_bytes_rows.begin(), by_bytes_rows.end());
  std::sort(by_value_rows.begin(), by_value_rows.end());
  EXPECT_EQ(by_value_rows, by_bytes_rows);
  std::sort(flat_rows.begin(), flat_rows.end());
  std::sort(flat_bytes_rows.begin(), flat_bytes_rows.end());
  EXPECT_EQ(flat_rows, flat_bytes_rows);
  EXPECT_EQ(flat_rows.size(), static_cast<size_t>(kKeys));
}

// ---------------------------------------------------------------------------------------------
// Lateness

TEST_F(WindowTest, LateRecordsWithoutLatenessAreDroppedAndCounted) {
  KeyedSubtask& s = Start(R"y(    tumble: 10ms
    time_field: ts
    aggregates: [{fn: count, as: n}])y");
  ASSERT_OK(Add(s, 1, 3));
  ASSERT_OK(s.Watermark(9));
  ASSERT_OK(Add(s, 1, 9));   // [0,10) fired and is gone: late
  ASSERT_OK(Add(s, 2, 0));   // a window never seen, but past the watermark: late too
  ASSERT_OK(Add(s, 1, 10));  // on time
  ASSERT_OK(s.Watermark(kMaxWatermark));
  EXPECT_THAT(s.out().rows,
              ElementsAre(R"({"user":1,"window_start":0,"window_end":10,"n":1,"update":false})",
                          R"({"user":1,"window_start":10,"window_end":20,"n":1,"update":false})"));
  EXPECT_EQ(s.late_dropped(), 2);
}

TEST_F(WindowTest, AllowedLatenessRefiresWithTheFullRowThenDrops) {
  KeyedSubtask& s = Start(R"y(    tumble: 10ms
    time_field: ts
    allowed_lateness: 5ms
    aggregates: [{fn: count, as: n}, {fn: sum, field: amount}])y");
  ASSERT_OK(Add(s, 1, 1, 10));
  ASSERT_OK(s.Watermark(9));
  ASSERT_OK(Add(s, 1, 2, 5));  // late, within lateness: fires again at once
  ASSERT_OK(Add(s, 2, 3, 1));  // late for a window the key never had: fires at once, first row
  ASSERT_OK(s.Watermark(13));
  ASSERT_OK(Add(s, 1, 9, 1));  // 9 + 5 > 13: still in
  ASSERT_OK(s.Watermark(14));  // cleanup: end - 1 + lateness = 14
  ASSERT_OK(Add(s, 1, 9, 1));  // dropped
  ASSERT_OK(Add(s, 2, 0, 1));  // dropped
  ASSERT_OK(s.Watermark(kMaxWatermark));
  EXPECT_THAT(s.out().rows,
              ElementsAre(R"({"user":1,"window_start":0,"window_end":10,"n":1,"sum_amount":10,"update":false})",
                          R"({"user":1,"window_start":0,"window_end":10,"n":2,"sum_amount":15,"update":true})",
                          R"({"user":2,"window_start":0,"window_end":10,"n":1,"sum_amount":1,"update":false})",
                          R"({"user":1,"window_start":0,"window_end":10,"n":3,"sum_amount":16,"update":true})"));
  EXPECT_EQ(s.late_dropped(), 2);
}

TEST_F(WindowTest, LateOutputGetsTheDroppedRecords) {
  KeyedSubtask& s = Start(R"y(    tumble: 10ms
    time_field: ts
    late_output: late
    aggregates: [{fn: count, as: n}])y");
  ASSERT_EQ(spec_->side_outputs.size(), 1);
  EXPECT_EQ(spec_->side_outputs[0].name, "late");
  EXPECT_EQ(spec_->side_outputs[0].schema, spec_->input_schema);
  ASSERT_OK(Add(s, 1, 3, 7));
  ASSERT_OK(s.Watermark(10));
  ASSERT_OK(Add(s, 1, 4, 8, "late one"));
  EXPECT_THAT(s.out().side, ElementsAre(R"(0:{"user":1,"ts":4,"amount":8,"price":4,"name":"late one"})"));
  EXPECT_EQ(s.late_dropped(), 0);  // sent, not dropped
  EXPECT_THAT(s.out().rows, ElementsAre(R"({"user":1,"window_start":0,"window_end":10,"n":1,"update":false})"));
}

// ---------------------------------------------------------------------------------------------
// Session windows

TEST_F(WindowTest, SessionsMergeWhenTheyTouchAndWhenALateRecordBridgesThem) {
  KeyedSubtask& s = Start(R"y(    session: {gap: 10ms}
    time_field: ts
    allowed_lateness: 100ms
    aggregates: [{fn: count, as: n}, {fn: count_distinct, field: amount, as: d}, {fn: first, field: amount}, {fn: last, field: amount}])y");
  ASSERT_OK(Add(s, 1, 0, 1));    // [0,10)
  ASSERT_OK(Add(s, 1, 10, 2));   // [10,20) touches: [0,20)
  ASSERT_OK(Add(s, 1, 30, 1));   // [30,40): apart (20 < 30)
  ASSERT_OK(Add(s, 2, 5, 9));    // another key
  ASSERT_OK(s.Watermark(40));    // fires (in end order) [5,15) of 2, [0,20) and [30,40) of 1
  EXPECT_THAT(s.out().rows,
              ElementsAre(R"({"user":2,"window_start":5,"window_end":15,"n":1,"d":1,"first_amount":9,"last_amount":9,"update":false})",
                          R"({"user":1,"window_start":0,"window_end":20,"n":2,"d":2,"first_amount":1,"last_amount":2,"update":false})",
                          R"({"user":1,"window_start":30,"window_end":40,"n":1,"d":1,"first_amount":1,"last_amount":1,"update":false})"));
  s.out().rows.clear();
  // A late record at 20 ([20,30)) touches both [0,20) and [30,40): they merge into [0,40),
  // which the watermark has passed: it fires at once (a new window, so not an update).
  ASSERT_OK(Add(s, 1, 20, 3));
  EXPECT_THAT(s.out().rows,
              ElementsAre(R"({"user":1,"window_start":0,"window_end":40,"n":4,"d":3,"first_amount":1,"last_amount":1,"update":false})"));
  s.out().rows.clear();
  ASSERT_OK(Add(s, 1, 45, 5));   // [45,55): apart from [0,40)
  ASSERT_OK(s.Watermark(154));   // cleans [0,40) (39 + 100 <= 154), fires [45,55)
  ASSERT_OK(Add(s, 1, 30, 1));   // [30,40): its session is gone and it touches no open one
  EXPECT_EQ(s.late_dropped(), 1);
  ASSERT_OK(s.Watermark(kMaxWatermark));
  EXPECT_THAT(s.out().rows,
              ElementsAre(R"({"user":1,"window_start":45,"window_end":55,"n":1,"d":1,"first_amount":5,"last_amount":5,"update":false})"));
}

// A session that only grows is extended in place, and a record folds into its accumulator's
// words; with those fast paths off, every record takes the general path (the merged window
// started afresh with the old one merged in). Both give the same rows and late counts, over
// records in and out of order, sessions extended at both ends, bridged, late within and beyond
// the lateness, with foldable aggregates and with ones that are not (first/last, distinct, a
// nullable-free mix), and across a checkpoint restored in the middle.
TEST_F(WindowTest, SessionFastPathsGiveTheRowsOfTheGeneralPath) {
  for (const char* aggregates :
       {"[{fn: count, as: n}, {fn: sum, field: amount}, {fn: min, field: amount}, {fn: max, field: price}, "
        "{fn: avg, field: amount}]",
        "[{fn: count, as: n}, {fn: count_distinct, field: amount, as: d}, {fn: first, field: amount}, "
        "{fn: last, field: amount}, {fn: max, field: name}]"}) {
    const std::string options =
        absl::StrCat("    session: 10ms\n    time_field: ts\n    allowed_lateness: 15ms\n    aggregates: ", aggregates);
    auto run = [&](bool fast, std::vector<std::string>* rows) -> absl::Status {
      SetWindowSessionFastPathsForTest(fast);
      KeyedSubtask* s = &Start(options);
      uint64_t x = 11;
      for (int i = 0; i < 800; ++i) {
        if (i == 400) {
          *rows = s->out().rows;
          SLUICE_ASSIGN_OR_RETURN(Checkpoint c, TakeCheckpoint(*s, 1));
          SLUICE_ASSIGN_OR_RETURN(s, Restore(c, 0, 1));
        }
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        const int64_t ts = i * 2 + static_cast<int64_t>((x >> 33) % 80) - 50;
        const int64_t amount = static_cast<int64_t>((x >> 45) % 5);
        SLUICE_RETURN_IF_ERROR(Add(*s, static_cast<int64_t>((x >> 20) % 5), ts, amount, Name(amount)));
        if (i % 25 == 24) SLUICE_RETURN_IF_ERROR(s->Watermark(i * 2 - 10));
      }
      SLUICE_RETURN_IF_ERROR(s->Watermark(kMaxWatermark));
      SetWindowSessionFastPathsForTest(true);
      rows->insert(rows->end(), s->out().rows.begin(), s->out().rows.end());
      rows->push_back(absl::StrCat("late ", s->late_dropped()));
      return absl::OkStatus();
    };
    std::vector<std::string> general;
    ASSERT_OK(run(false, &general));
    std::vector<std::string> fast;
    ASSERT_OK(run(true, &fast));
    EXPECT_GT(general.size(), 100u);
    EXPECT_NE(general.back(), "late 0");
    EXPECT_EQ(fast, general) << aggregates;
  }
}

// Session windows in processing time: a key's session closes gap after its last record, by
// the clock; each key's session fires on its own.
TEST_F(WindowTest, ProcessingTimeSessions) {
  KeyedSubtask& s = Start(R"y(    session: {gap: 1s}
    time: processing
    aggregates: [{fn: count, as: n}, {fn: max, field: ts}])y");
  ASSERT_OK(Add(s, 1, 10));  // at 1,000,000 ms: [1000000, 1001000)
  clock_.AdvanceNanos(500'000'000);
  ASSERT_OK(Add(s, 1, 20));  // [1000500, 1001500): merged [1000000, 1001500)
  clock_.AdvanceNanos(300'000'000);
  ASSERT_OK(Add(s, 2, 30));  // [1000800, 1001800)
  clock_.AdvanceNanos(200'000'000);  // 1,001,000: the first record's end, not the session's
  ASSERT_OK(s.ProcessingTime());
  EXPECT_THAT(s.out().rows, IsEmpty());
  clock_.AdvanceNanos(499'000'000);  // 1,001,499 = end - 1
  ASSERT_OK(s.ProcessingTime());
  EXPECT_THAT(s.out().rows,
              ElementsAre(R"({"user":1,"window_start":1000000,"window_end":1001500,"n":2,"max_ts":20,"update":false})"));
  clock_.AdvanceNanos(101'000'000);
  ASSERT_OK(Add(s, 1, 40));  // at 1,001,600: a new session
  ASSERT_OK(s.Watermark(kMaxWatermark));  // event time does not matter
  clock_.AdvanceNanos(199'000'000);  // 1,001,799
  ASSERT_OK(s.ProcessingTime());
  clock_.AdvanceNanos(800'000'000);  // 1,002,599
  ASSERT_OK(s.ProcessingTime());
  EXPECT_THAT(s.out().rows,
              ElementsAre(R"({"user":1,"window_start":1000000,"window_end":1001500,"n":2,"max_ts":20,"update":false})",
                          R"({"user":2,"window_start":1000800,"window_end":1001800,"n":1,"max_ts":30,"update":false})",
                          R"({"user":1,"window_start":1001600,"window_end":1002600,"n":1,"max_ts":40,"update":false})"));
}

// Early firings of event-time sessions: in processing time, only when the session changed, and
// none after its final firing.
TEST_F(WindowTest, SessionsFireEarlyInProcessingTime) {
  KeyedSubtask& s = Start(R"y(    session: {gap: 100ms}
    time_field: ts
    emit_every: 1s
    aggregates: [{fn: count, as: n}])y");
  ASSERT_OK(Add(s, 1, 5));
  ASSERT_OK(Add(s, 1, 50));  // [5, 150)
  clock_.AdvanceNanos(1'000'000'000);
  ASSERT_OK(s.ProcessingTime());
  clock_.AdvanceNanos(1'000'000'000);  // nothing changed: no row
  ASSERT_OK(s.ProcessingTime());
  ASSERT_OK(Add(s, 1, 20));  // within [5, 150)
  clock_.AdvanceNanos(1'000'000'000);
  ASSERT_OK(s.ProcessingTime());
  ASSERT_OK(s.Watermark(149));  // the final firing
  clock_.AdvanceNanos(5'000'000'000);
  ASSERT_OK(s.ProcessingTime());
  EXPECT_THAT(s.out().rows, ElementsAre(R"({"user":1,"window_start":5,"window_end":150,"n":2,"update":false})",
                                        R"({"user":1,"window_start":5,"window_end":150,"n":3,"update":true})",
                                        R"({"user":1,"window_start":5,"window_end":150,"n":3,"update":true})"));
}

// ---------------------------------------------------------------------------------------------
// Early firing and processing time

TEST_F(WindowTest, EmitEveryFiresEarlyInProcessingTimeOnlyWhenChanged) {
  KeyedSubtask& s = Start(R"y(    tumble: 1h
    time_field: ts
    emit_every: 1s
    aggregates: [{fn: count, as: n}])y");
  // Processing time is 1,000,000 ms: the first early firing is due at 1,001,000.
  ASSERT_OK(Add(s, 1, 5));
  ASSERT_OK(Add(s, 1, 6));
  clock_.AdvanceNanos(999'000'000);
  ASSERT_OK(s.ProcessingTime());
  EXPECT_THAT(s.out().rows, IsEmpty());
  clock_.AdvanceNanos(1'000'000);
  ASSERT_OK(s.ProcessingTime());
  EXPECT_THAT(s.out().rows, ElementsAre(R"({"user":1,"window_start":0,"window_end":3600000,"n":2,"update":false})"));
  clock_.AdvanceNanos(1'000'000'000);  // nothing changed: no row
  ASSERT_OK(s.ProcessingTime());
  EXPECT_EQ(s.out().rows.size(), 1);
  ASSERT_OK(Add(s, 1, 7));
  clock_.AdvanceNanos(1'000'000'000);
  ASSERT_OK(s.ProcessingTime());
  ASSERT_OK(s.Watermark(kMaxWatermark));  // the final firing, always
  clock_.AdvanceNanos(5'000'000'000);     // no early firing after it
  ASSERT_OK(s.ProcessingTime());
  EXPECT_THAT(s.out().rows,
              ElementsAre(R"({"user":1,"window_start":0,"window_end":3600000,"n":2,"update":false})",
                          R"({"user":1,"window_start":0,"window_end":3600000,"n":3,"update":true})",
                          R"({"user":1,"window_start":0,"window_end":3600000,"n":3,"update":true})"));
}

TEST_F(WindowTest, ProcessingTimeWindows) {
  KeyedSubtask& s = Start(R"y(    tumble: 1s
    time: processing
    aggregates: [{fn: count, as: n}, {fn: max, field: ts}])y");
  ASSERT_OK(Add(s, 1, 123));  // at 1,000,000 ms: window [1000000, 1001000)
  clock_.AdvanceNanos(998'000'000);
  ASSERT_OK(Add(s, 1, 456));
  ASSERT_OK(s.ProcessingTime());
  EXPECT_THAT(s.out().rows, IsEmpty());
  ASSERT_OK(s.Watermark(kMaxWatermark));  // event time does not matter
  EXPECT_THAT(s.out().rows, IsEmpty());
  clock_.AdvanceNanos(1'000'000);  // 1,000,999 = end - 1
  ASSERT_OK(s.ProcessingTime());
  clock_.AdvanceNanos(1'000'000);
  ASSERT_OK(Add(s, 1, 789));  // at 1,001,000: the next window
  clock_.AdvanceNanos(1'000'000'000);
  ASSERT_OK(s.ProcessingTime());
  EXPECT_THAT(s.out().rows,
              ElementsAre(R"({"user":1,"window_start":1000000,"window_end":1001000,"n":2,"max_ts":456,"update":false})",
                          R"({"user":1,"window_start":1001000,"window_end":1002000,"n":1,"max_ts":789,"update":false})"));
}

// ---------------------------------------------------------------------------------------------
// Checkpoint and restore (with rescaling)

// The same input, run uninterrupted and run with a snapshot in the middle restored into two
// new subtasks (parallelism 1 -> 2), gives the same rows; each key's windows fire on the new
// subtask that owns its key group.
// Sessions (merging), hopping windows (several per record) whose accumulators hold every kind
// of value (integers, doubles, strings), and hopping windows kept per slide pane. The second
// parameter: whether the subtask checkpointed may use slide panes (false: the checkpoint holds
// one accumulator per window, restored into subtasks that use slide panes).
class WindowRestoreTest : public WindowTest,
                          public ::testing::WithParamInterface<std::tuple<const char*, bool>> {
 protected:
  ~WindowRestoreTest() override { SetWindowSlidePanesForTest(true); }
};

INSTANTIATE_TEST_SUITE_P(Windows, WindowRestoreTest,
                         ::testing::Combine(::testing::Values(R"y(    session: 10ms
    time_field: ts
    allowed_lateness: 20ms
    aggregates: [{fn: count, as: n}, {fn: count_distinct, field: amount, as: d}, {fn: sum, field: amount}])y",
                                           R"y(    hop: {size: 20ms, slide: 10ms}
    time_field: ts
    allowed_lateness: 20ms
    aggregates: [{fn: count, as: n}, {fn: avg, field: price}, {fn: max, field: name}, {fn: first, field: amount}])y",
                                           R"y(    hop: {size: 30ms, slide: 10ms}
    time_field: ts
    aggregates: [{fn: count, as: n}, {fn: avg, field: amount}, {fn: max, field: name}, {fn: first, field: amount}])y"),
                                            ::testing::Bool()));

TEST_P(WindowRestoreTest, OpenWindowsSurviveSnapshotAndRestoreAtAnotherParallelism) {
  const std::string options = std::get<0>(GetParam());
  // Input: 40 keys, event times spread out of order; watermark steps in between.
  struct Step {
    bool watermark;
    int64_t user, ts, amount;
  };
  std::vector<Step> steps;
  for (int i = 0; i < 400; ++i) {
    const int64_t ts = (i * 7) % 150 + (i / 40) * 15;
    steps.push_back({false, i % 40, ts, i % 3});
    if (i % 50 == 49) steps.push_back({true, 0, (i / 50) * 40, 0});
  }
  steps.push_back({true, 0, kMaxWatermark, 0});
  const size_t half = steps.size() / 2;

  KeyedSubtask& whole = Start(options);
  for (const Step& st : steps) {
    ASSERT_OK(st.watermark ? whole.Watermark(st.ts) : Add(whole, st.user, st.ts, st.amount, Name(st.amount)));
  }
  std::vector<std::string> expected = whole.out().rows;
  uint64_t expected_late = whole.late_dropped();
  ASSERT_GT(expected.size(), 40);
  ASSERT_GT(expected_late, 0);

  SetWindowSlidePanesForTest(std::get<1>(GetParam()));
  KeyedSubtask& first = Start(options);
  SetWindowSlidePanesForTest(true);
  for (size_t i = 0; i < half; ++i) {
    const Step& st = steps[i];
    ASSERT_OK(st.watermark ? first.Watermark(st.ts) : Add(first, st.user, st.ts, st.amount, Name(st.amount)));
  }
  std::vector<std::string> got = first.out().rows;
  uint64_t late = first.late_dropped();
  auto checkpoint = TakeCheckpoint(first, 1);
  ASSERT_OK(checkpoint);
  ASSERT_TRUE(first.op()->UnionState());
  std::vector<KeyedSubtask*> restored;
  for (int subtask = 0; subtask < 2; ++subtask) {
    auto r = Restore(*checkpoint, subtask, 2);
    ASSERT_OK(r);
    restored.push_back(*r);
  }
  for (size_t i = half; i < steps.size(); ++i) {
    const Step& st = steps[i];
    if (st.watermark) {
      for (KeyedSubtask* s : restored) ASSERT_OK(s->Watermark(st.ts));
      continue;
    }
    // Route by key group, as the hash edge would.
    Record key(1);
    key[0].i = st.user;
    const int kg = KeyGroupForHash(KeyHasher::HashKeyRecord(Schema({{"user", FieldType::kInt64}}), key),
                                   kMaxParallelism);
    ASSERT_OK(Add(*restored[SubtaskForKeyGroup(kg, kMaxParallelism, 2)], st.user, st.ts, st.amount,
                  Name(st.amount)));
  }
  for (KeyedSubtask* s : restored) {
    EXPECT_FALSE(s->out().rows.empty());
    got.insert(got.end(), s->out().rows.begin(), s->out().rows.end());
    late += s->late_dropped();
  }
  EXPECT_THAT(got, UnorderedElementsAreArray(expected));
  EXPECT_EQ(late, expected_late);
}

// The watermark is not replayed after a restore, but the operator keeps the one it had seen:
// a record late before the checkpoint is late after it, instead of starting its window again.
// Tumbling 10 ms event-time windows counting records.
constexpr char kCountPer10ms[] = R"y(    tumble: 10ms
    time_field: ts
    aggregates: [{fn: count, as: n}])y";

TEST_F(WindowTest, RestoredOperatorJudgesLatenessByTheCheckpointedWatermark) {
  KeyedSubtask& first = Start(kCountPer10ms);
  ASSERT_OK(Add(first, 1, 5));
  ASSERT_OK(Add(first, 1, 25));
  ASSERT_OK(first.Watermark(19));
  EXPECT_THAT(first.out().rows, ElementsAre(R"({"user":1,"window_start":0,"window_end":10,"n":1,"update":false})"));
  auto checkpoint = TakeCheckpoint(first, 1);
  ASSERT_OK(checkpoint);
  auto r = Restore(*checkpoint, 0, 1);
  ASSERT_OK(r);
  KeyedSubtask& restored = **r;
  ASSERT_OK(Add(restored, 1, 7));   // late: [0,10) fired before the checkpoint
  ASSERT_OK(Add(restored, 1, 21));  // [20,30), open at the checkpoint
  ASSERT_OK(restored.Watermark(kMaxWatermark));
  EXPECT_EQ(restored.late_dropped(), 1);
  EXPECT_THAT(restored.out().rows, ElementsAre(R"({"user":1,"window_start":20,"window_end":30,"n":2,"update":false})"));
}

// The watermark state entry of format 0 (8 native bytes, no version byte) still restores; a
// newer version or a truncated entry fails the restore with kDataLoss naming the origin.
TEST_F(WindowTest, WatermarkStateFormats) {
  KeyedSubtask& first = Start(kCountPer10ms);
  ASSERT_OK(Add(first, 1, 25));
  ASSERT_OK(first.Watermark(19));
  auto checkpoint = TakeCheckpoint(first, 1);
  ASSERT_OK(checkpoint);
  ASSERT_EQ(checkpoint->operator_state.size(), 1u);
  ASSERT_EQ(checkpoint->operator_state[0].size(), 9u);
  EXPECT_EQ(checkpoint->operator_state[0][0], 1) << "format version 1";

  Checkpoint old = *checkpoint;
  const int64_t wm = 19;
  old.operator_state = {std::string(reinterpret_cast<const char*>(&wm), sizeof(wm))};
  auto r = Restore(old, 0, 1);
  ASSERT_OK(r);
  ASSERT_OK(Add(**r, 1, 7));  // late by the restored watermark 19
  EXPECT_EQ((*r)->late_dropped(), 1);

  const std::string named = "(job job, operator 'w' (type window), subtask 0, restored from checkpoint 1)";
  for (const auto& [entry, reason] : std::vector<std::pair<std::string, std::string>>{
           {"\x02" + checkpoint->operator_state[0].substr(1), "window watermark state has format version 2"},
           {checkpoint->operator_state[0].substr(0, 5), "window watermark state has 5 bytes, expected 9"}}) {
    Checkpoint bad = *checkpoint;
    bad.operator_state = {entry};
    EXPECT_THAT(Restore(bad, 0, 1), ::sluice::testing::StatusIs(absl::StatusCode::kDataLoss,
                                                                AllOf(HasSubstr(named), HasSubstr(reason))));
  }
}

// Restored at another parallelism, the watermark is the smallest the old subtasks had seen; a
// subtask that had seen none (kNoWatermark) makes it none, whatever the order of the entries, so
// no record its key groups had not judged late is dropped after the restore.
TEST_F(WindowTest, ARestoredWatermarkIsTheSmallestAlsoWhenOneSubtaskHadNone) {
  KeyedSubtask& first = Start(kCountPer10ms);
  ASSERT_OK(first.Watermark(19));
  auto checkpoint = TakeCheckpoint(first, 1);
  ASSERT_OK(checkpoint);
  ASSERT_EQ(checkpoint->operator_state.size(), 1u);
  std::string none(1, checkpoint->operator_state[0][0]);
  PutFixed64LE(static_cast<uint64_t>(kNoWatermark), &none);
  for (const bool none_first : {true, false}) {
    Checkpoint merged = *checkpoint;
    merged.operator_state = none_first ? std::vector<std::string>{none, checkpoint->operator_state[0]}
                                       : std::vector<std::string>{checkpoint->operator_state[0], none};
    auto r = Restore(merged, 0, 1);
    ASSERT_OK(r);
    ASSERT_OK(Add(**r, 1, 7));  // not late: one old subtask had seen no watermark
    EXPECT_EQ((*r)->late_dropped(), 0) << "none first: " << none_first;
    ASSERT_OK((*r)->Watermark(kMaxWatermark));
    EXPECT_THAT((*r)->out().rows,
                ElementsAre(R"({"user":1,"window_start":0,"window_end":10,"n":1,"update":false})"))
        << "none first: " << none_first;
  }
}

// A window of `user` ([start, end), event time) as a build before the buckets checkpointed it:
// its accumulator `value` in "window_acc" under the key and window, its timer under the same key.
absl::Status PutLegacyWindow(KeyedSubtask& s, int64_t user, int64_t start, int64_t end,
                             const std::string& value) {
  const Schema key_schema({{"user", FieldType::kInt64}});
  Record key(1);
  key[0].i = user;
  std::string composite;
  EncodeRecord(key_schema, key, &composite);
  internal::PutOrderedInt64(start, &composite);
  internal::PutOrderedInt64(end, &composite);
  state::KeyedStateBackend* b = s.backend();
  b->SetCurrentKey(composite, KeyGroupForHash(KeyHasher::HashKeyRecord(key_schema, key), kMaxParallelism));
  SLUICE_RETURN_IF_ERROR(b->Put(b->RegisterState("window_acc", state::StateKind::kValue), value));
  return b->RegisterTimer(state::TimerDomain::kEventTime, end - 1);
}

// Open windows are checkpointed per window and key group ("window_panes", format 1), and a
// restored subtask reads them; windows of the layout before (one accumulator per key and window
// in "window_acc", formats 1 and 2, with timers per key) still restore and go on. A newer format
// or a truncated entry is kDataLoss naming the origin, never a window restarted from zero.
TEST_F(WindowTest, AccumulatorFormats) {
  const std::string options = R"y(    tumble: 10ms
    time_field: ts
    aggregates: [{fn: count, as: n}, {fn: sum, field: amount}, {fn: min, field: price}])y";
  KeyedSubtask& s = Start(options);
  int64_t checkpoint_id = 0;
  // A subtask restored from a checkpoint of `from` after `put` changed its backend.
  auto restore_after = [&](KeyedSubtask& from, const std::function<absl::Status()>& put)
      -> absl::StatusOr<KeyedSubtask*> {
    SLUICE_RETURN_IF_ERROR(put());
    SLUICE_ASSIGN_OR_RETURN(Checkpoint c, TakeCheckpoint(from, ++checkpoint_id));
    return Restore(c, 0, 1);
  };
  const std::string row_1_at_1 = R"({"user":1,"window_start":0,"window_end":10,"n":2,"sum_amount":10,"min_price":2,"update":false})";

  // A checkpoint writes the open window's bucket (the window written last is the backend's
  // current key).
  ASSERT_OK(Add(s, 1, 1, 4));
  ASSERT_OK(TakeCheckpoint(s, ++checkpoint_id));
  const state::StateId panes = s.backend()->RegisterState("window_panes", state::StateKind::kValue);
  std::string stored;
  auto found = s.backend()->Get(panes, &stored);
  ASSERT_OK(found);
  ASSERT_TRUE(*found);
  ASSERT_EQ(stored[0], 1) << "format version 1";

  // The layout before: format 2, and format 1 (without nullable inputs the same bytes after the
  // version byte). Records 1, dirty, no early firing, sum 4, min 2.
  const Schema acc_schema({{"records", FieldType::kInt64}, {"emitted", FieldType::kBool},
                           {"final_fired", FieldType::kBool}, {"dirty", FieldType::kBool},
                           {"next_early", FieldType::kInt64}, {"v", FieldType::kInt64},
                           {"v", FieldType::kDouble}});
  Record acc(acc_schema.size());
  acc[0].i = 1;
  acc[3].i = 1;
  acc[4].i = std::numeric_limits<int64_t>::min();
  acc[5].i = 4;
  acc[6].d = 2;
  std::string v2(1, '\x02');
  EncodeRecord(acc_schema, acc, &v2);
  // The bucket's row is written from the pane's words: the bytes EncodeRecord gives that row.
  {
    std::string key;
    Record user(1);
    user[0].i = 1;
    EncodeRecord(Schema({{"user", FieldType::kInt64}}), user, &key);
    std::string bucket("\x01\x00", 2);  // format 1, no overflow
    PutVarint64(1, &bucket);
    PutVarint64(key.size(), &bucket);
    bucket += key;
    PutVarint64(v2.size() - 1, &bucket);
    bucket += v2.substr(1);
    EXPECT_EQ(stored, bucket);
  }
  for (const char version : {'\x02', '\x01'}) {
    KeyedSubtask& old = Start(options);
    auto r = restore_after(old, [&] { return PutLegacyWindow(old, 1, 0, 10, version + v2.substr(1)); });
    ASSERT_OK(r);
    ASSERT_OK(Add(**r, 1, 2, 6));
    ASSERT_OK((*r)->Watermark(9));
    EXPECT_THAT((*r)->out().rows, ElementsAre(row_1_at_1)) << "format " << int{version};
    // Moved into a bucket: the old entry is gone.
    std::string left;
    auto legacy = (*r)->backend()->Get((*r)->backend()->RegisterState("window_acc", state::StateKind::kValue), &left);
    ASSERT_OK(legacy);
    EXPECT_FALSE(*legacy);
  }

  const std::string named = "(job job, operator 'w' (type window), subtask 0, restored from checkpoint ";
  for (const auto& [value, reason] : std::vector<std::pair<std::string, std::string>>{
           {"\x03" + stored.substr(1), "window panes has format version 3, newer than this build reads (up to 2)"},
           {"\x02" + stored.substr(1), "window panes of format 2 (a slide pane) under the key of a window"},
           {stored.substr(0, stored.size() - 3), "window panes (" + std::to_string(stored.size() - 3) + " bytes) do not decode"},
           {stored + "x", "bytes left over"}}) {
    auto bad = restore_after(s, [&] { return s.backend()->Put(panes, value); });
    ASSERT_OK(bad);
    EXPECT_THAT(Add(**bad, 1, 2, 1), ::sluice::testing::StatusIs(absl::StatusCode::kDataLoss,
                                                                 AllOf(HasSubstr(named), HasSubstr(reason))));
  }
  for (const auto& [value, reason] : std::vector<std::pair<std::string, std::string>>{
           {"\x03" + v2.substr(1), "window accumulator has format version 3, newer than this build reads (up to 2)"},
           {v2.substr(0, v2.size() - 3), "window accumulator of format 2 does not decode"},
           {v2 + "x", "bytes left over"}}) {
    KeyedSubtask& old = Start(options);
    EXPECT_THAT(restore_after(old, [&] { return PutLegacyWindow(old, 1, 0, 10, value); }),
                ::sluice::testing::StatusIs(absl::StatusCode::kDataLoss, AllOf(HasSubstr(named), HasSubstr(reason))));
  }
}

// Windows over a nullable field (the right side of a left join): aggregates skip nulls, as SQL,
// and are null when the window saw only nulls; count counts records. Format 1 accumulators of
// such a window (whose values were never null) still read.
std::string NullableJob(const std::string& window) {
  return internal::NullableAmountJob(absl::StrCat(R"y(  - id: w
    type: window
    time_field: ts
)y", window, R"y(
    aggregates: [{fn: count, as: n}, {fn: sum, field: amount, as: sum}, {fn: min, field: amount, as: min},
                 {fn: max, field: amount, as: max}, {fn: avg, field: amount, as: avg},
                 {fn: first, field: amount, as: first}, {fn: last, field: amount, as: last},
                 {fn: count_distinct, field: amount, as: distinct}]
  - {id: out, type: print, input: w}
)y"));
}

Record NullableInput(int64_t ts, std::optional<int64_t> amount) { return internal::NullableAmountInput(1, ts, amount); }

// Processes (ts, amount) inputs of user 1 (nullopt: a null amount), then ends event time;
// returns the rows emitted.
std::vector<std::string> RunNullable(KeyedSubtask& s,
                                     const std::vector<std::pair<int64_t, std::optional<int64_t>>>& inputs) {
  for (const auto& [ts, amount] : inputs) EXPECT_OK(s.op()->Process(NullableInput(ts, amount)));
  EXPECT_OK(s.Watermark(kMaxWatermark));
  return s.out().rows;
}

TEST_F(WindowTest, AggregatesOverOnlyNullsAreNull) {
  ASSERT_OK(LoadJob(NullableJob("    tumble: 10ms"), "w"));
  EXPECT_EQ(spec_->output_schema.ToString(),
            "(left.user int64, window_start timestamp, window_end timestamp, n int64, sum int64 null, min int64 null, "
            "max int64 null, avg double null, first int64 null, last int64 null, distinct int64, update bool)");
  EXPECT_THAT(RunNullable(StartSubtask(),
                          {{1, std::nullopt}, {2, 4}, {3, std::nullopt}, {4, -2}, {5, 4}, {11, std::nullopt}}),
              ElementsAre(R"({"left.user":1,"window_start":0,"window_end":10,"n":5,"sum":6,"min":-2,"max":4,"avg":2,"first":4,"last":4,"distinct":2,"update":false})",
                          R"({"left.user":1,"window_start":10,"window_end":20,"n":1,"sum":null,"min":null,"max":null,"avg":null,"first":null,"last":null,"distinct":0,"update":false})"));
}

// Buckets checkpointed (rows written from the panes' words) restore every value and null bit.
TEST_F(WindowTest, NullableAccumulatorsSurviveARestore) {
  const std::vector<std::pair<int64_t, std::optional<int64_t>>> inputs = {
      {1, std::nullopt}, {2, 4}, {3, std::nullopt}, {4, std::numeric_limits<int64_t>::min()}, {5, 4},
      {11, std::nullopt}, {25, -1}};
  ASSERT_OK(LoadJob(NullableJob("    tumble: 10ms"), "w"));
  const std::vector<std::string> expected = RunNullable(StartSubtask(), inputs);
  ASSERT_EQ(expected.size(), 3u);
  ASSERT_OK(LoadJob(NullableJob("    tumble: 10ms"), "w"));
  KeyedSubtask& first = StartSubtask();
  for (const auto& [ts, amount] : inputs) ASSERT_OK(first.op()->Process(NullableInput(ts, amount)));
  auto checkpoint = TakeCheckpoint(first, 1);
  ASSERT_OK(checkpoint);
  auto restored = Restore(*checkpoint, 0, 1);
  ASSERT_OK(restored);
  ASSERT_OK((*restored)->Watermark(kMaxWatermark));
  EXPECT_EQ((*restored)->out().rows, expected);
}

// Session lists and accumulators kept in memory give the rows of keeping them in the backend
// (a budget of 1 byte: every session list goes to the backend at once and every window to the
// overflow map): merging sessions, late records within and beyond the lateness, distinct
// values, and a checkpoint restored in the middle.
TEST_F(WindowTest, SessionsInMemoryGiveTheRowsOfSessionsInTheBackend) {
  const std::string options = R"y(    session: 10ms
    time_field: ts
    allowed_lateness: 20ms
    aggregates: [{fn: count, as: n}, {fn: count_distinct, field: amount, as: d}, {fn: sum, field: amount}])y";
  size_t in_backend_keys = 0;  // keys in the backend at the checkpoint, before it is taken
  auto run = [&](size_t budget, std::vector<std::string>* rows) -> absl::Status {
    SetWindowMemoryForTest(budget);
    KeyedSubtask* s = &Start(options);
    uint64_t x = 7;
    for (int i = 0; i < 600; ++i) {
      if (i == 300) {
        in_backend_keys = 0;
        SLUICE_RETURN_IF_ERROR(s->backend()->ForEachKey(
            s->backend()->RegisterState("window_key_sessions", state::StateKind::kValue),
            [&](absl::string_view) {
              ++in_backend_keys;
              return absl::OkStatus();
            }));
        *rows = s->out().rows;
        SLUICE_ASSIGN_OR_RETURN(Checkpoint c, TakeCheckpoint(*s, 1));
        SLUICE_ASSIGN_OR_RETURN(s, Restore(c, 0, 1));
      }
      x = x * 6364136223846793005ULL + 1442695040888963407ULL;
      const int64_t ts = i / 2 + static_cast<int64_t>((x >> 33) % 40);
      SLUICE_RETURN_IF_ERROR(Add(*s, static_cast<int64_t>((x >> 20) % 17), ts, static_cast<int64_t>((x >> 45) % 4)));
      if (i % 30 == 29) SLUICE_RETURN_IF_ERROR(s->Watermark(i / 2 + 5));
    }
    SLUICE_RETURN_IF_ERROR(s->Watermark(kMaxWatermark));
    SetWindowMemoryForTest(0);
    rows->insert(rows->end(), s->out().rows.begin(), s->out().rows.end());
    rows->push_back(absl::StrCat("late ", s->late_dropped()));
    return absl::OkStatus();
  };
  std::vector<std::string> in_backend;
  ASSERT_OK(run(1, &in_backend));
  std::vector<std::string> in_memory;
  ASSERT_OK(run(0, &in_memory));
  EXPECT_GT(in_backend.size(), 50u);
  EXPECT_EQ(in_memory, in_backend);
  // Some keys in memory, the others in the backend: the same rows (keys in the backend fire
  // from their timers, before the keys in memory at the same watermark).
  std::vector<std::string> mixed;
  ASSERT_OK(run(2048, &mixed));
  EXPECT_GT(in_backend_keys, 2u);
  EXPECT_LT(in_backend_keys, 14u);
  std::sort(mixed.begin(), mixed.end());
  std::sort(in_memory.begin(), in_memory.end());
  EXPECT_EQ(mixed, in_memory);
}

// Session windows of format 1 (a build before per-key sessions): the key's session list in
// "window_sessions" ([1][start][end]*), each session's accumulator in its window's bucket
// ("window_panes") with timers per bucket, distinct values under [key][start][end]. A restore
// moves them into the key's sessions (format 2, "window_key_sessions", written at the next
// checkpoint) and deletes the old entries; merging, distinct values and firing go on. A newer
// format of the key's sessions fails the restore with kDataLoss naming the origin.
TEST_F(WindowTest, SessionListsOfFormatOneStillRestore) {
  const std::string options = R"y(    session: 10ms
    time_field: ts
    allowed_lateness: 20ms
    aggregates: [{fn: count, as: n}, {fn: sum, field: amount}, {fn: count_distinct, field: amount, as: d}])y";
  KeyedSubtask& old = Start(options);
  const Schema key_schema({{"user", FieldType::kInt64}});
  Record user(1);
  user[0].i = 1;
  std::string key;
  EncodeRecord(key_schema, user, &key);
  const int kg = KeyGroupForHash(KeyHasher::HashKeyRecord(key_schema, user), kMaxParallelism);
  const Schema acc_schema({{"records", FieldType::kInt64}, {"emitted", FieldType::kBool},
                           {"final_fired", FieldType::kBool}, {"dirty", FieldType::kBool},
                           {"next_early", FieldType::kInt64}, {"v", FieldType::kInt64}, {"n", FieldType::kInt64}});
  state::KeyedStateBackend* b = old.backend();
  const state::StateId lists = b->RegisterState("window_sessions", state::StateKind::kValue);
  const state::StateId panes = b->RegisterState("window_panes", state::StateKind::kValue);
  const state::StateId distinct = b->RegisterState("window_distinct", state::StateKind::kMap);
  // [0,15): records 2, sum 5, distinct {2, 3}; [30,40): records 1, sum 7, distinct {7}.
  struct Old {
    int64_t start, end, records, sum;
    std::vector<int64_t> values;
  };
  const std::vector<Old> sessions = {{0, 15, 2, 5, {2, 3}}, {30, 40, 1, 7, {7}}};
  std::string list(1, '\x01');
  for (const Old& o : sessions) {
    internal::PutOrderedInt64(o.start, &list);
    internal::PutOrderedInt64(o.end, &list);
    Record acc(acc_schema.size());
    acc[0].i = o.records;
    acc[3].i = 1;
    acc[4].i = std::numeric_limits<int64_t>::min();
    acc[5].i = o.sum;
    acc[6].i = static_cast<int64_t>(o.values.size());
    std::string row;
    EncodeRecord(acc_schema, acc, &row);
    std::string bucket("\x01\x00", 2);
    PutVarint64(1, &bucket);
    PutVarint64(key.size(), &bucket);
    bucket += key;
    PutVarint64(row.size(), &bucket);
    bucket += row;
    std::string bucket_key;
    internal::PutOrderedInt64(o.start, &bucket_key);
    internal::PutOrderedInt64(o.end, &bucket_key);
    for (int shift = 24; shift >= 0; shift -= 8) bucket_key.push_back(static_cast<char>((kg >> shift) & 0xff));
    b->SetCurrentKey(bucket_key, kg);
    ASSERT_OK(b->Put(panes, bucket));
    ASSERT_OK(b->RegisterTimer(state::TimerDomain::kEventTime, o.end - 1));
    ASSERT_OK(b->RegisterTimer(state::TimerDomain::kEventTime, o.end - 1 + 20));
    std::string composite = key;
    internal::PutOrderedInt64(o.start, &composite);
    internal::PutOrderedInt64(o.end, &composite);
    b->SetCurrentKey(composite, kg);
    for (int64_t v : o.values) {
      std::string user_key(1, '\x02');  // the aggregate's index
      internal::PutOrderedInt64(v, &user_key);
      ASSERT_OK(b->MapPut(distinct, user_key, ""));
    }
  }
  b->SetCurrentKey(key, kg);
  ASSERT_OK(b->Put(lists, list));
  auto checkpoint = TakeCheckpoint(old, 1);
  ASSERT_OK(checkpoint);
  auto r = Restore(*checkpoint, 0, 1);
  ASSERT_OK(r);
  KeyedSubtask& s = **r;
  // Moved: the list and the buckets are gone.
  std::string left;
  s.backend()->SetCurrentKey(key, kg);
  auto found = s.backend()->Get(s.backend()->RegisterState("window_sessions", state::StateKind::kValue), &left);
  ASSERT_OK(found);
  EXPECT_FALSE(*found);
  ASSERT_OK(Add(s, 1, 12, 3));  // [12,22) extends [0,15): [0,22), 3 records, sum 8, {2, 3}
  ASSERT_OK(Add(s, 1, 22, 7));  // [22,32) bridges [0,22) and [30,40): sum 22, {2, 3, 7}
  // Written in format 2 at the next checkpoint, and restored from it.
  auto second = TakeCheckpoint(s, 2);
  ASSERT_OK(second);
  std::string stored;
  s.backend()->SetCurrentKey(key, kg);
  const state::StateId key_sessions = s.backend()->RegisterState("window_key_sessions", state::StateKind::kValue);
  found = s.backend()->Get(key_sessions, &stored);
  ASSERT_OK(found);
  ASSERT_TRUE(*found);
  EXPECT_EQ(stored[0], 2) << "format version 2";
  auto again = Restore(*second, 0, 1);
  ASSERT_OK(again);
  ASSERT_OK((*again)->Watermark(kMaxWatermark));
  EXPECT_THAT((*again)->out().rows,
              ElementsAre(R"({"user":1,"window_start":0,"window_end":40,"n":5,"sum_amount":22,"d":3,"update":false})"));
  const std::string named = "(job job, operator 'w' (type window), subtask 0, restored from checkpoint ";
  for (const auto& [value, reason] : std::vector<std::pair<std::string, std::string>>{
           {"\x03" + stored.substr(1), "window key sessions has format version 3, newer than this build reads (up to 2)"},
           {stored.substr(0, stored.size() - 2), "window key sessions (" + std::to_string(stored.size() - 2) + " bytes) do not decode"},
           {stored + "x", "bytes left over"}}) {
    KeyedSubtask& bad = **Restore(*second, 0, 1);
    bad.backend()->SetCurrentKey(key, kg);
    ASSERT_OK(bad.backend()->Put(key_sessions, value));
    auto c = TakeCheckpoint(bad, 3);
    ASSERT_OK(c);
    EXPECT_THAT(Restore(*c, 0, 1), ::sluice::testing::StatusIs(absl::StatusCode::kDataLoss,
                                                               AllOf(HasSubstr(named), HasSubstr(reason))));
  }
}

TEST_F(WindowTest, SessionsOverNullsMergeAsSql) {
  ASSERT_OK(LoadJob(NullableJob("    session: {gap: 5ms}"), "w"));
  // [30, 35) of a null and [37, 42) of 6; then 33 (null) bridges them into [30, 42); [60, 65)
  // holds only a null.
  EXPECT_THAT(RunNullable(StartSubtask(), {{30, std::nullopt}, {37, 6}, {33, std::nullopt}, {60, std::nullopt}}),
              ElementsAre(R"({"left.user":1,"window_start":30,"window_end":42,"n":3,"sum":6,"min":6,"max":6,"avg":6,"first":6,"last":6,"distinct":1,"update":false})",
                          R"({"left.user":1,"window_start":60,"window_end":65,"n":1,"sum":null,"min":null,"max":null,"avg":null,"first":null,"last":null,"distinct":0,"update":false})"));
}

TEST_F(WindowTest, NullableAccumulatorOfFormatOneStillReads) {
  ASSERT_OK(LoadJob(NullableJob("    tumble: 10ms"), "w"));
  KeyedSubtask& s = StartSubtask();
  // Format 1: every field NOT NULL, avg without its count of values: 2 records so far, sum 10,
  // min 3, max 7, avg sum 10, first 3 at 1, last 7 at 2, 2 distinct.
  Schema v1({{"records", FieldType::kInt64}, {"emitted", FieldType::kBool}, {"final_fired", FieldType::kBool},
             {"dirty", FieldType::kBool}, {"next_early", FieldType::kInt64}, {"v", FieldType::kInt64},
             {"v", FieldType::kInt64}, {"v", FieldType::kInt64}, {"v", FieldType::kInt64}, {"v", FieldType::kInt64},
             {"ts", FieldType::kInt64}, {"v", FieldType::kInt64}, {"ts", FieldType::kInt64}, {"n", FieldType::kInt64}});
  Record old(v1.size());
  const int64_t values[] = {2, 0, 0, 1, std::numeric_limits<int64_t>::min(), 10, 3, 7, 10, 3, 1, 7, 2, 2};
  for (size_t i = 0; i < v1.size(); ++i) old[i].i = values[i];
  std::string bytes(1, '\x01');
  EncodeRecord(v1, old, &bytes);
  ASSERT_OK(PutLegacyWindow(s, 1, 0, 10, bytes));
  auto checkpoint = TakeCheckpoint(s, 1);
  ASSERT_OK(checkpoint);
  auto r = Restore(*checkpoint, 0, 1);
  ASSERT_OK(r);
  ASSERT_OK((*r)->op()->Process(NullableInput(3, 5)));
  ASSERT_OK((*r)->Watermark(kMaxWatermark));
  EXPECT_THAT((*r)->out().rows,
              ElementsAre(R"({"left.user":1,"window_start":0,"window_end":10,"n":3,"sum":15,"min":3,"max":7,"avg":5,"first":3,"last":5,"distinct":3,"update":false})"));
}

// More open windows than the operator's memory budget holds (64 KiB here, a few hundred
// windows): the windows opened after those are kept in the backend ("window_overflow", read and
// written per record) and fire with the rest, also after a restore.
TEST_F(WindowTest, ManyOpenWindowsSpillToTheBackend) {
  SetWindowMemoryForTest(size_t{64} << 10);
  KeyedSubtask& first = Start(R"y(    tumble: {size: 10ms}
    time_field: ts
    aggregates: [{fn: count, as: n}, {fn: sum, field: amount}])y");
  SetWindowMemoryForTest(0);
  constexpr int64_t kUsers = 3'000;
  for (int64_t user = 0; user < kUsers; ++user) ASSERT_OK(Add(first, user, 1, user));
  // The windows in the backend: per key group, the overflow map under the bucket key
  // [start][end][key group].
  const state::StateId overflow = first.backend()->RegisterState("window_overflow", state::StateKind::kMap);
  size_t overflowing = 0;
  for (int kg = 0; kg < kMaxParallelism; ++kg) {
    std::string bucket;
    internal::PutOrderedInt64(0, &bucket);
    internal::PutOrderedInt64(10, &bucket);
    for (int shift = 24; shift >= 0; shift -= 8) bucket.push_back(static_cast<char>((kg >> shift) & 0xff));
    first.backend()->SetCurrentKey(bucket, kg);
    std::vector<std::pair<std::string, std::string>> entries;
    ASSERT_OK(first.backend()->MapEntries(overflow, &entries));
    overflowing += entries.size();
  }
  EXPECT_GT(overflowing, kUsers / 2);
  EXPECT_LT(overflowing, kUsers);
  auto checkpoint = TakeCheckpoint(first, 1);
  ASSERT_OK(checkpoint);
  auto r = Restore(*checkpoint, 0, 1);
  ASSERT_OK(r);
  KeyedSubtask& s = **r;
  for (int64_t user = 0; user < kUsers; user += 7) ASSERT_OK(Add(s, user, 2, 1));
  ASSERT_OK(s.Watermark(kMaxWatermark));
  ASSERT_EQ(s.out().rows.size(), static_cast<size_t>(kUsers));
  std::vector<std::string> expected;
  for (int64_t user = 0; user < kUsers; ++user) {
    const bool twice = user % 7 == 0;
    expected.push_back(absl::StrCat(R"({"user":)", user, R"(,"window_start":0,"window_end":10,"n":)",
                                    twice ? 2 : 1, R"(,"sum_amount":)", user + (twice ? 1 : 0),
                                    R"(,"update":false})"));
  }
  std::vector<std::string> got = s.out().rows;
  std::sort(got.begin(), got.end());
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(got, expected);
}

// ---------------------------------------------------------------------------------------------
// Aggregate functions from the catalog (plugins' in a cluster; a C++ one here)

class WindowPluginAggregateTest : public WindowTest {
 protected:
  WindowPluginAggregateTest() { EXPECT_OK(registry_.AddAggregateFunction(spread_)); }
  std::shared_ptr<internal::SpreadFunction> spread_ = std::make_shared<internal::SpreadFunction>();
};

TEST_F(WindowPluginAggregateTest, SessionsMergeTheFunctionsAccumulators) {
  KeyedSubtask& s = Start(R"y(    session: {gap: 10ms}
    time_field: ts
    allowed_lateness: 100ms
    aggregates: [{fn: count, as: n}, {fn: spread, field: amount, as: sp}])y");
  EXPECT_EQ(spec_->output_schema.ToString(),
            "(user int64, window_start timestamp, window_end timestamp, n int64, sp int64 null, update bool)");
  ASSERT_OK(Add(s, 1, 0, 5));    // [0,10)
  ASSERT_OK(Add(s, 1, 10, 2));   // [0,20)
  ASSERT_OK(Add(s, 1, 30, 9));   // [30,40)
  ASSERT_OK(s.Watermark(40));
  EXPECT_THAT(s.out().rows,
              ElementsAre(R"({"user":1,"window_start":0,"window_end":20,"n":2,"sp":3,"update":false})",
                          R"({"user":1,"window_start":30,"window_end":40,"n":1,"sp":0,"update":false})"));
  s.out().rows.clear();
  ASSERT_OK(Add(s, 1, 20, 100));  // bridges both: [0,40), values 5 2 9 100
  EXPECT_THAT(s.out().rows,
              ElementsAre(R"({"user":1,"window_start":0,"window_end":40,"n":4,"sp":98,"update":false})"));
}

TEST_F(WindowPluginAggregateTest, AccumulatorsAreRestoredAndTheirVersionChecked) {
  const std::string options = R"y(    tumble: 10ms
    time_field: ts
    aggregates: [{fn: spread, field: amount, as: sp}])y";
  KeyedSubtask& first = Start(options);
  ASSERT_OK(Add(first, 1, 1, 4));
  ASSERT_OK(Add(first, 1, 2, 10));
  auto checkpoint = TakeCheckpoint(first, 1);
  ASSERT_OK(checkpoint);
  auto r = Restore(*checkpoint, 0, 1);
  ASSERT_OK(r);
  ASSERT_OK(Add(**r, 1, 3, 1));
  ASSERT_OK((*r)->Watermark(kMaxWatermark));
  EXPECT_THAT((*r)->out().rows, ElementsAre(R"({"user":1,"window_start":0,"window_end":10,"sp":9,"update":false})"));
  // The plugin now writes version 2: its version-1 accumulators are refused, not misread.
  spread_->version = 2;
  auto again = Restore(*checkpoint, 0, 1);
  ASSERT_OK(again);
  EXPECT_THAT((*again)->op()->Process(Input(1, 3, 1)),
              ::sluice::testing::StatusIs(
                  absl::StatusCode::kFailedPrecondition,
                  "job/w#0: the state holds accumulators of aggregate function 'spread' (sp) in format "
                  "version 1, but the test reads version 2: restore with the plugin version that wrote the state"));
}

TEST_F(WindowPluginAggregateTest, TheFunctionsInputTypeIsCheckedAtPlanTime) {
  EXPECT_THAT(Load("    tumble: 1s\n    time_field: ts\n    aggregates: [{fn: spread, field: name}]"),
              Invalid("job.yaml:16:38: aggregate function 'spread' of the test does not take 'name' (string): "
                      "spread takes int64"));
  EXPECT_THAT(Load("    tumble: 1s\n    time_field: ts\n    aggregates: [{fn: spread}]"),
              Invalid("aggregate function 'spread' of the test needs a 'field'"));
  EXPECT_THAT(Load("    tumble: 1s\n    time_field: ts\n    aggregates: [{fn: spreed, field: amount}]"),
              Invalid("unknown aggregate function 'spreed' (expected count, sum, min, max, avg, first, last, "
                      "count_distinct; from plugins: spread)"));
}

// ---------------------------------------------------------------------------------------------
// Options

TEST_F(WindowTest, OptionErrors) {
  EXPECT_THAT(Load("    tumble: 1s\n    aggregates: [{fn: count}]"),
              Invalid("needs 'time_field'"));
  EXPECT_THAT(Load("    tumble: 1s\n    time_field: name\n    aggregates: [{fn: count}]"),
              Invalid("timestamp or int64"));
  EXPECT_THAT(Load("    tumble: 1s\n    time: processing\n    allowed_lateness: 1s\n    aggregates: [{fn: count}]"),
              Invalid("event time only"));
  EXPECT_THAT(Load("    tumble: 1s\n    time_field: ts\n    aggregates: [{fn: median, field: ts}]"),
              Invalid("unknown aggregate function 'median' (expected count, sum, min, "
                                 "max, avg, first, last, count_distinct)"));
  EXPECT_THAT(Load("    tumble: 1s\n    time_field: ts\n    aggregates: [{fn: sum, field: name}]"),
              Invalid("needs a numeric field"));
  EXPECT_THAT(Load("    tumble: 1s\n    time_field: ts\n    aggregates: [{fn: count, as: user}]"),
              Invalid("duplicate output field 'user'"));
  EXPECT_THAT(Load("    time_field: ts\n    aggregates: [{fn: count}]"),
              Invalid("job.yaml:12:5: windows need one of"));
}

}  // namespace
}  // namespace sluice::ops
