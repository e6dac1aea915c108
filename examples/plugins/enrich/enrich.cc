// enrich: a keyed two-input operator plugin (needs a Sluice host of plugin ABI 1.1).
// Input 1 is a changelog of reference data (e.g. each user's current tier); input 0 carries
// events. Each event comes out with the latest value of `field` that input 1 gave for its key,
// appended as `as` (Flink's KeyedCoProcessFunction "enrich from a side stream"). Keyed state
// is written by input 1 and read by input 0; both inputs are keyed by the job's key for each.
//
//   - id: with_tier
//     type: enrich
//     inputs: [payments, tiers]   # input 0: events, input 1: reference data
//     key: [user]                 # per input, once the engine runs two-input operators
//     field: tier                 # the field of input 1 to attach
//     as: tier                    # its name in the output (default: field)
//     on_missing: default         # default (zero value / "" or `default`) | drop
//     default: none               # for a string field
//     ttl_ms: 0                   # optional: the stored value expires (processing time)
//
// Output: input 0's fields, then `as` (the type of input 1's `field`). Counters: `enriched`,
// `missing`.
#include <cstring>
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

class Enrich : public sluice::sdk::TwoInputOperator {
 public:
  explicit Enrich(const Options& o) {
    (void)o.GetString("field", &field_name_);
    (void)o.GetString("as", &as_, field_name_);
    std::string on_missing;
    (void)o.GetString("on_missing", &on_missing, "default");
    drop_missing_ = on_missing == "drop";
    (void)o.GetString("default", &default_, "");
    (void)o.GetInt("ttl_ms", &ttl_ms_, 0);
  }

  static Status Validate(const Options& o) {
    SLUICE_SDK_RETURN_IF_ERROR(
        o.CheckKnownKeys({"field", "as", "on_missing", "default", "ttl_ms"}));
    std::string s;
    SLUICE_SDK_RETURN_IF_ERROR(o.GetString("field", &s));
    SLUICE_SDK_RETURN_IF_ERROR(o.GetString("as", &s, ""));
    SLUICE_SDK_RETURN_IF_ERROR(o.GetString("default", &s, ""));
    SLUICE_SDK_RETURN_IF_ERROR(o.GetString("on_missing", &s, "default"));
    if (s != "default" && s != "drop") {
      return Status::InvalidArgument("option 'on_missing' must be default or drop, got '" + s +
                                     "'");
    }
    int64_t ttl = 0;
    SLUICE_SDK_RETURN_IF_ERROR(o.GetInt("ttl_ms", &ttl, 0));
    if (ttl < 0) return Status::InvalidArgument("option 'ttl_ms' must be 0 (no TTL) or positive");
    return Status::Ok();
  }

  static Status OutputSchema(const Schema& events, const Schema& reference, const Options& o,
                             SchemaBuilder& out) {
    std::string field, as;
    SLUICE_SDK_RETURN_IF_ERROR(o.GetString("field", &field));
    SLUICE_SDK_RETURN_IF_ERROR(o.GetString("as", &as, field));
    int32_t i = reference.IndexOf(field);
    if (i < 0) return Status::InvalidArgument("input 1 has no field '" + field + "'");
    if (events.IndexOf(as) >= 0) {
      return Status::InvalidArgument("input 0 already has a field '" + as +
                                     "' (choose another name with 'as')");
    }
    if (o.Has("default") && reference.type(i) != FieldType::kString) {
      return Status::InvalidArgument("option 'default' is for a string field; '" + field + "' is " +
                                     sluice::sdk::FieldTypeName(reference.type(i)));
    }
    out.AddAll(events);
    out.Add(as, reference.type(i));
    return Status::Ok();
  }

  Status Open(Context& ctx) override {
    const Schema& reference = ctx.InputSchema(1);
    int32_t i = reference.IndexOf(field_name_);
    if (i < 0) return Status::NotFound("input 1 has no field '" + field_name_ + "'");
    type_ = reference.type(i);
    SLUICE_SDK_RETURN_IF_ERROR(ctx.InputField(1, field_name_, type_, &field_));
    SLUICE_SDK_RETURN_IF_ERROR(ctx.OutputField(as_, type_, &out_));
    width_ = ctx.InputSchema(0).size();
    SLUICE_SDK_RETURN_IF_ERROR(ctx.RegisterValueState("latest", &latest_, ttl_ms_));
    SLUICE_SDK_RETURN_IF_ERROR(ctx.RegisterCounter("enriched", &enriched_));
    return ctx.RegisterCounter("missing", &missing_);
  }

  Status Process(int input, const Record& in, Context& ctx) override {
    if (input == 1) return Store(in);
    std::string_view stored;
    bool found = false;
    SLUICE_SDK_RETURN_IF_ERROR(latest_.Get(&stored, &found));
    if (!found) {
      missing_.Add();
      if (drop_missing_) return Status::Ok();
    } else {
      enriched_.Add();
    }
    sluice::sdk::OutputRecord& out = ctx.Out();
    out.CopyPrefix(in, width_);
    switch (type_) {
      case FieldType::kString:
        out.SetString(out_, found ? stored : std::string_view(default_));
        break;
      case FieldType::kDouble:
        out.SetDouble(out_, found ? Decode<double>(stored) : 0.0);
        break;
      default:
        out.SetInt(out_, found ? Decode<int64_t>(stored) : 0);
        break;  // int64, bool, timestamp
    }
    return ctx.Emit();
  }

 private:
  // Keeps input 1's value of `field` as the key's latest (strings as bytes, numbers as 8 bytes).
  Status Store(const Record& in) {
    switch (type_) {
      case FieldType::kString:
        return latest_.Put(in.String(field_));
      case FieldType::kDouble:
        return latest_.Put(Encode(in.Double(field_)));
      default:
        return latest_.Put(Encode(in.Int(field_)));
    }
  }
  template <typename T>
  std::string_view Encode(T v) {
    std::memcpy(buf_, &v, sizeof(T));  // state stays on this machine's byte order: fine for a
    return std::string_view(buf_, sizeof(T));  // plugin whose workers share an architecture
  }
  template <typename T>
  static T Decode(std::string_view s) {
    T v{};
    if (s.size() == sizeof(T)) std::memcpy(&v, s.data(), sizeof(T));
    return v;
  }

  std::string field_name_;
  std::string as_;
  std::string default_;
  bool drop_missing_ = false;
  int64_t ttl_ms_ = 0;
  FieldType type_ = FieldType::kString;
  Field field_;
  Field out_;
  size_t width_ = 0;
  char buf_[8] = {};
  sluice::sdk::ValueState latest_;
  sluice::sdk::Counter enriched_;
  sluice::sdk::Counter missing_;
};

}  // namespace

SLUICE_PLUGIN("enrich", "1.0.0", plugin) {
  plugin.AddOperator<Enrich>("enrich")
      .Keyed()
      .Description("appends the latest value per key from input 1 to the events of input 0")
      .Validate(&Enrich::Validate)
      .OutputSchema(&Enrich::OutputSchema)
      .RequiredOption("field", "string", "the field of input 1 to attach")
      .Option("as", "string", "the value of field", "its name in the output")
      .Option("on_missing", "string", "default",
              "events of a key input 1 has not given: `default` keeps them (with `default` or 0), "
              "`drop` drops them")
      .Option("default", "string", "",
              "the value attached to events of a key input 1 has not given (strings)")
      .Option("ttl_ms", "int64", "0",
              "the stored value expires this long after it was written; 0: never");
}
