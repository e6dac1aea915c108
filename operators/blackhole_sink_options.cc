#include "operators/blackhole_sink_options.h"

#include "common/status.h"
#include "plan/option_parsing.h"

namespace sluice::ops {
namespace {

absl::StatusOr<BlackholeSinkOptions> Parse(const YAML::Node& c, const plan::ParseContext& ctx) {
  BlackholeSinkOptions o;
  SLUICE_ASSIGN_OR_RETURN(o.max_rate, plan::GetDouble(ctx.errors(), c, "max_rate", 0, 0));
  return o;
}

Schema Infer(const BlackholeSinkOptions&, const plan::ParseContext&) { return Schema(); }

}  // namespace

std::unique_ptr<plan::OperatorType> MakeBlackholeSinkType() {
  plan::OperatorTraits t;
  t.name = "blackhole";
  t.inputs = plan::InputArity::kMany;
  t.has_output = false;
  t.option_keys = {"max_rate"};
  return std::make_unique<plan::TypedOperatorType<BlackholeSinkOptions>>(std::move(t), &Parse, &Infer);
}

}  // namespace sluice::ops
