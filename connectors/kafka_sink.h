#pragma once

#include <memory>

#include "operators/operator.h"

namespace sluice::connectors {

// The `kafka_sink`: writes its input records to one topic, keyed by `key` fields (joined with
// '|'; no key: librdkafka spreads records), as json, csv or raw (the `value` field's text).
//
// `guarantee`:
// - none: records are handed to librdkafka; nothing waits for them.
// - at_least_once (default): every record is flushed and acknowledged by the broker before the
//   sink acknowledges a checkpoint, so a restored job never lost output; replayed records may
//   appear twice.
// - exactly_once: a Kafka transaction per checkpoint, through the generic two-phase commit
//   (operators/two_phase_commit_sink.h). Each subtask owns a pool of `producer_pool_size`
//   transactional producers with ids "<transactional_id_prefix>-<subtask>-<n>": a transaction
//   is flushed at the barrier (pre-commit), committed when its checkpoint completes; the
//   previous transaction waits for its commit on one producer while the next one fills another.
//   Opening a subtask initialises every id of its pool, which on a real broker fences a zombie
//   predecessor and aborts whatever it left open.
//
//   librdkafka cannot resume another process's transaction (Flink's Java client does it by
//   reflection), so the pending list in the checkpoint carries each transaction's records, and
//   every transaction also commits a marker (its checkpoint id as the offset of partition 0 of
//   the topic for consumer group "<transactional id>"; TxnOffsetCommit is atomic with the
//   transaction). On restore a pending transaction whose marker is missing is produced again
//   in a fresh transaction and committed; one whose marker is there is left alone.
//
// Options: bootstrap, topic, format (json | csv | raw), key (field names), guarantee,
// transactional_id_prefix (default "<job name>-<operator id>"), transaction_timeout (default
// 15m, librdkafka's transaction.timeout.ms), producer_pool_size (default 5), flush_timeout
// (default 60s: a flush that takes longer fails the task, which recovers), properties (extra
// librdkafka settings), max_transaction_bytes (default 32 MiB: a checkpoint's transaction may
// hold this many bytes of records, which travel in the checkpoint), transaction_log (a file that gets one JSON line per transaction event,
// and a "sluice.txn" header on every record naming its transaction: for audits and tests).
std::unique_ptr<ops::Operator> MakeKafkaSink(const plan::OperatorSpec& spec);

}  // namespace sluice::connectors
