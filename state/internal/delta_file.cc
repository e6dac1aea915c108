#include "state/internal/delta_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
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

// The 8 bytes at `p` as a little-endian number on any host (one load where the host is
// little-endian).
uint64_t LoadLE64(const char* p) {
  uint64_t w;
  std::memcpy(&w, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  w = __builtin_bswap64(w);
#endif
  return w;
}

}  // namespace

constexpr uint64_t kMul1 = 0x9E3779B97F4A7C15ULL;
constexpr uint64_t kMul2 = 0xC2B2AE3D27D4EB4FULL;

void DeltaChecksum::Words(const char* p, size_t words) {
  // Each word multiplied in and rotated: a corrupted, dropped or swapped word changes the
  // result.
  uint64_t h = h_;
  for (size_t i = 0; i < words; ++i) {
    h ^= LoadLE64(p + 8 * i) * kMul1;
    h = ((h << 31) | (h >> 33)) * kMul2;
  }
  h_ = h;
  bytes_ += 8 * words;
}

uint64_t DeltaChecksum::Finish(const char* tail, size_t tail_bytes) {
  uint64_t t = 0;
  for (size_t j = tail_bytes; j > 0; --j) t = (t << 8) | static_cast<uint8_t>(tail[j - 1]);
  uint64_t h = h_ ^ (t * kMul1);
  h ^= (bytes_ + tail_bytes) * kMul2;  // the length
  h ^= h >> 29;
  h *= kMul2;
  h ^= h >> 32;
  return h;
}

uint64_t ChecksumOf(absl::string_view data) {
  DeltaChecksum c;
  const size_t words = data.size() / 8;
  c.Words(data.data(), words);
  return c.Finish(data.data() + 8 * words, data.size() - 8 * words);
}

DeltaWriter::~DeltaWriter() {
  if (fd_ >= 0) ::close(fd_);
}

absl::Status DeltaWriter::Open(const std::string& path) {
  if (fd_ >= 0) ::close(fd_);
  path_ = path;
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) {
    return absl::UnavailableError(absl::StrCat("cannot create ", path, ": ", std::strerror(errno)));
  }
  buf_.clear();
  buf_.append(kDeltaMagic.data(), kDeltaMagic.size());
  buf_.push_back(static_cast<char>(kDeltaVersion));
  checksum_ = DeltaChecksum();
  entries_ = 0;
  status_ = absl::OkStatus();
  return absl::OkStatus();
}

void DeltaWriter::Flush(bool all) {
  const size_t n = all ? buf_.size() : buf_.size() / 8 * 8;
  if (!all) checksum_.Words(buf_.data(), n / 8);
  for (size_t done = 0; done < n && status_.ok();) {
    const ssize_t w = ::write(fd_, buf_.data() + done, n - done);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) {
      status_ = absl::UnavailableError(absl::StrCat("cannot write ", path_, ": ", std::strerror(errno)));
      break;
    }
    done += static_cast<size_t>(w);
  }
  buf_.erase(0, n);
}

void DeltaWriter::Put(absl::string_view key, absl::string_view stored_value) {
  buf_.push_back('P');
  PutVarint32(&buf_, static_cast<uint32_t>(key.size()));
  buf_.append(key.data(), key.size());
  PutVarint32(&buf_, static_cast<uint32_t>(stored_value.size()));
  buf_.append(stored_value.data(), stored_value.size());
  ++entries_;
  if (buf_.size() >= kFlushBytes) Flush(/*all=*/false);
}

void DeltaWriter::Delete(absl::string_view key) {
  buf_.push_back('D');
  PutVarint32(&buf_, static_cast<uint32_t>(key.size()));
  buf_.append(key.data(), key.size());
  ++entries_;
  if (buf_.size() >= kFlushBytes) Flush(/*all=*/false);
}

absl::Status DeltaWriter::Finish() {
  if (fd_ < 0) return absl::FailedPreconditionError("delta file not open");
  PutFixed64LE(&buf_, entries_);
  const size_t words = buf_.size() / 8;
  checksum_.Words(buf_.data(), words);
  PutFixed64LE(&buf_, checksum_.Finish(buf_.data() + 8 * words, buf_.size() - 8 * words));
  Flush(/*all=*/true);
  if (::close(fd_) != 0 && status_.ok()) {
    status_ = absl::UnavailableError(absl::StrCat("cannot close ", path_, ": ", std::strerror(errno)));
  }
  fd_ = -1;
  return status_;
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
  if (LoadLE64(data.data() + body_end + 8) != ChecksumOf(data.substr(0, body_end + 8))) {
    return corrupt("checksum mismatch");
  }
  const uint64_t expected = LoadLE64(data.data() + body_end);
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
