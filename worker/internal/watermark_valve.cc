#include "worker/internal/watermark_valve.h"

#include <algorithm>

namespace sluice::worker {

WatermarkValve::WatermarkValve(int num_channels) : channels_(num_channels) {}

bool WatermarkValve::AnyActive() const {
  for (const Channel& c : channels_) {
    if (c.active) return true;
  }
  return false;
}

void WatermarkValve::AdvanceToMinimum(Changes* changes) {
  int64_t min = kMaxWatermark;
  bool any = false;
  for (const Channel& c : channels_) {
    if (!c.aligned) continue;
    min = std::min(min, c.watermark);
    any = true;
  }
  if (any && min > watermark_) {
    watermark_ = min;
    changes->advanced = true;
  }
}

void WatermarkValve::AdvanceToMaximum(Changes* changes) {
  int64_t max = kNoWatermark;
  for (const Channel& c : channels_) {
    if (!c.ended) max = std::max(max, c.watermark);
  }
  if (max > watermark_) {
    watermark_ = max;
    changes->advanced = true;
  }
}

void WatermarkValve::Leave(int channel, Changes* changes) {
  Channel& c = channels_[channel];
  const bool held_minimum = c.aligned && c.watermark == watermark_;
  c.active = false;
  c.aligned = false;
  if (AnyActive()) {
    // Only the channel that held the minimum can have been holding it back.
    if (held_minimum) AdvanceToMinimum(changes);
    return;
  }
  bool all_ended = true;
  for (const Channel& other : channels_) all_ended &= other.ended;
  if (all_ended || idle_) return;
  // The last active channel went: nothing will advance the minimum any more.
  if (held_minimum) AdvanceToMaximum(changes);
  idle_ = true;
  changes->idle = true;
}

WatermarkValve::Changes WatermarkValve::OnWatermark(int channel, int64_t watermark_ms) {
  Changes changes;
  Channel& c = channels_[channel];
  if (!c.active || watermark_ms <= c.watermark) return changes;
  c.watermark = watermark_ms;
  if (!c.aligned && watermark_ms >= watermark_) c.aligned = true;
  AdvanceToMinimum(&changes);
  return changes;
}

WatermarkValve::Changes WatermarkValve::OnStatus(int channel, bool idle) {
  Changes changes;
  Channel& c = channels_[channel];
  if (c.ended) return changes;
  if (idle && c.active) {
    Leave(channel, &changes);
  } else if (!idle && !c.active) {
    c.active = true;
    // Behind the input watermark: rejoin the minimum once caught up (see OnWatermark).
    c.aligned = c.watermark >= watermark_;
    if (idle_) {
      idle_ = false;
      changes.active = true;
    }
  }
  return changes;
}

WatermarkValve::Changes WatermarkValve::OnEnd(int channel) {
  Changes changes;
  Channel& c = channels_[channel];
  if (c.ended) return changes;
  const bool was_active = c.active;
  c.ended = true;
  if (was_active) {
    Leave(channel, &changes);
  } else {
    c.aligned = false;
  }
  return changes;
}

}  // namespace sluice::worker
