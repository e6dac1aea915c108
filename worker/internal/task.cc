#include "worker/internal/task.h"

#include <algorithm>
#include <limits>

#include "absl/strings/str_cat.h"
#include "common/key_groups.h"
#include "common/logging.h"
#include "common/record_codec.h"
#include "common/status.h"
#include "operators/key_hasher.h"

namespace sluice::worker {

namespace {
constexpr size_t kBufferBytes = 32 * 1024;
constexpr int kSourceBatch = 256;
}  // namespace

int GateChannelIndex(const plan::JobGraph& graph, int edge, int src_subtask) {
  const plan::Edge& e = graph.edges[edge];
  int offset = 0;
  for (int in : graph.vertices[e.target_vertex].in_edges) {
    if (in == edge) break;
    const plan::Edge& other = graph.edges[in];
    offset += other.partition == plan::Partition::kForward
                  ? 1
                  : graph.vertices[other.source_vertex].parallelism;
  }
  return offset + (e.partition == plan::Partition::kForward ? 0 : src_subtask);
}

int GateChannelCount(const plan::JobGraph& graph, int vertex) {
  int n = 0;
  for (int in : graph.vertices[vertex].in_edges) {
    const plan::Edge& e = graph.edges[in];
    n += e.partition == plan::Partition::kForward ? 1 : graph.vertices[e.source_vertex].parallelism;
  }
  return n;
}

struct Task::OperatorSlot {
  const plan::OperatorSpec* spec;
  std::unique_ptr<ops::Operator> op;
  std::shared_ptr<Counter> in;
  std::shared_ptr<Counter> out;
};

// Calls the next operator of the chain directly. Stops the chain once the task is cancelled,
// so a slow operator does not hold a cancelled task for the rest of a source batch.
class Task::ChainOutput final : public ops::Output {
 public:
  ChainOutput(OperatorSlot* from, OperatorSlot* to, std::string* failed_op,
              const std::atomic<bool>* cancelled)
      : from_(from), to_(to), failed_op_(failed_op), cancelled_(cancelled) {}
  absl::Status Emit(const Record& r) override {
    if (cancelled_->load(std::memory_order_relaxed)) return absl::CancelledError("task cancelled");
    from_->out->Add();
    to_->in->Add();
    absl::Status s = to_->op->Process(r);
    if (!s.ok() && failed_op_->empty() && s.code() != absl::StatusCode::kCancelled) {
      *failed_op_ = to_->spec->id;
    }
    return s;
  }

 private:
  OperatorSlot* from_;
  OperatorSlot* to_;
  std::string* failed_op_;
  const std::atomic<bool>* cancelled_;
};

// Serializes records of one output edge into per-channel buffers and sends full (or timed
// out) buffers to the channel writers.
class Task::EdgeWriter {
 public:
  EdgeWriter(const plan::Edge* edge, int max_parallelism,
             std::vector<std::unique_ptr<ChannelWriter>> channels, ops::KeyHasher hasher,
             Clock* clock)
      : edge_(edge),
        max_parallelism_(max_parallelism),
        channels_(std::move(channels)),
        hasher_(std::move(hasher)),
        clock_(clock),
        pending_(channels_.size()),
        pending_records_(channels_.size()) {
    for (auto& p : pending_) p.reserve(kBufferBytes + 1024);
  }

  void AddCounters(MetricsRegistry* metrics, const Labels& base, const std::string& owner,
                   const std::vector<std::string>& targets) {
    for (size_t i = 0; i < channels_.size(); ++i) {
      Labels l = base;
      l.push_back({"edge", absl::StrCat(edge_->id)});
      l.push_back({"target", targets[i]});
      bytes_.push_back(metrics->AddCounter("sluice_channel_bytes_sent_total",
                                           "Bytes of records sent per output channel", l, owner));
      buffers_.push_back(metrics->AddCounter("sluice_channel_buffers_sent_total",
                                             "Buffers sent per output channel", l, owner));
      // A plain gauge the task thread refreshes after each send: a callback into the writer
      // could outlive it (metrics are rendered outside the registry lock).
      credit_wait_.push_back(metrics->AddGauge(
          "sluice_channel_credit_wait_seconds",
          "Seconds the sender spent blocked waiting for credit", l, owner));
    }
  }

  absl::Status Emit(const Record& r) {
    switch (edge_->partition) {
      case plan::Partition::kForward: return Append(0, r);
      case plan::Partition::kHash: {
        int kg = KeyGroupForHash(hasher_.Hash(r), max_parallelism_);
        return Append(SubtaskForKeyGroup(kg, max_parallelism_, static_cast<int>(channels_.size())), r);
      }
      case plan::Partition::kRebalance: {
        size_t c = next_++;
        if (next_ == channels_.size()) next_ = 0;
        return Append(c, r);
      }
      case plan::Partition::kBroadcast:
        for (size_t c = 0; c < channels_.size(); ++c) SLUICE_RETURN_IF_ERROR(Append(c, r));
        return absl::OkStatus();
    }
    return absl::OkStatus();
  }

  int64_t pending_since() const { return pending_since_; }

  absl::Status FlushAll() {
    for (size_t c = 0; c < channels_.size(); ++c) {
      if (pending_records_[c] > 0) SLUICE_RETURN_IF_ERROR(Flush(c));
    }
    pending_since_ = 0;
    return absl::OkStatus();
  }

  absl::Status EndOfPartition() {
    SLUICE_RETURN_IF_ERROR(FlushAll());
    for (auto& ch : channels_) {
      BufferItem eop;
      eop.end_of_partition = true;
      SLUICE_RETURN_IF_ERROR(ch->Send(std::move(eop)));
    }
    for (auto& ch : channels_) SLUICE_RETURN_IF_ERROR(ch->Close());
    return absl::OkStatus();
  }

  const std::vector<std::unique_ptr<ChannelWriter>>& channels() const { return channels_; }

 private:
  absl::Status Append(size_t c, const Record& r) {
    std::string& buf = pending_[c];
    if (pending_since_ == 0) pending_since_ = clock_->NowNanos();
    EncodeRecord(edge_->schema, r, &buf);
    ++pending_records_[c];
    if (buf.size() >= kBufferBytes) return Flush(c);
    return absl::OkStatus();
  }

  absl::Status Flush(size_t c) {
    BufferItem item;
    item.data = std::move(pending_[c]);
    item.num_records = pending_records_[c];
    pending_[c] = std::string();
    pending_[c].reserve(kBufferBytes + 1024);
    pending_records_[c] = 0;
    if (!bytes_.empty()) {
      bytes_[c]->Add(item.data.size());
      buffers_[c]->Add();
    }
    absl::Status s = channels_[c]->Send(std::move(item));
    if (!credit_wait_.empty()) credit_wait_[c]->Set(channels_[c]->CreditWaitNanos() / 1e9);
    return s;
  }

  const plan::Edge* edge_;
  const int max_parallelism_;
  std::vector<std::unique_ptr<ChannelWriter>> channels_;
  ops::KeyHasher hasher_;
  Clock* clock_;
  std::vector<std::string> pending_;
  std::vector<int> pending_records_;
  int64_t pending_since_ = 0;
  size_t next_ = 0;
  std::vector<std::shared_ptr<Counter>> bytes_;
  std::vector<std::shared_ptr<Counter>> buffers_;
  std::vector<std::shared_ptr<Gauge>> credit_wait_;
};

// The chain's last operator emits here: to every output edge (none for a sink).
class Task::TailOutput final : public ops::Output {
 public:
  TailOutput(OperatorSlot* from, std::vector<EdgeWriter*> writers)
      : from_(from), writers_(std::move(writers)) {}
  absl::Status Emit(const Record& r) override {
    from_->out->Add();
    for (EdgeWriter* w : writers_) SLUICE_RETURN_IF_ERROR(w->Emit(r));
    return absl::OkStatus();
  }

 private:
  OperatorSlot* from_;
  std::vector<EdgeWriter*> writers_;
};

Task::Task(TaskDescriptor desc, const ops::OperatorRegistry* registry, ChannelFactory channels,
           MetricsRegistry* metrics, Clock* clock, DoneCallback on_done)
    : desc_(std::move(desc)),
      registry_(registry),
      channels_(std::move(channels)),
      metrics_(metrics),
      clock_(clock),
      on_done_(std::move(on_done)),
      metrics_owner_(absl::StrCat("task/", desc_.job_id, "/", desc_.attempt, "/", desc_.vertex, "/",
                                  desc_.subtask)),
      gate_(std::make_shared<InputGate>(GateChannelCount(*desc_.graph, desc_.vertex), 8)) {
  // Counters exist from deployment so status can show zeros before the task starts.
  absl::MutexLock lock(&mu_);
  for (int op_index : desc_.graph->vertices[desc_.vertex].ops) {
    const plan::OperatorSpec& spec = desc_.job->operators[op_index];
    Labels l = {{"job", desc_.job_id}, {"operator", spec.id}, {"subtask", absl::StrCat(desc_.subtask)}};
    in_counters_.push_back({spec.id, metrics_->AddCounter("sluice_operator_records_in_total",
                                                          "Records into an operator subtask", l,
                                                          metrics_owner_)});
    out_counters_.push_back(metrics_->AddCounter(
        "sluice_operator_records_out_total", "Records out of an operator subtask", l, metrics_owner_));
  }
}

Task::~Task() {
  Cancel();
  Join();
  gate_->Close();  // also when never started: releases producers' channels
  metrics_->RemoveOwner(metrics_owner_);
}

std::string Task::name() const {
  return absl::StrCat(desc_.job_id, "/", desc_.graph->vertices[desc_.vertex].name, "#", desc_.subtask);
}

void Task::Start() {
  SetState(proto::TASK_RUNNING, "");
  thread_ = std::thread([this] {
    absl::Status s = Run();
    // Tear down channels before reporting, so a finished task has delivered everything.
    {
      absl::MutexLock lock(&mu_);
      live_writers_.clear();
    }
    if (!s.ok()) {
      for (auto& w : edge_writers_) {
        for (auto& ch : w->channels()) ch->Cancel();
      }
    }
    metrics_->RemoveOwner(metrics_owner_ + "/channels");
    edge_writers_.clear();
    for (auto& slot : ops_) slot->op->Close();
    gate_->Close();
    if (s.ok()) {
      SetState(proto::TASK_FINISHED, "");
    } else if (cancelled_.load() || s.code() == absl::StatusCode::kCancelled) {
      SetState(proto::TASK_CANCELLED, cancelled_.load() ? "" : std::string(s.message()));
    } else {
      std::string where = failed_op_.empty() ? "" : absl::StrCat(" operator '", failed_op_, "'");
      std::string msg = absl::StrCat("task ", name(), where, ": ", s.message());
      spdlog::error("{}", msg);
      SetState(proto::TASK_FAILED, msg);
    }
    if (on_done_) on_done_(this);
  });
}

void Task::Cancel() {
  cancelled_.store(true);
  gate_->Wake();
  absl::MutexLock lock(&mu_);
  for (ChannelWriter* w : live_writers_) w->Cancel();
}

void Task::Join() {
  if (thread_.joinable()) thread_.join();
}

void Task::SetState(proto::TaskState state, const std::string& error) {
  absl::MutexLock lock(&mu_);
  state_ = state;
  error_ = error;
}

proto::TaskStatus Task::Status() const {
  proto::TaskStatus st;
  auto* ref = st.mutable_task();
  ref->set_job_id(desc_.job_id);
  ref->set_attempt(desc_.attempt);
  ref->set_vertex(desc_.vertex);
  ref->set_subtask(desc_.subtask);
  absl::MutexLock lock(&mu_);
  st.set_state(state_);
  st.set_error(error_);
  for (size_t i = 0; i < in_counters_.size(); ++i) {
    auto* c = st.add_operators();
    c->set_operator_id(in_counters_[i].first);
    c->set_records_in(in_counters_[i].second->Value());
    c->set_records_out(out_counters_[i]->Value());
  }
  return st;
}

absl::Status Task::Run() {
  const plan::JobSpec& job = *desc_.job;
  const plan::JobGraph& graph = *desc_.graph;
  const plan::Vertex& vertex = graph.vertices[desc_.vertex];
  buffer_timeout_nanos_ = job.buffer_timeout_ms * 1'000'000;

  {
    absl::MutexLock lock(&mu_);
    for (size_t i = 0; i < vertex.ops.size(); ++i) {
      auto slot = std::make_unique<OperatorSlot>();
      slot->spec = &job.operators[vertex.ops[i]];
      slot->in = in_counters_[i].second;
      slot->out = out_counters_[i];
      ops_.push_back(std::move(slot));
    }
  }
  for (auto& slot : ops_) {
    SLUICE_ASSIGN_OR_RETURN(slot->op, registry_->Create(*slot->spec));
  }

  // Output channels, one writer per (edge, target subtask).
  std::vector<EdgeWriter*> writers;
  for (int e : vertex.out_edges) {
    const plan::Edge& edge = graph.edges[e];
    const int target_par = graph.vertices[edge.target_vertex].parallelism;
    std::vector<std::unique_ptr<ChannelWriter>> channels;
    std::vector<std::string> targets;
    for (int dst = 0; dst < target_par; ++dst) {
      if (!edge.Connects(desc_.subtask, dst)) continue;
      proto::ChannelHeader h;
      h.set_job_id(desc_.job_id);
      h.set_attempt(desc_.attempt);
      h.set_edge(e);
      h.set_src_subtask(desc_.subtask);
      h.set_dst_subtask(dst);
      const std::string& address = desc_.placement[edge.target_vertex][dst];
      SLUICE_ASSIGN_OR_RETURN(auto writer, channels_(h, address));
      channels.push_back(std::move(writer));
      targets.push_back(absl::StrCat(graph.vertices[edge.target_vertex].name, "#", dst));
    }
    ops::KeyHasher hasher;
    if (edge.partition == plan::Partition::kHash) {
      SLUICE_ASSIGN_OR_RETURN(hasher, ops::KeyHasher::Create(edge.key, edge.schema));
    }
    auto w = std::make_unique<EdgeWriter>(&edge, job.max_parallelism, std::move(channels),
                                          std::move(hasher), clock_);
    w->AddCounters(metrics_, {{"job", desc_.job_id}, {"subtask", absl::StrCat(desc_.subtask)}},
                   metrics_owner_ + "/channels", targets);
    writers.push_back(w.get());
    edge_writers_.push_back(std::move(w));
    // Only now, owned by a member that outlives live_writers_, may Cancel() reach them.
    absl::MutexLock lock(&mu_);
    for (const auto& ch : edge_writers_.back()->channels()) {
      if (cancelled_.load()) ch->Cancel();
      live_writers_.push_back(ch.get());
    }
  }

  // Wire the chain: op[i] -> op[i+1] directly; the last op -> edge writers.
  for (size_t i = 0; i + 1 < ops_.size(); ++i) {
    chain_outputs_.push_back(
        std::make_unique<ChainOutput>(ops_[i].get(), ops_[i + 1].get(), &failed_op_, &cancelled_));
  }
  tail_output_ = std::make_unique<TailOutput>(ops_.back().get(), writers);
  for (size_t i = 0; i < ops_.size(); ++i) {
    ops::OperatorContext ctx;
    ctx.job = &job;
    ctx.spec = ops_[i]->spec;
    ctx.job_id = desc_.job_id;
    ctx.subtask = desc_.subtask;
    ctx.parallelism = vertex.parallelism;
    ctx.clock = clock_;
    ctx.task_name = absl::StrCat(desc_.job_id, "/", ops_[i]->spec->id, "#", desc_.subtask);
    ops::Output* out = i + 1 < ops_.size() ? static_cast<ops::Output*>(chain_outputs_[i].get())
                                           : tail_output_.get();
    absl::Status s = ops_[i]->op->Open(ctx, out);
    if (!s.ok()) {
      failed_op_ = ops_[i]->spec->id;
      return s;
    }
  }

  SLUICE_RETURN_IF_ERROR(ops_[0]->spec->is_source() ? RunSource() : RunInput());

  // End of input: finish operators head to tail (a Finish may emit into the next operator).
  for (auto& slot : ops_) {
    absl::Status s = slot->op->Finish();
    if (!s.ok()) {
      if (failed_op_.empty()) failed_op_ = slot->spec->id;
      return s;
    }
  }
  for (auto& w : edge_writers_) SLUICE_RETURN_IF_ERROR(w->EndOfPartition());
  return absl::OkStatus();
}

absl::Status Task::FlushIfDue(bool force) {
  int64_t now = 0;
  for (auto& w : edge_writers_) {
    int64_t since = w->pending_since();
    if (since == 0) continue;
    if (!force) {
      if (now == 0) now = clock_->NowNanos();
      if (now - since < buffer_timeout_nanos_) continue;
    }
    SLUICE_RETURN_IF_ERROR(w->FlushAll());
  }
  return absl::OkStatus();
}

absl::Status Task::RunSource() {
  auto* source = static_cast<ops::SourceOperator*>(ops_[0]->op.get());
  while (!cancelled_.load(std::memory_order_relaxed)) {
    int64_t wake_at = 0;
    absl::StatusOr<ops::SourceOperator::State> st = source->Poll(kSourceBatch, &wake_at);
    if (!st.ok()) {
      if (failed_op_.empty() && st.status().code() != absl::StatusCode::kCancelled) {
        failed_op_ = ops_[0]->spec->id;
      }
      return st.status();
    }
    if (*st == ops::SourceOperator::State::kEnd) return absl::OkStatus();
    SLUICE_RETURN_IF_ERROR(FlushIfDue(false));
    if (*st == ops::SourceOperator::State::kWait) {
      // Sleep until the next record is due or a pending buffer times out, whichever is first.
      int64_t deadline = wake_at;
      for (auto& w : edge_writers_) {
        if (w->pending_since() != 0) deadline = std::min(deadline, w->pending_since() + buffer_timeout_nanos_);
      }
      int64_t now = clock_->NowNanos();
      if (deadline > now) gate_->Poll(Clock::Real()->NowNanos() + (deadline - now));
    }
  }
  return absl::CancelledError("task cancelled");
}

absl::Status Task::RunInput() {
  const plan::JobGraph& graph = *desc_.graph;
  const plan::Vertex& vertex = graph.vertices[desc_.vertex];
  // Decoding schema per channel (all edges into a vertex carry the head's input schema, but
  // keep it per channel for clarity).
  const int num_channels = gate_->num_channels();
  std::vector<const Schema*> schema_of(num_channels);
  for (int e : vertex.in_edges) {
    const plan::Edge& edge = graph.edges[e];
    for (int src = 0; src < graph.vertices[edge.source_vertex].parallelism; ++src) {
      if (edge.Connects(src, desc_.subtask)) schema_of[GateChannelIndex(graph, e, src)] = &edge.schema;
    }
  }
  std::vector<bool> ended(num_channels, false);
  int remaining = num_channels;
  OperatorSlot* head = ops_[0].get();
  Record record(head->spec->input_schema.size());

  while (remaining > 0) {
    if (cancelled_.load(std::memory_order_relaxed)) return absl::CancelledError("task cancelled");
    int64_t deadline = std::numeric_limits<int64_t>::max();
    int64_t real_now = Clock::Real()->NowNanos();
    for (auto& w : edge_writers_) {
      if (w->pending_since() != 0) {
        deadline = std::min(deadline, real_now + std::max<int64_t>(
            0, w->pending_since() + buffer_timeout_nanos_ - clock_->NowNanos()));
      }
    }
    if (deadline == std::numeric_limits<int64_t>::max()) deadline = real_now + 200'000'000;
    absl::optional<BufferItem> item = gate_->Poll(deadline);
    if (item.has_value()) {
      const int ch = item->channel;
      if (ch < 0 || ch >= num_channels || ended[ch]) {
        return absl::DataLossError(absl::StrCat("buffer for unexpected channel ", ch));
      }
      if (item->end_of_partition) {
        ended[ch] = true;
        --remaining;
      } else {
        RecordDecoder dec(schema_of[ch], item->data);
        while (!dec.Done()) {
          // A buffer may hold thousands of records: do not finish it after a cancel.
          if (cancelled_.load(std::memory_order_relaxed)) {
            return absl::CancelledError("task cancelled");
          }
          SLUICE_RETURN_IF_ERROR(dec.Next(&record));
          head->in->Add();
          absl::Status s = head->op->Process(record);
          if (!s.ok()) {
            if (failed_op_.empty() && s.code() != absl::StatusCode::kCancelled) {
              failed_op_ = head->spec->id;
            }
            return s;
          }
        }
      }
      gate_->ReleaseCredit(ch);
    }
    SLUICE_RETURN_IF_ERROR(FlushIfDue(false));
  }
  return absl::OkStatus();
}

}  // namespace sluice::worker
