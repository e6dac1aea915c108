#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/record_codec.h"
#include "common/status.h"
#include "operators/internal/builtins.h"
#include "operators/internal/window_keys.h"
#include "operators/top_n_options.h"
#include "plan/expr.h"
#include "state/keyed_state_backend.h"

namespace sluice::ops {
namespace {

constexpr int kRowsVersion = 1;
bool group_cache_enabled = true;  // SetTopNGroupCacheForTest

// The n best rows per group (see top_n_options.h for the semantics).
//
// State, in the keyed backend: "top_n_rows" (value) per group, under the key (per key) or the
// composite key [key record][window_end] (windowed input): the group's ranked rows, best first
// (ties in arrival order), as a version byte and the rows encoded one after the other. At
// most n rows plus the rows tied with the n-th are kept; a row that cannot rank is not stored.
// Windowed groups have an event-time timer at window_end - 1 under their composite key.
// The last group's rows stay decoded (rows_): a record of the same group (rows come in runs of
// one window, as a window fires them) neither reads nor decodes the state; it is written only
// when the group's rows change.
//
// Threading: the task thread only.
class TopNOperator final : public Operator {
 public:
  bool IsKeyed() const override { return true; }

  absl::Status Open(const OperatorContext& ctx, Output* output) override {
    SLUICE_RETURN_IF_ERROR(Operator::Open(ctx, output));
    if (ctx.keyed_state == nullptr || ctx.timers == nullptr) {
      return absl::FailedPreconditionError("top_n needs a keyed state backend and timers");
    }
    state_ = ctx.keyed_state;
    timers_ = ctx.timers;
    SLUICE_ASSIGN_OR_RETURN(o_, TypedOptions<TopNOptions>(ctx));
    in_ = &ctx.spec->input_schema;
    SLUICE_RETURN_IF_ERROR(key_.Init(*ctx.spec, ctx.max_parallelism));
    SLUICE_ASSIGN_OR_RETURN(order_, plan::CompileExpr(o_->order_by, *in_));
    rows_id_ = state_->RegisterState("top_n_rows", state::StateKind::kValue);
    cache_groups_ = group_cache_enabled;
    value_.Resize(1);
    out_.Resize(in_->size() + 1);
    return absl::OkStatus();
  }

  absl::Status Process(const Record& r) override {
    key_.Set(r);
    group_.assign(key_.bytes());
    const bool windowed = o_->window_end >= 0;
    int64_t window_end = 0;
    if (windowed) {
      window_end = r[o_->window_end].i;
      // The group was emitted (or would have been) already.
      if (window_end - 1 <= timers_->CurrentWatermark()) {
        if (ctx_.late_records_dropped != nullptr) ctx_.late_records_dropped->Add();
        return absl::OkStatus();
      }
      internal::PutOrderedInt64(window_end, &group_);
    }
    state_->SetCurrentKey(group_, key_.key_group());
    if (!cached_ || group_ != cached_group_) {
      cached_ = false;
      SLUICE_ASSIGN_OR_RETURN(bool found, LoadRows());
      if (!found && windowed) SLUICE_RETURN_IF_ERROR(timers_->RegisterEventTimeTimer(window_end - 1));
      // rows_ now hold the group's rows, or will once this record is stored.
      cached_group_.assign(group_);
      cached_ = cache_groups_;
    }

    // Insert after every row at least as good (ties keep arrival order).
    Evaluate(r, &value_);
    size_t pos = 0;
    while (pos < num_rows_ && !Better(value_[0], values_[pos][0])) ++pos;
    if (pos >= static_cast<size_t>(o_->n) && !Tied(value_[0], values_[pos - 1][0])) {
      return absl::OkStatus();  // ranks below n: not kept, nothing changes
    }
    InsertRow(pos, r);
    // Drop the rows that now rank below n (RANK(): 1 + the number of strictly better rows).
    size_t keep = num_rows_;
    for (size_t i = static_cast<size_t>(o_->n); i < num_rows_; ++i) {
      if (!Tied(values_[i][0], values_[i - 1][0])) {
        keep = i;
        break;
      }
    }
    num_rows_ = keep;
    SLUICE_RETURN_IF_ERROR(StoreRows());
    if (windowed) return absl::OkStatus();
    return EmitRows();
  }

  absl::Status OnTimer(int64_t timestamp, TimeDomain domain, absl::string_view key) override {
    cached_ = false;
    SLUICE_ASSIGN_OR_RETURN(bool found, LoadRows());
    if (!found) return absl::OkStatus();
    SLUICE_RETURN_IF_ERROR(EmitRows());
    return state_->Delete(rows_id_);
  }

 private:
  // Whether order value a ranks before b.
  bool Better(const Value& a, const Value& b) const {
    bool less;
    switch (o_->order_type) {
      case FieldType::kDouble:
        if (a.d == b.d) return false;
        less = a.d < b.d;
        break;
      case FieldType::kString:
        if (a.s == b.s) return false;
        less = a.s < b.s;
        break;
      default:
        if (a.i == b.i) return false;
        less = a.i < b.i;
        break;
    }
    return o_->descending ? !less : less;
  }
  bool Tied(const Value& a, const Value& b) const { return !Better(a, b) && !Better(b, a); }

  void Evaluate(const Record& row, Record* value) const {
    plan::EvalInto(*order_, row, o_->order_type, value, 0);
  }

  void EnsureRows(size_t n) {
    if (rows_.size() < n) {
      rows_.resize(n, Record(in_->size()));
      values_.resize(n, Record(1));
    }
  }

  void InsertRow(size_t pos, const Record& r) {
    EnsureRows(num_rows_ + 1);
    for (size_t i = num_rows_; i > pos; --i) {
      std::swap(rows_[i], rows_[i - 1]);
      std::swap(values_[i], values_[i - 1]);
    }
    for (size_t f = 0; f < in_->size(); ++f) CopyValue(in_->field(f).type, r, f, &rows_[pos], f);
    values_[pos][0] = value_[0];
    ++num_rows_;
  }

  // The current group's rows into rows_ / values_ (num_rows_); false when it has none.
  absl::StatusOr<bool> LoadRows() {
    num_rows_ = 0;
    SLUICE_ASSIGN_OR_RETURN(bool found, state_->Get(rows_id_, &buf_));
    if (!found) return false;
    absl::string_view body;
    SLUICE_ASSIGN_OR_RETURN(int version, ReadStateVersion(ctx_.state_origin, "top_n rows", buf_, kRowsVersion, &body));
    (void)version;
    RecordDecoder dec(in_, body);
    while (!dec.Done()) {
      EnsureRows(num_rows_ + 1);
      absl::Status s = dec.Next(&rows_[num_rows_]);
      if (!s.ok()) return ctx_.state_origin.DataLoss(absl::StrCat("top_n rows do not decode: ", s.message()));
      Evaluate(rows_[num_rows_], &values_[num_rows_]);
      ++num_rows_;
    }
    return true;
  }

  absl::Status StoreRows() {
    buf_.assign(1, static_cast<char>(kRowsVersion));
    for (size_t i = 0; i < num_rows_; ++i) EncodeRecord(*in_, rows_[i], &buf_);
    return state_->Put(rows_id_, buf_);
  }

  // Emits the group's rows, best first, each with its rank.
  absl::Status EmitRows() {
    int64_t rank = 1;
    for (size_t i = 0; i < num_rows_; ++i) {
      if (i > 0 && !Tied(values_[i][0], values_[i - 1][0])) rank = static_cast<int64_t>(i) + 1;
      for (size_t f = 0; f < in_->size(); ++f) CopyValue(in_->field(f).type, rows_[i], f, &out_, f);
      out_[in_->size()].i = rank;
      SLUICE_RETURN_IF_ERROR(output_->Emit(out_));
    }
    return absl::OkStatus();
  }

  const TopNOptions* o_ = nullptr;
  const Schema* in_ = nullptr;
  state::KeyedStateBackend* state_ = nullptr;
  TimerService* timers_ = nullptr;
  state::StateId rows_id_ = 0;
  internal::RecordKey key_;
  std::unique_ptr<plan::Expr> order_;

  // Scratch, reused per record.
  std::string group_;
  std::string cached_group_;  // the group whose rows rows_ hold, when cached_
  bool cached_ = false;
  bool cache_groups_ = true;  // keep the last group's rows decoded (SetTopNGroupCacheForTest)
  std::string buf_;
  std::vector<Record> rows_;    // the group's rows (the first num_rows_), best first
  std::vector<Record> values_;  // their order values (one field)
  size_t num_rows_ = 0;
  Record value_;  // the incoming row's order value
  Record out_;
};

}  // namespace

std::unique_ptr<Operator> MakeTopN() { return std::make_unique<TopNOperator>(); }

void SetTopNGroupCacheForTest(bool enabled) { group_cache_enabled = enabled; }

}  // namespace sluice::ops
