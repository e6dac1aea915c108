#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "state/keyed_state_backend.h"

namespace sluice::state {

// The share of the memory available to a worker (its container's cgroup limit, else the
// machine's memory) that keyed state gets by default, like Flink's
// taskmanager.memory.managed.fraction.
inline constexpr double kDefaultStateMemoryFraction = 0.4;

// Parses a memory size: a non-negative number with an optional unit, binary (KiB, MiB, GiB,
// TiB, or Ki, Mi, Gi, Ti as Kubernetes writes them) or decimal (KB, MB, GB, TB, or k/K, M, G,
// T as in Kubernetes), or B / none for bytes; "1.5GiB" is allowed. Returns kInvalidArgument naming the text and
// the reason (empty, no number, unknown unit, too large).
absl::StatusOr<uint64_t> ParseMemorySize(absl::string_view text);

// The memory limit of the cgroup this process is in, in bytes; 0 when there is none (not in a
// cgroup, "max" in cgroup v2, the "unlimited" page-rounded INT64_MAX of cgroup v1, or the files
// cannot be read). `proc_self_cgroup` is the content of /proc/self/cgroup; `cgroup_root` the
// mount point of the cgroup file system (/sys/fs/cgroup; v1 controllers are directories under
// it). cgroup v2 ("0::<path>") reads <root><path>/memory.max, then <root>/memory.max (a
// container whose cgroup namespace hides its own path); v1 (a "memory" controller line) reads
// memory/<path>/memory.limit_in_bytes, then memory/memory.limit_in_bytes.
uint64_t CgroupMemoryLimit(const std::string& proc_self_cgroup, const std::string& cgroup_root);
// The machine's memory (MemTotal of `meminfo`, the content of /proc/meminfo), in bytes; 0 if
// it is not there.
uint64_t MachineMemory(const std::string& meminfo);

// kDefaultStateMemoryFraction of `memory_limit` (the worker's --memory-limit, e.g. the
// container's limit from Kubernetes' downward API) or, when that is 0, of the smaller of the
// machine's memory and the cgroup limit (0: none), read from /proc/self/cgroup, /sys/fs/cgroup
// and /proc/meminfo. Falls back to 1 GiB (whose share is 400 MiB) when neither can be read.
uint64_t DefaultStateMemory(uint64_t memory_limit = 0);
// The same from given figures (0 = unknown / none).
uint64_t DefaultStateMemoryFrom(uint64_t machine_bytes, uint64_t cgroup_limit_bytes);

// One worker's memory budget for keyed state, and what its backends share.
//
// The budget is divided equally among the worker's slots; within a slot among the keyed
// operators of the job (with slot sharing a slot holds one subtask of every vertex). Half of a
// backend's share is its write-back cache; the other half is RocksDB's, in one LRU block cache
// shared by every backend of the worker (capacity: half the budget), to which a shared
// WriteBufferManager charges the memtables (at most half of the RocksDB half), as Flink shares
// one cache and write buffer manager among the RocksDB instances of a slot.
//
// Thread-safe after construction (RocksDB's cache and write buffer manager are).
class StateMemory {
 public:
  // REQUIRES: slots >= 1.
  StateMemory(uint64_t budget_bytes, int slots);

  uint64_t budget_bytes() const { return budget_bytes_; }
  uint64_t slot_bytes() const { return budget_bytes_ / slots_; }
  // Sets the cache and RocksDB memory of `o` for one of `keyed_operators` keyed operators in a
  // slot (values < 1 count as 1).
  void Configure(int keyed_operators, StateBackendOptions* o) const;

 private:
  const uint64_t budget_bytes_;
  const int slots_;
  std::shared_ptr<rocksdb::Cache> block_cache_;
  std::shared_ptr<rocksdb::WriteBufferManager> write_buffer_manager_;
};

}  // namespace sluice::state
