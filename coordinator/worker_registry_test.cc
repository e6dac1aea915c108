#include "coordinator/worker_registry.h"

#include <string>
#include <vector>

#include "common/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sluice::coordinator {
namespace {

using ::sluice::testing::StatusIs;

proto::RegisterWorkerRequest Request(const std::string& address, int slots) {
  proto::RegisterWorkerRequest r;
  r.set_data_address(address);
  r.set_slots(slots);
  return r;
}

constexpr int64_t kMs = 1'000'000;

// Heartbeat timeout 3 s: workers heartbeat every 500 ms and are suspect after 1 s of silence.
class WorkerRegistryTest : public ::testing::Test {
 protected:
  FakeClock clock_;
  WorkerRegistry registry_{&clock_, 3000};
  static bool Reachable(const WorkerEntry&) { return false; }
};

TEST_F(WorkerRegistryTest, RegistrationValidatesAndGivesNewIds) {
  EXPECT_THAT(WorkerRegistry::Validate(Request("a:1", 0)),
              StatusIs(absl::StatusCode::kInvalidArgument, "a worker must offer at least one slot"));
  EXPECT_THAT(WorkerRegistry::Validate(Request("", 2)),
              StatusIs(absl::StatusCode::kInvalidArgument, "data_address is required"));
  EXPECT_OK(WorkerRegistry::Validate(Request("a:1", 2)));
  EXPECT_EQ(registry_.HeartbeatIntervalNanos(), 500 * kMs);
  EXPECT_EQ(registry_.Register(Request("a:1", 2), nullptr).id, "w-1");
  // The same worker registering again (it restarted, or the coordinator forgot it) is a new one.
  EXPECT_EQ(registry_.Register(Request("a:1", 2), nullptr).id, "w-2");
  EXPECT_EQ(registry_.size(), 2u);
}

TEST_F(WorkerRegistryTest, HeartbeatsOfUnknownIdsOrAnotherAddressAskToReregister) {
  const std::string id = registry_.Register(Request("a:1", 2), nullptr).id;
  EXPECT_TRUE(registry_.Heartbeat(id, "a:1"));
  EXPECT_FALSE(registry_.Heartbeat(id, "b:1"));    // an earlier coordinator's id, now another worker
  EXPECT_FALSE(registry_.Heartbeat("w-9", "a:1"));  // unknown
  ASSERT_TRUE(registry_.Remove(id).has_value());
  EXPECT_FALSE(registry_.Heartbeat(id, "a:1"));  // lost
  EXPECT_FALSE(registry_.Remove(id).has_value());
}

TEST_F(WorkerRegistryTest, AHeartbeatTimeoutLosesAWorkerExactlyOnce) {
  const std::string a = registry_.Register(Request("a:1", 2), nullptr).id;
  const std::string b = registry_.Register(Request("b:1", 2), nullptr).id;
  clock_.AdvanceNanos(3000 * kMs);
  EXPECT_TRUE(registry_.Heartbeat(b, "b:1"));
  EXPECT_TRUE(registry_.TakeLost(Reachable).empty());  // exactly the timeout: not yet
  clock_.AdvanceNanos(1);
  std::vector<LostWorker> lost = registry_.TakeLost(Reachable);
  ASSERT_EQ(lost.size(), 1u);
  EXPECT_EQ(lost[0].worker.id, a);
  EXPECT_EQ(lost[0].worker.data_address, "a:1");
  EXPECT_EQ(lost[0].why, "no heartbeat for 3.0 s");
  EXPECT_TRUE(registry_.TakeLost(Reachable).empty());
  clock_.AdvanceNanos(10'000 * kMs);
  lost = registry_.TakeLost(Reachable);
  ASSERT_EQ(lost.size(), 1u);
  EXPECT_EQ(lost[0].worker.id, b);
  EXPECT_TRUE(registry_.TakeLost(Reachable).empty());
  EXPECT_EQ(registry_.size(), 0u);
}

TEST_F(WorkerRegistryTest, AWorkerThatReregistersLivesOnUnderItsNewId) {
  const std::string old_id = registry_.Register(Request("a:1", 2), nullptr).id;
  clock_.AdvanceNanos(2000 * kMs);
  const std::string new_id = registry_.Register(Request("a:1", 2), nullptr).id;
  clock_.AdvanceNanos(1001 * kMs);
  EXPECT_TRUE(registry_.Heartbeat(new_id, "a:1"));
  std::vector<LostWorker> lost = registry_.TakeLost(Reachable);
  ASSERT_EQ(lost.size(), 1u);
  EXPECT_EQ(lost[0].worker.id, old_id);
  EXPECT_NE(registry_.Find(new_id), nullptr);
}

TEST_F(WorkerRegistryTest, ALateWorkerWhoseAddressRefusesConnectionsIsLostBeforeTheTimeout) {
  const std::string id = registry_.Register(Request("a:1", 2), nullptr).id;
  std::vector<std::string> asked;
  auto unreachable = [&](const WorkerEntry& w) {
    asked.push_back(w.id);
    return true;
  };
  // Without a channel (nothing to watch) only the timeout counts.
  clock_.AdvanceNanos(700 * kMs);
  EXPECT_TRUE(registry_.TakeLost(unreachable).empty());
  EXPECT_TRUE(asked.empty());
  // With one: asked once the heartbeat is late by more than an interval + 100 ms.
  auto channel = grpc::CreateChannel("127.0.0.1:1", grpc::InsecureChannelCredentials());
  const std::string watched = registry_.Register(Request("b:1", 2), channel).id;
  clock_.AdvanceNanos(600 * kMs);
  EXPECT_TRUE(registry_.TakeLost(unreachable).empty());
  clock_.AdvanceNanos(1);
  std::vector<LostWorker> lost = registry_.TakeLost(unreachable);
  ASSERT_EQ(lost.size(), 1u);
  EXPECT_EQ(lost[0].worker.id, watched);
  EXPECT_THAT(lost[0].why, ::testing::HasSubstr("unreachable (its address refuses connections"));
  EXPECT_EQ(asked, std::vector<std::string>{watched});
  EXPECT_NE(registry_.Find(id), nullptr);
}

TEST_F(WorkerRegistryTest, FreeSlotsLeaveOutFullAndSuspectWorkers) {
  const std::string a = registry_.Register(Request("a:1", 2), nullptr).id;
  const std::string b = registry_.Register(Request("b:1", 3), nullptr).id;
  const std::string c = registry_.Register(Request("c:1", 1), nullptr).id;
  registry_.Acquire({{a, 2}, {b, 1}});
  std::vector<SlotOffer> offers = registry_.FreeSlots();
  ASSERT_EQ(offers.size(), 2u);
  EXPECT_EQ(offers[0].worker_id, b);
  EXPECT_EQ(offers[0].free_slots, 2);
  EXPECT_EQ(offers[0].data_address, "b:1");
  EXPECT_EQ(offers[1].worker_id, c);
  // c misses two heartbeats (1 s): suspect, offers nothing; b heartbeats.
  clock_.AdvanceNanos(1001 * kMs);
  EXPECT_TRUE(registry_.Heartbeat(b, "b:1"));
  EXPECT_TRUE(registry_.Suspect(*registry_.Find(c)));
  offers = registry_.FreeSlots();
  ASSERT_EQ(offers.size(), 1u);
  EXPECT_EQ(offers[0].worker_id, b);
  registry_.Release({{a, 2}, {"w-gone", 1}});
  EXPECT_EQ(registry_.Find(a)->slots_used, 0);
  EXPECT_EQ(registry_.FreeSlots().size(), 1u);  // a is suspect too by now
}

}  // namespace
}  // namespace sluice::coordinator
