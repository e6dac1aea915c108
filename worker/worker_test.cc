#include "worker/worker.h"

#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "checkpoint/checkpoint_storage.h"
#include "common/status_matchers.h"
#include "common/testing/fault_injecting_filesystem.h"
#include "common/testing/wait_for.h"
#include "connectors/connector_types.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "operators/operator_types.h"
#include "plan/job_graph.h"
#include "plan/job_spec.h"
#include "plan/plan_codec.h"

namespace sluice::worker {
namespace {

using ::testing::HasSubstr;

constexpr char kJob[] = R"y(name: tiny
operators:
  - id: gen
    type: datagen
    count: 10
    fields: [{name: x, type: int64, expr: seq}]
  - id: f
    type: filter
    where: x > 3
  - id: out
    type: blackhole
)y";

// A worker (its coordinator is nowhere: it keeps trying to register, which deployments do
// not need) and a client of its Worker service, as the coordinator calls it.
class WorkerDeployTest : public ::testing::Test {
 protected:
  void SetUp() override {
    WorkerOptions options;
    options.coordinator = "127.0.0.1:1";
    options.http_port = -1;
    options.work_dir = absl::StrCat(::testing::TempDir(), "/worker_deploy_test");
    options.filesystem = &fs_;
    worker_ = std::make_unique<Worker>(options);
    ASSERT_OK(worker_->Start());
    stub_ = proto::Worker::NewStub(
        grpc::CreateChannel(worker_->data_address(), grpc::InsecureChannelCredentials()));
    plan::OperatorTypeCatalog catalog;
    ASSERT_OK(ops::RegisterBuiltinOperatorTypes(&catalog));
    ASSERT_OK(connectors::RegisterConnectorOperatorTypes(&catalog));
    absl::StatusOr<plan::JobSpec> spec = plan::ParseJobSpec(kJob, "job.yaml", catalog);
    ASSERT_OK(spec);
    f_line_ = spec->operators[1].line;
    plan_ = plan::EncodeJobPlan(*spec, plan::BuildJobGraph(*spec));
  }
  void TearDown() override {
    fs_.SetHook(nullptr);
    worker_->Stop();
  }

  // Deploys every subtask of `plan` (one vertex of parallelism 1) on the worker, restoring
  // from the checkpoint whose metadata is at `restore_metadata` ("": none).
  grpc::Status Deploy(const proto::JobPlan& plan, const std::string& restore_metadata = "") {
    proto::DeployTasksRequest req;
    req.set_restore_metadata(restore_metadata);
    req.set_restore_dir("/ckpt/job-1");
    req.set_job_id("job-1");
    req.set_attempt(1);
    *req.mutable_plan() = plan;
    proto::TaskRef* t = req.add_tasks();
    t->set_job_id("job-1");
    t->set_attempt(1);
    t->set_vertex(0);
    t->set_subtask(0);
    proto::VertexPlacement* p = req.add_placement();
    p->set_vertex(0);
    p->add_data_addresses(worker_->data_address());
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    proto::Ack ack;
    return stub_->DeployTasks(&ctx, req, &ack);
  }

  grpc::Status StartTasks() {
    proto::JobRef job;
    job.set_job_id("job-1");
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    proto::Ack ack;
    return stub_->StartTasks(&ctx, job, &ack);
  }

  // Waits (up to 30 s) until the job's task has ended; returns its status.
  proto::TaskStatus AwaitTaskEnd() {
    proto::TaskStatus last;
    EXPECT_TRUE(testing::WaitFor(
        [&] {
          std::vector<proto::TaskStatus> st = worker_->TaskStatusesForTest("job-1");
          if (st.size() != 1) return false;
          last = st[0];
          return last.state() == proto::TASK_FINISHED || last.state() == proto::TASK_FAILED ||
                 last.state() == proto::TASK_CANCELLED;
        },
        std::chrono::seconds(30), "the task to end", std::chrono::milliseconds(5)))
        << last.ShortDebugString();
    return last;
  }

  // Metadata of checkpoint 1 of job-1 (no state: gen -> f -> out keeps none), written to fs_.
  std::string WriteMetadata() {
    proto::CheckpointMetadata md;
    md.set_job_id("job-1");
    md.set_checkpoint_id(1);
    absl::StatusOr<std::string> path = checkpoint::CheckpointStorage(&fs_).WriteMetadata("/ckpt/job-1", md);
    EXPECT_OK(path.status());
    return path.ok() ? *path : "";
  }

  testing::FaultInjectingFileSystem fs_;  // checkpoint storage; outlives worker_
  std::unique_ptr<Worker> worker_;
  std::unique_ptr<proto::Worker::Stub> stub_;
  proto::JobPlan plan_;
  int f_line_ = 0;
};

TEST_F(WorkerDeployTest, DeploysThePlan) {
  ASSERT_EQ(plan_.vertices_size(), 1);  // gen -> f -> out, chained
  grpc::Status s = Deploy(plan_);
  EXPECT_TRUE(s.ok()) << s.error_message();
}

TEST_F(WorkerDeployTest, RefusesUnknownOperatorTypeWithTheOperator) {
  plan_.mutable_operators(1)->set_type("fitler");
  grpc::Status s = Deploy(plan_);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(),
              HasSubstr(absl::StrCat("cannot deploy job job-1: job.yaml:", f_line_,
                                     ":5: operator 'f' (fitler): unknown operator type 'fitler' "
                                     "on this worker")));
}

TEST_F(WorkerDeployTest, RefusesOptionsItsTypeRefuses) {
  plan_.mutable_operators(1)->set_options_yaml("where: y > 3");
  grpc::Status s = Deploy(plan_);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(),
              HasSubstr(absl::StrCat("cannot deploy job job-1: job.yaml:", f_line_,
                                     ":5: operator 'f' (filter): options refused by this worker: "
                                     "options of operator 'f':1:8: ")));
  EXPECT_THAT(s.error_message(), HasSubstr("'y'"));
}

TEST_F(WorkerDeployTest, RefusesNewerPlanFormat) {
  plan_.set_format_version(plan::kJobPlanFormatVersion + 1);
  grpc::Status s = Deploy(plan_);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(),
              HasSubstr(absl::StrCat("cannot deploy job job-1: job plan format version ",
                                     plan::kJobPlanFormatVersion + 1, " is newer than this worker's")));
  // The plan was refused as a whole: the good one still deploys.
  plan_.set_format_version(plan::kJobPlanFormatVersion);
  grpc::Status ok = Deploy(plan_);
  EXPECT_TRUE(ok.ok()) << ok.error_message();
}

TEST_F(WorkerDeployTest, DeployDoesNotWaitForTheRestoreMetadata) {
  const std::string metadata = WriteMetadata();
  absl::Notification reading, release;
  fs_.SetHook([&](testing::FsOp op, const std::string& path) {
    if (op == testing::FsOp::kRead && path == metadata) {
      reading.Notify();
      release.WaitForNotification();
    }
    return absl::OkStatus();
  });
  // The read would block the deploy RPC until its deadline if the RPC's thread did it.
  grpc::Status s = Deploy(plan_, metadata);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_FALSE(reading.HasBeenNotified()) << "nothing is read before the task starts";
  s = StartTasks();
  ASSERT_TRUE(s.ok()) << s.error_message();
  reading.WaitForNotification();  // the task thread reads it, as the first step of its restore
  EXPECT_EQ(worker_->TaskStatusesForTest("job-1").at(0).state(), proto::TASK_RUNNING);
  release.Notify();
  proto::TaskStatus st = AwaitTaskEnd();
  EXPECT_EQ(st.state(), proto::TASK_FINISHED) << st.error();
  ASSERT_EQ(st.operators_size(), 3);
  // Restored from checkpoint 1, whose datagen holds no sequence split: it produced nothing (a
  // fresh start would pass x = 4..9 to the sink).
  EXPECT_EQ(st.operators(0).records_out(), 0);
  EXPECT_EQ(st.operators(2).records_in(), 0);
}

TEST_F(WorkerDeployTest, UnreadableRestoreMetadataFailsTheTaskWithTheReason) {
  ASSERT_OK(fs_.CreateDirs("/ckpt/job-1/chk-1"));
  ASSERT_OK(fs_.WriteFile("/ckpt/job-1/chk-1/_metadata", "not a checkpoint"));
  grpc::Status s = Deploy(plan_, "/ckpt/job-1/chk-1/_metadata");
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_TRUE(StartTasks().ok());
  proto::TaskStatus st = AwaitTaskEnd();
  EXPECT_EQ(st.state(), proto::TASK_FAILED);
  EXPECT_THAT(st.error(), HasSubstr("cannot decode checkpoint metadata /ckpt/job-1/chk-1/_metadata"));
  EXPECT_THAT(st.error(), HasSubstr("task job-1/"));
}

}  // namespace
}  // namespace sluice::worker
