#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "plan/operator_type.h"
#include "plan/option_parsing.h"

namespace sluice::connectors {

// `kafka` source options (see kafka_source.h and the README's Kafka section), validated at
// submission. Pure: no librdkafka here, so the coordinator links it.
struct KafkaSourceOptions final : plan::OptionsOf<KafkaSourceOptions> {
  enum class Format { kJson, kCsv, kRaw };
  enum class Start { kEarliest, kLatest, kCommitted };
  enum class OnError { kFail, kSkip, kDeadLetter };
  std::string bootstrap;
  std::vector<std::string> topics;  // `topic` or `topics`
  Format format = Format::kJson;
  Start start = Start::kEarliest;
  std::string group;  // "": "sluice-<job id>"
  bool bounded = false;
  OnError on_error = OnError::kFail;
  std::string dead_letter_topic;  // kDeadLetter
  int64_t partition_discovery_ms = 30000;  // 0: off; bounded sources never discover
  // librdkafka consumer settings. The source overrides enable.auto.commit (false: offsets live
  // in checkpoints) and enable.partition.eof (true when bounded or with an event_time
  // idle_timeout, which need end-of-partition events; false otherwise).
  std::vector<std::pair<std::string, std::string>> properties;
  std::optional<plan::EventTimeSpec> event_time;
  Schema schema;  // the output (raw: key, value; with kafka_timestamp, that field last)
};

std::unique_ptr<plan::OperatorType> MakeKafkaSourceType();

}  // namespace sluice::connectors
