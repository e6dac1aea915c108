#include "operators/watermark_generator.h"

#include <algorithm>

#include "common/status.h"

namespace sluice::ops {

SplitWatermarks::SplitWatermarks(int64_t max_out_of_orderness_ms, int64_t idle_timeout_ms)
    : max_out_of_orderness_ms_(std::max<int64_t>(0, max_out_of_orderness_ms)),
      idle_timeout_nanos_(std::max<int64_t>(0, idle_timeout_ms) * 1'000'000) {}

int SplitWatermarks::AddSplit(int64_t now_nanos) {
  Split s;
  s.last_active_nanos = now_nanos;
  splits_.push_back(s);
  return static_cast<int>(splits_.size()) - 1;
}

int64_t SplitWatermarks::SplitWatermark(int split) const {
  const Split& s = splits_[split];
  if (s.max_timestamp == kNoWatermark) return kNoWatermark;
  int64_t wm;
  if (__builtin_sub_overflow(s.max_timestamp, max_out_of_orderness_ms_ + 1, &wm)) return kNoWatermark;
  return wm;
}

absl::Status SplitWatermarks::EmitIfAdvanced(int64_t step_ms, Output* output) {
  if (idle_) return absl::OkStatus();
  int64_t min = kMaxWatermark;
  bool any = false;
  for (size_t i = 0; i < splits_.size(); ++i) {
    if (splits_[i].idle) continue;
    any = true;
    min = std::min(min, SplitWatermark(static_cast<int>(i)));
  }
  if (!any || min == kNoWatermark) return absl::OkStatus();
  if (watermark_ != kNoWatermark) {
    if (min <= watermark_) return absl::OkStatus();
    const uint64_t advanced = static_cast<uint64_t>(min) - static_cast<uint64_t>(watermark_);
    if (advanced < static_cast<uint64_t>(std::max<int64_t>(step_ms, 1))) return absl::OkStatus();
  }
  watermark_ = min;
  return output->EmitWatermark(min);
}

absl::Status SplitWatermarks::OnPeriodic(int64_t now_nanos, Output* output) {
  bool all_idle = true;
  int64_t min = kMaxWatermark;
  for (size_t i = 0; i < splits_.size(); ++i) {
    Split& s = splits_[i];
    if (s.had_events || s.backlog) {
      s.last_active_nanos = now_nanos;
      s.idle = false;
    } else if (idle_timeout_nanos_ > 0 && !s.idle && now_nanos - s.last_active_nanos >= idle_timeout_nanos_) {
      s.idle = true;
    }
    s.had_events = false;
    s.backlog = false;
    if (s.idle) continue;
    all_idle = false;
    min = std::min(min, SplitWatermark(static_cast<int>(i)));
  }
  if (all_idle) {
    if (idle_) return absl::OkStatus();
    idle_ = true;
    return output->EmitWatermarkStatus(true);
  }
  // An idle output turns active with a record (OnEvent) or an advanced watermark only: a new
  // split without records does not by itself make downstream wait for this subtask.
  if (min <= watermark_) return absl::OkStatus();
  if (idle_) {
    idle_ = false;
    SLUICE_RETURN_IF_ERROR(output->EmitWatermarkStatus(false));
  }
  watermark_ = min;
  return output->EmitWatermark(min);
}

}  // namespace sluice::ops
