#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "common/record_codec.h"
#include "common/state_format.h"
#include "common/status.h"
#include "common/watermark.h"
#include "operators/internal/builtins.h"
#include "operators/internal/window_keys.h"
#include "operators/top_n_options.h"
#include "plan/expr.h"
#include "state/keyed_state_backend.h"

namespace sluice::ops {
namespace {

constexpr int kRowsVersion = 1;
// local_top_n's operator state entries. Format 1: a group's rows, [1][rows]. Format 2 (union
// redistribution): [2][kind][body], kind kLocalGroupEntry (a group's rows) or
// kLocalWatermarkEntry (the subtask's watermark, fixed64 LE; one per subtask).
constexpr int kLocalRowsVersion = 2;
constexpr char kLocalGroupEntry = 0;
constexpr char kLocalWatermarkEntry = 1;
// top_n's operator state: its watermark, [1][fixed64 LE], one entry per subtask (union).
constexpr int kTopNWatermarkVersion = 1;
bool group_cache_enabled = true;  // SetTopNGroupCacheForTest

// One group's ranked rows, best first (ties in arrival order): at most n rows plus the rows
// tied with the n-th (RANK() <= n). Reused across groups (Clear()): allocates only to grow.
// Not thread-safe (a task thread's).
class RankedRows {
 public:
  RankedRows(const Schema* schema, FieldType order_type, bool descending, int64_t n)
      : schema_(schema), order_type_(order_type), descending_(descending),
        n_(static_cast<size_t>(n)) {}

  size_t size() const { return size_; }
  const Record& row(size_t i) const { return rows_[i]; }
  const Value& value(size_t i) const { return values_[i][0]; }
  // Whether row i (> 0) ranks the same as row i - 1.
  bool TiedWithPrevious(size_t i) const { return Tied(values_[i][0], values_[i - 1][0]); }
  void Clear() { size_ = 0; }

  // Offers `r`, whose order value is `v`: kept (after every row at least as good) when it
  // ranks within n, dropping the rows that then rank below n. Returns whether the rows changed.
  bool Offer(const Record& r, const Value& v) {
    size_t pos = 0;
    while (pos < size_ && !Better(v, values_[pos][0])) ++pos;
    if (pos >= n_ && !Tied(v, values_[pos - 1][0])) return false;  // ranks below n
    Grow(size_ + 1);
    for (size_t i = size_; i > pos; --i) {
      std::swap(rows_[i], rows_[i - 1]);
      std::swap(values_[i], values_[i - 1]);
    }
    for (size_t f = 0; f < schema_->size(); ++f) CopyValue(schema_->field(f).type, r, f, &rows_[pos], f);
    values_[pos][0] = v;
    ++size_;
    // RANK() is 1 + the number of strictly better rows.
    for (size_t i = n_; i < size_; ++i) {
      if (!Tied(values_[i][0], values_[i - 1][0])) {
        size_ = i;
        break;
      }
    }
    return true;
  }

  // Appends a row known to rank after the others (a stored list, decoded in order): its slot
  // and its order value's slot (one field), both to be filled by the caller.
  void AppendSlot(Record** row, Record** value) {
    Grow(size_ + 1);
    *row = &rows_[size_];
    *value = &values_[size_];
    ++size_;
  }

 private:
  // Whether order value a ranks before b.
  bool Better(const Value& a, const Value& b) const {
    bool less;
    switch (order_type_) {
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
    return descending_ ? !less : less;
  }
  bool Tied(const Value& a, const Value& b) const { return !Better(a, b) && !Better(b, a); }

  void Grow(size_t n) {
    if (rows_.size() < n) {
      rows_.resize(n, Record(schema_->size()));
      values_.resize(n, Record(1));
    }
  }

  const Schema* schema_;
  FieldType order_type_;
  bool descending_;
  size_t n_;
  std::vector<Record> rows_;    // the first size_ are the group's rows
  std::vector<Record> values_;  // their order values (one field)
  size_t size_ = 0;
};

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
// The watermark seen at a checkpoint is union operator state: after a restore, rows are judged
// late against at least the smallest any old subtask had seen, so that a row of a group that
// fired before the checkpoint is dropped (and counted) as it was before, instead of starting
// the group again and emitting it a second time at the next watermark.
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
    rows_ = std::make_unique<RankedRows>(in_, o_->order_type, o_->descending, o_->n);
    value_.Resize(1);
    out_.Resize(in_->size() + 1);
    SLUICE_RETURN_IF_ERROR(ReadSmallestWatermark(ctx.state_origin, "top_n watermark state",
                                                 ctx.restored_state, kTopNWatermarkVersion,
                                                 &restored_watermark_));
    return absl::OkStatus();
  }

  absl::Status SnapshotState(int64_t, std::vector<std::string>* entries) override {
    entries->push_back(WatermarkStateEntry(kTopNWatermarkVersion, Watermark()));
    return absl::OkStatus();
  }
  bool UnionState() const override { return true; }

  absl::Status Process(const Record& r) override {
    key_.Set(r);
    group_.assign(key_.bytes());
    const bool windowed = o_->window_end >= 0;
    int64_t window_end = 0;
    if (windowed) {
      window_end = r[o_->window_end].i;
      // The group was emitted (or would have been) already.
      if (window_end - 1 <= Watermark()) {
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

    Evaluate(r, &value_);
    if (!rows_->Offer(r, value_[0])) return absl::OkStatus();  // ranks below n: nothing changes
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
  void Evaluate(const Record& row, Record* value) const {
    plan::EvalInto(*order_, row, o_->order_type, value, 0);
  }
  // The watermark rows are judged late by: the input's, or the restored one if higher.
  int64_t Watermark() const { return std::max(timers_->CurrentWatermark(), restored_watermark_); }

  // The current group's rows into rows_; false when it has none.
  absl::StatusOr<bool> LoadRows() {
    rows_->Clear();
    SLUICE_ASSIGN_OR_RETURN(bool found, state_->Get(rows_id_, &buf_));
    if (!found) return false;
    absl::string_view body;
    SLUICE_ASSIGN_OR_RETURN(int version, ReadStateVersion(ctx_.state_origin, "top_n rows", buf_, kRowsVersion, &body));
    (void)version;
    RecordDecoder dec(in_, body);
    while (!dec.Done()) {
      Record* row;
      Record* value;
      rows_->AppendSlot(&row, &value);
      absl::Status s = dec.Next(row);
      if (!s.ok()) return ctx_.state_origin.DataLoss(absl::StrCat("top_n rows do not decode: ", s.message()));
      Evaluate(*row, value);
    }
    return true;
  }

  absl::Status StoreRows() {
    buf_.assign(1, static_cast<char>(kRowsVersion));
    for (size_t i = 0; i < rows_->size(); ++i) EncodeRecord(*in_, rows_->row(i), &buf_);
    return state_->Put(rows_id_, buf_);
  }

  // Emits the group's rows, best first, each with its rank.
  absl::Status EmitRows() {
    int64_t rank = 1;
    for (size_t i = 0; i < rows_->size(); ++i) {
      if (i > 0 && !rows_->TiedWithPrevious(i)) rank = static_cast<int64_t>(i) + 1;
      for (size_t f = 0; f < in_->size(); ++f) CopyValue(in_->field(f).type, rows_->row(i), f, &out_, f);
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
  // The smallest watermark of the old subtasks at the checkpoint restored (kNoWatermark when
  // not restored).
  int64_t restored_watermark_ = kNoWatermark;

  // Scratch, reused per record.
  std::string group_;
  std::string cached_group_;  // the group whose rows rows_ hold, when cached_
  bool cached_ = false;
  bool cache_groups_ = true;  // keep the last group's rows decoded (SetTopNGroupCacheForTest)
  std::string buf_;
  std::unique_ptr<RankedRows> rows_;  // the group's rows
  Record value_;  // the incoming row's order value
  Record out_;
};


// The local stage of a windowed top_n (see LocalTopNOptions in top_n_options.h): per group
// (key values and window_end) the rows that rank within n among those seen, held in memory
// until the watermark passes the group's window_end - 1 and then emitted unchanged, before
// the watermark. A run of rows of one group (the common case: a source's rows of the current
// window) finds its group without a lookup. Operator state at a checkpoint (union, format 2):
// one entry per group (its rows encoded best first) and one with the watermark, so that after
// a restore rows of windows already passed go through at once as they did before it.
//
// Threading: the task thread only.
class LocalTopNOperator final : public Operator {
 public:
  absl::Status Open(const OperatorContext& ctx, Output* output) override {
    SLUICE_RETURN_IF_ERROR(Operator::Open(ctx, output));
    SLUICE_ASSIGN_OR_RETURN(o_, TypedOptions<LocalTopNOptions>(ctx));
    in_ = &ctx.spec->input_schema;
    SLUICE_ASSIGN_OR_RETURN(order_, plan::CompileExpr(o_->order_by, *in_));
    std::vector<Field> key_fields;
    for (const plan::KeySpec& k : o_->key) {
      SLUICE_ASSIGN_OR_RETURN(auto e, plan::CompileExpr(k.expr, *in_));
      key_fields.push_back({k.name, e->type(), e->nullable()});  // a null key: a group of its own
      key_exprs_.push_back(std::move(e));
    }
    key_schema_ = Schema(std::move(key_fields));
    key_record_.Resize(key_schema_.size());
    last_key_record_.Resize(key_schema_.size());
    value_.Resize(1);
    SLUICE_RETURN_IF_ERROR(Restore(ctx));
    return absl::OkStatus();
  }

  absl::Status Process(const Record& r) override {
    const int64_t window_end = r[o_->window_end].i;
    // Its window was emitted downstream (or would have been): the top_n judges it late.
    if (window_end - 1 <= watermark_) return output_->Emit(r);
    Hold(r, window_end);
    return absl::OkStatus();
  }

  absl::Status ProcessWatermark(int64_t watermark_ms) override {
    watermark_ = std::max(watermark_, watermark_ms);
    if (!groups_.empty() && min_end_ - 1 <= watermark_) SLUICE_RETURN_IF_ERROR(EmitGroups(watermark_));
    return output_->EmitWatermark(watermark_ms);
  }

  // An idle output's watermark no longer holds the top_n back, so rows held here could reach
  // it after its watermark passed their window: send them all first.
  absl::Status ProcessWatermarkStatus(bool idle) override {
    if (idle) SLUICE_RETURN_IF_ERROR(EmitGroups(kMaxWatermark));
    return output_->EmitWatermarkStatus(idle);
  }

  absl::Status Finish() override { return EmitGroups(kMaxWatermark); }

  absl::Status SnapshotState(int64_t, std::vector<std::string>* entries) override {
    for (const auto& [key, group] : groups_) {
      std::string& e = entries->emplace_back(1, static_cast<char>(kLocalRowsVersion));
      e.push_back(kLocalGroupEntry);
      for (size_t i = 0; i < group->rows.size(); ++i) EncodeRecord(*in_, group->rows.row(i), &e);
    }
    std::string& e = entries->emplace_back(1, static_cast<char>(kLocalRowsVersion));
    e.push_back(kLocalWatermarkEntry);
    PutFixed64LE(static_cast<uint64_t>(watermark_), &e);
    return absl::OkStatus();
  }
  // Every subtask gets every entry: each takes its share of the groups and the smallest
  // watermark (see Restore).
  bool UnionState() const override { return true; }

 private:
  struct Group {
    Group(const Schema* schema, const LocalTopNOptions& o, int64_t end)
        : window_end(end), rows(schema, o.order_type, o.descending, o.n) {}
    int64_t window_end;
    RankedRows rows;
  };

  // Offers `r` (of window `window_end`) to its group's rows.
  void Hold(const Record& r, int64_t window_end) {
    for (size_t i = 0; i < key_exprs_.size(); ++i) {
      plan::EvalInto(*key_exprs_[i], r, key_schema_.field(i).type, &key_record_, i);
    }
    if (!IsLastGroup(window_end)) {
      group_key_.clear();
      EncodeRecord(key_schema_, key_record_, &group_key_);
      internal::PutOrderedInt64(window_end, &group_key_);
      std::unique_ptr<Group>& g = groups_[group_key_];
      if (g == nullptr) {
        g = std::make_unique<Group>(in_, *o_, window_end);
        if (groups_.size() == 1 || window_end < min_end_) min_end_ = window_end;
      }
      last_ = g.get();
      std::swap(last_key_record_, key_record_);
    }
    plan::EvalInto(*order_, r, o_->order_type, &value_, 0);
    last_->rows.Offer(r, value_[0]);
  }

  // Whether key_record_ and `window_end` are the last record's group: the same values, doubles
  // compared bit for bit as their encoding does (so 0.0 and -0.0 stay apart).
  bool IsLastGroup(int64_t window_end) const {
    if (last_ == nullptr || last_->window_end != window_end) return false;
    for (size_t i = 0; i < key_schema_.size(); ++i) {
      const bool null = key_record_.IsNull(i);
      if (null != last_key_record_.IsNull(i)) return false;
      if (null) continue;
      const Value& a = key_record_[i];
      const Value& b = last_key_record_[i];
      switch (key_schema_.field(i).type) {
        case FieldType::kDouble:
          if (std::memcmp(&a.d, &b.d, sizeof(double)) != 0) return false;
          break;
        case FieldType::kString:
          if (a.s != b.s) return false;
          break;
        default:
          if (a.i != b.i) return false;
          break;
      }
    }
    return true;
  }

  // Emits the rows of every group whose window_end - 1 <= `watermark` (windows in time order,
  // then by key) and forgets those groups.
  absl::Status EmitGroups(int64_t watermark) {
    due_.clear();
    int64_t next_min = kMaxWatermark;
    for (auto& [key, group] : groups_) {
      if (group->window_end - 1 <= watermark) {
        due_.emplace_back(group->window_end, &key);
      } else {
        next_min = std::min(next_min, group->window_end);
      }
    }
    std::sort(due_.begin(), due_.end(), [](const auto& a, const auto& b) {
      return a.first != b.first ? a.first < b.first : *a.second < *b.second;
    });
    last_ = nullptr;
    for (const auto& [end, key] : due_) {
      auto it = groups_.find(*key);
      const RankedRows& rows = it->second->rows;
      for (size_t i = 0; i < rows.size(); ++i) SLUICE_RETURN_IF_ERROR(output_->Emit(rows.row(i)));
      groups_.erase(it);
    }
    min_end_ = next_min;
    return absl::OkStatus();
  }

  // Restores the held groups and the watermark from ctx.restored_state. Format 2 entries come
  // from every old subtask (union): this subtask takes the group entries whose position among
  // them is its index modulo the parallelism, and the smallest of the old subtasks' watermarks
  // (the top_n after the shuffle judges rows late by the smallest of its inputs' watermarks, so
  // rows of windows at or below it pass through, as they did before the checkpoint, and the
  // top_n counts them late). Format 1 entries (groups only, split over the subtasks already)
  // are all taken, and the watermark is unknown as it was before format 2. kDataLoss when an
  // entry does not decode.
  absl::Status Restore(const OperatorContext& ctx) {
    Record row(in_->size());
    size_t group_entries = 0;
    bool first_watermark = true;
    for (const std::string& entry : ctx.restored_state) {
      absl::string_view body;
      SLUICE_ASSIGN_OR_RETURN(int version, ReadStateVersion(ctx.state_origin, "local_top_n rows", entry, kLocalRowsVersion, &body));
      if (version >= 2) {
        if (body.empty() || (body[0] != kLocalGroupEntry && body[0] != kLocalWatermarkEntry)) {
          return ctx.state_origin.DataLoss("local_top_n state entry of no known kind");
        }
        const bool group = body[0] == kLocalGroupEntry;
        body.remove_prefix(1);
        if (!group) {
          if (body.size() != 8) {
            return ctx.state_origin.DataLoss(absl::StrCat("local_top_n watermark entry has ", entry.size(),
                                                          " bytes, expected 10"));
          }
          const int64_t wm = static_cast<int64_t>(GetFixed64LE(body.data()));
          watermark_ = first_watermark ? wm : std::min(watermark_, wm);
          first_watermark = false;
          continue;
        }
        if (static_cast<int>(group_entries++ % ctx.parallelism) != ctx.subtask) continue;
      }
      RecordDecoder dec(in_, body);
      while (!dec.Done()) {
        absl::Status s = dec.Next(&row);
        if (!s.ok()) return ctx.state_origin.DataLoss(absl::StrCat("local_top_n rows do not decode: ", s.message()));
        Hold(row, row[o_->window_end].i);
      }
    }
    return absl::OkStatus();
  }

  const LocalTopNOptions* o_ = nullptr;
  const Schema* in_ = nullptr;
  std::unique_ptr<plan::Expr> order_;
  std::vector<std::unique_ptr<plan::Expr>> key_exprs_;
  Schema key_schema_;
  int64_t watermark_ = std::numeric_limits<int64_t>::min();
  // The held groups by [key record][window_end]; min_end_: their smallest window_end.
  absl::flat_hash_map<std::string, std::unique_ptr<Group>> groups_;
  int64_t min_end_ = kMaxWatermark;
  Group* last_ = nullptr;  // the last record's group (its key record last_key_record_), or null

  // Scratch, reused per record.
  Record key_record_;
  Record value_;
  Record last_key_record_;
  std::string group_key_;
  std::vector<std::pair<int64_t, const std::string*>> due_;
};

}  // namespace

std::unique_ptr<Operator> MakeTopN() { return std::make_unique<TopNOperator>(); }
std::unique_ptr<Operator> MakeLocalTopN() { return std::make_unique<LocalTopNOperator>(); }

void SetTopNGroupCacheForTest(bool enabled) { group_cache_enabled = enabled; }

}  // namespace sluice::ops
