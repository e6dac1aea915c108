#include "operators/filter_options.h"

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "plan/job_spec.h"
#include "plan/option_parsing.h"

namespace sluice::ops {
namespace {

absl::StatusOr<FilterOptions> Parse(const YAML::Node& c, const plan::ParseContext& ctx) {
  FilterOptions o;
  SLUICE_ASSIGN_OR_RETURN(o.where, plan::GetString(ctx.errors(), c, "where", true));
  SLUICE_ASSIGN_OR_RETURN(auto e, plan::CompileAt(ctx.errors(), c["where"], o.where, ctx.op().input_schema));
  if (e->type() != FieldType::kBool) {
    return ctx.At(c["where"], absl::StrCat("filter condition must be bool, got ", FieldTypeName(e->type())));
  }
  return o;
}

Schema Infer(const FilterOptions&, const plan::ParseContext& ctx) { return ctx.op().input_schema; }

}  // namespace

std::unique_ptr<plan::OperatorType> MakeFilterType() {
  plan::OperatorTraits t;
  t.name = "filter";
  t.option_keys = {"where"};
  return std::make_unique<plan::TypedOperatorType<FilterOptions>>(
      std::move(t), &Parse, &Infer, nullptr, nullptr,
      [](const FilterOptions&, const plan::ParseContext& ctx) { return plan::SameFieldsAsInput(ctx); });
}

}  // namespace sluice::ops
