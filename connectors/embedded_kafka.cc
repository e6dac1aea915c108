#include "connectors/embedded_kafka.h"

// rdkafka.h must come before rdkafka_mock.h.
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace sluice::connectors {

absl::StatusOr<std::unique_ptr<EmbeddedKafka>> EmbeddedKafka::Start(const EmbeddedKafkaOptions& options) {
  if (options.brokers < 1 || options.brokers > 16) {
    return absl::InvalidArgumentError("brokers must be between 1 and 16");
  }
  std::unique_ptr<EmbeddedKafka> k(new EmbeddedKafka());
  char errstr[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  if (rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) {
    rd_kafka_conf_destroy(conf);
    return absl::InternalError(errstr);
  }
  // The mock cluster lives in a client handle of its own.
  k->handle_ = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
  if (k->handle_ == nullptr) {
    return absl::InternalError(absl::StrCat("cannot create librdkafka handle: ", errstr));
  }
  k->cluster_ = rd_kafka_mock_cluster_new(k->handle_, options.brokers);
  if (k->cluster_ == nullptr) return absl::InternalError("cannot create the mock Kafka cluster");
  k->brokers_ = options.brokers;
  k->bootstrap_ = rd_kafka_mock_cluster_bootstraps(k->cluster_);
  for (const auto& [name, partitions] : options.topics) {
    SLUICE_RETURN_IF_ERROR(k->CreateTopic(name, partitions));
  }
  return k;
}

EmbeddedKafka::~EmbeddedKafka() {
  if (cluster_ != nullptr) rd_kafka_mock_cluster_destroy(cluster_);
  if (handle_ != nullptr) rd_kafka_destroy(handle_);
}

absl::Status EmbeddedKafka::CreateTopic(const std::string& name, int partitions) {
  if (name.empty() || partitions < 1 || partitions > 10000) {
    return absl::InvalidArgumentError(absl::StrCat("bad topic '", name, "' with ", partitions, " partitions"));
  }
  rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(cluster_, name.c_str(), partitions, 1);
  if (err == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
    return absl::AlreadyExistsError(absl::StrCat(
        "topic ", name, " already exists, and the embedded endpoint cannot add partitions to a topic "
        "(librdkafka 2.0.2's mock cluster has no CreatePartitions): create it with its final count"));
  }
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return absl::InternalError(absl::StrCat("cannot create topic ", name, ": ", rd_kafka_err2str(err)));
  }
  return absl::OkStatus();
}

absl::Status EmbeddedKafka::SetBrokerDown(int id) {
  if (id < 1 || id > brokers_) return absl::InvalidArgumentError(absl::StrCat("no broker ", id));
  rd_kafka_resp_err_t err = rd_kafka_mock_broker_set_down(cluster_, id);
  if (err) return absl::InternalError(rd_kafka_err2str(err));
  return absl::OkStatus();
}

absl::Status EmbeddedKafka::SetBrokerUp(int id) {
  if (id < 1 || id > brokers_) return absl::InvalidArgumentError(absl::StrCat("no broker ", id));
  rd_kafka_resp_err_t err = rd_kafka_mock_broker_set_up(cluster_, id);
  if (err) return absl::InternalError(rd_kafka_err2str(err));
  return absl::OkStatus();
}

}  // namespace sluice::connectors
