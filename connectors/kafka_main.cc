// sluice-kafka: an embedded Kafka-protocol endpoint (librdkafka's mock cluster) for the
// quickstart and tests. Not a broker for production: see connectors/README.md.

#include <iostream>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "common/logging.h"
#include "common/process.h"
#include "connectors/embedded_kafka.h"
#include "httplib.h"

int main(int argc, char** argv) {
  CLI::App app{"sluice-kafka: an embedded Kafka endpoint (librdkafka mock cluster) for tests and demos"};
  sluice::connectors::EmbeddedKafkaOptions opts;
  std::vector<std::string> topics;
  std::string bootstrap_file;
  int control_port = -1;
  app.add_option("--brokers", opts.brokers, "Number of brokers")->capture_default_str()->check(CLI::Range(1, 16));
  app.add_option("--topic", topics, "Topic to create, NAME:PARTITIONS (repeatable)");
  app.add_option("--bootstrap-file", bootstrap_file, "Write the bootstrap address here once serving");
  app.add_option("--control-port", control_port,
                 "HTTP control port (0 = any): POST /brokers/ID/down|up, POST /topics/NAME/PARTITIONS "
                 "(new topics only: the mock cannot add partitions)");
  CLI11_PARSE(app, argc, argv);
  for (const std::string& t : topics) {
    std::vector<std::string> parts = absl::StrSplit(t, ':');
    int partitions = 1;
    if (parts.size() > 2 || parts[0].empty() || (parts.size() == 2 && !absl::SimpleAtoi(parts[1], &partitions))) {
      std::cerr << "sluice-kafka: error: bad --topic '" << t << "' (expected NAME:PARTITIONS)\n";
      return 2;
    }
    opts.topics.push_back({parts[0], partitions});
  }
  sluice::InitLogging("kafka");
  sluice::BlockTerminationSignals();
  auto kafka = sluice::connectors::EmbeddedKafka::Start(opts);
  if (!kafka.ok()) {
    spdlog::error("cannot start: {}", kafka.status());
    return 1;
  }
  httplib::Server control;
  std::thread control_thread;
  int bound_control = -1;
  if (control_port >= 0) {
    auto* k = kafka->get();
    control.Post(R"(/brokers/(\d+)/(down|up))", [k](const httplib::Request& req, httplib::Response& res) {
      int id = std::stoi(req.matches[1]);
      absl::Status s = req.matches[2] == "down" ? k->SetBrokerDown(id) : k->SetBrokerUp(id);
      res.status = s.ok() ? 200 : 400;
      res.set_content(s.ok() ? "ok\n" : std::string(s.message()) + "\n", "text/plain");
    });
    control.Post(R"(/topics/([^/]+)/(\d+))", [k](const httplib::Request& req, httplib::Response& res) {
      absl::Status s = k->CreateTopic(req.matches[1], std::stoi(req.matches[2]));
      res.status = s.ok() ? 200 : s.code() == absl::StatusCode::kAlreadyExists ? 409 : 400;
      res.set_content(s.ok() ? "ok\n" : std::string(s.message()) + "\n", "text/plain");
    });
    control.Get("/healthz", [](const httplib::Request&, httplib::Response& res) { res.set_content("ok\n", "text/plain"); });
    bound_control = control_port == 0 ? control.bind_to_any_port("127.0.0.1")
                                      : (control.bind_to_port("127.0.0.1", control_port) ? control_port : -1);
    if (bound_control < 0) {
      spdlog::error("cannot bind control port {}", control_port);
      return 1;
    }
    control_thread = std::thread([&] { control.listen_after_bind(); });
  }
  spdlog::info("embedded Kafka serving: bootstrap {} ({} broker(s)){}", (*kafka)->bootstrap(), opts.brokers,
               bound_control >= 0 ? ", control http://127.0.0.1:" + std::to_string(bound_control) : "");
  spdlog::info("limits: librdkafka mock cluster - no transaction markers, no producer fencing, "
               "5 MiB per partition, data lost on stop; use a real broker in production");
  std::cout << (*kafka)->bootstrap() << std::endl;
  if (!bootstrap_file.empty()) {
    std::string content = (*kafka)->bootstrap() + "\n" + std::to_string(bound_control) + "\n";
    absl::Status w = sluice::WriteFileAtomically(bootstrap_file, content);
    if (!w.ok()) spdlog::error("{}", w);
  }
  int sig = sluice::WaitForTerminationSignal();
  spdlog::info("received signal {}, stopping", sig);
  if (control_thread.joinable()) {
    control.stop();
    control_thread.join();
  }
  kafka->reset();
  return 0;
}
