#include "coordinator/scheduler.h"

#include <map>
#include <string>
#include <vector>

#include "common/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sluice::coordinator {
namespace {

using ::sluice::testing::StatusIs;

// A graph of vertices with the given parallelisms (ids 0, 1, ...).
plan::JobGraph Graph(const std::vector<int>& parallelisms) {
  plan::JobGraph g;
  for (size_t i = 0; i < parallelisms.size(); ++i) {
    plan::Vertex v;
    v.id = static_cast<int>(i);
    v.parallelism = parallelisms[i];
    v.name = "v" + std::to_string(i);
    g.vertices.push_back(v);
  }
  return g;
}

SlotOffer Offer(const std::string& id, int free) { return {id, id + ":1", free}; }

// The worker of subtask s of vertex v, for every vertex: "v/s=worker".
std::vector<std::string> Layout(const Placement& p) {
  std::vector<std::string> out;
  for (size_t v = 0; v < p.tasks.size(); ++v) {
    for (size_t s = 0; s < p.tasks[v].size(); ++s) {
      out.push_back(std::to_string(v) + "/" + std::to_string(s) + "=" + p.tasks[v][s].worker_id);
    }
  }
  return out;
}

TEST(SchedulerTest, SpreadsSlotsRoundRobinOverWorkersInOfferOrder) {
  absl::StatusOr<Placement> p = PlaceJob("j", Graph({4, 2}), {Offer("w-1", 4), Offer("w-2", 4)}, 2);
  ASSERT_OK(p);
  // Slot sharing: subtask i of every vertex in slot i; slots alternate between the workers.
  EXPECT_EQ(Layout(*p), (std::vector<std::string>{"0/0=w-1", "0/1=w-2", "0/2=w-1", "0/3=w-2", "1/0=w-1",
                                                  "1/1=w-2"}));
  EXPECT_EQ(p->slots_per_worker, (std::map<std::string, int>{{"w-1", 2}, {"w-2", 2}}));
  EXPECT_EQ(p->tasks[0][1].data_address, "w-2:1");
}

TEST(SchedulerTest, FillsTheWorkersThatHaveSlotsLeftOnceOthersAreFull) {
  absl::StatusOr<Placement> p = PlaceJob("j", Graph({5}), {Offer("w-1", 1), Offer("w-2", 3), Offer("w-3", 1)}, 3);
  ASSERT_OK(p);
  EXPECT_EQ(Layout(*p), (std::vector<std::string>{"0/0=w-1", "0/1=w-2", "0/2=w-3", "0/3=w-2", "0/4=w-2"}));
  EXPECT_EQ(p->slots_per_worker, (std::map<std::string, int>{{"w-1", 1}, {"w-2", 3}, {"w-3", 1}}));
}

TEST(SchedulerTest, WorkersNotNeededGetNoSlot) {
  absl::StatusOr<Placement> p = PlaceJob("j", Graph({1, 1}), {Offer("w-1", 2), Offer("w-2", 2)}, 2);
  ASSERT_OK(p);
  EXPECT_EQ(Layout(*p), (std::vector<std::string>{"0/0=w-1", "1/0=w-1"}));
  EXPECT_EQ(p->slots_per_worker, (std::map<std::string, int>{{"w-1", 1}}));
}

TEST(SchedulerTest, RefusesWithTheExactMessageWhenSlotsAreShort) {
  // Three workers registered, one of them (suspect or full) offering nothing.
  EXPECT_THAT(PlaceJob("wordcount", Graph({2, 4}), {Offer("w-1", 1), Offer("w-3", 2)}, 3),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       "job 'wordcount' needs 4 slot(s) but the cluster has 3 free (3 worker(s)); lower its "
                       "parallelism or add workers"));
  EXPECT_THAT(PlaceJob("j", Graph({1}), {}, 0),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       "job 'j' needs 1 slot(s) but the cluster has 0 free (0 worker(s)); lower its "
                       "parallelism or add workers"));
}

TEST(SchedulerTest, IsDeterministic) {
  const std::vector<SlotOffer> offers = {Offer("w-1", 3), Offer("w-10", 2), Offer("w-2", 3)};
  absl::StatusOr<Placement> first = PlaceJob("j", Graph({7, 3}), offers, 3);
  ASSERT_OK(first);
  for (int i = 0; i < 5; ++i) {
    absl::StatusOr<Placement> again = PlaceJob("j", Graph({7, 3}), offers, 3);
    ASSERT_OK(again);
    EXPECT_EQ(Layout(*again), Layout(*first));
    EXPECT_EQ(again->slots_per_worker, first->slots_per_worker);
  }
}

TEST(SchedulerTest, CapacityCountsFreeSlotsAndWorkersWithAny) {
  Capacity c = CapacityOf({Offer("w-1", 2), Offer("w-2", 0), Offer("w-3", 1)});
  EXPECT_EQ(c.free_slots, 3);
  EXPECT_EQ(c.free_workers, 2);
}

}  // namespace
}  // namespace sluice::coordinator
