#include "state/internal/delta_file.h"

#include <algorithm>
#include <cassert>
#include <cstring>
#include <limits>
#include <memory>
#include <utility>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "absl/strings/str_cat.h"
#include "common/filesystem.h"
#include "state/internal/key_codec.h"

namespace sluice::state::internal {
namespace {

constexpr size_t kHeaderBytes = 8;    // magic + version
constexpr size_t kTrailerBytes = 16;  // entry count + checksum

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

constexpr uint64_t kMul1 = 0x9E3779B97F4A7C15ULL;
constexpr uint64_t kMul2 = 0xC2B2AE3D27D4EB4FULL;

// Version 2 entry header flags (the low bits of the key length's varint).
constexpr uint32_t kDeleted = 1;
constexpr uint32_t kNoExpiry = 2;
constexpr int kFlagBits = 2;
// The longest entry header and value length: two varint32s.
constexpr size_t kMaxVarints = 10;

inline uint64_t Mix(uint64_t h, uint64_t word) {
  h ^= word * kMul1;
  return ((h << 31) | (h >> 33)) * kMul2;
}

inline uint64_t Finalize(uint64_t h, uint64_t length) {
  h ^= length * kMul2;
  h ^= h >> 29;
  h *= kMul2;
  h ^= h >> 32;
  return h;
}

inline char* EncodeVarint32(char* p, uint32_t v) {
  while (v >= 0x80) {
    *p++ = static_cast<char>((v & 0x7f) | 0x80);
    v >>= 7;
  }
  *p++ = static_cast<char>(v);
  return p;
}

}  // namespace

void CopyStreaming(char* dst, const char* src, size_t n) {
#if defined(__SSE2__)
  const size_t head = std::min(n, (16 - reinterpret_cast<uintptr_t>(dst) % 16) % 16);
  std::memcpy(dst, src, head);
  size_t i = head;
  for (; i + 64 <= n; i += 64) {
    const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i + 16));
    const __m128i c = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i + 32));
    const __m128i d = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i + 48));
    _mm_stream_si128(reinterpret_cast<__m128i*>(dst + i), a);
    _mm_stream_si128(reinterpret_cast<__m128i*>(dst + i + 16), b);
    _mm_stream_si128(reinterpret_cast<__m128i*>(dst + i + 32), c);
    _mm_stream_si128(reinterpret_cast<__m128i*>(dst + i + 48), d);
  }
  std::memcpy(dst + i, src + i, n - i);
#else
  std::memcpy(dst, src, n);
#endif
}

void FenceStreaming() {
#if defined(__SSE2__)
  _mm_sfence();
#endif
}

void DeltaChecksum::Blocks(const char* p, size_t blocks) {
  // Four independent chains (a word's lane is its index mod 4): a corrupted, dropped or
  // swapped word changes its lane, and lanes are combined in order.
  uint64_t a = lanes_[0], b = lanes_[1], c = lanes_[2], d = lanes_[3];
  for (size_t i = 0; i < blocks; ++i, p += kBlockBytes) {
    a = Mix(a, LoadLE64(p));
    b = Mix(b, LoadLE64(p + 8));
    c = Mix(c, LoadLE64(p + 16));
    d = Mix(d, LoadLE64(p + 24));
  }
  lanes_[0] = a;
  lanes_[1] = b;
  lanes_[2] = c;
  lanes_[3] = d;
  bytes_ += kBlockBytes * blocks;
}

uint64_t DeltaChecksum::Finish(const char* tail, size_t tail_bytes) {
  uint64_t lanes[4] = {lanes_[0], lanes_[1], lanes_[2], lanes_[3]};
  size_t i = 0;
  assert(tail_bytes < kBlockBytes);
  for (; i + 8 <= tail_bytes; i += 8) lanes[i / 8] = Mix(lanes[i / 8], LoadLE64(tail + i));
  uint64_t t = 0;
  for (size_t j = tail_bytes; j > i; --j) t = (t << 8) | static_cast<uint8_t>(tail[j - 1]);
  lanes[i / 8 % 4] ^= t * kMul1;  // i / 8 < 4: the lane after the last whole word
  uint64_t h = 0;
  for (uint64_t lane : lanes) h = Mix(h, lane);
  return Finalize(h, bytes_ + tail_bytes);
}

uint64_t ChecksumOf(absl::string_view data) {
  DeltaChecksum c;
  const size_t blocks = data.size() / DeltaChecksum::kBlockBytes;
  c.Blocks(data.data(), blocks);
  const size_t done = blocks * DeltaChecksum::kBlockBytes;
  return c.Finish(data.data() + done, data.size() - done);
}

void DeltaChecksumV1::Words(const char* p, size_t words) {
  uint64_t h = h_;
  for (size_t i = 0; i < words; ++i) h = Mix(h, LoadLE64(p + 8 * i));
  h_ = h;
  bytes_ += 8 * words;
}

uint64_t DeltaChecksumV1::Finish(const char* tail, size_t tail_bytes) {
  uint64_t t = 0;
  for (size_t j = tail_bytes; j > 0; --j) t = (t << 8) | static_cast<uint8_t>(tail[j - 1]);
  return Finalize(h_ ^ (t * kMul1), bytes_ + tail_bytes);
}

uint64_t ChecksumOfV1(absl::string_view data) {
  DeltaChecksumV1 c;
  const size_t words = data.size() / 8;
  c.Words(data.data(), words);
  return c.Finish(data.data() + 8 * words, data.size() - 8 * words);
}

void DeltaBytes::Append(const char* src, size_t n) {
  if (n == 0) return;  // data_ may be null yet (memcpy to null is undefined, even of 0 bytes)
  if (size_ + n > capacity_) {
    const size_t capacity = std::max({2 * capacity_, size_ + n, DeltaBytesPool::kMinCapacity});
    std::unique_ptr<char[]> data(new char[capacity]);
    if (size_ > 0) std::memcpy(data.get(), data_.get(), size_);
    data_ = std::move(data);
    if (pool_ != nullptr) pool_->Grew(capacity - capacity_);
    capacity_ = capacity;
  }
  CopyStreaming(data_.get() + size_, src, n);
  size_ += n;
}

DeltaBytesPool::DeltaBytesPool(std::shared_ptr<Gauge> held_bytes)
    : held_gauge_(std::move(held_bytes)) {}

std::shared_ptr<DeltaBytes> DeltaBytesPool::Take() {
  std::unique_ptr<DeltaBytes> bytes;
  {
    absl::MutexLock lock(&mu_);
    if (!spare_.empty()) {
      bytes = std::move(spare_.back());
      spare_.pop_back();
    }
  }
  if (bytes == nullptr) {
    bytes = std::make_unique<DeltaBytes>();
    bytes->pool_ = this;
  }
  std::shared_ptr<DeltaBytesPool> self = shared_from_this();
  return std::shared_ptr<DeltaBytes>(bytes.release(),
                                     [self](DeltaBytes* b) { self->Return(b); });
}

void DeltaBytesPool::Grew(size_t bytes) {
  held_.fetch_add(bytes, std::memory_order_relaxed);
  PublishHeld();
}

void DeltaBytesPool::PublishHeld() {
  if (held_gauge_ == nullptr) return;
  absl::MutexLock lock(&mu_);  // the last Set() reads the last change (not per record)
  held_gauge_->Set(static_cast<double>(held_.load(std::memory_order_relaxed)));
}

void DeltaBytesPool::Return(DeltaBytes* bytes) {
  std::unique_ptr<DeltaBytes> owned(bytes);
  {
    absl::MutexLock lock(&mu_);
    // The recent use: the largest delta of the last few returned, decaying by a quarter per
    // return. A spare much larger than that (grown by one burst of hot entries) is dropped,
    // so a peak's memory goes back once the deltas shrink.
    recent_bytes_ = std::max(owned->size(), recent_bytes_ - recent_bytes_ / 4);
    if (spare_.size() < kMaxSpare &&
        owned->capacity() <= kMaxSpareFactor * std::max(recent_bytes_, kMinCapacity)) {
      spare_.push_back(std::move(owned));
      return;
    }
  }
  const size_t freed = owned->capacity();
  owned.reset();
  held_.fetch_sub(freed, std::memory_order_relaxed);
  PublishHeld();
}

absl::Status WriteDeltaFile(const DeltaBytes& bytes, const std::string& path) {
  // As WriteFileDurably() without its directory sync: the upload syncs the directory once.
  FileSystem& fs = *FileSystem::Default();
  const std::string tmp = path + ".tmp";
  absl::Status s = fs.WriteFile(tmp, bytes.view());
  if (s.ok()) s = fs.SyncFile(tmp);
  if (s.ok()) s = fs.Rename(tmp, path);
  if (s.ok()) return s;
  fs.DeleteFile(tmp).IgnoreError();
  return absl::UnavailableError(s.message());
}

void DeltaWriter::Open(DeltaBytes* out) {
  out_ = out;
  out_->size_ = 0;
  if (buf_.size() > kFlushBytes) std::string().swap(buf_);  // grown by a large entry: let it go
  if (buf_.size() < kFlushBytes) buf_.resize(kFlushBytes);
  std::memcpy(buf_.data(), kDeltaMagic.data(), kDeltaMagic.size());
  buf_[kDeltaMagic.size()] = static_cast<char>(kDeltaVersion);
  pos_ = kHeaderBytes;
  checksum_ = DeltaChecksum();
  entries_ = 0;
  status_ = absl::OkStatus();
}

char* DeltaWriter::Reserve(size_t bytes) {
  if (pos_ + bytes > buf_.size()) {
    Flush(/*all=*/false);
    if (pos_ + bytes > buf_.size()) buf_.resize(pos_ + bytes);
  }
  return buf_.data() + pos_;
}

void DeltaWriter::Flush(bool all) {
  const size_t n = all ? pos_ : pos_ / DeltaChecksum::kBlockBytes * DeltaChecksum::kBlockBytes;
  if (n == 0) return;  // e.g. a first entry larger than the staging buffer: nothing to append
  if (!all) checksum_.Blocks(buf_.data(), n / DeltaChecksum::kBlockBytes);
  out_->Append(buf_.data(), n);
  std::memmove(buf_.data(), buf_.data() + n, pos_ - n);  // fewer than kBlockBytes
  pos_ -= n;
}

bool DeltaWriter::Fits(absl::string_view key, size_t value_bytes) {
  if (key.size() <= (std::numeric_limits<uint32_t>::max() >> kFlagBits) &&
      value_bytes <= std::numeric_limits<uint32_t>::max()) {
    return true;
  }
  if (status_.ok()) {
    status_ = absl::AbortedError(absl::StrCat(
        "a key of ", key.size(), " bytes or a value of ", value_bytes,
        " bytes exceeds the delta file's limits (1 GiB keys, 4 GiB values)"));
  }
  return false;
}

void DeltaWriter::Put(absl::string_view key, int64_t expiry_ms, absl::string_view payload) {
  const bool no_expiry = expiry_ms == 0;
  const size_t value_bytes = payload.size() + (no_expiry ? 0 : kExpiryBytes);
  if (!Fits(key, value_bytes)) return;
  char* p = Reserve(kMaxVarints + key.size() + value_bytes);
  const uint32_t head = static_cast<uint32_t>(key.size()) << kFlagBits;
  p = EncodeVarint32(p, head | (no_expiry ? kNoExpiry : 0));
  std::memcpy(p, key.data(), key.size());
  p = EncodeVarint32(p + key.size(), static_cast<uint32_t>(value_bytes));
  if (!no_expiry) {
    const uint64_t e = static_cast<uint64_t>(expiry_ms);
    for (int i = 0; i < 8; ++i) p[i] = static_cast<char>(e >> (56 - 8 * i));
    p += kExpiryBytes;
  }
  std::memcpy(p, payload.data(), payload.size());
  pos_ = static_cast<size_t>(p + payload.size() - buf_.data());
  ++entries_;
}

void DeltaWriter::Put(absl::string_view key, absl::string_view stored_value) {
  static constexpr char kZeros[kExpiryBytes] = {};
  if (stored_value.size() >= kExpiryBytes &&
      std::memcmp(stored_value.data(), kZeros, kExpiryBytes) == 0) {
    Put(key, 0, stored_value.substr(kExpiryBytes));
    return;
  }
  if (!Fits(key, stored_value.size())) return;
  char* p = Reserve(kMaxVarints + key.size() + stored_value.size());
  p = EncodeVarint32(p, static_cast<uint32_t>(key.size()) << kFlagBits);
  std::memcpy(p, key.data(), key.size());
  p = EncodeVarint32(p + key.size(), static_cast<uint32_t>(stored_value.size()));
  std::memcpy(p, stored_value.data(), stored_value.size());
  pos_ = static_cast<size_t>(p + stored_value.size() - buf_.data());
  ++entries_;
}

void DeltaWriter::Delete(absl::string_view key) {
  if (!Fits(key, 0)) return;
  char* p = Reserve(kMaxVarints + key.size());
  p = EncodeVarint32(p, (static_cast<uint32_t>(key.size()) << kFlagBits) | kDeleted);
  std::memcpy(p, key.data(), key.size());
  pos_ = static_cast<size_t>(p + key.size() - buf_.data());
  ++entries_;
}

absl::Status DeltaWriter::Finish() {
  if (out_ == nullptr) return absl::FailedPreconditionError("delta file not open");
  char* p = Reserve(kTrailerBytes);
  for (int i = 0; i < 8; ++i) p[i] = static_cast<char>(entries_ >> (8 * i));
  pos_ += 8;
  const size_t blocks = pos_ / DeltaChecksum::kBlockBytes;
  checksum_.Blocks(buf_.data(), blocks);
  const size_t done = blocks * DeltaChecksum::kBlockBytes;
  const uint64_t sum = checksum_.Finish(buf_.data() + done, pos_ - done);
  p = buf_.data() + pos_;
  for (int i = 0; i < 8; ++i) p[i] = static_cast<char>(sum >> (8 * i));
  pos_ += 8;
  Flush(/*all=*/true);
  out_ = nullptr;
  FenceStreaming();  // the bytes are complete before another thread is handed them
  return status_;
}

namespace {

// The entries of a version 1 file's body `in` (between header and trailer).
absl::Status ReadEntriesV1(
    absl::string_view in, uint64_t* n,
    absl::FunctionRef<absl::Status(absl::string_view key, bool deleted, absl::string_view value)>
        fn,
    absl::FunctionRef<absl::Status(absl::string_view what)> corrupt) {
  while (!in.empty()) {
    const char kind = in[0];
    in.remove_prefix(1);
    absl::string_view key;
    absl::string_view value;
    if ((kind != 'P' && kind != 'D') || !GetLengthPrefixed(&in, &key) ||
        (kind == 'P' && !GetLengthPrefixed(&in, &value))) {
      return corrupt(absl::StrCat("malformed entry ", *n));
    }
    absl::Status s = fn(key, kind == 'D', value);
    if (!s.ok()) return s;
    ++*n;
  }
  return absl::OkStatus();
}

// The entries of a version 2 file's body `in`.
absl::Status ReadEntriesV2(
    absl::string_view in, uint64_t* n,
    absl::FunctionRef<absl::Status(absl::string_view key, bool deleted, absl::string_view value)>
        fn,
    absl::FunctionRef<absl::Status(absl::string_view what)> corrupt) {
  std::string stored;  // [expiry 0][payload] of kNoExpiry entries
  while (!in.empty()) {
    uint32_t head = 0;
    absl::string_view value;
    if (!GetVarint32(&in, &head) || (head & kDeleted & (head >> 1)) != 0 ||
        in.size() < (head >> kFlagBits)) {
      return corrupt(absl::StrCat("malformed entry ", *n));
    }
    const absl::string_view key = in.substr(0, head >> kFlagBits);
    in.remove_prefix(key.size());
    const bool deleted = (head & kDeleted) != 0;
    if (!deleted) {
      if (!GetLengthPrefixed(&in, &value)) return corrupt(absl::StrCat("malformed entry ", *n));
      if ((head & kNoExpiry) != 0) {
        stored.assign(kExpiryBytes, '\0');
        stored.append(value.data(), value.size());
        value = stored;
      }
    }
    absl::Status s = fn(key, deleted, value);
    if (!s.ok()) return s;
    ++*n;
  }
  return absl::OkStatus();
}

}  // namespace

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
  const absl::string_view summed = data.substr(0, body_end + 8);
  const uint64_t sum = version == 1 ? ChecksumOfV1(summed) : ChecksumOf(summed);
  if (LoadLE64(data.data() + body_end + 8) != sum) {
    return corrupt("checksum mismatch");
  }
  const uint64_t expected = LoadLE64(data.data() + body_end);
  const absl::string_view body = data.substr(kHeaderBytes, body_end - kHeaderBytes);
  uint64_t n = 0;
  absl::Status s = version == 1 ? ReadEntriesV1(body, &n, fn, corrupt)
                                : ReadEntriesV2(body, &n, fn, corrupt);
  if (!s.ok()) return s;
  if (n != expected) return corrupt(absl::StrCat(n, " entries, the trailer says ", expected));
  return absl::OkStatus();
}

}  // namespace sluice::state::internal
