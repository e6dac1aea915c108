#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

struct rd_kafka_s;
struct rd_kafka_mock_cluster_s;

namespace sluice::connectors {

struct EmbeddedKafkaOptions {
  int brokers = 1;
  std::vector<std::pair<std::string, int>> topics;  // name, partitions
};

// A Kafka-protocol endpoint on loopback, built on librdkafka's mock cluster (rdkafka_mock.h),
// for the quickstart and tests: real Kafka clients (kcat, our workers) connect to it over TCP.
//
// Limits of librdkafka 2.0.2's mock, which callers must not paper over: no transaction markers
// (read_committed consumers also see aborted records), no fencing of an old transactional
// producer, TxnOffsetCommit ignored, at most 5 MiB or 100,000 batches kept per partition, no
// CreateTopics from clients, no adding partitions to a topic, random ports, data lost when the
// process stops. Point production jobs at a real broker.
//
// Thread-safe: the mock cluster runs its own thread; the control calls lock inside librdkafka.
class EmbeddedKafka {
 public:
  static absl::StatusOr<std::unique_ptr<EmbeddedKafka>> Start(const EmbeddedKafkaOptions& options);
  ~EmbeddedKafka();

  // "127.0.0.1:port[,127.0.0.1:port...]".
  const std::string& bootstrap() const { return bootstrap_; }
  // Creates topic `name`. kAlreadyExists if it exists: the mock cannot add partitions to a topic.
  absl::Status CreateTopic(const std::string& name, int partitions);
  // Takes broker `id` (1-based) down or up; the mock keeps its data meanwhile.
  absl::Status SetBrokerDown(int id);
  absl::Status SetBrokerUp(int id);

 private:
  EmbeddedKafka() = default;
  rd_kafka_s* handle_ = nullptr;
  rd_kafka_mock_cluster_s* cluster_ = nullptr;
  std::string bootstrap_;
  int brokers_ = 0;
};

}  // namespace sluice::connectors
