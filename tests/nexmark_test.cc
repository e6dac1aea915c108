// Nexmark queries (bench/nexmark/q*.yaml) on a real cluster, checked against the hand-written
// single-threaded loops (bench/nexmark/loops.h): each query over 100,000 events at parallelism
// 2 across 2 workers (1 slot each), checkpoints every second, written by the exactly-once
// file sink; the committed rows must equal the loop's rows as a multiset.

#include <algorithm>
#include <chrono>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "bench/nexmark/jobs.h"
#include "bench/nexmark/loops.h"
#include "tests/cluster_fixture.h"
#include "tests/exactly_once_check.h"

namespace sluice::testing {
namespace {

constexpr int64_t kEvents = 100'000;

class NexmarkTest : public ClusterTest, public ::testing::WithParamInterface<std::string> {};

// The loop's rows of `query` as the file sink writes them (JSON lines), sorted.
std::vector<std::string> ExpectedRows(const std::string& query) {
  const nexmark::LoopQuery* q = nexmark::FindLoopQuery(query);
  EXPECT_NE(q, nullptr) << query;
  std::vector<std::string> rows;
  if (q == nullptr) return rows;
  nexmark::Generator generator;
  EXPECT_OK(nexmark::RunLoop(query, generator, kEvents, [&](const Record& row) {
    std::string line;
    AppendRecordJson(q->schema, row, &line);
    rows.push_back(std::move(line));
  }));
  std::sort(rows.begin(), rows.end());
  return rows;
}

TEST_P(NexmarkTest, CommittedOutputEqualsTheLoop) {
  const std::string query = GetParam();
  StartCluster(/*workers=*/2, /*slots=*/1);
  const std::string out = dir_ + "/out-" + query;
  auto job = nexmark::LoadJob(nexmark::DefaultJobDir(), query,
                              {{"EVENTS", std::to_string(kEvents)},
                               {"SINK", absl::StrCat("type: file, path: ", out)}});
  ASSERT_OK(job);
  const std::string id = Submit(*job, /*parallelism=*/2);
  ASSERT_FALSE(id.empty());
  proto::JobInfo info = WaitForEnd(id, std::chrono::seconds(120));
  ASSERT_EQ(info.state(), proto::JOB_FINISHED) << info.error();
  // The source's two subtasks ran on both workers.
  std::set<std::string> workers;
  for (const auto& v : info.vertices()) {
    if (v.operators_size() > 0 && v.operators(0).id() == "bids") {
      for (const auto& s : v.subtasks()) workers.insert(s.worker_id());
    }
  }
  EXPECT_EQ(workers.size(), 2u);

  std::vector<std::string> got = ReadCommittedLines({out});
  std::sort(got.begin(), got.end());
  const std::vector<std::string> expected = ExpectedRows(query);
  ASSERT_FALSE(expected.empty());
  EXPECT_EQ(got.size(), expected.size());
  // The first difference, rather than 100,000 lines.
  auto [g, e] = std::mismatch(got.begin(), got.end(), expected.begin(), expected.end());
  if (g != got.end() || e != expected.end()) {
    ADD_FAILURE() << query << ": first difference: got " << (g == got.end() ? "(end)" : *g)
                  << ", expected " << (e == expected.end() ? "(end)" : *e);
  }
}

INSTANTIATE_TEST_SUITE_P(Queries, NexmarkTest, ::testing::Values("q0", "q1", "q2"),
                         [](const ::testing::TestParamInfo<std::string>& p) { return p.param; });

}  // namespace
}  // namespace sluice::testing
