// Jobs using operator plugins on a real cluster (coordinator and 2 workers as processes): the
// example plugins regex_extract (stateless) and dedup (keyed state, event-time timers) named by
// the job's `plugins:`, across 2 workers with checkpoints; a plugin whose validate hook refuses
// its options, and a plugin of an ABI this build cannot load, are refused at submission
// (through `sluice run`) with the reason and the job file position, and nothing is deployed.

#include <set>

#include "absl/strings/match.h"
#include "nlohmann/json.hpp"
#include "tests/cluster_fixture.h"
#include "tests/exactly_once_check.h"

namespace sluice::testing {
namespace {

using ::testing::HasSubstr;

const std::string kPluginDir = SLUICE_TEST_EXAMPLE_PLUGIN_DIR;
constexpr int64_t kIds = 5000;

// datagen (each id `repeats` times, in several copies of the same record) -> regex_extract
// (the domain of the email) -> dedup by id (hash-partitioned across 2 subtasks) -> file.
// Every copy of an id is the same record, so the output is one line per id whatever the
// arrival order: {"id": i, "ts": i, "email": "user<i>@d<i % 7>.example", "domain": "d<i % 7>.example"}.
std::string DedupJob(const std::string& out, int64_t repeats, int64_t rate,
                     const std::string& regex_options = "pattern: \"@(.+)$\"") {
  return absl::StrCat(R"y(name: plugin-job
parallelism: 2
plugins: [)y", kPluginDir, "/libregex_extract.so, ", kPluginDir, R"y(/libdedup.so]
checkpoint: {interval: 200ms, timeout: 20s}
restart: {strategy: fixed_delay, attempts: 1000, delay: 100ms}
operators:
  - id: gen
    type: datagen
    count: )y", kIds * repeats, "\n    rate: ", rate, R"y(
    fields:
      - {name: id, type: int64, expr: "seq % )y", kIds, R"y("}
      - {name: ts, type: int64, expr: "seq % )y", kIds, R"y("}
      - {name: email, type: string, expr: "concat('user', to_string(seq % )y", kIds,
                      R"y(), '@d', to_string((seq % )y", kIds, R"y() % 7), '.example')"}
  - id: domain
    type: regex_extract
    field: email
    )y", regex_options, R"y(
    as: domain
  - id: unique
    type: dedup
    input: {from: domain, partition: hash, key: [id]}
    time_field: ts
    within_ms: 1000000000
  - {id: out, type: file, path: )y", out, "}\n");
}

// Checks the committed output: exactly one line per id, each the expected record.
void CheckDedupOutput(const std::string& out) {
  std::vector<std::string> lines = ReadCommittedLines({out});
  ASSERT_EQ(static_cast<int64_t>(lines.size()), kIds);
  std::set<int64_t> ids;
  for (const std::string& line : lines) {
    auto j = nlohmann::json::parse(line);
    const int64_t id = j["id"].get<int64_t>();
    const std::string domain = absl::StrCat("d", id % 7, ".example");
    EXPECT_TRUE(ids.insert(id).second) << "duplicate: " << line;
    EXPECT_EQ(j["ts"].get<int64_t>(), id) << line;
    EXPECT_EQ(j["email"].get<std::string>(), absl::StrCat("user", id, "@", domain)) << line;
    EXPECT_EQ(j["domain"].get<std::string>(), domain) << line;
  }
  EXPECT_EQ(ids.size(), static_cast<size_t>(kIds));
  if (!ids.empty()) {
    EXPECT_EQ(*ids.begin(), 0);
    EXPECT_EQ(*ids.rbegin(), kIds - 1);
  }
}

class PluginJobTest : public ClusterTest {
 protected:
  // `sluice run FILE` against the cluster; returns the exit code, output in *out.
  int SluiceRun(const std::string& yaml, std::string* out) {
    const std::string file = dir_ + "/job.yaml";
    std::ofstream(file) << yaml;
    return RunCommand(absl::StrCat(SLUICE_TEST_BIN_DIR, "/sluice --coordinator ",
                                   cluster_->coordinator_address(), " run ", file),
                      out);
  }

  // No job was accepted: `sluice list` shows none.
  void ExpectNoJobs() {
    std::string out;
    EXPECT_EQ(RunCommand(absl::StrCat(SLUICE_TEST_BIN_DIR, "/sluice --coordinator ",
                                      cluster_->coordinator_address(), " list"),
                         &out),
              0) << out;
    EXPECT_FALSE(absl::StrContains(out, "plugin-job")) << out;
  }
};

TEST_F(PluginJobTest, ExamplePluginsAcrossTwoWorkersWithCheckpoints) {
  StartCluster(2, 2);
  const std::string out = dir_ + "/out";
  std::string job = Submit(DedupJob(out, 20, 100'000));
  proto::JobInfo info = WaitForEnd(job, std::chrono::seconds(60));
  ASSERT_EQ(info.state(), proto::JOB_FINISHED) << info.error();
  int completed = 0;
  for (const auto& c : info.checkpoints()) completed += c.status() == "COMPLETED" && !c.savepoint();
  EXPECT_GE(completed, 1) << "no checkpoint completed";
  CheckDedupOutput(out);
  // Both workers ran plugin subtasks.
  std::set<std::string> workers;
  for (const auto& v : info.vertices()) {
    for (const auto& t : v.subtasks()) workers.insert(t.worker_id());
  }
  EXPECT_EQ(workers.size(), 2u);
}

TEST_F(PluginJobTest, OptionsRefusedByThePluginAreRefusedAtSubmission) {
  StartCluster(1, 2);
  std::string out;
  EXPECT_EQ(SluiceRun(DedupJob(dir_ + "/out", 1, 0, "pattern: \"@(.+$\""), &out), 1) << out;
  // The plugin's message, with the position of the operator in the job file.
  EXPECT_THAT(out, HasSubstr("job.yaml:15:5: operator type 'regex_extract' of plugin 'regex-extract'"));
  EXPECT_THAT(out, HasSubstr("refused its options: option 'pattern' is not a valid regular expression"));
  ExpectNoJobs();
}

TEST_F(PluginJobTest, PluginOfAnIncompatibleAbiIsRefusedAtSubmission) {
  StartCluster(1, 2);
  std::string yaml = DedupJob(dir_ + "/out", 1, 0);
  const std::string plugins_line = yaml.substr(yaml.find("plugins:"), yaml.find('\n', yaml.find("plugins:")) - yaml.find("plugins:"));
  yaml.replace(yaml.find(plugins_line), plugins_line.size(),
               absl::StrCat("plugins:\n  - ", SLUICE_TEST_ABI_1_2_PLUGIN));
  std::string out;
  EXPECT_EQ(SluiceRun(yaml, &out), 1) << out;
  EXPECT_THAT(out, HasSubstr("job.yaml:4:5: cannot load plugin "));
  EXPECT_THAT(out, HasSubstr("built for plugin ABI 1.2"));
  EXPECT_THAT(out, HasSubstr("supports ABI 1.1"));
  ExpectNoJobs();
}

}  // namespace
}  // namespace sluice::testing
