#include "cli/local_cluster.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "cli/client.h"
#include "common/status.h"

namespace sluice::cli {

namespace fs = std::filesystem;

namespace {

void SleepMs(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return s;
}

// Whether `pid` exists and is not a zombie. Reaps it first if it is our child.
bool Alive(pid_t pid) {
  if (pid <= 0) return false;
  int status;
  if (waitpid(pid, &status, WNOHANG) == pid) return false;
  std::string stat = ReadFile(absl::StrCat("/proc/", pid, "/stat"));
  // "pid (comm) S ...": the state follows the last ')', as comm may hold anything.
  size_t paren = stat.rfind(')');
  if (paren == std::string::npos || paren + 2 >= stat.size()) return false;
  char state = stat[paren + 2];
  return state != 'Z' && state != 'X';
}

// Whether two command lines start the same process. The values of --port and --http-port may
// differ: the coordinator's record carries the ports its first start (with port 0) bound.
bool SameCommand(const std::vector<std::string>& recorded,
                 const std::vector<std::string>& running) {
  if (recorded.size() != running.size()) return false;
  for (size_t i = 0; i < recorded.size(); ++i) {
    if (recorded[i] == running[i]) continue;
    bool both_ports = false;
    for (const char* flag : {"--port=", "--http-port="}) {
      both_ports |= absl::StartsWith(recorded[i], flag) && absl::StartsWith(running[i], flag);
    }
    if (!both_ports) return false;
  }
  return true;
}

// Whether `pid` is alive and runs `args` (pids get reused: a live pid alone proves nothing).
bool RunsCommand(pid_t pid, const std::vector<std::string>& args) {
  if (!Alive(pid)) return false;
  std::string cmdline = ReadFile(absl::StrCat("/proc/", pid, "/cmdline"));
  if (cmdline.empty()) return false;
  if (cmdline.back() == '\0') cmdline.pop_back();
  std::vector<std::string> running = absl::StrSplit(cmdline, '\0');
  return SameCommand(args, running);
}

// Writes `content` to `path` through a temporary file, fsyncs the file and the directory, so
// that a reader sees the old or the new content and a record survives a crash.
absl::Status WriteRecord(const std::string& path, const std::string& content) {
  const std::string tmp = path + ".tmp";
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return absl::FailedPreconditionError(absl::StrCat("cannot write ", tmp));
  size_t done = 0;
  while (done < content.size()) {
    ssize_t n = write(fd, content.data() + done, content.size() - done);
    if (n < 0) {
      close(fd);
      return absl::FailedPreconditionError(absl::StrCat("cannot write ", tmp));
    }
    done += static_cast<size_t>(n);
  }
  bool synced = fsync(fd) == 0;
  close(fd);
  if (!synced || rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::FailedPreconditionError(absl::StrCat("cannot write ", path));
  }
  int dir_fd = open(fs::path(path).parent_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd >= 0) {
    fsync(dir_fd);
    close(dir_fd);
  }
  return absl::OkStatus();
}

// The command line recorded in `path` (one argument a line); empty if there is none.
std::vector<std::string> ReadCommand(const std::string& path) {
  std::string cmd = ReadFile(path);
  if (!cmd.empty() && cmd.back() == '\n') cmd.pop_back();
  if (cmd.empty()) return {};
  return absl::StrSplit(cmd, '\n');
}

pid_t ReadPid(const std::string& path) {
  std::string content = ReadFile(path);
  while (!content.empty() && (content.back() == '\n' || content.back() == ' ')) content.pop_back();
  int pid = 0;
  return absl::SimpleAtoi(content, &pid) && pid > 0 ? pid : -1;
}

// The value of `--flag=value` in `args`, or "".
std::string FlagValue(const std::vector<std::string>& args, const std::string& flag) {
  for (const auto& a : args) {
    if (absl::StartsWith(a, flag + "=")) return a.substr(flag.size() + 1);
  }
  return "";
}

// Replaces the value of `--flag=value` in `args`.
void SetFlag(std::vector<std::string>* args, const std::string& flag, const std::string& value) {
  for (auto& a : *args) {
    if (absl::StartsWith(a, flag + "=")) a = flag + "=" + value;
  }
}

// The index of a record named "worker-<i>", or -1.
int WorkerIndex(const std::string& name) {
  int i = -1;
  if (!absl::StartsWith(name, "worker-") || !absl::SimpleAtoi(name.substr(7), &i)) return -1;
  return i < 0 ? -1 : i;
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

// SIGKILLs `pid` and waits until it is gone (reaped if it is our child).
void KillAndWait(pid_t pid) {
  if (pid <= 0) return;
  kill(pid, SIGKILL);
  while (Alive(pid)) SleepMs(5);
}

// Removes the pid, command and address files (and their temporaries) in `dir`.
void RemoveRecords(const std::string& dir) {
  std::error_code ec;
  std::vector<fs::path> doomed;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string file = entry.path().filename().string();
    for (const char* ext : {".pid", ".cmd", ".addr", ".pid.tmp", ".cmd.tmp", ".addr.tmp"}) {
      if (absl::EndsWith(file, ext)) doomed.push_back(entry.path());
    }
  }
  for (const auto& p : doomed) fs::remove(p, ec);
}

std::string Describe(const std::vector<RecordedProcess>& procs, bool running) {
  std::vector<std::string> parts;
  for (const auto& p : procs) {
    if (p.running == running) parts.push_back(absl::StrCat(p.name, " (pid ", p.pid, ")"));
  }
  return absl::StrJoin(parts, ", ");
}

}  // namespace

absl::StatusOr<std::vector<RecordedProcess>> ReadRecordedProcesses(const std::string& dir) {
  std::map<std::string, RecordedProcess> by_name;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string ext = entry.path().extension().string();
    if (ext != ".cmd" && ext != ".pid") continue;
    const std::string name = entry.path().stem().string();
    by_name[name].name = name;
  }
  if (by_name.empty()) return absl::NotFoundError(absl::StrCat("no cluster recorded in ", dir));
  std::vector<RecordedProcess> procs;
  for (auto& [name, p] : by_name) {
    const std::string base = (fs::path(dir) / name).string();
    p.args = ReadCommand(base + ".cmd");
    p.pid = ReadPid(base + ".pid");
    // A pid file without a command line comes from an older sluice: its liveness is all we
    // can check.
    p.running = p.args.empty() ? Alive(p.pid) : RunsCommand(p.pid, p.args);
    procs.push_back(std::move(p));
  }
  auto rank = [](const RecordedProcess& p) {
    if (p.name == "coordinator") return std::make_pair(0, 0);
    int i = WorkerIndex(p.name);
    if (i >= 0) return std::make_pair(1, i);
    return std::make_pair(2, 0);
  };
  std::sort(procs.begin(), procs.end(),
            [&](const RecordedProcess& a, const RecordedProcess& b) { return rank(a) < rank(b); });
  return procs;
}

std::string LocalCluster::DefaultBinDir() {
  if (const char* env = std::getenv("SLUICE_BIN_DIR"); env != nullptr && *env) return env;
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  return ec ? "." : exe.parent_path().string();
}

absl::StatusOr<pid_t> LocalCluster::Spawn(const std::string& name,
                                          const std::vector<std::string>& args) {
  for (const auto& a : args) {
    if (a.find('\n') != std::string::npos || a.find('\0') != std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("argument of ", name, " holds a line break: ", a));
    }
  }
  const std::string base = (fs::path(options_.dir) / name).string();
  SLUICE_RETURN_IF_ERROR(WriteRecord(base + ".cmd", absl::StrJoin(args, "\n") + "\n"));
  std::string log = base + ".log";
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
  absl::Status recorded = WriteRecord(base + ".pid", absl::StrCat(pid, "\n"));
  if (!recorded.ok()) {
    KillAndWait(pid);
    return recorded;
  }
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
  auto recorded = ReadRecordedProcesses(options.dir);
  if (recorded.ok()) {
    std::string running = Describe(*recorded, true);
    if (!running.empty()) {
      return absl::AlreadyExistsError(
          absl::StrCat("a cluster is already running in ", options.dir, ": ", running));
    }
    RemoveRecords(options.dir);  // an earlier cluster's, all gone
  }
  std::unique_ptr<LocalCluster> c(new LocalCluster(options));
  std::vector<std::string> coordinator_args = {
      (fs::path(options.bin_dir) / "sluice-coordinator").string(), "--port=0", "--http-port=0",
      "--address-file=" + (fs::path(options.dir) / "coordinator.addr").string(),
      absl::StrCat("--heartbeat-timeout-ms=", options.heartbeat_timeout_ms),
      "--checkpoint-dir=" + CheckpointDirOf(options.dir),
      "--savepoint-dir=" + SavepointDirOf(options.dir), "--ha-dir=" + HaDirOf(options.dir),
      "--log-level=" + options.log_level};
  if (!options.plugin_dir.empty()) coordinator_args.push_back("--plugin-dir=" + options.plugin_dir);
  SLUICE_RETURN_IF_ERROR(c->StartCoordinatorProcess(std::move(coordinator_args)));
  if (options.kafka) SLUICE_RETURN_IF_ERROR(c->StartKafkaProcess());
  c->worker_pids_.assign(options.workers, -1);
  std::vector<int> workers;
  for (int i = 0; i < options.workers; ++i) {
    SLUICE_RETURN_IF_ERROR(c->StartWorkerProcess(i, c->WorkerArgs(i, options.slots)));
    workers.push_back(i);
  }
  SLUICE_RETURN_IF_ERROR(c->WaitForRegistered(workers));
  return c;
}

absl::StatusOr<std::unique_ptr<LocalCluster>> LocalCluster::Attach(LocalClusterOptions options) {
  if (options.bin_dir.empty()) options.bin_dir = DefaultBinDir();
  SLUICE_ASSIGN_OR_RETURN(std::vector<RecordedProcess> procs, ReadRecordedProcesses(options.dir));
  std::unique_ptr<LocalCluster> c(new LocalCluster(options));
  c->Release();  // it started none of them: destroying it leaves them running
  const RecordedProcess* coordinator = nullptr;
  int workers = 0;
  for (const auto& p : procs) {
    if (p.name == "coordinator") coordinator = &p;
    if (int i = WorkerIndex(p.name); i >= 0) workers = std::max(workers, i + 1);
  }
  if (coordinator == nullptr || !coordinator->running) {
    return absl::FailedPreconditionError(
        absl::StrCat("the coordinator of the cluster in ", options.dir,
                     " is not running; start what is missing with `sluice cluster start --dir ",
                     options.dir, "`"));
  }
  // Workers added later get the coordinator's settings.
  int64_t timeout = 0;
  if (absl::SimpleAtoi(FlagValue(coordinator->args, "--heartbeat-timeout-ms"), &timeout)) {
    c->options_.heartbeat_timeout_ms = timeout;
  }
  if (std::string level = FlagValue(coordinator->args, "--log-level"); !level.empty()) {
    c->options_.log_level = level;
  }
  c->options_.plugin_dir = FlagValue(coordinator->args, "--plugin-dir");
  c->options_.workers = workers;
  c->coordinator_pid_ = coordinator->pid;
  SLUICE_RETURN_IF_ERROR(c->ReadCoordinatorAddress());
  c->worker_pids_.assign(workers, -1);
  for (const auto& p : procs) {
    if (int i = WorkerIndex(p.name); i >= 0 && p.running) c->worker_pids_[i] = p.pid;
    if (p.name == "kafka" && p.running) {
      c->kafka_pid_ = p.pid;
      std::string addr = ReadFile((fs::path(options.dir) / "kafka.addr").string());
      c->kafka_bootstrap_ = addr.substr(0, addr.find('\n'));
    }
  }
  return c;
}

absl::StatusOr<std::unique_ptr<LocalCluster>> LocalCluster::Resume(
    LocalClusterOptions options, std::vector<std::string>* started) {
  if (options.bin_dir.empty()) options.bin_dir = DefaultBinDir();
  SLUICE_ASSIGN_OR_RETURN(std::vector<RecordedProcess> procs, ReadRecordedProcesses(options.dir));
  std::vector<const RecordedProcess*> missing;
  const RecordedProcess* coordinator = nullptr;
  const RecordedProcess* kafka = nullptr;
  for (const auto& p : procs) {
    if (p.name == "coordinator") coordinator = &p;
    if (p.name == "kafka") {
      kafka = &p;
    } else if (!p.running) {
      missing.push_back(&p);
    }
  }
  std::string kafka_note;
  if (kafka != nullptr && !kafka->running) {
    kafka_note = absl::StrCat(
        "; its embedded Kafka endpoint is not running and is not restarted (its topics are gone): "
        "`sluice cluster stop --dir ",
        options.dir, "`, then start the cluster again with --kafka");
  }
  if (missing.empty()) {
    return absl::AlreadyExistsError(
        absl::StrCat("a cluster is already running in ", options.dir, ": ", Describe(procs, true),
                     kafka_note, "; stop it with `sluice cluster stop --dir ", options.dir,
                     "`, add a worker with `sluice cluster add-worker --dir ", options.dir, "`"));
  }
  if (coordinator == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat("no coordinator recorded in ", options.dir,
                                                      "; stop the cluster and start it again"));
  }
  for (const auto& p : procs) {
    if (p.args.empty()) {
      return absl::FailedPreconditionError(
          absl::StrCat("no command line recorded for ", p.name, " in ", options.dir,
                       " (started by an older sluice); stop the cluster and start it again"));
    }
  }
  if (!coordinator->running) {
    // First, on its recorded address: the workers below are given the address it serves.
    std::unique_ptr<LocalCluster> starter(new LocalCluster(options));
    starter->Release();
    absl::Status s = starter->StartCoordinatorProcess(coordinator->args);
    if (!s.ok()) {
      return absl::Status(s.code(),
                          absl::StrCat("cannot start the coordinator on its recorded port ",
                                       FlagValue(coordinator->args, "--port"), ": ", s.message()));
    }
    started->push_back("coordinator");
  }
  SLUICE_ASSIGN_OR_RETURN(std::unique_ptr<LocalCluster> c, Attach(options));
  std::vector<int> workers;
  for (const auto& p : procs) {
    int i = WorkerIndex(p.name);
    if (i < 0) continue;
    if (!p.running) {
      SLUICE_RETURN_IF_ERROR(c->StartWorkerProcess(i, p.args));
      started->push_back(p.name);
    }
    workers.push_back(i);
  }
  // Every recorded worker must be registered, also those that ran on while the coordinator was
  // down and register again by themselves.
  SLUICE_RETURN_IF_ERROR(c->WaitForRegistered(workers));
  return c;
}

absl::StatusOr<std::string> LocalCluster::AwaitAddressFile(const std::string& name, pid_t pid,
                                                            const std::string& file) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(options_.start_timeout_ms);
  while (!fs::exists(file)) {
    if (!Alive(pid)) {
      return absl::FailedPreconditionError(
          absl::StrCat(name, " exited at start; see ", options_.dir, "/", name, ".log"));
    }
    if (std::chrono::steady_clock::now() > deadline) {
      return absl::DeadlineExceededError(absl::StrCat(name, " did not start in time"));
    }
    SleepMs(10);
  }
  return ReadFile(file);
}

absl::Status LocalCluster::ReadCoordinatorAddress() {
  const std::string file = (fs::path(options_.dir) / "coordinator.addr").string();
  std::string content = ReadFile(file);
  auto nl = content.find('\n');
  coordinator_address_ = content.substr(0, nl);
  if (coordinator_address_.empty()) {
    return absl::FailedPreconditionError(absl::StrCat("cannot read ", file));
  }
  coordinator_http_port_ = -1;
  if (nl != std::string::npos) {
    std::string rest = content.substr(nl + 1);
    if (!rest.empty() && rest.back() == '\n') rest.pop_back();
    if (!absl::SimpleAtoi(rest, &coordinator_http_port_)) coordinator_http_port_ = -1;
  }
  return absl::OkStatus();
}

absl::Status LocalCluster::StartCoordinatorProcess(std::vector<std::string> args) {
  const std::string addr_file = (fs::path(options_.dir) / "coordinator.addr").string();
  std::error_code ec;
  fs::remove(addr_file, ec);
  SLUICE_ASSIGN_OR_RETURN(coordinator_pid_, Spawn("coordinator", args));
  SLUICE_RETURN_IF_ERROR(AwaitAddressFile("coordinator", coordinator_pid_, addr_file).status());
  SLUICE_RETURN_IF_ERROR(ReadCoordinatorAddress());
  // Record the ports it bound: a restart binds them again, so workers (which were given this
  // address) and clients find it.
  if (FlagValue(args, "--port") == "0" || FlagValue(args, "--http-port") == "0") {
    SetFlag(&args, "--port", coordinator_address_.substr(coordinator_address_.rfind(':') + 1));
    if (coordinator_http_port_ > 0) {
      SetFlag(&args, "--http-port", absl::StrCat(coordinator_http_port_));
    }
    SLUICE_RETURN_IF_ERROR(WriteRecord((fs::path(options_.dir) / "coordinator.cmd").string(),
                                       absl::StrJoin(args, "\n") + "\n"));
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
  SLUICE_ASSIGN_OR_RETURN(kafka_pid_, Spawn("kafka", args));
  SLUICE_ASSIGN_OR_RETURN(std::string ready, AwaitAddressFile("kafka", kafka_pid_, file));
  kafka_bootstrap_ = ready.substr(0, ready.find('\n'));
  return absl::OkStatus();
}

absl::Status LocalCluster::KillCoordinator() {
  if (coordinator_pid_ <= 0) return absl::NotFoundError("no coordinator");
  KillAndWait(coordinator_pid_);
  coordinator_pid_ = -1;
  return absl::OkStatus();
}

absl::Status LocalCluster::RestartCoordinator() {
  std::vector<std::string> args = ReadCommand((fs::path(options_.dir) / "coordinator.cmd").string());
  if (args.empty()) {
    return absl::NotFoundError(absl::StrCat("no coordinator recorded in ", options_.dir));
  }
  return StartCoordinatorProcess(std::move(args));
}

std::vector<std::string> LocalCluster::WorkerArgs(int i, int slots) const {
  const std::string base = (fs::path(options_.dir) / absl::StrCat("worker-", i)).string();
  std::vector<std::string> args = {(fs::path(options_.bin_dir) / "sluice-worker").string(),
          "--coordinator=" + coordinator_address_,
          "--port=0",
          "--http-port=0",
          absl::StrCat("--slots=", slots),
          absl::StrCat("--name=w", i),
          "--work-dir=" + base + "-state",
          "--address-file=" + base + ".addr",
          absl::StrCat("--heartbeat-interval-ms=",
                       std::max<int64_t>(50, options_.heartbeat_timeout_ms / 6)),
          "--log-level=" + options_.log_level};
  if (!options_.plugin_dir.empty()) args.push_back("--plugin-dir=" + options_.plugin_dir);
  if (!options_.state_memory.empty()) args.push_back("--state-memory=" + options_.state_memory);
  return args;
}

absl::Status LocalCluster::StartWorkerProcess(int i, const std::vector<std::string>& args) {
  std::error_code ec;
  fs::remove(fs::path(options_.dir) / absl::StrCat("worker-", i, ".addr"), ec);
  SLUICE_ASSIGN_OR_RETURN(pid_t pid, Spawn(absl::StrCat("worker-", i), args));
  if (i >= static_cast<int>(worker_pids_.size())) worker_pids_.resize(i + 1, -1);
  worker_pids_[i] = pid;
  return absl::OkStatus();
}

absl::StatusOr<std::string> LocalCluster::WorkerDataAddress(int i) const {
  const std::string file = (fs::path(options_.dir) / absl::StrCat("worker-", i, ".addr")).string();
  std::string content = ReadFile(file);
  content = content.substr(0, content.find('\n'));
  if (content.empty()) return absl::NotFoundError(absl::StrCat("no address in ", file));
  return content;
}

absl::StatusOr<int> LocalCluster::AddWorker(int slots) {
  if (slots <= 0) {
    slots = options_.slots;
    for (int w = 0; w < worker_count(); ++w) {
      std::vector<std::string> args =
          ReadCommand((fs::path(options_.dir) / absl::StrCat("worker-", w, ".cmd")).string());
      if (absl::SimpleAtoi(FlagValue(args, "--slots"), &slots)) break;
      slots = options_.slots;
    }
  }
  int i = worker_count();
  // An index no earlier worker of this directory used, even one whose record is all that is left.
  while (fs::exists(fs::path(options_.dir) / absl::StrCat("worker-", i, ".cmd"))) ++i;
  SLUICE_RETURN_IF_ERROR(StartWorkerProcess(i, WorkerArgs(i, slots)));
  ++options_.workers;
  SLUICE_RETURN_IF_ERROR(WaitForRegistered({i}));
  return i;
}

absl::Status LocalCluster::WaitForRegistered(const std::vector<int>& workers) {
  CoordinatorClient client(coordinator_address_, 2000);
  auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(options_.start_timeout_ms);
  absl::Status last = absl::DeadlineExceededError("not listed yet");
  while (std::chrono::steady_clock::now() < deadline) {
    std::vector<std::string> addresses;
    for (int i : workers) {
      if (!Alive(worker_pids_[i])) {
        return absl::FailedPreconditionError(
            absl::StrCat("worker ", i, " exited; see ", options_.dir, "/worker-", i, ".log"));
      }
      auto addr = WorkerDataAddress(i);
      if (addr.ok()) addresses.push_back(*addr);
    }
    if (addresses.size() == workers.size()) {
      auto w = client.ListWorkers();
      if (w.ok()) {
        size_t listed = 0;
        for (const auto& a : addresses) {
          for (const auto& info : w->workers()) listed += info.data_address() == a;
        }
        if (listed == addresses.size()) return absl::OkStatus();
      } else {
        last = w.status();
      }
    }
    SleepMs(20);
  }
  return absl::DeadlineExceededError(
      absl::StrCat("workers did not register in time: ", last.message()));
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
    while (Alive(worker_pids_[i])) SleepMs(5);
    worker_pids_[i] = -1;
  }
  return absl::OkStatus();
}

absl::Status LocalCluster::RestartWorker(int i, int expected_workers) {
  std::vector<std::string> args =
      ReadCommand((fs::path(options_.dir) / absl::StrCat("worker-", i, ".cmd")).string());
  if (args.empty()) {
    return absl::NotFoundError(absl::StrCat("no worker ", i, " recorded in ", options_.dir));
  }
  SLUICE_RETURN_IF_ERROR(StartWorkerProcess(i, args));
  if (expected_workers < 0) return absl::OkStatus();
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
  RemoveRecords(options_.dir);
}

LocalCluster::~LocalCluster() {
  if (!released_) Stop();
}

absl::Status LocalCluster::StopDir(const std::string& dir, int grace_ms) {
  std::error_code ec;
  if (!fs::exists(dir, ec)) return absl::NotFoundError(absl::StrCat("no cluster in ", dir));
  auto procs = ReadRecordedProcesses(dir);
  if (!procs.ok()) return absl::NotFoundError(absl::StrCat("no running cluster in ", dir));
  std::vector<pid_t> workers;
  pid_t coordinator = -1;
  pid_t kafka = -1;
  for (const auto& p : *procs) {
    if (!p.running) continue;
    if (p.name == "coordinator") {
      coordinator = p.pid;
    } else if (p.name == "kafka") {
      kafka = p.pid;
    } else {
      workers.push_back(p.pid);
    }
  }
  RemoveRecords(dir);
  if (workers.empty() && coordinator < 0 && kafka < 0) {
    return absl::NotFoundError(absl::StrCat("no running cluster in ", dir));
  }
  Terminate(workers, grace_ms);
  Terminate({coordinator}, grace_ms);
  Terminate({kafka}, grace_ms);
  return absl::OkStatus();
}

}  // namespace sluice::cli
