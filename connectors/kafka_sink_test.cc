// The kafka_sink against the embedded Kafka endpoint (librdkafka's mock cluster, over TCP),
// read back with kcat. The mock writes no transaction markers and does not fence old
// producers, so what a broker would make visible cannot be observed here: the exactly-once
// tests check our side of the protocol instead, through the sink's transaction log and the
// "sluice.txn" header on every record (which transaction wrote it), and they compute what a
// read_committed consumer of a real broker would see: the records of committed transactions.

#include "connectors/kafka_sink.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/clock.h"
#include "common/metrics.h"
#include "common/status.h"
#include "common/status_matchers.h"
#include "connectors/embedded_kafka.h"
#include "connectors/kafka_source.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "operators/registry.h"
#include "plan/job_spec.h"

namespace sluice::connectors {
namespace {

using ::sluice::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

class NullOutput final : public ops::Output {
 public:
  absl::Status Emit(const Record&) override { return absl::OkStatus(); }
};

struct Message {
  std::string key, value, txn;  // txn: "<transactional id>#<instance>"
};

class KafkaSinkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK(ops::RegisterBuiltinOperators(&registry_));
    ASSERT_OK(RegisterConnectorOperators(&registry_));
    dir_ = absl::StrCat(::testing::TempDir(), "/kafka-sink-", getpid(), "-",
                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    EmbeddedKafkaOptions o;
    o.topics = {{"out", 2}};
    auto k = EmbeddedKafka::Start(o);
    ASSERT_OK(k);
    kafka_ = *std::move(k);
  }

  void Load(const std::string& sink_options, bool checkpoints = true) {
    std::string yaml = absl::StrCat("name: t\n", checkpoints ? "checkpoint: {interval: 1s}\n" : "", R"(
operators:
  - id: gen
    type: datagen
    count: 1
    fields: [{name: user, type: int64, expr: "seq"}, {name: n, type: int64, expr: "seq"}]
  - id: out
    type: kafka_sink
    bootstrap: ")", kafka_->bootstrap(), R"("
    topic: out
    key: [user]
    transaction_log: )", dir_, "/txn.log\n", sink_options);
    auto job = plan::ParseJobSpec(yaml, "job.yaml", registry_.catalog());
    ASSERT_OK(job);
    job_ = *std::move(job);
  }

  absl::StatusOr<std::unique_ptr<ops::Operator>> Open(int64_t attempt, const std::vector<std::string>* restored,
                                                      int subtask = 0, int parallelism = 1) {
    const plan::OperatorSpec& spec = job_.operators.back();
    SLUICE_ASSIGN_OR_RETURN(auto op, registry_.Create(spec));
    ops::OperatorContext ctx;
    ctx.job = &job_;
    ctx.spec = &spec;
    ctx.job_id = "job-1";
    ctx.subtask = subtask;
    ctx.parallelism = parallelism;
    ctx.clock = &clock_;
    ctx.task_name = absl::StrCat("job-1/out#", subtask);
    ctx.attempt = attempt;
    ctx.checkpointing = job_.checkpoint.enabled();
    ctx.metrics = &metrics_;
    ctx.metric_labels = {{"operator", "out"}, {"subtask", absl::StrCat(subtask)}};
    ctx.metrics_owner = absl::StrCat("attempt-", attempt);
    if (restored != nullptr) {
      ctx.restored = true;
      ctx.restored_checkpoint_id = 2;
      ctx.state_origin = StateOrigin("job-1", spec.id, spec.type, subtask, 2);
      ctx.restored_state = *restored;
    }
    SLUICE_RETURN_IF_ERROR(op->Open(ctx, &null_));
    return op;
  }

  static absl::Status Write(ops::Operator* op, int64_t user, int64_t n) {
    Record r(2);
    r.SetInt(0, user);
    r.SetInt(1, n);
    return op->Process(r);
  }

  // Every message of the topic, read with kcat.
  std::vector<Message> ReadTopic() {
    std::string cmd = absl::StrCat("timeout 30 kcat -b ", kafka_->bootstrap(),
                                   " -C -t out -o beginning -e -q -f '%k|%s|%h\\n' 2>&1");
    std::vector<Message> out;
    FILE* p = popen(cmd.c_str(), "r");
    char line[4096];
    while (p != nullptr && std::fgets(line, sizeof(line), p) != nullptr) {
      std::vector<std::string> f = absl::StrSplit(absl::StripTrailingAsciiWhitespace(line), '|');
      if (f.size() != 3) {
        ADD_FAILURE() << "kcat: " << line;
        continue;
      }
      Message m{f[0], f[1], ""};
      if (absl::StartsWith(f[2], "sluice.txn=")) m.txn = f[2].substr(11);
      out.push_back(m);
    }
    if (p != nullptr) pclose(p);
    return out;
  }

  std::vector<nlohmann::json> Events() {
    std::vector<nlohmann::json> events;
    std::ifstream in(dir_ + "/txn.log");
    std::string line;
    while (std::getline(in, line)) events.push_back(nlohmann::json::parse(line));
    return events;
  }
  // "event txn checkpoint" for each event, in order, to compare with a readable list.
  std::vector<std::string> EventNames() {
    std::vector<std::string> names;
    for (const auto& e : Events()) {
      names.push_back(absl::StrCat(e["event"].get<std::string>(), " ", e["txn"].get<std::string>(), " ",
                                   e["checkpoint"].get<int64_t>()));
    }
    return names;
  }

  // What a read_committed consumer of a real broker would see: records whose transaction
  // instance committed (a commit, or a redo after recovery), as sorted values.
  std::vector<std::string> CommittedValues() {
    std::set<std::string> committed;
    for (const auto& e : Events()) {
      std::string ev = e["event"];
      if (ev == "commit" || ev == "recover_redo") {
        committed.insert(absl::StrCat(e["txn"].get<std::string>(), "#", e["instance"].get<std::string>()));
      }
    }
    std::vector<std::string> values;
    for (const Message& m : ReadTopic()) {
      EXPECT_FALSE(m.txn.empty()) << "record without a transaction header: " << m.value;
      if (committed.count(m.txn)) values.push_back(m.value);
    }
    std::sort(values.begin(), values.end());
    return values;
  }

  static std::string Value(int64_t user, int64_t n) { return absl::StrCat("{\"user\":", user, ",\"n\":", n, "}"); }

  // The metric `name{operator="out",subtask="0"}` as rendered.
  std::string Metric(const std::string& name) {
    std::string text = metrics_.RenderPrometheus();
    std::string prefix = name + "{operator=\"out\",subtask=\"0\"} ";
    size_t at = text.rfind(prefix);  // the latest attempt's
    if (at == std::string::npos) return "absent";
    return text.substr(at + prefix.size(), text.find('\n', at) - at - prefix.size());
  }

  ops::OperatorRegistry registry_;
  MetricsRegistry metrics_;
  FakeClock clock_;
  NullOutput null_;
  plan::JobSpec job_;
  std::string dir_;
  std::unique_ptr<EmbeddedKafka> kafka_;
};

TEST_F(KafkaSinkTest, TransactionsCommitOnlyWhenTheirCheckpointCompletes) {
  Load("    guarantee: exactly_once\n    producer_pool_size: 3\n");
  auto sink = Open(1, nullptr);
  ASSERT_OK(sink);
  ops::Operator* op = sink->get();
  ASSERT_OK(Write(op, 1, 1));
  ASSERT_OK(Write(op, 2, 1));
  std::vector<std::string> entries;
  ASSERT_OK(op->SnapshotState(1, &entries));
  ASSERT_OK(Write(op, 1, 2));  // the next transaction fills another producer meanwhile
  EXPECT_THAT(EventNames(), ElementsAre("init t-out-0-0 0", "init t-out-0-1 0", "init t-out-0-2 0",
                                        "begin t-out-0-0 0", "precommit t-out-0-0 1", "begin t-out-0-1 0"))
      << "nothing commits before checkpoint 1 completes";
  EXPECT_TRUE(CommittedValues().empty());

  EXPECT_EQ(Metric("sluice_kafka_sink_transactions_pending"), "1");
  ASSERT_OK(op->NotifyCheckpointComplete(1));
  EXPECT_EQ(EventNames().back(), "commit t-out-0-0 1");
  EXPECT_EQ(Metric("sluice_kafka_sink_transactions_pending"), "0");
  EXPECT_EQ(Metric("sluice_kafka_sink_transactions_committed_total"), "1");
  EXPECT_THAT(CommittedValues(), ElementsAre(Value(1, 1), Value(2, 1)));

  entries.clear();
  ASSERT_OK(op->SnapshotState(2, &entries));
  ASSERT_OK(op->NotifyCheckpointComplete(2));
  EXPECT_EQ(EventNames().back(), "commit t-out-0-1 2");
  EXPECT_THAT(CommittedValues(), ElementsAre(Value(1, 1), Value(1, 2), Value(2, 1)));
  // Keys are the key fields' text, so one user's records share a partition.
  for (const Message& m : ReadTopic()) EXPECT_EQ(m.value.substr(8, 1), m.key) << m.value;
  (*sink)->Close();
}

TEST_F(KafkaSinkTest, RestoreRedoesCoveredTransactionsAndReusesTransactionalIds) {
  Load("    guarantee: exactly_once\n    producer_pool_size: 3\n");
  std::vector<std::string> checkpoint2;
  {
    auto sink = Open(1, nullptr);
    ASSERT_OK(sink);
    ops::Operator* op = sink->get();
    ASSERT_OK(Write(op, 1, 1));
    std::vector<std::string> checkpoint1;
    ASSERT_OK(op->SnapshotState(1, &checkpoint1));
    ASSERT_OK(op->NotifyCheckpointComplete(1));
    ASSERT_OK(Write(op, 1, 2));
    ASSERT_OK(Write(op, 2, 1));
    ASSERT_OK(op->SnapshotState(2, &checkpoint2));
    // Checkpoint 2 completes, but the task goes down (here: closed, as on a cancel; a killed
    // process leaves the cleanup to fencing) before the notification arrives, with a third
    // transaction open.
    ASSERT_OK(Write(op, 3, 1));
  }
  const size_t before = Events().size();
  auto sink = Open(2, &checkpoint2);
  ASSERT_OK(sink);
  std::vector<std::string> events = EventNames();
  events.erase(events.begin(), events.begin() + static_cast<long>(before));
  // The same ids are initialised again (a real broker fences the dead attempt's producers and
  // aborts its open transaction), then checkpoint 2's transaction is redone: the mock ignores
  // TxnOffsetCommit, so its marker is never found here (a real broker keeps it).
  EXPECT_THAT(events, ElementsAre("init t-out-0-0 0", "init t-out-0-1 0", "init t-out-0-2 0",
                                  "recover_redo t-out-0-0 2"));
  EXPECT_EQ(EventNames()[before - 2], "abort t-out-0-0 2") << "closing aborts the uncommitted transaction";
  EXPECT_EQ(EventNames()[before - 1], "abort t-out-0-1 0") << "and the open one";
  EXPECT_EQ(Events().back()["redoes"], "1.2");
  EXPECT_EQ(Metric("sluice_kafka_sink_transactions_redone_total"), "1");
  EXPECT_THAT(CommittedValues(), ElementsAre(Value(1, 1), Value(1, 2), Value(2, 1)))
      << "checkpoint 2's records once; the open transaction's record (user 3) never";

  // The restored sink goes on with fresh transactions.
  ops::Operator* op = sink->get();
  ASSERT_OK(Write(op, 4, 1));
  std::vector<std::string> entries;
  ASSERT_OK(op->SnapshotState(3, &entries));
  ASSERT_OK(op->NotifyCheckpointComplete(3));
  EXPECT_THAT(CommittedValues(), ElementsAre(Value(1, 1), Value(1, 2), Value(2, 1), Value(4, 1)));
  (*sink)->Close();
}

// The sink's entries are [version 1][transaction or meta text]; without the version byte
// (format 0) they restore as before. A transaction or meta entry that does not parse, or whose
// messages are cut short, fails the restore with kDataLoss naming the origin: redoing part of
// a transaction, or none, would lose output.
TEST_F(KafkaSinkTest, RestoredEntriesOfOtherFormatsOrCorruptAreDataLoss) {
  Load("    guarantee: exactly_once\n    producer_pool_size: 2\n");
  std::vector<std::string> checkpoint1;
  {
    auto sink = Open(1, nullptr);
    ASSERT_OK(sink);
    ASSERT_OK(Write(sink->get(), 1, 1));
    ASSERT_OK(Write(sink->get(), 2, 1));
    ASSERT_OK((*sink)->SnapshotState(1, &checkpoint1));
  }
  ASSERT_EQ(checkpoint1.size(), 2u);
  ASSERT_EQ(checkpoint1[0].substr(0, 5), "\x01txn ");
  ASSERT_EQ(checkpoint1[1].substr(0, 6), "\x01meta ");
  std::vector<std::string> format0 = {checkpoint1[0].substr(1), checkpoint1[1].substr(1)};
  {
    auto sink = Open(2, &format0);
    ASSERT_OK(sink);
    EXPECT_THAT(CommittedValues(), ElementsAre(Value(1, 1), Value(2, 1)));
  }
  const std::string named = "(job job-1, operator 'out' (type kafka_sink), subtask 0, restored from checkpoint 2): ";
  for (const auto& [entries, reason] : std::vector<std::pair<std::vector<std::string>, std::string>>{
           {{"\x01txn t-out-0-0 0 0\n"}, "kafka_sink transaction 'txn t-out-0-0 0 0' is not 'txn <id>"},
           {{checkpoint1[0].substr(0, checkpoint1[0].size() - 2)}, "the messages of kafka_sink transaction t-out-0-0 of checkpoint 1 are truncated after 1 records"},
           {{"\x01meta 0 x"}, "kafka_sink entry 'meta 0 x' is not 'meta <subtask>"},
           {{"\x05txn"}, "sink transaction state has format version 5"}}) {
    EXPECT_THAT(Open(3, &entries).status(), StatusIs(absl::StatusCode::kDataLoss, HasSubstr(named + reason)));
  }
  EXPECT_THAT(CommittedValues(), ElementsAre(Value(1, 1), Value(2, 1))) << "nothing redone twice";
}

TEST_F(KafkaSinkTest, RescaleDownRedoesAndFencesTheRemovedSubtasksIds) {
  Load("    guarantee: exactly_once\n    producer_pool_size: 2\n");
  std::vector<std::string> checkpoint;
  for (int s = 0; s < 2; ++s) {
    auto sink = Open(1, nullptr, s, 2);
    ASSERT_OK(sink);
    ASSERT_OK(Write(sink->get(), 10 + s, 1));
    ASSERT_OK((*sink)->SnapshotState(1, &checkpoint));
  }
  // Union state: the one remaining subtask gets both subtasks' entries.
  const size_t before = Events().size();
  auto sink = Open(2, &checkpoint, 0, 1);
  ASSERT_OK(sink);
  std::vector<std::string> events = EventNames();
  events.erase(events.begin(), events.begin() + static_cast<long>(before));
  EXPECT_THAT(events, ElementsAre("init t-out-0-0 0", "init t-out-0-1 0", "recover_redo t-out-0-0 1",
                                  "recover_redo t-out-1-0 1", "fence t-out-1-0 0", "fence t-out-1-1 0"));
  EXPECT_THAT(CommittedValues(), ElementsAre(Value(10, 1), Value(11, 1)));
  (*sink)->Close();
}

TEST_F(KafkaSinkTest, FullPoolFailsWithAClearMessage) {
  Load("    guarantee: exactly_once\n    producer_pool_size: 2\n");
  auto sink = Open(1, nullptr);
  ASSERT_OK(sink);
  ops::Operator* op = sink->get();
  std::vector<std::string> entries;
  ASSERT_OK(Write(op, 1, 1));
  ASSERT_OK(op->SnapshotState(1, &entries));
  ASSERT_OK(Write(op, 1, 2));
  ASSERT_OK(op->SnapshotState(2, &entries));  // checkpoints 1 and 2 never complete
  EXPECT_THAT(Write(op, 1, 3), StatusIs(absl::StatusCode::kResourceExhausted,
                                        HasSubstr("all 2 transactional producers of job-1/out#0 hold transactions "
                                                  "waiting for their checkpoint to complete")));
  // Checkpoint 3 completing commits both earlier transactions too.
  ASSERT_OK(op->NotifyCheckpointComplete(3));
  EXPECT_THAT(CommittedValues(), ElementsAre(Value(1, 1), Value(1, 2)));
  (*sink)->Close();
}

TEST_F(KafkaSinkTest, OversizedTransactionFailsWithAClearMessage) {
  Load("    guarantee: exactly_once\n    max_transaction_bytes: 100\n");
  auto sink = Open(1, nullptr);
  ASSERT_OK(sink);
  absl::Status s;
  for (int i = 0; i < 20 && s.ok(); ++i) s = Write(sink->get(), i, i);
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kResourceExhausted,
                          HasSubstr("the transaction of t-out-0-0 holds more than 100 bytes of records "
                                    "(max_transaction_bytes)")));
  (*sink)->Close();
}

TEST_F(KafkaSinkTest, AtLeastOnceFlushesBeforeTheCheckpointAndFailsWhenTheBrokerIsGone) {
  Load("    guarantee: at_least_once\n    flush_timeout: 1s\n    properties: {linger.ms: 1000}\n");
  auto sink = Open(1, nullptr);
  ASSERT_OK(sink);
  ops::Operator* op = sink->get();
  for (int i = 0; i < 100; ++i) ASSERT_OK(Write(op, i, i));
  std::vector<std::string> entries;
  ASSERT_OK(op->SnapshotState(1, &entries));  // lingering 1 s, unless the snapshot flushes
  EXPECT_EQ(ReadTopic().size(), 100u);

  ASSERT_OK(kafka_->SetBrokerDown(1));
  ASSERT_OK(Write(op, 1000, 1));
  EXPECT_THAT(op->SnapshotState(2, &entries),
              StatusIs(absl::StatusCode::kDeadlineExceeded,
                       HasSubstr("message(s) not acknowledged after 1000 ms (broker unreachable?)")));
  ASSERT_OK(kafka_->SetBrokerUp(1));
  (*sink)->Close();
}

TEST_F(KafkaSinkTest, ExactlyOnceNeedsCheckpointsAndWarnsAboutShortTransactionTimeouts) {
  auto parse = [&](const std::string& job_options, const std::string& sink_options) {
    return plan::ParseJobSpec(absl::StrCat("name: t\n", job_options, R"(
operators:
  - {id: gen, type: datagen, count: 1, fields: [{name: user, type: int64, expr: "seq"}]}
  - id: out
    type: kafka_sink
    bootstrap: "127.0.0.1:1"
    topic: out
    guarantee: exactly_once
)", sink_options), "job.yaml", registry_.catalog());
  };
  EXPECT_THAT(parse("", ""), StatusIs(absl::StatusCode::kInvalidArgument,
                                      HasSubstr("job.yaml:9:16: guarantee exactly_once commits a Kafka transaction "
                                                "per checkpoint: enable checkpoints")));
  auto ok = parse("checkpoint: {interval: 10s}\nrestart: {strategy: fixed_delay, attempts: 10, delay: 6s}\n",
                  "    transaction_timeout: 1m\n");
  ASSERT_OK(ok);
  EXPECT_THAT(ok->warnings, ElementsAre("operator 'out': transaction_timeout 60000 ms is shorter than the "
                                        "checkpoint interval (10000 ms) plus the restart budget (60000 ms): a "
                                        "transaction still open when the broker's timeout hits is aborted and "
                                        "its records are lost"));
  auto fine = parse("checkpoint: {interval: 10s}\n", "");
  ASSERT_OK(fine);
  EXPECT_TRUE(fine->warnings.empty());
  EXPECT_THAT(parse("checkpoint: {interval: 10s}\n", "    producer_pool_size: 8\n    max_transaction_bytes: 33554432\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("job.yaml:12:28: max_transaction_bytes x producer_pool_size (33554432 x 8) must stay "
                                 "within 192 MiB")));
  EXPECT_THAT(parse("checkpoint: {interval: 10s}\n", "    transactional_id_prefix: \"my sink\"\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("'transactional_id_prefix' may only hold letters, digits, '.', '_' and '-'")));
  EXPECT_THAT(parse("checkpoint: {interval: 10s}\n", "    key: [nope]\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("key field 'nope' is not in the input")));
}

}  // namespace
}  // namespace sluice::connectors
