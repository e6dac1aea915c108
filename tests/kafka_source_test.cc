// The kafka source against the embedded endpoint, fed by kcat (an independent client): exact
// per-key results through checkpoints and the exactly-once file sink, bad-record policies, and
// event time (watermarks seen in the job status, /metrics and `sluice status`).

#include <signal.h>
#include <sys/wait.h>

#include <map>

#include "absl/strings/str_split.h"
#include "httplib.h"
#include "nlohmann/json.hpp"
#include "tests/cluster_fixture.h"
#include "tests/exactly_once_check.h"
#include "tests/prometheus_text.h"

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
  // The source `events` reading JSON from topic events, with `options` (YAML lines indented
  // by four spaces).
  std::string Source(const std::string& options) const {
    return absl::StrCat(R"(  - id: events
    type: kafka
    bootstrap: ")", bootstrap_, R"("
    topic: events
    format: json
)", options);
  }
  std::string Job(const std::string& out, const std::string& on_error, bool checkpoints,
                  const std::string& extra = "") {
    return absl::StrCat("name: from-kafka\nparallelism: 2\n",
                        checkpoints ? "checkpoint: {interval: 200ms}\n" : "", "operators:\n",
                        Source(absl::StrCat("    bounded: true\n    on_error: ", on_error, extra, R"(
    fields: [{name: user, type: int64}, {name: amount, type: int64}]
)")), R"(  - {id: by_user, type: key_by, key: [user]}
  - {id: totals, type: aggregate, aggregates: [{fn: count, as: n}, {fn: sum, field: amount, as: total}]}
  - {id: out, type: file, path: )", out, "}\n");
  }

  // A job reading `events` (2 subtasks, one partition each) with event time from field ts,
  // bounded out-of-orderness 2 s, and `idle` as idle_timeout ("" for none); per-user counts.
  std::string EventTimeJob(const std::string& out, const std::string& idle) {
    return absl::StrCat(R"(name: event-time
parallelism: 2
operators:
  - id: events
    type: kafka
    bootstrap: ")", bootstrap_, R"("
    topic: events
    fields: [{name: user, type: int64}, {name: amount, type: int64}, {name: ts, type: timestamp}]
    event_time: {field: ts, max_out_of_orderness: 2s)", idle.empty() ? "" : ", idle_timeout: " + idle, R"(}
  - {id: by_user, type: key_by, key: [user]}
  - {id: totals, type: aggregate, aggregates: [{fn: count, as: n}]}
  - {id: out, type: file, path: )", out, "}\n");
  }

  // `n` out-of-order records (within 1 s) for partition 0; returns their largest timestamp.
  int64_t EventLines(int n, int64_t base, std::string* lines) {
    int64_t max_ts = 0;
    for (int i = 0; i < n; ++i) {
      const int64_t ts = base + i * 100 - (i % 3) * 350;
      max_ts = std::max(max_ts, ts);
      *lines += absl::StrCat("{\"user\": ", i % 7, ", \"amount\": 1, \"ts\": ", ts, "}\n");
    }
    return max_ts;
  }

  // Every worker's /metrics, concatenated; each must parse as Prometheus text.
  std::string AllMetrics() {
    std::string all;
    auto workers = client_->ListWorkers();
    if (!workers.ok()) return all;
    for (const auto& w : workers->workers()) {
      auto text = ScrapeMetrics(w.http_address());
      if (!text.ok()) continue;
      EXPECT_OK(ParsePrometheusText(*text).status()) << "from worker " << w.worker_id();
      all += *text;
    }
    return all;
  }
  static std::string WatermarkMetric(const std::string& job, const std::string& op, int subtask, int64_t value) {
    return absl::StrCat("sluice_operator_input_watermark_ms{job=\"", job, "\",operator=\"", op,
                        "\",subtask=\"", subtask, "\"} ", value, "\n");
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
  EXPECT_THAT(info.error(), HasSubstr("bad record at topic events partition 1 offset 2: not valid JSON (syntax error at byte 1)"));
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
  EXPECT_THAT(out, HasSubstr("not json at all|sluice.error=not valid JSON (syntax error at byte 2),sluice.origin=topic events partition 0 offset 1"));
  EXPECT_THAT(out, HasSubstr("{\"user\": 5}|sluice.error=missing field 'amount'"));
}

// Dead letters across a kill -9: an unbounded source with on_error: dead_letter reads waves of
// good records (JSON with a unique id) and bad ones ("bad <n>", not JSON). Both workers are
// killed after a wave was read but before a checkpoint covered it, so the restored job reads
// that wave again from the checkpoint's offsets: every good record is committed once and every
// bad one is in the dead-letter topic once (the restored source does not write again the dead
// letters that the failed attempt already wrote after the checkpoint).
TEST_F(KafkaSourceTest, DeadLettersAreWrittenOnceAcrossAKillAndRestore) {
  StartCluster(2, 2, 1500);
  StartKafkaTopics({"events:2", "dlq:1"});
  const std::string out = dir_ + "/out";
  const std::string job = Submit(absl::StrCat(R"(name: dead-letters
parallelism: 2
checkpoint: {interval: 2s, timeout: 20s}
restart: {strategy: fixed_delay, attempts: 1000, delay: 100ms}
operators:
)", Source("    on_error: dead_letter\n    dead_letter_topic: dlq\n    fields: [{name: id, type: int64}]\n"),
                                              "  - {id: out, type: file, path: ", out, "}\n"));
  // Wave w: per partition, 500 good records and 5 bad ones.
  int64_t good = 0, bad = 0;
  auto wave = [&] {
    for (int p = 0; p < 2; ++p) {
      std::string lines;
      for (int i = 0; i < 500; ++i) {
        absl::StrAppend(&lines, "{\"id\": ", good++, "}\n");
        if (i % 100 == 50) absl::StrAppend(&lines, "bad ", bad++, "\n");
      }
      Produce(p, lines);
    }
  };
  auto read = [&](const proto::JobInfo& i) {
    const proto::OperatorInfo* e = FindOperator(i, "events");
    return e == nullptr ? 0 : static_cast<int64_t>(e->records_out() + e->records_skipped());
  };
  wave();
  // Wave 1 read and covered by a checkpoint.
  proto::JobInfo info = WaitUntil(job, [&](const proto::JobInfo& i) { return read(i) == good + bad; },
                                  std::chrono::seconds(30));
  ASSERT_EQ(read(info), good + bad) << info.error();
  const int64_t covered = LatestCompletedCheckpoint(WaitForCheckpoint(job, LatestCompletedCheckpoint(info),
                                                                      std::chrono::seconds(30)));
  // Wave 2 read, then both workers killed. (Should a checkpoint complete in between, another
  // wave is tried.)
  for (int attempt = 0; attempt < 5; ++attempt) {
    const int64_t before = LatestCompletedCheckpoint(client_->GetJob(job).value());
    wave();
    if (HasFatalFailure()) return;
    info = WaitUntil(job, [&](const proto::JobInfo& i) { return read(i) == good + bad; },
                     std::chrono::seconds(30));
    ASSERT_EQ(read(info), good + bad) << info.error();
    if (LatestCompletedCheckpoint(info) == before) break;
  }
  ASSERT_GT(covered, 0);
  for (int w = 0; w < 2; ++w) ASSERT_OK(cluster_->KillWorker(w, SIGKILL));
  for (int w = 0; w < 2; ++w) ASSERT_OK(cluster_->RestartWorker(w, -1));
  // Every good record committed (so a checkpoint after the replay completed, and the dead
  // letters before it are flushed).
  ASSERT_TRUE(WaitFor([&] {
    return std::filesystem::exists(out) && static_cast<int64_t>(ReadCommittedLines({out}).size()) >= good;
  }, std::chrono::seconds(60), "every good record committed", std::chrono::milliseconds(100)));
  info = client_->GetJob(job).value();
  EXPECT_GE(info.restarts(), 1) << "the kill did not hit the job";
  ASSERT_OK(client_->Cancel(job));
  EXPECT_EQ(WaitForEnd(job, std::chrono::seconds(30)).state(), proto::JOB_CANCELLED);

  std::map<int64_t, int> ids;
  for (const std::string& line : ReadCommittedLines({out})) ids[nlohmann::json::parse(line)["id"].get<int64_t>()]++;
  std::map<int64_t, int> expected_ids;
  for (int64_t i = 0; i < good; ++i) expected_ids[i] = 1;
  EXPECT_EQ(ids, expected_ids);
  std::string dlq;
  ASSERT_EQ(RunCommand(absl::StrCat("timeout 20 kcat -b ", bootstrap_, " -C -t dlq -o beginning -e -q -f '%s\\n'"),
                       &dlq), 0) << dlq;
  std::map<std::string, int> letters, expected_letters;
  for (absl::string_view l : absl::StrSplit(dlq, '\n', absl::SkipEmpty())) letters[std::string(l)]++;
  for (int64_t i = 0; i < bad; ++i) expected_letters[absl::StrCat("bad ", i)] = 1;
  EXPECT_EQ(letters, expected_letters);
}

// Records arrive only in partition 0. Partition 1 (subtask 1) turns idle after idle_timeout, so
// it does not hold event time back: downstream, the watermark reaches max_ts - 2 s - 1 ms.
TEST_F(KafkaSourceTest, IdlePartitionDoesNotHoldTheWatermarkBack) {
  StartCluster(2, 2);
  StartKafka("events:2");
  std::string lines;
  const int64_t max_ts = EventLines(200, 1'700'000'000'000, &lines);
  Produce(0, lines);
  const int64_t expected = max_ts - 2000 - 1;
  std::string job = Submit(EventTimeJob(dir_ + "/out", "1s"));
  proto::JobInfo info = WaitUntil(job, [&](const proto::JobInfo& i) {
    const proto::OperatorInfo* t = FindOperator(i, "totals");
    const proto::OperatorInfo* e = FindOperator(i, "events");
    return t != nullptr && t->idle_subtasks() == 2 && t->input_watermark_ms() == expected &&
           e->idle_subtasks() == 2;
  }, std::chrono::seconds(30));
  ASSERT_EQ(info.state(), proto::JOB_RUNNING) << info.error();
  const proto::OperatorInfo* events = FindOperator(info, "events");
  const proto::OperatorInfo* totals = FindOperator(info, "totals");
  ASSERT_NE(totals, nullptr);
  EXPECT_EQ(events->records_out(), 200u);
  EXPECT_EQ(totals->records_in(), 200u);
  ASSERT_TRUE(totals->has_input_watermark_ms());
  EXPECT_EQ(totals->input_watermark_ms(), expected);
  EXPECT_EQ(FindOperator(info, "out")->input_watermark_ms(), expected) << "chained with totals";
  // Both source subtasks are idle by now (no record for 1 s); subtask 0's watermark stands.
  EXPECT_EQ(events->idle_subtasks(), 2);
  EXPECT_EQ(events->input_watermark_ms(), expected);

  // The same in each worker's /metrics and in `sluice status`.
  const std::string metrics = AllMetrics();
  for (int s = 0; s < 2; ++s) {
    EXPECT_THAT(metrics, HasSubstr(WatermarkMetric(job, "totals", s, expected))) << metrics;
  }
  EXPECT_THAT(metrics, HasSubstr(absl::StrCat("sluice_operator_input_idle{job=\"", job,
                                              "\",operator=\"totals\",subtask=\"0\"} 1\n")));
  std::string status;
  ASSERT_EQ(RunCommand(absl::StrCat(SLUICE_TEST_BIN_DIR, "/sluice --coordinator ", cluster_->coordinator_address(),
                                    " status ", job), &status), 0) << status;
  EXPECT_THAT(status, HasSubstr(absl::StrCat("watermark ", expected, " (2023-11-14T")));
  EXPECT_THAT(status, HasSubstr(", idle\n"));
  ASSERT_OK(client_->Cancel(job));
  EXPECT_EQ(WaitForEnd(job, std::chrono::seconds(30)).state(), proto::JOB_CANCELLED);
}

// Without idle_timeout the empty partition 1 holds the watermark: subtask 0 has one, but
// downstream has none, until partition 1's first record.
TEST_F(KafkaSourceTest, WithoutIdleTimeoutAnEmptyPartitionHoldsTheWatermark) {
  StartCluster(2, 2);
  StartKafka("events:2");
  std::string lines;
  const int64_t max_ts = EventLines(200, 1'700'000'000'000, &lines);
  Produce(0, lines);
  std::string job = Submit(EventTimeJob(dir_ + "/out", ""));
  proto::JobInfo info = WaitUntil(job, [&](const proto::JobInfo& i) {
    const proto::OperatorInfo* t = FindOperator(i, "totals");
    return t != nullptr && t->records_in() == 200;
  }, std::chrono::seconds(30));
  ASSERT_EQ(FindOperator(info, "totals")->records_in(), 200u) << info.error();
  // Source subtask 0 has its watermark...
  const std::string upstream = WatermarkMetric(job, "events", 0, max_ts - 2001);
  ASSERT_TRUE(WaitFor([&] { return AllMetrics().find(upstream) != std::string::npos; },
                      std::chrono::seconds(15), upstream + " in /metrics", std::chrono::milliseconds(50)))
      << AllMetrics();
  // ... but downstream waits for partition 1: after several watermark intervals and
  // heartbeats, still none.
  info = WaitUntil(job, [&](const proto::JobInfo& i) {
    return FindOperator(i, "totals")->has_input_watermark_ms();
  }, std::chrono::seconds(3));
  EXPECT_FALSE(FindOperator(info, "totals")->has_input_watermark_ms());
  EXPECT_FALSE(FindOperator(info, "events")->has_input_watermark_ms()) << "subtask 1 has none";
  EXPECT_EQ(FindOperator(info, "totals")->idle_subtasks(), 0);
  // -2^63, Flink's "no watermark", which Prometheus text shows as a rounded double.
  EXPECT_THAT(AllMetrics(), HasSubstr(absl::StrCat("sluice_operator_input_watermark_ms{job=\"", job,
                                                   "\",operator=\"totals\",subtask=\"0\"} -9.22337e+18\n")));

  // Partition 1's first record releases it: the minimum over both partitions.
  const int64_t p1_ts = max_ts - 5000;
  Produce(1, absl::StrCat("{\"user\": 1, \"amount\": 1, \"ts\": ", p1_ts, "}\n"));
  info = WaitUntil(job, [&](const proto::JobInfo& i) {
    return FindOperator(i, "totals")->has_input_watermark_ms();
  }, std::chrono::seconds(30));
  ASSERT_TRUE(FindOperator(info, "totals")->has_input_watermark_ms());
  EXPECT_EQ(FindOperator(info, "totals")->input_watermark_ms(), p1_ts - 2001);
  ASSERT_OK(client_->Cancel(job));
  EXPECT_EQ(WaitForEnd(job, std::chrono::seconds(30)).state(), proto::JOB_CANCELLED);
}

}  // namespace
}  // namespace sluice::testing
