#pragma once

#include <memory>

#include "plan/operator_type.h"

namespace sluice::ops {

// `print`: each record as JSON in the worker log. No options; 1 to 64 inputs of one schema.
std::unique_ptr<plan::OperatorType> MakePrintSinkType();

}  // namespace sluice::ops
