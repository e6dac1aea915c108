#pragma once

#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "proto/checkpoint.pb.h"
#include "proto/control.pb.h"
#include "state/keyed_state_backend.h"

namespace sluice::worker {

// A snapshot whose synchronous part is done, waiting for its asynchronous part.
struct PendingUpload {
  // The acknowledgement, filled in but for the keyed state handles, the in-flight data file and
  // async_ms.
  proto::CheckpointAck ack;
  // Per keyed operator: its id, its local snapshot and the backend that made it (which outlives
  // the upload: the task stops the uploader before it closes its backends).
  struct Keyed {
    std::string operator_id;
    state::PendingSnapshot snapshot;
    state::KeyedStateBackend* backend = nullptr;
  };
  std::vector<Keyed> keyed;
  // In-flight data of an unaligned checkpoint (no items: none).
  proto::ChannelStateFile channels;
};

// The asynchronous part of a subtask's snapshots (Flink's AsyncCheckpointRunnable), on a thread
// of its own: for each queued snapshot, in order, writes its in-flight data to
// `<checkpoint_dir>/chk-<id>/<vertex>-<subtask>-channels`, uploads the keyed state of each
// operator (private files under `chk-<id>/<vertex>-<subtask>-<operator>`), measures async_ms by
// the Clock and delivers the acknowledgement; the first failure declines it with the reason.
//
// Threads: Queue() and Stop() belong to the task thread; the thread (started by the first
// Queue()) runs the uploads and calls `ack` (which must be thread-safe). Stop() finishes the
// queued uploads first (their acks may complete a checkpoint) and joins the thread.
class SnapshotUploader {
 public:
  SnapshotUploader(std::string checkpoint_dir, int vertex, int subtask, Clock* clock,
                   std::function<void(proto::CheckpointAck)> ack);
  ~SnapshotUploader();  // Stop()
  SnapshotUploader(const SnapshotUploader&) = delete;
  SnapshotUploader& operator=(const SnapshotUploader&) = delete;

  void Queue(std::unique_ptr<PendingUpload> pending);
  void Stop();

 private:
  void Loop();
  void Upload(PendingUpload& pending);

  const std::string checkpoint_dir_;
  const int vertex_;
  const int subtask_;
  Clock* const clock_;
  const std::function<void(proto::CheckpointAck)> ack_;
  std::thread thread_;  // task thread: started by Queue(), joined by Stop()

  absl::Mutex mu_;
  std::deque<std::unique_ptr<PendingUpload>> queue_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace sluice::worker
