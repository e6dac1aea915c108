#include "coordinator/worker_registry.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/logging.h"

namespace sluice::coordinator {

WorkerRegistry::WorkerRegistry(Clock* clock, int64_t heartbeat_timeout_ms)
    : clock_(clock), timeout_nanos_(heartbeat_timeout_ms * 1'000'000) {}

int64_t WorkerRegistry::HeartbeatIntervalNanos() const {
  return std::max<int64_t>(100, timeout_nanos_ / 1'000'000 / 6) * 1'000'000;
}

absl::Status WorkerRegistry::Validate(const proto::RegisterWorkerRequest& req) {
  if (req.slots() <= 0) return absl::InvalidArgumentError("a worker must offer at least one slot");
  if (req.data_address().empty()) return absl::InvalidArgumentError("data_address is required");
  return absl::OkStatus();
}

const WorkerEntry& WorkerRegistry::Register(const proto::RegisterWorkerRequest& req,
                                            std::shared_ptr<grpc::Channel> channel) {
  WorkerEntry w;
  w.id = absl::StrCat("w-", next_worker_++);
  w.data_address = req.data_address();
  w.http_address = req.http_address();
  w.slots = req.slots();
  w.last_heartbeat_nanos = clock_->NowNanos();
  if (channel != nullptr) w.stub = proto::Worker::NewStub(channel);
  w.channel = std::move(channel);
  spdlog::info("worker {} registered: {} with {} slots", w.id, w.data_address, w.slots);
  const std::string id = w.id;
  return workers_[id] = std::move(w);
}

bool WorkerRegistry::Heartbeat(const std::string& id, const std::string& data_address) {
  auto it = workers_.find(id);
  if (it == workers_.end() || it->second.data_address != data_address) return false;
  it->second.last_heartbeat_nanos = clock_->NowNanos();
  return true;
}

const WorkerEntry* WorkerRegistry::Find(const std::string& id) const {
  auto it = workers_.find(id);
  return it == workers_.end() ? nullptr : &it->second;
}

std::optional<WorkerEntry> WorkerRegistry::Remove(const std::string& id) {
  auto it = workers_.find(id);
  if (it == workers_.end()) return std::nullopt;
  WorkerEntry w = std::move(it->second);
  workers_.erase(it);
  return w;
}

std::vector<LostWorker> WorkerRegistry::TakeLost(const std::function<bool(const WorkerEntry&)>& unreachable) {
  const int64_t now = clock_->NowNanos();
  std::vector<std::pair<std::string, std::string>> lost;
  for (const auto& [id, w] : workers_) {
    const int64_t age = now - w.last_heartbeat_nanos;
    if (age > timeout_nanos_) {
      lost.push_back({id, absl::StrFormat("no heartbeat for %.1f s", age / 1e9)});
    } else if (age > HeartbeatIntervalNanos() + 100'000'000 && w.channel != nullptr && unreachable(w)) {
      // A heartbeat is late and the worker's port refuses connections: the process is gone
      // (kill -9 of an idle worker), no need to wait for the heartbeat timeout.
      lost.push_back({id, absl::StrFormat("unreachable (its address refuses connections; last heartbeat "
                                          "%.1f s ago)", age / 1e9)});
    }
  }
  std::vector<LostWorker> taken;
  for (auto& [id, why] : lost) taken.push_back({*Remove(id), std::move(why)});
  return taken;
}

bool WorkerRegistry::Suspect(const WorkerEntry& w) const {
  return clock_->NowNanos() - w.last_heartbeat_nanos > 2 * HeartbeatIntervalNanos();
}

std::vector<SlotOffer> WorkerRegistry::FreeSlots() const {
  std::vector<SlotOffer> offers;
  for (const auto& [id, w] : workers_) {
    if (w.slots > w.slots_used && !Suspect(w)) offers.push_back({id, w.data_address, w.slots - w.slots_used});
  }
  return offers;
}

void WorkerRegistry::Acquire(const std::map<std::string, int>& slots_per_worker) {
  for (const auto& [id, n] : slots_per_worker) {
    auto it = workers_.find(id);
    if (it != workers_.end()) it->second.slots_used += n;
  }
}

void WorkerRegistry::Release(const std::map<std::string, int>& slots_per_worker) {
  for (const auto& [id, n] : slots_per_worker) {
    auto it = workers_.find(id);
    if (it != workers_.end()) it->second.slots_used -= n;
  }
}

}  // namespace sluice::coordinator
