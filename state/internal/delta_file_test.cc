#include "state/internal/delta_file.h"

#include <string>
#include <tuple>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sluice::state::internal {
namespace {

using ::testing::HasSubstr;

using Entry = std::tuple<std::string, bool, std::string>;

absl::Status ReadAll(absl::string_view data, std::vector<Entry>* out) {
  out->clear();
  return ReadDelta(data, "f", [&](absl::string_view k, bool deleted, absl::string_view v) {
    out->emplace_back(std::string(k), deleted, std::string(v));
    return absl::OkStatus();
  });
}

TEST(DeltaFileTest, RoundTripsPutsAndDeletesInOrder) {
  DeltaWriter w;
  w.Start();
  w.Put("k1", "value one");
  w.Delete("k2");
  w.Put(std::string(300, 'x'), std::string(1000, '\0'));  // multi-byte varints, zero bytes
  w.Put("k3", "");
  EXPECT_EQ(w.entries(), 4u);
  const std::string file(w.Finish());
  std::vector<Entry> got;
  ASSERT_TRUE(ReadAll(file, &got).ok());
  EXPECT_EQ(got, (std::vector<Entry>{{"k1", false, "value one"},
                                     {"k2", true, ""},
                                     {std::string(300, 'x'), false, std::string(1000, '\0')},
                                     {"k3", false, ""}}));
  // Start() begins a new file.
  w.Start();
  w.Delete("a");
  ASSERT_TRUE(ReadAll(w.Finish(), &got).ok());
  EXPECT_EQ(got, (std::vector<Entry>{{"a", true, ""}}));
}

TEST(DeltaFileTest, EveryFlippedByteAndEveryTruncationIsDataLoss) {
  DeltaWriter w;
  w.Start();
  for (int i = 0; i < 20; ++i) w.Put("key" + std::to_string(i), "v" + std::to_string(i * i));
  w.Delete("gone");
  const std::string file(w.Finish());
  std::vector<Entry> got;
  for (size_t i = 0; i < file.size(); ++i) {
    std::string bad = file;
    bad[i] ^= 0x20;
    absl::Status s = ReadAll(bad, &got);
    EXPECT_EQ(s.code(), i == 7 ? absl::StatusCode::kFailedPrecondition  // the version byte
                               : absl::StatusCode::kDataLoss)
        << "byte " << i << ": " << s;
  }
  for (size_t n = 0; n < file.size(); ++n) {
    EXPECT_EQ(ReadAll(file.substr(0, n), &got).code(), absl::StatusCode::kDataLoss) << n;
  }
}

TEST(DeltaFileTest, NewerVersionIsRefusedWithWhatToDo) {
  DeltaWriter w;
  w.Start();
  w.Put("k", "v");
  std::string file(w.Finish());
  file[7] = static_cast<char>(kDeltaVersion + 1);
  std::vector<Entry> got;
  absl::Status s = ReadAll(file, &got);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(s.message()), HasSubstr("restore it with a newer build"));
  EXPECT_TRUE(got.empty());
}

}  // namespace
}  // namespace sluice::state::internal
