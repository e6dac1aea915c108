// An in-memory fake host for unit-testing operator plugins without a cluster.
//
//   #include "sluice/testing.h"
//
//   sluice::sdk::testing::Harness h(sluice_plugin_init_v1, {
//       .type = "dedup", ...});                        // (C++20; or set the fields one by one)
//   ASSERT_TRUE(h.Open().ok());
//   h.Process({"alice", 3});                           // records in (input 0)
//   h.Process(1, {"alice", "gold"});                   // two-input types: input 1
//   h.AdvanceWatermark(1000);                          // fires due event-time timers
//   EXPECT_EQ(h.output(), (std::vector<std::string>{R"({"user":"alice","n":3})"}));
//
// The harness drives the plugin through the same C ABI a worker uses (create, open, process
// in batches, on_timer, process_watermark, finish, snapshot, close, release), so what passes
// here runs the same way on a cluster. Keyed state lives in maps, with TTL against a fake
// processing-time clock; timers fire when the test advances the watermark or the clock.
// Single-threaded; not thread-safe.
#pragma once

#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "sluice/plugin.h"
#include "sluice/sdk.h"

namespace sluice::sdk::testing {

/// One input value; converted to the field's type from the input schema.
class TestValue {
 public:
  TestValue(int v) : i_(v), d_(v) {}            // NOLINT(google-explicit-constructor)
  TestValue(int64_t v) : i_(v), d_(static_cast<double>(v)) {}  // NOLINT
  TestValue(double v) : i_(static_cast<int64_t>(v)), d_(v) {}   // NOLINT
  TestValue(bool v) : i_(v ? 1 : 0), d_(v ? 1 : 0) {}           // NOLINT
  TestValue(const char* v) : s_(v) {}                            // NOLINT
  TestValue(std::string v) : s_(std::move(v)) {}                 // NOLINT
  /// A null value (plugins of ABI 1.2 see Record::IsNull; older ones the type's default).
  static TestValue Null() {
    TestValue v(int64_t{0});
    v.null_ = true;
    return v;
  }

  bool is_null() const { return null_; }
  int64_t i() const { return i_; }
  double d() const { return d_; }
  const std::string& s() const { return s_; }

 private:
  int64_t i_ = 0;
  double d_ = 0;
  std::string s_;
  bool null_ = false;
};
using Row = std::vector<TestValue>;

struct TestField {
  std::string name;
  FieldType type;
};

/// What to run.
struct HarnessOptions {
  std::string type;                  ///< the operator type's name
  std::string options_json = "{}";   ///< its options
  std::vector<TestField> input;      ///< input schema
  std::vector<std::string> key;      ///< keyed types: input fields forming the key
  std::vector<TestField> input2;     ///< two-input types: input 1's schema
  std::vector<std::string> key2;     ///< keyed two-input types: input 1's key fields (same types)
  std::string operator_id = "op";
  int64_t processing_time_ms = 0;    ///< the fake clock's start
  std::vector<std::string> restored_entries;  ///< non-keyed state to restore
};

/// Runs one operator instance of a plugin against an in-memory host.
class Harness {
 public:
  Harness(sluice_plugin_init_v1_fn init, HarnessOptions options)
      : init_(init), o_(std::move(options)), clock_ms_(o_.processing_time_ms) {}
  Harness(const Harness&) = delete;
  Harness& operator=(const Harness&) = delete;
  ~Harness() {
    if (op_.release == nullptr) return;
    if (opened_ && !closed_ && op_.close != nullptr) op_.close(op_.instance);
    op_.release(op_.instance);
  }

  /// Validates the options (the type's validate hook), as the coordinator does at submission.
  Status Validate() {
    SLUICE_SDK_RETURN_IF_ERROR(FindType());
    if (type_->validate == nullptr) return Status::Ok();
    Sink err;
    sluice_status s = type_->validate(type_->type_data, Str(o_.options_json), &err.abi);
    return s == SLUICE_OK ? Status::Ok() : Status(static_cast<StatusCode>(s), err.message);
  }

  /// Output schema, create and open.
  Status Open() {
    SLUICE_SDK_RETURN_IF_ERROR(FindType());
    for (const auto& f : o_.input) input_fields_.push_back(sluice_field{Str(f.name), static_cast<sluice_field_type>(f.type)});
    input_schema_ = sluice_schema{input_fields_.data(), input_fields_.size()};
    for (const auto& k : o_.key) {
      int32_t idx = Schema(&input_schema_).IndexOf(k);
      if (idx < 0) return Status::InvalidArgument("key field '" + k + "' is not an input field");
      key_index_.push_back(idx);
      key_fields_.push_back(input_fields_[idx]);
    }
    key_schema_ = sluice_schema{key_fields_.data(), key_fields_.size()};
    for (int32_t idx : key_index_) key_test_fields_.push_back(o_.input[idx]);
    if (type_->keyed != 0 && o_.key.empty()) return Status::InvalidArgument("a keyed type needs a key");
    const bool two = type_->num_inputs == 2;
    if (!two && (!o_.input2.empty() || !o_.key2.empty())) {
      return Status::InvalidArgument("input2 and key2 are for two-input types; '" + o_.type + "' has one input");
    }
    if (two) {
      for (const auto& f : o_.input2) input2_fields_.push_back(sluice_field{Str(f.name), static_cast<sluice_field_type>(f.type)});
      if (type_->keyed != 0 && o_.key2.size() != o_.key.size()) {
        return Status::InvalidArgument("a keyed two-input type needs key2 with as many fields as key");
      }
      for (size_t k = 0; k < o_.key2.size(); ++k) {
        int32_t idx = -1;
        for (size_t i = 0; i < o_.input2.size(); ++i) {
          if (o_.input2[i].name == o_.key2[k]) idx = static_cast<int32_t>(i);
        }
        if (idx < 0) return Status::InvalidArgument("key2 field '" + o_.key2[k] + "' is not an input2 field");
        if (o_.input2[idx].type != key_test_fields_[k].type) {
          return Status::InvalidArgument("key2 field '" + o_.key2[k] + "' is " + FieldTypeName(o_.input2[idx].type) +
                                         ", but key field '" + o_.key[k] + "' is " +
                                         FieldTypeName(key_test_fields_[k].type));
        }
        key_index2_.push_back(idx);
      }
    }
    input_schemas_[0] = input_schema_;
    input_schemas_[1] = sluice_schema{input2_fields_.data(), input2_fields_.size()};
    // Output schema.
    const bool multi = two && SLUICE_HAS_FIELD(type_, sluice_operator_type, output_schema_inputs) &&
                       type_->output_schema_inputs != nullptr;
    if (!multi && type_->output_schema == nullptr) {
      output_names_ = o_.input;
    } else {
      Sink err;
      // Every field of the harness may be null: nullable ones are added like the others.
      sluice_schema_builder b{sizeof(sluice_schema_builder), this, &AddOutputField, &AddOutputField};
      sluice_status s = multi ? type_->output_schema_inputs(type_->type_data, input_schemas_, 2, Str(o_.options_json),
                                                            &b, &err.abi)
                              : type_->output_schema(type_->type_data, &input_schema_, Str(o_.options_json), &b,
                                                     &err.abi);
      if (s != SLUICE_OK) return Status(static_cast<StatusCode>(s), err.message);
    }
    for (const auto& f : output_names_) output_fields_.push_back(sluice_field{Str(f.name), static_cast<sluice_field_type>(f.type)});
    output_schema_ = sluice_schema{output_fields_.data(), output_fields_.size()};
    same_schema_[0] = SameFields(output_names_, o_.input);
    same_schema_[1] = two && SameFields(output_names_, o_.input2);
    output_values_.assign(output_fields_.size(), sluice_value{0, 0, {nullptr, 0}});
    // Every field of the harness may be null.
    output_nulls_.assign(output_fields_.size(), 0);
    all_nullable_.assign(output_fields_.size() + o_.input.size() + o_.input2.size() + 1, 1);
    nullable_ptrs_[0] = nullable_ptrs_[1] = all_nullable_.data();
    // Create.
    Sink err;
    sluice_status s = type_->create(type_->type_data, Str(o_.options_json), &op_, &err.abi);
    if (s != SLUICE_OK) {
      op_ = sluice_operator{};
      return Status(static_cast<StatusCode>(s), err.message);
    }
    if (op_.struct_size < SLUICE_OPERATOR_SIZE_1_0 || op_.open == nullptr || op_.release == nullptr ||
        (!two && op_.process == nullptr)) {
      return Status::FailedPrecondition("create left open, process or release unset");
    }
    if (two && (!SLUICE_HAS_FIELD(&op_, sluice_operator, process_input) || op_.process_input == nullptr)) {
      return Status::FailedPrecondition("create left process_input unset (required for two-input types)");
    }
    for (const auto& e : o_.restored_entries) restored_.push_back(Str(e));
    api_ = MakeApi();
    info_.struct_size = sizeof(info_);
    info_.host = reinterpret_cast<sluice_host*>(this);
    info_.api = &api_;
    info_.operator_id = Str(o_.operator_id);
    info_.task_name = Str(task_name_);
    info_.subtask = 0;
    info_.parallelism = 1;
    info_.input_schema = &input_schema_;
    info_.output_schema = &output_schema_;
    info_.key_schema = &key_schema_;
    info_.output_values = output_values_.data();
    info_.restored = o_.restored_entries.empty() ? 0 : 1;
    info_.restored_entries = restored_.data();
    info_.num_restored_entries = restored_.size();
    info_.num_inputs = two ? 2 : 1;
    info_.input_schemas = input_schemas_;
    info_.input_nullable = nullable_ptrs_;
    info_.output_nullable = all_nullable_.data();
    info_.output_nulls = output_nulls_.data();
    opened_ = true;
    in_open_ = true;
    Status st = Call([&](sluice_error* e) { return op_.open(op_.instance, &info_, e); });
    in_open_ = false;
    return st;
  }

  /// One record (a batch of one) of input 0.
  Status Process(const Row& row) { return ProcessBatch(0, {row}); }
  /// One record of input `input` (0, or 1 for two-input types).
  Status Process(int input, const Row& row) { return ProcessBatch(input, {row}); }
  /// Records of input 0 in one process call.
  Status ProcessBatch(const std::vector<Row>& rows) { return ProcessBatch(0, rows); }
  /// Records of input `input` in one call (process, or process_input for two-input types).
  Status ProcessBatch(int input, const std::vector<Row>& rows) {
    if (type_ == nullptr || op_.release == nullptr) return Status::FailedPrecondition("Open() first");
    const bool two = type_->num_inputs == 2;
    if (input < 0 || input > (two ? 1 : 0)) {
      return Status::InvalidArgument("operator type '" + o_.type + "' has no input " + std::to_string(input));
    }
    const std::vector<TestField>& fields = input == 0 ? o_.input : o_.input2;
    batch_rows_.clear();
    batch_nulls_.clear();
    bool any_null = false;
    for (const Row& row : rows) {
      for (const TestValue& v : row) any_null = any_null || v.is_null();
    }
    for (const Row& row : rows) {
      if (row.size() != fields.size()) {
        return Status::InvalidArgument("a row has " + std::to_string(row.size()) + " values; input " +
                                       std::to_string(input) + " has " + std::to_string(fields.size()) + " fields");
      }
      std::vector<sluice_value> values(row.size());
      for (size_t i = 0; i < row.size(); ++i) {
        if (any_null) batch_nulls_.push_back(row[i].is_null() ? 1 : 0);
        if (row[i].is_null()) {
          values[i] = sluice_value{0, 0, {"", 0}};
          continue;
        }
        switch (fields[i].type) {
          case FieldType::kDouble: values[i].d = row[i].d(); break;
          case FieldType::kString: values[i].s = Str(row[i].s()); break;
          default: values[i].i = row[i].i(); break;
        }
      }
      batch_rows_.push_back(std::move(values));
    }
    batch_.clear();
    for (size_t i = 0; i < batch_rows_.size(); ++i) {
      batch_.push_back(sluice_record{batch_rows_[i].data(), reinterpret_cast<const void*>(i)});
    }
    in_process_ = true;
    batch_input_ = input;
    Status s = Call([&](sluice_error* e) {
      return two ? op_.process_input(op_.instance, input, batch_.data(), batch_.size(), e)
                 : op_.process(op_.instance, batch_.data(), batch_.size(), e);
    });
    in_process_ = false;
    return s;
  }

  /// Advances the watermark: fires due event-time timers (in timestamp order, each with its
  /// key current), then calls process_watermark (or forwards the watermark).
  Status AdvanceWatermark(int64_t watermark_ms) {
    watermark_ = watermark_ms;
    SLUICE_SDK_RETURN_IF_ERROR(FireTimers(SLUICE_EVENT_TIME, watermark_ms));
    if (op_.process_watermark == nullptr) {
      watermarks_.push_back(watermark_ms);
      return Status::Ok();
    }
    return Call([&](sluice_error* e) { return op_.process_watermark(op_.instance, watermark_ms, e); });
  }

  /// Moves the fake processing-time clock to `now_ms` and fires due processing-time timers.
  Status AdvanceProcessingTime(int64_t now_ms) {
    clock_ms_ = now_ms;
    return FireTimers(SLUICE_PROCESSING_TIME, now_ms);
  }

  Status Finish() {
    if (op_.finish == nullptr) return Status::Ok();
    return Call([&](sluice_error* e) { return op_.finish(op_.instance, e); });
  }

  /// The instance's non-keyed state snapshot.
  Status Snapshot(int64_t checkpoint_id, std::vector<std::string>* entries) {
    entries->clear();
    if (op_.snapshot == nullptr) return Status::Ok();
    struct W {
      sluice_snapshot_writer abi;
      std::vector<std::string>* out;
    } w{{sizeof(sluice_snapshot_writer), nullptr,
         [](sluice_snapshot_writer* self, const char* d, size_t n) {
           reinterpret_cast<W*>(self)->out->emplace_back(d, n);
         }},
        entries};
    return Call([&](sluice_error* e) { return op_.snapshot(op_.instance, checkpoint_id, &w.abi, e); });
  }

  void Close() {
    if (opened_ && !closed_ && op_.close != nullptr) op_.close(op_.instance);
    closed_ = true;
  }

  // --- What came out ---
  /// Emitted records, in order, as JSON objects ({"field":value,...}).
  const std::vector<std::string>& output() const { return output_; }
  std::vector<std::string> TakeOutput() { return std::exchange(output_, {}); }
  /// Watermarks emitted (or forwarded), in order.
  const std::vector<int64_t>& watermarks() const { return watermarks_; }
  /// Pending timers, in firing order, as "event@<ts> <key JSON>" / "processing@<ts> <key JSON>".
  std::vector<std::string> PendingTimers() const {
    std::vector<std::string> v;
    for (const auto& [domain, ts, key] : timers_) {
      v.push_back(std::string(domain == SLUICE_EVENT_TIME ? "event@" : "processing@") + std::to_string(ts) + " " +
                  KeyJson(key));
    }
    return v;
  }
  /// Counter values by name.
  uint64_t CounterValue(const std::string& name) const {
    auto it = counters_.find(name);
    return it == counters_.end() ? 0 : *it->second;
  }
  /// Log lines ("INFO: message").
  const std::vector<std::string>& logs() const { return logs_; }
  /// The output schema's field names and types.
  const std::vector<TestField>& output_schema() const { return output_names_; }

 private:
  friend class AggregateTester;
  using Key = std::string;  // key values rendered as JSON
  struct Sink {
    Sink() : abi{sizeof(sluice_error), this, &Set} {}
    static void Set(sluice_error* self, const char* d, size_t n) {
      static_cast<Sink*>(self->host_data)->message.assign(d == nullptr ? "" : d, d == nullptr ? 0 : n);
    }
    sluice_error abi;
    std::string message;
  };
  struct Stored {
    std::string value;
    int64_t written_ms = 0;
  };
  struct StateInfo {
    sluice_state_kind kind;
    int64_t ttl_ms;
  };

  static sluice_string Str(const std::string& s) { return sluice_string{s.data(), s.size()}; }
  static bool SameFields(const std::vector<TestField>& a, const std::vector<TestField>& b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i) {
      if (a[i].name != b[i].name || a[i].type != b[i].type) return false;
    }
    return true;
  }
  static Harness* Self(sluice_host* h) { return reinterpret_cast<Harness*>(h); }

  Status FindType() {
    if (type_ != nullptr) return Status::Ok();
    Sink err;
    const sluice_plugin* p = init_(&err.abi);
    if (p == nullptr) return Status::Internal("the entry point failed: " + err.message);
    for (size_t i = 0; i < p->num_operator_types; ++i) {
      if (View(p->operator_types[i]->name) == o_.type) type_ = p->operator_types[i];
    }
    if (type_ == nullptr) return Status::NotFound("the plugin has no operator type '" + o_.type + "'");
    return Status::Ok();
  }

  template <typename Fn>
  Status Call(Fn&& fn) {
    Sink err;
    host_error_ = Status::Ok();
    sluice_status s = fn(&err.abi);
    if (s == SLUICE_OK) return Status::Ok();
    if (!host_error_.ok() && (host_error_.code() == StatusCode::kCancelled || err.message.empty())) {
      return std::exchange(host_error_, Status::Ok());
    }
    return Status(static_cast<StatusCode>(s), err.message);
  }

  sluice_status Fail(Status s) {
    sluice_status code = static_cast<sluice_status>(s.code());
    host_error_ = std::move(s);
    return code;
  }
  sluice_status NeedKey(const char* what) {
    if (type_->keyed == 0) return Fail(Status::FailedPrecondition(std::string(what) + " needs a keyed operator type"));
    if (!has_key_) return Fail(Status::FailedPrecondition(std::string(what) + " called with no current key"));
    return SLUICE_OK;
  }

  static void AddOutputField(sluice_schema_builder* b, const char* name, size_t n, sluice_field_type t) {
    static_cast<Harness*>(b->host_data)->output_names_.push_back(TestField{std::string(name, n), static_cast<FieldType>(t)});
  }

  static void AppendJsonString(std::string_view s, std::string* out) {
    out->push_back('"');
    for (char c : s) {
      if (c == '"' || c == '\\') out->push_back('\\');
      out->push_back(c);
    }
    out->push_back('"');
  }
  static void AppendValue(FieldType t, const sluice_value& v, std::string* out) {
    switch (t) {
      case FieldType::kDouble: {
        char buf[32];
        std::snprintf(buf, sizeof(buf), "%.17g", v.d);
        out->append(buf);
        break;
      }
      case FieldType::kString: AppendJsonString(View(v.s), out); break;
      case FieldType::kBool: out->append(v.i != 0 ? "true" : "false"); break;
      default: out->append(std::to_string(v.i)); break;
    }
  }
  std::string Render(const std::vector<TestField>& fields, const sluice_value* values,
                     const uint8_t* nulls = nullptr) const {
    std::string out = "{";
    for (size_t i = 0; i < fields.size(); ++i) {
      if (i > 0) out.push_back(',');
      AppendJsonString(fields[i].name, &out);
      out.push_back(':');
      if (nulls != nullptr && nulls[i] != 0) {
        out.append("null");
      } else {
        AppendValue(fields[i].type, values[i], &out);
      }
    }
    out.push_back('}');
    return out;
  }
  std::string KeyJson(const Key& key) const { return key; }

  bool Expired(const Stored& s, int32_t id) const {
    int64_t ttl = states_.at(id).ttl_ms;
    return ttl > 0 && clock_ms_ >= s.written_ms + ttl;
  }
  sluice_status CheckState(int32_t id, sluice_state_kind kind, const char* what) {
    if (sluice_status s = NeedKey(what); s != SLUICE_OK) return s;
    auto it = states_.find(id);
    if (it == states_.end() || it->second.kind != kind) {
      return Fail(Status::InvalidArgument(std::string(what) + ": state id " + std::to_string(id) +
                                          " is not a registered state of that kind"));
    }
    return SLUICE_OK;
  }

  Status FireTimers(sluice_timer_domain domain, int64_t up_to) {
    while (true) {
      auto it = timers_.lower_bound(std::make_tuple(domain, INT64_MIN, Key()));
      if (it == timers_.end() || std::get<0>(*it) != domain || std::get<1>(*it) > up_to) return Status::Ok();
      auto [d, ts, key] = *it;
      timers_.erase(it);
      SetKey(key);
      if (op_.on_timer == nullptr) continue;
      Status s = Call([&](sluice_error* e) { return op_.on_timer(op_.instance, d, ts, e); });
      if (!s.ok()) return s;
    }
  }

  void SetKey(const Key& key) {
    current_key_ = key;
    has_key_ = true;
    key_values_ = key_store_[key];
    key_view_.clear();
    for (size_t i = 0; i < key_values_.size(); ++i) {
      sluice_value v{0, 0, {nullptr, 0}};
      if (key_fields_[i].type == SLUICE_TYPE_STRING) {
        v.s = Str(key_values_[i].s());
      } else if (key_fields_[i].type == SLUICE_TYPE_DOUBLE) {
        v.d = key_values_[i].d();
      } else {
        v.i = key_values_[i].i();
      }
      key_view_.push_back(v);
    }
  }

  sluice_host_api MakeApi() {
    sluice_host_api a{};
    a.struct_size = sizeof(a);
    a.emit = [](sluice_host* h) -> sluice_status {
      Harness* self = Self(h);
      if (self->in_open_) return self->Fail(Status::FailedPrecondition("emit called during open"));
      self->output_.push_back(
          self->Render(self->output_names_, self->output_values_.data(), self->output_nulls_.data()));
      return SLUICE_OK;
    };
    a.emit_input = [](sluice_host* h, const sluice_record* r) -> sluice_status {
      Harness* self = Self(h);
      if (!self->in_process_ || r < self->batch_.data() || r >= self->batch_.data() + self->batch_.size()) {
        return self->Fail(Status::FailedPrecondition("emit_input: not a record of the current process call"));
      }
      if (!self->same_schema_[self->batch_input_]) {
        return self->Fail(Status::FailedPrecondition("emit_input: the output schema is not the schema of input " +
                                                     std::to_string(self->batch_input_)));
      }
      const std::vector<TestField>& in = self->batch_input_ == 0 ? self->o_.input : self->o_.input2;
      const uint8_t* nulls =
          self->batch_nulls_.empty() ? nullptr : self->batch_nulls_.data() + (r - self->batch_.data()) * in.size();
      self->output_.push_back(self->Render(in, r->values, nulls));
      return SLUICE_OK;
    };
    a.emit_watermark = [](sluice_host* h, int64_t wm) -> sluice_status {
      Self(h)->watermarks_.push_back(wm);
      return SLUICE_OK;
    };
    a.current_watermark = [](sluice_host* h) { return Self(h)->watermark_; };
    a.processing_time_ms = [](sluice_host* h) { return Self(h)->clock_ms_; };
    a.enter_key = [](sluice_host* h, const sluice_record* r) -> sluice_status {
      Harness* self = Self(h);
      if (self->type_->keyed == 0) return self->Fail(Status::FailedPrecondition("enter_key needs a keyed operator type"));
      if (!self->in_process_ || r < self->batch_.data() || r >= self->batch_.data() + self->batch_.size()) {
        return self->Fail(Status::FailedPrecondition("enter_key: not a record of the current process call"));
      }
      std::vector<TestField> fields;
      std::vector<sluice_value> values;
      Row key_row;
      const std::vector<int32_t>& index = self->batch_input_ == 0 ? self->key_index_ : self->key_index2_;
      for (size_t k = 0; k < index.size(); ++k) {
        const sluice_value& v = r->values[index[k]];
        fields.push_back(self->key_test_fields_[k]);  // input 0's key names: equal keys meet
        values.push_back(v);
        switch (fields.back().type) {
          case FieldType::kDouble: key_row.emplace_back(v.d); break;
          case FieldType::kString: key_row.emplace_back(std::string(View(v.s))); break;
          default: key_row.emplace_back(static_cast<int64_t>(v.i)); break;
        }
      }
      Key key = self->Render(fields, values.data());
      self->key_store_[key] = key_row;
      self->SetKey(key);
      return SLUICE_OK;
    };
    a.current_key = [](sluice_host* h, const sluice_value** v, size_t* n) -> sluice_status {
      Harness* self = Self(h);
      if (sluice_status s = self->NeedKey("current_key"); s != SLUICE_OK) return s;
      *v = self->key_view_.data();
      *n = self->key_view_.size();
      return SLUICE_OK;
    };
    a.register_state = [](sluice_host* h, const char* name, size_t n, sluice_state_kind kind, int64_t ttl,
                          int32_t* id) -> sluice_status {
      Harness* self = Self(h);
      if (self->type_->keyed == 0) return self->Fail(Status::FailedPrecondition("register_state needs a keyed operator type"));
      if (!self->in_open_) return self->Fail(Status::FailedPrecondition("state registered outside open"));
      std::string s(name, n);
      auto it = self->state_ids_.find(s);
      if (it == self->state_ids_.end()) {
        int32_t next = static_cast<int32_t>(self->state_ids_.size());
        it = self->state_ids_.emplace(s, next).first;
      }
      self->states_[it->second] = StateInfo{kind, ttl};
      *id = it->second;
      return SLUICE_OK;
    };
    a.value_get = [](sluice_host* h, int32_t id, sluice_string* value, int32_t* found) -> sluice_status {
      Harness* self = Self(h);
      if (sluice_status s = self->CheckState(id, SLUICE_STATE_VALUE, "value_get"); s != SLUICE_OK) return s;
      auto it = self->values_.find({self->current_key_, id});
      *found = it != self->values_.end() && !self->Expired(it->second, id);
      if (*found) *value = Str(it->second.value);
      return SLUICE_OK;
    };
    a.value_put = [](sluice_host* h, int32_t id, const char* d, size_t n) -> sluice_status {
      Harness* self = Self(h);
      if (sluice_status s = self->CheckState(id, SLUICE_STATE_VALUE, "value_put"); s != SLUICE_OK) return s;
      self->values_[{self->current_key_, id}] = Stored{std::string(d, n), self->clock_ms_};
      return SLUICE_OK;
    };
    a.value_clear = [](sluice_host* h, int32_t id) -> sluice_status {
      Harness* self = Self(h);
      if (sluice_status s = self->CheckState(id, SLUICE_STATE_VALUE, "value_clear"); s != SLUICE_OK) return s;
      self->values_.erase({self->current_key_, id});
      return SLUICE_OK;
    };
    a.list_append = [](sluice_host* h, int32_t id, const char* d, size_t n) -> sluice_status {
      Harness* self = Self(h);
      if (sluice_status s = self->CheckState(id, SLUICE_STATE_LIST, "list_append"); s != SLUICE_OK) return s;
      self->lists_[{self->current_key_, id}].push_back(Stored{std::string(d, n), self->clock_ms_});
      return SLUICE_OK;
    };
    a.list_get = [](sluice_host* h, int32_t id, const sluice_string** items, size_t* count) -> sluice_status {
      Harness* self = Self(h);
      if (sluice_status s = self->CheckState(id, SLUICE_STATE_LIST, "list_get"); s != SLUICE_OK) return s;
      self->views_.clear();
      for (const auto& e : self->lists_[{self->current_key_, id}]) {
        if (!self->Expired(e, id)) self->views_.push_back(Str(e.value));
      }
      *items = self->views_.data();
      *count = self->views_.size();
      return SLUICE_OK;
    };
    a.list_clear = [](sluice_host* h, int32_t id) -> sluice_status {
      Harness* self = Self(h);
      if (sluice_status s = self->CheckState(id, SLUICE_STATE_LIST, "list_clear"); s != SLUICE_OK) return s;
      self->lists_.erase({self->current_key_, id});
      return SLUICE_OK;
    };
    a.map_get = [](sluice_host* h, int32_t id, const char* k, size_t kn, sluice_string* value,
                   int32_t* found) -> sluice_status {
      Harness* self = Self(h);
      if (sluice_status s = self->CheckState(id, SLUICE_STATE_MAP, "map_get"); s != SLUICE_OK) return s;
      auto& m = self->maps_[{self->current_key_, id}];
      auto it = m.find(std::string(k, kn));
      *found = it != m.end() && !self->Expired(it->second, id);
      if (*found) *value = Str(it->second.value);
      return SLUICE_OK;
    };
    a.map_put = [](sluice_host* h, int32_t id, const char* k, size_t kn, const char* v,
                   size_t vn) -> sluice_status {
      Harness* self = Self(h);
      if (sluice_status s = self->CheckState(id, SLUICE_STATE_MAP, "map_put"); s != SLUICE_OK) return s;
      self->maps_[{self->current_key_, id}][std::string(k, kn)] = Stored{std::string(v, vn), self->clock_ms_};
      return SLUICE_OK;
    };
    a.map_remove = [](sluice_host* h, int32_t id, const char* k, size_t kn) -> sluice_status {
      Harness* self = Self(h);
      if (sluice_status s = self->CheckState(id, SLUICE_STATE_MAP, "map_remove"); s != SLUICE_OK) return s;
      self->maps_[{self->current_key_, id}].erase(std::string(k, kn));
      return SLUICE_OK;
    };
    a.map_entries = [](sluice_host* h, int32_t id, const sluice_string** e, size_t* count) -> sluice_status {
      Harness* self = Self(h);
      if (sluice_status s = self->CheckState(id, SLUICE_STATE_MAP, "map_entries"); s != SLUICE_OK) return s;
      self->views_.clear();
      for (const auto& [k, v] : self->maps_[{self->current_key_, id}]) {
        if (self->Expired(v, id)) continue;
        self->views_.push_back(Str(k));
        self->views_.push_back(Str(v.value));
      }
      *e = self->views_.data();
      *count = self->views_.size() / 2;
      return SLUICE_OK;
    };
    a.register_timer = [](sluice_host* h, sluice_timer_domain d, int64_t ts) -> sluice_status {
      Harness* self = Self(h);
      if (sluice_status s = self->NeedKey("register_timer"); s != SLUICE_OK) return s;
      self->timers_.insert(std::make_tuple(d, ts, self->current_key_));
      return SLUICE_OK;
    };
    a.delete_timer = [](sluice_host* h, sluice_timer_domain d, int64_t ts) -> sluice_status {
      Harness* self = Self(h);
      if (sluice_status s = self->NeedKey("delete_timer"); s != SLUICE_OK) return s;
      self->timers_.erase(std::make_tuple(d, ts, self->current_key_));
      return SLUICE_OK;
    };
    a.register_counter = [](sluice_host* h, const char* name, size_t n, sluice_counter** c) -> sluice_status {
      Harness* self = Self(h);
      auto& slot = self->counters_[std::string(name, n)];
      if (slot == nullptr) slot = std::make_unique<uint64_t>(0);
      *c = reinterpret_cast<sluice_counter*>(slot.get());
      return SLUICE_OK;
    };
    a.counter_add = [](sluice_host*, sluice_counter* c, uint64_t n) { *reinterpret_cast<uint64_t*>(c) += n; };
    a.input_nulls = [](sluice_host* h, const uint8_t** nulls) -> sluice_status {
      Harness* self = Self(h);
      if (!self->in_process_) return self->Fail(Status::FailedPrecondition("input_nulls outside a process call"));
      *nulls = self->batch_nulls_.empty() ? nullptr : self->batch_nulls_.data();
      return SLUICE_OK;
    };
    a.log = [](sluice_host* h, sluice_log_level level, const char* m, size_t n) {
      static const char* kLevels[] = {"DEBUG", "INFO", "WARN", "ERROR"};
      const char* l = level >= 0 && level <= 3 ? kLevels[level] : "INFO";
      Self(h)->logs_.push_back(std::string(l) + ": " + std::string(m, n));
    };
    return a;
  }

  sluice_plugin_init_v1_fn init_;
  HarnessOptions o_;
  const sluice_operator_type* type_ = nullptr;
  sluice_operator op_{};
  sluice_host_api api_{};
  sluice_open_info info_{};
  std::string task_name_ = "test/op#0";
  bool opened_ = false;
  bool closed_ = false;
  bool in_open_ = false;
  bool in_process_ = false;
  int batch_input_ = 0;
  bool same_schema_[2] = {false, false};
  Status host_error_;

  std::vector<sluice_field> input_fields_;
  std::vector<sluice_field> key_fields_;
  std::vector<sluice_field> output_fields_;
  std::vector<TestField> output_names_;
  std::vector<int32_t> key_index_;
  std::vector<int32_t> key_index2_;
  std::vector<TestField> key_test_fields_;
  std::vector<sluice_field> input2_fields_;
  sluice_schema input_schemas_[2] = {{nullptr, 0}, {nullptr, 0}};
  sluice_schema input_schema_{nullptr, 0};
  sluice_schema key_schema_{nullptr, 0};
  sluice_schema output_schema_{nullptr, 0};
  std::vector<sluice_value> output_values_;
  std::vector<uint8_t> output_nulls_;
  std::vector<uint8_t> all_nullable_;
  const uint8_t* nullable_ptrs_[2] = {nullptr, nullptr};
  std::vector<sluice_string> restored_;

  std::vector<std::vector<sluice_value>> batch_rows_;
  std::vector<sluice_record> batch_;
  std::vector<uint8_t> batch_nulls_;  // one byte per field per row, when a row has a null

  int64_t watermark_ = INT64_MIN;
  int64_t clock_ms_;
  Key current_key_;
  bool has_key_ = false;
  Row key_values_;
  std::vector<sluice_value> key_view_;
  std::map<Key, Row> key_store_;
  std::map<std::string, int32_t> state_ids_;
  std::map<int32_t, StateInfo> states_;
  std::map<std::pair<Key, int32_t>, Stored> values_;
  std::map<std::pair<Key, int32_t>, std::vector<Stored>> lists_;
  std::map<std::pair<Key, int32_t>, std::map<std::string, Stored>> maps_;
  std::vector<sluice_string> views_;
  std::set<std::tuple<sluice_timer_domain, int64_t, Key>> timers_;
  std::map<std::string, std::unique_ptr<uint64_t>> counters_;

  std::vector<std::string> output_;
  std::vector<int64_t> watermarks_;
  std::vector<std::string> logs_;
};

/// Drives one aggregate function of a plugin (ABI 1.2) through the C ABI, as the `window` and
/// `aggregate` operators do: accumulators are byte strings the test holds (one per window,
/// say), so merging and "restoring" are the test's to arrange.
///
///   AggregateTester p90(sluice_plugin_init_v1, "p90", FieldType::kInt64);
///   std::string acc;
///   p90.Create(&acc); p90.Add(&acc, 7); ...
///   std::string json; p90.Result(acc, &json);   // "7", or "null"
class AggregateTester {
 public:
  AggregateTester(sluice_plugin_init_v1_fn init, const std::string& name, FieldType input) : input_(input) {
    Harness::Sink err;
    const sluice_plugin* p = init(&err.abi);
    if (p == nullptr) {
      error_ = "the entry point failed: " + err.message;
      return;
    }
    if (!SLUICE_HAS_FIELD(p, sluice_plugin, num_aggregate_functions)) {
      error_ = "the plugin has no aggregate functions (built before ABI 1.2)";
      return;
    }
    for (size_t i = 0; i < p->num_aggregate_functions; ++i) {
      if (View(p->aggregate_functions[i]->name) == name) fn_ = p->aggregate_functions[i];
    }
    if (fn_ == nullptr) error_ = "the plugin has no aggregate function '" + name + "'";
  }

  /// The result type for this input type (the function's refusal as kInvalidArgument).
  Status ResultType(FieldType* out) {
    if (fn_ == nullptr) return Status::NotFound(error_);
    sluice_field_type t = -1;
    SLUICE_SDK_RETURN_IF_ERROR(Call([&](sluice_error* e) {
      return fn_->result_type(fn_->type_data, static_cast<sluice_field_type>(input_), &t, e);
    }));
    *out = static_cast<FieldType>(t);
    return Status::Ok();
  }
  Status Create(std::string* acc) {
    acc->clear();
    return WithAcc(acc, [&](sluice_accumulator* a, sluice_error* e) {
      return fn_->create(fn_->type_data, static_cast<sluice_field_type>(input_), a, e);
    });
  }
  /// Adds `v` (converted to the input type).
  Status Add(std::string* acc, const TestValue& v) {
    sluice_value value{0, 0, {nullptr, 0}};
    switch (input_) {
      case FieldType::kDouble: value.d = v.d(); break;
      case FieldType::kString: value.s = sluice_string{v.s().data(), v.s().size()}; break;
      default: value.i = v.i(); break;
    }
    return WithAcc(acc, [&](sluice_accumulator* a, sluice_error* e) {
      return fn_->add(fn_->type_data, static_cast<sluice_field_type>(input_), a, &value, e);
    });
  }
  Status Merge(std::string* acc, const std::string& other) {
    return WithAcc(acc, [&](sluice_accumulator* a, sluice_error* e) {
      return fn_->merge(fn_->type_data, static_cast<sluice_field_type>(input_), a,
                        sluice_string{other.data(), other.size()}, e);
    });
  }
  /// The result as JSON ("null" for a null result).
  Status Result(const std::string& acc, std::string* json) {
    FieldType type = FieldType::kInt64;
    SLUICE_SDK_RETURN_IF_ERROR(ResultType(&type));
    sluice_value v{0, 0, {nullptr, 0}};
    int32_t is_null = 0;
    SLUICE_SDK_RETURN_IF_ERROR(Call([&](sluice_error* e) {
      return fn_->get_result(fn_->type_data, static_cast<sluice_field_type>(input_),
                             sluice_string{acc.data(), acc.size()}, &v, &is_null, e);
    }));
    json->clear();
    if (is_null != 0) {
      json->assign("null");
    } else {
      Harness::AppendValue(type, v, json);
    }
    return Status::Ok();
  }

 private:
  template <typename Fn>
  Status Call(Fn&& fn) {
    Harness::Sink err;
    sluice_status s = fn(&err.abi);
    return s == SLUICE_OK ? Status::Ok() : Status(static_cast<StatusCode>(s), err.message);
  }
  template <typename Fn>
  Status WithAcc(std::string* acc, Fn&& fn) {
    if (fn_ == nullptr) return Status::NotFound(error_);
    struct Acc {
      sluice_accumulator abi;
      std::string* str;
    } a{{sizeof(sluice_accumulator), nullptr, acc->data(), acc->size(), nullptr}, acc};
    a.abi.host_data = &a;
    a.abi.resize = [](sluice_accumulator* self, size_t n) -> sluice_status {
      auto* me = static_cast<Acc*>(self->host_data);
      me->str->resize(n);
      self->data = me->str->data();
      self->size = n;
      return SLUICE_OK;
    };
    return Call([&](sluice_error* e) { return fn(&a.abi, e); });
  }

  FieldType input_;
  const sluice_aggregate_function* fn_ = nullptr;
  std::string error_;
};

}  // namespace sluice::sdk::testing
