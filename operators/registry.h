#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "operators/operator.h"
#include "plan/operator_type.h"

namespace sluice::ops {

// The operator types a worker can run: each entry is a catalog entry (name, inputs, keyed,
// options parser, schema inference; plan/operator_type.h) plus the factory that makes its
// operators. Built-ins are added explicitly with RegisterBuiltinOperators(), connectors with
// connectors::RegisterConnectorOperators() (no static initialisers a linker could drop).
// Register before use; lookups afterwards are thread-safe (read-only).
class OperatorRegistry {
 public:
  // A factory may fail (a plugin's create hook refusing): the task fails with its status.
  using Factory = std::function<absl::StatusOr<std::unique_ptr<Operator>>(const plan::OperatorSpec&)>;

  // Returns kAlreadyExists ("operator type 'x' already registered") if the name is taken.
  absl::Status Register(std::unique_ptr<plan::OperatorType> type, Factory factory);
  // Makes an operator of `spec.type`; kNotFound for a type without a factory.
  absl::StatusOr<std::unique_ptr<Operator>> Create(const plan::OperatorSpec& spec) const;
  // An aggregate function besides the built-ins (a plugin's), for the window and aggregate
  // operators' options. kAlreadyExists if the name is taken.
  absl::Status AddAggregateFunction(std::shared_ptr<const plan::AggregateFunction> fn) {
    return catalog_.AddAggregateFunction(std::move(fn));
  }
  // The types, for ParseJobSpec().
  const plan::OperatorTypeCatalog& catalog() const { return catalog_; }

  // Replaces the factory of a registered type (kNotFound otherwise): tests put an instrumented
  // operator in place of a built-in.
  absl::Status ReplaceFactoryForTest(const std::string& type, Factory factory);

 private:
  plan::OperatorTypeCatalog catalog_;
  std::map<std::string, Factory> factories_;
};

// Adds datagen, filter, map, key_by, aggregate, union, interval_join, join, window_join, file,
// print and blackhole (types and factories). kAlreadyExists if one of them is registered already.
absl::Status RegisterBuiltinOperators(OperatorRegistry* registry);

}  // namespace sluice::ops
