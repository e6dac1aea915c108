#include "worker/internal/operator_chain.h"

#include <algorithm>
#include <limits>

#include "absl/base/optimization.h"
#include "common/status.h"

namespace sluice::worker {

namespace {
// Most records a chain output gathers for an operator that prefers batches.
constexpr size_t kChainBatch = 256;
}  // namespace

absl::Status ChainedOperator::Watermark(int64_t watermark_ms) {
  if (timers != nullptr) SLUICE_RETURN_IF_ERROR(timers->AdvanceWatermark(watermark_ms, op.get()));
  return op->ProcessWatermark(watermark_ms);
}

// Operator `from_index` emits here into the next one, or past the ones after it that forward
// unchanged (see the class comment of OperatorChain). Wired when constructed, before the
// operators open, and again once they all are: that decides where its records go and whether
// they are gathered.
class OperatorChain::ChainOutput final : public ops::Output {
 public:
  // `source`: set when `from` is the task's source, whose watermarks are the task's.
  ChainOutput(OperatorChain* chain, size_t from_index, const SourceWatermarks* source)
      : chain_(chain),
        cancelled_(chain->cancelled_),
        from_index_(from_index),
        from_(chain->ops_[from_index].get()),
        out_(from_->out.get()),
        source_(source) {
    Wire();
  }

  // Picks the operator the records go to: the next one, past those that forward unchanged (and
  // have no timers) but the chain's last, whose counters then count the records too. Gathers
  // batches when that operator PrefersBatches() now that it is open.
  void Wire() {
    const auto& ops = chain_->ops_;
    to_index_ = from_index_ + 1;
    bypassed_.clear();
    while (to_index_ + 1 < ops.size() && Bypassable(*ops[to_index_])) {
      bypassed_.push_back(ops[to_index_]->in.get());
      bypassed_.push_back(ops[to_index_]->out.get());
      ++to_index_;
    }
    to_ = ops[to_index_].get();
    to_op_ = to_->op.get();
    in_ = to_->in.get();
    batching_ = to_op_->PrefersBatches();
    whole_batches_ = !batching_ && to_op_->TakesOwnedBatches();
    if (batching_ && batch_.empty()) {
      batch_.assign(kChainBatch, Record(from_->spec->output_schema.size()));
      for (const Field& f : from_->spec->output_schema.fields()) types_.push_back(f.type);
    }
  }

  absl::Status Emit(const Record& r) override {
    if (cancelled_->load(std::memory_order_relaxed)) return absl::CancelledError("task cancelled");
    CountOut();
    if (batching_) {
      Record& copy = batch_[gathered_++];
      for (size_t i = 0; i < types_.size(); ++i) CopyValue(types_[i], r, i, &copy, i);
      return gathered_ == batch_.size() ? Flush() : absl::OkStatus();
    }
    in_->Add();
    absl::Status s = to_op_->Process(r);
    if (ABSL_PREDICT_FALSE(!s.ok())) return chain_->Named(to_index_, std::move(s));
    return s;
  }
  // As Emit(), but the next operator may take the record's values (ProcessOwned()); a gathered
  // batch copies them as Emit() does.
  absl::Status EmitOwned(Record* r) override {
    if (batching_) return Emit(*r);
    if (cancelled_->load(std::memory_order_relaxed)) return absl::CancelledError("task cancelled");
    CountOut();
    in_->Add();
    absl::Status s = to_op_->ProcessOwned(r);
    if (ABSL_PREDICT_FALSE(!s.ok())) return chain_->Named(to_index_, std::move(s));
    return s;
  }
  // EmitOwned() of records[0..n): to an operator that TakesOwnedBatches() with one cancelled
  // check and one add per counter, handed on with one ProcessOwnedBatch(); else record by record
  // (a gathered batch copies them as Emit() does).
  absl::Status EmitOwnedBatch(Record* records, size_t n) override {
    if (!whole_batches_) return Output::EmitOwnedBatch(records, n);
    if (n == 0) return absl::OkStatus();
    if (cancelled_->load(std::memory_order_relaxed)) return absl::CancelledError("task cancelled");
    CountOut(n);
    in_->Add(n);
    absl::Status s = to_op_->ProcessOwnedBatch(records, n);
    if (ABSL_PREDICT_FALSE(!s.ok())) return chain_->Named(to_index_, std::move(s));
    return s;
  }
  absl::Status EmitWatermark(int64_t watermark_ms) override {
    SLUICE_RETURN_IF_ERROR(Flush());
    if (source_ != nullptr) source_->advanced(watermark_ms);
    return chain_->Named(to_index_, to_->Watermark(watermark_ms));
  }
  absl::Status EmitWatermarkStatus(bool idle) override {
    SLUICE_RETURN_IF_ERROR(Flush());
    if (source_ != nullptr) source_->idle(idle);
    return chain_->Named(to_index_, to_->op->ProcessWatermarkStatus(idle));
  }
  // Hands the gathered records to the next operator.
  absl::Status Flush() {
    if (gathered_ == 0) return absl::OkStatus();
    const size_t n = gathered_;
    gathered_ = 0;
    in_->Add(n);
    return chain_->Named(to_index_, to_op_->ProcessBatch(0, batch_.data(), n));
  }

 private:
  // An operator records may pass without a call: it forwards them (and watermarks) unchanged
  // and has no timers to fire on a watermark.
  static bool Bypassable(const ChainedOperator& o) {
    return o.op->ForwardsUnchanged() && !o.op->PrefersBatches() && o.timers == nullptr;
  }
  // Counts a record out of `from` and through the bypassed operators.
  void CountOut(size_t n = 1) {
    out_->Add(n);
    for (Counter* c : bypassed_) c->Add(n);
  }

  OperatorChain* chain_;
  const std::atomic<bool>* const cancelled_;
  const size_t from_index_;
  ChainedOperator* const from_;
  Counter* const out_;  // `from`'s
  const SourceWatermarks* source_;
  // Set by Wire(). Per record, one load each: the next operator and its `in` counter.
  size_t to_index_ = 0;
  ChainedOperator* to_ = nullptr;
  ops::Operator* to_op_ = nullptr;
  Counter* in_ = nullptr;
  std::vector<Counter*> bypassed_;  // `in` and `out` of each operator between from and to
  bool batching_ = false;
  bool whole_batches_ = false;  // !batching_ and the next operator TakesOwnedBatches()
  std::vector<Record> batch_;     // batching_: kChainBatch reused records
  std::vector<FieldType> types_;  // ... of the records' schema
  size_t gathered_ = 0;           // ... of which the first are gathered
};

// The chain's last operator emits here: to the task's record writer (no edge for a sink). So
// does the operator before a last one that ForwardsUnchanged(): then `past` is that last one,
// whose counters count the records too.
class OperatorChain::TailOutput final : public ops::Output {
 public:
  // `source`: set when `from` is the task's source, whose watermarks are the task's.
  TailOutput(ChainedOperator* from, RecordWriter* writer, const SourceWatermarks* source,
             ChainedOperator* past = nullptr)
      : out_(from->out.get()),
        past_in_(past != nullptr ? past->in.get() : nullptr),
        past_out_(past != nullptr ? past->out.get() : nullptr),
        writer_(writer),
        source_(source) {}
  absl::Status Emit(const Record& r) override {
    Count();
    return writer_->Emit(r);
  }
  absl::Status EmitOwned(Record* r) override {
    Count();
    return writer_->Emit(*r);
  }
  absl::Status EmitOwnedBatch(Record* records, size_t n) override {
    out_->Add(n);
    if (past_in_ != nullptr) {
      past_in_->Add(n);
      past_out_->Add(n);
    }
    return writer_->EmitBatch(records, n);
  }
  absl::Status EmitSide(int side_output, const Record& r) override {
    return writer_->EmitSide(side_output, r);
  }
  absl::Status EmitWatermark(int64_t watermark_ms) override {
    if (source_ != nullptr) source_->advanced(watermark_ms);
    return writer_->EmitWatermark(watermark_ms);
  }
  absl::Status EmitWatermarkStatus(bool idle) override {
    if (source_ != nullptr) source_->idle(idle);
    return writer_->EmitWatermarkStatus(idle);
  }

 private:
  void Count() {
    out_->Add();
    if (past_in_ != nullptr) {
      past_in_->Add();
      past_out_->Add();
    }
  }

  Counter* const out_;  // `from`'s
  Counter* const past_in_;   // the bypassed operator's, or null
  Counter* const past_out_;  // ...
  RecordWriter* writer_;
  const SourceWatermarks* source_;
};

OperatorChain::OperatorChain(const std::atomic<bool>* cancelled) : cancelled_(cancelled) {}

OperatorChain::~OperatorChain() = default;

absl::Status OperatorChain::Add(const ops::OperatorRegistry& registry,
                                const plan::OperatorSpec* spec, std::shared_ptr<Counter> in,
                                std::shared_ptr<Counter> out) {
  auto slot = std::make_unique<ChainedOperator>();
  slot->spec = spec;
  slot->in = std::move(in);
  slot->out = std::move(out);
  SLUICE_ASSIGN_OR_RETURN(slot->op, registry.Create(*spec));
  ops_.push_back(std::move(slot));
  return absl::OkStatus();
}

absl::Status OperatorChain::Open(RecordWriter* writer, SourceWatermarks source,
                                 const std::function<ops::OperatorContext(size_t i)>& context) {
  source_ = std::move(source);
  const SourceWatermarks* head_source = ops_[0]->spec->is_source() ? &source_ : nullptr;
  const size_t n = ops_.size();
  // A last operator that forwards everything unchanged (key_by before its exchange) is
  // bypassed: the one before it emits straight into the writer.
  const ChainedOperator& last = *ops_.back();
  const bool bypass = n >= 2 && last.op->ForwardsUnchanged() && !last.op->PrefersBatches() &&
                      last.timers == nullptr;
  for (size_t i = 0; i + 1 < n; ++i) {
    if (bypass && i + 2 == n) break;
    chain_outputs_.push_back(std::make_unique<ChainOutput>(this, i, i == 0 ? head_source : nullptr));
  }
  tail_output_ = std::make_unique<TailOutput>(ops_.back().get(), writer, n == 1 ? head_source : nullptr);
  if (bypass) {
    bypass_output_ = std::make_unique<TailOutput>(ops_[n - 2].get(), writer,
                                                  n == 2 ? head_source : nullptr, ops_.back().get());
  }
  for (size_t i = 0; i < n; ++i) {
    ops::Output* out = i < chain_outputs_.size()
                           ? static_cast<ops::Output*>(chain_outputs_[i].get())
                           : (bypass && i + 2 == n ? bypass_output_.get() : tail_output_.get());
    SLUICE_RETURN_IF_ERROR(Named(i, ops_[i]->op->Open(context(i), out)));
  }
  // Operators may decide at Open() whether they prefer batches (window, aggregate).
  for (auto& out : chain_outputs_) {
    SLUICE_RETURN_IF_ERROR(out->Flush());  // nothing, unless an Open() emitted
    out->Wire();
  }
  opened_ = true;
  return absl::OkStatus();
}

absl::Status OperatorChain::Named(size_t i, absl::Status s) {
  if (!s.ok() && failed_op_.empty() && s.code() != absl::StatusCode::kCancelled) {
    failed_op_ = ops_[i]->spec->id;
  }
  return s;
}

absl::Status OperatorChain::Flush() {
  for (auto& out : chain_outputs_) SLUICE_RETURN_IF_ERROR(out->Flush());
  return absl::OkStatus();
}

absl::Status OperatorChain::Finish() {
  for (size_t i = 0; i < ops_.size(); ++i) {
    SLUICE_RETURN_IF_ERROR(Named(i, ops_[i]->op->Finish()));
    SLUICE_RETURN_IF_ERROR(Flush());
  }
  return absl::OkStatus();
}

absl::Status OperatorChain::FireProcessingTimers() {
  for (size_t i = 0; i < ops_.size(); ++i) {
    ops::TimerService* timers = ops_[i]->timers.get();
    if (timers == nullptr || timers->CurrentProcessingTime() < timers->NextProcessingTime()) continue;
    SLUICE_RETURN_IF_ERROR(Named(i, timers->FireProcessingTimers(ops_[i]->op.get())));
    SLUICE_RETURN_IF_ERROR(Flush());
  }
  return absl::OkStatus();
}

int64_t OperatorChain::ProcessingTimerDeadline(int64_t now_nanos) const {
  int64_t deadline = std::numeric_limits<int64_t>::max();
  for (const auto& slot : ops_) {
    if (slot->timers == nullptr) continue;
    const int64_t next_ms = slot->timers->NextProcessingTime();
    if (next_ms == std::numeric_limits<int64_t>::max()) continue;
    const int64_t now_ms = slot->timers->CurrentProcessingTime();
    // Due (or unknown: INT64_MIN after a restore): now. Far ones: check again within an hour.
    const int64_t wait_ms = next_ms <= now_ms ? 0 : std::min<int64_t>(next_ms - now_ms, 3'600'000);
    deadline = std::min(deadline, now_nanos + wait_ms * 1'000'000);
  }
  return deadline;
}

absl::Status OperatorChain::SnapshotState(int64_t id, proto::SubtaskState* state) {
  for (size_t i = 0; i < ops_.size(); ++i) {
    std::vector<std::string> entries;
    SLUICE_RETURN_IF_ERROR(Named(i, ops_[i]->op->SnapshotState(id, &entries)));
    if (entries.empty()) continue;
    auto* h = state->add_operator_state();
    h->set_operator_id(ops_[i]->spec->id);
    h->set_redistribution(ops_[i]->op->UnionState() ? proto::OperatorStateHandle::UNION
                                                    : proto::OperatorStateHandle::SPLIT);
    for (auto& e : entries) h->add_entries(std::move(e));
  }
  return absl::OkStatus();
}

absl::Status OperatorChain::NotifyCheckpointComplete(int64_t id) {
  for (size_t i = 0; i < ops_.size(); ++i) {
    SLUICE_RETURN_IF_ERROR(Named(i, ops_[i]->op->NotifyCheckpointComplete(id)));
  }
  return absl::OkStatus();
}

void OperatorChain::Close() {
  for (auto& slot : ops_) slot->op->Close();
}

}  // namespace sluice::worker
