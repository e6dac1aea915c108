#include "worker/internal/barrier_handler.h"

#include <limits>
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
  return BufferItem(channel, RecordBuffer{data, 1});
}

// The records of a records item; "" for other kinds.
std::string DataOf(const BufferItem& item) {
  const RecordBuffer* b = item.as<RecordBuffer>();
  return b == nullptr ? "" : b->data;
}

BufferItem Barrier(int channel, int64_t id) {
  return BufferItem(channel, ::sluice::worker::Barrier{id, false});
}

// The announcement the gate makes for a priority barrier, with copies of the items it overtook.
BufferItem Announce(int channel, int64_t id, std::vector<std::string> overtaken) {
  BarrierAnnouncement a{id, {}};
  for (const auto& d : overtaken) a.overtaken.push_back(Data(channel, d));
  return BufferItem(channel, std::move(a));
}

// A source's barrier in mode auto (or one a task forwards after aligning): in place, its
// checkpoint may still go unaligned.
BufferItem TimeoutableBarrier(int channel, int64_t id, int64_t waited_ms = 0) {
  return BufferItem(channel,
                    ::sluice::worker::Barrier{id, false, /*timeoutable=*/true, false, waited_ms});
}

// The announcement of a barrier its sender converted to priority after the timeout.
BufferItem AnnounceTimedOut(int channel, int64_t id, std::vector<std::string> overtaken) {
  BufferItem item = Announce(channel, id, std::move(overtaken));
  item.as<BarrierAnnouncement>()->timed_out = true;
  return item;
}

BufferItem PriorityBarrier(int channel, int64_t id) {
  return BufferItem(channel, ::sluice::worker::Barrier{id, true});
}

BufferItem End(int channel) { return BufferItem(channel, EndOfPartition{}); }

// Drives a handler as the task does: feeds items (replayed ones first) and logs what the task
// would do: "p:<data>" processed, "h:<data>" held back, "s:<id>" snapshot ("u:<id>" unaligned),
// "a:<id>" abandoned, "c:<id>[<channel>:<data>,...]" in-flight input complete.
class Driver {
 public:
  Driver(int channels, Clock* clock, BarrierHandler::Mode mode = BarrierHandler::Mode::kAligned,
         int64_t timeout_ms = 0)
      : handler(channels, clock, mode, timeout_ms) {}

  void Feed(BufferItem item) {
    Step(item);
    Replay();
  }

  void Timer() {
    Log(handler.OnTimer(), "");
    while (auto replayed = handler.NextReplay()) Step(*replayed);
  }

  // Feed() that leaves released items waiting for replay (as the task's round of priority
  // events takes one announcement after another), and the replay that follows.
  void FeedOnly(BufferItem item) { Step(item); }
  void Replay() {
    while (auto replayed = handler.NextReplay()) Step(*replayed);
  }

  BarrierHandler handler;
  std::vector<std::string> log;
  int64_t last_alignment_ms = -1;

 private:
  void Step(BufferItem& item) {
    const std::string data = DataOf(item);
    absl::StatusOr<BarrierHandler::Action> a = handler.OnItem(item);
    ASSERT_TRUE(a.ok()) << a.status();
    if (a->held) {
      log.push_back("h:" + data);
      return;
    }
    Log(*a, item.as<EndOfPartition>() != nullptr ? "end" : data);
  }

  void Log(const BarrierHandler::Action& a, const std::string& data) {
    if (a.abandoned > 0) log.push_back("a:" + std::to_string(a.abandoned));
    if (a.process) log.push_back("p:" + data);
    if (a.snapshot > 0) {
      log.push_back((a.unaligned ? "u:" : "s:") + std::to_string(a.snapshot));
      last_alignment_ms = a.alignment_ms;
    }
    if (a.complete > 0) {
      std::string c = "c:" + std::to_string(a.complete) + "[";
      for (const BufferItem& item : handler.TakeInputState()) {
        c += std::to_string(item.channel) + ":" + DataOf(item) + ",";
      }
      log.push_back(c + "]");
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

using Mode = BarrierHandler::Mode;

TEST(BarrierHandlerUnalignedTest, FirstAnnouncementSnapshotsAndRecordsWhatEachChannelOwes) {
  FakeClock clock;
  Driver d(3, &clock, Mode::kUnaligned);
  d.Feed(Data(1, "b0"));  // before any barrier: processed, not recorded
  d.Feed(Announce(0, 1, {"a1", "a2"}));  // a1, a2 were queued ahead of channel 0's barrier
  d.Feed(Data(0, "a1"));  // processed after the snapshot; recorded through the announcement
  d.Feed(Data(1, "b1"));  // channel 1 has not delivered barrier 1: recorded
  d.Feed(Data(0, "a2"));
  d.Feed(PriorityBarrier(0, 1));  // in place behind a1, a2: consumed
  d.Feed(Data(0, "a3"));  // after channel 0's barrier: not recorded
  d.Feed(Announce(1, 1, {"b2"}));
  d.Feed(Data(1, "b2"));
  d.Feed(Data(2, "c1"));
  EXPECT_EQ(d.handler.current(), 1);
  d.Feed(Announce(2, 1, {}));
  EXPECT_EQ(d.log, (Log{"p:b0", "u:1", "p:a1", "p:b1", "p:a2", "p:a3", "p:b2", "p:c1",
                        "c:1[0:a1,0:a2,1:b1,1:b2,2:c1,]"}));
  EXPECT_EQ(d.last_alignment_ms, 0);
  EXPECT_EQ(d.handler.current(), 0);
  // The in-place barriers that follow are late: nothing happens.
  d.log.clear();
  d.Feed(PriorityBarrier(1, 1));
  d.Feed(PriorityBarrier(2, 1));
  d.Feed(Data(2, "c2"));
  EXPECT_EQ(d.log, (Log{"p:c2"}));
}

TEST(BarrierHandlerUnalignedTest, OneChannelCompletesAtTheSnapshot) {
  FakeClock clock;
  Driver d(1, &clock, Mode::kUnaligned);
  d.Feed(Announce(0, 3, {"x", "y"}));
  EXPECT_EQ(d.log, (Log{"u:3", "c:3[0:x,0:y,]"}));
}

TEST(BarrierHandlerUnalignedTest, EndOfPartitionCompletesTheInFlightInput) {
  FakeClock clock;
  Driver d(2, &clock, Mode::kUnaligned);
  d.Feed(Announce(0, 1, {}));
  d.Feed(Data(1, "b1"));
  d.Feed(End(1));
  EXPECT_EQ(d.log, (Log{"u:1", "p:b1", "p:end", "c:1[1:b1,]"}));
}

TEST(BarrierHandlerUnalignedTest, NewerAnnouncementAbandonsTheRecording) {
  FakeClock clock;
  Driver d(2, &clock, Mode::kUnaligned);
  d.Feed(Announce(0, 1, {"a1"}));
  d.Feed(Data(1, "b1"));
  d.Feed(Announce(1, 2, {"b2"}));  // checkpoint 1 was given up
  d.Feed(Announce(0, 2, {}));
  EXPECT_EQ(d.log, (Log{"u:1", "p:b1", "a:1", "u:2", "c:2[1:b2,]"}));
}

TEST(BarrierHandlerUnalignedTest, BarrierWithoutPriorityIsAligned) {
  // Savepoints: their barriers wait for credit and are aligned in every mode.
  FakeClock clock;
  Driver d(2, &clock, Mode::kUnaligned);
  d.Feed(Barrier(0, 5));
  d.Feed(Data(0, "a1"));
  d.Feed(Barrier(1, 5));
  EXPECT_EQ(d.log, (Log{"h:a1", "s:5", "p:a1"}));
}

TEST(BarrierHandlerAutoTest, AlignsWithinTheTimeout) {
  FakeClock clock;
  Driver d(2, &clock, Mode::kAuto, 100);
  d.Feed(Announce(0, 1, {"a0"}));
  const int64_t deadline = d.handler.TimerDeadlineNanos();
  EXPECT_EQ(deadline, clock.NowNanos() + 100'000'000);
  d.Feed(Data(0, "a0"));
  d.Feed(PriorityBarrier(0, 1));
  d.Feed(Data(0, "a1"));  // held: aligned
  clock.AdvanceNanos(60'000'000);
  d.Timer();  // not yet
  d.Feed(Announce(1, 1, {}));
  d.Feed(PriorityBarrier(1, 1));
  EXPECT_EQ(d.log, (Log{"p:a0", "h:a1", "s:1", "p:a1"}));
  EXPECT_EQ(d.last_alignment_ms, 60);
  EXPECT_EQ(d.handler.TimerDeadlineNanos(), std::numeric_limits<int64_t>::max());
}

TEST(BarrierHandlerAutoTest, SwitchesToUnalignedWhenAlignmentTakesTooLong) {
  FakeClock clock;
  Driver d(3, &clock, Mode::kAuto, 100);
  d.Feed(Announce(0, 1, {}));
  d.Feed(PriorityBarrier(0, 1));
  d.Feed(Data(0, "a1"));  // after channel 0's barrier: held while aligning
  d.Feed(Announce(1, 1, {"b1", "b2", "b3"}));
  d.Feed(Data(1, "b1"));  // processed while aligning: part of the snapshot, not in flight
  d.Feed(Data(2, "c1"));
  clock.AdvanceNanos(99'000'000);
  d.Timer();
  EXPECT_EQ(d.handler.current(), 1);
  clock.AdvanceNanos(1'000'000);
  d.Timer();  // switches: a1 follows channel 0's barrier, b2 b3 are in flight, channel 2 owes
  d.Feed(Data(1, "b2"));
  d.Feed(Data(2, "c2"));
  d.Feed(Data(1, "b3"));
  d.Feed(PriorityBarrier(1, 1));
  d.Feed(Announce(2, 1, {"c3"}));
  EXPECT_EQ(d.log, (Log{"h:a1", "p:b1", "p:c1", "u:1", "p:a1", "p:b2", "p:c2", "p:b3",
                        "c:1[1:b2,1:b3,2:c2,2:c3,]"}));
  EXPECT_EQ(d.last_alignment_ms, 100);
}

TEST(BarrierHandlerAutoTest, ASwitchPartwayThroughABufferRecordsItsRestFirst) {
  FakeClock clock;
  Driver d(2, &clock, Mode::kAuto, 100);
  d.Feed(Announce(0, 1, {"a1", "a2"}));
  d.Feed(Data(0, "a1"));  // processed while aligning: in the snapshot
  d.Feed(Data(1, "b1"));  // the task is partway through b1 when the timeout passes
  clock.AdvanceNanos(100'000'000);
  const BufferItem rest = Data(1, "b1-rest");
  d.handler.SetPartial(&rest);
  d.Timer();
  d.handler.SetPartial(nullptr);
  d.Feed(Data(0, "a2"));
  d.Feed(PriorityBarrier(0, 1));
  d.Feed(Data(1, "b2"));
  d.Feed(Announce(1, 1, {}));
  EXPECT_EQ(d.log, (Log{"p:a1", "p:b1", "u:1", "p:a2", "p:b2", "c:1[1:b1-rest,0:a2,1:b2,]"}));
}

TEST(BarrierHandlerUnalignedTest, AnAnnouncementPartwayThroughABufferRecordsItsRest) {
  FakeClock clock;
  Driver d(2, &clock, Mode::kUnaligned);
  d.Feed(Data(1, "b1"));  // the announcement arrives while the task is partway through b1
  const BufferItem rest = Data(1, "b1-rest");
  d.handler.SetPartial(&rest);
  d.Feed(Announce(0, 1, {"a1"}));
  d.handler.SetPartial(nullptr);
  d.Feed(Data(0, "a1"));
  d.Feed(Announce(1, 1, {}));
  EXPECT_EQ(d.log, (Log{"p:b1", "u:1", "p:a1", "c:1[1:b1-rest,0:a1,]"}));
}

TEST(BarrierHandlerAutoTest, SavepointNeverSwitches) {
  FakeClock clock;
  Driver d(2, &clock, Mode::kAuto, 0);
  d.Feed(Barrier(0, 4));
  EXPECT_EQ(d.handler.TimerDeadlineNanos(), std::numeric_limits<int64_t>::max());
  clock.AdvanceNanos(5'000'000'000);
  d.Timer();
  d.Feed(Barrier(1, 4));
  EXPECT_EQ(d.log, (Log{"s:4"}));
}

TEST(BarrierHandlerAutoTest, AnInPlaceTimeoutableBarrierSwitchesAfterTheTimeout) {
  FakeClock clock;
  Driver d(2, &clock, Mode::kAuto, 100);
  d.Feed(TimeoutableBarrier(0, 1));
  EXPECT_EQ(d.handler.TimerDeadlineNanos(), clock.NowNanos() + 100'000'000);
  d.Feed(Data(0, "a1"));  // held while aligning
  d.Feed(Data(1, "b1"));  // channel 1's barrier is still at its source
  clock.AdvanceNanos(100'000'000);
  d.Timer();
  d.Feed(Data(1, "b2"));
  d.Feed(TimeoutableBarrier(1, 1));
  EXPECT_EQ(d.log, (Log{"h:a1", "p:b1", "u:1", "p:a1", "p:b2", "c:1[1:b2,]"}));
}

TEST(BarrierHandlerAutoTest, InPlaceTimeoutableBarriersAlignWithinTheTimeout) {
  FakeClock clock;
  Driver d(2, &clock, Mode::kAuto, 100);
  d.Feed(TimeoutableBarrier(0, 1));
  d.Feed(Data(0, "a1"));
  clock.AdvanceNanos(99'000'000);
  d.Timer();
  d.Feed(TimeoutableBarrier(1, 1));
  EXPECT_EQ(d.log, (Log{"h:a1", "s:1", "p:a1"}));
}

TEST(BarrierHandlerAutoTest, ATimedOutAnnouncementSwitchesAtOnce) {
  FakeClock clock;
  Driver d(2, &clock, Mode::kAuto, 100);
  d.Feed(Data(0, "a0"));
  d.Feed(AnnounceTimedOut(1, 1, {"b1", "b2"}));  // its source already waited out the timeout
  d.Feed(Data(1, "b1"));
  d.Feed(Data(0, "a1"));
  d.Feed(Data(1, "b2"));
  d.Feed(PriorityBarrier(1, 1));
  d.Feed(TimeoutableBarrier(0, 1));
  EXPECT_EQ(d.log, (Log{"p:a0", "u:1", "p:b1", "p:a1", "p:b2", "c:1[1:b1,1:b2,0:a1,]"}));
  EXPECT_EQ(d.last_alignment_ms, 0);
}

// An announcement that abandons an alignment in progress: the items its channel held back come
// before the new barrier on that channel (they left the gate before it arrived), so they are in
// flight too, ahead of the gate's copies.
TEST(BarrierHandlerUnalignedTest, AnAnnouncementThatAbandonsAnAlignmentRecordsTheHeldItems) {
  FakeClock clock;
  Driver d(2, &clock, Mode::kUnaligned);
  d.Feed(Barrier(0, 1));  // a savepoint, aligned
  d.Feed(Data(0, "x1"));
  d.Feed(Announce(0, 2, {"x2"}));
  d.Feed(Data(0, "x2"));
  d.Feed(Announce(1, 2, {}));
  EXPECT_EQ(d.log, (Log{"h:x1", "a:1", "u:2", "p:x1", "p:x2", "c:2[0:x1,0:x2,]"}));
}

TEST(BarrierHandlerAutoTest, AnAnnouncementThatAbandonsAnAlignmentCountsTheHeldItems) {
  FakeClock clock;
  Driver d(2, &clock, Mode::kAuto, 100);
  d.Feed(Barrier(0, 1));  // a savepoint, aligned
  d.Feed(Data(0, "x1"));
  d.Feed(Announce(0, 2, {"x2"}));  // x1 replayed while aligning 2: in the snapshot
  clock.AdvanceNanos(100'000'000);
  d.Timer();  // x2 is still in flight
  d.Feed(Data(0, "x2"));
  d.Feed(TimeoutableBarrier(0, 2));
  d.Feed(Announce(1, 2, {}));
  EXPECT_EQ(d.log, (Log{"h:x1", "a:1", "p:x1", "u:2", "p:x2", "c:2[0:x2,]"}));
}

TEST(BarrierHandlerAutoTest, ATimedOutAnnouncementAfterAnAbandonedAlignmentRecordsWhatIsOwed) {
  FakeClock clock;
  Driver d(2, &clock, Mode::kAuto, 100);
  d.Feed(Barrier(0, 1));
  d.Feed(Data(0, "x1"));
  d.Feed(Data(0, "x2"));
  d.Feed(Announce(0, 2, {"x3"}));
  d.Feed(AnnounceTimedOut(1, 2, {}));  // switches: x1 and x2 were processed, x3 is in flight
  d.Feed(Data(0, "x3"));
  EXPECT_EQ(d.log, (Log{"h:x1", "h:x2", "a:1", "p:x1", "p:x2", "u:2", "c:2[0:x3,]", "p:x3"}));
}

// The barriers say how long the checkpoint already waited upstream: the timeout counts the rest,
// from the earliest start they tell; the alignment time is this task's own.
TEST(BarrierHandlerAutoTest, TheTimeoutCountsWhatTheBarriersWaitedUpstream) {
  FakeClock clock;
  Driver d(2, &clock, Mode::kAuto, 100);
  const int64_t t0 = clock.NowNanos();
  d.Feed(TimeoutableBarrier(0, 1, /*waited_ms=*/30));
  EXPECT_EQ(d.handler.TimerDeadlineNanos(), t0 + 70'000'000);
  clock.AdvanceNanos(10'000'000);
  BufferItem announced = Announce(1, 1, {"b1"});
  announced.as<BarrierAnnouncement>()->waited_ms = 50;  // started 40 ms before t0
  d.Feed(std::move(announced));
  EXPECT_EQ(d.handler.TimerDeadlineNanos(), t0 + 60'000'000);
  clock.AdvanceNanos(49'000'000);
  d.Timer();
  EXPECT_EQ(d.handler.current(), 1) << "still aligning";
  clock.AdvanceNanos(1'000'000);
  d.Timer();
  d.Feed(Data(1, "b1"));
  EXPECT_EQ(d.log, (Log{"u:1", "c:1[1:b1,]", "p:b1"}));
  EXPECT_EQ(d.last_alignment_ms, 60);
}

// Two timed-out announcements taken one after the other before any replay (the task's round
// of priority events): the first abandons an alignment holding back x (channel 0) and y
// (channel 1) and switches; the second, taken unaligned, counts channel 1's held-back y as in
// flight (replayed after the snapshot, it was lost: the checkpoint stored only x).
TEST(BarrierHandlerAutoTest, AnnouncementsTakenBeforeTheReplayRecordEveryHeldItem) {
  FakeClock clock;
  Driver d(3, &clock, Mode::kAuto, 100);
  d.Feed(Barrier(0, 5));  // a savepoint, aligned
  d.Feed(Data(0, "x"));
  d.Feed(Barrier(1, 5));
  d.Feed(Data(1, "y"));
  d.FeedOnly(AnnounceTimedOut(0, 6, {}));
  d.FeedOnly(AnnounceTimedOut(1, 6, {}));
  d.Replay();
  d.Feed(Announce(2, 6, {}));
  EXPECT_EQ(d.log, (Log{"h:x", "h:y", "a:5", "u:6", "p:x", "p:y", "c:6[0:x,1:y,]"}));
}

}  // namespace
}  // namespace sluice::worker
