#pragma once

#include <memory>

#include "plan/operator_type.h"

namespace sluice::ops {

// `union`: records of 2 to 64 inputs of one schema, passed on unchanged. No options.
std::unique_ptr<plan::OperatorType> MakeUnionType();

}  // namespace sluice::ops
