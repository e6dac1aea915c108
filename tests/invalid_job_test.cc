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
                              ":3:19: unknown operator type 'fitler' (known: datagen, nexmark, kafka, filter, map, "
                              "key_by, aggregate, window, top_n, local_top_n, union, interval_join, join, window_join, file, "
                              "print, blackhole, kafka_sink)\n"));

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

// A job whose filter (line 3, column 34) is `where`.
std::string FilterJob(const std::string& where) {
  return "operators:\n  - {id: a, type: datagen, count: 10, fields: [{name: k, type: int64, expr: seq}]}\n"
         "  - {id: b, type: filter, where: \"" +
         where + "\"}\n  - {id: c, type: blackhole}\n";
}

TEST_F(InvalidJobTest, CliUsageErrorsExitOneWithOneClearLine) {
  const std::string sluice = absl::StrCat(SLUICE_TEST_BIN_DIR, "/sluice --coordinator 127.0.0.1:1");
  const std::string job_file = dir_ + "/ok.yaml";
  std::ofstream(job_file) << FilterJob("k > 1");
  const std::pair<std::string, std::string> kUsageErrors[] = {
      {"run " + job_file + " -p 0",
       "sluice: error: --parallelism: Value 0 not in range 1 to 1024 (see sluice run --help)\n"},
      {"run " + job_file + " -p 1025",
       "sluice: error: --parallelism: Value 1025 not in range 1 to 1024 (see sluice run --help)\n"},
      {"stop job-1",
       "sluice: error: stop needs --savepoint (sluice stop JOB --savepoint); to end a job without one, "
       "use sluice cancel JOB\n"},
      {"run", "sluice: error: job is required (see sluice run --help)\n"},
      {"run " + job_file + " --bogus",
       "sluice: error: The following argument was not expected: --bogus (see sluice run --help)\n"},
      {"", "sluice: error: A subcommand is required (see sluice --help)\n"},
      {"bogus", "sluice: error: unknown command 'bogus' (see sluice --help)\n"},
      {"cluster start --workers 0",
       "sluice: error: --workers: Value 0 not in range 1 to 64 (see sluice cluster start --help)\n"},
  };
  for (const auto& [args, message] : kUsageErrors) {
    std::string out;
    EXPECT_EQ(RunCommand(sluice + " " + args, &out), 1) << args;
    EXPECT_EQ(out, message) << args;
  }
  std::string help;
  EXPECT_EQ(RunCommand(sluice + " run --help", &help), 0);
  EXPECT_THAT(help, HasSubstr("--parallelism"));
}

TEST_F(InvalidJobTest, JobFilesThatAreNotTextAreRefusedWithTheirPosition) {
  StartCluster(1, 1);
  const std::string sluice = absl::StrCat(SLUICE_TEST_BIN_DIR, "/sluice --coordinator ",
                                          cluster_->coordinator_address());
  const std::string bad_utf8 = dir_ + "/latin1.yaml";
  std::ofstream(bad_utf8) << FilterJob("k > 1 and 'caf\xe9' == 'a'");
  std::string out;
  EXPECT_EQ(RunCommand(sluice + " run " + bad_utf8, &out), 1);
  EXPECT_EQ(out, absl::StrCat("sluice: error: ", bad_utf8,
                              ":3:49: invalid UTF-8 (byte 0xe9): a job file must be UTF-8 text\n"));

  const std::string nul = dir_ + "/nul.yaml";
  std::ofstream(nul) << FilterJob(std::string("k > 1 and '\0' == 'a'", 20));
  out.clear();
  EXPECT_EQ(RunCommand(sluice + " run " + nul, &out), 1);
  EXPECT_EQ(out, absl::StrCat("sluice: error: ", nul, ":3:46: NUL byte: a job file must be text\n"));

  const std::string big = dir_ + "/big.yaml";
  std::ofstream(big) << "name: \"" << std::string(10 << 20, 'x') << "\"\n" << FilterJob("k > 1");
  out.clear();
  EXPECT_EQ(RunCommand(sluice + " run " + big, &out), 1);
  EXPECT_EQ(out, absl::StrCat("sluice: error: ", big,
                              ": job file exceeds the limit of 1 MiB (1048576 bytes)\n"));

  // The coordinator checks too: a client other than the CLI gets the same answers.
  auto r = client_->Submit(FilterJob(std::string("k > 1 and '\0' == 'a'", 20)), "job.yaml", 0);
  EXPECT_THAT(r.status(), StatusIs(absl::StatusCode::kInvalidArgument,
                                   "job.yaml:3:46: NUL byte: a job file must be text"));
  r = client_->Submit("name: \"" + std::string(10 << 20, 'x') + "\"\n" + FilterJob("k > 1"), "job.yaml", 0);
  EXPECT_THAT(r.status(), StatusIs(absl::StatusCode::kInvalidArgument,
                                   "job.yaml: job file exceeds the limit of 1 MiB (1048576 bytes)"));
  auto jobs = client_->ListJobs();
  ASSERT_OK(jobs);
  EXPECT_EQ(jobs->jobs_size(), 0);
}

TEST_F(InvalidJobTest, HugeExpressionsGetAShortClearError) {
  StartCluster(1, 1);
  const std::string sluice = absl::StrCat(SLUICE_TEST_BIN_DIR, "/sluice --coordinator ",
                                          cluster_->coordinator_address());
  const std::string deep = dir_ + "/deep.yaml";
  std::ofstream(deep) << FilterJob(std::string(100000, '(') + "k > 1" + std::string(100000, ')'));
  std::string out;
  EXPECT_EQ(RunCommand(sluice + " run " + deep, &out), 1);
  EXPECT_EQ(out, absl::StrCat("sluice: error: ", deep, ":3:34: in expression \"...", std::string(60, '('),
                              "...\": column 257: expression nested deeper than 256 levels\n"));

  std::string nots;
  for (int i = 0; i < 100000; ++i) nots += "not ";
  const std::string not_file = dir_ + "/nots.yaml";
  std::ofstream(not_file) << FilterJob(nots + "k > 1");
  out.clear();
  EXPECT_EQ(RunCommand(sluice + " run " + not_file, &out), 1);
  EXPECT_EQ(out, absl::StrCat("sluice: error: ", not_file,
                              ":3:34: in expression \"...t not not not not not not not not not not not "
                              "not not not no...\": column 1025: expression nested deeper than 256 "
                              "levels\n"));

  // An error that quotes a huge name is capped, not sent whole.
  out.clear();
  const std::string long_type = dir_ + "/long_type.yaml";
  std::ofstream(long_type) << "operators:\n  - {id: a, type: " << std::string(500000, 'x') << "}\n";
  EXPECT_EQ(RunCommand(sluice + " run " + long_type, &out), 1);
  EXPECT_THAT(out, StartsWith(absl::StrCat("sluice: error: ", long_type, ":2:19: unknown operator type 'xxx")));
  EXPECT_THAT(out, HasSubstr(" more bytes)\n"));
  EXPECT_LE(out.size(), 2200u);
  auto jobs = client_->ListJobs();
  ASSERT_OK(jobs);
  EXPECT_EQ(jobs->jobs_size(), 0);
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
