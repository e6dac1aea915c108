#include "operators/window_options.h"

#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "plan/expr.h"
#include "plan/job_spec.h"
#include "plan/option_parsing.h"

namespace sluice::ops {
namespace {

using Fn = WindowOptions::Fn;

struct FnInfo {
  Fn fn;
  const char* name;
  bool needs_field;
  bool numeric_only;
};

constexpr FnInfo kFns[] = {
    {Fn::kCount, "count", false, false}, {Fn::kSum, "sum", true, true},
    {Fn::kMin, "min", true, false},      {Fn::kMax, "max", true, false},
    {Fn::kAvg, "avg", true, true},       {Fn::kFirst, "first", true, false},
    {Fn::kLast, "last", true, false},    {Fn::kCountDistinct, "count_distinct", true, false},
};

std::string FnNames() {
  std::string names;
  for (const FnInfo& f : kFns) absl::StrAppend(&names, names.empty() ? "" : ", ", f.name);
  return names;
}

FieldType OutputType(Fn fn, FieldType in) {
  switch (fn) {
    case Fn::kCount:
    case Fn::kCountDistinct:
      return FieldType::kInt64;
    case Fn::kAvg:
      return FieldType::kDouble;
    case Fn::kSum:
      return in == FieldType::kTimestamp ? FieldType::kInt64 : in;
    default:
      return in;
  }
}

absl::StatusOr<WindowOptions> Parse(const YAML::Node& c, const plan::ParseContext& ctx) {
  const plan::ErrorContext& ec = ctx.errors();
  const plan::OperatorSpec& op = ctx.op();
  const Schema& in = op.input_schema;
  WindowOptions o;
  SLUICE_ASSIGN_OR_RETURN(o.windows, ParseWindowSpec(ec, c));

  SLUICE_ASSIGN_OR_RETURN(std::string time, plan::GetString(ec, c, "time", false));
  if (!time.empty() && time != "event" && time != "processing") {
    return ctx.At(c["time"], "'time' must be 'event' or 'processing'");
  }
  o.event_time = time != "processing";
  SLUICE_ASSIGN_OR_RETURN(std::string time_field, plan::GetString(ec, c, "time_field", false));
  if (o.event_time) {
    if (time_field.empty()) {
      return ctx.AtPos(op.line, op.column,
                       absl::StrCat("window '", op.id,
                                    "' on event time needs 'time_field': the "
                                    "timestamp field of its input ",
                                    in.ToString(), " (or time: processing)"));
    }
    o.time_field = in.IndexOf(time_field);
    if (o.time_field < 0) {
      return ctx.At(c["time_field"], absl::StrCat("unknown field '", time_field, "' (input has ",
                                                  in.ToString(), ")"));
    }
    if (!IsIntegral(in.field(o.time_field).type)) {
      return ctx.At(c["time_field"],
                    absl::StrCat("'time_field' must be a timestamp or int64 field; '", time_field,
                                 "' is ", FieldTypeName(in.field(o.time_field).type)));
    }
  } else {
    if (!time_field.empty()) {
      return ctx.At(c["time_field"],
                    "'time_field' is for time: event (processing time windows "
                    "use the arrival time)");
    }
    for (const char* k : {"allowed_lateness", "late_output"}) {
      if (c[k]) {
        return ctx.At(c[k], absl::StrCat("'", k,
                                         "' applies to event time only (no record is "
                                         "late in processing time)"));
      }
    }
  }
  SLUICE_ASSIGN_OR_RETURN(o.allowed_lateness_ms, plan::GetDuration(ec, c, "allowed_lateness", 0));
  SLUICE_ASSIGN_OR_RETURN(o.late_output, plan::GetString(ec, c, "late_output", false));
  if (c["late_output"] && !plan::IsIdentifier(o.late_output)) {
    return ctx.At(c["late_output"],
                  "'late_output' must be a name of letters, digits and "
                  "underscores (read it as input '<window id>.<name>')");
  }
  SLUICE_ASSIGN_OR_RETURN(o.emit_every_ms, plan::GetDuration(ec, c, "emit_every", 0));
  if (c["emit_every"] && o.emit_every_ms <= 0) {
    return ctx.At(c["emit_every"], "'emit_every' must be positive");
  }

  std::vector<Field> out;
  std::set<std::string> seen;
  auto add = [&](const YAML::Node& at, const std::string& name, FieldType type,
                 bool nullable = false) -> absl::Status {
    if (!seen.insert(name).second) {
      return ctx.At(
          at, absl::StrCat("duplicate output field '", name, "' (rename the aggregate with 'as')"));
    }
    out.push_back({name, type, nullable});
    return absl::OkStatus();
  };
  for (const plan::KeySpec& k : op.key) {
    auto e = plan::CompileExpr(k.expr, in);
    if (!e.ok()) return ctx.AtPos(op.line, op.column, e.status().message());
    SLUICE_RETURN_IF_ERROR(add(c, k.name, (*e)->type(), (*e)->nullable()));
  }
  SLUICE_RETURN_IF_ERROR(add(c, "window_start", FieldType::kTimestamp));
  SLUICE_RETURN_IF_ERROR(add(c, "window_end", FieldType::kTimestamp));

  YAML::Node aggs = c["aggregates"];
  if (!aggs || !aggs.IsSequence() || aggs.size() == 0) {
    return ctx.At(aggs ? aggs : c, "window needs 'aggregates': a list of {fn, field, as}");
  }
  for (const auto& a : aggs) {
    if (!a.IsMap()) return ctx.At(a, "an aggregate must be {fn, field, as}");
    SLUICE_RETURN_IF_ERROR(plan::CheckKeys(ec, a, "aggregate", {"fn", "field", "as"}));
    SLUICE_ASSIGN_OR_RETURN(std::string fn, plan::GetString(ec, a, "fn", true));
    const FnInfo* info = nullptr;
    for (const FnInfo& f : kFns) {
      if (fn == f.name) info = &f;
    }
    SLUICE_ASSIGN_OR_RETURN(std::string field,
                            plan::GetString(ec, a, "field", info != nullptr && info->needs_field));
    if (info != nullptr && !info->needs_field && !field.empty()) {
      return ctx.At(a["field"], absl::StrCat(fn, " takes no 'field'"));
    }
    WindowOptions::Aggregate agg;
    agg.fn = info == nullptr ? Fn::kPlugin : info->fn;
    if (!field.empty()) {
      agg.field = in.IndexOf(field);
      if (agg.field < 0) {
        return ctx.At(a["field"],
                      absl::StrCat("unknown field '", field, "' (input has ", in.ToString(), ")"));
      }
      agg.in_type = in.field(agg.field).type;
      if (info != nullptr && info->numeric_only && !IsNumeric(agg.in_type)) {
        return ctx.At(a["field"], absl::StrCat(fn, " needs a numeric field; '", field, "' is ",
                                               FieldTypeName(agg.in_type)));
      }
    }
    if (info == nullptr) {  // not a built-in: a plugin's function
      SLUICE_ASSIGN_OR_RETURN(agg.plugin, plan::ResolveAggregateFunction(ctx, a, fn, field, agg.field,
                                                                         FnNames(), &agg.out_type));
    } else {
      agg.out_type = OutputType(agg.fn, agg.in_type);
    }
    SLUICE_ASSIGN_OR_RETURN(agg.as, plan::GetString(ec, a, "as", false));
    if (agg.as.empty()) agg.as = field.empty() ? fn : absl::StrCat(fn, "_", field);
    // As SQL: null when every value in the window was null (counts never are); a plugin's
    // result may be null.
    const bool nullable = agg.fn == Fn::kPlugin ||
                          (agg.field >= 0 && in.field(agg.field).nullable &&
                           agg.fn != WindowOptions::Fn::kCountDistinct);
    SLUICE_RETURN_IF_ERROR(add(a, agg.as, agg.out_type, nullable));
    o.aggregates.push_back(std::move(agg));
  }
  SLUICE_RETURN_IF_ERROR(add(c, "update", FieldType::kBool));
  o.schema = Schema(std::move(out));
  return o;
}

Schema Infer(const WindowOptions& o, const plan::ParseContext&) { return o.schema; }

std::vector<plan::SideOutputSpec> SideOutputs(const WindowOptions& o,
                                              const plan::ParseContext& ctx) {
  if (o.late_output.empty()) return {};
  return {plan::SideOutputSpec{o.late_output, ctx.op().input_schema}};
}

}  // namespace

absl::string_view WindowAggregateName(WindowOptions::Fn fn) {
  for (const FnInfo& f : kFns) {
    if (f.fn == fn) return f.name;
  }
  return fn == Fn::kPlugin ? "plugin" : "?";
}

std::unique_ptr<plan::OperatorType> MakeWindowType() {
  plan::OperatorTraits t;
  t.name = "window";
  t.keyed = true;
  t.option_keys = {"tumble",     "hop",        "session",          "offset",
                   "time",       "time_field", "allowed_lateness", "late_output",
                   "emit_every", "aggregates"};
  return std::make_unique<plan::TypedOperatorType<WindowOptions>>(std::move(t), &Parse, &Infer,
                                                                  nullptr, &SideOutputs);
}

}  // namespace sluice::ops
