#pragma once

#include <cstdint>
#include <cstring>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "common/record.h"

namespace sluice {

// Compact binary encoding of records, used inside data-plane buffers.
//
// A record is its fields in schema order with no per-record header: int64 and timestamp as
// zig-zag varints, double as 8 little-endian bytes, bool as one byte, string as a varint
// length and the bytes. A nullable field (Field::nullable) is preceded by one byte: 1 for null
// (no value follows), 0 for a value. A buffer is a plain concatenation of records.
//
// Compatibility: NOT NULL fields encode exactly as in the format before nullable fields, so
// records, keys and state written by earlier versions (whose schemas had no nullable fields)
// decode unchanged; the schema, re-derived from the job on restore, says which fields carry
// the null byte.

// Appends `record` to `out`. Allocates only when `out` must grow.
void EncodeRecord(const Schema& schema, const Record& record, std::string* out);

// Encoding in place, for writers that keep their own buffer: at most EncodedSizeBound() bytes
// (11 per field plus each string's bytes) are written at `out` by EncodeRecordTo(), which
// returns the end of what it wrote (the same bytes EncodeRecord() appends). Bytes after that
// end, within the bound, may be overwritten (varints are written 8 bytes at a time).
inline size_t EncodedSizeBound(const Schema& schema, const Record& record);
char* EncodeRecordTo(const Schema& schema, const Record& record, char* out);

// Reads records one at a time from a buffer. Never trusts the bytes: a truncated or corrupt
// buffer yields kDataLoss rather than reading out of bounds.
class RecordDecoder {
 public:
  RecordDecoder(const Schema* schema, absl::string_view buffer)
      : schema_(schema), pos_(buffer.data()), end_(buffer.data() + buffer.size()) {}

  bool Done() const { return pos_ == end_; }
  // Bytes not decoded yet.
  size_t Remaining() const { return static_cast<size_t>(end_ - pos_); }
  // Decodes the next record into `record` (which must have schema->size() values).
  // Returns kDataLoss on corrupt input.
  absl::Status Next(Record* record);
  // Decodes the next records into records[0, *count), at most `max` and until Done(): the same
  // as Next() on each, in one call (schemas of NOT NULL integers in one loop). On kDataLoss,
  // *count records were decoded before the corrupt one.
  absl::Status NextBatch(Record* records, size_t max, size_t* count);

 private:
  // Next() of a schema whose fields are all NOT NULL integers (Schema::all_integral()).
  absl::Status NextIntegral(Record* record);

  const Schema* schema_;
  const char* pos_;
  const char* end_;
};

namespace codec_internal {
// EncodedSizeBound() of a schema with string fields.
size_t EncodedSizeBoundWithStrings(const Schema& schema, const Record& record);
}  // namespace codec_internal

// A null byte and a 10-byte varint per field, and each string's bytes.
inline size_t EncodedSizeBound(const Schema& schema, const Record& record) {
  if (!schema.has_strings()) return 11 * schema.size();
  return codec_internal::EncodedSizeBoundWithStrings(schema, record);
}

// Varint helpers, exposed for tests and other encoders.
void PutVarint64(uint64_t v, std::string* out);
// Returns nullptr when the varint runs past `end` or is longer than 10 bytes.
const char* GetVarint64(const char* p, const char* end, uint64_t* v);
inline uint64_t ZigZag(int64_t v) { return (static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63); }
inline int64_t UnZigZag(uint64_t v) { return static_cast<int64_t>(v >> 1) ^ -static_cast<int64_t>(v & 1); }

namespace codec_internal {

// Varints a word at a time. The length of most values is guessed right by the branch
// predictor (a key's and a timestamp's varints keep their length from record to record), so
// these branch on it, as the loop of bytes does, but store and load each varint of up to 4
// bytes with one unaligned access and its groups in a few shifts (no loop, no store or load
// per byte). Varints of 5 to 8 bytes spread their 7-bit groups in three steps of masks and
// shifts; 9 and 10 bytes take the loop of bytes. Session 23 measured varints with no branch on
// their length at all (the end of each found from the word's stop bits) at twice the cost of
// the loop of bytes: each varint's position then waits for the previous one's.

// `v`'s low 56 bits spread 7 to a byte (bit 7 of every byte clear).
inline uint64_t SpreadVarintGroups(uint64_t v) {
  v = (v & 0x000000000fffffffULL) | ((v & 0x00fffffff0000000ULL) << 4);
  v = (v & 0x00003fff00003fffULL) | ((v & 0x0fffc0000fffc000ULL) << 2);
  v = (v & 0x007f007f007f007fULL) | ((v & 0x3f803f803f803f80ULL) << 1);
  return v;
}

// The inverse of SpreadVarintGroups() (bit 7 of every byte of `w` ignored).
inline uint64_t GatherVarintGroups(uint64_t w) {
  w &= 0x7f7f7f7f7f7f7f7fULL;
  w = (w & 0x007f007f007f007fULL) | ((w & 0x7f007f007f007f00ULL) >> 1);
  w = (w & 0x00003fff00003fffULL) | ((w & 0x3fff00003fff0000ULL) >> 2);
  w = (w & 0x000000000fffffffULL) | ((w & 0x0fffffff00000000ULL) >> 4);
  return w;
}

// Writes `v` as a varint at `p`; returns its end. REQUIRES: 10 writable bytes at `p` (up to 8
// are written whatever the varint's length).
inline char* WriteVarint64Fast(uint64_t v, char* p) {
  if (v < (uint64_t{1} << 7)) {
    *p = static_cast<char>(v);
    return p + 1;
  }
  if (v < (uint64_t{1} << 14)) {
    const uint16_t w = static_cast<uint16_t>((v & 0x7f) | 0x80 | ((v << 1) & 0x7f00));
    std::memcpy(p, &w, 2);  // x86-64 and arm64 are little-endian
    return p + 2;
  }
  if (v < (uint64_t{1} << 21)) {
    const uint32_t w = static_cast<uint32_t>((v & 0x7f) | ((v << 1) & 0x7f00) |
                                             ((v << 2) & 0x7f0000) | 0x8080);
    std::memcpy(p, &w, 4);
    return p + 3;
  }
  if (v < (uint64_t{1} << 28)) {
    const uint32_t w = static_cast<uint32_t>((v & 0x7f) | ((v << 1) & 0x7f00) |
                                             ((v << 2) & 0x7f0000) | ((v << 3) & 0x7f000000) |
                                             0x808080);
    std::memcpy(p, &w, 4);
    return p + 4;
  }
  if (v < (uint64_t{1} << 56)) {
    const uint64_t groups = SpreadVarintGroups(v);
    const int bytes = (71 - __builtin_clzll(groups)) >> 3;  // 5 to 8
    const uint64_t more = 0x8080808080808080ULL & ((uint64_t{1} << (8 * bytes - 8)) - 1);
    const uint64_t word = groups | more;
    std::memcpy(p, &word, 8);
    return p + bytes;
  }
  while (v >= 0x80) {
    *p++ = static_cast<char>(v | 0x80);
    v >>= 7;
  }
  *p++ = static_cast<char>(v);
  return p;
}

// Reads a varint at `p`; nullptr when it is longer than 10 bytes. REQUIRES: 10 readable bytes
// at `p`.
inline const char* ReadVarint64With10Bytes(const char* p, uint64_t* v) {
  uint64_t word;
  std::memcpy(&word, p, 8);
  if ((word & 0x80) == 0) {
    *v = word & 0x7f;
    return p + 1;
  }
  if ((word & 0x8000) == 0) {
    *v = (word & 0x7f) | ((word >> 1) & 0x3f80);
    return p + 2;
  }
  if ((word & 0x800000) == 0) {
    *v = (word & 0x7f) | ((word >> 1) & 0x3f80) | ((word >> 2) & 0x1fc000);
    return p + 3;
  }
  for (int bytes = 4; bytes <= 8; ++bytes) {  // unrolled: a branch each, as above
    if ((word & (uint64_t{0x80} << (8 * bytes - 8))) == 0) {
      // The varint's bytes (the shift by 64 of 8 bytes is not taken: all of the word).
      const uint64_t mine = bytes == 8 ? word : word & ((uint64_t{1} << (8 * bytes)) - 1);
      *v = GatherVarintGroups(mine);
      return p + bytes;
    }
  }
  uint64_t result = GatherVarintGroups(word);
  uint64_t byte = static_cast<unsigned char>(p[8]);
  result |= (byte & 0x7f) << 56;
  if (byte < 0x80) {
    *v = result;
    return p + 9;
  }
  byte = static_cast<unsigned char>(p[9]);
  result |= byte << 63;
  if (byte < 0x80) {
    *v = result;
    return p + 10;
  }
  return nullptr;
}

}  // namespace codec_internal

// EncodeRecordTo() of a record whose `num_fields` fields are all NOT NULL integers
// (Schema::all_integral()), inline for writers that encode records in a loop. REQUIRES:
// EncodedSizeBound() (11 * num_fields) writable bytes at `out`; bytes after the returned end,
// within that bound, may be overwritten.
inline char* EncodeIntegralRecordTo(const Record& record, size_t num_fields, char* out) {
  for (size_t i = 0; i < num_fields; ++i) {
    out = codec_internal::WriteVarint64Fast(ZigZag(record[i].i), out);
  }
  return out;
}

}  // namespace sluice
