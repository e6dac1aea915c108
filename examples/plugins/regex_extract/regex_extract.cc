// regex_extract: a stateless operator plugin. Matches string field `field` against `pattern`
// and appends capture group `group` (default 1) as string field `as`; records that do not
// match get `default` (or are dropped with `drop_unmatched: true`).
//
//   - id: domain
//     type: regex_extract
//     field: email
//     pattern: "@(.+)$"
//     as: domain
#include <regex>
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

class RegexExtract : public sluice::sdk::Operator {
 public:
  explicit RegexExtract(const Options& o) {
    std::string pattern;
    (void)o.GetString("field", &field_name_);
    (void)o.GetString("pattern", &pattern);
    (void)o.GetString("as", &as_);
    (void)o.GetInt("group", &group_, 1);
    (void)o.GetString("default", &default_, "");
    (void)o.GetBool("drop_unmatched", &drop_, false);
    regex_ = std::regex(pattern);  // validated already: cannot throw here
  }

  static Status Validate(const Options& o) {
    SLUICE_SDK_RETURN_IF_ERROR(o.CheckKnownKeys({"field", "pattern", "as", "group", "default", "drop_unmatched"}));
    std::string s;
    SLUICE_SDK_RETURN_IF_ERROR(o.GetString("field", &s));
    SLUICE_SDK_RETURN_IF_ERROR(o.GetString("as", &s));
    SLUICE_SDK_RETURN_IF_ERROR(o.GetString("default", &s, ""));
    bool b = false;
    SLUICE_SDK_RETURN_IF_ERROR(o.GetBool("drop_unmatched", &b, false));
    std::string pattern;
    SLUICE_SDK_RETURN_IF_ERROR(o.GetString("pattern", &pattern));
    int64_t group = 1;
    SLUICE_SDK_RETURN_IF_ERROR(o.GetInt("group", &group, 1));
    std::regex re;
    try {
      re = std::regex(pattern);
    } catch (const std::regex_error& e) {
      return Status::InvalidArgument("option 'pattern' is not a valid regular expression: " + std::string(e.what()));
    }
    if (group < 0 || static_cast<size_t>(group) > re.mark_count()) {
      return Status::InvalidArgument("option 'group' is " + std::to_string(group) + " but the pattern has " +
                                     std::to_string(re.mark_count()) + " groups");
    }
    return Status::Ok();
  }

  static Status OutputSchema(const Schema& in, const Options& o, SchemaBuilder& out) {
    std::string field, as;
    SLUICE_SDK_RETURN_IF_ERROR(o.GetString("field", &field));
    SLUICE_SDK_RETURN_IF_ERROR(o.GetString("as", &as));
    int32_t i = in.IndexOf(field);
    if (i < 0 || in.type(i) != FieldType::kString) {
      return Status::InvalidArgument("field '" + field + "' must be a string field of the input");
    }
    if (in.IndexOf(as) >= 0) return Status::InvalidArgument("the input already has a field '" + as + "'");
    out.AddAll(in);
    out.Add(as, FieldType::kString);
    return Status::Ok();
  }

  Status Open(Context& ctx) override {
    SLUICE_SDK_RETURN_IF_ERROR(ctx.InputField(field_name_, FieldType::kString, &field_));
    SLUICE_SDK_RETURN_IF_ERROR(ctx.OutputField(as_, FieldType::kString, &out_));
    num_inputs_ = ctx.InputSchema().size();
    return ctx.RegisterCounter("unmatched", &unmatched_);
  }

  Status Process(const Record& in, Context& ctx) override {
    std::string_view text = in.String(field_);
    ctx.Out().CopyPrefix(in, num_inputs_);
    if (std::regex_search(text.begin(), text.end(), match_, regex_)) {
      const auto& g = match_[static_cast<size_t>(group_)];
      ctx.Out().SetString(out_, std::string_view(&*g.first, static_cast<size_t>(g.length())));
    } else {
      unmatched_.Add();
      if (drop_) return Status::Ok();
      ctx.Out().SetString(out_, default_);
    }
    return ctx.Emit();
  }

 private:
  std::string field_name_;
  std::string as_;
  std::string default_;
  int64_t group_ = 1;
  bool drop_ = false;
  std::regex regex_;
  std::match_results<std::string_view::const_iterator> match_;
  size_t num_inputs_ = 0;
  Field field_;
  Field out_;
  sluice::sdk::Counter unmatched_;
};

}  // namespace

SLUICE_PLUGIN("regex-extract", "1.0.0", plugin) {
  plugin.AddOperator<RegexExtract>("regex_extract")
      .Description("appends a regular-expression capture of a string field")
      .Validate(&RegexExtract::Validate)
      .OutputSchema(&RegexExtract::OutputSchema)
      .RequiredOption("field", "string", "the string field to match")
      .RequiredOption("pattern", "string", "an ECMAScript regular expression")
      .RequiredOption("as", "string", "the name of the appended string field")
      .Option("group", "int64", "1", "the capture group to append")
      .Option("default", "string", "", "appended when the pattern does not match")
      .Option("drop_unmatched", "bool", "false", "drop records that do not match instead");
}
