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

struct Field {
  std::string name;
  FieldType type;
  bool operator==(const Field& o) const { return name == o.name && type == o.type; }
};

// An ordered list of typed, named fields. Immutable once built; cheap to copy.
class Schema {
 public:
  Schema() = default;
  explicit Schema(std::vector<Field> fields) : fields_(std::move(fields)) {}

  const std::vector<Field>& fields() const { return fields_; }
  size_t size() const { return fields_.size(); }
  const Field& field(size_t i) const { return fields_[i]; }
  // Index of the field called `name`, or -1.
  int IndexOf(absl::string_view name) const;
  bool operator==(const Schema& o) const { return fields_ == o.fields_; }
  bool operator!=(const Schema& o) const { return !(*this == o); }
  // "(name type, ...)" for messages.
  std::string ToString() const;

 private:
  std::vector<Field> fields_;
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
class Record {
 public:
  Record() = default;
  explicit Record(size_t num_fields) : values_(num_fields) {}

  void Resize(size_t num_fields) { values_.resize(num_fields); }
  size_t size() const { return values_.size(); }
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

 private:
  std::vector<Value> values_;
};

// Appends `record` as one JSON object ({"field": value, ...}) to `out`, without a newline.
// Allocates only when `out` must grow.
void AppendRecordJson(const Schema& schema, const Record& record, std::string* out);

// Appends value `i` of `record` as plain text (integers and doubles as numbers, bools as
// true/false, strings as they are). Allocates only when `out` must grow.
void AppendValueText(FieldType type, const Record& record, size_t i, std::string* out);

// Copies value `i` of `from` (typed by `type`) into value `j` of `to`.
inline void CopyValue(FieldType type, const Record& from, size_t i, Record* to, size_t j) {
  switch (type) {
    case FieldType::kDouble: (*to)[j].d = from[i].d; break;
    case FieldType::kString: (*to)[j].s.assign(from[i].s); break;
    default: (*to)[j].i = from[i].i; break;
  }
}

}  // namespace sluice
