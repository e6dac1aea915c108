#pragma once

// Window assignment, as Flink's WindowAssigners: which time windows a record's timestamp
// belongs to, and how session windows merge. Pure functions without state, shared by the
// `window` operator and the window joins; `ParseWindowSpec` reads the window options
// (`tumble`, `hop`, `session`, `offset`) the same way for every operator that has them.
//
// A window is the half-open interval [start, end) of milliseconds; its last timestamp
// (Flink's maxTimestamp) is end - 1, which is when it fires and the event time of its result.
// Windows whose start or end would not fit in an int64 do not exist: a record whose windows
// fall outside [INT64_MIN, INT64_MAX] gets none of them (see AssignWindows).

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "plan/option_parsing.h"
#include "yaml-cpp/yaml.h"

namespace sluice::ops {

// [start, end) in milliseconds (event time or processing time). REQUIRES: start < end.
struct TimeWindow {
  int64_t start = 0;
  int64_t end = 0;

  // The last timestamp inside the window (Flink's maxTimestamp()).
  int64_t max_timestamp() const { return end - 1; }
  // Whether the two windows overlap or touch ([0,5) and [5,9) do): the session merge rule
  // (Flink's TimeWindow.intersects()).
  bool OverlapsOrTouches(const TimeWindow& other) const {
    return start <= other.end && end >= other.start;
  }
  TimeWindow Cover(const TimeWindow& other) const {
    return {start < other.start ? start : other.start, end > other.end ? end : other.end};
  }
  bool operator==(const TimeWindow& o) const { return start == o.start && end == o.end; }
  bool operator!=(const TimeWindow& o) const { return !(*this == o); }
  bool operator<(const TimeWindow& o) const {
    return start != o.start ? start < o.start : end < o.end;
  }
};

// The windows of an operator, as written in its options:
//   tumble: {size: 1m}              (or `tumble: 1m`)
//   hop: {size: 10m, slide: 1m}
//   session: {gap: 30s}             (or `session: 30s`)
//   offset: 15s                     (tumble and hop only; |offset| < slide, as Flink)
struct WindowSpec {
  enum class Kind { kTumble, kHop, kSession };
  Kind kind = Kind::kTumble;
  int64_t size_ms = 0;    // tumble and hop (hop: the window length)
  int64_t slide_ms = 0;   // hop; == size_ms for tumble
  int64_t gap_ms = 0;     // session
  int64_t offset_ms = 0;  // tumble and hop

  bool merging() const { return kind == Kind::kSession; }
  // The most windows one record can belong to (ceil(size / slide) for hop; 1 otherwise).
  int64_t MaxWindowsPerRecord() const;
};

// At most this many hopping windows per record (size / slide), so that a typo cannot make
// every record update millions of windows.
inline constexpr int64_t kMaxWindowsPerRecord = 1000;

// The window options of `config` (an operator's options mapping). Exactly one of `tumble`,
// `hop`, `session` must be present. kInvalidArgument, positioned at the offending node, for
// a missing or doubled kind, unknown keys, non-positive sizes, slide > size, an offset with
// |offset| >= slide (or on session windows), or more than kMaxWindowsPerRecord windows per
// record. The keys it reads are kWindowOptionKeys.
absl::StatusOr<WindowSpec> ParseWindowSpec(const plan::ErrorContext& ec, const YAML::Node& config);
inline constexpr const char* kWindowOptionKeys[] = {"tumble", "hop", "session", "offset"};

// The start of the window of length `size` (windows aligned on `offset`) that holds `ts`:
// ts - ((ts - offset) mod size), with a mathematical (non-negative) mod, so correct for
// negative timestamps (Flink's TimeWindow.getWindowStartWithOffset). The result may lie below
// INT64_MIN for timestamps near it; it is computed in 128 bits and returned as such.
// REQUIRES: size > 0.
__int128 WindowStart(int64_t ts, int64_t offset, int64_t size);

// Replaces `*out` with the windows `ts` belongs to, in ascending order of start:
// - tumble: the one window [WindowStart(ts, offset, size), + size);
// - hop: every window [start, start + size) with start aligned on slide and offset and
//   ts - size < start <= ts (Flink's SlidingEventTimeWindows);
// - session: [ts, ts + gap) (merged by MergeSession).
// Windows that do not fit in int64 are left out (only for timestamps within a window length
// of INT64_MIN or INT64_MAX). Reuses `*out`'s capacity (no allocation once warm).
void AssignWindows(const WindowSpec& spec, int64_t ts, std::vector<TimeWindow>* out);

// Session merging for one key (Flink's MergingWindowSet with TimeWindow.mergeWindows): given
// that key's open sessions `open` (sorted by start, pairwise neither overlapping nor touching)
// and a new record's window `w`, returns the window covering `w` and every open session that
// overlaps or touches it (transitively: a record that bridges two sessions merges both), and
// replaces `*absorbed` with those open sessions, in order. When `*absorbed` is empty the result
// is `w` itself (a new session); when it is one session that already covers `w`, the result is
// that session unchanged.
TimeWindow MergeSession(absl::Span<const TimeWindow> open, const TimeWindow& w,
                        std::vector<TimeWindow>* absorbed);

}  // namespace sluice::ops
