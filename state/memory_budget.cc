#include "state/memory_budget.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iterator>
#include <limits>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "rocksdb/cache.h"
#include "rocksdb/write_buffer_manager.h"

namespace sluice::state {
namespace {

std::string ReadWholeFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return "";
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// A limit file's content: bytes, or 0 for "max", garbage, or cgroup v1's "unlimited" (INT64_MAX
// rounded down to a page: anything from 2^62 up).
uint64_t ParseLimit(absl::string_view text) {
  text = absl::StripAsciiWhitespace(text);
  uint64_t v = 0;
  if (text.empty() || text == "max" || !absl::SimpleAtoi(text, &v)) return 0;
  if (v >= (uint64_t{1} << 62)) return 0;
  return v;
}

// The first readable limit among `files` (0: none).
uint64_t FirstLimit(const std::vector<std::string>& files) {
  for (const std::string& f : files) {
    std::string content = ReadWholeFile(f);
    if (!content.empty()) return ParseLimit(content);
  }
  return 0;
}

}  // namespace

absl::StatusOr<uint64_t> ParseMemorySize(absl::string_view text) {
  absl::string_view t = absl::StripAsciiWhitespace(text);
  auto error = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("memory size '", text, "': ", why,
                                                   " (examples: 512MiB, 2GiB, 1073741824)"));
  };
  if (t.empty()) return error("empty");
  size_t n = 0;
  while (n < t.size() && (absl::ascii_isdigit(t[n]) || t[n] == '.')) ++n;
  double number = 0;
  if (n == 0 || !absl::SimpleAtod(t.substr(0, n), &number)) return error("no number at position 0");
  absl::string_view unit = absl::StripLeadingAsciiWhitespace(t.substr(n));
  struct Unit {
    absl::string_view name;
    double factor;
  };
  static constexpr Unit kUnits[] = {
      {"", 1},          {"B", 1},
      {"KiB", 1024.0},  {"Ki", 1024.0},  {"KB", 1e3},  {"k", 1e3},  {"K", 1e3},
      {"MiB", 1048576.0}, {"Mi", 1048576.0}, {"MB", 1e6}, {"M", 1e6},
      {"GiB", 1073741824.0}, {"Gi", 1073741824.0}, {"GB", 1e9}, {"G", 1e9},
      {"TiB", 1099511627776.0}, {"Ti", 1099511627776.0}, {"TB", 1e12}, {"T", 1e12},
  };
  for (const Unit& u : kUnits) {
    if (unit != u.name) continue;
    const double bytes = std::floor(number * u.factor);
    if (!(bytes < 9.2e18)) return error("too large");
    return static_cast<uint64_t>(bytes);
  }
  return error(absl::StrCat("unknown unit '", unit, "' at position ", t.size() - unit.size()));
}

uint64_t CgroupMemoryLimit(const std::string& proc_self_cgroup, const std::string& cgroup_root) {
  for (absl::string_view line : absl::StrSplit(proc_self_cgroup, '\n', absl::SkipEmpty())) {
    // hierarchy-id:controller-list:path
    std::vector<absl::string_view> f = absl::StrSplit(line, absl::MaxSplits(':', 2));
    if (f.size() != 3) continue;
    std::string path(f[2]);
    if (path == "/") path.clear();
    if (f[0] == "0" && f[1].empty()) {  // cgroup v2
      uint64_t limit = FirstLimit({absl::StrCat(cgroup_root, path, "/memory.max"),
                                   absl::StrCat(cgroup_root, "/memory.max")});
      if (limit != 0) return limit;
      continue;
    }
    for (absl::string_view c : absl::StrSplit(f[1], ',')) {
      if (c != "memory") continue;
      uint64_t limit = FirstLimit({absl::StrCat(cgroup_root, "/memory", path, "/memory.limit_in_bytes"),
                                   absl::StrCat(cgroup_root, "/memory/memory.limit_in_bytes")});
      if (limit != 0) return limit;
    }
  }
  return 0;
}

uint64_t MachineMemory(const std::string& meminfo) {
  for (absl::string_view line : absl::StrSplit(meminfo, '\n', absl::SkipEmpty())) {
    if (!absl::ConsumePrefix(&line, "MemTotal:")) continue;
    line = absl::StripAsciiWhitespace(line);
    if (!absl::ConsumeSuffix(&line, "kB")) return 0;
    uint64_t kb = 0;
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(line), &kb)) return 0;
    return kb * 1024;
  }
  return 0;
}

uint64_t DefaultStateMemoryFrom(uint64_t machine_bytes, uint64_t cgroup_limit_bytes) {
  uint64_t available = machine_bytes;
  if (cgroup_limit_bytes != 0 && (available == 0 || cgroup_limit_bytes < available)) {
    available = cgroup_limit_bytes;
  }
  if (available == 0) available = uint64_t{1} << 30;
  return static_cast<uint64_t>(static_cast<double>(available) * kDefaultStateMemoryFraction);
}

uint64_t DefaultStateMemory(uint64_t memory_limit) {
  if (memory_limit != 0) return DefaultStateMemoryFrom(memory_limit, 0);
  return DefaultStateMemoryFrom(MachineMemory(ReadWholeFile("/proc/meminfo")),
                                CgroupMemoryLimit(ReadWholeFile("/proc/self/cgroup"), "/sys/fs/cgroup"));
}

StateMemory::StateMemory(uint64_t budget_bytes, int slots)
    : budget_bytes_(budget_bytes), slots_(std::max(slots, 1)) {
  const size_t rocksdb_bytes = std::max<uint64_t>(budget_bytes_ / 2, 1 << 20);
  block_cache_ = rocksdb::NewLRUCache(rocksdb_bytes);
  write_buffer_manager_ =
      std::make_shared<rocksdb::WriteBufferManager>(rocksdb_bytes / 2, block_cache_);
}

void StateMemory::Configure(int keyed_operators, StateBackendOptions* o) const {
  const uint64_t share = slot_bytes() / std::max(keyed_operators, 1);
  o->cache_bytes = share / 2;
  o->shared_block_cache = block_cache_;
  o->write_buffer_manager = write_buffer_manager_;
  // A memtable of a quarter of the backend's share (two may exist: the RocksDB half), between
  // 1 MiB and 64 MiB; the write buffer manager caps their sum over the worker anyway.
  o->write_buffer_bytes = std::clamp<uint64_t>(share / 4, 1 << 20, 64 << 20);
  o->block_cache_bytes = share / 2;
}

}  // namespace sluice::state
