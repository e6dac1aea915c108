// A bounded job of 1M generated records -> filter -> key_by -> count -> file sink, parallelism
// 2 on 2 workers: records cross between workers, and the output equals the counts computed
// here independently.

#include <map>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"
#include "tests/cluster_fixture.h"

namespace sluice::testing {
namespace {

constexpr int64_t kRecords = 1'000'000;
constexpr int64_t kKeys = 1000;

// The job's arithmetic, repeated here as plain C++.
int64_t KeyOf(int64_t seq) { return (seq * 7919) % kKeys; }
bool Kept(int64_t seq) { return seq % 10 != 3; }

std::string JobYaml(const std::string& out, const std::string& emit) {
  return absl::StrCat(R"(
name: shuffle-count
parallelism: 2
operators:
  - id: gen
    type: datagen
    count: )", kRecords, R"(
    fields:
      - {name: user, type: int64, expr: "(seq * 7919) % )", kKeys, R"("}
      - {name: seq, type: int64, expr: "seq"}
  - id: keep
    type: filter
    where: "seq % 10 != 3"
  - id: by_user
    type: key_by
    key: [user]
  - id: counts
    type: aggregate
    emit: )", emit, R"(
    aggregates: [{fn: count, as: n}, {fn: max, field: seq, as: last_seq}]
  - id: out
    type: file
    path: )", out, "\n");
}

class ShuffleTest : public ClusterTest {};

TEST_F(ShuffleTest, CountsAcrossWorkersAreExact) {
  StartCluster(2, 2);
  std::map<int64_t, int64_t> expected;
  std::map<int64_t, int64_t> expected_last;
  int64_t kept = 0;
  for (int64_t s = 0; s < kRecords; ++s) {
    if (!Kept(s)) continue;
    expected[KeyOf(s)]++;
    expected_last[KeyOf(s)] = std::max(expected_last[KeyOf(s)], s);
    ++kept;
  }

  const std::string out = dir_ + "/out";
  std::string job = Submit(JobYaml(out, "updates"));
  proto::JobInfo info = WaitForEnd(job, std::chrono::seconds(120));
  ASSERT_EQ(info.state(), proto::JOB_FINISHED) << info.error();

  // The source's two subtasks ran on different workers, so the hash shuffle crossed workers.
  ASSERT_EQ(info.vertices_size(), 2);
  EXPECT_NE(info.vertices(0).subtasks(0).worker_id(), info.vertices(0).subtasks(1).worker_id());
  EXPECT_EQ(info.vertices(0).name(), "gen -> keep -> by_user");
  EXPECT_EQ(info.vertices(1).name(), "counts -> out");
  EXPECT_EQ(FindOperator(info, "gen")->records_out(), static_cast<uint64_t>(kRecords));
  EXPECT_EQ(FindOperator(info, "out")->records_in(), static_cast<uint64_t>(kept));

  // Every update is in the output: per key, as many updates as input records, counting
  // 1, 2, ..., n in order, and the last one carries the final count.
  std::map<int64_t, int64_t> seen;
  int64_t lines = 0;
  for (int part = 0; part < 2; ++part) {
    std::ifstream in(absl::StrCat(out, "/part-", job, "-", part, ".jsonl"));
    ASSERT_TRUE(in) << "missing part-" << job << "-" << part;
    std::string line;
    int64_t part_lines = 0;
    while (std::getline(in, line)) {
      auto j = nlohmann::json::parse(line);
      int64_t user = j["user"].get<int64_t>();
      int64_t n = j["n"].get<int64_t>();
      ASSERT_EQ(n, seen[user] + 1) << "key " << user << " out of sequence in part-" << part;
      seen[user] = n;
      ++part_lines;
    }
    EXPECT_GT(part_lines, 0);
    lines += part_lines;
  }
  EXPECT_EQ(lines, kept);
  EXPECT_EQ(seen, expected);
}

TEST_F(ShuffleTest, FinalCountsWithCliRun) {
  StartCluster(2, 2);
  const std::string out = dir_ + "/final";
  const std::string job_file = dir_ + "/job.yaml";
  std::ofstream(job_file) << JobYaml(out, "final");
  std::string output;
  int rc = RunCommand(absl::StrCat(SLUICE_TEST_BIN_DIR, "/sluice --coordinator ",
                                   cluster_->coordinator_address(), " run ", job_file, " --wait"),
                      &output);
  ASSERT_EQ(rc, 0) << output;
  EXPECT_NE(output.find("FINISHED"), std::string::npos) << output;
  const size_t at = output.find("job-");
  ASSERT_NE(at, std::string::npos) << output;
  const std::string job = output.substr(at, 12);  // job-xxxxxxxx

  std::map<int64_t, int64_t> expected;
  std::map<int64_t, int64_t> expected_last;
  for (int64_t s = 0; s < kRecords; ++s) {
    if (!Kept(s)) continue;
    expected[KeyOf(s)]++;
    expected_last[KeyOf(s)] = std::max(expected_last[KeyOf(s)], s);
  }
  std::map<int64_t, int64_t> got, got_last;
  for (int part = 0; part < 2; ++part) {
    std::ifstream in(absl::StrCat(out, "/part-", job, "-", part, ".jsonl"));
    ASSERT_TRUE(in) << "missing part-" << job << "-" << part << " in " << output;
    std::string line;
    while (std::getline(in, line)) {
      auto j = nlohmann::json::parse(line);
      int64_t user = j["user"].get<int64_t>();
      ASSERT_EQ(got.count(user), 0u) << "key " << user << " emitted twice";
      got[user] = j["n"].get<int64_t>();
      got_last[user] = j["last_seq"].get<int64_t>();
    }
  }
  EXPECT_EQ(got, expected);
  EXPECT_EQ(got_last, expected_last);
}

}  // namespace
}  // namespace sluice::testing
