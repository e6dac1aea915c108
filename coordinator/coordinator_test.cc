#include "coordinator/coordinator.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <functional>
#include <map>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "checkpoint/checkpoint_storage.h"
#include "common/status_matchers.h"
#include "common/testing/fault_injecting_filesystem.h"
#include "common/testing/wait_for.h"
#include "coordinator/ha_store.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"

namespace sluice::coordinator {
namespace {

using ::sluice::testing::FaultInjectingFileSystem;
using ::sluice::testing::FsOp;
using ::testing::HasSubstr;

// A worker that accepts every call and records checkpoint triggers; the test acknowledges them
// through Coordinator::AcknowledgeCheckpoint.
class FakeWorker final : public proto::Worker::Service {
 public:
  grpc::Status DeployTasks(grpc::ServerContext*, const proto::DeployTasksRequest* req, proto::Ack*) override {
    absl::MutexLock lock(&mu_);
    deployed_.push_back(*req);
    return grpc::Status::OK;
  }
  grpc::Status StartTasks(grpc::ServerContext*, const proto::JobRef*, proto::Ack*) override {
    return grpc::Status::OK;
  }
  grpc::Status CancelTasks(grpc::ServerContext*, const proto::JobRef*, proto::Ack*) override {
    return grpc::Status::OK;
  }
  grpc::Status TriggerCheckpoint(grpc::ServerContext*, const proto::CheckpointTrigger* req, proto::Ack*) override {
    absl::MutexLock lock(&mu_);
    triggered_.push_back(req->checkpoint_id());
    return grpc::Status::OK;
  }
  grpc::Status NotifyCheckpointComplete(grpc::ServerContext*, const proto::CheckpointTrigger* req,
                                        proto::Ack*) override {
    absl::MutexLock lock(&mu_);
    completed_.push_back(req->checkpoint_id());
    return grpc::Status::OK;
  }
  // Waits (up to 10 s) until checkpoint `id` was triggered.
  bool WaitTriggered(int64_t id) {
    absl::MutexLock lock(&mu_);
    auto seen = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return std::find(triggered_.begin(), triggered_.end(), id) != triggered_.end();
    };
    return mu_.AwaitWithTimeout(absl::Condition(&seen), absl::Seconds(10));
  }
  std::vector<int64_t> completed() {
    absl::MutexLock lock(&mu_);
    return completed_;
  }
  std::vector<proto::DeployTasksRequest> deployed() {
    absl::MutexLock lock(&mu_);
    return deployed_;
  }

 private:
  absl::Mutex mu_;
  std::vector<int64_t> triggered_ ABSL_GUARDED_BY(mu_);
  std::vector<int64_t> completed_ ABSL_GUARDED_BY(mu_);
  std::vector<proto::DeployTasksRequest> deployed_ ABSL_GUARDED_BY(mu_);
};

// A loopback TCP proxy in front of `target_port` that holds every connection for `delay` before
// it forwards a byte: a worker on a loaded host or behind a slow network, whose connection takes
// that long to come up. A connection the client closes while it is held is counted as given up.
// Connections are served one at a time by the proxy's thread; the destructor closes them and
// joins it.
class SlowConnectProxy {
 public:
  SlowConnectProxy(int target_port, std::chrono::milliseconds delay) : target_port_(target_port), delay_(delay) {
    listen_fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr = Loopback(0);
    socklen_t len = sizeof(addr);
    if (listen_fd_ < 0 || bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), len) != 0 ||
        listen(listen_fd_, 8) != 0 || getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0 ||
        pipe(wake_) != 0) {
      ADD_FAILURE() << "cannot set up the proxy: " << strerror(errno);
      return;
    }
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { Run(); });
  }
  ~SlowConnectProxy() {
    if (thread_.joinable()) {
      char b = 0;
      (void)!write(wake_[1], &b, 1);
      thread_.join();
    }
    for (int fd : {listen_fd_, wake_[0], wake_[1]}) {
      if (fd >= 0) close(fd);
    }
  }
  int port() const { return port_; }
  int given_up() const { return given_up_.load(); }

 private:
  static sockaddr_in Loopback(int port) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(port);
    return addr;
  }
  void Run() {
    while (true) {
      pollfd fds[2] = {{wake_[0], POLLIN, 0}, {listen_fd_, POLLIN, 0}};
      if (poll(fds, 2, -1) < 0 || fds[0].revents != 0) return;
      const int client = accept(listen_fd_, nullptr, nullptr);
      if (client < 0) continue;
      const bool stop = Serve(client);
      close(client);
      if (stop) return;
    }
  }
  // Holds `client` for delay_ (unless it hangs up first), then pumps bytes both ways until
  // either side closes. Returns whether the proxy is being destroyed.
  bool Serve(int client) {
    pollfd held[2] = {{wake_[0], POLLIN, 0}, {client, POLLRDHUP, 0}};
    const int n = poll(held, 2, static_cast<int>(delay_.count()));
    if (n < 0 || held[0].revents != 0) return true;
    if (held[1].revents != 0) {
      ++given_up_;
      return false;
    }
    const int server = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr = Loopback(target_port_);
    if (server < 0 || connect(server, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      if (server >= 0) close(server);
      return false;
    }
    bool stop = false;
    char buf[16384];
    while (true) {
      pollfd fds[3] = {{wake_[0], POLLIN, 0}, {client, POLLIN, 0}, {server, POLLIN, 0}};
      if (poll(fds, 3, -1) < 0 || fds[0].revents != 0) {
        stop = true;
        break;
      }
      bool closed = false;
      for (auto [from, to] : {std::pair{1, server}, std::pair{2, client}}) {
        if (fds[from].revents == 0) continue;
        const ssize_t got = read(fds[from].fd, buf, sizeof(buf));
        if (got <= 0 || !WriteAll(to, buf, got)) closed = true;
      }
      if (closed) break;
    }
    close(server);
    return stop;
  }
  static bool WriteAll(int fd, const char* data, ssize_t size) {
    while (size > 0) {
      const ssize_t wrote = write(fd, data, size);
      if (wrote <= 0) return false;
      data += wrote;
      size -= wrote;
    }
    return true;
  }

  const int target_port_;
  const std::chrono::milliseconds delay_;
  int listen_fd_ = -1;
  int wake_[2] = {-1, -1};
  int port_ = 0;
  std::atomic<int> given_up_{0};
  std::thread thread_;
};

// Waits (up to 10 s) until `cond` holds.
bool WaitFor(const std::function<bool()>& cond) {
  return testing::WaitFor(cond, std::chrono::seconds(10), "the condition", std::chrono::milliseconds(5));
}

std::string JobYaml(const std::string& checkpoint) {
  return absl::StrCat(R"(
name: t
parallelism: 2
operators:
  - id: gen
    type: datagen
    fields:
      - {name: k, type: int64, expr: "seq % 7"}
  - id: sink
    type: blackhole
checkpoint: )", checkpoint, "\n");
}

// A coordinator on a fault-injecting filesystem and a fake clock, with one fake worker.
class CoordinatorTest : public ::testing::Test {
 protected:
  void SetUp() override { StartCoordinator(); }
  // A coordinator on fs_ (the HA store and checkpoints in it), with a new fake worker registered
  // (a new address each time: no connection state carries over from an earlier coordinator).
  void StartCoordinator() {
    if (worker_server_ != nullptr) worker_server_->Shutdown();
    worker_server_.reset();
    worker_ = std::make_unique<FakeWorker>();
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    // A port of its own: with SO_REUSEPORT, a port some stopped server still holds could be
    // handed out again, and a deployment sent there.
    builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
    builder.RegisterService(worker_.get());
    worker_server_ = builder.BuildAndStart();
    ASSERT_NE(port, 0);
    worker_port_ = port;
    worker_address_ = absl::StrCat("127.0.0.1:", port);
    CoordinatorOptions options;
    options.checkpoint_dir = "/ck";
    options.savepoint_dir = "/sp";
    options.ha_dir = "/ha";
    options.http_port = -1;
    options.clock = &clock_;
    options.file_system = &fs_;
    coordinator_ = std::make_unique<Coordinator>(options);
    ASSERT_OK(coordinator_->Start());
    proto::RegisterWorkerRequest reg;
    reg.set_slots(2);
    reg.set_data_address(worker_address_);
    absl::StatusOr<proto::RegisterWorkerResponse> r = coordinator_->RegisterWorker(reg);
    ASSERT_OK(r);
    worker_id_ = r->worker_id();
  }
  // Returns once the I/O thread has run everything queued so far and what that queued.
  void WaitForIo() {
    for (int i = 0; i < 3; ++i) {
      absl::Notification idle;
      coordinator_->WhenDurable([&] { idle.Notify(); });
      ASSERT_TRUE(idle.WaitForNotificationWithTimeout(absl::Seconds(10)));
    }
  }
  // Stops `job` with a savepoint (answered through `done`): its tasks acknowledge checkpoint 1
  // and the job is CANCELLING, the tasks told to stop, when this returns.
  void StopWithSavepoint(const std::string& job, std::function<void(absl::StatusOr<std::string>)> done) {
    proto::SavepointRequest req;
    req.set_job_id(job);
    req.set_stop(true);
    ASSERT_OK(coordinator_->TriggerSavepoint(req, std::move(done)));
    ASSERT_TRUE(worker_->WaitTriggered(1));
    AckAll(job, 1);
    ASSERT_TRUE(WaitFor([&] { return State(job) == proto::JOB_CANCELLING; }));
    WaitForIo();
  }
  void TearDown() override {
    fs_.SetHook(nullptr);
    coordinator_->Stop();
    worker_server_->Shutdown();
  }

  std::string SubmitRunning(const std::string& checkpoint) {
    proto::SubmitJobRequest req;
    req.set_spec_yaml(JobYaml(checkpoint));
    absl::StatusOr<proto::SubmitJobResponse> resp = coordinator_->SubmitJob(req);
    EXPECT_OK(resp);
    if (!resp.ok()) return "";
    const std::string id = resp->job_id();
    EXPECT_TRUE(WaitFor([&] { return State(id) == proto::JOB_RUNNING; }));
    return id;
  }
  proto::JobState State(const std::string& job) {
    absl::StatusOr<proto::JobInfo> info = coordinator_->GetJob(job);
    return info.ok() ? info->state() : proto::JOB_FAILED;
  }
  // Calls `fn` with every task of the job's current attempt.
  void ForEachTask(const std::string& job, const std::function<void(const proto::TaskRef&)>& fn) {
    absl::StatusOr<proto::JobInfo> info = coordinator_->GetJob(job);
    ASSERT_OK(info);
    for (const auto& v : info->vertices()) {
      for (int s = 0; s < v.parallelism(); ++s) {
        proto::TaskRef ref;
        ref.set_job_id(job);
        ref.set_attempt(info->attempt());
        ref.set_vertex(v.vertex());
        ref.set_subtask(s);
        fn(ref);
      }
    }
  }
  // The keyed state subtask `ref` snapshots for checkpoint `id`: backend b<subtask> holds one
  // SST, number `id` (the previous one compacted away), and a private MANIFEST.
  static proto::KeyedStateHandle Keyed(const proto::TaskRef& ref, int64_t id) {
    proto::KeyedStateHandle h;
    h.set_operator_id("sink");
    h.set_backend_id(absl::StrCat("b", ref.subtask()));
    h.set_private_dir(absl::StrCat("chk-", id, "/", ref.vertex(), "-", ref.subtask(), "-sink"));
    auto* sst = h.add_files();
    sst->set_shared(true);
    sst->set_local_name(absl::StrFormat("%06d.sst", id));
    sst->set_name(absl::StrCat(h.backend_id(), "-", sst->local_name()));
    auto* manifest = h.add_files();
    manifest->set_name("MANIFEST-000001");
    manifest->set_local_name(manifest->name());
    return h;
  }
  // Uploads every subtask's files for checkpoint `id` durably, as tasks do before they ack.
  void Upload(const std::string& job, int64_t id) {
    const std::string dir = absl::StrCat("/ck/", job);
    ForEachTask(job, [&](const proto::TaskRef& ref) {
      for (const std::string& rel : checkpoint::CheckpointStorage::ReferencedFiles(WithKeyed(ref, id))) {
        const std::string path = JoinPath(dir, rel);
        contents_[path] = absl::StrCat("contents of ", path);
        ASSERT_OK(CreateDirsDurably(fs_, DirName(path)));
        ASSERT_OK(fs_.WriteFile(path + ".tmp", contents_[path]));
        ASSERT_OK(fs_.SyncFile(path + ".tmp"));
        ASSERT_OK(fs_.Rename(path + ".tmp", path));
        ASSERT_OK(fs_.SyncDir(DirName(path)));
      }
    });
  }
  static proto::CheckpointMetadata WithKeyed(const proto::TaskRef& ref, int64_t id) {
    proto::CheckpointMetadata md;
    *md.add_subtasks()->add_keyed() = Keyed(ref, id);
    return md;
  }
  // Every subtask acknowledges checkpoint `id` (with the keyed state Upload() wrote if `keyed`).
  void AckAll(const std::string& job, int64_t id, bool keyed = false) {
    ForEachTask(job, [&](const proto::TaskRef& ref) {
      proto::CheckpointAck ack;
      *ack.mutable_task() = ref;
      ack.set_checkpoint_id(id);
      ack.mutable_state()->set_vertex(ref.vertex());
      ack.mutable_state()->set_subtask(ref.subtask());
      auto* op = ack.mutable_state()->add_operator_state();
      op->set_operator_id("gen");
      op->add_entries(absl::StrCat("position at ", id));
      if (keyed) *ack.mutable_state()->add_keyed() = Keyed(ref, id);
      coordinator_->AcknowledgeCheckpoint(ack);
    });
  }
  std::vector<proto::CheckpointInfo> History(const std::string& job) {
    absl::StatusOr<proto::JobInfo> info = coordinator_->GetJob(job);
    if (!info.ok()) return {};
    return {info->checkpoints().begin(), info->checkpoints().end()};
  }

  FakeClock clock_;
  FaultInjectingFileSystem fs_;
  std::unique_ptr<FakeWorker> worker_;
  std::unique_ptr<grpc::Server> worker_server_;
  std::unique_ptr<Coordinator> coordinator_;
  std::string worker_id_;
  int worker_port_ = 0;
  std::string worker_address_;
  std::map<std::string, std::string> contents_;  // uploaded file -> contents
};

// The savepoint copy runs on the I/O thread: while it is stuck (a filesystem call blocked on a
// latch), heartbeats and status calls are answered.
TEST_F(CoordinatorTest, ASavepointCopyDoesNotBlockHeartbeatsOrStatus) {
  const std::string job = SubmitRunning("{interval: 1h}");
  ASSERT_FALSE(job.empty());
  absl::Notification copy_blocked, release;
  fs_.SetHook([&](FsOp, const std::string& path) {
    if (path.rfind("/sp", 0) == 0) {
      if (!copy_blocked.HasBeenNotified()) copy_blocked.Notify();
      release.WaitForNotification();
    }
    return absl::OkStatus();
  });
  absl::Notification done;
  absl::StatusOr<std::string> result;
  proto::SavepointRequest req;
  req.set_job_id(job);
  ASSERT_OK(coordinator_->TriggerSavepoint(req, [&](absl::StatusOr<std::string> path) {
    result = std::move(path);
    done.Notify();
  }));
  ASSERT_TRUE(worker_->WaitTriggered(1));
  AckAll(job, 1);
  ASSERT_TRUE(copy_blocked.WaitForNotificationWithTimeout(absl::Seconds(10)));

  auto answered = std::async(std::launch::async, [&] {
    proto::HeartbeatRequest hb;
    hb.set_worker_id(worker_id_);
    hb.set_data_address(worker_address_);
    const bool reregister = coordinator_->Heartbeat(hb).reregister();
    // The savepoint being written shows as in progress.
    const std::vector<proto::CheckpointInfo> history = History(job);
    const bool in_progress = !history.empty() && history.back().checkpoint_id() == 1 &&
                             history.back().status() == "IN_PROGRESS" && history.back().savepoint();
    return !reregister && coordinator_->ListJobs().jobs_size() == 1 && in_progress;
  });
  const bool in_time = answered.wait_for(std::chrono::seconds(10)) == std::future_status::ready;
  release.Notify();  // whatever happened, let the copy finish
  ASSERT_TRUE(in_time) << "Heartbeat/ListJobs blocked behind the savepoint copy";
  EXPECT_TRUE(answered.get());

  ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(10)));
  ASSERT_OK(result);
  EXPECT_EQ(*result, absl::StrCat("/sp/savepoint-", job, "-1"));
  checkpoint::CheckpointStorage storage(&fs_);
  absl::StatusOr<proto::CheckpointMetadata> md = storage.ReadMetadata(*result + "/_metadata");
  ASSERT_OK(md);
  EXPECT_TRUE(md->savepoint());
  EXPECT_EQ(md->subtasks_size(), 2);
  // The HA record names the checkpoint before the caller hears of it.
  absl::StatusOr<proto::JobRecord> record = HaStore(&fs_, "/ha").Read(job);
  ASSERT_OK(record);
  EXPECT_EQ(record->latest_metadata(), absl::StrCat("/ck/", job, "/chk-1/_metadata"));
  EXPECT_TRUE(WaitFor([&] { return worker_->completed() == std::vector<int64_t>{1}; }));
}

// A full disk fails checkpoints with the reason in the job's checkpoint history; the failures
// count towards checkpoint.tolerable_failures, and then the job fails over. No metadata is left.
TEST_F(CoordinatorTest, AFullDiskAbortsCheckpointsWithTheReasonAndCountsTowardsTolerableFailures) {
  const std::string job = SubmitRunning("{interval: 1s, tolerable_failures: 1}");
  ASSERT_FALSE(job.empty());
  fs_.SetHook([](FsOp op, const std::string& path) {
    return op == FsOp::kWrite && path.find("_metadata") != std::string::npos
               ? absl::ResourceExhaustedError(absl::StrCat("cannot write ", path, ": No space left on device"))
               : absl::OkStatus();
  });
  ASSERT_TRUE(worker_->WaitTriggered(1));
  AckAll(job, 1);
  ASSERT_TRUE(WaitFor([&] { return !History(job).empty() && History(job).back().status() == "ABORTED"; }));
  proto::CheckpointInfo first = History(job).back();
  EXPECT_EQ(first.checkpoint_id(), 1);
  EXPECT_THAT(first.reason(), HasSubstr("cannot write metadata"));
  EXPECT_THAT(first.reason(), HasSubstr("No space left on device"));
  EXPECT_EQ(State(job), proto::JOB_RUNNING);  // one failure is tolerated

  clock_.AdvanceNanos(1'000'000'000);
  ASSERT_TRUE(worker_->WaitTriggered(2));
  AckAll(job, 2);
  ASSERT_TRUE(WaitFor([&] { return State(job) != proto::JOB_RUNNING; }));
  absl::StatusOr<proto::JobInfo> info = coordinator_->GetJob(job);
  ASSERT_OK(info);
  EXPECT_THAT(info->error(), HasSubstr("No space left on device"));
  EXPECT_THAT(info->error(), HasSubstr("exceed checkpoint.tolerable_failures (1)"));
  EXPECT_TRUE(worker_->completed().empty());
  checkpoint::CheckpointStorage storage(&fs_);
  EXPECT_THAT(storage.FindLatestCompleted(absl::StrCat("/ck/", job)),
              ::sluice::testing::StatusIs(absl::StatusCode::kNotFound, HasSubstr(job)));
}

// A stop with a savepoint answers once the job's tasks have stopped and its slots are free, so
// that `sluice rescale`, which submits the job again at once, finds them (it was told "needs 3
// slot(s) but the cluster has 2 free" while the stopped job's tasks were still cancelling).
TEST_F(CoordinatorTest, StopWithASavepointAnswersOnceTheJobsSlotsAreFree) {
  const std::string job = SubmitRunning("{interval: 1h}");
  ASSERT_FALSE(job.empty());
  absl::Notification done;
  absl::StatusOr<std::string> result;
  int slots_used_at_reply = -1;
  StopWithSavepoint(job, [&](absl::StatusOr<std::string> path) {
    result = std::move(path);
    slots_used_at_reply = coordinator_->ListWorkers().workers(0).slots_used();
    done.Notify();
  });
  if (HasFatalFailure()) return;
  // The tasks have not reported that they stopped: no answer yet.
  EXPECT_FALSE(done.WaitForNotificationWithTimeout(absl::Milliseconds(500)));
  ForEachTask(job, [&](const proto::TaskRef& ref) {
    proto::TaskStatus st;
    *st.mutable_task() = ref;
    st.set_state(proto::TASK_CANCELLED);
    coordinator_->ReportTaskState(st);
  });
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(10)));
  ASSERT_OK(result);
  EXPECT_EQ(*result, absl::StrCat("/sp/savepoint-", job, "-1"));
  EXPECT_EQ(slots_used_at_reply, 0);
  EXPECT_EQ(State(job), proto::JOB_CANCELLED);
}

// Tasks that never report that they stopped (a worker that hangs) delay the answer by 30 s of
// the coordinator's clock at most.
TEST_F(CoordinatorTest, StopWithASavepointAnswersAfter30sIfTheTasksDoNotStop) {
  const std::string job = SubmitRunning("{interval: 1h}");
  ASSERT_FALSE(job.empty());
  absl::Notification done;
  absl::StatusOr<std::string> result;
  StopWithSavepoint(job, [&](absl::StatusOr<std::string> path) {
    result = std::move(path);
    done.Notify();
  });
  if (HasFatalFailure()) return;
  // Second by second, with heartbeats, so that the worker is not taken for lost.
  auto advance = [&](int seconds) {
    for (int i = 0; i < seconds; ++i) {
      clock_.AdvanceNanos(1'000'000'000);
      proto::HeartbeatRequest hb;
      hb.set_worker_id(worker_id_);
      hb.set_data_address(worker_address_);
      EXPECT_FALSE(coordinator_->Heartbeat(hb).reregister());
    }
  };
  advance(29);
  EXPECT_FALSE(done.WaitForNotificationWithTimeout(absl::Milliseconds(300)));
  advance(1);
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(10)));
  ASSERT_OK(result);
  EXPECT_EQ(*result, absl::StrCat("/sp/savepoint-", job, "-1"));
  EXPECT_EQ(State(job), proto::JOB_CANCELLING);
}

// WaitJob, the long poll of `sluice run --wait` and `sluice bench`: answered at once for an
// unknown or ended job, at the job's end (with its final state), or at its deadline on the
// coordinator's clock with the job's state then.
TEST_F(CoordinatorTest, WaitJobAnswersAtTheJobsEndOrAtItsDeadline) {
  absl::StatusOr<proto::JobInfo> unknown;
  coordinator_->WaitJob("nope", 10'000, [&](absl::StatusOr<proto::JobInfo> i) { unknown = std::move(i); });
  EXPECT_THAT(unknown, ::sluice::testing::StatusIs(absl::StatusCode::kNotFound, HasSubstr("nope")));

  const std::string job = SubmitRunning("{interval: 1h}");
  ASSERT_FALSE(job.empty());
  auto heartbeat = [&] {
    proto::HeartbeatRequest hb;
    hb.set_worker_id(worker_id_);
    hb.set_data_address(worker_address_);
    EXPECT_FALSE(coordinator_->Heartbeat(hb).reregister());
  };
  // A poll of 2 s: not answered after 1 s, answered (still running) after 2 s.
  absl::Notification timed_out;
  absl::StatusOr<proto::JobInfo> at_deadline;
  coordinator_->WaitJob(job, 2000, [&](absl::StatusOr<proto::JobInfo> i) {
    at_deadline = std::move(i);
    timed_out.Notify();
  });
  clock_.AdvanceNanos(1'000'000'000);
  heartbeat();
  EXPECT_FALSE(timed_out.WaitForNotificationWithTimeout(absl::Milliseconds(300)));
  clock_.AdvanceNanos(1'000'000'000);
  heartbeat();
  ASSERT_TRUE(timed_out.WaitForNotificationWithTimeout(absl::Seconds(10)));
  ASSERT_OK(at_deadline);
  EXPECT_EQ(at_deadline->state(), proto::JOB_RUNNING);
  EXPECT_EQ(at_deadline->job_id(), job);

  // A poll of a minute is answered when the last task finishes, with the ended job's info.
  absl::Notification ended;
  absl::StatusOr<proto::JobInfo> at_end;
  coordinator_->WaitJob(job, 60'000, [&](absl::StatusOr<proto::JobInfo> i) {
    at_end = std::move(i);
    ended.Notify();
  });
  int reported = 0, tasks = 0;
  ForEachTask(job, [&](const proto::TaskRef&) { ++tasks; });
  ForEachTask(job, [&](const proto::TaskRef& ref) {
    EXPECT_FALSE(ended.HasBeenNotified()) << "answered after " << reported << " of " << tasks << " tasks";
    proto::TaskStatus st;
    *st.mutable_task() = ref;
    st.set_state(proto::TASK_FINISHED);
    coordinator_->ReportTaskState(st);
    ++reported;
  });
  EXPECT_TRUE(ended.HasBeenNotified());  // answered by the last report, not by a later tick
  ASSERT_OK(at_end);
  EXPECT_EQ(at_end->state(), proto::JOB_FINISHED);
  EXPECT_EQ(at_end->spec_yaml(), JobYaml("{interval: 1h}"));

  // An ended job: at once.
  absl::StatusOr<proto::JobInfo> after;
  coordinator_->WaitJob(job, 60'000, [&](absl::StatusOr<proto::JobInfo> i) { after = std::move(i); });
  ASSERT_OK(after);
  EXPECT_EQ(after->state(), proto::JOB_FINISHED);
}

// The job restarts while checkpoint 1's metadata is being written: the new attempt restored from
// before it, so checkpoint 1 must not become the restore point (nor be notified) even though its
// metadata became durable; its files are discarded, and the new attempt checkpoints on.
TEST_F(CoordinatorTest, ACheckpointWhoseJobRestartedWhileItsMetadataWasWrittenIsDiscarded) {
  const std::string job = SubmitRunning("{interval: 1s}");
  ASSERT_FALSE(job.empty());
  absl::Notification write_blocked, release;
  fs_.SetHook([&](FsOp op, const std::string& path) {
    if (op == FsOp::kWrite && path.find("/chk-1/_metadata") != std::string::npos) {
      write_blocked.Notify();
      release.WaitForNotification();
    }
    return absl::OkStatus();
  });
  ASSERT_TRUE(worker_->WaitTriggered(1));
  AckAll(job, 1);
  ASSERT_TRUE(write_blocked.WaitForNotificationWithTimeout(absl::Seconds(10)));

  // A task fails; once the old attempt's tasks have stopped and the restart delay has passed,
  // attempt 2 is deployed from the beginning.
  ForEachTask(job, [&](const proto::TaskRef& ref) {
    proto::TaskStatus st;
    *st.mutable_task() = ref;
    st.set_state(ref.subtask() == 0 ? proto::TASK_FAILED : proto::TASK_CANCELLED);
    st.set_error("boom");
    coordinator_->ReportTaskState(st);
  });
  EXPECT_EQ(State(job), proto::JOB_RESTARTING);
  clock_.AdvanceNanos(1'000'000'000);  // restart.delay
  proto::HeartbeatRequest hb;
  hb.set_worker_id(worker_id_);
  hb.set_data_address(worker_address_);
  EXPECT_FALSE(coordinator_->Heartbeat(hb).reregister());
  ASSERT_TRUE(WaitFor([&] {
    absl::StatusOr<proto::JobInfo> i = coordinator_->GetJob(job);
    return i.ok() && i->attempt() == 2 && i->state() == proto::JOB_RUNNING;
  }));

  release.Notify();
  ASSERT_TRUE(WaitFor([&] {
    for (const auto& c : History(job)) {
      if (c.checkpoint_id() == 1) return c.status() == "ABORTED";
    }
    return false;
  }));
  for (const auto& c : History(job)) {
    if (c.checkpoint_id() == 1) EXPECT_THAT(c.reason(), HasSubstr("restarted while its metadata was written"));
  }
  absl::Notification durable;
  coordinator_->WhenDurable([&] { durable.Notify(); });
  ASSERT_TRUE(durable.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_FALSE(fs_.Exists(absl::StrCat("/ck/", job, "/chk-1")));
  absl::StatusOr<proto::JobRecord> record = HaStore(&fs_, "/ha").Read(job);
  ASSERT_OK(record);
  EXPECT_EQ(record->latest_metadata(), "");
  EXPECT_EQ(record->attempt(), 2);
  EXPECT_TRUE(worker_->completed().empty());

  // Attempt 2 checkpoints as usual, with a new id.
  clock_.AdvanceNanos(1'000'000'000);
  EXPECT_FALSE(coordinator_->Heartbeat(hb).reregister());
  ASSERT_TRUE(worker_->WaitTriggered(2));
  AckAll(job, 2);
  ASSERT_TRUE(WaitFor([&] { return worker_->completed() == std::vector<int64_t>{2}; }));
  record = HaStore(&fs_, "/ha").Read(job);
  ASSERT_OK(record);
  EXPECT_EQ(record->latest_metadata(), absl::StrCat("/ck/", job, "/chk-2/_metadata"));
}

// A task that fails with DATA_LOSS (state it cannot decode) reports the code with its error: the
// job's info and its durable record keep it beside the message.
TEST_F(CoordinatorTest, ATaskFailureKeepsItsStatusCodeInTheJobInfoAndRecord) {
  const std::string job = SubmitRunning("{interval: 1h}");
  ASSERT_FALSE(job.empty());
  ForEachTask(job, [&](const proto::TaskRef& ref) {
    if (ref.vertex() != 0 || ref.subtask() != 1) return;
    proto::TaskStatus st;
    *st.mutable_task() = ref;
    st.set_state(proto::TASK_FAILED);
    st.set_error("task gen#1: cannot decode operator state (job x, operator 'gen' (type datagen), subtask 1)");
    st.set_error_code(static_cast<int>(absl::StatusCode::kDataLoss));
    coordinator_->ReportTaskState(st);
  });
  absl::StatusOr<proto::JobInfo> info = coordinator_->GetJob(job);
  ASSERT_OK(info);
  EXPECT_EQ(info->state(), proto::JOB_RESTARTING);
  EXPECT_THAT(info->error(), HasSubstr("cannot decode operator state"));
  EXPECT_EQ(info->error_code(), static_cast<int>(absl::StatusCode::kDataLoss));
  WaitForIo();
  absl::StatusOr<proto::JobRecord> record = HaStore(&fs_, "/ha").Read(job);
  ASSERT_OK(record);
  EXPECT_EQ(record->error_code(), static_cast<int>(absl::StatusCode::kDataLoss));
}

// A worker whose connection takes a second to come up (a loaded host, a distant network) is
// deployed to, not declared lost: the coordinator's channels gave a connection attempt 100 ms
// (gRPC takes GRPC_ARG_MIN_RECONNECT_BACKOFF_MS as its connect timeout), and a deployment whose
// connection was cut at 100 ms took the worker for unreachable and failed the job.
TEST_F(CoordinatorTest, AWorkerWhoseConnectionTakesASecondIsDeployedToNotLost) {
  SlowConnectProxy proxy(worker_port_, std::chrono::milliseconds(1000));
  ASSERT_GT(proxy.port(), 0);
  // The fixture's worker leaves; the same fake worker registers again behind the proxy.
  proto::DeregisterWorkerRequest leave;
  leave.set_worker_id(worker_id_);
  leave.set_data_address(worker_address_);
  ASSERT_OK(coordinator_->DeregisterWorker(leave));
  proto::RegisterWorkerRequest reg;
  reg.set_slots(2);
  reg.set_data_address(absl::StrCat("127.0.0.1:", proxy.port()));
  absl::StatusOr<proto::RegisterWorkerResponse> r = coordinator_->RegisterWorker(reg);
  ASSERT_OK(r);

  const std::string job = SubmitRunning("{interval: 1h}");
  ASSERT_FALSE(job.empty());
  ASSERT_EQ(worker_->deployed().size(), 1u);
  EXPECT_EQ(worker_->deployed().front().job_id(), job);
  EXPECT_EQ(worker_->deployed().front().tasks_size(), 2);
  const proto::ListWorkersResponse workers = coordinator_->ListWorkers();
  ASSERT_EQ(workers.workers_size(), 1);
  EXPECT_EQ(workers.workers(0).worker_id(), r->worker_id());
  EXPECT_EQ(workers.workers(0).slots_used(), 2);
  EXPECT_EQ(proxy.given_up(), 0);
}

// A power loss before any step of completing checkpoint 2 (metadata, job record, retention with
// retain 1, shared-file GC): a coordinator started afterwards restores the job from checkpoint 1
// or 2, every file of it is there with its contents, and it is checkpoint 2 whenever a task was
// told to commit 2 (so nothing committed is ever rolled back: exactly-once).
TEST_F(CoordinatorTest, PowerLossWhileCompletingACheckpointRecoversFromACompleteOneNeverBeforeACommit) {
  checkpoint::CheckpointStorage storage(&fs_);
  int64_t steps = -1;
  for (int64_t cut = -1; cut <= steps; ++cut) {  // -1: no power loss, counting the steps
    SCOPED_TRACE(absl::StrCat("power lost after ", cut, " of ", steps, " steps"));
    if (cut >= 0) {
      coordinator_->Stop();
      fs_.PowerLoss();
      for (const char* dir : {"/ck", "/ha", "/sp"}) ASSERT_OK(fs_.DeleteRecursively(dir));
      contents_.clear();
      StartCoordinator();
    }
    const std::string job = SubmitRunning("{interval: 1s, retain: 1}");
    ASSERT_FALSE(job.empty());
    ASSERT_TRUE(worker_->WaitTriggered(1));
    Upload(job, 1);
    AckAll(job, 1, /*keyed=*/true);
    ASSERT_TRUE(WaitFor([&] { return worker_->completed() == std::vector<int64_t>{1}; }));
    WaitForIo();
    clock_.AdvanceNanos(1'000'000'000);
    proto::HeartbeatRequest hb;
    hb.set_worker_id(worker_id_);
    hb.set_data_address(worker_address_);
    EXPECT_FALSE(coordinator_->Heartbeat(hb).reregister());
    ASSERT_TRUE(worker_->WaitTriggered(2));
    Upload(job, 2);
    const int64_t before = fs_.mutations();
    if (cut >= 0) fs_.CrashAfter(cut);
    AckAll(job, 2, /*keyed=*/true);
    WaitForIo();
    if (cut < 0) {
      steps = fs_.mutations() - before;
      ASSERT_GE(steps, 10);
      EXPECT_FALSE(fs_.Exists(absl::StrCat("/ck/", job, "/chk-1")));  // retention ran
      EXPECT_FALSE(fs_.Exists(absl::StrCat("/ck/", job, "/shared/b0-000001.sst")));
    }
    coordinator_->Stop();
    const std::vector<int64_t> committed = worker_->completed();
    fs_.PowerLoss();
    StartCoordinator();
    ASSERT_TRUE(WaitFor([&] { return !worker_->deployed().empty(); }));
    const proto::DeployTasksRequest deploy = worker_->deployed().front();
    const std::string chk1 = absl::StrCat("/ck/", job, "/chk-1/_metadata");
    const std::string chk2 = absl::StrCat("/ck/", job, "/chk-2/_metadata");
    EXPECT_THAT(deploy.restore_metadata(), ::testing::AnyOf(chk1, chk2));
    if (cut < 0 || std::count(committed.begin(), committed.end(), 2) > 0) {
      EXPECT_EQ(deploy.restore_metadata(), chk2);
    }
    absl::StatusOr<proto::CheckpointMetadata> md = storage.ReadMetadata(deploy.restore_metadata());
    ASSERT_OK(md);
    ASSERT_OK(storage.VerifyFiles(deploy.restore_dir(), *md));
    for (const std::string& rel : checkpoint::CheckpointStorage::ReferencedFiles(*md)) {
      const std::string path = JoinPath(deploy.restore_dir(), rel);
      absl::StatusOr<std::string> got = fs_.ReadFile(path);
      ASSERT_OK(got);
      EXPECT_EQ(*got, contents_[path]);
    }
  }
}

}  // namespace
}  // namespace sluice::coordinator
