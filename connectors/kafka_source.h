#pragma once

#include <functional>
#include <memory>

#include "absl/status/statusor.h"
#include "operators/operator.h"
#include "operators/registry.h"

namespace sluice::connectors {

// The `kafka` source: reads one topic (`topic`) or several (`topics`); partitions are assigned
// to subtasks deterministically (partition p of the t-th topic to subtask (t + p) % parallelism,
// no consumer-group rebalancing); the next offset of every partition is the source's
// checkpointed state ("<topic>:<partition>:<offset>" entries, union state: each subtask takes
// the partitions it owns, also after rescaling), and reading resumes exactly there on restore.
// Offsets are committed to the consumer group after each completed checkpoint, for monitoring.
//
// Options: bootstrap, topic | topics, format (json | csv | raw), fields (the schema; raw gives key and
// value strings), start (earliest | latest | committed), group, bounded (stop at the end offsets
// seen at start), on_error (fail | skip | dead_letter with dead_letter_topic) for records that do
// not parse: fail names topic, partition and offset; skip counts; dead_letter also writes the
// original bytes, with the error in a header, to the dead-letter topic.
//
// Event time (`event_time: {field | kafka_timestamp, max_out_of_orderness, idle_timeout}`):
// each partition has its own bounded-out-of-orderness watermark (largest timestamp seen -
// max_out_of_orderness - 1); the subtask emits the minimum over its non-idle partitions every
// watermark interval when it advanced. A partition read to its end (an end-of-partition event
// came after its last record, and librdkafka has fetched no record past its position since)
// and without records for idle_timeout (processing time) is idle and does not hold the
// watermark back; one with records not read yet never is, however long the source takes to
// read them, and an idle one wakes once records are fetched (stricter than Flink's
// withIdleness, which counts only the time since the last record). With
// isolation.level=read_committed a partition with an open transaction does not turn idle (its
// high watermark is past the last stable offset). An idle_timeout forces
// enable.partition.eof=true whatever `properties` say. When all of a subtask's partitions are
// idle (or it has none), its output is marked idle until its next record. A bounded source
// ends event time (kMaxWatermark) when it ends.
//
// Partition discovery (`partition_discovery`, default 30s, 0 = off; never for bounded
// sources): every interval a background thread re-reads the topic's partition count; partition
// p that appeared is read by subtask p % parallelism from the earliest offset, and is part of
// the checkpointed offsets from then on. A partition missing from the state of a restored
// source appeared after that checkpoint, so it is read from the earliest offset too.
std::unique_ptr<ops::Operator> MakeKafkaSource();

// For tests: a kafka source that takes the topic's partition count from `partition_count`
// (at Open and at each discovery, on the discovery thread) instead of the brokers' metadata.
// The embedded endpoint (librdkafka's mock cluster) cannot add partitions to a topic, so a test
// creates the topic with its final count and lets the source see fewer at first.
std::unique_ptr<ops::Operator> MakeKafkaSourceForTest(
    std::function<absl::StatusOr<int>()> partition_count);

// For tests: whether `source` (made by MakeKafkaSource*, with an idle timeout) has read each of
// its partitions to its end: an end-of-partition event came after its last record. Only such
// partitions may turn idle.
bool KafkaSourceReadToEndForTest(const ops::Operator& source);

// For tests: records between `source`'s positions and the high watermarks librdkafka has
// cached from its fetches (records fetched or on the brokers, not read yet).
int64_t KafkaSourceFetchedLagForTest(const ops::Operator& source);

// Adds the connectors' operators (kafka, kafka_sink: types and factories) to `registry`.
// kAlreadyExists if one is registered already.
absl::Status RegisterConnectorOperators(ops::OperatorRegistry* registry);

}  // namespace sluice::connectors
