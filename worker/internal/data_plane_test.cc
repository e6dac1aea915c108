#include "worker/internal/data_plane.h"

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "gtest/gtest.h"

namespace sluice::worker {
namespace {

// A channel of 8 credits: the first grant is all of them; freed credits are held back while the
// producer holds more than 4 and go back together once it holds 4 or fewer.
TEST(CreditBatcherTest, HoldsFreedCreditsWhileTheProducerHoldsMoreThanHalf) {
  CreditBatcher c(8);
  EXPECT_EQ(c.Take(), 0);  // nothing freed yet
  c.Freed(8);
  EXPECT_EQ(c.Take(), 8);
  EXPECT_EQ(c.Take(), 0);

  // Two buffers arrive and are consumed: the producer still holds 6.
  c.Arrived();
  c.Arrived();
  c.Freed(1);
  c.Freed(1);
  EXPECT_EQ(c.Take(), 0);
  c.Arrived();  // holds 5
  c.Freed(1);
  EXPECT_EQ(c.Take(), 0);
  c.Arrived();  // holds 4: the three freed go back at once
  EXPECT_EQ(c.Take(), 3);
  EXPECT_EQ(c.Take(), 0);
  c.Freed(1);  // holds 7 again (4 + 3)
  EXPECT_EQ(c.Take(), 0);
}

// A slow consumer: the producer has spent every credit, so each freed one goes back at once.
TEST(CreditBatcherTest, ReturnsEveryCreditAtOnceToAProducerWithoutCredit) {
  CreditBatcher c(8);
  c.Freed(8);
  ASSERT_EQ(c.Take(), 8);
  for (int i = 0; i < 8; ++i) c.Arrived();
  for (int i = 0; i < 8; ++i) {
    c.Freed(1);
    EXPECT_EQ(c.Take(), 1) << i;
    c.Arrived();  // the producer spends it at once
  }
  // A freed credit is never held while the producer holds half or fewer.
  c.Freed(2);
  EXPECT_EQ(c.Take(), 2);
  c.Freed(2);
  EXPECT_EQ(c.Take(), 2);  // now holds 4
  c.Freed(1);
  EXPECT_EQ(c.Take(), 1);  // now holds 5
  c.Freed(1);
  EXPECT_EQ(c.Take(), 0);
}

proto::ChannelHeader TestHeader() {
  proto::ChannelHeader h;
  h.set_job_id("job");
  h.set_edge(1);
  return h;
}

grpc::ChannelArguments NoBdpArgs() {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);  // the stream window stays 64 KiB
  return args;
}

// The items a gate holds (records as "records:<data>/<count>", watermarks as "wm:<ms>"), taken
// without waiting once `n` are queued.
std::vector<std::string> PollItems(InputGate& gate, int n) {
  std::vector<std::string> out;
  const int64_t deadline = Clock::Real()->NowNanos() + 20'000'000'000;
  while (static_cast<int>(out.size()) < n && Clock::Real()->NowNanos() < deadline) {
    absl::optional<BufferItem> item = gate.Poll(deadline);
    if (!item.has_value()) continue;
    if (const RecordBuffer* b = item->as<RecordBuffer>()) {
      out.push_back("records:" + b->data + "/" + std::to_string(b->num_records));
    } else if (const WatermarkAdvance* w = item->as<WatermarkAdvance>()) {
      out.push_back("wm:" + std::to_string(w->ms));
    } else {
      out.push_back("other");
    }
  }
  return out;
}

proto::DataMessage BufferMessage(const std::string& data, int records) {
  proto::DataMessage m;
  m.set_buffer(data);
  m.set_num_records(records);
  return m;
}

// A batch message is delivered as its messages in order, each taking its credit: after four
// credit-taking items the producer holds 4 of 8 credits, so the first credit freed goes back at
// once (CreditBatcher; then it holds 5 and the other three are held back).
TEST(DataPlaneServiceTest, DeliversABatchMessageInOrderAndCountsItsCredits) {
  auto gate = std::make_shared<InputGate>(1, 8);
  DataPlaneService service([gate](const proto::ChannelHeader&, std::shared_ptr<InputGate>* g,
                                  int* channel) {
    *g = gate;
    *channel = 0;
    return absl::OkStatus();
  });
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(port, 0);
  auto stub = proto::DataPlane::NewStub(
      grpc::CreateChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials()));

  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  auto stream = stub->Exchange(&ctx);
  proto::DataMessage header;
  *header.mutable_header() = TestHeader();
  ASSERT_TRUE(stream->Write(header));
  proto::DataMessage grant;
  ASSERT_TRUE(stream->Read(&grant));
  EXPECT_EQ(grant.credit(), 8);
  EXPECT_TRUE(grant.accepts_batches());

  proto::DataMessage batch;
  *batch.add_batch() = BufferMessage("aa", 2);
  batch.add_batch()->set_watermark(5);
  *batch.add_batch() = BufferMessage("bbb", 3);
  ASSERT_TRUE(stream->Write(batch));
  ASSERT_TRUE(stream->Write(BufferMessage("c", 1)));  // alone, as before

  EXPECT_EQ(PollItems(*gate, 4),
            (std::vector<std::string>{"records:aa/2", "wm:5", "records:bbb/3", "records:c/1"}));
  for (int i = 0; i < 4; ++i) gate->ReleaseCredit(0);
  proto::DataMessage msg;
  ASSERT_TRUE(stream->Read(&msg));
  EXPECT_EQ(msg.credit(), 1);
  ASSERT_TRUE(stream->WritesDone());
  gate->Close();
  EXPECT_TRUE(stream->Finish().ok());
  server->Shutdown();
}

// A receiver that stands for this one or an earlier build: it grants credits (announcing batches
// or not), reads the header, then reads nothing until `release` is notified, and records what
// it reads after that.
class HeldReceiver final : public proto::DataPlane::Service {
 public:
  explicit HeldReceiver(bool accepts_batches) : accepts_batches_(accepts_batches) {}

  grpc::Status Exchange(grpc::ServerContext*,
                        grpc::ServerReaderWriter<proto::DataMessage, proto::DataMessage>* stream)
      override {
    proto::DataMessage msg;
    if (!stream->Read(&msg)) return grpc::Status::OK;
    proto::DataMessage grant;
    grant.set_credit(8);
    grant.set_accepts_batches(accepts_batches_);
    stream->Write(grant);
    release.WaitForNotification();
    while (stream->Read(&msg)) {
      std::string seen;
      if (msg.batch_size() == 0) {
        seen = std::to_string(msg.buffer().size());
      } else {
        seen = "batch";
        for (const proto::DataMessage& m : msg.batch()) seen += " " + std::to_string(m.buffer().size());
      }
      absl::MutexLock lock(&mu);
      messages.push_back(seen);
    }
    return grpc::Status::OK;
  }

  absl::Notification release;
  absl::Mutex mu;
  std::vector<std::string> messages ABSL_GUARDED_BY(mu);

 private:
  const bool accepts_batches_;
};

// Sends a 4 MiB buffer, which cannot be written while the receiver reads nothing (the stream's
// window is 64 KiB), then three small ones and the end of partition (no bytes), and lets the
// receiver read; the 4 MiB go alone (more than kMaxBatchBytes): what queued behind the
// write in flight goes as one batch message to a receiver that accepts batches, and message by
// message to one that does not.
void SendBehindAHeldWrite(bool accepts_batches, const std::vector<std::string>& expected) {
  HeldReceiver receiver(accepts_batches);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  builder.SetMaxReceiveMessageSize(64 << 20);
  builder.RegisterService(&receiver);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(port, 0);
  const std::string address = "127.0.0.1:" + std::to_string(port);
  auto stub = proto::DataPlane::NewStub(
      grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), NoBdpArgs()));
  {
    RemoteChannelWriter writer(stub.get(), TestHeader(), address);
    RecordBuffer big{std::string(4 << 20, 'x'), 1};
    ASSERT_TRUE(writer.Send(BufferItem(0, std::move(big))).ok());
    for (int size : {1, 2, 3}) {
      ASSERT_TRUE(writer.Send(BufferItem(0, RecordBuffer{std::string(size, 'y'), 1})).ok());
    }
    ASSERT_TRUE(writer.Send(BufferItem(0, EndOfPartition{})).ok());
    receiver.release.Notify();
    EXPECT_TRUE(writer.Close().ok());
  }
  server->Shutdown();
  absl::MutexLock lock(&receiver.mu);
  EXPECT_EQ(receiver.messages, expected);
}

TEST(RemoteChannelWriterTest, SendsWhatQueuedBehindAWriteAsOneBatch) {
  SendBehindAHeldWrite(true, {std::to_string(4 << 20), "batch 1 2 3 0"});
}

TEST(RemoteChannelWriterTest, SendsMessageByMessageToAReceiverWithoutBatches) {
  SendBehindAHeldWrite(false, {std::to_string(4 << 20), "1", "2", "3", "0"});
}

}  // namespace
}  // namespace sluice::worker
