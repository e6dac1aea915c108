#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/record.h"
#include "nlohmann/json.hpp"

namespace sluice::connectors {

// Fills a record from one flat JSON object by SAX events: no document is built; the only
// allocation is the parser's token buffer (new per parse) when a key or string value is longer
// than the small-string buffer. Keys not in the schema, and anything nested under them, are
// ignored; a schema field must be present with a value of its type.
class JsonRecordReader {
 public:
  using json = nlohmann::json;
  // Reads the first `fields` fields of `schema` (the rest are filled otherwise).
  void Reset(const Schema* schema, size_t fields, Record* out) {
    schema_ = schema;
    out_ = out;
    seen_.assign(fields, false);
    depth_ = 0;
    field_ = -1;
    started_ = false;
    syntax_error_at_ = 0;
    bad_field_ = -1;
  }
  absl::Status Finish(bool parsed) {
    if (bad_field_ >= 0) {
      return absl::InvalidArgumentError(absl::StrCat("field '", schema_->field(bad_field_).name, "' is not ",
                                                     Article(schema_->field(bad_field_).type)));
    }
    if (syntax_error_at_ > 0) {
      return absl::InvalidArgumentError(absl::StrCat("not valid JSON (syntax error at byte ", syntax_error_at_, ")"));
    }
    if (!parsed || !object_) return absl::InvalidArgumentError("not a JSON object");
    for (size_t i = 0; i < seen_.size(); ++i) {
      if (!seen_[i]) return absl::InvalidArgumentError(absl::StrCat("missing field '", schema_->field(i).name, "'"));
    }
    return absl::OkStatus();
  }

  bool null() { return Value(kNull, 0, 0, nullptr); }
  bool boolean(bool b) { return Value(kBool, b ? 1 : 0, 0, nullptr); }
  bool number_integer(json::number_integer_t v) { return Value(kInt, v, static_cast<double>(v), nullptr); }
  bool number_unsigned(json::number_unsigned_t v) {
    return Value(v <= static_cast<uint64_t>(INT64_MAX) ? kInt : kFloat, static_cast<int64_t>(v), static_cast<double>(v), nullptr);
  }
  bool number_float(json::number_float_t v, const json::string_t&) { return Value(kFloat, 0, v, nullptr); }
  bool string(json::string_t& v) { return Value(kString, 0, 0, &v); }
  bool binary(json::binary_t&) { return Value(kNull, 0, 0, nullptr); }
  bool start_object(std::size_t) { return Open(true); }
  bool end_object() { return --depth_, true; }
  bool start_array(std::size_t) { return Open(false); }
  bool end_array() { return --depth_, true; }
  bool key(json::string_t& k) {
    if (depth_ != 1) return true;
    field_ = -1;
    for (size_t i = 0; i < seen_.size(); ++i) {
      if (schema_->field(i).name == k) {
        field_ = static_cast<int>(i);
        break;
      }
    }
    return true;
  }
  bool parse_error(std::size_t position, const std::string&, const nlohmann::detail::exception&) {
    if (bad_field_ < 0) syntax_error_at_ = position;  // 1-based byte of the offending token
    return false;
  }

 private:
  enum Kind { kNull, kBool, kInt, kFloat, kString };
  static const char* Article(FieldType t) {
    switch (t) {
      case FieldType::kInt64:
      case FieldType::kTimestamp: return "an integer";
      case FieldType::kDouble: return "a number";
      case FieldType::kBool: return "a boolean";
      case FieldType::kString: return "a string";
    }
    return "valid";
  }
  bool Open(bool object) {
    if (!started_) {
      started_ = true;
      object_ = object;
      if (!object) return false;
    } else if (depth_ == 1 && field_ >= 0) {
      bad_field_ = field_;  // a schema field holding an object or array
      return false;
    }
    ++depth_;
    return true;
  }
  bool Value(Kind kind, int64_t i, double d, json::string_t* s) {
    if (!started_) {
      started_ = true;
      object_ = false;
      return false;
    }
    if (depth_ != 1 || field_ < 0) return true;
    const size_t f = static_cast<size_t>(field_);
    switch (schema_->field(f).type) {
      case FieldType::kInt64:
      case FieldType::kTimestamp:
        if (kind != kInt) return bad_field_ = field_, false;
        out_->SetInt(f, i);
        break;
      case FieldType::kDouble:
        if (kind != kInt && kind != kFloat) return bad_field_ = field_, false;
        out_->SetDouble(f, d);
        break;
      case FieldType::kBool:
        if (kind != kBool) return bad_field_ = field_, false;
        out_->SetBool(f, i != 0);
        break;
      case FieldType::kString:
        if (kind != kString) return bad_field_ = field_, false;
        out_->SetString(f, *s);
        break;
    }
    seen_[f] = true;
    field_ = -1;
    return true;
  }

  const Schema* schema_ = nullptr;
  Record* out_ = nullptr;
  std::vector<bool> seen_;
  int depth_ = 0;
  int field_ = -1;
  bool started_ = false;
  size_t syntax_error_at_ = 0;
  bool object_ = false;
  int bad_field_ = -1;
};

// Parses `text` (one JSON object) into the first `fields` values of `out` (laid out by
// `schema`) with `reader`.
inline absl::Status ReadJsonRecord(absl::string_view text, const Schema& schema, size_t fields, Record* out,
                                   JsonRecordReader* reader) {
  reader->Reset(&schema, fields, out);
  const bool parsed = nlohmann::json::sax_parse(text.begin(), text.end(), reader);
  return reader->Finish(parsed);
}

}  // namespace sluice::connectors
