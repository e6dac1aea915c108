#pragma once

#include <cstdint>
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
// returns the end of what it wrote (the same bytes EncodeRecord() appends).
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
  // *count records were decoded before the corrupt one. A schema of no fields decodes no
  // records: kDataLoss while bytes remain (its records have none).
  absl::Status NextBatch(Record* records, size_t max, size_t* count);
  // NextBatch() into rows of int64s instead of Records, for schemas of NOT NULL integers
  // (Schema::all_integral()): record k's field i at rows[k * schema->size() + i] (room for
  // max * schema->size() values), the values Next() gives. On kDataLoss, *count records were
  // decoded before the corrupt one (Remaining() starts at it), and a schema of no fields gives
  // it as NextBatch() does; kFailedPrecondition for a schema with other fields.
  absl::Status NextIntRows(int64_t* rows, size_t max, size_t* count);

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

// EncodeRecordTo() of a record whose `num_fields` fields are all NOT NULL integers
// (Schema::all_integral()), inline for writers that encode records in a loop.
inline char* EncodeIntegralRecordTo(const Record& record, size_t num_fields, char* out) {
  for (size_t i = 0; i < num_fields; ++i) {
    uint64_t v = ZigZag(record[i].i);
    while (v >= 0x80) {
      *out++ = static_cast<char>(v | 0x80);
      v >>= 7;
    }
    *out++ = static_cast<char>(v);
  }
  return out;
}

}  // namespace sluice
