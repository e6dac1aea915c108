#include "operators/watermark_generator.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sluice::ops {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

constexpr int64_t kMs = 1'000'000;

// Records what the generator emits: "wm:<ms>", "idle", "active".
class EventTimeOutput final : public Output {
 public:
  absl::Status Emit(const Record&) override { return absl::OkStatus(); }
  absl::Status EmitWatermark(int64_t watermark_ms) override {
    events.push_back(absl::StrCat("wm:", watermark_ms));
    return absl::OkStatus();
  }
  absl::Status EmitWatermarkStatus(bool idle) override {
    events.push_back(idle ? "idle" : "active");
    return absl::OkStatus();
  }
  std::vector<std::string> Take() { return std::move(events); }
  std::vector<std::string> events;
};

// Between periodic steps, the watermark goes out once it has advanced by the step: over the
// splits not idle, from the last one emitted (by either path), never for an idle subtask.
TEST(SplitWatermarksTest, EmitIfAdvancedEmitsOnceTheWatermarkMovedByTheStep) {
  SplitWatermarks wm(/*max_out_of_orderness_ms=*/500, /*idle_timeout_ms=*/100);
  EventTimeOutput out;
  int64_t now = 1000 * kMs;
  const int a = wm.AddSplit(now);
  const int b = wm.AddSplit(now);
  ASSERT_OK(wm.EmitIfAdvanced(200, &out));
  EXPECT_THAT(out.Take(), IsEmpty()) << "no record yet: no watermark";

  wm.OnEvent(a, 10'000);
  wm.OnEvent(b, 9'000);
  ASSERT_OK(wm.EmitIfAdvanced(200, &out));
  EXPECT_THAT(out.Take(), ElementsAre("wm:8499")) << "the first one: min(10000, 9000) - 500 - 1";

  wm.OnEvent(b, 9'199);
  ASSERT_OK(wm.EmitIfAdvanced(200, &out));
  EXPECT_THAT(out.Take(), IsEmpty()) << "8698 is 199 ms on";
  wm.OnEvent(b, 9'200);
  ASSERT_OK(wm.EmitIfAdvanced(200, &out));
  EXPECT_THAT(out.Take(), ElementsAre("wm:8699"));

  wm.OnEvent(b, 20'000);  // split a (max 10000) holds the watermark back
  ASSERT_OK(wm.EmitIfAdvanced(200, &out));
  EXPECT_THAT(out.Take(), ElementsAre("wm:9499"));

  // Split a goes idle at the second periodic step without its records: the watermark is then
  // split b's alone.
  now += 200 * kMs;
  ASSERT_OK(wm.OnPeriodic(now, &out));
  EXPECT_THAT(out.Take(), IsEmpty());
  now += 200 * kMs;
  wm.OnEvent(b, 20'100);
  ASSERT_OK(wm.OnPeriodic(now, &out));
  EXPECT_THAT(out.Take(), ElementsAre("wm:19599"));
  wm.OnEvent(b, 20'300);
  ASSERT_OK(wm.EmitIfAdvanced(200, &out));
  EXPECT_THAT(out.Take(), ElementsAre("wm:19799")) << "200 ms after the periodic one";

  // Both idle: nothing, until a record makes the subtask active again.
  for (int i = 0; i < 2; ++i) {
    now += 200 * kMs;
    ASSERT_OK(wm.OnPeriodic(now, &out));
  }
  EXPECT_THAT(out.Take(), ElementsAre("idle"));
  ASSERT_OK(wm.EmitIfAdvanced(200, &out));
  EXPECT_THAT(out.Take(), IsEmpty());
  EXPECT_TRUE(wm.OnEvent(b, 30'000));
  ASSERT_OK(wm.EmitIfAdvanced(200, &out));
  EXPECT_THAT(out.Take(), ElementsAre("wm:29499"));
}

TEST(SplitWatermarksTest, BoundedOutOfOrderness) {
  SplitWatermarks wm(/*max_out_of_orderness_ms=*/2000, /*idle_timeout_ms=*/0);
  EventTimeOutput out;
  int64_t now = 1000 * kMs;
  const int s = wm.AddSplit(now);
  ASSERT_OK(wm.OnPeriodic(now, &out));
  EXPECT_THAT(out.Take(), IsEmpty()) << "no record yet: no watermark";
  EXPECT_EQ(wm.SplitWatermark(s), kNoWatermark);

  wm.OnEvent(s, 10'000);
  wm.OnEvent(s, 9'000);  // out of order, within the bound
  now += 200 * kMs;
  ASSERT_OK(wm.OnPeriodic(now, &out));
  EXPECT_THAT(out.Take(), ElementsAre("wm:7999")) << "max 10000 - 2000 - 1";

  wm.OnEvent(s, 8'000);  // late: does not move anything back
  now += 200 * kMs;
  ASSERT_OK(wm.OnPeriodic(now, &out));
  EXPECT_THAT(out.Take(), IsEmpty()) << "emitted only when it advances";

  wm.OnEvent(s, 12'500);
  now += 200 * kMs;
  ASSERT_OK(wm.OnPeriodic(now, &out));
  EXPECT_THAT(out.Take(), ElementsAre("wm:10499"));
  EXPECT_EQ(wm.watermark(), 10'499);
  EXPECT_FALSE(wm.idle());
}

TEST(SplitWatermarksTest, MinimumOverSplitsWithoutIdleness) {
  SplitWatermarks wm(0, 0);
  EventTimeOutput out;
  int64_t now = 0;
  const int a = wm.AddSplit(now), b = wm.AddSplit(now);
  wm.OnEvent(a, 500);
  for (int i = 0; i < 100; ++i) {
    now += 200 * kMs;
    ASSERT_OK(wm.OnPeriodic(now, &out));
  }
  EXPECT_THAT(out.Take(), IsEmpty()) << "split b has no record and never turns idle";
  wm.OnEvent(b, 300);
  now += 200 * kMs;
  ASSERT_OK(wm.OnPeriodic(now, &out));
  EXPECT_THAT(out.Take(), ElementsAre("wm:299"));
  wm.OnEvent(b, 900);
  now += 200 * kMs;
  ASSERT_OK(wm.OnPeriodic(now, &out));
  EXPECT_THAT(out.Take(), ElementsAre("wm:499")) << "now split a holds it";
}

TEST(SplitWatermarksTest, IdleSplitStopsHoldingTheWatermark) {
  SplitWatermarks wm(/*max_out_of_orderness_ms=*/1000, /*idle_timeout_ms=*/5000);
  EventTimeOutput out;
  int64_t now = 0;
  const int a = wm.AddSplit(now), b = wm.AddSplit(now);
  // Records keep coming on a only, one per periodic step (200 ms).
  int64_t ts = 100'000;
  for (int step = 1; step < 25; ++step) {
    wm.OnEvent(a, ts += 100);
    now += 200 * kMs;
    ASSERT_OK(wm.OnPeriodic(now, &out));
    EXPECT_THAT(out.Take(), IsEmpty()) << "b is not idle before 5 s; step " << step;
  }
  wm.OnEvent(a, ts += 100);
  now += 200 * kMs;  // 5 s since b was added, without a record
  ASSERT_OK(wm.OnPeriodic(now, &out));
  EXPECT_TRUE(wm.SplitIdle(b));
  EXPECT_FALSE(wm.SplitIdle(a));
  EXPECT_THAT(out.Take(), ElementsAre(absl::StrCat("wm:", ts - 1001)));
  EXPECT_FALSE(wm.idle()) << "a is active";

  // b wakes up with an old record: it rejoins the minimum, which does not move backwards.
  wm.OnEvent(b, 50'000);
  EXPECT_FALSE(wm.SplitIdle(b));
  wm.OnEvent(a, ts += 100);
  now += 200 * kMs;
  ASSERT_OK(wm.OnPeriodic(now, &out));
  EXPECT_THAT(out.Take(), IsEmpty()) << "b (at 48999) holds the minimum back now";
  wm.OnEvent(b, ts + 50);
  now += 200 * kMs;
  ASSERT_OK(wm.OnPeriodic(now, &out));
  EXPECT_THAT(out.Take(), ElementsAre(absl::StrCat("wm:", ts - 1001)));
}

TEST(SplitWatermarksTest, AllSplitsIdleMarksTheOutputIdleUntilTheNextRecord) {
  SplitWatermarks wm(0, /*idle_timeout_ms=*/1000);
  EventTimeOutput out;
  int64_t now = 0;
  const int a = wm.AddSplit(now);
  wm.AddSplit(now);
  wm.OnEvent(a, 7000);
  now += 200 * kMs;
  ASSERT_OK(wm.OnPeriodic(now, &out));
  EXPECT_THAT(out.Take(), IsEmpty());
  now += 800 * kMs;  // b idle (1 s since added); a had its record 800 ms ago
  ASSERT_OK(wm.OnPeriodic(now, &out));
  EXPECT_THAT(out.Take(), ElementsAre("wm:6999"));
  now += 200 * kMs;  // a idle too
  ASSERT_OK(wm.OnPeriodic(now, &out));
  EXPECT_THAT(out.Take(), ElementsAre("idle"));
  EXPECT_TRUE(wm.idle());
  now += 10'000 * kMs;
  ASSERT_OK(wm.OnPeriodic(now, &out));
  EXPECT_THAT(out.Take(), IsEmpty()) << "idle is said once";

  // The next record turns the output active before it is emitted.
  EXPECT_TRUE(wm.OnEvent(a, 8000));
  EXPECT_FALSE(wm.idle());
  EXPECT_FALSE(wm.OnEvent(a, 8001)) << "already active";
  now += 200 * kMs;
  ASSERT_OK(wm.OnPeriodic(now, &out));
  EXPECT_THAT(out.Take(), ElementsAre("wm:8000"));
}

TEST(SplitWatermarksTest, NoSplitsMeansIdleAndANewSplitWaitsForRecords) {
  SplitWatermarks wm(0, 0);
  EventTimeOutput out;
  ASSERT_OK(wm.OnPeriodic(0, &out));
  EXPECT_THAT(out.Take(), ElementsAre("idle"));
  const int a = wm.AddSplit(100 * kMs);
  ASSERT_OK(wm.OnPeriodic(200 * kMs, &out));
  EXPECT_THAT(out.Take(), IsEmpty()) << "a split without records does not announce itself";
  EXPECT_TRUE(wm.idle());
  EXPECT_TRUE(wm.OnEvent(a, 42)) << "its first record turns the output active";
  ASSERT_OK(wm.OnPeriodic(400 * kMs, &out));
  EXPECT_THAT(out.Take(), ElementsAre("wm:41"));
}

TEST(SplitWatermarksTest, ExtremeTimestampsDoNotOverflow) {
  SplitWatermarks wm(5000, 0);
  EventTimeOutput out;
  const int a = wm.AddSplit(0);
  wm.OnEvent(a, kNoWatermark + 10);
  ASSERT_OK(wm.OnPeriodic(1, &out));
  EXPECT_THAT(out.Take(), IsEmpty());
  EXPECT_EQ(wm.SplitWatermark(a), kNoWatermark);
}

// A split whose reader has records it has not read yet (OnBacklog before each periodic step)
// does not turn idle, however long since its last record; once it has nothing to read, its
// idle timeout counts from the last step it had a backlog. An idle split with one turns active.
TEST(SplitWatermarksTest, ASplitWithABacklogDoesNotTurnIdle) {
  SplitWatermarks wm(0, /*idle_timeout_ms=*/1000);
  EventTimeOutput out;
  int64_t now = 0;
  const int a = wm.AddSplit(now), b = wm.AddSplit(now);
  wm.OnEvent(a, 5000);
  wm.OnEvent(b, 7000);
  for (int step = 1; step <= 25; ++step) {  // 5 s without records; b has some to read
    wm.OnBacklog(b);
    now += 200 * kMs;
    ASSERT_OK(wm.OnPeriodic(now, &out));
  }
  EXPECT_THAT(out.Take(), ElementsAre("wm:4999", "wm:6999")) << "a idle after 1 s, b never";
  EXPECT_TRUE(wm.SplitIdle(a));
  EXPECT_FALSE(wm.SplitIdle(b));

  // b read to its end: idle 1 s after its last backlog.
  for (int step = 1; step <= 4; ++step) {
    now += 200 * kMs;
    ASSERT_OK(wm.OnPeriodic(now, &out));
  }
  EXPECT_FALSE(wm.SplitIdle(b));
  now += 200 * kMs;
  ASSERT_OK(wm.OnPeriodic(now, &out));
  EXPECT_THAT(out.Take(), ElementsAre("idle"));

  // A backlog wakes an idle split: its watermark holds the subtask's back again. The output
  // stays idle until a record (its watermark did not advance).
  wm.OnBacklog(a);
  now += 200 * kMs;
  ASSERT_OK(wm.OnPeriodic(now, &out));
  EXPECT_FALSE(wm.SplitIdle(a));
  EXPECT_TRUE(wm.SplitIdle(b));
  EXPECT_THAT(out.Take(), IsEmpty());
  EXPECT_TRUE(wm.OnEvent(b, 20'000)) << "the output turns active";
  now += 200 * kMs;
  ASSERT_OK(wm.OnPeriodic(now, &out));
  EXPECT_THAT(out.Take(), IsEmpty()) << "a (4999) holds the watermark (6999) back, not b (19999)";
  EXPECT_FALSE(wm.OnEvent(a, 9000));
  now += 200 * kMs;
  ASSERT_OK(wm.OnPeriodic(now, &out));
  EXPECT_THAT(out.Take(), ElementsAre("wm:8999"));
}

}  // namespace
}  // namespace sluice::ops
