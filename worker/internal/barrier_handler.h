#pragma once

#include <cstdint>
#include <deque>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/optional.h"
#include "common/clock.h"
#include "worker/internal/input_gate.h"

namespace sluice::worker {

// Barrier alignment of one input task (a port of Flink's CheckpointBarrierHandler family):
// the task feeds it every item it takes from its input gate, and it says what to do with it.
//
// Aligned checkpoints: when the first barrier of checkpoint N arrives on a channel, that channel
// is blocked: its later items are held back (stashed) until every channel has delivered barrier
// N or ended. Then the task snapshots N, and the held-back items are replayed, in arrival order,
// before the gate is polled again (NextReplay()). A barrier of a newer checkpoint arriving while
// N is still aligning abandons N (its barriers cannot all arrive any more: the coordinator gave
// it up): the held-back items are released for replay and alignment starts on the newer one.
// End of partition counts as a barrier for every checkpoint that follows.
//
// Owned by the task thread; not thread-safe, no threads of its own. Time (alignment duration)
// comes from the Clock given at construction.
class BarrierHandler {
 public:
  // What the task does with one item (see OnItem()).
  struct Action {
    // The item was held back (OnItem() moved it out): do nothing with it now; it comes back
    // through NextReplay() and its credit is returned then.
    bool held = false;
    // Pass the item to the operators (records, watermarks, watermark status, end of
    // partition); barriers are consumed here.
    bool process = false;
    // > 0: after processing the item (and returning its credit), snapshot this checkpoint and
    // forward its barrier.
    int64_t snapshot = 0;
    // ... how long its alignment took (first barrier to snapshot), ms.
    int64_t alignment_ms = 0;
    // > 0: the alignment of this checkpoint was abandoned for a newer one.
    int64_t abandoned = 0;
  };

  BarrierHandler(int num_channels, Clock* clock);

  // Feeds one item from the gate (or from NextReplay()). Returns kDataLoss when the item names a
  // channel out of range or one that already ended.
  absl::StatusOr<Action> OnItem(BufferItem& item);

  // A held-back item to process before polling the gate, if any.
  absl::optional<BufferItem> NextReplay();
  bool HasReplay() const { return !replay_.empty(); }

  // Channels that have not ended yet; 0 (and nothing to replay): the input is done.
  int remaining() const { return remaining_; }
  // The checkpoint being aligned; 0: none.
  int64_t aligning() const { return aligning_; }

 private:
  // Releases blocked channels; their held-back items are replayed in arrival order.
  void ReleaseBlocked();

  const int num_channels_;
  Clock* const clock_;
  std::vector<bool> ended_;
  std::vector<bool> blocked_;
  int remaining_;
  int64_t aligning_ = 0;
  int64_t align_start_nanos_ = 0;
  std::deque<BufferItem> stash_;   // items of blocked channels, in arrival order
  std::deque<BufferItem> replay_;  // released items to process before polling the gate
};

}  // namespace sluice::worker
