#include "worker/internal/task.h"

#include <stdlib.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/key_groups.h"
#include "common/metrics.h"
#include "common/record.h"
#include "common/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "operators/key_hasher.h"
#include "operators/registry.h"
#include "plan/job_graph.h"
#include "plan/job_spec.h"
#include "worker/internal/input_gate.h"

namespace sluice::worker {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr char kLocal[] = "local";
constexpr absl::Duration kDone = absl::Seconds(30);

// The task's writer for a local channel; the gate holds the channel as its credit listener
// (as Worker::CreateWriter does it).
class LocalWriter final : public ChannelWriter {
 public:
  explicit LocalWriter(std::shared_ptr<LocalChannel> ch) : ch_(std::move(ch)) {}
  absl::Status Send(BufferItem item) override { return ch_->Send(std::move(item)); }
  absl::Status Close() override { return ch_->Close(); }
  void Cancel() override { ch_->Cancel(); }
  int64_t CreditWaitNanos() const override { return ch_->CreditWaitNanos(); }

 private:
  std::shared_ptr<LocalChannel> ch_;
};

std::vector<std::string> ReadLines(const std::filesystem::path& path) {
  std::vector<std::string> lines;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) lines.push_back(line);
  return lines;
}

// The value of int64 field `name` in one JSON line written by the file sink.
int64_t IntField(const std::string& json, const std::string& name) {
  const std::string needle = absl::StrCat("\"", name, "\":");
  size_t pos = json.find(needle);
  if (pos == std::string::npos) {
    ADD_FAILURE() << "no field " << name << " in " << json;
    return -1;
  }
  return std::strtoll(json.c_str() + pos + needle.size(), nullptr, 10);
}

// Runs every subtask of a job as a Task in this process, all placed at one fake address and
// connected by LocalChannels.
class TaskTest : public ::testing::Test {
 protected:
  TaskTest() { ops::RegisterBuiltinOperators(&registry_); }

  void SetUp() override {
    std::string tmpl =
        (std::filesystem::temp_directory_path() / "sluice-task-test-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }

  void TearDown() override {
    tasks_.clear();  // cancels and joins whatever still runs
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  // Parses `yaml` (with $DIR replaced by the test's temp dir) and creates its tasks.
  void Deploy(const std::string& yaml) {
    std::string text = absl::StrReplaceAll(yaml, {{"$DIR", dir_.string()}});
    auto spec = plan::ParseJobSpec(text, "job.yaml");
    ASSERT_OK(spec);
    job_ = std::make_shared<const plan::JobSpec>(*std::move(spec));
    graph_ = std::make_shared<const plan::JobGraph>(plan::BuildJobGraph(*job_));
    std::vector<std::vector<std::string>> placement;
    for (const auto& v : graph_->vertices) placement.emplace_back(v.parallelism, kLocal);
    for (const auto& v : graph_->vertices) {
      for (int s = 0; s < v.parallelism; ++s) {
        TaskDescriptor d;
        d.job_id = "job-1";
        d.attempt = 1;
        d.vertex = v.id;
        d.subtask = s;
        d.job = job_;
        d.graph = graph_;
        d.placement = placement;
        tasks_.push_back(std::make_unique<Task>(
            std::move(d), &registry_,
            [this](const proto::ChannelHeader& h, const std::string& address) {
              return CreateWriter(h, address);
            },
            &metrics_, Clock::Real(), [this](Task* t) { OnDone(t); }));
      }
    }
  }

  absl::StatusOr<std::unique_ptr<ChannelWriter>> CreateWriter(const proto::ChannelHeader& h,
                                                              const std::string& address) {
    if (address != kLocal) return absl::UnavailableError(absl::StrCat("unknown address ", address));
    EXPECT_EQ(h.job_id(), "job-1");
    EXPECT_EQ(h.attempt(), 1);
    const plan::Edge& e = graph_->edges.at(h.edge());
    Task* target = TaskFor(e.target_vertex, h.dst_subtask());
    if (target == nullptr) return absl::NotFoundError("no such task");
    const int channel = GateChannelIndex(*graph_, h.edge(), h.src_subtask());
    EXPECT_GE(channel, 0);
    EXPECT_LT(channel, target->gate()->num_channels());
    auto local = std::make_shared<LocalChannel>(target->gate(), channel);
    target->gate()->SetListener(channel, local);
    return std::unique_ptr<ChannelWriter>(std::make_unique<LocalWriter>(std::move(local)));
  }

  void OnDone(Task* t) {
    absl::MutexLock lock(&mu_);
    ++done_;
    done_tasks_.insert(t);
  }

  void StartAll() {
    for (auto& t : tasks_) t->Start();
  }
  void CancelAll() {
    for (auto& t : tasks_) t->Cancel();
  }

  // Waits until every task has reported itself done, then joins them.
  bool WaitAllDone(absl::Duration timeout = kDone) {
    bool all;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return done_ >= static_cast<int>(tasks_.size());
      };
      all = mu_.AwaitWithTimeout(absl::Condition(&ready), timeout);
      EXPECT_EQ(done_, static_cast<int>(done_tasks_.size())) << "a task reported done twice";
    }
    if (all) {
      for (auto& t : tasks_) t->Join();
    }
    return all;
  }

  Task* TaskFor(int vertex, int subtask) {
    for (auto& t : tasks_) {
      if (t->descriptor().vertex == vertex && t->descriptor().subtask == subtask) return t.get();
    }
    return nullptr;
  }

  int IndexOf(const std::string& op_id) const {
    for (const auto& op : job_->operators) {
      if (op.id == op_id) return op.index;
    }
    ADD_FAILURE() << "no operator " << op_id;
    return 0;
  }
  int VertexOf(const std::string& op_id) const { return graph_->vertex_of_op[IndexOf(op_id)]; }

  // The edge whose consumer head is `op_id`, read from `from`.
  const plan::Edge& EdgeInto(const std::string& op_id, const std::string& from) const {
    for (const auto& e : graph_->edges) {
      if (e.target_op == IndexOf(op_id) && e.source_op == IndexOf(from)) return e;
    }
    ADD_FAILURE() << "no edge " << from << " -> " << op_id;
    return graph_->edges.front();
  }

  struct Counts {
    uint64_t in = 0;
    uint64_t out = 0;
  };
  // Records in and out of `op_id`, summed over its subtasks; also per subtask.
  Counts CountsOf(const std::string& op_id, std::vector<Counts>* per_subtask = nullptr) const {
    Counts total;
    for (const auto& t : tasks_) {
      proto::TaskStatus st = t->Status();
      for (const auto& c : st.operators()) {
        if (c.operator_id() != op_id) continue;
        total.in += c.records_in();
        total.out += c.records_out();
        if (per_subtask != nullptr) {
          if (per_subtask->size() <= static_cast<size_t>(st.task().subtask())) {
            per_subtask->resize(st.task().subtask() + 1);
          }
          (*per_subtask)[st.task().subtask()] = {c.records_in(), c.records_out()};
        }
      }
    }
    return total;
  }

  void ExpectAllIn(proto::TaskState state) {
    for (const auto& t : tasks_) {
      proto::TaskStatus st = t->Status();
      EXPECT_EQ(st.state(), state) << t->name() << ": " << proto::TaskState_Name(st.state()) << " "
                                   << st.error();
      if (state != proto::TASK_FAILED) {
        EXPECT_THAT(st.error(), IsEmpty()) << t->name();
      }
    }
  }

  // Lines of part-<subtask>.jsonl under $DIR/<sub>.
  std::vector<std::string> Part(const std::string& sub, int subtask) const {
    return ReadLines(dir_ / sub / absl::StrCat("part-", subtask, ".jsonl"));
  }

  std::filesystem::path dir_;
  ops::OperatorRegistry registry_;
  MetricsRegistry metrics_;
  std::shared_ptr<const plan::JobSpec> job_;
  std::shared_ptr<const plan::JobGraph> graph_;
  absl::Mutex mu_;
  int done_ ABSL_GUARDED_BY(mu_) = 0;
  std::set<Task*> done_tasks_ ABSL_GUARDED_BY(mu_);
  std::vector<std::unique_ptr<Task>> tasks_;  // last: destroyed (joined) first
};

TEST_F(TaskTest, GateChannelsOfAGraph) {
  Deploy(R"(
name: channels
operators:
  - {id: a, type: datagen, parallelism: 2, count: 1, fields: [{name: x, type: int64, expr: "seq"}]}
  - {id: b, type: datagen, parallelism: 3, count: 1, fields: [{name: x, type: int64, expr: "seq"}]}
  - {id: u, type: union, parallelism: 2, inputs: [a, b]}
  - {id: out, type: blackhole, parallelism: 2}
)");
  ASSERT_FALSE(HasFailure());
  const int u = VertexOf("u");
  EXPECT_EQ(VertexOf("out"), VertexOf("u")) << "the sink chains onto the union";
  const plan::Edge& from_a = EdgeInto("u", "a");
  const plan::Edge& from_b = EdgeInto("u", "b");
  ASSERT_EQ(from_a.partition, plan::Partition::kForward);
  ASSERT_EQ(from_b.partition, plan::Partition::kRebalance);
  // One forward channel from a, then one per subtask of b.
  EXPECT_EQ(GateChannelCount(*graph_, u), 1 + 3);
  EXPECT_EQ(GateChannelIndex(*graph_, from_a.id, 0), 0);
  EXPECT_EQ(GateChannelIndex(*graph_, from_a.id, 1), 0);
  for (int src = 0; src < 3; ++src) EXPECT_EQ(GateChannelIndex(*graph_, from_b.id, src), 1 + src);
  EXPECT_EQ(TaskFor(u, 0)->gate()->num_channels(), 4);
  EXPECT_EQ(TaskFor(VertexOf("a"), 0)->gate()->num_channels(), 0);
}

TEST_F(TaskTest, StatusBeforeStartShowsDeployingAndZeroCounters) {
  Deploy(R"(
name: idle
operators:
  - {id: gen, type: datagen, count: 10, fields: [{name: x, type: int64, expr: "seq"}]}
  - {id: out, type: blackhole}
)");
  ASSERT_FALSE(HasFailure());
  ASSERT_EQ(tasks_.size(), 1u);
  proto::TaskStatus st = tasks_[0]->Status();
  EXPECT_EQ(st.state(), proto::TASK_DEPLOYING);
  EXPECT_EQ(st.task().job_id(), "job-1");
  ASSERT_EQ(st.operators_size(), 2);
  EXPECT_EQ(st.operators(0).operator_id(), "gen");
  EXPECT_EQ(st.operators(1).operator_id(), "out");
  EXPECT_EQ(st.operators(0).records_out(), 0u);
  EXPECT_EQ(tasks_[0]->name(), "job-1/gen -> out#0");
}

TEST_F(TaskTest, ChainedOperatorsCountExactly) {
  constexpr int kCount = 1000;
  Deploy(R"(
name: chain
parallelism: 2
operators:
  - id: gen
    type: datagen
    count: 1000
    fields:
      - {name: k, type: int64, expr: "seq % 10"}
      - {name: v, type: int64, expr: "seq"}
  - id: thirds
    type: filter
    where: "v % 3 == 0"
  - id: by_k
    type: key_by
    key: [k]
  - id: out
    type: file
    path: $DIR/out
)");
  ASSERT_FALSE(HasFailure());
  ASSERT_EQ(graph_->vertices.size(), 2u);
  EXPECT_EQ(graph_->vertices[0].name, "gen -> thirds -> by_k");
  EXPECT_EQ(graph_->vertices[1].name, "out");
  ASSERT_EQ(tasks_.size(), 4u);

  StartAll();
  ASSERT_TRUE(WaitAllDone());
  ExpectAllIn(proto::TASK_FINISHED);

  // Subtask s of 2 generates seq = s, s+2, ...; the filter keeps multiples of 3.
  std::vector<uint64_t> kept(2);
  for (int seq = 0; seq < kCount; ++seq) {
    if (seq % 3 == 0) kept[seq % 2]++;
  }
  std::vector<Counts> gen, thirds, by_k;
  Counts g = CountsOf("gen", &gen);
  Counts t = CountsOf("thirds", &thirds);
  Counts k = CountsOf("by_k", &by_k);
  Counts o = CountsOf("out");
  for (int s = 0; s < 2; ++s) {
    SCOPED_TRACE(s);
    EXPECT_EQ(gen[s].in, 0u);
    EXPECT_EQ(gen[s].out, static_cast<uint64_t>(kCount / 2));
    EXPECT_EQ(thirds[s].in, static_cast<uint64_t>(kCount / 2));
    EXPECT_EQ(thirds[s].out, kept[s]);
    EXPECT_EQ(by_k[s].in, kept[s]);
    EXPECT_EQ(by_k[s].out, kept[s]);
  }
  EXPECT_EQ(g.out, static_cast<uint64_t>(kCount));
  EXPECT_EQ(t.in, static_cast<uint64_t>(kCount));
  EXPECT_EQ(t.out, kept[0] + kept[1]);
  EXPECT_EQ(k.out, kept[0] + kept[1]);
  EXPECT_EQ(o.in, kept[0] + kept[1]);
  EXPECT_EQ(o.out, 0u);

  std::set<int64_t> seen;
  for (int s = 0; s < 2; ++s) {
    for (const auto& line : Part("out", s)) {
      int64_t v = IntField(line, "v");
      EXPECT_EQ(v % 3, 0) << line;
      EXPECT_EQ(IntField(line, "k"), v % 10) << line;
      EXPECT_TRUE(seen.insert(v).second) << "duplicate " << line;
    }
  }
  EXPECT_EQ(seen.size(), kept[0] + kept[1]);
}

TEST_F(TaskTest, HashPartitionerRoutesEachKeyToItsKeyGroupOwner) {
  constexpr int kCount = 20000;
  constexpr int kSinks = 3;
  Deploy(R"(
name: hash
parallelism: 2
operators:
  - id: gen
    type: datagen
    count: 20000
    fields:
      - {name: k, type: int64, expr: "seq % 101"}
      - {name: v, type: int64, expr: "seq"}
  - id: by_k
    type: key_by
    key: [k]
  - id: out
    type: file
    parallelism: 3
    path: $DIR/out
)");
  ASSERT_FALSE(HasFailure());
  ASSERT_EQ(job_->max_parallelism, kDefaultMaxParallelism);
  const plan::Edge& edge = EdgeInto("out", "by_k");
  ASSERT_EQ(edge.partition, plan::Partition::kHash);
  auto hasher = ops::KeyHasher::Create(edge.key, edge.schema);
  ASSERT_OK(hasher);

  StartAll();
  ASSERT_TRUE(WaitAllDone());
  ExpectAllIn(proto::TASK_FINISHED);

  std::map<int64_t, int> part_of_key;
  std::set<int64_t> values;
  size_t total = 0;
  for (int s = 0; s < kSinks; ++s) {
    std::vector<std::string> lines = Part("out", s);
    total += lines.size();
    for (const auto& line : lines) {
      int64_t k = IntField(line, "k");
      int64_t v = IntField(line, "v");
      EXPECT_EQ(k, v % 101) << line;
      values.insert(v);
      auto [it, inserted] = part_of_key.emplace(k, s);
      EXPECT_EQ(it->second, s) << "key " << k << " in part " << it->second << " and " << s;
    }
  }
  EXPECT_EQ(total, static_cast<size_t>(kCount));
  EXPECT_EQ(values.size(), static_cast<size_t>(kCount));
  ASSERT_EQ(part_of_key.size(), 101u);

  std::set<int> parts_used;
  Record r(edge.schema.size());
  for (const auto& [k, part] : part_of_key) {
    r.SetInt(0, k);
    int kg = KeyGroupForHash(hasher->Hash(r), job_->max_parallelism);
    EXPECT_EQ(part, SubtaskForKeyGroup(kg, job_->max_parallelism, kSinks)) << "key " << k;
    parts_used.insert(part);
  }
  EXPECT_EQ(parts_used.size(), static_cast<size_t>(kSinks)) << "101 keys should cover every part";
}

TEST_F(TaskTest, RebalanceSpreadsEvenly) {
  constexpr int kCount = 10001;
  Deploy(R"(
name: rebalance
operators:
  - id: gen
    type: datagen
    count: 10001
    fields: [{name: v, type: int64, expr: "seq"}]
  - id: out
    type: file
    parallelism: 2
    inputs: [{from: gen, partition: rebalance}]
    path: $DIR/out
)");
  ASSERT_FALSE(HasFailure());
  StartAll();
  ASSERT_TRUE(WaitAllDone());
  ExpectAllIn(proto::TASK_FINISHED);

  std::vector<std::string> p0 = Part("out", 0);
  std::vector<std::string> p1 = Part("out", 1);
  EXPECT_EQ(p0.size() + p1.size(), static_cast<size_t>(kCount));
  EXPECT_LE(std::abs(static_cast<long>(p0.size()) - static_cast<long>(p1.size())), 1);
  std::set<int64_t> values;
  for (const auto* part : {&p0, &p1}) {
    for (const auto& line : *part) values.insert(IntField(line, "v"));
  }
  EXPECT_EQ(values.size(), static_cast<size_t>(kCount));
  std::vector<Counts> out;
  CountsOf("out", &out);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].in, p0.size());
  EXPECT_EQ(out[1].in, p1.size());
}

TEST_F(TaskTest, BroadcastSendsEverythingToEverySubtask) {
  constexpr int kCount = 5000;
  Deploy(R"(
name: broadcast
operators:
  - id: gen
    type: datagen
    count: 5000
    fields: [{name: v, type: int64, expr: "seq"}]
  - id: out
    type: file
    parallelism: 3
    inputs: [{from: gen, partition: broadcast}]
    path: $DIR/out
)");
  ASSERT_FALSE(HasFailure());
  StartAll();
  ASSERT_TRUE(WaitAllDone());
  ExpectAllIn(proto::TASK_FINISHED);

  for (int s = 0; s < 3; ++s) {
    SCOPED_TRACE(s);
    std::vector<std::string> lines = Part("out", s);
    ASSERT_EQ(lines.size(), static_cast<size_t>(kCount));
    // One producer channel: records arrive in the order generated.
    for (int i = 0; i < kCount; ++i) ASSERT_EQ(IntField(lines[i], "v"), i);
  }
  EXPECT_EQ(CountsOf("gen").out, static_cast<uint64_t>(kCount));
  EXPECT_EQ(CountsOf("out").in, static_cast<uint64_t>(3 * kCount));
}

TEST_F(TaskTest, UnionOfTwoSourcesDeliversBoth) {
  constexpr int kCountA = 3000;
  constexpr int kCountB = 4500;
  Deploy(R"(
name: union
operators:
  - id: a
    type: datagen
    parallelism: 2
    count: 3000
    fields: [{name: src, type: int64, expr: "1"}, {name: v, type: int64, expr: "seq"}]
  - id: b
    type: datagen
    parallelism: 3
    count: 4500
    fields: [{name: src, type: int64, expr: "2"}, {name: v, type: int64, expr: "seq"}]
  - id: both
    type: union
    parallelism: 2
    inputs: [a, b]
  - id: out
    type: file
    parallelism: 2
    path: $DIR/out
)");
  ASSERT_FALSE(HasFailure());
  ASSERT_EQ(graph_->vertices.size(), 3u);
  StartAll();
  ASSERT_TRUE(WaitAllDone());
  ExpectAllIn(proto::TASK_FINISHED);

  std::set<int64_t> from_a, from_b;
  size_t total = 0;
  for (int s = 0; s < 2; ++s) {
    for (const auto& line : Part("out", s)) {
      ++total;
      int64_t src = IntField(line, "src");
      int64_t v = IntField(line, "v");
      if (src == 1) {
        EXPECT_TRUE(from_a.insert(v).second) << line;
        EXPECT_EQ(v % 2, s) << "a -> union is forward: " << line;
      } else {
        EXPECT_EQ(src, 2) << line;
        EXPECT_TRUE(from_b.insert(v).second) << line;
      }
    }
  }
  EXPECT_EQ(total, static_cast<size_t>(kCountA + kCountB));
  EXPECT_EQ(from_a.size(), static_cast<size_t>(kCountA));
  EXPECT_EQ(from_b.size(), static_cast<size_t>(kCountB));
  EXPECT_EQ(CountsOf("both").in, static_cast<uint64_t>(kCountA + kCountB));
  EXPECT_EQ(CountsOf("out").in, static_cast<uint64_t>(kCountA + kCountB));
}

// An endless source into a sink that takes 10 records/s: the source soon blocks on credit and
// the sink sits in a slow Process(). Cancel must end both at once.
TEST_F(TaskTest, CancelEndsBlockedTasksPromptly) {
  Deploy(R"(
name: endless
operators:
  - id: gen
    type: datagen
    fields: [{name: k, type: int64, expr: "seq % 7"}, {name: v, type: int64, expr: "seq"}]
  - id: slow
    type: blackhole
    max_rate: 10
    inputs: [{from: gen, partition: rebalance}]
)");
  ASSERT_FALSE(HasFailure());
  ASSERT_EQ(tasks_.size(), 2u);
  Task* sink = TaskFor(VertexOf("slow"), 0);
  StartAll();
  // Wait until records flow and the source has filled the sink's gate (it is then blocked:
  // the sink holds one buffer and has not returned its credit).
  const size_t full = static_cast<size_t>(sink->gate()->credits_per_channel() - 1);
  const absl::Time deadline = absl::Now() + kDone;
  while (absl::Now() < deadline &&
         (CountsOf("slow").in == 0 || sink->gate()->QueuedForTest() < full)) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  ASSERT_GE(sink->gate()->QueuedForTest(), full);
  ASSERT_GT(CountsOf("slow").in, 0u);
  for (const auto& t : tasks_) EXPECT_EQ(t->Status().state(), proto::TASK_RUNNING);

  const absl::Time cancelled_at = absl::Now();
  CancelAll();
  ASSERT_TRUE(WaitAllDone(absl::Seconds(5))) << "tasks did not end within 5 s of Cancel()";
  EXPECT_LT(absl::Now() - cancelled_at, absl::Seconds(2));
  ExpectAllIn(proto::TASK_CANCELLED);
}

// Same with the slow sink chained to the source: the one task is inside a batch of Poll().
TEST_F(TaskTest, CancelEndsAChainedSlowTaskPromptly) {
  Deploy(R"(
name: endless-chained
operators:
  - id: gen
    type: datagen
    fields: [{name: v, type: int64, expr: "seq"}]
  - id: slow
    type: blackhole
    max_rate: 10
)");
  ASSERT_FALSE(HasFailure());
  ASSERT_EQ(tasks_.size(), 1u);
  StartAll();
  const absl::Time deadline = absl::Now() + kDone;
  while (absl::Now() < deadline && CountsOf("slow").in == 0) absl::SleepFor(absl::Milliseconds(1));
  ASSERT_GT(CountsOf("slow").in, 0u);

  const absl::Time cancelled_at = absl::Now();
  CancelAll();
  ASSERT_TRUE(WaitAllDone(absl::Seconds(5))) << "task did not end within 5 s of Cancel()";
  EXPECT_LT(absl::Now() - cancelled_at, absl::Seconds(2));
  ExpectAllIn(proto::TASK_CANCELLED);
}

TEST_F(TaskTest, CancelBeforeStartEndsCancelled) {
  Deploy(R"(
name: never
operators:
  - id: gen
    type: datagen
    fields: [{name: v, type: int64, expr: "seq"}]
  - id: out
    type: file
    parallelism: 2
    path: $DIR/out
)");
  ASSERT_FALSE(HasFailure());
  CancelAll();
  StartAll();
  ASSERT_TRUE(WaitAllDone());
  ExpectAllIn(proto::TASK_CANCELLED);
}

TEST_F(TaskTest, FailingOperatorFailsTheTaskNamingIt) {
  {
    std::ofstream blocker(dir_ / "blocker");
    blocker << "not a directory\n";
  }
  Deploy(R"(
name: failing
operators:
  - id: gen
    type: datagen
    fields: [{name: v, type: int64, expr: "seq"}]
  - id: out
    type: file
    inputs: [{from: gen, partition: rebalance}]
    path: $DIR/blocker/out
)");
  ASSERT_FALSE(HasFailure());
  ASSERT_EQ(tasks_.size(), 2u);
  StartAll();
  // The endless source must not hang once its consumer is gone.
  ASSERT_TRUE(WaitAllDone());

  proto::TaskStatus sink = TaskFor(VertexOf("out"), 0)->Status();
  EXPECT_EQ(sink.state(), proto::TASK_FAILED);
  EXPECT_THAT(sink.error(), HasSubstr("operator 'out'"));
  EXPECT_THAT(sink.error(), HasSubstr("job-1/out#0"));
  EXPECT_THAT(sink.error(), HasSubstr("blocker"));
  proto::TaskStatus source = TaskFor(VertexOf("gen"), 0)->Status();
  EXPECT_EQ(source.state(), proto::TASK_CANCELLED) << source.error();
  EXPECT_THAT(source.error(), HasSubstr("consumer task has stopped"));
}

TEST_F(TaskTest, FailingChainedOperatorIsNamed) {
  {
    std::ofstream blocker(dir_ / "blocker");
    blocker << "not a directory\n";
  }
  Deploy(R"(
name: failing-chained
operators:
  - id: gen
    type: datagen
    count: 10
    fields: [{name: v, type: int64, expr: "seq"}]
  - id: keep
    type: filter
    where: "v >= 0"
  - id: sink_1
    type: file
    path: $DIR/blocker/out
)");
  ASSERT_FALSE(HasFailure());
  ASSERT_EQ(tasks_.size(), 1u);
  StartAll();
  ASSERT_TRUE(WaitAllDone());
  proto::TaskStatus st = tasks_[0]->Status();
  EXPECT_EQ(st.state(), proto::TASK_FAILED);
  EXPECT_THAT(st.error(), HasSubstr("operator 'sink_1'"));
}

}  // namespace
}  // namespace sluice::worker
