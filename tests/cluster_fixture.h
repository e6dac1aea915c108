#pragma once

// Shared set-up for integration tests: a real coordinator and real workers as processes on
// loopback (ports chosen by the OS), driven through the coordinator's gRPC API and the CLI.

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "cli/client.h"
#include "cli/local_cluster.h"
#include "common/status_matchers.h"
#include "common/testing/wait_for.h"
#include "gtest/gtest.h"

namespace sluice::testing {

inline std::string MakeTempDir(const std::string& prefix) {
  std::string tmpl = (std::filesystem::temp_directory_path() / (prefix + "-XXXXXX")).string();
  char* d = mkdtemp(tmpl.data());
  return d == nullptr ? std::string() : std::string(d);
}

// Runs a command, capturing stdout+stderr; returns the exit code.
inline int RunCommand(const std::string& cmd, std::string* output) {
  std::string full = cmd + " 2>&1";
  FILE* p = popen(full.c_str(), "r");
  if (p == nullptr) return -1;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) output->append(buf, n);
  int status = pclose(p);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

inline std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// WaitFor(condition, timeout, what): common/testing/wait_for.h.

// Starts sluice-kafka with `topics` (NAME:PARTITIONS) in `dir`; returns its pid and sets
// *bootstrap and, if asked for, *control_port (an HTTP control port is opened then).
inline pid_t SpawnKafka(const std::string& dir, const std::vector<std::string>& topics,
                        std::string* bootstrap, int* control_port = nullptr) {
  const std::string file = dir + "/kafka.addr";
  std::vector<std::string> args = {std::string(SLUICE_TEST_BIN_DIR) + "/sluice-kafka", "--bootstrap-file", file};
  if (control_port != nullptr) {
    args.push_back("--control-port");
    args.push_back("0");
  }
  for (const auto& t : topics) {
    args.push_back("--topic");
    args.push_back(t);
  }
  pid_t pid = fork();
  if (pid == 0) {
    std::string log = dir + "/kafka.log";
    if (freopen(log.c_str(), "w", stdout) == nullptr || freopen(log.c_str(), "a", stderr) == nullptr) _exit(126);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  EXPECT_TRUE(WaitFor([&] { return std::filesystem::exists(file); }, std::chrono::seconds(5),
                      "sluice-kafka to write its address to " + file, std::chrono::milliseconds(10)));
  std::string content = ReadAll(file);
  *bootstrap = content.substr(0, content.find('\n'));
  if (control_port != nullptr && content.find('\n') != std::string::npos) {
    *control_port = std::atoi(content.substr(content.find('\n') + 1).c_str());
  }
  return pid;
}

class ClusterTest : public ::testing::Test {
 protected:
  void StartCluster(int workers = 2, int slots = 2, int64_t heartbeat_timeout_ms = 3000) {
    dir_ = MakeTempDir("sluice-it");
    ASSERT_FALSE(dir_.empty());
    cli::LocalClusterOptions o;
    o.dir = dir_ + "/cluster";
    o.workers = workers;
    o.slots = slots;
    o.bin_dir = SLUICE_TEST_BIN_DIR;
    o.heartbeat_timeout_ms = heartbeat_timeout_ms;
    o.die_with_parent = true;
    auto c = cli::LocalCluster::Start(o);
    ASSERT_OK(c);
    cluster_ = std::move(*c);
    client_ = std::make_unique<cli::CoordinatorClient>(cluster_->coordinator_address());
  }

  void TearDown() override {
    if (cluster_) cluster_->Stop();
    if (!dir_.empty() && !HasFailure()) std::filesystem::remove_all(dir_);
    if (HasFailure() && !dir_.empty()) {
      std::cerr << "cluster logs kept in " << dir_ << "/cluster\n";
    }
  }

  // Submits `yaml`; fails the test on error.
  std::string Submit(const std::string& yaml, int parallelism = 0) {
    auto r = client_->Submit(yaml, "job.yaml", parallelism);
    EXPECT_OK(r);
    return r.ok() ? r->job_id() : "";
  }

  // Polls the job until `done(info)` holds or `timeout` passes; returns the last info seen.
  template <typename Pred>
  proto::JobInfo WaitUntil(const std::string& job_id, Pred done, std::chrono::milliseconds timeout) {
    proto::JobInfo info;
    WaitFor([&] {
      auto j = client_->GetJob(job_id);
      if (j.ok()) info = *j;
      return j.ok() && done(info);
    }, timeout, "job " + job_id);
    return info;
  }

  proto::JobInfo WaitForEnd(const std::string& job_id, std::chrono::milliseconds timeout) {
    return WaitUntil(job_id, [](const proto::JobInfo& i) {
      return i.state() == proto::JOB_FINISHED || i.state() == proto::JOB_FAILED ||
             i.state() == proto::JOB_CANCELLED;
    }, timeout);
  }

  // Waits until a checkpoint with an id above `after_id` has completed, or the job ended.
  // Returns the last info seen; LatestCompletedCheckpoint() of it says which.
  proto::JobInfo WaitForCheckpoint(const std::string& job_id, int64_t after_id,
                                   std::chrono::milliseconds timeout) {
    return WaitUntil(job_id, [after_id](const proto::JobInfo& i) {
      return LatestCompletedCheckpoint(i) > after_id || i.state() == proto::JOB_FINISHED ||
             i.state() == proto::JOB_FAILED || i.state() == proto::JOB_CANCELLED;
    }, timeout);
  }

  // The id of the job's latest completed checkpoint in `info` (0: none).
  static int64_t LatestCompletedCheckpoint(const proto::JobInfo& info) {
    int64_t latest = 0;
    for (const auto& c : info.checkpoints()) {
      if (c.status() == "COMPLETED") latest = std::max(latest, c.checkpoint_id());
    }
    return latest;
  }

  // Kills a worker of `workers` (picked by a generator seeded with `seed`) with SIGKILL and
  // restarts it, `kills` times, each after a checkpoint newer than the last kill's (so it undoes
  // real progress); stops early when the job finished.
  void KillWorkersAfterCheckpoints(const std::string& job_id, int kills, int workers, uint32_t seed) {
    std::mt19937 rng(seed);
    int64_t checkpoint = 0;
    for (int k = 0; k < kills; ++k) {
      proto::JobInfo info = WaitForCheckpoint(job_id, checkpoint, std::chrono::seconds(60));
      if (info.state() == proto::JOB_FINISHED) return;
      checkpoint = LatestCompletedCheckpoint(info);
      ASSERT_GT(checkpoint, 0) << "no checkpoint completed";
      const int victim = static_cast<int>(rng() % workers);
      ASSERT_OK(cluster_->KillWorker(victim, SIGKILL));
      ASSERT_OK(cluster_->RestartWorker(victim, -1));
    }
  }

  proto::JobInfo WaitForState(const std::string& job_id, proto::JobState state,
                              std::chrono::milliseconds timeout) {
    return WaitUntil(job_id, [state](const proto::JobInfo& i) { return i.state() == state; }, timeout);
  }

  // Sum of records in/out of operator `op` over its subtasks, as the coordinator reports it.
  static const proto::OperatorInfo* FindOperator(const proto::JobInfo& info, const std::string& op) {
    for (const auto& v : info.vertices()) {
      for (const auto& o : v.operators()) {
        if (o.id() == op) return &o;
      }
    }
    return nullptr;
  }

  std::string dir_;
  std::unique_ptr<cli::LocalCluster> cluster_;
  std::unique_ptr<cli::CoordinatorClient> client_;
};

}  // namespace sluice::testing
