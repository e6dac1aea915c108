// The embedded Kafka endpoint (sluice-kafka) seen by an independent, standard client: kcat
// produces to it and consumes from it over TCP; brokers go down and come back with their data.

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "httplib.h"
#include "tests/cluster_fixture.h"

namespace sluice::testing {
namespace {

using ::testing::HasSubstr;

class KafkaEndpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir("sluice-kafka");
    pid_ = SpawnKafka(dir_, {"events:3"}, &bootstrap_, &control_port_);
    ASSERT_FALSE(bootstrap_.empty()) << ReadAll(dir_ + "/kafka.log");
  }
  void TearDown() override {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      int status = 0;
      waitpid(pid_, &status, 0);
      EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "sluice-kafka did not stop cleanly";
    }
    std::filesystem::remove_all(dir_);
  }

  std::string Kcat(const std::string& args, int* rc, const std::string& input = "", int timeout_s = 20) {
    std::string cmd = "kcat -b " + bootstrap_ + " " + args;
    if (!input.empty()) {
      std::ofstream(dir_ + "/input") << input;
      cmd += " < " + dir_ + "/input";
    }
    std::string out;
    *rc = RunCommand("timeout " + std::to_string(timeout_s) + " " + cmd, &out);
    return out;
  }

  std::string dir_;
  pid_t pid_ = -1;
  std::string bootstrap_;
  int control_port_ = -1;
};

TEST_F(KafkaEndpointTest, KcatProducesAndConsumes) {
  std::string input;
  for (int i = 0; i < 100; ++i) input += "event-" + std::to_string(i) + "\n";
  int rc = 0;
  std::string out = Kcat("-P -t events -p 1", &rc, input);
  ASSERT_EQ(rc, 0) << out;
  out = Kcat("-C -t events -p 1 -o beginning -e -q", &rc);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_EQ(out, input);
  // Metadata lists the topic with its three partitions.
  out = Kcat("-L -t events", &rc);
  EXPECT_THAT(out, HasSubstr("topic \"events\" with 3 partitions"));
}

TEST_F(KafkaEndpointTest, BrokerOutageKeepsData) {
  int rc = 0;
  ASSERT_EQ((Kcat("-P -t events -p 0", &rc, "before\n"), rc), 0);
  httplib::Client control("127.0.0.1", control_port_);
  auto down = control.Post("/brokers/1/down");
  ASSERT_TRUE(down);
  EXPECT_EQ(down->status, 200);
  std::string out = Kcat("-C -t events -p 0 -o beginning -e -q", &rc, "", 4);
  EXPECT_NE(rc, 0) << "consumed from a broker that is down: " << out;
  auto up = control.Post("/brokers/1/up");
  ASSERT_TRUE(up);
  out = Kcat("-C -t events -p 0 -o beginning -e -q", &rc);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_EQ(out, "before\n");
  auto bad = control.Post("/brokers/7/down");
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 400);
}

// Topics can be added at run time; partitions cannot (librdkafka 2.0.2's mock has no
// CreatePartitions), which is why partition discovery is tested in
// connectors/kafka_source_unit_test.cc with a topic that the source first sees smaller.
TEST_F(KafkaEndpointTest, ControlPortCreatesTopicsButCannotGrowThem) {
  httplib::Client control("127.0.0.1", control_port_);
  auto created = control.Post("/topics/late/2");
  ASSERT_TRUE(created);
  EXPECT_EQ(created->status, 200);
  int rc = 0;
  std::string out = Kcat("-L -t late", &rc);
  EXPECT_THAT(out, HasSubstr("topic \"late\" with 2 partitions"));
  auto grow = control.Post("/topics/events/5");
  ASSERT_TRUE(grow);
  EXPECT_EQ(grow->status, 409);
  EXPECT_THAT(grow->body, HasSubstr("cannot add partitions to a topic"));
  out = Kcat("-L -t events", &rc);
  EXPECT_THAT(out, HasSubstr("topic \"events\" with 3 partitions"));
}

TEST(ClusterWithKafkaTest, ClusterStartKafkaStartsTheEndpoint) {
  const std::string dir = MakeTempDir("sluice-cluster-kafka");
  const std::string sluice = std::string(SLUICE_TEST_BIN_DIR) + "/sluice";
  std::string out;
  ASSERT_EQ(RunCommand(sluice + " cluster start --workers 1 --slots 1 --kafka --kafka-topic orders:2 --dir " + dir, &out), 0)
      << out;
  EXPECT_THAT(out, HasSubstr("kafka:   127.0.0.1:"));
  std::string addr = ReadAll(dir + "/kafka.addr");
  addr = addr.substr(0, addr.find('\n'));
  std::string meta;
  EXPECT_EQ(RunCommand("timeout 20 kcat -b " + addr + " -L -t orders", &meta), 0) << meta;
  EXPECT_THAT(meta, HasSubstr("topic \"orders\" with 2 partitions"));
  out.clear();
  EXPECT_EQ(RunCommand(sluice + " cluster stop --dir " + dir, &out), 0) << out;
  meta.clear();
  EXPECT_NE(RunCommand("timeout 5 kcat -b " + addr + " -L -m 2", &meta), 0) << "endpoint still up";
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace sluice::testing
