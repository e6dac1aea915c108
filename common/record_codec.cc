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

const char* GetVarint64(const char* p, const char* end, uint64_t* v) {
  uint64_t result = 0;
  for (int shift = 0; shift <= 63 && p < end; shift += 7) {
    uint64_t byte = static_cast<unsigned char>(*p++);
    result |= (byte & 0x7f) << shift;
    if ((byte & 0x80) == 0) {
      *v = result;
      return p;
    }
  }
  return nullptr;
}

namespace {

using codec_internal::ReadVarint64With10Bytes;
using codec_internal::WriteVarint64Fast;

// Reads a varint at [p, end); nullptr when it runs past `end` or is longer than 10 bytes.
inline const char* ReadVarint64(const char* p, const char* end, uint64_t* v) {
  if (ABSL_PREDICT_TRUE(end - p >= 10)) return ReadVarint64With10Bytes(p, v);
  return GetVarint64(p, end, v);
}

// Out of line, so that the decoding loops keep a small frame.
ABSL_ATTRIBUTE_NOINLINE absl::Status CorruptVarint(size_t field) {
  return absl::DataLossError(absl::StrCat("corrupt varint in field ", field));
}

}  // namespace

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
      case FieldType::kTimestamp: p = WriteVarint64Fast(ZigZag(v.i), p); break;
      case FieldType::kDouble:
        std::memcpy(p, &v.d, 8);  // x86-64 and arm64 are little-endian
        p += 8;
        break;
      case FieldType::kBool: *p++ = v.i ? 1 : 0; break;
      case FieldType::kString:
        p = WriteVarint64Fast(v.s.size(), p);
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

absl::Status RecordDecoder::NextIntegral(Record* record) {
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
// compiler unrolls) into records[*k, max) while a record's worst case (10 bytes a field) and a
// word's load remain before `end`: no bounds check per field. Advances *pos and *k; on an
// overlong varint, returns the field's index (*pos at the start of the corrupt record), else -1.
template <size_t kFields>
ABSL_ATTRIBUTE_ALWAYS_INLINE inline int DecodeIntegralRecords(size_t n, const char** pos,
                                                              const char* end, Record* records,
                                                              size_t max, size_t* k) {
  if (kFields != 0) n = kFields;
  const ptrdiff_t worst = static_cast<ptrdiff_t>(10 * n);
  const char* p = *pos;
  size_t j = *k;
  for (; j < max && end - p >= worst; ++j) {
    Value* values = &records[j][0];
    const char* q = p;
    for (size_t i = 0; i < n; ++i) {
      uint64_t u;
      q = ReadVarint64With10Bytes(q, &u);
      if (ABSL_PREDICT_FALSE(q == nullptr)) {
        *pos = p;
        *k = j;
        return static_cast<int>(i);
      }
      values[i].i = UnZigZag(u);
    }
    p = q;
  }
  *pos = p;
  *k = j;
  return -1;
}

}  // namespace

absl::Status RecordDecoder::NextBatch(Record* records, size_t max, size_t* count) {
  size_t k = 0;
  const size_t n = schema_->size();
  if (schema_->all_integral() && n > 0) {
    const char* pos = pos_;
    int corrupt;
    switch (n) {  // records of 1 to 4 integers (keys, timestamps, counts): loops of their own
      case 1: corrupt = DecodeIntegralRecords<1>(n, &pos, end_, records, max, &k); break;
      case 2: corrupt = DecodeIntegralRecords<2>(n, &pos, end_, records, max, &k); break;
      case 3: corrupt = DecodeIntegralRecords<3>(n, &pos, end_, records, max, &k); break;
      case 4: corrupt = DecodeIntegralRecords<4>(n, &pos, end_, records, max, &k); break;
      default: corrupt = DecodeIntegralRecords<0>(n, &pos, end_, records, max, &k); break;
    }
    pos_ = pos;
    if (ABSL_PREDICT_FALSE(corrupt >= 0)) {
      *count = k;
      return CorruptVarint(static_cast<size_t>(corrupt));
    }
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
