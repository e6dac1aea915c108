#pragma once

#include <memory>
#include <vector>

#include "plan/operator_type.h"

namespace sluice::ops {

// `key_by`: records pass unchanged; its consumers read them hash-partitioned by `key` (the task
// routes them).
struct KeyByOptions final : plan::OptionsOf<KeyByOptions> {
  std::vector<plan::KeySpec> key;  // compiled against the input schema
};

std::unique_ptr<plan::OperatorType> MakeKeyByType();

}  // namespace sluice::ops
