// top_n with a real RocksDB backend and watermarks driven by hand.

#include <algorithm>
#include <array>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/record_codec.h"
#include "common/status_matchers.h"
#include "common/watermark.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "operators/internal/builtins.h"
#include "operators/internal/keyed_test_harness.h"

namespace sluice::ops {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using internal::KeyedSubtask;

// A kInvalidArgument status whose message contains `text`.
auto Invalid(const std::string& text) {
  return ::sluice::testing::StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(text));
}

class TopNTest : public internal::KeyedOperatorTest {
 protected:
  // Rows as a window of bid counts per auction makes them; top_n keyed by `key`.
  absl::Status Load(const std::string& top_n_options, const std::string& key = "window_end",
                    bool windowed = true) {
    return LoadJob(absl::StrCat(R"y(max_parallelism: 16
operators:
  - id: src
    type: datagen
    fields:
      - {name: auction, type: int64, expr: seq}
)y", windowed ? R"y(      - {name: window_start, type: timestamp, expr: seq}
      - {name: window_end, type: timestamp, expr: seq}
)y" : "", R"y(      - {name: bids, type: int64, expr: seq}
  - {id: k, type: key_by, key: )y", key, R"y(}
  - id: top
    type: top_n
)y", top_n_options, R"y(
  - {id: out, type: print}
)y"), "top");
  }

  absl::Status Bid(KeyedSubtask& s, int64_t auction, int64_t window_start, int64_t bids) {
    Record r(4);
    r[0].i = auction;
    r[1].i = window_start;
    r[2].i = window_start + 10;
    r[3].i = bids;
    return s.op()->Process(r);
  }
};

// Nexmark q5's "hot items": per window, the auctions with the most bids, ties all kept.
TEST_F(TopNTest, PerWindowAcrossKeysEmitsRankedRowsWhenTheWindowIsComplete) {
  ASSERT_OK(Load("    n: 3\n    order_by: bids"));
  EXPECT_EQ(spec_->output_schema.ToString(),
            "(auction int64, window_start timestamp, window_end timestamp, bids int64, rank int64)");
  KeyedSubtask& s = StartSubtask();
  ASSERT_OK(Bid(s, 1, 0, 3));
  ASSERT_OK(Bid(s, 2, 0, 5));
  ASSERT_OK(Bid(s, 9, 10, 50));  // the next window
  ASSERT_OK(Bid(s, 3, 0, 5));
  ASSERT_OK(Bid(s, 4, 0, 1));    // rank 5: not kept
  ASSERT_OK(Bid(s, 5, 0, 3));    // tied with auction 1 at rank 3: kept
  ASSERT_OK(s.Watermark(8));
  EXPECT_THAT(s.out().rows, IsEmpty());
  ASSERT_OK(s.Watermark(9));
  EXPECT_THAT(s.out().rows,
              ElementsAre(R"({"auction":2,"window_start":0,"window_end":10,"bids":5,"rank":1})",
                          R"({"auction":3,"window_start":0,"window_end":10,"bids":5,"rank":1})",
                          R"({"auction":1,"window_start":0,"window_end":10,"bids":3,"rank":3})",
                          R"({"auction":5,"window_start":0,"window_end":10,"bids":3,"rank":3})"));
  s.out().rows.clear();
  ASSERT_OK(Bid(s, 6, 0, 100));  // the window was emitted: late
  EXPECT_EQ(s.late_dropped(), 1u);
  ASSERT_OK(s.Watermark(kMaxWatermark));
  EXPECT_THAT(s.out().rows,
              ElementsAre(R"({"auction":9,"window_start":10,"window_end":20,"bids":50,"rank":1})"));
}

TEST_F(TopNTest, TopOneKeepsEveryRowTiedForFirst) {
  ASSERT_OK(Load("    n: 1\n    order_by: bids"));
  KeyedSubtask& s = StartSubtask();
  ASSERT_OK(Bid(s, 1, 0, 4));
  ASSERT_OK(Bid(s, 2, 0, 7));
  ASSERT_OK(Bid(s, 3, 0, 7));
  ASSERT_OK(Bid(s, 4, 0, 6));
  ASSERT_OK(s.Watermark(kMaxWatermark));
  EXPECT_THAT(s.out().rows,
              ElementsAre(R"({"auction":2,"window_start":0,"window_end":10,"bids":7,"rank":1})",
                          R"({"auction":3,"window_start":0,"window_end":10,"bids":7,"rank":1})"));
}

TEST_F(TopNTest, RankedRowsSurviveCheckpointAndRestore) {
  ASSERT_OK(Load("    n: 2\n    order_by: bids"));
  KeyedSubtask& first = StartSubtask();
  ASSERT_OK(Bid(first, 1, 0, 4));
  ASSERT_OK(Bid(first, 2, 0, 9));
  ASSERT_OK(first.Watermark(5));
  auto checkpoint = TakeCheckpoint(first, 1);
  ASSERT_OK(checkpoint);
  auto restored = Restore(*checkpoint, 0, 1);
  ASSERT_OK(restored);
  ASSERT_OK(Bid(**restored, 3, 0, 6));  // pushes auction 1 out
  ASSERT_OK((*restored)->Watermark(kMaxWatermark));
  EXPECT_THAT((*restored)->out().rows,
              ElementsAre(R"({"auction":2,"window_start":0,"window_end":10,"bids":9,"rank":1})",
                          R"({"auction":3,"window_start":0,"window_end":10,"bids":6,"rank":2})"));
}

// After a restore, a row of a window that fired before the checkpoint is late, as it is without
// the restore: the watermark at the checkpoint is operator state (the smallest of the old
// subtasks'). Without it the row started its window's group again and the next watermark
// emitted the window a second time.
TEST_F(TopNTest, ARowOfAWindowFiredBeforeTheCheckpointIsLateAfterARestore) {
  ASSERT_OK(Load("    n: 2\n    order_by: bids"));
  KeyedSubtask& first = StartSubtask();
  ASSERT_OK(Bid(first, 1, 0, 4));
  ASSERT_OK(Bid(first, 2, 10, 9));
  ASSERT_OK(first.Watermark(9));  // window [0, 10) fires
  ASSERT_EQ(first.out().rows.size(), 1u);
  auto checkpoint = TakeCheckpoint(first, 1);
  ASSERT_OK(checkpoint);
  auto restored = Restore(*checkpoint, 0, 1);
  ASSERT_OK(restored);
  KeyedSubtask* subtasks[] = {&first, *restored};
  for (KeyedSubtask* s : subtasks) {
    s->out().rows.clear();
    ASSERT_OK(Bid(*s, 3, 0, 7));   // window [0, 10): fired, late
    ASSERT_OK(Bid(*s, 4, -10, 1)); // window [-10, 0): late too
    ASSERT_OK(Bid(*s, 5, 10, 3));
    ASSERT_OK(s->Watermark(19));
  }
  const std::vector<std::string> expected = {
      R"({"auction":2,"window_start":10,"window_end":20,"bids":9,"rank":1})",
      R"({"auction":5,"window_start":10,"window_end":20,"bids":3,"rank":2})"};
  EXPECT_EQ(first.out().rows, expected);
  EXPECT_EQ((*restored)->out().rows, expected);
  EXPECT_EQ(first.late_dropped(), 2u);
  EXPECT_EQ((*restored)->late_dropped(), 2u);

  // With another old subtask's watermark, lower (5): the restored one is the smallest, and a
  // window ending at 7 was not late for every old subtask, so it is taken.
  checkpoint->operator_state.push_back(checkpoint->operator_state[0]);
  checkpoint->operator_state.back()[1] = 5;  // fixed64 LE: 9 -> 5
  auto again = Restore(*checkpoint, 0, 1);
  ASSERT_OK(again);
  ASSERT_OK(Bid(**again, 6, -3, 1));
  ASSERT_OK((*again)->Watermark(19));
  EXPECT_EQ((*again)->late_dropped(), 0u);
  EXPECT_THAT((*again)->out().rows,
              ElementsAre(R"({"auction":6,"window_start":-3,"window_end":7,"bids":1,"rank":1})",
                          R"({"auction":2,"window_start":10,"window_end":20,"bids":9,"rank":1})"));
}

TEST_F(TopNTest, WatermarkStateThatDoesNotDecodeIsDataLoss) {
  ASSERT_OK(Load("    n: 2\n    order_by: bids"));
  KeyedSubtask& first = StartSubtask();
  auto checkpoint = TakeCheckpoint(first, 1);
  ASSERT_OK(checkpoint);
  ASSERT_EQ(checkpoint->operator_state.size(), 1u);
  checkpoint->operator_state[0].pop_back();
  EXPECT_THAT(Restore(*checkpoint, 0, 1).status(),
              ::sluice::testing::StatusIs(absl::StatusCode::kDataLoss, HasSubstr("top_n watermark state has 8 bytes")));
}

// The last group's rows kept decoded between records give what reading the group's state for
// every record gives: runs of one window and windows interleaved, ties at the n-th rank, rows
// that do not rank, windows firing between runs, a checkpoint restored in the middle, and per
// key (without windows) the lists emitted as they change.
TEST_F(TopNTest, TheLastGroupKeptDecodedGivesTheRowsOfReadingItsState) {
  for (const bool windowed : {true, false}) {
    // Rows (auction, window_start, bids), watermarks as window_start -1.
    std::vector<std::array<int64_t, 3>> input;
    uint64_t x = 99;
    for (int i = 0; i < 400; ++i) {
      x = x * 6364136223846793005ULL + 1442695040888963407ULL;
      const int64_t window = (i / 25) * 10 + (i % 7 == 0 ? 10 : 0);  // runs, and interleaved
      input.push_back({i, window, static_cast<int64_t>((x >> 40) % 6)});
      if (i % 50 == 37) input.push_back({-1, (i / 25) * 10 - 1, 0});  // within a run of window (i / 25) * 10
    }
    auto run = [&](bool cache) -> std::vector<std::string> {
      SetTopNGroupCacheForTest(cache);
      EXPECT_OK(windowed ? Load("    n: 2\n    order_by: bids") : Load("    n: 2\n    order_by: bids", "auction % 3", false));
      SetTopNGroupCacheForTest(true);
      KeyedSubtask* s = &StartSubtask();
      std::vector<std::string> rows;
      for (size_t i = 0; i < input.size(); ++i) {
        const auto& [auction, window, bids] = input[i];
        if (i == input.size() / 2) {
          rows.insert(rows.end(), s->out().rows.begin(), s->out().rows.end());
          auto checkpoint = TakeCheckpoint(*s, 1);
          EXPECT_OK(checkpoint);
          SetTopNGroupCacheForTest(cache);
          auto restored = Restore(*checkpoint, 0, 1);
          SetTopNGroupCacheForTest(true);
          EXPECT_OK(restored);
          s = *restored;
        }
        if (auction < 0) {
          EXPECT_OK(s->Watermark(window));
        } else if (windowed) {
          EXPECT_OK(Bid(*s, auction, window, bids));
        } else {
          Record r(2);
          r[0].i = auction;
          r[1].i = bids;
          EXPECT_OK(s->op()->Process(r));
        }
      }
      EXPECT_OK(s->Watermark(kMaxWatermark));
      rows.insert(rows.end(), s->out().rows.begin(), s->out().rows.end());
      return rows;
    };
    const std::vector<std::string> expected = run(false);
    EXPECT_GT(expected.size(), windowed ? 30u : 100u);
    EXPECT_EQ(run(true), expected) << (windowed ? "windowed" : "per key");
  }
}

// Without windows: per key, the ranked list again whenever a row enters it; ascending here.
TEST_F(TopNTest, PerKeyEmitsTheListWhenItChanges) {
  ASSERT_OK(Load("    n: 2\n    order_by: bids * 10\n    order: asc", "auction % 2", false));
  EXPECT_EQ(spec_->output_schema.ToString(), "(auction int64, bids int64, rank int64)");
  KeyedSubtask& s = StartSubtask();
  auto add = [&](int64_t auction, int64_t bids) {
    Record r(2);
    r[0].i = auction;
    r[1].i = bids;
    return s.op()->Process(r);
  };
  ASSERT_OK(add(2, 5));
  ASSERT_OK(add(4, 3));
  ASSERT_OK(add(6, 9));  // rank 3 of key 0: no change, nothing emitted
  ASSERT_OK(add(1, 8));  // key 1
  ASSERT_OK(add(8, 3));  // tied with auction 4 at rank 1
  EXPECT_THAT(s.out().rows, ElementsAre(R"({"auction":2,"bids":5,"rank":1})",
                                        R"({"auction":4,"bids":3,"rank":1})",
                                        R"({"auction":2,"bids":5,"rank":2})",
                                        R"({"auction":1,"bids":8,"rank":1})",
                                        R"({"auction":4,"bids":3,"rank":1})",
                                        R"({"auction":8,"bids":3,"rank":1})"));
}

// The q5 pipeline plans: window -> key_by window_end -> top_n.
TEST_F(TopNTest, AfterAWindow) {
  ASSERT_OK(LoadJob(R"y(max_parallelism: 16
operators:
  - id: bids
    type: datagen
    fields: [{name: auction, type: int64, expr: seq % 10}, {name: ts, type: timestamp, expr: seq}]
    event_time: {field: ts, max_out_of_orderness: 1s}
  - {id: by_auction, type: key_by, key: auction}
  - {id: counts, type: window, hop: {size: 10s, slide: 2s}, time_field: ts, aggregates: [{fn: count, as: bids}]}
  - {id: by_window, type: key_by, key: window_end}
  - {id: hot, type: top_n, n: 1, order_by: bids}
  - {id: out, type: print}
)y", "hot"));
  EXPECT_EQ(spec_->output_schema.ToString(),
            "(auction int64, window_start timestamp, window_end timestamp, bids int64, update bool, "
            "rank int64)");
}

TEST_F(TopNTest, OptionErrors) {
  EXPECT_THAT(Load("    order_by: bids"),
              Invalid("needs 'n'"));
  EXPECT_THAT(Load("    n: 0\n    order_by: bids"),
              Invalid("'n'"));
  EXPECT_THAT(Load("    n: 1\n    order_by: bidz"),
              Invalid("bidz"));
  EXPECT_THAT(Load("    n: 1\n    order_by: bids\n    order: up"),
              Invalid("'desc'"));
}

// local_top_n before the shuffle, top_n after it: bids (auction, window_start, window_end,
// bids) grouped by window_end.
class LocalTopNTest : public internal::KeyedOperatorTest {
 protected:
  // Plans the job; spec_ is the top_n, local_ the local_top_n.
  absl::Status Load(int n, const std::string& local_options = "key: [window_end], ") {
    SLUICE_RETURN_IF_ERROR(LoadJob(absl::StrCat(R"y(max_parallelism: 16
operators:
  - id: src
    type: datagen
    fields:
      - {name: auction, type: int64, expr: seq}
      - {name: window_start, type: timestamp, expr: seq}
      - {name: window_end, type: timestamp, expr: seq}
      - {name: bids, type: int64, expr: seq}
  - {id: local, type: local_top_n, )y", local_options, "n: ", n, R"y(, order_by: bids}
  - {id: k, type: key_by, key: window_end}
  - {id: top, type: top_n, n: )y", n, R"y(, order_by: bids}
  - {id: out, type: print}
)y"), "top"));
    for (const auto& op : job_.operators) {
      if (op.id == "local") local_ = &op;
    }
    return absl::OkStatus();
  }

  // Opens a local_top_n subtask (`subtask` of `parallelism`) writing to `out`, restored from
  // `state` when not empty; its Open() status in *status.
  std::unique_ptr<Operator> OpenLocal(Output* out, std::vector<std::string> state,
                                      absl::Status* status, int subtask = 0, int parallelism = 1) {
    auto op = registry_.Create(*local_);
    EXPECT_OK(op);
    OperatorContext ctx;
    ctx.job = &job_;
    ctx.spec = local_;
    ctx.clock = &clock_;
    ctx.subtask = subtask;
    ctx.parallelism = parallelism;
    ctx.task_name = absl::StrCat("job/local#", subtask);
    ctx.max_parallelism = job_.max_parallelism;
    ctx.restored = !state.empty();
    ctx.restored_checkpoint_id = ctx.restored ? 1 : 0;
    ctx.state_origin = StateOrigin("job", "local", "local_top_n", subtask, ctx.restored_checkpoint_id);
    ctx.restored_state = std::move(state);
    *status = (*op)->Open(ctx, out);
    return *std::move(op);
  }

  static Record Bid(int64_t auction, int64_t window_start, int64_t bids) {
    Record r(4);
    r[0].i = auction;
    r[1].i = window_start;
    r[2].i = window_start + 10;
    r[3].i = bids;
    return r;
  }

  const plan::OperatorSpec* local_ = nullptr;
};

// What a local_top_n emits goes to the top_n after the shuffle (watermarks are the test's).
class IntoSubtask final : public Output {
 public:
  explicit IntoSubtask(KeyedSubtask* next) : next_(next) {}
  absl::Status Emit(const Record& r) override {
    ++emitted;
    return next_->op()->Process(r);
  }
  size_t emitted = 0;

 private:
  KeyedSubtask* next_;
};

TEST_F(LocalTopNTest, HoldsEachWindowsRankedRowsUntilTheWatermarkPassesIt) {
  ASSERT_OK(Load(2));
  EXPECT_EQ(local_->output_schema, local_->input_schema);
  internal::JsonOutput out(&local_->output_schema, nullptr);
  absl::Status open;
  std::unique_ptr<Operator> local = OpenLocal(&out, {}, &open);
  ASSERT_OK(open);
  for (const auto& [auction, window, bids] : std::vector<std::array<int64_t, 3>>{
           {1, 0, 3}, {2, 0, 5}, {3, 10, 7}, {4, 0, 1}, {5, 0, 5}, {6, 0, 4},  // 4: rank 3
           {7, 10, 4}, {8, 10, 4}, {9, 10, 2}}) {                          // 4, 4: rank 2
    ASSERT_OK(local->Process(Bid(auction, window, bids)));
  }
  ASSERT_OK(local->ProcessWatermark(8));
  EXPECT_THAT(out.rows, IsEmpty());
  ASSERT_OK(local->ProcessWatermark(9));
  EXPECT_THAT(out.rows,
              ElementsAre(R"({"auction":2,"window_start":0,"window_end":10,"bids":5})",
                          R"({"auction":5,"window_start":0,"window_end":10,"bids":5})"));
  out.rows.clear();
  ASSERT_OK(local->Process(Bid(10, 0, 9)));  // window 0 went downstream: passes through
  EXPECT_THAT(out.rows, ElementsAre(R"({"auction":10,"window_start":0,"window_end":10,"bids":9})"));
  out.rows.clear();
  ASSERT_OK(local->ProcessWatermarkStatus(true));  // idle: nothing may stay behind
  EXPECT_THAT(out.rows,
              ElementsAre(R"({"auction":3,"window_start":10,"window_end":20,"bids":7})",
                          R"({"auction":7,"window_start":10,"window_end":20,"bids":4})",
                          R"({"auction":8,"window_start":10,"window_end":20,"bids":4})"));
  out.rows.clear();
  ASSERT_OK(local->Process(Bid(11, 20, 1)));
  ASSERT_OK(local->Finish());  // the end of input sends what is held
  EXPECT_THAT(out.rows, ElementsAre(R"({"auction":11,"window_start":20,"window_end":30,"bids":1})"));
}

// Two source subtasks' local stages before the top_n give the top_n's rows without them, ties
// included (compared as sets: tied rows may reach the top_n in another order), with late rows,
// windows interleaved, and the local stages checkpointed and restored in the middle (their
// state given whole to each new subtask, as union state is); and fewer rows cross the shuffle.
TEST_F(LocalTopNTest, GivesTheRowsOfTheTopNAloneAcrossACheckpoint) {
  for (const int n : {1, 2}) {
    SCOPED_TRACE(n);
    ASSERT_OK(Load(n));
    // Bids (auction, window_start, bids); auction -1: a watermark at window_start.
    std::vector<std::array<int64_t, 3>> input;
    uint64_t x = 7;
    for (int i = 0; i < 600; ++i) {
      x = x * 6364136223846793005ULL + 1442695040888963407ULL;
      const int64_t window = (i / 40) * 10 + (i % 9 == 0 ? 10 : 0) - (i % 31 == 0 ? 20 : 0);
      input.push_back({i, window, static_cast<int64_t>((x >> 40) % 5)});
      if (i % 40 == 25) input.push_back({-1, (i / 40) * 10 - 1, 0});
    }
    KeyedSubtask& alone = StartSubtask();
    KeyedSubtask& after_local = StartSubtask();
    IntoSubtask into(&after_local);
    absl::Status open;
    std::vector<std::unique_ptr<Operator>> locals;
    for (int i = 0; i < 2; ++i) {
      locals.push_back(OpenLocal(&into, {}, &open));
      ASSERT_OK(open);
    }
    for (size_t i = 0; i < input.size(); ++i) {
      if (i == input.size() / 2) {
        // A checkpoint of both local stages, restored into two new ones.
        std::vector<std::string> entries;
        for (auto& l : locals) ASSERT_OK(l->SnapshotState(1, &entries));
        ASSERT_GT(entries.size(), 3u);
        locals.clear();
        for (int subtask = 0; subtask < 2; ++subtask) {
          locals.push_back(OpenLocal(&into, entries, &open, subtask, 2));
          ASSERT_OK(open);
        }
      }
      const auto& [auction, window, bids] = input[i];
      if (auction < 0) {
        ASSERT_OK(alone.Watermark(window));
        for (auto& l : locals) ASSERT_OK(l->ProcessWatermark(window));
        ASSERT_OK(after_local.Watermark(window));
        continue;
      }
      ASSERT_OK(alone.op()->Process(Bid(auction, window, bids)));
      ASSERT_OK(locals[(i / 3) % 2]->Process(Bid(auction, window, bids)));
    }
    ASSERT_OK(alone.Watermark(kMaxWatermark));
    for (auto& l : locals) ASSERT_OK(l->ProcessWatermark(kMaxWatermark));
    ASSERT_OK(after_local.Watermark(kMaxWatermark));

    std::vector<std::string> expected = alone.out().rows;
    std::vector<std::string> got = after_local.out().rows;
    EXPECT_GT(expected.size(), 15u * n);
    EXPECT_GT(alone.late_dropped(), 10u);
    EXPECT_EQ(after_local.late_dropped(), alone.late_dropped());
    EXPECT_LT(into.emitted, input.size() / 3);
    std::sort(expected.begin(), expected.end());
    std::sort(got.begin(), got.end());
    EXPECT_EQ(got, expected);
  }
}

// A run of rows of one group skips the group lookup; rows whose key differs from the last
// row's in one field only (a string, a double's sign: 0.0 and -0.0 encode apart, so they are
// apart for the top_n after the shuffle too) or only in their window go to their own group.
// Expected: the top 1 with ties of each group, computed here.
TEST_F(LocalTopNTest, GroupsByEveryKeyFieldAndTheWindow) {
  ASSERT_OK(Load(1, R"k(key: [window_end, "0.0 * (1 - 2 * (auction % 2))", "if(auction % 3 == 0, 'a', 'b')"], )k"));
  internal::JsonOutput out(&local_->output_schema, nullptr);
  absl::Status open;
  std::unique_ptr<Operator> local = OpenLocal(&out, {}, &open);
  ASSERT_OK(open);
  std::map<std::array<int64_t, 3>, std::vector<std::array<int64_t, 3>>> best;  // group -> rows
  for (int64_t auction = 0; auction < 60; ++auction) {
    const int64_t window = auction % 5 == 4 ? 10 : 0;
    const int64_t bids = (auction * 7) % 4;
    ASSERT_OK(local->Process(Bid(auction, window, bids)));
    auto& rows = best[{window, auction % 2, auction % 3 == 0}];
    if (!rows.empty() && rows[0][2] < bids) rows.clear();
    if (rows.empty() || rows[0][2] == bids) rows.push_back({auction, window, bids});
  }
  ASSERT_OK(local->ProcessWatermark(kMaxWatermark));
  std::vector<std::string> expected;
  for (const auto& [group, rows] : best) {
    for (const auto& [auction, window, bids] : rows) {
      expected.push_back(absl::StrCat(R"({"auction":)", auction, R"(,"window_start":)", window,
                                      R"(,"window_end":)", window + 10, R"(,"bids":)", bids, "}"));
    }
  }
  EXPECT_EQ(best.size(), 8u);
  std::sort(expected.begin(), expected.end());
  std::vector<std::string> got = out.rows;
  std::sort(got.begin(), got.end());
  EXPECT_EQ(got, expected);
}

// After a restore, rows of windows the watermark had passed before the checkpoint go through
// at once, as they do without the restore (so the top_n counts every one of them late, not
// the few that rank among them): the restored watermark is the smallest of the old subtasks'.
// Each held group comes back in exactly one new subtask, at any parallelism.
TEST_F(LocalTopNTest, RestoredSubtasksKeepTheWatermarkAndShareTheHeldGroups) {
  ASSERT_OK(Load(1));
  std::vector<std::string> entries;
  for (const int64_t watermark : {29, 19}) {  // two old subtasks
    internal::JsonOutput out(&local_->output_schema, nullptr);
    absl::Status open;
    std::unique_ptr<Operator> local = OpenLocal(&out, {}, &open);
    ASSERT_OK(open);
    ASSERT_OK(local->ProcessWatermark(watermark));
    for (int64_t window = 30; window < 60; window += 10) {
      ASSERT_OK(local->Process(Bid(window + watermark, window, window / 10)));
    }
    ASSERT_OK(local->SnapshotState(1, &entries));
  }
  for (const int parallelism : {1, 2, 3}) {
    SCOPED_TRACE(parallelism);
    std::vector<std::string> held;
    for (int subtask = 0; subtask < parallelism; ++subtask) {
      internal::JsonOutput out(&local_->output_schema, nullptr);
      absl::Status open;
      std::unique_ptr<Operator> local = OpenLocal(&out, entries, &open, subtask, parallelism);
      ASSERT_OK(open);
      ASSERT_OK(local->Process(Bid(1, 0, 5)));   // window [0, 10): passed for both
      ASSERT_OK(local->Process(Bid(2, 0, 4)));   // ranks below auction 1: passes too
      ASSERT_OK(local->Process(Bid(3, 15, 1)));  // [15, 25): passed for the second only: held
      EXPECT_THAT(out.rows, ElementsAre(R"({"auction":1,"window_start":0,"window_end":10,"bids":5})",
                                        R"({"auction":2,"window_start":0,"window_end":10,"bids":4})"));
      out.rows.clear();
      ASSERT_OK(local->ProcessWatermark(24));
      EXPECT_THAT(out.rows, ElementsAre(R"({"auction":3,"window_start":15,"window_end":25,"bids":1})"));
      out.rows.clear();
      ASSERT_OK(local->Finish());
      held.insert(held.end(), out.rows.begin(), out.rows.end());
    }
    std::sort(held.begin(), held.end());
    // Each old subtask held windows [30, 40) .. [50, 60), one row each.
    std::vector<std::string> expected;
    for (const int64_t watermark : {29, 19}) {
      for (int64_t window = 30; window < 60; window += 10) {
        expected.push_back(absl::StrCat(R"({"auction":)", window + watermark, R"(,"window_start":)", window,
                                        R"(,"window_end":)", window + 10, R"(,"bids":)", window / 10, "}"));
      }
    }
    std::sort(expected.begin(), expected.end());
    EXPECT_EQ(held, expected);
  }
}

// Format 1 (groups only, split over the subtasks by the task before Open) still restores: every
// entry given is taken, and the watermark is unknown.
TEST_F(LocalTopNTest, Format1StateRestores) {
  ASSERT_OK(Load(1));
  std::string entry("\x01", 1);
  Record row = Bid(7, 10, 3);
  EncodeRecord(local_->input_schema, row, &entry);
  for (const int parallelism : {1, 2}) {
    internal::JsonOutput out(&local_->output_schema, nullptr);
    absl::Status open;
    std::unique_ptr<Operator> local = OpenLocal(&out, {entry}, &open, parallelism - 1, parallelism);
    ASSERT_OK(open);
    ASSERT_OK(local->Process(Bid(8, 0, 1)));  // held: no watermark known
    EXPECT_THAT(out.rows, IsEmpty());
    ASSERT_OK(local->ProcessWatermark(kMaxWatermark));
    EXPECT_THAT(out.rows, ElementsAre(R"({"auction":8,"window_start":0,"window_end":10,"bids":1})",
                                      R"({"auction":7,"window_start":10,"window_end":20,"bids":3})"));
  }
}

TEST_F(LocalTopNTest, StateThatDoesNotDecodeIsDataLoss) {
  ASSERT_OK(Load(1));
  internal::JsonOutput out(&local_->output_schema, nullptr);
  absl::Status open;
  for (const std::string& entry : {std::string("\x01\x05", 2), std::string("\x02\x00\x05", 3)}) {
    OpenLocal(&out, {entry}, &open);
    EXPECT_THAT(open, ::sluice::testing::StatusIs(absl::StatusCode::kDataLoss,
                                                  HasSubstr("local_top_n rows do not decode")));
  }
  OpenLocal(&out, {std::string("\x02\x01\x05", 3)}, &open);
  EXPECT_THAT(open, ::sluice::testing::StatusIs(absl::StatusCode::kDataLoss,
                                                HasSubstr("local_top_n watermark entry has 3 bytes")));
  OpenLocal(&out, {std::string("\x02\x07", 2)}, &open);
  EXPECT_THAT(open, ::sluice::testing::StatusIs(absl::StatusCode::kDataLoss, HasSubstr("of no known kind")));
  OpenLocal(&out, {std::string("\x03", 1)}, &open);
  EXPECT_THAT(open, ::sluice::testing::StatusIs(absl::StatusCode::kDataLoss, HasSubstr("local_top_n rows")));
}

TEST_F(LocalTopNTest, OptionErrors) {
  EXPECT_THAT(Load(1, ""), Invalid("local_top_n needs 'key'"));
  EXPECT_THAT(Load(1, "key: [window_endz], "), Invalid("window_endz"));
  EXPECT_THAT(LoadJob(R"y(max_parallelism: 16
operators:
  - {id: src, type: datagen, fields: [{name: bids, type: int64, expr: seq}]}
  - {id: local, type: local_top_n, key: [bids], n: 1, order_by: bids}
  - {id: out, type: print}
)y", "local"), Invalid("job.yaml:4:5: local_top_n needs windowed input"));
}

}  // namespace
}  // namespace sluice::ops
