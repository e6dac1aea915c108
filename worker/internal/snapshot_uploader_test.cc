#include "worker/internal/snapshot_uploader.h"

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "common/clock.h"
#include "common/key_groups.h"
#include "common/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "worker/internal/channel_state.h"

namespace sluice::worker {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

class SnapshotUploaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl =
        (std::filesystem::temp_directory_path() / "sluice-uploader-test-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // The acknowledgements delivered so far (from the uploader thread).
  std::vector<proto::CheckpointAck> Acks() {
    absl::MutexLock lock(&mu_);
    return acks_;
  }
  std::function<void(proto::CheckpointAck)> Collect() {
    return [this](proto::CheckpointAck ack) {
      absl::MutexLock lock(&mu_);
      acks_.push_back(std::move(ack));
    };
  }
  static std::unique_ptr<PendingUpload> Pending(int64_t id) {
    auto p = std::make_unique<PendingUpload>();
    p->ack.set_checkpoint_id(id);
    return p;
  }
  static proto::ChannelStateItem Item(bool output, int channel, const std::string& data) {
    proto::ChannelStateItem item;
    item.set_output(output);
    item.set_channel(channel);
    item.set_buffer(data);
    item.set_num_records(1);
    return item;
  }

  std::string dir_;
  FakeClock clock_;
  absl::Mutex mu_;
  std::vector<proto::CheckpointAck> acks_ ABSL_GUARDED_BY(mu_);
};

TEST_F(SnapshotUploaderTest, UploadsKeyedStateAndInFlightDataThenAcks) {
  state::StateBackendOptions o;
  o.local_dir = dir_ + "/local";
  o.operator_id = "count";
  auto backend = state::KeyedStateBackend::Open(o);
  ASSERT_OK(backend.status());
  const state::StateId v = (*backend)->RegisterState("v", state::StateKind::kValue);
  (*backend)->SetCurrentKey("k", 5);
  ASSERT_OK((*backend)->Put(v, "42"));
  auto snap = (*backend)->SnapshotSync(3);
  ASSERT_OK(snap.status());

  SnapshotUploader uploader(dir_ + "/job", /*vertex=*/2, /*subtask=*/1, &clock_, Collect());
  auto pending = Pending(3);
  pending->keyed.push_back({"count", *snap, backend->get()});
  *pending->channels.add_items() = Item(true, 1, "out");
  *pending->channels.add_items() = Item(false, 0, "in");
  uploader.Queue(std::move(pending));
  uploader.Stop();

  std::vector<proto::CheckpointAck> acks = Acks();
  ASSERT_EQ(acks.size(), 1u);
  const proto::CheckpointAck& ack = acks[0];
  EXPECT_EQ(ack.checkpoint_id(), 3);
  EXPECT_FALSE(ack.declined()) << ack.reason();
  ASSERT_EQ(ack.state().keyed_size(), 1);
  EXPECT_EQ(ack.state().keyed(0).operator_id(), "count");
  EXPECT_EQ(ack.state().keyed(0).private_dir(), "chk-3/2-1-count");
  EXPECT_GT(ack.state().keyed(0).files_size(), 0);
  EXPECT_EQ(ack.state().channel_state_file(), "chk-3/2-1-channels");
  auto file = ReadChannelState(dir_ + "/job/chk-3/2-1-channels", 3, 2, 1);
  ASSERT_OK(file.status());
  ASSERT_EQ(file->items_size(), 2);
  EXPECT_TRUE(file->items(0).output());
  EXPECT_EQ(file->items(0).buffer(), "out");
  EXPECT_FALSE(file->items(1).output());
  EXPECT_EQ(file->items(1).buffer(), "in");
  EXPECT_EQ(ack.state().channel_state_bytes(), ChannelStateBytes(*file));
}

TEST_F(SnapshotUploaderTest, AFailedWriteDeclinesTheCheckpointWithTheReason) {
  // The checkpoint directory is under a regular file: nothing can be written there.
  std::ofstream(dir_ + "/file") << "x";
  SnapshotUploader uploader(dir_ + "/file/job", 0, 0, &clock_, Collect());
  auto pending = Pending(7);
  *pending->channels.add_items() = Item(true, 0, "out");
  uploader.Queue(std::move(pending));
  uploader.Stop();
  std::vector<proto::CheckpointAck> acks = Acks();
  ASSERT_EQ(acks.size(), 1u);
  EXPECT_EQ(acks[0].checkpoint_id(), 7);
  EXPECT_TRUE(acks[0].declined());
  EXPECT_THAT(acks[0].reason(), HasSubstr("chk-7/0-0-channels"));
  EXPECT_EQ(acks[0].state().channel_state_file(), "");
}

TEST_F(SnapshotUploaderTest, UploadsInOrderOffTheTaskThreadAndStopFinishesTheQueue) {
  absl::Notification release;
  absl::Notification first_started;
  std::thread::id uploader_thread;
  SnapshotUploader uploader(dir_, 0, 0, &clock_, [&](proto::CheckpointAck ack) {
    if (ack.checkpoint_id() == 1) {
      uploader_thread = std::this_thread::get_id();
      first_started.Notify();
      release.WaitForNotification();
    }
    absl::MutexLock lock(&mu_);
    acks_.push_back(std::move(ack));
  });
  uploader.Queue(Pending(1));
  first_started.WaitForNotification();  // Queue() did not wait for the upload
  uploader.Queue(Pending(2));
  uploader.Queue(Pending(3));
  EXPECT_TRUE(Acks().empty());
  release.Notify();
  uploader.Stop();
  std::vector<int64_t> ids;
  for (const auto& ack : Acks()) ids.push_back(ack.checkpoint_id());
  EXPECT_THAT(ids, ElementsAre(1, 2, 3));
  EXPECT_NE(uploader_thread, std::this_thread::get_id());
  // A queue after Stop() starts a new thread.
  uploader.Queue(Pending(4));
  uploader.Stop();
  EXPECT_EQ(Acks().size(), 4u);
}

}  // namespace
}  // namespace sluice::worker
