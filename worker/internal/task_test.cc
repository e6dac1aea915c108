#include "worker/internal/task.h"

#include <stdlib.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/key_groups.h"
#include "common/metrics.h"
#include "common/record.h"
#include "common/record_codec.h"
#include "common/state_format.h"
#include "common/status.h"
#include "common/status_matchers.h"
#include "common/watermark.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "operators/key_hasher.h"
#include "operators/datagen_options.h"
#include "operators/registry.h"
#include "worker/internal/channel_state.h"
#include "plan/job_graph.h"
#include "plan/job_spec.h"
#include "worker/internal/input_gate.h"

namespace sluice::worker {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

constexpr char kLocal[] = "local";
constexpr absl::Duration kDone = absl::Seconds(30);

// Checkpoint acknowledgements by task (vertex, subtask).
using Acks = std::map<std::pair<int, int>, proto::CheckpointAck>;

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
  TaskTest() { EXPECT_OK(ops::RegisterBuiltinOperators(&registry_)); }

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
    auto spec = plan::ParseJobSpec(text, "job.yaml", registry_in_use_->catalog());
    ASSERT_OK(spec);
    job_ = std::make_shared<const plan::JobSpec>(*std::move(spec));
    graph_ = std::make_shared<const plan::JobGraph>(plan::BuildJobGraph(*job_));
    std::vector<std::vector<std::string>> placement;
    for (const auto& v : graph_->vertices) placement.emplace_back(v.parallelism, kLocal);
    Clock* clock = fake_time_ ? static_cast<Clock*>(&fake_clock_) : Clock::Real();
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
        d.work_dir = (dir_ / "work").string();
        d.restore = restore_ == nullptr ? nullptr : std::make_shared<RestoreMetadata>(restore_);
        d.restore_dir = CheckpointDir();
        if (checkpointing_) {
          d.checkpoint_dir = CheckpointDir();
          d.ack = [this](proto::CheckpointAck ack) {
            absl::MutexLock lock(&mu_);
            acks_.push_back(std::move(ack));
          };
          d.on_end_of_input = [this] {
            absl::MutexLock lock(&mu_);
            ++end_of_input_;
          };
        }
        tasks_.push_back(std::make_unique<Task>(
            std::move(d), registry_in_use_,
            [this](const proto::ChannelHeader& h, const std::string& address) {
              return CreateWriter(h, address);
            },
            &metrics_, clock, [this](Task* t) { OnDone(t); }));
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
    return LocalChannel::Connect(target->gate(), channel);
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

  // Waits until `task` has reported itself done (kDone at most).
  bool WaitDone(Task* task) {
    absl::MutexLock lock(&mu_);
    auto done = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return done_tasks_.count(task) > 0; };
    return mu_.AwaitWithTimeout(absl::Condition(&done), kDone);
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

  // Lines of part-job-1-<subtask>.jsonl under $DIR/<sub>.
  std::vector<std::string> Part(const std::string& sub, int subtask) const {
    return ReadLines(dir_ / sub / absl::StrCat("part-job-1-", subtask, ".jsonl"));
  }

  // ---- Checkpointing ----

  std::string CheckpointDir() const { return (dir_ / "checkpoints").string(); }

  // Waits until each of `from` (every task when empty) has acknowledged checkpoint `id`, and
  // returns the acknowledgements by task. Each task acknowledges a checkpoint once.
  Acks AwaitAcks(int64_t id, std::vector<Task*> from = {}) {
    if (from.empty()) {
      for (auto& t : tasks_) from.push_back(t.get());
    }
    Acks got;
    absl::MutexLock lock(&mu_);
    auto ready = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      got.clear();
      for (const auto& a : acks_) {
        if (a.checkpoint_id() != id) continue;
        EXPECT_TRUE(got.emplace(std::make_pair(a.task().vertex(), a.task().subtask()), a).second)
            << "task " << a.task().vertex() << "#" << a.task().subtask()
            << " acknowledged checkpoint " << id << " twice";
      }
      for (Task* t : from) {
        if (!got.count({t->descriptor().vertex, t->descriptor().subtask})) return false;
      }
      return true;
    };
    EXPECT_TRUE(mu_.AwaitWithTimeout(absl::Condition(&ready), kDone))
        << "only " << got.size() << " of " << from.size() << " tasks acknowledged checkpoint "
        << id;
    return got;
  }

  // Waits until every task has reached its end of input (it then waits for the final checkpoint).
  bool AwaitEndOfInput() {
    absl::MutexLock lock(&mu_);
    auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return end_of_input_ >= static_cast<int>(tasks_.size());
    };
    return mu_.AwaitWithTimeout(absl::Condition(&ready), kDone);
  }

  // Triggers checkpoint `id` on every subtask of `op_id`'s vertex (sources: inject barriers).
  void TriggerOn(const std::string& op_id, int64_t id) {
    for (int s = 0; s < graph_->vertices[VertexOf(op_id)].parallelism; ++s) {
      TaskFor(VertexOf(op_id), s)->TriggerCheckpoint(id, /*final=*/false);
    }
  }
  void TriggerAll(int64_t id, bool final) {
    for (auto& t : tasks_) t->TriggerCheckpoint(id, final);
  }
  void NotifyAll(int64_t id) {
    for (auto& t : tasks_) t->NotifyCheckpointComplete(id);
  }

  // Polls `done` until it holds or kDone passes.
  static bool WaitUntil(const std::function<bool()>& done) {
    const absl::Time deadline = absl::Now() + kDone;
    while (!done()) {
      if (absl::Now() >= deadline) return false;
      absl::SleepFor(absl::Milliseconds(1));
    }
    return true;
  }

  // Records out of subtask `subtask` of `op_id`.
  uint64_t OutOf(const std::string& op_id, int subtask) const {
    std::vector<Counts> per;
    CountsOf(op_id, &per);
    return static_cast<size_t>(subtask) < per.size() ? per[subtask].out : 0;
  }
  uint64_t InOf(const std::string& op_id, int subtask) const {
    std::vector<Counts> per;
    CountsOf(op_id, &per);
    return static_cast<size_t>(subtask) < per.size() ? per[subtask].in : 0;
  }

  // Buffers of records that subtask `src` has sent on `edge` (from the channel metrics).
  int64_t BuffersSent(const plan::Edge& edge, int src) const {
    return ChannelTotal("sluice_channel_buffers_sent_total", edge, src);
  }
  // Barriers that subtask `src` sent in place on `edge` and converted after aligned_timeout.
  int64_t BarriersConverted(const plan::Edge& edge, int src) const {
    return ChannelTotal("sluice_channel_barriers_converted_total", edge, src);
  }
  // Channel counter `name` of subtask `src` on `edge`, summed over its channels.
  int64_t ChannelTotal(const std::string& name, const plan::Edge& edge, int src) const {
    const std::string prefix = absl::StrCat(name, "{job=\"job-1\",subtask=\"",
                                            src, "\",edge=\"", edge.id, "\",");
    int64_t total = 0;
    for (absl::string_view line : absl::StrSplit(metrics_.RenderPrometheus(), '\n')) {
      if (!absl::StartsWith(line, prefix)) continue;
      double v = 0;
      if (absl::SimpleAtod(line.substr(line.rfind(' ') + 1), &v)) total += static_cast<int64_t>(v);
    }
    return total;
  }

  // With fake_time_, rate-limited datagen sources are driven by the fake clock. The sources of
  // the checkpoint tests emit one record per subtask per fake millisecond (rate = 1000 x
  // parallelism), the first when opened.

  // Starts every task and waits until each source subtask has opened (and emitted its first
  // record) at the current fake time.
  void StartOnFakeClock(const std::vector<std::string>& sources) {
    ASSERT_TRUE(fake_time_);
    StartAll();
    for (const auto& op : sources) {
      for (int s = 0; s < graph_->vertices[VertexOf(op)].parallelism; ++s) {
        ASSERT_TRUE(WaitUntil([&] { return OutOf(op, s) >= 1; })) << op << "#" << s;
        ASSERT_EQ(OutOf(op, s), 1u) << op << "#" << s;
      }
    }
  }

  // Records subtask `subtask` of datagen `op_id` emits by fake time `elapsed_ms` after opening.
  int64_t DueBy(const std::string& op_id, int subtask, int64_t elapsed_ms) const {
    const plan::OperatorSpec& spec = job_->operators[IndexOf(op_id)];
    int64_t due = elapsed_ms + 1;
    const int64_t count = spec.options_as<ops::DatagenOptions>()->count;
    if (count >= 0) {
      due = std::min(due, (count - subtask + spec.parallelism - 1) / spec.parallelism);
    }
    return due;
  }

  // Moves the fake clock on by `ms` in steps of at most 50 ms (datagen does not catch up on
  // more than 100 ms of lag), waiting after each step until every subtask of `sources` has
  // emitted exactly what is due.
  void AdvanceSources(const std::vector<std::string>& sources, int64_t ms) {
    for (int64_t done = 0; done < ms;) {
      const int64_t step = std::min<int64_t>(50, ms - done);
      fake_clock_.AdvanceNanos(step * 1'000'000);
      done += step;
      elapsed_ms_ += step;
      for (const auto& op : sources) {
        for (int s = 0; s < graph_->vertices[VertexOf(op)].parallelism; ++s) {
          const uint64_t due = DueBy(op, s, elapsed_ms_);
          ASSERT_TRUE(WaitUntil([&] { return OutOf(op, s) >= due; })) << op << "#" << s;
          ASSERT_EQ(OutOf(op, s), due) << op << "#" << s;
        }
      }
    }
  }

  std::filesystem::path dir_;
  ops::OperatorRegistry registry_;
  const ops::OperatorRegistry* registry_in_use_ = &registry_;  // set before Deploy()
  MetricsRegistry metrics_;
  std::shared_ptr<const plan::JobSpec> job_;
  std::shared_ptr<const plan::JobGraph> graph_;
  // Set before Deploy(): tasks take checkpoints into CheckpointDir(); tasks run on fake_clock_.
  bool checkpointing_ = false;
  // Restored by every task of Deploy() (null: a fresh start), relative to CheckpointDir().
  std::shared_ptr<const proto::CheckpointMetadata> restore_;
  bool fake_time_ = false;
  FakeClock fake_clock_;
  int64_t elapsed_ms_ = 0;  // fake time since the sources opened
  absl::Mutex mu_;
  int done_ ABSL_GUARDED_BY(mu_) = 0;
  std::set<Task*> done_tasks_ ABSL_GUARDED_BY(mu_);
  std::vector<proto::CheckpointAck> acks_ ABSL_GUARDED_BY(mu_);
  int end_of_input_ ABSL_GUARDED_BY(mu_) = 0;
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

// A window's late records leave through the edge of its side output `w.late`, to the operator
// reading it, and nowhere else; its main output carries the window rows. Every record is
// either counted in exactly one row or written to the late output.
TEST_F(TaskTest, SideOutputRecordsTakeTheirOwnEdge) {
  constexpr int kCount = 3000;
  Deploy(R"y(
name: late
parallelism: 2
watermark_interval: 5ms
operators:
  - id: gen
    type: datagen
    parallelism: 1
    count: 3000
    rate: 3000
    fields:
      - {name: id, type: int64, expr: seq}
      - {name: user, type: int64, expr: "seq % 7"}
      - {name: ts, type: timestamp, expr: "if(seq % 10 == 9, seq * 10 - 3600000, seq * 10)"}
    event_time: {field: ts}
  - {id: k, type: key_by, key: user}
  - id: w
    type: window
    tumble: 100ms
    time_field: ts
    late_output: late
    aggregates: [{fn: count, as: n}]
  - {id: main_out, type: file, path: $DIR/main, input: w}
  - {id: late_out, type: file, path: $DIR/late, input: w.late}
)y");
  ASSERT_FALSE(HasFailure());
  StartAll();
  ASSERT_TRUE(WaitAllDone());
  ExpectAllIn(proto::TASK_FINISHED);

  // The late records: only the hour-late ones (every 10th), unchanged, each once.
  std::set<int64_t> late;
  for (int s = 0; s < 2; ++s) {
    for (const auto& line : Part("late", s)) {
      const int64_t id = IntField(line, "id");
      EXPECT_EQ(id % 10, 9) << line;
      EXPECT_EQ(IntField(line, "user"), id % 7) << line;
      EXPECT_EQ(IntField(line, "ts"), id * 10 - 3600000) << line;
      EXPECT_TRUE(late.insert(id).second) << "twice: " << line;
    }
  }
  // Watermarks come every 5 ms of a 1 s run: all but the first few hour-late records are late.
  EXPECT_GE(late.size(), static_cast<size_t>(kCount / 10 / 2));
  // The rows: every (user, window) of the other records once, with its exact count.
  std::map<std::pair<int64_t, int64_t>, int64_t> expected, got;
  for (int64_t seq = 0; seq < kCount; ++seq) {
    if (late.count(seq)) continue;
    const int64_t ts = seq % 10 == 9 ? seq * 10 - 3600000 : seq * 10;
    const int64_t start = ts - ((ts % 100) + 100) % 100;
    expected[{seq % 7, start}]++;
  }
  for (int s = 0; s < 2; ++s) {
    for (const auto& line : Part("main", s)) {
      EXPECT_NE(line.find("\"update\":false"), std::string::npos) << line;
      EXPECT_EQ(IntField(line, "window_end") - IntField(line, "window_start"), 100) << line;
      auto key = std::make_pair(IntField(line, "user"), IntField(line, "window_start"));
      EXPECT_EQ(got.count(key), 0u) << "twice: " << line;
      got[key] = IntField(line, "n");
    }
  }
  EXPECT_EQ(got, expected);
  EXPECT_EQ(CountsOf("late_out").in, late.size());
  for (const auto& t : tasks_) {
    const proto::TaskStatus st = t->Status();
    for (const auto& c : st.operators()) EXPECT_EQ(c.late_records_dropped(), 0u) << c.operator_id();
  }
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

// An unaligned checkpoint holds buffers per channel of the old parallelism: restoring it with
// another parallelism is refused, naming the job and the checkpoint.
TEST_F(TaskTest, UnalignedCheckpointCannotBeRescaled) {
  checkpointing_ = true;
  auto md = std::make_shared<proto::CheckpointMetadata>();
  md->set_job_id("job-1");
  md->set_checkpoint_id(5);
  for (int s = 0; s < 3; ++s) {  // the source vertex had 3 subtasks, now 2
    proto::SubtaskState* st = md->add_subtasks();
    st->set_vertex(0);
    st->set_subtask(s);
    if (s == 1) st->set_channel_state_file("chk-5/0-1-channels");
  }
  restore_ = md;
  Deploy(R"(
name: rescaled
parallelism: 2
checkpoint: {interval: 1s, mode: unaligned}
operators:
  - id: gen
    type: datagen
    count: 10
    fields: [{name: v, type: int64, expr: "seq"}]
  - {id: out, type: blackhole}
)");
  ASSERT_FALSE(HasFailure());
  StartAll();
  ASSERT_TRUE(WaitAllDone());
  for (auto& t : tasks_) {
    proto::TaskStatus st = t->Status();
    EXPECT_EQ(st.state(), proto::TASK_FAILED);
    EXPECT_THAT(st.error(), HasSubstr("job job-1: checkpoint 5 is unaligned (it holds in-flight "
                                      "data), which cannot be rescaled: 'gen -> out' had 3 "
                                      "subtasks, now 2"));
  }
}

// An unaligned checkpoint's in-flight data is stored per vertex index: one taken with other
// vertices (another job file, or a build that chained differently) is refused, naming the vertex
// that differs, rather than fed to whichever vertex now has that index.
constexpr char kTwoVertices[] = R"(
name: relaid
parallelism: 1
checkpoint: {interval: 1s, mode: unaligned}
operators:
  - id: gen
    type: datagen
    count: 3
    fields: [{name: v, type: int64, expr: "seq"}]
  - id: out
    type: blackhole
    inputs: [{from: gen, partition: rebalance}]
)";

// Metadata of checkpoint 5 with one subtask per vertex in `vertices` (its vertex_names unless
// `old_format`), the one of `with_data` holding in-flight data.
std::shared_ptr<proto::CheckpointMetadata> InFlightMetadata(const std::vector<std::string>& vertices,
                                                            int with_data, bool old_format) {
  auto md = std::make_shared<proto::CheckpointMetadata>();
  md->set_job_id("job-1");
  md->set_checkpoint_id(5);
  for (int v = 0; v < static_cast<int>(vertices.size()); ++v) {
    if (!old_format) md->add_vertex_names(vertices[v]);
    proto::SubtaskState* st = md->add_subtasks();
    st->set_vertex(v);
    st->set_subtask(0);
    if (v == with_data) st->set_channel_state_file(absl::StrCat("chk-5/", v, "-0-channels"));
  }
  return md;
}

// Every task failed with the restore's refusal of checkpoint 5's in-flight data (its error is
// prefixed with the task's name), for `reason`.
void ExpectEveryTaskRefusedTheRestore(const std::vector<std::unique_ptr<Task>>& tasks,
                                      absl::string_view reason) {
  for (const auto& t : tasks) {
    proto::TaskStatus st = t->Status();
    EXPECT_EQ(st.state(), proto::TASK_FAILED);
    EXPECT_THAT(st.error(), ::testing::EndsWith(absl::StrCat(
        "job job-1: checkpoint 5 is unaligned (it holds in-flight data) and was taken with "
        "other vertices: ", reason, "; restore it with the job file and build that took it, "
        "or take an aligned savepoint there (sluice savepoint) and restore from that")));
  }
}

TEST_F(TaskTest, UnalignedCheckpointOfOtherVerticesIsRefused) {
  checkpointing_ = true;
  // Taken when a key_by had a vertex of its own; its input buffers must not reach 'out'.
  restore_ = InFlightMetadata({"gen", "key_by", "out"}, 1, false);
  Deploy(kTwoVertices);
  ASSERT_FALSE(HasFailure());
  ASSERT_EQ(tasks_.size(), 2u);
  StartAll();
  ASSERT_TRUE(WaitAllDone());
  ExpectEveryTaskRefusedTheRestore(tasks_, "vertex 1 was 'key_by', now 'out' (3 vertices, now 2)");
  EXPECT_EQ(CountsOf("out").in, 0u);
}

// Metadata written before vertex names: a subtask of a vertex this job does not have is refused
// too (its in-flight data would otherwise be dropped without a word).
TEST_F(TaskTest, UnalignedCheckpointOfAVertexBeyondTheJobIsRefused) {
  checkpointing_ = true;
  restore_ = InFlightMetadata({"gen", "filter", "out"}, 2, true);
  Deploy(kTwoVertices);
  ASSERT_FALSE(HasFailure());
  StartAll();
  ASSERT_TRUE(WaitAllDone());
  ExpectEveryTaskRefusedTheRestore(tasks_, "it has state of vertex 2 (subtask 0), this job has 2 vertices");
}

// ---------------------------------------------------------------------------------------------
// Checkpoints

// A datagen split as the source snapshots it: a format version byte (1), then base, stride and
// next as 8-byte little-endian integers.
struct Split {
  int64_t base;
  int64_t stride;
  int64_t next;
};

// The datagen splits in a source task's acknowledgement.
std::vector<Split> SplitsIn(const proto::CheckpointAck& ack, const std::string& op_id) {
  std::vector<Split> splits;
  for (const auto& h : ack.state().operator_state()) {
    if (h.operator_id() != op_id) continue;
    EXPECT_EQ(h.redistribution(), proto::OperatorStateHandle::SPLIT);
    for (const std::string& e : h.entries()) {
      EXPECT_EQ(e.size(), 25u);
      EXPECT_EQ(e[0], 1) << "format version";
      Split split{-1, -1, -1};
      if (e.size() == 1 + sizeof(Split)) {
        int64_t* fields[3] = {&split.base, &split.stride, &split.next};
        for (int f = 0; f < 3; ++f) *fields[f] = static_cast<int64_t>(GetFixed64LE(e.data() + 1 + 8 * f));
      }
      splits.push_back(split);
    }
  }
  return splits;
}

// Number of records a source emitted before its snapshot, by its splits.
int64_t EmittedBefore(const std::vector<Split>& splits) {
  int64_t n = 0;
  for (const Split& s : splits) n += (s.next - s.base) / s.stride;
  return n;
}

// Appends (key, seq) of every record the splits emitted before the snapshot.
void AddRecordsBefore(const std::vector<Split>& splits, const std::function<int64_t(int64_t)>& key_of,
                      std::vector<std::pair<int64_t, int64_t>>* records) {
  for (const Split& s : splits) {
    for (int64_t seq = s.base; seq < s.next; seq += s.stride) records->push_back({key_of(seq), seq});
  }
}

// The pending files a file sink task's acknowledgement lists.
std::vector<std::string> PendingIn(const proto::CheckpointAck& ack, const std::string& op_id) {
  std::vector<std::string> files;
  for (const auto& h : ack.state().operator_state()) {
    if (h.operator_id() != op_id) continue;
    EXPECT_EQ(h.redistribution(), proto::OperatorStateHandle::UNION);
    for (const std::string& e : h.entries()) {
      EXPECT_EQ(e.substr(0, 1), "\x01") << "format version";
      files.push_back(e.substr(1));
    }
  }
  return files;
}

std::string CommittedName(const std::string& pending) {
  EXPECT_TRUE(absl::EndsWith(pending, ".pending")) << pending;
  return absl::StrCat(pending.substr(0, pending.size() - std::strlen(".pending")), ".jsonl");
}

// Files in `dir` whose names end with `suffix`, sorted.
std::vector<std::string> FilesEndingWith(const std::filesystem::path& dir, const std::string& suffix) {
  std::vector<std::string> files;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    if (absl::EndsWith(e.path().filename().string(), suffix)) files.push_back(e.path().string());
  }
  std::sort(files.begin(), files.end());
  return files;
}

// Lines of every committed file in `dir`.
std::vector<std::string> CommittedLines(const std::filesystem::path& dir) {
  std::vector<std::string> lines;
  for (const auto& f : FilesEndingWith(dir, ".jsonl")) {
    for (auto& line : ReadLines(f)) lines.push_back(std::move(line));
  }
  return lines;
}

// Checks that `lines`, the updates of an aggregate {k, n: count, total: sum(v)}, are exactly
// those of `records` (key, v): for each key the updates n = 1..count once each, the last with
// the key's total.
void ExpectUpdatesOf(const std::vector<std::string>& lines,
                     const std::vector<std::pair<int64_t, int64_t>>& records) {
  std::map<int64_t, std::pair<int64_t, int64_t>> want;  // key -> (count, sum)
  for (const auto& [k, v] : records) {
    want[k].first++;
    want[k].second += v;
  }
  std::map<int64_t, std::map<int64_t, int64_t>> got;  // key -> n -> total
  for (const auto& line : lines) {
    EXPECT_TRUE(got[IntField(line, "k")].emplace(IntField(line, "n"), IntField(line, "total")).second)
        << "duplicate update " << line;
  }
  EXPECT_EQ(lines.size(), records.size());
  EXPECT_EQ(got.size(), want.size());
  for (const auto& [k, w] : want) {
    SCOPED_TRACE(absl::StrCat("key ", k));
    auto it = got.find(k);
    if (it == got.end()) {
      ADD_FAILURE() << "no updates";
      continue;
    }
    const std::map<int64_t, int64_t>& updates = it->second;
    // Unique n, as many as records, from 1 to count: contiguous.
    EXPECT_EQ(static_cast<int64_t>(updates.size()), w.first);
    EXPECT_EQ(updates.begin()->first, 1);
    EXPECT_EQ(updates.rbegin()->first, w.first);
    EXPECT_EQ(updates.rbegin()->second, w.second);
    int64_t last = -1;
    for (const auto& [n, total] : updates) {
      EXPECT_GE(total, last) << "n=" << n;  // v >= 0: totals never shrink
      last = total;
    }
  }
}

// Checks what every acknowledgement of checkpoint `id` says about its task.
void ExpectAckBasics(const Acks& acks, int64_t id, bool finished) {
  for (const auto& [key, ack] : acks) {
    SCOPED_TRACE(absl::StrCat("task ", key.first, "#", key.second));
    EXPECT_EQ(ack.checkpoint_id(), id);
    EXPECT_FALSE(ack.declined()) << ack.reason();
    EXPECT_EQ(ack.task().job_id(), "job-1");
    EXPECT_EQ(ack.task().attempt(), 1);
    EXPECT_EQ(ack.state().vertex(), key.first);
    EXPECT_EQ(ack.state().subtask(), key.second);
    EXPECT_EQ(ack.state().finished(), finished);
    EXPECT_GE(ack.alignment_ms(), 0);
    EXPECT_GE(ack.sync_ms(), 0);
    EXPECT_GE(ack.async_ms(), 0);
  }
}

// Checks the keyed state handle of `op_id` in `ack`: the subtask's key groups, and every file
// uploaded to the job's checkpoint directory with its size.
void ExpectKeyedHandle(const proto::CheckpointAck& ack, const std::string& op_id,
                       const std::filesystem::path& checkpoint_dir, KeyGroupRange range) {
  ASSERT_EQ(ack.state().keyed_size(), 1);
  const proto::KeyedStateHandle& h = ack.state().keyed(0);
  EXPECT_EQ(h.operator_id(), op_id);
  EXPECT_EQ(h.range().first(), range.first);
  EXPECT_EQ(h.range().last(), range.last);
  EXPECT_EQ(h.private_dir(), absl::StrCat("chk-", ack.checkpoint_id(), "/", ack.task().vertex(),
                                          "-", ack.task().subtask(), "-", op_id));
  ASSERT_GT(h.files_size(), 0);
  bool has_current = false;
  int64_t total = 0;
  for (const auto& f : h.files()) {
    const std::filesystem::path path =
        f.shared() ? checkpoint_dir / "shared" / f.name() : checkpoint_dir / h.private_dir() / f.name();
    std::error_code ec;
    EXPECT_TRUE(std::filesystem::exists(path, ec)) << path;
    EXPECT_EQ(static_cast<int64_t>(std::filesystem::file_size(path, ec)), f.size()) << path;
    has_current |= f.local_name() == "CURRENT";
    total += f.size();
  }
  EXPECT_TRUE(has_current) << "a RocksDB checkpoint has a CURRENT file";
  EXPECT_EQ(h.full_size(), total);
}

// Two rate-limited sources into a union (one forward channel from each) into a keyed
// aggregate. Checkpoint 1 reaches source a first: until b's barrier arrives, each union subtask
// must hold back a's channel (records after a's barrier) and keep processing b's. The snapshot
// then holds exactly the records before each source's barrier.
TEST_F(TaskTest, CheckpointAlignsBarriersOfSeveralInputs) {
  fake_time_ = true;
  checkpointing_ = true;
  Deploy(R"(
name: align
parallelism: 2
buffer_timeout_ms: 0
operators:
  - id: a
    type: datagen
    rate: 2000
    fields: [{name: k, type: int64, expr: "10 + seq % 4"}, {name: v, type: int64, expr: "seq"}]
  - id: b
    type: datagen
    rate: 2000
    fields: [{name: k, type: int64, expr: "20 + seq % 4"}, {name: v, type: int64, expr: "seq"}]
  - id: both
    type: union
    inputs: [a, b]
  - id: by_k
    type: key_by
    key: [k]
  - id: agg
    type: aggregate
    aggregates: [{fn: count, as: n}, {fn: sum, field: v, as: total}]
  - id: out
    type: file
    path: $DIR/out
)");
  ASSERT_FALSE(HasFailure());
  ASSERT_EQ(graph_->vertices.size(), 4u);
  const int union_v = VertexOf("both");
  const int agg_v = VertexOf("agg");
  ASSERT_EQ(VertexOf("by_k"), union_v);
  ASSERT_EQ(VertexOf("out"), agg_v);
  const plan::Edge& from_a = EdgeInto("both", "a");
  ASSERT_EQ(from_a.partition, plan::Partition::kForward);
  ASSERT_EQ(EdgeInto("both", "b").partition, plan::Partition::kForward);
  ASSERT_EQ(TaskFor(union_v, 0)->gate()->num_channels(), 2);
  ASSERT_EQ(TaskFor(agg_v, 0)->gate()->num_channels(), 2);

  StartOnFakeClock({"a", "b"});
  ASSERT_FALSE(HasFailure());
  AdvanceSources({"a", "b"}, 100);  // 101 records per source subtask
  ASSERT_FALSE(HasFailure());

  TriggerOn("a", 1);
  AwaitAcks(1, {TaskFor(VertexOf("a"), 0), TaskFor(VertexOf("a"), 1)});
  ASSERT_FALSE(HasFailure());
  std::vector<int64_t> sent_before(2);
  for (int s = 0; s < 2; ++s) sent_before[s] = BuffersSent(from_a, s);

  AdvanceSources({"a", "b"}, 50);  // 151 per source subtask: 50 of a's after its barrier
  ASSERT_FALSE(HasFailure());
  for (int s = 0; s < 2; ++s) {
    SCOPED_TRACE(absl::StrCat("union subtask ", s));
    Task* u = TaskFor(union_v, s);
    // a's records after its barrier have been sent to the union, and everything in the union's
    // gate has been taken: b's records processed, a's held back.
    ASSERT_TRUE(WaitUntil([&] { return BuffersSent(from_a, s) > sent_before[s]; }));
    ASSERT_TRUE(WaitUntil([&] { return InOf("both", s) >= 101 + 151 && u->gate()->QueuedForTest() == 0; }))
        << InOf("both", s);
    EXPECT_EQ(InOf("both", s), 101u + 151u) << "records after a's barrier were processed";
  }
  ASSERT_FALSE(HasFailure());

  TriggerOn("b", 1);
  Acks acks = AwaitAcks(1);
  ASSERT_FALSE(HasFailure());
  ASSERT_EQ(acks.size(), tasks_.size());
  ExpectAckBasics(acks, 1, /*finished=*/false);

  std::vector<std::pair<int64_t, int64_t>> records;  // (key, v) before the barriers
  for (const std::string op : {"a", "b"}) {
    const int64_t emitted = op == "a" ? 101 : 151;
    for (int s = 0; s < 2; ++s) {
      SCOPED_TRACE(absl::StrCat(op, "#", s));
      const proto::CheckpointAck& ack = acks.at({VertexOf(op), s});
      EXPECT_EQ(ack.alignment_ms(), 0);
      EXPECT_EQ(ack.state().keyed_size(), 0);
      ASSERT_EQ(ack.state().operator_state_size(), 1);
      EXPECT_EQ(ack.state().operator_state(0).operator_id(), op);
      std::vector<Split> splits = SplitsIn(ack, op);
      ASSERT_EQ(splits.size(), 1u);
      EXPECT_EQ(splits[0].base, s);
      EXPECT_EQ(splits[0].stride, 2);
      EXPECT_EQ(splits[0].next, s + 2 * emitted);
      EXPECT_EQ(EmittedBefore(splits), emitted);
      const int64_t offset = op == "a" ? 10 : 20;
      AddRecordsBefore(splits, [offset](int64_t seq) { return offset + seq % 4; }, &records);
    }
  }
  std::vector<std::string> pending;
  for (int s = 0; s < 2; ++s) {
    SCOPED_TRACE(s);
    const proto::CheckpointAck& u = acks.at({union_v, s});
    EXPECT_EQ(u.state().operator_state_size(), 0);
    EXPECT_EQ(u.state().keyed_size(), 0);
    EXPECT_LE(u.alignment_ms(), 50);  // fake time
    const proto::CheckpointAck& agg = acks.at({agg_v, s});
    ExpectKeyedHandle(agg, "agg", CheckpointDir(),
                      KeyGroupRangeForSubtask(job_->max_parallelism, 2, s));
    for (const auto& p : PendingIn(agg, "out")) {
      EXPECT_TRUE(std::filesystem::path(p).is_absolute()) << p;
      EXPECT_TRUE(std::filesystem::exists(p)) << p;
      pending.push_back(p);
    }
  }
  EXPECT_FALSE(pending.empty());

  // After the checkpoint, the held-back records are processed.
  for (int s = 0; s < 2; ++s) {
    EXPECT_TRUE(WaitUntil([&] { return InOf("both", s) == 151u + 151u; })) << InOf("both", s);
  }

  // Completing the checkpoint commits exactly the updates of the records before the barriers.
  EXPECT_THAT(FilesEndingWith(dir_ / "out", ".jsonl"), IsEmpty());
  NotifyAll(1);
  for (const auto& p : pending) {
    ASSERT_TRUE(WaitUntil([&] { return std::filesystem::exists(CommittedName(p)); })) << p;
  }
  std::vector<std::string> lines = CommittedLines(dir_ / "out");
  EXPECT_EQ(lines.size(), 2u * (101 + 151));
  ExpectUpdatesOf(lines, records);

  CancelAll();
  ASSERT_TRUE(WaitAllDone());
  ExpectAllIn(proto::TASK_CANCELLED);
}

// Checkpoint 1 reaches only source a (say b's trigger was lost); checkpoint 2 reaches both.
// b's barrier 2 overtakes the union's unfinished alignment on 1: the union gives up
// checkpoint 1, releases a's held-back records (they precede a's barrier 2) and aligns on 2.
TEST_F(TaskTest, NewerBarrierAbandonsAnUnfinishedAlignment) {
  fake_time_ = true;
  checkpointing_ = true;
  Deploy(R"(
name: overtake
parallelism: 2
buffer_timeout_ms: 0
operators:
  - id: a
    type: datagen
    rate: 2000
    fields: [{name: k, type: int64, expr: "10 + seq % 4"}, {name: v, type: int64, expr: "seq"}]
  - id: b
    type: datagen
    rate: 2000
    fields: [{name: k, type: int64, expr: "20 + seq % 4"}, {name: v, type: int64, expr: "seq"}]
  - id: both
    type: union
    inputs: [a, b]
  - id: by_k
    type: key_by
    key: [k]
  - id: agg
    type: aggregate
    aggregates: [{fn: count, as: n}, {fn: sum, field: v, as: total}]
  - id: out
    type: file
    path: $DIR/out
)");
  ASSERT_FALSE(HasFailure());
  const int union_v = VertexOf("both");
  const int agg_v = VertexOf("agg");
  const plan::Edge& from_a = EdgeInto("both", "a");
  StartOnFakeClock({"a", "b"});
  ASSERT_FALSE(HasFailure());
  AdvanceSources({"a", "b"}, 100);  // 101 per source subtask
  ASSERT_FALSE(HasFailure());

  TriggerOn("a", 1);
  AwaitAcks(1, {TaskFor(VertexOf("a"), 0), TaskFor(VertexOf("a"), 1)});
  ASSERT_FALSE(HasFailure());
  std::vector<int64_t> sent_before(2);
  for (int s = 0; s < 2; ++s) sent_before[s] = BuffersSent(from_a, s);
  AdvanceSources({"a", "b"}, 50);  // 151 per source subtask
  ASSERT_FALSE(HasFailure());
  for (int s = 0; s < 2; ++s) {
    Task* u = TaskFor(union_v, s);
    ASSERT_TRUE(WaitUntil([&] { return BuffersSent(from_a, s) > sent_before[s]; }));
    ASSERT_TRUE(WaitUntil([&] { return InOf("both", s) >= 101 + 151 && u->gate()->QueuedForTest() == 0; }));
    ASSERT_EQ(InOf("both", s), 101u + 151u) << "a is held back while aligning on checkpoint 1";
  }

  TriggerOn("a", 2);
  TriggerOn("b", 2);
  Acks acks = AwaitAcks(2);
  ASSERT_FALSE(HasFailure());
  ExpectAckBasics(acks, 2, /*finished=*/false);
  {
    absl::MutexLock lock(&mu_);
    for (const auto& ack : acks_) {
      if (ack.checkpoint_id() != 1) continue;
      EXPECT_EQ(ack.task().vertex(), VertexOf("a")) << "only a's subtasks took checkpoint 1";
    }
  }
  std::vector<std::pair<int64_t, int64_t>> records;
  for (const std::string op : {"a", "b"}) {
    for (int s = 0; s < 2; ++s) {
      std::vector<Split> splits = SplitsIn(acks.at({VertexOf(op), s}), op);
      ASSERT_EQ(splits.size(), 1u);
      EXPECT_EQ(EmittedBefore(splits), 151) << op << "#" << s;
      const int64_t offset = op == "a" ? 10 : 20;
      AddRecordsBefore(splits, [offset](int64_t seq) { return offset + seq % 4; }, &records);
    }
  }
  for (int s = 0; s < 2; ++s) EXPECT_EQ(InOf("both", s), 151u + 151u);  // nothing after the barriers

  std::vector<std::string> pending;
  for (int s = 0; s < 2; ++s) {
    for (const auto& p : PendingIn(acks.at({agg_v, s}), "out")) pending.push_back(p);
  }
  ASSERT_FALSE(pending.empty());
  NotifyAll(2);
  for (const auto& p : pending) {
    ASSERT_TRUE(WaitUntil([&] { return std::filesystem::exists(CommittedName(p)); })) << p;
  }
  ExpectUpdatesOf(CommittedLines(dir_ / "out"), records);

  CancelAll();
  ASSERT_TRUE(WaitAllDone());
  ExpectAllIn(proto::TASK_CANCELLED);
}

// A bounded, rate-limited source stopped mid-stream by checkpoint 1: the source's split
// positions, the committed output and the keyed state agree on the records before the barrier.
// The rest is committed by the final checkpoint, each update exactly once.
TEST_F(TaskTest, CheckpointSnapshotMatchesTheRecordsBeforeTheBarrier) {
  fake_time_ = true;
  checkpointing_ = true;
  Deploy(R"(
name: consistent
parallelism: 2
buffer_timeout_ms: 0
operators:
  - id: gen
    type: datagen
    count: 1000
    rate: 2000
    fields: [{name: k, type: int64, expr: "seq % 7"}, {name: v, type: int64, expr: "seq"}]
  - id: by_k
    type: key_by
    key: [k]
  - id: agg
    type: aggregate
    parallelism: 3
    aggregates: [{fn: count, as: n}, {fn: sum, field: v, as: total}]
  - id: out
    type: file
    parallelism: 3
    path: $DIR/out
)");
  ASSERT_FALSE(HasFailure());
  ASSERT_EQ(graph_->vertices.size(), 2u);
  ASSERT_EQ(tasks_.size(), 5u);
  const int gen_v = VertexOf("gen");
  const int agg_v = VertexOf("agg");
  const std::filesystem::path out = dir_ / "out";
  auto key_of = [](int64_t seq) { return seq % 7; };

  StartOnFakeClock({"gen"});
  ASSERT_FALSE(HasFailure());
  AdvanceSources({"gen"}, 100);  // 101 of 500 records per subtask
  ASSERT_FALSE(HasFailure());
  TriggerOn("gen", 1);
  Acks acks = AwaitAcks(1);
  ASSERT_FALSE(HasFailure());
  ExpectAckBasics(acks, 1, /*finished=*/false);

  int64_t emitted = 0;
  std::vector<std::pair<int64_t, int64_t>> records;
  for (int s = 0; s < 2; ++s) {
    SCOPED_TRACE(s);
    std::vector<Split> splits = SplitsIn(acks.at({gen_v, s}), "gen");
    ASSERT_EQ(splits.size(), 1u);
    EXPECT_EQ(splits[0].base, s);
    EXPECT_EQ(splits[0].stride, 2);
    EXPECT_EQ(splits[0].next, s + 2 * 101);
    emitted += EmittedBefore(splits);
    AddRecordsBefore(splits, key_of, &records);
  }
  EXPECT_EQ(emitted, 202);
  std::vector<std::string> pending;
  for (int s = 0; s < 3; ++s) {
    SCOPED_TRACE(s);
    ExpectKeyedHandle(acks.at({agg_v, s}), "agg", CheckpointDir(),
                      KeyGroupRangeForSubtask(job_->max_parallelism, 3, s));
    for (const auto& p : PendingIn(acks.at({agg_v, s}), "out")) pending.push_back(p);
  }
  ASSERT_FALSE(pending.empty());
  std::sort(pending.begin(), pending.end());
  EXPECT_EQ(FilesEndingWith(out, ".pending"), pending);
  EXPECT_THAT(FilesEndingWith(out, ".jsonl"), IsEmpty());

  NotifyAll(1);
  std::map<std::string, std::vector<std::string>> chk1;  // committed file -> lines
  for (const auto& p : pending) {
    ASSERT_TRUE(WaitUntil([&] { return std::filesystem::exists(CommittedName(p)); })) << p;
    chk1[CommittedName(p)] = ReadLines(CommittedName(p));
  }
  std::vector<std::string> lines = CommittedLines(out);
  EXPECT_EQ(static_cast<int64_t>(lines.size()), emitted)
      << "committed updates = records the source emitted before the barrier";
  ExpectUpdatesOf(lines, records);

  // The rest of the input. Nothing more is committed until the final checkpoint completes.
  AdvanceSources({"gen"}, 450);  // all 500 per subtask
  ASSERT_FALSE(HasFailure());
  ASSERT_TRUE(AwaitEndOfInput());
  for (const auto& t : tasks_) {
    proto::TaskStatus st = t->Status();
    EXPECT_TRUE(st.end_of_input()) << t->name();
    EXPECT_EQ(st.state(), proto::TASK_RUNNING) << t->name();
  }
  EXPECT_EQ(CommittedLines(out).size(), lines.size());

  TriggerAll(2, /*final=*/true);
  Acks final_acks = AwaitAcks(2);
  ASSERT_FALSE(HasFailure());
  ExpectAckBasics(final_acks, 2, /*finished=*/true);
  records.clear();
  for (int s = 0; s < 2; ++s) {
    std::vector<Split> splits = SplitsIn(final_acks.at({gen_v, s}), "gen");
    ASSERT_EQ(splits.size(), 1u);
    EXPECT_EQ(splits[0].next, s + 1000);
    EXPECT_EQ(EmittedBefore(splits), 500);
    AddRecordsBefore(splits, key_of, &records);
  }
  for (int s = 0; s < 3; ++s) {
    ExpectKeyedHandle(final_acks.at({agg_v, s}), "agg", CheckpointDir(),
                      KeyGroupRangeForSubtask(job_->max_parallelism, 3, s));
  }
  NotifyAll(2);
  ASSERT_TRUE(WaitAllDone());
  ExpectAllIn(proto::TASK_FINISHED);

  EXPECT_THAT(FilesEndingWith(out, ".pending"), IsEmpty());
  EXPECT_THAT(FilesEndingWith(out, ".inprogress"), IsEmpty());
  ExpectUpdatesOf(CommittedLines(out), records);
  for (const auto& [file, content] : chk1) EXPECT_EQ(ReadLines(file), content) << file;
}

// Without checkpoints in between, a bounded job's output is committed by its final checkpoint
// alone; until it completes the tasks wait, and nothing is visible.
TEST_F(TaskTest, FinalCheckpointCommitsABoundedJob) {
  constexpr int kCount = 5000;
  checkpointing_ = true;
  Deploy(R"(
name: bounded
parallelism: 2
operators:
  - id: gen
    type: datagen
    count: 5000
    fields: [{name: k, type: int64, expr: "seq % 11"}, {name: v, type: int64, expr: "seq"}]
  - id: by_k
    type: key_by
    key: [k]
  - id: agg
    type: aggregate
    aggregates: [{fn: count, as: n}, {fn: sum, field: v, as: total}]
  - id: out
    type: file
    path: $DIR/out
)");
  ASSERT_FALSE(HasFailure());
  ASSERT_EQ(tasks_.size(), 4u);
  const std::filesystem::path out = dir_ / "out";
  StartAll();
  ASSERT_TRUE(AwaitEndOfInput());
  for (const auto& t : tasks_) {
    proto::TaskStatus st = t->Status();
    EXPECT_TRUE(st.end_of_input()) << t->name();
    EXPECT_EQ(st.state(), proto::TASK_RUNNING) << t->name();
  }
  EXPECT_EQ(CountsOf("out").in, static_cast<uint64_t>(kCount));
  EXPECT_THAT(FilesEndingWith(out, ".jsonl"), IsEmpty());
  EXPECT_THAT(FilesEndingWith(out, ".inprogress"), Not(IsEmpty()));

  TriggerAll(7, /*final=*/true);
  Acks acks = AwaitAcks(7);
  ASSERT_FALSE(HasFailure());
  ExpectAckBasics(acks, 7, /*finished=*/true);
  std::vector<std::pair<int64_t, int64_t>> records;
  std::vector<std::string> pending;
  for (int s = 0; s < 2; ++s) {
    SCOPED_TRACE(s);
    std::vector<Split> splits = SplitsIn(acks.at({VertexOf("gen"), s}), "gen");
    ASSERT_EQ(splits.size(), 1u);
    EXPECT_GE(splits[0].next, kCount);
    EXPECT_EQ(EmittedBefore(splits), kCount / 2);
    AddRecordsBefore(splits, [](int64_t seq) { return seq % 11; }, &records);
    const proto::CheckpointAck& agg = acks.at({VertexOf("agg"), s});
    ExpectKeyedHandle(agg, "agg", CheckpointDir(),
                      KeyGroupRangeForSubtask(job_->max_parallelism, 2, s));
    for (const auto& p : PendingIn(agg, "out")) pending.push_back(p);
  }
  std::sort(pending.begin(), pending.end());
  EXPECT_EQ(FilesEndingWith(out, ".pending"), pending);
  EXPECT_THAT(FilesEndingWith(out, ".inprogress"), IsEmpty());
  EXPECT_THAT(FilesEndingWith(out, ".jsonl"), IsEmpty());
  // Acknowledged, the tasks wait for the checkpoint to complete.
  for (const auto& t : tasks_) EXPECT_EQ(t->Status().state(), proto::TASK_RUNNING) << t->name();

  NotifyAll(7);
  ASSERT_TRUE(WaitAllDone());
  ExpectAllIn(proto::TASK_FINISHED);
  EXPECT_THAT(FilesEndingWith(out, ".pending"), IsEmpty());
  EXPECT_THAT(FilesEndingWith(out, ".inprogress"), IsEmpty());
  ExpectUpdatesOf(CommittedLines(out), records);
}

// A task past its end of input snapshots any checkpoint directly; completing one that is not
// final commits its output but does not end the task.
TEST_F(TaskTest, CheckpointAfterEndOfInputIsNotFinal) {
  checkpointing_ = true;
  Deploy(R"(
name: late
operators:
  - id: gen
    type: datagen
    count: 300
    fields: [{name: k, type: int64, expr: "seq % 5"}, {name: v, type: int64, expr: "seq"}]
  - id: by_k
    type: key_by
    key: [k]
  - id: agg
    type: aggregate
    parallelism: 2
    aggregates: [{fn: count, as: n}, {fn: sum, field: v, as: total}]
  - id: out
    type: file
    parallelism: 2
    path: $DIR/out
)");
  ASSERT_FALSE(HasFailure());
  const std::filesystem::path out = dir_ / "out";
  StartAll();
  ASSERT_TRUE(AwaitEndOfInput());

  TriggerAll(3, /*final=*/false);
  Acks acks = AwaitAcks(3);
  ASSERT_FALSE(HasFailure());
  ExpectAckBasics(acks, 3, /*finished=*/true);
  std::vector<std::pair<int64_t, int64_t>> records;
  AddRecordsBefore(SplitsIn(acks.at({VertexOf("gen"), 0}), "gen"),
                   [](int64_t seq) { return seq % 5; }, &records);
  EXPECT_EQ(records.size(), 300u);
  std::vector<std::string> pending;
  for (int s = 0; s < 2; ++s) {
    for (const auto& p : PendingIn(acks.at({VertexOf("agg"), s}), "out")) pending.push_back(p);
  }
  ASSERT_FALSE(pending.empty());
  NotifyAll(3);
  for (const auto& p : pending) {
    ASSERT_TRUE(WaitUntil([&] { return std::filesystem::exists(CommittedName(p)); })) << p;
  }
  ExpectUpdatesOf(CommittedLines(out), records);

  // Still there: the final checkpoint reaches every task (after checkpoint 3's completion, in
  // mailbox order), has nothing left to commit, and ends them.
  TriggerAll(4, /*final=*/true);
  Acks final_acks = AwaitAcks(4);
  ASSERT_FALSE(HasFailure());
  ExpectAckBasics(final_acks, 4, /*finished=*/true);
  for (const auto& [key, ack] : final_acks) {
    EXPECT_THAT(PendingIn(ack, "out"), IsEmpty()) << "checkpoint 3 committed everything";
  }
  for (const auto& t : tasks_) EXPECT_EQ(t->Status().state(), proto::TASK_RUNNING) << t->name();
  NotifyAll(4);
  ASSERT_TRUE(WaitAllDone());
  ExpectAllIn(proto::TASK_FINISHED);
  EXPECT_THAT(FilesEndingWith(out, ".pending"), IsEmpty());
  EXPECT_THAT(FilesEndingWith(out, ".inprogress"), IsEmpty());
  ExpectUpdatesOf(CommittedLines(out), records);
}

}  // namespace
}  // namespace sluice::worker

namespace sluice::worker {
namespace {

// ---------------------------------------------------------------------------------------------
// Event time

// What the event-time checkers of a job saw, over all their subtasks.
struct EventTimeLog {
  absl::Mutex mu;
  int64_t records ABSL_GUARDED_BY(mu) = 0;
  int64_t late ABSL_GUARDED_BY(mu) = 0;         // records at or below the input watermark
  int64_t backwards ABSL_GUARDED_BY(mu) = 0;    // watermarks below the previous one
  int64_t watermarks ABSL_GUARDED_BY(mu) = 0;   // watermarks before the end of event time
  int64_t ended ABSL_GUARDED_BY(mu) = 0;        // subtasks that saw kMaxWatermark
};

// A sink (it replaces `blackhole`) that checks every record's `ts` against its input watermark.
class EventTimeChecker final : public ops::Operator {
 public:
  explicit EventTimeChecker(EventTimeLog* log) : log_(log) {}
  absl::Status Open(const ops::OperatorContext& ctx, ops::Output* output) override {
    SLUICE_RETURN_IF_ERROR(Operator::Open(ctx, output));
    ts_ = ctx.spec->input_schema.IndexOf("ts");
    return ts_ < 0 ? absl::InvalidArgumentError("no ts field") : absl::OkStatus();
  }
  absl::Status Process(const Record& r) override {
    absl::MutexLock lock(&log_->mu);
    ++log_->records;
    if (r.GetInt(ts_) <= watermark_) ++log_->late;
    return absl::OkStatus();
  }
  absl::Status ProcessWatermark(int64_t watermark_ms) override {
    absl::MutexLock lock(&log_->mu);
    if (watermark_ms < watermark_) ++log_->backwards;
    watermark_ = watermark_ms;
    if (watermark_ms == kMaxWatermark) {
      ++log_->ended;
    } else {
      ++log_->watermarks;
    }
    return absl::OkStatus();
  }

 private:
  EventTimeLog* log_;
  int ts_ = -1;
  int64_t watermark_ = kNoWatermark;
};

class EventTimeTaskTest : public TaskTest {
 protected:
  EventTimeTaskTest() {
    // The built-ins, with the checker in place of the blackhole.
    EXPECT_OK(ops::RegisterBuiltinOperators(&checking_));
    EXPECT_OK(checking_.ReplaceFactoryForTest("blackhole", [this](const plan::OperatorSpec&) {
      return std::unique_ptr<ops::Operator>(std::make_unique<EventTimeChecker>(&log_));
    }));
    registry_in_use_ = &checking_;
  }

  ops::OperatorRegistry checking_;
  EventTimeLog log_;
};

// Two event-time sources of different speeds, a union and a hash exchange: watermarks travel
// in order with the records through local channels, so no record is ever behind its consumer's
// watermark; each consumer's watermark is the minimum over its channels and ends with the input.
TEST_F(EventTimeTaskTest, WatermarksFlowInOrderWithRecords) {
  Deploy(R"y(
name: event-time
parallelism: 2
watermark_interval: 2ms
operators:
  - id: a
    type: datagen
    count: 4000
    rate: 20000
    fields: [{name: k, type: int64, expr: "seq % 5"}, {name: ts, type: timestamp, expr: "to_timestamp(1000 + seq)"}]
    event_time: {field: ts}
  - id: b
    type: datagen
    count: 2000
    rate: 5000
    fields: [{name: k, type: int64, expr: "seq % 7"}, {name: ts, type: timestamp, expr: "to_timestamp(3 * seq)"}]
    event_time: {field: ts, max_out_of_orderness: 10ms}
  - id: both
    type: union
    inputs: [a, b]
  - id: by_k
    type: key_by
    key: [k]
  - id: check
    type: blackhole
)y");
  ASSERT_FALSE(HasFailure());
  StartAll();
  ASSERT_TRUE(WaitAllDone());
  ExpectAllIn(proto::TASK_FINISHED);
  absl::MutexLock lock(&log_.mu);
  EXPECT_EQ(log_.records, 6000);
  EXPECT_EQ(log_.late, 0) << "a record arrived behind its watermark";
  EXPECT_EQ(log_.backwards, 0);
  EXPECT_EQ(log_.ended, 2) << "each checker subtask saw the end of event time";
  EXPECT_GT(log_.watermarks, 0) << "watermarks before the end (sources run >= 200 ms)";
  for (const auto& t : tasks_) {
    proto::TaskStatus st = t->Status();
    ASSERT_TRUE(st.has_watermark_ms()) << t->name();
    EXPECT_EQ(st.watermark_ms(), kMaxWatermark) << t->name();
    EXPECT_FALSE(st.watermark_idle()) << t->name();
  }
  const std::string metrics = metrics_.RenderPrometheus();
  EXPECT_THAT(metrics, HasSubstr("# TYPE sluice_operator_input_watermark_ms gauge"));
}

// Checkpoints while event time flows: watermarks of a channel blocked by barrier alignment wait
// with its records and are neither lost nor reordered.
TEST_F(EventTimeTaskTest, AlignmentKeepsWatermarksInOrder) {
  checkpointing_ = true;
  Deploy(R"y(
name: event-time-align
parallelism: 2
watermark_interval: 1ms
operators:
  - id: a
    type: datagen
    rate: 20000
    fields: [{name: k, type: int64, expr: "seq % 5"}, {name: ts, type: timestamp, expr: "to_timestamp(seq)"}]
    event_time: {field: ts}
  - id: b
    type: datagen
    rate: 20000
    fields: [{name: k, type: int64, expr: "seq % 7"}, {name: ts, type: timestamp, expr: "to_timestamp(seq)"}]
    event_time: {field: ts}
  - id: both
    type: union
    inputs: [a, b]
  - id: by_k
    type: key_by
    key: [k]
  - id: check
    type: blackhole
)y");
  ASSERT_FALSE(HasFailure());
  StartAll();
  for (int64_t id = 1; id <= 5; ++id) {
    // Source a's barrier first: the union holds a's channel (and its watermarks) while b's flow.
    TriggerOn("a", id);
    AwaitAcks(id, {TaskFor(VertexOf("a"), 0), TaskFor(VertexOf("a"), 1)});
    TriggerOn("b", id);
    AwaitAcks(id);
    ASSERT_FALSE(HasFailure());
  }
  const int union_v = VertexOf("both");
  const int64_t before = TaskFor(union_v, 0)->Status().watermark_ms();
  EXPECT_TRUE(WaitUntil([&] { return TaskFor(union_v, 0)->Status().watermark_ms() > before; }))
      << "the union's watermark keeps advancing after the checkpoints";
  CancelAll();
  ASSERT_TRUE(WaitAllDone());
  absl::MutexLock lock(&log_.mu);
  EXPECT_GT(log_.records, 0);
  EXPECT_EQ(log_.late, 0) << "a record arrived behind its watermark";
  EXPECT_EQ(log_.backwards, 0);
  EXPECT_GT(log_.watermarks, 0);
}

}  // namespace
}  // namespace sluice::worker

namespace sluice::worker {
namespace {

// What the two-input test operator saw (written on its task threads, read after Join).
struct PairLog {
  absl::Mutex mu;
  std::vector<std::pair<int, int64_t>> nums ABSL_GUARDED_BY(mu);  // (subtask, n) from input 0
  std::vector<std::string> words ABSL_GUARDED_BY(mu);             // "w/d" from input 1
  std::vector<int> bad_inputs ABSL_GUARDED_BY(mu);
};

// A two-input sink: input 0 is (n int64), input 1 is (w string, d double); each record is
// decoded with its own input's schema and logged under the index it came with.
class PairLogOperator final : public ops::TwoInputOperator {
 public:
  explicit PairLogOperator(PairLog* log) : log_(log) {}
  absl::Status ProcessInput(int input_index, const Record& r) override {
    absl::MutexLock lock(&log_->mu);
    if (input_index == 0) {
      log_->nums.emplace_back(ctx_.subtask, r.GetInt(0));
    } else if (input_index == 1) {
      log_->words.push_back(absl::StrCat(r.GetString(0), "/", r.GetDouble(1)));
    } else {
      log_->bad_inputs.push_back(input_index);
    }
    return absl::OkStatus();
  }

 private:
  PairLog* log_;
};

class TwoInputTaskTest : public TaskTest {
 protected:
  TwoInputTaskTest() {
    EXPECT_OK(ops::RegisterBuiltinOperators(&two_input_));
    plan::OperatorTraits traits;
    traits.name = "pair_log";
    traits.inputs = plan::InputArity::kTwo;
    traits.has_output = false;
    EXPECT_OK(two_input_.Register(
        std::make_unique<plan::TypedOperatorType<plan::NoOptions>>(
            traits,
            [](const YAML::Node&, const plan::ParseContext&) -> absl::StatusOr<plan::NoOptions> {
              return plan::NoOptions();
            },
            [](const plan::NoOptions&, const plan::ParseContext&) { return Schema(); }),
        [this](const plan::OperatorSpec&) {
          return std::unique_ptr<ops::Operator>(std::make_unique<PairLogOperator>(&log_));
        }));
    registry_in_use_ = &two_input_;
  }

  ops::OperatorRegistry two_input_;
  PairLog log_;
};

TEST_F(TwoInputTaskTest, RecordsArriveWithTheirInputIndexAndSchema) {
  Deploy(R"y(
name: two-inputs
operators:
  - id: nums
    type: datagen
    parallelism: 2
    count: 10
    fields: [{name: n, type: int64, expr: "seq"}]
  - id: words
    type: datagen
    parallelism: 3
    count: 7
    fields: [{name: w, type: string, expr: "'w' + to_string(seq)"}, {name: d, type: double, expr: "to_double(seq) / 2"}]
  - id: pair
    type: pair_log
    parallelism: 2
    inputs: [nums, words]
)y");
  ASSERT_FALSE(HasFailure());
  // nums -> pair is forward (1 channel per subtask), words -> pair rebalance (3 channels).
  ASSERT_EQ(GateChannelCount(*graph_, VertexOf("pair")), 4);
  StartAll();
  ASSERT_TRUE(WaitAllDone());
  ExpectAllIn(proto::TASK_FINISHED);

  absl::MutexLock lock(&log_.mu);
  EXPECT_THAT(log_.bad_inputs, IsEmpty());
  std::vector<std::pair<int, int64_t>> nums = log_.nums;
  std::sort(nums.begin(), nums.end(), [](const auto& a, const auto& b) { return a.second < b.second; });
  std::vector<std::pair<int, int64_t>> expected_nums;
  for (int64_t n = 0; n < 10; ++n) expected_nums.emplace_back(static_cast<int>(n % 2), n);  // forward
  EXPECT_EQ(nums, expected_nums);
  std::vector<std::string> words = log_.words;
  std::sort(words.begin(), words.end());
  EXPECT_EQ(words, (std::vector<std::string>{"w0/0", "w1/0.5", "w2/1", "w3/1.5", "w4/2", "w5/2.5", "w6/3"}));
  EXPECT_EQ(CountsOf("pair").in, 17u);
}

}  // namespace
}  // namespace sluice::worker

namespace sluice::worker {
namespace {

// What the keyed timer probe saw, in order (its one task thread writes, the test reads after Join).
struct ProbeLog {
  absl::Mutex mu;
  std::vector<std::string> events ABSL_GUARDED_BY(mu);
};

// A keyed operator: per record (k, ts) it sets key "k<k>" and registers an event-time timer at
// ts + 5 (with `processing`: for ts < 2 only, a processing-time timer at 1100 + ts); it logs
// "timer k<k>@<t>" / "ptimer k<k>@<t>" from OnTimer and "wm <w>" from ProcessWatermark.
class TimerProbe final : public ops::Operator {
 public:
  // Keyed by its type's traits (`keyed: true` below): no IsKeyed() override needed.
  TimerProbe(ProbeLog* log, bool processing) : log_(log), processing_(processing) {}
  absl::Status Open(const ops::OperatorContext& ctx, ops::Output* output) override {
    SLUICE_RETURN_IF_ERROR(Operator::Open(ctx, output));
    if (ctx.timers == nullptr) return absl::FailedPreconditionError("no timer service");
    return absl::OkStatus();
  }
  absl::Status Process(const Record& r) override {
    const int64_t k = r.GetInt(0);
    ctx_.keyed_state->SetCurrentKey(absl::StrCat("k", k), static_cast<int>(k % ctx_.max_parallelism));
    const int64_t ts = r.GetInt(1);
    if (!processing_) return ctx_.timers->RegisterEventTimeTimer(ts + 5);
    return ts < 2 ? ctx_.timers->RegisterProcessingTimeTimer(1100 + ts) : absl::OkStatus();
  }
  absl::Status OnTimer(int64_t timestamp, ops::TimeDomain domain, absl::string_view key) override {
    absl::MutexLock lock(&log_->mu);
    log_->events.push_back(absl::StrCat(domain == ops::TimeDomain::kEventTime ? "timer " : "ptimer ", key, "@",
                                        timestamp));
    return absl::OkStatus();
  }
  absl::Status ProcessWatermark(int64_t watermark_ms) override {
    {
      absl::MutexLock lock(&log_->mu);
      log_->events.push_back(absl::StrCat("wm ", watermark_ms));
    }
    return Operator::ProcessWatermark(watermark_ms);
  }

 private:
  ProbeLog* log_;
  const bool processing_;
};

// Registers the built-ins and a test operator type `name` without options whose output schema
// is its input's, made by `factory`.
absl::Status RegisterProbe(ops::OperatorRegistry* registry, const std::string& name, bool keyed,
                           ops::OperatorRegistry::Factory factory) {
  plan::OperatorTraits traits;
  traits.name = name;
  traits.keyed = keyed;
  return registry->Register(
      std::make_unique<plan::TypedOperatorType<plan::NoOptions>>(
          traits,
          [](const YAML::Node&, const plan::ParseContext&) -> absl::StatusOr<plan::NoOptions> {
            return plan::NoOptions();
          },
          [](const plan::NoOptions&, const plan::ParseContext& ctx) { return ctx.op().input_schema; }),
      std::move(factory));
}
absl::Status RegisterWithProbe(ops::OperatorRegistry* registry, const std::string& name, bool keyed,
                               ops::OperatorRegistry::Factory factory) {
  SLUICE_RETURN_IF_ERROR(ops::RegisterBuiltinOperators(registry));
  return RegisterProbe(registry, name, keyed, std::move(factory));
}

class TimerTaskTest : public TaskTest {
 protected:
  TimerTaskTest() {
    EXPECT_OK(RegisterWithProbe(&with_probe_, "timer_probe", /*keyed=*/true, [this](const plan::OperatorSpec&) {
      return std::unique_ptr<ops::Operator>(std::make_unique<TimerProbe>(&log_, processing_));
    }));
    registry_in_use_ = &with_probe_;
  }

  ops::OperatorRegistry with_probe_;
  ProbeLog log_;
  bool processing_ = false;  // set before Deploy()

  std::vector<std::string> ProcessingTimers() {
    absl::MutexLock lock(&log_.mu);
    std::vector<std::string> out;
    for (const std::string& e : log_.events) {
      if (absl::StartsWith(e, "ptimer ")) out.push_back(e);
    }
    return out;
  }
};

// Event-time timers fire when the watermark reaches them, before the operator (and everything
// downstream) sees that watermark; the end of event time fires the rest.
TEST_F(TimerTaskTest, EventTimeTimersFireBeforeTheWatermarkThatPassesThem) {
  Deploy(R"y(
name: timers
operators:
  - id: gen
    type: datagen
    count: 6
    fields: [{name: k, type: int64, expr: "seq % 2"}, {name: ts, type: timestamp, expr: "to_timestamp(seq * 10)"}]
    event_time: {field: ts}
  - {id: by_k, type: key_by, key: [k]}
  - {id: probe, type: timer_probe}
  - {id: out, type: blackhole}
)y");
  ASSERT_FALSE(HasFailure());
  StartAll();
  ASSERT_TRUE(WaitAllDone());
  ExpectAllIn(proto::TASK_FINISHED);

  absl::MutexLock lock(&log_.mu);
  std::vector<std::string> timers;
  int64_t last_watermark = kNoWatermark;
  for (const std::string& e : log_.events) {
    if (absl::StartsWith(e, "wm ")) {
      ASSERT_TRUE(absl::SimpleAtoi(e.substr(3), &last_watermark)) << e;
      continue;
    }
    timers.push_back(e);
    const int64_t ts = std::stoll(e.substr(e.find('@') + 1));
    // Fired by a watermark the probe had not seen yet: every earlier one was below it.
    EXPECT_LT(last_watermark, ts) << e << " fired after the watermark that passed it";
  }
  EXPECT_EQ(log_.events.back(), absl::StrCat("wm ", kMaxWatermark));
  // Timestamps 5, 15, ..., 55, keys alternating, in timestamp order.
  EXPECT_THAT(timers, ::testing::ElementsAre("timer k0@5", "timer k1@15", "timer k0@25", "timer k1@35",
                                             "timer k0@45", "timer k1@55"));
}

// Processing-time timers fire from the task's loop when its clock (here a fake one, at 1000 ms
// when the source opens, one record per ms) reaches them, in timestamp order.
TEST_F(TimerTaskTest, ProcessingTimeTimersFireWhenTheClockReachesThem) {
  fake_time_ = true;
  processing_ = true;
  Deploy(R"y(
name: ptimers
buffer_timeout_ms: 0
operators:
  - id: gen
    type: datagen
    rate: 1000
    fields: [{name: k, type: int64, expr: "seq % 2"}, {name: ts, type: timestamp, expr: "to_timestamp(seq)"}]
  - {id: by_k, type: key_by, key: [k]}
  - {id: probe, type: timer_probe}
  - {id: out, type: blackhole}
)y");
  ASSERT_FALSE(HasFailure());
  ASSERT_EQ(fake_clock_.WallMillis(), 1000);
  StartOnFakeClock({"gen"});
  AdvanceSources({"gen"}, 99);  // 1099 ms: 100 records, timers k0@1100 and k1@1101 registered
  ASSERT_TRUE(WaitUntil([&] { return CountsOf("probe").in >= 100; }));
  EXPECT_THAT(ProcessingTimers(), IsEmpty());
  AdvanceSources({"gen"}, 2);  // 1101 ms: both due
  ASSERT_TRUE(WaitUntil([&] { return ProcessingTimers().size() >= 2; }));
  EXPECT_THAT(ProcessingTimers(), ::testing::ElementsAre("ptimer k0@1100", "ptimer k1@1101"));
  CancelAll();
  ASSERT_TRUE(WaitAllDone());
}


// ---------------------------------------------------------------------------------------------
// Batches

// What the batch probes of one operator id saw, over all their subtasks.
struct BatchLog {
  int64_t records = 0;
  int64_t batches = 0;
  int64_t single_calls = 0;  // Process()/ProcessInput(): none expected
  int64_t late = 0;          // records at or below the probe's input watermark
  size_t max_batch = 0;
  // Rows of integers (ProcessIntRows, probes whose id starts with "rows"): the batches, the
  // sum of their `ts` values, and the rows whose carried key group is not their key's.
  int64_t row_batches = 0;
  int64_t ts_sum = 0;
  int64_t wrong_key_groups = 0;
  std::vector<int> key_groups;  // each record's carried key group (-1: none), in arrival order
};

// Passes records on unchanged; PrefersBatches(), and logs how they came and whether any was
// behind the watermark it had already seen (a batch spanning a watermark). With `hold`, it
// holds records back until the next watermark (or the end), then emits them just before
// forwarding that watermark, as operators buffering by event time do.
class BatchProbe final : public ops::Operator {
 public:
  BatchProbe(absl::Mutex* mu, std::map<std::string, BatchLog>* logs, bool hold, bool single = false)
      : mu_(mu), logs_(logs), hold_(hold), single_(single) {}
  absl::Status Open(const ops::OperatorContext& ctx, ops::Output* output) override {
    SLUICE_RETURN_IF_ERROR(Operator::Open(ctx, output));
    ts_ = ctx.spec->input_schema.IndexOf("ts");
    return ts_ < 0 ? absl::InvalidArgumentError("no ts field") : absl::OkStatus();
  }
  // `single`: records one at a time.
  bool PrefersBatches() const override { return !single_; }
  bool PrefersIntRows(int input_index) const override { return absl::StartsWith(ctx_.spec->id, "rows"); }
  // Logs the rows and emits each as a Record. REQUIRES: the input is (k, ts), keyed by k.
  absl::Status ProcessIntRows(int input_index, const ops::IntRowBatch& batch) override {
    const Schema key_schema({{"k", FieldType::kInt64}});
    Record key(1);
    Record r(batch.width);
    for (size_t i = 0; i < batch.count; ++i) {
      key[0].i = batch.values[i * batch.width];
      const int kg = KeyGroupForHash(ops::KeyHasher::HashKeyRecord(key_schema, key), ctx_.max_parallelism);
      {
        absl::MutexLock lock(mu_);
        BatchLog& log = (*logs_)[ctx_.spec->id];
        log.ts_sum += batch.values[i * batch.width + ts_];
        log.wrong_key_groups += batch.KeyGroup(i) != kg;
        log.key_groups.push_back(batch.KeyGroup(i));
      }
      for (size_t f = 0; f < batch.width; ++f) r[f].i = batch.values[i * batch.width + f];
      SLUICE_RETURN_IF_ERROR(output_->Emit(r));
    }
    absl::MutexLock lock(mu_);
    BatchLog& log = (*logs_)[ctx_.spec->id];
    ++log.row_batches;
    log.records += static_cast<int64_t>(batch.count);
    return absl::OkStatus();
  }
  absl::Status Process(const Record& r) override {
    absl::MutexLock lock(mu_);
    BatchLog& log = (*logs_)[ctx_.spec->id];
    ++log.single_calls;
    log.key_groups.push_back(r.carried_key_group());
    return output_->Emit(r);
  }
  absl::Status ProcessBatch(int input_index, const Record* records, size_t count) override {
    {
      absl::MutexLock lock(mu_);
      BatchLog& log = (*logs_)[ctx_.spec->id];
      ++log.batches;
      log.records += static_cast<int64_t>(count);
      log.max_batch = std::max(log.max_batch, count);
      for (size_t i = 0; i < count; ++i) {
        log.late += records[i].GetInt(ts_) <= watermark_;
        log.key_groups.push_back(records[i].carried_key_group());
      }
    }
    if (hold_) {
      held_.insert(held_.end(), records, records + count);
      return absl::OkStatus();
    }
    for (size_t i = 0; i < count; ++i) SLUICE_RETURN_IF_ERROR(output_->Emit(records[i]));
    return absl::OkStatus();
  }
  absl::Status ProcessWatermark(int64_t watermark_ms) override {
    watermark_ = watermark_ms;
    SLUICE_RETURN_IF_ERROR(Release());
    return Operator::ProcessWatermark(watermark_ms);
  }
  absl::Status Finish() override { return Release(); }

 private:
  absl::Status Release() {
    for (const Record& r : held_) SLUICE_RETURN_IF_ERROR(output_->Emit(r));
    held_.clear();
    return absl::OkStatus();
  }

  absl::Mutex* mu_;
  std::map<std::string, BatchLog>* logs_;
  const bool hold_;
  const bool single_;
  std::vector<Record> held_;
  int ts_ = -1;
  int64_t watermark_ = kNoWatermark;
};

class BatchTaskTest : public TaskTest {
 protected:
  BatchTaskTest() {
    EXPECT_OK(RegisterWithProbe(&with_probe_, "batch_probe", /*keyed=*/false, [this](const plan::OperatorSpec& spec) {
      return std::unique_ptr<ops::Operator>(std::make_unique<BatchProbe>(&mu_, &logs_, spec.id == "hold"));
    }));
    // Keyed (its input carries key groups), for rows of integers; ids starting with "single":
    // records one at a time.
    EXPECT_OK(RegisterProbe(&with_probe_, "keyed_batch_probe", /*keyed=*/true, [this](const plan::OperatorSpec& spec) {
      return std::unique_ptr<ops::Operator>(
          std::make_unique<BatchProbe>(&mu_, &logs_, false, absl::StartsWith(spec.id, "single")));
    }));
    registry_in_use_ = &with_probe_;
  }

  // Deploys a job of `name` whose operators (YAML list items) follow a datagen `gen` of 20000
  // records (k int64: seq % 5, ts timestamp: 1000 + seq), runs it to its end and checks that
  // every task finished.
  void RunGenJob(const std::string& name, const std::string& operators) {
    Deploy(absl::StrCat("name: ", name, R"y(
parallelism: 2
operators:
  - id: gen
    type: datagen
    count: 20000
    fields: [{name: k, type: int64, expr: "seq % 5"}, {name: ts, type: timestamp, expr: "to_timestamp(1000 + seq)"}]
)y",
                        operators));
    ASSERT_FALSE(HasFailure());
    StartAll();
    ASSERT_TRUE(WaitAllDone());
    ExpectAllIn(proto::TASK_FINISHED);
  }

  // Deploys gen (k int64, ts timestamp; never started) -> `head` (a keyed_batch_probe at
  // parallelism 2 under max parallelism `max_parallelism`, hashed by k) -> blackhole, starts
  // subtask 0 of `head` alone (key groups 0 to max_parallelism / 2 - 1), sends it `items` on its
  // one input channel (0), waits until it ends (cancelled after kDone) and returns its status.
  proto::TaskStatus SendToHead(const std::string& head, int max_parallelism, std::vector<BufferItem> items) {
    Deploy(absl::StrCat("name: sent\nparallelism: 2\nmax_parallelism: ", max_parallelism, R"y(
operators:
  - id: gen
    type: datagen
    parallelism: 1
    fields: [{name: k, type: int64, expr: "seq"}, {name: ts, type: timestamp, expr: "to_timestamp(seq)"}]
  - {id: )y", head, R"y(, type: keyed_batch_probe, input: {from: gen, partition: hash, key: [k]}}
  - {id: out, type: blackhole}
)y"));
    if (HasFailure()) return {};
    Task* task = TaskFor(VertexOf(head), 0);
    task->Start();
    std::unique_ptr<ChannelWriter> channel = LocalChannel::Connect(task->gate(), 0);
    for (BufferItem& item : items) EXPECT_OK(channel->Send(std::move(item)));
    if (!WaitDone(task)) {
      ADD_FAILURE() << head << " did not end: " << proto::TaskState_Name(task->Status().state());
      task->Cancel();  // not to hang in Join()
    }
    task->Join();
    return task->Status();
  }
  // A buffer of `n` records (k: 1000 + i, ts: i) of (k int64, ts timestamp), announcing
  // `announced`, with `key_groups`.
  static BufferItem KTsBuffer(int n, int announced, std::string key_groups = "") {
    const Schema schema({{"k", FieldType::kInt64}, {"ts", FieldType::kTimestamp}});
    RecordBuffer b;
    Record r(2);
    for (int i = 0; i < n; ++i) {
      r[0].i = 1000 + i;
      r[1].i = i;
      EncodeRecord(schema, r, &b.data);
    }
    b.num_records = announced;
    b.key_groups = std::move(key_groups);
    return BufferItem(0, std::move(b));
  }

  ops::OperatorRegistry with_probe_;
  absl::Mutex mu_;
  std::map<std::string, BatchLog> logs_ ABSL_GUARDED_BY(mu_);
};

// Operators that prefer batches get them chained (gathered, at most 256) and at the head of a
// task (a decoded buffer each); no batch spans a watermark, also when the operator before emits
// records and then the watermark in one call (`hold`); every record arrives once.
TEST_F(BatchTaskTest, BatchesNeverSpanAWatermark) {
  Deploy(R"y(
name: batches
parallelism: 2
watermark_interval: 1ms
operators:
  - id: gen
    type: datagen
    count: 20000
    fields: [{name: k, type: int64, expr: "seq % 5"}, {name: ts, type: timestamp, expr: "to_timestamp(1000 + seq)"}]
    event_time: {field: ts}
  - {id: hold, type: batch_probe}
  - {id: chained, type: batch_probe}
  - {id: head, type: batch_probe, input: {from: chained, partition: hash, key: [k]}}
  - {id: out, type: blackhole}
)y");
  ASSERT_FALSE(HasFailure());
  ASSERT_EQ(tasks_.size(), 4u) << "gen+hold+chained, head+out, 2 subtasks each";
  StartAll();
  ASSERT_TRUE(WaitAllDone());
  ExpectAllIn(proto::TASK_FINISHED);
  EXPECT_EQ(CountsOf("chained").in, 20000u);
  EXPECT_EQ(CountsOf("head").in, 20000u);
  EXPECT_EQ(CountsOf("out").in, 20000u);
  absl::MutexLock lock(&mu_);
  for (const char* id : {"hold", "chained", "head"}) {
    const BatchLog& log = logs_[id];
    EXPECT_EQ(log.records, 20000) << id;
    EXPECT_EQ(log.single_calls, 0) << id;
    EXPECT_EQ(log.late, 0) << id << ": a batch spanned a watermark";
    EXPECT_LT(log.batches * 2, log.records) << id << ": records came (nearly) one at a time";
  }
  EXPECT_LE(logs_["chained"].max_batch, 256u);
}

// A head that prefers batches gets each received buffer (thousands of records here: no
// watermarks flush them early) as one batch, decoded 512 records at a time: not in slices (the
// aggregate reads a key's state once per batch); every record arrives once.
TEST_F(BatchTaskTest, AHeadGetsAReceivedBufferAsOneBatch) {
  RunGenJob("slices", R"y(  - {id: head, type: batch_probe, input: {from: gen, partition: hash, key: [k]}}
  - {id: out, type: blackhole}
)y");
  ASSERT_FALSE(HasFailure());
  ASSERT_EQ(tasks_.size(), 4u) << "gen, head+out, 2 subtasks each";
  EXPECT_EQ(CountsOf("head").in, 20000u);
  EXPECT_EQ(CountsOf("out").in, 20000u);
  absl::MutexLock lock(&mu_);
  const BatchLog& log = logs_["head"];
  EXPECT_EQ(log.records, 20000);
  EXPECT_EQ(log.single_calls, 0);
  EXPECT_GT(log.max_batch, 512u) << "a buffer cut into batches";
  EXPECT_LT(log.batches * 1000, log.records) << "buffers of fewer than 1000 records";
}

// A head that PrefersIntRows() gets each received buffer of NOT NULL integers as rows of int64s
// (ProcessIntRows), with the key group each record carried across the exchange (its key's),
// and no Records; a head of the same kind whose input has a double field gets Records.
TEST_F(BatchTaskTest, AHeadPreferringIntRowsGetsRowsWithTheirKeyGroups) {
  RunGenJob("rows", R"y(  - {id: rows, type: keyed_batch_probe, input: {from: gen, partition: hash, key: [k]}}
  - {id: out, type: blackhole}
  - id: gen_d
    type: datagen
    count: 20000
    fields: [{name: k, type: int64, expr: "seq % 5"}, {name: ts, type: timestamp, expr: "to_timestamp(1000 + seq)"}, {name: d, type: double, expr: "seq * 1.0"}]
  - {id: rows_d, type: keyed_batch_probe, input: {from: gen_d, partition: hash, key: [k]}}
  - {id: out_d, type: blackhole}
)y");
  ASSERT_FALSE(HasFailure());
  EXPECT_EQ(CountsOf("rows").in, 20000u);
  EXPECT_EQ(CountsOf("out").in, 20000u);
  EXPECT_EQ(CountsOf("out_d").in, 20000u);
  absl::MutexLock lock(&mu_);
  const BatchLog& log = logs_["rows"];
  EXPECT_EQ(log.records, 20000);
  EXPECT_EQ(log.batches, 0);
  EXPECT_EQ(log.single_calls, 0);
  EXPECT_GT(log.row_batches, 0);
  EXPECT_EQ(log.ts_sum, 20000 * 1000 + 19999 * 20000 / 2);
  EXPECT_EQ(log.wrong_key_groups, 0);
  const BatchLog& d = logs_["rows_d"];
  EXPECT_EQ(d.records, 20000);
  EXPECT_EQ(d.row_batches, 0);
  EXPECT_GT(d.batches, 0);
}

// A buffer that holds other records than it announces (RecordBuffer::num_records), as an
// unaligned checkpoint's in-flight buffers restored into a job whose schema changed would, fails
// the task with kDataLoss naming the channel and both counts, whichever way its head takes
// records: rows of integers, Records in one batch, Records one at a time. 4 records of
// (k, ts, x) read as (k, ts) are 6; 4 of (k) are 2; 5 announced as 4 or 6.
TEST_F(BatchTaskTest, ABufferHoldingOtherRecordsThanItAnnouncesIsDataLoss) {
  const Schema three({{"k", FieldType::kInt64}, {"ts", FieldType::kTimestamp}, {"x", FieldType::kInt64}});
  const Schema one({{"k", FieldType::kInt64}});
  std::string of_three, of_one;
  Record r3(3);
  Record r1(1);
  for (int i = 0; i < 4; ++i) {
    for (int f = 0; f < 3; ++f) r3[f].i = i;
    r1[0].i = i;
    EncodeRecord(three, r3, &of_three);
    EncodeRecord(one, r1, &of_one);
  }
  struct Case {
    std::string data;
    int announced;
    int held;
  };
  std::vector<Case> cases = {{of_three, 4, 6}, {of_one, 4, 2}};
  for (int announced : {4, 6}) cases.push_back({KTsBuffer(5, announced).as<RecordBuffer>()->data, announced, 5});
  for (const Case& c : cases) {
    for (const std::string head : {"rows", "batch", "single"}) {
      tasks_.clear();
      std::vector<BufferItem> items;
      items.emplace_back(0, RecordBuffer{c.data, c.announced});
      const proto::TaskStatus st = SendToHead(head, 128, std::move(items));
      EXPECT_EQ(st.state(), proto::TASK_FAILED) << head;
      EXPECT_EQ(st.error_code(), static_cast<int>(absl::StatusCode::kDataLoss)) << head;
      EXPECT_THAT(st.error(), HasSubstr(absl::StrCat("input channel 0: a buffer announcing ", c.announced,
                                                      " records held ", c.held,
                                                      " (is its schema the one it was written with?)")))
          << head;
    }
  }
  // A corrupt varint (an 11-byte run of continuation bytes in the first record's first field)
  // names the channel too, whichever way the head takes records.
  for (const std::string head : {"rows", "batch", "single"}) {
    tasks_.clear();
    std::vector<BufferItem> items;
    items.emplace_back(0, RecordBuffer{std::string(11, '\xff'), 1});
    const proto::TaskStatus st = SendToHead(head, 128, std::move(items));
    EXPECT_EQ(st.state(), proto::TASK_FAILED) << head;
    EXPECT_EQ(st.error_code(), static_cast<int>(absl::StatusCode::kDataLoss)) << head;
    EXPECT_THAT(st.error(), HasSubstr("input channel 0: corrupt varint in field 0")) << head;
  }
}

// The key groups carried with a buffer are checked against the subtask's range the same way
// whichever way its head takes records (CarriedKeyGroups::Check() for rows of integers,
// SetBatch() for Records): one outside the range, or a record without one, fails the task with
// the same kDataLoss; key groups past 255 (two bytes each, max parallelism 1000) reach the head
// as they came (IntRowBatch::KeyGroup(), Record::carried_key_group()).
TEST_F(BatchTaskTest, CarriedKeyGroupsAreCheckedAlikeForRowsAndRecords) {
  auto two_bytes = [](std::initializer_list<int> kgs) {
    std::string out;
    for (int kg : kgs) out += {static_cast<char>(kg & 0xff), static_cast<char>(kg >> 8)};
    return out;
  };
  struct Case {
    int max_parallelism;
    BufferItem buffer;
    std::string error;
  };
  std::vector<Case> cases;
  cases.push_back({128, KTsBuffer(3, 3, std::string("\x05\x64\x07", 3)),
                   "input channel 0: record 1 came with key group 100, outside this subtask's 0-63"});
  cases.push_back({128, KTsBuffer(3, 2, std::string("\x05\x06", 2)),
                   "input channel 0: record 2 of a buffer has no key group"});
  cases.push_back({1000, KTsBuffer(3, 3, two_bytes({300, 700, 2})),
                   "input channel 0: record 1 came with key group 700, outside this subtask's 0-499"});
  cases.push_back({1000, KTsBuffer(3, 2, two_bytes({300, 499})),
                   "input channel 0: record 2 of a buffer has no key group"});
  for (const Case& c : cases) {
    for (const std::string head : {"rows", "batch", "single"}) {
      tasks_.clear();
      std::vector<BufferItem> items;
      items.push_back(c.buffer.CopyContent());
      const proto::TaskStatus st = SendToHead(head, c.max_parallelism, std::move(items));
      EXPECT_EQ(st.state(), proto::TASK_FAILED) << head;
      EXPECT_EQ(st.error_code(), static_cast<int>(absl::StatusCode::kDataLoss)) << head;
      EXPECT_THAT(st.error(), ::testing::EndsWith(c.error)) << head;
    }
  }
  const std::vector<int> within = {300, 499, 256, 0, 257, 1};
  for (const std::string head : {"rows", "batch", "single"}) {
    tasks_.clear();
    std::vector<BufferItem> items;
    items.push_back(KTsBuffer(6, 6, two_bytes({300, 499, 256, 0, 257, 1})));
    items.emplace_back(0, EndOfPartition{});
    const proto::TaskStatus st = SendToHead(head, 1000, std::move(items));
    EXPECT_EQ(st.state(), proto::TASK_FINISHED) << head << ": " << st.error();
    absl::MutexLock lock(&mu_);
    EXPECT_EQ(logs_[head].key_groups, within) << head;
    EXPECT_EQ(logs_[head].row_batches, head == "rows" ? 1 : 0) << head;
  }
}

// A priority barrier partway through a slice of a buffer (record `k` of the slice that starts
// after `done - k` records) leaves exactly the records from `done` on: bytes, count and key
// groups, for slices in the middle and at both ends.
TEST(RestOfRecordBufferTest, LeavesTheRecordsNotProcessed) {
  const Schema schema({{"k", FieldType::kInt64}, {"s", FieldType::kString}});
  RecordBuffer buffer;
  Record r(2);
  std::vector<size_t> starts;  // byte offset of each record
  for (int i = 0; i < 1000; ++i) {
    starts.push_back(buffer.data.size());
    r.SetInt(0, i * 7919 - 3000);
    r.SetString(1, std::string(i % 13, 'a' + i % 26));
    EncodeRecord(schema, r, &buffer.data);
    buffer.key_groups.push_back(static_cast<char>(i % 128));
  }
  buffer.num_records = 1000;
  Record scratch;
  for (const auto& [slice_start, k] : std::vector<std::pair<size_t, size_t>>{{0, 0}, {0, 1}, {512, 0}, {512, 300}, {512, 487}, {999, 0}}) {
    const size_t done = slice_start + k;
    const size_t slice_bytes = buffer.data.size() - starts[slice_start];
    absl::StatusOr<RecordBuffer> rest =
        RestOfRecordBuffer(schema, buffer, slice_bytes, k, done, buffer.key_groups.substr(done), &scratch);
    ASSERT_OK(rest);
    EXPECT_EQ(rest->data, buffer.data.substr(starts[done])) << done;
    EXPECT_EQ(rest->num_records, static_cast<int>(1000 - done));
    EXPECT_EQ(rest->key_groups, buffer.key_groups.substr(done));
    RecordDecoder dec(&schema, rest->data);
    ASSERT_OK(dec.Next(&r));
    EXPECT_EQ(r.GetInt(0), static_cast<int64_t>(done) * 7919 - 3000);
  }
  EXPECT_EQ(RestOfRecordBuffer(schema, buffer, buffer.data.size() - starts[990], 11, 1001, "", &scratch)
                .status()
                .code(),
            absl::StatusCode::kDataLoss);
}

// Per record a KeyGroupProbe saw: its key, the key group carried with it (-1: none), and the
// key group its key hashes to.
struct CarriedLog {
  absl::Mutex mu;
  std::vector<std::array<int64_t, 3>> seen ABSL_GUARDED_BY(mu);
};

// A keyed operator that logs, per record, the key group the exchange carried with it beside the
// one computed from its key (as the sender computes it); `batches`: PrefersBatches().
class KeyGroupProbe final : public ops::Operator {
 public:
  KeyGroupProbe(CarriedLog* log, bool batches) : log_(log), batches_(batches) {}
  absl::Status Open(const ops::OperatorContext& ctx, ops::Output* output) override {
    SLUICE_RETURN_IF_ERROR(Operator::Open(ctx, output));
    SLUICE_ASSIGN_OR_RETURN(hasher_, ops::KeyHasher::Create(ctx.spec->key, ctx.spec->input_schema));
    return absl::OkStatus();
  }
  bool PrefersBatches() const override { return batches_; }
  absl::Status Process(const Record& r) override { return ProcessBatch(0, &r, 1); }
  absl::Status ProcessBatch(int, const Record* records, size_t count) override {
    absl::MutexLock lock(&log_->mu);
    for (size_t i = 0; i < count; ++i) {
      const int computed = KeyGroupForHash(hasher_.Hash(records[i]), ctx_.max_parallelism);
      log_->seen.push_back({records[i].GetInt(0), records[i].carried_key_group(), computed});
    }
    return absl::OkStatus();
  }

 private:
  CarriedLog* log_;
  const bool batches_;
  ops::KeyHasher hasher_;
};

class CarriedKeyGroupTaskTest : public TaskTest {
 protected:
  CarriedKeyGroupTaskTest() {
    EXPECT_OK(RegisterWithProbe(&with_probe_, "kg_probe", /*keyed=*/true, [this](const plan::OperatorSpec&) {
      return std::unique_ptr<ops::Operator>(std::make_unique<KeyGroupProbe>(&log_, batches_));
    }));
    registry_in_use_ = &with_probe_;
  }

  // Runs datagen (keys -500..499) -> key_by -> kg_probe (options `probe_options`) with
  // `parallelism` over local channels, and returns what the probes saw.
  std::vector<std::array<int64_t, 3>> Run(int parallelism, int max_parallelism, const std::string& probe_options) {
    Deploy(absl::StrCat(R"y(
name: carried
parallelism: )y", parallelism, R"y(
max_parallelism: )y", max_parallelism, R"y(
operators:
  - id: gen
    type: datagen
    count: 30000
    fields: [{name: k, type: int64, expr: "(seq * 7919) % 1000 - 500"}]
  - {id: by_k, type: key_by, key: [k]}
  - {id: probe, type: kg_probe, )y", probe_options, R"y(}
  - {id: out, type: blackhole}
)y"));
    EXPECT_FALSE(HasFailure());
    StartAll();
    EXPECT_TRUE(WaitAllDone());
    ExpectAllIn(proto::TASK_FINISHED);
    absl::MutexLock lock(&log_.mu);
    return log_.seen;
  }

  ops::OperatorRegistry with_probe_;
  CarriedLog log_;
  bool batches_ = false;
};

// Every record that crosses the hash edge into a keyed head carries the key group of its key,
// from 2 senders to 3 receivers (whose key group ranges differ from the senders', as after a
// rescale): record by record at max parallelism 128 (one byte each), in batches at 1000 (two
// bytes, key groups past 255).
TEST_F(CarriedKeyGroupTaskTest, RecordsCarryTheKeyGroupOfTheirKey) {
  const auto seen = Run(2, 128, "parallelism: 3");
  ASSERT_EQ(seen.size(), 30000u);
  for (const auto& [key, carried, computed] : seen) ASSERT_EQ(carried, computed) << "key " << key;
}

TEST_F(CarriedKeyGroupTaskTest, BatchesCarryTwoByteKeyGroups) {
  batches_ = true;
  const auto seen = Run(2, 1000, "parallelism: 3");
  ASSERT_EQ(seen.size(), 30000u);
  int64_t largest = -1;
  for (const auto& [key, carried, computed] : seen) {
    ASSERT_EQ(carried, computed) << "key " << key;
    largest = std::max(largest, carried);
  }
  EXPECT_GT(largest, 255);
}

// Chained to its source (a key_by at parallelism 1 read forward), a keyed operator gets records
// that crossed no exchange: nothing is carried, and it hashes the key itself.
TEST_F(CarriedKeyGroupTaskTest, ChainedToTheSourceNothingIsCarried) {
  const auto seen = Run(1, 128, "input: {from: by_k, partition: forward}");
  ASSERT_EQ(tasks_.size(), 1u) << "gen -> by_k -> probe -> out in one task";
  ASSERT_EQ(seen.size(), 30000u);
  for (const auto& [key, carried, computed] : seen) ASSERT_EQ(carried, -1) << "key " << key;
}

}  // namespace
}  // namespace sluice::worker

namespace sluice::worker {
namespace {

// What the probes of SourceBarrierTaskTest share with the test.
struct Valve {
  absl::Mutex mu;
  int64_t allowed ABSL_GUARDED_BY(mu) = 0;        // records the gated sink may process
  std::vector<int64_t> seen ABSL_GUARDED_BY(mu);  // their first fields, in order
  std::map<int64_t, size_t> sink_snapshots ABSL_GUARDED_BY(mu);    // id -> records seen
  std::map<int64_t, int64_t> source_snapshots ABSL_GUARDED_BY(mu);  // id -> records passed

  void Open() {
    absl::MutexLock lock(&mu);
    allowed = std::numeric_limits<int64_t>::max();
  }
};

// Chained to the source: passes records on, noting at each snapshot how many it passed.
class SnapshotMark final : public ops::Operator {
 public:
  explicit SnapshotMark(Valve* valve) : valve_(valve) {}
  absl::Status Process(const Record& r) override {
    ++passed_;
    return output_->Emit(r);
  }
  absl::Status SnapshotState(int64_t id, std::vector<std::string>*) override {
    absl::MutexLock lock(&valve_->mu);
    valve_->source_snapshots[id] = passed_;
    return absl::OkStatus();
  }

 private:
  Valve* valve_;
  int64_t passed_ = 0;
};

// A sink that processes a record only once the test allows it (Valve::allowed), so that its
// producer is backpressured for as long as the test wants.
class GatedSink final : public ops::Operator {
 public:
  explicit GatedSink(Valve* valve) : valve_(valve) {}
  absl::Status Process(const Record& r) override {
    absl::MutexLock lock(&valve_->mu);
    auto may = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(valve_->mu) {
      return static_cast<int64_t>(valve_->seen.size()) < valve_->allowed;
    };
    valve_->mu.Await(absl::Condition(&may));
    valve_->seen.push_back(r.GetInt(0));
    return absl::OkStatus();
  }
  absl::Status SnapshotState(int64_t id, std::vector<std::string>*) override {
    absl::MutexLock lock(&valve_->mu);
    valve_->sink_snapshots[id] = valve_->seen.size();
    return absl::OkStatus();
  }

 private:
  Valve* valve_;
};

std::vector<int64_t> Range(int64_t from, int64_t to) {
  std::vector<int64_t> v;
  for (int64_t i = from; i < to; ++i) v.push_back(i);
  return v;
}

// A source's barrier in mode auto (aligned_timeout 1 s of the fake clock): datagen -> mark
// (chained) -> gated sink (-> blackhole, chained: it emits nothing), the sink closed until the
// test opens it.
class SourceBarrierTaskTest : public TaskTest {
 protected:
  SourceBarrierTaskTest() {
    EXPECT_OK(RegisterWithProbe(&with_probes_, "gated_sink", /*keyed=*/false,
                                [this](const plan::OperatorSpec&) {
                                  return std::unique_ptr<ops::Operator>(
                                      std::make_unique<GatedSink>(&valve_));
                                }));
    EXPECT_OK(RegisterProbe(&with_probes_, "snapshot_mark", /*keyed=*/false,
                            [this](const plan::OperatorSpec&) {
                              return std::unique_ptr<ops::Operator>(
                                  std::make_unique<SnapshotMark>(&valve_));
                            }));
    registry_in_use_ = &with_probes_;
    checkpointing_ = true;
    fake_time_ = true;
  }

  void TearDown() override {
    valve_.Open();  // a sink waiting for the valve would not see its cancellation
    TaskTest::TearDown();
  }

  // Deploys and starts the job (datagen of `count` records, -1: endless), then waits until the
  // source is backpressured: its channel's credits are all used and a buffer waits in its
  // backlog.
  void StartBackpressured(int64_t count) {
    Deploy(absl::StrCat(R"(
name: backpressured
checkpoint: {interval: 1h, mode: auto, aligned_timeout: 1s}
operators:
  - id: gen
    type: datagen
)", count >= 0 ? absl::StrCat("    count: ", count, "\n") : "",
                        R"(    fields: [{name: v, type: int64, expr: "seq"}]
  - id: mark
    type: snapshot_mark
    inputs: [{from: gen, partition: forward}]
  - id: sink
    type: gated_sink
    inputs: [{from: mark, partition: rebalance}]
  - {id: out, type: blackhole}
)"));
    ASSERT_FALSE(HasFailure());
    ASSERT_EQ(tasks_.size(), 2u);
    source_ = TaskFor(VertexOf("gen"), 0);
    sink_ = TaskFor(VertexOf("sink"), 0);
    ASSERT_NE(source_, nullptr);
    ASSERT_NE(sink_, nullptr);
    StartAll();
    // The sink holds one buffer (waiting in Process()), its gate the rest of the credits; one
    // more buffer was flushed into the source's backlog.
    const plan::Edge& edge = graph_->edges[graph_->vertices[VertexOf("sink")].in_edges[0]];
    const int64_t credits = sink_->gate()->credits_per_channel();
    ASSERT_TRUE(WaitUntil([&] { return BuffersSent(edge, 0) > credits; }));
  }

  // Triggers checkpoint `id` on the source and waits until it has snapshotted (its barrier is
  // emitted right after, on the task thread).
  void TriggerSource(int64_t id) {
    source_->TriggerCheckpoint(id, /*final=*/false);
    ASSERT_TRUE(WaitUntil([&] {
      absl::MutexLock lock(&valve_.mu);
      return valve_.source_snapshots.count(id) > 0;
    }));
  }

  bool HasAck(int64_t id, Task* task) {
    absl::MutexLock lock(&mu_);
    for (const auto& a : acks_) {
      if (a.checkpoint_id() == id && a.task().vertex() == task->descriptor().vertex) return true;
    }
    return false;
  }

  // The first fields of the records of `ack`'s in-flight file (output or input side), in order.
  std::vector<int64_t> InFlightValues(const proto::CheckpointAck& ack, bool output) {
    std::vector<int64_t> values;
    if (ack.state().channel_state_file().empty()) return values;
    auto file = ReadChannelState(CheckpointDir() + "/" + ack.state().channel_state_file(),
                                 ack.checkpoint_id(), ack.task().vertex(), ack.task().subtask());
    EXPECT_OK(file.status());
    if (!file.ok()) return values;
    const Schema schema({Field{"v", FieldType::kInt64}});
    for (const auto& item : file->items()) {
      EXPECT_EQ(item.output(), output);
      RecordDecoder dec(&schema, item.buffer());
      Record r(1);
      int n = 0;
      while (!dec.Done()) {
        EXPECT_OK(dec.Next(&r));
        values.push_back(r.GetInt(0));
        ++n;
      }
      EXPECT_EQ(n, item.num_records());
    }
    return values;
  }

  // Every record before barrier `id` (the mark's count at the source's snapshot) is in exactly
  // one place, in order: the sink's snapshot (the records it had seen), the sink's in-flight
  // input, the source's in-flight output (the acknowledgements' files). Returns the latter.
  std::vector<int64_t> ExpectEachRecordOnce(int64_t id, const proto::CheckpointAck& source,
                                            const proto::CheckpointAck& sink) {
    int64_t before = 0;
    size_t at_sink = 0;
    {
      absl::MutexLock lock(&valve_.mu);
      before = valve_.source_snapshots.at(id);
      at_sink = valve_.sink_snapshots.at(id);
    }
    EXPECT_EQ(EmittedBefore(SplitsIn(source, "gen")), before);
    const std::vector<int64_t> output = InFlightValues(source, true);
    const std::vector<int64_t> input = InFlightValues(sink, false);
    std::vector<int64_t> all = Seen(at_sink);
    all.insert(all.end(), input.begin(), input.end());
    all.insert(all.end(), output.begin(), output.end());
    EXPECT_EQ(all, Range(0, before));
    return output;
  }

  std::vector<int64_t> Seen(size_t n) {
    absl::MutexLock lock(&valve_.mu);
    const size_t k = std::min(n, valve_.seen.size());
    return std::vector<int64_t>(valve_.seen.begin(), valve_.seen.begin() + k);
  }

  ops::OperatorRegistry with_probes_;
  Valve valve_;
  Task* source_ = nullptr;
  Task* sink_ = nullptr;
};

// The barrier waits in the source's backlog; the sink drains before the timeout: the
// checkpoint is aligned everywhere (no in-flight data), and the sink's snapshot follows exactly
// the records before the barrier. The input then ends and the final checkpoint finishes the job.
TEST_F(SourceBarrierTaskTest, ABarrierThatDrainsInTimeGoesAligned) {
  constexpr int64_t kCount = 300'000;
  StartBackpressured(kCount);
  ASSERT_FALSE(HasFailure());
  TriggerSource(1);
  valve_.Open();
  Acks acks = AwaitAcks(1);
  const proto::CheckpointAck& source = acks.at({source_->descriptor().vertex, 0});
  const proto::CheckpointAck& sink = acks.at({sink_->descriptor().vertex, 0});
  EXPECT_FALSE(source.unaligned());
  EXPECT_EQ(source.state().channel_state_file(), "");
  EXPECT_FALSE(sink.unaligned());
  EXPECT_EQ(sink.state().channel_state_file(), "");
  // Aligned: the sink's snapshot follows exactly the records before the barrier.
  ExpectEachRecordOnce(1, source, sink);
  ASSERT_TRUE(AwaitEndOfInput());
  TriggerAll(2, /*final=*/true);
  AwaitAcks(2);
  NotifyAll(2);
  ASSERT_TRUE(WaitAllDone());
  ExpectAllIn(proto::TASK_FINISHED);
  EXPECT_EQ(Seen(kCount + 1), Range(0, kCount));
}

// The barrier is still in the backlog when aligned_timeout passes: the source converts it to a
// priority barrier, storing exactly the buffers it overtook; the sink, told that the checkpoint
// timed out, snapshots unaligned at once. The sink's records, its in-flight input and the
// source's in-flight output are exactly the records before the barrier, each once.
TEST_F(SourceBarrierTaskTest, ABarrierStuckPastTheTimeoutIsConverted) {
  StartBackpressured(-1);
  ASSERT_FALSE(HasFailure());
  TriggerSource(1);
  // Time passes (the sink stays closed) until the source acknowledges.
  ASSERT_TRUE(WaitUntil([&] {
    fake_clock_.AdvanceNanos(50'000'000);
    return HasAck(1, source_);
  }));
  valve_.Open();
  Acks acks = AwaitAcks(1);
  const proto::CheckpointAck& source = acks.at({source_->descriptor().vertex, 0});
  const proto::CheckpointAck& sink = acks.at({sink_->descriptor().vertex, 0});
  EXPECT_TRUE(source.unaligned());
  EXPECT_TRUE(sink.unaligned()) << "a timed-out barrier switches the sink at once";
  EXPECT_FALSE(ExpectEachRecordOnce(1, source, sink).empty())
      << "the source's backlog held a buffer";
}

// The timeout passes while credit comes back: whichever the source sees first (the barrier
// leaves in place, or is converted; the writer tests pin each order), every record before the
// barrier is in exactly one of the sink's snapshot, its in-flight input or the source's
// in-flight output, and the acknowledgements agree with what was stored.
TEST_F(SourceBarrierTaskTest, ATimeoutAsTheBarrierLeavesStoresEachRecordOnceEitherWay) {
  StartBackpressured(-1);
  ASSERT_FALSE(HasFailure());
  TriggerSource(1);
  fake_clock_.AdvanceNanos(1'000'000'000);
  valve_.Open();
  Acks acks = AwaitAcks(1);
  const proto::CheckpointAck& source = acks.at({source_->descriptor().vertex, 0});
  const proto::CheckpointAck& sink = acks.at({sink_->descriptor().vertex, 0});
  const std::vector<int64_t> output = ExpectEachRecordOnce(1, source, sink);
  EXPECT_EQ(source.unaligned(), !output.empty());
  EXPECT_EQ(source.state().channel_state_file().empty(), output.empty());
  // Converted (possibly with nothing left before it: the last buffer had just left) it says
  // timed_out and the sink goes unaligned. Left in place it says how long the checkpoint
  // waited (as its send began): the whole timeout if that began after the clock moved, and
  // the sink's timer then switches at once too; else the sink aligns.
  const plan::Edge& edge = graph_->edges[graph_->vertices[VertexOf("sink")].in_edges[0]];
  const int64_t converted = BarriersConverted(edge, 0);
  EXPECT_LE(converted, 1);
  if (converted == 1) {
    EXPECT_TRUE(sink.unaligned()) << "a timed-out barrier switches it";
  }
  if (!output.empty()) {
    EXPECT_EQ(converted, 1);
  }
}

// A new trigger while the barrier of checkpoint 1 waits in the backlog: the coordinator aborted
// 1 (one checkpoint at a time). Its barrier is dropped, not converted: nobody stores in-flight
// data for it, nobody acknowledges it, and 2 goes aligned, each record once.
TEST_F(SourceBarrierTaskTest, ANewTriggerDropsTheAbortedCheckpointsQueuedBarrier) {
  StartBackpressured(-1);
  ASSERT_FALSE(HasFailure());
  TriggerSource(1);
  TriggerSource(2);
  valve_.Open();
  Acks acks = AwaitAcks(2);
  const proto::CheckpointAck& source = acks.at({source_->descriptor().vertex, 0});
  const proto::CheckpointAck& sink = acks.at({sink_->descriptor().vertex, 0});
  EXPECT_FALSE(source.unaligned());
  EXPECT_FALSE(sink.unaligned());
  ExpectEachRecordOnce(2, source, sink);
  EXPECT_FALSE(HasAck(1, source_));
  EXPECT_FALSE(HasAck(1, sink_));
  const plan::Edge& edge = graph_->edges[graph_->vertices[VertexOf("sink")].in_edges[0]];
  EXPECT_EQ(BarriersConverted(edge, 0), 0);
}

// Cancelled while its barrier waits in the backlog: the source never acknowledges it.
TEST_F(SourceBarrierTaskTest, CancelWhileABarrierWaitsDropsItsAck) {
  StartBackpressured(-1);
  ASSERT_FALSE(HasFailure());
  TriggerSource(1);
  CancelAll();
  valve_.Open();
  ASSERT_TRUE(WaitAllDone());
  EXPECT_FALSE(HasAck(1, source_));
}

}  // namespace
}  // namespace sluice::worker
