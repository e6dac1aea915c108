#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/clock.h"
#include "coordinator/scheduler.h"
#include "grpcpp/grpcpp.h"
#include "proto/control.grpc.pb.h"

namespace sluice::coordinator {

// A registered worker as the coordinator knows it.
struct WorkerEntry {
  std::string id;
  std::string data_address;
  std::string http_address;
  int slots = 0;
  int slots_used = 0;
  int64_t last_heartbeat_nanos = 0;
  std::shared_ptr<grpc::Channel> channel;  // watched: a refused connection means it is gone
  std::shared_ptr<proto::Worker::Stub> stub;
};

// A worker taken out of the registry because it stopped answering, and why.
struct LostWorker {
  WorkerEntry worker;
  std::string why;
};

// The workers of the cluster: registration (ids w-1, w-2, ... never reused), heartbeats,
// liveness (a worker whose heartbeats stop for the timeout is lost; one that is late and whose
// address refuses connections is lost at once; one that missed two heartbeats is suspect and
// offers no slots) and slot accounting.
//
// Not thread-safe, and makes no calls: the Coordinator owns it and calls every method under its
// mu_ (gRPC callback threads, the monitor and the dispatcher thread); times come from `clock`.
// A worker that re-registers (after a coordinator restart, or a restart of its own) gets a new
// id; its old entry, if any, stays until its heartbeats time out.
class WorkerRegistry {
 public:
  // REQUIRES: `clock` outlives this; heartbeat_timeout_ms > 0.
  WorkerRegistry(Clock* clock, int64_t heartbeat_timeout_ms);

  // The interval workers are asked to heartbeat at: a sixth of the timeout, at least 100 ms.
  int64_t HeartbeatIntervalNanos() const;

  // kInvalidArgument for a request without slots or without a data address.
  static absl::Status Validate(const proto::RegisterWorkerRequest& req);
  // Adds a worker (its heartbeat counts as now) and returns it. `channel` may be null (tests):
  // then it has no stub and is never found unreachable.
  // REQUIRES: Validate(req) is OK.
  const WorkerEntry& Register(const proto::RegisterWorkerRequest& req, std::shared_ptr<grpc::Channel> channel);

  // Records a heartbeat of worker `id` at `data_address`. False if no such worker is registered
  // there (unknown, already lost, or an id of an earlier coordinator now naming another worker):
  // it must register again.
  bool Heartbeat(const std::string& id, const std::string& data_address);

  // The worker, or null.
  const WorkerEntry* Find(const std::string& id) const;
  bool Contains(const std::string& id) const { return workers_.count(id) > 0; }
  // Removes a worker and returns it; nullopt if it is not registered (already lost).
  std::optional<WorkerEntry> Remove(const std::string& id);

  // Takes out every worker that is lost as of now: no heartbeat for the timeout, or a heartbeat
  // late by more than an interval (+100 ms) while `unreachable(worker)` says its address refuses
  // connections (only asked for late workers, with a channel). Each worker is returned once.
  std::vector<LostWorker> TakeLost(const std::function<bool(const WorkerEntry&)>& unreachable);

  // Missed two heartbeats: maybe dead, not yet declared lost. Nothing is scheduled on it (a
  // deployment to a dead worker would fail the restart and use an attempt).
  bool Suspect(const WorkerEntry& w) const;
  // The free slots of every worker that is not suspect, in worker-id order.
  std::vector<SlotOffer> FreeSlots() const;
  // Marks slots as used by a placement / free again (workers no longer registered are skipped).
  void Acquire(const std::map<std::string, int>& slots_per_worker);
  void Release(const std::map<std::string, int>& slots_per_worker);

  size_t size() const { return workers_.size(); }
  const std::map<std::string, WorkerEntry>& workers() const { return workers_; }

 private:
  Clock* const clock_;
  const int64_t timeout_nanos_;
  int64_t next_worker_ = 1;
  std::map<std::string, WorkerEntry> workers_;
};

}  // namespace sluice::coordinator
