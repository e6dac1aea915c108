#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "operators/operator.h"

namespace sluice::ops {

// Creates operators by type name. Built-ins are added explicitly with
// RegisterBuiltinOperators() (no static initialisers a linker could drop). Register before use;
// lookups afterwards are thread-safe (read-only).
class OperatorRegistry {
 public:
  using Factory = std::function<std::unique_ptr<Operator>(const plan::OperatorSpec&)>;

  // Returns kAlreadyExists if `type` is registered.
  absl::Status Register(const std::string& type, Factory factory);
  // Returns kNotFound for an unknown type.
  absl::StatusOr<std::unique_ptr<Operator>> Create(const plan::OperatorSpec& spec) const;

 private:
  std::map<std::string, Factory> factories_;
};

// Adds datagen, filter, map, key_by, aggregate, union, file, print and blackhole.
void RegisterBuiltinOperators(OperatorRegistry* registry);

}  // namespace sluice::ops
