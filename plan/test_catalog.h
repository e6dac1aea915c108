#pragma once

// Test-only (plan_test): the catalog of built-in and Kafka operator types the job parser's
// tests plan against. The plan library itself links no operator type.

#include "connectors/connector_types.h"
#include "gtest/gtest.h"
#include "operators/operator_types.h"
#include "plan/operator_type.h"

namespace sluice::plan {

inline const OperatorTypeCatalog& TestCatalog() {
  static const OperatorTypeCatalog* catalog = [] {
    auto* c = new OperatorTypeCatalog();
    EXPECT_TRUE(ops::RegisterBuiltinOperatorTypes(c).ok());
    EXPECT_TRUE(connectors::RegisterConnectorOperatorTypes(c).ok());
    return c;
  }();
  return *catalog;
}

}  // namespace sluice::plan
