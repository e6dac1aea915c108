#include "operators/key_by_options.h"

#include "common/status.h"
#include "plan/job_spec.h"
#include "plan/option_parsing.h"

namespace sluice::ops {
namespace {

absl::StatusOr<KeyByOptions> Parse(const YAML::Node& c, const plan::ParseContext& ctx) {
  if (!c["key"]) return ctx.At(c, "key_by needs 'key'");
  KeyByOptions o;
  SLUICE_ASSIGN_OR_RETURN(o.key, plan::ParseKey(ctx.errors(), c["key"], ctx.op().input_schema));
  return o;
}

Schema Infer(const KeyByOptions&, const plan::ParseContext& ctx) { return ctx.op().input_schema; }

std::vector<plan::KeySpec> Key(const KeyByOptions& o) { return o.key; }

}  // namespace

std::unique_ptr<plan::OperatorType> MakeKeyByType() {
  plan::OperatorTraits t;
  t.name = "key_by";
  t.keys_output = true;
  t.option_keys = {"key"};
  return std::make_unique<plan::TypedOperatorType<KeyByOptions>>(
      std::move(t), &Parse, &Infer, &Key, nullptr,
      [](const KeyByOptions&, const plan::ParseContext& ctx) { return plan::SameFieldsAsInput(ctx); });
}

}  // namespace sluice::ops
