// Kafka in, state, Kafka or files out, through failures: kcat produces the input in waves while
// workers are killed with SIGKILL and replaced; the output must pass the per-key exactly-once
// check (update count per key equals the input count per key, the last update carries the
// failure-free total), read from the committed files or, with kcat, from the output topic.
//
// The embedded endpoint (librdkafka's mock) writes no transaction markers, ignores
// TxnOffsetCommit and does not fence old producers, so for the exactly_once Kafka sink the
// visible topic is not the truth: the test replays the sink's transaction log (one line per
// transaction event, from every attempt) to compute what a read_committed consumer of a real
// broker shows, and checks the protocol (ids reused across attempts, redo only of what was not
// committed). With SLUICE_TEST_KAFKA_BOOTSTRAP=host:port set, the same job runs against that
// real broker and is checked with a read_committed kcat consumer; otherwise that test is skipped.

#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <sys/wait.h>

#include <atomic>
#include <cstdlib>
#include <map>
#include <random>
#include <set>

#include "absl/strings/match.h"
#include "httplib.h"
#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"
#include "tests/cluster_fixture.h"
#include "tests/exactly_once_check.h"
#include "tests/kafka_check.h"

namespace sluice::testing {
namespace {

constexpr int64_t kKeys = 500;

class KafkaEndToEndTest : public ClusterTest {
 protected:
  void TearDown() override {
    if (kafka_pid_ > 0) {
      kill(kafka_pid_, SIGTERM);
      waitpid(kafka_pid_, nullptr, 0);
    }
    ClusterTest::TearDown();
  }

  void StartKafka(int* control_port = nullptr) {
    kafka_pid_ = SpawnKafka(dir_, {"events:4", "totals:4"}, &bootstrap_, control_port);
    ASSERT_FALSE(bootstrap_.empty()) << ReadAll(dir_ + "/kafka.log");
  }

  // Produces input records [from, to) with kcat, keyed, so they spread over the partitions.
  void Produce(int64_t from, int64_t to, const std::string& topic = "events") {
    std::string lines;
    for (int64_t s = from; s < to; ++s) {
      int64_t key = (s * 7919) % kKeys;
      absl::StrAppend(&lines, key, ":{\"key\": ", key, ", \"value\": ", s % 1000, "}\n");
    }
    std::ofstream(dir_ + "/wave") << lines;
    std::string out;
    ASSERT_EQ(RunCommand(absl::StrCat("timeout 60 kcat -b ", bootstrap_, " -P -K: -t ", topic, " < ", dir_, "/wave"),
                         &out), 0) << out;
  }

  std::string Job(const std::string& sink, const std::string& input = "events") {
    return absl::StrCat(R"(
name: kafka-e2e
parallelism: 2
checkpoint: {interval: 200ms, timeout: 20s, retain: 3}
restart: {strategy: fixed_delay, attempts: 1000, delay: 100ms}
operators:
  - id: events
    type: kafka
    bootstrap: ")", bootstrap_, R"("
    topic: )", input, R"(
    format: json
    fields: [{name: key, type: int64}, {name: value, type: int64}]
  - {id: by_key, type: key_by, key: [key]}
  - id: totals
    type: aggregate
    aggregates: [{fn: count, as: n}, {fn: sum, field: value, as: total}]
)", sink);
  }

  // Produces `records` in `waves` (one kcat run each, ~20 per second) from a second thread,
  // while this one kills a random worker with SIGKILL every 0.5-1.3 s and starts a replacement,
  // so kills land while records are in flight and checkpoints are running.
  void ProduceWithKills(int64_t records, int waves, const std::string& topic = "events") {
    std::atomic<bool> done{false};
    std::thread producer([&] {
      for (int w = 0; w < waves && !HasFailure(); ++w) {
        Produce(records * w / waves, records * (w + 1) / waves, topic);
        // Not synchronisation: it paces the input, so that it keeps arriving during the kills.
        std::this_thread::sleep_for(std::chrono::milliseconds(30));
      }
      done = true;
    });
    std::mt19937 rng(4242);
    int kills = 0;
    while (!done) {
      // Not synchronisation: a random moment to kill at is what this chaos loop tests.
      std::this_thread::sleep_for(std::chrono::milliseconds(500 + rng() % 800));
      if (done) break;
      int victim = rng() % 2;
      EXPECT_OK(cluster_->KillWorker(victim, SIGKILL));
      EXPECT_OK(cluster_->RestartWorker(victim, -1));
      ++kills;
    }
    producer.join();
    std::cout << kills << " workers killed while producing\n";
  }

  // Every message of `topic` as (transaction id or empty, value).
  std::vector<std::pair<std::string, std::string>> ReadTopic(const std::string& topic, const std::string& extra = "") {
    return ReadKafkaTopic(bootstrap_, topic, extra);
  }

  static std::vector<std::string> Values(const std::vector<std::pair<std::string, std::string>>& messages) {
    std::vector<std::string> v;
    for (const auto& m : messages) v.push_back(m.second);
    return v;
  }

  // Waits until `lines()` covers every expected update (or the timeout passes).
  template <typename Lines>
  std::vector<std::string> AwaitAllUpdates(Lines lines, const Expected& expected, std::chrono::seconds timeout) {
    std::vector<std::string> got;
    WaitFor([&] {
      got = lines();
      return CheckUpdates(got, expected).missing == 0;
    }, timeout, "every expected update", std::chrono::seconds(1));
    return got;
  }

  // The output topic as a read_committed consumer of a real broker would see it (from the
  // sink's transaction log `log`, replayed into *view).
  std::vector<std::string> CommittedLines(const std::string& log, ProtocolView* view) {
    return CommittedKafkaValues(bootstrap_, "totals", log, view);
  }

  pid_t kafka_pid_ = -1;
  std::string bootstrap_;
};

TEST_F(KafkaEndToEndTest, KafkaInputExactlyOnceThroughWorkerKills) {
  StartCluster(2, 2, 1500);
  StartKafka();
  constexpr int64_t kRecords = 100'000;
  const std::string out = dir_ + "/out";
  std::string job = Submit(Job(absl::StrCat("  - {id: out, type: file, path: ", out, "}\n")));
  WaitForState(job, proto::JOB_RUNNING, std::chrono::seconds(10));
  ProduceWithKills(kRecords, 100);
  const Expected expected = ExpectedFor(kRecords, kKeys);
  std::vector<std::string> lines =
      AwaitAllUpdates([&] { return ReadCommittedLines({out}); }, expected, std::chrono::seconds(120));
  auto info = client_->GetJob(job);
  ASSERT_OK(info);
  EXPECT_GE(info->restarts(), 1) << "the kills did not hit the job";
  // Source offsets resumed exactly: no record skipped or counted twice in state, and the
  // exactly-once file sink shows each update once.
  ExpectExactlyOnce(lines, expected);
  ASSERT_OK(client_->Cancel(job));
}

TEST_F(KafkaEndToEndTest, AtLeastOnceKafkaSinkLosesNothingThroughWorkerKills) {
  StartCluster(2, 2, 1500);
  StartKafka();
  constexpr int64_t kRecords = 60'000;
  std::string job = Submit(Job(absl::StrCat(
      "  - {id: out, type: kafka_sink, bootstrap: \"", bootstrap_, "\", topic: totals, key: [key], "
      "guarantee: at_least_once}\n")));
  WaitForState(job, proto::JOB_RUNNING, std::chrono::seconds(10));
  ProduceWithKills(kRecords, 60);
  const Expected expected = ExpectedFor(kRecords, kKeys);
  std::vector<std::string> lines =
      AwaitAllUpdates([&] { return Values(ReadTopic("totals")); }, expected, std::chrono::seconds(120));
  UpdateCheck c = CheckUpdates(lines, expected);
  EXPECT_EQ(c.missing, 0) << "every update is in the output topic";
  EXPECT_EQ(c.final_sum, expected.sum);
  std::cout << "at_least_once under kills: restarts " << client_->GetJob(job)->restarts() << ", " << c.lines << " messages for " << ExpectedLines(expected)
            << " updates, " << c.duplicates << " duplicates\n";
  RecordProperty("duplicates", static_cast<int>(c.duplicates));
  auto info = client_->GetJob(job);
  ASSERT_OK(info);
  EXPECT_GE(info->restarts(), 1) << "the kills did not hit the job";
  ASSERT_OK(client_->Cancel(job));
}

TEST_F(KafkaEndToEndTest, ExactlyOnceKafkaSinkProtocolThroughWorkerKills) {
  StartCluster(2, 2, 1500);
  StartKafka();
  constexpr int64_t kRecords = 60'000;
  const std::string log = dir_ + "/transactions.log";
  std::string job = Submit(Job(absl::StrCat(
      "  - {id: out, type: kafka_sink, bootstrap: \"", bootstrap_, "\", topic: totals, key: [key], "
      "guarantee: exactly_once, transactional_id_prefix: e2e, producer_pool_size: 4, transaction_log: ",
      log, "}\n")));
  WaitForState(job, proto::JOB_RUNNING, std::chrono::seconds(10));
  ProduceWithKills(kRecords, 60);
  const Expected expected = ExpectedFor(kRecords, kKeys);
  ProtocolView view;
  std::vector<std::string> lines =
      AwaitAllUpdates([&] { return CommittedLines(log, &view); }, expected, std::chrono::seconds(120));
  auto info = client_->GetJob(job);
  ASSERT_OK(info);
  EXPECT_GE(info->restarts(), 1) << "the kills did not hit the job";
  ExpectExactlyOnce(lines, expected);
  // Transactional ids are "e2e-<subtask>-<n>" and reused by later attempts, which is what lets
  // a real broker fence the killed attempt's producers.
  for (const std::string& id : view.ids) {
    EXPECT_TRUE(id == "e2e-0-0" || id == "e2e-0-1" || id == "e2e-0-2" || id == "e2e-0-3" || id == "e2e-1-0" ||
                id == "e2e-1-1" || id == "e2e-1-2" || id == "e2e-1-3") << id;
  }
  EXPECT_GE(view.init_attempts["e2e-0-0"].size(), 2u);
  EXPECT_GE(view.init_attempts["e2e-1-0"].size(), 2u);
  std::cout << "exactly_once under kills: " << view.commits << " commits, " << view.redos
            << " redos after recovery, of which " << view.mock_only_redos
            << " only because the mock ignores TxnOffsetCommit\n";
  ASSERT_OK(client_->Cancel(job));
}

TEST_F(KafkaEndToEndTest, StopWithSavepointCommitsTheLastTransactionAndResumes) {
  StartCluster(2, 2, 1500);
  StartKafka();
  const std::string log = dir_ + "/transactions.log";
  const std::string sink = absl::StrCat(
      "  - {id: out, type: kafka_sink, bootstrap: \"", bootstrap_, "\", topic: totals, key: [key], "
      "guarantee: exactly_once, transactional_id_prefix: stop, transaction_log: ", log, "}\n");
  std::string job = Submit(Job(sink));
  WaitForState(job, proto::JOB_RUNNING, std::chrono::seconds(10));
  Produce(0, 20'000);
  WaitUntil(job, [](const proto::JobInfo& i) { return FindOperator(i, "out")->records_in() == 20'000; },
            std::chrono::seconds(30));
  auto savepoint = client_->Savepoint(job, dir_ + "/savepoints", /*stop=*/true);
  ASSERT_OK(savepoint);
  proto::JobInfo stopped = WaitForEnd(job, std::chrono::seconds(30));
  ASSERT_EQ(stopped.state(), proto::JOB_CANCELLED) << stopped.error();
  // The savepoint's transactions were committed before the sink closed: a stopped job leaves
  // nothing open on the broker, and a resumed one has nothing to redo.
  ProtocolView view = ReplayTransactionLog(log);
  EXPECT_GE(view.commits, 2) << "one per subtask at least";
  std::ifstream in(log);
  std::string line;
  int aborts_of_precommitted = 0;
  while (std::getline(in, line)) {
    auto e = nlohmann::json::parse(line);
    if (e["event"] == "abort" && e["checkpoint"].get<int64_t>() > 0) ++aborts_of_precommitted;
  }
  EXPECT_EQ(aborts_of_precommitted, 0);

  // Resumed from the savepoint with more input, the output stays exactly-once.
  auto resumed = client_->SubmitRestoring(Job(sink), "job.yaml", 0, *savepoint, false);
  ASSERT_OK(resumed);
  WaitForState(resumed->job_id(), proto::JOB_RUNNING, std::chrono::seconds(10));
  Produce(20'000, 30'000);
  const Expected expected = ExpectedFor(30'000, kKeys);
  std::vector<std::string> lines =
      AwaitAllUpdates([&] { return CommittedLines(log, &view); }, expected, std::chrono::seconds(60));
  ExpectExactlyOnce(lines, expected);
  ASSERT_OK(client_->Cancel(resumed->job_id()));
}

TEST_F(KafkaEndToEndTest, BrokerOutageDuringTheJobLosesNothing) {
  StartCluster(2, 2, 1500);
  int control_port = 0;
  StartKafka(&control_port);
  ASSERT_GT(control_port, 0);
  constexpr int64_t kRecords = 40'000;
  const std::string out = dir_ + "/out";
  std::string job = Submit(Job(absl::StrCat("  - {id: out, type: file, path: ", out, "}\n")));
  WaitForState(job, proto::JOB_RUNNING, std::chrono::seconds(10));
  Produce(0, kRecords / 2);
  // The broker goes down while the job runs, once its source has read records.
  ASSERT_TRUE(WaitFor([&] {
    auto info = client_->GetJob(job);
    return info.ok() && FindOperator(*info, "events")->records_out() > 0;
  }, std::chrono::seconds(20), "the source to read records"));
  httplib::Client control("127.0.0.1", control_port);
  auto down = control.Post("/brokers/1/down");
  ASSERT_TRUE(down && down->status == 200);
  // Not synchronisation: the broker's 4 s down is the outage under test.
  std::this_thread::sleep_for(std::chrono::seconds(4));
  auto up = control.Post("/brokers/1/up");
  ASSERT_TRUE(up && up->status == 200);
  Produce(kRecords / 2, kRecords);
  const Expected expected = ExpectedFor(kRecords, kKeys);
  std::vector<std::string> lines =
      AwaitAllUpdates([&] { return ReadCommittedLines({out}); }, expected, std::chrono::seconds(120));
  ExpectExactlyOnce(lines, expected);
  auto info = client_->GetJob(job);
  ASSERT_OK(info);
  EXPECT_EQ(info->state(), proto::JOB_RUNNING) << info->error();
  std::cout << "broker outage: job restarts " << info->restarts() << "\n";
  ASSERT_OK(client_->Cancel(job));
}

// Creates topics on a real broker (the embedded endpoint has no CreateTopics).
absl::Status CreateTopics(const std::string& bootstrap, const std::vector<std::string>& names, int partitions) {
  char errstr[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap.c_str(), errstr, sizeof(errstr));
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
  if (rk == nullptr) return absl::UnavailableError(errstr);
  std::vector<rd_kafka_NewTopic_t*> topics;
  for (const auto& n : names) topics.push_back(rd_kafka_NewTopic_new(n.c_str(), partitions, -1, errstr, sizeof(errstr)));
  rd_kafka_queue_t* q = rd_kafka_queue_new(rk);
  rd_kafka_CreateTopics(rk, topics.data(), topics.size(), nullptr, q);
  rd_kafka_event_t* ev = rd_kafka_queue_poll(q, 30000);
  absl::Status s = ev == nullptr ? absl::DeadlineExceededError("CreateTopics timed out")
                   : rd_kafka_event_error(ev) ? absl::UnavailableError(rd_kafka_event_error_string(ev))
                                              : absl::OkStatus();
  if (ev != nullptr) rd_kafka_event_destroy(ev);
  rd_kafka_queue_destroy(q);
  for (auto* t : topics) rd_kafka_NewTopic_destroy(t);
  rd_kafka_destroy(rk);
  return s;
}

TEST_F(KafkaEndToEndTest, ExactlyOnceAgainstARealBrokerWithReadCommitted) {
  const char* external = std::getenv("SLUICE_TEST_KAFKA_BOOTSTRAP");
  if (external == nullptr || *external == '\0') {
    GTEST_SKIP() << "set SLUICE_TEST_KAFKA_BOOTSTRAP=host:port to run the end-to-end exactly-once check "
                    "against a real broker (read_committed consumer)";
  }
  bootstrap_ = external;
  StartCluster(2, 2, 1500);
  const std::string suffix = absl::StrCat(getpid(), "-", std::time(nullptr));
  const std::string in_topic = "sluice-it-events-" + suffix, out_topic = "sluice-it-totals-" + suffix;
  ASSERT_OK(CreateTopics(bootstrap_, {in_topic, out_topic}, 4));
  constexpr int64_t kRecords = 60'000;
  std::string job = Submit(Job(absl::StrCat("  - {id: out, type: kafka_sink, bootstrap: \"", bootstrap_,
                                            "\", topic: ", out_topic, ", key: [key], guarantee: exactly_once, "
                                            "transactional_id_prefix: ", out_topic, "}\n"),
                               in_topic));
  WaitForState(job, proto::JOB_RUNNING, std::chrono::seconds(30));
  ProduceWithKills(kRecords, 60, in_topic);
  const Expected expected = ExpectedFor(kRecords, kKeys);
  std::vector<std::string> lines = AwaitAllUpdates(
      [&] { return Values(ReadTopic(out_topic, "-X isolation.level=read_committed")); }, expected,
      std::chrono::seconds(180));
  ExpectExactlyOnce(lines, expected);
  ASSERT_OK(client_->Cancel(job));
}

}  // namespace
}  // namespace sluice::testing
