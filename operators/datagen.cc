#include "operators/internal/builtins.h"
#include "operators/internal/source_pacing.h"

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "operators/datagen_options.h"
#include "operators/watermark_generator.h"
#include "plan/expr.h"

namespace sluice::ops {
namespace {

using plan::CompileExpr;
using plan::Expr;

// Generates records deterministically from their sequence number: every field is an
// expression over `seq`. The sequence space is cut into splits (base, stride): subtask i of n
// starts with split (i, n), producing seq = i, i+n, i+2n, ... below `count` (or forever). A
// split's position is the source's checkpointed state, so replay after recovery gives the
// same records; on rescale, splits are dealt round-robin to the new subtasks. `rate` is
// records/s for the whole source (0: unlimited). With `event_time`, the subtask emits
// bounded-out-of-orderness watermarks over its records (one watermark split per sequence
// split) every watermark interval of processing time, and also as soon as the watermark has
// advanced by the interval in event time (a generator runs far ahead of real time: at 2M
// records/s and 100 records per ms of event time, 200 ms of processing time are 4 s of event
// time, which the joins and windows downstream would keep in state), and the end of event time
// when its count is reached.
class DatagenSource final : public SourceOperator {
 public:
  absl::Status Open(const OperatorContext& ctx, Output* output) override {
    SLUICE_RETURN_IF_ERROR(SourceOperator::Open(ctx, output));
    SLUICE_ASSIGN_OR_RETURN(const DatagenOptions* o, TypedOptions<DatagenOptions>(ctx));
    count_ = o->count;
    for (const auto& f : o->fields) {
      SLUICE_ASSIGN_OR_RETURN(auto e, CompileExpr(f.expr, DatagenSeqSchema()));
      exprs_.push_back(std::move(e));
    }
    seq_record_.Resize(1);
    out_.Resize(exprs_.size());
    const Schema& schema = ctx.spec->output_schema;
    for (size_t i = 0; i < exprs_.size(); ++i) {
      // Integers without null: evaluated a batch at a time (the same values, see Poll()).
      if (!exprs_[i]->nullable() && IsIntegral(exprs_[i]->type()) && IsIntegral(schema.field(i).type)) {
        batched_.push_back(i);
      } else {
        unbatched_.push_back(i);
      }
    }
    seq_batch_.assign(Expr::kEvalBatch, Record());
    for (Record& r : seq_batch_) r.Resize(1);
    out_batch_.assign(Expr::kEvalBatch, Record());
    for (Record& r : out_batch_) r.Resize(exprs_.size());
    batch_split_.resize(Expr::kEvalBatch);
    columns_.resize(batched_.size() * Expr::kEvalBatch);
    if (ctx.restored) {
      for (const std::string& entry : ctx.restored_state) {
        int64_t v[3] = {0, 0, 0};
        SLUICE_RETURN_IF_ERROR(DecodeSplitState(ctx.state_origin, "datagen split", entry, /*format0=*/true, v));
        if (v[1] <= 0 || v[0] < 0 || v[2] < v[0]) {
          return ctx.state_origin.DataLoss(absl::StrCat("datagen split (", v[0], ", ", v[1], ", ", v[2], ") is not a split"));
        }
        splits_.push_back(Split{v[0], v[1], v[2]});
      }
    } else {
      splits_.push_back(Split{ctx.subtask, ctx.parallelism, ctx.subtask});
    }
    start_nanos_ = ctx.clock->NowNanos();
    pacer_ = SourcePacer(o->rate, ctx.parallelism, start_nanos_);
    if (o->event_time.has_value()) {
      const plan::EventTimeSpec& et = *o->event_time;
      watermarks_ = std::make_unique<SplitWatermarks>(et.max_out_of_orderness_ms, et.idle_timeout_ms);
      // One watermark split per sequence split: after a rescale a subtask may interleave
      // splits that stopped at different points, each in order on its own.
      for (size_t i = 0; i < splits_.size(); ++i) watermarks_->AddSplit(start_nanos_);
      watermark_interval_nanos_ = (ctx.job != nullptr ? ctx.job->watermark_interval_ms : 200) * 1'000'000;
      next_watermark_nanos_ = start_nanos_ + watermark_interval_nanos_;
      ts_field_ = et.field_index;
      for (size_t b = 0; b < batched_.size(); ++b) {
        if (static_cast<int>(batched_[b]) == ts_field_) ts_column_ = b;
      }
    }
    return absl::OkStatus();
  }

  absl::StatusOr<State> Poll(int max_records, int64_t* wake_at_nanos) override {
    const Schema& schema = ctx_.spec->output_schema;
    if (watermarks_ != nullptr) {
      const int64_t now = ctx_.clock->NowNanos();
      if (now >= next_watermark_nanos_) {
        SLUICE_RETURN_IF_ERROR(watermarks_->OnPeriodic(now, output_));
        next_watermark_nanos_ = now + watermark_interval_nanos_;
      } else {
        // A generator may run far ahead of real time: also every interval of event time.
        SLUICE_RETURN_IF_ERROR(watermarks_->EmitIfAdvanced(watermark_interval_nanos_ / 1'000'000, output_));
      }
    }
    if (!pacer_.limited()) return PollBatches(max_records);
    for (int n = 0; n < max_records; ++n) {
      if (!NextSplitWithRecords(splits_, count_, &current_)) return State::kEnd;
      if (pacer_.limited()) {
        int64_t due = 0;
        if (!pacer_.Ready(emitted_, ctx_.clock->NowNanos(), &due)) {
          // Wake for the next record or the next watermark, whichever is first.
          *wake_at_nanos = watermarks_ != nullptr ? std::min(due, next_watermark_nanos_) : due;
          return State::kWait;
        }
      }
      Split& split = splits_[current_];
      seq_record_.SetInt(0, split.next);
      for (size_t i = 0; i < exprs_.size(); ++i) {
        plan::EvalInto(*exprs_[i], seq_record_, schema.field(i).type, &out_, i);
      }
      if (watermarks_ != nullptr &&
          watermarks_->OnEvent(static_cast<int>(current_), out_.GetInt(ts_field_))) {
        SLUICE_RETURN_IF_ERROR(output_->EmitWatermarkStatus(false));
      }
      // Every value of out_ is evaluated again for the next record.
      SLUICE_RETURN_IF_ERROR(output_->EmitOwned(&out_));
      split.next += split.stride;
      ++emitted_;
      if (splits_.size() > 1) current_ = (current_ + 1) % splits_.size();
    }
    return State::kMore;
  }

  // Poll() without a rate: up to `max_records` records, in batches of up to kEvalBatch whose
  // sequence numbers are taken first (the splits advanced as the loop of Poll() advances
  // them), then the integer fields evaluated a batch at a time (Expr::EvalIntBatch()), then
  // per record the other fields and the watermark split, and the batch emitted at once
  // (Output::EmitOwnedBatch(); cut where a split becomes active, as Poll() orders them).
  absl::StatusOr<State> PollBatches(int max_records) {
    if (splits_.size() == 1 && unbatched_.empty()) return PollColumns(max_records);
    const Schema& schema = ctx_.spec->output_schema;
    const size_t width = Expr::kEvalBatch;
    int left = max_records;
    while (left > 0) {
      const size_t want = std::min<size_t>(static_cast<size_t>(left), width);
      size_t n = 0;
      for (; n < want && NextSplitWithRecords(splits_, count_, &current_); ++n) {
        Split& split = splits_[current_];
        seq_batch_[n].SetInt(0, split.next);
        batch_split_[n] = current_;
        split.next += split.stride;
        if (splits_.size() > 1) current_ = (current_ + 1) % splits_.size();
      }
      for (size_t b = 0; b < batched_.size(); ++b) {
        exprs_[batched_[b]]->EvalIntBatch(seq_batch_.data(), n, &columns_[b * width]);
      }
      size_t unsent = 0;  // out_batch_[unsent, j) wait to be emitted
      for (size_t j = 0; j < n; ++j) {
        Record& out = out_batch_[j];
        for (size_t b = 0; b < batched_.size(); ++b) out.SetInt(batched_[b], columns_[b * width + j]);
        for (size_t i : unbatched_) {
          plan::EvalInto(*exprs_[i], seq_batch_[j], schema.field(i).type, &out, i);
        }
        if (watermarks_ != nullptr &&
            watermarks_->OnEvent(static_cast<int>(batch_split_[j]), out.GetInt(ts_field_))) {
          // The records before this one go first, then the status change, as Poll() emits them.
          SLUICE_RETURN_IF_ERROR(output_->EmitOwnedBatch(&out_batch_[unsent], j - unsent));
          unsent = j;
          SLUICE_RETURN_IF_ERROR(output_->EmitWatermarkStatus(false));
        }
      }
      // Every value of out_batch_ is set again for the next batch.
      SLUICE_RETURN_IF_ERROR(output_->EmitOwnedBatch(&out_batch_[unsent], n - unsent));
      emitted_ += static_cast<int64_t>(n);
      if (n < want) return State::kEnd;
      left -= static_cast<int>(n);
    }
    return State::kMore;
  }

  // PollBatches() of one split whose fields are all batched integers (the usual case: no
  // rescale, no strings): the batch's sequence numbers are one stride apart, its values are
  // copied from the columns into the records field by field, and its watermark split sees one
  // event, the batch's largest timestamp (the same state as one event per record: the split's
  // maximum, and an idle output turns active before the batch's first record).
  absl::StatusOr<State> PollColumns(int max_records) {
    const size_t width = Expr::kEvalBatch;
    const size_t fields = batched_.size();
    Split& split = splits_[0];
    int left = max_records;
    while (left > 0) {
      size_t n = std::min<size_t>(static_cast<size_t>(left), width);
      if (count_ >= 0) {
        const int64_t remaining =
            split.next < count_ ? (count_ - 1 - split.next) / split.stride + 1 : 0;  // no overflow
        n = static_cast<size_t>(std::min<int64_t>(static_cast<int64_t>(n), remaining));
      }
      if (n == 0) return State::kEnd;
      Record* const seq = seq_batch_.data();
      int64_t next = split.next;
      for (size_t j = 0; j < n; ++j, next += split.stride) seq[j][0].i = next;
      split.next = next;
      int64_t* const columns = columns_.data();
      for (size_t b = 0; b < fields; ++b) {
        exprs_[batched_[b]]->EvalIntBatch(seq, n, &columns[b * width]);
      }
      Record* const out = out_batch_.data();
      for (size_t b = 0; b < fields; ++b) {
        const size_t field = batched_[b];
        const int64_t* const column = &columns[b * width];
        for (size_t j = 0; j < n; ++j) out[j][field].i = column[j];
      }
      if (watermarks_ != nullptr) {
        const int64_t* const ts = &columns[ts_column_ * width];
        int64_t max_ts = ts[0];
        for (size_t j = 1; j < n; ++j) max_ts = std::max(max_ts, ts[j]);
        if (watermarks_->OnEvent(0, max_ts)) SLUICE_RETURN_IF_ERROR(output_->EmitWatermarkStatus(false));
      }
      // Every value of out_batch_ is set again for the next batch.
      SLUICE_RETURN_IF_ERROR(output_->EmitOwnedBatch(out, n));
      emitted_ += static_cast<int64_t>(n);
      left -= static_cast<int>(n);
    }
    return State::kMore;
  }

  // Bounded: event time ends with the input.
  absl::Status Finish() override {
    if (watermarks_ == nullptr) return absl::OkStatus();
    return output_->EmitWatermark(kMaxWatermark);
  }

  absl::Status SnapshotState(int64_t, std::vector<std::string>* entries) override {
    for (const Split& split : splits_) entries->push_back(EncodeSplitState({split.base, split.stride, split.next}));
    return absl::OkStatus();
  }

 private:
  struct Split {
    int64_t base;
    int64_t stride;
    int64_t next;
  };
  int64_t count_ = -1;
  SourcePacer pacer_;
  int64_t start_nanos_ = 0;
  int64_t emitted_ = 0;
  std::vector<Split> splits_;
  size_t current_ = 0;
  std::vector<std::unique_ptr<Expr>> exprs_;
  Record seq_record_;
  Record out_;
  // PollBatches(): the fields evaluated a batch at a time (batched_) and the others, a batch's
  // seq records, its output records and their splits, and the batched fields' values (field b
  // of record j at columns_[b * kEvalBatch + j]). out_ is Poll()'s record by record.
  std::vector<size_t> batched_;
  std::vector<size_t> unbatched_;
  std::vector<Record> seq_batch_;
  std::vector<Record> out_batch_;
  std::vector<size_t> batch_split_;
  std::vector<int64_t> columns_;
  // Event time (null without `event_time`).
  std::unique_ptr<SplitWatermarks> watermarks_;
  int ts_field_ = -1;
  size_t ts_column_ = 0;  // the event-time field's column (PollColumns())
  int64_t watermark_interval_nanos_ = 0;
  int64_t next_watermark_nanos_ = 0;
};

}  // namespace

std::unique_ptr<Operator> MakeDatagen() { return std::make_unique<DatagenSource>(); }

}  // namespace sluice::ops
