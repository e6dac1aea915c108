// top_n with a real RocksDB backend and watermarks driven by hand.

#include <array>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
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

}  // namespace
}  // namespace sluice::ops
