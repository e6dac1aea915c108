#include "common/record_codec.h"

#include <cstring>

#include "absl/base/attributes.h"
#include "absl/base/optimization.h"

#include "absl/strings/str_cat.h"

namespace sluice {

void PutVarint64(uint64_t v, std::string* out) {
  char buf[10];
  int n = 0;
  while (v >= 0x80) {
    buf[n++] = static_cast<char>(v | 0x80);
    v >>= 7;
  }
  buf[n++] = static_cast<char>(v);
  out->append(buf, n);
}

namespace {

// Writes `v` as a varint at `p` (room for 10 bytes); returns the end.
inline char* WriteVarint64(uint64_t v, char* p) {
  while (v >= 0x80) {
    *p++ = static_cast<char>(v | 0x80);
    v >>= 7;
  }
  *p++ = static_cast<char>(v);
  return p;
}

// Varints read a word at a time. The length of most values is guessed right by the branch
// predictor (a key's and a timestamp's varints keep their length from record to record), so
// the reader branches on it, as a loop of bytes does, but loads each varint of up to 8 bytes
// with one unaligned 8-byte load and gathers its 7-bit groups in shifts (no load per byte);
// 9 and 10 bytes read the bytes after the word. Session 23 measured varints with no branch on
// their length at all (the end found from the word's stop bits) at twice the cost of the loop
// of bytes: each varint's position then waits for the previous one's. The writer stays a loop
// of bytes: session 25 measured a store of the spread groups per varint (up to 8 bytes) at the
// same cost for 2-3 byte values and 40% more for 6-byte timestamps (codec_benchmark).

// The 7-bit groups of the bytes of `w` (bit 7 of each ignored) as one value, byte 0 lowest.
inline uint64_t GatherVarintGroups(uint64_t w) {
  w &= 0x7f7f7f7f7f7f7f7fULL;
  w = (w & 0x007f007f007f007fULL) | ((w & 0x7f007f007f007f00ULL) >> 1);
  w = (w & 0x00003fff00003fffULL) | ((w & 0x3fff00003fff0000ULL) >> 2);
  w = (w & 0x000000000fffffffULL) | ((w & 0x0fffffff00000000ULL) >> 4);
  return w;
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

// GetVarint64(), inline: the loop of bytes of a record's last varints (a join's kept row
// decoded on its own ends within 10 bytes of its buffer's end for all of its fields).
ABSL_ATTRIBUTE_ALWAYS_INLINE inline const char* ReadVarint64Bytewise(const char* p, const char* end,
                                                                    uint64_t* v) {
  uint64_t result = 0;
  for (int shift = 0; shift <= 63 && p < end; shift += 7) {
    const uint64_t byte = static_cast<unsigned char>(*p++);
    result |= (byte & 0x7f) << shift;
    if ((byte & 0x80) == 0) {
      *v = result;
      return p;
    }
  }
  return nullptr;
}

// Reads a varint at [p, end); nullptr when it runs past `end` or is longer than 10 bytes.
inline const char* ReadVarint64(const char* p, const char* end, uint64_t* v) {
  if (ABSL_PREDICT_TRUE(end - p >= 10)) return ReadVarint64With10Bytes(p, v);
  return ReadVarint64Bytewise(p, end, v);
}

// Out of line, so that the decoding loops keep a small frame.
ABSL_ATTRIBUTE_NOINLINE absl::Status CorruptVarint(size_t field) {
  return absl::DataLossError(absl::StrCat("corrupt varint in field ", field));
}

// NextBatch() and NextIntRows() of a schema of no fields with bytes left: its records have no
// bytes, so none of them can be what is left (decoding them would never reach the end).
ABSL_ATTRIBUTE_NOINLINE absl::Status NoFieldsButBytes() {
  return absl::DataLossError("bytes after records of no fields");
}

}  // namespace

const char* GetVarint64(const char* p, const char* end, uint64_t* v) {
  return ReadVarint64Bytewise(p, end, v);
}

namespace {

// Writes `record` at `p` (room for its EncodedSizeBound() bytes); returns the end.
char* EncodeInto(const Field* fields, size_t n, const Record& record, char* p) {
  for (size_t i = 0; i < n; ++i) {
    const Value& v = record[i];
    const Field& f = fields[i];
    if (f.nullable) {
      const bool null = record.IsNull(i);
      *p++ = null ? 1 : 0;
      if (null) continue;
    }
    switch (f.type) {
      case FieldType::kInt64:
      case FieldType::kTimestamp: p = WriteVarint64(ZigZag(v.i), p); break;
      case FieldType::kDouble:
        std::memcpy(p, &v.d, 8);  // x86-64 and arm64 are little-endian
        p += 8;
        break;
      case FieldType::kBool: *p++ = v.i ? 1 : 0; break;
      case FieldType::kString:
        p = WriteVarint64(v.s.size(), p);
        if (!v.s.empty()) std::memcpy(p, v.s.data(), v.s.size());
        p += v.s.size();
        break;
    }
  }
  return p;
}

}  // namespace

namespace codec_internal {

size_t EncodedSizeBoundWithStrings(const Schema& schema, const Record& record) {
  const size_t n = schema.size();
  const Field* fields = schema.fields().data();
  size_t bound = 11 * n;  // a null byte and a 10-byte varint per field
  for (size_t i = 0; i < n; ++i) {
    if (fields[i].type == FieldType::kString) bound += record[i].s.size();
  }
  return bound;
}

}  // namespace codec_internal

char* EncodeRecordTo(const Schema& schema, const Record& record, char* out) {
  if (schema.all_integral()) {  // the same bytes as EncodeInto(), without a switch per field
    return EncodeIntegralRecordTo(record, schema.size(), out);
  }
  return EncodeInto(schema.fields().data(), schema.size(), record, out);
}

// Plain stores into a stack buffer and one append (std::string's members are not inlined: a
// call per field was most of the cost); larger records are written in place after one resize.
void EncodeRecord(const Schema& schema, const Record& record, std::string* out) {
  constexpr size_t kStackBytes = 512;
  const size_t bound = EncodedSizeBound(schema, record);
  if (bound <= kStackBytes) {
    char buf[kStackBytes];
    const char* end = EncodeRecordTo(schema, record, buf);
    out->append(buf, static_cast<size_t>(end - buf));
    return;
  }
  const size_t old_size = out->size();
  out->resize(old_size + bound);
  char* const begin = &(*out)[0];
  const char* end = EncodeRecordTo(schema, record, begin + old_size);
  out->resize(static_cast<size_t>(end - begin));
}

// Inline: Next() of integer records is one call (a join decodes each matching row alone).
ABSL_ATTRIBUTE_ALWAYS_INLINE inline absl::Status RecordDecoder::NextIntegral(Record* record) {
  const size_t n = schema_->size();
  const char* pos = pos_;
  for (size_t i = 0; i < n; ++i) {
    uint64_t u;
    const char* p = ReadVarint64(pos, end_, &u);
    if (ABSL_PREDICT_FALSE(p == nullptr)) return CorruptVarint(i);
    (*record)[i].i = UnZigZag(u);
    pos = p;
  }
  pos_ = pos;
  return absl::OkStatus();
}

namespace {

// Decodes records of `n` NOT NULL integer fields (kFields when it is not 0, a constant the
// compiler unrolls) into records [*k, max) of `out` while a record's worst case (10 bytes a
// field) and a word's load remain before `end`: no bounds check per field. `out(j)` is where
// record j's values go: something indexed by field whose `[i]` is an int64_t lvalue. Advances
// *pos and *k; on an overlong varint, returns the field's index (*pos at the start of the
// corrupt record), else -1.
template <size_t kFields, typename Out>
ABSL_ATTRIBUTE_ALWAYS_INLINE inline int DecodeIntegralRecords(size_t n, const char** pos,
                                                              const char* end, const Out& out,
                                                              size_t max, size_t* k) {
  if (kFields != 0) n = kFields;
  const ptrdiff_t worst = static_cast<ptrdiff_t>(10 * n);
  const char* p = *pos;
  size_t j = *k;
  for (; j < max && end - p >= worst; ++j) {
    auto values = out(j);
    const char* q = p;
    for (size_t i = 0; i < n; ++i) {
      uint64_t u;
      q = ReadVarint64With10Bytes(q, &u);
      if (ABSL_PREDICT_FALSE(q == nullptr)) {
        *pos = p;
        *k = j;
        return static_cast<int>(i);
      }
      values[i] = UnZigZag(u);
    }
    p = q;
  }
  *pos = p;
  *k = j;
  return -1;
}

// DecodeIntegralRecords() of n fields, with a loop of its own for 1 to 4 (keys, timestamps,
// counts).
template <typename Out>
int DecodeIntegralRecordsOf(size_t n, const char** pos, const char* end, const Out& out, size_t max,
                            size_t* k) {
  switch (n) {
    case 1: return DecodeIntegralRecords<1>(n, pos, end, out, max, k);
    case 2: return DecodeIntegralRecords<2>(n, pos, end, out, max, k);
    case 3: return DecodeIntegralRecords<3>(n, pos, end, out, max, k);
    case 4: return DecodeIntegralRecords<4>(n, pos, end, out, max, k);
    default: return DecodeIntegralRecords<0>(n, pos, end, out, max, k);
  }
}

// A record's values as DecodeIntegralRecords() writes them: Value::i of each.
struct ValueInts {
  Value* values;
  int64_t& operator[](size_t i) const { return values[i].i; }
};

}  // namespace

absl::Status RecordDecoder::NextBatch(Record* records, size_t max, size_t* count) {
  size_t k = 0;
  const size_t n = schema_->size();
  if (schema_->all_integral() && n > 0) {
    const char* pos = pos_;
    const int corrupt = DecodeIntegralRecordsOf(
        n, &pos, end_, [records](size_t j) { return ValueInts{&records[j][0]}; }, max, &k);
    pos_ = pos;
    if (ABSL_PREDICT_FALSE(corrupt >= 0)) {
      *count = k;
      return CorruptVarint(static_cast<size_t>(corrupt));
    }
  }
  if (ABSL_PREDICT_FALSE(n == 0) && !Done()) {  // records of no bytes would never reach the end
    *count = 0;
    return NoFieldsButBytes();
  }
  for (; k < max && !Done(); ++k) {
    absl::Status s = Next(&records[k]);
    if (ABSL_PREDICT_FALSE(!s.ok())) {
      *count = k;
      return s;
    }
  }
  *count = k;
  return absl::OkStatus();
}

absl::Status RecordDecoder::NextIntRows(int64_t* rows, size_t max, size_t* count) {
  const size_t n = schema_->size();
  size_t k = 0;
  if (ABSL_PREDICT_FALSE(!schema_->all_integral())) {
    *count = 0;
    return absl::FailedPreconditionError(
        "NextIntRows of a schema with fields not NOT NULL integers");
  }
  if (n == 0) {  // records of no bytes: none can be told apart in bytes left over
    *count = 0;
    return Done() ? absl::OkStatus() : NoFieldsButBytes();
  }
  const char* pos = pos_;
  int corrupt = DecodeIntegralRecordsOf(
      n, &pos, end_, [rows, n](size_t j) { return rows + j * n; }, max, &k);
  pos_ = pos;
  // The last records (within 10 bytes a field of the end): byte by byte, bounds checked.
  while (corrupt < 0 && k < max && !Done()) {
    const char* p = pos_;
    for (size_t i = 0; i < n && corrupt < 0; ++i) {
      uint64_t u;
      p = ReadVarint64(p, end_, &u);
      if (ABSL_PREDICT_FALSE(p == nullptr)) {
        corrupt = static_cast<int>(i);
      } else {
        rows[k * n + i] = UnZigZag(u);
      }
    }
    if (corrupt < 0) {
      pos_ = p;
      ++k;
    }
  }
  *count = k;
  return corrupt >= 0 ? CorruptVarint(static_cast<size_t>(corrupt)) : absl::OkStatus();
}

absl::Status RecordDecoder::Next(Record* record) {
  if (schema_->all_integral()) return NextIntegral(record);
  const size_t n = schema_->size();
  const Field* fields = schema_->fields().data();
  const char* pos = pos_;
  for (size_t i = 0; i < n; ++i) {
    Value& v = (*record)[i];
    const Field& f = fields[i];
    if (f.nullable) {
      if (pos >= end_) return absl::DataLossError(absl::StrCat("truncated null flag in field ", i));
      const char flag = *pos++;
      if (flag != 0 && flag != 1) {
        return absl::DataLossError(absl::StrCat("corrupt null flag in field ", i));
      }
      record->SetNullTo(i, flag == 1);
      if (flag == 1) continue;
    }
    switch (f.type) {
      case FieldType::kInt64:
      case FieldType::kTimestamp: {
        uint64_t u;
        const char* p = ReadVarint64(pos, end_, &u);
        if (p == nullptr) return CorruptVarint(i);
        v.i = UnZigZag(u);
        pos = p;
        break;
      }
      case FieldType::kDouble:
        if (end_ - pos < 8) return absl::DataLossError("truncated double");
        std::memcpy(&v.d, pos, 8);
        pos += 8;
        break;
      case FieldType::kBool:
        if (pos >= end_) return absl::DataLossError("truncated bool");
        v.i = *pos++ != 0;
        break;
      case FieldType::kString: {
        uint64_t len;
        const char* p = ReadVarint64(pos, end_, &len);
        if (p == nullptr || len > static_cast<uint64_t>(end_ - p)) {
          return absl::DataLossError(absl::StrCat("corrupt string length in field ", i));
        }
        v.s.assign(p, len);
        pos = p + len;
        break;
      }
    }
  }
  pos_ = pos;
  return absl::OkStatus();
}

}  // namespace sluice
