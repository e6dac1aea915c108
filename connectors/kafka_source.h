#pragma once

#include <memory>

#include "operators/operator.h"
#include "operators/registry.h"

namespace sluice::connectors {

// The `kafka` source: reads one topic; partitions are assigned to subtasks deterministically
// (partition p to subtask p % parallelism, no consumer-group rebalancing); the next offset of
// every partition is the source's checkpointed state (union state: each subtask takes the
// partitions it owns, also after rescaling), and reading resumes exactly there on restore.
// Offsets are committed to the consumer group after each completed checkpoint, for monitoring.
//
// Options: bootstrap, topic, format (json | csv | raw), fields (the schema; raw gives key and
// value strings), start (earliest | latest | committed), group, bounded (stop at the end offsets
// seen at start), on_error (fail | skip | dead_letter with dead_letter_topic) for records that do
// not parse: fail names topic, partition and offset; skip counts; dead_letter also writes the
// original bytes, with the error in a header, to the dead-letter topic.
std::unique_ptr<ops::Operator> MakeKafkaSource();

// Adds the connectors' operators (kafka, kafka_sink) to `registry`.
void RegisterConnectorOperators(ops::OperatorRegistry* registry);

}  // namespace sluice::connectors
