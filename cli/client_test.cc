#include "cli/client.h"

#include <filesystem>
#include <memory>
#include <string>

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
