#include "worker/internal/input_gate.h"

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sluice::worker {
namespace {

using ::sluice::testing::StatusIs;
using ::testing::HasSubstr;

// How long a "still blocked" check watches a thread that must not make progress.
constexpr absl::Duration kStillBlocked = absl::Milliseconds(50);
// Upper bound for anything that should happen promptly.
constexpr absl::Duration kPrompt = absl::Seconds(10);

// Polls `cond` until it holds or `timeout` passes; returns its last value.
bool WaitUntil(const std::function<bool()>& cond, absl::Duration timeout = kPrompt) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!cond()) {
    if (absl::Now() >= deadline) return cond();
    absl::SleepFor(absl::Milliseconds(1));
  }
  return true;
}

BufferItem Buffer(const std::string& data) { return BufferItem(0, RecordBuffer{data, 1}); }

// The records of a records item; "" for other kinds.
std::string DataOf(const BufferItem& item) {
  const RecordBuffer* b = item.as<RecordBuffer>();
  return b == nullptr ? "" : b->data;
}

int64_t NowNanos() { return Clock::Real()->NowNanos(); }

// A gate with one channel and the local writer of that channel, wired as Worker does it.
struct Wired {
  explicit Wired(int credits)
      : gate(std::make_shared<InputGate>(1, credits)),
        channel(std::make_shared<LocalChannel>(gate, 0)) {
    gate->SetListener(0, channel);
  }
  std::shared_ptr<InputGate> gate;
  std::shared_ptr<LocalChannel> channel;
};

// Sends `n` buffers "0".."n-1" on its own thread, counting attempts and completed sends.
class Sender {
 public:
  Sender(ChannelWriter* writer, int n) {
    thread_ = std::thread([this, writer, n] {
      for (int i = 0; i < n; ++i) {
        attempts_.fetch_add(1);
        absl::Status s = writer->Send(Buffer(absl::StrCat(i)));
        if (!s.ok()) {
          last_error_ = s;
          break;
        }
        sent_.fetch_add(1);
      }
      done_.Notify();
    });
  }
  ~Sender() { Join(); }
  void Join() {
    if (thread_.joinable()) thread_.join();
  }

  int attempts() const { return attempts_.load(); }
  int sent() const { return sent_.load(); }
  bool WaitDone(absl::Duration timeout = kPrompt) {
    return done_.WaitForNotificationWithTimeout(timeout);
  }
  // Valid after WaitDone() returned true.
  const absl::Status& last_error() const { return last_error_; }

 private:
  std::atomic<int> attempts_{0};
  std::atomic<int> sent_{0};
  absl::Status last_error_;
  absl::Notification done_;
  std::thread thread_;
};

TEST(InputGateTest, LocalChannelSendsExactlyCreditsBeforeBlocking) {
  constexpr int kCredits = 3;
  Wired w(kCredits);
  Sender sender(w.channel.get(), kCredits + 2);

  // The first kCredits sends go through without the consumer doing anything.
  ASSERT_TRUE(WaitUntil([&] { return w.gate->QueuedForTest() == kCredits; }));
  // The next one is attempted but stays blocked: nothing more arrives.
  ASSERT_TRUE(WaitUntil([&] { return sender.attempts() == kCredits + 1; }));
  absl::SleepFor(kStillBlocked);
  EXPECT_EQ(sender.sent(), kCredits);
  EXPECT_EQ(w.gate->QueuedForTest(), static_cast<size_t>(kCredits));
  EXPECT_FALSE(sender.WaitDone(absl::ZeroDuration()));

  // Consuming one buffer and returning its credit lets exactly one more send through.
  auto item = w.gate->Poll(NowNanos());
  ASSERT_TRUE(item.has_value());
  EXPECT_EQ(DataOf(*item), "0");
  EXPECT_EQ(item->channel, 0);
  w.gate->ReleaseCredit(0);
  ASSERT_TRUE(WaitUntil([&] { return sender.sent() == kCredits + 1; }));
  ASSERT_TRUE(WaitUntil([&] { return sender.attempts() == kCredits + 2; }));
  absl::SleepFor(kStillBlocked);
  EXPECT_EQ(sender.sent(), kCredits + 1);
  EXPECT_EQ(w.gate->QueuedForTest(), static_cast<size_t>(kCredits));

  // Drain: buffers come out in order.
  for (int i = 1; i < kCredits + 2; ++i) {
    auto next = w.gate->Poll(NowNanos() + absl::ToInt64Nanoseconds(kPrompt));
    ASSERT_TRUE(next.has_value()) << i;
    EXPECT_EQ(DataOf(*next), absl::StrCat(i));
    w.gate->ReleaseCredit(0);
  }
  ASSERT_TRUE(sender.WaitDone());
  EXPECT_OK(sender.last_error());
  EXPECT_EQ(sender.sent(), kCredits + 2);
  EXPECT_EQ(w.gate->QueuedForTest(), 0u);
}

TEST(InputGateTest, SendStampsTheChannelIndex) {
  auto gate = std::make_shared<InputGate>(3, 2);
  auto ch2 = std::make_shared<LocalChannel>(gate, 2);
  gate->SetListener(2, ch2);
  BufferItem item = Buffer("x");
  item.channel = 0;  // overwritten by the channel
  ASSERT_OK(ch2->Send(std::move(item)));
  auto got = gate->Poll(NowNanos());
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->channel, 2);
  EXPECT_EQ(DataOf(*got), "x");
}

TEST(InputGateTest, ABufferCarryingAWatermarkIsQueuedAsItsPiecesWithOneCredit) {
  auto gate = std::make_shared<InputGate>(3, 2);
  auto ch2 = std::make_shared<LocalChannel>(gate, 2);
  gate->SetListener(2, ch2);
  ASSERT_OK(ch2->Send(BufferItem(0, RecordBuffer{"abc", 2, "", CarriedWatermark{9, 1, 1}})));
  std::vector<std::string> got;
  while (auto item = gate->Poll(NowNanos())) {
    EXPECT_EQ(item->channel, 2);
    std::string d = item->as<WatermarkAdvance>() != nullptr
                        ? absl::StrCat("w", item->as<WatermarkAdvance>()->ms)
                        : DataOf(*item);
    if (item->TakesCredit()) d += "$";
    got.push_back(d);
  }
  // The watermark after the first record, the credit with the last piece.
  EXPECT_THAT(got, ::testing::ElementsAre("a", "w9", "bc$"));
}

TEST(InputGateTest, CreditsAreReturnedToTheRightChannel) {
  auto gate = std::make_shared<InputGate>(2, 1);
  auto ch0 = std::make_shared<LocalChannel>(gate, 0);
  auto ch1 = std::make_shared<LocalChannel>(gate, 1);
  gate->SetListener(0, ch0);
  gate->SetListener(1, ch1);
  ASSERT_OK(ch0->Send(Buffer("a")));
  ASSERT_OK(ch1->Send(Buffer("b")));
  // Both channels are out of credit; returning channel 1's credit frees only channel 1.
  Sender s0(ch0.get(), 1);
  Sender s1(ch1.get(), 1);
  gate->ReleaseCredit(1);
  ASSERT_TRUE(s1.WaitDone());
  EXPECT_OK(s1.last_error());
  absl::SleepFor(kStillBlocked);
  EXPECT_EQ(s0.sent(), 0);
  gate->ReleaseCredit(0);
  ASSERT_TRUE(s0.WaitDone());
  EXPECT_OK(s0.last_error());
}

// A priority barrier needs no credit; the gate announces it ahead of everything queued (after
// earlier announcements), with copies of the items of its channel it overtook, keeps it in
// place behind them, and calls the priority listener.
TEST(InputGateTest, PriorityBarrierIsAnnouncedAheadOfTheQueue) {
  auto gate = std::make_shared<InputGate>(2, 2);
  auto ch0 = std::make_shared<LocalChannel>(gate, 0);
  auto ch1 = std::make_shared<LocalChannel>(gate, 1);
  gate->SetListener(0, ch0);
  gate->SetListener(1, ch1);
  int woken = 0;
  gate->SetPriorityListener([&] { ++woken; });
  ASSERT_OK(ch0->Send(Buffer("a1")));
  ASSERT_OK(ch1->Send(Buffer("b1")));
  ASSERT_OK(ch0->Send(Buffer("a2")));
  // Channel 0 is out of credit; its barrier goes anyway.
  BufferItem more = Buffer("a3");
  absl::StatusOr<bool> offered = ch0->Offer(more, 0);
  ASSERT_OK(offered);
  EXPECT_FALSE(*offered) << "no credit left";
  EXPECT_EQ(DataOf(more), "a3") << "an item not sent is left in place";
  ASSERT_OK(ch0->SendPriority(BufferItem(0, Barrier{7, false})));
  ASSERT_OK(ch1->SendPriority(BufferItem(0, Barrier{7, false, false, /*timed_out=*/true})));
  EXPECT_EQ(woken, 2);
  EXPECT_EQ(gate->QueuedForTest(), 7u);

  auto first = gate->PollPriority();
  ASSERT_TRUE(first.has_value());
  const BarrierAnnouncement* a0 = first->as<BarrierAnnouncement>();
  ASSERT_NE(a0, nullptr);
  EXPECT_EQ(first->channel, 0);
  EXPECT_EQ(a0->id, 7);
  EXPECT_FALSE(first->TakesCredit());
  ASSERT_EQ(a0->overtaken.size(), 2u);
  EXPECT_EQ(DataOf(a0->overtaken[0]), "a1");
  EXPECT_EQ(DataOf(a0->overtaken[1]), "a2");
  auto second = gate->Poll(NowNanos());  // announcements come first from Poll() too
  ASSERT_TRUE(second.has_value());
  const BarrierAnnouncement* a1 = second->as<BarrierAnnouncement>();
  ASSERT_NE(a1, nullptr);
  EXPECT_EQ(second->channel, 1);
  EXPECT_FALSE(a0->timed_out);
  EXPECT_TRUE(a1->timed_out) << "a barrier its sender converted after the timeout says so";
  ASSERT_EQ(a1->overtaken.size(), 1u);
  EXPECT_EQ(DataOf(a1->overtaken[0]), "b1");
  EXPECT_FALSE(gate->PollPriority().has_value()) << "no more announcements";
  // Then the queue in arrival order, the barriers in place, taking no credit.
  std::vector<std::string> order;
  while (auto item = gate->Poll(NowNanos())) {
    const Barrier* barrier = item->as<Barrier>();
    order.push_back(barrier != nullptr ? absl::StrCat("barrier", item->channel) : DataOf(*item));
    EXPECT_EQ(item->TakesCredit(), barrier == nullptr);
    EXPECT_TRUE(barrier == nullptr || barrier->priority) << "sent with priority";
    EXPECT_EQ(item->as<BarrierAnnouncement>(), nullptr);
  }
  EXPECT_EQ(order, (std::vector<std::string>{"a1", "b1", "a2", "barrier0", "barrier1"}));
}

// A source's barrier in mode auto (in place, with credit) is announced on arrival too, with
// copies of what is queued before it; the barrier keeps its place and its credit.
TEST(InputGateTest, ATimeoutableBarrierIsAnnouncedButKeepsItsPlaceAndCredit) {
  Wired w(4);
  int woken = 0;
  w.gate->SetPriorityListener([&] { ++woken; });
  ASSERT_OK(w.channel->Send(Buffer("a1")));
  ASSERT_OK(w.channel->Send(BufferItem(0, Barrier{3, false, /*timeoutable=*/true})));
  ASSERT_OK(w.channel->Send(Buffer("a2")));
  EXPECT_EQ(woken, 1);
  auto announced = w.gate->PollPriority();
  ASSERT_TRUE(announced.has_value());
  const BarrierAnnouncement* a = announced->as<BarrierAnnouncement>();
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->id, 3);
  EXPECT_FALSE(a->timed_out);
  ASSERT_EQ(a->overtaken.size(), 1u);
  EXPECT_EQ(DataOf(a->overtaken[0]), "a1");
  std::vector<std::string> order;
  while (auto item = w.gate->Poll(NowNanos())) {
    const Barrier* barrier = item->as<Barrier>();
    order.push_back(barrier != nullptr ? absl::StrCat("barrier", barrier->id) : DataOf(*item));
    EXPECT_TRUE(item->TakesCredit()) << order.back();
  }
  EXPECT_EQ(order, (std::vector<std::string>{"a1", "barrier3", "a2"}));
}

// Pushes on `channel`: "wm<ms>" a watermark, "idle"/"active" a status, "eop" an end of
// partition, "barrier<id>" a barrier ("priority<id>" sent with priority), anything else a buffer
// of that data.
void PushOn(InputGate& gate, int channel, const std::string& what) {
  BufferItem item = Buffer(what);
  if (what.rfind("barrier", 0) == 0) {
    item = BufferItem(0, Barrier{std::stoll(what.substr(7)), false});
  } else if (what.rfind("priority", 0) == 0) {
    item = BufferItem(0, Barrier{std::stoll(what.substr(8)), true});
  } else if (what.rfind("wm", 0) == 0) {
    item = BufferItem(0, WatermarkAdvance{std::stoll(what.substr(2))});
  } else if (what == "idle" || what == "active") {
    item = BufferItem(0, WatermarkStatusChange{what == "idle"});
  } else if (what == "eop") {
    item = BufferItem(0, EndOfPartition{});
  }
  item.channel = channel;
  gate.Push(std::move(item));
}

// Pushes each "<channel>:<what>" in turn (PushOn()).
void PushAll(InputGate& gate, const std::vector<std::string>& items) {
  for (const std::string& item : items) {
    const size_t colon = item.find(':');
    PushOn(gate, std::stoi(item.substr(0, colon)), item.substr(colon + 1));
  }
}

// What Poll() returns until the gate is empty, as "<channel>:<what>" (PushOn()'s names).
std::vector<std::string> DrainNames(InputGate& gate) {
  std::vector<std::string> order;
  while (auto item = gate.Poll(0)) {
    std::string what = DataOf(*item);
    if (const WatermarkAdvance* w = item->as<WatermarkAdvance>()) what = absl::StrCat("wm", w->ms);
    if (const WatermarkStatusChange* s = item->as<WatermarkStatusChange>()) {
      what = s->idle ? "idle" : "active";
    }
    if (item->as<EndOfPartition>() != nullptr) what = "eop";
    if (const Barrier* b = item->as<Barrier>()) what = absl::StrCat("barrier", b->id);
    order.push_back(absl::StrCat(item->channel, ":", what));
  }
  return order;
}

// Brings the channels to watermarks: pushes `watermarks` ("<channel>:wm<ms>", PushAll()) and
// polls them all (in the gate's order).
void PollWatermarks(InputGate& gate, const std::vector<std::string>& watermarks) {
  PushAll(gate, watermarks);
  EXPECT_EQ(DrainNames(gate).size(), watermarks.size());
}

TEST(InputGateTest, TheChannelBehindInEventTimeIsReadFirst) {
  InputGate gate(2, 8);
  // Channel 0 runs ahead of channel 1 and its buffers arrive first.
  PushAll(gate, {"1:wm10", "0:a1", "0:wm100", "0:a2", "0:a3", "1:b1", "1:wm50", "1:b2", "1:wm150",
                 "1:b3"});
  // Arrival order while channel 0 has no watermark; then channel 1 (behind at 10, then 50) until
  // it passes channel 0's 100; each channel's items in their arrival order.
  EXPECT_EQ(DrainNames(gate),
            (std::vector<std::string>{"1:wm10", "0:a1", "0:wm100", "1:b1", "1:wm50", "1:b2",
                                      "1:wm150", "0:a2", "0:a3", "1:b3"}));
  EXPECT_EQ(gate.PolledWatermarkForTest(0), 100);
  EXPECT_EQ(gate.PolledWatermarkForTest(1), 150);
}

TEST(InputGateTest, AChannelWithoutAWatermarkYetIsNotPreferred) {
  InputGate gate(2, 8);
  PollWatermarks(gate, {"1:wm1000"});
  // Channel 0 has had no watermark: its records may be anywhere in event time.
  PushAll(gate, {"1:lead", "0:a1", "0:a2"});
  EXPECT_EQ(DrainNames(gate), (std::vector<std::string>{"1:lead", "0:a1", "0:a2"}));
}

TEST(InputGateTest, AChannelStuckBehindDoesNotStarveTheLeader) {
  InputGate gate(2, 8);
  // Channel 0's watermark stays at 10 while its data keeps coming (refilled after every poll,
  // as its producer would with the credit returned); channel 1 at 1000 has one buffer queued.
  PollWatermarks(gate, {"0:wm10", "1:wm1000"});
  PushAll(gate, {"1:lead", "0:b"});
  int polls = 0;
  bool lead_read = false;
  while (!lead_read && polls < 1000) {
    auto item = gate.Poll(0);
    ASSERT_TRUE(item.has_value());
    ++polls;
    if (item->channel == 1) {
      EXPECT_EQ(DataOf(*item), "lead");
      lead_read = true;
    } else {
      PushOn(gate, 0, "b");
    }
  }
  EXPECT_TRUE(lead_read);
  EXPECT_EQ(polls, InputGate::kMaxOvertakes + 1);
}

TEST(InputGateTest, AWatermarkStepFromNegativeToTheMaximumSaturates) {
  InputGate gate(2, 8);
  PollWatermarks(gate, {"0:wm-5", absl::StrCat("0:wm", kMaxWatermark)});
  EXPECT_EQ(gate.PolledWatermarkForTest(0), kMaxWatermark);
  EXPECT_EQ(gate.PolledStepForTest(0), kMaxWatermark);
  // Channel 0 (ended) is never behind anything, and channel 1's items keep arrival order.
  PushAll(gate, {"0:a", "1:wm20", "1:b"});
  EXPECT_EQ(DrainNames(gate), (std::vector<std::string>{"0:a", "1:wm20", "1:b"}));
}

TEST(InputGateTest, ChannelsWithinAWatermarkStepOfEachOtherAreReadInArrivalOrder) {
  InputGate gate(2, 8);
  // Channel 0 at 200 in steps of 100, channel 1 at 250.
  PollWatermarks(gate, {"0:wm100", "0:wm200", "1:wm150", "1:wm250"});
  // Channel 0's records lie within [200, 300]: not surely behind channel 1's at 250.
  PushAll(gate, {"1:b1", "0:a1", "1:b2", "1:wm400", "1:b3", "0:a2"});
  // Once channel 1 is at 400, channel 0 (up to 300) is behind it: read first.
  EXPECT_EQ(DrainNames(gate), (std::vector<std::string>{"1:b1", "0:a1", "1:b2", "1:wm400",
                                                        "0:a2", "1:b3"}));
}

TEST(InputGateTest, AChannelWithNothingQueuedNeverHoldsBackTheOthers) {
  InputGate gate(3, 8);
  PollWatermarks(gate, {"0:wm10", "1:wm1000", "2:wm20"});
  // Channel 0 (lowest) and channel 2 have nothing queued: channel 1's buffer comes at once, even
  // with a deadline far ahead.
  PushOn(gate, 1, "ahead");
  auto item = gate.Poll(NowNanos() + absl::ToInt64Nanoseconds(absl::Seconds(60)));
  ASSERT_TRUE(item.has_value());
  EXPECT_EQ(DataOf(*item), "ahead");
  // Lower channels that turn idle or end are still read (their items come first), and the
  // channel ahead follows.
  PushAll(gate, {"1:ahead2", "0:idle", "2:eop"});
  EXPECT_EQ(DrainNames(gate), (std::vector<std::string>{"0:idle", "2:eop", "1:ahead2"}));
}

TEST(InputGateTest, PollLooksOnlyAtChannelsWithQueuedItems) {
  // 256 channels, two of them busy (an exchange of high parallelism whose buffers come from a few
  // producers at a time): each Poll() looks at the channels with something queued, not at all
  // 256, and still picks by event time and arrival.
  InputGate gate(256, 8);
  PollWatermarks(gate, {"7:wm100", "200:wm10"});
  EXPECT_EQ(gate.ChannelsScannedForTest(), 2 + 1);
  PushAll(gate, {"7:a1", "7:a2", "200:b1", "200:b2"});
  // Channel 200 is behind (10 + step 0 < 100): its items first, then channel 7's.
  EXPECT_EQ(DrainNames(gate), (std::vector<std::string>{"200:b1", "200:b2", "7:a1", "7:a2"}));
  // Two channels queued for the first two polls, one for the last two.
  EXPECT_EQ(gate.ChannelsScannedForTest(), 3 + 2 + 2 + 1 + 1);
  // A channel emptied and refilled, another queued for the first time, a channel emptied last.
  PushAll(gate, {"200:b3", "255:c1", "0:d1"});
  EXPECT_EQ(DrainNames(gate), (std::vector<std::string>{"200:b3", "255:c1", "0:d1"}));
  EXPECT_EQ(gate.ChannelsScannedForTest(), 9 + 3 + 2 + 1);
  EXPECT_EQ(gate.QueuedForTest(), 0u);
  EXPECT_FALSE(gate.Poll(0).has_value());
  EXPECT_EQ(gate.ChannelsScannedForTest(), 15);
}

TEST(InputGateTest, BarriersKeepTheirPlaceInTheirChannelWhenAChannelBehindIsPreferred) {
  InputGate gate(2, 8);
  PollWatermarks(gate, {"0:wm100", "1:wm10"});
  PushAll(gate, {"0:a1", "0:barrier3", "0:a2", "1:b1", "1:barrier3", "1:b2"});
  EXPECT_EQ(DrainNames(gate), (std::vector<std::string>{"1:b1", "1:barrier3", "1:b2", "0:a1",
                                                        "0:barrier3", "0:a2"}));
}

TEST(InputGateTest, PriorityBarrierOfAChannelAheadIsAnnouncedFirstWithItsOvertakenItems) {
  InputGate gate(2, 8);
  PollWatermarks(gate, {"0:wm100", "1:wm10"});
  PushAll(gate, {"0:a1", "1:b1", "0:a2", "0:priority4"});
  EXPECT_TRUE(gate.HasAnnouncement());
  auto first = gate.Poll(0);
  ASSERT_TRUE(first.has_value());
  const BarrierAnnouncement* announced = first->as<BarrierAnnouncement>();
  ASSERT_NE(announced, nullptr);
  EXPECT_EQ(first->channel, 0);
  ASSERT_EQ(announced->overtaken.size(), 2u);
  EXPECT_EQ(DataOf(announced->overtaken[0]), "a1");
  EXPECT_EQ(DataOf(announced->overtaken[1]), "a2");
  EXPECT_FALSE(gate.HasAnnouncement());
  EXPECT_EQ(DrainNames(gate), (std::vector<std::string>{"1:b1", "0:a1", "0:a2", "0:barrier4"}));
}

TEST(InputGateTest, InterruptEndsAWaitForCredit) {
  Wired w(1);
  ASSERT_OK(w.channel->Send(Buffer("0")));
  absl::Notification done;
  absl::StatusOr<bool> offered;
  BufferItem item = Buffer("1");
  std::thread waiter([&] {
    offered = w.channel->Offer(item, NowNanos() + absl::ToInt64Nanoseconds(kPrompt));
    done.Notify();
  });
  EXPECT_FALSE(done.WaitForNotificationWithTimeout(kStillBlocked));
  w.channel->Interrupt();
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(kPrompt));
  waiter.join();
  ASSERT_OK(offered);
  EXPECT_FALSE(*offered);
  EXPECT_EQ(DataOf(item), "1");
  // With a credit, the next offer sends.
  ASSERT_TRUE(w.gate->Poll(NowNanos()).has_value());
  w.gate->ReleaseCredit(0);
  offered = w.channel->Offer(item, 0);
  ASSERT_OK(offered);
  EXPECT_TRUE(*offered);
}

TEST(InputGateTest, CancelUnblocksSend) {
  Wired w(1);
  ASSERT_OK(w.channel->Send(Buffer("0")));
  Sender sender(w.channel.get(), 1);
  ASSERT_TRUE(WaitUntil([&] { return sender.attempts() == 1; }));
  absl::SleepFor(kStillBlocked);
  EXPECT_FALSE(sender.WaitDone(absl::ZeroDuration()));

  w.channel->Cancel();
  ASSERT_TRUE(sender.WaitDone());
  EXPECT_THAT(sender.last_error(), StatusIs(absl::StatusCode::kCancelled, HasSubstr("cancelled")));
  EXPECT_EQ(sender.sent(), 0);
  EXPECT_EQ(w.gate->QueuedForTest(), 1u);

  // A cancelled channel refuses even when it has credit again.
  w.gate->ReleaseCredit(0);
  EXPECT_THAT(w.channel->Send(Buffer("1")), StatusIs(absl::StatusCode::kCancelled, ::testing::_));
  EXPECT_EQ(w.gate->QueuedForTest(), 1u);
}

TEST(InputGateTest, CloseFailsSendAndDropsPushes) {
  Wired w(2);
  ASSERT_OK(w.channel->Send(Buffer("0")));
  ASSERT_OK(w.channel->Send(Buffer("1")));
  Sender sender(w.channel.get(), 1);  // blocked: no credit left
  ASSERT_TRUE(WaitUntil([&] { return sender.attempts() == 1; }));

  w.gate->Close();
  // Queued buffers are dropped, the blocked sender is released with an error...
  EXPECT_EQ(w.gate->QueuedForTest(), 0u);
  ASSERT_TRUE(sender.WaitDone());
  EXPECT_THAT(sender.last_error(),
              StatusIs(absl::StatusCode::kCancelled, HasSubstr("consumer task has stopped")));
  // ...and so is any later send, even after a credit comes back.
  w.gate->ReleaseCredit(0);
  EXPECT_FALSE(w.channel->Send(Buffer("2")).ok());
  // Direct pushes are dropped silently.
  w.gate->Push(Buffer("3"));
  EXPECT_EQ(w.gate->QueuedForTest(), 0u);
  EXPECT_FALSE(w.gate->Poll(NowNanos()).has_value());
}

TEST(InputGateTest, ListenerSetAfterCloseIsToldAtOnce) {
  auto gate = std::make_shared<InputGate>(1, 4);
  gate->Close();
  auto ch = std::make_shared<LocalChannel>(gate, 0);
  gate->SetListener(0, ch);
  EXPECT_THAT(ch->Send(Buffer("x")),
              StatusIs(absl::StatusCode::kCancelled, HasSubstr("consumer task has stopped")));
}

TEST(InputGateTest, PollTimesOutWithNullopt) {
  InputGate gate(1, 4);
  const int64_t start = NowNanos();
  const int64_t timeout = absl::ToInt64Nanoseconds(absl::Milliseconds(30));
  EXPECT_FALSE(gate.Poll(start + timeout).has_value());
  EXPECT_GE(NowNanos() - start, timeout);
  // A deadline in the past returns at once.
  EXPECT_FALSE(gate.Poll(0).has_value());
}

TEST(InputGateTest, PollReturnsAQueuedBufferEvenPastTheDeadline) {
  InputGate gate(1, 4);
  gate.Push(Buffer("a"));
  auto item = gate.Poll(0);
  ASSERT_TRUE(item.has_value());
  EXPECT_EQ(DataOf(*item), "a");
}

TEST(InputGateTest, PollWakesForABufferPushedLater) {
  auto gate = std::make_shared<InputGate>(1, 4);
  absl::optional<BufferItem> got;
  absl::Notification polled;
  std::thread consumer([&] {
    got = gate->Poll(NowNanos() + absl::ToInt64Nanoseconds(kPrompt));
    polled.Notify();
  });
  gate->Push(Buffer("late"));
  ASSERT_TRUE(polled.WaitForNotificationWithTimeout(kPrompt));
  consumer.join();
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(DataOf(*got), "late");
}

TEST(InputGateTest, WakeMakesPollReturn) {
  auto gate = std::make_shared<InputGate>(1, 4);
  std::atomic<bool> entered{false};
  absl::Notification returned;
  bool had_value = true;
  const int64_t start = NowNanos();
  std::thread consumer([&] {
    entered.store(true);
    had_value = gate->Poll(NowNanos() + absl::ToInt64Nanoseconds(absl::Seconds(60))).has_value();
    returned.Notify();
  });
  ASSERT_TRUE(WaitUntil([&] { return entered.load(); }));
  absl::SleepFor(absl::Milliseconds(10));  // let it reach the wait (a wake before also counts)
  gate->Wake();
  ASSERT_TRUE(returned.WaitForNotificationWithTimeout(kPrompt));
  consumer.join();
  EXPECT_FALSE(had_value);
  EXPECT_LT(NowNanos() - start, absl::ToInt64Nanoseconds(absl::Seconds(30)));

  // The wake-up is consumed: the next Poll waits for its deadline again.
  const int64_t timeout = absl::ToInt64Nanoseconds(absl::Milliseconds(20));
  const int64_t t0 = NowNanos();
  EXPECT_FALSE(gate->Poll(t0 + timeout).has_value());
  EXPECT_GE(NowNanos() - t0, timeout);
}

TEST(InputGateTest, WakeBeforePollIsNotLost) {
  InputGate gate(1, 4);
  gate.Wake();
  const int64_t start = NowNanos();
  EXPECT_FALSE(gate.Poll(start + absl::ToInt64Nanoseconds(absl::Seconds(60))).has_value());
  EXPECT_LT(NowNanos() - start, absl::ToInt64Nanoseconds(absl::Seconds(30)));
}

TEST(InputGateTest, CreditWaitNanosGrowsWhileBlocked) {
  Wired w(1);
  ASSERT_OK(w.channel->Send(Buffer("0")));
  EXPECT_EQ(w.channel->CreditWaitNanos(), 0);  // sends with credit do not wait

  const int64_t start = NowNanos();
  Sender sender(w.channel.get(), 1);
  ASSERT_TRUE(WaitUntil([&] { return sender.attempts() == 1; }));
  absl::SleepFor(kStillBlocked);
  EXPECT_EQ(sender.sent(), 0);
  ASSERT_TRUE(w.gate->Poll(NowNanos()).has_value());
  w.gate->ReleaseCredit(0);
  ASSERT_TRUE(sender.WaitDone());
  EXPECT_OK(sender.last_error());
  const int64_t elapsed = NowNanos() - start;

  const int64_t waited = w.channel->CreditWaitNanos();
  EXPECT_GT(waited, 0);
  EXPECT_LE(waited, elapsed);
}

}  // namespace
}  // namespace sluice::worker
