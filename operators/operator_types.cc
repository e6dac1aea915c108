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
  SLUICE_RETURN_IF_ERROR(catalog->Add(MakeIntervalJoinType()));
  SLUICE_RETURN_IF_ERROR(catalog->Add(MakeRegularJoinType()));
  SLUICE_RETURN_IF_ERROR(catalog->Add(MakeWindowJoinType()));
  return catalog->Add(MakeBlackholeSinkType());
}

}  // namespace sluice::ops
