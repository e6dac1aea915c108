#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <deque>
#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/attributes.h"
#include "absl/base/optimization.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/container/node_hash_map.h"
#include "absl/container/inlined_vector.h"
#include "absl/strings/str_cat.h"
#include "common/key_groups.h"
#include "common/record_codec.h"
#include "common/status.h"
#include "common/watermark.h"
#include "operators/internal/builtins.h"
#include "operators/internal/int_pane_table.h"
#include "operators/internal/window_keys.h"
#include "operators/key_hasher.h"
#include "operators/window_assigner.h"
#include "operators/window_options.h"
#include "plan/expr.h"
#include "state/keyed_state_backend.h"

namespace sluice::ops {
namespace {

using Fn = WindowOptions::Fn;

constexpr int64_t kMaxTs = std::numeric_limits<int64_t>::max();
// Accumulator formats: 1, every field NOT NULL; 2 (written now), the value of an aggregate over
// a nullable field is null until a non-null value arrives, and avg over a nullable field keeps
// its count of values. Without nullable inputs both encode the same bytes.
constexpr int kAccVersion = 2;
// "window_panes" (see WindowOperator): 1, a window's bucket; 2, a slide pane's bucket (the same
// body under a pane's key [start][start + slide][key group]).
constexpr int kWindowBucketVersion = 1;
constexpr int kSlidePaneVersion = 2;
constexpr int kOverflowVersion = 1;  // "window_overflow": see WindowOperator
// "window_sessions" (the layout before per-key sessions, read at restores only): [1][start, end:
// 8 bytes each]*; 0: without the byte.
constexpr int kSessionsVersion = 1;
constexpr int kKeySessionsVersion = 2;  // "window_key_sessions": see WindowOperator
constexpr int kFlatBlockVersion = 1;    // "window_flat_sessions": see WriteFlatBlocks
constexpr int kWatermarkVersion = 1;  // [1][watermark: 8 bytes LE]; 0: 8 native bytes
constexpr int64_t kNoEarly = std::numeric_limits<int64_t>::min();  // no early firing pending
// Memory of open windows (estimated, see PaneBytes) above which new windows go to the backend
// (SetWindowMemoryForTest).
constexpr size_t kDefaultMaxPaneBytes = size_t{256} << 20;
size_t max_pane_bytes_for_test = 0;
bool slide_panes_enabled = true;  // SetWindowSlidePanesForTest
bool session_fast_paths_enabled = true;  // SetWindowSessionFastPathsForTest
bool int_key_panes_enabled = true;  // SetWindowIntKeyPanesForTest
bool fold_batches_enabled = true;  // SetWindowFoldBatchesForTest
bool narrow_panes_enabled = true;  // SetWindowNarrowPanesForTest
std::atomic<uint64_t> int_row_batches{0};  // WindowIntRowBatchesForTest
std::atomic<uint64_t> batch_folds{0};  // WindowBatchFoldsForTest (flat sessions' extensions too)
std::atomic<uint64_t> int_key_panes_made{0};  // WindowIntKeyPanesMadeForTest
std::atomic<uint64_t> narrow_buckets_made{0};  // WindowNarrowBucketsMadeForTest
std::atomic<uint64_t> narrow_buckets_widened{0};  // WindowNarrowBucketsWidenedForTest
std::atomic<uint64_t> session_index_drops{0};  // WindowSessionIndexDropsForTest
std::atomic<uint64_t> narrow_count_rows{0};  // WindowNarrowCountRowsForTest
bool fire_order_reuse_enabled = true;  // SetWindowFireOrderReuseForTest
std::atomic<uint64_t> fire_orders_reused{0};  // WindowFireOrdersReusedForTest

// a + b without overflow: saturates at INT64_MAX (cleanup times, early firing times).
int64_t SaturatingAdd(int64_t a, int64_t b) { return a > kMaxTs - b ? kMaxTs : a + b; }
// a + b wrapping on overflow, as the expression language's integers do.
int64_t WrappingAdd(int64_t a, int64_t b) {
  return static_cast<int64_t>(static_cast<uint64_t>(a) + static_cast<uint64_t>(b));
}

bool LessThan(FieldType type, const Value& a, const Value& b) {
  switch (type) {
    case FieldType::kDouble:
      return a.d < b.d;
    case FieldType::kString:
      return a.s < b.s;
    default:
      return a.i < b.i;
  }
}

// FieldType of a value as an accumulator stores it (timestamps as int64).
FieldType Stored(FieldType t) { return t == FieldType::kTimestamp ? FieldType::kInt64 : t; }

// Keyed windows with incremental aggregates (see window_options.h and operators/README.md).
//
// Open windows live in memory, as Flink's heap window state and heap timers do: per window and
// key group a bucket (Bucket) holds the accumulators of the bucket's keys, decoded (Pane: the
// values of an acc_schema_ row - a header: records, emitted, final_fired, dirty, next_early -
// then each aggregate's fields; a plugin's function has two: its accumulator version and its
// bytes). A record costs two hash lookups and no encoding; the timers are per bucket (the
// window's end in its key group), not per key and window.
//
// State, in the keyed backend (so checkpointed, restored and rescaled with the key groups):
// - "window_panes" (value) under the bucket key [window start][window end][key group] (the
//   key group is the bucket's): [kWindowBucketVersion][overflow flag][count] then per key [key
//   record size][key record][accumulator row size][accumulator row]; slide panes (below) as
//   [kSlidePaneVersion] and the same body under the pane's key. SnapshotState() writes the buckets changed
//   since the last checkpoint before the task snapshots the backend; after a restore, a bucket
//   missing from memory is looked for in the backend.
// - "window_overflow" (map) under the bucket key: memory holds open windows up to a budget
//   (256 MiB per subtask, estimated by PaneBytes); a window opened beyond that is kept here (user key: the key record; value:
//   [kOverflowVersion][accumulator row]), read and written per record, and merged with the
//   bucket's in-memory windows when it fires (Bucket::overflow says there may be some).
// - Timers under the bucket key: event time at end - 1 (fire) and end - 1 + lateness (cleanup;
//   the same timer when lateness is 0); processing time at end - 1 (time: processing) and at
//   each key's next early firing (emit_every). They fire their bucket's keys in key order (the
//   order of the per-key timers before).
// - "window_distinct" (map) under the composite key [key record][window start][window end]:
//   count_distinct's values, user key [aggregate index][value bytes].
// - Session windows keep no buckets: per key, as Flink's MergingWindowSet, its open sessions
//   (usually one) with their accumulators in one entry of key_sessions_, in memory within the
//   same budget. A record within the gap of a session extends it in place (its accumulator goes
//   on; the general path starts the merged window afresh and merges the old one in, which gives
//   the same accumulator while the session has not fired), one that bridges two merges them,
//   keeping the first one's state window (Flink's: where its distinct values stay). Event-time
//   keys in memory have no timers: due_, a min-heap of keys by their next firing (end - 1, or
//   the cleanup at end - 1 + lateness once fired), is swept by ProcessWatermark, and a key whose
//   sessions only grow keeps its entry (the sweep reschedules it). Processing-time keys, and
//   keys beyond the budget (kept in the backend, read and written per record), have one timer
//   per key at their next firing. Early firings (emit_every): processing-time timers under the
//   key. A key of one integer field whose one open session has not fired is kept flat in its
//   slot of the index by value instead of an entry (ProcessFlatSession: event time, aggregates
//   that fold into words, no early firing), with its key group in the slot's meta word; a
//   batch extends such sessions in place by the key's value (ProcessFlatBatch), and they fire
//   and are written at checkpoints without their record bytes being decoded or hashed (the
//   firing order, by key bytes, from the varint's first 8 and last 2 bytes: IntKeyOrder). A
//   watermark past every pending firing (the input's end) takes due_ whole in one pass instead
//   of a pop_heap per key. Checkpoints write the keys changed since the last
//   one to "window_key_sessions" (value, under the key: [kKeySessionsVersion][count] then per
//   session its window, its state window and its accumulator row); a restore reads its key
//   groups' keys back into memory. The layout
//   before (format 1: "window_sessions", a key's sorted session list [kSessionsVersion][start,
//   end]*, with the accumulators in buckets and timers per bucket) is moved into it at a
//   restore (RestoreSessions).
// - "window_acc" (value), the layout before buckets: one accumulator per key and window under
//   the composite key ([kAccVersion][the row]; formats 1 and 2), with timers per composite key.
//   A restored subtask moves such windows into buckets in Open() (MigrateLegacyWindows).
// Slide panes (Flink's sliding-window pane optimisation), for event-time hopping windows whose
// size is a multiple of their slide, without allowed lateness or early firing, and whose
// aggregates merge exactly (count; sum and avg of integers; min, max, first, last): a record
// updates one accumulator, its key's in the bucket of its slide pane [p, p + slide), instead of
// one per window (size / slide). Each window holding the pane gets its event-time timer at
// end - 1 under the window's bucket key; when it fires, the accumulators of the window's
// panes (and of its own bucket, which holds the windows of records within a window length of
// the int64 limits and windows restored from before slide panes) are merged per key, in key
// order, and the window's first pane, which no later window holds, is dropped.
// Batches (FoldBatch): tumbling windows and slide panes of one integer key whose aggregates fold
// into words take a buffer of records at a time and fold each into its key's pane in place, the
// bucket found by the key group carried with the record and the key's slot prefetched a chunk
// ahead; what the batch path does not cover goes to Process(), record by record. A tumbling
// window's bucket there starts narrow (Bucket::narrow: a slot is the key, its record count and
// its aggregates' words, 16 bytes for a count) and is widened to the pane's words the first time
// a path other than folding, firing without lateness or a checkpoint needs them.
// Aggregates skip null values, as SQL: an aggregate over a nullable field whose window saw
// only nulls is null (count counts records). No window's records are kept: each record updates
// its windows' accumulators and is gone.
//
// Threading: the task thread only.
class WindowOperator final : public Operator {
 public:
  bool IsKeyed() const override { return true; }

  absl::Status Open(const OperatorContext& ctx, Output* output) override {
    SLUICE_RETURN_IF_ERROR(Operator::Open(ctx, output));
    if (ctx.keyed_state == nullptr || ctx.timers == nullptr) {
      return absl::FailedPreconditionError("window needs a keyed state backend and timers");
    }
    state_ = ctx.keyed_state;
    timers_ = ctx.timers;
    SLUICE_ASSIGN_OR_RETURN(o_, TypedOptions<WindowOptions>(ctx));
    const plan::OperatorSpec& spec = *ctx.spec;
    SLUICE_RETURN_IF_ERROR(key_.Init(spec, ctx.max_parallelism));

    std::vector<Field> acc = {{"records", FieldType::kInt64},
                              {"emitted", FieldType::kBool},
                              {"final_fired", FieldType::kBool},
                              {"dirty", FieldType::kBool},
                              {"next_early", FieldType::kInt64}};
    std::vector<Field> acc_v1 = acc;
    for (const WindowOptions::Aggregate& a : o_->aggregates) {
      acc_index_.push_back(static_cast<int>(acc.size()));
      const FieldType in = Stored(a.in_type);
      // A plugin's function sees no nulls (skipped) and says itself when its result is null.
      const bool nullable =
          a.fn != Fn::kPlugin && a.field >= 0 && spec.input_schema.field(a.field).nullable;
      nullable_.push_back(nullable);
      switch (a.fn) {
        case Fn::kCount:
          break;  // the header's record count
        case Fn::kSum:
        case Fn::kMin:
        case Fn::kMax:
          acc.push_back({"v", in, nullable});
          break;
        case Fn::kAvg:
          acc.push_back({"v", in, nullable});
          if (nullable) acc.push_back({"n", FieldType::kInt64});  // values, not records
          break;
        case Fn::kFirst:
        case Fn::kLast:
          acc.push_back({"v", in, nullable});
          acc.push_back({"ts", FieldType::kInt64});
          break;
        case Fn::kCountDistinct:
          acc.push_back({"n", FieldType::kInt64});
          has_distinct_ = true;
          break;
        case Fn::kPlugin:
          has_plugin_ = true;
          if (a.plugin == nullptr || !a.plugin->Runnable()) {
            return absl::FailedPreconditionError(absl::StrCat(
                ctx.task_name, ": aggregate function of '", a.as, "' cannot run in this process"));
          }
          acc.push_back({"version", FieldType::kInt64});
          acc.push_back({"acc", FieldType::kString});
          break;
      }
      // Format 1: the same fields NOT NULL and no count of avg's values.
      for (size_t f = acc_index_.back(); f < acc.size(); ++f) {
        if (a.fn == Fn::kAvg && nullable && f == acc.size() - 1) break;
        acc_v1_index_.push_back(static_cast<int>(f));
        acc_v1.push_back({acc[f].name, acc[f].type});
      }
    }
    acc_schema_ = Schema(std::move(acc));
    acc_schema_v1_ = Schema(std::move(acc_v1));
    acc_.Resize(acc_schema_.size());
    other_acc_.Resize(acc_schema_.size());
    decoded_acc_.Resize(acc_schema_.size());
    v1_acc_.Resize(acc_schema_v1_.size());
    for (size_t f = 0; f < acc_schema_.size(); ++f) {
      const FieldType t = acc_schema_.field(f).type;
      slot_.push_back(t == FieldType::kString ? pane_strings_++ : pane_words_++);
      kind_.push_back(t == FieldType::kString ? kStringSlot : t == FieldType::kDouble ? kDoubleSlot : kIntSlot);
      if (acc_schema_.field(f).nullable) nullable_fields_.push_back(static_cast<int>(f));
    }
    null_words_ = (nullable_fields_.size() + 63) / 64;
    null_bit_.assign(acc_schema_.size(), -1);
    for (size_t n = 0; n < nullable_fields_.size(); ++n) null_bit_[nullable_fields_[n]] = static_cast<int>(n);
    // A null byte and a 10-byte varint per field at most.
    words_only_ = pane_strings_ == 0 && 11 * acc_schema_.size() <= kMaxWordsRow;
    word_folds_ = true;
    for (size_t a = 0; a < o_->aggregates.size(); ++a) {
      const Fn fn = o_->aggregates[a].fn;
      const bool numeric = fn == Fn::kSum || fn == Fn::kMin || fn == Fn::kMax || fn == Fn::kAvg;
      if (fn != Fn::kCount && (!numeric || nullable_[a] || kind_[acc_index_[a]] == kStringSlot)) {
        word_folds_ = false;
      }
    }
    const Schema& key_schema = key_.schema();
    one_int_key_ = int_key_panes_enabled && key_schema.size() == 1 && !key_schema.field(0).nullable &&
                   (key_schema.field(0).type == FieldType::kInt64 || key_schema.field(0).type == FieldType::kTimestamp);
    int_keys_ = one_int_key_ && words_only_;
    // (word_folds_: every accumulator field is a word, slot_[f] == f, and none is nullable.)
    flat_sessions_ = int_keys_ && word_folds_ && o_->windows.merging() && o_->event_time &&
                     o_->emit_every_ms <= 0 && session_fast_paths_enabled;
    session_index_.SetWords(flat_sessions_ ? kFlatValues + pane_words_ - kHeaderFields : 2);
    flat_words_.assign(flat_sessions_ ? pane_words_ : 0, 0);
    flat_counts_only_ = flat_sessions_ && std::all_of(o_->aggregates.begin(), o_->aggregates.end(),
                                                      [](const auto& a) { return a.fn == Fn::kCount; });
    const WindowSpec& ws = o_->windows;
    slide_panes_ = slide_panes_enabled && o_->event_time && ws.kind == WindowSpec::Kind::kHop &&
                   ws.size_ms > ws.slide_ms && ws.size_ms % ws.slide_ms == 0 &&
                   o_->allowed_lateness_ms == 0 && o_->emit_every_ms <= 0;
    for (const WindowOptions::Aggregate& a : o_->aggregates) {
      // Doubles summed pane by pane would round differently from the records' order.
      const bool exact = a.fn == Fn::kCount || a.fn == Fn::kMin || a.fn == Fn::kMax || a.fn == Fn::kFirst ||
                         a.fn == Fn::kLast ||
                         ((a.fn == Fn::kSum || a.fn == Fn::kAvg) && Stored(a.in_type) != FieldType::kDouble);
      if (!exact) slide_panes_ = false;
    }
    fold_batches_ = int_keys_ && word_folds_ && o_->event_time && o_->emit_every_ms <= 0 && fold_batches_enabled &&
                    (ws.kind == WindowSpec::Kind::kTumble || slide_panes_);
    // (fold_batches_: word_folds_, so no null words.)
    narrow_panes_ = fold_batches_ && narrow_panes_enabled && !slide_panes_ && o_->allowed_lateness_ms == 0 &&
                    null_words_ == 0;
    counts_only_ = true;
    for (size_t a = 0; a < o_->aggregates.size(); ++a) {
      counts_only_ &= o_->aggregates[a].fn == Fn::kCount && !nullable_[a];
    }
    widened_.assign(pane_words_ + null_words_, 0);
    if ((flat_sessions_ || fold_batches_) && spec.key.size() == 1) {
      SLUICE_ASSIGN_OR_RETURN(auto key_expr, plan::CompileExpr(spec.key[0].expr, spec.input_schema));
      key_field_ = key_expr->FieldIndex();
    }
    input_all_integral_ = spec.input_schema.all_integral();
    row_scratch_.Resize(spec.input_schema.size());
    if (fold_batches_) {
      for (FoldWindow& fw : fold_windows_) fw.buckets.assign(static_cast<size_t>(ctx.max_parallelism), KgBucket());
    }
    panes_id_ = state_->RegisterState("window_panes", state::StateKind::kValue);
    overflow_id_ = state_->RegisterState("window_overflow", state::StateKind::kMap);
    acc_id_ = state_->RegisterState("window_acc", state::StateKind::kValue);
    if (has_distinct_) {
      distinct_id_ = state_->RegisterState("window_distinct", state::StateKind::kMap);
    }
    if (o_->windows.merging()) {
      sessions_id_ = state_->RegisterState("window_sessions", state::StateKind::kValue);
      key_sessions_id_ = state_->RegisterState("window_key_sessions", state::StateKind::kValue);
      flat_blocks_id_ = state_->RegisterState("window_flat_sessions", state::StateKind::kValue);
      flat_blocks_.assign(static_cast<size_t>(ctx.max_parallelism), 0);
    }
    backend_has_more_ = ctx.restored;
    out_.Resize(spec.output_schema.size());
    // The watermark this operator had seen at the checkpoint restored (the smallest over the
    // old subtasks): records are judged late against at least that, so that a record the
    // failed attempt dropped is dropped again, and a window cleaned up before the checkpoint
    // is not started again by records replayed before the first new watermark.
    // A subtask that had seen no watermark stored kNoWatermark: the smallest, so it wins.
    bool first_entry = true;
    for (const std::string& entry : ctx.restored_state) {
      int64_t wm;
      if (entry.size() != sizeof(wm)) {
        SLUICE_RETURN_IF_ERROR(ReadWatermarkStateEntry(ctx.state_origin, "window watermark state",
                                                       entry, kWatermarkVersion, &wm));
      } else {
        std::memcpy(&wm, entry.data(), sizeof(wm));  // format 0: 8 native bytes
      }
      restored_watermark_ = first_entry ? wm : std::min(restored_watermark_, wm);
      first_entry = false;
    }
    if (ctx.restored) SLUICE_RETURN_IF_ERROR(MigrateLegacyWindows());
    if (ctx.restored && o_->windows.merging()) SLUICE_RETURN_IF_ERROR(RestoreSessions());
    return absl::OkStatus();
  }

  absl::Status SnapshotState(int64_t checkpoint_id, std::vector<std::string>* entries) override {
    SLUICE_RETURN_IF_ERROR(WriteBuckets());
    SLUICE_RETURN_IF_ERROR(WriteKeySessions());
    entries->push_back(WatermarkStateEntry(kWatermarkVersion, Watermark()));
    return absl::OkStatus();
  }
  bool UnionState() const override { return true; }

  absl::Status Process(const Record& r) override {
    key_.Set(r);
    const int64_t ts = o_->event_time ? r[o_->time_field].i : timers_->CurrentProcessingTime();
    if (slide_panes_) {
      SLUICE_ASSIGN_OR_RETURN(bool done, ProcessInSlidePane(r, ts));
      if (done) return absl::OkStatus();
    }
    if (o_->windows.merging() && ts <= kMaxTs - o_->windows.gap_ms) {
      return ProcessSession(r, ts, TimeWindow{ts, ts + o_->windows.gap_ms});  // AssignWindows' session
    }
    // Tumbling windows partition time: the previous record's window is this one's when it holds
    // ts (no division).
    const bool same_tumble = o_->windows.kind == WindowSpec::Kind::kTumble && windows_.size() == 1 &&
                             windows_[0].start <= ts && ts < windows_[0].end;
    if (!same_tumble) AssignWindows(o_->windows, ts, &windows_);
    if (windows_.empty()) {  // a timestamp within a window length of the int64 limits
      if (ctx_.records_skipped != nullptr) ctx_.records_skipped->Add();
      return absl::OkStatus();
    }
    if (o_->windows.merging()) return ProcessSession(r, ts, windows_[0]);
    bool accepted = false;
    for (const TimeWindow& w : windows_) {
      if (IsLate(w)) continue;
      accepted = true;
      SetRecordWindow(w);
      SLUICE_ASSIGN_OR_RETURN(bool folded, FoldIntoPane(w, r));
      if (folded) continue;
      cur_key_ = key_.bytes();
      SLUICE_RETURN_IF_ERROR(LoadOrCreate(w));
      SLUICE_RETURN_IF_ERROR(AddRecord(w, r, ts));
    }
    return accepted ? absl::OkStatus() : Late(r);
  }

  // A batch whose keys' slots are prefetched ahead (the miss on a key's slot was most of a
  // record's cost): tumbling windows and slide panes fold it chunk by chunk (FoldBatch); flat
  // session keys take each record as Process() does, prefetching the keys' slots a few records
  // ahead. PrefersBatches() once Open() found the key a bare integer field and the keys kept by
  // value.
  bool PrefersBatches() const override { return key_field_ >= 0; }
  absl::Status ProcessBatch(int input_index, const Record* records, size_t count) override {
    if (key_field_ < 0) return Operator::ProcessBatch(input_index, records, count);
    if (fold_batches_) {
      RecordRows rows{records, static_cast<size_t>(key_field_),
                      static_cast<size_t>(o_->time_field)};
      return FoldBatch(rows, count);
    }
    if (flat_sessions_) {
      RecordRows rows{records, static_cast<size_t>(key_field_),
                      static_cast<size_t>(o_->time_field)};
      return ProcessFlatBatch(rows, count);
    }
    constexpr size_t kAhead = 8;
    for (size_t i = 0; i < count && i < kAhead; ++i) {
      session_index_.Prefetch(records[i][key_field_].i);
    }
    for (size_t i = 0; i < count; ++i) {
      if (i + kAhead < count) session_index_.Prefetch(records[i + kAhead][key_field_].i);
      SLUICE_RETURN_IF_ERROR(Process(records[i]));
    }
    return absl::OkStatus();
  }

  // Tumbling windows and slide panes (FoldBatch) and flat session keys (ProcessFlatBatch) of an
  // input of NOT NULL integers take their records straight from the rows the task decodes (no
  // Records).
  bool PrefersIntRows(int input_index) const override {
    return IntRowsRefusal(input_index).empty();
  }
  // kFailedPrecondition, naming the operator's task and why, when it does not prefer rows
  // (PrefersIntRows) or the rows are not as wide as its input's records.
  absl::Status ProcessIntRows(int input_index, const IntRowBatch& batch) override {
    absl::string_view why = IntRowsRefusal(input_index);
    if (why.empty() && batch.width != row_scratch_.size()) {
      return absl::FailedPreconditionError(
          absl::StrCat("window ", ctx_.task_name, ": rows of ", batch.width,
                       " integers where its input has ", row_scratch_.size(), " fields"));
    }
    if (!why.empty()) {
      return absl::FailedPreconditionError(
          absl::StrCat("window ", ctx_.task_name, ": rows of integers it does not take: ", why));
    }
    IntRows rows{&batch, static_cast<size_t>(key_field_), static_cast<size_t>(o_->time_field),
                 &row_scratch_};
    int_row_batches.fetch_add(1, std::memory_order_relaxed);
    if (flat_sessions_) return ProcessFlatBatch(rows, batch.count);
    return FoldBatch(rows, batch.count);
  }
  // Why input `input_index` cannot come as rows of integers (PrefersIntRows), or empty.
  absl::string_view IntRowsRefusal(int input_index) const {
    if (input_index != 0) return "it has one input";
    if (!input_all_integral_) return "its input has fields other than NOT NULL integers";
    if (!fold_batches_ && !flat_sessions_) {
      return "it folds neither tumbling windows, slide panes nor flat session keys in batches";
    }
    if (key_field_ < 0) return "its key is not one integer field of its input";
    return "";
  }

  // Session windows: fires the in-memory keys' sessions the watermark passed.
  absl::Status ProcessWatermark(int64_t watermark_ms) override {
    if (o_->windows.merging() && o_->event_time) SLUICE_RETURN_IF_ERROR(FireDueSessions(watermark_ms));
    return output_->EmitWatermark(watermark_ms);
  }

  // A bucket's timer: fires its keys' windows in key order (session windows: a key's timer).
  absl::Status OnTimer(int64_t timestamp, TimeDomain domain, absl::string_view key) override {
    if (o_->windows.merging()) return OnSessionTimer(timestamp, domain, key);
    BucketId id;
    if (!DecodeBucketKey(key, &id)) return absl::OkStatus();  // a timer of no bucket: stale
    if (slide_panes_) {
      return domain == TimeDomain::kEventTime ? FireSlidePanes(id) : absl::OkStatus();
    }
    const TimeWindow w{id.start, id.end};
    SetWindow(w, id.kg, absl::string_view());
    SLUICE_ASSIGN_OR_RETURN(Bucket * bucket, FindBucket(/*create=*/false));
    if (bucket == nullptr) return absl::OkStatus();  // cleaned up already
    const bool final_time =
        o_->event_time ? domain == TimeDomain::kEventTime : timestamp >= w.max_timestamp();
    const bool cleanup = final_time && (!o_->event_time || timestamp == CleanupTime(w));
    if (int_keys_ && o_->event_time && cleanup && timestamp == w.max_timestamp() && !has_distinct_ &&
        bucket->panes.empty() && !bucket->overflow) {
      SLUICE_ASSIGN_OR_RETURN(bool fired, FireIntKeys(*bucket, id.kg, w));
      if (fired) return DropBucket();
    }
    overflow_panes_.clear();
    fire_keys_.clear();
    fire_order_.clear();
    SLUICE_RETURN_IF_ERROR(GatherForFiring(id));
    std::sort(fire_order_.begin(), fire_order_.end(), FireItem::Order());
    for (const FireItem& item : fire_order_) {
      cur_key_ = *item.key;
      cur_pane_ = item.overflow ? PaneRef() : item.pane;
      cur_overflow_ = item.overflow;
      PaneToAcc(item.pane.words, item.pane.strings, &acc_);
      if (final_time) {
        if (timestamp == w.max_timestamp() && acc_[kFinalFired].i == 0) {
          SLUICE_RETURN_IF_ERROR(EmitRow(w));
          acc_[kFinalFired].i = 1;
          SLUICE_RETURN_IF_ERROR(CancelEarlyTimer());
        }
        if (cleanup) {
          SLUICE_RETURN_IF_ERROR(Cleanup());
        } else {
          SLUICE_RETURN_IF_ERROR(StoreAcc());
        }
        continue;
      }
      // An early firing (emit_every): emit what changed, then schedule the next one.
      if (acc_[kFinalFired].i != 0 || acc_[kNextEarly].i != timestamp) continue;
      if (acc_[kDirty].i != 0) SLUICE_RETURN_IF_ERROR(EmitRow(w));
      acc_[kNextEarly].i = kNoEarly;
      SLUICE_RETURN_IF_ERROR(ScheduleEarly(w, timestamp));
      SLUICE_RETURN_IF_ERROR(StoreAcc());
    }
    return cleanup ? DropBucket() : absl::OkStatus();
  }

 private:
  // An open window of one key: its accumulator row (acc_schema_), decoded.
  struct Pane {
    absl::InlinedVector<int64_t, 8> words;  // per field not a string (slot_), then null bits
    std::vector<std::string> strings;       // per string field (slot_)
  };
  // A pane wherever it is kept: a Pane's words and strings, or the words of a key's slot in
  // Bucket::int_panes (no strings). Null words: none.
  struct PaneRef {
    int64_t* words = nullptr;
    std::string* strings = nullptr;
  };
  static PaneRef Ref(Pane* pane) { return PaneRef{pane->words.data(), pane->strings.data()}; }
  // A window in one key group.
  struct BucketId {
    int64_t start = 0;
    int64_t end = 0;
    int kg = 0;
    bool operator==(const BucketId& o) const { return start == o.start && end == o.end && kg == o.kg; }
    template <typename H>
    friend H AbslHashValue(H h, const BucketId& b) {
      return H::combine(std::move(h), b.start, b.end, b.kg);
    }
  };
  // The open windows of a BucketId: by key record bytes, or, when the key is one integer field
  // and the panes have no strings (int_keys_), by the key's value in int_panes (one slot per
  // key: [key][the pane's words]).
  struct Bucket {
    absl::flat_hash_map<std::string, Pane> panes;
    internal::IntPaneTable int_panes;
    bool dirty = false;       // changed since it was last written to the backend
    bool in_backend = false;  // the backend holds a copy (maybe an older one)
    bool timers = false;      // its fire and cleanup timers are registered
    // Some of its keys' windows are in "window_overflow" (never also in `panes`).
    bool overflow = false;
    // int_panes holds narrow slots: [key][records][the aggregates' words] (narrow_panes_), the
    // pane's other header fields those of a pane folded into and not fired (WidenPane).
    bool narrow = false;
    size_t bytes = 0;  // PaneBytes of its panes
  };
  static constexpr size_t kBucketKeySize = 20;  // [start][end]: ordered int64s; [kg]: 4 bytes BE

  // Header fields of the accumulator row.
  enum : int { kRecords = 0, kEmitted = 1, kFinalFired = 2, kDirty = 3, kNextEarly = 4, kHeaderFields = 5 };

  // Whether bucket `id` is a slide pane's (else a window's).
  bool IsPane(const BucketId& id) const {
    return slide_panes_ && static_cast<uint64_t>(id.end) - static_cast<uint64_t>(id.start) ==
                               static_cast<uint64_t>(o_->windows.slide_ms);
  }

  // FoldBatch's per-window cache: a window (a slide pane under slide_panes_) that records
  // lately fell in, whether they fold into its panes (Process() would: not late, not fired), and
  // its buckets by key group, each valid while its generation is buckets_generation_ (a null
  // bucket too: one made later changes the generation).
  struct KgBucket {
    Bucket* bucket = nullptr;
    uint64_t generation = 0;
  };
  struct FoldWindow {
    int64_t start = 0;
    int64_t end = 0;  // == start: unused
    bool folds = false;
    std::vector<KgBucket> buckets;  // by key group (max_parallelism of them)
  };
  static constexpr size_t kFoldChunk = 32;

  // Records of tumbling windows or slide panes (fold_batches_), with what Process() gives for
  // each in turn, chunk by chunk: pass 1 finds each record's bucket in memory without hashing
  // (its window among the last two seen, its key group carried across the exchange) and
  // prefetches the slot of its key; pass 2 folds each record into its key's pane, or starts the
  // key's pane when the bucket has its timers and the memory budget room, as LoadOrCreate() and
  // StoreAcc() would. Anything else goes to Process(): no carried key group, a window not
  // folding (late or fired), a bucket not in memory (new, or restored and still in the backend),
  // a bucket with overflow, a spent budget, a timestamp near the int64 limits.
  template <typename Rows>
  absl::Status FoldBatch(Rows& rows, size_t count) {
    for (FoldWindow& fw : fold_windows_) {
      if (fw.end != fw.start) fw.folds = Folds(fw.start, fw.end);  // the watermark moved
    }
    Bucket* buckets[kFoldChunk];
    uint64_t folded = 0;
    uint64_t made = 0;
    for (size_t c = 0; c < count; c += kFoldChunk) {
      const size_t n = std::min(kFoldChunk, count - c);
      for (size_t i = 0; i < n; ++i) {
        const int64_t key = rows.Key(c + i);
        Bucket* bucket = FoldBucket(rows.KeyGroup(c + i), key, rows.Time(c + i));
        buckets[i] = bucket;
        if (bucket != nullptr) bucket->int_panes.Prefetch(key);
      }
      const uint64_t generation = buckets_generation_;
      for (size_t i = 0; i < n; ++i) {
        const size_t r = c + i;
        // Process() may have made or dropped a bucket since pass 1 (moving the others).
        Bucket* bucket = buckets_generation_ == generation ? buckets[i]
                                                           : FoldBucket(rows.KeyGroup(r), rows.Key(r), rows.Time(r));
        if (bucket != nullptr && FoldIntoBucket(bucket, rows, r, &made)) {
          ++folded;
          continue;
        }
        SLUICE_RETURN_IF_ERROR(Process(rows.At(r)));
      }
    }
    batch_folds.fetch_add(folded, std::memory_order_relaxed);
    int_key_panes_made.fetch_add(made, std::memory_order_relaxed);
    return absl::OkStatus();
  }
  // FoldBatch's input: per record its key, event time and carried key group (-1: none), and
  // the record itself (At) for the paths that read more of it. Records (ProcessBatch) ...
  struct RecordRows {
    const Record* records;
    size_t key_field;
    size_t time_field;
    int64_t Key(size_t r) const { return records[r][key_field].i; }
    int64_t Time(size_t r) const { return records[r][time_field].i; }
    int KeyGroup(size_t r) const { return records[r].carried_key_group(); }
    const Record& At(size_t r) const { return records[r]; }
  };
  // ... or rows of integers (ProcessIntRows), whose record is made in `scratch` when needed.
  struct IntRows {
    const IntRowBatch* batch;
    size_t key_field;
    size_t time_field;
    Record* scratch;  // batch->width values
    int64_t Key(size_t r) const { return batch->values[r * batch->width + key_field]; }
    int64_t Time(size_t r) const { return batch->values[r * batch->width + time_field]; }
    int KeyGroup(size_t r) const { return batch->KeyGroup(r); }
    const Record& At(size_t r) const {
      const int64_t* values = batch->values + r * batch->width;
      for (size_t f = 0; f < batch->width; ++f) (*scratch)[f].i = values[f];
      scratch->set_carried_key_group(KeyGroup(r));
      return *scratch;
    }
  };
  // Whether records of window (or slide pane) [start, end) fold into its panes: Process()
  // takes them (not late) and FoldIntoPane() would fold them (not fired).
  bool Folds(int64_t start, int64_t end) const {
    if (!slide_panes_) return end - 1 > Watermark();
    return !IsLate(TimeWindow{start, start + o_->windows.size_ms});  // its last window (ProcessInSlidePane)
  }
  // The bucket in memory that a record of key `key` and event time `ts`, carried key group
  // `kg`, folds into (FoldBatch), or null. A record without a carried key group (kg -1: a
  // window chained behind its key_by, no exchange) gets its key's, hashed.
  // Inline in FoldBatch's loops (out of line it took a call per record).
  ABSL_ATTRIBUTE_ALWAYS_INLINE Bucket* FoldBucket(int kg, int64_t key, int64_t ts) {
    if (kg < 0) kg = IntKeyGroup(key);
    if (static_cast<size_t>(kg) >= fold_windows_[0].buckets.size()) return nullptr;
    FoldWindow* fw = FoldWindowOf(ts);
    if (fw == nullptr) return nullptr;
    KgBucket& entry = fw->buckets[static_cast<size_t>(kg)];
    if (entry.generation != buckets_generation_) {
      auto it = buckets_.find(BucketId{fw->start, fw->end, kg});
      entry = {it == buckets_.end() ? nullptr : &it->second, buckets_generation_};
    }
    return entry.bucket;
  }
  // The key group of integer key `key` (RecordKey::key_group()'s for it).
  int IntKeyGroup(int64_t key) {
    int_key_[0].i = key;
    return KeyGroupForHash(KeyHasher::HashKeyRecord(key_.schema(), int_key_), ctx_.max_parallelism);
  }
  // The window (slide pane) of event time ts in fold_windows_ when records fold into it; null
  // otherwise. A window not there replaces the earlier of the two. Which of the two holds ts is
  // found without a branch: records out of order fall in either at random (window_count: a
  // quarter of them in the earlier one), which a branch mispredicted.
  ABSL_ATTRIBUTE_ALWAYS_INLINE FoldWindow* FoldWindowOf(int64_t ts) {
    const FoldWindow& w0 = fold_windows_[0];
    const FoldWindow& w1 = fold_windows_[1];
    const bool in0 = (w0.start <= ts) & (ts < w0.end);  // an unused window (end == start) holds none
    const bool in1 = (w1.start <= ts) & (ts < w1.end);
    if (ABSL_PREDICT_TRUE(in0 | in1)) {
      FoldWindow* fw = fold_windows_ + static_cast<size_t>(in1);
      return fw->folds ? fw : nullptr;
    }
    return NewFoldWindow(ts);
  }
  // FoldWindowOf() of an event time in neither window: the window (slide pane) of ts, replacing
  // the earlier of the two, when records fold into it; null otherwise.
  ABSL_ATTRIBUTE_NOINLINE FoldWindow* NewFoldWindow(int64_t ts) {
    const WindowSpec& ws = o_->windows;
    const int64_t size = slide_panes_ ? ws.slide_ms : ws.size_ms;
    const __int128 start = WindowStart(ts, ws.offset_ms, size);
    // Its windows must fit in int64 (AssignWindows; ProcessInSlidePane).
    const __int128 lowest = slide_panes_ ? start + ws.slide_ms - ws.size_ms : start;
    const __int128 highest = slide_panes_ ? start + ws.size_ms : start + size;
    if (lowest < std::numeric_limits<int64_t>::min() || highest > kMaxTs) return nullptr;
    const int64_t s = static_cast<int64_t>(start);
    if (!Folds(s, s + size)) return nullptr;
    FoldWindow& fw = fold_windows_[0].start < fold_windows_[1].start ? fold_windows_[0] : fold_windows_[1];
    fw.start = s;
    fw.end = s + size;
    fw.folds = true;
    ++buckets_generation_;  // its entries were another window's
    return &fw;
  }
  // Record r of `rows` into its key's pane in `bucket` (FoldBatch), counting a pane it starts
  // in *made; false, nothing done, when the key has none and one cannot start here.
  template <typename Rows>
  bool FoldIntoBucket(Bucket* bucket, const Rows& rows, size_t r, uint64_t* made) {
    const int64_t key = rows.Key(r);
    int64_t* words;
    if (bucket->timers && !bucket->overflow && pane_bytes_ < max_pane_bytes_) {
      bool inserted;
      words = bucket->int_panes.FindOrInsertInlined(key, &inserted);
      if (inserted) {
        if (!bucket->narrow) words[kNextEarly] = kNoEarly;  // ResetAcc's row: the rest zeros
        ++*made;
        bucket->bytes += bucket->int_panes.BytesPerKey();
        pane_bytes_ += bucket->int_panes.BytesPerKey();
      }
    } else {
      words = bucket->int_panes.Find(key);
      if (words == nullptr) return false;
    }
    if (counts_only_) {  // FoldValues() of counts only: the record count, no value words
      if (bucket->narrow) {
        ++words[0];
      } else {
        ++words[kRecords];
        words[kDirty] = 1;  // FoldWords()
      }
    } else if (!bucket->narrow) {
      FoldWords(words, rows.At(r));
    } else {
      FoldValues(&words[0], words + 1, rows.At(r));
    }
    bucket->dirty = true;
    return true;
  }

  // Narrow panes (Bucket::narrow). A narrow slot's words: the pane's record count, then its
  // words after the header (REQUIRES for all: narrow_panes_).
  size_t NarrowWords() const { return 1 + pane_words_ - kHeaderFields; }
  // The pane words [0, pane_words_) of a pane `records` records were folded into and that has not
  // fired (what FoldWords leaves in a new pane), its words after the header `values`: a narrow
  // slot's or a flat session's as a pane.
  void FoldedPaneWords(int64_t records, const int64_t* values, int64_t* words) const {
    std::fill_n(words, kHeaderFields, 0);
    words[kRecords] = records;
    words[kDirty] = 1;
    words[kNextEarly] = kNoEarly;
    std::copy_n(values, pane_words_ - kHeaderFields, words + kHeaderFields);
  }
  // The pane's words of a narrow slot's.
  void WidenPane(const int64_t* narrow, int64_t* words) const { FoldedPaneWords(narrow[0], narrow + 1, words); }
  // Whether pane words `words` are what WidenPane gives for some narrow slot.
  static bool NarrowHolds(const int64_t* words) {
    return words[kRecords] > 0 && words[kEmitted] == 0 && words[kFinalFired] == 0 && words[kDirty] == 1 &&
           words[kNextEarly] == kNoEarly;
  }
  // Makes `bucket`'s slots the panes' words (no effect unless narrow). Pointers into its
  // int_panes are invalid after it.
  void Widen(Bucket* bucket) {
    if (!bucket->narrow) return;
    internal::IntPaneTable wide;
    wide.SetWords(pane_words_ + null_words_);
    wide.Reserve(bucket->int_panes.size());
    bucket->int_panes.ForEach([&](int64_t key, const int64_t* narrow) {
      bool inserted;
      WidenPane(narrow, wide.FindOrInsert(key, &inserted));
    });
    const size_t keys = bucket->int_panes.size();
    pane_bytes_ -= bucket->bytes;
    bucket->bytes += keys * wide.BytesPerKey() - keys * bucket->int_panes.BytesPerKey();
    pane_bytes_ += bucket->bytes;
    bucket->int_panes = std::move(wide);
    bucket->narrow = false;
    narrow_buckets_widened.fetch_add(1, std::memory_order_relaxed);
  }

  // Record r (event time ts) into its slide pane (see the class comment), or dropped as late;
  // false, nothing done, when one of its windows would not fit in int64 (the general path
  // then updates its windows' own buckets).
  absl::StatusOr<bool> ProcessInSlidePane(const Record& r, int64_t ts) {
    const int64_t size = o_->windows.size_ms;
    const int64_t slide = o_->windows.slide_ms;
    const __int128 p = WindowStart(ts, o_->windows.offset_ms, slide);
    if (p + slide - size < std::numeric_limits<int64_t>::min() || p + size > kMaxTs) return false;
    const TimeWindow pane{static_cast<int64_t>(p), static_cast<int64_t>(p + slide)};
    if (IsLate(TimeWindow{pane.start, static_cast<int64_t>(p + size)})) {  // its last window
      SLUICE_RETURN_IF_ERROR(Late(r));
      return true;
    }
    SetRecordWindow(pane);
    SLUICE_ASSIGN_OR_RETURN(bool folded, FoldIntoPane(pane, r));
    if (folded) return true;
    cur_key_ = key_.bytes();
    SLUICE_RETURN_IF_ERROR(LoadOrCreate(pane));
    SLUICE_RETURN_IF_ERROR(AddRecord(pane, r, ts));
    return true;
  }

  // The final firing of window w whose bucket keeps every pane in int_panes (no overflow) and
  // is dropped at once (event time, no lateness, no distinct values): OnTimer's rows in its key
  // order (FireItem::Before: the keys' record bytes, varints of their zigzag values) without
  // making the bytes: a key's first 8 bytes and its last 2, big-endian and zero-padded, order
  // the keys as their bytes do (no varint is the start of another). A bucket of key group `kg`
  // holding the keys the group's last firing here fired takes their order from it, unsorted
  // (AddLastIntFireOrder). False, nothing done, when a key has an early firing pending (its timer
  // is the general path's to cancel).
  absl::StatusOr<bool> FireIntKeys(const Bucket& bucket, int kg, const TimeWindow& w) {
    int_fire_order_.clear();
    if (!AddLastIntFireOrder(bucket, kg)) {
      int_fire_order_.clear();
      if (!AddIntFireItems(bucket)) return false;
      SortIntFireItems();
      if (fire_order_reuse_enabled) {
        if (last_fire_orders_.size() <= static_cast<size_t>(kg)) last_fire_orders_.resize(static_cast<size_t>(kg) + 1);
        std::vector<int64_t>& order = last_fire_orders_[static_cast<size_t>(kg)];
        order.clear();
        for (const IntFireItem& item : int_fire_order_) order.push_back(item.key);
      }
    }
    if (bucket.narrow && counts_only_) return FireNarrowCounts(w);
    for (const IntFireItem& item : int_fire_order_) {
      if (bucket.narrow) {
        WidenPane(item.words, widened_.data());
        PaneToAcc(widened_.data(), nullptr, &acc_);
      } else {
        PaneToAcc(item.words, nullptr, &acc_);
      }
      if (acc_[kFinalFired].i != 0) continue;
      out_[0].i = item.key;  // the key's one field
      SLUICE_RETURN_IF_ERROR(EmitRowValues(w));
    }
    return true;
  }

  // FireIntKeys' rows of a narrow bucket whose aggregates are all counts (counts_only_): each
  // key's row straight from its slot's record count (a narrow pane has not fired: emitted 0),
  // without making the pane's words or its accumulator row.
  absl::StatusOr<bool> FireNarrowCounts(const TimeWindow& w) {
    const size_t first = key_.schema().size();  // 1: the key's one field
    out_[first].i = w.start;
    out_[first + 1].i = w.end;
    const size_t counts_end = first + 2 + o_->aggregates.size();
    out_[counts_end].i = 0;  // emitted before
    for (const IntFireItem& item : int_fire_order_) {
      out_[0].i = item.key;
      for (size_t f = first + 2; f < counts_end; ++f) out_[f].i = item.words[0];
      SLUICE_RETURN_IF_ERROR(output_->Emit(out_));
    }
    narrow_count_rows.fetch_add(int_fire_order_.size(), std::memory_order_relaxed);
    return true;
  }

  // Appends the keys of bucket's int_panes to int_fire_order_ with their order (see
  // FireIntKeys); false when one has an early firing pending.
  bool AddIntFireItems(const Bucket& bucket) {
    bool early = false;
    bucket.int_panes.ForEach([&](int64_t key, const int64_t* words) {
      early |= !bucket.narrow && words[kNextEarly] != kNoEarly;
      uint64_t prefix;
      uint16_t tail;
      IntKeyOrder(key, &prefix, &tail);
      int_fire_order_.push_back({prefix, tail, static_cast<uint32_t>(int_fire_order_.size()), key, words});
    });
    return !early;
  }
  // Appends the keys of bucket's int_panes to int_fire_order_ in the order FireIntKeys last
  // fired key group `kg`'s keys when the bucket holds the same keys (as many, each found): the
  // order SortIntFireItems would give them (a tumbling window's buckets of a group usually hold
  // the keys of the window before). False otherwise, or when a key has an early firing pending.
  bool AddLastIntFireOrder(const Bucket& bucket, int kg) {
    if (!fire_order_reuse_enabled || static_cast<size_t>(kg) >= last_fire_orders_.size()) return false;
    const std::vector<int64_t>& order = last_fire_orders_[static_cast<size_t>(kg)];
    if (order.empty() || order.size() != bucket.int_panes.size()) return false;
    int_fire_order_.resize(order.size());
    for (size_t i = 0; i < order.size(); ++i) {
      const int64_t* words = bucket.int_panes.Find(order[i]);
      if (words == nullptr || (!bucket.narrow && words[kNextEarly] != kNoEarly)) return false;
      int_fire_order_[i].key = order[i];
      int_fire_order_[i].words = words;
    }
    fire_orders_reused.fetch_add(1, std::memory_order_relaxed);
    return true;
  }
  // int_fire_order_ in key order (FireItem::Before's), then in the order added.
  void SortIntFireItems() {
    std::sort(int_fire_order_.begin(), int_fire_order_.end(), [](const IntFireItem& a, const IntFireItem& b) {
      if (a.prefix != b.prefix) return a.prefix < b.prefix;
      return a.tail != b.tail ? a.tail < b.tail : a.seq < b.seq;
    });
  }
  // FireSlidePanes' merge and rows when its buckets keep every pane in int_panes (no overflow),
  // from the slots (see FireIntKeys); false, nothing done, otherwise.
  absl::StatusOr<bool> FireIntSlidePanes(const BucketId& id) {
    const TimeWindow w{id.start, id.end};
    const int64_t slide = o_->windows.slide_ms;
    int_fire_order_.clear();
    auto add = [&](const BucketId& from) -> absl::StatusOr<bool> {
      SetWindow(TimeWindow{from.start, from.end}, from.kg, absl::string_view());
      SLUICE_ASSIGN_OR_RETURN(Bucket * bucket, FindBucket(/*create=*/false));
      if (bucket == nullptr) return true;
      Widen(bucket);  // (none is narrow: slide panes are not)
      return bucket->panes.empty() && !bucket->overflow && AddIntFireItems(*bucket);
    };
    SLUICE_ASSIGN_OR_RETURN(bool added, add(id));  // the window's own bucket first
    if (!added) return false;
    for (int64_t p = w.start; p < w.end; p += slide) {
      SLUICE_ASSIGN_OR_RETURN(added, add(BucketId{p, p + slide, id.kg}));
      if (!added) return false;
    }
    SortIntFireItems();
    for (size_t i = 0; i < int_fire_order_.size();) {
      const IntFireItem& first = int_fire_order_[i];
      size_t j = i + 1;
      while (j < int_fire_order_.size() && int_fire_order_[j].key == first.key) ++j;
      if (j == i + 1) {
        PaneToAcc(first.words, nullptr, &acc_);  // in one pane only (as FireSlidePanes)
        acc_[kEmitted].i = 0;
      } else {
        SLUICE_RETURN_IF_ERROR(ResetAcc());
        for (size_t k = i; k < j; ++k) {
          PaneToAcc(int_fire_order_[k].words, nullptr, &other_acc_);
          SLUICE_RETURN_IF_ERROR(MergeAcc(other_acc_));
        }
      }
      out_[0].i = first.key;
      SLUICE_RETURN_IF_ERROR(EmitRowValues(w));
      i = j;
    }
    return true;
  }

  // Fires window `id` of slide panes: its own bucket's and its panes' accumulators merged per
  // key (in that order, so first and last pick among records of equal time as the general
  // path), in key order; then drops its bucket and its first pane.
  absl::Status FireSlidePanes(const BucketId& id) {
    const TimeWindow w{id.start, id.end};
    const int64_t slide = o_->windows.slide_ms;
    bool fired = false;
    if (int_keys_) {
      SLUICE_ASSIGN_OR_RETURN(fired, FireIntSlidePanes(id));
    }
    overflow_panes_.clear();
    fire_keys_.clear();
    fire_order_.clear();
    if (!fired) {
      SLUICE_RETURN_IF_ERROR(GatherForFiring(id));
      for (int64_t p = w.start; p < w.end; p += slide) {
        SLUICE_RETURN_IF_ERROR(GatherForFiring(BucketId{p, p + slide, id.kg}));
      }
      std::sort(fire_order_.begin(), fire_order_.end(), FireItem::Order());
    }
    for (size_t i = 0; i < fire_order_.size();) {
      size_t j = i + 1;
      while (j < fire_order_.size() && *fire_order_[j].key == *fire_order_[i].key) ++j;
      if (j == i + 1) {
        // In one pane only: its accumulator is the window's (what MergeAcc into an empty one
        // gives: the same records and values).
        PaneToAcc(fire_order_[i].pane.words, fire_order_[i].pane.strings, &acc_);
        acc_[kEmitted].i = 0;
      } else {
        SLUICE_RETURN_IF_ERROR(ResetAcc());
        for (size_t k = i; k < j; ++k) {
          PaneToAcc(fire_order_[k].pane.words, fire_order_[k].pane.strings, &other_acc_);
          SLUICE_RETURN_IF_ERROR(MergeAcc(other_acc_));
        }
      }
      cur_key_ = *fire_order_[i].key;
      SLUICE_RETURN_IF_ERROR(EmitRow(w));
      i = j;
    }
    SetWindow(w, id.kg, absl::string_view());
    SLUICE_RETURN_IF_ERROR(DropBucket());
    SetWindow(TimeWindow{w.start, w.start + slide}, id.kg, absl::string_view());
    return DropBucket();
  }
  // Appends bucket `id`'s windows (from memory, and its overflow from the backend) to
  // fire_order_.
  absl::Status GatherForFiring(const BucketId& id) {
    SetWindow(TimeWindow{id.start, id.end}, id.kg, absl::string_view());
    SLUICE_ASSIGN_OR_RETURN(Bucket * bucket, FindBucket(/*create=*/false));
    if (bucket == nullptr) return absl::OkStatus();
    Widen(bucket);
    for (auto& [k, pane] : bucket->panes) AddFireItem(&k, Ref(&pane), false);
    bucket->int_panes.ForEach([this](int64_t key, int64_t* words) {
      fire_keys_.emplace_back();
      IntKeyBytes(key, &fire_keys_.back());
      AddFireItem(&fire_keys_.back(), PaneRef{words, nullptr}, false);
    });
    if (!bucket->overflow) return absl::OkStatus();
    SetBucketKey();
    SLUICE_RETURN_IF_ERROR(state_->MapEntries(overflow_id_, &entries_));
    for (auto& [k, v] : entries_) {
      SLUICE_RETURN_IF_ERROR(DecodeOverflow(v, &decoded_acc_));
      overflow_panes_.emplace_back(std::move(k), Pane());
      AccToPane(decoded_acc_, &overflow_panes_.back().second);
      AddFireItem(&overflow_panes_.back().first, Ref(&overflow_panes_.back().second), true);
    }
    return absl::OkStatus();
  }

  // The event time records are judged by: the input watermark, or the one restored if higher.
  int64_t Watermark() const { return std::max(timers_->CurrentWatermark(), restored_watermark_); }

  int64_t CleanupTime(const TimeWindow& w) const {
    return SaturatingAdd(w.max_timestamp(), o_->allowed_lateness_ms);
  }
  // Whether the window's state is gone (or would be) by the current watermark: a record for it
  // is dropped (Flink's WindowOperator.isWindowLate).
  bool IsLate(const TimeWindow& w) const { return o_->event_time && CleanupTime(w) <= Watermark(); }

  // The memory a pane of key record `key` takes in its bucket, estimated: its hash map slot and
  // control byte, the key's and the words' heap storage; string accumulators count by their
  // empty size (their values are not tracked as they change).
  size_t PaneBytes(absl::string_view key) const {
    constexpr size_t kInlineKey = 15;  // std::string's inline capacity (libstdc++)
    const size_t words = pane_words_ + null_words_;
    return sizeof(std::pair<const std::string, Pane>) + 1 + (key.size() > kInlineKey ? key.size() + 1 : 0) +
           (words > 8 ? words * sizeof(int64_t) : 0) + pane_strings_ * sizeof(std::string);
  }

  static void BucketKey(const BucketId& id, std::string* out) {
    out->clear();
    internal::PutOrderedInt64(id.start, out);
    internal::PutOrderedInt64(id.end, out);
    for (int shift = 24; shift >= 0; shift -= 8) out->push_back(static_cast<char>((id.kg >> shift) & 0xff));
  }
  static bool DecodeBucketKey(absl::string_view key, BucketId* id) {
    if (key.size() != kBucketKeySize) return false;
    id->start = internal::GetOrderedInt64(key.data());
    id->end = internal::GetOrderedInt64(key.data() + 8);
    uint32_t kg = 0;
    for (size_t i = 16; i < kBucketKeySize; ++i) kg = (kg << 8) | static_cast<unsigned char>(key[i]);
    id->kg = static_cast<int>(kg);
    return true;
  }

  // Makes window w of key `key` (record bytes, key group kg) the current one; the backend's
  // current key is set by whoever reads it (SetBucketKey, SetCompositeKey).
  void SetWindow(const TimeWindow& w, int kg, absl::string_view key) {
    cur_id_ = BucketId{w.start, w.end, kg};
    cur_key_ = key;
    if (int_keys_ && !key.empty()) ParseIntKey(key, &cur_int_key_);
    cur_bucket_ = nullptr;
    cur_pane_ = PaneRef();
    cur_overflow_ = false;
  }
  // Makes window w of the current record's key (key_) the current one; an integer key's record
  // bytes are left out (cur_key_ empty) until a path needs them beyond FoldIntoPane.
  void SetRecordWindow(const TimeWindow& w) {
    if (!int_keys_) return SetWindow(w, key_.key_group(), key_.bytes());
    SetWindow(w, key_.key_group(), absl::string_view());
    cur_int_key_ = key_.record()[0].i;
  }
  // The current key's pane in `bucket` (memory only), or none.
  PaneRef FindPane(Bucket* bucket) {
    if (int_keys_) {
      if (bucket->narrow) {
        if (bucket->int_panes.Find(cur_int_key_) == nullptr) return PaneRef();
        Widen(bucket);
      }
      return PaneRef{bucket->int_panes.Find(cur_int_key_), nullptr};
    }
    auto it = bucket->panes.find(cur_key_);
    return it == bucket->panes.end() ? PaneRef() : Ref(&it->second);
  }
  // An integer key's record bytes (key_'s schema: one int64 or timestamp field, not null).
  static void IntKeyBytes(int64_t key, std::string* out) {
    out->clear();
    PutVarint64(ZigZag(key), out);
  }
  // The value of a key of int_keys_ from its record bytes; false unless `bytes` are exactly
  // what IntKeyBytes writes for it.
  static bool ParseIntKey(absl::string_view bytes, int64_t* key) {
    uint64_t u = 0;
    const char* end = bytes.data() + bytes.size();
    const char* p = GetVarint64(bytes.data(), end, &u);
    if (p != end) return false;
    *key = UnZigZag(u);
    size_t canonical = 1;
    for (uint64_t v = u; v >= 0x80; v >>= 7) ++canonical;
    return canonical == bytes.size();
  }
  // The backend's current key: the current bucket's key.
  void SetBucketKey() {
    BucketKey(cur_id_, &bucket_key_);
    state_->SetCurrentKey(bucket_key_, cur_id_.kg);
  }
  // The backend's current key: the current window's composite key (distinct values).
  void SetCompositeKey() {
    composite_.assign(cur_key_.data(), cur_key_.size());
    internal::PutOrderedInt64(cur_id_.start, &composite_);
    internal::PutOrderedInt64(cur_id_.end, &composite_);
    state_->SetCurrentKey(composite_, cur_id_.kg);
  }

  // The current bucket, from memory or (after a restore) from the backend; a new empty one if
  // `create`, else null when there is none.
  absl::StatusOr<Bucket*> FindBucket(bool create) {
    if (cur_bucket_ != nullptr) return cur_bucket_;
    BucketCacheEntry& cached = bucket_cache_[BucketCacheSlot(cur_id_)];
    if (cached.generation == buckets_generation_ && cached.id == cur_id_) return cur_bucket_ = cached.bucket;
    auto it = buckets_.find(cur_id_);
    if (it != buckets_.end()) {
      cached = {cur_id_, &it->second, buckets_generation_};
      return cur_bucket_ = &it->second;
    }
    bool found = false;
    if (backend_has_more_) {
      SetBucketKey();
      SLUICE_ASSIGN_OR_RETURN(found, state_->Get(panes_id_, &value_));
    }
    if (!found && !create) return nullptr;
    Bucket& bucket = buckets_[cur_id_];
    ++buckets_generation_;  // buckets_ may have moved
    cur_bucket_ = &bucket;
    bucket.narrow = narrow_panes_ && !found;
    bucket.int_panes.SetWords(bucket.narrow ? NarrowWords() : pane_words_ + null_words_);
    if (bucket.narrow) {
      bucket.int_panes.SetHalfLoad();  // a narrow slot is small, and looked up per record
      narrow_buckets_made.fetch_add(1, std::memory_order_relaxed);
    }
    if (int_keys_ && !found) bucket.int_panes.Reserve(fired_bucket_keys_);
    if (found) {
      absl::Status s = DecodeBucket(value_, IsPane(cur_id_) ? kSlidePaneVersion : kWindowBucketVersion, &bucket);
      if (!s.ok()) {
        buckets_.erase(cur_id_);
        ++buckets_generation_;
        cur_bucket_ = nullptr;
        return s;
      }
      bucket.in_backend = true;
      bucket.timers = true;
      for (const auto& [key, pane] : bucket.panes) bucket.bytes += PaneBytes(key);
      bucket.bytes += bucket.int_panes.size() * bucket.int_panes.BytesPerKey();
      pane_bytes_ += bucket.bytes;
    }
    return cur_bucket_;
  }

  // [version][overflow: 0 or 1][count] then per key [size][key record][size][accumulator row].
  void EncodeBucket(const Bucket& bucket, int version, std::string* out) {
    out->assign(1, static_cast<char>(version));
    out->push_back(bucket.overflow ? 1 : 0);
    PutVarint64(bucket.panes.size() + bucket.int_panes.size(), out);
    for (const auto& [key, pane] : bucket.panes) {
      PutVarint64(key.size(), out);
      out->append(key);
      AppendPaneRow(pane.words.data(), pane.strings.data(), out);
    }
    bucket.int_panes.ForEach([&](int64_t key, const int64_t* words) {
      IntKeyBytes(key, &scratch_);
      PutVarint64(scratch_.size(), out);
      out->append(scratch_);
      if (bucket.narrow) {
        WidenPane(words, widened_.data());
        words = widened_.data();
      }
      AppendPaneRow(words, nullptr, out);
    });
  }
  // [size][the pane's accumulator row].
  void AppendPaneRow(const int64_t* words, const std::string* strings, std::string* out) {
    if (words_only_) {
      char row[kMaxWordsRow];
      const size_t size = static_cast<size_t>(EncodePaneRow(words, row) - row);
      PutVarint64(size, out);
      out->append(row, size);
      return;
    }
    PaneToAcc(words, strings, &decoded_acc_);
    row_.clear();
    EncodeRecord(acc_schema_, decoded_acc_, &row_);
    PutVarint64(row_.size(), out);
    out->append(row_);
  }
  // kDataLoss unless `stored` decodes and is of format `expected` (a window's bucket or a
  // pane's, by its key).
  absl::Status DecodeBucket(absl::string_view stored, int expected, Bucket* bucket) {
    absl::string_view body;
    SLUICE_ASSIGN_OR_RETURN(int version, ReadStateVersion(ctx_.state_origin, "window panes", stored,
                                                          kSlidePaneVersion, &body));
    if (version != expected) {
      return ctx_.state_origin.DataLoss(absl::StrCat(
          "window panes of format ", version, " (", version == kSlidePaneVersion ? "a slide pane" : "a window",
          ") under the key of ", expected == kSlidePaneVersion ? "a slide pane" : "a window"));
    }
    const char* p = body.data();
    const char* end = body.data() + body.size();
    auto corrupt = [&](absl::string_view why) {
      return ctx_.state_origin.DataLoss(absl::StrCat("window panes (", stored.size(),
                                                     " bytes) do not decode at byte ",
                                                     1 + (p - body.data()), ": ", why));
    };
    Widen(bucket);  // (a bucket decoded is new: not narrow)
    if (p == end || static_cast<unsigned char>(*p) > 1) return corrupt("no overflow flag");
    bucket->overflow = *p++ == 1;
    uint64_t count = 0;
    p = GetVarint64(p, end, &count);
    if (p == nullptr) return corrupt("no count");
    for (uint64_t i = 0; i < count; ++i) {
      uint64_t key_size = 0;
      const char* q = GetVarint64(p, end, &key_size);
      if (q == nullptr || key_size > static_cast<uint64_t>(end - q)) return corrupt("bad key size");
      const absl::string_view key(q, key_size);
      p = q + key_size;
      int64_t int_key = 0;
      if (int_keys_ && !ParseIntKey(key, &int_key)) return corrupt("a key is not one integer");
      SLUICE_ASSIGN_OR_RETURN(bool read, ReadPaneRow(&p, end, &why_));
      if (!read) return corrupt(why_);
      if (int_keys_) {
        bool inserted;
        AccToWords(decoded_acc_, PaneRef{bucket->int_panes.FindOrInsert(int_key, &inserted), nullptr});
      } else {
        AccToPane(decoded_acc_, &bucket->panes[key]);
      }
    }
    if (p != end) return corrupt("bytes left over");
    return absl::OkStatus();
  }

  // Reads what AppendPaneRow wrote at *p (before `end`) into decoded_acc_ and moves *p past it;
  // false, with `why`, when it does not decode. kFailedPrecondition for a plugin's accumulator of
  // another version (CheckPluginVersions).
  absl::StatusOr<bool> ReadPaneRow(const char** p, const char* end, std::string* why) {
    uint64_t row_size = 0;
    const char* q = GetVarint64(*p, end, &row_size);
    if (q == nullptr || row_size > static_cast<uint64_t>(end - q)) {
      *why = "bad row size";
      return false;
    }
    RecordDecoder dec(&acc_schema_, absl::string_view(q, row_size));
    absl::Status s = dec.Next(&decoded_acc_);
    if (!s.ok() || !dec.Done()) {
      *why = s.ok() ? "bytes left over in a row" : std::string(s.message());
      return false;
    }
    *p = q + row_size;
    SLUICE_RETURN_IF_ERROR(CheckPluginVersions(decoded_acc_));
    return true;
  }

  // Writes the changed buckets to the backend ("window_panes" under their bucket keys).
  absl::Status WriteBuckets() {
    for (auto& [id, bucket] : buckets_) {
      if (!bucket.dirty) continue;
      SLUICE_RETURN_IF_ERROR(WriteBucket(id, bucket));
    }
    return absl::OkStatus();
  }
  absl::Status WriteBucket(const BucketId& id, Bucket& bucket) {
    EncodeBucket(bucket, IsPane(id) ? kSlidePaneVersion : kWindowBucketVersion, &value_);
    BucketKey(id, &bucket_key_);
    state_->SetCurrentKey(bucket_key_, id.kg);
    SLUICE_RETURN_IF_ERROR(state_->Put(panes_id_, value_));
    bucket.dirty = false;
    bucket.in_backend = true;
    return absl::OkStatus();
  }

  // A pane without strings (words_only_) as its accumulator row (acc_schema_), the bytes
  // EncodeRecord writes for PaneToAcc's row, into `p`; returns the end. REQUIRES: room for
  // kMaxWordsRow bytes.
  char* EncodePaneRow(const int64_t* words, char* p) const {
    for (size_t f = 0; f < slot_.size(); ++f) {
      const int n = null_bit_[f];
      if (n >= 0) {
        const bool null = (words[pane_words_ + n / 64] >> (n % 64)) & 1;
        *p++ = null ? 1 : 0;
        if (null) continue;
      }
      const int64_t word = words[slot_[f]];
      switch (acc_schema_.field(f).type) {
        case FieldType::kDouble:
          std::memcpy(p, &word, 8);  // the double's bytes, little-endian as EncodeRecord's
          p += 8;
          break;
        case FieldType::kBool:
          *p++ = word != 0 ? 1 : 0;
          break;
        default:
          for (uint64_t v = ZigZag(word);; v >>= 7) {
            if (v < 0x80) {
              *p++ = static_cast<char>(v);
              break;
            }
            *p++ = static_cast<char>((v & 0x7f) | 0x80);
          }
          break;
      }
    }
    return p;
  }

  // Pane <-> accumulator row.
  void PaneToAcc(const Pane& pane, Record* acc) const { PaneToAcc(pane.words.data(), pane.strings.data(), acc); }
  void PaneToAcc(const int64_t* words, const std::string* strings, Record* acc) const {
    for (size_t f = 0; f < slot_.size(); ++f) {
      switch (kind_[f]) {
        case kStringSlot:
          (*acc)[f].s.assign(strings[slot_[f]]);
          break;
        case kDoubleSlot:
          std::memcpy(&(*acc)[f].d, &words[slot_[f]], sizeof(double));
          break;
        default:
          (*acc)[f].i = words[slot_[f]];
          break;
      }
    }
    for (size_t n = 0; n < nullable_fields_.size(); ++n) {
      acc->SetNullTo(nullable_fields_[n], (words[pane_words_ + n / 64] >> (n % 64)) & 1);
    }
  }
  void AccToPane(const Record& acc, Pane* pane) const {
    if (pane->words.size() != pane_words_ + null_words_) {
      pane->words.resize(pane_words_ + null_words_);
      pane->strings.resize(pane_strings_);
    }
    AccToWords(acc, Ref(pane));
  }
  void AccToWords(const Record& acc, PaneRef pane) const {
    for (size_t f = 0; f < slot_.size(); ++f) {
      switch (kind_[f]) {
        case kStringSlot:
          pane.strings[slot_[f]].assign(acc[f].s);
          break;
        case kDoubleSlot:
          std::memcpy(&pane.words[slot_[f]], &acc[f].d, sizeof(double));
          break;
        default:
          pane.words[slot_[f]] = acc[f].i;
          break;
      }
    }
    if (null_words_ == 0) return;
    for (size_t w = 0; w < null_words_; ++w) pane.words[pane_words_ + w] = 0;
    for (size_t n = 0; n < nullable_fields_.size(); ++n) {
      if (acc.IsNull(nullable_fields_[n])) pane.words[pane_words_ + n / 64] |= uint64_t{1} << (n % 64);
    }
  }

  // Reads the current window's accumulator into `acc`; false when it has none.
  absl::StatusOr<bool> LoadAcc(Record* acc) {
    SLUICE_ASSIGN_OR_RETURN(Bucket * bucket, FindBucket(/*create=*/false));
    if (bucket == nullptr) return false;
    cur_pane_ = FindPane(bucket);
    if (cur_pane_.words != nullptr) {
      PaneToAcc(cur_pane_.words, cur_pane_.strings, acc);
      return true;
    }
    if (!bucket->overflow) return false;
    SetBucketKey();
    SLUICE_ASSIGN_OR_RETURN(bool found, state_->MapGet(overflow_id_, cur_key_, &value_));
    if (!found) return false;
    SLUICE_RETURN_IF_ERROR(DecodeOverflow(value_, acc));
    cur_overflow_ = true;
    return true;
  }
  // A stored accumulator of the layout before buckets ("window_acc", formats 1 and 2) into acc_.
  absl::Status DecodeLegacyAcc(const std::string& stored) {
    absl::string_view body;
    SLUICE_ASSIGN_OR_RETURN(int version, ReadStateVersion(ctx_.state_origin, "window accumulator",
                                                          stored, kAccVersion, &body));
    RecordDecoder dec(version == 1 ? &acc_schema_v1_ : &acc_schema_, body);
    absl::Status s = dec.Next(version == 1 ? &v1_acc_ : &acc_);
    if (!s.ok() || !dec.Done()) {
      return ctx_.state_origin.DataLoss(absl::StrCat(
          "window accumulator of format ", version, " does not decode (", stored.size(),
          " bytes): ", s.ok() ? "bytes left over" : s.message()));
    }
    if (version == 1) FromFormat1(&acc_);
    return CheckPluginVersions(acc_);
  }
  // kFailedPrecondition if a plugin's accumulator in `acc` is of a version its function does
  // not read.
  absl::Status CheckPluginVersions(const Record& acc) const {
    for (size_t a = 0; a < o_->aggregates.size(); ++a) {
      const WindowOptions::Aggregate& agg = o_->aggregates[a];
      if (agg.fn != Fn::kPlugin) continue;
      const int64_t acc_version = acc[acc_index_[a]].i;
      if (acc_version != agg.plugin->AccumulatorVersion()) {
        return absl::FailedPreconditionError(absl::StrCat(
            ctx_.task_name, ": the state holds accumulators of aggregate function '",
            agg.plugin->name(), "' (", agg.as, ") in format version ", acc_version, ", but ",
            agg.plugin->origin(), " reads version ", agg.plugin->AccumulatorVersion(),
            ": restore with the plugin version that wrote the state"));
      }
    }
    return absl::OkStatus();
  }
  // acc = v1_acc_, an accumulator of format 1: a value is there once the window has records.
  void FromFormat1(Record* acc) {
    for (int f = 0; f < kHeaderFields; ++f) CopyValue(acc_schema_.field(f).type, v1_acc_, f, acc, f);
    for (size_t f = kHeaderFields; f < acc_schema_v1_.size(); ++f) {
      const int to = acc_v1_index_[f - kHeaderFields];
      CopyValue(acc_schema_.field(to).type, v1_acc_, f, acc, to);
      acc->ClearNull(to);
    }
    const int64_t records = (*acc)[kRecords].i;
    for (size_t a = 0; a < o_->aggregates.size(); ++a) {
      if (!nullable_[a]) continue;
      const int v = acc_index_[a];
      if (o_->aggregates[a].fn == Fn::kAvg) (*acc)[v + 1].i = records;
      acc->SetNullTo(v, o_->aggregates[a].fn != Fn::kCountDistinct && records == 0);
    }
  }

  // legacy_keys_ = the keys that have value state `id` (of this subtask's key groups).
  absl::Status CollectKeys(state::StateId id) {
    legacy_keys_.clear();
    return state_->ForEachKey(id, [this](absl::string_view key) {
      legacy_keys_.emplace_back(key);
      return absl::OkStatus();
    });
  }

  // Moves the windows a restored checkpoint holds in the layout before buckets ("window_acc"
  // per key and window, timers per key and window) into buckets, deleting the old entries and
  // timers. kDataLoss if one does not decode.
  absl::Status MigrateLegacyWindows() {
    SLUICE_RETURN_IF_ERROR(CollectKeys(acc_id_));
    for (const std::string& composite : legacy_keys_) {
      if (composite.size() <= 16) return ctx_.state_origin.DataLoss("a window state key is malformed");
      const TimeWindow w{internal::GetOrderedInt64(composite.data() + composite.size() - 16),
                         internal::GetOrderedInt64(composite.data() + composite.size() - 8)};
      absl::Status s = key_.SetBytes(absl::string_view(composite).substr(0, composite.size() - 16));
      if (!s.ok()) return ctx_.state_origin.DataLoss(absl::StrCat("a window state key does not decode: ", s.message()));
      state_->SetCurrentKey(composite, key_.key_group());
      SLUICE_ASSIGN_OR_RETURN(bool found, state_->Get(acc_id_, &value_));
      if (!found) continue;
      SLUICE_RETURN_IF_ERROR(DecodeLegacyAcc(value_));
      SLUICE_RETURN_IF_ERROR(state_->Delete(acc_id_));
      if (o_->event_time) {
        SLUICE_RETURN_IF_ERROR(timers_->DeleteEventTimeTimer(w.max_timestamp()));
        SLUICE_RETURN_IF_ERROR(timers_->DeleteEventTimeTimer(CleanupTime(w)));
      } else {
        SLUICE_RETURN_IF_ERROR(timers_->DeleteProcessingTimeTimer(w.max_timestamp()));
      }
      if (acc_[kNextEarly].i != kNoEarly) {
        SLUICE_RETURN_IF_ERROR(timers_->DeleteProcessingTimeTimer(acc_[kNextEarly].i));
      }
      SetWindow(w, key_.key_group(), key_.bytes());
      SLUICE_RETURN_IF_ERROR(RegisterBucketTimers(w));
      if (acc_[kNextEarly].i != kNoEarly) {
        SetBucketKey();
        SLUICE_RETURN_IF_ERROR(timers_->RegisterProcessingTimeTimer(acc_[kNextEarly].i));
      }
      SLUICE_RETURN_IF_ERROR(StoreAcc());
    }
    legacy_keys_.clear();
    return absl::OkStatus();
  }

  // acc_ into the current window's pane: in memory, or in the overflow when it is there or
  // when a new one finds the memory budget spent.
  absl::Status StoreAcc() {
    SLUICE_ASSIGN_OR_RETURN(Bucket * bucket, FindBucket(/*create=*/true));
    if (cur_pane_.words == nullptr && !cur_overflow_ && pane_bytes_ >= max_pane_bytes_) {
      cur_overflow_ = true;
      if (!bucket->overflow) {
        bucket->overflow = true;
        bucket->dirty = true;  // the flag is checkpointed with the bucket
      }
    }
    if (cur_overflow_) {
      value_.assign(1, static_cast<char>(kOverflowVersion));
      EncodeRecord(acc_schema_, acc_, &value_);
      SetBucketKey();
      return state_->MapPut(overflow_id_, cur_key_, value_);
    }
    if (cur_pane_.words == nullptr && int_keys_) {
      if (bucket->narrow) {
        AccToWords(acc_, PaneRef{widened_.data(), nullptr});
        if (!NarrowHolds(widened_.data())) Widen(bucket);
      }
      bool inserted;
      int64_t* words = bucket->int_panes.FindOrInsert(cur_int_key_, &inserted);
      if (inserted) {
        int_key_panes_made.fetch_add(1, std::memory_order_relaxed);
        bucket->bytes += bucket->int_panes.BytesPerKey();
        pane_bytes_ += bucket->int_panes.BytesPerKey();
      }
      if (bucket->narrow) {  // (cur_pane_ stays none: narrow words are no PaneRef)
        words[0] = widened_[kRecords];
        std::copy_n(&widened_[kHeaderFields], NarrowWords() - 1, words + 1);
        bucket->dirty = true;
        return absl::OkStatus();
      }
      cur_pane_ = PaneRef{words, nullptr};
    } else if (cur_pane_.words == nullptr) {
      auto it = bucket->panes.try_emplace(cur_key_);
      if (it.second) {
        bucket->bytes += PaneBytes(cur_key_);
        pane_bytes_ += PaneBytes(cur_key_);
        it.first->second.words.resize(pane_words_ + null_words_);
        it.first->second.strings.resize(pane_strings_);
      }
      cur_pane_ = Ref(&it.first->second);
    }
    AccToWords(acc_, cur_pane_);
    bucket->dirty = true;
    return absl::OkStatus();
  }
  // An overflow entry ([kOverflowVersion][accumulator row]) into `acc`.
  absl::Status DecodeOverflow(absl::string_view stored, Record* acc) {
    absl::string_view body;
    SLUICE_ASSIGN_OR_RETURN(int version, ReadStateVersion(ctx_.state_origin, "window overflow", stored,
                                                          kOverflowVersion, &body));
    (void)version;
    RecordDecoder dec(&acc_schema_, body);
    absl::Status s = dec.Next(acc);
    if (!s.ok() || !dec.Done()) {
      return ctx_.state_origin.DataLoss(absl::StrCat("window overflow entry (", stored.size(),
                                                     " bytes) does not decode: ",
                                                     s.ok() ? "bytes left over" : s.message()));
    }
    return CheckPluginVersions(*acc);
  }
  // An empty accumulator row into acc_ (plugins' functions create theirs).
  absl::Status ResetAcc() {
    for (size_t i = 0; i < acc_schema_.size(); ++i) {
      acc_[i].i = 0;
      acc_[i].d = 0;
      acc_[i].s.clear();
      acc_.SetNullTo(i, acc_schema_.field(i).nullable);  // no value yet
    }
    acc_[kNextEarly].i = kNoEarly;
    for (size_t a = 0; a < o_->aggregates.size(); ++a) {
      const WindowOptions::Aggregate& agg = o_->aggregates[a];
      if (agg.fn != Fn::kPlugin) continue;
      acc_[acc_index_[a]].i = agg.plugin->AccumulatorVersion();
      SLUICE_RETURN_IF_ERROR(agg.plugin->Create(agg.in_type, &acc_[acc_index_[a] + 1].s));
    }
    return absl::OkStatus();
  }

  // Loads the accumulator of window w (the current window), or starts one and registers its
  // timers.
  absl::Status LoadOrCreate(const TimeWindow& w) {
    SLUICE_ASSIGN_OR_RETURN(bool found, LoadAcc(&acc_));
    if (found) return absl::OkStatus();
    SLUICE_RETURN_IF_ERROR(ResetAcc());
    return RegisterTimers(w);
  }

  // The common case without a row: record r folded straight into the pane of the current
  // window when it exists, has not fired, and every aggregate is count or sum/min/max/avg
  // over a non-null number (word_folds_). False, nothing done, otherwise.
  absl::StatusOr<bool> FoldIntoPane(const TimeWindow& w, const Record& r) {
    // (A slide pane whose first windows have fired takes records for its later ones.)
    if (!word_folds_ || (o_->event_time && !slide_panes_ && w.max_timestamp() <= Watermark())) return false;
    SLUICE_ASSIGN_OR_RETURN(Bucket * bucket, FindBucket(/*create=*/false));
    if (bucket == nullptr) return false;
    if (bucket->narrow) {
      int64_t* words = bucket->int_panes.Find(cur_int_key_);
      if (words == nullptr) return false;
      FoldValues(&words[0], words + 1, r);
      bucket->dirty = true;
      return true;
    }
    const PaneRef pane = FindPane(bucket);
    if (pane.words == nullptr) return false;
    FoldWords(pane.words, r);
    bucket->dirty = true;
    return true;
  }
  // Record r into a pane's words (REQUIRES: word_folds_; the window has not fired).
  void FoldWords(int64_t* words, const Record& r) const {
    FoldValues(&words[kRecords], words + kHeaderFields, r);
    words[kDirty] = 1;
  }
  // Record r counted in *records and folded into the aggregates' words, `values` (the pane's
  // words after its header: under word_folds_ every field is a word, at slot_[f] == f).
  // REQUIRES: word_folds_.
  void FoldValues(int64_t* records, int64_t* values, const Record& r) const {
    const bool first = *records == 0;
    ++*records;
    for (size_t a = 0; a < o_->aggregates.size(); ++a) {
      const WindowOptions::Aggregate& agg = o_->aggregates[a];
      if (agg.fn == Fn::kCount) continue;
      int64_t& word = values[acc_index_[a] - kHeaderFields];
      const Value& v = r[agg.field];
      if (kind_[acc_index_[a]] == kDoubleSlot) {
        double d;
        std::memcpy(&d, &word, sizeof(d));
        if (agg.fn == Fn::kSum || agg.fn == Fn::kAvg) {
          d += v.d;
        } else if (first || (agg.fn == Fn::kMin ? v.d < d : d < v.d)) {
          d = v.d;
        }
        std::memcpy(&word, &d, sizeof(d));
      } else if (agg.fn == Fn::kSum || agg.fn == Fn::kAvg) {
        word = WrappingAdd(word, v.i);
      } else if (first || (agg.fn == Fn::kMin ? v.i < word : word < v.i)) {
        word = v.i;
      }
    }
  }

  // A new window's timers: its bucket's (once per bucket) and its next early firing.
  absl::Status RegisterTimers(const TimeWindow& w) {
    SLUICE_RETURN_IF_ERROR(RegisterBucketTimers(w));
    return ScheduleEarly(w, timers_->CurrentProcessingTime());
  }
  absl::Status RegisterBucketTimers(const TimeWindow& w) {
    SLUICE_ASSIGN_OR_RETURN(Bucket * bucket, FindBucket(/*create=*/true));
    if (bucket->timers) return absl::OkStatus();
    bucket->timers = true;
    if (IsPane(cur_id_)) {
      // Each window holding the pane, under the window's key; those the watermark has passed
      // fired already (the record is late for them).
      const int64_t size = o_->windows.size_ms;
      for (int64_t end = w.end;; end += o_->windows.slide_ms) {
        if (end - 1 > Watermark()) {
          BucketKey(BucketId{end - size, end, cur_id_.kg}, &bucket_key_);
          state_->SetCurrentKey(bucket_key_, cur_id_.kg);
          SLUICE_RETURN_IF_ERROR(timers_->RegisterEventTimeTimer(end - 1));
        }
        if (end == w.start + size) return absl::OkStatus();
      }
    }
    SetBucketKey();
    if (o_->event_time) {
      // A window the watermark has passed (a late record within the lateness) fires at once.
      if (w.max_timestamp() > Watermark()) {
        SLUICE_RETURN_IF_ERROR(timers_->RegisterEventTimeTimer(w.max_timestamp()));
      }
      if (CleanupTime(w) != w.max_timestamp()) {
        SLUICE_RETURN_IF_ERROR(timers_->RegisterEventTimeTimer(CleanupTime(w)));
      }
      return absl::OkStatus();
    }
    return timers_->RegisterProcessingTimeTimer(w.max_timestamp());
  }

  // Registers the next early firing after processing time `now` (aligned on emit_every, as
  // Flink's ContinuousProcessingTimeTrigger), unless the window's own firing comes first.
  absl::Status ScheduleEarly(const TimeWindow& w, int64_t now) {
    if (o_->emit_every_ms <= 0) return absl::OkStatus();
    const int64_t every = o_->emit_every_ms;
    int64_t rem = now % every;
    if (rem < 0) rem += every;
    const int64_t next = SaturatingAdd(now - rem, every);
    if (!o_->event_time && next >= w.max_timestamp()) return absl::OkStatus();
    acc_[kNextEarly].i = next;
    if (o_->windows.merging()) {
      state_->SetCurrentKey(cur_key_, cur_id_.kg);  // session windows: the key's timer
    } else {
      SetBucketKey();
    }
    return timers_->RegisterProcessingTimeTimer(next);
  }

  absl::Status CancelEarlyTimer() {
    if (acc_[kNextEarly].i == kNoEarly) return absl::OkStatus();
    SetBucketKey();  // the bucket's other keys' early firings are due with it (final firing)
    SLUICE_RETURN_IF_ERROR(timers_->DeleteProcessingTimeTimer(acc_[kNextEarly].i));
    acc_[kNextEarly].i = kNoEarly;
    return absl::OkStatus();
  }

  // Adds record r (event time ts) to acc_, the accumulator of window w (the current window),
  // emits the row at once when the window has fired already (a late record within the
  // lateness), and stores it.
  absl::Status AddRecord(const TimeWindow& w, const Record& r, int64_t ts) {
    SLUICE_RETURN_IF_ERROR(AddToAcc(w, r, ts));
    return StoreAcc();
  }
  // AddRecord but storing: acc_ holds the result.
  absl::Status AddToAcc(const TimeWindow& w, const Record& r, int64_t ts) {
    const bool first = acc_[kRecords].i == 0;
    acc_[kRecords].i++;
    for (size_t a = 0; a < o_->aggregates.size(); ++a) {
      const WindowOptions::Aggregate& agg = o_->aggregates[a];
      if (agg.fn == Fn::kCount) continue;
      if (nullable_[a] && r.IsNull(agg.field)) continue;  // as SQL: aggregates skip nulls
      const Value& v = r[agg.field];
      if (agg.fn == Fn::kPlugin) {
        if (r.IsNull(agg.field)) continue;  // as SQL: skipped (only nullable fields are null)
        SLUICE_RETURN_IF_ERROR(agg.plugin->Add(agg.in_type, v, &acc_[acc_index_[a] + 1].s));
        continue;
      }
      if (agg.fn != Fn::kCountDistinct) {
        Fold(a, v, ts, first, 1);
        continue;
      }
      DistinctKey(static_cast<int>(a), Stored(agg.in_type), v);
      SetCompositeKey();
      SLUICE_ASSIGN_OR_RETURN(bool seen, state_->MapGet(distinct_id_, user_key_, &scratch_));
      if (!seen) {
        SLUICE_RETURN_IF_ERROR(state_->MapPut(distinct_id_, user_key_, ""));
        acc_[acc_index_[a]].i++;
      }
    }
    if (o_->event_time && !slide_panes_ && w.max_timestamp() <= Watermark()) {
      SLUICE_RETURN_IF_ERROR(EmitRow(w));  // late but within the lateness: fire again
    } else {
      acc_[kDirty].i = 1;
    }
    return absl::OkStatus();
  }

  static void CopyInto(FieldType type, const Value& from, Value* to) {
    switch (type) {
      case FieldType::kDouble:
        to->d = from.d;
        break;
      case FieldType::kString:
        to->s.assign(from.s);
        break;
      default:
        to->i = from.i;
        break;
    }
  }

  // user_key_ = [aggregate index][the value's bytes].
  void DistinctKey(int agg, FieldType type, const Value& v) {
    user_key_.assign(1, static_cast<char>(agg));
    switch (type) {
      case FieldType::kDouble: {
        int64_t bits;
        double d = v.d == 0 ? 0.0 : v.d;  // -0.0 and 0.0 are one value
        std::memcpy(&bits, &d, sizeof(bits));
        internal::PutOrderedInt64(bits, &user_key_);
        break;
      }
      case FieldType::kString:
        user_key_.append(v.s);
        break;
      default:
        internal::PutOrderedInt64(v.i, &user_key_);
        break;
    }
  }

  // Emits the row of window w from acc_ (update: whether a row was emitted for it before).
  absl::Status EmitRow(const TimeWindow& w) {
    RecordDecoder dec(&key_.schema(), cur_key_);
    absl::Status s = dec.Next(&out_);  // key fields come first in the output
    if (!s.ok()) return ctx_.state_origin.DataLoss(absl::StrCat("a window state key does not decode: ", s.message()));
    return EmitRowValues(w);
  }
  // EmitRow once out_'s key fields hold the current key.
  absl::Status EmitRowValues(const TimeWindow& w) {
    size_t f = key_.schema().size();
    out_[f++].i = w.start;
    out_[f++].i = w.end;
    const int64_t records = acc_[kRecords].i;
    for (size_t a = 0; a < o_->aggregates.size(); ++a, ++f) {
      const WindowOptions::Aggregate& agg = o_->aggregates[a];
      const Value& acc = acc_[acc_index_[a]];
      if (nullable_[a] && agg.fn != Fn::kCountDistinct) {
        out_.SetNullTo(f, acc_.IsNull(acc_index_[a]));  // only nulls so far
        if (acc_.IsNull(acc_index_[a])) continue;
      }
      switch (agg.fn) {
        case Fn::kCount:
          out_[f].i = records;
          break;
        case Fn::kAvg:
          out_[f].d =
              (Stored(agg.in_type) == FieldType::kDouble ? acc.d : static_cast<double>(acc.i)) /
              static_cast<double>(nullable_[a] ? acc_[acc_index_[a] + 1].i : records);
          break;
        case Fn::kCountDistinct:
          out_[f].i = acc.i;
          break;
        case Fn::kPlugin: {
          bool is_null = false;
          SLUICE_RETURN_IF_ERROR(
              agg.plugin->Result(agg.in_type, acc_[acc_index_[a] + 1].s, &out_[f], &is_null));
          out_.SetNullTo(f, is_null);
          break;
        }
        default:
          CopyInto(Stored(agg.out_type), acc, &out_[f]);
          break;
      }
    }
    out_[f].i = acc_[kEmitted].i;
    acc_[kEmitted].i = 1;
    acc_[kDirty].i = 0;
    return output_->Emit(out_);
  }

  // Drops window w's state of the current key but its pane (DropBucket drops the bucket's):
  // distinct values and pending early timer.
  absl::Status Cleanup() {
    SLUICE_RETURN_IF_ERROR(CancelEarlyTimer());
    return DropDistinct();
  }

  // The current window's distinct values.
  absl::Status DropDistinct() {
    if (!has_distinct_) return absl::OkStatus();
    SetCompositeKey();
    SLUICE_RETURN_IF_ERROR(state_->MapEntries(distinct_id_, &entries_));
    for (const auto& e : entries_) SLUICE_RETURN_IF_ERROR(state_->MapRemove(distinct_id_, e.first));
    return absl::OkStatus();
  }

  // Drops the current bucket, in memory and in the backend.
  absl::Status DropBucket() {
    auto it = buckets_.find(cur_id_);
    if (it == buckets_.end()) return absl::OkStatus();
    if (it->second.in_backend) {
      SetBucketKey();
      SLUICE_RETURN_IF_ERROR(state_->Delete(panes_id_));
    }
    if (it->second.overflow) {
      SetBucketKey();
      SLUICE_RETURN_IF_ERROR(state_->MapEntries(overflow_id_, &entries_));
      for (const auto& e : entries_) SLUICE_RETURN_IF_ERROR(state_->MapRemove(overflow_id_, e.first));
    }
    pane_bytes_ -= it->second.bytes;
    if (it->second.int_panes.size() > 0) fired_bucket_keys_ = it->second.int_panes.size();
    buckets_.erase(it);
    ++buckets_generation_;
    cur_bucket_ = nullptr;
    cur_pane_ = PaneRef();
    return absl::OkStatus();
  }

  // ---------------------------------------------------------------------------------------
  // Session windows, per key (Flink's MergingWindowSet; see the class comment).

  // An open session of a key.
  struct Session {
    TimeWindow w;
    TimeWindow state_w;  // the window its distinct values are kept under (Flink's state window)
    Pane pane;
    bool removed = false;  // cleaned up by the firing under way (dropped after it)
  };
  // A key's open sessions, sorted and pairwise apart (neither overlapping nor touching).
  struct KeySessions {
    absl::InlinedVector<Session, 1> sessions;
    const std::string* key = nullptr;  // its key in key_sessions_ (or spilled_key_)
    int kg = 0;
    bool dirty = false;       // changed since written to the backend
    bool in_backend = false;  // the backend holds a copy (maybe an older one)
    size_t bytes = 0;         // KeySessionsBytes when last counted in pane_bytes_
    // Its live entry in due_ (event time, in memory): at its earliest firing or before.
    bool queued = false;
    int64_t queued_at = 0;
    uint64_t queued_gen = 0;
    uint32_t refs = 0;  // entries of due_ pointing at it, live or stale
  };
  // A pending firing in due_ (a min-heap by time); stale unless its gen is its key's queued_gen.
  // A flat key's (see ProcessFlatSession): ks null, gen its key's value.
  struct DueEntry {
    int64_t at;
    uint64_t gen;
    KeySessions* ks;
    static bool Later(const DueEntry& a, const DueEntry& b) { return a.at > b.at; }
  };
  // A session's firing (and/or cleanup) due; run in the order of the per-key timers: time, key
  // group, key (its record bytes), window.
  struct SessionFireItem {
    int64_t at;
    KeySessions* ks;         // null: a flat key's session (fired and cleaned up at once)
    int kg;                  // the key's key group
    const std::string* key;  // the key's record bytes (null for a flat key's)
    int64_t flat_key;        // ks null: the key's value
    uint32_t index;          // in ks->sessions
    bool fire;               // its final firing (at end - 1)
    bool cleanup;            // its cleanup (at end - 1 + lateness)
    // The key's record bytes' first 8 and (one_int_key_: a varint of 10 bytes at most) last 2,
    // big-endian and zero-padded (KeyOrder): with one integer key they order the keys as their
    // bytes do (no varint is the start of another), so neither bytes nor memcmp are needed.
    uint64_t prefix;
    uint16_t tail;
    static bool Before(const SessionFireItem& a, const SessionFireItem& b) {
      if (a.at != b.at) return a.at < b.at;
      if (a.kg != b.kg) return a.kg < b.kg;
      if (a.prefix != b.prefix) return a.prefix < b.prefix;
      if (a.key != b.key) {
        const int c = a.key->compare(*b.key);
        if (c != 0) return c < 0;
      }
      return a.index < b.index;
    }
    // Before() when every key is one integer (one_int_key_): the key by its prefix and tail.
    static bool IntBefore(const SessionFireItem& a, const SessionFireItem& b) {
      if (a.at != b.at) return a.at < b.at;
      if (a.kg != b.kg) return a.kg < b.kg;
      if (a.prefix != b.prefix) return a.prefix < b.prefix;
      if (a.tail != b.tail) return a.tail < b.tail;
      return a.index < b.index;
    }
    // For std::sort, inlined (a function pointer is called per comparison).
    struct Order {
      bool operator()(const SessionFireItem& a, const SessionFireItem& b) const { return Before(a, b); }
    };
    struct IntOrder {
      bool operator()(const SessionFireItem& a, const SessionFireItem& b) const { return IntBefore(a, b); }
    };
  };
  // The order words of a key's record bytes (SessionFireItem::prefix and tail).
  static void KeyOrder(absl::string_view bytes, uint64_t* prefix, uint16_t* tail) {
    auto byte = [&](size_t i) -> uint64_t { return i < bytes.size() ? static_cast<unsigned char>(bytes[i]) : 0; };
    uint64_t p = 0;
    for (size_t i = 0; i < 8; ++i) p = (p << 8) | byte(i);
    *prefix = p;
    *tail = static_cast<uint16_t>(byte(8) << 8 | byte(9));
  }
  // KeyOrder of an integer key's record bytes (IntKeyBytes), without making them (also
  // FireIntKeys' order).
  // The varint's bytes are shifted into place in registers: bytes stored one by one and read
  // back as a word stalled the load (store forwarding) on every key a firing sorts.
  static void IntKeyOrder(int64_t key, uint64_t* prefix, uint16_t* tail) {
    uint64_t u = ZigZag(key);
    uint64_t p = 0;
    uint32_t t = 0;
    for (int i = 0;; ++i, u >>= 7) {  // byte i of at most 10
      const uint64_t byte = u < 0x80 ? u : (u & 0x7f) | 0x80;
      if (i < 8) {
        p |= byte << (56 - 8 * i);
      } else {
        t |= static_cast<uint32_t>(byte) << (8 * (9 - i));
      }
      if (u < 0x80) break;
    }
    *prefix = p;
    *tail = static_cast<uint16_t>(t);
  }

  // The current key's (key_) sessions: in memory (a flat key is made a node first), or (a key
  // beyond the memory budget) read from the backend into spilled_; null when it has none.
  absl::StatusOr<KeySessions*> FindKeySessions() {
    if (one_int_key_) {
      if (int64_t* slot = session_index_.Find(key_.record()[0].i)) {
        if ((slot[0] & kFlatKey) != 0) return PromoteFlatKey(slot);
        return reinterpret_cast<KeySessions*>(static_cast<uintptr_t>(slot[1]));
      }
    } else {
      auto it = key_sessions_.find(key_.bytes());
      if (it != key_sessions_.end()) return &it->second;
    }
    if (!sessions_spilled_) return nullptr;
    state_->SetCurrentKey(key_.bytes(), key_.key_group());
    SLUICE_ASSIGN_OR_RETURN(bool found, state_->Get(key_sessions_id_, &value_));
    if (!found) return nullptr;
    ResetSpilled();
    SLUICE_RETURN_IF_ERROR(DecodeKeySessions(value_, &spilled_));
    spilled_.in_backend = true;
    return &spilled_;
  }
  void ResetSpilled() {
    spilled_key_ = key_.bytes();
    spilled_.sessions.clear();
    spilled_.key = &spilled_key_;
    spilled_.kg = key_.key_group();
    spilled_.in_backend = false;
    spilled_.dirty = false;
  }
  // New, empty sessions of the current key: in memory, or in the backend (spilled_) when the
  // memory budget is spent.
  KeySessions* NewKeySessions() {
    if (!NewKeyFits()) {
      sessions_spilled_ = true;
      ResetSpilled();
      return &spilled_;
    }
    auto it = key_sessions_.try_emplace(key_.bytes()).first;
    KeySessions& ks = it->second;
    ks.key = &it->first;
    ks.kg = key_.key_group();
    IndexKeySessions(&ks);
    return &ks;
  }
  // one_int_key_: ks, the current key's (key_) entry in key_sessions_, into session_index_.
  void IndexKeySessions(KeySessions* ks) {
    if (!one_int_key_) return;
    bool inserted;
    int64_t* slot = session_index_.FindOrInsert(key_.record()[0].i, &inserted);
    slot[0] = 0;  // a node
    slot[1] = static_cast<int64_t>(reinterpret_cast<uintptr_t>(ks));
  }

  // Flat keys (flat_sessions_: event time, the key one integer field, every aggregate folding
  // into words, no early firing): a key whose only session has not fired is kept in its slot of
  // session_index_, [meta][start][end][state window start][records][the aggregates' words] (48
  // bytes with its key for a count), instead of a KeySessions node and an index slot pointing
  // at it: a record that extends the session touches one slot. The session's other header
  // words are implied (emitted 0, final_fired 0, dirty 1, next_early kNoEarly) and its state
  // window is [state start, state start + gap) (a record's window). Anything else (a second
  // session, a merge, a late record, a firing with lateness, a timer) makes the key a node
  // first (PromoteFlatKey), which the general path then handles; nodes stay nodes. A flat key's
  // firing is a due_ entry by its value (DueEntry::ks null), queued once at its first end - 1:
  // the sweep fires it when its end - 1 is due (without lateness: from its slot, in the order of
  // the nodes' firings, and drops it; else as a node), else queues it again at its end - 1.
  // (kFlatDirty: changed since the last checkpoint, so its key group's block is written again.
  // Bit 4 was "has an entry of its own in the backend", before flat keys went in blocks.)
  enum : int64_t { kFlatKey = 1, kFlatDirty = 2, kFlatQueued = 8 };  // meta bits
  enum : size_t { kFlatStart = 1, kFlatEnd = 2, kFlatStateStart = 3, kFlatRecords = 4, kFlatValues = 5 };
  // A flat slot's meta word: its bits (kFlat*) and, from bit 32, its key's key group (so that
  // firings and checkpoints need not hash the key again).
  static int64_t FlatMeta(int kg, int64_t bits) {
    return static_cast<int64_t>(static_cast<uint64_t>(static_cast<uint32_t>(kg)) << 32) | bits;
  }
  static int FlatKeyGroup(const int64_t* slot) { return static_cast<int>(static_cast<uint64_t>(slot[0]) >> 32); }

  // Record r (window w, not late) into the current key's flat slot, or a new one; false,
  // nothing done, when the general path must take it (the key is a node, or the record does
  // not extend its flat session in place, or a new key would not be flat).
  bool ProcessFlatSession(const Record& r, const TimeWindow& w) {
    const int64_t key = key_.record()[0].i;
    if (int64_t* slot = session_index_.Find(key)) return ExtendFlatSession(slot, r, w, Watermark());
    // A spilled key may be in the backend; a late one is the general path's.
    if (sessions_spilled_ || w.max_timestamp() <= Watermark() ||
        pane_bytes_ + session_index_.BytesPerKey() > max_pane_bytes_) {
      return false;
    }
    bool inserted;
    int64_t* slot = session_index_.FindOrInsert(key, &inserted);
    slot[0] = FlatMeta(key_.key_group(), kFlatKey | kFlatDirty | kFlatQueued);
    slot[kFlatStart] = w.start;
    slot[kFlatEnd] = w.end;
    slot[kFlatStateStart] = w.start;
    FoldValues(&slot[kFlatRecords], &slot[kFlatValues], r);
    pane_bytes_ += session_index_.BytesPerKey();
    int_key_panes_made.fetch_add(1, std::memory_order_relaxed);
    QueueFlat(key, w.max_timestamp());
    return true;
  }
  // Record r (window w) into flat slot `slot` (the current key's, maybe a node) when it extends
  // its session in place (not due by watermark `wm`); false, nothing done, otherwise.
  bool ExtendFlatSession(int64_t* slot, const Record& r, const TimeWindow& w, int64_t wm) {
    if (!ExtendFlatSlot(slot, w, wm)) return false;
    FoldFlat(slot, [&]() -> const Record& { return r; });
    return true;
  }
  // Folds a record into flat slot `slot`'s accumulators; `record_of()` gives the record, called
  // only when an aggregate reads its values (rows of integers build it then).
  template <typename RecordOf>
  ABSL_ATTRIBUTE_ALWAYS_INLINE void FoldFlat(int64_t* slot, const RecordOf& record_of) {
    if (flat_counts_only_) {
      ++slot[kFlatRecords];  // FoldValues() of counts only
    } else {
      FoldValues(&slot[kFlatRecords], &slot[kFlatValues], record_of());
    }
  }
  // ExtendFlatSession()'s session part: slot's session covers window w, marked dirty, when w
  // extends it in place (the record still to fold); false, nothing done, otherwise.
  ABSL_ATTRIBUTE_ALWAYS_INLINE bool ExtendFlatSlot(int64_t* slot, const TimeWindow& w, int64_t wm) {
    if ((slot[0] & kFlatKey) == 0) return false;
    const TimeWindow open{slot[kFlatStart], slot[kFlatEnd]};
    if (!open.OverlapsOrTouches(w)) return false;
    const TimeWindow merged = w.Cover(open);
    if (merged.max_timestamp() <= wm) return false;  // due: fires in the general path
    slot[kFlatStart] = merged.start;
    slot[kFlatEnd] = merged.end;
    slot[0] |= kFlatDirty;
    return true;
  }
  // A batch of flat session keys (flat_sessions_): a record that extends its key's flat session
  // in place is folded here, by the key's value (no key evaluated, no key group), its slot
  // prefetched kAhead records before; any other goes through Process(). The watermark does not
  // move within a batch.
  // `rows` are Records (RecordRows, ProcessBatch) or rows of integers (IntRows, ProcessIntRows:
  // a record is made from its row only for Process() and for aggregates other than counts).
  template <typename Rows>
  absl::Status ProcessFlatBatch(const Rows& rows, size_t count) {
    constexpr size_t kAhead = 8;
    const int64_t gap = o_->windows.gap_ms;
    const int64_t wm = Watermark();
    uint64_t extended = 0;
    for (size_t i = 0; i < count && i < kAhead; ++i) session_index_.Prefetch(rows.Key(i));
    for (size_t i = 0; i < count; ++i) {
      if (i + kAhead < count) session_index_.Prefetch(rows.Key(i + kAhead));
      const int64_t ts = rows.Time(i);
      if (ts <= kMaxTs - gap) {
        int64_t* slot = session_index_.Find(rows.Key(i));
        if (slot != nullptr && ExtendFlatSlot(slot, TimeWindow{ts, ts + gap}, wm)) {
          FoldFlat(slot, [&]() -> const Record& { return rows.At(i); });
          ++extended;
          continue;
        }
      }
      absl::Status status = Process(rows.At(i));
      if (!status.ok()) {
        batch_folds.fetch_add(extended, std::memory_order_relaxed);
        return status;
      }
    }
    batch_folds.fetch_add(extended, std::memory_order_relaxed);
    return absl::OkStatus();
  }
  void QueueFlat(int64_t key, int64_t at) {
    due_.push_back({at, static_cast<uint64_t>(key), nullptr});
    std::push_heap(due_.begin(), due_.end(), DueEntry::Later);
    due_max_at_ = std::max(due_max_at_, at);
  }
  // The pane words of a flat slot's session.
  void FlatPaneWords(const int64_t* slot, Pane* pane) const {
    pane->words.resize(pane_words_);
    FlatWords(slot, pane->words.data());
  }
  // The same into words[0, pane_words_).
  void FlatWords(const int64_t* slot, int64_t* words) const {
    FoldedPaneWords(slot[kFlatRecords], &slot[kFlatValues], words);
  }
  // Whether restored sessions `ks` can be a flat key (see ProcessFlatSession).
  bool FitsFlat(const KeySessions& ks) const {
    if (!flat_sessions_ || ks.sessions.size() != 1) return false;
    const Session& s = ks.sessions[0];
    const int64_t* words = s.pane.words.data();
    return words[kRecords] > 0 && words[kEmitted] == 0 && words[kFinalFired] == 0 && words[kDirty] == 1 &&
           words[kNextEarly] == kNoEarly && s.state_w.start <= kMaxTs - o_->windows.gap_ms &&
           s.state_w.end == s.state_w.start + o_->windows.gap_ms &&
           pane_bytes_ + session_index_.BytesPerKey() <= max_pane_bytes_;
  }
  // The current key's (key_) flat slot `slot` made a node in key_sessions_ (queued at its
  // firing); returns it.
  KeySessions* PromoteFlatKey(int64_t* slot) {
    auto it = key_sessions_.try_emplace(key_.bytes()).first;
    KeySessions* ks = &it->second;
    ks->key = &it->first;
    ks->kg = key_.key_group();
    // A node has an entry of its own, written at the next checkpoint; its key group's block is
    // written again without it.
    ks->dirty = true;
    ks->in_backend = false;
    flat_blocks_[static_cast<size_t>(FlatKeyGroup(slot))] |= kBlockDirty;
    Session& s = ks->sessions.emplace_back();
    s.w = {slot[kFlatStart], slot[kFlatEnd]};
    s.state_w = {slot[kFlatStateStart], slot[kFlatStateStart] + o_->windows.gap_ms};
    FlatPaneWords(slot, &s.pane);
    slot[0] = 0;
    slot[1] = static_cast<int64_t>(reinterpret_cast<uintptr_t>(ks));
    pane_bytes_ -= session_index_.BytesPerKey();
    UpdateBytes(ks);
    Queue(ks, s.w.max_timestamp());
    return ks;
  }
  // due_'s entry of flat key `key` at `at`, popped by watermark `wm`: a stale one (the key is
  // gone, a node, or not queued) is dropped; a due key without lateness goes to fire_items_
  // (FireFlatKey), one with lateness is made a node (queued, so the sweep pops it next); else
  // it is queued again at its end - 1.
  absl::Status FlatKeyDue(int64_t key, int64_t wm) {
    int64_t* slot = session_index_.Find(key);
    if (slot == nullptr || (slot[0] & kFlatKey) == 0 || (slot[0] & kFlatQueued) == 0) return absl::OkStatus();
    if (slot[kFlatEnd] - 1 > wm) {
      QueueFlat(key, slot[kFlatEnd] - 1);
      return absl::OkStatus();
    }
    slot[0] &= ~kFlatQueued;
    if (CleanupTime(TimeWindow{slot[kFlatStart], slot[kFlatEnd]}) == slot[kFlatEnd] - 1) {
      // No lateness: fired and gone at once, from its slot (FireFlatKey), in timer order.
      SessionFireItem item{slot[kFlatEnd] - 1, nullptr, FlatKeyGroup(slot), nullptr, key, 0, true, true, 0, 0};
      IntKeyOrder(key, &item.prefix, &item.tail);
      fire_items_.push_back(item);
      return absl::OkStatus();
    }
    IntKeyBytes(key, &flat_key_);
    SLUICE_RETURN_IF_ERROR(SetStoredKey(flat_key_));
    PromoteFlatKey(slot);  // it stays for its lateness after firing: a node
    return absl::OkStatus();
  }
  // A flat key's session fired (its row); the key is dropped after the firings
  // (DropFiredFlatKeys).
  absl::Status FireFlatKey(const SessionFireItem& item) {
    const int64_t* slot = session_index_.Find(item.flat_key);
    SetWindow(TimeWindow{slot[kFlatStateStart], slot[kFlatStateStart] + o_->windows.gap_ms}, item.kg,
              absl::string_view());
    FlatPaneWords(slot, &flat_pane_);
    PaneToAcc(flat_pane_, &acc_);
    out_[0].i = item.flat_key;  // the key's one field (EmitRow without decoding its bytes)
    return EmitRowValues(TimeWindow{slot[kFlatStart], slot[kFlatEnd]});
  }
  // Drops the `fired` flat keys among fire_items_[0, end), which FireFlatKey fired, from memory
  // after the firings, so that no slot moves under them; their key groups' blocks are written
  // again at the next checkpoint. When they are every key of the index (mostly at the input's
  // end), the index is dropped whole, starting empty as at Open(), and so are the blocks in the
  // backend (one delete per key group); else key by key.
  absl::Status DropFiredFlatKeys(size_t end, size_t fired) {
    if (fired == 0) return absl::OkStatus();
    pane_bytes_ -= fired * session_index_.BytesPerKey();
    if (fired == session_index_.size()) {
      const size_t words = session_index_.words();
      session_index_ = internal::IntPaneTable();
      session_index_.SetWords(words);
      session_index_drops.fetch_add(1, std::memory_order_relaxed);
      for (size_t kg = 0; kg < flat_blocks_.size(); ++kg) {
        if ((flat_blocks_[kg] & kBlockStored) != 0) SLUICE_RETURN_IF_ERROR(DeleteFlatBlock(static_cast<int>(kg)));
        flat_blocks_[kg] = 0;
      }
      return absl::OkStatus();
    }
    for (size_t i = 0; i < end; ++i) {
      const SessionFireItem& item = fire_items_[i];
      if (item.ks != nullptr) continue;
      flat_blocks_[static_cast<size_t>(item.kg)] |= kBlockDirty;
      session_index_.Erase(item.flat_key);
    }
    return absl::OkStatus();
  }
  bool InMemory(const KeySessions* ks) const { return ks != &spilled_; }
  // Keys whose firings come from timers in the backend (one per key at its earliest firing):
  // processing-time sessions, and keys kept in the backend. The others (event time, in memory)
  // are fired by ProcessWatermark from due_.
  bool TimerDriven(const KeySessions* ks) const { return !o_->event_time || !InMemory(ks); }

  int64_t FireAt(const Session& s) const {
    if (!o_->event_time || s.pane.words[slot_[kFinalFired]] == 0) return s.w.max_timestamp();
    return CleanupTime(s.w);
  }
  // The time of the key's next firing (or cleanup); false when it has no open session.
  bool EarliestFire(const KeySessions& ks, int64_t* at) const {
    bool any = false;
    for (const Session& s : ks.sessions) {
      if (s.removed) continue;
      const int64_t t = FireAt(s);
      if (!any || t < *at) *at = t;
      any = true;
    }
    return any;
  }
  // The memory of a key's sessions in key_sessions_ (key of `key_size` bytes, `sessions` in
  // `capacity`), estimated as PaneBytes: its node, key, sessions beyond the first and their
  // accumulators' heap storage, and its slot in session_index_.
  size_t KeySessionsBytes(size_t key_size, size_t sessions, size_t capacity) const {
    constexpr size_t kInlineKey = 15;
    const size_t words = pane_words_ + null_words_;
    const size_t per_session = (words > 8 ? words * sizeof(int64_t) : 0) + pane_strings_ * sizeof(std::string);
    return sizeof(std::pair<const std::string, KeySessions>) + 2 * sizeof(void*) +
           (key_size > kInlineKey ? key_size + 1 : 0) + (capacity > 1 ? capacity * sizeof(Session) : 0) +
           sessions * per_session + (one_int_key_ ? session_index_.BytesPerKey() : 0);
  }
  // Whether a new key's session fits in the memory budget.
  bool NewKeyFits() const {
    return pane_bytes_ + KeySessionsBytes(key_.bytes().size(), 1, 1) <= max_pane_bytes_;
  }
  void UpdateBytes(KeySessions* ks) {
    if (!InMemory(ks)) return;
    const size_t bytes = KeySessionsBytes(ks->key->size(), ks->sessions.size(), ks->sessions.capacity());
    pane_bytes_ = pane_bytes_ - ks->bytes + bytes;
    ks->bytes = bytes;
  }
  // Schedules an in-memory event-time key's firing at `at` in due_, unless an earlier one is
  // pending (a key's firing times only move later, except when an earlier session opens).
  void Queue(KeySessions* ks, int64_t at) {
    if (ks->queued && ks->queued_at <= at) return;
    ks->queued = true;
    ks->queued_at = at;
    ks->queued_gen = ++due_gen_;
    ++ks->refs;
    due_.push_back({at, ks->queued_gen, ks});
    std::push_heap(due_.begin(), due_.end(), DueEntry::Later);
    due_max_at_ = std::max(due_max_at_, at);
  }

  // Record r (time ts, window w = [ts, ts + gap)) into the current key's sessions: w merges
  // with every open session it overlaps or touches; a session that only grows is extended in
  // place.
  absl::Status ProcessSession(const Record& r, int64_t ts, const TimeWindow& w) {
    if (flat_sessions_ && ProcessFlatSession(r, w)) return absl::OkStatus();
    SLUICE_ASSIGN_OR_RETURN(KeySessions * ks, FindKeySessions());
    size_t first = 0;  // the first absorbed session (or where the new one goes)
    TimeWindow merged = w;
    absorbed_.clear();
    if (ks != nullptr && ks->sessions.size() == 1 && ks->sessions[0].w.OverlapsOrTouches(w)) {
      absorbed_.push_back(ks->sessions[0].w);  // the common case: one open session
      merged = w.Cover(ks->sessions[0].w);
    } else if (ks != nullptr) {
      key_windows_.clear();
      for (const Session& s : ks->sessions) key_windows_.push_back(s.w);
      merged = MergeSession(key_windows_, w, &absorbed_);
      first = static_cast<size_t>(
          std::lower_bound(key_windows_.begin(), key_windows_.end(), absorbed_.empty() ? merged : absorbed_[0]) -
          key_windows_.begin());
    }
    if (absorbed_.empty() && IsLate(merged)) return Late(r);
    if (ks == nullptr) ks = NewKeySessions();
    int64_t before = 0;
    const bool had = TimerDriven(ks) && EarliestFire(*ks, &before);
    if (absorbed_.size() == 1 && (absorbed_[0] == merged || ExtendsInPlace(ks->sessions[first]))) {
      Session& s = ks->sessions[first];
      s.w = merged;  // only later, or earlier, records: the accumulator goes on
      const bool folded = FoldIntoSession(&s, r);
      if (folded && !TimerDriven(ks)) {
        // Its firing time did not move earlier: an event-time key in memory stays in due_.
        ks->dirty = true;
        return absl::OkStatus();
      }
      if (!folded) {
        PaneToAcc(s.pane, &acc_);
        SetWindow(s.state_w, ks->kg, *ks->key);
        SLUICE_RETURN_IF_ERROR(AddToAcc(merged, r, ts));
        AccToPane(acc_, &s.pane);
      }
    } else {
      SLUICE_RETURN_IF_ERROR(MergeIntoSession(ks, first, merged, r, ts));
    }
    ks->dirty = true;
    return KeyChanged(ks, had, before);
  }

  // Whether session s, extended to a longer window, keeps its accumulator as it is: what
  // starting the merged window afresh and merging s into it gives (the general path) when s has
  // not fired and has no early firing pending, and no aggregate is a plugin's.
  bool ExtendsInPlace(const Session& s) const {
    if (!session_fast_paths_enabled || has_plugin_) return false;
    const int64_t* words = s.pane.words.data();
    return words[slot_[kEmitted]] == 0 && words[slot_[kFinalFired]] == 0 && words[slot_[kNextEarly]] == kNoEarly;
  }
  // FoldWords into session s when it applies (see FoldIntoPane); false, nothing done, otherwise.
  bool FoldIntoSession(Session* s, const Record& r) {
    if (!session_fast_paths_enabled || !word_folds_ || (o_->event_time && s->w.max_timestamp() <= Watermark())) {
      return false;
    }
    FoldWords(s->pane.words.data(), r);
    return true;
  }

  // The general path: a new session [merged] in ks->sessions at `first`, replacing the
  // absorbed_ sessions there (none: a new one), whose accumulators are merged into a fresh one
  // (as Flink merges their state windows' contents); it keeps the first absorbed session's
  // state window (its distinct values stay there; the others' are moved in). Then record r.
  absl::Status MergeIntoSession(KeySessions* ks, size_t first, const TimeWindow& merged, const Record& r,
                                int64_t ts) {
    const size_t n = absorbed_.size();
    const TimeWindow state_w = n > 0 ? ks->sessions[first].state_w : merged;
    SLUICE_RETURN_IF_ERROR(ResetAcc());
    released_.clear();
    for (size_t k = first; k < first + n; ++k) {
      const Session& s = ks->sessions[k];
      PaneToAcc(s.pane, &other_acc_);
      SLUICE_RETURN_IF_ERROR(MergeAcc(other_acc_));
      if (other_acc_[kNextEarly].i != kNoEarly) released_.push_back(other_acc_[kNextEarly].i);
      if (!has_distinct_) continue;
      if (k == first) {  // its distinct values and counts stay
        for (size_t a = 0; a < o_->aggregates.size(); ++a) {
          if (o_->aggregates[a].fn == Fn::kCountDistinct) acc_[acc_index_[a]].i = other_acc_[acc_index_[a]].i;
        }
        continue;
      }
      SetWindow(s.state_w, ks->kg, *ks->key);
      SetCompositeKey();
      SLUICE_RETURN_IF_ERROR(state_->MapEntries(distinct_id_, &entries_));
      SLUICE_RETURN_IF_ERROR(DropDistinct());
      SetWindow(state_w, ks->kg, *ks->key);
      SetCompositeKey();
      for (const auto& e : entries_) {
        SLUICE_ASSIGN_OR_RETURN(bool seen, state_->MapGet(distinct_id_, e.first, &scratch_));
        if (seen) continue;
        SLUICE_RETURN_IF_ERROR(state_->MapPut(distinct_id_, e.first, ""));
        acc_[acc_index_[static_cast<unsigned char>(e.first[0])]].i++;
      }
    }
    if (n == 0) {
      ks->sessions.emplace(ks->sessions.begin() + static_cast<ptrdiff_t>(first));
    } else if (n > 1) {
      ks->sessions.erase(ks->sessions.begin() + static_cast<ptrdiff_t>(first + 1),
                         ks->sessions.begin() + static_cast<ptrdiff_t>(first + n));
    }
    Session& s = ks->sessions[first];
    s.w = merged;
    s.state_w = state_w;
    SetWindow(state_w, ks->kg, *ks->key);
    AccToPane(acc_, &s.pane);  // no early firing pending (ResetAcc): the released ones go
    for (int64_t t : released_) SLUICE_RETURN_IF_ERROR(ReleaseProcessingTimer(*ks, t));
    SLUICE_RETURN_IF_ERROR(ScheduleEarly(merged, timers_->CurrentProcessingTime()));
    SLUICE_RETURN_IF_ERROR(AddToAcc(merged, r, ts));
    // Fired at once (a late record within the lateness): its final firing is done.
    if (o_->event_time && merged.max_timestamp() <= Watermark()) acc_[kFinalFired].i = 1;
    AccToPane(acc_, &s.pane);
    UpdateBytes(ks);
    return absl::OkStatus();
  }

  // Deletes the key's (ks, the backend's current key) processing-time timer at t unless one of
  // its sessions still needs it (an early firing, or a processing-time session's end).
  absl::Status ReleaseProcessingTimer(const KeySessions& ks, int64_t t) {
    for (const Session& s : ks.sessions) {
      if (s.removed) continue;
      if (s.pane.words[slot_[kNextEarly]] == t || (!o_->event_time && FireAt(s) == t)) return absl::OkStatus();
    }
    state_->SetCurrentKey(*ks.key, ks.kg);
    return timers_->DeleteProcessingTimeTimer(t);
  }

  // After a change of ks: its timer (timer-driven keys: moved from `before`, when it `had` one,
  // to its earliest firing) or its place in due_; a spilled key is written back.
  absl::Status KeyChanged(KeySessions* ks, bool had, int64_t before) {
    int64_t after = 0;
    const bool has = EarliestFire(*ks, &after);
    if (TimerDriven(ks)) {
      state_->SetCurrentKey(*ks->key, ks->kg);
      if (had && (!has || after != before)) {
        if (o_->event_time) {
          SLUICE_RETURN_IF_ERROR(timers_->DeleteEventTimeTimer(before));
        } else {
          SLUICE_RETURN_IF_ERROR(ReleaseProcessingTimer(*ks, before));
        }
      }
      if (has) {
        state_->SetCurrentKey(*ks->key, ks->kg);
        SLUICE_RETURN_IF_ERROR(o_->event_time ? timers_->RegisterEventTimeTimer(after)
                                              : timers_->RegisterProcessingTimeTimer(after));
      }
    } else if (has) {
      Queue(ks, after);
    }
    if (InMemory(ks)) return absl::OkStatus();
    state_->SetCurrentKey(*ks->key, ks->kg);
    if (ks->sessions.empty()) return ks->in_backend ? state_->Delete(key_sessions_id_) : absl::OkStatus();
    EncodeKeySessions(*ks, &value_);
    ks->in_backend = true;
    return state_->Put(key_sessions_id_, value_);
  }

  // Fires the in-memory event-time keys' sessions due by watermark `wm`, in the order of their
  // timers (time, key group, key, window).
  absl::Status FireDueSessions(int64_t wm) {
    due_keys_.clear();
    fire_items_.clear();
    if (!due_.empty() && wm >= due_max_at_) {
      // Every entry is due (mostly the input's end): taken in one pass in the heap's array
      // order, the keys' slots and nodes prefetched ahead, instead of one pop_heap each (the
      // entries' order does not matter: their firings are sorted in timer order after).
      due_all_.swap(due_);
      due_.clear();  // entries queued meanwhile go here (a flat key made a node: popped below)
      due_max_at_ = std::numeric_limits<int64_t>::min();
      constexpr size_t kAhead = 8;
      for (size_t i = 0; i < due_all_.size(); ++i) {
        if (i + kAhead < due_all_.size()) {
          const DueEntry& next = due_all_[i + kAhead];
          if (next.ks == nullptr) {
            session_index_.Prefetch(static_cast<int64_t>(next.gen));
          } else {
            __builtin_prefetch(next.ks);
          }
        }
        SLUICE_RETURN_IF_ERROR(TakeDueEntry(due_all_[i], wm));
      }
      due_all_.clear();
    }
    while (!due_.empty() && due_.front().at <= wm) {
      std::pop_heap(due_.begin(), due_.end(), DueEntry::Later);
      const DueEntry e = due_.back();
      due_.pop_back();
      SLUICE_RETURN_IF_ERROR(TakeDueEntry(e, wm));
    }
    if (due_keys_.empty() && fire_items_.empty()) return absl::OkStatus();
    for (KeySessions* ks : due_keys_) AddSessionFireItems(ks, wm);
    SLUICE_RETURN_IF_ERROR(FireSessionItems());
    for (KeySessions* ks : due_keys_) {
      bool dropped = false;
      SLUICE_RETURN_IF_ERROR(CompactKeySessions(ks, &dropped));
      int64_t at = 0;
      if (!dropped && EarliestFire(*ks, &at)) Queue(ks, at);
    }
    return absl::OkStatus();
  }

  // due_'s entry e, due by watermark `wm` and out of due_: a flat key's to FlatKeyDue; a live
  // one's key to due_keys_; a stale one dropped (with its key, when it was the key's last
  // entry and the key has no sessions left).
  absl::Status TakeDueEntry(const DueEntry& e, int64_t wm) {
    if (e.ks == nullptr) return FlatKeyDue(static_cast<int64_t>(e.gen), wm);  // a flat key's
    KeySessions* ks = e.ks;
    --ks->refs;
    if (ks->queued && ks->queued_gen == e.gen) {
      ks->queued = false;
      due_keys_.push_back(ks);
    } else if (ks->refs == 0 && !ks->queued && ks->sessions.empty()) {
      DropKeySessions(ks);
    }
    return absl::OkStatus();
  }
  // Appends to fire_items_ the firings and cleanups of ks's sessions due by `up_to`.
  void AddSessionFireItems(KeySessions* ks, int64_t up_to) {
    uint64_t prefix;
    uint16_t tail;
    KeyOrder(*ks->key, &prefix, &tail);
    for (size_t i = 0; i < ks->sessions.size(); ++i) {
      const Session& s = ks->sessions[i];
      const int64_t max = s.w.max_timestamp();
      const int64_t cleanup = o_->event_time ? CleanupTime(s.w) : max;
      const bool fired = s.pane.words[slot_[kFinalFired]] != 0;
      if (!fired && max <= up_to) {
        fire_items_.push_back({max, ks, ks->kg, ks->key, 0, static_cast<uint32_t>(i), true, cleanup == max, prefix, tail});
      }
      if ((fired || cleanup != max) && cleanup <= up_to) {
        fire_items_.push_back({cleanup, ks, ks->kg, ks->key, 0, static_cast<uint32_t>(i), false, true, prefix, tail});
      }
    }
  }
  // Runs fire_items_ in timer order: a firing emits the session's row (once); a cleanup drops
  // its distinct values and pending early firing, and marks it removed.
  absl::Status FireSessionItems() {
    if (one_int_key_) {
      std::sort(fire_items_.begin(), fire_items_.end(), SessionFireItem::IntOrder());
    } else {
      std::sort(fire_items_.begin(), fire_items_.end(), SessionFireItem::Order());
    }
    constexpr size_t kAhead = 8;  // flat keys' slots prefetched ahead
    size_t flat_fired = 0;
    for (size_t i = 0; i < fire_items_.size(); ++i) {
      const SessionFireItem& item = fire_items_[i];
      if (i + kAhead < fire_items_.size() && fire_items_[i + kAhead].ks == nullptr) {
        session_index_.Prefetch(fire_items_[i + kAhead].flat_key);
      }
      if (item.ks == nullptr) {
        absl::Status status = FireFlatKey(item);
        if (!status.ok()) {
          DropFiredFlatKeys(i, flat_fired).IgnoreError();  // the first error is the one returned
          return status;
        }
        ++flat_fired;
        continue;
      }
      KeySessions* ks = item.ks;
      Session& s = ks->sessions[item.index];
      SetWindow(s.state_w, ks->kg, *ks->key);
      PaneToAcc(s.pane, &acc_);
      const int64_t early = acc_[kNextEarly].i;
      if (item.fire && acc_[kFinalFired].i == 0) {
        SLUICE_RETURN_IF_ERROR(EmitRow(s.w));
        acc_[kFinalFired].i = 1;
        acc_[kNextEarly].i = kNoEarly;
      }
      if (item.cleanup) {
        acc_[kNextEarly].i = kNoEarly;
        SLUICE_RETURN_IF_ERROR(DropDistinct());
        s.removed = true;
      }
      AccToPane(acc_, &s.pane);
      if (early != kNoEarly && acc_[kNextEarly].i == kNoEarly) {
        SLUICE_RETURN_IF_ERROR(ReleaseProcessingTimer(*ks, early));
      }
      ks->dirty = true;
    }
    return DropFiredFlatKeys(fire_items_.size(), flat_fired);
  }
  // Drops ks's removed sessions; an emptied key leaves the backend, and memory unless due_
  // still points at it.
  absl::Status CompactKeySessions(KeySessions* ks, bool* dropped) {
    *dropped = false;
    auto& v = ks->sessions;
    v.erase(std::remove_if(v.begin(), v.end(), [](const Session& s) { return s.removed; }), v.end());
    UpdateBytes(ks);
    if (!v.empty()) return absl::OkStatus();
    if (ks->in_backend) {
      state_->SetCurrentKey(*ks->key, ks->kg);
      SLUICE_RETURN_IF_ERROR(state_->Delete(key_sessions_id_));
      ks->in_backend = false;
    }
    ks->dirty = false;
    if (InMemory(ks) && ks->refs == 0 && !ks->queued) {
      DropKeySessions(ks);
      *dropped = true;
    }
    return absl::OkStatus();
  }
  void DropKeySessions(KeySessions* ks) {
    pane_bytes_ -= ks->bytes;
    int64_t int_key;
    if (one_int_key_ && ParseIntKey(*ks->key, &int_key)) session_index_.Erase(int_key);
    key_sessions_.erase(*ks->key);
  }

  // A session key's timer (TimerDriven keys: its earliest firing; any key: early firings).
  absl::Status OnSessionTimer(int64_t timestamp, TimeDomain domain, absl::string_view key) {
    if (!key_.SetBytes(key).ok()) {
      if (key.size() == kBucketKeySize) return absl::OkStatus();  // of the layout before (stale)
      return ctx_.state_origin.DataLoss("a window session timer's key does not decode");
    }
    SLUICE_ASSIGN_OR_RETURN(KeySessions * ks, FindKeySessions());
    if (ks == nullptr) return absl::OkStatus();
    int64_t before = 0;
    const bool had = TimerDriven(ks) && EarliestFire(*ks, &before);
    const bool final_domain = o_->event_time == (domain == TimeDomain::kEventTime);
    if (final_domain && TimerDriven(ks)) {
      fire_items_.clear();
      AddSessionFireItems(ks, timestamp);
      SLUICE_RETURN_IF_ERROR(FireSessionItems());
    }
    if (domain == TimeDomain::kProcessingTime && o_->emit_every_ms > 0) {
      for (Session& s : ks->sessions) {
        if (s.removed || s.pane.words[slot_[kFinalFired]] != 0 || s.pane.words[slot_[kNextEarly]] != timestamp) continue;
        SetWindow(s.state_w, ks->kg, *ks->key);
        PaneToAcc(s.pane, &acc_);
        if (acc_[kDirty].i != 0) SLUICE_RETURN_IF_ERROR(EmitRow(s.w));
        acc_[kNextEarly].i = kNoEarly;
        SLUICE_RETURN_IF_ERROR(ScheduleEarly(s.w, timestamp));
        AccToPane(acc_, &s.pane);
        ks->dirty = true;
      }
    }
    if (!ks->dirty) return absl::OkStatus();
    bool dropped = false;
    SLUICE_RETURN_IF_ERROR(CompactKeySessions(ks, &dropped));
    // (A dropped key's timer was the one that fired: the earliest.)
    return dropped ? absl::OkStatus() : KeyChanged(ks, had, before);
  }

  // [kKeySessionsVersion][count] then per session [start][end][state window start][state
  // window end] (ordered int64s) [accumulator row size][accumulator row].
  void EncodeKeySessions(const KeySessions& ks, std::string* out) {
    out->assign(1, static_cast<char>(kKeySessionsVersion));
    PutVarint64(ks.sessions.size(), out);
    for (const Session& s : ks.sessions) {
      internal::PutOrderedInt64(s.w.start, out);
      internal::PutOrderedInt64(s.w.end, out);
      internal::PutOrderedInt64(s.state_w.start, out);
      internal::PutOrderedInt64(s.state_w.end, out);
      AppendPaneRow(s.pane.words.data(), s.pane.strings.data(), out);
    }
  }
  // Flat keys are checkpointed as one block per key group ("window_flat_sessions", under the
  // key FlatBlockKey(kg)) instead of an entry per key ("window_key_sessions", as before): a
  // checkpoint writes again the block of each key group where a flat key changed, came or left,
  // all its flat keys (~15-20 bytes each for a count), so the backend's work is per key group,
  // not per key (its cache's probe, written-key filter, sort and ingest: ~1 us a key), and the
  // input's end deletes one block per key group instead of every key. The blocks are written
  // one at a time (the keys grouped by key group first: 16 bytes a key of the key groups
  // written) and restored by key group (RestoreFlatBlocks), so a restore at another
  // parallelism picks them as any keyed state. A block: [kFlatBlockVersion][count], then per
  // key [key][start][end - start][state window start - start] (varints, zigzag but end - start)
  // and the accumulator row as EncodeKeySessions writes it ([size][row]).
  absl::Status WriteFlatBlocks() {
    const size_t groups = flat_blocks_.size();
    block_counts_.assign(groups, 0);
    bool any = false;
    if (flat_sessions_) {
      session_index_.ForEach([&](int64_t, int64_t* slot) {
        if ((slot[0] & kFlatKey) == 0) return;
        const size_t kg = static_cast<size_t>(FlatKeyGroup(slot));
        ++block_counts_[kg];
        if ((slot[0] & kFlatDirty) != 0) {
          flat_blocks_[kg] |= kBlockDirty;
          slot[0] &= ~kFlatDirty;
        }
      });
    }
    block_fill_.assign(groups, 0);
    size_t total = 0;
    for (size_t kg = 0; kg < groups; ++kg) {
      if ((flat_blocks_[kg] & kBlockDirty) == 0) continue;
      any = true;
      block_fill_[kg] = total;
      total += block_counts_[kg];
    }
    if (!any) return absl::OkStatus();
    constexpr size_t kAhead = 16;
    const size_t last_word = session_index_.words() - 1;
    block_keys_.resize(total);
    if (total > 0) {
      session_index_.ForEach([&](int64_t key, int64_t* slot) {
        if ((slot[0] & kFlatKey) == 0) return;
        const size_t kg = static_cast<size_t>(FlatKeyGroup(slot));
        if ((flat_blocks_[kg] & kBlockDirty) != 0) block_keys_[block_fill_[kg]++] = {key, slot};
      });
    }
    for (size_t kg = 0; kg < groups; ++kg) {
      if ((flat_blocks_[kg] & kBlockDirty) == 0) continue;
      const size_t n = block_counts_[kg];
      if (n == 0) {
        if ((flat_blocks_[kg] & kBlockStored) != 0) SLUICE_RETURN_IF_ERROR(DeleteFlatBlock(static_cast<int>(kg)));
        flat_blocks_[kg] = 0;
        continue;
      }
      value_.assign(1, static_cast<char>(kFlatBlockVersion));
      PutVarint64(n, &value_);
      for (size_t i = block_fill_[kg] - n; i < block_fill_[kg]; ++i) {
        // The slots lie at random in the index (a miss each): fetched kAhead keys before.
        if (i + kAhead < total) {
          const int64_t* ahead = block_keys_[i + kAhead].second;
          __builtin_prefetch(ahead);
          __builtin_prefetch(ahead + last_word);
        }
        AppendFlatBlockKey(block_keys_[i].first, block_keys_[i].second, &value_);
      }
      state_->SetCurrentKey(FlatBlockKey(static_cast<int>(kg)), static_cast<int>(kg));
      SLUICE_RETURN_IF_ERROR(state_->Put(flat_blocks_id_, value_));
      flat_blocks_[kg] = kBlockStored;
    }
    std::vector<std::pair<int64_t, const int64_t*>>().swap(block_keys_);  // not kept between checkpoints
    return absl::OkStatus();
  }
  static char* PutVarintAt(uint64_t v, char* p) {
    for (; v >= 0x80; v >>= 7) *p++ = static_cast<char>((v & 0x7f) | 0x80);
    *p++ = static_cast<char>(v);
    return p;
  }
  // A flat key's (`slot`'s) part of its key group's block, appended to *out.
  void AppendFlatBlockKey(int64_t key, const int64_t* slot, std::string* out) {
    char buf[4 * 10 + 10 + kMaxWordsRow];  // four varints, the row's size and row
    char* p = PutVarintAt(ZigZag(key), buf);
    p = PutVarintAt(ZigZag(slot[kFlatStart]), p);
    p = PutVarintAt(static_cast<uint64_t>(slot[kFlatEnd] - slot[kFlatStart]), p);
    p = PutVarintAt(ZigZag(slot[kFlatStateStart] - slot[kFlatStart]), p);
    FlatWords(slot, flat_words_.data());
    char row[kMaxWordsRow];
    const size_t size = static_cast<size_t>(EncodePaneRow(flat_words_.data(), row) - row);
    p = PutVarintAt(size, p);
    std::memcpy(p, row, size);
    p += size;
    out->append(buf, static_cast<size_t>(p - buf));
  }
  // The backend's key of key group kg's block: its number, 4 bytes big-endian.
  const std::string& FlatBlockKey(int kg) {
    block_key_.resize(4);
    for (int i = 0; i < 4; ++i) block_key_[i] = static_cast<char>((static_cast<uint32_t>(kg) >> (8 * (3 - i))) & 0xff);
    return block_key_;
  }
  absl::Status DeleteFlatBlock(int kg) {
    state_->SetCurrentKey(FlatBlockKey(kg), kg);
    return state_->Delete(flat_blocks_id_);
  }
  // Restore: the blocks of flat keys of this subtask's key groups into memory (AdmitKeySessions:
  // flat again, or a node within the budget, or spilled). kDataLoss if one does not decode or
  // holds a key of another key group.
  absl::Status RestoreFlatBlocks() {
    SLUICE_RETURN_IF_ERROR(CollectKeys(flat_blocks_id_));
    std::vector<std::string> block_keys = std::move(legacy_keys_);
    std::string block;
    for (const std::string& bk : block_keys) {
      if (bk.size() != 4) return ctx_.state_origin.DataLoss("a window flat session block's key is not 4 bytes");
      uint32_t u = 0;
      for (char c : bk) u = (u << 8) | static_cast<uint8_t>(c);
      const int kg = static_cast<int>(u);
      if (u >= flat_blocks_.size()) {
        return ctx_.state_origin.DataLoss(absl::StrCat("a window flat session block of key group ", u));
      }
      state_->SetCurrentKey(bk, kg);
      SLUICE_ASSIGN_OR_RETURN(bool found, state_->Get(flat_blocks_id_, &block));
      if (!found) continue;
      flat_blocks_[u] = kBlockStored;
      SLUICE_RETURN_IF_ERROR(RestoreFlatBlock(kg, block));
    }
    return absl::OkStatus();
  }
  absl::Status RestoreFlatBlock(int kg, absl::string_view stored) {
    absl::string_view body;
    SLUICE_ASSIGN_OR_RETURN(int version, ReadStateVersion(ctx_.state_origin, "window flat session block", stored,
                                                          kFlatBlockVersion, &body));
    const char* p = body.data();
    const char* end = body.data() + body.size();
    auto corrupt = [&](absl::string_view why) {
      return ctx_.state_origin.DataLoss(absl::StrCat("window flat session block of key group ", kg, " (",
                                                     stored.size(), " bytes) does not decode at byte ",
                                                     1 + (p - body.data()), ": ", why));
    };
    if (version != kFlatBlockVersion) return corrupt(absl::StrCat("format ", version, " is not a block"));
    uint64_t count = 0;
    p = GetVarint64(p, end, &count);
    if (p == nullptr) return corrupt("no count");
    for (uint64_t i = 0; i < count; ++i) {
      uint64_t v[4];
      for (uint64_t& x : v) {
        if (p != nullptr) p = GetVarint64(p, end, &x);
      }
      if (p == nullptr) return corrupt("a key's session is cut short");
      const int64_t key = UnZigZag(v[0]);
      const int64_t start = UnZigZag(v[1]);
      KeySessions restored;
      Session& s = restored.sessions.emplace_back();
      s.w = {start, start + static_cast<int64_t>(v[2])};
      s.state_w.start = start + UnZigZag(v[3]);
      s.state_w.end = s.state_w.start + o_->windows.gap_ms;
      if (s.w.start >= s.w.end) return corrupt("an empty session");
      SLUICE_ASSIGN_OR_RETURN(bool read, ReadPaneRow(&p, end, &why_));
      if (!read) return corrupt(why_);
      AccToPane(decoded_acc_, &s.pane);
      IntKeyBytes(key, &flat_key_);
      SLUICE_RETURN_IF_ERROR(SetStoredKey(flat_key_));
      if (key_.key_group() != kg) return corrupt(absl::StrCat("key ", key, " is of key group ", key_.key_group()));
      SLUICE_RETURN_IF_ERROR(AdmitKeySessions(std::move(restored), StoredIn::kBlock));
    }
    if (p != end) return corrupt("bytes left over");
    return absl::OkStatus();
  }

  // kDataLoss unless `stored` decodes (kFailedPrecondition for a plugin's accumulator of
  // another version); the sessions into ks.
  absl::Status DecodeKeySessions(absl::string_view stored, KeySessions* ks) {
    absl::string_view body;
    SLUICE_ASSIGN_OR_RETURN(int version, ReadStateVersion(ctx_.state_origin, "window key sessions", stored,
                                                          kKeySessionsVersion, &body));
    const char* p = body.data();
    const char* end = body.data() + body.size();
    auto corrupt = [&](absl::string_view why) {
      return ctx_.state_origin.DataLoss(absl::StrCat("window key sessions (", stored.size(),
                                                     " bytes) do not decode at byte ", 1 + (p - body.data()),
                                                     ": ", why));
    };
    if (version != kKeySessionsVersion) return corrupt(absl::StrCat("format ", version, " is not a key's sessions"));
    uint64_t count = 0;
    p = GetVarint64(p, end, &count);
    if (p == nullptr) return corrupt("no count");
    for (uint64_t i = 0; i < count; ++i) {
      if (end - p < 32) return corrupt("a session's windows are cut short");
      Session s;
      s.w = {internal::GetOrderedInt64(p), internal::GetOrderedInt64(p + 8)};
      s.state_w = {internal::GetOrderedInt64(p + 16), internal::GetOrderedInt64(p + 24)};
      if (s.w.start >= s.w.end || (!ks->sessions.empty() && !(ks->sessions.back().w.end < s.w.start))) {
        return corrupt("sessions out of order");
      }
      p += 32;
      SLUICE_ASSIGN_OR_RETURN(bool read, ReadPaneRow(&p, end, &why_));
      if (!read) return corrupt(why_);
      AccToPane(decoded_acc_, &s.pane);
      ks->sessions.push_back(std::move(s));
    }
    if (p != end) return corrupt("bytes left over");
    return absl::OkStatus();
  }

  // Writes the in-memory keys' sessions changed since the last checkpoint to the backend: the
  // flat keys' as blocks (WriteFlatBlocks), the nodes' one entry per key.
  absl::Status WriteKeySessions() {
    SLUICE_RETURN_IF_ERROR(WriteFlatBlocks());
    for (auto& [key, ks] : key_sessions_) {
      if (!ks.dirty) continue;
      state_->SetCurrentKey(key, ks.kg);
      if (ks.sessions.empty()) {
        if (ks.in_backend) SLUICE_RETURN_IF_ERROR(state_->Delete(key_sessions_id_));
        ks.in_backend = false;
      } else {
        EncodeKeySessions(ks, &value_);
        SLUICE_RETURN_IF_ERROR(state_->Put(key_sessions_id_, value_));
        ks.in_backend = true;
      }
      ks.dirty = false;
    }
    return absl::OkStatus();
  }

  // Where a restored key's sessions were: an entry of its own in "window_key_sessions" (the
  // current key's), its key group's block of flat keys, or neither (the layout before format 2).
  enum class StoredIn { kOwnEntry, kBlock, kNowhere };
  // A restored key's sessions (ks, of the current key_, stored `in`): into memory within the
  // budget, else kept in the backend; either way scheduled. A flat key's goes into its key
  // group's block (an entry of its own is deleted); a node's into an entry of its own (its key
  // group's block is written again without it).
  absl::Status AdmitKeySessions(KeySessions&& restored, StoredIn in) {
    const size_t kg = static_cast<size_t>(key_.key_group());
    if (FitsFlat(restored)) {
      if (in == StoredIn::kOwnEntry) SLUICE_RETURN_IF_ERROR(state_->Delete(key_sessions_id_));
      if (in != StoredIn::kBlock) flat_blocks_[kg] |= kBlockDirty;
      const Session& s = restored.sessions[0];
      bool inserted;
      int64_t* slot = session_index_.FindOrInsert(key_.record()[0].i, &inserted);
      slot[0] = FlatMeta(key_.key_group(), kFlatKey | kFlatQueued | (in == StoredIn::kBlock ? 0 : kFlatDirty));
      slot[kFlatStart] = s.w.start;
      slot[kFlatEnd] = s.w.end;
      slot[kFlatStateStart] = s.state_w.start;
      slot[kFlatRecords] = s.pane.words[kRecords];
      std::copy_n(s.pane.words.data() + kHeaderFields, pane_words_ - kHeaderFields, &slot[kFlatValues]);
      pane_bytes_ += session_index_.BytesPerKey();
      QueueFlat(key_.record()[0].i, s.w.max_timestamp());
      return absl::OkStatus();
    }
    KeySessions* ks = nullptr;
    if (NewKeyFits()) {
      auto it = key_sessions_.try_emplace(key_.bytes()).first;
      ks = &it->second;
      ks->sessions = std::move(restored.sessions);
      ks->key = &it->first;
      IndexKeySessions(ks);
    } else {
      sessions_spilled_ = true;
      ResetSpilled();
      spilled_.sessions = std::move(restored.sessions);
      ks = &spilled_;
    }
    ks->kg = key_.key_group();
    ks->in_backend = in == StoredIn::kOwnEntry;
    ks->dirty = !ks->in_backend;
    if (in == StoredIn::kBlock) flat_blocks_[kg] |= kBlockDirty;
    UpdateBytes(ks);
    for (const Session& s : ks->sessions) {
      const int64_t early = s.pane.words[slot_[kNextEarly]];
      if (early == kNoEarly) continue;
      state_->SetCurrentKey(*ks->key, ks->kg);
      SLUICE_RETURN_IF_ERROR(timers_->RegisterProcessingTimeTimer(early));
    }
    return KeyChanged(ks, false, 0);
  }

  // Restore: every key's sessions (format 2) of this subtask's key groups into memory (within
  // the budget), then the layout before (format 1: a session list per key in
  // "window_sessions", accumulators in buckets with timers per bucket) moved into it, deleting
  // the old entries and timers. kDataLoss if one does not decode.
  absl::Status RestoreSessions() {
    SLUICE_RETURN_IF_ERROR(RestoreFlatBlocks());
    SLUICE_RETURN_IF_ERROR(CollectKeys(key_sessions_id_));
    for (const std::string& key : legacy_keys_) {
      SLUICE_RETURN_IF_ERROR(SetStoredKey(key));
      SLUICE_ASSIGN_OR_RETURN(bool found, state_->Get(key_sessions_id_, &value_));
      if (!found) continue;
      KeySessions restored;
      SLUICE_RETURN_IF_ERROR(DecodeKeySessions(value_, &restored));
      SLUICE_RETURN_IF_ERROR(AdmitKeySessions(std::move(restored), StoredIn::kOwnEntry));
    }
    SLUICE_RETURN_IF_ERROR(CollectKeys(sessions_id_));
    absl::flat_hash_set<BucketId> old_buckets;
    for (const std::string& key : legacy_keys_) {
      SLUICE_RETURN_IF_ERROR(SetStoredKey(key));
      SLUICE_ASSIGN_OR_RETURN(bool found, state_->Get(sessions_id_, &value_));
      if (!found) continue;
      absl::string_view body = value_;  // format 0: no version byte, a multiple of 16 bytes
      if (value_.size() % 16 != 0) {
        SLUICE_ASSIGN_OR_RETURN(int version, ReadStateVersion(ctx_.state_origin, "window session list", value_,
                                                              kSessionsVersion, &body));
        (void)version;
        if (body.size() % 16 != 0) {
          return ctx_.state_origin.DataLoss(
              absl::StrCat("window session list has ", value_.size(), " bytes, not 1 + 16 per session"));
        }
      }
      key_windows_.clear();
      for (size_t p = 0; p < body.size(); p += 16) {
        key_windows_.push_back({internal::GetOrderedInt64(body.data() + p), internal::GetOrderedInt64(body.data() + p + 8)});
      }
      SLUICE_RETURN_IF_ERROR(state_->Delete(sessions_id_));
      KeySessions restored;
      for (const TimeWindow& w : key_windows_) {
        SetWindow(w, key_.key_group(), key_.bytes());
        SLUICE_ASSIGN_OR_RETURN(bool has_acc, LoadAcc(&acc_));
        if (!has_acc) continue;
        old_buckets.insert(cur_id_);
        if (acc_[kNextEarly].i != kNoEarly) {  // registered under the bucket then
          SetBucketKey();
          SLUICE_RETURN_IF_ERROR(timers_->DeleteProcessingTimeTimer(acc_[kNextEarly].i));
        }
        // A session opened after the watermark passed its end fired at once and had no firing
        // timer: its final firing is done.
        if (o_->event_time && acc_[kEmitted].i != 0 && w.max_timestamp() <= restored_watermark_) {
          acc_[kFinalFired].i = 1;
        }
        Session s;
        s.w = w;
        s.state_w = w;  // where its distinct values are
        AccToPane(acc_, &s.pane);
        restored.sessions.push_back(std::move(s));
      }
      SLUICE_RETURN_IF_ERROR(SetStoredKey(key));
      if (!restored.sessions.empty()) SLUICE_RETURN_IF_ERROR(AdmitKeySessions(std::move(restored), StoredIn::kNowhere));
    }
    legacy_keys_.clear();
    for (const BucketId& id : old_buckets) {
      const TimeWindow w{id.start, id.end};
      SetWindow(w, id.kg, absl::string_view());
      SetBucketKey();
      if (o_->event_time) {
        SLUICE_RETURN_IF_ERROR(timers_->DeleteEventTimeTimer(w.max_timestamp()));
        SLUICE_RETURN_IF_ERROR(timers_->DeleteEventTimeTimer(CleanupTime(w)));
      } else {
        SLUICE_RETURN_IF_ERROR(timers_->DeleteProcessingTimeTimer(w.max_timestamp()));
      }
      SLUICE_RETURN_IF_ERROR(DropBucket());
    }
    return absl::OkStatus();
  }
  // key_ and the backend's current key: a stored key. kDataLoss if it does not decode.
  absl::Status SetStoredKey(absl::string_view key) {
    absl::Status s = key_.SetBytes(key);
    if (!s.ok()) return ctx_.state_origin.DataLoss(absl::StrCat("a window state key does not decode: ", s.message()));
    state_->SetCurrentKey(key_.bytes(), key_.key_group());
    return absl::OkStatus();
  }

  // Folds value `v` (of a record with event time `ts`, or an accumulator's partial result
  // with its `ts` and its count `n` of values) into aggregate `a` of acc_; `first`: acc_ holds
  // no record yet (aggregates over nullable fields: no value, their null bit). Not for count
  // and count_distinct.
  void Fold(size_t a, const Value& v, int64_t ts, bool first, int64_t n) {
    const FieldType type = Stored(o_->aggregates[a].in_type);
    Value& acc = acc_[acc_index_[a]];
    if (nullable_[a]) {
      first = acc_.IsNull(acc_index_[a]);
      acc_.ClearNull(acc_index_[a]);
      if (o_->aggregates[a].fn == Fn::kAvg) acc_[acc_index_[a] + 1].i += n;
    }
    switch (o_->aggregates[a].fn) {
      case Fn::kSum:
      case Fn::kAvg:
        if (type == FieldType::kDouble) {
          acc.d += v.d;
        } else {
          acc.i = WrappingAdd(acc.i, v.i);
        }
        break;
      case Fn::kMin:
        if (first || LessThan(type, v, acc)) CopyInto(type, v, &acc);
        break;
      case Fn::kMax:
        if (first || LessThan(type, acc, v)) CopyInto(type, v, &acc);
        break;
      case Fn::kFirst:
      case Fn::kLast: {
        Value& at = acc_[acc_index_[a] + 1];
        const bool take = o_->aggregates[a].fn == Fn::kFirst ? ts < at.i : ts >= at.i;
        if (first || take) {
          CopyInto(type, v, &acc);
          at.i = ts;
        }
        break;
      }
      case Fn::kCount:
      case Fn::kCountDistinct:
      case Fn::kPlugin:
        break;
    }
  }

  // Folds accumulator `from` into acc_ (which starts reset): the state of a merged session.
  // Distinct counts are rebuilt from the moved values instead; plugins' functions merge.
  absl::Status MergeAcc(const Record& from) {
    const bool first = acc_[kRecords].i == 0;
    acc_[kRecords].i += from[kRecords].i;
    for (size_t a = 0; a < o_->aggregates.size(); ++a) {
      const Fn fn = o_->aggregates[a].fn;
      if (fn == Fn::kCount || fn == Fn::kCountDistinct) continue;
      const int i = acc_index_[a];
      if (fn == Fn::kPlugin) {
        const WindowOptions::Aggregate& agg = o_->aggregates[a];
        SLUICE_RETURN_IF_ERROR(agg.plugin->Merge(agg.in_type, from[i + 1].s, &acc_[i + 1].s));
        continue;
      }
      if (nullable_[a] && from.IsNull(i)) continue;  // only nulls in that session
      const bool timed = fn == Fn::kFirst || fn == Fn::kLast;
      Fold(a, from[i], timed ? from[i + 1].i : 0, first, fn == Fn::kAvg && nullable_[a] ? from[i + 1].i : 0);
    }
    return absl::OkStatus();
  }

  // A record for windows whose state is gone: to the late side output, or dropped and counted.
  absl::Status Late(const Record& r) {
    if (!o_->late_output.empty()) return output_->EmitSide(0, r);
    if (ctx_.late_records_dropped != nullptr) ctx_.late_records_dropped->Add();
    return absl::OkStatus();
  }

  const WindowOptions* o_ = nullptr;
  state::KeyedStateBackend* state_ = nullptr;
  TimerService* timers_ = nullptr;
  state::StateId panes_id_ = 0;
  state::StateId overflow_id_ = 0;
  state::StateId acc_id_ = 0;  // the layout before buckets (MigrateLegacyWindows)
  state::StateId distinct_id_ = 0;
  state::StateId sessions_id_ = 0;
  bool has_distinct_ = false;
  bool slide_panes_ = false;  // hopping windows kept per slide pane (see the class comment)
  int64_t restored_watermark_ = kNoWatermark;
  // Session windows: each key's open sessions with their accumulators, in memory within the
  // budget (node_hash_map: due_ points at them); keys beyond it are kept in the backend, one
  // read into spilled_ at a time.
  state::StateId key_sessions_id_ = 0;
  absl::node_hash_map<std::string, KeySessions> key_sessions_;
  // one_int_key_: the keys by value, found without encoding, hashing or comparing their
  // bytes: a node's slot points at its entry of key_sessions_; a flat key's holds its session
  // (see ProcessFlatSession). Counted in the memory budget (KeySessionsBytes, BytesPerKey).
  internal::IntPaneTable session_index_;
  bool flat_sessions_ = false;  // keys may be flat (see ProcessFlatSession)
  bool flat_counts_only_ = false;  // flat_sessions_ and every aggregate a count (no value words)
  int key_field_ = -1;  // flat_sessions_ or fold_batches_: the key's field when the key is one (else -1)
  // Tumbling windows or slide panes of integer keys whose aggregates fold into words, in event
  // time without early firing: batches fold records in place (FoldBatch).
  bool fold_batches_ = false;
  bool input_all_integral_ = false;  // the input's fields are all NOT NULL integers (PrefersIntRows)
  Record row_scratch_;               // IntRows::At()'s record: the input's width
  FoldWindow fold_windows_[2];
  std::string flat_key_;        // a flat key's record bytes (WriteKeySessions)
  Pane flat_pane_;              // a flat key's pane (FireFlatKey)
  std::vector<int64_t> flat_words_;  // a flat key's pane words (AppendFlatBlockKey)
  // The blocks of flat keys by key group (WriteFlatBlocks): kBlockStored, the backend holds one;
  // kBlockDirty, it is written again (or deleted) at the next checkpoint.
  enum : uint8_t { kBlockStored = 1, kBlockDirty = 2 };
  state::StateId flat_blocks_id_ = 0;
  std::vector<uint8_t> flat_blocks_;
  std::vector<uint32_t> block_counts_;  // WriteFlatBlocks: flat keys by key group
  std::vector<size_t> block_fill_;
  std::vector<std::pair<int64_t, const int64_t*>> block_keys_;  // keys and slots by key group (a checkpoint's)
  std::string block_key_;
  KeySessions spilled_;
  std::string spilled_key_;
  bool sessions_spilled_ = false;  // some keys' sessions are kept in the backend (budget spent)
  std::vector<DueEntry> due_;      // in-memory event-time keys by their next firing (min-heap)
  int64_t due_max_at_ = std::numeric_limits<int64_t>::min();  // >= every entry's `at` in due_
  std::vector<DueEntry> due_all_;  // FireDueSessions: due_ taken whole
  uint64_t due_gen_ = 0;
  bool has_plugin_ = false;  // an aggregate is a plugin's function
  // Open windows. A Bucket moves when buckets_ grows (its panes do not): cur_bucket_ is found
  // again after an insertion.
  absl::flat_hash_map<BucketId, Bucket> buckets_;
  // Buckets found lately, by a hash of their id (records of a window's key groups come
  // interleaved; a bucket's hash map lookup was ~7% of the task); valid while their generation
  // is buckets_generation_, which changes whenever buckets_ gains or loses a bucket.
  struct BucketCacheEntry {
    BucketId id;
    Bucket* bucket = nullptr;
    uint64_t generation = 0;
  };
  static constexpr size_t kBucketCacheSize = 256;
  static size_t BucketCacheSlot(const BucketId& id) {
    const uint64_t h = (static_cast<uint64_t>(id.start) ^ static_cast<uint64_t>(id.end) * 31) * 0x9E3779B97F4A7C15ULL;
    return (static_cast<size_t>(id.kg) ^ static_cast<size_t>(h >> 56)) & (kBucketCacheSize - 1);
  }
  BucketCacheEntry bucket_cache_[kBucketCacheSize];
  uint64_t buckets_generation_ = 1;
  // int_keys_: the keys of the last bucket with keys dropped (a new bucket reserves room for as
  // many: records of one window's key group fill it without rehashing as it grows).
  size_t fired_bucket_keys_ = 0;
  size_t pane_bytes_ = 0;          // PaneBytes of buckets_' panes
  const size_t max_pane_bytes_ =
      max_pane_bytes_for_test != 0 ? max_pane_bytes_for_test : kDefaultMaxPaneBytes;
  bool backend_has_more_ = false;  // restored: the backend may hold other buckets
  // The current window (SetWindow): its bucket, key and pane, once found or made (the pane is
  // null before, and after its bucket changed shape).
  BucketId cur_id_;
  absl::string_view cur_key_;  // key_'s bytes, or a key in cur_bucket_
  Bucket* cur_bucket_ = nullptr;
  PaneRef cur_pane_;
  int64_t cur_int_key_ = 0;  // int_keys_: the value of cur_key_
  bool cur_overflow_ = false;  // the current window's accumulator is in "window_overflow"
  internal::RecordKey key_;
  Schema acc_schema_;
  // Pane layout: per field of acc_schema_ its index in Pane::words or Pane::strings.
  enum : uint8_t { kIntSlot, kDoubleSlot, kStringSlot };
  std::vector<int> slot_;
  std::vector<uint8_t> kind_;  // per field of acc_schema_: how its value is kept
  bool word_folds_ = false;    // FoldIntoPane applies: every aggregate folds into one word
  size_t pane_words_ = 0;
  size_t pane_strings_ = 0;
  std::vector<int> nullable_fields_;  // fields of acc_schema_ that may be null
  std::vector<int> null_bit_;         // per field of acc_schema_: its null bit, or -1
  bool words_only_ = false;           // no string field: EncodePaneRow writes the rows
  bool one_int_key_ = false;  // the key is one integer field
  bool int_keys_ = false;      // and buckets keep panes in int_panes (see Bucket)
  static constexpr size_t kMaxWordsRow = 512;
  size_t null_words_ = 0;             // words of their null bits after the values
  std::vector<int> acc_index_;  // per aggregate: its first field in acc_schema_
  std::vector<bool> nullable_;  // per aggregate: over a nullable field
  Schema acc_schema_v1_;        // accumulators of format 1
  std::vector<int> acc_v1_index_;  // per aggregate field of format 1: its field in acc_schema_

  // Scratch, reused per record.
  std::string composite_;
  std::string bucket_key_;
  std::string row_;
  // A window of a key to fire; fired in key order, and in the order added for one key.
  struct FireItem {
    uint64_t prefix;  // the key's first 8 bytes, big-endian (zeros past its end)
    const std::string* key;
    PaneRef pane;
    uint32_t seq;   // its position in fire_order_ when added
    bool overflow;  // from "window_overflow" (a copy in overflow_panes_)
    static bool Before(const FireItem& a, const FireItem& b) {
      if (a.prefix != b.prefix) return a.prefix < b.prefix;
      const int c = a.key->compare(*b.key);
      return c != 0 ? c < 0 : a.seq < b.seq;
    }
    // Before() for std::sort, inlined (a function pointer is called per comparison).
    struct Order {
      bool operator()(const FireItem& a, const FireItem& b) const { return Before(a, b); }
    };
  };
  void AddFireItem(const std::string* key, PaneRef pane, bool overflow) {
    uint64_t prefix = 0;
    for (size_t i = 0; i < 8; ++i) {
      prefix = (prefix << 8) | (i < key->size() ? static_cast<unsigned char>((*key)[i]) : 0);
    }
    fire_order_.push_back({prefix, key, pane, static_cast<uint32_t>(fire_order_.size()), overflow});
  }
  std::vector<FireItem> fire_order_;
  // FireIntKeys: a key of int_panes, its order (the first 8 and the last 2 of its record bytes)
  // and its pane's words.
  struct IntFireItem {
    uint64_t prefix;
    uint16_t tail;
    uint32_t seq;  // its position in int_fire_order_ when added
    int64_t key;
    const int64_t* words;
  };
  std::vector<IntFireItem> int_fire_order_;
  // By key group: the keys FireIntKeys last fired of it, in their order (AddLastIntFireOrder).
  // Not state: empty after a restore.
  std::vector<std::vector<int64_t>> last_fire_orders_;
  // Tumbling windows' buckets start narrow (Bucket::narrow; no lateness, folds in batches).
  bool narrow_panes_ = false;
  bool counts_only_ = false;  // every aggregate is a count (FireNarrowCounts)
  Record int_key_{1};  // IntKeyGroup's key record
  std::vector<int64_t> widened_;  // a narrow slot as the pane's words (WidenPane)
  std::vector<std::string> legacy_keys_;  // restores: keys of a state (CollectKeys)
  std::deque<std::pair<std::string, Pane>> overflow_panes_;  // firing buckets' overflow
  std::deque<std::string> fire_keys_;  // firing buckets' int_panes keys as record bytes
  std::vector<TimeWindow> windows_;
  std::vector<TimeWindow> absorbed_;
  std::vector<TimeWindow> key_windows_;
  std::vector<KeySessions*> due_keys_;
  std::vector<SessionFireItem> fire_items_;
  std::vector<int64_t> released_;
  Record acc_;
  Record other_acc_;
  Record decoded_acc_;  // a bucket's rows as they are encoded or decoded
  Record v1_acc_;
  std::string value_;
  std::string user_key_;
  std::string scratch_;
  std::string why_;  // why a stored row does not decode (ReadPaneRow)
  std::vector<std::pair<std::string, std::string>> entries_;
  Record out_;
};

}  // namespace

std::unique_ptr<Operator> MakeWindow() { return std::make_unique<WindowOperator>(); }

void SetWindowMemoryForTest(size_t bytes) { max_pane_bytes_for_test = bytes; }
void SetWindowSlidePanesForTest(bool enabled) { slide_panes_enabled = enabled; }
void SetWindowSessionFastPathsForTest(bool enabled) { session_fast_paths_enabled = enabled; }
void SetWindowIntKeyPanesForTest(bool enabled) { int_key_panes_enabled = enabled; }
void SetWindowFoldBatchesForTest(bool enabled) { fold_batches_enabled = enabled; }
uint64_t WindowBatchFoldsForTest() { return batch_folds.load(); }
uint64_t WindowIntRowBatchesForTest() { return int_row_batches.load(); }
uint64_t WindowIntKeyPanesMadeForTest() { return int_key_panes_made.load(); }
void SetWindowNarrowPanesForTest(bool enabled) { narrow_panes_enabled = enabled; }
uint64_t WindowNarrowBucketsMadeForTest() { return narrow_buckets_made.load(); }
uint64_t WindowNarrowBucketsWidenedForTest() { return narrow_buckets_widened.load(); }
uint64_t WindowSessionIndexDropsForTest() { return session_index_drops.load(); }
uint64_t WindowNarrowCountRowsForTest() { return narrow_count_rows.load(); }
void SetWindowFireOrderReuseForTest(bool enabled) { fire_order_reuse_enabled = enabled; }
uint64_t WindowFireOrdersReusedForTest() { return fire_orders_reused.load(); }

}  // namespace sluice::ops
