#include "worker/internal/operator_chain.h"

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "common/status.h"
#include "common/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "plan/operator_type.h"

namespace sluice::worker {
namespace {

using ::sluice::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// How a probe operator behaves: which of its calls fail, how many records it emits per record
// (its first field plus 1000 * copy), whether it prefers batches, its snapshot entries.
struct ProbeConfig {
  std::string fail_on;  // "open", "process", "finish", "snapshot", "notify"
  int emit_per_record = 1;
  int emit_on_finish = 0;
  bool batches = false;
  std::vector<std::string> entries;
  bool union_state = false;
  bool forwards = false;  // ForwardsUnchanged(), as key_by
  bool batches_once_open = false;  // PrefersBatches() only after Open(), as aggregate, window
  // ProcessOwnedBatch() of its own, passing the batch on whole (as a filter that keeps all).
  bool owned_batches = false;
};

// Logs "<id>.<call>[:<detail>]" for everything the chain calls on it.
class Probe final : public ops::Operator {
 public:
  Probe(std::string id, ProbeConfig config, std::vector<std::string>* log)
      : id_(std::move(id)), config_(std::move(config)), log_(log) {}
  absl::Status Open(const ops::OperatorContext& ctx, ops::Output* output) override {
    SLUICE_RETURN_IF_ERROR(Operator::Open(ctx, output));
    opened_ = true;
    return Call("open");
  }
  absl::Status Process(const Record& r) override {
    SLUICE_RETURN_IF_ERROR(Call(absl::StrCat("process:", r.GetInt(0))));
    return EmitCopies(r.GetInt(0));
  }
  absl::Status ProcessBatch(int input, const Record* records, size_t n) override {
    SLUICE_RETURN_IF_ERROR(Call(absl::StrCat("batch:", n, ":", records[0].GetInt(0), "-",
                                             records[n - 1].GetInt(0))));
    for (size_t i = 0; i < n; ++i) SLUICE_RETURN_IF_ERROR(EmitCopies(records[i].GetInt(0)));
    return absl::OkStatus();
  }
  absl::Status ProcessOwnedBatch(Record* records, size_t n) override {
    if (!config_.owned_batches) return Operator::ProcessOwnedBatch(records, n);
    SLUICE_RETURN_IF_ERROR(Call(absl::StrCat("owned_batch:", n, ":", records[0].GetInt(0), "-",
                                             records[n - 1].GetInt(0))));
    return output_->EmitOwnedBatch(records, n);
  }
  bool TakesOwnedBatches() const override { return config_.owned_batches; }
  bool PrefersBatches() const override {
    return config_.batches || (config_.batches_once_open && opened_);
  }
  bool ForwardsUnchanged() const override { return config_.forwards; }
  absl::Status Finish() override {
    SLUICE_RETURN_IF_ERROR(Call("finish"));
    for (int i = 0; i < config_.emit_on_finish; ++i) SLUICE_RETURN_IF_ERROR(Emit(900 + i));
    return absl::OkStatus();
  }
  void Close() override { log_->push_back(id_ + ".close"); }
  absl::Status ProcessWatermark(int64_t w) override {
    SLUICE_RETURN_IF_ERROR(Call(absl::StrCat("watermark:", w)));
    return Operator::ProcessWatermark(w);
  }
  absl::Status SnapshotState(int64_t id, std::vector<std::string>* entries) override {
    SLUICE_RETURN_IF_ERROR(Call(absl::StrCat("snapshot:", id)));
    *entries = config_.entries;
    return absl::OkStatus();
  }
  bool UnionState() const override { return config_.union_state; }
  absl::Status NotifyCheckpointComplete(int64_t id) override {
    return Call(absl::StrCat("notify:", id));
  }

  ops::Output* output() const { return output_; }

 private:
  absl::Status Call(const std::string& what) {
    log_->push_back(absl::StrCat(id_, ".", what));
    const std::string call = what.substr(0, what.find(':'));
    if (call == config_.fail_on) return absl::InternalError(absl::StrCat(id_, " failed in ", call));
    return absl::OkStatus();
  }
  absl::Status EmitCopies(int64_t v) {
    for (int i = 0; i < config_.emit_per_record; ++i) SLUICE_RETURN_IF_ERROR(Emit(v + 1000 * i));
    return absl::OkStatus();
  }
  absl::Status Emit(int64_t v) {
    Record r(1);
    r.SetInt(0, v);
    return output_->Emit(r);
  }

  const std::string id_;
  const ProbeConfig config_;
  std::vector<std::string>* log_;
  bool opened_ = false;
};

// A ProbeConfig as `set` makes it.
template <typename F>
ProbeConfig With(F set) {
  ProbeConfig c;
  set(c);
  return c;
}

class OperatorChainTest : public ::testing::Test {
 protected:
  OperatorChainTest() {
    plan::OperatorTraits traits;
    traits.name = "probe";
    EXPECT_OK(registry_.Register(
        std::make_unique<plan::TypedOperatorType<plan::NoOptions>>(
            traits,
            [](const YAML::Node&, const plan::ParseContext&) -> absl::StatusOr<plan::NoOptions> {
              return plan::NoOptions();
            },
            [](const plan::NoOptions&, const plan::ParseContext& ctx) {
              return ctx.op().input_schema;
            }),
        [this](const plan::OperatorSpec& spec) -> absl::StatusOr<std::unique_ptr<ops::Operator>> {
          auto p = std::make_unique<Probe>(spec.id, configs_[spec.id], &log_);
          probes_[spec.id] = p.get();
          return p;
        }));
  }

  // Adds probe `id` (a source if `source`) with `config`.
  void Add(const std::string& id, ProbeConfig config = {}, bool source = false) {
    auto spec = std::make_unique<plan::OperatorSpec>();
    spec->id = id;
    spec->type = "probe";
    spec->arity = source ? plan::InputArity::kSource : plan::InputArity::kOne;
    spec->output_schema = schema_;
    spec->input_schema = schema_;
    configs_[id] = std::move(config);
    in_.push_back(std::make_shared<Counter>());
    out_.push_back(std::make_shared<Counter>());
    ASSERT_OK(chain_.Add(registry_, spec.get(), in_.back(), out_.back()));
    specs_.push_back(std::move(spec));
  }

  absl::Status Open(OperatorChain::SourceWatermarks source = {}) {
    return chain_.Open(&writer_, std::move(source), [](size_t) { return ops::OperatorContext(); });
  }

  // Feeds `v` to the head as the task does, naming a failure after it.
  absl::Status Feed(int64_t v) {
    Record r(1);
    r.SetInt(0, v);
    chain_.head().in->Add();
    return chain_.Named(0, chain_.head().op->ProcessInput(0, r));
  }

  // A snapshot of the chain (checkpoint 4) holds operator state of operator `id` alone.
  void ExpectSnapshotHoldsOnlyTheStateOf(const std::string& id) {
    proto::SubtaskState state;
    ASSERT_OK(chain_.SnapshotState(4, &state));
    ASSERT_EQ(state.operator_state_size(), 1);
    EXPECT_EQ(state.operator_state(0).operator_id(), id);
  }

  Schema schema_{{Field{"v", FieldType::kInt64}}};
  ops::OperatorRegistry registry_;
  std::map<std::string, ProbeConfig> configs_;
  std::map<std::string, Probe*> probes_;
  std::vector<std::string> log_;
  std::vector<std::unique_ptr<plan::OperatorSpec>> specs_;
  std::vector<std::shared_ptr<Counter>> in_, out_;
  std::atomic<bool> cancelled_{false};
  FakeClock clock_;
  RecordWriter writer_{&clock_, 0, 0};  // no edges: the tail's records go nowhere
  OperatorChain chain_{&cancelled_};
};

TEST_F(OperatorChainTest, OpensHeadFirstEmitsThroughAndFinishesHeadToTail) {
  Add("a", With([&](ProbeConfig& c) { c.emit_per_record = 2; c.emit_on_finish = 1; }));
  Add("b");
  ASSERT_OK(Open());
  EXPECT_TRUE(chain_.opened());
  ASSERT_OK(Feed(1));
  ASSERT_OK(chain_.Finish());
  chain_.Close();
  EXPECT_THAT(log_, ElementsAre("a.open", "b.open", "a.process:1", "b.process:1", "b.process:1001",
                                "a.finish", "b.process:900", "b.finish", "a.close", "b.close"));
  EXPECT_EQ(in_[0]->Value(), 1u);
  EXPECT_EQ(out_[0]->Value(), 3u);
  EXPECT_EQ(in_[1]->Value(), 3u);
  EXPECT_EQ(out_[1]->Value(), 3u) << "the tail counts what it emits to the writer";
  EXPECT_EQ(chain_.failed_operator(), "");
}

// Outputs count through the counters they cached at Open(): after each step (here a Flush(), as
// the task's loop ends a step) every counter is exact, batching or not.
TEST_F(OperatorChainTest, CountersAreExactAfterEveryStep) {
  Add("a", With([&](ProbeConfig& c) { c.emit_per_record = 2; }));
  Add("b", With([&](ProbeConfig& c) { c.emit_per_record = 3; }));
  Add("c", With([&](ProbeConfig& c) { c.batches = true; }));
  ASSERT_OK(Open());
  for (uint64_t fed = 1; fed <= 4; ++fed) {
    ASSERT_OK(Feed(static_cast<int64_t>(fed)));
    if (fed % 2 == 1) ASSERT_OK(Feed(static_cast<int64_t>(fed) + 100));  // steps of 1 and 2
    const uint64_t in = fed + (fed + 1) / 2;
    ASSERT_OK(chain_.Flush());
    EXPECT_EQ(in_[0]->Value(), in);
    EXPECT_EQ(out_[0]->Value(), 2 * in);
    EXPECT_EQ(in_[1]->Value(), 2 * in);
    EXPECT_EQ(out_[1]->Value(), 6 * in);
    EXPECT_EQ(in_[2]->Value(), 6 * in) << "gathered for a batch";
    EXPECT_EQ(out_[2]->Value(), 6 * in) << "the tail's";
  }
}

// A last operator that forwards records unchanged (key_by) is bypassed: the one before it emits
// into the writer, and the bypassed one's counters are exact all the same; it is opened,
// finished, snapshotted and closed, and a source head's watermarks are still published.
TEST_F(OperatorChainTest, ALastOperatorThatForwardsUnchangedIsBypassed) {
  Add("src", With([&](ProbeConfig& c) { c.emit_per_record = 2; c.emit_on_finish = 1; }), /*source=*/true);
  Add("a");
  Add("by_key", With([&](ProbeConfig& c) { c.forwards = true; c.entries = {"k"}; }));
  std::vector<std::string> published;
  OperatorChain::SourceWatermarks source;
  source.advanced = [&](int64_t w) { published.push_back(absl::StrCat("wm ", w)); };
  source.idle = [](bool) {};
  ASSERT_OK(Open(std::move(source)));
  ASSERT_OK(Feed(1));
  ASSERT_OK(Feed(2));
  ASSERT_OK(probes_["src"]->output()->EmitWatermark(12));
  ASSERT_OK(chain_.Flush());
  EXPECT_EQ(out_[0]->Value(), 4u);
  EXPECT_EQ(in_[1]->Value(), 4u);
  EXPECT_EQ(out_[1]->Value(), 4u);
  EXPECT_EQ(in_[2]->Value(), 4u) << "counted though bypassed";
  EXPECT_EQ(out_[2]->Value(), 4u);
  EXPECT_THAT(published, ElementsAre("wm 12"));
  ASSERT_OK(chain_.Finish());
  EXPECT_EQ(in_[2]->Value(), 5u);
  EXPECT_EQ(out_[2]->Value(), 5u);
  ExpectSnapshotHoldsOnlyTheStateOf("by_key");
  chain_.Close();
  EXPECT_THAT(log_, ElementsAre("src.open", "a.open", "by_key.open", "src.process:1", "a.process:1",
                                "a.process:1001", "src.process:2", "a.process:2", "a.process:1002",
                                "a.watermark:12", "src.finish", "a.process:900",
                                "a.finish", "by_key.finish", "src.snapshot:4",
                                "a.snapshot:4", "by_key.snapshot:4", "src.close",
                                "a.close", "by_key.close"));
}

// A batch the head emits at once counts as many records as the records would one by one: at
// the writer (the bypassed key_by's counters too), and through a chain output, which hands the
// next operator each record.
TEST_F(OperatorChainTest, BatchesEmittedAtOnceCountAsTheirRecords) {
  Add("src", {}, /*source=*/true);
  Add("a");
  Add("by_key", With([&](ProbeConfig& c) { c.forwards = true; c.entries = {"k"}; }));
  ASSERT_OK(Open());
  std::vector<Record> batch(5, Record(1));
  for (size_t i = 0; i < batch.size(); ++i) batch[i].SetInt(0, static_cast<int64_t>(i) + 10);
  ASSERT_OK(probes_["src"]->output()->EmitOwnedBatch(batch.data(), batch.size()));
  ASSERT_OK(probes_["a"]->output()->EmitOwnedBatch(batch.data(), 3));
  ASSERT_OK(probes_["a"]->output()->EmitOwnedBatch(batch.data(), 0));
  EXPECT_EQ(out_[0]->Value(), 5u);
  EXPECT_EQ(in_[1]->Value(), 5u);
  EXPECT_EQ(out_[1]->Value(), 8u) << "5 passed on, 3 emitted as a batch";
  EXPECT_EQ(in_[2]->Value(), 8u) << "counted though bypassed";
  EXPECT_EQ(out_[2]->Value(), 8u);
  chain_.Close();
  EXPECT_THAT(log_, ElementsAre("src.open", "a.open", "by_key.open", "a.process:10", "a.process:11",
                                "a.process:12", "a.process:13", "a.process:14", "src.close",
                                "a.close", "by_key.close"));
}

// A batch emitted at once reaches an operator with a batch path of its own as one
// ProcessOwnedBatch() (past a bypassed operator too), and from it the next one, which gathers
// it for ProcessBatch(); every counter counts the batch's records once; an empty batch calls
// nothing; once cancelled, a batch stops at the first output with nothing counted.
TEST_F(OperatorChainTest, BatchesPassOperatorsThatTakeThemWhole) {
  Add("src", {}, /*source=*/true);
  Add("a", With([&](ProbeConfig& c) { c.owned_batches = true; }));
  Add("by_key", With([&](ProbeConfig& c) { c.forwards = true; }));
  Add("b", With([&](ProbeConfig& c) { c.owned_batches = true; }));
  Add("c", With([&](ProbeConfig& c) { c.batches = true; }));
  ASSERT_OK(Open());
  std::vector<Record> batch(5, Record(1));
  for (size_t i = 0; i < batch.size(); ++i) batch[i].SetInt(0, static_cast<int64_t>(i) + 10);
  ASSERT_OK(probes_["src"]->output()->EmitOwnedBatch(batch.data(), batch.size()));
  ASSERT_OK(probes_["src"]->output()->EmitOwnedBatch(batch.data(), 0));
  ASSERT_OK(probes_["src"]->output()->EmitOwnedBatch(batch.data() + 1, 2));
  ASSERT_OK(chain_.Flush());
  for (size_t i = 0; i < 5; ++i) {
    EXPECT_EQ(out_[i]->Value(), 7u) << i;
    if (i > 0) {
      EXPECT_EQ(in_[i]->Value(), 7u) << i;
    }
  }
  cancelled_ = true;
  EXPECT_THAT(probes_["src"]->output()->EmitOwnedBatch(batch.data(), 5),
              StatusIs(absl::StatusCode::kCancelled, "task cancelled"));
  EXPECT_EQ(out_[0]->Value(), 7u);
  EXPECT_EQ(in_[1]->Value(), 7u);
  chain_.Close();
  EXPECT_THAT(log_, ElementsAre("src.open", "a.open", "by_key.open", "b.open", "c.open",
                                "a.owned_batch:5:10-14", "b.owned_batch:5:10-14",
                                "a.owned_batch:2:11-12", "b.owned_batch:2:11-12", "c.batch:7:10-12",
                                "src.close", "a.close", "by_key.close", "b.close", "c.close"));
}

// An operator that forwards unchanged between two others (a forward key_by between a join and
// an aggregate) is bypassed too: the one before it emits into the one after it, watermarks
// included; its counters count every record; it is opened, finished, snapshotted and closed. A
// head that forwards unchanged is called (the task feeds it).
TEST_F(OperatorChainTest, AnOperatorThatForwardsUnchangedMidChainIsBypassed) {
  Add("src", With([&](ProbeConfig& c) { c.forwards = true; }), /*source=*/true);
  Add("a", With([&](ProbeConfig& c) { c.emit_per_record = 2; c.emit_on_finish = 1; }));
  Add("by_key", With([&](ProbeConfig& c) { c.forwards = true; c.entries = {"k"}; }));
  Add("agg");
  ASSERT_OK(Open());
  ASSERT_OK(Feed(1));
  ASSERT_OK(probes_["a"]->output()->EmitWatermark(12));
  ASSERT_OK(chain_.Finish());
  EXPECT_EQ(in_[0]->Value(), 1u);
  EXPECT_EQ(out_[0]->Value(), 1u);
  EXPECT_EQ(in_[1]->Value(), 1u);
  EXPECT_EQ(out_[1]->Value(), 3u);
  EXPECT_EQ(in_[2]->Value(), 3u) << "counted though bypassed";
  EXPECT_EQ(out_[2]->Value(), 3u);
  EXPECT_EQ(in_[3]->Value(), 3u);
  ExpectSnapshotHoldsOnlyTheStateOf("by_key");
  chain_.Close();
  EXPECT_THAT(log_, ElementsAre("src.open", "a.open", "by_key.open", "agg.open", "src.process:1",
                                "a.process:1", "agg.process:1", "agg.process:1001",
                                "agg.watermark:12", "src.finish", "a.finish", "agg.process:900",
                                "by_key.finish", "agg.finish", "src.snapshot:4", "a.snapshot:4",
                                "by_key.snapshot:4", "agg.snapshot:4", "src.close", "a.close",
                                "by_key.close", "agg.close"));
}

// Whether the next operator prefers batches is asked once it is open (the window and the
// aggregate decide at Open()): one that does only then gets batches.
TEST_F(OperatorChainTest, AskedWhetherItPrefersBatchesOnceOpen) {
  Add("a", With([&](ProbeConfig& c) { c.emit_per_record = 3; }));
  Add("b", With([&](ProbeConfig& c) { c.batches_once_open = true; }));
  ASSERT_OK(Open());
  ASSERT_OK(Feed(1));
  ASSERT_OK(chain_.Flush());
  EXPECT_THAT(log_, ElementsAre("a.open", "b.open", "a.process:1", "b.batch:3:1-2001"));
  EXPECT_EQ(in_[1]->Value(), 3u);
}

TEST_F(OperatorChainTest, GathersBatchesForAnOperatorThatPrefersThem) {
  Add("a", With([&](ProbeConfig& c) { c.emit_per_record = 300; }));
  Add("b", With([&](ProbeConfig& c) { c.batches = true; }));
  ASSERT_OK(Open());
  ASSERT_OK(Feed(1));
  EXPECT_THAT(log_, ElementsAre("a.open", "b.open", "a.process:1", "b.batch:256:1-255001"));
  ASSERT_OK(chain_.Flush());
  EXPECT_EQ(log_.back(), "b.batch:44:256001-299001");
  ASSERT_OK(Feed(2));
  // A watermark never overtakes gathered records.
  ASSERT_OK(chain_.Named(0, chain_.head().op->ProcessWatermark(7)));
  EXPECT_THAT(std::vector<std::string>(log_.end() - 4, log_.end()),
              ElementsAre("b.batch:256:2-255002", "a.watermark:7", "b.batch:44:256002-299002",
                          "b.watermark:7"));
  EXPECT_EQ(in_[1]->Value(), 600u);
}

TEST_F(OperatorChainTest, NamesTheFirstOperatorThatFailed) {
  Add("a");
  Add("b", With([&](ProbeConfig& c) { c.fail_on = "process"; }));
  ASSERT_OK(Open());
  EXPECT_THAT(Feed(1), StatusIs(absl::StatusCode::kInternal, HasSubstr("b failed in process")));
  EXPECT_EQ(chain_.failed_operator(), "b") << "not the head, through which it returned";
  // A later failure does not rename it.
  EXPECT_THAT(chain_.Named(0, absl::UnavailableError("x")), StatusIs(absl::StatusCode::kUnavailable, ::testing::_));
  EXPECT_EQ(chain_.failed_operator(), "b");
}

TEST_F(OperatorChainTest, AFailedOpenIsNamedAndCloseClosesEveryOperator) {
  Add("a");
  Add("b", With([&](ProbeConfig& c) { c.fail_on = "open"; }));
  Add("c");
  EXPECT_THAT(Open(), StatusIs(absl::StatusCode::kInternal, HasSubstr("b failed in open")));
  EXPECT_FALSE(chain_.opened());
  EXPECT_EQ(chain_.failed_operator(), "b");
  chain_.Close();
  EXPECT_THAT(log_, ElementsAre("a.open", "b.open", "a.close", "b.close", "c.close"));
}

TEST_F(OperatorChainTest, FailuresInFinishSnapshotAndNotifyAreNamed) {
  for (const std::string call : {"finish", "snapshot", "notify"}) {
    OperatorChain chain(&cancelled_);
    configs_["x"] = With([&](ProbeConfig& c) { c.fail_on = call; });
    plan::OperatorSpec spec;
    spec.id = "x";
    spec.type = "probe";
    spec.output_schema = schema_;
    auto counter = std::make_shared<Counter>();
    ASSERT_OK(chain.Add(registry_, &spec, counter, counter));
    ASSERT_OK(chain.Open(&writer_, {}, [](size_t) { return ops::OperatorContext(); }));
    proto::SubtaskState state;
    absl::Status s = call == "finish"     ? chain.Finish()
                     : call == "snapshot" ? chain.SnapshotState(3, &state)
                                          : chain.NotifyCheckpointComplete(3);
    EXPECT_THAT(s, StatusIs(absl::StatusCode::kInternal, HasSubstr("x failed in " + call)));
    EXPECT_EQ(chain.failed_operator(), "x") << call;
  }
}

TEST_F(OperatorChainTest, ACancelledChainStopsWithoutNamingAnyone) {
  Add("a", With([&](ProbeConfig& c) { c.emit_per_record = 3; }));
  Add("b");
  ASSERT_OK(Open());
  cancelled_.store(true);
  EXPECT_THAT(Feed(1), StatusIs(absl::StatusCode::kCancelled, ::testing::_));
  EXPECT_THAT(log_, ElementsAre("a.open", "b.open", "a.process:1")) << "b saw nothing";
  EXPECT_EQ(chain_.failed_operator(), "");
}

TEST_F(OperatorChainTest, SnapshotsOperatorStateOfEveryOperator) {
  Add("a", With([&](ProbeConfig& c) { c.entries = {"p0", "p1"}; c.union_state = true; }));
  Add("b");
  Add("c", With([&](ProbeConfig& c) { c.entries = {"q"}; }));
  ASSERT_OK(Open());
  proto::SubtaskState state;
  ASSERT_OK(chain_.SnapshotState(5, &state));
  ASSERT_EQ(state.operator_state_size(), 2) << "b has none";
  EXPECT_EQ(state.operator_state(0).operator_id(), "a");
  EXPECT_EQ(state.operator_state(0).redistribution(), proto::OperatorStateHandle::UNION);
  EXPECT_THAT(state.operator_state(0).entries(), ElementsAre("p0", "p1"));
  EXPECT_EQ(state.operator_state(1).operator_id(), "c");
  EXPECT_EQ(state.operator_state(1).redistribution(), proto::OperatorStateHandle::SPLIT);
  EXPECT_THAT(state.operator_state(1).entries(), ElementsAre("q"));
  ASSERT_OK(chain_.NotifyCheckpointComplete(5));
  EXPECT_THAT(std::vector<std::string>(log_.end() - 3, log_.end()),
              ElementsAre("a.notify:5", "b.notify:5", "c.notify:5"));
}

TEST_F(OperatorChainTest, ASourceHeadsWatermarksAreTheTasks) {
  Add("src", {}, /*source=*/true);
  Add("b");
  std::vector<std::string> published;
  OperatorChain::SourceWatermarks source;
  source.advanced = [&](int64_t w) { published.push_back(absl::StrCat("wm ", w)); };
  source.idle = [&](bool idle) { published.push_back(idle ? "idle" : "active"); };
  ASSERT_OK(Open(std::move(source)));
  ops::Output* out = probes_["src"]->output();
  ASSERT_OK(out->EmitWatermark(12));
  ASSERT_OK(out->EmitWatermarkStatus(true));
  EXPECT_THAT(published, ElementsAre("wm 12", "idle"));
  EXPECT_EQ(log_.back(), "b.watermark:12");
  // b's own watermarks (not a source's) are not published.
  ASSERT_OK(probes_["b"]->output()->EmitWatermark(13));
  EXPECT_EQ(published.size(), 2u);
}

}  // namespace
}  // namespace sluice::worker
