#include "worker/internal/watermark_valve.h"

#include "gtest/gtest.h"

namespace sluice::worker {
namespace {

using Changes = WatermarkValve::Changes;

bool Nothing(const Changes& c) { return !c.active && !c.advanced && !c.idle; }

TEST(WatermarkValveTest, MinimumOverChannelsOnlyOnceEveryChannelHasOne) {
  WatermarkValve v(3);
  EXPECT_EQ(v.watermark(), kNoWatermark);
  EXPECT_TRUE(Nothing(v.OnWatermark(0, 100)));
  EXPECT_TRUE(Nothing(v.OnWatermark(2, 50)));
  EXPECT_EQ(v.watermark(), kNoWatermark) << "channel 1 has none yet";
  Changes c = v.OnWatermark(1, 70);
  EXPECT_TRUE(c.advanced);
  EXPECT_EQ(v.watermark(), 50);
  c = v.OnWatermark(2, 200);
  EXPECT_TRUE(c.advanced);
  EXPECT_EQ(v.watermark(), 70);
  EXPECT_FALSE(v.idle());
}

TEST(WatermarkValveTest, ReportsOnlyWhenTheMinimumAdvances) {
  WatermarkValve v(2);
  v.OnWatermark(0, 10);
  EXPECT_TRUE(v.OnWatermark(1, 20).advanced);
  EXPECT_EQ(v.watermark(), 10);
  // The channel that is not the minimum moves: no change.
  EXPECT_TRUE(Nothing(v.OnWatermark(1, 30)));
  // A channel going backwards is ignored, so is a repeat.
  EXPECT_TRUE(Nothing(v.OnWatermark(0, 5)));
  EXPECT_TRUE(Nothing(v.OnWatermark(0, 10)));
  EXPECT_EQ(v.watermark(), 10);
  Changes c = v.OnWatermark(0, 40);
  EXPECT_TRUE(c.advanced);
  EXPECT_EQ(v.watermark(), 30);
}

TEST(WatermarkValveTest, MonotonicUnderAnyOrder) {
  WatermarkValve v(3);
  int64_t last = kNoWatermark;
  uint64_t x = 12345;
  for (int i = 0; i < 10000; ++i) {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    const int ch = static_cast<int>((x >> 33) % 3);
    const int64_t wm = static_cast<int64_t>((x >> 20) % 1000) + i / 10;
    Changes c;
    switch ((x >> 50) % 8) {
      case 0: c = v.OnStatus(ch, true); break;
      case 1: c = v.OnStatus(ch, false); break;
      default: c = v.OnWatermark(ch, wm); break;
    }
    EXPECT_GE(v.watermark(), last);
    EXPECT_EQ(c.advanced, v.watermark() != last);
    last = v.watermark();
  }
}

TEST(WatermarkValveTest, IdleChannelDoesNotHoldTheMinimumBack) {
  WatermarkValve v(2);
  v.OnWatermark(0, 100);
  EXPECT_EQ(v.watermark(), kNoWatermark) << "channel 1 has none";
  Changes c = v.OnStatus(1, true);
  EXPECT_TRUE(c.advanced);
  EXPECT_FALSE(c.idle) << "channel 0 is still active";
  EXPECT_EQ(v.watermark(), 100);
  EXPECT_TRUE(v.OnWatermark(0, 150).advanced);
  EXPECT_EQ(v.watermark(), 150);
  // An idle channel's watermarks are ignored.
  EXPECT_TRUE(Nothing(v.OnWatermark(1, 500)));
  EXPECT_EQ(v.watermark(), 150);
}

TEST(WatermarkValveTest, AllIdleReleasesTheMaximumThenTurnsIdle) {
  // Channel 0 turns idle first: the minimum stays held by channel 1, which has none.
  WatermarkValve v(2);
  v.OnWatermark(0, 100);
  EXPECT_TRUE(Nothing(v.OnStatus(0, true)));
  EXPECT_EQ(v.watermark(), kNoWatermark);
  Changes c = v.OnStatus(1, true);
  EXPECT_TRUE(c.advanced);
  EXPECT_TRUE(c.idle);
  EXPECT_EQ(v.watermark(), 100);
  EXPECT_TRUE(v.idle());
  // Already idle: nothing more to say.
  EXPECT_TRUE(Nothing(v.OnStatus(1, true)));

  // The other order ends in the same place.
  WatermarkValve w(2);
  w.OnWatermark(0, 100);
  c = w.OnStatus(1, true);
  EXPECT_TRUE(c.advanced);
  EXPECT_FALSE(c.idle);
  c = w.OnStatus(0, true);
  EXPECT_FALSE(c.advanced);
  EXPECT_TRUE(c.idle);
  EXPECT_EQ(w.watermark(), 100);
}

TEST(WatermarkValveTest, ActiveAgainRejoinsOnceCaughtUp) {
  WatermarkValve v(2);
  v.OnWatermark(0, 100);
  v.OnWatermark(1, 100);
  v.OnStatus(1, true);
  v.OnWatermark(0, 300);
  EXPECT_EQ(v.watermark(), 300);
  EXPECT_TRUE(Nothing(v.OnStatus(1, false))) << "not idle overall: nothing to announce";
  // Channel 1 is behind: it does not pull the watermark back, nor hold it.
  EXPECT_TRUE(Nothing(v.OnWatermark(1, 200)));
  EXPECT_TRUE(v.OnWatermark(0, 400).advanced);
  EXPECT_EQ(v.watermark(), 400);
  // Caught up: it counts again, and now holds the minimum.
  EXPECT_TRUE(Nothing(v.OnWatermark(1, 450)));
  EXPECT_TRUE(v.OnWatermark(0, 500).advanced);
  EXPECT_EQ(v.watermark(), 450) << "channel 1 holds it now";
}

TEST(WatermarkValveTest, IdleTaskTurnsActiveWithTheFirstActiveChannel) {
  WatermarkValve v(2);
  v.OnStatus(0, true);
  Changes c = v.OnStatus(1, true);
  EXPECT_TRUE(c.idle);
  EXPECT_FALSE(c.advanced);
  EXPECT_EQ(v.watermark(), kNoWatermark);
  c = v.OnStatus(0, false);
  EXPECT_TRUE(c.active);
  EXPECT_FALSE(v.idle());
  EXPECT_TRUE(v.OnWatermark(0, 10).advanced) << "channel 1 is still idle";
  EXPECT_EQ(v.watermark(), 10);
}

TEST(WatermarkValveTest, EndedChannelsAreLeftOut) {
  WatermarkValve v(3);
  v.OnWatermark(0, 100);
  v.OnWatermark(1, 50);
  EXPECT_EQ(v.watermark(), kNoWatermark) << "channel 2 has none";
  Changes c = v.OnEnd(2);
  EXPECT_TRUE(c.advanced) << "an ended channel holds nothing back";
  EXPECT_FALSE(c.idle);
  EXPECT_EQ(v.watermark(), 50);
  c = v.OnEnd(1);
  EXPECT_TRUE(c.advanced);
  EXPECT_FALSE(c.idle);
  EXPECT_EQ(v.watermark(), 100);
  // The last channel ending ends the task: it does not turn idle.
  c = v.OnEnd(0);
  EXPECT_FALSE(c.idle);
  EXPECT_FALSE(v.idle());
  EXPECT_EQ(v.watermark(), 100);
}

TEST(WatermarkValveTest, EndOfTheLastActiveChannelLeavesTheIdleOnes) {
  WatermarkValve v(2);
  v.OnStatus(1, true);
  v.OnWatermark(0, 70);
  EXPECT_EQ(v.watermark(), 70);
  Changes c = v.OnEnd(0);
  EXPECT_TRUE(c.idle) << "only an idle channel is left";
  EXPECT_EQ(v.watermark(), 70);
  c = v.OnStatus(1, false);
  EXPECT_TRUE(c.active);
}

TEST(WatermarkValveTest, MaxWatermarkPassesThrough) {
  WatermarkValve v(2);
  v.OnWatermark(0, kMaxWatermark);
  EXPECT_TRUE(v.OnWatermark(1, kMaxWatermark).advanced);
  EXPECT_EQ(v.watermark(), kMaxWatermark);
}

}  // namespace
}  // namespace sluice::worker
