#include "common/state_format.h"

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "common/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sluice {
namespace {

using ::sluice::testing::StatusIs;
using ::testing::HasSubstr;

const StateOrigin kOrigin("job-7", "agg", "aggregate", 2, 41);

TEST(StateFormatTest, OriginNamesJobOperatorSubtaskAndCheckpoint) {
  EXPECT_EQ(kOrigin.text(), "job job-7, operator 'agg' (type aggregate), subtask 2, restored from checkpoint 41");
  EXPECT_EQ(StateOrigin("j", "o", "t", 0, 0).text(),
            "job j, operator 'o' (type t), subtask 0, not restored from a checkpoint");
  absl::Status s = kOrigin.DataLoss("it is broken");
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(s.message(), "cannot decode operator state (job job-7, operator 'agg' (type aggregate), subtask 2, "
                         "restored from checkpoint 41): it is broken");
}

TEST(StateFormatTest, ReadStateVersionSplitsVersionAndBody) {
  absl::string_view body;  // views `entry`, which must outlive it
  const std::string entry("\x02xyz");
  absl::StatusOr<int> v = ReadStateVersion(kOrigin, "entry", entry, 2, &body);
  ASSERT_OK(v);
  EXPECT_EQ(*v, 2);
  EXPECT_EQ(body, "xyz");
}

TEST(StateFormatTest, ReadStateVersionRefusesEmptyZeroAndFutureVersions) {
  absl::string_view body;
  EXPECT_THAT(ReadStateVersion(kOrigin, "entry", "", 1, &body),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("entry is empty (truncated)")));
  EXPECT_THAT(ReadStateVersion(kOrigin, "entry", std::string(1, '\0'), 1, &body),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("format version 0")));
  absl::StatusOr<int> future = ReadStateVersion(kOrigin, "entry", "\x03xyz", 2, &body);
  EXPECT_THAT(future, StatusIs(absl::StatusCode::kDataLoss,
                               HasSubstr("entry has format version 3, newer than this build reads (up to 2)")));
  EXPECT_THAT(future.status().message(), HasSubstr("subtask 2, restored from checkpoint 41"));
}

TEST(StateFormatTest, TextStateWithoutVersionIsFormatZero) {
  absl::string_view body;
  absl::StatusOr<int> v = ReadTextStateVersion(kOrigin, "offsets", "topic:0:12", 1, &body);
  ASSERT_OK(v);
  EXPECT_EQ(*v, 0);
  EXPECT_EQ(body, "topic:0:12");
  v = ReadTextStateVersion(kOrigin, "offsets", "\x01topic:0:12", 1, &body);
  ASSERT_OK(v);
  EXPECT_EQ(*v, 1);
  EXPECT_EQ(body, "topic:0:12");
  EXPECT_THAT(ReadTextStateVersion(kOrigin, "offsets", "\x02topic:0:12", 1, &body),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("format version 2")));
  EXPECT_THAT(ReadTextStateVersion(kOrigin, "offsets", "", 1, &body),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("truncated")));
}

TEST(StateFormatTest, BlockKeysRoundTripAndSortByKeyGroupThenRange) {
  const std::vector<std::pair<int, int64_t>> blocks = {
      {0, INT64_MIN}, {0, -1}, {0, 0}, {0, 1}, {0, INT64_MAX}, {1, -5}, {32767, 3}};
  std::string previous;
  for (const auto& [kg, range] : blocks) {
    std::string key = "stale bytes to replace";
    PutBlockKey(kg, range, &key);
    ASSERT_EQ(key.size(), 12u);
    EXPECT_LT(previous, key) << kg << " " << range;  // byte order is (key group, range) order
    int parsed_kg = -1;
    int64_t parsed_range = 0;
    ASSERT_TRUE(ParseBlockKey(key, &parsed_kg, &parsed_range));
    EXPECT_EQ(parsed_kg, kg);
    EXPECT_EQ(parsed_range, range);
    previous = key;
  }
  std::string key;
  PutBlockKey(2, 7, &key);
  EXPECT_EQ(key, std::string("\x00\x00\x00\x02\x80\x00\x00\x00\x00\x00\x00\x07", 12));
  int kg = 0;
  int64_t range = 0;
  EXPECT_FALSE(ParseBlockKey(absl::string_view(key).substr(1), &kg, &range));
  EXPECT_FALSE(ParseBlockKey(key + "x", &kg, &range));
}

}  // namespace
}  // namespace sluice
