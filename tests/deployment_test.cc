// How the daemons behave when deployed (Kubernetes or by hand): configuration from the
// environment, a worker started before its coordinator (no crash loop; /readyz says why it is
// not ready), readiness of both, and a worker leaving on SIGTERM (its jobs restart elsewhere at
// once from their latest checkpoint, using no restart attempt, exactly once). Real processes on
// loopback; the processes are started here (not by LocalCluster) to set their environment.

#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "httplib.h"
#include "tests/cluster_fixture.h"
#include "tests/exactly_once_check.h"

namespace sluice::testing {
namespace {

using ::testing::HasSubstr;

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  int port = -1;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  close(fd);
  return port;
}

// A daemon process with its own environment, killed (and reaped) when the test ends.
class Daemon {
 public:
  Daemon(const std::string& binary, const std::vector<std::string>& args,
         const std::vector<std::string>& env, const std::string& log) {
    pid_ = fork();
    if (pid_ == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      for (const auto& e : env) putenv(strdup(e.c_str()));
      if (freopen(log.c_str(), "w", stdout) == nullptr || freopen(log.c_str(), "a", stderr) == nullptr) _exit(126);
      std::vector<std::string> all = {std::string(SLUICE_TEST_BIN_DIR) + "/" + binary};
      all.insert(all.end(), args.begin(), args.end());
      std::vector<char*> argv;
      for (auto& a : all) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
  }
  ~Daemon() {
    if (pid_ > 0 && !exited_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  // Sends SIGTERM and waits up to `grace` for the exit; returns its exit status (-1: still
  // running after the grace period).
  int Terminate(std::chrono::milliseconds grace) {
    kill(pid_, SIGTERM);
    int status = 0;
    if (!WaitFor([&] { return waitpid(pid_, &status, WNOHANG) == pid_; }, grace, "the exit")) return -1;
    exited_ = true;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

 private:
  pid_t pid_ = -1;
  bool exited_ = false;
};

// GET http://127.0.0.1:port/path until `want` status or the deadline; returns the last
// status and body.
std::pair<int, std::string> WaitForHttp(int port, const std::string& path, int want,
                                        std::chrono::seconds timeout) {
  std::pair<int, std::string> last{-1, ""};
  WaitFor([&] {
    httplib::Client c("127.0.0.1", port);
    c.set_connection_timeout(1, 0);
    auto res = c.Get(path.c_str());
    if (res) last = {res->status, res->body};
    return res && res->status == want;
  }, timeout, path, std::chrono::milliseconds(50));
  return last;
}

// Waits until file `path` contains `text`.
::testing::AssertionResult WaitForLog(const std::string& path, const std::string& text,
                                      std::chrono::seconds timeout) {
  return WaitFor([&] { return ReadAll(path).find(text) != std::string::npos; }, timeout,
                 "\"" + text + "\" in " + path, std::chrono::milliseconds(50));
}

// Whether job `job` has a completed checkpoint.
bool HasCompletedCheckpoint(cli::CoordinatorClient& client, const std::string& job) {
  auto info = client.GetJob(job);
  if (!info.ok()) return false;
  for (const auto& c : info->checkpoints()) {
    if (c.status() == "COMPLETED") return true;
  }
  return false;
}

// Waits up to 120 s for job `job` to finish or fail; returns the last info seen.
proto::JobInfo WaitForEnd(cli::CoordinatorClient& client, const std::string& job) {
  proto::JobInfo info;
  EXPECT_TRUE(WaitFor([&] {
    auto j = client.GetJob(job);
    if (j.ok()) info = *j;
    return j.ok() && (info.state() == proto::JOB_FINISHED || info.state() == proto::JOB_FAILED);
  }, std::chrono::seconds(120), "job " + job + " to end", std::chrono::milliseconds(50)));
  return info;
}

class DeploymentTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir("sluice-deploy");
    ASSERT_FALSE(dir_.empty());
    port_ = FreePort();
    http_port_ = FreePort();
  }
  void TearDown() override {
    workers_.clear();
    coordinator_.reset();
    if (HasFailure()) {
      std::cerr << "logs kept in " << dir_ << "\n";
    } else {
      std::filesystem::remove_all(dir_);
    }
  }
  // The coordinator, configured through SLUICE_* variables only (as a ConfigMap would).
  void StartCoordinator() {
    coordinator_ = std::make_unique<Daemon>(
        "sluice-coordinator", std::vector<std::string>{},
        std::vector<std::string>{absl::StrCat("SLUICE_PORT=", port_), absl::StrCat("SLUICE_HTTP_PORT=", http_port_),
                                 "SLUICE_HOST=127.0.0.1", "SLUICE_HA_DIR=" + dir_ + "/ha",
                                 "SLUICE_CHECKPOINT_DIR=" + dir_ + "/checkpoints",
                                 "SLUICE_HEARTBEAT_TIMEOUT_MS=30000"},
        dir_ + "/coordinator.log");
  }
  // A worker that finds the coordinator by name (localhost: resolved by DNS, as a Service),
  // configured by SLUICE_COORDINATOR / SLUICE_SLOTS; returns its HTTP port.
  int StartWorker(int i, int slots) {
    const int http = FreePort();
    workers_.push_back(std::make_unique<Daemon>(
        "sluice-worker", std::vector<std::string>{absl::StrCat("--http-port=", http), "--heartbeat-interval-ms=200"},
        std::vector<std::string>{absl::StrCat("SLUICE_COORDINATOR=localhost:", port_), absl::StrCat("SLUICE_SLOTS=", slots),
                                 "SLUICE_HOST=127.0.0.1", absl::StrCat("SLUICE_WORK_DIR=", dir_, "/w", i)},
        absl::StrCat(dir_, "/worker-", i, ".log")));
    return http;
  }
  std::string CoordinatorAddress() const { return absl::StrCat("127.0.0.1:", port_); }

  std::string dir_;
  int port_ = 0;
  int http_port_ = 0;
  std::unique_ptr<Daemon> coordinator_;
  std::vector<std::unique_ptr<Daemon>> workers_;
};

TEST_F(DeploymentTest, WorkerStartedBeforeItsCoordinatorWaitsAndBecomesReady) {
  const int worker_http = StartWorker(0, 3);
  // Alive, not ready, and saying why; it keeps retrying rather than exiting.
  auto healthz = WaitForHttp(worker_http, "/healthz", 200, std::chrono::seconds(20));
  EXPECT_EQ(healthz.first, 200);
  auto readyz = WaitForHttp(worker_http, "/readyz", 503, std::chrono::seconds(5));
  EXPECT_EQ(readyz.first, 503);
  EXPECT_EQ(readyz.second, absl::StrCat("not ready: not registered with coordinator localhost:", port_, " yet\n"));
  // It has tried (and failed) to register before the coordinator exists.
  ASSERT_TRUE(WaitForLog(dir_ + "/worker-0.log", "cannot register with coordinator", std::chrono::seconds(20)));
  StartCoordinator();
  EXPECT_EQ(WaitForHttp(http_port_, "/readyz", 200, std::chrono::seconds(20)).first, 200);
  auto ready = WaitForHttp(worker_http, "/readyz", 200, std::chrono::seconds(10));
  EXPECT_EQ(ready.first, 200) << ready.second;
  cli::CoordinatorClient client(CoordinatorAddress());
  auto workers = client.ListWorkers();
  ASSERT_OK(workers);
  ASSERT_EQ(workers->workers_size(), 1);
  EXPECT_EQ(workers->workers(0).slots(), 3);  // from SLUICE_SLOTS
  EXPECT_EQ(workers->workers(0).data_address().rfind("127.0.0.1:", 0), 0u);
}

TEST_F(DeploymentTest, SigtermOnAWorkerRestartsItsJobsElsewhereWithoutUsingAnAttempt) {
  StartCoordinator();
  ASSERT_EQ(WaitForHttp(http_port_, "/readyz", 200, std::chrono::seconds(20)).first, 200);
  const int w0 = StartWorker(0, 2);
  const int w1 = StartWorker(1, 2);
  ASSERT_EQ(WaitForHttp(w0, "/readyz", 200, std::chrono::seconds(20)).first, 200);
  ASSERT_EQ(WaitForHttp(w1, "/readyz", 200, std::chrono::seconds(20)).first, 200);
  cli::CoordinatorClient client(CoordinatorAddress());
  constexpr int64_t kRecords = 400'000;
  const std::string out = dir_ + "/out";
  CountingJobOptions o;
  o.restart = "{strategy: fixed_delay, attempts: 1, delay: 100ms}";
  auto submitted = client.Submit(CountingJob(out, kRecords, 60'000, o), "job.yaml", 0);
  ASSERT_OK(submitted);
  const std::string job = submitted->job_id();
  // Wait for a completed checkpoint: the restart resumes from it.
  ASSERT_TRUE(WaitFor([&] { return HasCompletedCheckpoint(client, job); }, std::chrono::seconds(20),
                      "a completed checkpoint"));
  // The heartbeat timeout is 30 s: only the deregistration can explain a quick restart.
  EXPECT_EQ(workers_[1]->Terminate(std::chrono::seconds(10)), 0) << "worker did not exit within the grace period";
  auto workers = client.ListWorkers();
  ASSERT_OK(workers);
  EXPECT_EQ(workers->workers_size(), 1);
  proto::JobInfo info = WaitForEnd(client, job);
  ASSERT_EQ(info.state(), proto::JOB_FINISHED) << info.error();
  EXPECT_EQ(info.restarts(), 0) << "a planned departure used a restart attempt";
  EXPECT_GE(info.attempt(), 2);
  EXPECT_GT(info.restored_checkpoint_id(), 0);
  EXPECT_THAT(info.error(), HasSubstr("left the cluster (SIGTERM)"));
  for (const auto& v : info.vertices()) {
    for (const auto& s : v.subtasks()) EXPECT_EQ(s.worker_id(), workers->workers(0).worker_id());
  }
  CheckExactlyOnce({out}, ExpectedFor(kRecords));
}

TEST_F(DeploymentTest, WorkerWhoseCoordinatorNameDoesNotResolveKeepsRetrying) {
  const int http = FreePort();
  workers_.push_back(std::make_unique<Daemon>(
      "sluice-worker",
      std::vector<std::string>{absl::StrCat("--http-port=", http), "--host=127.0.0.1", "--heartbeat-interval-ms=100"},
      std::vector<std::string>{"SLUICE_COORDINATOR=sluice-coordinator.invalid:6123",
                               absl::StrCat("SLUICE_WORK_DIR=", dir_, "/w")},
      dir_ + "/worker.log"));
  auto readyz = WaitForHttp(http, "/readyz", 503, std::chrono::seconds(20));
  ASSERT_EQ(readyz.first, 503);
  EXPECT_EQ(readyz.second, "not ready: not registered with coordinator sluice-coordinator.invalid:6123 yet\n");
  // Still alive after 21 tries (no crash loop), and it said why once per 20 tries, not per try.
  ASSERT_TRUE(WaitForLog(dir_ + "/worker.log", "(try 21; retrying)", std::chrono::seconds(30)));
  EXPECT_EQ(WaitForHttp(http, "/healthz", 200, std::chrono::seconds(5)).first, 200);
  const std::string log = ReadAll(dir_ + "/worker.log");
  EXPECT_THAT(log, HasSubstr("cannot register with coordinator sluice-coordinator.invalid:6123 (try 1; retrying)"));
  size_t lines = 0;
  for (size_t at = log.find("cannot register"); at != std::string::npos; at = log.find("cannot register", at + 1)) ++lines;
  EXPECT_LE(lines, 2u) << log;
}

// SIGTERM on the coordinator (a pod replaced): the job records stay, and the next coordinator
// on the same HA directory resumes the job from its latest checkpoint, using no attempt.
TEST_F(DeploymentTest, JobsResumeUnderANewCoordinatorAfterSigterm) {
  StartCoordinator();
  ASSERT_EQ(WaitForHttp(http_port_, "/readyz", 200, std::chrono::seconds(20)).first, 200);
  const int w0 = StartWorker(0, 2);
  ASSERT_EQ(WaitForHttp(w0, "/readyz", 200, std::chrono::seconds(20)).first, 200);
  constexpr int64_t kRecords = 300'000;
  const std::string out = dir_ + "/out";
  std::string job;
  {
    cli::CoordinatorClient client(CoordinatorAddress());
    CountingJobOptions o;
    o.restart = "{strategy: fixed_delay, attempts: 1, delay: 100ms}";
    auto submitted = client.Submit(CountingJob(out, kRecords, 30'000, o), "job.yaml", 0);
    ASSERT_OK(submitted);
    job = submitted->job_id();
    ASSERT_TRUE(WaitFor([&] { return HasCompletedCheckpoint(client, job); }, std::chrono::seconds(20),
                        "a completed checkpoint"));
  }
  EXPECT_EQ(coordinator_->Terminate(std::chrono::seconds(10)), 0);
  coordinator_.reset();
  StartCoordinator();  // same port, same HA directory
  ASSERT_EQ(WaitForHttp(http_port_, "/readyz", 200, std::chrono::seconds(20)).first, 200);
  cli::CoordinatorClient client(CoordinatorAddress());
  proto::JobInfo info = WaitForEnd(client, job);
  ASSERT_EQ(info.state(), proto::JOB_FINISHED) << info.error();
  EXPECT_EQ(info.restarts(), 0);
  EXPECT_GT(info.restored_checkpoint_id(), 0);
  CheckExactlyOnce({out}, ExpectedFor(kRecords));
}

}  // namespace
}  // namespace sluice::testing
