#include "common/record.h"

#include <charconv>
#include <cmath>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace sluice {

absl::string_view FieldTypeName(FieldType type) {
  switch (type) {
    case FieldType::kInt64: return "int64";
    case FieldType::kDouble: return "double";
    case FieldType::kString: return "string";
    case FieldType::kBool: return "bool";
    case FieldType::kTimestamp: return "timestamp";
  }
  return "unknown";
}

absl::StatusOr<FieldType> ParseFieldType(absl::string_view name) {
  if (name == "int64" || name == "int" || name == "long") return FieldType::kInt64;
  if (name == "double" || name == "float") return FieldType::kDouble;
  if (name == "string") return FieldType::kString;
  if (name == "bool" || name == "boolean") return FieldType::kBool;
  if (name == "timestamp") return FieldType::kTimestamp;
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown field type '", name, "' (expected int64, double, string, bool or timestamp)"));
}

int Schema::IndexOf(absl::string_view name) const {
  for (size_t i = 0; i < fields_.size(); ++i) {
    if (fields_[i].name == name) return static_cast<int>(i);
  }
  return -1;
}

std::string Schema::ToString() const {
  return absl::StrCat("(", absl::StrJoin(fields_, ", ", [](std::string* out, const Field& f) {
                        absl::StrAppend(out, f.name, " ", FieldTypeName(f.type),
                                        f.nullable ? " null" : "");
                      }), ")");
}

namespace {

void AppendJsonString(absl::string_view s, std::string* out) {
  out->push_back('"');
  for (char c : s) {
    switch (c) {
      case '"': out->append("\\\""); break;
      case '\\': out->append("\\\\"); break;
      case '\n': out->append("\\n"); break;
      case '\r': out->append("\\r"); break;
      case '\t': out->append("\\t"); break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", c);
          out->append(buf);
        } else {
          out->push_back(c);
        }
    }
  }
  out->push_back('"');
}

}  // namespace

void AppendRecordJson(const Schema& schema, const Record& record, std::string* out) {
  out->push_back('{');
  for (size_t i = 0; i < schema.size(); ++i) {
    if (i > 0) out->push_back(',');
    AppendJsonString(schema.field(i).name, out);
    out->push_back(':');
    if (record.IsNull(i)) {
      out->append("null");
      continue;
    }
    switch (schema.field(i).type) {
      case FieldType::kDouble:
        if (std::isfinite(record[i].d)) {
          AppendValueText(FieldType::kDouble, record, i, out);  // shortest round-trip form
        } else {
          out->append("null");
        }
        break;
      case FieldType::kString: AppendJsonString(record[i].s, out); break;
      default: AppendValueText(schema.field(i).type, record, i, out); break;
    }
  }
  out->push_back('}');
}

void AppendValueText(FieldType type, const Record& record, size_t i, std::string* out) {
  if (record.IsNull(i)) return;
  char buf[32];
  switch (type) {
    case FieldType::kInt64:
    case FieldType::kTimestamp: {
      auto r = std::to_chars(buf, buf + sizeof(buf), record[i].i);
      out->append(buf, r.ptr - buf);
      break;
    }
    case FieldType::kDouble: {
      auto r = std::to_chars(buf, buf + sizeof(buf), record[i].d);
      out->append(buf, r.ptr - buf);
      break;
    }
    case FieldType::kBool: out->append(record[i].i ? "true" : "false"); break;
    case FieldType::kString: out->append(record[i].s); break;
  }
}

}  // namespace sluice
