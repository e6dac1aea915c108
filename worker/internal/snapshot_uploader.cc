#include "worker/internal/snapshot_uploader.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "worker/internal/channel_state.h"
#include "worker/internal/thread_name.h"

namespace sluice::worker {

SnapshotUploader::SnapshotUploader(std::string checkpoint_dir, int vertex, int subtask,
                                   Clock* clock, std::function<void(proto::CheckpointAck)> ack)
    : checkpoint_dir_(std::move(checkpoint_dir)),
      vertex_(vertex),
      subtask_(subtask),
      clock_(clock),
      ack_(std::move(ack)) {}

SnapshotUploader::~SnapshotUploader() { Stop(); }

void SnapshotUploader::Queue(std::unique_ptr<PendingUpload> pending) {
  {
    absl::MutexLock lock(&mu_);
    queue_.push_back(std::move(pending));
  }
  if (!thread_.joinable()) {
    thread_ = std::thread([this] {
      NameThisThread(absl::StrCat("upload ", vertex_, ".", subtask_));
      Loop();
    });
  }
}

void SnapshotUploader::Stop() {
  if (!thread_.joinable()) return;
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  thread_.join();
  absl::MutexLock lock(&mu_);
  stop_ = false;  // a later Queue() starts a new thread
}

void SnapshotUploader::Loop() {
  while (true) {
    std::unique_ptr<PendingUpload> pending;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stop_ || !queue_.empty(); };
      mu_.Await(absl::Condition(&ready));
      if (queue_.empty()) return;
      pending = std::move(queue_.front());
      queue_.pop_front();
    }
    Upload(*pending);
  }
}

void SnapshotUploader::Upload(PendingUpload& pending) {
  const int64_t async_start = clock_->NowNanos();
  proto::CheckpointAck& ack = pending.ack;
  const int64_t id = ack.checkpoint_id();
  const std::string private_prefix = absl::StrCat("chk-", id, "/", vertex_, "-", subtask_);
  if (pending.channels.items_size() > 0) {
    pending.channels.set_format_version(kChannelStateFormat);
    pending.channels.set_checkpoint_id(id);
    pending.channels.set_vertex(vertex_);
    pending.channels.set_subtask(subtask_);
    const std::string file = absl::StrCat(private_prefix, "-channels");
    absl::Status s = WriteChannelState(absl::StrCat(checkpoint_dir_, "/", file), pending.channels);
    if (s.ok()) {
      ack.mutable_state()->set_channel_state_file(file);
      ack.mutable_state()->set_channel_state_bytes(ChannelStateBytes(pending.channels));
    } else {
      ack.set_declined(true);
      ack.set_reason(std::string(s.message()));
    }
  }
  for (size_t k = 0; k < pending.keyed.size() && !ack.declined(); ++k) {
    const PendingUpload::Keyed& keyed = pending.keyed[k];
    auto handle = keyed.backend->UploadSnapshot(
        keyed.snapshot, checkpoint_dir_, absl::StrCat(private_prefix, "-", keyed.operator_id));
    if (!handle.ok()) {
      ack.set_declined(true);
      ack.set_reason(std::string(handle.status().message()));
      break;
    }
    handle->set_operator_id(keyed.operator_id);
    *ack.mutable_state()->add_keyed() = std::move(*handle);
  }
  ack.set_async_ms((clock_->NowNanos() - async_start) / 1'000'000);
  if (ack_) ack_(std::move(ack));
}

}  // namespace sluice::worker
