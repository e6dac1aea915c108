// Operators of the in-tree test plugin (libsdk_test_plugin.so), also compiled into sdk_test
// so the fake host (sluice/testing.h) can run them directly, and the plugin side of
// bench/plugin_benchmark (positive_filter and keyed_count against the built-in filter and
// aggregate count). Also compiled against the frozen SDK 1.0 and 1.1 headers
// (sdk/tests/sdk_1_0/, sdk_1_1/) as libsdk_test_plugin_1_0.so and libsdk_test_plugin_1_1.so,
// without what needs a later ABI, to check that 1.0 and 1.1 plugins keep working.
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <string>

#include "sluice/sdk.h"

namespace {

using sluice::sdk::Context;
using sluice::sdk::Field;
using sluice::sdk::FieldType;
using sluice::sdk::Options;
using sluice::sdk::Record;
using sluice::sdk::Schema;
using sluice::sdk::SchemaBuilder;
using sluice::sdk::Status;
using sluice::sdk::TimerDomain;

// Keeps records whose int64 `field` is greater than `min` (default 0).
class PositiveFilter : public sluice::sdk::Operator {
 public:
  explicit PositiveFilter(const Options& o) {
    (void)o.GetString("field", &field_name_);
    (void)o.GetInt("min", &min_, 0);
  }
  static Status Validate(const Options& o) {
    SLUICE_SDK_RETURN_IF_ERROR(o.CheckKnownKeys({"field", "min"}));
    std::string field;
    SLUICE_SDK_RETURN_IF_ERROR(o.GetString("field", &field));
    int64_t min = 0;
    return o.GetInt("min", &min, 0);
  }
  Status Open(Context& ctx) override {
    SLUICE_SDK_RETURN_IF_ERROR(ctx.InputField(field_name_, FieldType::kInt64, &field_));
    return ctx.RegisterCounter("kept", &kept_);
  }
  Status Process(const Record& in, Context& ctx) override {
    if (in.Int(field_) <= min_) return Status::Ok();
    kept_.Add();
    return ctx.Forward(in);
  }

 private:
  std::string field_name_;
  int64_t min_ = 0;
  Field field_;
  sluice::sdk::Counter kept_;
};

// Counts records per key (a string or int64 field `key_field`). Output: the key field and
// `count`. Without `timer`, emits
// the running count per record; with `timer: event|processing` and `at`, registers a timer at
// `at` (event time) or now + `at` (processing time) and emits the count when it fires.
class KeyedCount : public sluice::sdk::Operator {
 public:
  explicit KeyedCount(const Options& o) {
    (void)o.GetString("key_field", &key_name_);
    std::string timer;
    (void)o.GetString("timer", &timer, "");
    event_timer_ = timer == "event";
    processing_timer_ = timer == "processing";
    (void)o.GetInt("at", &at_, 0);
  }
  static Status Validate(const Options& o) {
    SLUICE_SDK_RETURN_IF_ERROR(o.CheckKnownKeys({"key_field", "timer", "at"}));
    std::string s;
    SLUICE_SDK_RETURN_IF_ERROR(o.GetString("key_field", &s));
    SLUICE_SDK_RETURN_IF_ERROR(o.GetString("timer", &s, ""));
    if (!s.empty() && s != "event" && s != "processing") {
      return Status::InvalidArgument("option 'timer' must be event or processing, got '" + s + "'");
    }
    int64_t at = 0;
    return o.GetInt("at", &at, 0);
  }
  static Status OutputSchema(const Schema& in, const Options& o, SchemaBuilder& out) {
    std::string key;
    SLUICE_SDK_RETURN_IF_ERROR(o.GetString("key_field", &key));
    int32_t i = in.IndexOf(key);
    if (i < 0) return Status::InvalidArgument("key_field '" + key + "' is not an input field");
    out.Add(key, in.type(i));
    out.Add("count", FieldType::kInt64);
    return Status::Ok();
  }
  Status Open(Context& ctx) override {
    const int32_t i = ctx.InputSchema().IndexOf(key_name_);
    if (i < 0) return Status::InvalidArgument("key_field '" + key_name_ + "' is not an input field");
    string_key_ = ctx.InputSchema().type(i) == FieldType::kString;
    const FieldType type = string_key_ ? FieldType::kString : FieldType::kInt64;
    SLUICE_SDK_RETURN_IF_ERROR(ctx.KeyField(key_name_, type, &key_));
    SLUICE_SDK_RETURN_IF_ERROR(ctx.OutputField(key_name_, type, &out_key_));
    SLUICE_SDK_RETURN_IF_ERROR(ctx.OutputField("count", FieldType::kInt64, &out_count_));
    return ctx.RegisterValueState("count", &count_);
  }
  Status Process(const Record& in, Context& ctx) override {
    int64_t n = 0;
    bool found = false;
    SLUICE_SDK_RETURN_IF_ERROR(count_.GetInt64(&n, &found));
    SLUICE_SDK_RETURN_IF_ERROR(count_.PutInt64(n + 1));
    if (event_timer_) return ctx.RegisterTimer(TimerDomain::kEventTime, at_);
    if (processing_timer_) {
      return ctx.RegisterTimer(TimerDomain::kProcessingTime, ctx.ProcessingTimeMs() + at_);
    }
    return EmitCount(n + 1, ctx);
  }
  Status OnTimer(TimerDomain domain, int64_t ts, Context& ctx) override {
    int64_t n = 0;
    bool found = false;
    SLUICE_SDK_RETURN_IF_ERROR(count_.GetInt64(&n, &found));
    SLUICE_SDK_RETURN_IF_ERROR(count_.Clear());
    return EmitCount(n, ctx);
  }

 private:
  Status EmitCount(int64_t n, Context& ctx) {
    if (string_key_) {
      ctx.Out().SetString(out_key_, ctx.CurrentKey().String(key_));
    } else {
      ctx.Out().SetInt(out_key_, ctx.CurrentKey().Int(key_));
    }
    ctx.Out().SetInt(out_count_, n);
    return ctx.Emit();
  }
  std::string key_name_;
  bool event_timer_ = false;
  bool processing_timer_ = false;
  int64_t at_ = 0;
  bool string_key_ = true;
  Field key_;
  Field out_key_;
  Field out_count_;
  sluice::sdk::ValueState count_;
};

// Keyed: emits a record the first time its `value` is seen for its key (map state with an
// optional `ttl_ms`), with `seen` = how many records the key had so far (list state).
class Distinct : public sluice::sdk::Operator {
 public:
  explicit Distinct(const Options& o) { (void)o.GetInt("ttl_ms", &ttl_ms_, 0); }
  static Status OutputSchema(const Schema& in, const Options&, SchemaBuilder& out) {
    out.AddAll(in);
    out.Add("seen", FieldType::kInt64);
    return Status::Ok();
  }
  Status Open(Context& ctx) override {
    SLUICE_SDK_RETURN_IF_ERROR(ctx.InputField("value", FieldType::kString, &value_));
    SLUICE_SDK_RETURN_IF_ERROR(ctx.OutputField("seen", FieldType::kInt64, &seen_));
    inputs_ = ctx.InputSchema().size();
    SLUICE_SDK_RETURN_IF_ERROR(ctx.RegisterMapState("values", &values_, ttl_ms_));
    return ctx.RegisterListState("all", &all_);
  }
  Status Process(const Record& in, Context& ctx) override {
    SLUICE_SDK_RETURN_IF_ERROR(all_.Append(in.String(value_)));
    std::string_view v;
    bool found = false;
    SLUICE_SDK_RETURN_IF_ERROR(values_.Get(in.String(value_), &v, &found));
    if (found) return Status::Ok();
    SLUICE_SDK_RETURN_IF_ERROR(values_.Put(in.String(value_), "1"));
    std::vector<std::string_view> all;
    SLUICE_SDK_RETURN_IF_ERROR(all_.Get(&all));
    ctx.Out().CopyPrefix(in, inputs_);
    ctx.Out().SetInt(seen_, static_cast<int64_t>(all.size()));
    return ctx.Emit();
  }

 private:
  int64_t ttl_ms_ = 0;
  size_t inputs_ = 0;
  Field value_;
  Field seen_;
  sluice::sdk::MapState values_;
  sluice::sdk::ListState all_;
};

// Throws from Process.
class Thrower : public sluice::sdk::Operator {
 public:
  Status Process(const Record&, Context&) override { throw std::runtime_error("boom"); }
};

// Returns an error status from Process.
class Refuser : public sluice::sdk::Operator {
 public:
  Status Process(const Record&, Context&) override {
    return Status::InvalidArgument("record refused by policy");
  }
};

// Passes records on unchanged, and fails on its `at`-th record (counted per instance) while the
// file `marker` holds a number below `times` (absent: 0), adding one to it first: the first
// `times` attempts of a job fail, the next ones run through. `how`: "throw" (a
// std::runtime_error) or "error" (an unavailable status); the message is
// "injected failure at record <at>".
class FailAt : public sluice::sdk::Operator {
 public:
  explicit FailAt(const Options& o) {
    (void)o.GetInt("at", &at_);
    (void)o.GetInt("times", &times_, 1);
    (void)o.GetString("marker", &marker_);
    (void)o.GetString("how", &how_, "throw");
  }
  static Status Validate(const Options& o) {
    SLUICE_SDK_RETURN_IF_ERROR(o.CheckKnownKeys({"at", "times", "marker", "how"}));
    int64_t n = 0;
    SLUICE_SDK_RETURN_IF_ERROR(o.GetInt("at", &n));
    SLUICE_SDK_RETURN_IF_ERROR(o.GetInt("times", &n, 1));
    std::string s;
    SLUICE_SDK_RETURN_IF_ERROR(o.GetString("marker", &s));
    SLUICE_SDK_RETURN_IF_ERROR(o.GetString("how", &s, "throw"));
    if (s != "throw" && s != "error") return Status::InvalidArgument("how must be throw or error, not " + s);
    return Status::Ok();
  }
  Status Process(const Record& in, Context& ctx) override {
    if (++seen_ == at_) {
      int64_t failures = 0;
      std::ifstream(marker_) >> failures;
      if (failures < times_) {
        std::ofstream(marker_, std::ios::trunc) << failures + 1;
        const std::string what = "injected failure at record " + std::to_string(at_);
        if (how_ == "throw") throw std::runtime_error(what);
        return Status::Unavailable(what);
      }
    }
    return ctx.Forward(in);
  }

 private:
  int64_t at_ = 0;
  int64_t times_ = 1;
  std::string marker_;
  std::string how_;
  int64_t seen_ = 0;
};

#if SLUICE_ABI_MINOR >= 1
// Keyed, two inputs: input 1 (key, `tier` string) sets the key's tier; input 0 records come
// out with `tier` appended (the key's latest tier, or "" when none came yet) and `input` = the
// index the record arrived on (always 0: checks the index reaches the operator).
class TierJoin : public sluice::sdk::TwoInputOperator {
 public:
  static Status OutputSchema(const Schema& in0, const Schema& in1, const Options&, SchemaBuilder& out) {
    int32_t tier = in1.IndexOf("tier");
    if (tier < 0 || in1.type(tier) != FieldType::kString) {
      return Status::InvalidArgument("input 1 needs a string field 'tier'");
    }
    out.AddAll(in0);
    out.Add("tier", FieldType::kString);
    out.Add("input", FieldType::kInt64);
    return Status::Ok();
  }
  Status Open(Context& ctx) override {
    if (ctx.NumInputs() != 2) return Status::FailedPrecondition("expected 2 inputs");
    SLUICE_SDK_RETURN_IF_ERROR(ctx.InputField(1, "tier", FieldType::kString, &tier_in_));
    SLUICE_SDK_RETURN_IF_ERROR(ctx.OutputField("tier", FieldType::kString, &tier_out_));
    SLUICE_SDK_RETURN_IF_ERROR(ctx.OutputField("input", FieldType::kInt64, &input_out_));
    width_ = ctx.InputSchema(0).size();
    return ctx.RegisterValueState("tier", &tier_);
  }
  Status Process(int input, const Record& in, Context& ctx) override {
    if (input == 1) return tier_.Put(in.String(tier_in_));
    std::string_view tier;
    bool found = false;
    SLUICE_SDK_RETURN_IF_ERROR(tier_.Get(&tier, &found));
    ctx.Out().CopyPrefix(in, width_);
    ctx.Out().SetString(tier_out_, found ? tier : std::string_view());
    ctx.Out().SetInt(input_out_, input);
    return ctx.Emit();
  }

 private:
  Field tier_in_;
  Field tier_out_;
  Field input_out_;
  size_t width_ = 0;
  sluice::sdk::ValueState tier_;
};

// Not keyed, two inputs: forwards every record unchanged (Forward checks that the record's
// input has the output schema).
class ForwardBoth : public sluice::sdk::TwoInputOperator {
 public:
  Status Process(int input, const Record& in, Context& ctx) override { return ctx.Forward(in); }
};
#endif  // SLUICE_ABI_MINOR >= 1

#if SLUICE_ABI_MINOR >= 2
// Nulls (ABI 1.2): reads int64 `amount` and emits `value` (nullable: null when amount is null
// or negative, else amount) and `was_null` (whether amount was null).
class NullIfNegative : public sluice::sdk::Operator {
 public:
  static Status OutputSchema(const Schema&, const Options&, SchemaBuilder& out) {
    out.AddNullable("value", FieldType::kInt64);
    out.Add("was_null", FieldType::kBool);
    return Status::Ok();
  }
  Status Open(Context& ctx) override {
    SLUICE_SDK_RETURN_IF_ERROR(ctx.InputField("amount", FieldType::kInt64, &amount_));
    SLUICE_SDK_RETURN_IF_ERROR(ctx.OutputField("value", FieldType::kInt64, &value_));
    return ctx.OutputField("was_null", FieldType::kBool, &was_null_);
  }
  Status Process(const Record& in, Context& ctx) override {
    if (in.IsNull(amount_) || in.Int(amount_) < 0) {
      SLUICE_SDK_RETURN_IF_ERROR(ctx.Out().SetNull(value_));
    } else {
      ctx.Out().SetInt(value_, in.Int(amount_));
    }
    ctx.Out().SetBool(was_null_, in.IsNull(amount_));
    return ctx.Emit();
  }

 private:
  Field amount_;
  Field value_;
  Field was_null_;
};

// Emits null into every field of its input schema: refused by the host for NOT NULL fields.
class NullEverything : public sluice::sdk::Operator {
 public:
  Status Process(const Record&, Context& ctx) override {
    for (size_t i = 0; i < ctx.OutputSchema().size(); ++i) {
      SLUICE_SDK_RETURN_IF_ERROR(ctx.Out().SetNull(Field{static_cast<int32_t>(i), ctx.OutputSchema().type(i)}));
    }
    return ctx.Emit();
  }
};

// An aggregate function: the sum of squares of an int64 or double field (same type out),
// accumulator version 3: [8 bytes: the sum]; refuses other types.
class SumOfSquares : public sluice::sdk::AggregateFunction {
 public:
  Status ResultType(FieldType in, FieldType* out) const override {
    if (in != FieldType::kInt64 && in != FieldType::kDouble) {
      return Status::InvalidArgument(std::string("sum_sq needs int64 or double, not ") + sluice::sdk::FieldTypeName(in));
    }
    *out = in;
    return Status::Ok();
  }
  Status Create(FieldType, sluice::sdk::Accumulator& acc) const override { return acc.Resize(8); }
  Status Add(FieldType in, sluice::sdk::Accumulator& acc, const sluice::sdk::AggregateValue& v) const override {
    if (acc.size() != 8) return Status::InvalidArgument("bad accumulator");
    if (in == FieldType::kDouble) {
      double sum;
      std::memcpy(&sum, acc.data(), 8);
      sum += v.Double() * v.Double();
      std::memcpy(acc.data(), &sum, 8);
    } else {
      int64_t sum;
      std::memcpy(&sum, acc.data(), 8);
      sum += v.Int() * v.Int();
      std::memcpy(acc.data(), &sum, 8);
    }
    return Status::Ok();
  }
  Status Merge(FieldType in, sluice::sdk::Accumulator& acc, std::string_view other) const override {
    if (acc.size() != 8 || other.size() != 8) return Status::InvalidArgument("bad accumulator");
    if (in == FieldType::kDouble) {
      double a, b;
      std::memcpy(&a, acc.data(), 8);
      std::memcpy(&b, other.data(), 8);
      a += b;
      std::memcpy(acc.data(), &a, 8);
    } else {
      int64_t a, b;
      std::memcpy(&a, acc.data(), 8);
      std::memcpy(&b, other.data(), 8);
      a += b;
      std::memcpy(acc.data(), &a, 8);
    }
    return Status::Ok();
  }
  Status GetResult(FieldType in, std::string_view acc, sluice::sdk::AggregateResult& out) const override {
    if (acc.size() != 8) return Status::InvalidArgument("bad accumulator");
    if (in == FieldType::kDouble) {
      double d;
      std::memcpy(&d, acc.data(), 8);
      out.SetDouble(d);
    } else {
      int64_t i;
      std::memcpy(&i, acc.data(), 8);
      out.SetInt(i);
    }
    return Status::Ok();
  }
};

// An aggregate function that throws in Add (the exception becomes an error naming it).
class ThrowingAggregate : public SumOfSquares {
 public:
  Status Add(FieldType, sluice::sdk::Accumulator&, const sluice::sdk::AggregateValue&) const override {
    throw std::runtime_error("add exploded");
  }
};
#endif  // SLUICE_ABI_MINOR >= 2

}  // namespace

SLUICE_PLUGIN("sdk-test", "0.1.0", plugin) {
  auto filter = plugin.AddOperator<PositiveFilter>("positive_filter")
                    .Description("keeps records whose field is above min")
                    .Validate(&PositiveFilter::Validate);
#if SLUICE_ABI_MINOR >= 1
  filter.RequiredOption("field", "string", "the int64 field to test")
      .Option("min", "int64", "0", "records pass when the field is above it");
#else
  (void)filter;  // SDK 1.0 cannot describe options
#endif
  plugin.AddOperator<KeyedCount>("keyed_count")
      .Keyed()
      .Validate(&KeyedCount::Validate)
      .OutputSchema(&KeyedCount::OutputSchema);
  plugin.AddOperator<Distinct>("distinct").Keyed().OutputSchema(&Distinct::OutputSchema);
  plugin.AddOperator<Thrower>("thrower");
  plugin.AddOperator<Refuser>("refuser");
  plugin.AddOperator<FailAt>("fail_at").Validate(&FailAt::Validate);
#if SLUICE_ABI_MINOR >= 1
  plugin.AddOperator<TierJoin>("tier_join").Keyed().OutputSchema(&TierJoin::OutputSchema);
  plugin.AddOperator<ForwardBoth>("forward_both");
#endif
#if SLUICE_ABI_MINOR >= 2
  plugin.AddOperator<NullIfNegative>("null_if_negative").OutputSchema(&NullIfNegative::OutputSchema);
  plugin.AddOperator<NullEverything>("null_everything");
  plugin.AddAggregateFunction<SumOfSquares>("sum_sq").Description("sum of squares").AccumulatorVersion(3);
  plugin.AddAggregateFunction<ThrowingAggregate>("throwing_agg");
#endif
}
