#include "cli/client.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "grpcpp/grpcpp.h"

namespace sluice::cli {

std::string AbsoluteLocalPath(const std::string& path) {
  if (path.empty()) return path;
  std::error_code ec;
  std::filesystem::path abs = std::filesystem::absolute(path, ec);
  return ec ? path : abs.lexically_normal().string();
}

CoordinatorClient::CoordinatorClient(const std::string& address, int deadline_ms)
    : address_(address),
      deadline_ms_(deadline_ms),
      channel_(grpc::CreateChannel(address, grpc::InsecureChannelCredentials())),
      stub_(proto::Coordinator::NewStub(channel_)) {}

absl::Status CoordinatorClient::Convert(const grpc::Status& s) const {
  if (s.ok()) return absl::OkStatus();
  if (s.error_code() != grpc::StatusCode::UNAVAILABLE &&
      s.error_code() != grpc::StatusCode::DEADLINE_EXCEEDED) {
    return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
  }
  // A connected channel means the coordinator itself answered (or was too slow); otherwise no
  // connection could be made. The channel's state says which, not the error text.
  if (channel_->GetState(/*try_to_connect=*/false) != GRPC_CHANNEL_READY) {
    return absl::UnavailableError(
        absl::StrCat("coordinator unreachable at ", address_, " (", s.error_message(), ")"));
  }
  if (s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
    return absl::UnavailableError(absl::StrCat("the coordinator at ", address_, " did not answer within ",
                                               deadline_ms_, " ms"));
  }
  return absl::UnavailableError(absl::StrCat("the coordinator at ", address_, " is unavailable: ", s.error_message()));
}

#define SLUICE_CLIENT_CALL(method, req, resp)                                              \
  grpc::ClientContext ctx;                                                                 \
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(deadline_ms_)); \
  grpc::Status gs = stub_->method(&ctx, req, &resp);                                       \
  if (!gs.ok()) return Convert(gs)

absl::StatusOr<proto::SubmitJobResponse> CoordinatorClient::Submit(const std::string& yaml,
                                                                   const std::string& name,
                                                                   int parallelism) {
  proto::SubmitJobRequest req;
  req.set_spec_yaml(yaml);
  req.set_spec_name(name);
  req.set_parallelism(parallelism);
  proto::SubmitJobResponse resp;
  SLUICE_CLIENT_CALL(SubmitJob, req, resp);
  return resp;
}

absl::StatusOr<proto::JobInfo> CoordinatorClient::GetJob(const std::string& job_id) {
  proto::JobRef req;
  req.set_job_id(job_id);
  proto::JobInfo resp;
  SLUICE_CLIENT_CALL(GetJob, req, resp);
  return resp;
}

absl::StatusOr<proto::JobInfo> CoordinatorClient::WaitJob(const std::string& job_id, int timeout_ms) {
  if (!no_wait_job_) {
    proto::WaitJobRequest req;
    req.set_job_id(job_id);
    req.set_timeout_ms(timeout_ms);
    proto::JobInfo resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(timeout_ms + deadline_ms_));
    grpc::Status gs = stub_->WaitJob(&ctx, req, &resp);
    if (gs.ok()) return resp;
    if (gs.error_code() != grpc::StatusCode::UNIMPLEMENTED) return Convert(gs);
    no_wait_job_ = true;  // an older coordinator
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(std::clamp(timeout_ms, 0, 200)));
  return GetJob(job_id);
}

absl::StatusOr<proto::JobInfo> CoordinatorClient::WaitForEnd(
    const std::string& job_id, int progress_ms, const std::function<void(const proto::JobInfo&)>& progress) {
  while (true) {
    SLUICE_ASSIGN_OR_RETURN(proto::JobInfo info, WaitJob(job_id, progress_ms));
    if (JobEnded(info.state())) return info;
    if (progress) progress(info);
  }
}

bool JobEnded(proto::JobState s) {
  return s == proto::JOB_FINISHED || s == proto::JOB_FAILED || s == proto::JOB_CANCELLED;
}

absl::StatusOr<proto::ListJobsResponse> CoordinatorClient::ListJobs() {
  proto::ListJobsRequest req;
  proto::ListJobsResponse resp;
  SLUICE_CLIENT_CALL(ListJobs, req, resp);
  return resp;
}

absl::Status CoordinatorClient::Cancel(const std::string& job_id) {
  proto::JobRef req;
  req.set_job_id(job_id);
  proto::Ack resp;
  SLUICE_CLIENT_CALL(CancelJob, req, resp);
  return absl::OkStatus();
}

absl::StatusOr<proto::ListWorkersResponse> CoordinatorClient::ListWorkers() {
  proto::ListWorkersRequest req;
  proto::ListWorkersResponse resp;
  SLUICE_CLIENT_CALL(ListWorkers, req, resp);
  return resp;
}

absl::StatusOr<std::string> CoordinatorClient::Savepoint(const std::string& job_id,
                                                         const std::string& dir, bool stop) {
  proto::SavepointRequest req;
  req.set_job_id(job_id);
  req.set_dir(dir);
  req.set_stop(stop);
  proto::SavepointResponse resp;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::minutes(5));
  grpc::Status gs = stub_->TriggerSavepoint(&ctx, req, &resp);
  if (!gs.ok()) return Convert(gs);
  return resp.path();
}

absl::StatusOr<proto::SubmitJobResponse> CoordinatorClient::SubmitRestoring(
    const std::string& yaml, const std::string& name, int parallelism, const std::string& savepoint,
    bool allow_non_restored_state) {
  proto::SubmitJobRequest req;
  req.set_spec_yaml(yaml);
  req.set_spec_name(name);
  req.set_parallelism(parallelism);
  req.set_from_savepoint(savepoint);
  req.set_allow_non_restored_state(allow_non_restored_state);
  proto::SubmitJobResponse resp;
  SLUICE_CLIENT_CALL(SubmitJob, req, resp);
  return resp;
}

std::string JobStateName(proto::JobState s) {
  std::string n = proto::JobState_Name(s);
  return n.rfind("JOB_", 0) == 0 ? n.substr(4) : n;
}

std::string TaskStateName(proto::TaskState s) {
  std::string n = proto::TaskState_Name(s);
  return n.rfind("TASK_", 0) == 0 ? n.substr(5) : n;
}

}  // namespace sluice::cli
