#include "state/internal/delta_file.h"

#include <cstring>
#include <filesystem>
#include <memory>
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

// The entries of `data` (none, and a test failure, if it does not read).
std::vector<Entry> EntriesOf(absl::string_view data) {
  std::vector<Entry> entries;
  absl::Status s = ReadAll(data, &entries);
  if (!s.ok()) ADD_FAILURE() << s;
  return entries;
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
  DeltaBytes bytes;
  DeltaWriter w;
  w.Open(&bytes);
  w.Put("k1", "value one");
  w.Delete("k2");
  w.Put(std::string(300, 'x'), std::string(1000, '\0'));  // multi-byte varints, zero bytes
  w.Put("k3", "");
  EXPECT_EQ(w.entries(), 4u);
  ASSERT_TRUE(w.Finish().ok());
  const std::string file = std::string(bytes.view());
  std::vector<Entry> got;
  ASSERT_TRUE(ReadAll(file, &got).ok());
  EXPECT_EQ(got, (std::vector<Entry>{{"k1", false, "value one"},
                                     {"k2", true, ""},
                                     {std::string(300, 'x'), false, std::string(1000, '\0')},
                                     {"k3", false, ""}}));
  // Open() begins a new file.
  w.Open(&bytes);
  w.Delete("a");
  ASSERT_TRUE(w.Finish().ok());
  ASSERT_TRUE(ReadAll(std::string(bytes.view()), &got).ok());
  EXPECT_EQ(got, (std::vector<Entry>{{"a", true, ""}}));
}

// Written in pieces (more than DeltaWriter::kFlushBytes), the file reads back whole; the
// checksum fed in pieces equals the one of the whole.
TEST(DeltaFileTest, LargeFilesAreWrittenInPieces) {
  DeltaBytes bytes;
  DeltaWriter w;
  w.Open(&bytes);
  constexpr int kEntries = 100000;  // about 3 MB
  for (int i = 0; i < kEntries; ++i) {
    w.Put("key-" + std::to_string(i), std::string(i % 37, static_cast<char>('a' + i % 26)));
    // Entries larger than the writer's buffer, one at an offset that is not a block's.
    if (i == 10 || i == 5000) w.Put("big", std::string(3 * DeltaWriter::kFlushBytes + 5, 'b'));
  }
  ASSERT_TRUE(w.Finish().ok());
  const std::string file = std::string(bytes.view());
  EXPECT_GT(file.size(), 2 * DeltaWriter::kFlushBytes);
  int n = 0;
  int big = 0;
  ASSERT_TRUE(ReadDelta(file, "f", [&](absl::string_view k, bool deleted, absl::string_view v) {
                if (k == "big") {
                  EXPECT_EQ(v, std::string(3 * DeltaWriter::kFlushBytes + 5, 'b'));
                  ++big;
                  return absl::OkStatus();
                }
                EXPECT_EQ(k, "key-" + std::to_string(n));
                EXPECT_FALSE(deleted);
                EXPECT_EQ(v, std::string(n % 37, static_cast<char>('a' + n % 26)));
                ++n;
                return absl::OkStatus();
              }).ok());
  EXPECT_EQ(n, kEntries);
  EXPECT_EQ(big, 2);
  DeltaChecksum pieces;
  pieces.Blocks(file.data(), 3);
  pieces.Blocks(file.data() + 96, 5);
  for (size_t tail = 0; tail < DeltaChecksum::kBlockBytes; ++tail) {
    DeltaChecksum copy = pieces;
    EXPECT_EQ(copy.Finish(file.data() + 256, tail), ChecksumOf(file.substr(0, 256 + tail))) << tail;
  }
  DeltaChecksumV1 pieces_v1;
  pieces_v1.Words(file.data(), 3);
  pieces_v1.Words(file.data() + 24, 5);
  EXPECT_EQ(pieces_v1.Finish(file.data() + 64, 5), ChecksumOfV1(file.substr(0, 69)));
}

// A first entry larger than the staging buffer: the flush before it has nothing to append (the
// destination not allocated yet; no memcpy to a null pointer) and the file restores exactly.
TEST(DeltaFileTest, AFirstEntryLargerThanTheStagingBufferRestoresExactly) {
  DeltaBytes bytes;
  DeltaWriter w;
  w.Open(&bytes);
  std::string big(DeltaWriter::kFlushBytes + 1000, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 131 + i / 7);
  w.Put("first", big);
  w.Delete("second");
  ASSERT_TRUE(w.Finish().ok());
  EXPECT_EQ(EntriesOf(bytes.view()),
            (std::vector<Entry>{{"first", false, big}, {"second", true, ""}}));
  // And into a file, as the upload stores it.
  const std::string path = TempPath("big-first-delta");
  ASSERT_TRUE(WriteDeltaFile(bytes, path).ok());
  EXPECT_EQ(Contents(path), std::string(bytes.view()));
}

// CopyStreaming() copies exactly, whatever the alignment of its destination (a head before the
// first 16-byte boundary) and its length (a tail after the last 64-byte piece), and writes
// nothing outside [dst, dst + n).
TEST(DeltaFileTest, CopyStreamingCopiesEveryOffsetAndLengthExactly) {
  std::string src(1024, '\0');
  for (size_t i = 0; i < src.size(); ++i) src[i] = static_cast<char>(i * 37 + 11);
  alignas(64) char dst[1200];
  for (size_t dst_offset : {0, 1, 7, 15, 16, 17, 63}) {
    for (size_t src_offset : {0, 3, 16}) {
      for (size_t n : {0, 1, 15, 16, 17, 63, 64, 65, 79, 128, 200, 513, 1000}) {
        std::memset(dst, '#', sizeof(dst));
        CopyStreaming(dst + dst_offset, src.data() + src_offset, n);
        FenceStreaming();
        const std::string got(dst, sizeof(dst));
        const std::string want = std::string(dst_offset, '#') + src.substr(src_offset, n) +
                                 std::string(sizeof(dst) - dst_offset - n, '#');
        ASSERT_EQ(got, want) << "dst+" << dst_offset << " src+" << src_offset << " n=" << n;
      }
    }
  }
}

// Writes a delta of about `bytes` into `out`.
void WriteDeltaOf(size_t bytes, DeltaBytes* out) {
  DeltaWriter w;
  w.Open(out);
  w.Put("k", std::string(bytes, 'v'));
  ASSERT_TRUE(w.Finish().ok());
}

TEST(DeltaBytesPoolTest, AHeldBufferIsNotHandedOutAgainAndAReturnedOneIsReused) {
  auto pool = std::make_shared<DeltaBytesPool>();
  std::shared_ptr<DeltaBytes> a = pool->Take();
  std::shared_ptr<DeltaBytes> b = pool->Take();
  EXPECT_NE(a.get(), b.get());  // a is held: b is another buffer
  WriteDeltaOf(1000, a.get());
  const DeltaBytes* a_was = a.get();
  const std::string a_bytes(a->view());
  a.reset();  // returned: the spare
  std::shared_ptr<DeltaBytes> c = pool->Take();
  EXPECT_EQ(c.get(), a_was);
  // b, still held, kept its own bytes.
  WriteDeltaOf(2000, b.get());
  EXPECT_EQ(c->view(), a_bytes);
  EXPECT_NE(b->view(), a_bytes);
}

TEST(DeltaBytesPoolTest, KeepsAtMostMaxSpareBuffers) {
  static_assert(DeltaBytesPool::kMaxSpare == 1, "the test returns kMaxSpare + 1 buffers");
  auto pool = std::make_shared<DeltaBytesPool>();
  std::shared_ptr<DeltaBytes> a = pool->Take();
  std::shared_ptr<DeltaBytes> b = pool->Take();
  WriteDeltaOf(1000, a.get());
  WriteDeltaOf(1000, b.get());
  const DeltaBytes* a_was = a.get();
  EXPECT_EQ(pool->held_bytes(), 2 * DeltaBytesPool::kMinCapacity);
  a.reset();  // the spare
  b.reset();  // one too many: freed
  EXPECT_EQ(pool->held_bytes(), DeltaBytesPool::kMinCapacity);
  std::shared_ptr<DeltaBytes> c = pool->Take();
  std::shared_ptr<DeltaBytes> d = pool->Take();
  EXPECT_EQ(c.get(), a_was);
  EXPECT_EQ(d->capacity(), 0u);  // a new buffer (b's memory went back)
}

// A buffer grown by a burst is kept while the deltas stay near its size, and freed (not kept
// as the spare) once they shrink: the pool's memory and its gauge follow the recent deltas.
TEST(DeltaBytesPoolTest, DropsASpareMuchLargerThanTheRecentDeltasAndCountsWhatItHolds) {
  auto gauge = std::make_shared<Gauge>();
  auto pool = std::make_shared<DeltaBytesPool>(gauge);
  constexpr size_t kBig = 16 * DeltaBytesPool::kMinCapacity;
  std::shared_ptr<DeltaBytes> a = pool->Take();
  WriteDeltaOf(kBig, a.get());
  const size_t big_capacity = a->capacity();
  ASSERT_GE(big_capacity, kBig);
  EXPECT_EQ(pool->held_bytes(), big_capacity);
  EXPECT_EQ(gauge->Value(), static_cast<double>(big_capacity));
  // A second snapshot while the first's upload holds a: both count.
  std::shared_ptr<DeltaBytes> b = pool->Take();
  WriteDeltaOf(100, b.get());
  EXPECT_EQ(pool->held_bytes(), big_capacity + DeltaBytesPool::kMinCapacity);
  const DeltaBytes* a_was = a.get();
  a.reset();  // as large as the recent deltas: kept
  EXPECT_EQ(pool->held_bytes(), big_capacity + DeltaBytesPool::kMinCapacity);
  b.reset();  // no room for a second spare: freed
  EXPECT_EQ(pool->held_bytes(), big_capacity);
  // Small deltas from now on: within a few returns the big buffer is freed, not kept.
  bool freed = false;
  for (int i = 0; i < 20 && !freed; ++i) {
    std::shared_ptr<DeltaBytes> c = pool->Take();
    WriteDeltaOf(100, c.get());
    const bool was_big = c.get() == a_was;
    c.reset();
    freed = was_big && pool->held_bytes() == 0;
  }
  EXPECT_TRUE(freed);
  std::shared_ptr<DeltaBytes> d = pool->Take();
  WriteDeltaOf(100, d.get());
  EXPECT_EQ(d->capacity(), DeltaBytesPool::kMinCapacity);
  EXPECT_EQ(gauge->Value(), static_cast<double>(DeltaBytesPool::kMinCapacity));
  d.reset();  // small: kept as the spare
  EXPECT_EQ(pool->held_bytes(), DeltaBytesPool::kMinCapacity);
}

TEST(DeltaFileTest, UnwritablePathIsUnavailable) {
  DeltaBytes bytes;
  DeltaWriter w;
  w.Open(&bytes);
  ASSERT_TRUE(w.Finish().ok());
  EXPECT_EQ(WriteDeltaFile(bytes, TempPath("no-such-dir/delta")).code(),
            absl::StatusCode::kUnavailable);
}

TEST(DeltaFileTest, EveryFlippedByteAndEveryTruncationIsDataLoss) {
  DeltaBytes bytes;
  DeltaWriter w;
  w.Open(&bytes);
  for (int i = 0; i < 20; ++i) w.Put("key" + std::to_string(i), "v" + std::to_string(i * i));
  w.Delete("gone");
  ASSERT_TRUE(w.Finish().ok());
  const std::string file = std::string(bytes.view());
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
  DeltaBytes bytes;
  DeltaWriter w;
  w.Open(&bytes);
  w.Put("k", "v");
  ASSERT_TRUE(w.Finish().ok());
  std::string file = std::string(bytes.view());
  file[7] = static_cast<char>(kDeltaVersion + 1);
  std::vector<Entry> got;
  absl::Status s = ReadAll(file, &got);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(s.message()), HasSubstr("restore it with a newer build"));
  EXPECT_TRUE(got.empty());
}

// A version 1 file as that format's first build wrote it (on x86-64): every build on every
// host reads it, checksum included (the checksum reads the bytes as little-endian words,
// whatever the host's byte order). Checkpoints written before version 2 restore so.
TEST(DeltaFileTest, ReadsVersion1FilesByteForByte) {
  const std::string golden(
      "\x53\x4c\x44\x45\x4c\x54\x41\x01\x50\x05\x6b\x65\x79\x2d\x31\x07\x76\x61\x6c\x75\x65\x2d"
      "\x31\x44\x06\x6b\x65\x79\x2d\x32\x32\x50\x03\x01\x02\xff\x00\x03\x00\x00\x00\x00\x00\x00"
      "\x00\x82\x39\xdd\xfd\x76\x09\x3b\xc9",
      53);
  EXPECT_THAT(EntriesOf(golden),
              ::testing::ElementsAre(Entry{"key-1", false, "value-1"}, Entry{"key-22", true, ""},
                                     Entry{std::string("\x01\x02\xff", 3), false, ""}));
  EXPECT_EQ(ChecksumOfV1(golden.substr(0, 45)), 0xC93B0976FDDD3982ULL);
  std::string bad = golden;
  bad[10] ^= 1;
  std::vector<Entry> entries;
  EXPECT_EQ(ReadAll(bad, &entries).code(), absl::StatusCode::kDataLoss);
}

// A stored value without expiry (the 8 zero bytes before its payload) is written without
// them, whichever Put() is given it; one with an expiry keeps it. Both read back whole.
TEST(DeltaFileTest, LeavesOutZeroExpiries) {
  const std::string payload(25, '\x07');
  const std::string no_expiry = std::string(8, '\0') + payload;
  const std::string with_expiry = std::string("\x00\x00\x01\x8c\x00\x00\x00\x2a", 8) + payload;
  DeltaBytes bytes;
  DeltaWriter w;
  w.Open(&bytes);
  w.Put("key-1", 0, payload);
  w.Put("key-2", no_expiry);
  w.Put("key-3", int64_t{0x18c0000002a}, payload);
  w.Put("key-4", with_expiry);
  ASSERT_TRUE(w.Finish().ok());
  const std::string file = std::string(bytes.view());
  // Header, 2 entries of 1 + 5 + 1 + 25 bytes and 2 of 1 + 5 + 1 + 33, trailer.
  EXPECT_EQ(file.size(), 8u + 2 * 32 + 2 * 40 + 16);
  std::vector<Entry> got;
  ASSERT_TRUE(ReadAll(file, &got).ok());
  EXPECT_THAT(got, ::testing::ElementsAre(
                       Entry{"key-1", false, no_expiry}, Entry{"key-2", false, no_expiry},
                       Entry{"key-3", false, with_expiry}, Entry{"key-4", false, with_expiry}));
}

// A version 2 file as this format's first build wrote it (on x86-64): every build on every
// host reads it and writes the same bytes for the same entries.
TEST(DeltaFileTest, ReadsAndWritesVersion2ByteForByte) {
  const std::string golden(
      "\x53\x4c\x44\x45\x4c\x54\x41\x02\x14\x6b\x65\x79\x2d\x31\x07\x76\x61\x6c\x75\x65\x2d\x31"
      "\x19\x6b\x65\x79\x2d\x32\x32\x0c\x01\x02\xff\x00\x06\x6b\x01\x76\x04\x65\x09\x00\x00\x00"
      "\x00\x00\x00\x00\x05\x77\x05\x00\x00\x00\x00\x00\x00\x00\xb2\xde\xce\xc8\xd8\xf3\xf3\xc6",
      66);
  EXPECT_THAT(EntriesOf(golden),
              ::testing::ElementsAre(Entry{"key-1", false, "value-1"}, Entry{"key-22", true, ""},
                                     Entry{std::string("\x01\x02\xff", 3), false, ""},
                                     Entry{"k", false, std::string(8, '\0') + "v"},
                                     Entry{"e", false, std::string("\0\0\0\0\0\0\0\x05w", 9)}));
  const std::string path = TempPath("golden");
  DeltaBytes bytes;
  DeltaWriter w;
  w.Open(&bytes);
  w.Put("key-1", "value-1");
  w.Delete("key-22");
  w.Put(std::string("\x01\x02\xff", 3), "");
  w.Put("k", 0, "v");
  w.Put("e", 5, "w");
  ASSERT_TRUE(w.Finish().ok());
  EXPECT_EQ(bytes.view(), golden);
  // Stored as they are.
  ASSERT_TRUE(WriteDeltaFile(bytes, path).ok());
  EXPECT_EQ(Contents(path), golden);
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
}

}  // namespace
}  // namespace sluice::state::internal
