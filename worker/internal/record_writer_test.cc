#include "worker/internal/record_writer.h"

#include <initializer_list>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/types/optional.h"
#include "common/clock.h"
#include "common/key_groups.h"
#include "common/record_codec.h"
#include "common/status.h"
#include "common/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sluice::worker {
namespace {

using ::sluice::testing::StatusIs;
using ::testing::ElementsAre;

// What a fake channel saw, in order: "d<records>:<first value>" a buffer of records (the first
// record's int; "+w<ms>@<k>": carrying watermark <ms> after its first k records), "b<id>" a
// barrier ("b<id>t" timeoutable; "p<id>" sent with priority, "p<id>x" converted after its
// timeout), "w<ms>" a watermark, "idle" /
// "active", "eop", "close"; a buffer sent by the blocking Send() is prefixed "!".
struct ChannelLog {
  std::vector<std::string> sent;
  std::vector<int64_t> waited_ms;  // Barrier::waited_ms of each barrier sent, in order
  int credits = 0;
  int interrupts = 0;     // Interrupt() calls not consumed by an Offer()
  int waits = 0;          // Offer() calls with a deadline that found no credit
  bool cancelled = false;
};

// A channel without threads: Offer() sends while the test grants credit; Send() (the overdraft
// wait) sends at once, as if a credit came.
class FakeChannel final : public ChannelWriter {
 public:
  FakeChannel(const Schema* schema, ChannelLog* log) : schema_(schema), log_(log) {}
  absl::Status Send(BufferItem item) override {
    if (log_->cancelled) return absl::CancelledError("cancelled");
    log_->sent.push_back("!" + Describe(item));
    return absl::OkStatus();
  }
  absl::StatusOr<bool> Offer(BufferItem& item, int64_t deadline_nanos) override {
    if (log_->cancelled) return absl::CancelledError("cancelled");
    if (log_->interrupts > 0) {
      log_->interrupts = 0;
      return false;
    }
    if (log_->credits == 0) {
      if (deadline_nanos != 0) ++log_->waits;
      return false;
    }
    --log_->credits;
    log_->sent.push_back(Describe(item));
    return true;
  }
  absl::Status SendPriority(BufferItem item) override {
    const Barrier* b = item.as<Barrier>();
    log_->sent.push_back(absl::StrCat("p", b->id, b->timed_out ? "x" : ""));
    log_->waited_ms.push_back(b->waited_ms);
    return absl::OkStatus();
  }
  void Interrupt() override { ++log_->interrupts; }
  absl::Status Close() override {
    log_->sent.push_back("close");
    return absl::OkStatus();
  }
  void Cancel() override { log_->cancelled = true; }
  int64_t CreditWaitNanos() const override { return 0; }

 private:
  std::string Describe(const BufferItem& item) {
    if (item.as<EndOfPartition>() != nullptr) return "eop";
    if (const Barrier* b = item.as<Barrier>()) {
      log_->waited_ms.push_back(b->waited_ms);
      return absl::StrCat("b", b->id, b->timeoutable ? "t" : "");
    }
    if (const WatermarkAdvance* w = item.as<WatermarkAdvance>()) return absl::StrCat("w", w->ms);
    if (const WatermarkStatusChange* s = item.as<WatermarkStatusChange>()) {
      return s->idle ? "idle" : "active";
    }
    const RecordBuffer* records = item.as<RecordBuffer>();
    if (records == nullptr) return "?";
    std::string first = "-";
    if (records->num_records > 0) {
      RecordDecoder dec(schema_, records->data);
      Record r(schema_->size());
      EXPECT_OK(dec.Next(&r));
      first = absl::StrCat(r.GetInt(0));
    }
    std::string d = absl::StrCat("d", records->num_records, ":", first);
    if (const auto& w = records->watermark) {
      // Where it rides: after w->records records, which are w->bytes bytes.
      std::string bytes;
      RecordDecoder dec(schema_, records->data);
      Record r(schema_->size());
      for (int i = 0; i < w->records; ++i) EXPECT_OK(dec.Next(&r));
      EXPECT_EQ(records->data.size() - dec.Remaining(), w->bytes);
      absl::StrAppend(&d, "+w", w->ms, "@", w->records);
    }
    return d;
  }
  const Schema* schema_;
  ChannelLog* log_;
};

class RecordWriterTest : public ::testing::Test {
 protected:
  static constexpr int64_t kTimeoutNanos = 100'000'000;

  // Adds an edge of `partition` with `n` fake channels (logs appended to logs_).
  void AddEdge(plan::Partition partition, int n, int side_output = -1) {
    auto edge = std::make_unique<plan::Edge>();
    edge->id = static_cast<int>(edges_.size());
    edge->partition = partition;
    edge->side_output = side_output;
    edge->schema = schema_;
    ops::KeyHasher hasher;
    if (partition == plan::Partition::kHash) {
      edge->key = {{"k", "k"}};
      auto h = ops::KeyHasher::Create(edge->key, schema_);
      ASSERT_OK(h.status());
      hasher = std::move(*h);
    }
    std::vector<std::unique_ptr<ChannelWriter>> channels;
    for (int i = 0; i < n; ++i) {
      logs_.push_back(std::make_unique<ChannelLog>());
      logs_.back()->credits = 1000;
      channels.push_back(std::make_unique<FakeChannel>(&schema_, logs_.back().get()));
    }
    writer_.AddEdge(edge.get(), kMaxParallelism, std::move(channels), std::move(hasher), nullptr,
                    {}, "", {});
    edges_.push_back(std::move(edge));
  }

  Record Rec(int64_t k) {
    Record r(1);
    r.SetInt(0, k);
    return r;
  }

  // Emits one record of key `k` and flushes it into a buffer of its own.
  void EmitOne(int64_t k) {
    ASSERT_OK(writer_.Emit(Rec(k)));
    ASSERT_OK(writer_.FlushAll());
  }

  // One forward channel without credit, with a buffer of one record per key in its backlog.
  void BackloggedChannel(std::initializer_list<int64_t> keys) {
    AddEdge(plan::Partition::kForward, 1);
    logs_[0]->credits = 0;
    for (int64_t k : keys) EmitOne(k);
  }

  // A forward edge and a rebalance edge of 2 channels, output channel 2 (the second channel of
  // the second edge) without credit; emits 10 to 13 in buffers of their own: 11 and 13 wait in
  // channel 2's backlog.
  void ForwardAndRebalanceWithAStuckChannel() {
    AddEdge(plan::Partition::kForward, 1);
    AddEdge(plan::Partition::kRebalance, 2);
    logs_[2]->credits = 0;
    for (int64_t k = 10; k <= 13; ++k) EmitOne(k);
  }

  // Records of one buffer: as many as it takes to reach kOutputBufferBytes.
  int RecordsPerBuffer() {
    std::string one;
    EncodeRecord(schema_, Rec(1'000'000'000), &one);
    return static_cast<int>((kOutputBufferBytes + one.size() - 1) / one.size());
  }
  // Emits exactly enough records to fill `buffers` buffers of a forward edge.
  void FillBuffers(int buffers) {
    for (int i = 0; i < buffers * RecordsPerBuffer(); ++i) {
      ASSERT_OK(writer_.Emit(Rec(1'000'000'000 + i)));
    }
  }

  static constexpr int kMaxParallelism = 128;
  Schema schema_{{Field{"k", FieldType::kInt64}}};
  FakeClock clock_;
  RecordWriter writer_{&clock_, kTimeoutNanos, /*num_side_outputs=*/2};
  std::vector<std::unique_ptr<plan::Edge>> edges_;
  std::vector<std::unique_ptr<ChannelLog>> logs_;
};

TEST_F(RecordWriterTest, HashSendsEachKeyToTheSubtaskOwningItsKeyGroup) {
  AddEdge(plan::Partition::kHash, 3);
  auto hasher = ops::KeyHasher::Create({{"k", "k"}}, schema_);
  ASSERT_OK(hasher.status());
  std::vector<std::vector<std::string>> expected(3);
  for (int64_t k = 0; k < 40; ++k) {
    EmitOne(k);
    // Flink's computeOperatorIndexForKeyGroup: key group * parallelism / max parallelism.
    const int kg = KeyGroupForHash(hasher->Hash(Rec(k)), kMaxParallelism);
    expected[kg * 3 / kMaxParallelism].push_back(absl::StrCat("d1:", k));
  }
  for (int c = 0; c < 3; ++c) {
    EXPECT_EQ(logs_[c]->sent, expected[c]) << "channel " << c;
    EXPECT_FALSE(expected[c].empty()) << "40 keys spread over 3 subtasks";
  }
}

TEST_F(RecordWriterTest, RebalanceRoundRobinsAndBroadcastCopies) {
  AddEdge(plan::Partition::kRebalance, 2);
  AddEdge(plan::Partition::kBroadcast, 2);
  for (int64_t k = 0; k < 3; ++k) EmitOne(k);
  EXPECT_THAT(logs_[0]->sent, ElementsAre("d1:0", "d1:2"));
  EXPECT_THAT(logs_[1]->sent, ElementsAre("d1:1"));
  EXPECT_THAT(logs_[2]->sent, ElementsAre("d1:0", "d1:1", "d1:2"));
  EXPECT_THAT(logs_[3]->sent, ElementsAre("d1:0", "d1:1", "d1:2"));
}

TEST_F(RecordWriterTest, SideOutputsGoOnlyToTheirEdges) {
  AddEdge(plan::Partition::kForward, 1);                     // main
  AddEdge(plan::Partition::kForward, 1, /*side_output=*/1);  // side output 1
  ASSERT_OK(writer_.Emit(Rec(1)));
  ASSERT_OK(writer_.EmitSide(1, Rec(2)));
  ASSERT_OK(writer_.EmitSide(0, Rec(3)));  // nobody reads side output 0: dropped
  ASSERT_OK(writer_.EmitSide(7, Rec(4)));  // not declared: dropped
  ASSERT_OK(writer_.EmitWatermark(50));    // control items go to every edge
  ASSERT_OK(writer_.FlushAll());
  EXPECT_THAT(logs_[0]->sent, ElementsAre("d1:1+w50@1"));
  EXPECT_THAT(logs_[1]->sent, ElementsAre("d1:2+w50@1"));
}

TEST_F(RecordWriterTest, SendsABufferWhenFullAndControlItemsAfterTheRecordsBeforeThem) {
  AddEdge(plan::Partition::kForward, 1);
  FillBuffers(1);
  ASSERT_EQ(logs_[0]->sent.size(), 1u);
  EXPECT_EQ(logs_[0]->sent[0], absl::StrCat("d", RecordsPerBuffer(), ":1000000000"))
      << "a full buffer is sent at once";
  ASSERT_OK(writer_.Emit(Rec(5)));
  ASSERT_OK(writer_.EmitWatermarkStatus(true));
  ASSERT_OK(writer_.Emit(Rec(6)));
  ASSERT_OK(writer_.EmitBarrier(3, /*priority=*/false, nullptr));
  EXPECT_THAT(std::vector<std::string>(logs_[0]->sent.begin() + 1, logs_[0]->sent.end()),
              ElementsAre("d1:5", "idle", "d1:6", "b3"));
}

TEST_F(RecordWriterTest, FlushesAPartlyFilledBufferAfterTheBufferTimeout) {
  AddEdge(plan::Partition::kForward, 1);
  EXPECT_EQ(writer_.FlushDeadlineNanos(), std::numeric_limits<int64_t>::max());
  const int64_t start = clock_.NowNanos();
  ASSERT_OK(writer_.Emit(Rec(1)));
  EXPECT_EQ(writer_.FlushDeadlineNanos(), start + kTimeoutNanos);
  clock_.AdvanceNanos(kTimeoutNanos - 1);
  ASSERT_OK(writer_.Emit(Rec(2)));  // the oldest record counts
  ASSERT_OK(writer_.FlushIfDue(false));
  EXPECT_TRUE(logs_[0]->sent.empty());
  clock_.AdvanceNanos(1);
  ASSERT_OK(writer_.FlushIfDue(false));
  EXPECT_THAT(logs_[0]->sent, ElementsAre("d2:1"));
  EXPECT_EQ(writer_.FlushDeadlineNanos(), std::numeric_limits<int64_t>::max());
  ASSERT_OK(writer_.Emit(Rec(3)));
  ASSERT_OK(writer_.FlushIfDue(true));
  EXPECT_THAT(logs_[0]->sent, ElementsAre("d2:1", "d1:3"));
}

TEST_F(RecordWriterTest, AWatermarkRidesWithTheBufferOfTheRecordsBeforeItNotAlone) {
  AddEdge(plan::Partition::kForward, 1);
  ASSERT_OK(writer_.Emit(Rec(1)));
  ASSERT_OK(writer_.Emit(Rec(2)));
  ASSERT_OK(writer_.EmitWatermark(5));
  ASSERT_OK(writer_.Emit(Rec(3)));
  clock_.AdvanceNanos(kTimeoutNanos - 1);
  ASSERT_OK(writer_.FlushIfDue(false));
  EXPECT_TRUE(logs_[0]->sent.empty()) << "a watermark sends no buffer before the timeout";
  clock_.AdvanceNanos(1);
  ASSERT_OK(writer_.FlushIfDue(false));
  EXPECT_THAT(logs_[0]->sent, ElementsAre("d3:1+w5@2"));
}

TEST_F(RecordWriterTest, AFullBufferTakesTheWatermarkBehindItsRecords) {
  AddEdge(plan::Partition::kForward, 1);
  ASSERT_OK(writer_.Emit(Rec(1'000'000'007)));
  ASSERT_OK(writer_.EmitWatermark(5));
  FillBuffers(1);
  ASSERT_EQ(logs_[0]->sent.size(), 1u) << "sent when full, with the watermark";
  EXPECT_EQ(logs_[0]->sent[0], absl::StrCat("d", RecordsPerBuffer(), ":1000000007+w5@1"));
}

TEST_F(RecordWriterTest, ANewerWatermarkReplacesOneNotSentYet) {
  AddEdge(plan::Partition::kHash, 2);
  ASSERT_OK(writer_.EmitWatermark(5));
  ASSERT_OK(writer_.Emit(Rec(1)));
  ASSERT_OK(writer_.EmitWatermark(6));
  ASSERT_OK(writer_.Emit(Rec(1)));
  ASSERT_OK(writer_.EmitWatermark(8));
  ASSERT_OK(writer_.FlushAll());
  // Key 1 goes to one channel; the other sends its watermark alone.
  const int c = logs_[0]->sent.size() == 1 && logs_[0]->sent[0] == "w8" ? 1 : 0;
  EXPECT_THAT(logs_[c]->sent, ElementsAre("d2:1+w8@2"));
  EXPECT_THAT(logs_[1 - c]->sent, ElementsAre("w8"));
}

TEST_F(RecordWriterTest, ALowerWatermarkDoesNotReplaceAHigherOneNotSentYet) {
  AddEdge(plan::Partition::kForward, 1);
  ASSERT_OK(writer_.Emit(Rec(1)));
  ASSERT_OK(writer_.EmitWatermark(8));
  ASSERT_OK(writer_.Emit(Rec(2)));
  ASSERT_OK(writer_.EmitWatermark(8));  // equal: the earlier place stays
  ASSERT_OK(writer_.EmitWatermark(6));  // lower: ignored, the watermark never goes back
  ASSERT_OK(writer_.FlushAll());
  EXPECT_THAT(logs_[0]->sent, ElementsAre("d2:1+w8@1"));
}

TEST_F(RecordWriterTest, AWatermarkAloneLeavesAtTheBufferTimeout) {
  AddEdge(plan::Partition::kForward, 1);
  const int64_t start = clock_.NowNanos();
  ASSERT_OK(writer_.EmitWatermark(5));
  EXPECT_EQ(writer_.FlushDeadlineNanos(), start + kTimeoutNanos);
  clock_.AdvanceNanos(kTimeoutNanos - 1);
  ASSERT_OK(writer_.FlushIfDue(false));
  EXPECT_TRUE(logs_[0]->sent.empty());
  clock_.AdvanceNanos(1);
  ASSERT_OK(writer_.FlushIfDue(false));
  EXPECT_THAT(logs_[0]->sent, ElementsAre("w5"));
  EXPECT_EQ(writer_.FlushDeadlineNanos(), std::numeric_limits<int64_t>::max());
}

TEST_F(RecordWriterTest, BarriersStatusChangesAndEndOfPartitionFollowAPendingWatermark) {
  AddEdge(plan::Partition::kForward, 1);
  ASSERT_OK(writer_.Emit(Rec(1)));
  ASSERT_OK(writer_.EmitWatermark(5));
  ASSERT_OK(writer_.EmitBarrier(2, /*priority=*/false, nullptr));
  ASSERT_OK(writer_.EmitWatermark(6));
  ASSERT_OK(writer_.EmitWatermarkStatus(true));
  ASSERT_OK(writer_.EmitWatermarkStatus(false));
  ASSERT_OK(writer_.Emit(Rec(3)));
  ASSERT_OK(writer_.EmitWatermark(7));
  ASSERT_OK(writer_.EndOfPartition());
  EXPECT_THAT(logs_[0]->sent,
              ElementsAre("d1:1+w5@1", "b2", "w6", "idle", "active", "d1:3+w7@1", "eop", "close"));
}

TEST_F(RecordWriterTest, APriorityBarrierKeepsTheWatermarkOfTheBufferItOvertakes) {
  AddEdge(plan::Partition::kForward, 1);
  logs_[0]->credits = 0;
  ASSERT_OK(writer_.Emit(Rec(1)));
  ASSERT_OK(writer_.EmitWatermark(5));
  proto::ChannelStateFile in_flight;
  ASSERT_OK(writer_.EmitBarrier(4, /*priority=*/true, &in_flight));
  EXPECT_THAT(logs_[0]->sent, ElementsAre("p4"));
  ASSERT_EQ(in_flight.items_size(), 2);
  EXPECT_EQ(in_flight.items(0).num_records(), 1);
  EXPECT_FALSE(in_flight.items(0).has_watermark());
  EXPECT_EQ(in_flight.items(1).watermark(), 5);
  logs_[0]->credits = 1;
  ASSERT_OK(writer_.TrySend().status());
  EXPECT_THAT(logs_[0]->sent, ElementsAre("p4", "d1:1+w5@1"));
}

TEST_F(RecordWriterTest, BuffersWithoutCreditWaitInTheBacklogInOrder) {
  BackloggedChannel({1, 2});
  ASSERT_OK(writer_.EmitWatermark(9));
  ASSERT_OK(writer_.FlushAll());  // a watermark alone: no record followed it
  EXPECT_TRUE(logs_[0]->sent.empty());
  EXPECT_TRUE(writer_.HasBacklog());
  auto sent = writer_.TrySend();
  ASSERT_OK(sent.status());
  EXPECT_FALSE(*sent);
  EXPECT_EQ(logs_[0]->waits, 0) << "TrySend() never waits";
  ASSERT_OK(writer_.WaitForCredit(Clock::Real()->NowNanos() + 1));
  EXPECT_EQ(logs_[0]->waits, 1);
  logs_[0]->credits = 2;
  sent = writer_.TrySend();
  ASSERT_OK(sent.status());
  EXPECT_FALSE(*sent);
  logs_[0]->credits = 1;
  sent = writer_.TrySend();
  ASSERT_OK(sent.status());
  EXPECT_TRUE(*sent);
  EXPECT_THAT(logs_[0]->sent, ElementsAre("d1:1", "d1:2", "w9"));
}

TEST_F(RecordWriterTest, AnOperatorWaitsForCreditOnlyBeyondTheOverdraft) {
  AddEdge(plan::Partition::kForward, 1);
  logs_[0]->credits = 0;
  FillBuffers(static_cast<int>(kOverdraftBuffers));
  EXPECT_TRUE(logs_[0]->sent.empty()) << "up to kOverdraftBuffers wait in the backlog";
  FillBuffers(1);
  ASSERT_EQ(logs_[0]->sent.size(), 1u);
  EXPECT_EQ(logs_[0]->sent[0].substr(0, 2), "!d") << "the oldest is sent by a blocking Send()";
}

TEST_F(RecordWriterTest, PriorityBarrierOvertakesTheBacklogWhichBecomesInFlightData) {
  ForwardAndRebalanceWithAStuckChannel();
  proto::ChannelStateFile in_flight;
  ASSERT_OK(writer_.EmitBarrier(4, /*priority=*/true, &in_flight));
  EXPECT_THAT(logs_[0]->sent, ElementsAre("d1:10", "d1:11", "d1:12", "d1:13", "p4"));
  EXPECT_THAT(logs_[1]->sent, ElementsAre("d1:10", "d1:12", "p4"));
  EXPECT_THAT(logs_[2]->sent, ElementsAre("p4"));
  ASSERT_EQ(in_flight.items_size(), 2);
  for (int i = 0; i < 2; ++i) {
    EXPECT_TRUE(in_flight.items(i).output());
    EXPECT_EQ(in_flight.items(i).channel(), 2);
    EXPECT_EQ(in_flight.items(i).num_records(), 1);
  }
  // The overtaken buffers are still sent after the barrier.
  logs_[2]->credits = 2;
  auto sent = writer_.TrySend();
  ASSERT_OK(sent.status());
  EXPECT_TRUE(*sent);
  EXPECT_THAT(logs_[2]->sent, ElementsAre("p4", "d1:11", "d1:13"));
}

TEST_F(RecordWriterTest, AlignedBarrierQueuesBehindTheBacklog) {
  BackloggedChannel({1});
  proto::ChannelStateFile in_flight;
  ASSERT_OK(writer_.EmitBarrier(2, /*priority=*/false, &in_flight));
  EXPECT_EQ(in_flight.items_size(), 0);
  logs_[0]->credits = 5;
  ASSERT_OK(writer_.TrySend().status());
  EXPECT_THAT(logs_[0]->sent, ElementsAre("d1:1", "b2"));
}

TEST_F(RecordWriterTest, ATimeoutableBarrierWithCreditGoesInPlace) {
  AddEdge(plan::Partition::kForward, 1);
  EmitOne(1);
  ASSERT_OK(writer_.EmitTimeoutableBarrier(2));
  EXPECT_FALSE(writer_.HasQueuedBarrier());
  EXPECT_THAT(logs_[0]->sent, ElementsAre("d1:1", "b2t"));
}

TEST_F(RecordWriterTest, ATimeoutableBarrierLeavesWithTheBacklogInPlace) {
  BackloggedChannel({1, 2});
  ASSERT_OK(writer_.EmitTimeoutableBarrier(3));
  EmitOne(4);
  EXPECT_TRUE(writer_.HasQueuedBarrier());
  logs_[0]->credits = 2;
  ASSERT_OK(writer_.TrySend().status());
  EXPECT_TRUE(writer_.HasQueuedBarrier()) << "it was third in the backlog";
  logs_[0]->credits = 1;
  ASSERT_OK(writer_.TrySend().status());
  EXPECT_FALSE(writer_.HasQueuedBarrier());
  EXPECT_THAT(logs_[0]->sent, ElementsAre("d1:1", "d1:2", "b3t"));
  // Nothing left to convert: a late conversion stores nothing and sends nothing.
  proto::ChannelStateFile in_flight;
  ASSERT_OK(writer_.ConvertQueuedBarrier(&in_flight));
  EXPECT_EQ(in_flight.items_size(), 0);
  EXPECT_THAT(logs_[0]->sent, ElementsAre("d1:1", "d1:2", "b3t"));
}

TEST_F(RecordWriterTest, AConvertedBarrierStoresExactlyTheBuffersItOvertakes) {
  ForwardAndRebalanceWithAStuckChannel();
  ASSERT_OK(writer_.EmitTimeoutableBarrier(4));
  EmitOne(14);  // edge 0, edge 1 channel 0
  EmitOne(15);  // edge 0, edge 1 channel 1 (backlogged behind the barrier)
  EXPECT_TRUE(writer_.HasQueuedBarrier());
  EXPECT_THAT(logs_[1]->sent, ElementsAre("d1:10", "d1:12", "b4t", "d1:14"));
  proto::ChannelStateFile in_flight;
  ASSERT_OK(writer_.ConvertQueuedBarrier(&in_flight));
  EXPECT_FALSE(writer_.HasQueuedBarrier());
  // Channels whose barrier had left are untouched; the stuck one overtakes its backlog.
  EXPECT_THAT(logs_[0]->sent,
              ElementsAre("d1:10", "d1:11", "d1:12", "d1:13", "b4t", "d1:14", "d1:15"));
  EXPECT_THAT(logs_[1]->sent, ElementsAre("d1:10", "d1:12", "b4t", "d1:14"));
  EXPECT_THAT(logs_[2]->sent, ElementsAre("p4x"));
  ASSERT_EQ(in_flight.items_size(), 2) << "the buffers before the barrier, not the one after";
  std::vector<int64_t> firsts;
  for (int i = 0; i < 2; ++i) {
    EXPECT_TRUE(in_flight.items(i).output());
    EXPECT_EQ(in_flight.items(i).channel(), 2);
    ASSERT_EQ(in_flight.items(i).num_records(), 1);
    RecordDecoder dec(&schema_, in_flight.items(i).buffer());
    Record r(1);
    ASSERT_OK(dec.Next(&r));
    firsts.push_back(r.GetInt(0));
  }
  EXPECT_THAT(firsts, ElementsAre(11, 13));
  // Every buffer is still sent, in order, after the barrier.
  logs_[2]->credits = 3;
  auto sent = writer_.TrySend();
  ASSERT_OK(sent.status());
  EXPECT_TRUE(*sent);
  EXPECT_THAT(logs_[2]->sent, ElementsAre("p4x", "d1:11", "d1:13", "d1:15"));
}

// A savepoint's barrier still queued (in place) when a later barrier overtakes the backlog is no
// data: only the buffers are stored.
TEST_F(RecordWriterTest, AnOvertakenSavepointBarrierIsNotStored) {
  BackloggedChannel({1});
  ASSERT_OK(writer_.EmitBarrier(2, /*priority=*/false, nullptr));
  EmitOne(3);
  proto::ChannelStateFile in_flight;
  ASSERT_OK(writer_.EmitBarrier(4, /*priority=*/true, &in_flight));
  ASSERT_EQ(in_flight.items_size(), 2);
  EXPECT_EQ(in_flight.items(0).num_records(), 1);
  EXPECT_EQ(in_flight.items(1).num_records(), 1);

  // The same when a timeoutable barrier behind them is converted.
  ASSERT_OK(writer_.EmitTimeoutableBarrier(5));
  in_flight.Clear();
  ASSERT_OK(writer_.ConvertQueuedBarrier(&in_flight));
  ASSERT_EQ(in_flight.items_size(), 2);
  EXPECT_EQ(in_flight.items(0).num_records(), 1);
  EXPECT_EQ(in_flight.items(1).num_records(), 1);
  EXPECT_THAT(logs_[0]->sent, ElementsAre("p4", "p5x"));
}

// The barrier says how long its checkpoint has waited when it leaves: what it had waited when
// emitted plus its time in the backlog; converted, the same.
TEST_F(RecordWriterTest, AQueuedBarrierCarriesHowLongItsCheckpointWaited) {
  AddEdge(plan::Partition::kForward, 1);
  AddEdge(plan::Partition::kForward, 1);
  logs_[0]->credits = 0;
  logs_[1]->credits = 0;
  EmitOne(1);
  ASSERT_OK(writer_.EmitTimeoutableBarrier(2, /*waited_nanos=*/30'000'000));
  clock_.AdvanceNanos(45'000'000);
  logs_[0]->credits = 2;
  ASSERT_OK(writer_.TrySend().status());
  EXPECT_THAT(logs_[0]->sent, ElementsAre("d1:1", "b2t"));
  EXPECT_THAT(logs_[0]->waited_ms, ElementsAre(75));
  clock_.AdvanceNanos(10'000'000);
  proto::ChannelStateFile in_flight;
  ASSERT_OK(writer_.ConvertQueuedBarrier(&in_flight));
  EXPECT_THAT(logs_[1]->sent, ElementsAre("p2x"));
  EXPECT_THAT(logs_[1]->waited_ms, ElementsAre(85));
  // With credit it leaves at once, saying what it had waited when emitted.
  logs_[0]->credits = 5;
  ASSERT_OK(writer_.EmitTimeoutableBarrier(3, /*waited_nanos=*/7'000'000));
  EXPECT_THAT(logs_[0]->waited_ms, ElementsAre(75, 7));
}

TEST_F(RecordWriterTest, ADroppedBarrierIsNeverSent) {
  BackloggedChannel({1});
  ASSERT_OK(writer_.EmitTimeoutableBarrier(2));
  EmitOne(3);
  writer_.DropQueuedBarrier();
  EXPECT_FALSE(writer_.HasQueuedBarrier());
  logs_[0]->credits = 5;
  auto sent = writer_.TrySend();
  ASSERT_OK(sent.status());
  EXPECT_TRUE(*sent);
  EXPECT_THAT(logs_[0]->sent, ElementsAre("d1:1", "d1:3"));
}

TEST_F(RecordWriterTest, AnOverdraftWaitOrTheEndOfPartitionSendsAQueuedBarrier) {
  BackloggedChannel({1});
  ASSERT_OK(writer_.EmitTimeoutableBarrier(2));
  FillBuffers(static_cast<int>(kOverdraftBuffers) - 2);  // the backlog holds kOverdraftBuffers
  EXPECT_TRUE(writer_.HasQueuedBarrier());
  EXPECT_TRUE(logs_[0]->sent.empty());
  FillBuffers(1);  // one beyond the overdraft: the oldest (the buffer before the barrier) is sent
  EXPECT_TRUE(writer_.HasQueuedBarrier());
  FillBuffers(1);  // ... then the barrier
  EXPECT_FALSE(writer_.HasQueuedBarrier());
  ASSERT_EQ(logs_[0]->sent.size(), 2u);
  EXPECT_EQ(logs_[0]->sent[1], "!b2t");

  ASSERT_OK(writer_.EmitTimeoutableBarrier(3));
  EXPECT_TRUE(writer_.HasQueuedBarrier());
  ASSERT_OK(writer_.EndOfPartition());
  EXPECT_FALSE(writer_.HasQueuedBarrier());
  EXPECT_EQ(logs_[0]->sent.end()[-3], "!b3t");
  EXPECT_EQ(logs_[0]->sent.end()[-2], "!eop");
}

TEST_F(RecordWriterTest, RestoredInFlightDataGoesFirst) {
  AddEdge(plan::Partition::kForward, 1);
  AddEdge(plan::Partition::kForward, 1);
  logs_[1]->credits = 0;
  std::string data;
  EncodeRecord(schema_, Rec(77), &data);
  BufferItem restored(0, RecordBuffer{data, 1});
  EXPECT_TRUE(writer_.PushRestored(1, restored));
  EXPECT_FALSE(writer_.PushRestored(2, restored)) << "the task has 2 output channels";
  EXPECT_FALSE(writer_.PushRestored(-1, restored));
  EXPECT_EQ(writer_.num_channels(), 2);
  EmitOne(5);
  logs_[1]->credits = 2;
  ASSERT_OK(writer_.TrySend().status());
  EXPECT_THAT(logs_[0]->sent, ElementsAre("d1:5"));
  EXPECT_THAT(logs_[1]->sent, ElementsAre("d1:77", "d1:5"));
}

TEST_F(RecordWriterTest, EndOfPartitionFlushesSendsEverythingAndCloses) {
  AddEdge(plan::Partition::kForward, 1);
  logs_[0]->credits = 0;
  EmitOne(1);
  ASSERT_OK(writer_.Emit(Rec(2)));
  ASSERT_OK(writer_.EndOfPartition());
  EXPECT_THAT(logs_[0]->sent, ElementsAre("!d1:1", "!d1:2", "!eop", "close"));
}

TEST_F(RecordWriterTest, CancelReachesChannelsAddedBeforeAndAfterUntilShutdown) {
  AddEdge(plan::Partition::kForward, 1);
  writer_.Interrupt();
  EXPECT_EQ(logs_[0]->interrupts, 1);
  writer_.Cancel();
  EXPECT_TRUE(logs_[0]->cancelled);
  AddEdge(plan::Partition::kForward, 1);
  EXPECT_TRUE(logs_[1]->cancelled) << "added after Cancel()";
  EXPECT_THAT(writer_.Emit(Rec(1)), StatusIs(absl::StatusCode::kOk, ::testing::_))
      << "records only fill the buffer";
  EXPECT_THAT(writer_.FlushAll(), StatusIs(absl::StatusCode::kCancelled, ::testing::_));
}

TEST_F(RecordWriterTest, ShutdownCancelsChannelsOfAFailedTaskAndForgetsThem) {
  AddEdge(plan::Partition::kForward, 2);
  writer_.Shutdown(/*cancel_channels=*/true);
  EXPECT_TRUE(logs_[0]->cancelled);
  EXPECT_TRUE(logs_[1]->cancelled);
  EXPECT_EQ(writer_.num_channels(), 0);
  writer_.Interrupt();  // reaches nothing (the channels are gone)
  EXPECT_EQ(logs_[0]->interrupts, 0);
}

TEST_F(RecordWriterTest, AnInterruptEndsAWaitForCredit) {
  AddEdge(plan::Partition::kForward, 1);
  logs_[0]->credits = 0;
  EmitOne(1);
  logs_[0]->credits = 1;
  writer_.Interrupt();
  ASSERT_OK(writer_.WaitForCredit(std::numeric_limits<int64_t>::max()));
  EXPECT_TRUE(writer_.HasBacklog()) << "interrupted before sending";
  ASSERT_OK(writer_.WaitForCredit(std::numeric_limits<int64_t>::max()));
  EXPECT_FALSE(writer_.HasBacklog());
  EXPECT_THAT(logs_[0]->sent, ElementsAre("d1:1"));
}

// A channel that keeps the records buffers sent to it (always with credit).
class CaptureChannel final : public ChannelWriter {
 public:
  explicit CaptureChannel(std::vector<RecordBuffer>* buffers) : buffers_(buffers) {}
  absl::Status Send(BufferItem item) override {
    if (RecordBuffer* b = item.as<RecordBuffer>()) buffers_->push_back(std::move(*b));
    return absl::OkStatus();
  }
  absl::StatusOr<bool> Offer(BufferItem& item, int64_t) override {
    SLUICE_RETURN_IF_ERROR(Send(std::move(item)));
    return true;
  }
  absl::Status SendPriority(BufferItem) override { return absl::OkStatus(); }
  void Interrupt() override {}
  absl::Status Close() override { return absl::OkStatus(); }
  void Cancel() override {}
  int64_t CreditWaitNanos() const override { return 0; }

 private:
  std::vector<RecordBuffer>* buffers_;
};

// Records are encoded straight into the channel's buffer, which has room for a full buffer and
// some more: the buffers hold exactly the bytes EncodeRecord() appends for the same records, cut
// where appending would cut them (at the first record reaching kOutputBufferBytes), also for
// nulls, empty strings, a record ending exactly at the room's end and records larger than it.
TEST(RecordWriterEncodingTest, BuffersHoldWhatEncodeRecordAppends) {
  const Schema schema({{"k", FieldType::kInt64},
                       {"s", FieldType::kString, /*nullable=*/true},
                       {"d", FieldType::kDouble}});
  plan::Edge edge;
  edge.partition = plan::Partition::kForward;
  edge.schema = schema;
  std::vector<RecordBuffer> buffers;
  std::vector<std::unique_ptr<ChannelWriter>> channels;
  channels.push_back(std::make_unique<CaptureChannel>(&buffers));
  FakeClock clock;
  RecordWriter writer(&clock, 1'000'000'000, 0);
  writer.AddEdge(&edge, 128, std::move(channels), ops::KeyHasher(), nullptr, {}, "", {});

  // The general path, by hand: appended records, a buffer cut once it reaches the size.
  std::vector<std::string> expected(1);
  int expected_records = 0;
  std::vector<int> expected_counts;
  Record r(schema.size());
  auto emit = [&](int64_t k, absl::optional<std::string> s) {
    r.SetInt(0, k);
    r.SetNullTo(1, !s.has_value());
    r.SetString(1, s.value_or("ignored"));
    r.SetDouble(2, k * 0.25);
    ASSERT_OK(writer.Emit(r));
    EncodeRecord(schema, r, &expected.back());
    ++expected_records;
    if (expected.back().size() >= kOutputBufferBytes) {
      expected.emplace_back();
      expected_counts.push_back(expected_records);
      expected_records = 0;
    }
  };
  int64_t k = 0;
  for (int i = 0; i < 3000; ++i, ++k) {  // small records, some null, some empty
    emit(k, i % 7 == 0 ? absl::nullopt : absl::make_optional(std::string(i % 13, 'a' + i % 26)));
  }
  emit(k++, std::string(40'000, 'x'));  // larger than a buffer's room, into a partly filled one
  emit(k++, std::string(100'000, 'y'));  // ... and alone in a fresh one
  // Fill up to a few bytes before the size, then one record that ends exactly at the room's end
  // (11 bytes per field of bound, so a string of the rest) and one beyond it.
  while (expected.back().size() + 20 < kOutputBufferBytes) emit(k++, std::string(5, 'z'));
  const size_t room = kOutputBufferBytes + 1024 - expected.back().size();
  emit(k++, std::string(room - 33, 'r'));
  emit(k++, std::string(room, 's'));
  for (int i = 0; i < 100; ++i, ++k) emit(k, std::string(i, 'q'));
  ASSERT_OK(writer.FlushAll());
  if (!expected.back().empty()) expected_counts.push_back(expected_records);
  if (expected.back().empty()) expected.pop_back();

  ASSERT_EQ(buffers.size(), expected.size());
  for (size_t i = 0; i < buffers.size(); ++i) {
    EXPECT_EQ(buffers[i].data, expected[i]) << "buffer " << i;
    EXPECT_EQ(buffers[i].num_records, expected_counts[i]) << "buffer " << i;
  }
  writer.Shutdown(false);
}

// Emits `records` to writers[0] one by one and to writers[1] in batches of varying sizes
// (shorter and longer than a hash run of 64, empty ones, `long_batch`), then flushes and shuts
// both down.
void EmitOneByOneAndInBatches(const std::vector<Record>& records, size_t long_batch,
                              std::unique_ptr<RecordWriter> (&writers)[2]) {
  for (const Record& r : records) ASSERT_OK(writers[0]->Emit(r));
  const size_t batch_sizes[] = {1, 0, 63, 64, 65, long_batch, 1000, 7};
  size_t next = 0;
  for (size_t b = 0; next < records.size(); ++b) {
    const size_t n = std::min(batch_sizes[b % 8], records.size() - next);
    ASSERT_OK(writers[1]->EmitBatch(records.data() + next, n));
    next += n;
  }
  for (int w = 0; w < 2; ++w) {
    ASSERT_OK(writers[w]->FlushAll());
    writers[w]->Shutdown(false);
  }
}

// EmitBatch() sends the buffers Emit() sends for the same records one by one, on hash (keyed by
// an int and a string), rebalance, broadcast and forward edges, for batches shorter and longer
// than a hash run (64), empty ones, and enough records to fill several buffers per channel.
TEST(RecordWriterBatchTest, BatchesSendWhatRecordsSend) {
  const Schema schema({{"k", FieldType::kInt64}, {"s", FieldType::kString}});
  const plan::Partition partitions[] = {plan::Partition::kHash, plan::Partition::kRebalance,
                                        plan::Partition::kBroadcast, plan::Partition::kForward};
  const int widths[] = {3, 2, 2, 1};
  std::vector<std::unique_ptr<plan::Edge>> edges;
  for (size_t e = 0; e < 4; ++e) {
    auto edge = std::make_unique<plan::Edge>();
    edge->id = static_cast<int>(e);
    edge->partition = partitions[e];
    edge->schema = schema;
    if (partitions[e] == plan::Partition::kHash) edge->key = {{"k", "k"}, {"s", "s"}};
    edges.push_back(std::move(edge));
  }
  // Per writer, per channel (numbered across edges): the buffers it was sent.
  std::vector<std::vector<RecordBuffer>> sent[2];
  FakeClock clock;
  std::unique_ptr<RecordWriter> writers[2];
  for (int w = 0; w < 2; ++w) {
    sent[w].resize(8);
    writers[w] = std::make_unique<RecordWriter>(&clock, 1'000'000'000, 0);
    int channel = 0;
    for (size_t e = 0; e < 4; ++e) {
      std::vector<std::unique_ptr<ChannelWriter>> channels;
      for (int c = 0; c < widths[e]; ++c) {
        channels.push_back(std::make_unique<CaptureChannel>(&sent[w][channel++]));
      }
      ops::KeyHasher hasher;
      if (!edges[e]->key.empty()) {
        auto h = ops::KeyHasher::Create(edges[e]->key, schema);
        ASSERT_OK(h.status());
        hasher = std::move(*h);
      }
      writers[w]->AddEdge(edges[e].get(), 128, std::move(channels), std::move(hasher), nullptr, {},
                          "", {});
    }
  }
  std::vector<Record> records;
  for (int64_t i = 0; i < 20000; ++i) {
    Record r(2);
    r.SetInt(0, (i * 7919) % 1000 - 500);
    r.SetString(1, std::string(static_cast<size_t>(i % 11), static_cast<char>('a' + i % 5)));
    records.push_back(std::move(r));
  }
  EmitOneByOneAndInBatches(records, 200, writers);
  if (HasFatalFailure()) return;
  for (size_t c = 0; c < 8; ++c) {
    ASSERT_EQ(sent[1][c].size(), sent[0][c].size()) << "channel " << c;
    EXPECT_GT(sent[0][c].size(), c < 3 ? 1u : 2u) << "channel " << c << ": several buffers";
    for (size_t i = 0; i < sent[0][c].size(); ++i) {
      EXPECT_EQ(sent[1][c][i].data, sent[0][c][i].data) << "channel " << c << " buffer " << i;
      EXPECT_EQ(sent[1][c][i].num_records, sent[0][c][i].num_records) << "channel " << c << " buffer " << i;
    }
  }
}

// On an edge that carries key groups, every buffer comes with its records' key groups in
// record order, each the one that picked the record's channel, computed again here from the
// key: for Emit() and EmitBatch(), negative and positive keys, several buffers per channel, one
// byte a key group at max parallelism 128 and two at 1000 (key groups past 255). An edge that
// does not carry them sends none.
TEST(RecordWriterKeyGroupsTest, EachRecordCarriesTheKeyGroupOfItsKey) {
  const Schema schema({Field{"k", FieldType::kInt64}});
  constexpr int kChannels = 3;
  constexpr int kRecords = 40000;  // ~5 buffers per channel
  std::vector<Record> records;
  for (int64_t i = 0; i < kRecords; ++i) {
    records.emplace_back(1);
    records.back().SetInt(0, (i * 7919) % 100003 - 50000);
  }
  for (const int max_parallelism : {128, 1000}) {
    for (const bool carry : {true, false}) {
      for (const bool batch : {false, true}) {
        SCOPED_TRACE(absl::StrCat(max_parallelism, carry ? " carried" : " not carried", batch ? " batch" : ""));
        plan::Edge edge;
        edge.partition = plan::Partition::kHash;
        edge.key = {{"k", "k"}};
        edge.schema = schema;
        edge.carry_key_groups = carry;
        auto hasher = ops::KeyHasher::Create(edge.key, schema);  // the test's own
        ASSERT_OK(hasher.status());
        auto writers = ops::KeyHasher::Create(edge.key, schema);
        ASSERT_OK(writers.status());
        std::vector<std::vector<RecordBuffer>> kept(kChannels);
        std::vector<std::unique_ptr<ChannelWriter>> channels;
        for (auto& k : kept) channels.push_back(std::make_unique<CaptureChannel>(&k));
        RecordWriter writer(Clock::Real(), std::numeric_limits<int64_t>::max(), 0);
        writer.AddEdge(&edge, max_parallelism, std::move(channels), *std::move(writers), nullptr, {}, "",
                       {});
        if (batch) {
          ASSERT_OK(writer.EmitBatch(records.data(), records.size()));
        } else {
          for (const Record& r : records) ASSERT_OK(writer.Emit(r));
        }
        ASSERT_OK(writer.FlushAll());
        const size_t width = max_parallelism > 256 ? 2 : 1;
        size_t total = 0;
        int largest = -1;
        for (int c = 0; c < kChannels; ++c) {
          EXPECT_GT(kept[c].size(), 1u) << c;
          for (const RecordBuffer& b : kept[c]) {
            if (!carry) {
              EXPECT_TRUE(b.key_groups.empty());
              total += b.num_records;
              continue;
            }
            ASSERT_EQ(b.key_groups.size(), width * b.num_records);
            RecordDecoder dec(&schema, b.data);
            Record r(1);
            for (int j = 0; j < b.num_records; ++j, ++total) {
              ASSERT_OK(dec.Next(&r));
              const auto* p = reinterpret_cast<const unsigned char*>(b.key_groups.data()) + j * width;
              const int kg = width == 1 ? p[0] : p[0] | (p[1] << 8);
              const int expected = KeyGroupForHash(hasher->Hash(r), max_parallelism);
              ASSERT_EQ(kg, expected) << "key " << r.GetInt(0);
              ASSERT_EQ(SubtaskForKeyGroup(kg, max_parallelism, kChannels), c);
              largest = std::max(largest, kg);
            }
          }
        }
        EXPECT_EQ(total, static_cast<size_t>(kRecords));
        if (carry) {
          EXPECT_EQ(largest, max_parallelism - 1);
        }
      }
    }
  }
}

// A hash edge of NOT NULL integers (encoded a run at a time with the channels' write positions
// in locals) sends the buffers, record counts and key groups Emit() sends record by record: 3
// channels and 17 (more than such a run keeps in locals), key groups carried (one byte each at
// max parallelism 128, two at 1000) or not, values of
// 1 to 10 varint bytes, and records of 300 fields (3,300 bytes of bound: the buffer grows by
// more than its usual step).
TEST(RecordWriterBatchTest, IntegralHashBatchesSendWhatRecordsSend) {
  for (const size_t fields : {size_t{2}, size_t{300}}) {
    std::vector<Field> schema_fields;
    for (size_t f = 0; f < fields; ++f) {
      schema_fields.push_back(Field{absl::StrCat("f", f), f == 1 ? FieldType::kTimestamp : FieldType::kInt64});
    }
    const Schema schema(schema_fields);
    ASSERT_TRUE(schema.all_integral());
    const int64_t count = fields == 2 ? 120000 : 1500;
    std::vector<Record> records;
    for (int64_t i = 0; i < count; ++i) {
      Record r(fields);
      r.SetInt(0, (i * 7919) % 1000 - 500);
      for (size_t f = 1; f < fields; ++f) {
        // 1 to 10 bytes: shifts of a value with both signs, the int64 limits now and then.
        const int shift = static_cast<int>((i + f) % 63);
        int64_t v = (int64_t{1} << shift) + i;
        if ((i + f) % 3 == 0) v = -v;
        if ((i + f) % 101 == 0) v = (i + f) % 2 ? std::numeric_limits<int64_t>::max() : std::numeric_limits<int64_t>::min();
        r.SetInt(f, v);
      }
      records.push_back(std::move(r));
    }
    for (const int num_channels : {3, 17}) {
      for (const int max_parallelism : {0, 128, 1000}) {  // 0: no key groups carried
        const bool carry = max_parallelism > 0;
        SCOPED_TRACE(absl::StrCat(fields, " fields, ", num_channels, " channels, max parallelism ",
                                  max_parallelism));
        plan::Edge edge;
        edge.partition = plan::Partition::kHash;
        edge.key = {{"f0", "f0"}};
        edge.schema = schema;
        edge.carry_key_groups = carry;
        std::vector<std::vector<RecordBuffer>> sent[2];
        FakeClock clock;
        std::unique_ptr<RecordWriter> writers[2];
        for (int w = 0; w < 2; ++w) {
          sent[w].resize(num_channels);
          std::vector<std::unique_ptr<ChannelWriter>> channels;
          for (auto& kept : sent[w]) channels.push_back(std::make_unique<CaptureChannel>(&kept));
          auto hasher = ops::KeyHasher::Create(edge.key, schema);
          ASSERT_OK(hasher.status());
          writers[w] = std::make_unique<RecordWriter>(&clock, 1'000'000'000, 0);
          writers[w]->AddEdge(&edge, carry ? max_parallelism : 1000, std::move(channels),
                              *std::move(hasher), nullptr, {}, "", {});
        }
        EmitOneByOneAndInBatches(records, 256, writers);
        if (HasFatalFailure()) return;
        for (int c = 0; c < num_channels; ++c) {
          ASSERT_EQ(sent[1][c].size(), sent[0][c].size()) << "channel " << c;
          EXPECT_GT(sent[0][c].size(), num_channels == 3 ? 2u : 1u) << "channel " << c << ": several buffers";
          for (size_t i = 0; i < sent[0][c].size(); ++i) {
            EXPECT_EQ(sent[1][c][i].data, sent[0][c][i].data) << "channel " << c << " buffer " << i;
            EXPECT_EQ(sent[1][c][i].num_records, sent[0][c][i].num_records) << "channel " << c << " buffer " << i;
            EXPECT_EQ(sent[1][c][i].key_groups, sent[0][c][i].key_groups) << "channel " << c << " buffer " << i;
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace sluice::worker
