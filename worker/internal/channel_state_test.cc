#include "worker/internal/channel_state.h"

#include <filesystem>
#include <fstream>
#include <string>

#include "common/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sluice::worker {
namespace {

using ::sluice::testing::StatusIs;
using ::testing::HasSubstr;

class ChannelStateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("channel_state_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::filesystem::path dir_;
};

proto::ChannelStateFile Sample() {
  proto::ChannelStateFile file;
  file.set_format_version(kChannelStateFormat);
  file.set_checkpoint_id(7);
  file.set_vertex(1);
  file.set_subtask(2);
  AddChannelStateItem(false, 3, BufferItem(3, RecordBuffer{std::string("a\\0b", 3), 2}), &file);
  AddChannelStateItem(true, 1, BufferItem(0, WatermarkAdvance{-5}), &file);
  AddChannelStateItem(false, 0, BufferItem(0, WatermarkStatusChange{true}), &file);
  return file;
}

TEST_F(ChannelStateTest, RoundTripsThroughAFile) {
  const std::string path = (dir_ / "chk-7" / "1-2-channels").string();
  ASSERT_OK(WriteChannelState(path, Sample()));
  absl::StatusOr<proto::ChannelStateFile> read = ReadChannelState(path, 7, 1, 2);
  ASSERT_OK(read);
  ASSERT_EQ(read->items_size(), 3);
  EXPECT_EQ(ChannelStateBytes(*read), 3);
  BufferItem records = FromChannelStateItem(read->items(0));
  EXPECT_FALSE(read->items(0).output());
  EXPECT_EQ(records.channel, 3);
  ASSERT_NE(records.as<RecordBuffer>(), nullptr);
  EXPECT_EQ(records.as<RecordBuffer>()->data, std::string("a\\0b", 3));
  EXPECT_EQ(records.as<RecordBuffer>()->num_records, 2);
  EXPECT_TRUE(records.restored);
  EXPECT_FALSE(records.TakesCredit());
  BufferItem watermark = FromChannelStateItem(read->items(1));
  EXPECT_TRUE(read->items(1).output());
  EXPECT_EQ(watermark.channel, 1);
  ASSERT_NE(watermark.as<WatermarkAdvance>(), nullptr);
  EXPECT_EQ(watermark.as<WatermarkAdvance>()->ms, -5);
  BufferItem idle = FromChannelStateItem(read->items(2));
  ASSERT_NE(idle.as<WatermarkStatusChange>(), nullptr);
  EXPECT_TRUE(idle.as<WatermarkStatusChange>()->idle);
}

TEST_F(ChannelStateTest, MissingCorruptForeignOrNewerFilesAreDataLoss) {
  const std::string path = (dir_ / "1-2-channels").string();
  EXPECT_THAT(ReadChannelState(path, 7, 1, 2).status(),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("of checkpoint 7 is missing")));
  std::filesystem::create_directories(dir_);
  {
    std::ofstream out(path, std::ios::binary);
    out << "\\xff\\xff\\xff garbage";
  }
  EXPECT_THAT(ReadChannelState(path, 7, 1, 2).status(),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("cannot be decoded")));
  ASSERT_OK(WriteChannelState(path, Sample()));
  EXPECT_THAT(ReadChannelState(path, 8, 1, 2).status(),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("belongs to checkpoint 7 subtask 1-2, not checkpoint 8 subtask 1-2")));
  proto::ChannelStateFile newer = Sample();
  newer.set_format_version(kChannelStateFormat + 1);
  ASSERT_OK(WriteChannelState(path, newer));
  EXPECT_THAT(ReadChannelState(path, 7, 1, 2).status(),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("has format version 2")));
}

}  // namespace
}  // namespace sluice::worker
