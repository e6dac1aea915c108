#include "operators/registry.h"

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "operators/aggregate_options.h"
#include "operators/blackhole_sink_options.h"
#include "operators/datagen_options.h"
#include "operators/file_sink_options.h"
#include "operators/filter_options.h"
#include "operators/internal/builtins.h"
#include "operators/join_options.h"
#include "operators/key_by_options.h"
#include "operators/map_options.h"
#include "operators/nexmark/nexmark_options.h"
#include "operators/print_sink_options.h"
#include "operators/top_n_options.h"
#include "operators/union_options.h"
#include "operators/window_options.h"

namespace sluice::ops {

absl::Status OperatorRegistry::Register(std::unique_ptr<plan::OperatorType> type, Factory factory) {
  const std::string name = type->name();
  SLUICE_RETURN_IF_ERROR(catalog_.Add(std::move(type)));
  factories_.emplace(name, std::move(factory));
  return absl::OkStatus();
}

absl::Status OperatorRegistry::ReplaceFactoryForTest(const std::string& type, Factory factory) {
  auto it = factories_.find(type);
  if (it == factories_.end()) {
    return absl::NotFoundError(absl::StrCat("no operator type '", type, "' registered"));
  }
  it->second = std::move(factory);
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Operator>> OperatorRegistry::Create(
    const plan::OperatorSpec& spec) const {
  auto it = factories_.find(spec.type);
  if (it == factories_.end()) {
    return absl::NotFoundError(absl::StrCat("no operator type '", spec.type, "' on this worker"));
  }
  return it->second(spec);
}

namespace {

OperatorRegistry::Factory Wrap(std::unique_ptr<Operator> (*make)()) {
  return [make](const plan::OperatorSpec&) { return make(); };
}

}  // namespace

absl::Status RegisterBuiltinOperators(OperatorRegistry* registry) {
  SLUICE_RETURN_IF_ERROR(registry->Register(MakeDatagenType(), Wrap(&MakeDatagen)));
  SLUICE_RETURN_IF_ERROR(registry->Register(MakeFilterType(), Wrap(&MakeFilter)));
  SLUICE_RETURN_IF_ERROR(registry->Register(MakeMapType(), Wrap(&MakeMap)));
  SLUICE_RETURN_IF_ERROR(registry->Register(MakeKeyByType(), Wrap(&MakeKeyBy)));
  SLUICE_RETURN_IF_ERROR(registry->Register(MakeAggregateType(), Wrap(&MakeAggregate)));
  SLUICE_RETURN_IF_ERROR(registry->Register(MakeWindowType(), Wrap(&MakeWindow)));
  SLUICE_RETURN_IF_ERROR(registry->Register(MakeTopNType(), Wrap(&MakeTopN)));
  SLUICE_RETURN_IF_ERROR(registry->Register(MakeLocalTopNType(), Wrap(&MakeLocalTopN)));
  SLUICE_RETURN_IF_ERROR(registry->Register(MakeUnionType(), Wrap(&MakeUnion)));
  SLUICE_RETURN_IF_ERROR(registry->Register(MakeFileSinkType(), Wrap(&MakeFileSink)));
  SLUICE_RETURN_IF_ERROR(registry->Register(MakePrintSinkType(), Wrap(&MakePrintSink)));
  SLUICE_RETURN_IF_ERROR(registry->Register(MakeNexmarkType(), Wrap(&MakeNexmarkSource)));
  SLUICE_RETURN_IF_ERROR(registry->Register(MakeIntervalJoinType(), Wrap(&MakeIntervalJoin)));
  SLUICE_RETURN_IF_ERROR(registry->Register(MakeRegularJoinType(), Wrap(&MakeRegularJoin)));
  SLUICE_RETURN_IF_ERROR(registry->Register(MakeWindowJoinType(), Wrap(&MakeWindowJoin)));
  return registry->Register(MakeBlackholeSinkType(), Wrap(&MakeBlackholeSink));
}

}  // namespace sluice::ops
