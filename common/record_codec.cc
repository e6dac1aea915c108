#include "common/record_codec.h"

#include <cstring>

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

void EncodeRecord(const Schema& schema, const Record& record, std::string* out) {
  const size_t n = schema.size();
  for (size_t i = 0; i < n; ++i) {
    const Value& v = record[i];
    const Field& f = schema.field(i);
    if (f.nullable) {
      const bool null = record.IsNull(i);
      out->push_back(null ? 1 : 0);
      if (null) continue;
    }
    switch (f.type) {
      case FieldType::kInt64:
      case FieldType::kTimestamp: PutVarint64(ZigZag(v.i), out); break;
      case FieldType::kDouble: {
        char buf[8];
        std::memcpy(buf, &v.d, 8);  // x86-64 and arm64 are little-endian
        out->append(buf, 8);
        break;
      }
      case FieldType::kBool: out->push_back(v.i ? 1 : 0); break;
      case FieldType::kString:
        PutVarint64(v.s.size(), out);
        out->append(v.s);
        break;
    }
  }
}

absl::Status RecordDecoder::Next(Record* record) {
  const size_t n = schema_->size();
  for (size_t i = 0; i < n; ++i) {
    Value& v = (*record)[i];
    const Field& f = schema_->field(i);
    if (f.nullable) {
      if (pos_ >= end_) return absl::DataLossError(absl::StrCat("truncated null flag in field ", i));
      const char flag = *pos_++;
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
        const char* p = GetVarint64(pos_, end_, &u);
        if (p == nullptr) return absl::DataLossError(absl::StrCat("corrupt varint in field ", i));
        v.i = UnZigZag(u);
        pos_ = p;
        break;
      }
      case FieldType::kDouble:
        if (end_ - pos_ < 8) return absl::DataLossError("truncated double");
        std::memcpy(&v.d, pos_, 8);
        pos_ += 8;
        break;
      case FieldType::kBool:
        if (pos_ >= end_) return absl::DataLossError("truncated bool");
        v.i = *pos_++ != 0;
        break;
      case FieldType::kString: {
        uint64_t len;
        const char* p = GetVarint64(pos_, end_, &len);
        if (p == nullptr || len > static_cast<uint64_t>(end_ - p)) {
          return absl::DataLossError(absl::StrCat("corrupt string length in field ", i));
        }
        v.s.assign(p, len);
        pos_ = p + len;
        break;
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace sluice
