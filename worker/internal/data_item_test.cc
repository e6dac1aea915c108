#include "worker/internal/data_item.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sluice::worker {
namespace {

using ::testing::ElementsAre;

// Through the wire message and back, on channel 4.
BufferItem OverTheWire(BufferItem item) {
  proto::DataMessage msg = ToMessage(std::move(item));
  std::string bytes = msg.SerializeAsString();
  proto::DataMessage received;
  EXPECT_TRUE(received.ParseFromString(bytes));
  return FromMessage(&received, 4);
}

// Through in-flight data (input side, channel 2) and back.
BufferItem ThroughChannelState(const BufferItem& item) {
  proto::ChannelStateFile file;
  AddChannelStateItem(false, 2, item, &file);
  EXPECT_EQ(file.items_size(), 1);
  EXPECT_FALSE(file.items(0).output());
  EXPECT_EQ(file.items(0).channel(), 2);
  return FromChannelStateItem(file.items(0));
}

TEST(DataItemTest, RecordBufferRoundTrips) {
  const std::string data("r\0\x01", 3);
  for (BufferItem back : {OverTheWire(BufferItem(0, RecordBuffer{data, 7})),
                          ThroughChannelState(BufferItem(0, RecordBuffer{data, 7}))}) {
    const RecordBuffer* b = back.as<RecordBuffer>();
    ASSERT_NE(b, nullptr);
    EXPECT_EQ(b->data, data);
    EXPECT_EQ(b->num_records, 7);
  }
  BufferItem wire = OverTheWire(BufferItem(0, RecordBuffer{data, 7}));
  EXPECT_EQ(wire.channel, 4);
  EXPECT_FALSE(wire.restored);
  EXPECT_TRUE(wire.TakesCredit());
  BufferItem restored = ThroughChannelState(BufferItem(0, RecordBuffer{data, 7}));
  EXPECT_EQ(restored.channel, 2);
  EXPECT_TRUE(restored.restored);
  EXPECT_FALSE(restored.TakesCredit()) << "replayed in-flight data came through no gate";
}

// A buffer's key groups cross the wire with it; channel state does not keep them (the restored
// records come without, and their consumer hashes their keys).
TEST(DataItemTest, KeyGroupsCrossTheWireButNotChannelState) {
  const std::string key_groups("\x05\x00\xff", 3);
  const RecordBuffer* b = nullptr;
  BufferItem wire = OverTheWire(BufferItem(0, RecordBuffer{"abc", 3, key_groups}));
  ASSERT_NE(b = wire.as<RecordBuffer>(), nullptr);
  EXPECT_EQ(b->key_groups, key_groups);
  EXPECT_EQ(b->data, "abc");
  BufferItem restored = ThroughChannelState(BufferItem(0, RecordBuffer{"abc", 3, key_groups}));
  ASSERT_NE(b = restored.as<RecordBuffer>(), nullptr);
  EXPECT_EQ(b->data, "abc");
  EXPECT_TRUE(b->key_groups.empty());
  BufferItem none = OverTheWire(BufferItem(0, RecordBuffer{"abc", 3}));
  ASSERT_NE(b = none.as<RecordBuffer>(), nullptr);
  EXPECT_TRUE(b->key_groups.empty());
}

TEST(DataItemTest, BarrierRoundTripsWithItsPriority) {
  for (bool priority : {false, true}) {
    BufferItem back = OverTheWire(BufferItem(0, Barrier{42, priority}));
    const Barrier* b = back.as<Barrier>();
    ASSERT_NE(b, nullptr);
    EXPECT_EQ(b->id, 42);
    EXPECT_EQ(b->priority, priority);
    EXPECT_EQ(back.TakesCredit(), !priority);
  }
}

TEST(DataItemTest, ABarrierRoundTripsTimeoutableOrTimedOut) {
  BufferItem in_place = OverTheWire(BufferItem(0, Barrier{5, false, /*timeoutable=*/true}));
  const Barrier* b = in_place.as<Barrier>();
  ASSERT_NE(b, nullptr);
  EXPECT_TRUE(b->timeoutable);
  EXPECT_FALSE(b->timed_out);
  EXPECT_TRUE(in_place.TakesCredit()) << "sent in place, with credit";
  BufferItem converted = OverTheWire(BufferItem(0, Barrier{6, true, false, /*timed_out=*/true}));
  ASSERT_NE(b = converted.as<Barrier>(), nullptr);
  EXPECT_TRUE(b->priority);
  EXPECT_FALSE(b->timeoutable);
  EXPECT_TRUE(b->timed_out);
  EXPECT_FALSE(converted.TakesCredit());
}

TEST(DataItemTest, ABarrierCarriesHowLongItsCheckpointWaited) {
  BufferItem back = OverTheWire(BufferItem(0, Barrier{5, false, true, false, /*waited_ms=*/420}));
  ASSERT_NE(back.as<Barrier>(), nullptr);
  EXPECT_EQ(back.as<Barrier>()->waited_ms, 420);
  // From an earlier build (no field): nothing waited.
  proto::DataMessage msg;
  msg.set_barrier(6);
  msg.set_barrier_timeoutable(true);
  BufferItem old = FromMessage(&msg, 0);
  ASSERT_NE(old.as<Barrier>(), nullptr);
  EXPECT_EQ(old.as<Barrier>()->waited_ms, 0);
  // Out of range (a corrupt or hostile sender): clamped, never negative nor overflowing.
  for (const auto& [sent, taken] : {std::pair<int64_t, int64_t>{-5, 0},
                                    {INT64_MAX, kMaxBarrierWaitedMs},
                                    {kMaxBarrierWaitedMs + 1, kMaxBarrierWaitedMs}}) {
    proto::DataMessage m;
    m.set_barrier(7);
    m.set_barrier_waited_ms(sent);
    BufferItem b = FromMessage(&m, 0);
    ASSERT_NE(b.as<Barrier>(), nullptr);
    EXPECT_EQ(b.as<Barrier>()->waited_ms, taken) << sent;
  }
}

TEST(DataItemTest, AnAnnouncementGoesOutAsItsPriorityBarrier) {
  BarrierAnnouncement a{9, {}};
  a.overtaken.push_back(BufferItem(1, RecordBuffer{"x", 1}));
  BufferItem item(1, std::move(a));
  EXPECT_FALSE(item.TakesCredit());
  BufferItem back = OverTheWire(std::move(item));
  const Barrier* b = back.as<Barrier>();
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->id, 9);
  EXPECT_TRUE(b->priority);
}

TEST(DataItemTest, WatermarkRoundTrips) {
  for (int64_t ms : {int64_t{0}, int64_t{-5}, int64_t{1'700'000'000'000}}) {
    for (BufferItem back : {OverTheWire(BufferItem(0, WatermarkAdvance{ms})),
                            ThroughChannelState(BufferItem(0, WatermarkAdvance{ms}))}) {
      const WatermarkAdvance* w = back.as<WatermarkAdvance>();
      ASSERT_NE(w, nullptr) << ms;
      EXPECT_EQ(w->ms, ms);
    }
  }
}

TEST(DataItemTest, WatermarkStatusRoundTrips) {
  for (bool idle : {true, false}) {
    for (BufferItem back : {OverTheWire(BufferItem(0, WatermarkStatusChange{idle})),
                            ThroughChannelState(BufferItem(0, WatermarkStatusChange{idle}))}) {
      const WatermarkStatusChange* s = back.as<WatermarkStatusChange>();
      ASSERT_NE(s, nullptr) << idle;
      EXPECT_EQ(s->idle, idle);
    }
  }
}

// "d<n>:<data>" records, "w<ms>" a watermark; "+" marks a piece that returns no credit.
std::vector<std::string> Describe(const BufferItem* items, int n) {
  std::vector<std::string> out;
  for (int i = 0; i < n; ++i) {
    std::string d;
    if (const RecordBuffer* b = items[i].as<RecordBuffer>()) {
      d = absl::StrCat("d", b->num_records, ":", b->data, "/", b->key_groups);
    } else if (const WatermarkAdvance* w = items[i].as<WatermarkAdvance>()) {
      d = absl::StrCat("w", w->ms);
    } else {
      d = "?";
    }
    if (!items[i].TakesCredit()) d += "+";
    out.push_back(d);
  }
  return out;
}

// Records "a", "bb", "ccc" (three records, 6 bytes) with key groups "xyz", carrying watermark
// `ms` after `records` of them (`bytes` bytes).
BufferItem Carrying(int64_t ms, int records, size_t bytes) {
  return BufferItem(0, RecordBuffer{"abbccc", 3, "xyz", CarriedWatermark{ms, records, bytes}});
}

TEST(DataItemTest, ABufferCarryingAWatermarkSplitsAtItsPlaceAndTakesOneCredit) {
  BufferItem pieces[3];
  int n = SplitCarriedWatermark(Carrying(9, 1, 1), pieces);
  EXPECT_THAT(Describe(pieces, n), ElementsAre("d1:a/x+", "w9+", "d2:bbccc/yz"));
  n = SplitCarriedWatermark(Carrying(9, 3, 6), pieces);
  EXPECT_THAT(Describe(pieces, n), ElementsAre("d3:abbccc/xyz+", "w9"));
  n = SplitCarriedWatermark(Carrying(9, 0, 0), pieces);
  EXPECT_THAT(Describe(pieces, n), ElementsAre("w9+", "d3:abbccc/xyz"));
  n = SplitCarriedWatermark(BufferItem(0, RecordBuffer{"abbccc", 3}), pieces);
  EXPECT_THAT(Describe(pieces, n), ElementsAre("d3:abbccc/"));
  BufferItem restored = Carrying(9, 1, 1);
  restored.restored = true;
  n = SplitCarriedWatermark(std::move(restored), pieces);
  EXPECT_THAT(Describe(pieces, n), ElementsAre("d1:a/x+", "w9+", "d2:bbccc/yz+"));
}

TEST(DataItemTest, AWatermarkCarriedInABufferCrossesTheWireInOneMessage) {
  proto::DataMessage msg = ToMessage(Carrying(-4, 2, 3));
  EXPECT_EQ(msg.buffer(), "abbccc");
  EXPECT_EQ(msg.carried_watermark(), -4);
  // A receiver of an earlier build reads field 8 (`watermark`) as a message without records:
  // the carried watermark is not there, so such a receiver keeps the records (and ignores it).
  EXPECT_FALSE(msg.has_watermark());
  BufferItem back = OverTheWire(Carrying(-4, 2, 3));
  EXPECT_TRUE(back.TakesCredit());
  BufferItem pieces[3];
  const int n = SplitCarriedWatermark(std::move(back), pieces);
  EXPECT_THAT(Describe(pieces, n), ElementsAre("d2:abb/xy+", "w-4+", "d1:ccc/z"));
  // Offsets beyond the buffer (a broken sender) put the watermark after it.
  msg.set_watermark_records(7);
  msg.set_watermark_bytes(70);
  const int m = SplitCarriedWatermark(FromMessage(&msg, 0), pieces);
  EXPECT_THAT(Describe(pieces, m), ElementsAre("d3:abbccc/xyz+", "w-4"));
}

TEST(DataItemTest, AWatermarkCarriedInABufferIsStoredAsItsPiecesInChannelState) {
  // The pieces are items of the format before watermarks rode in buffers: a checkpoint either
  // side of this change restores with the other.
  proto::ChannelStateFile file;
  AddChannelStateItem(true, 5, Carrying(9, 1, 1), &file);
  ASSERT_EQ(file.items_size(), 3);
  BufferItem back[3];
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(file.items(i).output());
    EXPECT_EQ(file.items(i).channel(), 5);
    back[i] = FromChannelStateItem(file.items(i));
  }
  EXPECT_THAT(Describe(back, 3), ElementsAre("d1:a/+", "w9+", "d2:bbccc/+"));
}

TEST(DataItemTest, EndOfPartitionRoundTrips) {
  BufferItem back = OverTheWire(BufferItem(0, EndOfPartition{}));
  EXPECT_NE(back.as<EndOfPartition>(), nullptr);
  EXPECT_TRUE(back.TakesCredit());
}

TEST(DataItemTest, AnEmptyMessageIsAnEmptyBuffer) {
  proto::DataMessage msg;
  BufferItem item = FromMessage(&msg, 0);
  const RecordBuffer* b = item.as<RecordBuffer>();
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->num_records, 0);
  EXPECT_EQ(b->data, "");
}

}  // namespace
}  // namespace sluice::worker
