#include "operators/timer_service.h"

#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "common/key_groups.h"
#include "common/status_matchers.h"
#include "common/watermark.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "operators/operator.h"
#include "state/keyed_state_backend.h"

namespace sluice::ops {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAreArray;

constexpr int kMaxParallelism = 8;

// Logs every timer it is called for as "<domain>:<key>@<timestamp>"; optionally reacts.
class TimerLog final : public Operator {
 public:
  absl::Status Process(const Record&) override { return absl::OkStatus(); }
  absl::Status OnTimer(int64_t timestamp, TimeDomain domain, absl::string_view key) override {
    fired.push_back(absl::StrCat(domain == TimeDomain::kEventTime ? "e" : "p", ":", key, "@", timestamp));
    return on_timer ? on_timer(timestamp, key) : absl::OkStatus();
  }
  std::vector<std::string> fired;
  std::function<absl::Status(int64_t, absl::string_view)> on_timer;
};

class TimerServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/sluice_timer_test_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    root_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(root_, ec);
  }

  state::StateBackendOptions Options(const std::string& name, KeyGroupRange range) {
    state::StateBackendOptions o;
    o.local_dir = (root_ / "local" / name).string();
    o.operator_id = "op";
    o.max_parallelism = kMaxParallelism;
    o.range = range;
    o.clock = &clock_;
    return o;
  }

  // Key "k<i>" lives in key group i % kMaxParallelism.
  static void SetKey(state::KeyedStateBackend* b, int i) {
    b->SetCurrentKey(absl::StrCat("k", i), i % kMaxParallelism);
  }

  std::filesystem::path root_;
  FakeClock clock_{5'000'000'000};  // WallMillis() = 5000
};

TEST_F(TimerServiceTest, EventTimeTimersFireInOrderUpToTheWatermarkAndDeletedOnesNever) {
  auto b = state::KeyedStateBackend::Open(Options("a", {0, kMaxParallelism - 1}));
  ASSERT_OK(b);
  TimerService timers(b->get(), &clock_);
  TimerLog op;
  EXPECT_EQ(timers.CurrentWatermark(), kNoWatermark);
  SetKey(b->get(), 1);
  ASSERT_OK(timers.RegisterEventTimeTimer(30));
  ASSERT_OK(timers.RegisterEventTimeTimer(10));
  ASSERT_OK(timers.RegisterEventTimeTimer(10));  // once per (key, timestamp)
  SetKey(b->get(), 2);
  ASSERT_OK(timers.RegisterEventTimeTimer(20));
  ASSERT_OK(timers.RegisterEventTimeTimer(25));
  ASSERT_OK(timers.DeleteEventTimeTimer(25));
  ASSERT_OK(timers.RegisterProcessingTimeTimer(15));  // another domain: the watermark ignores it

  ASSERT_OK(timers.AdvanceWatermark(9, &op));
  EXPECT_THAT(op.fired, IsEmpty());
  // A timer registered while firing, already due, fires in the same advance; its key is current.
  int64_t advancing_to = 20;
  op.on_timer = [&](int64_t ts, absl::string_view key) -> absl::Status {
    EXPECT_EQ((*b)->CurrentKey(), key);
    EXPECT_EQ(timers.CurrentWatermark(), advancing_to);
    if (ts == 10) return timers.RegisterEventTimeTimer(19);
    return absl::OkStatus();
  };
  ASSERT_OK(timers.AdvanceWatermark(20, &op));
  EXPECT_THAT(op.fired, ElementsAre("e:k1@10", "e:k1@19", "e:k2@20"));
  op.fired.clear();
  advancing_to = kMaxWatermark;
  ASSERT_OK(timers.AdvanceWatermark(kMaxWatermark, &op));
  EXPECT_THAT(op.fired, ElementsAre("e:k1@30"));  // k2@25 was deleted
  op.fired.clear();
  ASSERT_OK(timers.AdvanceWatermark(kMaxWatermark, &op));
  EXPECT_THAT(op.fired, IsEmpty());  // fired timers are gone
}

TEST_F(TimerServiceTest, ProcessingTimeTimersFireWhenTheClockReachesThem) {
  auto b = state::KeyedStateBackend::Open(Options("p", {0, kMaxParallelism - 1}));
  ASSERT_OK(b);
  TimerService timers(b->get(), &clock_);
  TimerLog op;
  EXPECT_EQ(timers.CurrentProcessingTime(), 5000);
  SetKey(b->get(), 3);
  ASSERT_OK(timers.RegisterProcessingTimeTimer(5100));
  ASSERT_OK(timers.RegisterProcessingTimeTimer(5050));
  SetKey(b->get(), 4);
  ASSERT_OK(timers.RegisterProcessingTimeTimer(5050));
  ASSERT_OK(timers.RegisterProcessingTimeTimer(5070));
  ASSERT_OK(timers.DeleteProcessingTimeTimer(5070));
  ASSERT_OK(timers.RegisterEventTimeTimer(0));  // another domain: the clock ignores it
  EXPECT_LE(timers.NextProcessingTime(), 5050);

  ASSERT_OK(timers.FireProcessingTimers(&op));
  EXPECT_THAT(op.fired, IsEmpty());
  EXPECT_EQ(timers.NextProcessingTime(), 5050);
  clock_.AdvanceNanos(50'000'000);
  ASSERT_OK(timers.FireProcessingTimers(&op));
  EXPECT_THAT(op.fired, ElementsAre("p:k3@5050", "p:k4@5050"));
  EXPECT_EQ(timers.NextProcessingTime(), 5100);  // k4@5070 was deleted
  op.fired.clear();
  clock_.AdvanceNanos(1'000'000'000);
  ASSERT_OK(timers.FireProcessingTimers(&op));
  EXPECT_THAT(op.fired, ElementsAre("p:k3@5100"));
  EXPECT_EQ(timers.NextProcessingTime(), std::numeric_limits<int64_t>::max());
}

// Timers are keyed state: a snapshot keeps them, and restoring it at another parallelism gives
// each new subtask the timers of its key groups, which fire there and only there.
TEST_F(TimerServiceTest, TimersSurviveSnapshotRestoreAndRescale) {
  const std::string job_dir = (root_ / "job").string();
  proto::KeyedStateHandle handle;
  std::vector<std::string> expected;
  {
    auto b = state::KeyedStateBackend::Open(Options("old", {0, kMaxParallelism - 1}));
    ASSERT_OK(b);
    TimerService timers(b->get(), &clock_);
    for (int i = 0; i < 20; ++i) {
      SetKey(b->get(), i);
      ASSERT_OK(timers.RegisterEventTimeTimer(100 + i));
      ASSERT_OK(timers.RegisterProcessingTimeTimer(6000 + i));
      if (i % 5 == 0) {
        ASSERT_OK(timers.DeleteEventTimeTimer(100 + i));
      } else {
        expected.push_back(absl::StrCat("e:k", i, "@", 100 + i));
      }
      expected.push_back(absl::StrCat("p:k", i, "@", 6000 + i));
    }
    // Fire one before the snapshot: it must not come back.
    TimerLog op;
    ASSERT_OK(timers.AdvanceWatermark(101, &op));
    EXPECT_THAT(op.fired, ElementsAre("e:k1@101"));
    expected.erase(std::find(expected.begin(), expected.end(), "e:k1@101"));
    auto pending = (*b)->SnapshotSync(1);
    ASSERT_OK(pending);
    auto h = (*b)->UploadSnapshot(*pending, job_dir, "chk-1/op-0");
    ASSERT_OK(h);
    handle = *h;
  }

  std::vector<std::string> all;
  std::vector<std::unique_ptr<state::KeyedStateBackend>> restored;
  std::vector<TimerLog> ops(2);
  for (int subtask = 0; subtask < 2; ++subtask) {
    const KeyGroupRange range = KeyGroupRangeForSubtask(kMaxParallelism, 2, subtask);
    auto b = state::KeyedStateBackend::Restore(Options(absl::StrCat("new", subtask), range), {handle}, job_dir);
    ASSERT_OK(b);
    restored.push_back(*std::move(b));
  }
  for (int round = 0; round < 2; ++round) {
    // Round 0 at 5000 ms: only event time is due; round 1 at 7000 ms: processing time too.
    for (int subtask = 0; subtask < 2; ++subtask) {
      TimerService timers(restored[subtask].get(), &clock_);
      if (round == 0) ASSERT_OK(timers.AdvanceWatermark(kMaxWatermark, &ops[subtask]));
      ASSERT_OK(timers.FireProcessingTimers(&ops[subtask]));
    }
    if (round == 0) {
      for (int subtask = 0; subtask < 2; ++subtask) {
        for (const std::string& f : ops[subtask].fired) EXPECT_EQ(f[0], 'e') << f;
      }
    }
    clock_.AdvanceNanos(2'000'000'000);
  }
  for (int subtask = 0; subtask < 2; ++subtask) {
    const KeyGroupRange range = KeyGroupRangeForSubtask(kMaxParallelism, 2, subtask);
    for (const std::string& f : ops[subtask].fired) {
      // "<domain>:k<i>@..." belongs to key group i % kMaxParallelism: this subtask's.
      const int i = std::stoi(f.substr(3, f.find('@') - 3));
      EXPECT_TRUE(range.Contains(i % kMaxParallelism)) << f << " fired on subtask " << subtask;
    }
    EXPECT_FALSE(ops[subtask].fired.empty()) << "subtask " << subtask;
    all.insert(all.end(), ops[subtask].fired.begin(), ops[subtask].fired.end());
  }
  EXPECT_THAT(all, UnorderedElementsAreArray(expected));
}

}  // namespace
}  // namespace sluice::ops
