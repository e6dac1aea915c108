#pragma once

#include <memory>

#include "plan/operator_type.h"

namespace sluice::ops {

// `blackhole`: discards records, no faster than `max_rate` records/s per subtask (0: no
// limit; a deliberately slow sink for backpressure tests and demos). 1 to 64 inputs of one
// schema.
struct BlackholeSinkOptions final : plan::OptionsOf<BlackholeSinkOptions> {
  double max_rate = 0;
};

std::unique_ptr<plan::OperatorType> MakeBlackholeSinkType();

}  // namespace sluice::ops
