#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "common/clock.h"
#include "common/watermark.h"
#include "state/keyed_state_backend.h"

namespace sluice::ops {

class Operator;

// The two notions of time a timer can be set in.
using TimeDomain = state::TimerDomain;

// Timers of one keyed operator subtask: event-time and processing-time timers per key, kept in
// its keyed state backend, so they are checkpointed, restored and rescaled with their key
// groups like the rest of the keyed state (Flink's InternalTimerService).
//
// The operator registers and deletes timers for the backend's current key (the key of the
// record in Process(), or of the timer in OnTimer()); registering the same (key, timestamp,
// domain) twice keeps one timer. The task fires them on the operator's OnTimer(), with the
// timer's key current:
// - event time: AdvanceWatermark(), when the watermark reaches a timer's timestamp
//   (timestamp <= watermark), before the operator sees the watermark;
// - processing time (Clock::WallMillis(), so a fake clock drives it in tests):
//   FireProcessingTimers(), from the task's loop once NextProcessingTime() has come.
// Timers fire in timestamp order; timers registered by OnTimer() that are already due fire in
// the same call. A deleted timer never fires.
//
// Threading: the task thread only, like the operator and the backend.
class TimerService {
 public:
  TimerService(state::KeyedStateBackend* backend, Clock* clock) : backend_(backend), clock_(clock) {}

  // Operator side, for the current key. Errors come from the backend (kUnavailable).
  absl::Status RegisterEventTimeTimer(int64_t timestamp_ms) {
    return backend_->RegisterTimer(TimeDomain::kEventTime, timestamp_ms);
  }
  absl::Status RegisterProcessingTimeTimer(int64_t timestamp_ms) {
    return backend_->RegisterTimer(TimeDomain::kProcessingTime, timestamp_ms);
  }
  absl::Status DeleteEventTimeTimer(int64_t timestamp_ms) {
    return backend_->DeleteTimer(TimeDomain::kEventTime, timestamp_ms);
  }
  absl::Status DeleteProcessingTimeTimer(int64_t timestamp_ms) {
    return backend_->DeleteTimer(TimeDomain::kProcessingTime, timestamp_ms);
  }
  // The last watermark passed to AdvanceWatermark() (kNoWatermark before the first).
  int64_t CurrentWatermark() const { return watermark_; }
  int64_t CurrentProcessingTime() const { return clock_->WallMillis(); }

  // Task side. Fires the event-time timers at or before `watermark_ms` on `op`.
  absl::Status AdvanceWatermark(int64_t watermark_ms, Operator* op);
  // Fires the processing-time timers at or before CurrentProcessingTime() on `op`.
  absl::Status FireProcessingTimers(Operator* op);
  // When the next processing-time timer may be due (a lower bound; INT64_MAX: none).
  int64_t NextProcessingTime() const {
    return backend_->NextTimerLowerBound(TimeDomain::kProcessingTime);
  }

 private:
  absl::Status Fire(TimeDomain domain, int64_t up_to, Operator* op);

  state::KeyedStateBackend* const backend_;
  Clock* const clock_;
  int64_t watermark_ = kNoWatermark;
};

}  // namespace sluice::ops
