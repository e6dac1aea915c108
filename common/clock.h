#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>

namespace sluice {

// Source of time. Logic never reads the wall clock directly; it is handed a Clock so tests
// can drive time. Implementations are thread-safe.
class Clock {
 public:
  virtual ~Clock() = default;
  // Monotonic nanoseconds (for timeouts and rates).
  virtual int64_t NowNanos() const = 0;
  // Wall-clock milliseconds since the Unix epoch (for timestamps shown to people).
  virtual int64_t WallMillis() const = 0;
  // Sleeps (or, for a fake clock, advances) for `nanos`.
  virtual void SleepNanos(int64_t nanos) = 0;

  // The process-wide real clock.
  static Clock* Real();
};

class RealClock final : public Clock {
 public:
  int64_t NowNanos() const override {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }
  int64_t WallMillis() const override {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }
  void SleepNanos(int64_t nanos) override {
    if (nanos > 0) std::this_thread::sleep_for(std::chrono::nanoseconds(nanos));
  }
};

inline Clock* Clock::Real() {
  static RealClock* clock = new RealClock();
  return clock;
}

// A clock that moves only when told to. Thread-safe.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(int64_t start_nanos = 1'000'000'000) : now_(start_nanos) {}
  int64_t NowNanos() const override { return now_.load(); }
  int64_t WallMillis() const override { return now_.load() / 1'000'000; }
  void SleepNanos(int64_t nanos) override { AdvanceNanos(nanos); }
  void AdvanceNanos(int64_t nanos) { now_.fetch_add(nanos); }

 private:
  std::atomic<int64_t> now_;
};

}  // namespace sluice
