#include "coordinator/coordinator.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <optional>
#include <set>

#include "absl/random/random.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "common/error_text.h"
#include "common/address.h"
#include "common/grpc_limits.h"
#include "common/logging.h"
#include "common/process.h"
#include "common/status.h"
#include "common/watermark.h"
#include "connectors/connector_types.h"
#include "coordinator/scheduler.h"
#include "operators/operator_types.h"
#include "sdk/host/plugin_validation.h"

namespace sluice::coordinator {

namespace {

// The message is capped: it travels in metadata, which gRPC limits to a few KiB.
grpc::Status ToGrpc(const absl::Status& s) {
  return s.ok() ? grpc::Status::OK
                : grpc::Status(static_cast<grpc::StatusCode>(s.code()), CapText(s.message()));
}

// Channels to workers retry a lost connection quickly (gRPC's default backoff grows to 120 s).
grpc::ChannelArguments WorkerChannelArgs() {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  // The connect timeout, despite its name (common/grpc_limits.h): a worker whose connection
  // is slow is not taken for gone (PeerGone() reads TRANSIENT_FAILURE so).
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, kControlConnectTimeoutMs);
  args.SetMaxReceiveMessageSize(kMaxGrpcMessageBytes);
  args.SetMaxSendMessageSize(kMaxGrpcMessageBytes);
  return args;
}

// "CANCELLED", as users see states in the CLI.
std::string StateName(proto::JobState s) {
  return std::string(absl::StripPrefix(proto::JobState_Name(s), "JOB_"));
}

bool TaskTerminal(proto::TaskState s) {
  return s == proto::TASK_FINISHED || s == proto::TASK_CANCELLED || s == proto::TASK_FAILED;
}

std::chrono::system_clock::time_point Deadline(int seconds) {
  return std::chrono::system_clock::now() + std::chrono::seconds(seconds);
}

}  // namespace

class Coordinator::Service final : public proto::Coordinator::CallbackService {
 public:
  explicit Service(Coordinator* c) : c_(c) {}

  grpc::ServerUnaryReactor* RegisterWorker(grpc::CallbackServerContext* ctx,
                                           const proto::RegisterWorkerRequest* req,
                                           proto::RegisterWorkerResponse* resp) override {
    auto r = c_->RegisterWorker(*req);
    if (r.ok()) *resp = *r;
    return Done(ctx, r.status());
  }
  grpc::ServerUnaryReactor* Heartbeat(grpc::CallbackServerContext* ctx,
                                      const proto::HeartbeatRequest* req,
                                      proto::HeartbeatResponse* resp) override {
    *resp = c_->Heartbeat(*req);
    return Done(ctx, absl::OkStatus());
  }
  grpc::ServerUnaryReactor* DeregisterWorker(grpc::CallbackServerContext* ctx,
                                             const proto::DeregisterWorkerRequest* req, proto::Ack*) override {
    return Done(ctx, c_->DeregisterWorker(*req));
  }
  grpc::ServerUnaryReactor* ReportTaskState(grpc::CallbackServerContext* ctx,
                                            const proto::TaskStatus* req, proto::Ack*) override {
    c_->ReportTaskState(*req);
    return Done(ctx, absl::OkStatus());
  }
  grpc::ServerUnaryReactor* SubmitJob(grpc::CallbackServerContext* ctx,
                                      const proto::SubmitJobRequest* req,
                                      proto::SubmitJobResponse* resp) override {
    auto* r = ctx->DefaultReactor();
    c_->SubmitJobAsync(*req, [r, resp](absl::StatusOr<proto::SubmitJobResponse> submitted) {
      if (submitted.ok()) *resp = std::move(*submitted);
      r->Finish(ToGrpc(submitted.status()));
    });
    return r;
  }
  grpc::ServerUnaryReactor* ListJobs(grpc::CallbackServerContext* ctx, const proto::ListJobsRequest*,
                                     proto::ListJobsResponse* resp) override {
    *resp = c_->ListJobs();
    return Done(ctx, absl::OkStatus());
  }
  grpc::ServerUnaryReactor* GetJob(grpc::CallbackServerContext* ctx, const proto::JobRef* req,
                                   proto::JobInfo* resp) override {
    auto r = c_->GetJob(req->job_id());
    if (r.ok()) *resp = *r;
    return Done(ctx, r.status());
  }
  grpc::ServerUnaryReactor* WaitJob(grpc::CallbackServerContext* ctx, const proto::WaitJobRequest* req,
                                    proto::JobInfo* resp) override {
    auto* r = ctx->DefaultReactor();
    c_->WaitJob(req->job_id(), req->timeout_ms(), [r, resp](absl::StatusOr<proto::JobInfo> info) {
      if (info.ok()) *resp = std::move(*info);
      r->Finish(ToGrpc(info.status()));
    });
    return r;
  }
  grpc::ServerUnaryReactor* CancelJob(grpc::CallbackServerContext* ctx, const proto::JobRef* req,
                                      proto::Ack*) override {
    absl::Status s = c_->CancelJob(req->job_id());
    if (!s.ok()) return Done(ctx, s);
    return DoneWhenDurable(ctx);
  }
  grpc::ServerUnaryReactor* AcknowledgeCheckpoint(grpc::CallbackServerContext* ctx,
                                                  const proto::CheckpointAck* req, proto::Ack*) override {
    c_->AcknowledgeCheckpoint(*req);
    return Done(ctx, absl::OkStatus());
  }
  grpc::ServerUnaryReactor* TriggerSavepoint(grpc::CallbackServerContext* ctx,
                                             const proto::SavepointRequest* req,
                                             proto::SavepointResponse* resp) override {
    auto* r = ctx->DefaultReactor();
    absl::Status s = c_->TriggerSavepoint(*req, [r, resp](absl::StatusOr<std::string> path) {
      if (path.ok()) resp->set_path(*path);
      r->Finish(ToGrpc(path.status()));
    });
    if (!s.ok()) r->Finish(ToGrpc(s));
    return r;
  }
  grpc::ServerUnaryReactor* ListWorkers(grpc::CallbackServerContext* ctx,
                                        const proto::ListWorkersRequest*,
                                        proto::ListWorkersResponse* resp) override {
    *resp = c_->ListWorkers();
    return Done(ctx, absl::OkStatus());
  }

 private:
  static grpc::ServerUnaryReactor* Done(grpc::CallbackServerContext* ctx, const absl::Status& s) {
    auto* r = ctx->DefaultReactor();
    r->Finish(ToGrpc(s));
    return r;
  }
  // Answers once the job records persisted so far are durable: a coordinator restarted after
  // the caller heard of a submission or cancellation knows of it.
  grpc::ServerUnaryReactor* DoneWhenDurable(grpc::CallbackServerContext* ctx) {
    auto* r = ctx->DefaultReactor();
    c_->WhenDurable([r] { r->Finish(grpc::Status::OK); });
    return r;
  }
  Coordinator* c_;
};

namespace {

// How long a stop with a savepoint waits for the job's tasks to stop before it answers anyway.
constexpr int64_t kStopReplyWaitNanos = 30'000'000'000;

// Built-in and connector types have distinct names: registering them cannot fail.
plan::OperatorTypeCatalog MakeCatalog() {
  plan::OperatorTypeCatalog catalog;
  absl::Status s = ops::RegisterBuiltinOperatorTypes(&catalog);
  s.Update(connectors::RegisterConnectorOperatorTypes(&catalog));
  if (!s.ok()) {
    spdlog::critical("registering operator types: {}", s);
    std::abort();
  }
  return catalog;
}

}  // namespace

// Plugin operators are validated in a helper process (sluice-plugin-host, beside this
// executable): it loads the job's plugins (and --plugin-dir's) and runs their validate and
// output_schema hooks; this process plans with what it reports and never loads a plugin. A
// plugin that crashes or hangs there refuses the job with the plugin file named.
absl::StatusOr<plan::JobSpec> Coordinator::PlanJob(const std::string& yaml, const std::string& name,
                                                   int parallelism) const {
  SLUICE_ASSIGN_OR_RETURN(std::vector<plan::PluginRef> refs, plan::ReadJobPlugins(yaml, name));
  if (refs.empty() && options_.plugin_dir.empty()) return plan::ParseJobSpec(yaml, name, catalog_, parallelism);
  plugin::HelperOptions helper;
  helper.plugin_dir = options_.plugin_dir;
  SLUICE_ASSIGN_OR_RETURN(plugin::ValidatedPlugins validated,
                          plugin::ValidateInHelper(yaml, name, parallelism, helper));
  plan::OperatorTypeCatalog catalog = MakeCatalog();
  SLUICE_RETURN_IF_ERROR(plugin::AddValidatedPluginTypes(validated, &catalog));
  return plan::ParseJobSpec(yaml, name, catalog, parallelism);
}

Coordinator::Coordinator(CoordinatorOptions options)
    : options_(std::move(options)),
      catalog_(MakeCatalog()),
      http_(&metrics_),
      storage_(options_.file_system),
      ha_(options_.ha_dir.empty() ? nullptr : std::make_unique<const HaStore>(options_.file_system, options_.ha_dir)),
      registry_(options_.clock, options_.heartbeat_timeout_ms) {}

Coordinator::~Coordinator() { Stop(); }

bool Coordinator::PeerGone(const grpc::Status& s, grpc::Channel* channel) {
  // A refused (or otherwise failed) connect puts the channel in TRANSIENT_FAILURE; an RPC that
  // merely timed out on a connected peer leaves it READY.
  return s.error_code() == grpc::StatusCode::UNAVAILABLE && channel != nullptr &&
         channel->GetState(false) == GRPC_CHANNEL_TRANSIENT_FAILURE;
}

bool Coordinator::IsTerminal(proto::JobState s) {
  return s == proto::JOB_FINISHED || s == proto::JOB_CANCELLED || s == proto::JOB_FAILED;
}

absl::Status Coordinator::Start() {
  service_ = std::make_unique<Service>(this);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(absl::StrCat(options_.host, ":", options_.port),
                           grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(service_.get());
  builder.SetMaxReceiveMessageSize(kMaxGrpcMessageBytes);
  server_ = builder.BuildAndStart();
  if (server_ == nullptr || port == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", options_.host, ":", options_.port));
  }
  const std::string advertised =
      options_.advertise_address.empty() ? DefaultAdvertiseHost(options_.host) : options_.advertise_address;
  address_ = absl::StrCat(advertised, ":", port);
  http_.SetReadinessProbe([this] { return Ready(); });
  if (options_.http_port >= 0) {
    SLUICE_ASSIGN_OR_RETURN(http_port_, http_.Start(options_.host, options_.http_port));
  }
  metrics_.AddCallbackGauge("sluice_coordinator_workers", "Registered live workers", {}, [this] {
    absl::MutexLock lock(&mu_);
    return static_cast<double>(registry_.size());
  });
  for (int s = proto::JOB_CREATED; s <= proto::JOB_FAILED; ++s) {
    auto state = static_cast<proto::JobState>(s);
    metrics_.AddCallbackGauge("sluice_coordinator_jobs", "Jobs by state",
                              {{"state", proto::JobState_Name(state)}}, [this, state] {
                                absl::MutexLock lock(&mu_);
                                int n = 0;
                                for (auto& [id, j] : jobs_) n += j.state == state;
                                return static_cast<double>(n);
                              });
  }
  std::vector<Job> recovered = LoadFromHaStore();  // file I/O, before mu_
  {
    absl::MutexLock lock(&mu_);
    InstallRecoveredLocked(std::move(recovered));
    ready_ = true;
  }
  dispatcher_ = std::thread([this] { DispatchLoop(); });
  io_ = std::thread([this] { RunQueue(&io_queue_, &io_done_); });
  planner_ = std::thread([this] { RunQueue(&plan_queue_, &plan_done_); });
  monitor_ = std::thread([this] { MonitorLoop(); });
  spdlog::info("coordinator serving on {}:{} (advertised as {}), http on {}:{}, heartbeat timeout {} ms",
               options_.host, port, address_, options_.host, http_port_, options_.heartbeat_timeout_ms);
  return absl::OkStatus();
}

void Coordinator::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_ || server_ == nullptr) return;
    stopping_ = true;
    // Cancel running jobs so workers release their slots.
    for (auto& [id, job] : jobs_) {
      if (!IsTerminal(job.state)) {
        job.state = proto::JOB_CANCELLING;
        CancelTasksOnWorkers(job);
      }
      ReplyLocked(std::move(job.stop_replies));
      job.stop_replies.clear();
      AnswerWaitersLocked(job, options_.clock->NowNanos(), /*all=*/true);
    }
  }
  if (planner_.joinable()) planner_.join();
  if (dispatcher_.joinable()) dispatcher_.join();
  if (monitor_.joinable()) monitor_.join();
  if (io_.joinable()) io_.join();
  server_->Shutdown(Deadline(2));
  http_.Stop();
  spdlog::info("coordinator stopped");
}

void Coordinator::Dispatch(std::function<void()> fn) {
  absl::MutexLock lock(&mu_);
  dispatch_queue_.push_back(std::move(fn));
}

void Coordinator::DispatchLoop() {
  bool drained = false;  // nobody asks: an RPC queued after Stop() is dropped
  RunQueue(&dispatch_queue_, &drained);
}

void Coordinator::RunQueue(std::deque<std::function<void()>>* queue, bool* drained) {
  while (true) {
    std::function<void()> fn;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this, queue]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_ || !queue->empty(); };
      mu_.Await(absl::Condition(&ready));
      if (queue->empty()) {  // stopping, queue drained
        *drained = true;
        return;
      }
      fn = std::move(queue->front());
      queue->pop_front();
    }
    fn();
  }
}

void Coordinator::WhenDurable(std::function<void()> fn) {
  {
    absl::MutexLock lock(&mu_);
    if (!io_done_) {  // the I/O thread drains the queue before it exits
      io_queue_.push_back(std::move(fn));
      return;
    }
  }
  fn();  // the I/O thread has stopped: nothing is queued
}

void Coordinator::SubmitJobAsync(proto::SubmitJobRequest req,
                                 std::function<void(absl::StatusOr<proto::SubmitJobResponse>)> done) {
  {
    absl::MutexLock lock(&mu_);
    if (!plan_done_) {  // the planner thread drains the queue before it exits
      plan_queue_.push_back([this, req = std::move(req), done = std::move(done)] {
        absl::StatusOr<proto::SubmitJobResponse> resp = SubmitJob(req);
        if (!resp.ok()) return done(resp.status());
        WhenDurable([resp = std::move(*resp), done] { done(resp); });
      });
      return;
    }
  }
  done(absl::UnavailableError("coordinator is shutting down"));
}

absl::StatusOr<proto::RegisterWorkerResponse> Coordinator::RegisterWorker(
    const proto::RegisterWorkerRequest& req) {
  SLUICE_RETURN_IF_ERROR(WorkerRegistry::Validate(req));
  auto channel = grpc::CreateCustomChannel(req.data_address(), grpc::InsecureChannelCredentials(),
                                          WorkerChannelArgs());
  absl::MutexLock lock(&mu_);
  const WorkerEntry& w = registry_.Register(req, std::move(channel));
  metrics_.AddCallbackGauge("sluice_coordinator_worker_heartbeat_age_seconds",
                            "Seconds since each worker's last heartbeat", {{"worker", w.id}},
                            [this, id = w.id] {
                              absl::MutexLock lock(&mu_);
                              const WorkerEntry* found = registry_.Find(id);
                              if (found == nullptr) return -1.0;
                              return (options_.clock->NowNanos() - found->last_heartbeat_nanos) / 1e9;
                            },
                            w.id);
  proto::RegisterWorkerResponse resp;
  resp.set_worker_id(w.id);
  resp.set_heartbeat_interval_ms(registry_.HeartbeatIntervalNanos() / 1'000'000);
  return resp;
}

proto::HeartbeatResponse Coordinator::Heartbeat(const proto::HeartbeatRequest& req) {
  proto::HeartbeatResponse resp;
  absl::MutexLock lock(&mu_);
  if (!registry_.Heartbeat(req.worker_id(), req.data_address())) {
    // Unknown, or an id from an earlier coordinator that now names another worker.
    resp.set_reregister(true);
    return resp;
  }
  for (const auto& st : req.tasks()) {
    auto jit = jobs_.find(st.task().job_id());
    if (jit == jobs_.end()) continue;
    HandleTaskState(jit->second, st);
  }
  return resp;
}

absl::Status Coordinator::DeregisterWorker(const proto::DeregisterWorkerRequest& req) {
  absl::MutexLock lock(&mu_);
  const WorkerEntry* w = registry_.Find(req.worker_id());
  if (w == nullptr || w->data_address != req.data_address()) {
    return absl::NotFoundError(absl::StrCat("unknown worker ", req.worker_id(), " at ", req.data_address()));
  }
  LoseWorker(req.worker_id(), absl::StrCat("left the cluster (", req.reason().empty() ? "no reason given" : req.reason(), ")"),
             /*planned=*/true);
  return absl::OkStatus();
}

absl::Status Coordinator::Ready() const {
  absl::MutexLock lock(&mu_);
  if (stopping_) return absl::UnavailableError("shutting down");
  if (!ready_) return absl::UnavailableError("loading the HA store");
  return absl::OkStatus();
}

void Coordinator::ReportTaskState(const proto::TaskStatus& st) {
  absl::MutexLock lock(&mu_);
  auto jit = jobs_.find(st.task().job_id());
  if (jit == jobs_.end()) return;
  HandleTaskState(jit->second, st);
}

void Coordinator::HandleTaskState(Job& job, const proto::TaskStatus& st) {
  const auto& ref = st.task();
  if (ref.attempt() != job.attempt || ref.vertex() < 0 ||
      ref.vertex() >= static_cast<int>(job.tasks.size()) || ref.subtask() < 0 ||
      ref.subtask() >= static_cast<int>(job.tasks[ref.vertex()].size())) {
    return;
  }
  TaskEntry& t = job.tasks[ref.vertex()][ref.subtask()];
  for (int i = 0; i < st.operators_size() && i < static_cast<int>(t.records_in.size()); ++i) {
    t.records_in[i] = std::max(t.records_in[i], st.operators(i).records_in());
    t.records_out[i] = std::max(t.records_out[i], st.operators(i).records_out());
    if (i < static_cast<int>(t.records_skipped.size())) {
      t.records_skipped[i] = std::max(t.records_skipped[i], st.operators(i).records_skipped());
    }
    if (i < static_cast<int>(t.late_records_dropped.size())) {
      t.late_records_dropped[i] =
          std::max(t.late_records_dropped[i], st.operators(i).late_records_dropped());
    }
    if (i < static_cast<int>(t.op_state.size()) && st.operators(i).has_state()) {
      proto::OperatorCounters& s = t.op_state[i];
      s.set_has_state(true);
      s.set_state_cache_hits(std::max(s.state_cache_hits(), st.operators(i).state_cache_hits()));
      s.set_state_cache_misses(std::max(s.state_cache_misses(), st.operators(i).state_cache_misses()));
      s.set_state_size_bytes(st.operators(i).state_size_bytes());
    }
  }
  if (TaskTerminal(t.state)) return;  // final states stick
  t.end_of_input = st.end_of_input();
  t.has_watermark = st.has_watermark_ms();
  t.watermark_ms = st.watermark_ms();
  t.watermark_idle = st.watermark_idle();
  if (st.state() == proto::TASK_DEPLOYING) return;
  if (job.state == proto::JOB_RESTARTING) {
    t.state = st.state() == proto::TASK_RUNNING ? t.state : st.state();
    return;  // the old attempt winding down
  }
  t.state = st.state();
  t.error = st.error();
  if (st.state() == proto::TASK_FAILED && job.state == proto::JOB_CANCELLING) {
    // While cancelling, tasks stopped first break the channels of those stopped later: that is
    // part of the cancellation, not a failure of the job.
    t.state = proto::TASK_CANCELLED;
  } else if (st.state() == proto::TASK_FAILED) {
    std::string error = st.error().empty() ? "a task failed" : st.error();
    // Name the worker a broken channel led to (it may turn out to be lost).
    for (const auto& [id, w] : registry_.workers()) {
      if (error.find(" to worker " + w.data_address) != std::string::npos) {
        error = absl::StrCat(error, " (", id, ")");
      }
    }
    FailJob(job, error, /*planned=*/false, /*permanent=*/false, static_cast<absl::StatusCode>(st.error_code()));
  } else if (st.state() == proto::TASK_CANCELLED && !IsTerminal(job.state) &&
             job.state != proto::JOB_CANCELLING) {
    FailJob(job, absl::StrCat("task ", job.graph->vertices[ref.vertex()].name, "#", ref.subtask(),
                              " was cancelled unexpectedly", st.error().empty() ? "" : ": ",
                              st.error()));
  }
  MaybeCompleteJob(job);
}

void Coordinator::MaybeCompleteJob(Job& job) {
  bool all_finished = true, all_terminal = true;
  for (const auto& v : job.tasks) {
    for (const auto& t : v) {
      all_finished &= t.state == proto::TASK_FINISHED;
      all_terminal &= TaskTerminal(t.state);
    }
  }
  if (job.state == proto::JOB_RUNNING && all_finished) {
    job.state = proto::JOB_FINISHED;
    job.end_ms = options_.clock->WallMillis();
    spdlog::info("job {} ({}) finished", job.id, job.spec->name);
    ReleaseSlots(job);
    PersistLocked(job);  // before anyone can see it: a restarted coordinator must not resume it
  } else if (job.state == proto::JOB_CANCELLING && all_terminal) {
    job.state = proto::JOB_CANCELLED;
    job.end_ms = options_.clock->WallMillis();
    spdlog::info("job {} ({}) cancelled", job.id, job.spec->name);
    ReleaseSlots(job);
    PersistLocked(job);
  } else if (job.state == proto::JOB_FAILED && all_terminal) {
    ReleaseSlots(job);
  }
  if (IsTerminal(job.state)) AnswerWaitersLocked(job, options_.clock->NowNanos());
}

void Coordinator::ReleaseSlots(Job& job) {
  registry_.Release(job.slots_held);
  job.slots_held.clear();
  ReplyLocked(std::move(job.stop_replies));
  job.stop_replies.clear();
}

void Coordinator::FailJob(Job& job, const std::string& reason, bool planned, bool permanent, absl::StatusCode code) {
  if (IsTerminal(job.state) || job.state == proto::JOB_RESTARTING) return;
  const plan::RestartConfig& rc = job.spec->restart;
  if (!permanent && CheckpointingLocked(job) && job.state != proto::JOB_CANCELLING && !stopping_ &&
      rc.strategy != plan::RestartConfig::Strategy::kNone && (planned || job.restarts < rc.attempts)) {
    if (planned) job.resuming = true;  // uses no attempt
    int64_t delay = rc.DelayFor(job.restarts + 1);
    const std::string& latest = job.checkpoints->latest_metadata();
    spdlog::warn("job {} ({}) failed: {}; restarting from {} in {} ms (restart {} of {})", job.id,
                 job.spec->name, reason, latest.empty() ? std::string("the beginning") : latest,
                 delay, job.restarts + 1, rc.attempts);
    job.state = proto::JOB_RESTARTING;
    job.error = reason;
    job.error_code = code;
    job.restarting_since_nanos = options_.clock->NowNanos();
    job.restart_at_nanos = job.restarting_since_nanos + delay * 1'000'000;
    CheckpointActions actions;
    job.checkpoints->Abort("job is restarting", false, &actions);
    ApplyLocked(job, std::move(actions));
    CancelTasksOnWorkers(job);
    PersistLocked(job);
    return;
  }
  spdlog::error("job {} ({}) failed: {}", job.id, job.spec->name, reason);
  job.state = proto::JOB_FAILED;
  job.error = reason;
  job.error_code = code;
  job.end_ms = options_.clock->WallMillis();
  CheckpointActions actions;
  job.checkpoints->Abort("job failed", false, &actions);
  ApplyLocked(job, std::move(actions));
  CancelTasksOnWorkers(job);
  MaybeCompleteJob(job);
  PersistLocked(job);
}

void Coordinator::CancelTasksOnWorkers(Job& job) {
  std::map<std::string, std::pair<std::shared_ptr<proto::Worker::Stub>, std::shared_ptr<grpc::Channel>>> stubs;
  for (const auto& v : job.tasks) {
    for (const auto& t : v) {
      const WorkerEntry* w = registry_.Find(t.worker_id);
      if (w != nullptr && !TaskTerminal(t.state)) stubs[t.worker_id] = {w->stub, w->channel};
    }
  }
  dispatch_queue_.push_back([this, stubs, job_id = job.id] {
    for (const auto& [worker_id, conn] : stubs) {
      const auto& [stub, channel] = conn;
      grpc::ClientContext ctx;
      ctx.set_deadline(Deadline(5));
      proto::JobRef ref;
      ref.set_job_id(job_id);
      proto::Ack ack;
      grpc::Status s = stub->CancelTasks(&ctx, ref, &ack);
      if (!s.ok()) {
        spdlog::warn("cancel of job {} on {} failed: {}", job_id, worker_id, s.error_message());
        if (PeerGone(s, channel.get())) {
          // The worker process is gone: declare it lost now rather than after the heartbeat
          // timeout, so a restart need not wait for it.
          absl::MutexLock lock(&mu_);
          LoseWorker(worker_id, "unreachable (connection refused)");
        }
      }
    }
  });
}

absl::Status Coordinator::ScheduleLocked(Job& job) {
  SLUICE_ASSIGN_OR_RETURN(Placement placement, PlaceJob(job.spec->name, *job.graph, registry_.FreeSlots(),
                                                        static_cast<int>(registry_.size())));
  job.tasks.assign(job.graph->vertices.size(), {});
  for (const auto& v : job.graph->vertices) {
    for (int s = 0; s < v.parallelism; ++s) {
      TaskEntry t;
      t.worker_id = placement.tasks[v.id][s].worker_id;
      t.data_address = placement.tasks[v.id][s].data_address;
      t.records_in.assign(v.ops.size(), 0);
      t.records_out.assign(v.ops.size(), 0);
      t.records_skipped.assign(v.ops.size(), 0);
      t.late_records_dropped.assign(v.ops.size(), 0);
      t.op_state.assign(v.ops.size(), proto::OperatorCounters());
      job.tasks[v.id].push_back(std::move(t));
    }
  }
  registry_.Acquire(placement.slots_per_worker);
  job.slots_held = std::move(placement.slots_per_worker);
  job.placement_workers = static_cast<int>(job.slots_held.size());
  return absl::OkStatus();
}

absl::StatusOr<proto::SubmitJobResponse> Coordinator::SubmitJob(const proto::SubmitJobRequest& req) {
  std::string name = req.spec_name().empty() ? "job.yaml" : req.spec_name();
  SLUICE_ASSIGN_OR_RETURN(plan::JobSpec parsed, PlanJob(req.spec_yaml(), name, req.parallelism()));
  auto spec = std::make_shared<const plan::JobSpec>(std::move(parsed));
  auto graph = std::make_shared<const plan::JobGraph>(plan::BuildJobGraph(*spec));

  Job job;
  job.plan = std::make_shared<const proto::JobPlan>(plan::EncodeJobPlan(*spec, *graph));
  checkpoint::RestorePoint restore;
  int64_t next_checkpoint_id = 1;
  if (!req.from_savepoint().empty()) {
    SLUICE_ASSIGN_OR_RETURN(restore, storage_.ResolveRestorePath(req.from_savepoint()));
    SLUICE_ASSIGN_OR_RETURN(proto::CheckpointMetadata md, storage_.ReadMetadata(restore.metadata_path));
    if (md.max_parallelism() != spec->max_parallelism) {
      return absl::FailedPreconditionError(absl::StrCat(
          "savepoint ", req.from_savepoint(), " was taken with max_parallelism ", md.max_parallelism(),
          " but the job has ", spec->max_parallelism, "; key groups cannot be remapped"));
    }
    std::set<std::string> ops;
    for (const auto& op : spec->operators) ops.insert(op.id);
    for (const auto& st : md.subtasks()) {
      std::vector<std::string> ids;
      for (const auto& k : st.keyed()) ids.push_back(k.operator_id());
      for (const auto& o : st.operator_state()) ids.push_back(o.operator_id());
      for (const auto& id : ids) {
        if (!ops.count(id) && !req.allow_non_restored_state()) {
          return absl::FailedPreconditionError(absl::StrCat(
              "savepoint ", req.from_savepoint(), " has state for operator '", id,
              "', which this job does not have; rename the operator back or pass "
              "--allow-non-restored-state to drop that state"));
        }
      }
    }
    next_checkpoint_id = md.checkpoint_id() + 1;
    job.restored_from = restore.metadata_path;
    job.restored_checkpoint_id = md.checkpoint_id();
  }

  absl::MutexLock lock(&mu_);
  if (stopping_) return absl::UnavailableError("coordinator is shutting down");
  absl::BitGen gen;
  do {
    job.id = absl::StrFormat("job-%08x", absl::Uniform<uint32_t>(gen));
  } while (jobs_.count(job.id));
  job.request = req;
  job.request.set_spec_name(name);
  job.spec = spec;
  job.graph = graph;
  job.submit_ms = options_.clock->WallMillis();
  job.checkpoints = std::make_unique<CheckpointCoordinator>(job.id, JoinPath(options_.checkpoint_dir, job.id),
                                                            spec, graph, options_.clock);
  job.checkpoints->SetRestorePoint(restore.metadata_path, restore.dir, next_checkpoint_id);
  SLUICE_RETURN_IF_ERROR(ScheduleLocked(job));
  job.ResetRates(options_.clock->NowNanos());
  std::string id = job.id;
  spdlog::info("job {} ({}) submitted: {} vertices, {} slot(s){}", id, spec->name,
               graph->vertices.size(), graph->SlotsNeeded(),
               job.restored_from.empty() ? "" : absl::StrCat(", restoring ", job.restored_from));
  PersistLocked(job);
  jobs_[id] = std::move(job);
  job_order_.push_back(id);
  dispatch_queue_.push_back([this, id] { DeployJob(id); });
  proto::SubmitJobResponse resp;
  resp.set_job_id(id);
  for (const std::string& w : spec->warnings) resp.add_warnings(w);
  const auto& cp = spec->checkpoint;
  if (cp.enabled() && cp.timeout_ms < cp.interval_ms) {
    resp.add_warnings(absl::StrCat("checkpoint timeout ", cp.timeout_ms, " ms is shorter than the interval ",
                                   cp.interval_ms, " ms"));
  }
  return resp;
}

void Coordinator::DeployJob(const std::string& job_id) {
  // Build per-worker requests under the lock; make the calls without it.
  std::map<std::string, proto::DeployTasksRequest> requests;
  std::map<std::string, std::shared_ptr<proto::Worker::Stub>> stubs;
  std::map<std::string, std::shared_ptr<grpc::Channel>> channels;
  {
    absl::MutexLock lock(&mu_);
    auto it = jobs_.find(job_id);
    if (it == jobs_.end() || it->second.state != proto::JOB_CREATED) return;
    Job& job = it->second;
    std::vector<proto::VertexPlacement> placement;
    for (const auto& v : job.graph->vertices) {
      proto::VertexPlacement p;
      p.set_vertex(v.id);
      for (const auto& t : job.tasks[v.id]) p.add_data_addresses(t.data_address);
      placement.push_back(std::move(p));
    }
    for (const auto& v : job.graph->vertices) {
      for (int s = 0; s < v.parallelism; ++s) {
        const TaskEntry& t = job.tasks[v.id][s];
        const WorkerEntry* w = registry_.Find(t.worker_id);
        if (w == nullptr) {
          FailJob(job, absl::StrCat("worker ", t.worker_id, " was lost before deployment"));
          return;
        }
        stubs[t.worker_id] = w->stub;
        channels[t.worker_id] = w->channel;
        proto::DeployTasksRequest& r = requests[t.worker_id];
        if (r.job_id().empty()) {
          r.set_job_id(job.id);
          r.set_attempt(job.attempt);
          *r.mutable_plan() = *job.plan;
          for (const auto& p : placement) *r.add_placement() = p;
          if (CheckpointingLocked(job)) r.set_checkpoint_dir(job.checkpoints->dir());
          r.set_restore_metadata(job.checkpoints->latest_metadata());
          r.set_restore_dir(job.checkpoints->latest_dir());
        }
        auto* ref = r.add_tasks();
        ref->set_job_id(job.id);
        ref->set_attempt(job.attempt);
        ref->set_vertex(v.id);
        ref->set_subtask(s);
      }
    }
  }
  auto fail = [&](const std::string& reason, bool permanent = false) {
    absl::MutexLock lock(&mu_);
    auto it = jobs_.find(job_id);
    if (it != jobs_.end()) FailJob(it->second, reason, /*planned=*/false, permanent);
  };
  for (auto& [worker_id, req] : requests) {
    grpc::ClientContext ctx;
    ctx.set_deadline(Deadline(10));
    proto::Ack ack;
    grpc::Status s = stubs[worker_id]->DeployTasks(&ctx, req, &ack);
    if (!s.ok()) {
      spdlog::warn("deploying job {} to worker {} failed: {}", job_id, worker_id, s.error_message());
      if (PeerGone(s, channels[worker_id].get())) {
        // Nobody listens there any more: do not wait for the heartbeat timeout to say so.
        absl::MutexLock lock(&mu_);
        LoseWorker(worker_id, "unreachable (connection refused)");
      }
      // kFailedPrecondition: the worker can never run this deployment (a plugin of the job it
      // cannot load); restarting would fail the same way.
      return fail(absl::StrCat("deploying to worker ", worker_id, " failed: ", s.error_message()),
                  s.error_code() == grpc::StatusCode::FAILED_PRECONDITION);
    }
  }
  {
    absl::MutexLock lock(&mu_);
    auto it = jobs_.find(job_id);
    if (it == jobs_.end() || it->second.state != proto::JOB_CREATED) return;  // cancelled meanwhile
    it->second.state = proto::JOB_RUNNING;
    for (auto& v : it->second.tasks) {
      for (auto& t : v) {
        if (t.state == proto::TASK_DEPLOYING) t.state = proto::TASK_RUNNING;
      }
    }
  }
  for (auto& [worker_id, req] : requests) {
    grpc::ClientContext ctx;
    ctx.set_deadline(Deadline(10));
    proto::JobRef ref;
    ref.set_job_id(job_id);
    proto::Ack ack;
    grpc::Status s = stubs[worker_id]->StartTasks(&ctx, ref, &ack);
    if (!s.ok()) {
      return fail(absl::StrCat("starting tasks on worker ", worker_id, " failed: ", s.error_message()));
    }
  }
  spdlog::info("job {} running on {} worker(s)", job_id, requests.size());
}

proto::ListJobsResponse Coordinator::ListJobs() {
  proto::ListJobsResponse resp;
  absl::MutexLock lock(&mu_);
  for (const auto& id : job_order_) *resp.add_jobs() = JobInfoLocked(jobs_.at(id));
  return resp;
}

absl::StatusOr<proto::JobInfo> Coordinator::GetJob(const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  auto it = jobs_.find(job_id);
  if (it == jobs_.end()) return absl::NotFoundError(absl::StrCat("unknown job '", job_id, "'"));
  return CallerJobInfoLocked(it->second);
}

proto::JobInfo Coordinator::CallerJobInfoLocked(const Job& job) const {
  proto::JobInfo info = JobInfoLocked(job);
  info.set_spec_yaml(job.request.spec_yaml());
  info.set_spec_name(job.request.spec_name());
  info.set_parallelism_override(job.request.parallelism());
  return info;
}

void Coordinator::WaitJob(const std::string& job_id, int64_t timeout_ms, WaitJobCallback done) {
  absl::MutexLock lock(&mu_);
  auto it = jobs_.find(job_id);
  if (it == jobs_.end()) {
    done(absl::NotFoundError(absl::StrCat("unknown job '", job_id, "'")));
    return;
  }
  Job& job = it->second;
  if (IsTerminal(job.state) || timeout_ms <= 0 || stopping_) {
    done(CallerJobInfoLocked(job));
    return;
  }
  const int64_t deadline = options_.clock->NowNanos() + std::min(timeout_ms, kMaxWaitJobMs) * 1'000'000;
  job.end_waiters.emplace_back(std::move(done), deadline);
}

void Coordinator::AnswerWaitersLocked(Job& job, int64_t now_nanos, bool all) {
  if (job.end_waiters.empty()) return;
  all |= IsTerminal(job.state);
  std::vector<WaitJobCallback> due;
  auto keep = job.end_waiters.begin();
  for (auto& w : job.end_waiters) {
    if (all || now_nanos >= w.second) {
      due.push_back(std::move(w.first));
    } else {
      *keep++ = std::move(w);
    }
  }
  job.end_waiters.erase(keep, job.end_waiters.end());
  if (due.empty()) return;
  const proto::JobInfo info = CallerJobInfoLocked(job);
  for (auto& done : due) done(info);
}

proto::JobInfo Coordinator::JobInfoLocked(const Job& job) const {
  proto::JobInfo info;
  info.set_job_id(job.id);
  info.set_name(job.spec->name);
  info.set_state(job.state);
  info.set_error(job.error);
  info.set_error_code(static_cast<int>(job.error_code));
  info.set_submit_time_ms(job.submit_ms);
  info.set_end_time_ms(job.end_ms);
  info.set_attempt(job.attempt);
  info.set_restarts(job.restarts);
  info.set_restored_from(job.restored_from);
  info.set_restored_checkpoint_id(job.restored_checkpoint_id);
  info.set_stopped_with_savepoint(job.stopped_with_savepoint);
  if (job.state == proto::JOB_RESTARTING && job.waiting_for_slots > 0) {
    info.set_waiting_for_slots(job.waiting_for_slots);
    info.set_waiting_since_ms(job.waiting_since_ms);
  }
  job.checkpoints->AddTo(&info);
  for (const auto& v : job.graph->vertices) {
    auto* vi = info.add_vertices();
    vi->set_vertex(v.id);
    vi->set_name(v.name);
    vi->set_parallelism(v.parallelism);
    for (size_t k = 0; k < v.ops.size(); ++k) {
      const auto& spec = job.spec->operators[v.ops[k]];
      auto* oi = vi->add_operators();
      oi->set_id(spec.id);
      oi->set_type(spec.type);
      oi->set_parallelism(v.parallelism);
      uint64_t in = 0, out = 0, skipped = 0, late = 0;
      for (const auto& t : job.tasks[v.id]) {
        in += t.records_in[k];
        out += t.records_out[k];
        if (k < t.records_skipped.size()) skipped += t.records_skipped[k];
        if (k < t.late_records_dropped.size()) late += t.late_records_dropped[k];
      }
      oi->set_late_records_dropped(late);
      for (size_t s = 0; s < job.tasks[v.id].size(); ++s) {
        const TaskEntry& t = job.tasks[v.id][s];
        if (k >= t.op_state.size() || !t.op_state[k].has_state()) continue;
        const proto::OperatorCounters& st = t.op_state[k];
        oi->set_has_state(true);
        oi->set_state_cache_hits(oi->state_cache_hits() + st.state_cache_hits());
        oi->set_state_cache_misses(oi->state_cache_misses() + st.state_cache_misses());
        oi->set_state_size_bytes(oi->state_size_bytes() + st.state_size_bytes());
        proto::SubtaskStateStats* ss = oi->add_subtask_states();
        ss->set_subtask(static_cast<int>(s));
        ss->set_state_cache_hits(st.state_cache_hits());
        ss->set_state_cache_misses(st.state_cache_misses());
        ss->set_state_size_bytes(st.state_size_bytes());
      }
      oi->set_records_in(in);
      oi->set_records_out(out);
      oi->set_records_skipped(skipped);
      oi->set_records_in_per_s(job.in_rate[v.ops[k]]);
      oi->set_records_out_per_s(job.out_rate[v.ops[k]]);
    }
    // Event time: the vertex's watermark is the minimum over its non-idle subtasks (a non-idle
    // subtask without one leaves it unset), or over all subtasks when every one is idle. All
    // operators of a chain share their task's input watermark.
    bool any_active = false, active_missing = false, any_idle_with = false;
    int64_t active_min = kMaxWatermark, idle_min = kMaxWatermark;
    int idle = 0;
    for (const auto& t : job.tasks[v.id]) {
      if (t.watermark_idle) {
        ++idle;
        if (t.has_watermark) {
          any_idle_with = true;
          idle_min = std::min(idle_min, t.watermark_ms);
        }
      } else {
        any_active = true;
        if (t.has_watermark) {
          active_min = std::min(active_min, t.watermark_ms);
        } else {
          active_missing = true;
        }
      }
    }
    const bool has_watermark = any_active ? !active_missing : any_idle_with;
    for (auto& oi : *vi->mutable_operators()) {
      if (has_watermark) oi.set_input_watermark_ms(any_active ? active_min : idle_min);
      oi.set_idle_subtasks(idle);
    }
    for (int s = 0; s < v.parallelism && s < static_cast<int>(job.tasks[v.id].size()); ++s) {
      const TaskEntry& t = job.tasks[v.id][s];
      auto* si = vi->add_subtasks();
      si->set_subtask(s);
      si->set_worker_id(t.worker_id);
      si->set_worker_address(t.data_address);
      si->set_state(t.state);
    }
  }
  return info;
}

absl::Status Coordinator::CancelJob(const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  auto it = jobs_.find(job_id);
  if (it == jobs_.end()) return absl::NotFoundError(absl::StrCat("unknown job '", job_id, "'"));
  Job& job = it->second;
  if (IsTerminal(job.state)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "job ", job_id, " already ended (", StateName(job.state), ")"));
  }
  if (job.state == proto::JOB_CANCELLING) return absl::OkStatus();
  spdlog::info("cancelling job {} ({})", job.id, job.spec->name);
  bool deployed = job.state == proto::JOB_RUNNING;
  job.state = proto::JOB_CANCELLING;
  if (!deployed) {
    // Not started yet (or deploying): workers may hold deployed tasks; cancel them anyway and
    // consider the tasks cancelled.
    for (auto& v : job.tasks) {
      for (auto& t : v) {
        if (!TaskTerminal(t.state)) t.state = proto::TASK_CANCELLED;
      }
    }
  }
  CancelTasksOnWorkers(job);
  // Persisted before the caller hears of it: a coordinator restarted now must not resume it.
  PersistLocked(job);
  MaybeCompleteJob(job);
  return absl::OkStatus();
}

proto::ListWorkersResponse Coordinator::ListWorkers() {
  proto::ListWorkersResponse resp;
  absl::MutexLock lock(&mu_);
  int64_t now = options_.clock->NowNanos();
  for (const auto& [id, w] : registry_.workers()) {
    auto* wi = resp.add_workers();
    wi->set_worker_id(w.id);
    wi->set_data_address(w.data_address);
    wi->set_http_address(w.http_address);
    wi->set_slots(w.slots);
    wi->set_slots_used(w.slots_used);
    wi->set_heartbeat_age_ms((now - w.last_heartbeat_nanos) / 1'000'000);
  }
  return resp;
}

void Coordinator::LoseWorker(const std::string& worker_id, const std::string& why, bool planned) {
  std::optional<WorkerEntry> w = registry_.Remove(worker_id);
  if (w) WorkerLostLocked(*w, why, planned);
}

void Coordinator::WorkerLostLocked(const WorkerEntry& w, const std::string& why, bool planned) {
  const std::string& worker_id = w.id;
  const std::string& data_address = w.data_address;
  std::string desc = absl::StrFormat("worker %s (%s) lost: %s", worker_id, data_address, why);
  spdlog::error("{}", desc);
  metrics_.RemoveOwner(worker_id);
  for (auto& [id, job] : jobs_) {
    if (IsTerminal(job.state) && job.slots_held.empty()) continue;
    bool affected = false;
    for (auto& v : job.tasks) {
      for (auto& t : v) {
        if (t.worker_id == worker_id && !TaskTerminal(t.state)) {
          affected = true;
          t.state = job.state == proto::JOB_CANCELLING ? proto::TASK_CANCELLED : proto::TASK_FAILED;
          t.error = desc;
        }
      }
    }
    job.slots_held.erase(worker_id);
    if (affected) FailJob(job, desc, planned);
    // A job that already failed because its channels to this worker broke: the lost worker
    // is the root cause; say so first.
    if (job.state == proto::JOB_FAILED &&
        job.error.find(" to worker " + data_address) != std::string::npos &&
        job.error.find(desc) == std::string::npos) {
      job.error = absl::StrCat(desc, "; first symptom: ", job.error);
      job.error_code = absl::StatusCode::kOk;  // the code was the symptom's
    }
    MaybeCompleteJob(job);
  }
}

void Coordinator::MonitorLoop() {
  int64_t last_rates = options_.clock->NowNanos();
  while (true) {
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(&stopping_), absl::Milliseconds(100));
    if (stopping_) return;
    int64_t now = options_.clock->NowNanos();
    std::vector<LostWorker> lost = registry_.TakeLost([](const WorkerEntry& w) {
      return w.channel->GetState(/*try_to_connect=*/true) == GRPC_CHANNEL_TRANSIENT_FAILURE;
    });
    for (const LostWorker& l : lost) WorkerLostLocked(l.worker, l.why, /*planned=*/false);
    for (auto& [id, job] : jobs_) {
      RestartTick(job, now);
      AnswerWaitersLocked(job, now);  // past their deadline (or the job ended on a path without an answer)
      if (!job.stop_replies.empty() && now >= job.stop_replies_deadline_nanos) {
        spdlog::warn("job {} ({}): tasks still stopping {} s after its stop with a savepoint; answering the caller",
                     job.id, job.spec->name, kStopReplyWaitNanos / 1'000'000'000);
        ReplyLocked(std::move(job.stop_replies));
        job.stop_replies.clear();
      }
      if (job.state != proto::JOB_RUNNING) continue;
      bool all_input_ended = true;
      for (const auto& v : job.tasks) {
        for (const auto& t : v) all_input_ended &= t.end_of_input || t.state == proto::TASK_FINISHED;
      }
      CheckpointActions actions;
      job.checkpoints->Tick(all_input_ended, &actions);
      ApplyLocked(job, std::move(actions));
    }
    if (now - last_rates >= 1'000'000'000) {
      last_rates = now;
      ExpireEndedJobsLocked(options_.clock->WallMillis());
      for (auto& [id, job] : jobs_) {
        if (job.state != proto::JOB_RUNNING) {
          std::fill(job.in_rate.begin(), job.in_rate.end(), 0);
          std::fill(job.out_rate.begin(), job.out_rate.end(), 0);
          continue;
        }
        double dt = (now - job.prev_nanos) / 1e9;
        for (const auto& v : job.graph->vertices) {
          for (size_t k = 0; k < v.ops.size(); ++k) {
            uint64_t in = 0, out = 0;
            for (const auto& t : job.tasks[v.id]) {
              in += t.records_in[k];
              out += t.records_out[k];
            }
            int op = v.ops[k];
            job.in_rate[op] = dt > 0 ? (in - job.prev_in[op]) / dt : 0;
            job.out_rate[op] = dt > 0 ? (out - job.prev_out[op]) / dt : 0;
            job.prev_in[op] = in;
            job.prev_out[op] = out;
          }
        }
        job.prev_nanos = now;
      }
    }
  }
}

// ---- Checkpoints -------------------------------------------------------------------------

void Coordinator::SendToWorkers(Job& job, bool complete, const CheckpointActions::ToTasks& what) {
  std::map<std::string, std::shared_ptr<proto::Worker::Stub>> stubs;
  for (const auto& v : job.tasks) {
    for (const auto& t : v) {
      const WorkerEntry* w = registry_.Find(t.worker_id);
      if (w != nullptr) stubs[t.worker_id] = w->stub;
    }
  }
  proto::CheckpointTrigger req;
  req.set_job_id(job.id);
  req.set_attempt(job.attempt);
  req.set_checkpoint_id(what.id);
  req.set_final(what.final);
  req.set_aligned(what.aligned);
  dispatch_queue_.push_back([stubs, req, complete] {
    for (const auto& [worker_id, stub] : stubs) {
      grpc::ClientContext ctx;
      ctx.set_deadline(Deadline(5));
      proto::Ack ack;
      grpc::Status s = complete ? stub->NotifyCheckpointComplete(&ctx, req, &ack)
                                : stub->TriggerCheckpoint(&ctx, req, &ack);
      if (!s.ok()) {
        spdlog::warn("{} checkpoint {} of {} on {}: {}", complete ? "notifying" : "triggering",
                     req.checkpoint_id(), req.job_id(), worker_id, s.error_message());
      }
    }
  });
}

void Coordinator::ReplyLocked(SavepointReplies replies) {
  for (auto& [done, result] : replies) {
    dispatch_queue_.push_back([done = std::move(done), result = std::move(result)] { done(result); });
  }
}

void Coordinator::ApplyLocked(Job& job, CheckpointActions actions) {
  ReplyLocked(std::move(actions.replies));
  for (int64_t id : actions.discard) {
    io_queue_.push_back([this, dir = job.checkpoints->dir(), id] {
      absl::Status s = storage_.Discard(dir, id);
      if (!s.ok()) spdlog::warn("discarding checkpoint {} of {}: {}", id, dir, s);
    });
  }
  if (actions.fail_job) FailJob(job, *actions.fail_job);
  if (actions.trigger) SendToWorkers(job, false, *actions.trigger);
  if (actions.write) {
    // The metadata (and a savepoint's copy) is written on the I/O thread.
    io_queue_.push_back([this, job_id = job.id, attempt = job.attempt, w = std::move(actions.write)] {
      CheckpointWriteResult result = CheckpointCoordinator::Write(storage_, *w);
      absl::MutexLock lock(&mu_);
      FinishCheckpointLocked(job_id, attempt, w, result);
    });
  }
  if (actions.notify_complete) SendToWorkers(job, true, *actions.notify_complete);
}

void Coordinator::AcknowledgeCheckpoint(const proto::CheckpointAck& ack) {
  absl::MutexLock lock(&mu_);
  auto it = jobs_.find(ack.task().job_id());
  if (it == jobs_.end()) return;
  Job& job = it->second;
  if (ack.task().attempt() != job.attempt) return;  // late ack of an old attempt
  size_t total = 0;
  for (const auto& v : job.tasks) total += v.size();
  CheckpointActions actions;
  job.checkpoints->Acknowledge(ack, total, &actions);
  ApplyLocked(job, std::move(actions));
}

void Coordinator::FinishCheckpointLocked(const std::string& job_id, int64_t attempt,
                                         std::shared_ptr<const CheckpointWrite> w,
                                         const CheckpointWriteResult& result) {
  auto it = jobs_.find(job_id);
  if (it == jobs_.end()) {  // expired meanwhile (it had ended): nothing to record
    if (w->pending->done) {
      auto done = std::move(w->pending->done);
      dispatch_queue_.push_back([done] { done(absl::AbortedError("savepoint aborted: the job's record expired")); });
    }
    return;
  }
  Job& job = it->second;
  const bool same_attempt = attempt == job.attempt;
  CheckpointActions actions;
  std::optional<CheckpointCommit> commit =
      job.checkpoints->OnWritten(*w, result, same_attempt, same_attempt && !IsTerminal(job.state),
                                 job.state == proto::JOB_RUNNING, &actions);
  ApplyLocked(job, std::move(actions));
  if (!commit) return;
  if (commit->stop) {
    // Recorded with the checkpoint in one write: a coordinator restarted from here on never
    // resumes a job whose user was told it stopped (and may restore the savepoint elsewhere).
    job.state = proto::JOB_CANCELLING;
    job.stopped_with_savepoint = commit->path;
  }
  // Only once the record naming this checkpoint is durable are the tasks told to commit (then,
  // for `stop`, cancelled), and older checkpoints and unreferenced shared files deleted: a
  // restarted coordinator recovers from this checkpoint if anything was committed after it, and
  // never from a deleted one. Without a durable record (a failed write, or a coordinator that is
  // stopping and writes none) nothing is committed now; the next checkpoint commits it.
  std::optional<proto::JobRecord> record;
  if (ha_ != nullptr) record = stopping_ ? std::nullopt : std::optional<proto::JobRecord>(RecordLocked(job));
  io_queue_.push_back([this, job_id, attempt, c = std::move(*commit), record = std::move(record),
                       dir = job.checkpoints->dir()] {
    absl::Status written = absl::OkStatus();
    if (ha_ != nullptr) {
      written = record ? ha_->Write(*record) : absl::UnavailableError("the coordinator is stopping");
      if (!written.ok()) {
        spdlog::error("cannot persist job {}: {}; checkpoint {} is not committed", job_id, written, c.pending->id);
      }
    }
    {
      absl::MutexLock lock(&mu_);
      auto it = jobs_.find(job_id);
      const bool current = it != jobs_.end() && it->second.attempt == attempt;
      CheckpointActions actions;
      CheckpointCoordinator::OnRecordWritten(c, written, current, &actions);
      SavepointReplies replies = std::move(actions.replies);
      actions.replies.clear();
      if (current) {
        Job& job = it->second;
        ApplyLocked(job, std::move(actions));  // tasks are told to commit, then cancelled
        if (c.stop && written.ok()) {
          CancelTasksOnWorkers(job);
          // Answered once the tasks have stopped and the slots are free (ReleaseSlots).
          for (auto& reply : replies) job.stop_replies.push_back(std::move(reply));
          replies.clear();
          job.stop_replies_deadline_nanos = options_.clock->NowNanos() + kStopReplyWaitNanos;
          MaybeCompleteJob(job);
        } else if (c.stop && job.state == proto::JOB_CANCELLING) {
          job.state = proto::JOB_RUNNING;  // not stopped: its record could not say so
          job.stopped_with_savepoint.clear();
        }
      }
      ReplyLocked(std::move(replies));
    }
    if (written.ok()) CheckpointCoordinator::CleanUp(storage_, dir, c);
  });
}

absl::Status Coordinator::TriggerSavepoint(const proto::SavepointRequest& req,
                                           std::function<void(absl::StatusOr<std::string>)> done) {
  absl::MutexLock lock(&mu_);
  auto it = jobs_.find(req.job_id());
  if (it == jobs_.end()) return absl::NotFoundError(absl::StrCat("unknown job '", req.job_id(), "'"));
  Job& job = it->second;
  if (job.state != proto::JOB_RUNNING) {
    return absl::FailedPreconditionError(absl::StrCat("job ", job.id, " is ", StateName(job.state),
                                                      ", not RUNNING"));
  }
  if (!CheckpointingLocked(job)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "job ", job.id, " does not take checkpoints; add `checkpoint: {interval: ...}` to its spec"));
  }
  CheckpointActions actions;
  job.checkpoints->TriggerSavepoint(req.dir().empty() ? options_.savepoint_dir : req.dir(), req.stop(),
                                    std::move(done), &actions);
  ApplyLocked(job, std::move(actions));
  return absl::OkStatus();
}

void Coordinator::RestartTick(Job& job, int64_t now) {
  if (job.state != proto::JOB_RESTARTING || now < job.restart_at_nanos) return;
  // Wait for the old attempt's tasks to stop (tasks never deployed and tasks on lost workers
  // will not report; after a grace period, proceed anyway: workers retire old attempts).
  bool grace_over = now - job.restart_at_nanos > 5'000'000'000LL;
  for (auto& v : job.tasks) {
    for (auto& t : v) {
      if (!TaskTerminal(t.state) && t.state != proto::TASK_DEPLOYING && registry_.Contains(t.worker_id) &&
          !grace_over) {
        return;  // still stopping
      }
    }
  }
  ReleaseSlots(job);
  // Waiting for slots is not a failed attempt (Flink counts failures, not waits for
  // resources): a job whose workers are re-registering or being replaced waits for them, up to
  // restart.slot_wait_timeout.
  const int needed = job.graph->SlotsNeeded();
  const Capacity free = CapacityOf(registry_.FreeSlots());
  const int free_slots = free.free_slots, free_workers = free.free_workers;
  const bool enough = free_slots >= needed;
  // With enough slots but fewer workers than the last placement used, give a replacement that
  // is registering a moment, so that the restarted job is spread as before.
  const bool spread_pending = enough && free_workers < std::min(job.placement_workers, needed) &&
                              now - job.restarting_since_nanos < options_.spread_wait_ms * 1'000'000;
  if (!enough || spread_pending) {
    if (!enough) {
      if (job.waiting_for_slots == 0) {
        job.waiting_since_nanos = now;
        job.waiting_since_ms = options_.clock->WallMillis();
        spdlog::warn("job {} ({}): waiting for {} slot(s) to restart ({} free on {} worker(s))", job.id,
                     job.spec->name, needed, free_slots, registry_.size());
      }
      job.waiting_for_slots = needed;
      const int64_t timeout_ms = job.spec->restart.slot_wait_timeout_ms;
      if (now - job.waiting_since_nanos > timeout_ms * 1'000'000) {
        job.state = proto::JOB_FAILED;
        job.error_code = absl::StatusCode::kOk;
        job.error = absl::StrFormat(
            "cannot restart: job '%s' waited %.1f s (restart.slot_wait_timeout) for %d slot(s); the "
            "cluster has %d free (%d worker(s))",
            job.spec->name, (now - job.waiting_since_nanos) / 1e9, needed, free_slots, registry_.size());
        job.end_ms = options_.clock->WallMillis();
        job.waiting_for_slots = 0;
        spdlog::error("job {} failed: {}", job.id, job.error);
        PersistLocked(job);
      }
    }
    return;
  }
  absl::Status s = ScheduleLocked(job);
  if (!s.ok()) {
    // Unreachable with `enough` free slots; keep waiting rather than lose the job.
    spdlog::error("job {}: cannot schedule: {}", job.id, s);
    return;
  }
  if (job.waiting_for_slots > 0) {
    spdlog::info("job {}: {} slot(s) available after waiting {:.1f} s", job.id, needed,
                 (now - job.waiting_since_nanos) / 1e9);
  }
  job.waiting_for_slots = 0;
  job.waiting_since_nanos = 0;
  if (!job.resuming) job.restarts++;
  job.resuming = false;
  job.attempt++;
  job.state = proto::JOB_CREATED;
  job.checkpoints->ResetForAttempt();
  job.restored_checkpoint_id = 0;
  const std::string& latest = job.checkpoints->latest_metadata();
  if (!latest.empty()) {
    // <dir>/chk-<id>/_metadata, or a savepoint's (whose id the job's next ids continue from).
    job.restored_checkpoint_id = job.checkpoints->next_checkpoint_id() - 1;
    const std::string chk = std::filesystem::path(latest).parent_path().filename().string();
    int64_t id = 0;
    if (absl::StartsWith(chk, "chk-") && absl::SimpleAtoi(chk.substr(4), &id)) job.restored_checkpoint_id = id;
  }
  spdlog::info("job {} restarting (attempt {}) from {}", job.id, job.attempt,
               latest.empty() ? std::string("the beginning") : latest);
  PersistLocked(job);
  std::string id = job.id;
  dispatch_queue_.push_back([this, id] { DeployJob(id); });
}

// ---- HA store ------------------------------------------------------------------------------

void Coordinator::PersistLocked(const Job& job) {
  // A coordinator that is shutting down cancels its jobs' tasks to free the workers; those
  // cancellations are not the user's, and the records keep saying the jobs run, so that the
  // next coordinator resumes them.
  if (ha_ == nullptr || stopping_) return;
  io_queue_.push_back([this, r = RecordLocked(job)] {
    absl::Status s = ha_->Write(r);
    if (!s.ok()) spdlog::error("cannot persist job {}: {}", r.job_id(), s);
  });
}

proto::JobRecord Coordinator::RecordLocked(const Job& job) const {
  proto::JobRecord r;
  r.set_job_id(job.id);
  *r.mutable_request() = job.request;
  *r.mutable_plan() = *job.plan;
  r.set_state(job.state);
  r.set_attempt(job.attempt);
  r.set_latest_metadata(job.checkpoints->latest_metadata());
  r.set_latest_dir(job.checkpoints->latest_dir());
  r.set_next_checkpoint_id(job.checkpoints->next_checkpoint_id());
  r.set_error(job.error);
  r.set_error_code(static_cast<int>(job.error_code));
  r.set_restarts(job.restarts);
  r.set_submit_time_ms(job.submit_ms);
  r.set_end_time_ms(job.end_ms);
  r.set_restored_checkpoint_id(job.restored_checkpoint_id);
  r.set_placement_workers(job.placement_workers);
  r.set_stopped_with_savepoint(job.stopped_with_savepoint);
  return r;
}

// The plan stored with the job. Records written before plans were stored (and records whose
// plan is of a newer format than this coordinator's, written by a newer one) have the job's
// YAML only: it is planned again, as at submission; the next persist stores the plan.
absl::StatusOr<plan::PlannedJob> Coordinator::RecoveredPlan(const proto::JobRecord& r) const {
  if (r.has_plan()) {
    absl::StatusOr<plan::PlannedJob> planned = plan::DecodeJobPlan(r.plan());
    if (planned.ok() || r.plan().format_version() <= plan::kJobPlanFormatVersion) return planned;
    spdlog::warn("job {}: {}; planning it again from its job file", r.job_id(), planned.status().message());
  }
  SLUICE_ASSIGN_OR_RETURN(plan::JobSpec spec, PlanJob(r.request().spec_yaml(), r.request().spec_name(),
                                                      r.request().parallelism()));
  plan::PlannedJob planned;
  planned.graph = plan::BuildJobGraph(spec);
  planned.spec = std::move(spec);
  return planned;
}

std::vector<Coordinator::Job> Coordinator::LoadFromHaStore() {
  std::vector<Job> recovered;
  if (ha_ == nullptr) return recovered;
  std::vector<std::string> errors;
  std::vector<proto::JobRecord> records = ha_->List(&errors);
  for (const std::string& e : errors) spdlog::error("unreadable job record: {}", e);
  for (const proto::JobRecord& r : records) {
    absl::StatusOr<plan::PlannedJob> planned = RecoveredPlan(r);
    if (!planned.ok()) {
      spdlog::error("job record {}: {}", ha_->RecordPath(r.job_id()), planned.status());
      continue;
    }
    Job job;
    job.id = r.job_id();
    job.request = r.request();
    job.spec = std::make_shared<const plan::JobSpec>(std::move(planned->spec));
    job.graph = std::make_shared<const plan::JobGraph>(std::move(planned->graph));
    job.plan = std::make_shared<const proto::JobPlan>(plan::EncodeJobPlan(*job.spec, *job.graph));
    job.state = r.state();
    job.attempt = r.attempt();
    job.error = r.error();
    job.error_code = static_cast<absl::StatusCode>(r.error_code());
    job.restarts = r.restarts();
    job.submit_ms = r.submit_time_ms();
    job.end_ms = r.end_time_ms();
    job.restored_checkpoint_id = r.restored_checkpoint_id();
    job.placement_workers = r.placement_workers();
    job.stopped_with_savepoint = r.stopped_with_savepoint();
    const std::string dir = JoinPath(options_.checkpoint_dir, job.id);
    int64_t next_checkpoint_id = r.next_checkpoint_id();
    std::deque<int64_t> retained;
    job.ResetRates(options_.clock->NowNanos());
    job.tasks.assign(job.graph->vertices.size(), {});
    if (!IsTerminal(job.state)) {
      // Checkpoints triggered after the record was written may have left directories (or even
      // completed): new checkpoints get higher ids, so none of them is overwritten or discarded
      // by a checkpoint reusing its id.
      const std::vector<int64_t> ids = storage_.ListCheckpointDirs(dir);
      if (!ids.empty()) next_checkpoint_id = std::max(next_checkpoint_id, ids.back() + 1);
      // Retention continues from the record's latest checkpoint and those before it.
      if (r.latest_dir() == dir) {
        for (int64_t id : ids) {
          if (checkpoint::CheckpointStorage::MetadataPath(dir, id) == r.latest_metadata()) {
            retained.push_back(id);
            break;
          }
          if (options_.file_system->Exists(checkpoint::CheckpointStorage::MetadataPath(dir, id))) {
            retained.push_back(id);
          }
        }
        while (static_cast<int>(retained.size()) > std::max(1, job.spec->checkpoint.retain)) retained.pop_front();
      }
    }
    job.checkpoints = std::make_unique<CheckpointCoordinator>(job.id, dir, job.spec, job.graph, options_.clock);
    job.checkpoints->SetRestorePoint(r.latest_metadata(), r.latest_dir(), next_checkpoint_id, std::move(retained));
    recovered.push_back(std::move(job));
  }
  return recovered;
}

void Coordinator::InstallRecoveredLocked(std::vector<Job> recovered) {
  for (Job& job : recovered) {
    if (job.state == proto::JOB_CANCELLING) {
      // Cancelled (or stopped with a savepoint) before the crash: it ends here. Its tasks were
      // cancelled by their workers when they re-registered.
      job.state = proto::JOB_CANCELLED;
      if (job.end_ms == 0) job.end_ms = options_.clock->WallMillis();
      spdlog::info("job {} ({}) was being cancelled: cancelled", job.id, job.spec->name);
      PersistLocked(job);
    } else if (IsTerminal(job.state)) {
      if (job.end_ms == 0) job.end_ms = options_.clock->WallMillis();  // records before end times
      spdlog::info("job {} ({}) ended {}: kept for status, not resumed", job.id, job.spec->name,
                   proto::JobState_Name(job.state));
    } else {
      // Resume from the latest checkpoint once enough workers have registered again (waiting
      // for them uses no restart attempt).
      spdlog::info("recovered job {} ({}) from the HA store; resuming from {}", job.id, job.spec->name,
                   job.checkpoints->latest_metadata().empty() ? std::string("the beginning")
                                                              : job.checkpoints->latest_metadata());
      job.state = proto::JOB_RESTARTING;
      job.resuming = true;
      job.restarting_since_nanos = options_.clock->NowNanos();
      job.restart_at_nanos = job.restarting_since_nanos;
    }
  }
  // In submission order, as `sluice list` showed them before.
  std::sort(recovered.begin(), recovered.end(), [](const Job& a, const Job& b) {
    return a.submit_ms != b.submit_ms ? a.submit_ms < b.submit_ms : a.id < b.id;
  });
  for (Job& job : recovered) {
    job_order_.push_back(job.id);
    std::string id = job.id;
    jobs_[id] = std::move(job);
  }
}

void Coordinator::ExpireEndedJobsLocked(int64_t now_ms) {
  std::vector<const Job*> ended;
  for (const auto& id : job_order_) {
    const Job& job = jobs_.at(id);
    if (IsTerminal(job.state) && job.slots_held.empty()) ended.push_back(&job);
  }
  std::sort(ended.begin(), ended.end(), [](const Job* a, const Job* b) { return a->end_ms < b->end_ms; });
  std::set<std::string> expire;
  const size_t over = ended.size() > static_cast<size_t>(options_.max_ended_jobs)
                          ? ended.size() - static_cast<size_t>(options_.max_ended_jobs)
                          : 0;
  for (size_t i = 0; i < ended.size(); ++i) {
    if (i < over || now_ms - ended[i]->end_ms > options_.ended_job_retention_ms) expire.insert(ended[i]->id);
  }
  if (expire.empty()) return;
  for (const auto& id : expire) {
    spdlog::info("job {} ended more than the retention ago (or too many ended jobs): record dropped", id);
    jobs_.erase(id);
    if (ha_ != nullptr) {
      io_queue_.push_back([this, id] {  // after any write of it queued before
        absl::Status s = ha_->Delete(id);
        if (!s.ok()) spdlog::warn("cannot delete the record of job {}: {}", id, s);
      });
    }
  }
  job_order_.erase(std::remove_if(job_order_.begin(), job_order_.end(),
                                  [&](const std::string& id) { return expire.count(id) > 0; }),
                   job_order_.end());
}

}  // namespace sluice::coordinator
