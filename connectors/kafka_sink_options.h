#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "plan/operator_type.h"

namespace sluice::connectors {

// `kafka_sink` options (see kafka_sink.h and the README's Kafka section), validated at
// submission. Pure: no librdkafka here, so the coordinator links it.
struct KafkaSinkOptions final : plan::OptionsOf<KafkaSinkOptions> {
  enum class Format { kJson, kCsv, kRaw };
  enum class Guarantee { kNone, kAtLeastOnce, kExactlyOnce };
  std::string bootstrap;
  std::string topic;
  Format format = Format::kJson;
  std::vector<int> key_fields;  // indices into the input schema
  int value_field = -1;         // raw: the string field `value`
  Guarantee guarantee = Guarantee::kAtLeastOnce;
  std::string transactional_id_prefix;  // "": "<job name>-<operator id>", sanitised
  int64_t transaction_timeout_ms = 15 * 60 * 1000;
  int producer_pool_size = 5;
  int64_t flush_timeout_ms = 60000;
  int64_t max_transaction_bytes = 32 << 20;
  std::string transaction_log;  // "": none
  std::vector<std::pair<std::string, std::string>> properties;  // librdkafka producer settings
};

std::unique_ptr<plan::OperatorType> MakeKafkaSinkType();

}  // namespace sluice::connectors
