#pragma once

#include "absl/status/status.h"
#include "plan/operator_type.h"

namespace sluice::ops {

// Adds the built-in operator types (options parsers and schema inference, no runtime) to
// `catalog`: datagen, filter, map, key_by, aggregate, union, interval_join, join, window_join,
// file, print, blackhole. For
// processes that plan jobs without running them (the coordinator). Returns kAlreadyExists if
// one is there already.
absl::Status RegisterBuiltinOperatorTypes(plan::OperatorTypeCatalog* catalog);

}  // namespace sluice::ops
