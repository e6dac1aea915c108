#include "worker/internal/task.h"

#include <algorithm>
#include <filesystem>
#include <limits>

#include "absl/strings/str_cat.h"
#include "common/key_groups.h"
#include "common/logging.h"
#include "common/record_codec.h"
#include "common/status.h"
#include "operators/key_hasher.h"
#include "state/keyed_state_backend.h"
#include "worker/internal/channel_state.h"
#include "worker/internal/thread_name.h"

namespace sluice::worker {

namespace {
constexpr int kSourceBatch = 256;
// Records of a received buffer decoded in one call (Task::ProcessItem).
constexpr size_t kInputSliceRecords = 512;

}  // namespace

RestoreMetadata::RestoreMetadata(const checkpoint::CheckpointStorage* storage, std::string path)
    : storage_(storage), path_(std::move(path)), result_(absl::UnknownError("not read")) {}

RestoreMetadata::RestoreMetadata(std::shared_ptr<const proto::CheckpointMetadata> metadata)
    : storage_(nullptr), read_(true), result_(std::move(metadata)) {}

absl::StatusOr<std::shared_ptr<const proto::CheckpointMetadata>> RestoreMetadata::Get() {
  absl::MutexLock lock(&mu_);
  if (!read_) {
    absl::StatusOr<proto::CheckpointMetadata> md = storage_->ReadMetadata(path_);
    if (md.ok()) {
      result_ = std::make_shared<const proto::CheckpointMetadata>(std::move(*md));
    } else {
      result_ = md.status();
    }
    read_ = true;
  }
  return result_;
}

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
      mode_(desc_.checkpoint_dir.empty() ? plan::CheckpointConfig::Mode::kAligned
                                         : desc_.job->checkpoint.mode),
      gate_(std::make_shared<InputGate>(GateChannelCount(*desc_.graph, desc_.vertex), 8)),
      writer_(clock_, desc_.job->buffer_timeout_ms * 1'000'000,
              static_cast<int>(
                  desc_.job->operators[desc_.graph->vertices[desc_.vertex].ops.back()]
                      .side_outputs.size())),
      uploader_(desc_.checkpoint_dir, desc_.vertex, desc_.subtask, clock_, desc_.ack) {
  // Called under the gate's lock; takes the writer's and its channels' locks, never the gate's.
  gate_->SetPriorityListener([this] { writer_.Interrupt(); });
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
    skipped_counters_.push_back(metrics_->AddCounter("sluice_operator_records_skipped_total",
                                                     "Bad input records skipped by policy", l,
                                                     metrics_owner_));
    // Only keyed operators keep event-time state that records can arrive too late for.
    late_counters_.push_back(
        spec.keyed ? metrics_->AddCounter("sluice_operator_late_records_dropped_total",
                                          "Records dropped for arriving after their event-time "
                                          "state was cleaned up (allowed lateness passed)",
                                          l, metrics_owner_)
                   : nullptr);
    StateStats stats;
    if (spec.keyed) {
      stats.hits = metrics_->AddCounter("sluice_state_cache_hits_total",
                                        "Keyed-state reads served by the write-back cache", l,
                                        metrics_owner_);
      stats.misses = metrics_->AddCounter("sluice_state_cache_misses_total",
                                          "Keyed-state reads that went to RocksDB", l, metrics_owner_);
      stats.size_bytes = metrics_->AddGauge(
          "sluice_state_size_bytes",
          "Approximate keyed-state size: RocksDB live SST files + memtables + write-back cache", l,
          metrics_owner_);
      stats.delta_bytes = metrics_->AddGauge(
          "sluice_state_snapshot_delta_bytes",
          "Memory of keyed-state snapshot delta files not yet uploaded (and one spare buffer)", l,
          metrics_owner_);
    }
    state_stats_.push_back(std::move(stats));
    // Flink's currentInputWatermark: the same for every operator of a chain (none of ours
    // changes event time); kNoWatermark (-2^63) until there is one.
    watermark_gauges_.push_back(metrics_->AddGauge(
        "sluice_operator_input_watermark_ms",
        "Event-time watermark into an operator subtask, ms since the epoch (-2^63: none yet)", l,
        metrics_owner_));
    watermark_gauges_.back()->Set(static_cast<double>(kNoWatermark));
    idle_gauges_.push_back(metrics_->AddGauge(
        "sluice_operator_input_idle", "1 while every input of the operator subtask is idle", l,
        metrics_owner_));
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
    NameThisThread(absl::StrCat("task ", desc_.vertex, ".", desc_.subtask));
    absl::Status s = Run();
    // Cancelled or failed while its barrier waited in an output backlog: never acknowledged.
    if (output_ack_ != nullptr) DropUpload(std::move(output_ack_));
    uploader_.Stop();  // pending uploads finish first: their acks may complete a checkpoint
    backends_.clear();
    // Tear down channels before reporting, so a finished task has delivered everything.
    writer_.Shutdown(!s.ok());
    metrics_->RemoveOwner(metrics_owner_ + "/channels");
    if (cancelled_.load() && chain_.opened()) DeliverNotificationsBeforeClose();
    chain_.Close();
    gate_->Close();
    if (s.ok()) {
      SetState(proto::TASK_FINISHED, "");
    } else if (cancelled_.load() || s.code() == absl::StatusCode::kCancelled) {
      SetState(proto::TASK_CANCELLED, cancelled_.load() ? "" : std::string(s.message()));
    } else {
      const std::string& failed = chain_.failed_operator();
      std::string where = failed.empty() ? "" : absl::StrCat(" operator '", failed, "'");
      std::string msg = absl::StrCat("task ", name(), where, ": ", s.message());
      spdlog::error("{}", msg);
      SetState(proto::TASK_FAILED, msg, s.code());
    }
    if (on_done_) on_done_(this);
  });
}

void Task::Cancel() {
  cancelled_.store(true);
  gate_->Wake();
  writer_.Cancel();
}

void Task::TriggerCheckpoint(int64_t id, bool final, bool aligned) {
  {
    absl::MutexLock lock(&mail_mu_);
    mail_.push_back(Mail{Mail::kTrigger, id, final, aligned});
  }
  has_mail_.store(true);
  gate_->Wake();
  writer_.Interrupt();
}

void Task::NotifyCheckpointComplete(int64_t id) {
  {
    absl::MutexLock lock(&mail_mu_);
    mail_.push_back(Mail{Mail::kNotify, id, false, false});
  }
  has_mail_.store(true);
  gate_->Wake();
  writer_.Interrupt();
}

void Task::Join() {
  if (thread_.joinable()) thread_.join();
}

void Task::SetState(proto::TaskState state, const std::string& error, absl::StatusCode code) {
  absl::MutexLock lock(&mu_);
  state_ = state;
  error_ = error;
  error_code_ = code;
}

proto::TaskStatus Task::Status() const {
  proto::TaskStatus st;
  auto* ref = st.mutable_task();
  ref->set_job_id(desc_.job_id);
  ref->set_attempt(desc_.attempt);
  ref->set_vertex(desc_.vertex);
  ref->set_subtask(desc_.subtask);
  st.set_end_of_input(end_of_input_.load());
  const int64_t watermark = watermark_.load();
  if (watermark != kNoWatermark) st.set_watermark_ms(watermark);
  st.set_watermark_idle(watermark_idle_.load());
  absl::MutexLock lock(&mu_);
  st.set_state(state_);
  st.set_error(error_);
  st.set_error_code(static_cast<int>(error_code_));
  for (size_t i = 0; i < in_counters_.size(); ++i) {
    auto* c = st.add_operators();
    c->set_operator_id(in_counters_[i].first);
    c->set_records_in(in_counters_[i].second->Value());
    c->set_records_out(out_counters_[i]->Value());
    c->set_records_skipped(skipped_counters_[i]->Value());
    if (late_counters_[i] != nullptr) c->set_late_records_dropped(late_counters_[i]->Value());
    if (state_stats_[i].hits != nullptr) {
      c->set_has_state(true);
      c->set_state_cache_hits(state_stats_[i].hits->Value());
      c->set_state_cache_misses(state_stats_[i].misses->Value());
      c->set_state_size_bytes(static_cast<uint64_t>(state_stats_[i].size_bytes->Value()));
    }
  }
  return st;
}

StateOrigin Task::OriginOf(const plan::OperatorSpec& spec) const {
  return StateOrigin(desc_.job_id, spec.id, spec.type, desc_.subtask,
                     restore_ != nullptr ? restore_->checkpoint_id() : 0);
}

absl::Status Task::Run() {
  const plan::JobSpec& job = *desc_.job;
  const plan::JobGraph& graph = *desc_.graph;
  const plan::Vertex& vertex = graph.vertices[desc_.vertex];
  // Restore starts here, on the task thread: the deploy RPC did not read the metadata.
  if (desc_.restore != nullptr) {
    SLUICE_ASSIGN_OR_RETURN(restore_, desc_.restore->Get());
  }

  for (size_t i = 0; i < vertex.ops.size(); ++i) {
    std::shared_ptr<Counter> in, out;
    {
      absl::MutexLock lock(&mu_);
      in = in_counters_[i].second;
      out = out_counters_[i];
    }
    SLUICE_RETURN_IF_ERROR(chain_.Add(*registry_, &job.operators[vertex.ops[i]], in, out));
  }
  SLUICE_RETURN_IF_ERROR(SetUpState());
  for (size_t i = 0; i < chain_.size(); ++i) {
    if (backends_[i] != nullptr) chain_.op(i).timers = std::make_unique<ops::TimerService>(backends_[i].get(), clock_);
  }

  // Output channels, one writer per (edge, target subtask); edges of the tail's main output
  // and of each of its side outputs.
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
    writer_.AddEdge(&edge, job.max_parallelism, std::move(channels), std::move(hasher), metrics_,
                    {{"job", desc_.job_id}, {"subtask", absl::StrCat(desc_.subtask)}},
                    metrics_owner_ + "/channels", targets);
  }

  SLUICE_RETURN_IF_ERROR(RestoreChannelState());

  // The operators' contexts; the chain wires op[i] -> op[i+1] directly, the last to writer_.
  auto context = [&](size_t i) {
    const plan::OperatorSpec& spec = *chain_.op(i).spec;
    ops::OperatorContext ctx;
    ctx.job = &job;
    ctx.spec = &spec;
    ctx.job_id = desc_.job_id;
    ctx.subtask = desc_.subtask;
    ctx.parallelism = vertex.parallelism;
    ctx.clock = clock_;
    ctx.task_name = absl::StrCat(desc_.job_id, "/", spec.id, "#", desc_.subtask);
    ctx.attempt = desc_.attempt;
    ctx.max_parallelism = job.max_parallelism;
    ctx.keyed_state = backends_[i].get();
    ctx.timers = chain_.op(i).timers.get();
    {
      absl::MutexLock lock(&mu_);
      ctx.records_skipped = skipped_counters_[i].get();
      ctx.late_records_dropped = late_counters_[i].get();
    }
    ctx.metrics = metrics_;
    ctx.metric_labels = {{"job", desc_.job_id}, {"operator", spec.id}, {"subtask", absl::StrCat(desc_.subtask)}};
    ctx.metrics_owner = metrics_owner_;
    ctx.checkpointing = !desc_.checkpoint_dir.empty();
    ctx.state_origin = OriginOf(spec);
    if (restore_ != nullptr) {
      ctx.restored = true;
      ctx.restored_checkpoint_id = restore_->checkpoint_id();
      // Operator state of this operator from every old subtask, in subtask order; split
      // round-robin over the new subtasks, or whole to each (union).
      std::vector<std::string> all;
      bool is_union = false;
      for (const auto& st : restore_->subtasks()) {
        for (const auto& h : st.operator_state()) {
          if (h.operator_id() != spec.id) continue;
          is_union |= h.redistribution() == proto::OperatorStateHandle::UNION;
          all.insert(all.end(), h.entries().begin(), h.entries().end());
        }
      }
      for (size_t k = 0; k < all.size(); ++k) {
        if (is_union || static_cast<int>(k % vertex.parallelism) == desc_.subtask) {
          ctx.restored_state.push_back(all[k]);
        }
      }
    }
    return ctx;
  };
  OperatorChain::SourceWatermarks source;
  source.advanced = [this](int64_t watermark_ms) { PublishWatermark(watermark_ms, false); };
  source.idle = [this](bool idle) { PublishWatermark(watermark_.load(), idle); };
  SLUICE_RETURN_IF_ERROR(chain_.Open(&writer_, std::move(source), context));

  SLUICE_RETURN_IF_ERROR(chain_.head().spec->is_source() ? RunSource() : RunInput());

  // End of input: finish operators head to tail (a Finish may emit into the next operator).
  // A task restored from a final checkpoint already did.
  if (!skip_finish_) SLUICE_RETURN_IF_ERROR(chain_.Finish());
  SLUICE_RETURN_IF_ERROR(writer_.EndOfPartition());
  // A barrier that waited in a backlog left before the end of partition: aligned.
  if (output_ack_ != nullptr) SLUICE_RETURN_IF_ERROR(ResolveQueuedBarrier());
  if (desc_.checkpoint_dir.empty()) return absl::OkStatus();
  // With checkpoints, output is committed by the final checkpoint: wait for it.
  end_of_input_.store(true);
  if (desc_.on_end_of_input) desc_.on_end_of_input();
  return AwaitFinalCheckpoint();
}

absl::Status Task::RunSource() {
  auto* source = static_cast<ops::SourceOperator*>(chain_.head().op.get());
  while (!cancelled_.load(std::memory_order_relaxed)) {
    if (has_mail_.load(std::memory_order_relaxed)) SLUICE_RETURN_IF_ERROR(HandleMail(true));
    SLUICE_RETURN_IF_ERROR(AwaitOutput(true));
    SLUICE_RETURN_IF_ERROR(chain_.FireProcessingTimers());
    int64_t wake_at = 0;
    absl::StatusOr<ops::SourceOperator::State> st = source->Poll(kSourceBatch, &wake_at);
    if (!st.ok()) return chain_.Named(0, st.status());
    SLUICE_RETURN_IF_ERROR(chain_.Flush());
    if (*st == ops::SourceOperator::State::kEnd) return absl::OkStatus();
    SLUICE_RETURN_IF_ERROR(writer_.FlushIfDue(false));
    if (*st == ops::SourceOperator::State::kWait) {
      // Sleep until the next record is due, a pending buffer times out or a processing-time
      // timer is due, whichever is first.
      int64_t deadline = std::min({wake_at, chain_.ProcessingTimerDeadline(clock_->NowNanos()),
                                   writer_.FlushDeadlineNanos()});
      int64_t now = clock_->NowNanos();
      if (deadline > now) gate_->Poll(Clock::Real()->NowNanos() + (deadline - now));
    }
  }
  return absl::CancelledError("task cancelled");
}

absl::Status Task::RunInput() {
  const plan::JobGraph& graph = *desc_.graph;
  const plan::Vertex& vertex = graph.vertices[desc_.vertex];
  const int num_channels = gate_->num_channels();
  schema_of_.assign(num_channels, nullptr);
  input_of_.assign(num_channels, 0);
  carries_key_groups_.assign(num_channels, false);
  key_groups_ = KeyGroupRangeForSubtask(desc_.job->max_parallelism, vertex.parallelism, desc_.subtask);
  key_group_width_ = KeyGroupWidth(desc_.job->max_parallelism);
  const plan::OperatorSpec& head = *chain_.head().spec;
  input_batches_.assign(std::max<size_t>(head.inputs.size(), 1), {});
  input_widths_.assign(input_batches_.size(), 0);
  head_batches_ = chain_.head().op->PrefersBatches();
  head_inputs_ = head.inputs.size();
  head_int_rows_.assign(input_batches_.size(), false);
  for (size_t i = 0; i < head_int_rows_.size(); ++i) {
    head_int_rows_[i] = head_batches_ && head_inputs_ <= 1 && chain_.head().op->PrefersIntRows(static_cast<int>(i));
  }
  for (int e : vertex.in_edges) {
    const plan::Edge& edge = graph.edges[e];
    if (edge.target_input < 0 || edge.target_input >= static_cast<int>(input_batches_.size())) {
      return absl::InternalError(absl::StrCat("edge ", e, " feeds input ", edge.target_input, " of '",
                                              head.id, "', which has ", head.inputs.size()));
    }
    input_widths_[edge.target_input] = edge.schema.size();
    for (int src = 0; src < graph.vertices[edge.source_vertex].parallelism; ++src) {
      if (!edge.Connects(src, desc_.subtask)) continue;
      const int ch = GateChannelIndex(graph, e, src);
      schema_of_[ch] = &edge.schema;
      input_of_[ch] = edge.target_input;
      carries_key_groups_[ch] = edge.carry_key_groups;
    }
  }
  barriers_ = std::make_unique<BarrierHandler>(num_channels, clock_, mode_,
                                               desc_.job->checkpoint.aligned_timeout_ms);
  valve_ = std::make_unique<WatermarkValve>(num_channels);
  while (barriers_->remaining() > 0 || barriers_->HasReplay() || !restored_input_.empty()) {
    if (cancelled_.load(std::memory_order_relaxed)) return absl::CancelledError("task cancelled");
    if (has_mail_.load(std::memory_order_relaxed)) SLUICE_RETURN_IF_ERROR(HandleMail(false));
    SLUICE_RETURN_IF_ERROR(AwaitOutput(false));
    if (PriorityEventsAllowed()) SLUICE_RETURN_IF_ERROR(Act(barriers_->OnTimer()));
    SLUICE_RETURN_IF_ERROR(chain_.FireProcessingTimers());
    absl::optional<BufferItem> item;
    if (!restored_input_.empty()) {
      item = std::move(restored_input_.front());
      restored_input_.pop_front();
    } else {
      item = barriers_->NextReplay();
    }
    if (!item.has_value()) {
      int64_t deadline = std::numeric_limits<int64_t>::max();
      int64_t real_now = Clock::Real()->NowNanos();
      const int64_t timer_deadline =
          std::min({writer_.FlushDeadlineNanos(), chain_.ProcessingTimerDeadline(clock_->NowNanos()),
                    barriers_->TimerDeadlineNanos()});
      if (timer_deadline != std::numeric_limits<int64_t>::max()) {
        deadline = std::min(deadline, real_now + std::max<int64_t>(0, timer_deadline - clock_->NowNanos()));
      }
      if (deadline == std::numeric_limits<int64_t>::max()) deadline = real_now + 200'000'000;
      item = gate_->Poll(deadline);
    }
    if (item.has_value()) SLUICE_RETURN_IF_ERROR(HandleInputItem(*item));
    SLUICE_RETURN_IF_ERROR(writer_.FlushIfDue(false));
  }
  return absl::OkStatus();
}

absl::Status Task::HandleInputItem(BufferItem& item) {
  const int ch = item.channel;
  const bool credit = item.TakesCredit();
  SLUICE_ASSIGN_OR_RETURN(BarrierHandler::Action action, barriers_->OnItem(item));
  if (action.held) return absl::OkStatus();  // its credit is returned when it is replayed
  if (action.process) {
    SLUICE_RETURN_IF_ERROR(ProcessItem(item));
    SLUICE_RETURN_IF_ERROR(chain_.Flush());
  }
  if (credit) gate_->ReleaseCredit(ch);
  return Act(action);
}

absl::Status Task::Act(const BarrierHandler::Action& action) {
  if (action.abandoned > 0 && unaligned_ack_ != nullptr &&
      unaligned_ack_->ack.checkpoint_id() == action.abandoned) {
    // The coordinator gave it up: drop its local RocksDB checkpoints too.
    DropUpload(std::move(unaligned_ack_));
  }
  if (action.snapshot > 0) {
    // Mode auto, aligned here: the barrier goes on in place, timeoutable, as a source's does.
    const bool timeoutable =
        action.priority && !action.unaligned && mode_ == plan::CheckpointConfig::Mode::kAuto;
    SLUICE_RETURN_IF_ERROR(PerformCheckpoint(action.snapshot, true, action.alignment_ms,
                                             action.priority && !timeoutable, action.unaligned,
                                             timeoutable,
                                             clock_->NowNanos() - action.origin_nanos));
  }
  if (action.complete > 0) CompleteUnaligned(action.complete, barriers_->TakeInputState());
  return absl::OkStatus();
}

void Task::DropUpload(std::unique_ptr<PendingUpload> pending) {
  for (const PendingUpload::Keyed& keyed : pending->keyed) {
    std::error_code ec;
    if (!keyed.snapshot.local_checkpoint_dir.empty()) {
      std::filesystem::remove_all(keyed.snapshot.local_checkpoint_dir, ec);
    }
  }
}

absl::Status Task::AwaitOutput(bool source) {
  while (true) {
    SLUICE_ASSIGN_OR_RETURN(bool sent, writer_.TrySend());
    // A barrier waiting in a backlog (mode auto): left with what was sent, or timed out.
    if (output_ack_ != nullptr) SLUICE_RETURN_IF_ERROR(ResolveQueuedBarrier());
    if (sent) return absl::OkStatus();
    if (cancelled_.load(std::memory_order_relaxed)) return absl::CancelledError("task cancelled");
    // Backpressured: what must not wait for credit happens now.
    if (has_mail_.load(std::memory_order_relaxed)) SLUICE_RETURN_IF_ERROR(HandleMail(source));
    // Not while restored in-flight input or released items wait to be processed: they precede
    // the new checkpoint's barrier on their channels, and a snapshot now would not store them
    // (lost on restore). The checkpoint then proceeds once they are processed.
    const bool priority_ok = !source && PriorityEventsAllowed();
    if (priority_ok) SLUICE_RETURN_IF_ERROR(HandlePriorityEvents(nullptr));
    // Pending buffers (and the watermarks they carry) of channels with credit leave on time,
    // not after the backpressured channel drains.
    SLUICE_RETURN_IF_ERROR(writer_.FlushIfDue(false));
    const int64_t real_now = Clock::Real()->NowNanos();
    int64_t deadline = real_now + 100'000'000;  // Interrupt() wakes it earlier
    // Earlier if `at` (clock_ nanoseconds; max: none) comes first.
    auto wake_by = [&](int64_t at) {
      if (at == std::numeric_limits<int64_t>::max()) return;
      deadline = std::min(deadline, real_now + std::max<int64_t>(0, at - clock_->NowNanos()));
    };
    wake_by(writer_.FlushDeadlineNanos());
    if (priority_ok) wake_by(barriers_->TimerDeadlineNanos());
    if (output_ack_ != nullptr) wake_by(output_ack_deadline_);
    SLUICE_RETURN_IF_ERROR(writer_.WaitForCredit(deadline));
  }
}

absl::Status Task::ProcessItem(BufferItem& item) {
  const int ch = item.channel;
  const RecordBuffer* records = item.as<RecordBuffer>();
  if (records == nullptr) {
    if (item.as<EndOfPartition>() != nullptr) return ForwardWatermark(valve_->OnEnd(ch));
    if (const WatermarkAdvance* w = item.as<WatermarkAdvance>()) {
      return ForwardWatermark(valve_->OnWatermark(ch, w->ms));
    }
    if (const WatermarkStatusChange* s = item.as<WatermarkStatusChange>()) {
      return ForwardWatermark(valve_->OnStatus(ch, s->idle));
    }
    return absl::OkStatus();  // barriers are the barrier handler's
  }
  ChainedOperator* head = &chain_.head();
  const int input = input_of_[ch];
  std::vector<Record>& batch = input_batches_[input];
  RecordDecoder dec(schema_of_[ch], records->data);
  SLUICE_ASSIGN_OR_RETURN(const CarriedKeyGroups carried, CarriedKeyGroupsOf(ch, *records));
  absl::Status s;
  if (head_batches_) {
    // The whole buffer is one batch (watermarks and barriers travel in buffers of their own),
    // decoded kInputSliceRecords at a time (one call each). Not in slices of its own: the
    // aggregate reads and writes a key's state once per batch, and slices of 512 took its
    // backend path (shuffle_benchmark) from 3.2M to 2.4M records per CPU-second, while
    // window_count measured the same with slices of 64 to 1024 as with whole buffers.
    if (cancelled_.load(std::memory_order_relaxed)) return absl::CancelledError("task cancelled");
    size_t decoded = 0;
    if (head_int_rows_[input] && schema_of_[ch]->all_integral() && schema_of_[ch]->size() > 0) {
      // Rows of int64s, no Records: the head folds straight from them (window.cc's FoldBatch).
      const size_t width = schema_of_[ch]->size();
      while (!dec.Done()) {
        if (int_rows_.size() < (decoded + kInputSliceRecords) * width) {
          int_rows_.resize((decoded + kInputSliceRecords) * width);
        }
        size_t n;
        SLUICE_RETURN_IF_ERROR(
            OfInputChannel(ch, dec.NextIntRows(int_rows_.data() + decoded * width, kInputSliceRecords, &n)));
        decoded += n;
      }
      SLUICE_RETURN_IF_ERROR(carried.Check(decoded));
      SLUICE_RETURN_IF_ERROR(CheckRecordCount(ch, *records, decoded));
      head->in->Add(decoded);
      ops::IntRowBatch rows;
      rows.values = int_rows_.data();
      rows.width = width;
      rows.count = decoded;
      rows.key_groups = carried.data;
      rows.key_group_width = carried.width;
      return chain_.Named(0, head->op->ProcessIntRows(input, rows));
    }
    while (!dec.Done()) {
      if (batch.size() < decoded + kInputSliceRecords) {
        batch.resize(decoded + kInputSliceRecords, Record(input_widths_[input]));
      }
      size_t n;
      SLUICE_RETURN_IF_ERROR(OfInputChannel(ch, dec.NextBatch(batch.data() + decoded, kInputSliceRecords, &n)));
      SLUICE_RETURN_IF_ERROR(carried.SetBatch(decoded, batch.data() + decoded, n));
      decoded += n;
    }
    SLUICE_RETURN_IF_ERROR(CheckRecordCount(ch, *records, decoded));
    head->in->Add(decoded);
    s = head->op->ProcessBatch(input, batch.data(), decoded);
  } else {
    // Record by record, so a cancel, a priority barrier or the alignment timeout is seen
    // between records of a slow operator; decoded kInputSliceRecords at a time (one call).
    // Not while restored in-flight input waits (nor, below, released items to replay): a
    // snapshot now would have to store them too. They are handled between buffers.
    const bool interruptible = mode_ != plan::CheckpointConfig::Mode::kAligned;
    ops::Operator* op = head->op.get();
    Counter* const in = head->in.get();
    const size_t slice = kInputSliceRecords;
    if (batch.size() < slice) batch.resize(slice, Record(input_widths_[input]));
    size_t decoded = 0;
    while (s.ok() && !dec.Done()) {
      const size_t slice_bytes = dec.Remaining();  // the slice and the rest of the buffer
      size_t n;
      const absl::Status decode = dec.NextBatch(batch.data(), slice, &n);
      SLUICE_RETURN_IF_ERROR(carried.SetBatch(decoded, batch.data(), n));
      for (size_t k = 0; k < n && s.ok(); ++k) {
        if (cancelled_.load(std::memory_order_relaxed)) return absl::CancelledError("task cancelled");
        if (interruptible && PriorityEventsAllowed() && PriorityEventDue()) {
          SLUICE_ASSIGN_OR_RETURN(RecordBuffer unprocessed,
                                  RestOfRecordBuffer(*schema_of_[ch], *records, slice_bytes, k, decoded + k,
                                                     carried.Rest(decoded + k), &rest_scratch_));
          const BufferItem rest(ch, std::move(unprocessed));
          SLUICE_RETURN_IF_ERROR(HandlePriorityEvents(&rest));
        }
        in->Add();
        // One input: ProcessOwned() directly (what ProcessInput() means for it; the next
        // decode overwrites every value of the record), one virtual call.
        s = head_inputs_ > 1 ? op->ProcessInput(input, batch[k]) : op->ProcessOwned(&batch[k]);
      }
      decoded += n;
      if (s.ok()) SLUICE_RETURN_IF_ERROR(OfInputChannel(ch, decode));
    }
    if (s.ok()) SLUICE_RETURN_IF_ERROR(CheckRecordCount(ch, *records, decoded));
  }
  return chain_.Named(0, s);
}

absl::Status OfInputChannel(int ch, const absl::Status& status) {
  if (status.ok()) return status;
  return absl::Status(status.code(), absl::StrCat("input channel ", ch, ": ", status.message()));
}

absl::Status CheckRecordCount(int ch, const RecordBuffer& records, size_t decoded) {
  if (ABSL_PREDICT_TRUE(records.num_records >= 0 && decoded == static_cast<size_t>(records.num_records))) {
    return absl::OkStatus();
  }
  return absl::DataLossError(absl::StrCat("input channel ", ch, ": a buffer announcing ", records.num_records,
                                          " records held ", decoded,
                                          " (is its schema the one it was written with?)"));
}

absl::StatusOr<RecordBuffer> RestOfRecordBuffer(const Schema& schema, const RecordBuffer& records,
                                                size_t slice_bytes, size_t k, size_t done,
                                                std::string key_groups, Record* scratch) {
  if (slice_bytes > records.data.size()) return absl::InternalError("slice beyond its buffer");
  RecordDecoder skip(&schema, absl::string_view(records.data).substr(records.data.size() - slice_bytes));
  scratch->Resize(schema.size());
  for (size_t i = 0; i < k; ++i) SLUICE_RETURN_IF_ERROR(skip.Next(scratch));
  return RecordBuffer{records.data.substr(records.data.size() - skip.Remaining()),
                      records.num_records - static_cast<int>(done), std::move(key_groups)};
}

absl::StatusOr<Task::CarriedKeyGroups> Task::CarriedKeyGroupsOf(int ch, const RecordBuffer& records) const {
  CarriedKeyGroups c;
  c.range = key_groups_;
  c.channel = ch;
  if (!carries_key_groups_[ch] || records.key_groups.empty()) return c;
  if (records.num_records < 0 ||
      records.key_groups.size() != key_group_width_ * static_cast<size_t>(records.num_records)) {
    return absl::DataLossError(absl::StrCat("input channel ", ch, ": a buffer of ", records.num_records,
                                            " records came with ", records.key_groups.size(),
                                            " bytes of key groups (", key_group_width_, " per record)"));
  }
  c.data = reinterpret_cast<const unsigned char*>(records.key_groups.data());
  c.size = records.key_groups.size();
  c.width = key_group_width_;
  return c;
}

absl::Status Task::CarriedKeyGroups::SetCarried(size_t i, Record* record) const {
  const size_t at = i * width;
  if (ABSL_PREDICT_FALSE(at + width > size)) {
    return absl::DataLossError(absl::StrCat("input channel ", channel, ": record ", i,
                                            " of a buffer has no key group"));
  }
  const int kg = width == 1 ? data[at] : data[at] | (data[at + 1] << 8);
  if (ABSL_PREDICT_FALSE(!range.Contains(kg))) {
    return absl::DataLossError(absl::StrCat("input channel ", channel, ": record ", i, " came with key group ",
                                            kg, ", outside this subtask's ", range.first, "-", range.last));
  }
  record->set_carried_key_group(kg);
  return absl::OkStatus();
}

absl::Status Task::CarriedKeyGroups::Check(size_t n) const {
  if (data == nullptr) return absl::OkStatus();
  bool ok = n * width <= size;
  if (ok && width == 1) {
    for (size_t i = 0; i < n; ++i) ok &= range.Contains(data[i]);
  } else if (ok) {
    for (size_t i = 0; i < n; ++i) ok &= range.Contains(data[2 * i] | (data[2 * i + 1] << 8));
  }
  if (ABSL_PREDICT_TRUE(ok)) return absl::OkStatus();
  Record scratch;
  for (size_t i = 0; i < n; ++i) SLUICE_RETURN_IF_ERROR(SetCarried(i, &scratch));
  return absl::OkStatus();
}

absl::Status Task::CarriedKeyGroups::SetBatch(size_t first, Record* records, size_t n) const {
  if (data == nullptr) {
    for (size_t i = 0; i < n; ++i) records[i].set_carried_key_group(-1);
    return absl::OkStatus();
  }
  const unsigned char* at = data + first * width;
  bool ok = (first + n) * width <= size;
  if (ok && width == 1) {
    for (size_t i = 0; i < n; ++i) {
      const int kg = at[i];
      ok &= range.Contains(kg);
      records[i].set_carried_key_group(kg);
    }
  } else if (ok) {
    for (size_t i = 0; i < n; ++i) {
      const int kg = at[2 * i] | (at[2 * i + 1] << 8);
      ok &= range.Contains(kg);
      records[i].set_carried_key_group(kg);
    }
  }
  if (ABSL_PREDICT_TRUE(ok)) return absl::OkStatus();
  // A record without its key group or with one outside the range: SetCarried() names it.
  for (size_t i = 0; i < n; ++i) SLUICE_RETURN_IF_ERROR(SetCarried(first + i, &records[i]));
  return absl::OkStatus();
}

std::string Task::CarriedKeyGroups::Rest(size_t from) const {
  if (data == nullptr) return std::string();
  return std::string(reinterpret_cast<const char*>(data) + from * width, size - from * width);
}

bool Task::PriorityEventsAllowed() const { return restored_input_.empty() && !barriers_->HasReplay(); }

absl::Status Task::HandlePriorityEvents(const BufferItem* rest) {
  barriers_->SetPartial(rest);
  absl::Status s = [&] {
    while (absl::optional<BufferItem> announced = gate_->PollPriority()) {
      SLUICE_RETURN_IF_ERROR(HandleInputItem(*announced));
    }
    return Act(barriers_->OnTimer());
  }();
  barriers_->SetPartial(nullptr);
  return s;
}

absl::Status Task::ForwardWatermark(const WatermarkValve::Changes& changes) {
  if (!changes.active && !changes.advanced && !changes.idle) return absl::OkStatus();
  PublishWatermark(valve_->watermark(), valve_->idle());
  ChainedOperator* head = &chain_.head();
  absl::Status s;
  if (changes.active) s = head->op->ProcessWatermarkStatus(false);
  if (s.ok() && changes.advanced) s = head->Watermark(valve_->watermark());
  if (s.ok() && changes.idle) s = head->op->ProcessWatermarkStatus(true);
  return chain_.Named(0, s);
}

void Task::PublishWatermark(int64_t watermark_ms, bool idle) {
  if (watermark_ms != watermark_.load(std::memory_order_relaxed)) {
    watermark_.store(watermark_ms);
    for (auto& g : watermark_gauges_) g->Set(static_cast<double>(watermark_ms));
  }
  if (idle != watermark_idle_.load(std::memory_order_relaxed)) {
    watermark_idle_.store(idle);
    for (auto& g : idle_gauges_) g->Set(idle ? 1 : 0);
  }
}

void Task::DeliverNotificationsBeforeClose() {
  // A stop with savepoint notifies the savepoint's completion and cancels right after: a
  // notification still queued must reach the operators (sinks commit on it) before they close.
  std::deque<Mail> mail;
  {
    absl::MutexLock lock(&mail_mu_);
    mail.swap(mail_);
    has_mail_.store(false);
  }
  for (const Mail& m : mail) {
    if (m.kind != Mail::kNotify) continue;
    for (size_t i = 0; i < chain_.size(); ++i) {
      const ChainedOperator& slot = chain_.op(i);
      absl::Status s = slot.op->NotifyCheckpointComplete(m.id);
      if (!s.ok()) {
        spdlog::warn("{}/{}#{}: checkpoint {} completion on cancel: {}", desc_.job_id, slot.spec->id, desc_.subtask,
                     m.id, s);
      }
    }
  }
}

absl::Status Task::HandleMail(bool source) {
  std::deque<Mail> mail;
  {
    absl::MutexLock lock(&mail_mu_);
    mail.swap(mail_);
    has_mail_.store(false);
  }
  for (const Mail& m : mail) {
    if (m.kind == Mail::kNotify) {
      SLUICE_RETURN_IF_ERROR(chain_.NotifyCheckpointComplete(m.id));
      if (final_checkpoint_ > 0 && m.id >= final_checkpoint_) final_done_ = true;
    } else if (source || end_of_input_.load()) {
      // Sources start a checkpoint by injecting its barrier; a task past its end of input
      // (no barrier can reach it any more) snapshots directly.
      // Mode unaligned: a priority barrier at once. Mode auto: in place, converted to one only
      // if it still waits in the backlog after aligned_timeout (ResolveQueuedBarrier()); so are
      // the barriers a task forwards after aligning (Act()).
      const bool barrier = !end_of_input_.load() && !m.final;
      const bool may_overtake =
          barrier && !m.aligned && mode_ != plan::CheckpointConfig::Mode::kAligned;
      const bool timeoutable = may_overtake && mode_ == plan::CheckpointConfig::Mode::kAuto;
      SLUICE_RETURN_IF_ERROR(
          PerformCheckpoint(m.id, barrier, 0, may_overtake && !timeoutable, false, timeoutable));
      if (end_of_input_.load() && m.final) final_checkpoint_ = m.id;
    }
  }
  return absl::OkStatus();
}

absl::Status Task::AwaitFinalCheckpoint() {
  while (!final_done_) {
    if (cancelled_.load()) return absl::CancelledError("task cancelled");
    if (has_mail_.load()) {
      SLUICE_RETURN_IF_ERROR(HandleMail(false));
      continue;
    }
    gate_->Poll(Clock::Real()->NowNanos() + 200'000'000);
  }
  return absl::OkStatus();
}

absl::Status Task::PerformCheckpoint(int64_t id, bool emit_barrier, int64_t alignment_ms,
                                     bool priority, bool unaligned, bool timeoutable,
                                     int64_t waited_nanos) {
  if (output_ack_ != nullptr) {
    // The checkpoint whose barrier still waits in the backlog was aborted: the coordinator
    // triggers one at a time and cannot have completed it without this acknowledgement. Its
    // barrier is not sent (converting it would make every task downstream store in-flight data
    // of a dead checkpoint at once); receivers that have it on other channels give it up when
    // this one's barrier arrives.
    writer_.DropQueuedBarrier();
    DropUpload(std::move(output_ack_));
  }
  const int64_t start = clock_->NowNanos();
  const int64_t origin = start - waited_nanos;  // the checkpoint's start, as far as known here
  // Everything emitted before the barrier goes out before it (or, overtaken by a priority
  // barrier, is stored with the checkpoint).
  SLUICE_RETURN_IF_ERROR(chain_.Flush());
  SLUICE_RETURN_IF_ERROR(writer_.FlushAll());
  auto pending = std::make_unique<PendingUpload>();
  proto::CheckpointAck* ack = &pending->ack;
  auto* ref = ack->mutable_task();
  ref->set_job_id(desc_.job_id);
  ref->set_attempt(desc_.attempt);
  ref->set_vertex(desc_.vertex);
  ref->set_subtask(desc_.subtask);
  ack->set_checkpoint_id(id);
  ack->set_alignment_ms(alignment_ms);
  ack->set_unaligned(unaligned);
  auto* st = ack->mutable_state();
  st->set_vertex(desc_.vertex);
  st->set_subtask(desc_.subtask);
  st->set_finished(end_of_input_.load());
  // Operator state first: an operator may still write keyed state while snapshotting.
  SLUICE_RETURN_IF_ERROR(chain_.SnapshotState(id, st));
  for (size_t i = 0; i < chain_.size(); ++i) {
    if (backends_[i] != nullptr) {
      SLUICE_ASSIGN_OR_RETURN(state::PendingSnapshot snap, backends_[i]->SnapshotSync(id));
      pending->keyed.push_back({chain_.op(i).spec->id, std::move(snap), backends_[i].get()});
    }
  }
  ack->set_sync_ms((clock_->NowNanos() - start) / 1'000'000);
  if (emit_barrier && timeoutable) {
    SLUICE_RETURN_IF_ERROR(writer_.EmitTimeoutableBarrier(id, clock_->NowNanos() - origin));
    if (writer_.HasQueuedBarrier()) {
      // Backpressured: the acknowledgement waits until the barrier leaves or is converted,
      // aligned_timeout after the checkpoint's start (the time it waited upstream counts).
      output_ack_ = std::move(pending);
      output_ack_deadline_ = origin + desc_.job->checkpoint.aligned_timeout_ms * 1'000'000;
      return ResolveQueuedBarrier();
    }
  } else if (emit_barrier) {
    // Taken unaligned in mode auto: the checkpoint timed out here, so it does downstream too.
    const bool timed_out = priority && unaligned && mode_ == plan::CheckpointConfig::Mode::kAuto;
    SLUICE_RETURN_IF_ERROR(writer_.EmitBarrier(id, priority, &pending->channels, timed_out,
                                               (clock_->NowNanos() - origin) / 1'000'000));
  }
  // A priority barrier that overtook queued output took this subtask's part unaligned too: say
  // so, as its in-flight bytes are stored.
  if (pending->channels.items_size() > 0) ack->set_unaligned(true);
  if (unaligned) {
    unaligned_ack_ = std::move(pending);  // the barrier handler completes the in-flight input
    return absl::OkStatus();
  }
  uploader_.Queue(std::move(pending));
  return absl::OkStatus();
}

absl::Status Task::ResolveQueuedBarrier() {
  if (writer_.HasQueuedBarrier()) {
    if (clock_->NowNanos() < output_ack_deadline_) return absl::OkStatus();
    SLUICE_RETURN_IF_ERROR(writer_.ConvertQueuedBarrier(&output_ack_->channels));
    if (output_ack_->channels.items_size() > 0) output_ack_->ack.set_unaligned(true);
  }
  uploader_.Queue(std::move(output_ack_));
  return absl::OkStatus();
}

void Task::CompleteUnaligned(int64_t id, std::vector<BufferItem> input) {
  if (unaligned_ack_ == nullptr || unaligned_ack_->ack.checkpoint_id() != id) return;
  for (const BufferItem& item : input) {
    AddChannelStateItem(false, item.channel, item, &unaligned_ack_->channels);
  }
  uploader_.Queue(std::move(unaligned_ack_));
}

absl::Status Task::RestoreChannelState() {
  if (restore_ == nullptr) return absl::OkStatus();
  const proto::CheckpointMetadata& md = *restore_;
  const std::vector<plan::Vertex>& vertices = desc_.graph->vertices;
  const int num_vertices = static_cast<int>(vertices.size());
  const proto::SubtaskState* mine = nullptr;
  const proto::SubtaskState* out_of_range = nullptr;
  bool any = false;
  std::vector<int> old_parallelism(vertices.size(), 0);
  for (const auto& st : md.subtasks()) {
    any |= !st.channel_state_file().empty();
    if (st.vertex() >= 0 && st.vertex() < num_vertices) {
      ++old_parallelism[st.vertex()];
    } else if (out_of_range == nullptr) {
      out_of_range = &st;
    }
    if (st.vertex() == desc_.vertex && st.subtask() == desc_.subtask) mine = &st;
  }
  // Without in-flight data all state is matched by operator id: rescaling and re-chaining are fine.
  if (!any) return absl::OkStatus();
  // In-flight data is stored per vertex index and channel: it belongs to the vertex layout that
  // took it (another job file, or another build's chaining, gives other vertices).
  const std::string fix =
      "; restore it with the job file and build that took it, or take an aligned savepoint there "
      "(sluice savepoint) and restore from that";
  const int stored = md.vertex_names_size();
  // Metadata written before vertex_names has none: only its vertex indexes can be checked.
  if (stored > 0) {
    for (int v = 0; v < std::max(stored, num_vertices); ++v) {
      const std::string was = v < stored ? absl::StrCat("'", md.vertex_names(v), "'") : "absent";
      const std::string now = v < num_vertices ? absl::StrCat("'", vertices[v].name, "'") : "absent";
      if (was == now) continue;
      return absl::FailedPreconditionError(absl::StrCat(
          "job ", desc_.job_id, ": checkpoint ", md.checkpoint_id(),
          " is unaligned (it holds in-flight data) and was taken with other vertices: vertex ", v,
          " was ", was, ", now ", now, " (", stored, " vertices, now ", num_vertices, ")", fix));
    }
  }
  if (out_of_range != nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        "job ", desc_.job_id, ": checkpoint ", md.checkpoint_id(),
        " is unaligned (it holds in-flight data) and was taken with other vertices: it has state of "
        "vertex ", out_of_range->vertex(), " (subtask ", out_of_range->subtask(), "), this job has ",
        num_vertices, " vertices", fix));
  }
  for (size_t v = 0; v < old_parallelism.size(); ++v) {
    if (old_parallelism[v] != vertices[v].parallelism) {
      return absl::FailedPreconditionError(absl::StrCat(
          "job ", desc_.job_id, ": checkpoint ", md.checkpoint_id(),
          " is unaligned (it holds in-flight data), which cannot be rescaled: '",
          vertices[v].name, "' had ", old_parallelism[v], " subtasks, now ", vertices[v].parallelism,
          "; restore it with the old parallelism, or rescale from a savepoint (always aligned)"));
    }
  }
  if (mine == nullptr || mine->channel_state_file().empty()) return absl::OkStatus();
  SLUICE_ASSIGN_OR_RETURN(
      proto::ChannelStateFile file,
      ReadChannelState(absl::StrCat(desc_.restore_dir, "/", mine->channel_state_file()),
                       md.checkpoint_id(), desc_.vertex, desc_.subtask));
  for (const proto::ChannelStateItem& p : file.items()) {
    BufferItem item = FromChannelStateItem(p);
    if (!p.output()) {
      if (p.channel() < 0 || p.channel() >= gate_->num_channels()) {
        return absl::DataLossError(absl::StrCat("in-flight data of checkpoint ", md.checkpoint_id(),
                                                " names input channel ", p.channel(), " of ",
                                                gate_->num_channels()));
      }
      restored_input_.push_back(std::move(item));
      continue;
    }
    item.restored = false;  // sent again: it takes a credit like any buffer
    if (!writer_.PushRestored(p.channel(), std::move(item))) {
      return absl::DataLossError(absl::StrCat("in-flight data of checkpoint ", md.checkpoint_id(),
                                              " names output channel ", p.channel(),
                                              ", which this task does not have"));
    }
  }
  return absl::OkStatus();
}

absl::Status Task::SetUpState() {
  const plan::JobSpec& job = *desc_.job;
  const plan::Vertex& vertex = desc_.graph->vertices[desc_.vertex];
  backends_.resize(chain_.size());
  if (restore_ != nullptr && restore_->final()) skip_finish_ = true;
  for (size_t i = 0; i < chain_.size(); ++i) {
    const plan::OperatorSpec& spec = *chain_.op(i).spec;
    // Keyed by its type's traits (or, for operators made outside a registry entry, by itself).
    if (!spec.keyed && !chain_.op(i).op->IsKeyed()) continue;
    state::StateBackendOptions o;
    o.local_dir = absl::StrCat(desc_.work_dir, "/", desc_.job_id, "/", desc_.attempt, "/",
                               desc_.vertex, "-", desc_.subtask, "-", spec.id);
    o.operator_id = spec.id;
    o.max_parallelism = job.max_parallelism;
    o.range = KeyGroupRangeForSubtask(job.max_parallelism, vertex.parallelism, desc_.subtask);
    o.clock = clock_;
    o.origin = OriginOf(spec);
    if (desc_.state_memory != nullptr) {
      desc_.state_memory->Configure(desc_.keyed_operators_per_slot, &o);
    }
    {
      absl::MutexLock lock(&mu_);
      o.cache_hits = state_stats_[i].hits;
      o.cache_misses = state_stats_[i].misses;
      o.size_bytes = state_stats_[i].size_bytes;
      o.delta_bytes = state_stats_[i].delta_bytes;
    }
    std::vector<proto::KeyedStateHandle> handles;
    if (restore_ != nullptr) {
      for (const auto& st : restore_->subtasks()) {
        for (const auto& h : st.keyed()) {
          if (h.operator_id() == spec.id) handles.push_back(h);
        }
      }
    }
    absl::StatusOr<std::unique_ptr<state::KeyedStateBackend>> b =
        handles.empty() ? state::KeyedStateBackend::Open(o)
                        : state::KeyedStateBackend::Restore(o, handles, desc_.restore_dir);
    if (!b.ok()) return chain_.Named(i, b.status());
    backends_[i] = std::move(*b);
  }
  return absl::OkStatus();
}

}  // namespace sluice::worker
