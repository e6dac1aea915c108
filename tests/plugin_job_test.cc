// Jobs using operator plugins on a real cluster (coordinator and workers as processes): the
// example plugins regex_extract (stateless), dedup (keyed state, event-time timers) and enrich
// (keyed, two inputs), named by the job's `plugins:` or found in --plugin-dir
// (SLUICE_PLUGIN_DIR), across 2 workers with checkpoints; kill -9 of workers and a savepoint
// restored at another parallelism keep the output exactly once; a plugin whose validate hook
// refuses its options, and a plugin of an ABI this build cannot load, are refused at submission
// (through `sluice run`) with the reason and the job file position, and nothing is deployed; a
// worker that cannot load a plugin refuses the deployment and the job fails with the reason; a
// plugin returning an error fails its task and the job restarts per its strategy; a plugin that
// throws or returns an error on a record restarts the job from a checkpoint, exactly once; a
// plugin that aborts in validate is refused at submission (validation runs in a helper process);
// a keyed plugin's event-time timers fire with their keys; a plugin's aggregate functions
// (percentile's p90 and median, ABI 1.2) in a tumbling window keep every window's exact
// percentiles exactly once through kill -9 of workers.

#include <stdlib.h>

#include <algorithm>
#include <map>
#include <random>
#include <set>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_replace.h"
#include "nlohmann/json.hpp"
#include "tests/cluster_fixture.h"
#include "tests/exactly_once_check.h"

namespace sluice::testing {
namespace {

using ::testing::HasSubstr;

const std::string kPluginDir = SLUICE_TEST_EXAMPLE_PLUGIN_DIR;

struct DedupJobOptions {
  int64_t ids = 5000;
  int64_t repeats = 20;  // copies of each id's record
  int64_t rate = 100'000;
  std::string regex_options = "pattern: \"@(.+)$\"";
  // The job's plugins line ("" for none: the types come from --plugin-dir).
  std::string plugins = absl::StrCat("plugins: [", kPluginDir, "/libregex_extract.so, ", kPluginDir,
                                     "/libdedup.so]");
};

// datagen (record s has id s / repeats: each id `repeats` times in a row, as copies of one
// record) -> regex_extract (the domain of the email) -> dedup by id (hash-partitioned across 2
// subtasks) -> file. Every copy of an id is the same record, so the output is one line per id
// whatever the arrival order and the failures:
// {"id": i, "ts": i, "email": "user<i>@d<i % 7>.example", "domain": "d<i % 7>.example"}.
std::string DedupJob(const std::string& out, const DedupJobOptions& o = {}) {
  const std::string id = absl::StrCat("(seq / ", o.repeats, ")");
  return absl::StrCat("name: plugin-job\nparallelism: 2\n", o.plugins, R"y(
checkpoint: {interval: 200ms, timeout: 20s}
restart: {strategy: fixed_delay, attempts: 1000, delay: 100ms}
operators:
  - id: gen
    type: datagen
    count: )y", o.ids * o.repeats, "\n    rate: ", o.rate, R"y(
    fields:
      - {name: id, type: int64, expr: ")y", id, R"y("}
      - {name: ts, type: int64, expr: ")y", id, R"y("}
      - {name: email, type: string, expr: "concat('user', to_string()y", id, R"y(), '@d', to_string()y", id,
                      R"y( % 7), '.example')"}
  - id: domain
    type: regex_extract
    field: email
    )y", o.regex_options, R"y(
    as: domain
  - id: unique
    type: dedup
    input: {from: domain, partition: hash, key: [id]}
    time_field: ts
    within_ms: 1000000000
  - {id: out, type: file, path: )y", out, "}\n");
}

// Checks the committed output: exactly one line per id, each the expected record.
void CheckDedupOutput(const std::string& out, int64_t ids) {
  std::vector<std::string> lines = ReadCommittedLines({out});
  EXPECT_EQ(static_cast<int64_t>(lines.size()), ids);
  std::set<int64_t> seen;
  int64_t bad = 0;
  for (const std::string& line : lines) {
    auto j = nlohmann::json::parse(line);
    const int64_t id = j["id"].get<int64_t>();
    const std::string domain = absl::StrCat("d", id % 7, ".example");
    if (!seen.insert(id).second) ADD_FAILURE() << "duplicate: " << line;
    bad += j["ts"].get<int64_t>() != id || j["email"].get<std::string>() != absl::StrCat("user", id, "@", domain) ||
           j["domain"].get<std::string>() != domain;
    if (bad == 1) ADD_FAILURE() << "unexpected record: " << line;
  }
  EXPECT_EQ(bad, 0);
  EXPECT_EQ(static_cast<int64_t>(seen.size()), ids);
  if (!seen.empty()) {
    EXPECT_EQ(*seen.begin(), 0);
    EXPECT_EQ(*seen.rbegin(), ids - 1);
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

  // Runs FailingCountingJob on 2 workers and checks the restart, its reason and the output.
  void RunFailingPluginJob(const std::string& how, const std::string& expected_text);

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
  std::string job = Submit(DedupJob(out));
  proto::JobInfo info = WaitForEnd(job, std::chrono::seconds(60));
  ASSERT_EQ(info.state(), proto::JOB_FINISHED) << info.error();
  int completed = 0;
  for (const auto& c : info.checkpoints()) completed += c.status() == "COMPLETED" && !c.savepoint();
  EXPECT_GE(completed, 1) << "no checkpoint completed";
  CheckDedupOutput(out, DedupJobOptions().ids);
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
  DedupJobOptions o;
  o.regex_options = "pattern: \"@(.+$\"";
  EXPECT_EQ(SluiceRun(DedupJob(dir_ + "/out", o), &out), 1) << out;
  // The plugin's message, with the position of the operator in the job file.
  EXPECT_THAT(out, HasSubstr("job.yaml:15:5: operator type 'regex_extract' of plugin 'regex-extract'"));
  EXPECT_THAT(out, HasSubstr("refused its options: option 'pattern' is not a valid regular expression"));
  ExpectNoJobs();
}

TEST_F(PluginJobTest, PluginOfAnIncompatibleAbiIsRefusedAtSubmission) {
  StartCluster(1, 2);
  DedupJobOptions o;
  o.plugins = absl::StrCat("plugins:\n  - ", SLUICE_TEST_ABI_1_3_PLUGIN);
  std::string yaml = DedupJob(dir_ + "/out", o);
  std::string out;
  EXPECT_EQ(SluiceRun(yaml, &out), 1) << out;
  EXPECT_THAT(out, HasSubstr("job.yaml:4:5: cannot load plugin "));
  EXPECT_THAT(out, HasSubstr("built for plugin ABI 1.3"));
  EXPECT_THAT(out, HasSubstr("supports ABI 1.2"));
  ExpectNoJobs();
}

// Validation runs plugin code in a helper process: a plugin that aborts in validate refuses the
// job with the plugin file named, deploys nothing, and the coordinator serves the next job.
TEST_F(PluginJobTest, PluginThatAbortsInValidateIsRefusedAndTheCoordinatorStaysUp) {
  StartCluster(1, 2);
  const std::string yaml = absl::StrCat("name: plugin-job\nplugins: [", SLUICE_TEST_CRASH_PLUGIN, R"y(]
operators:
  - {id: gen, type: datagen, count: 10, fields: [{name: a, type: int64, expr: "seq"}]}
  - {id: crash, type: abort_in_validate}
  - {id: out, type: blackhole}
)y");
  std::string out;
  EXPECT_EQ(SluiceRun(yaml, &out), 1) << out;
  EXPECT_THAT(out, HasSubstr("cannot validate the plugin operators of"));
  EXPECT_THAT(out, HasSubstr("was killed by signal 6 (Aborted) while running validate and output_schema of "
                             "operator 'crash' (type 'abort_in_validate') in " SLUICE_TEST_CRASH_PLUGIN));
  ExpectNoJobs();

  DedupJobOptions o;
  o.ids = 500;
  o.repeats = 2;
  std::string job = Submit(DedupJob(dir_ + "/out", o));
  proto::JobInfo info = WaitForEnd(job, std::chrono::seconds(60));
  ASSERT_EQ(info.state(), proto::JOB_FINISHED) << info.error();
  CheckDedupOutput(dir_ + "/out", o.ids);
}

// A keyed plugin's event-time timers fire in a job, with their keys: the test plugin's
// keyed_count registers one timer per key beyond every event time and emits (key, count) when it
// fires, which the end of event time does: one line per key with that key's count.
TEST_F(PluginJobTest, PluginEventTimersFireWithTheirKeys) {
  StartCluster(2, 2);
  const std::string out = dir_ + "/out";
  std::string job = Submit(absl::StrCat("name: plugin-timers\nparallelism: 2\nplugins: [", SLUICE_TEST_SDK_PLUGIN, R"y(]
checkpoint: {interval: 200ms}
operators:
  - id: gen
    type: datagen
    count: 7000
    fields: [{name: k, type: int64, expr: "seq % 70"}, {name: ts, type: timestamp, expr: "to_timestamp(seq)"}]
    event_time: {field: ts}
  - id: counts
    type: keyed_count
    input: {from: gen, partition: hash, key: [k]}
    key_field: k
    timer: event
    at: 1000000000
  - {id: out, type: file, path: )y", out, "}\n"));
  proto::JobInfo info = WaitForEnd(job, std::chrono::seconds(60));
  ASSERT_EQ(info.state(), proto::JOB_FINISHED) << info.error();
  std::vector<std::string> lines = ReadCommittedLines({out});
  std::set<int64_t> keys;
  for (const std::string& line : lines) {
    auto j = nlohmann::json::parse(line);
    EXPECT_EQ(j["count"].get<int64_t>(), 100) << line;
    EXPECT_TRUE(keys.insert(j["k"].get<int64_t>()).second) << "twice: " << line;
  }
  EXPECT_EQ(lines.size(), 70u);
  EXPECT_EQ(keys.size(), 70u);
}

TEST_F(PluginJobTest, KillingWorkersKeepsPluginOutputExactlyOnce) {
  StartCluster(2, 2, 1500);
  const std::string out = dir_ + "/out";
  // 6 s of input, new ids all along; the dedup state (RocksDB, checkpointed) decides what is
  // a repeat after each restore.
  DedupJobOptions o;
  o.ids = 60'000;
  o.repeats = 20;
  o.rate = 200'000;
  std::string job = Submit(DedupJob(out, o));
  WaitForState(job, proto::JOB_RUNNING, std::chrono::seconds(10));
  std::mt19937 rng(4242);
  for (int k = 0; k < 3; ++k) {
    // Not synchronisation: a random moment to kill at is what this chaos loop tests.
    std::this_thread::sleep_for(std::chrono::milliseconds(700 + rng() % 900));
    auto info = client_->GetJob(job);
    ASSERT_OK(info);
    if (info->state() == proto::JOB_FINISHED) break;
    const int victim = rng() % 2;
    ASSERT_OK(cluster_->KillWorker(victim, SIGKILL));
    ASSERT_OK(cluster_->RestartWorker(victim, -1));
  }
  proto::JobInfo info = WaitForEnd(job, std::chrono::seconds(180));
  ASSERT_EQ(info.state(), proto::JOB_FINISHED) << info.error();
  EXPECT_GE(info.restarts(), 1) << "the kills did not hit the job";
  CheckDedupOutput(out, o.ids);
}

// Record `seq` of the percentile job: key (seq * 7919) % 40, value (seq * 31) % 1009, event time
// seq / 4 ms minus up to 96 ms (within the watermarks' 100 ms of out-of-orderness).
int64_t PercentileKey(int64_t seq) { return (seq * 7919) % 40; }
int64_t PercentileValue(int64_t seq) { return (seq * 31) % 1009; }
int64_t PercentileTs(int64_t seq) { return seq / 4 - (seq * 7919) % 97; }

// The value at rank ceil(pct * n / 100) of `values` in ascending order (nearest rank).
int64_t NearestRank(std::vector<int64_t> values, int64_t pct) {
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return values[std::max<size_t>(1, (pct * n + 99) / 100) - 1];
}

TEST_F(PluginJobTest, PluginAggregateFunctionsInAWindowAreExactlyOnceThroughKills) {
  StartCluster(2, 2, 1500);
  constexpr int64_t kRecords = 300'000;
  constexpr int64_t kWindowMs = 100;
  const std::string out = dir_ + "/out";
  const std::string yaml = absl::StrCat("name: plugin-window\nparallelism: 2\nplugins: [", kPluginDir, R"y(/libpercentile.so]
watermark_interval: 20ms
checkpoint: {interval: 200ms, timeout: 20s, retain: 3}
restart: {strategy: fixed_delay, attempts: 1000, delay: 100ms}
operators:
  - id: gen
    type: datagen
    count: )y", kRecords, R"y(
    rate: 50000
    fields:
      - {name: key, type: int64, expr: "(seq * 7919) % 40"}
      - {name: value, type: int64, expr: "(seq * 31) % 1009"}
      - {name: ts, type: timestamp, expr: "seq / 4 - (seq * 7919) % 97"}
    event_time: {field: ts, max_out_of_orderness: 100ms}
  - {id: by_key, type: key_by, key: key}
  - id: windows
    type: window
    tumble: 100ms
    time_field: ts
    aggregates: [{fn: count, as: n}, {fn: p90, field: value, as: p90_value}, {fn: median, field: value}]
  - {id: out, type: file, path: )y", out, R"y(, input: windows}
)y");
  std::string job = Submit(yaml);
  WaitForState(job, proto::JOB_RUNNING, std::chrono::seconds(10));
  KillWorkersAfterCheckpoints(job, 2, 2, 1234);
  if (HasFatalFailure()) return;
  proto::JobInfo info = WaitForEnd(job, std::chrono::seconds(240));
  ASSERT_EQ(info.state(), proto::JOB_FINISHED) << info.error();
  EXPECT_GE(info.restarts(), 1) << "the kills did not hit the job";
  const proto::OperatorInfo* w = FindOperator(info, "windows");
  ASSERT_NE(w, nullptr);
  ASSERT_EQ(w->late_records_dropped(), 0u) << "no record is later than the out-of-orderness";

  // The expected table, from the generator's formulas: every value of each (key, window).
  std::map<std::pair<int64_t, int64_t>, std::vector<int64_t>> values;
  for (int64_t seq = 0; seq < kRecords; ++seq) {
    const int64_t ts = PercentileTs(seq);
    const int64_t start = ts / kWindowMs * kWindowMs - (ts % kWindowMs < 0 ? kWindowMs : 0);
    values[{PercentileKey(seq), start}].push_back(PercentileValue(seq));
  }
  std::map<std::pair<int64_t, int64_t>, std::string> got;
  int64_t duplicates = 0;
  for (const std::string& line : ReadCommittedLines({out})) {
    auto j = nlohmann::json::parse(line);
    const std::pair<int64_t, int64_t> k{j["key"].get<int64_t>(), j["window_start"].get<int64_t>()};
    EXPECT_FALSE(j["update"].get<bool>()) << line;
    if (!got.emplace(k, line).second) ++duplicates;
  }
  EXPECT_EQ(duplicates, 0) << "windows emitted twice";
  EXPECT_EQ(got.size(), values.size());
  int64_t wrong = 0;
  for (const auto& [k, v] : values) {
    const std::string want = absl::StrCat(R"({"key":)", k.first, R"(,"window_start":)", k.second,
                                          R"(,"window_end":)", k.second + kWindowMs, R"(,"n":)", v.size(),
                                          R"(,"p90_value":)", NearestRank(v, 90), R"(,"median_value":)",
                                          NearestRank(v, 50), R"(,"update":false})");
    auto it = got.find(k);
    if (it == got.end() || it->second != want) {
      if (++wrong <= 5) ADD_FAILURE() << "want " << want << "\n got " << (it == got.end() ? "nothing" : it->second);
    }
  }
  EXPECT_EQ(wrong, 0);
}

TEST_F(PluginJobTest, WorkerThatCannotLoadThePluginRefusesTheDeploymentAndTheJobFails) {
  StartCluster(1, 2);
  // The plugin loads in the validation helper, so the job is accepted, but not in workers.
  std::string job = Submit(absl::StrCat("name: plugin-job\nparallelism: 2\nplugins: [", SLUICE_TEST_REFUSED_BY_WORKERS_PLUGIN,
                                        R"y(]
operators:
  - {id: gen, type: datagen, count: 10, fields: [{name: a, type: int64, expr: "seq"}]}
  - {id: op, type: noop}
  - {id: out, type: blackhole}
)y"));
  proto::JobInfo info = WaitForEnd(job, std::chrono::seconds(30));
  EXPECT_EQ(info.state(), proto::JOB_FAILED) << info.error();
  std::cout << "job error: " << info.error() << "\n";
  EXPECT_THAT(info.error(), HasSubstr("cannot load a plugin of the job: job.yaml:3:"));
  EXPECT_THAT(info.error(), HasSubstr(SLUICE_TEST_REFUSED_BY_WORKERS_PLUGIN));
  EXPECT_THAT(info.error(), HasSubstr("this test plugin does not load in sluice-worker"));
}

TEST_F(PluginJobTest, PluginDirMakesTypesAvailableWithoutPluginsInTheJob) {
  // SLUICE_PLUGIN_DIR reaches the coordinator's and the workers' --plugin-dir.
  ASSERT_EQ(setenv("SLUICE_PLUGIN_DIR", kPluginDir.c_str(), 1), 0);
  StartCluster(2, 2);
  unsetenv("SLUICE_PLUGIN_DIR");
  const std::string out = dir_ + "/out";
  DedupJobOptions o;
  o.plugins = "";
  std::string job = Submit(DedupJob(out, o));
  proto::JobInfo info = WaitForEnd(job, std::chrono::seconds(60));
  ASSERT_EQ(info.state(), proto::JOB_FINISHED) << info.error();
  CheckDedupOutput(out, o.ids);
}

TEST_F(PluginJobTest, TwoInputKeyedPluginGetsBothInputs) {
  StartCluster(2, 2);
  const std::string out = dir_ + "/out";
  // Input 1 (tiers, 100 users, fast) and input 0 (payments, 2000 over 2 s), both hash-keyed by
  // user: every payment comes out once, with its user's tier once the tier has arrived (the
  // inputs race, so early payments may get the default).
  std::string job = Submit(absl::StrCat("name: enrich-job\nparallelism: 2\nplugins: [", kPluginDir,
                                        R"y(/libenrich.so]
checkpoint: {interval: 200ms}
operators:
  - id: tiers
    type: datagen
    count: 100
    fields:
      - {name: user, type: int64, expr: "seq"}
      - {name: tier, type: string, expr: "concat('t', to_string(seq % 3))"}
  - id: payments
    type: datagen
    count: 2000
    rate: 1000
    fields:
      - {name: user, type: int64, expr: "seq % 100"}
      - {name: amount, type: int64, expr: "seq"}
  - id: with_tier
    type: enrich
    inputs: [{from: payments, partition: hash, key: [user]}, {from: tiers, partition: hash, key: [user]}]
    field: tier
    default: none
  - {id: out, type: file, path: )y", out, "}\n"));
  proto::JobInfo info = WaitForEnd(job, std::chrono::seconds(60));
  ASSERT_EQ(info.state(), proto::JOB_FINISHED) << info.error();
  std::vector<std::string> lines = ReadCommittedLines({out});
  EXPECT_EQ(lines.size(), 2000u);
  std::set<int64_t> amounts;
  int64_t enriched = 0;
  for (const std::string& line : lines) {
    auto j = nlohmann::json::parse(line);
    const int64_t amount = j["amount"].get<int64_t>();
    EXPECT_TRUE(amounts.insert(amount).second) << "duplicate: " << line;
    EXPECT_EQ(j["user"].get<int64_t>(), amount % 100) << line;
    const std::string tier = j["tier"].get<std::string>();
    if (tier != "none") {
      EXPECT_EQ(tier, absl::StrCat("t", (amount % 100) % 3)) << line;
      ++enriched;
    }
  }
  EXPECT_GT(enriched, 1000) << "tiers did not reach the operator";
}

TEST_F(PluginJobTest, SavepointWithPluginStateRestoresAtOtherParallelism) {
  StartCluster(2, 3);
  DedupJobOptions o;
  o.ids = 20'000;
  o.repeats = 20;
  o.rate = 100'000;  // 4 s of input
  const std::string before = dir_ + "/before";
  std::string job = Submit(DedupJob(before, o));
  WaitForState(job, proto::JOB_RUNNING, std::chrono::seconds(10));
  // Some output committed before the savepoint: a checkpoint has completed.
  proto::JobInfo checkpointed = WaitUntil(job, [](const proto::JobInfo& i) {
    for (const auto& c : i.checkpoints()) {
      if (c.status() == "COMPLETED") return true;
    }
    return false;
  }, std::chrono::seconds(20));
  ASSERT_GT(checkpointed.checkpoints_size(), 0);
  auto savepoint = client_->Savepoint(job, dir_ + "/savepoints", /*stop=*/true);
  ASSERT_OK(savepoint);
  EXPECT_EQ(WaitForEnd(job, std::chrono::seconds(20)).state(), proto::JOB_CANCELLED);
  ASSERT_GT(ReadCommittedLines({before}).size(), 0u) << "the savepoint came before any output";
  for (int p : {1, 3}) {
    const std::string after = absl::StrCat(dir_, "/after-", p);
    auto r = client_->SubmitRestoring(DedupJob(after, o), "job.yaml", p, *savepoint, false);
    ASSERT_OK(r);
    proto::JobInfo info = WaitForEnd(r->job_id(), std::chrono::seconds(60));
    ASSERT_EQ(info.state(), proto::JOB_FINISHED) << info.error();
    // The output before the savepoint plus the output after it: one line per id. The restored
    // dedup state (rescaled by key group) drops the repeats of ids that passed before.
    std::vector<std::string> lines = ReadCommittedLines({before, after});
    std::set<int64_t> ids;
    for (const std::string& line : lines) ids.insert(nlohmann::json::parse(line)["id"].get<int64_t>());
    EXPECT_EQ(static_cast<int64_t>(lines.size()), o.ids) << "parallelism " << p;
    EXPECT_EQ(static_cast<int64_t>(ids.size()), o.ids) << "parallelism " << p;
  }
}

TEST_F(PluginJobTest, PluginErrorFailsTheTaskAndRestartsPerStrategy) {
  StartCluster(1, 2);
  std::string job = Submit(absl::StrCat("name: refusing\nplugins: [", SLUICE_TEST_SDK_PLUGIN, R"y(]
checkpoint: {interval: 200ms}
restart: {strategy: fixed_delay, attempts: 2, delay: 50ms}
operators:
  - {id: gen, type: datagen, count: 10, fields: [{name: a, type: int64, expr: "seq"}]}
  - {id: refuse, type: refuser}
  - {id: out, type: blackhole}
)y"));
  proto::JobInfo info = WaitForEnd(job, std::chrono::seconds(30));
  EXPECT_EQ(info.state(), proto::JOB_FAILED);
  EXPECT_EQ(info.restarts(), 2);
  EXPECT_THAT(info.error(), HasSubstr("record refused by policy"));
}


// CountingJob (tests/exactly_once_check.h) with the test plugin's `fail_at` chained after the
// source: on the 60000th record of a subtask it throws or returns an error (`how`), in the
// first attempt only (the file `marker` counts the failures).
std::string FailingCountingJob(const std::string& out, const std::string& marker, const std::string& how) {
  CountingJobOptions o;
  o.restart = "{strategy: fixed_delay, attempts: 3, delay: 100ms}";
  std::string job = CountingJob(out, 200'000, 100'000, o);
  const std::string by_key = "  - {id: by_key, type: key_by, key: [key]}\n";
  EXPECT_TRUE(absl::StrContains(job, by_key));
  absl::StrReplaceAll({{by_key, absl::StrCat("  - {id: fail, type: fail_at, at: 60000, times: 1, marker: ", marker,
                                             ", how: ", how, "}\n", by_key)}},
                      &job);
  return absl::StrCat("plugins: [", SLUICE_TEST_SDK_PLUGIN, "]\n", job);
}

// A plugin operator that throws (or returns an error) on a record fails its task with the job,
// the operator and the plugin's text; the job restarts from its last checkpoint per its
// strategy and its output is exactly once.
void PluginJobTest::RunFailingPluginJob(const std::string& how, const std::string& expected_text) {
  StartCluster(2, 2);
  const std::string out = dir_ + "/out";
  const std::string marker = dir_ + "/failures";
  std::string job = Submit(FailingCountingJob(out, marker, how));
  proto::JobInfo info = WaitForEnd(job, std::chrono::seconds(120));
  ASSERT_EQ(info.state(), proto::JOB_FINISHED) << info.error();
  EXPECT_EQ(info.restarts(), 1);
  EXPECT_GT(info.restored_checkpoint_id(), 0) << "restarted from the beginning, not a checkpoint";
  std::cout << "restarted because: " << info.error() << "\n";
  // The reason of the restart stays in the job's error.
  EXPECT_THAT(info.error(), HasSubstr(absl::StrCat("task ", job, "/")));
  EXPECT_THAT(info.error(), HasSubstr("operator 'fail'"));
  EXPECT_THAT(info.error(), HasSubstr(expected_text));
  std::ifstream in(marker);
  int64_t failures = 0;
  in >> failures;
  EXPECT_EQ(failures, 1);
  CheckExactlyOnce({out}, ExpectedFor(200'000));
}

TEST_F(PluginJobTest, PluginThatThrowsFailsItsTaskAndTheJobRestartsExactlyOnce) {
  RunFailingPluginJob("throw",
                      "operator 'fail' (type 'fail_at') threw an exception in Process: injected failure at record 60000");
}

TEST_F(PluginJobTest, PluginReturningAnErrorFailsItsTaskAndTheJobRestartsExactlyOnce) {
  RunFailingPluginJob("error", "injected failure at record 60000");
}

}  // namespace
}  // namespace sluice::testing
