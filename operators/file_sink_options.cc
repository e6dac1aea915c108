#include "operators/file_sink_options.h"

#include "common/status.h"
#include "plan/option_parsing.h"

namespace sluice::ops {
namespace {

absl::StatusOr<FileSinkOptions> Parse(const YAML::Node& c, const plan::ParseContext& ctx) {
  FileSinkOptions o;
  SLUICE_ASSIGN_OR_RETURN(o.path, plan::GetString(ctx.errors(), c, "path", true));
  if (o.path.empty()) return ctx.At(c["path"], "'path' must not be empty");
  return o;
}

Schema Infer(const FileSinkOptions&, const plan::ParseContext&) { return Schema(); }

}  // namespace

std::unique_ptr<plan::OperatorType> MakeFileSinkType() {
  plan::OperatorTraits t;
  t.name = "file";
  t.inputs = plan::InputArity::kMany;
  t.has_output = false;
  t.option_keys = {"path"};
  return std::make_unique<plan::TypedOperatorType<FileSinkOptions>>(std::move(t), &Parse, &Infer);
}

}  // namespace sluice::ops
