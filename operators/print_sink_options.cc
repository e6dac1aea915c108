#include "operators/print_sink_options.h"

namespace sluice::ops {
namespace {

absl::StatusOr<plan::NoOptions> Parse(const YAML::Node&, const plan::ParseContext&) {
  return plan::NoOptions();
}

Schema Infer(const plan::NoOptions&, const plan::ParseContext&) { return Schema(); }

}  // namespace

std::unique_ptr<plan::OperatorType> MakePrintSinkType() {
  plan::OperatorTraits t;
  t.name = "print";
  t.inputs = plan::InputArity::kMany;
  t.has_output = false;
  return std::make_unique<plan::TypedOperatorType<plan::NoOptions>>(std::move(t), &Parse, &Infer);
}

}  // namespace sluice::ops
