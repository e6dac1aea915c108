#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace sluice {

// The value types a record field can have. Timestamps are milliseconds since the epoch.
enum class FieldType : uint8_t { kInt64 = 0, kDouble = 1, kString = 2, kBool = 3, kTimestamp = 4 };

absl::string_view FieldTypeName(FieldType type);
absl::StatusOr<FieldType> ParseFieldType(absl::string_view name);
// int64 and timestamp are stored alike (in Value::i).
inline bool IsIntegral(FieldType t) { return t == FieldType::kInt64 || t == FieldType::kTimestamp; }
inline bool IsNumeric(FieldType t) { return IsIntegral(t) || t == FieldType::kDouble; }

// A named, typed field. A `nullable` field may hold null (the missing side of an outer join,
// an expression over nullable fields); fields are NOT NULL by default, and the record codec
// encodes NOT NULL fields exactly as before nullable fields existed.
struct Field {
  std::string name;
  FieldType type;
  bool nullable = false;
  bool operator==(const Field& o) const {
    return name == o.name && type == o.type && nullable == o.nullable;
  }
};

// An ordered list of typed, named fields. Immutable once built; cheap to copy.
class Schema {
 public:
  Schema() = default;
  explicit Schema(std::vector<Field> fields) : fields_(std::move(fields)) {
    for (const Field& f : fields_) {
      all_integral_ = all_integral_ && IsIntegral(f.type) && !f.nullable;
      has_strings_ = has_strings_ || f.type == FieldType::kString;
    }
  }

  const std::vector<Field>& fields() const { return fields_; }
  size_t size() const { return fields_.size(); }
  const Field& field(size_t i) const { return fields_[i]; }
  // Every field is a NOT NULL int64 or timestamp (true without fields): the record codec
  // encodes and decodes such records in a loop of varints, without a switch per field.
  bool all_integral() const { return all_integral_; }
  // Some field is a string (the record codec's size bound then depends on the record).
  bool has_strings() const { return has_strings_; }
  // Index of the field called `name`, or -1.
  int IndexOf(absl::string_view name) const;
  bool operator==(const Schema& o) const { return fields_ == o.fields_; }
  bool operator!=(const Schema& o) const { return !(*this == o); }
  // "(name type, ...)" for messages; nullable fields read "name type null".
  std::string ToString() const;

 private:
  std::vector<Field> fields_;
  // Derived from fields_ at construction.
  bool all_integral_ = true;
  bool has_strings_ = false;
};

// One field's value. Which member is meaningful depends on the field's type; bools live in
// `i` (0 or 1). `s` keeps its capacity when overwritten, so reusing a Record allocates
// nothing once its strings have grown to their working size.
struct Value {
  int64_t i = 0;
  double d = 0;
  std::string s;
};

// A row of values laid out by a Schema the record does not own. Records are reused on hot
// paths: operators overwrite values in place rather than building new records.
//
// Nulls: one bit per value, in words sized by Resize() (nothing allocated per record). Only
// values of nullable fields are ever null; whoever writes a nullable field sets or clears its
// bit (SetNullTo), and the setters below leave the bits alone. A null value's Value members
// are unspecified.
class Record {
 public:
  Record() = default;
  explicit Record(size_t num_fields) : values_(num_fields), nulls_((num_fields + 63) / 64) {}

  void Resize(size_t num_fields) {
    values_.resize(num_fields);
    nulls_.resize((num_fields + 63) / 64);
  }
  size_t size() const { return values_.size(); }

  bool IsNull(size_t i) const { return (nulls_[i >> 6] >> (i & 63)) & 1; }
  void SetNull(size_t i) { nulls_[i >> 6] |= uint64_t{1} << (i & 63); }
  void ClearNull(size_t i) { nulls_[i >> 6] &= ~(uint64_t{1} << (i & 63)); }
  void SetNullTo(size_t i, bool null) { null ? SetNull(i) : ClearNull(i); }
  // Marks every value non-null.
  void ClearNulls() {
    for (uint64_t& w : nulls_) w = 0;
  }
  bool HasNulls() const {
    for (uint64_t w : nulls_) {
      if (w != 0) return true;
    }
    return false;
  }
  Value& operator[](size_t i) { return values_[i]; }
  const Value& operator[](size_t i) const { return values_[i]; }

  int64_t GetInt(size_t i) const { return values_[i].i; }
  double GetDouble(size_t i) const { return values_[i].d; }
  bool GetBool(size_t i) const { return values_[i].i != 0; }
  absl::string_view GetString(size_t i) const { return values_[i].s; }
  void SetInt(size_t i, int64_t v) { values_[i].i = v; }
  void SetDouble(size_t i, double v) { values_[i].d = v; }
  void SetBool(size_t i, bool v) { values_[i].i = v ? 1 : 0; }
  void SetString(size_t i, absl::string_view v) { values_[i].s.assign(v.data(), v.size()); }

  // The key group of the record's key as the exchange that delivered it computed it (the
  // sender hashed the key to pick the channel), or -1 when none came with it. The receiving
  // task sets it on the records it hands to a keyed head operator over an edge that carries
  // key groups (plan::Edge::carry_key_groups), whose key is that operator's; such an operator
  // may read it instead of hashing the key again. Copies keep it; encoding drops it.
  int carried_key_group() const { return carried_key_group_; }
  void set_carried_key_group(int key_group) { carried_key_group_ = key_group; }

 private:
  std::vector<Value> values_;
  std::vector<uint64_t> nulls_;  // bit i % 64 of word i / 64: value i is null
  int carried_key_group_ = -1;
};

// Appends `record` as one JSON object ({"field": value, ...}) to `out`, without a newline; a null
// value is written `null`. Allocates only when `out` must grow.
void AppendRecordJson(const Schema& schema, const Record& record, std::string* out);

// Appends value `i` of `record` as plain text (integers and doubles as numbers, bools as
// true/false, strings as they are; a null value as nothing, as CSV writes it). Allocates only
// when `out` must grow.
void AppendValueText(FieldType type, const Record& record, size_t i, std::string* out);

// Copies value `i` of `from` (typed by `type`) into value `j` of `to`, with its null bit.
inline void CopyValue(FieldType type, const Record& from, size_t i, Record* to, size_t j) {
  to->SetNullTo(j, from.IsNull(i));
  switch (type) {
    case FieldType::kDouble: (*to)[j].d = from[i].d; break;
    case FieldType::kString: (*to)[j].s.assign(from[i].s); break;
    default: (*to)[j].i = from[i].i; break;
  }
}

}  // namespace sluice
