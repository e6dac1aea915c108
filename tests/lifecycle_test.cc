// Unbounded jobs: listing, growing counters, /metrics, cancellation, backpressure from a slow
// sink.

#include <fstream>

#include "tests/cluster_fixture.h"
#include "tests/prometheus_text.h"

namespace sluice::testing {
namespace {

using ::testing::HasSubstr;

class LifecycleTest : public ClusterTest {};

constexpr char kUnbounded[] = R"(
name: endless
parallelism: 2
operators:
  - id: gen
    type: datagen
    rate: 50000
    fields:
      - {name: k, type: int64, expr: "seq % 101"}
  - id: by_k
    type: key_by
    key: [k]
  - id: counts
    type: aggregate
    aggregates: [{fn: count, as: n}]
  - id: sink
    type: blackhole
)";

TEST_F(LifecycleTest, UnboundedJobIsListedGrowsAndCancelsCleanly) {
  StartCluster(2, 2);
  std::string job = Submit(kUnbounded);
  proto::JobInfo info = WaitForState(job, proto::JOB_RUNNING, std::chrono::seconds(10));
  ASSERT_EQ(info.state(), proto::JOB_RUNNING);

  auto list = client_->ListJobs();
  ASSERT_OK(list);
  ASSERT_EQ(list->jobs_size(), 1);
  EXPECT_EQ(list->jobs(0).job_id(), job);
  EXPECT_EQ(list->jobs(0).name(), "endless");

  // Counters come with heartbeats; they must keep growing.
  auto sink_in = [&] {
    auto j = client_->GetJob(job);
    return j.ok() ? FindOperator(*j, "sink")->records_in() : 0;
  };
  uint64_t first = 0;
  ASSERT_TRUE(WaitFor([&] { return (first = sink_in()) > 0; }, std::chrono::seconds(10),
                      "the sink's first records in a heartbeat"));
  uint64_t second = first;
  EXPECT_TRUE(WaitFor([&] { return (second = sink_in()) > first; }, std::chrono::seconds(10),
                      "the sink's count to grow past " + std::to_string(first)));

  // The CLI shows operators, parallelism and placement.
  std::string out;
  ASSERT_EQ(RunCommand(absl::StrCat(SLUICE_TEST_BIN_DIR, "/sluice --coordinator ",
                                    cluster_->coordinator_address(), " status ", job), &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("RUNNING"));
  EXPECT_THAT(out, HasSubstr("counts"));
  EXPECT_THAT(out, HasSubstr("aggregate"));
  EXPECT_THAT(out, HasSubstr("[gen -> by_k] #0@w-"));

  ASSERT_OK(client_->Cancel(job));
  info = WaitForEnd(job, std::chrono::seconds(10));
  EXPECT_EQ(info.state(), proto::JOB_CANCELLED);
  for (const auto& v : info.vertices()) {
    for (const auto& s : v.subtasks()) EXPECT_EQ(s.state(), proto::TASK_CANCELLED);
  }
  // Slots are free again: the same job fits once more.
  auto workers = client_->ListWorkers();
  ASSERT_OK(workers);
  for (const auto& w : workers->workers()) EXPECT_EQ(w.slots_used(), 0);
  // Cancelling twice is an error naming the state.
  EXPECT_THAT(client_->Cancel(job), StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("CANCELLED")));
}

// Resident set size of a process in bytes, from /proc.
int64_t RssBytes(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/statm"));
  int64_t pages = 0, rss = 0;
  in >> pages >> rss;
  return rss * sysconf(_SC_PAGESIZE);
}

// Sum of sluice_channel_credit_wait_seconds over every worker's /metrics.
// Every sample of every worker's /metrics; a scrape that fails or does not parse as Prometheus
// text fails the test, naming the line.
std::vector<MetricSample> ScrapeWorkers(cli::CoordinatorClient* client) {
  std::vector<MetricSample> all;
  auto workers = client->ListWorkers();
  EXPECT_OK(workers);
  if (!workers.ok()) return all;
  for (const auto& w : workers->workers()) {
    auto text = ScrapeMetrics(w.http_address());
    EXPECT_OK(text);
    if (!text.ok()) continue;
    auto samples = ParsePrometheusText(*text);
    EXPECT_OK(samples) << "from worker " << w.worker_id();
    if (samples.ok()) all.insert(all.end(), samples->begin(), samples->end());
  }
  return all;
}

// The parser the /metrics checks rely on accepts what Sluice writes and refuses the rest.
TEST(PrometheusTextTest, ParsesSamplesAndRefusesMalformedLines) {
  auto ok = ParsePrometheusText(
      "# HELP a_total Things\n# TYPE a_total counter\na_total{x=\"1\",y=\"q\\\"\\\\\"} 3\n"
      "# HELP b A gauge\n# TYPE b gauge\nb -9.22337e+18\n");
  ASSERT_OK(ok);
  ASSERT_EQ(ok->size(), 2u);
  EXPECT_EQ((*ok)[0].labels.at("y"), "q\"\\");
  EXPECT_EQ(SumOf(*ok, "a_total", {{"x", "1"}}), 3);
  EXPECT_EQ((*ok)[1].value, -9.22337e+18);
  for (const char* bad : {
           "a 1\n",                                                  // no HELP/TYPE
           "# TYPE a gauge\na 1\n",                                 // TYPE before HELP
           "# HELP a x\n# TYPE a summary\na 1\n",                  // unknown type
           "# HELP a x\n# TYPE a gauge\na{x=1} 1\n",               // unquoted label
           "# HELP a x\n# TYPE a gauge\na{x=\"1\" 1\n",          // unterminated labels
           "# HELP a x\n# TYPE a gauge\na one\n",                  // not a number
           "# HELP a x\n# TYPE a counter\na -1\n",                 // negative counter
           "# HELP a x\n# TYPE a gauge\na 1",                       // no final newline
           "# HELP 1a x\n# TYPE 1a gauge\n1a 1\n",                 // bad name
       }) {
    EXPECT_FALSE(ParsePrometheusText(bad).ok()) << bad;
  }
}

// A keyed job that keeps running after its 60,000 records (a filter drops the rest of its
// unbounded source), scraped on /metrics: every line of every worker's and of the
// coordinator's text parses; while records flow, no aggregate subtask has published more
// cache reads than it has records in; once a checkpoint after the last record has published
// the state backends' figures, each subtask's hits + misses equal its records in, in the same
// scrape, with exactly one miss per key (10,000 keys fit the cache), a non-empty state, and the
// same figures in the job status. (The aggregate reads a key once per batch of records; a key
// comes again only 10,000 records later, more than a 33 KiB buffer of these ~5-byte records
// holds, so no batch has a key twice and every record is one read.)
TEST_F(LifecycleTest, MetricsOfARunningKeyedJobAreExactAndParse) {
  StartCluster(2, 2);
  constexpr int64_t kRecords = 60000;
  constexpr int64_t kKeys = 10000;
  std::string job = Submit(absl::StrCat(R"(
name: metered
parallelism: 2
checkpoint: {interval: 200ms}
operators:
  - id: gen
    type: datagen
    rate: 60000
    fields:
      - {name: seq, type: int64, expr: "seq"}
      # a string key: the aggregate keeps one-integer keys in memory, past the state cache
      - {name: key, type: string, expr: "to_string((seq * 7919) % )", kKeys, R"x()"})x", R"(
  - {id: first, type: filter, where: "seq < )", kRecords, R"("}
  - {id: by_key, type: key_by, key: [key]}
  - {id: counts, type: aggregate, aggregates: [{fn: count, as: n}]}
  - {id: sink, type: blackhole}
)"));
  ASSERT_EQ(WaitForState(job, proto::JOB_RUNNING, std::chrono::seconds(10)).state(), proto::JOB_RUNNING);
  auto of = [&](const std::string& op, int subtask) {
    std::map<std::string, std::string> labels = {{"job", job}, {"operator", op}};
    if (subtask >= 0) labels["subtask"] = std::to_string(subtask);
    return labels;
  };
  // While records flow: published cache reads never run ahead of the records in.
  std::vector<MetricSample> samples;
  int scrapes = 0;
  ASSERT_TRUE(WaitFor([&] {
    samples = ScrapeWorkers(client_.get());
    ++scrapes;
    for (int s = 0; s < 2; ++s) {
      EXPECT_LE(SumOf(samples, "sluice_state_cache_hits_total", of("counts", s)) +
                    SumOf(samples, "sluice_state_cache_misses_total", of("counts", s)),
                SumOf(samples, "sluice_operator_records_in_total", of("counts", s)))
          << "subtask " << s;
    }
    return SumOf(samples, "sluice_operator_records_in_total", of("counts", -1)) == kRecords;
  }, std::chrono::seconds(30), "all records in the aggregate's records_in", std::chrono::milliseconds(50)));
  ASSERT_FALSE(HasFailure());
  // Beyond the latest completed checkpoint, one may be completing and one pending, both perhaps
  // triggered before the last record; checkpoint latest + 3 is triggered after this point, so
  // its barrier reaches each aggregate subtask after its last record.
  const int64_t latest = LatestCompletedCheckpoint(*client_->GetJob(job));
  ASSERT_GT(LatestCompletedCheckpoint(WaitForCheckpoint(job, latest + 2, std::chrono::seconds(20))),
            latest + 2);
  samples = ScrapeWorkers(client_.get());
  ASSERT_FALSE(HasFailure());
  uint64_t hits = 0;
  uint64_t misses = 0;
  for (int s = 0; s < 2; ++s) {
    const double subtask_hits = SumOf(samples, "sluice_state_cache_hits_total", of("counts", s));
    const double subtask_misses = SumOf(samples, "sluice_state_cache_misses_total", of("counts", s));
    const double in = SumOf(samples, "sluice_operator_records_in_total", of("counts", s));
    EXPECT_GT(in, 0) << "subtask " << s;
    EXPECT_EQ(subtask_hits + subtask_misses, in) << "subtask " << s;
    EXPECT_GT(SumOf(samples, "sluice_state_size_bytes", of("counts", s)), 0) << "subtask " << s;
    hits += static_cast<uint64_t>(subtask_hits);
    misses += static_cast<uint64_t>(subtask_misses);
  }
  EXPECT_EQ(hits, static_cast<uint64_t>(kRecords - kKeys));
  EXPECT_EQ(misses, static_cast<uint64_t>(kKeys));
  EXPECT_EQ(SumOf(samples, "sluice_operator_records_in_total", of("sink", -1)), kRecords);
  EXPECT_GT(SumOf(samples, "sluice_operator_records_out_total", of("gen", -1)), kRecords)
      << "the source stopped: the job is not the running one this test is about";
  // The job status (from the tasks' heartbeats) reports the same figures.
  proto::JobInfo info = WaitUntil(job, [&](const proto::JobInfo& i) {
    const proto::OperatorInfo* counts = FindOperator(i, "counts");
    return counts->state_cache_hits() == hits && counts->state_cache_misses() == misses;
  }, std::chrono::seconds(10));
  EXPECT_EQ(FindOperator(info, "counts")->state_cache_hits(), hits);
  EXPECT_EQ(FindOperator(info, "counts")->state_cache_misses(), misses);
  EXPECT_EQ(info.state(), proto::JOB_RUNNING);

  // The coordinator's text parses too, and counts what the API lists.
  auto text = ScrapeMetrics(absl::StrCat("127.0.0.1:", cluster_->coordinator_http_port()));
  ASSERT_OK(text);
  auto coordinator = ParsePrometheusText(*text);
  ASSERT_OK(coordinator);
  auto workers = client_->ListWorkers();
  ASSERT_OK(workers);
  EXPECT_EQ(SumOf(*coordinator, "sluice_coordinator_workers"), workers->workers_size());
  EXPECT_EQ(SumOf(*coordinator, "sluice_coordinator_jobs", {{"state", "JOB_RUNNING"}}), 1);
  std::cout << scrapes << " scrapes while records flowed\n";

  ASSERT_OK(client_->Cancel(job));
  EXPECT_EQ(WaitForEnd(job, std::chrono::seconds(20)).state(), proto::JOB_CANCELLED);
}

double CreditWaitSeconds(cli::CoordinatorClient* client) {
  return SumOf(ScrapeWorkers(client), "sluice_channel_credit_wait_seconds");
}

TEST_F(LifecycleTest, SlowSinkSlowsTheSourceAndLosesNothing) {
  StartCluster(2, 2);
  // 200-byte records: a 32 KiB buffer holds about 160, so the credit window (8 buffers per
  // channel, 4 channels into the sinks) bounds what is in flight to a few thousand records.
  constexpr int64_t kCount = 24000;
  std::string pad(200, 'x');
  std::string yaml = absl::StrCat(R"(
name: slow-sink
parallelism: 2
operators:
  - id: gen
    type: datagen
    count: )", kCount, R"(
    fields:
      - {name: k, type: int64, expr: "seq % 13"}
      - {name: pad, type: string, expr: "')", pad, R"('"}
  - id: by_k
    type: key_by
    key: [k]
  - id: sink
    type: blackhole
    max_rate: 3000
)");
  std::string job = Submit(yaml);
  WaitForState(job, proto::JOB_RUNNING, std::chrono::seconds(10));
  // Without backpressure the source would finish in milliseconds. Sample while it runs.
  constexpr int64_t kInFlightBound = 4 * 10 * (32 * 1024 / 200 + 1) + 2 * 256;
  int samples = 0;
  for (int i = 0; i < 10; ++i) {
    // Not synchronisation: the bounds below hold at every moment of the run, and this only
    // spreads the samples over it.
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    auto info = client_->GetJob(job);
    ASSERT_OK(info);
    if (info->state() != proto::JOB_RUNNING) break;
    int64_t out = FindOperator(*info, "gen")->records_out();
    int64_t in = FindOperator(*info, "sink")->records_in();
    // Counters travel with heartbeats; allow one heartbeat of skew at the sink's rate.
    EXPECT_LT(out - in, kInFlightBound + 6000 / 2) << "source " << out << " sink " << in;
    EXPECT_LT(out, kCount) << "the source was not slowed down";
    for (pid_t p : cluster_->AllPids()) EXPECT_LT(RssBytes(p), 512LL << 20);
    if (++samples == 3) {
      EXPECT_GT(CreditWaitSeconds(client_.get()), 0.0) << "senders never waited for credit";
    }
  }
  EXPECT_GE(samples, 3);
  proto::JobInfo info = WaitForEnd(job, std::chrono::seconds(60));
  ASSERT_EQ(info.state(), proto::JOB_FINISHED) << info.error();
  EXPECT_EQ(FindOperator(info, "sink")->records_in(), static_cast<uint64_t>(kCount));

}

}  // namespace
}  // namespace sluice::testing
