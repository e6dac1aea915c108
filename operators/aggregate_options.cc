#include "operators/aggregate_options.h"

#include <set>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "plan/expr.h"
#include "plan/job_spec.h"
#include "plan/option_parsing.h"

namespace sluice::ops {
namespace {

using Fn = AggregateOptions::Fn;

absl::StatusOr<AggregateOptions> Parse(const YAML::Node& c, const plan::ParseContext& ctx) {
  const plan::ErrorContext& ec = ctx.errors();
  const plan::OperatorSpec& op = ctx.op();
  AggregateOptions o;
  std::vector<Field> out;
  std::set<std::string> seen;
  for (const plan::KeySpec& k : op.key) {
    auto e = plan::CompileExpr(k.expr, op.input_schema);
    if (!e.ok()) return ctx.AtPos(op.line, op.column, e.status().message());
    out.push_back({k.name, (*e)->type(), (*e)->nullable()});  // the key schema (aggregate.cc)
    seen.insert(k.name);
  }
  YAML::Node aggs = c["aggregates"];
  if (!aggs || !aggs.IsSequence() || aggs.size() == 0) {
    return ctx.At(aggs ? aggs : c, "aggregate needs 'aggregates': a list of {fn, field, as}");
  }
  for (const auto& a : aggs) {
    if (!a.IsMap()) return ctx.At(a, "an aggregate must be {fn, field, as}");
    SLUICE_ASSIGN_OR_RETURN(std::string fn, plan::GetString(ec, a, "fn", true));
    SLUICE_ASSIGN_OR_RETURN(std::string field, plan::GetString(ec, a, "field", fn != "count"));
    SLUICE_ASSIGN_OR_RETURN(std::string as, plan::GetString(ec, a, "as", false));
    if (as.empty()) as = field.empty() ? fn : absl::StrCat(fn, "_", field);
    AggregateOptions::Aggregate agg;
    FieldType in_type = FieldType::kInt64;
    if (!field.empty()) {
      agg.field = op.input_schema.IndexOf(field);
      if (agg.field < 0) {
        return ctx.At(a["field"], absl::StrCat("unknown field '", field, "' (input has ",
                                               op.input_schema.ToString(), ")"));
      }
      in_type = op.input_schema.field(agg.field).type;
    }
    FieldType out_type;
    // As SQL: count(field) counts the rows whose field is not null; the other functions skip
    // nulls and are null when every value of the key was (so nullable when the field is).
    bool nullable = false;
    if (fn == "count") {
      agg.fn = Fn::kCount;
      out_type = FieldType::kInt64;
    } else if (fn == "sum" || fn == "min" || fn == "max" || fn == "avg") {
      if (!IsNumeric(in_type)) {
        return ctx.At(a["field"], absl::StrCat(fn, " needs a numeric field; '", field, "' is ",
                                               FieldTypeName(in_type)));
      }
      agg.fn = fn == "sum" ? Fn::kSum : fn == "min" ? Fn::kMin : fn == "max" ? Fn::kMax : Fn::kAvg;
      out_type = fn == "avg" ? FieldType::kDouble
                 : fn == "sum" && in_type == FieldType::kTimestamp ? FieldType::kInt64
                                                                   : in_type;
      nullable = op.input_schema.field(agg.field).nullable;
    } else if (fn == "first" || fn == "last") {
      // Accumulators are fixed-size words (aggregate.cc): no string values.
      if (in_type == FieldType::kString) {
        return ctx.At(a["field"], absl::StrCat(fn, " of aggregate takes a field of any type but "
                                               "string; '", field, "' is string"));
      }
      agg.fn = fn == "first" ? Fn::kFirst : Fn::kLast;
      out_type = in_type;
      nullable = op.input_schema.field(agg.field).nullable;
    } else {  // a plugin's function; its result may be null
      agg.fn = Fn::kPlugin;
      SLUICE_ASSIGN_OR_RETURN(agg.plugin,
                              plan::ResolveAggregateFunction(ctx, a, fn, field, agg.field,
                                                             "count, sum, min, max, avg, first, last",
                                                             &out_type));
      nullable = true;
    }
    if (!seen.insert(as).second) return ctx.At(a, absl::StrCat("duplicate output field '", as, "'"));
    agg.as = as;
    out.push_back({as, out_type, nullable});
    o.aggregates.push_back(agg);
  }
  SLUICE_ASSIGN_OR_RETURN(o.ttl_ms, plan::GetDuration(ec, c, "ttl", 0));
  if (c["emit"]) {
    const std::string emit = c["emit"].Scalar();
    if (emit != "updates" && emit != "final") return ctx.At(c["emit"], "'emit' must be 'updates' or 'final'");
    o.emit_final = emit == "final";
  }
  if (c["state"]) {
    const YAML::Node st = c["state"];
    if (!st.IsScalar() || (st.Scalar() != "auto" && st.Scalar() != "backend")) {
      return ctx.At(st, "'state' must be 'auto' (in memory when the key allows it) or 'backend'");
    }
    o.backend_state = st.Scalar() == "backend";
  }
  o.schema = Schema(std::move(out));
  return o;
}

Schema Infer(const AggregateOptions& o, const plan::ParseContext&) { return o.schema; }

// A key field whose expression is a bare input field is a copy of it (the key's values come
// from the records of the key, all of which this subtask received).
std::vector<plan::FieldOrigin> Origins(const AggregateOptions& o, const plan::ParseContext& ctx) {
  const plan::OperatorSpec& op = ctx.op();
  std::vector<plan::FieldOrigin> origins(o.schema.size());
  for (size_t k = 0; k < op.key.size(); ++k) {
    auto e = plan::CompileExpr(op.key[k].expr, op.input_schema);
    if (e.ok() && (*e)->FieldIndex() >= 0) origins[k] = {0, (*e)->FieldIndex()};
  }
  return origins;
}

}  // namespace

std::unique_ptr<plan::OperatorType> MakeAggregateType() {
  plan::OperatorTraits t;
  t.name = "aggregate";
  t.keyed = true;
  t.option_keys = {"aggregates", "emit", "ttl", "state"};
  return std::make_unique<plan::TypedOperatorType<AggregateOptions>>(std::move(t), &Parse, &Infer,
                                                                     nullptr, nullptr, &Origins);
}

}  // namespace sluice::ops
