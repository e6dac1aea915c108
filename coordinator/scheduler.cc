#include "coordinator/scheduler.h"

#include "absl/strings/str_cat.h"

namespace sluice::coordinator {

Capacity CapacityOf(const std::vector<SlotOffer>& offers) {
  Capacity c;
  for (const SlotOffer& o : offers) {
    if (o.free_slots <= 0) continue;
    c.free_slots += o.free_slots;
    ++c.free_workers;
  }
  return c;
}

absl::StatusOr<Placement> PlaceJob(const std::string& job_name, const plan::JobGraph& graph,
                                   const std::vector<SlotOffer>& offers, int registered_workers) {
  const int needed = graph.SlotsNeeded();
  const int free_total = CapacityOf(offers).free_slots;
  if (free_total < needed) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "job '", job_name, "' needs ", needed, " slot(s) but the cluster has ", free_total, " free (",
        registered_workers, " worker(s)); lower its parallelism or add workers"));
  }
  // Round-robin over the offers with a free slot left, until every slot has a worker.
  std::vector<const SlotOffer*> slot_worker;
  Placement placement;
  while (static_cast<int>(slot_worker.size()) < needed) {
    for (const SlotOffer& o : offers) {
      if (static_cast<int>(slot_worker.size()) == needed) break;
      int& taken = placement.slots_per_worker[o.worker_id];
      if (o.free_slots - taken > 0) {
        slot_worker.push_back(&o);
        ++taken;
      }
    }
  }
  // Offers that got no slot leave no entry.
  for (auto it = placement.slots_per_worker.begin(); it != placement.slots_per_worker.end();) {
    it = it->second == 0 ? placement.slots_per_worker.erase(it) : std::next(it);
  }
  placement.tasks.assign(graph.vertices.size(), {});
  for (const auto& v : graph.vertices) {
    for (int s = 0; s < v.parallelism; ++s) {
      placement.tasks[v.id].push_back({slot_worker[s]->worker_id, slot_worker[s]->data_address});
    }
  }
  return placement;
}

}  // namespace sluice::coordinator
