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

// Word-at-a-time varints. A value below 2^56 (up to 8 varint bytes) is spread into 7-bit
// groups and written with one unaligned 8-byte store (the bytes after its varint are scratch
// within the caller's room) and no branch on its length; a 9- or 10-byte varint takes the loop
// of bytes. The same bytes as the loop of bytes.

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

// Writes `v` as a varint at `p`; returns its end. REQUIRES: 10 writable bytes at `p` (8 are
// written whatever the length when v < 2^56).
inline char* WriteVarint64Fast(uint64_t v, char* p) {
  if (__builtin_expect(v >= (uint64_t{1} << 56), 0)) {
    while (v >= 0x80) {
      *p++ = static_cast<char>(v | 0x80);
      v >>= 7;
    }
    *p++ = static_cast<char>(v);
    return p;
  }
  const uint64_t groups = SpreadVarintGroups(v);
  // Bytes used: 1 to 8 (the byte of the highest set bit; 1 for 0).
  const int bytes = (71 - __builtin_clzll(groups | 1)) >> 3;
  // Continuation bits on every byte but the last.
  const uint64_t more = 0x8080808080808080ULL & ((uint64_t{1} << (8 * bytes - 8)) - 1);
  const uint64_t word = groups | more;
  std::memcpy(p, &word, 8);  // x86-64 and arm64 are little-endian
  return p + bytes;
}

// Reads a varint at `p`; nullptr when it is longer than 10 bytes. REQUIRES: 10 readable bytes
// at `p`. One 8-byte load and no branch on the length of varints of up to 8 bytes.
inline const char* ReadVarint64With10Bytes(const char* p, uint64_t* v) {
  uint64_t word;
  std::memcpy(&word, p, 8);
  const uint64_t last = ~word & 0x8080808080808080ULL;  // bytes that end the varint
  if (__builtin_expect(last != 0, 1)) {
    const int end_bit = __builtin_ctzll(last);  // bit 7 of the last byte
    // The varint's bytes (end_bit is 63 at most: the shift of 2 by 63 wraps to 0, all ones).
    *v = GatherVarintGroups(word & ((uint64_t{2} << end_bit) - 1));
    return p + (end_bit >> 3) + 1;
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
