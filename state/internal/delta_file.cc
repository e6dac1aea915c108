#include "state/internal/delta_file.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "state/internal/key_codec.h"

namespace sluice::state::internal {
namespace {

constexpr size_t kHeaderBytes = 8;    // magic + version
constexpr size_t kTrailerBytes = 16;  // entry count + checksum

void PutFixed64LE(std::string* dst, uint64_t v) {
  char b[8];
  for (int i = 0; i < 8; ++i) b[i] = static_cast<char>(v >> (8 * i));
  dst->append(b, 8);
}

uint64_t DecodeFixed64LE(const char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

}  // namespace

uint64_t DeltaChecksum(absl::string_view data) {
  // Eight bytes at a time, each word multiplied in and rotated (a corrupted, dropped or swapped
  // word changes the result); the length and the tail bytes mixed in last.
  constexpr uint64_t kMul1 = 0x9E3779B97F4A7C15ULL;
  constexpr uint64_t kMul2 = 0xC2B2AE3D27D4EB4FULL;
  uint64_t h = 0x27D4EB2F165667C5ULL ^ data.size();
  size_t i = 0;
  for (; i + 8 <= data.size(); i += 8) {
    uint64_t w;
    std::memcpy(&w, data.data() + i, 8);
    h ^= w * kMul1;
    h = ((h << 31) | (h >> 33)) * kMul2;
  }
  uint64_t tail = 0;
  for (size_t j = data.size(); j > i; --j) tail = (tail << 8) | static_cast<uint8_t>(data[j - 1]);
  h ^= tail * kMul1;
  h ^= h >> 29;
  h *= kMul2;
  h ^= h >> 32;
  return h;
}

void DeltaWriter::Start() {
  buf_.clear();
  buf_.append(kDeltaMagic.data(), kDeltaMagic.size());
  buf_.push_back(static_cast<char>(kDeltaVersion));
  entries_ = 0;
}

void DeltaWriter::Put(absl::string_view key, absl::string_view stored_value) {
  buf_.push_back('P');
  PutVarint32(&buf_, static_cast<uint32_t>(key.size()));
  buf_.append(key.data(), key.size());
  PutVarint32(&buf_, static_cast<uint32_t>(stored_value.size()));
  buf_.append(stored_value.data(), stored_value.size());
  ++entries_;
}

void DeltaWriter::Delete(absl::string_view key) {
  buf_.push_back('D');
  PutVarint32(&buf_, static_cast<uint32_t>(key.size()));
  buf_.append(key.data(), key.size());
  ++entries_;
}

absl::string_view DeltaWriter::Finish() {
  PutFixed64LE(&buf_, entries_);
  PutFixed64LE(&buf_, DeltaChecksum(buf_));
  return buf_;
}

absl::Status ReadDelta(
    absl::string_view data, absl::string_view where,
    absl::FunctionRef<absl::Status(absl::string_view key, bool deleted, absl::string_view value)>
        fn) {
  auto corrupt = [&](absl::string_view what) {
    return absl::DataLossError(absl::StrCat("state delta file ", where, ": ", what));
  };
  if (data.size() < kHeaderBytes + kTrailerBytes || data.substr(0, kDeltaMagic.size()) != kDeltaMagic) {
    return corrupt("not a delta file (too short or another magic)");
  }
  const uint8_t version = static_cast<uint8_t>(data[kDeltaMagic.size()]);
  if (version == 0) return corrupt("version 0");
  if (version > kDeltaVersion) {
    return absl::FailedPreconditionError(
        absl::StrCat("state delta file ", where, " has version ", version, "; this build reads up to ",
                     kDeltaVersion, ": restore it with a newer build"));
  }
  const size_t body_end = data.size() - kTrailerBytes;
  if (DecodeFixed64LE(data.data() + body_end + 8) != DeltaChecksum(data.substr(0, body_end + 8))) {
    return corrupt("checksum mismatch");
  }
  const uint64_t expected = DecodeFixed64LE(data.data() + body_end);
  absl::string_view in = data.substr(kHeaderBytes, body_end - kHeaderBytes);
  uint64_t n = 0;
  while (!in.empty()) {
    const char kind = in[0];
    in.remove_prefix(1);
    absl::string_view key;
    absl::string_view value;
    if ((kind != 'P' && kind != 'D') || !GetLengthPrefixed(&in, &key) ||
        (kind == 'P' && !GetLengthPrefixed(&in, &value))) {
      return corrupt(absl::StrCat("malformed entry ", n));
    }
    absl::Status s = fn(key, kind == 'D', value);
    if (!s.ok()) return s;
    ++n;
  }
  if (n != expected) return corrupt(absl::StrCat(n, " entries, the trailer says ", expected));
  return absl::OkStatus();
}

}  // namespace sluice::state::internal
