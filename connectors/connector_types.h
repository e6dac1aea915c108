#pragma once

#include "absl/status/status.h"
#include "plan/operator_type.h"

namespace sluice::connectors {

// Adds the connectors' operator types (kafka, kafka_sink: options and schemas, no librdkafka)
// to `catalog`. Returns kAlreadyExists if one is there already.
absl::Status RegisterConnectorOperatorTypes(plan::OperatorTypeCatalog* catalog);

}  // namespace sluice::connectors
