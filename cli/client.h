#pragma once

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "proto/control.grpc.pb.h"

namespace sluice::cli {

// A thin client of the coordinator's gRPC API, with a deadline on every call and errors as
// absl::Status. kUnavailable either names the address as unreachable (no connection), or
// carries the coordinator's own message when it answered UNAVAILABLE (e.g. not ready yet) or
// says it did not answer in time.
// Thread-compatible.
// `path` (a savepoint or checkpoint directory, or where to write one) made absolute against
// this process's working directory: the coordinator reads and writes such paths, and a relative
// one would be taken from the coordinator's own working directory. Empty stays empty.
std::string AbsoluteLocalPath(const std::string& path);

class CoordinatorClient {
 public:
  explicit CoordinatorClient(const std::string& address, int deadline_ms = 10000);

  absl::StatusOr<proto::SubmitJobResponse> Submit(const std::string& yaml, const std::string& name,
                                                  int parallelism);
  absl::StatusOr<proto::JobInfo> GetJob(const std::string& job_id);
  // The job's info once it has ended, or after about `timeout_ms` with its info as of then (the
  // coordinator's WaitJob long poll: no polling). Against a coordinator without WaitJob, the
  // job's info now (GetJob) after waiting `timeout_ms` at most 200 ms, as the CLI polled before.
  absl::StatusOr<proto::JobInfo> WaitJob(const std::string& job_id, int timeout_ms);
  // Loops on WaitJob() until the job has ended; calls `progress` (if any) with the job's info
  // every `progress_ms` while it runs. Returns the ended job's info.
  absl::StatusOr<proto::JobInfo> WaitForEnd(const std::string& job_id, int progress_ms,
                                            const std::function<void(const proto::JobInfo&)>& progress = nullptr);
  absl::StatusOr<proto::ListJobsResponse> ListJobs();
  absl::Status Cancel(const std::string& job_id);
  absl::StatusOr<proto::ListWorkersResponse> ListWorkers();
  // Takes a savepoint (and with `stop`, stops the job); returns its path.
  absl::StatusOr<std::string> Savepoint(const std::string& job_id, const std::string& dir, bool stop);
  absl::StatusOr<proto::SubmitJobResponse> SubmitRestoring(const std::string& yaml,
                                                           const std::string& name, int parallelism,
                                                           const std::string& savepoint,
                                                           bool allow_non_restored_state);

  const std::string& address() const { return address_; }

 private:
  absl::Status Convert(const class grpc::Status& s) const;

  std::string address_;
  int deadline_ms_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<proto::Coordinator::Stub> stub_;
  bool no_wait_job_ = false;  // the coordinator answered WaitJob with UNIMPLEMENTED
};

// Whether `s` is a final job state (finished, failed, cancelled).
bool JobEnded(proto::JobState s);

// "RUNNING" for proto::JOB_RUNNING, etc.
std::string JobStateName(proto::JobState s);
std::string TaskStateName(proto::TaskState s);

}  // namespace sluice::cli
