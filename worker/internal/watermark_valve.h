#pragma once

#include <cstdint>
#include <vector>

#include "common/watermark.h"

namespace sluice::worker {

// Combines the watermarks and idleness of a task's input channels into the task's input
// watermark (a port of Flink's StatusWatermarkValve).
//
// - The input watermark is the minimum over the active channels; a channel without a watermark
//   yet holds it at kNoWatermark. It only moves forward: a change is reported only when the
//   minimum advances.
// - An idle channel (its producer said so) does not hold the minimum back. When every channel
//   is idle the task is idle: the maximum watermark over the channels is released first (no
//   channel can advance any more), then idleness is reported downstream. A channel that turns
//   active again rejoins the minimum once its watermark has caught up with the input watermark,
//   so a resumed channel never moves it backwards.
// - A channel that ended is left out like an idle one, but does not make the task idle by
//   itself (when every channel has ended, the task ends).
//
// Owned by the task thread; not thread-safe. O(channels) per watermark or status change, so
// use it per control element, never per record.
class WatermarkValve {
 public:
  // What to pass downstream after a change, in this order: `active` (the task was idle and is
  // active again), then the new `watermark()` if `advanced`, then `idle` (the task is now idle).
  struct Changes {
    bool active = false;
    bool advanced = false;
    bool idle = false;
  };

  explicit WatermarkValve(int num_channels);

  // Channel `channel` delivered watermark `watermark_ms`. Ignored when not newer than the
  // channel's previous one, or when the channel is idle or ended.
  Changes OnWatermark(int channel, int64_t watermark_ms);
  // Channel `channel` turned idle (true) or active (false).
  Changes OnStatus(int channel, bool idle);
  // Channel `channel` ended (end of partition).
  Changes OnEnd(int channel);

  // The input watermark: kNoWatermark until every active channel has delivered one.
  int64_t watermark() const { return watermark_; }
  bool idle() const { return idle_; }

 private:
  struct Channel {
    int64_t watermark = kNoWatermark;
    bool active = true;   // neither idle nor ended
    bool ended = false;
    bool aligned = true;  // counted in the minimum (active and caught up)
  };

  bool AnyActive() const;
  // Sets `advanced` when the minimum over aligned channels moved the input watermark forward.
  void AdvanceToMinimum(Changes* changes);
  // Every channel is idle or ended: releases the largest watermark of those not ended.
  void AdvanceToMaximum(Changes* changes);
  // `channel` stopped counting (idle or ended): the minimum may move, or the task turn idle.
  void Leave(int channel, Changes* changes);

  std::vector<Channel> channels_;
  int64_t watermark_ = kNoWatermark;
  bool idle_ = false;
};

}  // namespace sluice::worker
