#include "coordinator/coordinator.h"

#include <algorithm>
#include <chrono>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/logging.h"
#include "common/status.h"

namespace sluice::coordinator {

namespace {

grpc::Status ToGrpc(const absl::Status& s) {
  return s.ok() ? grpc::Status::OK
                : grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
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
  grpc::ServerUnaryReactor* ReportTaskState(grpc::CallbackServerContext* ctx,
                                            const proto::TaskStatus* req, proto::Ack*) override {
    c_->ReportTaskState(*req);
    return Done(ctx, absl::OkStatus());
  }
  grpc::ServerUnaryReactor* SubmitJob(grpc::CallbackServerContext* ctx,
                                      const proto::SubmitJobRequest* req,
                                      proto::SubmitJobResponse* resp) override {
    auto r = c_->SubmitJob(*req);
    if (r.ok()) *resp = *r;
    return Done(ctx, r.status());
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
  grpc::ServerUnaryReactor* CancelJob(grpc::CallbackServerContext* ctx, const proto::JobRef* req,
                                      proto::Ack*) override {
    return Done(ctx, c_->CancelJob(req->job_id()));
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
  Coordinator* c_;
};

Coordinator::Coordinator(CoordinatorOptions options)
    : options_(std::move(options)), http_(&metrics_) {}

Coordinator::~Coordinator() { Stop(); }

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
  server_ = builder.BuildAndStart();
  if (server_ == nullptr || port == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", options_.host, ":", options_.port));
  }
  address_ = absl::StrCat(options_.host, ":", port);
  if (options_.http_port >= 0) {
    SLUICE_ASSIGN_OR_RETURN(http_port_, http_.Start(options_.host, options_.http_port));
  }
  metrics_.AddCallbackGauge("sluice_coordinator_workers", "Registered live workers", {}, [this] {
    absl::MutexLock lock(&mu_);
    return static_cast<double>(workers_.size());
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
  dispatcher_ = std::thread([this] { DispatchLoop(); });
  monitor_ = std::thread([this] { MonitorLoop(); });
  spdlog::info("coordinator serving on {}, http on {}:{}, heartbeat timeout {} ms", address_,
               options_.host, http_port_, options_.heartbeat_timeout_ms);
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
    }
  }
  if (dispatcher_.joinable()) dispatcher_.join();
  if (monitor_.joinable()) monitor_.join();
  server_->Shutdown(Deadline(2));
  http_.Stop();
  spdlog::info("coordinator stopped");
}

void Coordinator::Dispatch(std::function<void()> fn) {
  absl::MutexLock lock(&mu_);
  dispatch_queue_.push_back(std::move(fn));
}

void Coordinator::DispatchLoop() {
  while (true) {
    std::function<void()> fn;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || !dispatch_queue_.empty();
      };
      mu_.Await(absl::Condition(&ready));
      if (dispatch_queue_.empty()) return;  // stopping, queue drained
      fn = std::move(dispatch_queue_.front());
      dispatch_queue_.pop_front();
    }
    fn();
  }
}

absl::StatusOr<proto::RegisterWorkerResponse> Coordinator::RegisterWorker(
    const proto::RegisterWorkerRequest& req) {
  if (req.slots() <= 0) return absl::InvalidArgumentError("a worker must offer at least one slot");
  if (req.data_address().empty()) return absl::InvalidArgumentError("data_address is required");
  auto channel = grpc::CreateChannel(req.data_address(), grpc::InsecureChannelCredentials());
  absl::MutexLock lock(&mu_);
  WorkerEntry w;
  w.id = absl::StrCat("w-", next_worker_++);
  w.data_address = req.data_address();
  w.http_address = req.http_address();
  w.slots = req.slots();
  w.last_heartbeat_nanos = options_.clock->NowNanos();
  w.stub = proto::Worker::NewStub(channel);
  spdlog::info("worker {} registered: {} with {} slots", w.id, w.data_address, w.slots);
  metrics_.AddCallbackGauge("sluice_coordinator_worker_heartbeat_age_seconds",
                            "Seconds since each worker's last heartbeat", {{"worker", w.id}},
                            [this, id = w.id] {
                              absl::MutexLock lock(&mu_);
                              auto it = workers_.find(id);
                              if (it == workers_.end()) return -1.0;
                              return (options_.clock->NowNanos() - it->second.last_heartbeat_nanos) / 1e9;
                            },
                            w.id);
  proto::RegisterWorkerResponse resp;
  resp.set_worker_id(w.id);
  resp.set_heartbeat_interval_ms(std::max<int64_t>(100, options_.heartbeat_timeout_ms / 6));
  workers_[w.id] = std::move(w);
  return resp;
}

proto::HeartbeatResponse Coordinator::Heartbeat(const proto::HeartbeatRequest& req) {
  proto::HeartbeatResponse resp;
  absl::MutexLock lock(&mu_);
  auto it = workers_.find(req.worker_id());
  if (it == workers_.end()) {
    resp.set_reregister(true);
    return resp;
  }
  it->second.last_heartbeat_nanos = options_.clock->NowNanos();
  for (const auto& st : req.tasks()) {
    auto jit = jobs_.find(st.task().job_id());
    if (jit == jobs_.end()) continue;
    HandleTaskState(jit->second, st);
  }
  return resp;
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
  }
  if (TaskTerminal(t.state)) return;  // final states stick
  if (st.state() == proto::TASK_DEPLOYING) return;
  t.state = st.state();
  t.error = st.error();
  if (st.state() == proto::TASK_FAILED && job.state == proto::JOB_CANCELLING) {
    // While cancelling, tasks stopped first break the channels of those stopped later: that is
    // part of the cancellation, not a failure of the job.
    t.state = proto::TASK_CANCELLED;
  } else if (st.state() == proto::TASK_FAILED) {
    std::string error = st.error().empty() ? "a task failed" : st.error();
    // Name the worker a broken channel led to (it may turn out to be lost).
    for (const auto& [id, w] : workers_) {
      if (error.find(" to worker " + w.data_address) != std::string::npos) {
        error = absl::StrCat(error, " (", id, ")");
      }
    }
    FailJob(job, error);
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
  } else if (job.state == proto::JOB_CANCELLING && all_terminal) {
    job.state = proto::JOB_CANCELLED;
    job.end_ms = options_.clock->WallMillis();
    spdlog::info("job {} ({}) cancelled", job.id, job.spec->name);
    ReleaseSlots(job);
  } else if (job.state == proto::JOB_FAILED && all_terminal) {
    ReleaseSlots(job);
  }
}

void Coordinator::ReleaseSlots(Job& job) {
  for (auto& [worker_id, n] : job.slots_held) {
    auto it = workers_.find(worker_id);
    if (it != workers_.end()) it->second.slots_used -= n;
  }
  job.slots_held.clear();
}

void Coordinator::FailJob(Job& job, const std::string& reason) {
  if (IsTerminal(job.state)) return;
  spdlog::error("job {} ({}) failed: {}", job.id, job.spec->name, reason);
  job.state = proto::JOB_FAILED;
  job.error = reason;
  job.end_ms = options_.clock->WallMillis();
  CancelTasksOnWorkers(job);
  MaybeCompleteJob(job);
}

void Coordinator::CancelTasksOnWorkers(Job& job) {
  std::map<std::string, std::shared_ptr<proto::Worker::Stub>> stubs;
  for (const auto& v : job.tasks) {
    for (const auto& t : v) {
      auto it = workers_.find(t.worker_id);
      if (it != workers_.end() && !TaskTerminal(t.state)) stubs[t.worker_id] = it->second.stub;
    }
  }
  dispatch_queue_.push_back([stubs, job_id = job.id] {
    for (const auto& [worker_id, stub] : stubs) {
      grpc::ClientContext ctx;
      ctx.set_deadline(Deadline(5));
      proto::JobRef ref;
      ref.set_job_id(job_id);
      proto::Ack ack;
      grpc::Status s = stub->CancelTasks(&ctx, ref, &ack);
      if (!s.ok()) spdlog::warn("cancel of job {} on {} failed: {}", job_id, worker_id, s.error_message());
    }
  });
}

absl::StatusOr<proto::SubmitJobResponse> Coordinator::SubmitJob(const proto::SubmitJobRequest& req) {
  std::string name = req.spec_name().empty() ? "job.yaml" : req.spec_name();
  SLUICE_ASSIGN_OR_RETURN(plan::JobSpec parsed, plan::ParseJobSpec(req.spec_yaml(), name, req.parallelism()));
  auto spec = std::make_shared<const plan::JobSpec>(std::move(parsed));
  auto graph = std::make_shared<const plan::JobGraph>(plan::BuildJobGraph(*spec));
  const int needed = graph->SlotsNeeded();

  absl::MutexLock lock(&mu_);
  if (stopping_) return absl::UnavailableError("coordinator is shutting down");
  // Slot sharing: subtask i of every vertex goes to slot i. Spread slots across workers,
  // round-robin over workers that have free slots.
  std::vector<WorkerEntry*> candidates;
  int free_total = 0;
  for (auto& [id, w] : workers_) {
    if (w.slots > w.slots_used) {
      candidates.push_back(&w);
      free_total += w.slots - w.slots_used;
    }
  }
  if (free_total < needed) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "job '", spec->name, "' needs ", needed, " slot(s) but the cluster has ", free_total,
        " free (", workers_.size(), " worker(s)); lower its parallelism or add workers"));
  }
  std::vector<WorkerEntry*> slot_worker;
  std::map<std::string, int> taken;
  while (static_cast<int>(slot_worker.size()) < needed) {
    for (WorkerEntry* w : candidates) {
      if (static_cast<int>(slot_worker.size()) == needed) break;
      if (w->slots - w->slots_used - taken[w->id] > 0) {
        slot_worker.push_back(w);
        taken[w->id]++;
      }
    }
  }
  Job job;
  absl::BitGen gen;
  do {
    job.id = absl::StrFormat("job-%08x", absl::Uniform<uint32_t>(gen));
  } while (jobs_.count(job.id));
  job.request = req;
  job.request.set_spec_name(name);
  job.spec = spec;
  job.graph = graph;
  job.submit_ms = options_.clock->WallMillis();
  job.tasks.resize(graph->vertices.size());
  for (const auto& v : graph->vertices) {
    for (int s = 0; s < v.parallelism; ++s) {
      TaskEntry t;
      t.worker_id = slot_worker[s]->id;
      t.data_address = slot_worker[s]->data_address;
      t.records_in.assign(v.ops.size(), 0);
      t.records_out.assign(v.ops.size(), 0);
      job.tasks[v.id].push_back(std::move(t));
    }
  }
  for (auto& [id, n] : taken) {
    workers_[id].slots_used += n;
    job.slots_held[id] = n;
  }
  size_t num_ops = spec->operators.size();
  job.prev_in.assign(num_ops, 0);
  job.prev_out.assign(num_ops, 0);
  job.in_rate.assign(num_ops, 0);
  job.out_rate.assign(num_ops, 0);
  job.prev_nanos = options_.clock->NowNanos();
  std::string id = job.id;
  spdlog::info("job {} ({}) submitted: {} vertices, {} slot(s)", id, spec->name,
               graph->vertices.size(), needed);
  jobs_[id] = std::move(job);
  job_order_.push_back(id);
  dispatch_queue_.push_back([this, id] { DeployJob(id); });
  proto::SubmitJobResponse resp;
  resp.set_job_id(id);
  return resp;
}

void Coordinator::DeployJob(const std::string& job_id) {
  // Build per-worker requests under the lock; make the calls without it.
  std::map<std::string, proto::DeployTasksRequest> requests;
  std::map<std::string, std::shared_ptr<proto::Worker::Stub>> stubs;
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
        auto wit = workers_.find(t.worker_id);
        if (wit == workers_.end()) {
          FailJob(job, absl::StrCat("worker ", t.worker_id, " was lost before deployment"));
          return;
        }
        stubs[t.worker_id] = wit->second.stub;
        proto::DeployTasksRequest& r = requests[t.worker_id];
        if (r.job_id().empty()) {
          r.set_job_id(job.id);
          r.set_attempt(job.attempt);
          r.set_spec_yaml(job.request.spec_yaml());
          r.set_spec_name(job.request.spec_name());
          r.set_parallelism(job.request.parallelism());
          for (const auto& p : placement) *r.add_placement() = p;
        }
        auto* ref = r.add_tasks();
        ref->set_job_id(job.id);
        ref->set_attempt(job.attempt);
        ref->set_vertex(v.id);
        ref->set_subtask(s);
      }
    }
  }
  auto fail = [&](const std::string& reason) {
    absl::MutexLock lock(&mu_);
    auto it = jobs_.find(job_id);
    if (it != jobs_.end()) FailJob(it->second, reason);
  };
  for (auto& [worker_id, req] : requests) {
    grpc::ClientContext ctx;
    ctx.set_deadline(Deadline(10));
    proto::Ack ack;
    grpc::Status s = stubs[worker_id]->DeployTasks(&ctx, req, &ack);
    if (!s.ok()) {
      return fail(absl::StrCat("deploying to worker ", worker_id, " failed: ", s.error_message()));
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
  return JobInfoLocked(it->second);
}

proto::JobInfo Coordinator::JobInfoLocked(const Job& job) const {
  proto::JobInfo info;
  info.set_job_id(job.id);
  info.set_name(job.spec->name);
  info.set_state(job.state);
  info.set_error(job.error);
  info.set_submit_time_ms(job.submit_ms);
  info.set_end_time_ms(job.end_ms);
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
      uint64_t in = 0, out = 0;
      for (const auto& t : job.tasks[v.id]) {
        in += t.records_in[k];
        out += t.records_out[k];
      }
      oi->set_records_in(in);
      oi->set_records_out(out);
      oi->set_records_in_per_s(job.in_rate[v.ops[k]]);
      oi->set_records_out_per_s(job.out_rate[v.ops[k]]);
    }
    for (int s = 0; s < v.parallelism; ++s) {
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
        "job ", job_id, " already ended (", proto::JobState_Name(job.state), ")"));
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
  MaybeCompleteJob(job);
  return absl::OkStatus();
}

proto::ListWorkersResponse Coordinator::ListWorkers() {
  proto::ListWorkersResponse resp;
  absl::MutexLock lock(&mu_);
  int64_t now = options_.clock->NowNanos();
  for (const auto& [id, w] : workers_) {
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

void Coordinator::LoseWorker(const std::string& worker_id, int64_t age_nanos) {
  auto wit = workers_.find(worker_id);
  if (wit == workers_.end()) return;
  std::string desc = absl::StrFormat("worker %s (%s) lost: no heartbeat for %.1f s", worker_id,
                                     wit->second.data_address, age_nanos / 1e9);
  spdlog::error("{}", desc);
  const std::string data_address = wit->second.data_address;
  workers_.erase(wit);
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
    if (affected) FailJob(job, desc);
    // A job that already failed because its channels to this worker broke: the lost worker
    // is the root cause; say so first.
    if (job.state == proto::JOB_FAILED &&
        job.error.find(" to worker " + data_address) != std::string::npos &&
        job.error.find(desc) == std::string::npos) {
      job.error = absl::StrCat(desc, "; first symptom: ", job.error);
    }
    MaybeCompleteJob(job);
  }
}

void Coordinator::MonitorLoop() {
  const int64_t timeout = options_.heartbeat_timeout_ms * 1'000'000;
  int64_t last_rates = options_.clock->NowNanos();
  while (true) {
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(&stopping_), absl::Milliseconds(100));
    if (stopping_) return;
    int64_t now = options_.clock->NowNanos();
    std::vector<std::pair<std::string, int64_t>> lost;
    for (const auto& [id, w] : workers_) {
      if (now - w.last_heartbeat_nanos > timeout) lost.push_back({id, now - w.last_heartbeat_nanos});
    }
    for (const auto& [id, age] : lost) LoseWorker(id, age);
    if (now - last_rates >= 1'000'000'000) {
      last_rates = now;
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

}  // namespace sluice::coordinator
