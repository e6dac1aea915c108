#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace sluice {

// A monotonically increasing count with one writer thread. Add() is a plain load and store
// (no locked instruction), so the owning task thread can count per record; any thread may
// read Value().
class Counter {
 public:
  void Add(uint64_t n = 1) { v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed); }
  uint64_t Value() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> v_{0};
};

// A value that can go up and down, set by one or more threads.
class Gauge {
 public:
  void Set(double v) { v_.store(v, std::memory_order_relaxed); }
  double Value() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> v_{0};
};

using Labels = std::vector<std::pair<std::string, std::string>>;

// All metrics of one process, rendered in the Prometheus text format. Registration and
// rendering take a lock; updating a registered Counter or Gauge does not. Metrics carry an
// owner tag so a task can remove its own when it goes away. Callback gauges run without the
// registry lock held, so they may take their owner's locks. Thread-safe.
class MetricsRegistry {
 public:
  std::shared_ptr<Counter> AddCounter(const std::string& name, const std::string& help,
                                      Labels labels, const std::string& owner = "");
  std::shared_ptr<Gauge> AddGauge(const std::string& name, const std::string& help, Labels labels,
                                  const std::string& owner = "");
  // A gauge whose value is computed when rendered. `fn` must be thread-safe.
  void AddCallbackGauge(const std::string& name, const std::string& help, Labels labels,
                        std::function<double()> fn, const std::string& owner = "");
  // Removes every metric registered with `owner`.
  void RemoveOwner(const std::string& owner);

  std::string RenderPrometheus() const;

 private:
  struct Entry {
    std::string name;
    std::string help;
    bool is_counter;
    Labels labels;
    std::string owner;
    std::shared_ptr<Counter> counter;
    std::shared_ptr<Gauge> gauge;
    std::function<double()> fn;
  };
  mutable absl::Mutex mu_;
  std::vector<Entry> entries_ ABSL_GUARDED_BY(mu_);
};

}  // namespace sluice
