// The local cluster after a crash, driven through the CLI as a user would: `sluice cluster
// start` over a partly running cluster starts only what is missing (the coordinator on its
// recorded address, a worker with its recorded command line), refuses a running cluster, and
// `sluice cluster add-worker` grows it. Processes are counted in /proc, not only in pid files.

#include <signal.h>

#include <fstream>
#include <functional>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "cli/job_status.h"
#include "tests/cluster_fixture.h"

namespace sluice::testing {
namespace {

namespace fs = std::filesystem;

// How often a wait here looks again (each look runs the CLI or reads /proc).
constexpr std::chrono::milliseconds kPoll(50);
using ::testing::HasSubstr;
using ::testing::Not;

// One row of `sluice workers`.
struct ListedWorker {
  std::string id;
  std::string data_address;
  int slots = 0;
};

class LocalClusterCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = MakeTempDir("sluice-lc");
    ASSERT_FALSE(root_.empty());
    dir_ = root_ + "/cluster";
  }

  void TearDown() override {
    // Processes started by the CLI outlive it (setsid): stop them by their records, then kill
    // whatever still runs with this directory in its command line, also after a failure.
    (void)cli::LocalCluster::StopDir(dir_, 5000);
    for (pid_t pid : ProcessesOf("sluice-coordinator")) kill(pid, SIGKILL);
    for (pid_t pid : ProcessesOf("sluice-worker")) kill(pid, SIGKILL);
    if (HasFailure()) {
      std::cerr << "cluster logs kept in " << dir_ << "\n";
    } else {
      std::error_code ec;
      fs::remove_all(root_, ec);
    }
  }

  // Runs `sluice ARGS` against this test's cluster directory; returns the exit code.
  int Sluice(const std::string& args, std::string* out) {
    out->clear();
    return RunCommand(absl::StrCat("SLUICE_CLUSTER_DIR=", dir_, " ", SLUICE_TEST_BIN_DIR,
                                   "/sluice ", args),
                      out);
  }

  void StartCluster(const std::string& extra = "") {
    std::string out;
    ASSERT_EQ(Sluice("cluster start --workers 2 --slots 2 --heartbeat-timeout-ms 2000 --dir " +
                         dir_ + " " + extra,
                     &out),
              0)
        << out;
    ASSERT_THAT(out, HasSubstr("Sluice cluster running"));
  }

  // Live (non-zombie) processes running `binary` for this cluster directory, found in /proc by
  // their command line: the coordinator by its --ha-dir, workers by their --work-dir.
  std::vector<pid_t> ProcessesOf(const std::string& binary) const {
    const std::string marker = binary == "sluice-coordinator" ? "--ha-dir=" + dir_ + "/ha"
                                                              : "--work-dir=" + dir_ + "/worker-";
    std::vector<pid_t> pids;
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator("/proc", ec)) {
      int pid = 0;
      if (!absl::SimpleAtoi(entry.path().filename().string(), &pid)) continue;
      std::string cmdline = ReadAll(entry.path().string() + "/cmdline");
      if (cmdline.empty()) continue;  // a zombie, or gone
      std::vector<std::string> args = absl::StrSplit(cmdline, '\0');
      if (args.empty() || fs::path(args[0]).filename() != binary) continue;
      for (const auto& a : args) {
        if (absl::StartsWith(a, marker)) {
          pids.push_back(pid);
          break;
        }
      }
    }
    return pids;
  }

  // name -> pid of the recorded processes that run.
  std::map<std::string, pid_t> RunningRecords() const {
    std::map<std::string, pid_t> running;
    auto procs = cli::ReadRecordedProcesses(dir_);
    if (!procs.ok()) return running;
    for (const auto& p : *procs) {
      if (p.running) running[p.name] = p.pid;
    }
    return running;
  }

  std::string FirstLine(const std::string& file) const {
    std::string s = ReadAll(dir_ + "/" + file);
    return s.substr(0, s.find('\n'));
  }

  // The workers `sluice workers` lists; empty when the command fails.
  std::vector<ListedWorker> ListedWorkers() {
    std::string out;
    std::vector<ListedWorker> workers;
    if (Sluice("workers", &out) != 0) return workers;
    for (absl::string_view line : absl::StrSplit(out, '\n', absl::SkipEmpty())) {
      std::vector<std::string> cols = absl::StrSplit(line, ' ', absl::SkipEmpty());
      ListedWorker w;
      if (cols.size() < 6 || !absl::SimpleAtoi(cols[3], &w.slots)) continue;  // the header
      w.id = cols[0];
      w.data_address = cols[1];
      workers.push_back(w);
    }
    return workers;
  }

  std::set<std::string> ListedAddresses() {
    std::set<std::string> addresses;
    for (const auto& w : ListedWorkers()) addresses.insert(w.data_address);
    return addresses;
  }

  // kill -9 the recorded process `name` and waits until it no longer counts as running.
  void Crash(const std::string& name) {
    pid_t pid = RunningRecords()[name];
    ASSERT_GT(pid, 0) << name << " is not running";
    ASSERT_EQ(kill(pid, SIGKILL), 0);
    ASSERT_TRUE(WaitFor([&] { return RunningRecords().count(name) == 0; }, std::chrono::seconds(10),
                        name + " to stop running after kill -9", kPoll));
  }

  std::string root_;
  std::string dir_;
};

TEST_F(LocalClusterCliTest, StartRestartsAKilledCoordinatorOnItsAddressAndWorkersReRegister) {
  StartCluster();
  const std::string address = FirstLine("coordinator.addr");
  const std::string http_port = ReadAll(dir_ + "/coordinator.addr").substr(address.size() + 1);
  std::map<std::string, pid_t> before = RunningRecords();
  ASSERT_EQ(before.size(), 3u);
  const std::set<std::string> worker_addresses = {FirstLine("worker-0.addr"),
                                                  FirstLine("worker-1.addr")};
  ASSERT_EQ(ListedAddresses(), worker_addresses);

  Crash("coordinator");
  std::string out;
  ASSERT_EQ(Sluice("cluster start --dir " + dir_, &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("started coordinator"));
  EXPECT_THAT(out, HasSubstr(address));
  EXPECT_THAT(out, Not(HasSubstr("started worker")));

  // Same gRPC and HTTP address, a new coordinator process, the same worker processes.
  EXPECT_EQ(FirstLine("coordinator.addr"), address);
  EXPECT_EQ(ReadAll(dir_ + "/coordinator.addr").substr(address.size() + 1), http_port);
  std::map<std::string, pid_t> after = RunningRecords();
  ASSERT_EQ(after.size(), 3u);
  EXPECT_NE(after["coordinator"], before["coordinator"]);
  EXPECT_EQ(after["worker-0"], before["worker-0"]);
  EXPECT_EQ(after["worker-1"], before["worker-1"]);

  // The workers found the new coordinator by themselves, and nothing was started twice.
  ASSERT_TRUE(WaitFor([&] { return ListedAddresses() == worker_addresses; }, std::chrono::seconds(20),
                      "the workers to re-register", kPoll));
  EXPECT_EQ(ListedWorkers().size(), 2u);
  EXPECT_EQ(ProcessesOf("sluice-coordinator"), std::vector<pid_t>{after["coordinator"]});
  std::vector<pid_t> workers = ProcessesOf("sluice-worker");
  EXPECT_EQ(std::set<pid_t>(workers.begin(), workers.end()),
            (std::set<pid_t>{before["worker-0"], before["worker-1"]}));
}

TEST_F(LocalClusterCliTest, StartOverARunningClusterRefusesAndLeavesItIntact) {
  StartCluster();
  std::map<std::string, pid_t> before = RunningRecords();
  ASSERT_EQ(before.size(), 3u);
  const std::string address = FirstLine("coordinator.addr");

  std::string out;
  EXPECT_EQ(Sluice("cluster start --workers 2 --slots 2 --dir " + dir_, &out), 1) << out;
  EXPECT_THAT(out, HasSubstr("sluice: error: a cluster is already running in " + dir_));
  EXPECT_THAT(out, HasSubstr("sluice cluster stop --dir " + dir_));
  EXPECT_THAT(out, Not(HasSubstr("started coordinator")));
  EXPECT_THAT(out, Not(HasSubstr("started worker")));

  EXPECT_EQ(RunningRecords(), before);
  EXPECT_EQ(FirstLine("coordinator.addr"), address);
  EXPECT_EQ(ProcessesOf("sluice-coordinator"), std::vector<pid_t>{before["coordinator"]});
  EXPECT_EQ(ProcessesOf("sluice-worker").size(), 2u);
  EXPECT_EQ(ListedWorkers().size(), 2u);
  // And it still stops as one cluster.
  ASSERT_EQ(Sluice("cluster stop --dir " + dir_, &out), 0) << out;
  EXPECT_TRUE(WaitFor([&] { return ProcessesOf("sluice-coordinator").empty() &&
                                   ProcessesOf("sluice-worker").empty(); },
                      std::chrono::seconds(15), "no coordinator or worker process left", kPoll));
}

TEST_F(LocalClusterCliTest, StartRestartsJustAKilledWorkerWithItsRecordedCommandLine) {
  StartCluster();
  std::map<std::string, pid_t> before = RunningRecords();
  ASSERT_EQ(before.size(), 3u);
  const std::string old_address = FirstLine("worker-1.addr");

  Crash("worker-1");
  std::string out;
  ASSERT_EQ(Sluice("cluster start --dir " + dir_, &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("started worker-1"));
  EXPECT_THAT(out, Not(HasSubstr("started coordinator")));
  EXPECT_THAT(out, Not(HasSubstr("started worker-0")));

  std::map<std::string, pid_t> after = RunningRecords();
  ASSERT_EQ(after.size(), 3u);
  EXPECT_EQ(after["coordinator"], before["coordinator"]);
  EXPECT_EQ(after["worker-0"], before["worker-0"]);
  EXPECT_NE(after["worker-1"], before["worker-1"]);
  // Its recorded slots, name and work dir.
  std::string cmdline = ReadAll(absl::StrCat("/proc/", after["worker-1"], "/cmdline"));
  EXPECT_THAT(cmdline, HasSubstr(std::string("--slots=2\0", 10)));
  EXPECT_THAT(cmdline, HasSubstr(std::string("--name=w1\0", 10)));
  EXPECT_THAT(cmdline, HasSubstr("--work-dir=" + dir_ + "/worker-1-state"));

  // The coordinator lists the new worker-1 and, once the heartbeat timeout declared it lost, no
  // longer the old one.
  const std::set<std::string> expected = {FirstLine("worker-0.addr"), FirstLine("worker-1.addr")};
  EXPECT_EQ(expected.count(old_address), 0u);
  ASSERT_TRUE(WaitFor([&] { return ListedAddresses() == expected; }, std::chrono::seconds(20),
                      "the listed workers to be the expected ones", kPoll));
  std::vector<pid_t> workers = ProcessesOf("sluice-worker");
  EXPECT_EQ(std::set<pid_t>(workers.begin(), workers.end()),
            (std::set<pid_t>{after["worker-0"], after["worker-1"]}));
}

TEST_F(LocalClusterCliTest, AddWorkerRegistersOneMoreWorkerWithItsSlots) {
  StartCluster();
  std::string out;
  ASSERT_EQ(Sluice("cluster add-worker --slots 3 --dir " + dir_, &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("registered"));
  EXPECT_THAT(out, HasSubstr("3 slot(s)"));
  const std::string address = FirstLine("worker-2.addr");
  ASSERT_FALSE(address.empty());
  EXPECT_THAT(out, HasSubstr(address));

  std::map<std::string, pid_t> running = RunningRecords();
  EXPECT_EQ(running.size(), 4u);
  ASSERT_GT(running["worker-2"], 0);
  EXPECT_TRUE(fs::exists(dir_ + "/worker-2.log"));
  EXPECT_TRUE(fs::is_directory(dir_ + "/worker-2-state"));
  // Registered before add-worker returned: no waiting here.
  std::vector<ListedWorker> workers = ListedWorkers();
  ASSERT_EQ(workers.size(), 3u);
  const ListedWorker* added = nullptr;
  for (const auto& w : workers) {
    if (w.data_address == address) added = &w;
  }
  ASSERT_NE(added, nullptr);
  EXPECT_EQ(added->slots, 3);
  EXPECT_THAT(out, HasSubstr("worker " + added->id + " registered"));
  EXPECT_EQ(ProcessesOf("sluice-worker").size(), 3u);

  // A restart after a crash brings the added worker back with its own slots.
  Crash("worker-2");
  ASSERT_EQ(Sluice("cluster start --dir " + dir_, &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("started worker-2"));
  std::string cmdline = ReadAll(absl::StrCat("/proc/", RunningRecords()["worker-2"], "/cmdline"));
  EXPECT_THAT(cmdline, HasSubstr(std::string("--slots=3\0", 10)));
}

TEST_F(LocalClusterCliTest, AddWorkerWithoutARunningCoordinatorFails) {
  std::string out;
  EXPECT_EQ(Sluice("cluster add-worker --dir " + dir_, &out), 1) << out;
  EXPECT_THAT(out, HasSubstr("sluice: error: no cluster recorded in " + dir_));
  StartCluster();
  Crash("coordinator");
  EXPECT_EQ(Sluice("cluster add-worker --dir " + dir_, &out), 1) << out;
  EXPECT_THAT(out, HasSubstr("is not running; start what is missing with `sluice cluster start"));
  EXPECT_EQ(ProcessesOf("sluice-worker").size(), 2u);
}

// The in-process API the other integration tests use: a restarted coordinator binds its gRPC
// and HTTP ports again.
TEST(LocalClusterTest, RestartCoordinatorKeepsBothPorts) {
  std::string root = MakeTempDir("sluice-lc");
  ASSERT_FALSE(root.empty());
  cli::LocalClusterOptions o;
  o.dir = root + "/cluster";
  o.workers = 1;
  o.slots = 1;
  o.bin_dir = SLUICE_TEST_BIN_DIR;
  o.die_with_parent = true;
  auto c = cli::LocalCluster::Start(o);
  ASSERT_OK(c);
  const std::string address = (*c)->coordinator_address();
  const int http_port = (*c)->coordinator_http_port();
  ASSERT_GT(http_port, 0);
  // A second cluster in the same directory is refused while this one runs.
  EXPECT_THAT(cli::LocalCluster::Start(o), StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("already running")));

  ASSERT_OK((*c)->KillCoordinator());
  ASSERT_OK((*c)->RestartCoordinator());
  EXPECT_EQ((*c)->coordinator_address(), address);
  EXPECT_EQ((*c)->coordinator_http_port(), http_port);
  EXPECT_OK((*c)->WaitForWorkers(1, 20000));
  (*c)->Stop();
  std::error_code ec;
  fs::remove_all(root, ec);
}

// `sluice cluster start --state-memory` reaches the workers, and `sluice status` shows each
// keyed operator's state cache: with every key of a keyed count fitting in the cache, only the
// first read of each key misses. (The aggregate reads a key once per batch of records, at its
// first record there, so the hits depend on how records were batched: at most one per record
// after a key's first.)
TEST_F(LocalClusterCliTest, StateMemoryReachesTheWorkersAndStatusShowsTheStateCache) {
  StartCluster("--state-memory 64MiB");
  for (const char* w : {"worker-0.cmd", "worker-1.cmd"}) {
    EXPECT_THAT(ReadAll(dir_ + "/" + w), HasSubstr("--state-memory=64MiB")) << w;
  }
  constexpr int kRecords = 30000;
  constexpr int kKeys = 1000;
  const std::string job_file = root_ + "/count.yaml";
  std::ofstream(job_file) << absl::StrCat(R"(
name: keyed-count
parallelism: 2
operators:
  - id: gen
    type: datagen
    count: )", kRecords, R"(
    fields:
      # a string key: the aggregate keeps one-integer keys in memory, past the state cache
      - {name: key, type: string, expr: "to_string(seq % )", kKeys, R"x()"})x", R"(
  - {id: by_key, type: key_by, key: [key]}
  - {id: counts, type: aggregate, aggregates: [{fn: count, as: n}]}
  - {id: sink, type: blackhole}
)");
  std::string out;
  ASSERT_EQ(Sluice("run --wait " + job_file, &out), 0) << out;
  const std::string job = out.substr(0, out.find('\n'));
  ASSERT_EQ(Sluice("status " + job, &out), 0) << out;
  // "cache hit rate <rate> (<hits> hits, <misses> misses)"
  const size_t at = out.find("cache hit rate ");
  ASSERT_NE(at, std::string::npos) << out;
  const size_t open = out.find(" (", at);
  const size_t hits_end = out.find(" hits, ", open);
  const size_t misses_end = out.find(" misses)", hits_end);
  ASSERT_NE(misses_end, std::string::npos) << out;
  uint64_t hits = 0;
  uint64_t misses = 0;
  ASSERT_TRUE(absl::SimpleAtoi(out.substr(open + 2, hits_end - open - 2), &hits)) << out;
  ASSERT_TRUE(absl::SimpleAtoi(out.substr(hits_end + 7, misses_end - hits_end - 7), &misses)) << out;
  EXPECT_EQ(misses, static_cast<uint64_t>(kKeys)) << out;
  EXPECT_LE(hits, static_cast<uint64_t>(kRecords - kKeys)) << out;
  EXPECT_EQ(out.substr(at + 15, open - at - 15), cli::FormatHitRate(hits, misses)) << out;
  EXPECT_THAT(out, HasSubstr("per subtask: #0 ")) << out;
}

}  // namespace
}  // namespace sluice::testing
