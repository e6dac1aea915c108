#include "connectors/connector_types.h"

#include "common/status.h"
#include "connectors/kafka_sink_options.h"
#include "connectors/kafka_source_options.h"

namespace sluice::connectors {

absl::Status RegisterConnectorOperatorTypes(plan::OperatorTypeCatalog* catalog) {
  SLUICE_RETURN_IF_ERROR(catalog->Add(MakeKafkaSourceType()));
  return catalog->Add(MakeKafkaSinkType());
}

}  // namespace sluice::connectors
