#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "common/watermark.h"
#include "operators/operator.h"

namespace sluice::ops {

// Event-time watermarks of one source subtask that reads several splits (Kafka partitions,
// datagen sequences): bounded out-of-orderness per split, with idleness, combined over the
// splits (Flink's BoundedOutOfOrdernessWatermarks and WatermarksWithIdleness per split under
// a WatermarkOutputMultiplexer).
//
// - A split's watermark is (largest timestamp seen) - max_out_of_orderness - 1: records up to
//   max_out_of_orderness older than the newest one are not late. None before its first record.
// - A split without records for `idle_timeout` of processing time (0: never) is idle until its
//   next record. Idleness is judged at each OnPeriodic(), so its resolution is the interval.
//   A split whose reader knows it has records not read yet (OnBacklog) is not idle, however
//   long since its last record (a reader that is behind: a slow first fetch, backpressure, a
//   starved thread), and an idle one turns active: a split is idle only when it has nothing to
//   read. This is stricter than Flink's withIdleness, which counts only the time since the last
//   record, whatever the split still has to read.
// - The subtask's watermark is the minimum over its non-idle splits; it is emitted from
//   OnPeriodic() when it advanced, and from EmitIfAdvanced() when it advanced by a given step. When every split is idle, or the subtask has none, the
//   subtask's output is marked idle; the next record makes it active again (OnEvent returns
//   true). A new split without records does not.
//
// Owned by the source's task thread; not thread-safe. OnEvent() is the per-record part: two
// compares and two stores, no allocation, no lock, no clock.
class SplitWatermarks {
 public:
  SplitWatermarks(int64_t max_out_of_orderness_ms, int64_t idle_timeout_ms);

  // Adds a split at processing time `now_nanos` (its idle timer starts then); returns its index.
  int AddSplit(int64_t now_nanos);
  int num_splits() const { return static_cast<int>(splits_.size()); }

  // A record with event time `timestamp_ms` came from split `split`. Returns true when the
  // subtask's output was idle and must be marked active before the record is emitted.
  bool OnEvent(int split, int64_t timestamp_ms) {
    Split& s = splits_[split];
    if (timestamp_ms > s.max_timestamp) s.max_timestamp = timestamp_ms;
    s.had_events = true;
    s.idle = false;
    if (!idle_) return false;
    idle_ = false;
    return true;
  }

  // Split `split` has records its reader has not read yet (or the reader does not know yet
  // whether it has): at the next OnPeriodic() it does not turn idle, an idle one turns active
  // again (its watermark holds the subtask's back; the subtask's output, when idle, turns
  // active with a record or an advanced watermark, as always), and its idle timeout counts from
  // then. Called before each OnPeriodic() for every such split.
  void OnBacklog(int split) { splits_[split].backlog = true; }

  // The periodic step (every watermark interval, and when the source ends): updates idleness
  // at processing time `now_nanos` and emits to `output`, in order, the subtask turning active,
  // its advanced watermark, or its turning idle. Returns the output's status.
  absl::Status OnPeriodic(int64_t now_nanos, Output* output);

  // Between periodic steps: emits the subtask's watermark when it has advanced by `step_ms` or
  // more since the last one emitted (min over the splits not idle at the last OnPeriodic()).
  // A source whose event time runs faster than processing time (a backlog, a generator) would
  // otherwise leave its watermark seconds of event time behind its records between periodic
  // steps, and the event-time operators downstream would keep their state that much longer.
  // Changes no idleness (only OnEvent() and OnPeriodic() do). Returns the output's status.
  absl::Status EmitIfAdvanced(int64_t step_ms, Output* output);

  // The subtask's last emitted watermark (kNoWatermark before the first) and idleness.
  int64_t watermark() const { return watermark_; }
  bool idle() const { return idle_; }
  // A split's own current watermark and idleness (for tests and logs).
  int64_t SplitWatermark(int split) const;
  bool SplitIdle(int split) const { return splits_[split].idle; }

 private:
  struct Split {
    int64_t max_timestamp = kNoWatermark;
    int64_t last_active_nanos = 0;  // when it last had records (or was added)
    bool had_events = false;        // records since the last OnPeriodic()
    bool backlog = false;           // OnBacklog() since the last OnPeriodic()
    bool idle = false;
  };

  const int64_t max_out_of_orderness_ms_;
  const int64_t idle_timeout_nanos_;
  std::vector<Split> splits_;
  int64_t watermark_ = kNoWatermark;
  bool idle_ = false;
};

}  // namespace sluice::ops
