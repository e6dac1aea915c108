#pragma once

#include <cstdint>
#include <deque>
#include <limits>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/optional.h"
#include "common/clock.h"
#include "plan/job_spec.h"
#include "worker/internal/input_gate.h"

namespace sluice::worker {

// Barrier handling of one input task (a port of Flink's CheckpointBarrierHandler family):
// the task feeds it every item it takes from its input gate, and it says what to do with it.
//
// Aligned checkpoints: when the first barrier of checkpoint N arrives on a channel, that channel
// is blocked: its later items are held back (stashed) until every channel has delivered barrier
// N or ended. Then the task snapshots N, and the held-back items are replayed, in arrival order,
// before the gate is polled again (NextReplay()). A barrier of a newer checkpoint arriving while
// N is still in progress abandons N (its barriers cannot all arrive any more: the coordinator
// gave it up): held-back items are released for replay and the newer one starts.
// End of partition counts as a barrier for every checkpoint that follows.
//
// Unaligned checkpoints: a priority barrier (sent without credit, see
// ChannelWriter::SendPriority) is announced by the gate ahead of its queue, with copies of the
// items of its channel it overtook. In mode kUnaligned the first announcement of N makes the
// task snapshot at once; the in-flight input of N is then recorded: the overtaken items of each
// channel's announcement, and every item a channel delivers after the snapshot and before its
// announcement. When every channel has announced N (or ended), the recorded items are complete
// (Action::complete, TakeInputState()). In mode kAuto a priority checkpoint is first aligned and
// switches to unaligned when the checkpoint has waited longer than the timeout (counted from its
// start: the earliest of (arrival - Barrier::waited_ms) over its barriers and announcements;
// OnTimer()); items processed while aligning are not recorded. A source's barrier in kAuto, or
// one a task forwards after aligning, comes in place (`timeoutable`: it may go unaligned; the
// gate announces it on arrival like a priority one, which starts the timer), or, converted by
// its sender after the timeout, with priority and `timed_out`: its announcement switches to
// unaligned at once. A barrier sent with neither (savepoints) is always aligned.
//
// Owned by the task thread; not thread-safe, no threads of its own. Time (alignment duration,
// the auto timeout) comes from the Clock given at construction.
class BarrierHandler {
 public:
  using Mode = plan::CheckpointConfig::Mode;

  // What the task does with one item (see OnItem()).
  struct Action {
    // The item was held back (OnItem() moved it out): do nothing with it now; it comes back
    // through NextReplay() and its credit is returned then.
    bool held = false;
    // Pass the item to the operators (records, watermarks, watermark status, end of
    // partition); barriers and announcements are consumed here.
    bool process = false;
    // > 0: after processing the item (and returning its credit), snapshot this checkpoint and
    // forward its barrier.
    int64_t snapshot = 0;
    // ... taken unaligned: its in-flight input is complete only at `complete`.
    bool unaligned = false;
    // ... its barriers take no credit (forward them with priority too).
    bool priority = false;
    // ... how long its alignment took (first barrier to snapshot), ms.
    int64_t alignment_ms = 0;
    // ... when it started, as its barriers tell (Clock nanoseconds): the earliest of each
    // barrier's arrival less what it says it waited before (Barrier::waited_ms).
    int64_t origin_nanos = 0;
    // > 0: the in-flight input of this unaligned checkpoint is recorded (TakeInputState()).
    int64_t complete = 0;
    // > 0: this checkpoint was abandoned for a newer one (if it was snapshotted unaligned, its
    // acknowledgement is to be dropped).
    int64_t abandoned = 0;
  };

  BarrierHandler(int num_channels, Clock* clock, Mode mode = Mode::kAligned,
                 int64_t aligned_timeout_ms = 0);

  // Feeds one item from the gate (or from NextReplay()). Returns kDataLoss when the item names a
  // channel out of range or one that already ended.
  absl::StatusOr<Action> OnItem(BufferItem& item);

  // Mode kAuto: switches the checkpoint being aligned to unaligned if its timeout passed.
  Action OnTimer();
  // When OnTimer() has something to do (Clock nanoseconds); INT64_MAX: never. Cheap (the task
  // asks between records).
  int64_t TimerDeadlineNanos() const {
    if (mode_ != Mode::kAuto || current_ == 0 || !priority_ || unaligned_) {
      return std::numeric_limits<int64_t>::max();
    }
    return origin_nanos_ + aligned_timeout_nanos_;
  }

  // The recorded in-flight input of the checkpoint last reported `complete`, in channel order of
  // arrival; moves it out.
  std::vector<BufferItem> TakeInputState();

  // While the task handles a priority event (an announcement, OnTimer()) between two records of
  // a buffer: the rest of that buffer, its records not processed yet. If the checkpoint goes
  // unaligned then, the rest is in-flight input, ahead of what its channel delivers later (so a
  // slow operator does not hold a switch back for the rest of a buffer). Null: between buffers.
  // REQUIRES: `rest` outlives its setting (the task clears it after the event).
  void SetPartial(const BufferItem* rest) { partial_ = rest; }

  // A held-back item to process before polling the gate, if any.
  absl::optional<BufferItem> NextReplay();
  bool HasReplay() const { return !replay_.empty(); }

  // Channels that have not ended yet; 0 (and nothing to replay): the input is done.
  int remaining() const { return remaining_; }
  // The checkpoint in progress (aligning or recording in-flight input); 0: none.
  int64_t current() const { return current_; }

 private:
  // Starts checkpoint `id` (abandoning the current one into `action`).
  void Start(int64_t id, bool priority, Action* action);
  // A barrier or announcement of the current checkpoint that waited `waited_ms` upstream
  // arrived: the checkpoint started that long before now, if that is earlier.
  void NoteWaited(int64_t waited_ms);
  // Appends copies of channel `ch`'s items waiting for replay, up to its next barrier.
  void CopyReplayedOf(int ch, std::vector<BufferItem>* out) const;
  // Snapshot now, unaligned: records what the channels that have not delivered the barrier
  // still owe.
  void SwitchToUnaligned(Action* action);
  // Aligned phase: snapshot if every channel delivered the barrier or ended. Unaligned: report
  // completion if every channel announced it or ended.
  void MaybeFinish(Action* action);
  // Releases blocked channels; their held-back items are replayed in arrival order.
  void ReleaseBlocked();
  void Reset();

  const int num_channels_;
  Clock* const clock_;
  const Mode mode_;
  const int64_t aligned_timeout_nanos_;
  std::vector<bool> ended_;
  int remaining_;
  int64_t last_done_ = 0;  // newest checkpoint snapshotted and complete (or abandoned)

  // The checkpoint in progress.
  int64_t current_ = 0;
  bool priority_ = false;     // it may go unaligned (its barriers take no credit)
  bool unaligned_ = false;    // snapshotted unaligned; recording in-flight input
  int64_t start_nanos_ = 0;   // its first barrier or announcement
  int64_t origin_nanos_ = 0;  // its start as its barriers tell (see Action::origin_nanos)
  std::vector<bool> blocked_;    // its barrier arrived in place (aligned phase)
  std::vector<bool> announced_;  // its announcement arrived
  std::vector<std::vector<BufferItem>> overtaken_;  // ... with these copies (aligned phase)
  std::vector<size_t> processed_since_announced_;  // ... of which the first were processed
  std::vector<BufferItem> recorded_;  // in-flight input (unaligned)
  std::vector<BufferItem> complete_;  // of the checkpoint last reported complete
  const BufferItem* partial_ = nullptr;  // see SetPartial()

  std::deque<BufferItem> stash_;   // items of blocked channels, in arrival order
  std::deque<BufferItem> replay_;  // released items to process before polling the gate
};

}  // namespace sluice::worker
