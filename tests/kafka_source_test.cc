// The kafka source against the embedded endpoint, fed by kcat (an independent client): exact
// per-key results through checkpoints and the exactly-once file sink, and bad-record policies.

#include <signal.h>
#include <sys/wait.h>

#include <map>

#include "nlohmann/json.hpp"
#include "tests/cluster_fixture.h"

namespace sluice::testing {
namespace {

using ::testing::HasSubstr;

class KafkaSourceTest : public ClusterTest {
 protected:
  void StartKafka(const std::string& topic) { StartKafkaTopics({topic}); }
  void StartKafkaTopics(const std::vector<std::string>& topics) {
    kafka_pid_ = SpawnKafka(dir_, topics, &bootstrap_);
    ASSERT_FALSE(bootstrap_.empty()) << ReadAll(dir_ + "/kafka.log");
  }
  void TearDown() override {
    if (kafka_pid_ > 0) {
      kill(kafka_pid_, SIGTERM);
      waitpid(kafka_pid_, nullptr, 0);
    }
    ClusterTest::TearDown();
  }
  void Produce(int partition, const std::string& lines) {
    std::ofstream(dir_ + "/input") << lines;
    std::string out;
    ASSERT_EQ(RunCommand(absl::StrCat("timeout 30 kcat -b ", bootstrap_, " -P -t events -p ", partition,
                                      " < ", dir_, "/input"), &out), 0) << out;
  }
  std::string Job(const std::string& out, const std::string& on_error, bool checkpoints,
                  const std::string& extra = "") {
    return absl::StrCat("name: from-kafka\nparallelism: 2\n",
                        checkpoints ? "checkpoint: {interval: 200ms}\n" : "", R"(
operators:
  - id: events
    type: kafka
    bootstrap: ")", bootstrap_, R"("
    topic: events
    format: json
    bounded: true
    on_error: )", on_error, extra, R"(
    fields: [{name: user, type: int64}, {name: amount, type: int64}]
  - {id: by_user, type: key_by, key: [user]}
  - {id: totals, type: aggregate, aggregates: [{fn: count, as: n}, {fn: sum, field: amount, as: total}]}
  - {id: out, type: file, path: )", out, "}\n");
  }

  pid_t kafka_pid_ = -1;
  std::string bootstrap_;
};

TEST_F(KafkaSourceTest, CountsEveryRecordOnceAndSkipsGarbage) {
  StartCluster(2, 2);
  StartKafka("events:4");
  std::map<int64_t, int64_t> count, sum;
  for (int p = 0; p < 4; ++p) {
    std::string lines;
    for (int i = 0; i < 5000; ++i) {
      int64_t user = (p * 5000 + i) % 97, amount = i % 13;
      count[user]++;
      sum[user] += amount;
      lines += absl::StrCat("{\"user\": ", user, ", \"amount\": ", amount, "}\n");
      if (i % 1000 == 999) lines += "this is not json\n{\"user\": \"x\"}\n";
    }
    Produce(p, lines);
  }
  const std::string out = dir_ + "/out";
  std::string job = Submit(Job(out, "skip", true));
  proto::JobInfo info = WaitForEnd(job, std::chrono::seconds(60));
  ASSERT_EQ(info.state(), proto::JOB_FINISHED) << info.error();
  EXPECT_EQ(FindOperator(info, "events")->records_out(), 20000u);
  EXPECT_EQ(FindOperator(info, "events")->records_skipped(), 40u) << "2 bad lines x 5 x 4 partitions";

  std::map<int64_t, int64_t> last_n, last_total, updates;
  for (const auto& entry : std::filesystem::directory_iterator(out)) {
    ASSERT_EQ(entry.path().extension(), ".jsonl") << entry.path();
    std::ifstream in(entry.path());
    std::string line;
    while (std::getline(in, line)) {
      auto j = nlohmann::json::parse(line);
      int64_t user = j["user"].get<int64_t>();
      updates[user]++;
      if (j["n"].get<int64_t>() > last_n[user]) {
        last_n[user] = j["n"].get<int64_t>();
        last_total[user] = j["total"].get<int64_t>();
      }
    }
  }
  EXPECT_EQ(updates, count) << "one update per record";
  EXPECT_EQ(last_n, count);
  EXPECT_EQ(last_total, sum);
}

TEST_F(KafkaSourceTest, FailPolicyNamesTopicPartitionAndOffset) {
  StartCluster(1, 2);
  StartKafka("events:2");
  Produce(0, "{\"user\": 1, \"amount\": 2}\n");
  Produce(1, "{\"user\": 1, \"amount\": 2}\n{\"user\": 1, \"amount\": 2}\ngarbage\n");
  std::string job = Submit(Job(dir_ + "/out", "fail", false));
  proto::JobInfo info = WaitForEnd(job, std::chrono::seconds(30));
  ASSERT_EQ(info.state(), proto::JOB_FAILED);
  EXPECT_THAT(info.error(), HasSubstr("bad record at topic events partition 1 offset 2: not a JSON object"));
  EXPECT_THAT(info.error(), HasSubstr("operator 'events'"));
}

TEST_F(KafkaSourceTest, DeadLetterPolicyKeepsOriginalBytesAndError) {
  StartCluster(1, 2);
  std::string out;
  StartKafkaTopics({"events:2", "dlq:1"});
  Produce(0, "{\"user\": 1, \"amount\": 2}\nnot json at all\n{\"user\": 3, \"amount\": 4}\n");
  Produce(1, "{\"user\": 5}\n");
  std::string job = Submit(Job(dir_ + "/out", "dead_letter", true, "\n    dead_letter_topic: dlq"));
  proto::JobInfo info = WaitForEnd(job, std::chrono::seconds(30));
  ASSERT_EQ(info.state(), proto::JOB_FINISHED) << info.error();
  EXPECT_EQ(FindOperator(info, "events")->records_out(), 2u);
  out.clear();
  ASSERT_EQ(RunCommand(absl::StrCat("timeout 20 kcat -b ", bootstrap_,
                                    " -C -t dlq -o beginning -e -q -f '%s|%h\\n'"), &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("not json at all|sluice.error=not a JSON object,sluice.origin=topic events partition 0 offset 1"));
  EXPECT_THAT(out, HasSubstr("{\"user\": 5}|sluice.error=missing field 'amount'"));
}

}  // namespace
}  // namespace sluice::testing
