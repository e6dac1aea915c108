#include "worker/internal/data_plane.h"

#include <atomic>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/types/optional.h"
#include "common/clock.h"
#include "common/logging.h"
#include "common/status.h"

namespace sluice::worker {
namespace {

std::string ChannelName(const proto::ChannelHeader& h) {
  return absl::StrCat(h.job_id(), "/edge", h.edge(), "/", h.src_subtask(), "->", h.dst_subtask());
}

// Server side of one channel.
//
// gRPC may run a reaction inline, on the thread that starts an operation, so no lock is
// held while calling StartWrite() or Finish(): the decision is made under mu_, the call after.
// The reactor is reference-counted: gRPC holds one reference until OnDone(), and a credit
// listener holds one for the duration of each call into it; the last Unref() deletes it.
class ExchangeReactor final : public grpc::ServerBidiReactor<proto::DataMessage, proto::DataMessage> {
 public:
  explicit ExchangeReactor(const GateResolver* resolver) : resolver_(resolver) {
    StartRead(&in_);
  }

  // Forwards credits from the gate to this stream while the stream lives.
  class Listener final : public CreditListener {
   public:
    explicit Listener(ExchangeReactor* r) : reactor_(r) {}
    void AddCredit(int n) override {
      if (ExchangeReactor* r = Acquire()) {
        r->AddCredit(n);
        r->Unref();
      }
    }
    void GateClosed() override {
      if (ExchangeReactor* r = Acquire()) {
        // After end of partition the channel is complete: close it cleanly.
        r->RequestFinish(r->eop_received_.load()
                             ? grpc::Status::OK
                             : grpc::Status(grpc::StatusCode::CANCELLED, "consumer task has stopped"));
        r->Unref();
      }
    }
    void Detach() {
      absl::MutexLock lock(&mu_);
      reactor_ = nullptr;
    }

   private:
    ExchangeReactor* Acquire() {
      absl::MutexLock lock(&mu_);
      if (reactor_ != nullptr) reactor_->refs_.fetch_add(1);
      return reactor_;
    }
    absl::Mutex mu_;
    ExchangeReactor* reactor_ ABSL_GUARDED_BY(mu_);
  };

  void OnReadDone(bool ok) override {
    if (!ok) {
      RequestFinish(grpc::Status::OK);  // the producer closed its side
      return;
    }
    if (gate_ == nullptr) {
      if (!in_.has_header()) {
        RequestFinish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "first message needs a header"));
        return;
      }
      name_ = ChannelName(in_.header());
      absl::Status s = (*resolver_)(in_.header(), &gate_, &channel_);
      if (!s.ok()) {
        spdlog::warn("refusing data channel {}: {}", name_, s);
        RequestFinish(grpc::Status(grpc::StatusCode::NOT_FOUND, std::string(s.message())));
        return;
      }
      {
        absl::MutexLock lock(&mu_);
        credits_.emplace(gate_->credits_per_channel());
      }
      listener_ = std::make_shared<Listener>(this);
      AddCredit(gate_->credits_per_channel());
      gate_->SetListener(channel_, listener_);
    } else {
      BufferItem item = FromMessage(&in_, channel_);
      if (item.as<EndOfPartition>() != nullptr) eop_received_.store(true);
      const bool credit = item.TakesCredit();
      gate_->Push(std::move(item));
      if (credit) {
        {
          absl::MutexLock lock(&mu_);
          credits_->Arrived();
        }
        MaybeWriteOrFinish();  // the producer holds one credit fewer: send what was held back
      }
    }
    in_.Clear();
    StartRead(&in_);
  }

  void OnWriteDone(bool ok) override {
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      if (!ok) finish_requested_ = true;
    }
    MaybeWriteOrFinish();
  }

  void OnDone() override {
    if (listener_) listener_->Detach();
    Unref();
  }

  void AddCredit(int n) {
    {
      absl::MutexLock lock(&mu_);
      credits_->Freed(n);
    }
    MaybeWriteOrFinish();
  }

  void RequestFinish(grpc::Status status) {
    {
      absl::MutexLock lock(&mu_);
      if (!finish_requested_) {
        finish_requested_ = true;
        finish_status_ = std::move(status);
      }
    }
    MaybeWriteOrFinish();
  }

 private:
  void Unref() {
    if (refs_.fetch_sub(1) == 1) delete this;
  }

  void MaybeWriteOrFinish() {
    bool write = false, finish = false;
    grpc::Status status;
    {
      absl::MutexLock lock(&mu_);
      if (writing_ || finished_) return;
      if (finish_requested_) {
        finished_ = true;
        finish = true;
        status = finish_status_;
      } else if (credits_.has_value()) {
        if (const int n = credits_->Take(); n > 0) {
          out_.Clear();
          out_.set_credit(n);
          writing_ = true;
          write = true;
        }
      }
    }
    // out_ is not touched again until OnWriteDone clears writing_.
    if (write) StartWrite(&out_);
    if (finish) Finish(status);
  }

  const GateResolver* resolver_;
  proto::DataMessage in_;  // touched only by read reactions, which never overlap
  std::shared_ptr<InputGate> gate_;
  int channel_ = 0;
  std::string name_;
  std::shared_ptr<Listener> listener_;
  std::atomic<bool> eop_received_{false};
  std::atomic<int> refs_{1};

  absl::Mutex mu_;
  proto::DataMessage out_;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  // Set once the channel is resolved (its gate says how many credits it has).
  absl::optional<CreditBatcher> credits_ ABSL_GUARDED_BY(mu_);
  bool finish_requested_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status finish_status_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

grpc::ServerBidiReactor<proto::DataMessage, proto::DataMessage>* DataPlaneService::Exchange(
    grpc::CallbackServerContext* context) {
  return new ExchangeReactor(&resolver_);
}

RemoteChannelWriter::RemoteChannelWriter(proto::DataPlane::Stub* stub, proto::ChannelHeader header,
                                         const std::string& target_address)
    : name_(absl::StrCat(ChannelName(header), " to worker ", target_address)) {
  stub->async()->Exchange(&context_, this);
  proto::DataMessage first;
  *first.mutable_header() = std::move(header);
  {
    absl::MutexLock lock(&mu_);
    queue_.push_back(std::move(first));
  }
  // Operations are started from the task thread, outside reactions; the hold keeps the call
  // (and so OnDone) alive until we know we will start no more.
  AddHold();
  MaybeStartWrite();
  StartRead(&read_msg_);
  StartCall();
}

RemoteChannelWriter::~RemoteChannelWriter() {
  Cancel();
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(&done_));
}

void RemoteChannelWriter::MaybeStartWrite() {
  // Decide under the lock, start the operation without it (gRPC may run OnWriteDone inline).
  proto::DataMessage* next = nullptr;
  bool writes_done = false;
  {
    absl::MutexLock lock(&mu_);
    if (writing_ || broken_ || cancelled_ || done_) return;
    if (!queue_.empty()) {
      writing_ = true;
      next = &queue_.front();  // stays put: deque::push_back keeps references valid
    } else if (closing_ && !writes_done_sent_) {
      writes_done_sent_ = true;
      writes_done = true;
    }
  }
  if (next != nullptr) StartWrite(next);
  if (writes_done) {
    StartWritesDone();
    ReleaseHold();  // the last operation started from outside a reaction
  }
}

void RemoteChannelWriter::ReleaseHold() {
  {
    absl::MutexLock lock(&mu_);
    if (hold_released_) return;
    hold_released_ = true;
  }
  RemoveHold();
}

absl::Status RemoteChannelWriter::Send(BufferItem item) {
  absl::StatusOr<bool> sent = Enqueue(item, std::numeric_limits<int64_t>::max());
  if (!sent.ok()) return sent.status();
  MaybeStartWrite();
  return absl::OkStatus();
}

absl::StatusOr<bool> RemoteChannelWriter::Offer(BufferItem& item, int64_t deadline_nanos) {
  absl::StatusOr<bool> sent = Enqueue(item, deadline_nanos);
  if (sent.ok() && *sent) MaybeStartWrite();
  return sent;
}

absl::Status RemoteChannelWriter::SendPriority(BufferItem item) {
  if (Barrier* b = item.as<Barrier>()) b->priority = true;
  {
    absl::MutexLock lock(&mu_);
    SLUICE_RETURN_IF_ERROR(UsableLocked());
    queue_.push_back(ToMessage(std::move(item)));  // no credit
  }
  MaybeStartWrite();
  return absl::OkStatus();
}

void RemoteChannelWriter::Interrupt() {
  absl::MutexLock lock(&mu_);
  interrupted_ = true;
}

absl::Status RemoteChannelWriter::UsableLocked() const {
  if (cancelled_) return absl::CancelledError("task cancelled");
  if (broken_ || done_) {
    return absl::UnavailableError(absl::StrCat("data channel ", name_, " broke: ",
                                               final_status_.error_message()));
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> RemoteChannelWriter::Enqueue(BufferItem& item, int64_t deadline_nanos) {
  absl::MutexLock lock(&mu_);
  const bool forever = deadline_nanos == std::numeric_limits<int64_t>::max();
  auto ready = [this, forever]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return credits_ > 0 || cancelled_ || broken_ || done_ || (!forever && interrupted_);
  };
  if (!ready()) {
    const int64_t start = Clock::Real()->NowNanos();
    if (forever) {
      mu_.Await(absl::Condition(&ready));
    } else if (deadline_nanos > start) {
      mu_.AwaitWithTimeout(absl::Condition(&ready), absl::Nanoseconds(deadline_nanos - start));
    }
    wait_nanos_ += Clock::Real()->NowNanos() - start;
  }
  SLUICE_RETURN_IF_ERROR(UsableLocked());
  if (credits_ == 0) {
    interrupted_ = false;
    return false;
  }
  --credits_;
  queue_.push_back(ToMessage(std::move(item)));
  return true;
}

absl::Status RemoteChannelWriter::Close() {
  {
    absl::MutexLock lock(&mu_);
    closing_ = true;
  }
  MaybeStartWrite();
  absl::MutexLock lock(&mu_);
  auto finished = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return done_ || cancelled_; };
  mu_.Await(absl::Condition(&finished));
  if (cancelled_) return absl::CancelledError("task cancelled");
  if (!final_status_.ok()) {
    return absl::UnavailableError(absl::StrCat("data channel ", name_, " ended with ",
                                               final_status_.error_message()));
  }
  return absl::OkStatus();
}

void RemoteChannelWriter::Cancel() {
  bool cancel;
  {
    absl::MutexLock lock(&mu_);
    cancel = !done_ && !cancelled_;
    cancelled_ = true;
  }
  if (cancel) context_.TryCancel();
  ReleaseHold();  // no operation is started after cancellation; let OnDone come
}

int64_t RemoteChannelWriter::CreditWaitNanos() const {
  absl::MutexLock lock(&mu_);
  return wait_nanos_;
}

void RemoteChannelWriter::OnWriteDone(bool ok) {
  {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    if (!ok) broken_ = true;  // the stream is going down; OnDone brings the status
    else queue_.pop_front();
  }
  if (IsBroken()) {
    ReleaseHold();
    return;
  }
  MaybeStartWrite();
}

void RemoteChannelWriter::OnReadDone(bool ok) {
  if (!ok) return;  // server finished; OnDone follows
  {
    absl::MutexLock lock(&mu_);
    credits_ += read_msg_.credit();
  }
  read_msg_.Clear();
  StartRead(&read_msg_);
}

void RemoteChannelWriter::OnDone(const grpc::Status& status) {
  absl::MutexLock lock(&mu_);
  final_status_ = status;
  done_ = true;
  if (!status.ok() && !cancelled_) {
    spdlog::warn("data channel {} ended: {}", name_, status.error_message());
  }
}

}  // namespace sluice::worker
