#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "plan/job_graph.h"

namespace sluice::coordinator {

// Free slots a worker offers to a placement.
struct SlotOffer {
  std::string worker_id;
  std::string data_address;
  int free_slots = 0;
};

// Where a subtask runs.
struct TaskSlot {
  std::string worker_id;
  std::string data_address;
};

// A job's placement: tasks[vertex][subtask], and how many slots it takes on each worker.
struct Placement {
  std::vector<std::vector<TaskSlot>> tasks;
  std::map<std::string, int> slots_per_worker;
};

// Free capacity of a set of offers: slots, and workers with at least one.
struct Capacity {
  int free_slots = 0;
  int free_workers = 0;
};
Capacity CapacityOf(const std::vector<SlotOffer>& offers);

// The scheduler: a pure function (no state, no clock, no I/O; callable from any thread) from
// the free slots of the cluster and a job graph to a placement. Slot sharing, as Flink's: the
// job needs as many slots as its widest vertex, and subtask i of every vertex goes to slot i.
// Slots are spread over the offers round-robin, in the order given (the registry gives them in
// worker-id order), so the same offers always give the same placement: a job of 4 slots on two
// workers of 4 free slots each takes 2 on each.
//
// kResourceExhausted when the offers hold fewer free slots than the job needs, with the message
// "job '<name>' needs N slot(s) but the cluster has M free (W worker(s)); lower its parallelism
// or add workers" (`registered_workers`: W, every registered worker, also those offering none).
absl::StatusOr<Placement> PlaceJob(const std::string& job_name, const plan::JobGraph& graph,
                                   const std::vector<SlotOffer>& offers, int registered_workers);

}  // namespace sluice::coordinator
