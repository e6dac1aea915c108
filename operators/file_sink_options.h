#pragma once

#include <memory>
#include <string>

#include "plan/operator_type.h"

namespace sluice::ops {

// `file`: JSON lines under `path` (a directory), exactly once with checkpoints. Reads 1 to 64
// inputs of one schema.
struct FileSinkOptions final : plan::OptionsOf<FileSinkOptions> {
  std::string path;  // not empty
};

std::unique_ptr<plan::OperatorType> MakeFileSinkType();

}  // namespace sluice::ops
