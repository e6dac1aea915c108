// The Sluice operator SDK: a header-only C++17 layer over the C ABI in sluice/plugin.h.
//
//   #include "sluice/sdk.h"
//
//   class Positive : public sluice::sdk::Operator {
//    public:
//     sluice::sdk::Status Open(sluice::sdk::Context& ctx) override {
//       return ctx.InputField("amount", sluice::sdk::FieldType::kInt64, &amount_);
//     }
//     sluice::sdk::Status Process(const sluice::sdk::Record& in,
//                                 sluice::sdk::Context& ctx) override {
//       if (in.Int(amount_) > 0) return ctx.Forward(in);
//       return sluice::sdk::Status::Ok();
//     }
//    private:
//     sluice::sdk::Field amount_;
//   };
//
//   SLUICE_PLUGIN("my-plugin", "1.0.0", plugin) {
//     plugin.AddOperator<Positive>("positive").Description("keeps positive amounts");
//   }
//
// A two-input operator (e.g. enrichment from a second stream) derives from TwoInputOperator
// and implements Process(int input, const Record&, Context&); see examples/plugins/enrich.
//
// Everything here is compiled into the plugin: no C++ type crosses into the host. Every
// exception thrown by operator code is caught at the C boundary and becomes an error status
// naming the operator. See sdk/README.md for the lifecycle and threading rules.
#pragma once

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <exception>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "sluice/plugin.h"

namespace sluice::sdk {

/// Field types, numbered as in the ABI (SLUICE_TYPE_*).
enum class FieldType : int32_t { kInt64 = 0, kDouble = 1, kString = 2, kBool = 3, kTimestamp = 4 };

inline const char* FieldTypeName(FieldType t) {
  switch (t) {
    case FieldType::kInt64: return "int64";
    case FieldType::kDouble: return "double";
    case FieldType::kString: return "string";
    case FieldType::kBool: return "bool";
    case FieldType::kTimestamp: return "timestamp";
  }
  return "unknown";
}

/// Status codes, numbered as in the ABI (SLUICE_OK, SLUICE_ERR_*).
enum class StatusCode : int32_t {
  kOk = SLUICE_OK,
  kInvalidArgument = SLUICE_ERR_INVALID_ARGUMENT,
  kFailedPrecondition = SLUICE_ERR_FAILED_PRECONDITION,
  kInternal = SLUICE_ERR_INTERNAL,
  kUnavailable = SLUICE_ERR_UNAVAILABLE,
  kCancelled = SLUICE_ERR_CANCELLED,
  kNotFound = SLUICE_ERR_NOT_FOUND,
};

/// The result of a fallible call: a code and, when not OK, a message. A status returned by a
/// host callback may carry an empty message: the host knows the details.
class Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}
  static Status Ok() { return Status(); }
  static Status InvalidArgument(std::string m) { return {StatusCode::kInvalidArgument, std::move(m)}; }
  static Status FailedPrecondition(std::string m) {
    return {StatusCode::kFailedPrecondition, std::move(m)};
  }
  static Status Internal(std::string m) { return {StatusCode::kInternal, std::move(m)}; }
  static Status Unavailable(std::string m) { return {StatusCode::kUnavailable, std::move(m)}; }
  static Status NotFound(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
  // A status from a host callback's code (no message: the host keeps it).
  static Status FromHost(sluice_status code) {
    return code == SLUICE_OK ? Status() : Status(static_cast<StatusCode>(code), std::string());
  }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

}  // namespace sluice::sdk

/// Returns from the enclosing function when `expr` (a sluice::sdk::Status) is not OK.
#define SLUICE_SDK_RETURN_IF_ERROR(expr)                 \
  do {                                                   \
    ::sluice::sdk::Status sluice_sdk_status_ = (expr);   \
    if (!sluice_sdk_status_.ok()) return sluice_sdk_status_; \
  } while (0)

namespace sluice::sdk {

inline std::string_view View(sluice_string s) { return std::string_view(s.data, s.size); }

/// A field resolved by name once (in Open), then used by index on every record.
struct Field {
  int32_t index = -1;
  FieldType type = FieldType::kInt64;
  bool valid() const { return index >= 0; }
};

/// Read-only view of a schema the host owns (valid while the operator is open, or during the
/// type hook that received it).
class Schema {
 public:
  Schema() = default;
  explicit Schema(const sluice_schema* s) : s_(s) {}
  size_t size() const { return s_ == nullptr ? 0 : s_->num_fields; }
  std::string_view name(size_t i) const { return View(s_->fields[i].name); }
  FieldType type(size_t i) const { return static_cast<FieldType>(s_->fields[i].type); }
  /// Index of field `name`, or -1.
  int32_t IndexOf(std::string_view name) const {
    for (size_t i = 0; i < size(); ++i) {
      if (this->name(i) == name) return static_cast<int32_t>(i);
    }
    return -1;
  }
  /// Resolves `name` with type `type`; kNotFound or kInvalidArgument (wrong type) otherwise,
  /// with a message naming the field, both types and `what` ("input", "output", "key").
  Status Resolve(std::string_view name, FieldType type, const char* what, Field* out) const {
    int32_t i = IndexOf(name);
    if (i < 0) {
      return Status::NotFound(std::string(what) + " has no field '" + std::string(name) + "'");
    }
    if (this->type(i) != type) {
      return Status::InvalidArgument(std::string(what) + " field '" + std::string(name) +
                                     "' is " + FieldTypeName(this->type(i)) + ", not " +
                                     FieldTypeName(type));
    }
    out->index = i;
    out->type = type;
    return Status::Ok();
  }
  const sluice_schema* raw() const { return s_; }

 private:
  const sluice_schema* s_ = nullptr;
};

/// An input record (or a key): values by field index. Valid during the call that received
/// it; strings point into host memory. Accessors read memory only (no call per field).
class Record {
 public:
  Record(const sluice_value* values, const sluice_record* raw) : v_(values), raw_(raw) {}
  explicit Record(const sluice_record* raw) : v_(raw->values), raw_(raw) {}

  int64_t Int(Field f) const { return v_[f.index].i; }
  int64_t Timestamp(Field f) const { return v_[f.index].i; }
  double Double(Field f) const { return v_[f.index].d; }
  bool Bool(Field f) const { return v_[f.index].i != 0; }
  std::string_view String(Field f) const { return View(v_[f.index].s); }
  const sluice_value& value(size_t index) const { return v_[index]; }
  /// The ABI record (null for a key).
  const sluice_record* raw() const { return raw_; }

 private:
  const sluice_value* v_;
  const sluice_record* raw_;
};

/// The host-owned record builder: set output fields by index, then Context::Emit(). Values
/// persist between emits. Strings are borrowed: they must stay valid until Emit() returns.
class OutputRecord {
 public:
  OutputRecord() = default;
  explicit OutputRecord(sluice_value* v) : v_(v) {}
  void SetInt(Field f, int64_t v) { v_[f.index].i = v; }
  void SetTimestamp(Field f, int64_t v) { v_[f.index].i = v; }
  void SetDouble(Field f, double v) { v_[f.index].d = v; }
  void SetBool(Field f, bool v) { v_[f.index].i = v ? 1 : 0; }
  void SetString(Field f, std::string_view v) { v_[f.index].s = sluice_string{v.data(), v.size()}; }
  /// Copies input field `from` of `in` into output field `to` (same type).
  void Copy(const Record& in, Field from, Field to) { v_[to.index] = in.value(from.index); }
  /// Copies the first `count` fields of `in` to the first `count` output fields (for outputs
  /// that extend their input).
  void CopyPrefix(const Record& in, size_t count) {
    for (size_t i = 0; i < count; ++i) v_[i] = in.value(i);
  }

 private:
  sluice_value* v_ = nullptr;
};

// ---------------------------------------------------------------------------------------------
// Options: the operator's YAML options, as a flat JSON object.

/// An operator's options, parsed from the JSON text the host passes. Scalars (strings,
/// numbers, booleans, null) are typed; nested arrays and objects are kept as raw JSON text.
class Options {
 public:
  /// Parses `json` (one JSON object). kInvalidArgument with the offset on malformed text.
  static Status Parse(std::string_view json, Options* out) {
    Parser p{json, 0};
    out->entries_.clear();
    out->json_.assign(json.data(), json.size());
    p.SkipSpace();
    if (!p.Eat('{')) return p.Error("expected '{'");
    p.SkipSpace();
    if (p.Eat('}')) return p.End();
    while (true) {
      Entry e;
      p.SkipSpace();
      SLUICE_SDK_RETURN_IF_ERROR(p.String(&e.key));
      p.SkipSpace();
      if (!p.Eat(':')) return p.Error("expected ':'");
      p.SkipSpace();
      SLUICE_SDK_RETURN_IF_ERROR(p.Value(&e));
      out->entries_.push_back(std::move(e));
      p.SkipSpace();
      if (p.Eat(',')) continue;
      if (p.Eat('}')) return p.End();
      return p.Error("expected ',' or '}'");
    }
  }

  const std::string& json() const { return json_; }
  bool Has(std::string_view key) const { return Find(key) != nullptr; }
  std::vector<std::string> Keys() const {
    std::vector<std::string> keys;
    for (const auto& e : entries_) keys.push_back(e.key);
    return keys;
  }

  /// Refuses any key not in `known`: "unknown option 'x' (known: a, b)".
  Status CheckKnownKeys(const std::vector<std::string_view>& known) const {
    for (const auto& e : entries_) {
      bool ok = false;
      for (auto k : known) ok = ok || k == e.key;
      if (!ok) {
        std::string list;
        for (auto k : known) list += (list.empty() ? "" : ", ") + std::string(k);
        return Status::InvalidArgument("unknown option '" + e.key + "' (known: " + list + ")");
      }
    }
    return Status::Ok();
  }

  /// Required options: kInvalidArgument when missing or of another type.
  Status GetString(std::string_view key, std::string* out) const {
    const Entry* e = Find(key);
    if (e == nullptr) return Missing(key);
    if (e->kind != Kind::kString) return WrongType(key, "a string");
    *out = e->text;
    return Status::Ok();
  }
  Status GetInt(std::string_view key, int64_t* out) const {
    const Entry* e = Find(key);
    if (e == nullptr) return Missing(key);
    if (e->kind != Kind::kNumber) return WrongType(key, "an integer");
    char* end = nullptr;
    errno = 0;
    long long v = std::strtoll(e->text.c_str(), &end, 10);
    if (errno != 0 || end != e->text.c_str() + e->text.size()) return WrongType(key, "an integer");
    *out = static_cast<int64_t>(v);
    return Status::Ok();
  }
  Status GetDouble(std::string_view key, double* out) const {
    const Entry* e = Find(key);
    if (e == nullptr) return Missing(key);
    if (e->kind != Kind::kNumber) return WrongType(key, "a number");
    *out = std::strtod(e->text.c_str(), nullptr);
    return Status::Ok();
  }
  Status GetBool(std::string_view key, bool* out) const {
    const Entry* e = Find(key);
    if (e == nullptr) return Missing(key);
    if (e->kind != Kind::kBool) return WrongType(key, "true or false");
    *out = e->text == "true";
    return Status::Ok();
  }
  /// Optional options: `*out = fallback` when absent; kInvalidArgument when of another type.
  Status GetString(std::string_view key, std::string* out, std::string_view fallback) const {
    if (!Has(key)) return (out->assign(fallback.data(), fallback.size()), Status::Ok());
    return GetString(key, out);
  }
  Status GetInt(std::string_view key, int64_t* out, int64_t fallback) const {
    if (!Has(key)) return (*out = fallback, Status::Ok());
    return GetInt(key, out);
  }
  Status GetDouble(std::string_view key, double* out, double fallback) const {
    if (!Has(key)) return (*out = fallback, Status::Ok());
    return GetDouble(key, out);
  }
  Status GetBool(std::string_view key, bool* out, bool fallback) const {
    if (!Has(key)) return (*out = fallback, Status::Ok());
    return GetBool(key, out);
  }
  /// The raw JSON text of a value (for nested arrays and objects).
  Status GetRaw(std::string_view key, std::string* out) const {
    const Entry* e = Find(key);
    if (e == nullptr) return Missing(key);
    *out = e->text;
    return Status::Ok();
  }

 private:
  enum class Kind { kString, kNumber, kBool, kNull, kRaw };
  struct Entry {
    std::string key;
    Kind kind = Kind::kNull;
    std::string text;  // unescaped string, number or bool text, or raw JSON
  };

  struct Parser {
    std::string_view s;
    size_t pos;

    void SkipSpace() {
      while (pos < s.size() && (s[pos] == ' ' || s[pos] == '\n' || s[pos] == '\t' || s[pos] == '\r')) {
        ++pos;
      }
    }
    bool Eat(char c) {
      if (pos < s.size() && s[pos] == c) return (++pos, true);
      return false;
    }
    Status Error(const char* what) const {
      return Status::InvalidArgument("options are not valid JSON: " + std::string(what) +
                                     " at offset " + std::to_string(pos));
    }
    Status End() {
      SkipSpace();
      return pos == s.size() ? Status::Ok() : Error("trailing text");
    }
    static void PutUtf8(uint32_t c, std::string* out) {
      if (c < 0x80) {
        out->push_back(static_cast<char>(c));
      } else if (c < 0x800) {
        out->push_back(static_cast<char>(0xC0 | (c >> 6)));
        out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
      } else if (c < 0x10000) {
        out->push_back(static_cast<char>(0xE0 | (c >> 12)));
        out->push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
        out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
      } else {
        out->push_back(static_cast<char>(0xF0 | (c >> 18)));
        out->push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
        out->push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
        out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
      }
    }
    bool Hex4(uint32_t* v) {
      if (pos + 4 > s.size()) return false;
      *v = 0;
      for (int i = 0; i < 4; ++i) {
        char c = s[pos++];
        *v <<= 4;
        if (c >= '0' && c <= '9') *v |= c - '0';
        else if (c >= 'a' && c <= 'f') *v |= c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') *v |= c - 'A' + 10;
        else return false;
      }
      return true;
    }
    Status String(std::string* out) {
      if (!Eat('"')) return Error("expected a string");
      out->clear();
      while (pos < s.size()) {
        char c = s[pos++];
        if (c == '"') return Status::Ok();
        if (c != '\\') {
          out->push_back(c);
          continue;
        }
        if (pos >= s.size()) break;
        char e = s[pos++];
        switch (e) {
          case '"': out->push_back('"'); break;
          case '\\': out->push_back('\\'); break;
          case '/': out->push_back('/'); break;
          case 'b': out->push_back('\b'); break;
          case 'f': out->push_back('\f'); break;
          case 'n': out->push_back('\n'); break;
          case 'r': out->push_back('\r'); break;
          case 't': out->push_back('\t'); break;
          case 'u': {
            uint32_t c1;
            if (!Hex4(&c1)) return Error("bad \\u escape");
            if (c1 >= 0xD800 && c1 < 0xDC00 && pos + 6 <= s.size() && s[pos] == '\\' &&
                s[pos + 1] == 'u') {
              pos += 2;
              uint32_t c2;
              if (!Hex4(&c2) || c2 < 0xDC00 || c2 > 0xDFFF) return Error("bad surrogate pair");
              c1 = 0x10000 + ((c1 - 0xD800) << 10) + (c2 - 0xDC00);
            }
            PutUtf8(c1, out);
            break;
          }
          default: return Error("bad escape");
        }
      }
      return Error("unterminated string");
    }
    // Skips one nested value, keeping its text.
    Status Nested(std::string* out) {
      size_t start = pos;
      int depth = 0;
      std::string ignored;
      while (pos < s.size()) {
        char c = s[pos];
        if (c == '"') {
          SLUICE_SDK_RETURN_IF_ERROR(String(&ignored));
          continue;
        }
        ++pos;
        if (c == '[' || c == '{') ++depth;
        if (c == ']' || c == '}') {
          if (--depth == 0) {
            out->assign(s.data() + start, pos - start);
            return Status::Ok();
          }
        }
      }
      return Error("unterminated array or object");
    }
    Status Value(Entry* e) {
      if (pos >= s.size()) return Error("expected a value");
      char c = s[pos];
      if (c == '"') {
        e->kind = Kind::kString;
        return String(&e->text);
      }
      if (c == '[' || c == '{') {
        e->kind = Kind::kRaw;
        return Nested(&e->text);
      }
      for (const char* word : {"true", "false", "null"}) {
        size_t n = std::strlen(word);
        if (s.substr(pos, n) == word) {
          pos += n;
          e->kind = word[0] == 'n' ? Kind::kNull : Kind::kBool;
          e->text = word;
          return Status::Ok();
        }
      }
      size_t start = pos;
      while (pos < s.size() && (std::strchr("+-0123456789.eE", s[pos]) != nullptr) && s[pos] != 0) {
        ++pos;
      }
      if (pos == start) return Error("expected a value");
      e->kind = Kind::kNumber;
      e->text.assign(s.data() + start, pos - start);
      return Status::Ok();
    }
  };

  const Entry* Find(std::string_view key) const {
    for (const auto& e : entries_) {
      if (e.key == key) return &e;
    }
    return nullptr;
  }
  static Status Missing(std::string_view key) {
    return Status::InvalidArgument("missing required option '" + std::string(key) + "'");
  }
  static Status WrongType(std::string_view key, const char* what) {
    return Status::InvalidArgument("option '" + std::string(key) + "' must be " + what);
  }

  std::vector<Entry> entries_;
  std::string json_;
};

/// Collects an output schema (in the OutputSchema hook). Host-owned, valid during the call.
class SchemaBuilder {
 public:
  explicit SchemaBuilder(sluice_schema_builder* b) : b_(b) {}
  void Add(std::string_view name, FieldType type) {
    b_->add_field(b_, name.data(), name.size(), static_cast<sluice_field_type>(type));
  }
  /// Appends every field of `schema`.
  void AddAll(const Schema& schema) {
    for (size_t i = 0; i < schema.size(); ++i) Add(schema.name(i), schema.type(i));
  }

 private:
  sluice_schema_builder* b_;
};

/// Receives the entries of a snapshot of non-keyed state (the host copies them).
class SnapshotWriter {
 public:
  explicit SnapshotWriter(sluice_snapshot_writer* w) : w_(w) {}
  void Add(std::string_view entry) { w_->add(w_, entry.data(), entry.size()); }

 private:
  sluice_snapshot_writer* w_;
};

// ---------------------------------------------------------------------------------------------
// Keyed state handles: registered in Open, scoped to the current key.

/// Value state of the current key. Get's view is valid until the next host call.
class ValueState {
 public:
  ValueState() = default;
  ValueState(const sluice_host_api* api, sluice_host* host, int32_t id)
      : api_(api), host_(host), id_(id) {}
  Status Get(std::string_view* value, bool* found) const {
    sluice_string v{nullptr, 0};
    int32_t f = 0;
    sluice_status s = api_->value_get(host_, id_, &v, &f);
    *found = f != 0;
    if (*found) *value = View(v);
    return Status::FromHost(s);
  }
  Status Put(std::string_view value) const {
    return Status::FromHost(api_->value_put(host_, id_, value.data(), value.size()));
  }
  Status Clear() const { return Status::FromHost(api_->value_clear(host_, id_)); }
  /// An int64 stored as 8 little-endian bytes.
  Status GetInt64(int64_t* value, bool* found) const {
    std::string_view v;
    SLUICE_SDK_RETURN_IF_ERROR(Get(&v, found));
    if (*found && v.size() == 8) {
      uint64_t u = 0;
      for (int i = 7; i >= 0; --i) u = (u << 8) | static_cast<unsigned char>(v[i]);
      *value = static_cast<int64_t>(u);
    } else {
      *found = false;
    }
    return Status::Ok();
  }
  Status PutInt64(int64_t value) const {
    char b[8];
    uint64_t u = static_cast<uint64_t>(value);
    for (int i = 0; i < 8; ++i) b[i] = static_cast<char>((u >> (8 * i)) & 0xFF);
    return Put(std::string_view(b, 8));
  }

 private:
  const sluice_host_api* api_ = nullptr;
  sluice_host* host_ = nullptr;
  int32_t id_ = -1;
};

/// List state of the current key. Get's views are valid until the next host call.
class ListState {
 public:
  ListState() = default;
  ListState(const sluice_host_api* api, sluice_host* host, int32_t id)
      : api_(api), host_(host), id_(id) {}
  Status Append(std::string_view element) const {
    return Status::FromHost(api_->list_append(host_, id_, element.data(), element.size()));
  }
  Status Get(std::vector<std::string_view>* out) const {
    const sluice_string* items = nullptr;
    size_t n = 0;
    SLUICE_SDK_RETURN_IF_ERROR(Status::FromHost(api_->list_get(host_, id_, &items, &n)));
    out->clear();
    for (size_t i = 0; i < n; ++i) out->push_back(View(items[i]));
    return Status::Ok();
  }
  Status Clear() const { return Status::FromHost(api_->list_clear(host_, id_)); }

 private:
  const sluice_host_api* api_ = nullptr;
  sluice_host* host_ = nullptr;
  int32_t id_ = -1;
};

/// Map state of the current key. Views are valid until the next host call.
class MapState {
 public:
  MapState() = default;
  MapState(const sluice_host_api* api, sluice_host* host, int32_t id)
      : api_(api), host_(host), id_(id) {}
  Status Get(std::string_view key, std::string_view* value, bool* found) const {
    sluice_string v{nullptr, 0};
    int32_t f = 0;
    sluice_status s = api_->map_get(host_, id_, key.data(), key.size(), &v, &f);
    *found = f != 0;
    if (*found) *value = View(v);
    return Status::FromHost(s);
  }
  Status Put(std::string_view key, std::string_view value) const {
    return Status::FromHost(
        api_->map_put(host_, id_, key.data(), key.size(), value.data(), value.size()));
  }
  Status Remove(std::string_view key) const {
    return Status::FromHost(api_->map_remove(host_, id_, key.data(), key.size()));
  }
  Status Entries(std::vector<std::pair<std::string_view, std::string_view>>* out) const {
    const sluice_string* e = nullptr;
    size_t n = 0;
    SLUICE_SDK_RETURN_IF_ERROR(Status::FromHost(api_->map_entries(host_, id_, &e, &n)));
    out->clear();
    for (size_t i = 0; i < n; ++i) out->emplace_back(View(e[2 * i]), View(e[2 * i + 1]));
    return Status::Ok();
  }

 private:
  const sluice_host_api* api_ = nullptr;
  sluice_host* host_ = nullptr;
  int32_t id_ = -1;
};

/// A counter in the worker's /metrics. Add() is cheap (no lock, no allocation).
class Counter {
 public:
  Counter() = default;
  Counter(const sluice_host_api* api, sluice_host* host, sluice_counter* c)
      : api_(api), host_(host), c_(c) {}
  void Add(uint64_t n = 1) const { api_->counter_add(host_, c_, n); }

 private:
  const sluice_host_api* api_ = nullptr;
  sluice_host* host_ = nullptr;
  sluice_counter* c_ = nullptr;
};

enum class TimerDomain : int32_t { kEventTime = SLUICE_EVENT_TIME, kProcessingTime = SLUICE_PROCESSING_TIME };
enum class LogLevel : int32_t {
  kDebug = SLUICE_LOG_DEBUG,
  kInfo = SLUICE_LOG_INFO,
  kWarn = SLUICE_LOG_WARN,
  kError = SLUICE_LOG_ERROR
};

/// What an operator instance can do, through the host. Valid from Open until Close; use it
/// only on the thread that calls the operator, from within its hooks.
class Context {
 public:
  explicit Context(const sluice_open_info* info)
      : info_(info),
        api_(info->api),
        host_(info->host),
        input_(info->input_schema),
        output_(info->output_schema),
        key_(info->key_schema),
        out_(info->output_values) {
    inputs_[0] = input_;
    if (SLUICE_HAS_FIELD(info, sluice_open_info, input_schemas) && info->input_schemas != nullptr) {
      num_inputs_ = info->num_inputs < 1 ? 1 : (info->num_inputs > 2 ? 2 : info->num_inputs);
      for (int i = 0; i < num_inputs_; ++i) inputs_[i] = Schema(&info->input_schemas[i]);
    }
  }

  // --- Identity and schemas ---
  std::string_view OperatorId() const { return View(info_->operator_id); }
  std::string_view TaskName() const { return View(info_->task_name); }
  int Subtask() const { return info_->subtask; }
  int Parallelism() const { return info_->parallelism; }
  /// Input 0's schema (the only input of a one-input operator).
  const Schema& InputSchema() const { return input_; }
  /// The number of inputs (1 or 2) and input `input`'s schema (REQUIRES: 0 <= input < NumInputs()).
  int NumInputs() const { return num_inputs_; }
  const Schema& InputSchema(int input) const { return inputs_[input]; }
  const Schema& OutputSchema() const { return output_; }
  const Schema& KeySchema() const { return key_; }

  /// Resolves fields by name, once (in Open). kNotFound / kInvalidArgument (wrong type).
  Status InputField(std::string_view name, FieldType type, Field* out) const {
    return input_.Resolve(name, type, "input", out);
  }
  /// A field of input `input` (two-input operators); kNotFound also for a bad input index.
  Status InputField(int input, std::string_view name, FieldType type, Field* out) const {
    if (input < 0 || input >= num_inputs_) {
      return Status::NotFound("the operator has no input " + std::to_string(input));
    }
    return inputs_[input].Resolve(name, type, input == 0 ? "input 0" : "input 1", out);
  }
  Status OutputField(std::string_view name, FieldType type, Field* out) const {
    return output_.Resolve(name, type, "output", out);
  }
  Status KeyField(std::string_view name, FieldType type, Field* out) const {
    return key_.Resolve(name, type, "key", out);
  }

  // --- Output ---
  /// The record builder (host-owned); set fields, then Emit().
  OutputRecord& Out() { return out_; }
  Status Emit() { return Status::FromHost(api_->emit(host_)); }
  /// Emits `in` unchanged (the output schema must be the input schema).
  Status Forward(const Record& in) { return Status::FromHost(api_->emit_input(host_, in.raw())); }
  Status EmitWatermark(int64_t watermark_ms) {
    return Status::FromHost(api_->emit_watermark(host_, watermark_ms));
  }

  // --- Time ---
  int64_t CurrentWatermark() const { return api_->current_watermark(host_); }
  int64_t ProcessingTimeMs() const { return api_->processing_time_ms(host_); }

  // --- Keys, state, timers (keyed operator types) ---
  /// The current key (in Process: the record's; in OnTimer: the timer's), by key field.
  Status CurrentKey(const sluice_value** values, size_t* count) const {
    return Status::FromHost(api_->current_key(host_, values, count));
  }
  Record CurrentKey() const {
    const sluice_value* v = nullptr;
    size_t n = 0;
    sluice_status s = api_->current_key(host_, &v, &n);
    return Record(s == SLUICE_OK ? v : nullptr, nullptr);
  }
  Status RegisterValueState(std::string_view name, ValueState* out, int64_t ttl_ms = 0) {
    int32_t id = -1;
    SLUICE_SDK_RETURN_IF_ERROR(Register(name, SLUICE_STATE_VALUE, ttl_ms, &id));
    *out = ValueState(api_, host_, id);
    return Status::Ok();
  }
  Status RegisterListState(std::string_view name, ListState* out, int64_t ttl_ms = 0) {
    int32_t id = -1;
    SLUICE_SDK_RETURN_IF_ERROR(Register(name, SLUICE_STATE_LIST, ttl_ms, &id));
    *out = ListState(api_, host_, id);
    return Status::Ok();
  }
  Status RegisterMapState(std::string_view name, MapState* out, int64_t ttl_ms = 0) {
    int32_t id = -1;
    SLUICE_SDK_RETURN_IF_ERROR(Register(name, SLUICE_STATE_MAP, ttl_ms, &id));
    *out = MapState(api_, host_, id);
    return Status::Ok();
  }
  Status RegisterTimer(TimerDomain domain, int64_t timestamp_ms) {
    return Status::FromHost(
        api_->register_timer(host_, static_cast<sluice_timer_domain>(domain), timestamp_ms));
  }
  Status DeleteTimer(TimerDomain domain, int64_t timestamp_ms) {
    return Status::FromHost(
        api_->delete_timer(host_, static_cast<sluice_timer_domain>(domain), timestamp_ms));
  }

  // --- Metrics, logs, restored state ---
  Status RegisterCounter(std::string_view name, Counter* out) {
    sluice_counter* c = nullptr;
    SLUICE_SDK_RETURN_IF_ERROR(
        Status::FromHost(api_->register_counter(host_, name.data(), name.size(), &c)));
    *out = Counter(api_, host_, c);
    return Status::Ok();
  }
  void Log(LogLevel level, std::string_view message) const {
    api_->log(host_, static_cast<sluice_log_level>(level), message.data(), message.size());
  }
  bool Restored() const { return info_->restored != 0; }
  std::vector<std::string_view> RestoredEntries() const {
    std::vector<std::string_view> v;
    for (size_t i = 0; i < info_->num_restored_entries; ++i) v.push_back(View(info_->restored_entries[i]));
    return v;
  }

  /// The ABI objects, for anything this class does not wrap.
  const sluice_host_api* api() const { return api_; }
  sluice_host* host() const { return host_; }

 private:
  Status Register(std::string_view name, sluice_state_kind kind, int64_t ttl_ms, int32_t* id) {
    return Status::FromHost(api_->register_state(host_, name.data(), name.size(), kind, ttl_ms, id));
  }

  const sluice_open_info* info_;
  const sluice_host_api* api_;
  sluice_host* host_;
  Schema input_;
  Schema output_;
  Schema key_;
  OutputRecord out_;
  int num_inputs_ = 1;
  Schema inputs_[2];
};

/// The class plugin authors subclass. One instance per parallel subtask; all calls come from
/// that subtask's one thread (no locks needed). Construct from `const Options&` (or default):
/// options were validated at submission and are checked again before construction.
class Operator {
 public:
  virtual ~Operator() = default;
  /// Resolve fields, register state and counters.
  virtual Status Open(Context& ctx) { return Status::Ok(); }
  /// One input record. For keyed types, its key is the current key.
  virtual Status Process(const Record& in, Context& ctx) = 0;
  /// The input watermark advanced (after due event-time timers fired). Forwards by default.
  virtual Status ProcessWatermark(int64_t watermark_ms, Context& ctx) {
    return ctx.EmitWatermark(watermark_ms);
  }
  /// A timer fired (keyed types); its key is the current key.
  virtual Status OnTimer(TimerDomain domain, int64_t timestamp_ms, Context& ctx) {
    return Status::Ok();
  }
  /// End of input.
  virtual Status Finish(Context& ctx) { return Status::Ok(); }
  /// Non-keyed state to checkpoint (keyed state lives in the host and needs nothing).
  virtual Status Snapshot(int64_t checkpoint_id, SnapshotWriter& out) { return Status::Ok(); }
  virtual Status NotifyCheckpointComplete(int64_t checkpoint_id) { return Status::Ok(); }
  virtual void Close() {}
};

/// The class to subclass for an operator with two inputs (needs a host of ABI 1.1 or later).
/// Records of both inputs arrive on the same thread, in arrival order, through
/// Process(input, ...): input 0 or 1, each with its own schema (Context::InputSchema(input),
/// Context::InputField(input, ...)). For keyed types, both inputs are keyed by the job's key for
/// that input (same key types), and the record's key is the current key, as for one input; state
/// written while processing one input is read while processing the other (Flink's
/// KeyedCoProcessFunction). Forward(in) needs an output schema equal to `in`'s input schema.
class TwoInputOperator : public Operator {
 public:
  /// One record of input `input` (0 or 1).
  virtual Status Process(int input, const Record& in, Context& ctx) = 0;

 private:
  // One-input calls do not happen for a two-input type; if a host made one, it is input 0.
  Status Process(const Record& in, Context& ctx) final { return Process(0, in, ctx); }
};

using ValidateFn = Status (*)(const Options& options);
using OutputSchemaFn = Status (*)(const Schema& input, const Options& options, SchemaBuilder& out);
/// The output schema of a two-input type, from both input schemas.
using OutputSchema2Fn = Status (*)(const Schema& input0, const Schema& input1, const Options& options,
                                   SchemaBuilder& out);

namespace internal {

// Everything the SDK keeps for one operator type (static for the life of the process).
struct TypeInfo {
  std::string name;
  std::string description;
  ValidateFn validate = nullptr;
  OutputSchemaFn output_schema = nullptr;
  OutputSchema2Fn output_schema2 = nullptr;
  int32_t num_inputs = 1;
  struct OptionText {
    std::string name, type, default_value, description;
    bool required = false;
  };
  std::deque<OptionText> option_text;        // owns the strings option_abi points into
  std::vector<sluice_option_info> option_abi;
  std::unique_ptr<Operator> (*factory)(const Options&) = nullptr;
  sluice_operator_type abi{};
};

// One running instance: the user's operator, its context and names for messages.
struct Instance {
  const TypeInfo* type = nullptr;
  std::unique_ptr<Operator> op;
  TwoInputOperator* two = nullptr;  // op, when the type has two inputs
  std::unique_ptr<Context> ctx;
  bool keyed = false;
  std::string operator_id;
};

inline void SetError(sluice_error* error, const std::string& message) {
  if (error != nullptr && !message.empty()) error->set_message(error, message.data(), message.size());
}

inline sluice_status Fail(const Status& s, sluice_error* error) {
  SetError(error, s.message());
  return static_cast<sluice_status>(s.code());
}

// "operator 'id' (type 'name')" or "operator type 'name'" before open.
inline std::string Who(const TypeInfo* type, const Instance* inst) {
  if (inst != nullptr && !inst->operator_id.empty()) {
    return "operator '" + inst->operator_id + "' (type '" + type->name + "')";
  }
  return "operator type '" + type->name + "'";
}

// Runs `fn` (returning Status), turning any exception into kInternal naming the operator.
template <typename Fn>
sluice_status Guard(const TypeInfo* type, const Instance* inst, const char* hook,
                    sluice_error* error, Fn&& fn) {
  try {
    Status s = fn();
    if (s.ok()) return SLUICE_OK;
    return Fail(s, error);
  } catch (const std::exception& e) {
    SetError(error, Who(type, inst) + " threw an exception in " + hook + ": " + e.what());
  } catch (...) {
    SetError(error, Who(type, inst) + " threw a non-standard exception in " + hook);
  }
  return SLUICE_ERR_INTERNAL;
}

inline Status ParseOptions(sluice_string json, Options* out) { return Options::Parse(View(json), out); }

inline sluice_status OpenHook(void* p, const sluice_open_info* info, sluice_error* error) {
  auto* inst = static_cast<Instance*>(p);
  return Guard(inst->type, inst, "Open", error, [&] {
    inst->operator_id.assign(info->operator_id.data, info->operator_id.size);
    inst->ctx = std::make_unique<Context>(info);
    return inst->op->Open(*inst->ctx);
  });
}

inline sluice_status ProcessHook(void* p, const sluice_record* records, size_t count,
                                 sluice_error* error) {
  auto* inst = static_cast<Instance*>(p);
  try {
    Context& ctx = *inst->ctx;
    for (size_t i = 0; i < count; ++i) {
      if (inst->keyed) {
        sluice_status ks = ctx.api()->enter_key(ctx.host(), &records[i]);
        if (ks != SLUICE_OK) return ks;
      }
      Status s = inst->op->Process(Record(&records[i]), ctx);
      if (!s.ok()) return Fail(s, error);
    }
    return SLUICE_OK;
  } catch (const std::exception& e) {
    SetError(error, Who(inst->type, inst) + " threw an exception in Process: " + e.what());
  } catch (...) {
    SetError(error, Who(inst->type, inst) + " threw a non-standard exception in Process");
  }
  return SLUICE_ERR_INTERNAL;
}

inline sluice_status ProcessInputHook(void* p, int32_t input, const sluice_record* records, size_t count,
                                      sluice_error* error) {
  auto* inst = static_cast<Instance*>(p);
  try {
    if (inst->two == nullptr || input < 0 || input > 1) {
      return Fail(Status::FailedPrecondition(Who(inst->type, inst) + " got records of input " +
                                             std::to_string(input) + ", but it has " +
                                             (inst->two == nullptr ? "one input" : "inputs 0 and 1")),
                  error);
    }
    Context& ctx = *inst->ctx;
    for (size_t i = 0; i < count; ++i) {
      if (inst->keyed) {
        sluice_status ks = ctx.api()->enter_key(ctx.host(), &records[i]);
        if (ks != SLUICE_OK) return ks;
      }
      Status s = inst->two->Process(static_cast<int>(input), Record(&records[i]), ctx);
      if (!s.ok()) return Fail(s, error);
    }
    return SLUICE_OK;
  } catch (const std::exception& e) {
    SetError(error, Who(inst->type, inst) + " threw an exception in Process: " + e.what());
  } catch (...) {
    SetError(error, Who(inst->type, inst) + " threw a non-standard exception in Process");
  }
  return SLUICE_ERR_INTERNAL;
}

inline sluice_status WatermarkHook(void* p, int64_t wm, sluice_error* error) {
  auto* inst = static_cast<Instance*>(p);
  return Guard(inst->type, inst, "ProcessWatermark", error,
               [&] { return inst->op->ProcessWatermark(wm, *inst->ctx); });
}

inline sluice_status TimerHook(void* p, sluice_timer_domain domain, int64_t ts, sluice_error* error) {
  auto* inst = static_cast<Instance*>(p);
  return Guard(inst->type, inst, "OnTimer", error, [&] {
    return inst->op->OnTimer(static_cast<TimerDomain>(domain), ts, *inst->ctx);
  });
}

inline sluice_status FinishHook(void* p, sluice_error* error) {
  auto* inst = static_cast<Instance*>(p);
  return Guard(inst->type, inst, "Finish", error, [&] { return inst->op->Finish(*inst->ctx); });
}

inline sluice_status SnapshotHook(void* p, int64_t id, sluice_snapshot_writer* w, sluice_error* error) {
  auto* inst = static_cast<Instance*>(p);
  return Guard(inst->type, inst, "Snapshot", error, [&] {
    SnapshotWriter writer(w);
    return inst->op->Snapshot(id, writer);
  });
}

inline sluice_status NotifyHook(void* p, int64_t id, sluice_error* error) {
  auto* inst = static_cast<Instance*>(p);
  return Guard(inst->type, inst, "NotifyCheckpointComplete", error,
               [&] { return inst->op->NotifyCheckpointComplete(id); });
}

inline void CloseHook(void* p) {
  auto* inst = static_cast<Instance*>(p);
  try {
    inst->op->Close();
  } catch (...) {
    // Close cannot fail; the instance is released next either way.
  }
}

inline void ReleaseHook(void* p) { delete static_cast<Instance*>(p); }

inline sluice_status ValidateHook(void* type_data, sluice_string json, sluice_error* error) {
  const auto* type = static_cast<const TypeInfo*>(type_data);
  return Guard(type, nullptr, "Validate", error, [&] {
    Options options;
    SLUICE_SDK_RETURN_IF_ERROR(ParseOptions(json, &options));
    return type->validate != nullptr ? type->validate(options) : Status::Ok();
  });
}

inline sluice_status OutputSchemaHook(void* type_data, const sluice_schema* input, sluice_string json,
                                      sluice_schema_builder* out, sluice_error* error) {
  const auto* type = static_cast<const TypeInfo*>(type_data);
  return Guard(type, nullptr, "OutputSchema", error, [&] {
    Options options;
    SLUICE_SDK_RETURN_IF_ERROR(ParseOptions(json, &options));
    SchemaBuilder builder(out);
    Schema in(input);
    if (type->output_schema == nullptr) {
      builder.AddAll(in);
      return Status::Ok();
    }
    return type->output_schema(in, options, builder);
  });
}

inline sluice_status OutputSchemaInputsHook(void* type_data, const sluice_schema* inputs, size_t num_inputs,
                                            sluice_string json, sluice_schema_builder* out, sluice_error* error) {
  const auto* type = static_cast<const TypeInfo*>(type_data);
  return Guard(type, nullptr, "OutputSchema", error, [&] {
    if (num_inputs != 2) {
      return Status::InvalidArgument("operator type '" + type->name + "' has 2 inputs, not " +
                                     std::to_string(num_inputs));
    }
    Options options;
    SLUICE_SDK_RETURN_IF_ERROR(ParseOptions(json, &options));
    SchemaBuilder builder(out);
    Schema in0(&inputs[0]);
    Schema in1(&inputs[1]);
    if (type->output_schema2 != nullptr) return type->output_schema2(in0, in1, options, builder);
    if (type->output_schema != nullptr) return type->output_schema(in0, options, builder);
    builder.AddAll(in0);
    return Status::Ok();
  });
}

inline sluice_status CreateHook(void* type_data, sluice_string json, sluice_operator* op,
                                sluice_error* error) {
  const auto* type = static_cast<const TypeInfo*>(type_data);
  return Guard(type, nullptr, "create", error, [&] {
    Options options;
    SLUICE_SDK_RETURN_IF_ERROR(ParseOptions(json, &options));
    if (type->validate != nullptr) SLUICE_SDK_RETURN_IF_ERROR(type->validate(options));
    auto inst = std::make_unique<Instance>();
    inst->type = type;
    inst->keyed = type->abi.keyed != 0;
    inst->op = type->factory(options);
    if (type->num_inputs == 2) inst->two = static_cast<TwoInputOperator*>(inst->op.get());
    op->struct_size = sizeof(sluice_operator);
    op->process_input = type->num_inputs == 2 ? &ProcessInputHook : nullptr;
    op->open = &OpenHook;
    op->process = &ProcessHook;
    op->process_watermark = &WatermarkHook;
    op->on_timer = &TimerHook;
    op->finish = &FinishHook;
    op->snapshot = &SnapshotHook;
    op->notify_checkpoint_complete = &NotifyHook;
    op->close = &CloseHook;
    op->release = &ReleaseHook;
    op->instance = inst.release();
    return Status::Ok();
  });
}

template <typename Op>
std::unique_ptr<Operator> Make(const Options& options) {
  if constexpr (std::is_constructible_v<Op, const Options&>) {
    return std::make_unique<Op>(options);
  } else {
    return std::make_unique<Op>();
  }
}

}  // namespace internal

/// Describes one operator type while the plugin registers (chainable setters).
class OperatorTypeBuilder {
 public:
  explicit OperatorTypeBuilder(internal::TypeInfo* t) : t_(t) {}
  /// The operator is keyed: the job gives `key`; state and timers are available.
  OperatorTypeBuilder& Keyed(bool keyed = true) {
    t_->abi.keyed = keyed ? 1 : 0;
    return *this;
  }
  OperatorTypeBuilder& Description(std::string text) {
    t_->description = std::move(text);
    return *this;
  }
  /// Checks options at submission (and again before construction).
  OperatorTypeBuilder& Validate(ValidateFn fn) {
    t_->validate = fn;
    return *this;
  }
  /// The output schema; without it, the output schema is the input schema (input 0's for a
  /// two-input type).
  OperatorTypeBuilder& OutputSchema(OutputSchemaFn fn) {
    t_->output_schema = fn;
    return *this;
  }
  /// The output schema of a two-input type, from both inputs' schemas.
  OperatorTypeBuilder& OutputSchema(OutputSchema2Fn fn) {
    t_->output_schema2 = fn;
    return *this;
  }
  /// Describes an option that must be given (for `sluice plugin check` and docs; Validate
  /// still decides what is accepted). `type` is free text: "string", "int64", "[string]"...
  OperatorTypeBuilder& RequiredOption(std::string name, std::string type, std::string description) {
    t_->option_text.push_back({std::move(name), std::move(type), std::string(), std::move(description), true});
    return *this;
  }
  /// Describes an optional option and its default (as text; empty for none).
  OperatorTypeBuilder& Option(std::string name, std::string type, std::string default_value,
                              std::string description) {
    t_->option_text.push_back(
        {std::move(name), std::move(type), std::move(default_value), std::move(description), false});
    return *this;
  }

 private:
  internal::TypeInfo* t_;
};

/// The plugin being registered (the argument of the SLUICE_PLUGIN body).
class Plugin {
 public:
  Plugin(const char* name, const char* version) : name_(name), version_(version) {}
  Plugin(const Plugin&) = delete;
  Plugin& operator=(const Plugin&) = delete;

  /// Adds operator type `name`, implemented by `Op` (a subclass of Operator, or of
  /// TwoInputOperator for two inputs, constructible from `const Options&` or by default).
  template <typename Op>
  OperatorTypeBuilder AddOperator(std::string name) {
    static_assert(std::is_base_of_v<Operator, Op>, "Op must derive from sluice::sdk::Operator");
    types_.emplace_back();
    internal::TypeInfo& t = types_.back();
    t.name = std::move(name);
    t.factory = &internal::Make<Op>;
    t.num_inputs = std::is_base_of_v<TwoInputOperator, Op> ? 2 : 1;
    return OperatorTypeBuilder(&t);
  }

  /// Fills the ABI descriptor (after registration; addresses are stable from here on).
  const sluice_plugin* Finalize() {
    for (auto& t : types_) {
      t.abi.struct_size = sizeof(sluice_operator_type);
      t.abi.name = sluice_string{t.name.data(), t.name.size()};
      t.abi.description = sluice_string{t.description.data(), t.description.size()};
      t.abi.num_inputs = t.num_inputs;
      t.abi.type_data = &t;
      t.abi.validate = &internal::ValidateHook;
      t.abi.output_schema = &internal::OutputSchemaHook;
      t.abi.create = &internal::CreateHook;
      t.abi.output_schema_inputs = t.num_inputs == 2 ? &internal::OutputSchemaInputsHook : nullptr;
      for (const auto& o : t.option_text) {
        auto str = [](const std::string& s) { return sluice_string{s.data(), s.size()}; };
        t.option_abi.push_back(
            sluice_option_info{str(o.name), str(o.type), o.required ? 1 : 0, str(o.default_value), str(o.description)});
      }
      t.abi.options = t.option_abi.empty() ? nullptr : t.option_abi.data();
      t.abi.num_options = t.option_abi.size();
      pointers_.push_back(&t.abi);
    }
    desc_.struct_size = sizeof(sluice_plugin);
    desc_.abi_major = SLUICE_ABI_MAJOR;
    desc_.abi_minor = SLUICE_ABI_MINOR;
    desc_.name = sluice_string{name_.data(), name_.size()};
    desc_.version = sluice_string{version_.data(), version_.size()};
    desc_.operator_types = pointers_.data();
    desc_.num_operator_types = pointers_.size();
    return &desc_;
  }

 private:
  std::string name_;
  std::string version_;
  std::deque<internal::TypeInfo> types_;  // deque: stable addresses
  std::vector<const sluice_operator_type*> pointers_;
  sluice_plugin desc_{};
};

namespace internal {

// Runs the registration body once (in the entry point's function-local static) and keeps
// the descriptor or the reason it failed.
class PluginHolder {
 public:
  PluginHolder(const char* name, const char* version, void (*reg)(Plugin&)) : plugin_(name, version) {
    try {
      reg(plugin_);
      desc_ = plugin_.Finalize();
    } catch (const std::exception& e) {
      error_ = std::string("plugin '") + name + "' threw an exception while registering: " + e.what();
    } catch (...) {
      error_ = std::string("plugin '") + name + "' threw a non-standard exception while registering";
    }
  }
  const sluice_plugin* Get(sluice_error* error) const {
    if (desc_ == nullptr) SetError(error, error_);
    return desc_;
  }

 private:
  Plugin plugin_;
  const sluice_plugin* desc_ = nullptr;
  std::string error_;
};

}  // namespace internal
}  // namespace sluice::sdk

/// Defines the plugin's entry point (sluice_plugin_init_v1) and opens the registration body:
///
///   SLUICE_PLUGIN("my-plugin", "1.0.0", plugin) { plugin.AddOperator<MyOp>("my_op"); }
///
/// Use it once per plugin, in one source file.
#define SLUICE_PLUGIN(NAME, VERSION, PLUGIN_VAR)                                              \
  static void SluicePluginRegister_(::sluice::sdk::Plugin& PLUGIN_VAR);                       \
  extern "C" SLUICE_PLUGIN_EXPORT const sluice_plugin* sluice_plugin_init_v1(sluice_error* error) { \
    static const ::sluice::sdk::internal::PluginHolder holder(NAME, VERSION,                  \
                                                              &SluicePluginRegister_);        \
    return holder.Get(error);                                                                 \
  }                                                                                           \
  static void SluicePluginRegister_(::sluice::sdk::Plugin& PLUGIN_VAR)
