// Operators of the benchmark plugin (libbench_plugin.so) used by plugin_benchmark: the same work
// as the built-in `filter` and `aggregate` (count) it is compared with, through the plugin ABI.
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

// Keeps records whose int64 `field` is at least `min` (as `where: "<field> >= <min>"`).
class BenchFilter : public sluice::sdk::Operator {
 public:
  explicit BenchFilter(const Options& o) {
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
  Status Open(Context& ctx) override { return ctx.InputField(field_name_, FieldType::kInt64, &field_); }
  Status Process(const Record& in, Context& ctx) override {
    if (in.Int(field_) < min_) return Status::Ok();
    return ctx.Forward(in);
  }

 private:
  std::string field_name_;
  int64_t min_ = 0;
  Field field_;
};

// Rolling count per key (int64 key field `key_field`) in keyed value state; emits the key and
// the updated `count` for every record (as `aggregate` with `emit: updates` and fn count).
class BenchKeyedCount : public sluice::sdk::Operator {
 public:
  explicit BenchKeyedCount(const Options& o) { (void)o.GetString("key_field", &key_name_); }
  static Status Validate(const Options& o) {
    SLUICE_SDK_RETURN_IF_ERROR(o.CheckKnownKeys({"key_field"}));
    std::string s;
    return o.GetString("key_field", &s);
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
    SLUICE_SDK_RETURN_IF_ERROR(ctx.KeyField(key_name_, FieldType::kInt64, &key_));
    SLUICE_SDK_RETURN_IF_ERROR(ctx.OutputField(key_name_, FieldType::kInt64, &out_key_));
    SLUICE_SDK_RETURN_IF_ERROR(ctx.OutputField("count", FieldType::kInt64, &out_count_));
    return ctx.RegisterValueState("count", &count_);
  }
  Status Process(const Record&, Context& ctx) override {
    int64_t n = 0;
    bool found = false;
    SLUICE_SDK_RETURN_IF_ERROR(count_.GetInt64(&n, &found));
    SLUICE_SDK_RETURN_IF_ERROR(count_.PutInt64(n + 1));
    ctx.Out().SetInt(out_key_, ctx.CurrentKey().Int(key_));
    ctx.Out().SetInt(out_count_, n + 1);
    return ctx.Emit();
  }

 private:
  std::string key_name_;
  Field key_;
  Field out_key_;
  Field out_count_;
  sluice::sdk::ValueState count_;
};

}  // namespace

SLUICE_PLUGIN("bench_plugin", "1.0.0", plugin) {
  plugin.AddOperator<BenchFilter>("bench_filter")
      .Description("keeps records whose int64 field is at least min")
      .Validate(&BenchFilter::Validate)
      .RequiredOption("field", "string", "int64 field to compare")
      .Option("min", "int64", "0", "records with field >= min are kept");
  plugin.AddOperator<BenchKeyedCount>("bench_keyed_count")
      .Keyed()
      .Description("rolling count per int64 key in keyed value state")
      .Validate(&BenchKeyedCount::Validate)
      .OutputSchema(&BenchKeyedCount::OutputSchema)
      .RequiredOption("key_field", "string", "the int64 key field (also the output's)");
}
