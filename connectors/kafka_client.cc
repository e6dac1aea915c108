#include "connectors/kafka_client.h"

#include "absl/strings/str_cat.h"

namespace sluice::connectors {

absl::StatusOr<rd_kafka_t*> NewKafkaClient(rd_kafka_type_t type, const KafkaSettings& settings,
                                           absl::string_view what, void (*configure)(rd_kafka_conf_t*, void*),
                                           void* arg) {
  char errstr[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  for (const auto& [k, v] : settings) {
    if (rd_kafka_conf_set(conf, k.c_str(), v.c_str(), errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) {
      rd_kafka_conf_destroy(conf);
      return absl::InvalidArgumentError(absl::StrCat(what, " property ", k, ": ", errstr));
    }
  }
  if (configure != nullptr) configure(conf, arg);
  rd_kafka_t* rk = rd_kafka_new(type, conf, errstr, sizeof(errstr));
  if (rk == nullptr) {
    rd_kafka_conf_destroy(conf);  // rd_kafka_new owns it only on success
    return absl::UnavailableError(absl::StrCat(what, ": ", errstr));
  }
  return rk;
}

absl::Status KafkaErrorStatus(rd_kafka_error_t* error, absl::string_view what) {
  if (error == nullptr) return absl::OkStatus();
  absl::Status s = rd_kafka_error_is_fatal(error)
                       ? absl::FailedPreconditionError(absl::StrCat(what, ": ", rd_kafka_error_string(error), " (fatal)"))
                       : absl::UnavailableError(absl::StrCat(what, ": ", rd_kafka_error_string(error)));
  rd_kafka_error_destroy(error);
  return s;
}

}  // namespace sluice::connectors
