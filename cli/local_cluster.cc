#include "cli/local_cluster.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "cli/client.h"

namespace sluice::cli {

namespace fs = std::filesystem;

namespace {

void SleepMs(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

bool Alive(pid_t pid) {
  if (pid <= 0) return false;
  int status;
  pid_t r = waitpid(pid, &status, WNOHANG);  // reaps our own children
  if (r == pid) return false;
  return kill(pid, 0) == 0;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return s;
}

// Terminates `pids` with SIGTERM, waits up to `grace_ms`, then SIGKILLs survivors.
void Terminate(const std::vector<pid_t>& pids, int grace_ms) {
  for (pid_t p : pids) {
    if (p > 0) kill(p, SIGTERM);
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(grace_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    bool any = false;
    for (pid_t p : pids) any |= Alive(p);
    if (!any) return;
    SleepMs(20);
  }
  for (pid_t p : pids) {
    if (Alive(p)) {
      kill(p, SIGKILL);
      waitpid(p, nullptr, 0);
    }
  }
}

}  // namespace

std::string LocalCluster::DefaultBinDir() {
  if (const char* env = std::getenv("SLUICE_BIN_DIR"); env != nullptr && *env) return env;
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  return ec ? "." : exe.parent_path().string();
}

absl::StatusOr<pid_t> LocalCluster::Spawn(const std::string& name,
                                          const std::vector<std::string>& args) {
  std::string log = (fs::path(options_.dir) / (name + ".log")).string();
  int log_fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) return absl::FailedPreconditionError(absl::StrCat("cannot open ", log));
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    close(log_fd);
    return absl::ResourceExhaustedError("fork failed");
  }
  if (pid == 0) {
    if (options_.die_with_parent) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(1);
    } else {
      setsid();
    }
    int null_fd = open("/dev/null", O_RDONLY);
    dup2(null_fd, 0);
    dup2(log_fd, 1);
    dup2(log_fd, 2);
    execv(argv[0], argv.data());
    _exit(127);
  }
  close(log_fd);
  std::ofstream((fs::path(options_.dir) / (name + ".pid")).string()) << pid << "\n";
  return pid;
}

absl::StatusOr<std::unique_ptr<LocalCluster>> LocalCluster::Start(LocalClusterOptions options) {
  if (options.bin_dir.empty()) options.bin_dir = DefaultBinDir();
  std::error_code ec;
  fs::create_directories(options.dir, ec);
  if (ec) return absl::FailedPreconditionError(absl::StrCat("cannot create ", options.dir, ": ", ec.message()));
  for (const char* bin : {"sluice-coordinator", "sluice-worker", "sluice-kafka"}) {
    if (std::string(bin) == "sluice-kafka" && !options.kafka) continue;
    if (!fs::exists(fs::path(options.bin_dir) / bin)) {
      return absl::NotFoundError(absl::StrCat(bin, " not found in ", options.bin_dir,
                                              " (set SLUICE_BIN_DIR)"));
    }
  }
  std::unique_ptr<LocalCluster> c(new LocalCluster(options));
  absl::Status cs = c->StartCoordinatorProcess();
  if (!cs.ok()) return cs;
  if (options.kafka) {
    absl::Status ks = c->StartKafkaProcess();
    if (!ks.ok()) return ks;
  }
  c->worker_pids_.assign(options.workers, -1);
  for (int i = 0; i < options.workers; ++i) {
    absl::Status s = c->StartWorkerProcess(i);
    if (!s.ok()) return s;
  }
  absl::Status s = c->WaitForWorkers(options.workers, options.start_timeout_ms);
  if (!s.ok()) return s;
  return c;
}

absl::StatusOr<std::string> LocalCluster::AwaitAddressFile(const std::string& name, pid_t pid,
                                                            const std::string& file) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(options_.start_timeout_ms);
  while (!fs::exists(file)) {
    if (!Alive(pid)) {
      return absl::InternalError(absl::StrCat(name, " exited at start; see ", options_.dir, "/", name, ".log"));
    }
    if (std::chrono::steady_clock::now() > deadline) {
      return absl::DeadlineExceededError(absl::StrCat(name, " did not start in time"));
    }
    SleepMs(10);
  }
  return ReadFile(file);
}

absl::Status LocalCluster::StartCoordinatorProcess() {
  const std::string addr_file = (fs::path(options_.dir) / "coordinator.addr").string();
  std::error_code ec;
  fs::remove(addr_file, ec);
  // Keep the port across restarts so workers find the coordinator again.
  std::string port = "0";
  if (!coordinator_address_.empty()) port = coordinator_address_.substr(coordinator_address_.rfind(':') + 1);
  auto pid = Spawn("coordinator",
                   {(fs::path(options_.bin_dir) / "sluice-coordinator").string(), "--port=" + port,
                    "--http-port=0", "--address-file=" + addr_file,
                    absl::StrCat("--heartbeat-timeout-ms=", options_.heartbeat_timeout_ms),
                    "--checkpoint-dir=" + CheckpointDirOf(options_.dir),
                    "--savepoint-dir=" + SavepointDirOf(options_.dir), "--ha-dir=" + HaDirOf(options_.dir),
                    "--log-level=" + options_.log_level});
  if (!pid.ok()) return pid.status();
  coordinator_pid_ = *pid;
  absl::StatusOr<std::string> ready = AwaitAddressFile("coordinator", coordinator_pid_, addr_file);
  if (!ready.ok()) return ready.status();
  const std::string& content = *ready;
  auto nl = content.find('\n');
  coordinator_address_ = content.substr(0, nl);
  if (nl != std::string::npos) {
    std::string rest = content.substr(nl + 1);
    if (!rest.empty() && rest.back() == '\n') rest.pop_back();
    if (!absl::SimpleAtoi(rest, &coordinator_http_port_)) coordinator_http_port_ = -1;
  }
  return absl::OkStatus();
}

absl::Status LocalCluster::StartKafkaProcess() {
  const std::string file = (fs::path(options_.dir) / "kafka.addr").string();
  std::error_code ec;
  fs::remove(file, ec);
  std::vector<std::string> args = {(fs::path(options_.bin_dir) / "sluice-kafka").string(),
                                   "--bootstrap-file=" + file, "--control-port=0"};
  for (const auto& t : options_.kafka_topics) args.push_back("--topic=" + t);
  auto pid = Spawn("kafka", args);
  if (!pid.ok()) return pid.status();
  kafka_pid_ = *pid;
  absl::StatusOr<std::string> ready = AwaitAddressFile("kafka", kafka_pid_, file);
  if (!ready.ok()) return ready.status();
  kafka_bootstrap_ = ready->substr(0, ready->find('\n'));
  return absl::OkStatus();
}

absl::Status LocalCluster::KillCoordinator() {
  if (coordinator_pid_ <= 0) return absl::NotFoundError("no coordinator");
  kill(coordinator_pid_, SIGKILL);
  waitpid(coordinator_pid_, nullptr, 0);
  coordinator_pid_ = -1;
  return absl::OkStatus();
}

absl::Status LocalCluster::RestartCoordinator() { return StartCoordinatorProcess(); }

absl::Status LocalCluster::StartWorkerProcess(int i) {
  auto pid = Spawn(absl::StrCat("worker-", i),
                   {(fs::path(options_.bin_dir) / "sluice-worker").string(),
                    "--coordinator=" + coordinator_address_, "--port=0", "--http-port=0",
                    absl::StrCat("--slots=", options_.slots), absl::StrCat("--name=w", i),
                    absl::StrCat("--work-dir=", options_.dir, "/worker-", i, "-state"),
                    absl::StrCat("--heartbeat-interval-ms=",
                                 std::max<int64_t>(50, options_.heartbeat_timeout_ms / 6)),
                    "--log-level=" + options_.log_level});
  if (!pid.ok()) return pid.status();
  worker_pids_[i] = *pid;
  return absl::OkStatus();
}

absl::Status LocalCluster::WaitForWorkers(int n, int timeout_ms) {
  CoordinatorClient client(coordinator_address_, 2000);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  absl::Status last;
  while (std::chrono::steady_clock::now() < deadline) {
    auto w = client.ListWorkers();
    if (w.ok() && w->workers_size() == n) return absl::OkStatus();
    if (!w.ok()) last = w.status();
    for (size_t i = 0; i < worker_pids_.size(); ++i) {
      if (worker_pids_[i] > 0 && !Alive(worker_pids_[i])) {
        return absl::InternalError(absl::StrCat("worker ", i, " exited; see ", options_.dir,
                                                "/worker-", i, ".log"));
      }
    }
    SleepMs(20);
  }
  return absl::DeadlineExceededError(absl::StrCat("workers did not register in time ", last.ToString()));
}

std::vector<pid_t> LocalCluster::AllPids() const {
  std::vector<pid_t> pids = {coordinator_pid_};
  for (pid_t p : worker_pids_) {
    if (p > 0) pids.push_back(p);
  }
  return pids;
}

absl::Status LocalCluster::KillWorker(int i, int signal) {
  if (i < 0 || i >= static_cast<int>(worker_pids_.size()) || worker_pids_[i] <= 0) {
    return absl::NotFoundError(absl::StrCat("no worker ", i));
  }
  if (kill(worker_pids_[i], signal) != 0) return absl::InternalError("kill failed");
  if (signal == SIGKILL || signal == SIGTERM) {
    waitpid(worker_pids_[i], nullptr, 0);
    worker_pids_[i] = -1;
  }
  return absl::OkStatus();
}

absl::Status LocalCluster::RestartWorker(int i, int expected_workers) {
  absl::Status s = StartWorkerProcess(i);
  if (!s.ok() || expected_workers < 0) return s;
  return WaitForWorkers(expected_workers, options_.start_timeout_ms);
}

void LocalCluster::Stop() {
  if (stopped_) return;
  stopped_ = true;
  std::vector<pid_t> workers;
  for (pid_t p : worker_pids_) {
    if (p > 0) workers.push_back(p);
  }
  Terminate(workers, 10000);
  Terminate({coordinator_pid_}, 10000);
  if (kafka_pid_ > 0) Terminate({kafka_pid_}, 10000);
}

LocalCluster::~LocalCluster() { Stop(); }

absl::Status LocalCluster::StopDir(const std::string& dir, int grace_ms) {
  std::vector<pid_t> workers;
  pid_t coordinator = -1;
  std::error_code ec;
  if (!fs::exists(dir, ec)) return absl::NotFoundError(absl::StrCat("no cluster in ", dir));
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (entry.path().extension() != ".pid") continue;
    int pid = 0;
    std::string content = ReadFile(entry.path().string());
    while (!content.empty() && (content.back() == '\n' || content.back() == ' ')) content.pop_back();
    if (absl::SimpleAtoi(content, &pid) && pid > 0 && kill(pid, 0) == 0) {
      if (name == "coordinator.pid") {
        coordinator = pid;
      } else {
        workers.push_back(pid);
      }
    }
    fs::remove(entry.path(), ec);
  }
  fs::remove(fs::path(dir) / "coordinator.addr", ec);
  fs::remove(fs::path(dir) / "kafka.addr", ec);
  if (workers.empty() && coordinator < 0) return absl::NotFoundError(absl::StrCat("no running cluster in ", dir));
  Terminate(workers, grace_ms);
  if (coordinator > 0) Terminate({coordinator}, grace_ms);
  return absl::OkStatus();
}

}  // namespace sluice::cli
