#include "worker/internal/barrier_handler.h"

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/clock.h"
#include "common/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sluice::worker {
namespace {

using ::sluice::testing::StatusIs;

BufferItem Data(int channel, const std::string& data) {
  BufferItem item;
  item.channel = channel;
  item.data = data;
  item.num_records = 1;
  return item;
}

BufferItem Barrier(int channel, int64_t id) {
  BufferItem item;
  item.channel = channel;
  item.barrier = id;
  return item;
}

BufferItem End(int channel) {
  BufferItem item;
  item.channel = channel;
  item.end_of_partition = true;
  return item;
}

// Drives a handler as the task does: feeds items (replayed ones first) and logs what the task
// would do: "p:<data>" processed, "h:<data>" held back, "s:<id>" snapshot, "a:<id>" abandoned.
class Driver {
 public:
  Driver(int channels, Clock* clock) : handler(channels, clock) {}

  void Feed(BufferItem item) {
    Step(item);
    while (auto replayed = handler.NextReplay()) Step(*replayed);
  }

  BarrierHandler handler;
  std::vector<std::string> log;
  int64_t last_alignment_ms = -1;

 private:
  void Step(BufferItem& item) {
    const std::string data = item.data;
    absl::StatusOr<BarrierHandler::Action> a = handler.OnItem(item);
    ASSERT_TRUE(a.ok()) << a.status();
    if (a->abandoned > 0) log.push_back("a:" + std::to_string(a->abandoned));
    if (a->held) {
      log.push_back("h:" + data);
      return;
    }
    if (a->process) log.push_back(item.end_of_partition ? "p:end" : "p:" + data);
    if (a->snapshot > 0) {
      log.push_back("s:" + std::to_string(a->snapshot));
      last_alignment_ms = a->alignment_ms;
    }
  }
};

using Log = std::vector<std::string>;

TEST(BarrierHandlerTest, OneChannelSnapshotsAtTheBarrier) {
  FakeClock clock;
  Driver d(1, &clock);
  d.Feed(Data(0, "x"));
  d.Feed(Barrier(0, 1));
  d.Feed(Data(0, "y"));
  EXPECT_EQ(d.log, (Log{"p:x", "s:1", "p:y"}));
  EXPECT_EQ(d.last_alignment_ms, 0);
  EXPECT_EQ(d.handler.current(), 0);
}

TEST(BarrierHandlerTest, TwoChannelsHoldBackTheAlignedChannelUntilTheOtherBarrier) {
  FakeClock clock;
  Driver d(2, &clock);
  d.Feed(Barrier(0, 1));
  clock.AdvanceNanos(7'000'000);
  d.Feed(Data(0, "a1"));  // after channel 0's barrier: held
  d.Feed(Data(1, "b0"));  // before channel 1's barrier: processed
  d.Feed(Data(0, "a2"));
  clock.AdvanceNanos(5'000'000);
  d.Feed(Barrier(1, 1));
  EXPECT_EQ(d.log, (Log{"h:a1", "p:b0", "h:a2", "s:1", "p:a1", "p:a2"}));
  EXPECT_EQ(d.last_alignment_ms, 12);
  EXPECT_FALSE(d.handler.HasReplay());
}

TEST(BarrierHandlerTest, ThreeChannelsReplayHeldItemsInArrivalOrder) {
  FakeClock clock;
  Driver d(3, &clock);
  d.Feed(Barrier(2, 4));
  d.Feed(Data(2, "c1"));
  d.Feed(Barrier(0, 4));
  d.Feed(Data(0, "a1"));
  d.Feed(Data(2, "c2"));
  d.Feed(Data(1, "b0"));
  clock.AdvanceNanos(3'000'000);
  d.Feed(Barrier(1, 4));
  EXPECT_EQ(d.log, (Log{"h:c1", "h:a1", "h:c2", "p:b0", "s:4", "p:c1", "p:a1", "p:c2"}));
  EXPECT_EQ(d.last_alignment_ms, 3);
  // The next checkpoint aligns afresh.
  d.log.clear();
  d.Feed(Barrier(0, 5));
  d.Feed(Barrier(1, 5));
  d.Feed(Data(0, "a2"));
  d.Feed(Barrier(2, 5));
  EXPECT_EQ(d.log, (Log{"h:a2", "s:5", "p:a2"}));
}

TEST(BarrierHandlerTest, NewerBarrierAbandonsTheOlderAlignment) {
  FakeClock clock;
  Driver d(2, &clock);
  d.Feed(Barrier(0, 1));
  d.Feed(Data(0, "a1"));  // held for checkpoint 1
  clock.AdvanceNanos(10'000'000);
  d.Feed(Barrier(1, 2));  // checkpoint 1 was given up: a1 precedes channel 0's barrier 2
  d.Feed(Data(1, "b1"));  // after channel 1's barrier 2: held
  clock.AdvanceNanos(4'000'000);
  d.Feed(Barrier(0, 2));
  EXPECT_EQ(d.log, (Log{"h:a1", "a:1", "p:a1", "h:b1", "s:2", "p:b1"}));
  EXPECT_EQ(d.last_alignment_ms, 4) << "alignment of 2 starts at its first barrier";
}

TEST(BarrierHandlerTest, OlderBarrierDuringAlignmentIsIgnored) {
  FakeClock clock;
  Driver d(2, &clock);
  d.Feed(Barrier(0, 3));
  d.Feed(Barrier(1, 2));  // late barrier of an abandoned checkpoint
  d.Feed(Data(1, "b"));
  d.Feed(Barrier(1, 3));
  EXPECT_EQ(d.log, (Log{"p:b", "s:3"}));
}

TEST(BarrierHandlerTest, EndOfPartitionDuringAlignmentCompletesIt) {
  FakeClock clock;
  Driver d(3, &clock);
  d.Feed(Barrier(0, 1));
  d.Feed(Data(0, "a1"));
  d.Feed(Barrier(1, 1));
  d.Feed(End(2));  // the last unaligned channel ends: aligned
  EXPECT_EQ(d.log, (Log{"h:a1", "p:end", "s:1", "p:a1"}));
  EXPECT_EQ(d.handler.remaining(), 2);
  // An ended channel counts as aligned for later checkpoints too.
  d.log.clear();
  d.Feed(Barrier(0, 2));
  d.Feed(Barrier(1, 2));
  EXPECT_EQ(d.log, (Log{"s:2"}));
  d.Feed(End(0));
  d.Feed(End(1));
  EXPECT_EQ(d.handler.remaining(), 0);
}

TEST(BarrierHandlerTest, EndOfABlockedChannelIsHeldUntilAligned) {
  FakeClock clock;
  Driver d(2, &clock);
  d.Feed(Barrier(0, 1));
  d.Feed(End(0));
  EXPECT_EQ(d.handler.remaining(), 2) << "held back, not yet processed";
  d.Feed(Barrier(1, 1));
  EXPECT_EQ(d.log, (Log{"h:", "s:1", "p:end"}));
  EXPECT_EQ(d.handler.remaining(), 1);
}

TEST(BarrierHandlerTest, ItemOfAnEndedOrUnknownChannelIsDataLoss) {
  FakeClock clock;
  BarrierHandler h(2, &clock);
  BufferItem end = End(0);
  ASSERT_TRUE(h.OnItem(end).ok());
  BufferItem late = Data(0, "x");
  EXPECT_THAT(h.OnItem(late).status(), StatusIs(absl::StatusCode::kDataLoss, ::testing::HasSubstr("unexpected channel")));
  BufferItem unknown = Data(5, "x");
  EXPECT_THAT(h.OnItem(unknown).status(), StatusIs(absl::StatusCode::kDataLoss, ::testing::HasSubstr("unexpected channel")));
}

}  // namespace
}  // namespace sluice::worker
