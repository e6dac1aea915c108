#pragma once

#include <memory>
#include <string>
#include <vector>

#include "plan/operator_type.h"

namespace sluice::ops {

// `map`: one output field per entry, computed from the input record.
struct MapOptions final : plan::OptionsOf<MapOptions> {
  struct Field {
    std::string name;
    std::string expr;  // over the input schema, type-checked
    FieldType type = FieldType::kInt64;  // the expression's, or the `type` given
    bool nullable = false;               // the expression's
  };
  std::vector<Field> fields;
};

std::unique_ptr<plan::OperatorType> MakeMapType();

}  // namespace sluice::ops
