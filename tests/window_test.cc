// Event-time windows on a real cluster: out-of-order input with bounded out-of-orderness plus
// records an hour late, tumbling windows with a late output, checkpoints, kill -9 of workers
// and a savepoint restored at other parallelisms. The committed output must hold every
// (key, window) exactly once with the exact count and sum of its records, and every late
// record exactly once in the late output, against a table computed here from the generator's
// formulas. Session windows go through two savepoints at three parallelisms (and one savepoint
// restored twice), and through kill -9, against sessions merged here from the same formulas.

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "tests/cluster_fixture.h"
#include "tests/exactly_once_check.h"
#include "tests/kafka_check.h"
#include "tests/kafka_fixture.h"

namespace sluice::testing {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kKeys = 50;
constexpr int64_t kWindowMs = 100;

// Input record `seq`: key (seq * 7919) % 50, value seq % 1000, event time seq / 4 ms minus up to
// 96 ms (within the 100 ms of out-of-orderness the watermarks allow), except every 100th record,
// which is an hour late.
int64_t KeyOf(int64_t seq) { return (seq * 7919) % kKeys; }
int64_t ValueOf(int64_t seq) { return seq % 1000; }
bool HourLate(int64_t seq) { return seq % 100 == 99; }
int64_t TsOf(int64_t seq) { return HourLate(seq) ? seq / 4 - 3600000 : seq / 4 - (seq * 7919) % 97; }

// `late` empty: no late output (late records are dropped and counted).
std::string WindowJob(const std::string& out, const std::string& late, int64_t count, int64_t rate) {
  return absl::StrCat(R"y(name: windows
parallelism: 2
watermark_interval: 20ms
checkpoint: {interval: 200ms, timeout: 20s, retain: 3}
restart: {strategy: fixed_delay, attempts: 1000, delay: 100ms}
operators:
  - id: gen
    type: datagen
    count: )y", count, "\n    rate: ", rate, R"y(
    fields:
      - {name: id, type: int64, expr: seq}
      - {name: key, type: int64, expr: "(seq * 7919) % 50"}
      - {name: value, type: int64, expr: "seq % 1000"}
      - {name: ts, type: timestamp, expr: "if(seq % 100 == 99, seq / 4 - 3600000, seq / 4 - (seq * 7919) % 97)"}
    event_time: {field: ts, max_out_of_orderness: 100ms}
  - {id: by_key, type: key_by, key: key}
  - id: windows
    type: window
    tumble: 100ms
    time_field: ts
)y", late.empty() ? "" : "    late_output: late\n", R"y(    aggregates: [{fn: count, as: n}, {fn: sum, field: value, as: total}]
  - {id: out, type: file, path: )y", out, R"y(, input: windows}
)y", late.empty() ? "" : absl::StrCat("  - {id: late_out, type: file, path: ", late,
                                      ", input: windows.late}\n"));
}

int64_t FloorDiv(int64_t a, int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }

// Checks the committed rows of `out_dirs` and late records of `late_dirs` for `records` inputs.
void CheckWindows(const std::vector<std::string>& out_dirs, const std::vector<std::string>& late_dirs,
                  int64_t records) {
  std::set<int64_t> late;
  for (const std::string& line : ReadCommittedLines(late_dirs)) {
    auto j = nlohmann::json::parse(line);
    const int64_t id = j["id"].get<int64_t>();
    EXPECT_TRUE(HourLate(id)) << "an in-order record was late: " << line;
    EXPECT_EQ(j["ts"].get<int64_t>(), TsOf(id)) << line;
    EXPECT_EQ(j["key"].get<int64_t>(), KeyOf(id)) << line;
    EXPECT_TRUE(late.insert(id).second) << "late record twice: " << line;
  }
  // Watermarks come every 20 ms: all but the hour-late records of the first moments are late.
  EXPECT_GE(static_cast<int64_t>(late.size()), records / 100 / 2);

  struct Agg {
    int64_t n = 0;
    int64_t total = 0;
    bool operator==(const Agg& o) const { return n == o.n && total == o.total; }
  };
  std::map<std::pair<int64_t, int64_t>, Agg> expected, got;
  for (int64_t seq = 0; seq < records; ++seq) {
    if (late.count(seq)) continue;
    Agg& a = expected[{KeyOf(seq), FloorDiv(TsOf(seq), kWindowMs) * kWindowMs}];
    a.n++;
    a.total += ValueOf(seq);
  }
  int64_t duplicates = 0, updates = 0;
  for (const std::string& line : ReadCommittedLines(out_dirs)) {
    auto j = nlohmann::json::parse(line);
    const int64_t start = j["window_start"].get<int64_t>();
    EXPECT_EQ(j["window_end"].get<int64_t>(), start + kWindowMs) << line;
    updates += j["update"].get<bool>() ? 1 : 0;
    auto [it, inserted] = got.insert({{j["key"].get<int64_t>(), start}, Agg()});
    if (!inserted) ++duplicates;
    it->second = {j["n"].get<int64_t>(), j["total"].get<int64_t>()};
  }
  EXPECT_EQ(duplicates, 0) << "windows emitted twice";
  EXPECT_EQ(updates, 0) << "no lateness: no window fires twice";
  EXPECT_EQ(got.size(), expected.size());
  int64_t wrong = 0;
  for (const auto& [k, a] : expected) {
    auto it = got.find(k);
    if (it == got.end() || !(it->second == a)) {
      if (++wrong <= 5) {
        ADD_FAILURE() << "key " << k.first << " window " << k.second << ": expected n=" << a.n
                      << " total=" << a.total << ", got "
                      << (it == got.end() ? std::string("nothing")
                                          : absl::StrCat("n=", it->second.n, " total=", it->second.total));
      }
    }
  }
  EXPECT_EQ(wrong, 0);
}

class WindowClusterTest : public ClusterTest {
 protected:
  void IdlePartitionStillFiresWindows(bool kafka_out);
};

// Without a late output, late records are dropped and counted: the count the coordinator
// reports is exactly the records that are in no window row.
TEST_F(WindowClusterTest, DroppedLateRecordsAreCountedExactly) {
  StartCluster(2, 2, 3000);
  constexpr int64_t kRecords = 100'000;
  const std::string out = dir_ + "/out";
  std::string job = Submit(WindowJob(out, "", kRecords, 50'000));
  proto::JobInfo info = WaitForEnd(job, std::chrono::seconds(60));
  ASSERT_EQ(info.state(), proto::JOB_FINISHED) << info.error();
  int64_t counted = 0;
  for (const std::string& line : ReadCommittedLines({out})) {
    counted += nlohmann::json::parse(line)["n"].get<int64_t>();
  }
  const proto::OperatorInfo* w = FindOperator(info, "windows");
  ASSERT_NE(w, nullptr);
  EXPECT_GT(w->late_records_dropped(), static_cast<uint64_t>(kRecords / 100 / 2));
  EXPECT_EQ(static_cast<int64_t>(w->late_records_dropped()), kRecords - counted);
  std::string status;
  EXPECT_EQ(RunCommand(absl::StrCat(SLUICE_TEST_BIN_DIR, "/sluice --coordinator ",
                                    cluster_->coordinator_address(), " status ", job),
                       &status),
            0)
      << status;
  EXPECT_NE(status.find(absl::StrCat(" ", w->late_records_dropped(), " late records dropped\n")),
            std::string::npos)
      << status;
}

TEST_F(WindowClusterTest, KillingWorkersKeepsEveryWindowExactlyOnce) {
  StartCluster(2, 2, 1500);
  constexpr int64_t kRecords = 400'000;
  const std::string out = dir_ + "/out";
  const std::string late = dir_ + "/late";
  std::string job = Submit(WindowJob(out, late, kRecords, 50'000));
  WaitForState(job, proto::JOB_RUNNING, std::chrono::seconds(10));
  KillWorkersAfterCheckpoints(job, 2, 2, 4242);
  if (HasFatalFailure()) return;
  proto::JobInfo info = WaitForEnd(job, std::chrono::seconds(240));
  ASSERT_EQ(info.state(), proto::JOB_FINISHED) << info.error();
  EXPECT_GE(info.restarts(), 1) << "the kills did not hit the job";
  CheckWindows({out}, {late}, kRecords);
  const proto::OperatorInfo* w = FindOperator(info, "windows");
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->late_records_dropped(), 0u) << "late records go to the late output";
}

TEST_F(WindowClusterTest, SavepointKeepsOpenWindowsAtOtherParallelism) {
  StartCluster(2, 3, 3000);
  constexpr int64_t kRecords = 200'000;
  const std::string out = dir_ + "/before";
  const std::string late = dir_ + "/before-late";
  std::string job = Submit(WindowJob(out, late, kRecords, 50'000));
  WaitForState(job, proto::JOB_RUNNING, std::chrono::seconds(10));
  ASSERT_GT(LatestCompletedCheckpoint(WaitForCheckpoint(job, 0, std::chrono::seconds(20))), 0);
  auto savepoint = client_->Savepoint(job, dir_ + "/savepoints", /*stop=*/true);
  ASSERT_OK(savepoint);
  proto::JobInfo stopped = WaitForEnd(job, std::chrono::seconds(20));
  ASSERT_EQ(stopped.state(), proto::JOB_CANCELLED);
  // Some windows were open at the savepoint (the run was stopped midway).
  const int64_t emitted_before = FindOperator(stopped, "gen")->records_out();
  ASSERT_GT(emitted_before, 0);
  ASSERT_LT(emitted_before, kRecords);

  for (int p : {1, 3}) {
    SCOPED_TRACE(absl::StrCat("restored at parallelism ", p));
    const std::string after = absl::StrCat(dir_, "/after-", p);
    const std::string after_late = absl::StrCat(dir_, "/after-late-", p);
    std::string yaml = WindowJob(after, after_late, kRecords, 0);
    auto r = client_->SubmitRestoring(yaml, "job.yaml", p, *savepoint, false);
    ASSERT_OK(r);
    proto::JobInfo info = WaitForEnd(r->job_id(), std::chrono::seconds(60));
    ASSERT_EQ(info.state(), proto::JOB_FINISHED) << info.error();
    EXPECT_EQ(FindOperator(info, "windows")->parallelism(), p);
    // What was committed before the savepoint plus what came after: every window once.
    CheckWindows({out, after}, {late, after_late}, kRecords);
  }
}

// Session windows through savepoints and kill -9. Input record `seq` of kSessionRecords: a
// cold key (seq * 7919) % 10000, which comes back every 2500 ms of event time, or, for every
// 10th record in the first 5 s of each 10 s, one of 50 hot keys (1'000'000 + (seq / 10) % 50),
// whose records come every 125 ms: a long session per key per 5 s. Value seq % 1000; event
// time seq / 4 ms minus a jitter (seq * seq) % 2997 ms, within the 3 s of out-of-orderness, so
// no record is late. With a 2 s gap a cold key's records make sessions of one record or a
// few, some touching (a record at exactly the session's end: 71 times) and some bridged by a
// record that comes after both (35 times); at any point of the input most cold keys have one
// open session (a flat key) and ~17% two (an entry); hot keys have one that grows for seconds.
constexpr int64_t kSessionRecords = 240'000;
constexpr int64_t kSessionGapMs = 2000;

bool HotSession(int64_t seq) { return seq % 10 == 0 && (seq / 20000) % 2 == 0; }
int64_t SessionKeyOf(int64_t seq) {
  return HotSession(seq) ? 1'000'000 + (seq / 10) % 50 : (seq * 7919) % 10000;
}
int64_t SessionTsOf(int64_t seq) { return seq / 4 - (seq * seq) % 2997; }

std::string SessionJob(const std::string& out, double rate) {
  return absl::StrCat(R"y(name: sessions
parallelism: 2
watermark_interval: 20ms
checkpoint: {interval: 200ms, timeout: 20s, retain: 3}
restart: {strategy: fixed_delay, attempts: 1000, delay: 100ms}
operators:
  - id: gen
    type: datagen
    count: )y", kSessionRecords, "\n    rate: ", rate, R"y(
    fields:
      - {name: id, type: int64, expr: seq}
      - {name: key, type: int64, expr: "if(seq % 10 == 0 and (seq / 20000) % 2 == 0, 1000000 + (seq / 10) % 50, (seq * 7919) % 10000)"}
      - {name: value, type: int64, expr: "seq % 1000"}
      - {name: ts, type: timestamp, expr: "seq / 4 - (seq * seq) % 2997"}
    event_time: {field: ts, max_out_of_orderness: 3s}
  - {id: by_key, type: key_by, key: key}
  - id: sessions
    type: window
    session: {gap: 2s}
    time_field: ts
    aggregates: [{fn: count, as: n}, {fn: sum, field: value, as: total}]
  - {id: out, type: file, path: )y", out, R"y(, input: sessions}
)y");
}

// A session as the test computes it: [start, end) with its count and sum.
struct Session {
  int64_t end = 0;
  int64_t n = 0;
  int64_t total = 0;
  bool operator==(const Session& o) const { return end == o.end && n == o.n && total == o.total; }
};
using SessionTable = std::map<std::pair<int64_t, int64_t>, Session>;  // (key, start) -> session

// The sessions of the kSessionRecords records, computed from the generator's formulas: per key,
// its timestamps in order, a record joining the session before it when its [ts, ts + gap)
// overlaps or touches it (ts <= the session's end), as Flink merges. `touching`, if given, gets
// the number of records at exactly the end of the session before them.
SessionTable ExpectedSessions(int64_t* touching = nullptr) {
  std::map<int64_t, std::vector<std::pair<int64_t, int64_t>>> by_key;  // key -> (ts, value)
  for (int64_t seq = 0; seq < kSessionRecords; ++seq) {
    by_key[SessionKeyOf(seq)].emplace_back(SessionTsOf(seq), seq % 1000);
  }
  SessionTable sessions;
  for (auto& [key, records] : by_key) {
    std::sort(records.begin(), records.end());
    int64_t start = 0;
    Session s;
    for (const auto& [ts, value] : records) {
      if (s.n > 0 && ts > s.end) {
        sessions[{key, start}] = s;
        s = Session();
      }
      if (s.n > 0 && ts == s.end && touching != nullptr) ++*touching;
      if (s.n == 0) {
        start = ts;
        s.end = ts + kSessionGapMs;
      }
      s.end = std::max(s.end, ts + kSessionGapMs);
      s.n++;
      s.total += value;
    }
    sessions[{key, start}] = s;
  }
  return sessions;
}

// Checks that the committed rows of `dirs` are exactly `expected`, every session once.
void CheckSessions(const std::vector<std::string>& dirs, const SessionTable& expected) {
  SessionTable got;
  int64_t duplicates = 0, updates = 0;
  for (const std::string& line : ReadCommittedLines(dirs)) {
    auto j = nlohmann::json::parse(line);
    updates += j["update"].get<bool>() ? 1 : 0;
    auto [it, inserted] = got.insert({{j["key"].get<int64_t>(), j["window_start"].get<int64_t>()},
                                      Session{j["window_end"].get<int64_t>(), j["n"].get<int64_t>(),
                                              j["total"].get<int64_t>()}});
    if (!inserted && ++duplicates <= 5) ADD_FAILURE() << "session emitted twice: " << line;
  }
  EXPECT_EQ(duplicates, 0) << "sessions emitted twice";
  EXPECT_EQ(updates, 0) << "no lateness: no session fires twice";
  EXPECT_EQ(got.size(), expected.size());
  int64_t wrong = 0;
  auto describe = [](const Session& s) {
    return absl::StrCat("end=", s.end, " n=", s.n, " total=", s.total);
  };
  for (const auto& [k, s] : expected) {
    auto it = got.find(k);
    if (it == got.end() || !(it->second == s)) {
      if (++wrong <= 5) {
        ADD_FAILURE() << "key " << k.first << " session " << k.second << ": expected "
                      << describe(s) << ", got "
                      << (it == got.end() ? std::string("nothing") : describe(it->second));
      }
    }
  }
  EXPECT_EQ(wrong, 0) << "sessions missing or wrong";
  int64_t extra = 0;
  for (const auto& [k, s] : got) {
    if (expected.count(k) == 0 && ++extra <= 5) {
      ADD_FAILURE() << "unexpected session: key " << k.first << " start " << k.second << " "
                    << describe(s);
    }
  }
  EXPECT_EQ(extra, 0) << "sessions that should not exist (split or half-merged)";
}

// p=2 -> stop with savepoint 1 mid-input -> restored at p=3 -> stop with savepoint 2 mid-input
// -> restored at p=1 to the end; and savepoint 1 restored a second time at p=2, into the first
// run's directory, to the end. Each final run's committed output (with the runs before it)
// holds every session exactly once, with its exact bounds, count and sum. The restores at other
// parallelisms move the flat session keys' blocks ("window_flat_sessions") by key group.
TEST_F(WindowClusterTest, SessionWindowSavepointRestoredTwiceAtOtherParallelisms) {
  StartCluster(2, 3, 3000);
  int64_t touching = 0;
  const SessionTable expected = ExpectedSessions(&touching);
  ASSERT_EQ(touching, 71) << "the input has sessions that only touch";
  int64_t cold_keys_with_several = 0;
  {
    std::map<int64_t, int> per_key;
    for (const auto& [k, s] : expected) per_key[k.first]++;
    for (const auto& [k, n] : per_key) cold_keys_with_several += (k < 1'000'000 && n > 1) ? 1 : 0;
  }
  ASSERT_GT(cold_keys_with_several, 1000) << "the input has keys of several sessions";

  // Runs `yaml` restored from `savepoint` at `p`; returns the job's id.
  auto restore = [&](const std::string& yaml, int p, const std::string& savepoint) {
    auto r = client_->SubmitRestoring(yaml, "job.yaml", p, savepoint, false);
    EXPECT_OK(r);
    return r.ok() ? r->job_id() : std::string();
  };
  // Stops `job` with a savepoint once `gen` has emitted `records` and one of its checkpoints
  // has completed (the input is paced to last seconds, so sessions are open and most input is
  // still to come); returns the savepoint and the records `gen` emitted.
  auto stop_mid_input = [&](const std::string& job, int64_t records, std::string* savepoint,
                            int64_t* emitted) {
    WaitForState(job, proto::JOB_RUNNING, std::chrono::seconds(10));
    WaitUntil(job, [records](const proto::JobInfo& i) {
      const proto::OperatorInfo* gen = FindOperator(i, "gen");
      return i.state() != proto::JOB_RUNNING ||
             (gen != nullptr && static_cast<int64_t>(gen->records_out()) >= records);
    }, std::chrono::seconds(20));
    ASSERT_GT(LatestCompletedCheckpoint(WaitForCheckpoint(job, 0, std::chrono::seconds(20))), 0);
    auto sp = client_->Savepoint(job, dir_ + "/savepoints", /*stop=*/true);
    ASSERT_OK(sp);
    *savepoint = *sp;
    proto::JobInfo stopped = WaitForEnd(job, std::chrono::seconds(20));
    ASSERT_EQ(stopped.state(), proto::JOB_CANCELLED) << stopped.error();
    *emitted = FindOperator(stopped, "gen")->records_out();
  };
  auto run_to_end = [&](const std::string& job, int p) {
    proto::JobInfo info = WaitForEnd(job, std::chrono::seconds(60));
    ASSERT_EQ(info.state(), proto::JOB_FINISHED) << info.error();
    EXPECT_EQ(FindOperator(info, "sessions")->parallelism(), p);
    EXPECT_EQ(FindOperator(info, "sessions")->late_records_dropped(), 0u);
  };

  const std::string out = dir_ + "/out";
  std::string savepoint1, savepoint2;
  int64_t emitted1 = 0, emitted2 = 0;
  // Savepoint 1 after ~12.5 s of event time (the hot keys' sessions of [10 s, 15 s) open),
  // savepoint 2 after ~30 s more.
  stop_mid_input(Submit(SessionJob(out, 40'000)), 50'000, &savepoint1, &emitted1);
  if (HasFatalFailure()) return;
  ASSERT_GE(emitted1, 50'000);
  ASSERT_LT(emitted1, kSessionRecords);

  const std::string out3 = dir_ + "/out-p3";
  const std::string job3 = restore(SessionJob(out3, 40'000), 3, savepoint1);
  ASSERT_FALSE(job3.empty());
  stop_mid_input(job3, 65'000, &savepoint2, &emitted2);
  if (HasFatalFailure()) return;
  ASSERT_GE(emitted2, 65'000);
  ASSERT_LT(emitted1 + emitted2, kSessionRecords) << "the second savepoint is mid-input too";

  const std::string out1 = dir_ + "/out-p1";
  {
    SCOPED_TRACE("savepoint 1 -> p=3 -> savepoint 2 -> p=1");
    const std::string job1 = restore(SessionJob(out1, 0), 1, savepoint2);
    ASSERT_FALSE(job1.empty());
    run_to_end(job1, 1);
    if (HasFatalFailure()) return;
    CheckSessions({out, out3, out1}, expected);
  }
  {
    // As a user would: the same job file again, writing where the first run wrote.
    SCOPED_TRACE("savepoint 1 again -> p=2, into the first run's directory");
    const std::string job2 = restore(SessionJob(out, 0), 2, savepoint1);
    ASSERT_FALSE(job2.empty());
    run_to_end(job2, 2);
    if (HasFatalFailure()) return;
    CheckSessions({out}, expected);
  }
}

// The session job with a worker killed with SIGKILL after a checkpoint, twice: the committed
// output is exactly the sessions of a failure-free run.
TEST_F(WindowClusterTest, KillingWorkersKeepsEverySessionExactlyOnce) {
  StartCluster(2, 2, 1500);
  const std::string out = dir_ + "/out";
  std::string job = Submit(SessionJob(out, 40'000));
  WaitForState(job, proto::JOB_RUNNING, std::chrono::seconds(10));
  KillWorkersAfterCheckpoints(job, 2, 2, 2525);
  if (HasFatalFailure()) return;
  proto::JobInfo info = WaitForEnd(job, std::chrono::seconds(60));
  ASSERT_EQ(info.state(), proto::JOB_FINISHED) << info.error();
  EXPECT_GE(info.restarts(), 1) << "the kills did not hit the job";
  EXPECT_EQ(FindOperator(info, "sessions")->late_records_dropped(), 0u);
  CheckSessions({out}, ExpectedSessions());
}

// An event-time window job reading Kafka, where one of the topic's 4 partitions never gets a
// record: with idle_timeout that partition stops holding the watermark back, so the windows
// fire, each committed once with its exact count, and no record is late: a partition with
// records not read yet is never idle (however late its first fetch comes), so the late output
// stays empty (records in it would still be checked against the expected windows).
// With `kafka_out`, the windows go to topic `windows` through the exactly_once kafka_sink and
// are read back as a read_committed consumer would see them; otherwise to a file sink.
void WindowClusterTest::IdlePartitionStillFiresWindows(bool kafka_out) {
  StartCluster(2, 2, 3000);
  const KafkaProcess kafka(dir_, {"events:4", "windows:2"});
  ASSERT_FALSE(kafka.bootstrap().empty()) << kafka.Log();
  const std::string& bootstrap = kafka.bootstrap();
  // Partitions 0-2 get, in event-time order, 1000 records each over [0, 10 s) and then one at
  // 20 s that moves their watermarks past every window of [0, 10 s). Partition 3 gets nothing.
  constexpr int64_t kRecords = 3000;
  std::map<std::pair<int64_t, int64_t>, int64_t> expected;  // (key, window start) -> count
  for (int p = 0; p < 3; ++p) {
    std::string lines;
    for (int64_t i = 0; i < kRecords / 3; ++i) {
      const int64_t key = (i * 7 + p) % 10;
      absl::StrAppend(&lines, "{\"key\": ", key, ", \"ts\": ", i * 10, "}\n");
      expected[{key, (i * 10) / 1000 * 1000}]++;
    }
    absl::StrAppend(&lines, "{\"key\": 0, \"ts\": 20000}\n");
    kafka.Produce("events", p, lines);
    if (HasFatalFailure()) return;
  }
  const std::string out = dir_ + "/out";
  const std::string late = dir_ + "/late";
  const std::string log = dir_ + "/transactions.log";
  std::string job = Submit(KafkaKeyedEventsJob("kafka-windows", bootstrap, absl::StrCat(R"y(  - id: windows
    type: window
    tumble: 1s
    time_field: ts
    late_output: late
    aggregates: [{fn: count, as: n}]
  - )y", kafka_out ? absl::StrCat("{id: out, type: kafka_sink, bootstrap: \"", bootstrap,
                                    "\", topic: windows, key: [key], guarantee: exactly_once, "
                                    "transactional_id_prefix: windows, transaction_log: ", log, "}")
                     : absl::StrCat("{id: out, type: file, path: ", out, "}"), R"y(
  - {id: late_out, type: file, path: )y", late, R"y(, input: windows.late}
)y")));
  // The source is unbounded: wait until every record of [0, 10 s) is in a committed row or in
  // the late output.
  auto committed = [&](const std::string& dir) {
    if (kafka_out && dir == out) {
      ProtocolView view;
      return fs::exists(log) ? CommittedKafkaValues(bootstrap, "windows", log, &view)
                             : std::vector<std::string>();
    }
    return fs::exists(dir) ? ReadCommittedLines({dir}) : std::vector<std::string>();
  };
  EXPECT_TRUE(WaitFor([&] {
    int64_t covered = static_cast<int64_t>(committed(late).size());
    for (const std::string& line : committed(out)) {
      covered += nlohmann::json::parse(line)["n"].get<int64_t>();
    }
    return covered >= kRecords;
  }, std::chrono::seconds(60), "every record of [0, 10 s) committed", std::chrono::milliseconds(100)));
  ASSERT_OK(client_->Cancel(job));
  EXPECT_EQ(WaitForEnd(job, std::chrono::seconds(20)).state(), proto::JOB_CANCELLED);
  int64_t late_records = 0;
  for (const std::string& line : committed(late)) {
    auto j = nlohmann::json::parse(line);
    const int64_t ts = j["ts"].get<int64_t>();
    ASSERT_LT(ts, 10000) << line;
    auto it = expected.find({j["key"].get<int64_t>(), ts / 1000 * 1000});
    ASSERT_NE(it, expected.end()) << line;
    if (--it->second == 0) expected.erase(it);
    ++late_records;
  }
  EXPECT_EQ(late_records, 0) << "a partition with records to read was idle";
  std::map<std::pair<int64_t, int64_t>, int64_t> got;
  for (const std::string& line : committed(out)) {
    auto j = nlohmann::json::parse(line);
    auto key = std::make_pair(j["key"].get<int64_t>(), j["window_start"].get<int64_t>());
    EXPECT_EQ(got.count(key), 0u) << "twice: " << line;
    got[key] = j["n"].get<int64_t>();
  }
  EXPECT_GE(got.size(), 10u) << "the windows fired";
  EXPECT_EQ(got, expected) << "the window of the records at 20 s never fires; all others once";
}

TEST_F(WindowClusterTest, KafkaTopicWithAnIdlePartitionStillFiresItsWindows) {
  IdlePartitionStillFiresWindows(/*kafka_out=*/false);
}

TEST_F(WindowClusterTest, KafkaIdlePartitionWindowsExactlyOnceToKafka) {
  IdlePartitionStillFiresWindows(/*kafka_out=*/true);
}

}  // namespace
}  // namespace sluice::testing
