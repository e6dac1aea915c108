// Sluice across hosts: a coordinator and three workers in four network namespaces ("hosts"),
// each with its own address on a bridge that lives in a fifth namespace, so processes reach
// each other only over real network interfaces. A checkpointed job with a cross-worker shuffle
// runs to its exact result through network faults:
//   - a worker's link taken down mid-job: it is declared lost, the job restarts from its
//     checkpoint on the other workers, output exactly-once; the link restored: it rejoins;
//   - iptables DROP between two workers (the data plane only; heartbeats still flow): the job
//     fails over (keepalives break the silent streams) and recovers once the partition heals.
// Rules kept: namespaces have no default route; every connection to a namespace address is
// made from inside a namespace (`ip netns exec`), the CLI included, never from the root
// namespace; namespaces, links and processes are removed on exit, also on failure. Needs
// root (CAP_NET_ADMIN): skipped, and reported as skipped, where namespaces cannot be created.

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "tests/cluster_fixture.h"
#include "tests/exactly_once_check.h"

namespace sluice::testing {
namespace {

constexpr int kHosts = 4;  // h0: coordinator, h1..h3: workers
constexpr char kSubnet[] = "10.213.77.";
constexpr int kCoordinatorPort = 6123;

// How often a wait here looks again (each look runs the CLI in a namespace).
constexpr std::chrono::milliseconds kPoll(200);

std::string HostIp(int h) { return absl::StrCat(kSubnet, h + 1); }

class MultiHostTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tag_ = absl::StrCat("slc", getpid() % 100000);
    bridge_ns_ = tag_ + "-br";
    RemoveStaleNamespaces();
    dir_ = MakeTempDir("sluice-multihost");
    ASSERT_FALSE(dir_.empty());
    std::string out;
    if (Sh("ip netns add " + bridge_ns_, &out) != 0) {
      GTEST_SKIP() << "cannot create network namespaces here (needs root): " << out;
    }
    created_.push_back(bridge_ns_);
    ASSERT_EQ(Sh(absl::StrCat("ip -n ", bridge_ns_, " link add br0 type bridge && ip -n ", bridge_ns_,
                              " link set br0 up && ip -n ", bridge_ns_, " link set lo up"), &out), 0) << out;
    for (int h = 0; h < kHosts; ++h) {
      const std::string ns = Ns(h);
      ASSERT_EQ(Sh("ip netns add " + ns, &out), 0) << out;
      created_.push_back(ns);
      // One end in the host (eth0), the other on the bridge. No default route anywhere.
      ASSERT_EQ(Sh(absl::StrCat("ip link add ", HostLink(h), " netns ", ns, " type veth peer name ", BridgeLink(h),
                                " netns ", bridge_ns_), &out), 0) << out;
      ASSERT_EQ(Sh(absl::StrCat("ip -n ", ns, " link set ", HostLink(h), " name eth0 && ip -n ", ns,
                                " addr add ", HostIp(h), "/24 dev eth0 && ip -n ", ns, " link set eth0 up && ip -n ",
                                ns, " link set lo up && ip -n ", bridge_ns_, " link set ", BridgeLink(h),
                                " master br0 up"), &out), 0) << out;
    }
  }

  void TearDown() override {
    for (pid_t pid : pids_) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
    std::string out;
    for (auto it = created_.rbegin(); it != created_.rend(); ++it) Sh("ip netns delete " + *it, &out);
    if (!dir_.empty()) {
      if (HasFailure()) {
        std::cerr << "logs kept in " << dir_ << "\n";
      } else {
        std::filesystem::remove_all(dir_);
      }
    }
  }

  // Earlier runs of this test that died without cleaning up (namespaces named slc*-h*/-br).
  void RemoveStaleNamespaces() {
    std::string list;
    Sh("ip netns list", &list);
    for (absl::string_view line : absl::StrSplit(list, '\n')) {
      std::string name(line.substr(0, line.find(' ')));
      if (std::regex_match(name, std::regex("slc[0-9]+-(br|h[0-9])"))) {
        std::string out;
        Sh("ip netns delete " + name, &out);
      }
    }
  }

  static int Sh(const std::string& cmd, std::string* out) {
    out->clear();
    return RunCommand(cmd, out);
  }
  std::string Ns(int h) const { return absl::StrCat(tag_, "-h", h); }
  std::string HostLink(int h) const { return absl::StrCat(tag_, "h", h); }
  std::string BridgeLink(int h) const { return absl::StrCat(tag_, "b", h); }

  // Starts `args` inside host h's namespace; killed in TearDown (and with this process).
  void SpawnIn(int h, const std::vector<std::string>& args, const std::string& log) {
    pid_t pid = fork();
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (freopen(log.c_str(), "w", stdout) == nullptr || freopen(log.c_str(), "a", stderr) == nullptr) _exit(126);
      std::vector<std::string> all = {"/usr/sbin/ip", "netns", "exec", Ns(h)};
      all.insert(all.end(), args.begin(), args.end());
      std::vector<char*> argv;
      for (auto& a : all) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    pids_.push_back(pid);
  }

  void StartCluster() {
    SpawnIn(0, {std::string(SLUICE_TEST_BIN_DIR) + "/sluice-coordinator", "--host", HostIp(0), "--port",
                std::to_string(kCoordinatorPort), "--http-port", "8081", "--heartbeat-timeout-ms", "2000",
                "--ha-dir", dir_ + "/ha", "--checkpoint-dir", dir_ + "/checkpoints", "--savepoint-dir",
                dir_ + "/savepoints"},
            dir_ + "/coordinator.log");
    for (int h = 1; h < kHosts; ++h) StartWorker(h);
    ASSERT_TRUE(WaitForWorkers(3, std::chrono::seconds(30))) << Cli("workers");
  }
  void StartWorker(int h) {
    // Bound to all interfaces, advertised by the host's own address.
    SpawnIn(h, {std::string(SLUICE_TEST_BIN_DIR) + "/sluice-worker", "--host", "0.0.0.0", "--advertise-address",
                HostIp(h), "--port", "7000", "--http-port", "8082", "--slots", "2", "--coordinator",
                absl::StrCat(HostIp(0), ":", kCoordinatorPort), "--work-dir", absl::StrCat(dir_, "/w", h)},
            absl::StrCat(dir_, "/worker-", h, ".log"));
  }

  // The CLI, run on host h0 (the coordinator's namespace).
  std::string Cli(const std::string& args, int* rc = nullptr) {
    std::string out;
    int code = Sh(absl::StrCat("ip netns exec ", Ns(0), " ", SLUICE_TEST_BIN_DIR, "/sluice --coordinator ",
                               HostIp(0), ":", kCoordinatorPort, " ", args), &out);
    if (rc != nullptr) *rc = code;
    return out;
  }
  int WorkerCount() {
    std::string out = Cli("workers");
    return static_cast<int>(std::count(out.begin(), out.end(), '\n')) - 1;  // minus the header
  }
  ::testing::AssertionResult WaitForWorkers(int n, std::chrono::seconds timeout) {
    return WaitFor([&] { return WorkerCount() == n; }, timeout, absl::StrCat(n, " workers"), kPoll);
  }
  // `sluice status JOB`'s state word, and its text in *status.
  std::string State(const std::string& job, std::string* status = nullptr) {
    std::string out = Cli("status " + job);
    if (status != nullptr) *status = out;
    std::smatch m;
    return std::regex_search(out, m, std::regex("\\): ([A-Z]+),")) ? m.str(1) : "?";
  }
  std::string WaitForState(const std::string& job, const std::vector<std::string>& states,
                           std::chrono::seconds timeout) {
    std::string s;
    WaitFor([&] {
      s = State(job);
      return std::find(states.begin(), states.end(), s) != states.end();
    }, timeout, "job " + job + "'s state", kPoll);
    return s;
  }
  int Restarts(const std::string& job) {
    std::string out = Cli("status " + job);
    std::smatch m;
    return std::regex_search(out, m, std::regex("attempt [0-9]+, ([0-9]+) restart")) ? std::stoi(m.str(1)) : 0;
  }
  ::testing::AssertionResult WaitForCheckpoint(const std::string& job, std::chrono::seconds timeout) {
    return WaitFor([&] { return Cli("status " + job).find("COMPLETED") != std::string::npos; }, timeout,
                   "a completed checkpoint of " + job, kPoll);
  }
  std::string Submit(const std::string& yaml) {
    const std::string file = dir_ + "/job.yaml";
    std::ofstream(file) << yaml;
    int rc = 0;
    std::string out = Cli("run " + file, &rc);
    EXPECT_EQ(rc, 0) << out;
    std::smatch m;
    EXPECT_TRUE(std::regex_search(out, m, std::regex("job-[0-9a-f]{8}"))) << out;
    return m.empty() ? "" : m.str(0);
  }

  std::string tag_, bridge_ns_, dir_;
  std::vector<std::string> created_;
  std::vector<pid_t> pids_;
};

TEST_F(MultiHostTest, ShuffleJobIsExactlyOnceThroughLinkLossAndADataPlanePartition) {
  StartCluster();
  constexpr int64_t kRecords = 1'200'000;
  const std::string out = dir_ + "/out";
  CountingJobOptions o;
  o.parallelism = 3;
  o.name = "multihost";
  const std::string job = Submit(CountingJob(out, kRecords, 40'000, o));
  ASSERT_TRUE(WaitForCheckpoint(job, std::chrono::seconds(30))) << Cli("status " + job);

  // Host 2 drops off the network: lost after the heartbeat timeout, the job restarts on the
  // other two workers (4 slots) from its latest checkpoint.
  std::string sh;
  ASSERT_EQ(Sh(absl::StrCat("ip -n ", bridge_ns_, " link set ", BridgeLink(2), " down"), &sh), 0) << sh;
  ASSERT_TRUE(WaitForWorkers(2, std::chrono::seconds(20))) << Cli("workers");
  ASSERT_EQ(WaitForState(job, {"RUNNING"}, std::chrono::seconds(30)), "RUNNING");
  EXPECT_GE(Restarts(job), 1);
  std::string status;
  State(job, &status);
  EXPECT_THAT(status, ::testing::HasSubstr("lost: no heartbeat"));
  // Back on the network: it registers again (its old tasks cancelled), a usable worker.
  ASSERT_EQ(Sh(absl::StrCat("ip -n ", bridge_ns_, " link set ", BridgeLink(2), " up"), &sh), 0) << sh;
  ASSERT_TRUE(WaitForWorkers(3, std::chrono::seconds(30))) << Cli("workers");

  // A partition of the data plane between hosts 1 and 3 (their heartbeats still reach the
  // coordinator). Wait until the job runs with subtasks on both, so that it crosses it.
  const int restarts_before = Restarts(job);
  ASSERT_EQ(Sh(absl::StrCat("ip netns exec ", Ns(1), " iptables -A INPUT -s ", HostIp(3), " -j DROP && ",
                            "ip netns exec ", Ns(1), " iptables -A OUTPUT -d ", HostIp(3), " -j DROP"), &sh), 0)
      << sh;
  WaitFor([&] { return Restarts(job) != restarts_before || State(job) == "FINISHED"; },
          std::chrono::seconds(40), "a fail-over", kPoll);
  const bool failed_over = Restarts(job) > restarts_before;
  ASSERT_EQ(Sh(absl::StrCat("ip netns exec ", Ns(1), " iptables -F"), &sh), 0) << sh;
  ASSERT_EQ(WaitForState(job, {"FINISHED", "FAILED"}, std::chrono::seconds(240)), "FINISHED")
      << Cli("status " + job);
  EXPECT_TRUE(failed_over) << "the partition did not make the job fail over: " << Cli("status " + job);
  CheckExactlyOnce({out}, ExpectedFor(kRecords));
  int rc = 0;
  std::string list = Cli("list", &rc);
  EXPECT_EQ(rc, 0) << list;
  EXPECT_THAT(list, ::testing::HasSubstr("FINISHED"));
}

}  // namespace
}  // namespace sluice::testing
