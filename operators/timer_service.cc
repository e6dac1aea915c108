#include "operators/timer_service.h"

#include "operators/operator.h"

namespace sluice::ops {

absl::Status TimerService::AdvanceWatermark(int64_t watermark_ms, Operator* op) {
  watermark_ = watermark_ms;  // OnTimer() sees the watermark that fired it
  return Fire(TimeDomain::kEventTime, watermark_ms, op);
}

absl::Status TimerService::FireProcessingTimers(Operator* op) {
  return Fire(TimeDomain::kProcessingTime, CurrentProcessingTime(), op);
}

absl::Status TimerService::Fire(TimeDomain domain, int64_t up_to, Operator* op) {
  if (up_to < backend_->NextTimerLowerBound(domain)) return absl::OkStatus();  // nothing due
  return backend_->FireTimers(domain, up_to, [this, op, domain](int64_t timestamp) {
    return op->OnTimer(timestamp, domain, backend_->CurrentKey());
  });
}

}  // namespace sluice::ops
