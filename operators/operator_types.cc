#include "operators/operator_types.h"

#include "common/status.h"
#include "operators/aggregate_options.h"
#include "operators/blackhole_sink_options.h"
#include "operators/datagen_options.h"
#include "operators/file_sink_options.h"
#include "operators/filter_options.h"
#include "operators/join_options.h"
#include "operators/key_by_options.h"
#include "operators/map_options.h"
#include "operators/nexmark/nexmark_options.h"
#include "operators/print_sink_options.h"
#include "operators/top_n_options.h"
#include "operators/union_options.h"
#include "operators/window_options.h"

namespace sluice::ops {
namespace {

// The joins' output: the left input's fields, then the right's, then (window_join) the
// window's bounds (JoinSides::output); a field of a side an outer join pads is nullable, which
// the planner never takes for a key. Declared here rather than with the join types'
// options.
template <typename Options>
std::vector<plan::FieldOrigin> JoinFieldOrigins(const plan::OperatorOptions& options,
                                                const plan::ParseContext& ctx) {
  const JoinSides& sides = options.As<Options>()->sides;
  for (int side = 0; side < 2; ++side) {
    if (sides.input[side] != ctx.input_schema(side)) return {};  // not what the edge carries
  }
  std::vector<plan::FieldOrigin> origins(sides.output.size());
  size_t j = 0;
  for (int side = 0; side < 2; ++side) {
    for (size_t f = 0; f < sides.input[side].size() && j < origins.size(); ++f, ++j) {
      origins[j] = {side, static_cast<int>(f)};
    }
  }
  return origins;
}

}  // namespace

absl::Status RegisterBuiltinOperatorTypes(plan::OperatorTypeCatalog* catalog) {
  SLUICE_RETURN_IF_ERROR(catalog->Add(MakeDatagenType()));
  SLUICE_RETURN_IF_ERROR(catalog->Add(MakeFilterType()));
  SLUICE_RETURN_IF_ERROR(catalog->Add(MakeMapType()));
  SLUICE_RETURN_IF_ERROR(catalog->Add(MakeKeyByType()));
  SLUICE_RETURN_IF_ERROR(catalog->Add(MakeAggregateType()));
  SLUICE_RETURN_IF_ERROR(catalog->Add(MakeWindowType()));
  SLUICE_RETURN_IF_ERROR(catalog->Add(MakeTopNType()));
  SLUICE_RETURN_IF_ERROR(catalog->Add(MakeLocalTopNType()));
  SLUICE_RETURN_IF_ERROR(catalog->Add(MakeUnionType()));
  SLUICE_RETURN_IF_ERROR(catalog->Add(MakeFileSinkType()));
  SLUICE_RETURN_IF_ERROR(catalog->Add(MakePrintSinkType()));
  SLUICE_RETURN_IF_ERROR(catalog->Add(MakeNexmarkType()));
  SLUICE_RETURN_IF_ERROR(catalog->Add(plan::WithFieldOrigins(
      MakeIntervalJoinType(), &JoinFieldOrigins<IntervalJoinOptions>)));
  SLUICE_RETURN_IF_ERROR(catalog->Add(
      plan::WithFieldOrigins(MakeRegularJoinType(), &JoinFieldOrigins<RegularJoinOptions>)));
  SLUICE_RETURN_IF_ERROR(catalog->Add(
      plan::WithFieldOrigins(MakeWindowJoinType(), &JoinFieldOrigins<WindowJoinOptions>)));
  return catalog->Add(MakeBlackholeSinkType());
}

}  // namespace sluice::ops
