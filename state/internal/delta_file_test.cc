#include "state/internal/delta_file.h"

#include <filesystem>
#include <fstream>
#include <sstream>
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

// A path in the test's temporary directory.
std::string TempPath(const std::string& name) {
  return (std::filesystem::path(::testing::TempDir()) / name).string();
}

std::string Contents(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(DeltaFileTest, RoundTripsPutsAndDeletesInOrder) {
  const std::string path = TempPath("delta-roundtrip");
  DeltaWriter w;
  ASSERT_TRUE(w.Open(path).ok());
  w.Put("k1", "value one");
  w.Delete("k2");
  w.Put(std::string(300, 'x'), std::string(1000, '\0'));  // multi-byte varints, zero bytes
  w.Put("k3", "");
  EXPECT_EQ(w.entries(), 4u);
  ASSERT_TRUE(w.Finish().ok());
  const std::string file = Contents(path);
  std::vector<Entry> got;
  ASSERT_TRUE(ReadAll(file, &got).ok());
  EXPECT_EQ(got, (std::vector<Entry>{{"k1", false, "value one"},
                                     {"k2", true, ""},
                                     {std::string(300, 'x'), false, std::string(1000, '\0')},
                                     {"k3", false, ""}}));
  // Open() begins a new file.
  ASSERT_TRUE(w.Open(path).ok());
  w.Delete("a");
  ASSERT_TRUE(w.Finish().ok());
  ASSERT_TRUE(ReadAll(Contents(path), &got).ok());
  EXPECT_EQ(got, (std::vector<Entry>{{"a", true, ""}}));
}

// Written in pieces (more than DeltaWriter::kFlushBytes), the file reads back whole; the
// checksum fed in pieces equals the one of the whole.
TEST(DeltaFileTest, LargeFilesAreWrittenInPieces) {
  const std::string path = TempPath("delta-large");
  DeltaWriter w;
  ASSERT_TRUE(w.Open(path).ok());
  constexpr int kEntries = 100000;  // about 3 MB
  for (int i = 0; i < kEntries; ++i) {
    w.Put("key-" + std::to_string(i), std::string(i % 37, static_cast<char>('a' + i % 26)));
  }
  ASSERT_TRUE(w.Finish().ok());
  const std::string file = Contents(path);
  EXPECT_GT(file.size(), 2 * DeltaWriter::kFlushBytes);
  int n = 0;
  ASSERT_TRUE(ReadDelta(file, "f", [&](absl::string_view k, bool deleted, absl::string_view v) {
                EXPECT_EQ(k, "key-" + std::to_string(n));
                EXPECT_FALSE(deleted);
                EXPECT_EQ(v, std::string(n % 37, static_cast<char>('a' + n % 26)));
                ++n;
                return absl::OkStatus();
              }).ok());
  EXPECT_EQ(n, kEntries);
  DeltaChecksum pieces;
  pieces.Words(file.data(), 3);
  pieces.Words(file.data() + 24, 5);
  EXPECT_EQ(pieces.Finish(file.data() + 64, 5), ChecksumOf(file.substr(0, 69)));
}

TEST(DeltaFileTest, UnwritablePathIsUnavailable) {
  DeltaWriter w;
  EXPECT_EQ(w.Open(TempPath("no-such-dir/delta")).code(), absl::StatusCode::kUnavailable);
}

TEST(DeltaFileTest, EveryFlippedByteAndEveryTruncationIsDataLoss) {
  const std::string path = TempPath("delta-flips");
  DeltaWriter w;
  ASSERT_TRUE(w.Open(path).ok());
  for (int i = 0; i < 20; ++i) w.Put("key" + std::to_string(i), "v" + std::to_string(i * i));
  w.Delete("gone");
  ASSERT_TRUE(w.Finish().ok());
  const std::string file = Contents(path);
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
  const std::string path = TempPath("delta-newer");
  DeltaWriter w;
  ASSERT_TRUE(w.Open(path).ok());
  w.Put("k", "v");
  ASSERT_TRUE(w.Finish().ok());
  std::string file = Contents(path);
  file[7] = static_cast<char>(kDeltaVersion + 1);
  std::vector<Entry> got;
  absl::Status s = ReadAll(file, &got);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(s.message()), HasSubstr("restore it with a newer build"));
  EXPECT_TRUE(got.empty());
}

// A file as this format's first build wrote it (on x86-64): every build on every host reads it,
// checksum included (the checksum reads the bytes as little-endian words, whatever the host's
// byte order), and writes the same bytes for the same entries.
TEST(DeltaFileTest, ReadsAndWritesTheFormatByteForByte) {
  const std::string golden(
      "\x53\x4c\x44\x45\x4c\x54\x41\x01\x50\x05\x6b\x65\x79\x2d\x31\x07\x76\x61\x6c\x75\x65\x2d"
      "\x31\x44\x06\x6b\x65\x79\x2d\x32\x32\x50\x03\x01\x02\xff\x00\x03\x00\x00\x00\x00\x00\x00"
      "\x00\x82\x39\xdd\xfd\x76\x09\x3b\xc9",
      53);
  std::vector<Entry> entries;
  ASSERT_TRUE(ReadAll(golden, &entries).ok());
  EXPECT_THAT(entries, ::testing::ElementsAre(Entry{"key-1", false, "value-1"}, Entry{"key-22", true, ""},
                                              Entry{std::string("\x01\x02\xff", 3), false, ""}));
  EXPECT_EQ(ChecksumOf(golden.substr(0, 45)), 0xC93B0976FDDD3982ULL);
  const std::string path = TempPath("golden");
  DeltaWriter w;
  ASSERT_TRUE(w.Open(path).ok());
  w.Put("key-1", "value-1");
  w.Delete("key-22");
  w.Put(std::string("\x01\x02\xff", 3), "");
  ASSERT_TRUE(w.Finish().ok());
  EXPECT_EQ(Contents(path), golden);
}

}  // namespace
}  // namespace sluice::state::internal
