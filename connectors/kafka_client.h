#pragma once

#include <librdkafka/rdkafka.h>

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace sluice::connectors {

// librdkafka settings, applied in order (a later one overrides an earlier one).
using KafkaSettings = std::vector<std::pair<std::string, std::string>>;

// Creates a librdkafka client of `type` with `settings`; `configure` (optional) adds callbacks
// or an opaque to the configuration. A rejected setting is kInvalidArgument naming it and `what`
// (e.g. "kafka_sink"); a client librdkafka cannot create is kUnavailable. The configuration is
// freed on every path.
absl::StatusOr<rd_kafka_t*> NewKafkaClient(rd_kafka_type_t type, const KafkaSettings& settings,
                                           absl::string_view what,
                                           void (*configure)(rd_kafka_conf_t*, void*) = nullptr,
                                           void* arg = nullptr);

// The status of a librdkafka error object (consumed): OK for null; kFailedPrecondition for a
// fatal error (it will not go away by retrying: fenced, not authorised), else kUnavailable.
absl::Status KafkaErrorStatus(rd_kafka_error_t* error, absl::string_view what);

}  // namespace sluice::connectors
