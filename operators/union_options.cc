#include "operators/union_options.h"

#include "plan/job_spec.h"

namespace sluice::ops {
namespace {

absl::StatusOr<plan::NoOptions> Parse(const YAML::Node&, const plan::ParseContext&) {
  return plan::NoOptions();
}

Schema Infer(const plan::NoOptions&, const plan::ParseContext& ctx) { return ctx.op().input_schema; }

}  // namespace

std::unique_ptr<plan::OperatorType> MakeUnionType() {
  plan::OperatorTraits t;
  t.name = "union";
  t.inputs = plan::InputArity::kMany;
  t.min_inputs = 2;
  return std::make_unique<plan::TypedOperatorType<plan::NoOptions>>(std::move(t), &Parse, &Infer);
}

}  // namespace sluice::ops
