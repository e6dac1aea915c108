#include "worker/worker.h"

#include <algorithm>
#include <chrono>
#include <filesystem>

#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "checkpoint/checkpoint_storage.h"
#include "common/address.h"
#include "common/grpc_limits.h"
#include "common/logging.h"
#include "common/status.h"
#include "connectors/kafka_source.h"
#include "plan/job_spec.h"
#include "plan/plan_codec.h"
#include "sdk/host/plugin_operator.h"
#include "sdk/host/plugin_types.h"

namespace sluice::worker {

namespace {
grpc::Status ToGrpc(const absl::Status& s) {
  return s.ok() ? grpc::Status::OK
                : grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}
bool IsTerminal(proto::TaskState s) {
  return s == proto::TASK_FINISHED || s == proto::TASK_CANCELLED || s == proto::TASK_FAILED;
}
}  // namespace

// The coordinator-facing control service. Handlers are quick and never block on tasks.
class Worker::ControlService final : public proto::Worker::CallbackService {
 public:
  explicit ControlService(Worker* w) : w_(w) {}
  grpc::ServerUnaryReactor* DeployTasks(grpc::CallbackServerContext* ctx,
                                        const proto::DeployTasksRequest* req, proto::Ack*) override {
    auto* r = ctx->DefaultReactor();
    r->Finish(ToGrpc(w_->Deploy(*req)));
    return r;
  }
  grpc::ServerUnaryReactor* StartTasks(grpc::CallbackServerContext* ctx, const proto::JobRef* req,
                                       proto::Ack*) override {
    auto* r = ctx->DefaultReactor();
    r->Finish(ToGrpc(w_->StartJob(req->job_id())));
    return r;
  }
  grpc::ServerUnaryReactor* TriggerCheckpoint(grpc::CallbackServerContext* ctx,
                                              const proto::CheckpointTrigger* req, proto::Ack*) override {
    auto* r = ctx->DefaultReactor();
    r->Finish(ToGrpc(w_->Checkpoint(*req, false)));
    return r;
  }
  grpc::ServerUnaryReactor* NotifyCheckpointComplete(grpc::CallbackServerContext* ctx,
                                                     const proto::CheckpointTrigger* req,
                                                     proto::Ack*) override {
    auto* r = ctx->DefaultReactor();
    r->Finish(ToGrpc(w_->Checkpoint(*req, true)));
    return r;
  }
  grpc::ServerUnaryReactor* CancelTasks(grpc::CallbackServerContext* ctx, const proto::JobRef* req,
                                        proto::Ack*) override {
    auto* r = ctx->DefaultReactor();
    w_->CancelJob(req->job_id());
    r->Finish(grpc::Status::OK);
    return r;
  }

 private:
  Worker* w_;
};

namespace {
// Data-plane keepalive: a silent peer is declared broken after about 3 s.
constexpr int kKeepaliveTimeMs = 2000;
constexpr int kKeepaliveTimeoutMs = 1000;
}  // namespace

Worker::Worker(WorkerOptions options) : options_(std::move(options)), http_(&metrics_) {
  // Built-in and connector types have distinct names: registering them cannot fail.
  absl::Status s = ops::RegisterBuiltinOperators(&registry_);
  s.Update(connectors::RegisterConnectorOperators(&registry_));
  if (!s.ok()) {
    spdlog::critical("registering operators: {}", s);
    std::abort();
  }
}

Worker::~Worker() { Stop(); }

namespace {

// Adds the operator types of `plugins` to `registry`, each with CreatePluginOperator as its
// factory, and their aggregate functions.
absl::Status RegisterPluginOperators(const std::vector<const plugin::LoadedPlugin*>& plugins,
                                     ops::OperatorRegistry* registry) {
  SLUICE_RETURN_IF_ERROR(plugin::AddPluginTypes(plugins, [registry](const plugin::LoadedPlugin& p,
                                                                    const plugin::PluginOperatorType& t) {
    return registry->Register(std::make_unique<plugin::PluginOperatorTypeEntry>(&p, &t),
                              [&p, &t](const plan::OperatorSpec& spec) {
                                return plugin::CreatePluginOperator(p, t, spec);
                              });
  }));
  return plugin::AddPluginAggregateFunctions(
      plugins, [registry](std::shared_ptr<const plan::AggregateFunction> fn) {
        return registry->AddAggregateFunction(std::move(fn));
      });
}

}  // namespace

absl::StatusOr<std::shared_ptr<const ops::OperatorRegistry>> Worker::JobRegistry(
    const plan::JobSpec& job) const {
  if (job.plugins.empty()) return std::shared_ptr<const ops::OperatorRegistry>();
  absl::StatusOr<std::vector<const plugin::LoadedPlugin*>> job_plugins =
      plugin::LoadJobPlugins(plugin::PluginLoader::Default(), job.plugins, job.source_name);
  if (!job_plugins.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot load a plugin of the job: ", job_plugins.status().message()));
  }
  auto registry = std::make_shared<ops::OperatorRegistry>();
  SLUICE_RETURN_IF_ERROR(ops::RegisterBuiltinOperators(registry.get()));
  SLUICE_RETURN_IF_ERROR(connectors::RegisterConnectorOperators(registry.get()));
  std::vector<const plugin::LoadedPlugin*> plugins = dir_plugins_;
  plugins.insert(plugins.end(), job_plugins->begin(), job_plugins->end());
  SLUICE_RETURN_IF_ERROR(RegisterPluginOperators(plugins, registry.get()));
  return std::shared_ptr<const ops::OperatorRegistry>(std::move(registry));
}

absl::Status Worker::Start() {
  if (!options_.plugin_dir.empty()) {
    SLUICE_ASSIGN_OR_RETURN(dir_plugins_, plugin::LoadPluginDir(plugin::PluginLoader::Default(), options_.plugin_dir));
    SLUICE_RETURN_IF_ERROR(RegisterPluginOperators(dir_plugins_, &registry_));
    spdlog::info("loaded {} plugin(s) from {}", dir_plugins_.size(), options_.plugin_dir);
  }
  const uint64_t state_memory =
      options_.state_memory_bytes != 0 ? options_.state_memory_bytes
                                     : state::DefaultStateMemory(options_.memory_limit_bytes);
  state_memory_ = std::make_unique<state::StateMemory>(state_memory, options_.slots);
  spdlog::info("state memory: {} MiB ({} MiB per slot{})", state_memory >> 20,
               state_memory_->slot_bytes() >> 20,
               options_.state_memory_bytes != 0 ? "" : ", the default share of the memory");
  control_service_ = std::make_unique<ControlService>(this);
  data_service_ = std::make_unique<DataPlaneService>(
      [this](const proto::ChannelHeader& h, std::shared_ptr<InputGate>* gate, int* channel) {
        return ResolveGate(h, gate, channel);
      });
  grpc::ServerBuilder builder;
  // Accept the data plane's keepalive pings (gRPC servers refuse pings more often than every
  // 5 minutes by default) and ping idle clients too.
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, kKeepaliveTimeMs / 2);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, kKeepaliveTimeMs);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, kKeepaliveTimeoutMs);
  int port = 0;
  builder.AddListeningPort(absl::StrCat(options_.host, ":", options_.port),
                           grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(control_service_.get());
  builder.RegisterService(data_service_.get());
  builder.SetMaxReceiveMessageSize(kMaxGrpcMessageBytes);
  server_ = builder.BuildAndStart();
  if (server_ == nullptr || port == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", options_.host, ":", options_.port));
  }
  advertised_host_ =
      options_.advertise_address.empty() ? DefaultAdvertiseHost(options_.host) : options_.advertise_address;
  data_address_ = absl::StrCat(advertised_host_, ":", port);
  http_.SetReadinessProbe([this] { return Ready(); });
  work_dir_ = options_.work_dir.empty() ? absl::StrCat("/tmp/sluice-worker-", getpid()) : options_.work_dir;
  std::error_code ec;
  // Local state of an earlier run is never reused. The directory itself stays (it may be a
  // mount point, e.g. a Kubernetes emptyDir): only what is in it is removed.
  std::filesystem::create_directories(work_dir_, ec);
  for (const auto& entry : std::filesystem::directory_iterator(work_dir_, ec)) {
    std::filesystem::remove_all(entry.path(), ec);
  }
  if (ec) return absl::FailedPreconditionError(absl::StrCat("cannot create work dir ", work_dir_, ": ", ec.message()));
  if (options_.http_port >= 0) {
    SLUICE_ASSIGN_OR_RETURN(http_port_, http_.Start(options_.host, options_.http_port));
  }
  heartbeat_age_ = metrics_.AddGauge("sluice_worker_heartbeat_age_seconds",
                                     "Seconds since the last acknowledged heartbeat", {});
  metrics_.AddCallbackGauge("sluice_worker_slots", "Task slots offered", {},
                            [s = options_.slots] { return s; });
  metrics_.AddCallbackGauge("sluice_worker_state_memory_bytes",
                            "Memory budget for keyed state (all slots)", {},
                            [m = state_memory_->budget_bytes()] { return static_cast<double>(m); });
  metrics_.AddCallbackGauge("sluice_worker_tasks", "Tasks deployed on this worker", {}, [this] {
    absl::MutexLock lock(&mu_);
    size_t n = 0;
    for (auto& [id, j] : jobs_) n += j.tasks.size();
    return static_cast<double>(n);
  });
  // Reconnect to a restarted coordinator within about a second: gRPC's default reconnect
  // backoff grows to 120 s, and jobs wait for workers to re-register.
  grpc::ChannelArguments coordinator_args;
  coordinator_args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  // The connect timeout, despite its name (common/grpc_limits.h).
  coordinator_args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, kControlConnectTimeoutMs);
  coordinator_args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  coordinator_args.SetMaxSendMessageSize(kMaxGrpcMessageBytes);
  // A DNS name (a Kubernetes Service) that does not resolve yet is tried again within a second.
  coordinator_args.SetInt(GRPC_ARG_DNS_MIN_TIME_BETWEEN_RESOLUTIONS_MS, 1000);
  coordinator_ = proto::Coordinator::NewStub(
      grpc::CreateCustomChannel(options_.coordinator, grpc::InsecureChannelCredentials(), coordinator_args));
  spdlog::info("worker serving data plane on {}, http on {}:{}, {} slots; coordinator {}",
               data_address_, options_.host, http_port_, options_.slots, options_.coordinator);
  heartbeat_thread_ = std::thread([this] { HeartbeatLoop(); });
  return absl::OkStatus();
}

void Worker::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  spdlog::info("worker stopping: cancelling tasks");
  // The heartbeat thread reads tasks: stop it before tasks go away.
  if (heartbeat_thread_.joinable()) heartbeat_thread_.join();
  std::map<std::string, JobTasks> jobs;
  std::vector<JobTasks> retired;
  {
    absl::MutexLock lock(&mu_);
    for (auto& [id, j] : jobs_) {
      for (auto& t : j.tasks) t->Cancel();
    }
    for (auto& j : retired_) {
      for (auto& t : j.tasks) t->Cancel();
    }
    jobs.swap(jobs_);
    retired.swap(retired_);
  }
  jobs.clear();  // joins task threads
  retired.clear();
  if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  http_.Stop();
  spdlog::info("worker stopped");
}

absl::Status Worker::Ready() const {
  absl::MutexLock lock(&mu_);
  if (stopping_ || leaving_) return absl::UnavailableError("leaving the cluster");
  if (!registered_) {
    return absl::UnavailableError(absl::StrCat("not registered with coordinator ", options_.coordinator, " yet"));
  }
  return absl::OkStatus();
}

absl::Status Worker::Leave(const std::string& reason) {
  std::string worker_id;
  bool registered;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_ || leaving_) return absl::OkStatus();
    leaving_ = true;
    worker_id = worker_id_;
    registered = registered_;
  }
  // No heartbeat may follow the deregistration: it would be told to register again.
  if (heartbeat_thread_.joinable()) heartbeat_thread_.join();
  absl::Status result = absl::OkStatus();
  if (registered && coordinator_ != nullptr) {
    proto::DeregisterWorkerRequest req;
    req.set_worker_id(worker_id);
    req.set_data_address(data_address_);
    req.set_reason(reason);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(3));
    proto::Ack ack;
    grpc::Status s = coordinator_->DeregisterWorker(&ctx, req, &ack);
    if (s.ok()) {
      spdlog::info("left the cluster: coordinator {} restarts our jobs elsewhere", options_.coordinator);
    } else {
      result = absl::UnavailableError(absl::StrCat("cannot deregister from coordinator ", options_.coordinator,
                                                   ": ", s.error_message()));
      spdlog::warn("{}; it will notice when heartbeats stop", result.message());
    }
  }
  Stop();
  return result;
}

absl::Status Worker::Deploy(const proto::DeployTasksRequest& req) {
  // The job as the coordinator planned it; only the options are parsed here, by this worker's
  // operator types, before any task exists. Every refusal is kFailedPrecondition (the job fails
  // with the reason, no restart can help).
  absl::StatusOr<plan::PlannedJob> planned = plan::DecodeJobPlan(req.plan());
  if (!planned.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot deploy job ", req.job_id(), ": ", planned.status().message()));
  }
  SLUICE_ASSIGN_OR_RETURN(std::shared_ptr<const ops::OperatorRegistry> job_registry,
                          JobRegistry(planned->spec));
  const ops::OperatorRegistry* registry = job_registry != nullptr ? job_registry.get() : &registry_;
  absl::Status options = plan::ParsePlannedOptions(registry->catalog(), &planned->spec);
  if (!options.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot deploy job ", req.job_id(), ": ", options.message()));
  }
  auto job = std::make_shared<const plan::JobSpec>(std::move(planned->spec));
  auto graph = std::make_shared<const plan::JobGraph>(std::move(planned->graph));
  std::vector<std::vector<std::string>> placement(graph->vertices.size());
  for (const auto& p : req.placement()) {
    if (p.vertex() < 0 || p.vertex() >= static_cast<int>(placement.size()) ||
        p.data_addresses_size() != graph->vertices[p.vertex()].parallelism) {
      return absl::InvalidArgumentError(absl::StrCat("bad placement for vertex ", p.vertex()));
    }
    placement[p.vertex()].assign(p.data_addresses().begin(), p.data_addresses().end());
  }
  // Read by the first task thread that restores (blocking I/O has no place on this RPC
  // thread); a metadata file it cannot read fails the tasks with the reason.
  std::shared_ptr<RestoreMetadata> restore;
  if (!req.restore_metadata().empty()) {
    restore = std::make_shared<RestoreMetadata>(&storage_, req.restore_metadata());
  }
  // With slot sharing a slot holds one subtask of every vertex: its keyed operators share it.
  int keyed_operators = 0;
  for (const plan::OperatorSpec& op : job->operators) keyed_operators += op.keyed ? 1 : 0;
  JobTasks jt;
  jt.attempt = req.attempt();
  jt.spec = job;
  jt.graph = graph;
  jt.registry = job_registry;
  for (const auto& ref : req.tasks()) {
    if (ref.vertex() < 0 || ref.vertex() >= static_cast<int>(graph->vertices.size()) ||
        ref.subtask() < 0 || ref.subtask() >= graph->vertices[ref.vertex()].parallelism) {
      return absl::InvalidArgumentError(absl::StrCat("bad task ", ref.vertex(), "#", ref.subtask()));
    }
    TaskDescriptor d;
    d.job_id = req.job_id();
    d.attempt = req.attempt();
    d.vertex = ref.vertex();
    d.subtask = ref.subtask();
    d.job = job;
    d.graph = graph;
    d.placement = placement;
    d.work_dir = work_dir_;
    d.state_memory = state_memory_.get();
    d.keyed_operators_per_slot = keyed_operators;
    d.checkpoint_dir = req.checkpoint_dir();
    d.restore = restore;
    d.restore_dir = req.restore_dir();
    d.ack = [this](proto::CheckpointAck ack) { SendAck(std::move(ack)); };
    std::string job_id = req.job_id();
    d.on_end_of_input = [this] {
      absl::MutexLock lock(&mu_);
      end_of_input_pending_ = true;  // wakes the heartbeat thread to tell the coordinator now
    };
    jt.tasks.push_back(std::make_unique<Task>(
        std::move(d), registry,
        [this](const proto::ChannelHeader& h, const std::string& a) { return CreateWriter(h, a); },
        &metrics_, options_.clock, [this](Task* t) { OnTaskDone(t); }));
  }
  absl::MutexLock lock(&mu_);
  if (stopping_) return absl::UnavailableError("worker is stopping");
  auto existing = jobs_.find(req.job_id());
  if (existing != jobs_.end()) {
    if (existing->second.attempt >= req.attempt()) {
      return absl::AlreadyExistsError(absl::StrCat("job ", req.job_id(), " attempt ",
                                                   existing->second.attempt, " is already deployed here"));
    }
    // A restart: the old attempt's tasks are cancelled and reaped once they have stopped.
    for (auto& t : existing->second.tasks) t->Cancel();
    if (!existing->second.started) {
      existing->second.started = true;
      for (auto& t : existing->second.tasks) t->Start();
    }
    retired_.push_back(std::move(existing->second));
    jobs_.erase(existing);
  }
  spdlog::info("deployed {} task(s) of job {} attempt {}", jt.tasks.size(), req.job_id(), req.attempt());
  jobs_[req.job_id()] = std::move(jt);
  return absl::OkStatus();
}

std::vector<proto::TaskStatus> Worker::TaskStatusesForTest(const std::string& job_id) const {
  absl::MutexLock lock(&mu_);
  std::vector<proto::TaskStatus> out;
  auto it = jobs_.find(job_id);
  if (it == jobs_.end()) return out;
  for (const auto& t : it->second.tasks) out.push_back(t->Status());
  return out;
}

absl::Status Worker::StartJob(const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  auto it = jobs_.find(job_id);
  if (it == jobs_.end()) return absl::NotFoundError(absl::StrCat("job ", job_id, " is not deployed here"));
  if (it->second.started) return absl::OkStatus();
  it->second.started = true;
  for (auto& t : it->second.tasks) t->Start();
  return absl::OkStatus();
}

absl::Status Worker::Checkpoint(const proto::CheckpointTrigger& req, bool complete) {
  absl::MutexLock lock(&mu_);
  auto it = jobs_.find(req.job_id());
  if (it == jobs_.end() || it->second.attempt != req.attempt()) {
    return absl::NotFoundError(absl::StrCat("job ", req.job_id(), " attempt ", req.attempt(),
                                            " is not running here"));
  }
  for (auto& t : it->second.tasks) {
    if (complete) {
      t->NotifyCheckpointComplete(req.checkpoint_id());
    } else {
      // Regular checkpoints start at the sources (barriers do the rest) and at tasks past
      // their end of input; a final one at every task.
      bool source = it->second.spec->operators[it->second.graph->vertices[t->descriptor().vertex].ops[0]].is_source();
      if (req.final() || source || t->Status().end_of_input()) {
        t->TriggerCheckpoint(req.checkpoint_id(), req.final(), req.aligned());
      }
    }
  }
  return absl::OkStatus();
}

void Worker::SendAck(proto::CheckpointAck ack) {
  // Called on a task's upload thread.
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  proto::Ack resp;
  grpc::Status s = coordinator_->AcknowledgeCheckpoint(&ctx, ack, &resp);
  if (!s.ok()) {
    spdlog::warn("cannot acknowledge checkpoint {} of {}: {}", ack.checkpoint_id(),
                 ack.task().job_id(), s.error_message());
  }
}

void Worker::CancelJob(const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  auto it = jobs_.find(job_id);
  if (it == jobs_.end()) return;
  spdlog::info("cancelling job {}", job_id);
  for (auto& t : it->second.tasks) t->Cancel();
  if (!it->second.started) {
    // Never started: start them so each exits at once and reports itself cancelled.
    it->second.started = true;
    for (auto& t : it->second.tasks) t->Start();
  }
}

absl::Status Worker::ResolveGate(const proto::ChannelHeader& h, std::shared_ptr<InputGate>* gate,
                                 int* channel) {
  absl::MutexLock lock(&mu_);
  auto it = jobs_.find(h.job_id());
  if (it == jobs_.end() || it->second.attempt != h.attempt()) {
    return absl::NotFoundError(absl::StrCat("job ", h.job_id(), " attempt ", h.attempt(),
                                            " is not deployed on this worker"));
  }
  const plan::JobGraph& g = *it->second.graph;
  if (h.edge() < 0 || h.edge() >= static_cast<int>(g.edges.size())) {
    return absl::NotFoundError(absl::StrCat("no edge ", h.edge()));
  }
  const plan::Edge& e = g.edges[h.edge()];
  if (h.src_subtask() < 0 || h.src_subtask() >= g.vertices[e.source_vertex].parallelism ||
      !e.Connects(h.src_subtask(), h.dst_subtask())) {
    return absl::NotFoundError("no such channel");
  }
  for (auto& t : it->second.tasks) {
    if (t->descriptor().vertex == e.target_vertex && t->descriptor().subtask == h.dst_subtask()) {
      *gate = t->gate();
      *channel = GateChannelIndex(g, h.edge(), h.src_subtask());
      return absl::OkStatus();
    }
  }
  return absl::NotFoundError(absl::StrCat("task ", e.target_vertex, "#", h.dst_subtask(),
                                          " is not on this worker"));
}

absl::StatusOr<std::unique_ptr<ChannelWriter>> Worker::CreateWriter(const proto::ChannelHeader& h,
                                                                    const std::string& address) {
  if (address == data_address_) {
    std::shared_ptr<InputGate> gate;
    int channel;
    SLUICE_RETURN_IF_ERROR(ResolveGate(h, &gate, &channel));
    return LocalChannel::Connect(std::move(gate), channel);
  }
  return std::unique_ptr<ChannelWriter>(std::make_unique<RemoteChannelWriter>(StubFor(address), h, address));
}

proto::DataPlane::Stub* Worker::StubFor(const std::string& address) {
  absl::MutexLock lock(&mu_);
  auto& stub = stubs_[address];
  if (!stub) {
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(kMaxGrpcMessageBytes);
    // A peer that vanishes without closing its connections (a host whose link went down, a
    // network partition) is noticed within seconds, not after TCP's retransmission timeout of
    // many minutes: the stream fails, the task fails, the job fails over.
    args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, kKeepaliveTimeMs);
    args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, kKeepaliveTimeoutMs);
    args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
    args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
    // Connecting to an unreachable peer (SYNs dropped) gives up after 5 s instead of 20.
    args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 5000);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 5000);
    auto channel = grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
    grpc_channels_[address] = channel;
    stub = proto::DataPlane::NewStub(channel);
  }
  return stub.get();
}

void Worker::OnTaskDone(Task* task) {
  proto::TaskStatus st = task->Status();
  if (st.state() == proto::TASK_FAILED) {
    spdlog::error("task {} failed: {}", task->name(), st.error());
  } else {
    spdlog::info("task {} {}", task->name(), proto::TaskState_Name(st.state()));
  }
  absl::MutexLock lock(&mu_);
  reports_.push_back(std::move(st));
}

bool Worker::Register() {
  proto::RegisterWorkerRequest req;
  req.set_data_address(data_address_);
  req.set_slots(options_.slots);
  req.set_http_address(http_port_ >= 0 ? absl::StrCat(advertised_host_, ":", http_port_) : "");
  req.set_name(options_.name);
  proto::RegisterWorkerResponse resp;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
  grpc::Status s = coordinator_->RegisterWorker(&ctx, req, &resp);
  if (!s.ok()) {
    // Every 20th try after the first: a coordinator that is not up (or whose DNS name does not
    // resolve yet) is retried twice a second without flooding the log.
    if (register_failures_++ % 20 == 0) {
      spdlog::warn("cannot register with coordinator {} (try {}; retrying): {}", options_.coordinator,
                   register_failures_, s.error_message());
    }
    return false;
  }
  register_failures_ = 0;
  absl::MutexLock lock(&mu_);
  worker_id_ = resp.worker_id();
  // Heartbeat at least as often as the coordinator asks, so its loss timeout never fires on a
  // healthy worker.
  if (resp.heartbeat_interval_ms() > 0) {
    heartbeat_interval_ms_ = std::min(options_.heartbeat_interval_ms, resp.heartbeat_interval_ms());
  }
  last_heartbeat_ok_nanos_ = options_.clock->NowNanos();
  spdlog::info("registered with coordinator {} as {}", options_.coordinator, worker_id_);
  return true;
}

void Worker::ReapFinishedJobs() {
  // A job whose tasks have all ended and been reported is removed (its task threads joined).
  std::vector<JobTasks> done;
  {
    absl::MutexLock lock(&mu_);
    if (!reports_.empty()) return;  // wait until reports are delivered
    for (auto it = jobs_.begin(); it != jobs_.end();) {
      bool all_done = it->second.started;
      for (auto& t : it->second.tasks) all_done &= IsTerminal(t->Status().state());
      if (all_done) {
        done.push_back(std::move(it->second));
        it = jobs_.erase(it);
      } else {
        ++it;
      }
    }
  }
  {
    absl::MutexLock lock(&mu_);
    for (auto it = retired_.begin(); it != retired_.end();) {
      bool all_done = true;
      for (auto& t : it->tasks) all_done &= IsTerminal(t->Status().state());
      if (all_done) {
        done.push_back(std::move(*it));
        it = retired_.erase(it);
      } else {
        ++it;
      }
    }
  }
  // Destroying tasks joins their threads: outside the lock.
}

void Worker::HeartbeatLoop() {
  bool registered = false;
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      auto wake = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || leaving_ || !reports_.empty() || end_of_input_pending_;
      };
      mu_.AwaitWithTimeout(absl::Condition(&wake), absl::Milliseconds(heartbeat_interval_ms_));
      if (stopping_ || leaving_) return;
      end_of_input_pending_ = false;
    }
    if (!registered) {
      registered = Register();
      if (!registered) continue;
      absl::MutexLock lock(&mu_);
      registered_ = true;
    }
    // Deliver terminal task states first.
    std::vector<proto::TaskStatus> reports;
    std::string worker_id;
    {
      absl::MutexLock lock(&mu_);
      reports.swap(reports_);
      worker_id = worker_id_;
    }
    for (size_t i = 0; i < reports.size(); ++i) {
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
      proto::Ack ack;
      grpc::Status s = coordinator_->ReportTaskState(&ctx, reports[i], &ack);
      if (!s.ok()) {
        spdlog::warn("cannot report task state: {}", s.error_message());
        absl::MutexLock lock(&mu_);
        reports_.insert(reports_.begin(), reports.begin() + i, reports.end());
        break;
      }
    }
    proto::HeartbeatRequest hb;
    hb.set_worker_id(worker_id);
    hb.set_data_address(data_address_);
    {
      absl::MutexLock lock(&mu_);
      for (auto& [id, j] : jobs_) {
        for (auto& t : j.tasks) *hb.add_tasks() = t->Status();
      }
    }
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
    proto::HeartbeatResponse resp;
    grpc::Status s = coordinator_->Heartbeat(&ctx, hb, &resp);
    int64_t now = options_.clock->NowNanos();
    if (s.ok()) {
      absl::MutexLock lock(&mu_);
      last_heartbeat_ok_nanos_ = now;
    } else {
      spdlog::warn("heartbeat to coordinator failed: {}", s.error_message());
    }
    {
      absl::MutexLock lock(&mu_);
      heartbeat_age_->Set((now - last_heartbeat_ok_nanos_) / 1e9);
    }
    if (s.ok() && resp.reregister()) {
      spdlog::warn("coordinator does not know worker {}: cancelling all tasks and registering again",
                   worker_id);
      {
        absl::MutexLock lock(&mu_);
        for (auto& [id, j] : jobs_) {
          for (auto& t : j.tasks) t->Cancel();
        }
      }
      registered = false;
      absl::MutexLock lock(&mu_);
      registered_ = false;
    }
    ReapFinishedJobs();
  }
}

}  // namespace sluice::worker
