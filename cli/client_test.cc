#include "cli/client.h"

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_matchers.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"

namespace sluice::cli {
namespace {

using ::sluice::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::Not;

// A coordinator that answers every ListJobs with UNAVAILABLE on purpose (not ready).
class NotReadyCoordinator final : public proto::Coordinator::Service {
  grpc::Status ListJobs(grpc::ServerContext*, const proto::ListJobsRequest*, proto::ListJobsResponse*) override {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, "not ready: recovering jobs from the HA store");
  }
};

std::unique_ptr<grpc::Server> Serve(grpc::Service* service, int* port) {
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), port);
  builder.RegisterService(service);
  return builder.BuildAndStart();
}

// An UNAVAILABLE answer shows the coordinator's message; only a failed connection says
// "unreachable" (with the address).
TEST(CoordinatorClientTest, UnavailableAnswerIsNotUnreachable) {
  NotReadyCoordinator service;
  int port = 0;
  std::unique_ptr<grpc::Server> server = Serve(&service, &port);
  ASSERT_NE(server, nullptr);
  const std::string address = absl::StrCat("127.0.0.1:", port);
  CoordinatorClient client(address, 5000);
  EXPECT_THAT(client.ListJobs(),
              StatusIs(absl::StatusCode::kUnavailable,
                       ::testing::AllOf(HasSubstr(absl::StrCat("the coordinator at ", address,
                                                               " is unavailable: not ready: recovering jobs")),
                                        Not(HasSubstr("unreachable")))));
  server->Shutdown();
  server->Wait();

  // Nothing listens there now: a transport failure.
  CoordinatorClient gone(address, 2000);
  EXPECT_THAT(gone.ListJobs(), StatusIs(absl::StatusCode::kUnavailable,
                                        HasSubstr(absl::StrCat("coordinator unreachable at ", address))));
}

// A coordinator whose job ends at the third WaitJob; it counts the calls of each kind.
class EndingCoordinator final : public proto::Coordinator::Service {
 public:
  grpc::Status WaitJob(grpc::ServerContext*, const proto::WaitJobRequest* req, proto::JobInfo* resp) override {
    timeouts.push_back(req->timeout_ms());
    resp->set_job_id(req->job_id());
    resp->set_state(timeouts.size() < 3 ? proto::JOB_RUNNING : proto::JOB_FINISHED);
    return grpc::Status::OK;
  }
  grpc::Status GetJob(grpc::ServerContext*, const proto::JobRef*, proto::JobInfo*) override {
    ++get_jobs;
    return grpc::Status(grpc::StatusCode::INTERNAL, "GetJob called");
  }
  std::vector<int64_t> timeouts;  // of every WaitJob call
  int get_jobs = 0;
};

// An older coordinator: no WaitJob (UNIMPLEMENTED); its job has ended.
class OldCoordinator final : public proto::Coordinator::Service {
 public:
  grpc::Status GetJob(grpc::ServerContext*, const proto::JobRef* req, proto::JobInfo* resp) override {
    ++get_jobs;
    resp->set_job_id(req->job_id());
    resp->set_state(proto::JOB_CANCELLED);
    return grpc::Status::OK;
  }
  int get_jobs = 0;
};

// Waiting for a job's end is long polls of WaitJob (no GetJob polling), one progress call per
// poll that returned before the end; against an older coordinator, GetJob.
TEST(CoordinatorClientTest, WaitForEndLongPollsWaitJob) {
  EndingCoordinator service;
  int port = 0;
  std::unique_ptr<grpc::Server> server = Serve(&service, &port);
  ASSERT_NE(server, nullptr);
  CoordinatorClient client(absl::StrCat("127.0.0.1:", port), 5000);
  int progress = 0;
  absl::StatusOr<proto::JobInfo> info =
      client.WaitForEnd("j1", 2000, [&](const proto::JobInfo& i) {
        EXPECT_EQ(i.state(), proto::JOB_RUNNING);
        ++progress;
      });
  ASSERT_OK(info);
  EXPECT_EQ(info->state(), proto::JOB_FINISHED);
  EXPECT_EQ(info->job_id(), "j1");
  EXPECT_EQ(progress, 2);
  EXPECT_THAT(service.timeouts, ::testing::ElementsAre(2000, 2000, 2000));
  EXPECT_EQ(service.get_jobs, 0);
  server->Shutdown();

  OldCoordinator old;
  std::unique_ptr<grpc::Server> old_server = Serve(&old, &port);
  ASSERT_NE(old_server, nullptr);
  CoordinatorClient old_client(absl::StrCat("127.0.0.1:", port), 5000);
  info = old_client.WaitForEnd("j2", 10);
  ASSERT_OK(info);
  EXPECT_EQ(info->state(), proto::JOB_CANCELLED);
  EXPECT_EQ(old.get_jobs, 1);
  old_server->Shutdown();
}

}  // namespace
}  // namespace sluice::cli

namespace sluice::cli {
namespace {

// Savepoint paths are sent to the coordinator, whose working directory is not the user's.
TEST(AbsoluteLocalPathTest, RelativePathsAreTakenFromTheWorkingDirectory) {
  const std::string cwd = std::filesystem::current_path().string();
  EXPECT_EQ(AbsoluteLocalPath("sp/savepoint-job-1-3"), cwd + "/sp/savepoint-job-1-3");
  EXPECT_EQ(AbsoluteLocalPath("./sp/../sp2"), cwd + "/sp2");
  EXPECT_EQ(AbsoluteLocalPath("/tmp/sp"), "/tmp/sp");
  EXPECT_EQ(AbsoluteLocalPath(""), "");
}

}  // namespace
}  // namespace sluice::cli
