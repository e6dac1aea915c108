#pragma once

#include <memory>
#include <string>

#include "plan/operator_type.h"

namespace sluice::ops {

// `filter`: passes the records for which `where` (a bool expression over the input) is true.
struct FilterOptions final : plan::OptionsOf<FilterOptions> {
  std::string where;  // type-checked against the input schema
};

std::unique_ptr<plan::OperatorType> MakeFilterType();

}  // namespace sluice::ops
