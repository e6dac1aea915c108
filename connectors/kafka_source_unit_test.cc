// The kafka source in-process against the embedded Kafka endpoint (librdkafka's mock cluster,
// over TCP), fed by kcat, on a fake clock: per-partition watermarks with idleness, and
// partition discovery. The mock cannot add partitions to a topic, so the discovery tests create
// the topic with its final partition count and let the source see fewer partitions at first
// (MakeKafkaSourceForTest); assignment, reading and offsets are the real thing.

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/metrics.h"
#include "common/status.h"
#include "common/status_matchers.h"
#include "common/watermark.h"
#include "connectors/embedded_kafka.h"
#include "connectors/kafka_source.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "plan/job_spec.h"

namespace sluice::connectors {
namespace {

using ::sluice::testing::StatusIs;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;

// The types these tests plan with: the built-ins and the connectors.
const plan::OperatorTypeCatalog& Catalog() {
  static const ops::OperatorRegistry* registry = [] {
    auto* r = new ops::OperatorRegistry();
    EXPECT_OK(ops::RegisterBuiltinOperators(r));
    EXPECT_OK(RegisterConnectorOperators(r));
    return r;
  }();
  return registry->catalog();
}

constexpr int64_t kMs = 1'000'000;

// Records what the source emits, in order: "r:<user>" per record, "wm:<ms>", "idle", "active".
class LogOutput final : public ops::Output {
 public:
  absl::Status Emit(const Record& r) override {
    events.push_back(absl::StrCat("r:", r.GetInt(0)));
    ++records;
    return absl::OkStatus();
  }
  absl::Status EmitWatermark(int64_t watermark_ms) override {
    events.push_back(absl::StrCat("wm:", watermark_ms));
    return absl::OkStatus();
  }
  absl::Status EmitWatermarkStatus(bool idle) override {
    events.push_back(idle ? "idle" : "active");
    return absl::OkStatus();
  }
  std::vector<std::string> Take() {
    records = 0;
    return std::move(events);
  }
  std::vector<std::string> events;
  int records = 0;
};

// Event time with partitions idle after 1 s, no discovery.
constexpr char kIdleAfterOneSecond[] =
    "    event_time: {field: ts, max_out_of_orderness: 2s, idle_timeout: 1s}\n    partition_discovery: 0\n";

std::string Line(int64_t user, int64_t ts) {
  return absl::StrCat("{\"user\": ", user, ", \"ts\": ", ts, "}\n");
}

class KafkaSourceUnitTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = absl::StrCat(::testing::TempDir(), "/kafka-source-", getpid(), "-",
                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    EmbeddedKafkaOptions o;
    o.topics = {{"events", 3}, {"dlq", 1}};
    auto k = EmbeddedKafka::Start(o);
    ASSERT_OK(k);
    kafka_ = *std::move(k);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  void Produce(int partition, const std::string& lines, const std::string& topic = "events") {
    std::ofstream(dir_ + "/input") << lines;
    std::string cmd = absl::StrCat("timeout 30 kcat -b ", kafka_->bootstrap(), " -P -t ", topic, " -p ",
                                   partition, " < ", dir_, "/input 2>&1");
    FILE* p = popen(cmd.c_str(), "r");
    ASSERT_NE(p, nullptr);
    char buf[512];
    std::string out;
    while (std::fgets(buf, sizeof(buf), p) != nullptr) out += buf;
    ASSERT_EQ(pclose(p), 0) << out;
  }

  void Load(const std::string& options) {
    auto job = plan::ParseJobSpec(absl::StrCat(R"(name: t
watermark_interval: 200ms
operators:
  - id: events
    type: kafka
    bootstrap: ")", kafka_->bootstrap(), R"("
    topic: events
    fields: [{name: user, type: int64}, {name: ts, type: timestamp}]
)", options, "  - {id: out, type: print}\n"), "job.yaml", Catalog());
    ASSERT_OK(job);
    job_ = *std::move(job);
  }

  // Opens subtask `subtask` of `parallelism`, which sees `visible_` partitions.
  absl::Status Open(int subtask, int parallelism, const std::vector<std::string>* restored = nullptr) {
    source_ = real_metadata_ ? MakeKafkaSource()
                             : MakeKafkaSourceForTest([this]() -> absl::StatusOr<int> { return visible_.load(); });
    ops::OperatorContext ctx;
    ctx.job = &job_;
    ctx.spec = &job_.operators[0];
    ctx.job_id = "job-1";
    ctx.subtask = subtask;
    ctx.parallelism = parallelism;
    ctx.clock = &clock_;
    ctx.task_name = absl::StrCat("job-1/events#", subtask);
    ctx.metrics = &metrics_;
    ctx.metric_labels = {{"subtask", absl::StrCat(subtask)}};
    ctx.metrics_owner = absl::StrCat("source-", ++opened_);
    if (restored != nullptr) {
      ctx.restored = true;
      ctx.restored_checkpoint_id = 1;
      ctx.state_origin = StateOrigin("job-1", "events", "kafka", subtask, 1);
      ctx.restored_state = *restored;
    }
    return source_->Open(ctx, &out_);
  }

  // Polls (at the current fake time, up to `max_records` a poll) until `done()` or 20 s of real
  // time pass.
  template <typename Pred>
  bool PollUntil(Pred done, int max_records = 256) {
    auto* source = static_cast<ops::SourceOperator*>(source_.get());
    const absl::Time deadline = absl::Now() + absl::Seconds(20);
    while (absl::Now() < deadline) {
      int64_t wake = 0;
      auto st = source->Poll(max_records, &wake);
      EXPECT_OK(st);
      if (!st.ok()) return false;
      if (done()) return true;
      absl::SleepFor(absl::Milliseconds(2));
    }
    return false;
  }
  // Waits (20 s of real time at most) until librdkafka has fetched, or seen on the brokers,
  // `records` records past the source's positions, without polling the source.
  bool WaitForFetchedLag(int64_t records) {
    const absl::Time deadline = absl::Now() + absl::Seconds(20);
    while (absl::Now() < deadline) {
      if (KafkaSourceFetchedLagForTest(*source_) == records) return true;
      absl::SleepFor(absl::Milliseconds(2));
    }
    return false;
  }
  // With idle_timeout 1 s, two partitions: reads a record from each (partition 0 at 10000,
  // partition 1 at 11000) and their end-of-partition events, then emits the watermark 7999.
  void ReadARecordFromEachOfTwoPartitions() {
    Load(kIdleAfterOneSecond);
    visible_ = 2;
    Produce(0, Line(1, 10'000));
    Produce(1, Line(2, 11'000));
    ASSERT_OK(Open(0, 1));
    ASSERT_TRUE(PollUntil([&] { return out_.records == 2 && KafkaSourceReadToEndForTest(*source_); }));
    EXPECT_THAT(out_.Take(), UnorderedElementsAre("r:1", "r:2"));
    Advance(200);
    EXPECT_THAT(out_.Take(), ElementsAre("wm:7999"));
  }
  // Moves the fake clock on by `ms` and polls once, taking at most `max_records`.
  void Advance(int64_t ms, int max_records) {
    clock_.AdvanceNanos(ms * kMs);
    int64_t wake = 0;
    EXPECT_OK(static_cast<ops::SourceOperator*>(source_.get())->Poll(max_records, &wake));
  }
  // Moves the fake clock on by `ms` and polls once.
  void Advance(int64_t ms) {
    clock_.AdvanceNanos(ms * kMs);
    int64_t wake = 0;
    EXPECT_OK(static_cast<ops::SourceOperator*>(source_.get())->Poll(256, &wake));
  }
  // The entries without their format version byte (which must be 1): restored like that, they
  // are entries of format 0, so every restore below also checks that format 0 still reads.
  std::vector<std::string> Snapshot() {
    std::vector<std::string> entries = RawSnapshot();
    for (std::string& e : entries) {
      EXPECT_EQ(e.substr(0, 1), "\x01") << e;
      e.erase(0, 1);
    }
    return entries;
  }
  std::vector<std::string> RawSnapshot() {
    std::vector<std::string> entries;
    EXPECT_OK(source_->SnapshotState(1, &entries));
    return entries;
  }

  std::string dir_;
  std::unique_ptr<EmbeddedKafka> kafka_;
  plan::JobSpec job_;
  FakeClock clock_;
  std::atomic<int> visible_{3};
  bool real_metadata_ = false;  // Open(): the brokers' partition counts instead of visible_
  MetricsRegistry metrics_;
  int opened_ = 0;
  std::unique_ptr<ops::Operator> source_;
  LogOutput out_;
};

TEST_F(KafkaSourceUnitTest, WatermarkIsTheMinimumOverNonIdlePartitions) {
  Load(kIdleAfterOneSecond);
  visible_ = 2;
  Produce(0, Line(1, 10'000) + Line(2, 12'000) + Line(3, 11'000));
  ASSERT_OK(Open(0, 1));
  ASSERT_TRUE(PollUntil([&] { return out_.records == 3 && KafkaSourceReadToEndForTest(*source_); }));
  EXPECT_THAT(out_.Take(), ElementsAre("r:1", "r:2", "r:3")) << "partition 1 has no watermark yet";
  Advance(200);
  EXPECT_THAT(out_.Take(), ElementsAre()) << "partition 1 holds the watermark back until idle";
  Advance(800);  // 1 s without records on partition 1: idle
  EXPECT_THAT(out_.Take(), ElementsAre("wm:9999")) << "12000 - 2000 - 1";
  Advance(200);  // partition 0 quiet for 1 s too
  EXPECT_THAT(out_.Take(), ElementsAre("idle"));
  Advance(5000);
  EXPECT_THAT(out_.Take(), ElementsAre()) << "idle is said once";

  // A record on partition 1 turns the subtask active before it is emitted; partition 0 stays
  // idle and does not hold the watermark back.
  Produce(1, Line(4, 20'000));
  ASSERT_TRUE(PollUntil([&] { return out_.records == 1; }));
  EXPECT_THAT(out_.Take(), ElementsAre("active", "r:4"));
  Advance(200);
  EXPECT_THAT(out_.Take(), ElementsAre("wm:17999"));
  source_->Close();
}

// A partition with records the source has not read yet is not idle, however long since its
// last record (here the source reads one record and then only runs its periodic steps, as a
// backpressured or starved task would; before its first fetch it may have records too): its
// watermark still holds the subtask's back. Read to its end, it turns idle after idle_timeout.
TEST_F(KafkaSourceUnitTest, APartitionWithRecordsNotReadYetIsNeverIdle) {
  Load(kIdleAfterOneSecond);
  visible_ = 1;
  Produce(0, Line(1, 10'000) + Line(2, 12'000) + Line(3, 14'000));
  ASSERT_OK(Open(0, 1));
  ASSERT_TRUE(PollUntil([&] { return out_.records == 1; }, /*max_records=*/1));
  auto* source = static_cast<ops::SourceOperator*>(source_.get());
  int64_t wake = 0;
  for (int i = 0; i < 25; ++i) {  // 5 s of periodic steps that read nothing
    clock_.AdvanceNanos(200 * kMs);
    ASSERT_OK(source->Poll(0, &wake));
  }
  EXPECT_THAT(out_.Take(), ElementsAre("r:1", "wm:7999")) << "not idle: two records to read";

  EXPECT_FALSE(KafkaSourceReadToEndForTest(*source_));
  ASSERT_TRUE(PollUntil([&] { return out_.records == 2 && KafkaSourceReadToEndForTest(*source_); }));
  Advance(200);
  EXPECT_THAT(out_.Take(), ElementsAre("r:2", "r:3", "wm:11999"));
  Advance(800);
  EXPECT_THAT(out_.Take(), ElementsAre());
  Advance(200);  // read to its end, without records for 1 s
  EXPECT_THAT(out_.Take(), ElementsAre("idle"));
  source_->Close();
}

// An end-of-partition event says only that nothing followed it when the source took it: records
// fetched after it wait in librdkafka's queue while the task thread is busy elsewhere
// (backpressure). Such a partition is not idle, however long the source takes to read them.
TEST_F(KafkaSourceUnitTest, RecordsFetchedAfterTheEndOfAPartitionKeepItActive) {
  ASSERT_NO_FATAL_FAILURE(ReadARecordFromEachOfTwoPartitions());

  Produce(0, Line(3, 20'000));
  Produce(1, Line(4, 14'000));
  ASSERT_TRUE(WaitForFetchedLag(2));
  for (int i = 0; i < 10; ++i) Advance(200, /*max_records=*/0);  // 2 s of periodic steps only
  EXPECT_THAT(out_.Take(), ElementsAre()) << "not idle: records fetched, not read";

  ASSERT_TRUE(PollUntil([&] { return out_.records == 2 && KafkaSourceReadToEndForTest(*source_); }));
  EXPECT_THAT(out_.Take(), UnorderedElementsAre("r:3", "r:4"));
  Advance(200);
  EXPECT_THAT(out_.Take(), ElementsAre("wm:11999")) << "min(20000, 14000) - 2000 - 1";
  source_->Close();
}

// Idle partitions wake once records are fetched for them, before they are read: a partition
// whose records come later from the queue than another's still holds the watermark back.
TEST_F(KafkaSourceUnitTest, AnIdlePartitionWakesWhenRecordsAreFetched) {
  ASSERT_NO_FATAL_FAILURE(ReadARecordFromEachOfTwoPartitions());
  for (int i = 0; i < 6; ++i) Advance(200);
  EXPECT_THAT(out_.Take(), ElementsAre("idle"));

  // Partition 0's record is fetched (so queued) before partition 1's.
  Produce(0, Line(3, 20'000));
  ASSERT_TRUE(WaitForFetchedLag(1));
  Produce(1, Line(4, 14'000));
  ASSERT_TRUE(WaitForFetchedLag(2));
  Advance(200, /*max_records=*/0);  // both wake
  EXPECT_THAT(out_.Take(), ElementsAre());
  ASSERT_TRUE(PollUntil([&] { return out_.records == 1; }, /*max_records=*/1));
  EXPECT_THAT(out_.Take(), ElementsAre("active", "r:3"));
  Advance(200, /*max_records=*/0);
  EXPECT_THAT(out_.Take(), ElementsAre("wm:8999")) << "partition 1 holds it back: not 17999, which makes r:4 late";
  ASSERT_TRUE(PollUntil([&] { return out_.records == 1; }, /*max_records=*/1));
  EXPECT_THAT(out_.Take(), ElementsAre("r:4"));
  Advance(200);
  EXPECT_THAT(out_.Take(), ElementsAre("wm:11999"));
  source_->Close();
}

TEST_F(KafkaSourceUnitTest, WithoutIdleTimeoutAnEmptyPartitionHoldsTheWatermark) {
  Load("    event_time: {field: ts, max_out_of_orderness: 2s}\n    partition_discovery: 0\n");
  visible_ = 2;
  Produce(0, Line(1, 10'000) + Line(2, 12'000));
  ASSERT_OK(Open(0, 1));
  ASSERT_TRUE(PollUntil([&] { return out_.records == 2; }));
  out_.Take();
  for (int i = 0; i < 50; ++i) Advance(200);
  EXPECT_THAT(out_.Take(), ElementsAre());
  Produce(1, Line(3, 11'000));
  ASSERT_TRUE(PollUntil([&] { return out_.records == 1; }));
  Advance(200);
  EXPECT_THAT(out_.Take(), ElementsAre("r:3", "wm:8999")) << "min(12000, 11000) - 2000 - 1";
  source_->Close();
}

TEST_F(KafkaSourceUnitTest, KafkaTimestampFillsANewField) {
  auto job = plan::ParseJobSpec(absl::StrCat(R"(name: t
operators:
  - id: events
    type: kafka
    bootstrap: ")", kafka_->bootstrap(), R"("
    topic: events
    format: raw
    event_time: {kafka_timestamp: kts}
  - {id: out, type: print}
)"), "job.yaml", Catalog());
  ASSERT_OK(job);
  job_ = *std::move(job);
  visible_ = 1;
  const int64_t before = Clock::Real()->WallMillis();
  Produce(0, "hello\n");
  const int64_t after = Clock::Real()->WallMillis();

  class TsOutput final : public ops::Output {
   public:
    absl::Status Emit(const Record& r) override {
      value = std::string(r.GetString(1));
      ts = r.GetInt(2);
      return absl::OkStatus();
    }
    std::string value;
    int64_t ts = -1;
  } ts_out;
  source_ = MakeKafkaSourceForTest([this]() -> absl::StatusOr<int> { return visible_.load(); });
  ops::OperatorContext ctx;
  ctx.job = &job_;
  ctx.spec = &job_.operators[0];
  ctx.clock = &clock_;
  ctx.task_name = "job-1/events#0";
  ASSERT_OK(source_->Open(ctx, &ts_out));
  ASSERT_TRUE(PollUntil([&] { return !ts_out.value.empty(); }));
  EXPECT_EQ(ts_out.value, "hello");
  EXPECT_GE(ts_out.ts, before);
  EXPECT_LE(ts_out.ts, after);
  source_->Close();
}

TEST_F(KafkaSourceUnitTest, DiscoveryReadsNewPartitionsFromTheEarliestOffset) {
  Load("    partition_discovery: 1s\n");
  visible_ = 1;
  Produce(0, Line(1, 0) + Line(2, 0) + Line(3, 0));
  Produce(1, Line(11, 0) + Line(12, 0));
  // Subtask 0 of 2: partitions 0 and 2 are its (p % 2 == 0), 1 is subtask 1's.
  ASSERT_OK(Open(0, 2));
  ASSERT_TRUE(PollUntil([&] { return out_.records == 3; }));
  EXPECT_THAT(out_.Take(), ElementsAre("r:1", "r:2", "r:3"));
  EXPECT_THAT(Snapshot(), ElementsAre("events:0:3"));

  // The topic "grows" to 3 partitions; partition 2 is found at the next discovery.
  visible_ = 3;
  Advance(999);
  EXPECT_THAT(Snapshot(), ElementsAre("events:0:3")) << "not due yet";
  Advance(1);
  ASSERT_TRUE(PollUntil([&] { return Snapshot().size() == 2; }));
  EXPECT_THAT(Snapshot(), ElementsAre("events:0:3", "events:2:-2")) << "checkpointed as 'earliest' before its first record";

  // Records written to it before and after discovery are all read, from offset 0.
  Produce(2, Line(21, 0) + Line(22, 0));
  ASSERT_TRUE(PollUntil([&] { return out_.records == 2; }));
  Produce(2, Line(23, 0));
  ASSERT_TRUE(PollUntil([&] { return out_.records == 3; }));
  EXPECT_THAT(out_.Take(), ElementsAre("r:21", "r:22", "r:23")) << "nothing of partition 1";
  EXPECT_THAT(Snapshot(), ElementsAre("events:0:3", "events:2:3"));
  source_->Close();

  // Restored from a checkpoint taken before the discovery: partition 2 is not in its state, so
  // it appeared since, and is read from the earliest offset; partition 0 resumes at offset 3.
  // (Entries in the format of checkpoints from before sources read several topics:
  // "<partition>:<offset>" of the first topic.)
  std::vector<std::string> restored = {"0:3", "1:1"};
  out_.Take();
  ASSERT_OK(Open(0, 2, &restored));
  ASSERT_TRUE(PollUntil([&] { return out_.records == 3; }));
  Advance(200);
  EXPECT_THAT(out_.Take(), ElementsAre("r:21", "r:22", "r:23"));
  EXPECT_THAT(Snapshot(), ElementsAre("events:0:3", "events:2:3"));
  source_->Close();
}

TEST_F(KafkaSourceUnitTest, DiscoveryMakesAnIdleSubtaskReadNewPartitions) {
  Load("    event_time: {field: ts, idle_timeout: 1s}\n    partition_discovery: 1s\n");
  visible_ = 1;
  // Subtask 1 of 2 owns no partition yet: it is idle from the first poll.
  ASSERT_OK(Open(1, 2));
  Advance(0);
  EXPECT_THAT(out_.Take(), ElementsAre("idle"));
  EXPECT_THAT(Snapshot(), ElementsAre());
  visible_ = 3;
  Produce(1, Line(7, 5000));
  Advance(1000);
  ASSERT_TRUE(PollUntil([&] { return out_.records == 1; }));
  Advance(200);
  EXPECT_THAT(out_.Take(), ElementsAre("active", "r:7", "wm:4999"));
  EXPECT_THAT(Snapshot(), UnorderedElementsAre("events:1:1"));
  source_->Close();
}

TEST_F(KafkaSourceUnitTest, LagGaugeCountsRecordsBehindThePartitionEnds) {
  Load("    partition_discovery: 0\n    properties: {fetch.wait.max.ms: \"10\"}\n");
  visible_ = 1;
  Produce(0, Line(1, 0) + Line(2, 0));
  ASSERT_OK(Open(0, 1));
  ASSERT_TRUE(PollUntil([&] { return out_.records == 2; }));
  auto lag = [&] {
    std::string text = metrics_.RenderPrometheus();
    const std::string name = "sluice_kafka_source_lag_records{subtask=\"0\"} ";
    size_t at = text.find(name);
    return at == std::string::npos ? std::string("absent") : text.substr(at + name.size(), text.find('\n', at) - at - name.size());
  };
  Advance(1000);
  EXPECT_EQ(lag(), "0");
  // Four more records; the consumer fetches them in the background (the mock answers an empty
  // fetch after fetch.wait.max.ms, 10 ms here), and the gauge is computed before they are read.
  Produce(0, Line(3, 0) + Line(4, 0) + Line(5, 0) + Line(6, 0));
  // Polls that read nothing still update the gauge (once a fake second), until the background
  // fetch has seen the new end of the partition.
  auto* source = static_cast<ops::SourceOperator*>(source_.get());
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (lag() != "4" && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(50));
    clock_.AdvanceNanos(1000 * kMs);
    int64_t wake = 0;
    ASSERT_OK(source->Poll(0, &wake));
  }
  EXPECT_EQ(lag(), "4");
  ASSERT_TRUE(PollUntil([&] { return out_.records == 6; }));
  Advance(1000);
  EXPECT_EQ(lag(), "0");
  source_->Close();
}

TEST_F(KafkaSourceUnitTest, LatestIsResolvedToAnOffsetBeforeItIsCheckpointed) {
  Load("    start: latest\n    partition_discovery: 0\n");
  visible_ = 2;
  Produce(0, Line(1, 0) + Line(2, 0));
  ASSERT_OK(Open(0, 1));
  // Not the placeholder "latest" (-1), which a restore would resolve to a later end and skip
  // whatever arrived in between.
  EXPECT_THAT(Snapshot(), ElementsAre("events:0:2", "events:1:0"));
  Produce(0, Line(3, 0));
  ASSERT_TRUE(PollUntil([&] { return out_.records == 1; }));
  EXPECT_THAT(out_.Take(), ElementsAre("r:3"));
  source_->Close();
}

TEST_F(KafkaSourceUnitTest, BoundedSourceRestoredStopsAtItsOriginalEnd) {
  Load("    bounded: true\n");
  visible_ = 1;
  Produce(0, Line(1, 0) + Line(2, 0));
  ASSERT_OK(Open(0, 1));
  auto* source = static_cast<ops::SourceOperator*>(source_.get());
  ASSERT_TRUE(PollUntil([&] { return out_.records == 2; }));
  std::vector<std::string> state = Snapshot();
  EXPECT_THAT(state, ElementsAre("events:0:2:2")) << "next offset and end offset";
  source_->Close();
  // Records produced after the first run began are past its end: the restored run ends too.
  Produce(0, Line(3, 0));
  out_.Take();
  ASSERT_OK(Open(0, 1, &state));
  source = static_cast<ops::SourceOperator*>(source_.get());
  int64_t wake = 0;
  auto st = source->Poll(256, &wake);
  ASSERT_OK(st);
  EXPECT_EQ(*st, ops::SourceOperator::State::kEnd);
  EXPECT_THAT(out_.Take(), ElementsAre());
  source_->Close();
}

// Offsets entries carry a format version: those of this build restore; a newer version or an
// entry that does not parse fails the restore with kDataLoss naming the operator subtask and
// checkpoint, instead of silently starting the partition from its start position.
TEST_F(KafkaSourceUnitTest, OffsetsOfAnotherFormatOrTruncatedFailTheRestore) {
  Load("");
  visible_ = 1;
  Produce(0, Line(1, 0) + Line(2, 0));
  ASSERT_OK(Open(0, 1));
  ASSERT_TRUE(PollUntil([&] { return out_.records == 2; }));
  std::vector<std::string> state = RawSnapshot();
  ASSERT_THAT(state, ElementsAre("\x01" "events:0:2"));
  source_->Close();
  out_.Take();
  Produce(0, Line(3, 0));
  ASSERT_OK(Open(0, 1, &state));
  ASSERT_TRUE(PollUntil([&] { return out_.records == 1; }));
  EXPECT_THAT(out_.Take(), ElementsAre("r:3"));
  source_->Close();

  const std::string named = "(job job-1, operator 'events' (type kafka), subtask 0, restored from checkpoint 1)";
  for (const auto& [entry, reason] : std::vector<std::pair<std::string, std::string>>{
           {"\x03" "events:0:2", "kafka source offsets has format version 3, newer than this build reads (up to 2)"},
           {"\x02" "#dlt:0", "kafka source entry '\\002#dlt:0' is not #dlt:<partition>:<offset>"},
           {"\x02" "#dlt:0:-1", "kafka source entry '\\002#dlt:0:-1' is not #dlt:<partition>:<offset>"},
           {"\x01" "events:0", "kafka source offsets entry '\\001events:0' is not <topic>:<partition>:<offset>"},
           {"events:0:x", "kafka source offsets entry 'events:0:x' is not"},
           {"", "kafka source offsets is empty (truncated)"}}) {
    std::vector<std::string> bad = {entry};
    EXPECT_THAT(Open(0, 1, &bad), StatusIs(absl::StatusCode::kDataLoss, AllOf(HasSubstr(named), HasSubstr(reason))));
    source_->Close();
  }
}

// on_error: dead_letter, restored from a checkpoint taken before two bad records were read:
// their dead letters, which the first run wrote after that checkpoint, are not written again
// when the restored source reads the records again; a bad record after them is.
TEST_F(KafkaSourceUnitTest, DeadLettersWrittenAfterTheCheckpointAreNotWrittenAgain) {
  Load("    on_error: dead_letter\n    dead_letter_topic: dlq\n");
  visible_ = 1;
  auto letters = [&] {
    std::string cmd = absl::StrCat("timeout 30 kcat -b ", kafka_->bootstrap(), " -C -t dlq -o beginning -e -q -f '%s\\n' 2>&1");
    FILE* p = popen(cmd.c_str(), "r");
    std::string out;
    char buf[512];
    while (p != nullptr && std::fgets(buf, sizeof(buf), p) != nullptr) out += buf;
    if (p != nullptr) pclose(p);
    return out;
  };
  Produce(0, "not json\n");
  ASSERT_OK(Open(0, 1));
  ASSERT_TRUE(PollUntil([&] { return letters() == "not json\n"; }));
  // The checkpoint: past the first bad record; the topic's end offset is kept.
  std::vector<std::string> state = RawSnapshot();
  ASSERT_THAT(state, ElementsAre("\x02" "#dlt:0:1", "\x01" "events:0:1"));
  Produce(0, Line(1, 0) + "bad one\n" + Line(2, 0) + "bad two\n");
  ASSERT_TRUE(PollUntil([&] { return out_.records == 2; }));
  std::vector<std::string> unused;
  ASSERT_OK(source_->SnapshotState(2, &unused));  // flushes the letters
  EXPECT_EQ(letters(), "not json\nbad one\nbad two\n");
  source_->Close();  // as if it failed after checkpoint 1

  Produce(0, "bad three\n");
  out_.Take();
  ASSERT_OK(Open(0, 1, &state));
  ASSERT_TRUE(PollUntil([&] { return out_.records == 2 && absl::StrContains(letters(), "bad three"); }));
  EXPECT_THAT(out_.Take(), ElementsAre("r:1", "r:2"));
  std::vector<std::string> after;
  ASSERT_OK(source_->SnapshotState(3, &after));
  EXPECT_EQ(letters(), "not json\nbad one\nbad two\nbad three\n");
  EXPECT_THAT(after, ElementsAre("\x02" "#dlt:0:4", "\x01" "events:0:6"));
  source_->Close();
}

// A subtask that writes no dead letters still moves its dead-letter positions at every
// checkpoint: a restore scans from the smallest position of all subtasks, so positions kept from
// a quiet subtask's first checkpoint would make every restore read all letters written since.
TEST_F(KafkaSourceUnitTest, DeadLetterPositionsMoveAtEveryCheckpointAlsoWithoutOwnLetters) {
  Load("    on_error: dead_letter\n    dead_letter_topic: dlq\n");
  visible_ = 1;
  Produce(0, "not json\n");
  ASSERT_OK(Open(0, 1));
  std::vector<std::string> state;
  ASSERT_TRUE(PollUntil([&] {
    state.clear();
    return source_->SnapshotState(1, &state).ok() && !state.empty() && state[0] == std::string("\x02" "#dlt:0:1");
  }));
  // Letters of other subtasks (written straight to the topic here); this one writes none.
  Produce(0, "a\nb\n", "dlq");
  std::vector<std::string> later;
  ASSERT_OK(source_->SnapshotState(2, &later));
  EXPECT_THAT(later, ElementsAre("\x02" "#dlt:0:3", "\x01" "events:0:1"));
  source_->Close();
}

TEST_F(KafkaSourceUnitTest, ReadsSeveralTopicsAndResumesEachPartition) {
  ASSERT_OK(kafka_->CreateTopic("more", 2));
  auto job = plan::ParseJobSpec(absl::StrCat(R"(name: t
operators:
  - id: events
    type: kafka
    bootstrap: ")", kafka_->bootstrap(), R"("
    topics: [events, more]
    partition_discovery: 0
    fields: [{name: user, type: int64}, {name: ts, type: timestamp}]
  - {id: out, type: print}
)"), "job.yaml", Catalog());
  ASSERT_OK(job);
  job_ = *std::move(job);
  Produce(0, Line(1, 0) + Line(2, 0));
  Produce(1, Line(3, 0));
  Produce(2, Line(4, 0));
  Produce(0, Line(10, 0), "more");
  Produce(1, Line(11, 0) + Line(12, 0), "more");
  real_metadata_ = true;  // several topics: their partition counts come from the endpoint
  // Subtask 0 of 2 owns partition p of topic t when (t + p) % 2 == 0: events 0 and 2, more 1.
  ASSERT_OK(Open(0, 2));
  ASSERT_TRUE(PollUntil([&] { return out_.records == 5; }));
  EXPECT_THAT(out_.Take(), UnorderedElementsAre("r:1", "r:2", "r:4", "r:11", "r:12"));
  std::vector<std::string> state = Snapshot();
  EXPECT_THAT(state, UnorderedElementsAre("events:0:2", "events:2:1", "more:1:2"));
  source_->Close();

  // Restored (with an entry of a topic the job no longer reads), it resumes exactly there.
  Produce(0, Line(5, 0));
  Produce(1, Line(13, 0), "more");
  state.push_back("gone:0:7");
  ASSERT_OK(Open(0, 2, &state));
  ASSERT_TRUE(PollUntil([&] { return out_.records == 2; }));
  // Not synchronisation: a window in which a record that must not come (from `gone`, or read
  // twice) would arrive; the next poll then shows it.
  absl::SleepFor(absl::Milliseconds(200));
  Advance(0);
  EXPECT_THAT(out_.Take(), UnorderedElementsAre("r:5", "r:13"));
  EXPECT_THAT(Snapshot(), UnorderedElementsAre("events:0:3", "events:2:1", "more:1:3"));
  source_->Close();
}

}  // namespace
}  // namespace sluice::connectors
