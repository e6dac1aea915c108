// Invalid jobs are rejected at submission with position and reason, and nothing is deployed;
// the CLI and the daemons fail with one clear line on bad input.

#include "httplib.h"
#include "tests/cluster_fixture.h"

namespace sluice::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

class InvalidJobTest : public ClusterTest {};

struct BadJob {
  const char* what;
  const char* yaml;
  const char* error_prefix;  // "job.yaml:L:C: reason..."
};

const BadJob kBadJobs[] = {
    {"bad YAML", "name: x\noperators: [\n  {id: a\n", "job.yaml:"},
    {"unknown operator",
     "operators:\n  - {id: a, type: datagen, fields: [{name: k, type: int64, expr: seq}]}\n"
     "  - {id: b, type: fitler, where: \"k > 1\"}\n  - {id: c, type: blackhole}\n",
     "job.yaml:3:19: unknown operator type 'fitler'"},
    {"unknown field",
     "operators:\n  - {id: a, type: datagen, fields: [{name: k, type: int64, expr: seq}]}\n"
     "  - {id: b, type: filter, where: \"kk > 1\"}\n  - {id: c, type: blackhole}\n",
     "job.yaml:3:34: in expression \"kk > 1\": column 1: unknown field 'kk'"},
    {"type error",
     "operators:\n  - {id: a, type: datagen, fields: [{name: k, type: int64, expr: seq}]}\n"
     "  - {id: b, type: filter, where: \"k + 1\"}\n  - {id: c, type: blackhole}\n",
     "job.yaml:3:34: filter condition must be bool, got int64"},
    {"cycle",
     "operators:\n  - {id: a, type: datagen, fields: [{name: k, type: int64, expr: seq}]}\n"
     "  - {id: b, type: union, inputs: [a, c]}\n  - {id: c, type: filter, input: b, where: \"k > 0\"}\n"
     "  - {id: d, type: blackhole, input: c}\n",
     "job.yaml:3:5: the job graph has a cycle through operators b, c"},
    {"bad parallelism",
     "operators:\n  - {id: a, type: datagen, parallelism: 0, fields: [{name: k, type: int64, expr: seq}]}\n"
     "  - {id: c, type: blackhole}\n",
     "job.yaml:2:41: 'parallelism' must be between 1 and 1024, got 0"},
    {"unknown option",
     "operators:\n  - {id: a, type: datagen, fields: [{name: k, type: int64, expr: seq}]}\n"
     "  - {id: c, type: blackhole, path: /tmp}\n",
     "job.yaml:3:30: unknown option 'path' for blackhole operator 'c'"},
};

TEST_F(InvalidJobTest, EachKindIsRejectedWithPositionAndNothingIsDeployed) {
  StartCluster(1, 2);
  for (const BadJob& bad : kBadJobs) {
    auto r = client_->Submit(bad.yaml, "job.yaml", 0);
    ASSERT_FALSE(r.ok()) << bad.what;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << bad.what;
    EXPECT_THAT(std::string(r.status().message()), StartsWith(bad.error_prefix)) << bad.what;
  }
  auto jobs = client_->ListJobs();
  ASSERT_OK(jobs);
  EXPECT_EQ(jobs->jobs_size(), 0);
  auto workers = client_->ListWorkers();
  ASSERT_OK(workers);
  EXPECT_EQ(workers->workers(0).slots_used(), 0);
}

TEST_F(InvalidJobTest, CliErrorsAreOneClearLine) {
  StartCluster(1, 1);
  const std::string sluice = absl::StrCat(SLUICE_TEST_BIN_DIR, "/sluice --coordinator ",
                                          cluster_->coordinator_address());
  const std::string bad_file = dir_ + "/bad.yaml";
  std::ofstream(bad_file) << kBadJobs[1].yaml;
  std::string out;
  EXPECT_EQ(RunCommand(sluice + " run " + bad_file, &out), 1);
  EXPECT_EQ(out, absl::StrCat("sluice: error: ", bad_file,
                              ":3:19: unknown operator type 'fitler' (known: datagen, kafka, filter, map, "
                              "key_by, aggregate, union, file, kafka_sink, print, blackhole)\n"));

  out.clear();
  EXPECT_EQ(RunCommand(sluice + " status job-nope", &out), 1);
  EXPECT_EQ(out, "sluice: error: unknown job 'job-nope'\n");

  out.clear();
  EXPECT_EQ(RunCommand(absl::StrCat(SLUICE_TEST_BIN_DIR, "/sluice --coordinator 127.0.0.1:1 list"), &out), 1);
  EXPECT_THAT(out, StartsWith("sluice: error: coordinator unreachable at 127.0.0.1:1"));
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << out;

  out.clear();
  EXPECT_EQ(RunCommand(sluice + " run /nonexistent.yaml", &out), 1);
  EXPECT_THAT(out, HasSubstr("cannot read job file /nonexistent.yaml"));
}

TEST_F(InvalidJobTest, DaemonsRefuseBadFlagsAndServeHealth) {
  std::string out;
  EXPECT_NE(RunCommand(absl::StrCat(SLUICE_TEST_BIN_DIR, "/sluice-worker --slots 2"), &out), 0);
  EXPECT_THAT(out, HasSubstr("--coordinator is required"));
  out.clear();
  EXPECT_NE(RunCommand(absl::StrCat(SLUICE_TEST_BIN_DIR, "/sluice-coordinator --bogus"), &out), 0);
  EXPECT_THAT(out, HasSubstr("--bogus"));
  out.clear();
  EXPECT_NE(RunCommand(absl::StrCat(SLUICE_TEST_BIN_DIR, "/sluice-worker --coordinator x:1 --slots 0"), &out), 0);
  EXPECT_THAT(out, HasSubstr("--slots"));

  StartCluster(1, 1);
  httplib::Client http("127.0.0.1", cluster_->coordinator_http_port());
  auto health = http.Get("/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  EXPECT_EQ(health->body, "ok\n");
  auto metrics = http.Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_THAT(metrics->body, HasSubstr("sluice_coordinator_workers 1\n"));
  EXPECT_THAT(metrics->body, HasSubstr("sluice_coordinator_worker_heartbeat_age_seconds{worker=\"w-1\"}"));

  // SIGTERM: every process exits with status 0 and says so in its log.
  pid_t worker = cluster_->worker_pid(0);
  ASSERT_EQ(kill(worker, SIGTERM), 0);
  int status = 0;
  ASSERT_EQ(waitpid(worker, &status, 0), worker);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_THAT(ReadAll(dir_ + "/cluster/worker-0.log"), HasSubstr("worker stopped"));
}

}  // namespace
}  // namespace sluice::testing
