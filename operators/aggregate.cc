#include "operators/internal/builtins.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/optimization.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "common/key_groups.h"
#include "common/record_codec.h"
#include "common/state_format.h"
#include "common/status.h"
#include "operators/aggregate_options.h"
#include "operators/key_hasher.h"
#include "plan/expr.h"
#include "state/keyed_state_backend.h"

namespace sluice::ops {
namespace {

using plan::CompileExpr;
using plan::Expr;

// Rolling aggregate per key: count, sum, min, max, avg, first, last and plugins' aggregate
// functions (as SQL: all but count skip null values, and sum/min/max/avg/first/last are null
// while every value of the key was null; count counts rows, count of a field its non-null
// values; first and last in the order records come, AggregateOptions). With emit: updates
// (the default), every
// input record emits the key's updated row; with emit: final, each key's row is emitted once
// at end of input. Accumulators live in the keyed state backend (RocksDB behind a write-back
// cache), one value per key, optionally with a TTL; plugins' accumulators in a second value
// ("plugin_accumulators", see LoadPluginAccumulators) with the same TTL.
//
// In memory instead (as Flink's heap state), when the options allow it (`state: auto`, the
// default; `state: backend` never), the key is one integer field, no function is a plugin's,
// there is no TTL and the backend holds no accumulators at Open() (not restored with any): each
// key's accumulators in a slot, found by the key's value (an array by offset from the first key
// for keys close together, as ids that grow; a hash map for the others), no key bytes or backend
// call per record.
// SnapshotState() writes the in-memory keys to the backend as blocks ("aggregate_blocks", see
// WriteBlock): the keys of one key group within one range of 2^kBlockShift key values share a
// block, rewritten whole when any of its keys changed since the last checkpoint. A checkpoint
// thus costs the backend one write per changed block, not per changed key (~1 us each in the
// backend: Nexmark q4's maxima, auction ids that grow, ~128 keys a block). Open() restores the
// blocks of its key groups into memory (any parallelism: blocks are keyed state of their key
// group), or, on the backend path, turns them into per-key entries; per-key entries (the
// backend path's, and the in-memory path's before blocks) restore into the backend path.
//
// The map counts against the subtask's state memory: its estimated bytes (BytesPerKey() per
// key) may use at most kInMemoryBudgetFraction of the backend's cache budget
// (KeyedStateBackend::CacheBudgetBytes(), this operator's share of the worker's
// --state-memory), and never more than kMaxInMemoryKeys keys; the backend's cache keeps within
// the rest of its budget meanwhile (ReserveCacheBytes), so map and cache stay within it. The
// key that reaches that cap moves the map to the backend, which gets its whole budget back, and
// the subtask goes on in the backend path.
class AggregateOperator final : public Operator {
 public:
  bool IsKeyed() const override { return true; }

  absl::Status Open(const OperatorContext& ctx, Output* output) override {
    SLUICE_RETURN_IF_ERROR(Operator::Open(ctx, output));
    const auto& spec = *ctx.spec;
    if (ctx.keyed_state == nullptr) {
      return absl::FailedPreconditionError("aggregate needs a keyed state backend");
    }
    state_ = ctx.keyed_state;
    for (const auto& k : spec.key) {
      SLUICE_ASSIGN_OR_RETURN(auto e, CompileExpr(k.expr, spec.input_schema));
      key_exprs_.push_back(std::move(e));
    }
    std::vector<Field> key_fields(spec.output_schema.fields().begin(),
                                  spec.output_schema.fields().begin() + spec.key.size());
    key_schema_ = Schema(std::move(key_fields));
    SLUICE_ASSIGN_OR_RETURN(const AggregateOptions* o, TypedOptions<AggregateOptions>(ctx));
    for (const AggregateOptions::Aggregate& a : o->aggregates) {
      Agg agg;
      agg.fn = a.fn;
      agg.field = a.field;
      if (a.field >= 0) {
        agg.in_type = spec.input_schema.field(a.field).type;
        agg.is_double = agg.in_type == FieldType::kDouble;
        agg.nullable = spec.input_schema.field(a.field).nullable;
      }
      if (a.fn == Fn::kPlugin) {
        if (a.plugin == nullptr || !a.plugin->Runnable()) {
          return absl::FailedPreconditionError(absl::StrCat(
              ctx.task_name, ": aggregate function of '", a.as, "' cannot run in this process"));
        }
        agg.plugin = a.plugin.get();
        has_plugin_ = true;
      }
      aggs_.push_back(agg);
    }
    emit_final_ = o->emit_final;
    state_id_ = state_->RegisterState("accumulators", state::StateKind::kValue, o->ttl_ms);
    blocks_id_ = state_->RegisterState("aggregate_blocks", state::StateKind::kValue);
    if (has_plugin_) {
      plugin_state_id_ =
          state_->RegisterState("plugin_accumulators", state::StateKind::kValue, o->ttl_ms);
      plugin_accs_.resize(aggs_.size());
    }
    const auto budget = static_cast<size_t>(static_cast<double>(state_->CacheBudgetBytes()) *
                                            kInMemoryBudgetFraction);
    max_in_memory_keys_ = std::min(
        kMaxInMemoryKeys, budget > kDenseFixedBytes ? (budget - kDenseFixedBytes) / BytesPerKey() : 0);
    in_memory_ = !o->backend_state && max_in_memory_keys_ > 0 && key_schema_.size() == 1 &&
                 IsIntegral(key_schema_.field(0).type) && !key_schema_.field(0).nullable &&
                 !has_plugin_ && o->ttl_ms == 0;
    std::vector<std::string> block_keys;  // restored blocks of in-memory keys
    SLUICE_RETURN_IF_ERROR(state_->ForEachKey(blocks_id_, [&](absl::string_view key) {
      block_keys.emplace_back(key);
      return absl::OkStatus();
    }));
    if (in_memory_) {  // only over a backend without per-key accumulators (not restored with any)
      absl::Status any = state_->ForEachKey(
          state_id_, [](absl::string_view) { return absl::AlreadyExistsError("a stored key"); });
      if (absl::IsAlreadyExists(any)) {
        in_memory_ = false;
      } else if (!any.ok()) {
        return any;
      }
    }
    if (in_memory_ && key_exprs_[0]->FieldIndex() >= 0 && IsIntegral(key_exprs_[0]->type()) &&
        !key_exprs_[0]->nullable()) {
      key_field_ = key_exprs_[0]->FieldIndex();
    }
    // The map's cap comes out of the cache's budget while the map lives (class comment).
    if (in_memory_) {
      state_->ReserveCacheBytes(kDenseFixedBytes + max_in_memory_keys_ * BytesPerKey());
      // Address space for the cap (pages are touched only as keys come): the vectors never
      // move, so no page is faulted in twice and no slot copied as they grow.
      slots_.reserve(max_in_memory_keys_);
      slot_accs_.reserve(max_in_memory_keys_ * aggs_.size());
      blocks_.reserve(max_in_memory_keys_);
      dirty_blocks_.reserve(max_in_memory_keys_);
      dense_.reserve(kDenseSpread * (max_in_memory_keys_ + 1) + kDenseMinEntries);
      last_block_of_group_.assign(static_cast<size_t>(ctx.max_parallelism), kNoSlot);
    }
    key_record_.Resize(key_schema_.size());
    out_.Resize(spec.output_schema.size());
    accs_.resize(aggs_.size());
    acc_bytes_.assign(1 + accs_.size() * sizeof(Acc), 0);
    acc_bytes_[0] = static_cast<char>(kAccumulatorFormat);
    if (!block_keys.empty()) {
      SLUICE_RETURN_IF_ERROR(in_memory_ ? RestoreBlocks(block_keys) : BlocksToEntries(block_keys));
    }
    return absl::OkStatus();
  }

  absl::Status Process(const Record& r) override {
    if (in_memory_) return ProcessInMemory(r);
    EvalKey(r);
    key_bytes_.clear();
    EncodeRecord(key_schema_, key_record_, &key_bytes_);
    state_->SetCurrentKey(key_bytes_, KeyGroup(r));
    return Update(r);
  }

  // A batch: first the keys of all records, read ahead from the state backend in one batched
  // read (KeyedStateBackend::Prefetch), then each record in order, as Process() does it (a
  // record sees the updates of those before it and emits the same row). As Flink's mini-batch
  // aggregation, a key's accumulators are read once per batch, at its first record, and written
  // once, after the batch's last record: a run of records of one key (Nexmark q4's hot auction)
  // pays one state read and one write. Plugins' accumulators take Update() per record.
  //
  // The in-memory path gains nothing from a batch (no state reads to gather), so once Open()
  // chose it the aggregate takes records one at a time (no copies into a chain's batch); a batch
  // it gets all the same is folded record by record.
  bool PrefersBatches() const override { return !in_memory_; }
  absl::Status ProcessBatch(int input_index, const Record* records, size_t count) override {
    if (in_memory_) {
      size_t i = 0;
      while (i < count && in_memory_) SLUICE_RETURN_IF_ERROR(ProcessInMemory(records[i++]));
      if (i == count) return absl::OkStatus();
      records += i;  // moved to the backend midway: the rest as the backend path does
      count -= i;
    }
    batch_key_bytes_.clear();
    batch_key_ends_.clear();
    batch_keys_.clear();
    if (batch_key_records_.size() < count) {
      batch_key_records_.resize(count, Record(key_schema_.size()));
    }
    for (size_t i = 0; i < count; ++i) {
      std::swap(key_record_, batch_key_records_[i]);
      EvalKey(records[i]);
      EncodeRecord(key_schema_, key_record_, &batch_key_bytes_);
      batch_key_ends_.push_back(batch_key_bytes_.size());
      batch_keys_.push_back(state::KeyInGroup{absl::string_view(), KeyGroup(records[i])});
      std::swap(key_record_, batch_key_records_[i]);  // kept for the output of record i
    }
    size_t start = 0;
    for (size_t i = 0; i < count; ++i) {  // views only now: batch_key_bytes_ no longer moves
      batch_keys_[i].key =
          absl::string_view(batch_key_bytes_).substr(start, batch_key_ends_[i] - start);
      start = batch_key_ends_[i];
    }
    SLUICE_RETURN_IF_ERROR(state_->Prefetch(state_id_, batch_keys_));
    if (has_plugin_) {
      SLUICE_RETURN_IF_ERROR(state_->Prefetch(plugin_state_id_, batch_keys_));
      for (size_t i = 0; i < count; ++i) {
        std::swap(key_record_, batch_key_records_[i]);  // the output's key fields
        state_->SetCurrentKey(batch_keys_[i].key, batch_keys_[i].key_group);
        SLUICE_RETURN_IF_ERROR(Update(records[i]));
      }
      return absl::OkStatus();
    }
    // The batch's distinct keys: each one's accumulators in batch_accs_, read at its first record
    // (batch_first_).
    const size_t n = aggs_.size();
    batch_slot_.clear();
    batch_first_.clear();
    batch_accs_.clear();
    for (size_t i = 0; i < count; ++i) {
      const auto [it, added] =
          batch_slot_.try_emplace(batch_keys_[i].key, static_cast<uint32_t>(batch_first_.size()));
      if (added) {
        batch_first_.push_back(i);
        batch_accs_.resize(batch_accs_.size() + n);
        Acc* accs = &batch_accs_[it->second * n];
        SLUICE_ASSIGN_OR_RETURN(bool found,
                                state_->GetOfBatch(state_id_, batch_keys_, i, &value_));
        if (found) {
          SLUICE_RETURN_IF_ERROR(LoadAccumulators(accs));
        } else {
          std::fill(accs, accs + n, Acc{});
        }
      }
      Acc* accs = &batch_accs_[it->second * n];
      SLUICE_RETURN_IF_ERROR(Fold(records[i], accs));
      if (emit_final_) continue;
      std::swap(key_record_, batch_key_records_[i]);  // the output's key fields
      SLUICE_RETURN_IF_ERROR(EmitRow(accs));
    }
    // The reads reused the entries the read-ahead found, and so do the writes (no second
    // lookup per key; the current key is unspecified afterwards).
    for (size_t d = 0; d < batch_first_.size(); ++d) {
      std::memcpy(acc_bytes_.data() + 1, &batch_accs_[d * n], n * sizeof(Acc));
      SLUICE_RETURN_IF_ERROR(state_->PutOfBatch(
          state_id_, batch_keys_, batch_first_[d],
          absl::string_view(acc_bytes_.data(), acc_bytes_.size())));
    }
    return absl::OkStatus();
  }

  absl::Status Finish() override {
    if (!emit_final_) return absl::OkStatus();
    if (in_memory_) {
      const std::vector<uint32_t> order = SlotsInKeyOrder();
      const size_t n = aggs_.size();
      for (uint32_t i : order) {
        out_[0].i = slots_[i].key;
        SLUICE_RETURN_IF_ERROR(FillAggregates(&slot_accs_[i * n]));
        SLUICE_RETURN_IF_ERROR(output_->Emit(out_));
      }
      return absl::OkStatus();
    }
    return state_->ForEachKey(state_id_, [this](absl::string_view key) -> absl::Status {
      RecordDecoder dec(&key_schema_, key);
      absl::Status s = dec.Next(&out_);  // key fields come first in the output
      if (!s.ok()) return ctx_.state_origin.DataLoss(absl::StrCat("a stored key does not decode: ", s.message()));
      SLUICE_ASSIGN_OR_RETURN(bool found, state_->Get(state_id_, &value_));
      if (!found) return absl::OkStatus();
      SLUICE_RETURN_IF_ERROR(LoadAccumulators(accs_.data()));
      if (has_plugin_) SLUICE_RETURN_IF_ERROR(LoadPluginAccumulators());
      SLUICE_RETURN_IF_ERROR(FillAggregates(accs_.data()));
      return output_->Emit(out_);
    });
  }

  // Writes the blocks of the in-memory keys changed since the last checkpoint to the backend
  // (class comment), before the task snapshots the backend.
  absl::Status SnapshotState(int64_t, std::vector<std::string>*) override {
    if (!in_memory_) return absl::OkStatus();
    for (uint32_t b : dirty_blocks_) SLUICE_RETURN_IF_ERROR(WriteBlock(b));
    dirty_blocks_.clear();
    return absl::OkStatus();
  }

 private:
  using Fn = AggregateOptions::Fn;
  struct Agg {
    Fn fn = Fn::kCount;
    int field = -1;
    FieldType in_type = FieldType::kInt64;
    bool is_double = false;
    bool nullable = false;
    const plan::AggregateFunction* plugin = nullptr;  // kPlugin; owned by the options
  };
  struct Acc {
    int64_t i = 0;
    double d = 0;
    int64_t n = 0;
  };

  // Keys kept in memory at most (per subtask) before the subtask moves them to the backend,
  // whatever the budget.
  static constexpr size_t kMaxInMemoryKeys = size_t{1} << 20;
  // The share of the backend's cache budget the map may use (reserved from the cache at Open();
  // the cache, which holds only the entries the map writes at snapshots, keeps the rest).
  static constexpr double kInMemoryBudgetFraction = 0.5;
  // An entry of recent_: a key and its slot, or kNoSlot.
  static constexpr uint32_t kNoSlot = UINT32_MAX;
  struct Slot {
    int64_t key;
    int key_group;
    bool dirty;  // changed since the last checkpoint (its block is in dirty_blocks_)
    uint32_t block;  // its block in blocks_
    uint32_t next = kNoSlot;  // the next slot of its block, or kNoSlot
  };
  // A block of in-memory keys (class comment): those of key group `key_group` whose value >>
  // kBlockShift is `range`, a list of slots from `head` to `tail` (Slot::next).
  static constexpr int kBlockShift = 14;
  static constexpr uint8_t kBlockDirty = 1;   // in dirty_blocks_
  static constexpr uint8_t kBlockStored = 2;  // in the backend
  struct Block {
    int64_t range;
    int key_group;
    uint32_t head;
    uint32_t tail;
    uint32_t count;
    uint8_t flags;
  };
  struct RecentKey {
    int64_t key = 0;
    uint32_t slot = kNoSlot;
  };
  // Entries of recent_ (a power of two): 4 KiB, which stays in L1 between records.
  static constexpr size_t kRecentKeys = 256;
  // The entry of recent_ for `key`: its low bits, mixed with the next ones so that keys a
  // multiple of kRecentKeys apart (strides) do not all share one entry.
  static size_t RecentIndex(int64_t key) {
    const uint64_t k = static_cast<uint64_t>(key);
    return (k ^ (k >> 8) ^ (k >> 16)) & (kRecentKeys - 1);
  }

  // dense_ may span at most kDenseSpread entries per key in it (plus kDenseMinEntries): keys
  // at least that close together on average (Nexmark's auction ids, of which each of p
  // subtasks gets ~1/p) take it, others the hash map.
  static constexpr size_t kDenseSpread = 8;
  static constexpr size_t kDenseMinEntries = 1024;
  // Estimated bytes of one key in memory, at their most: the larger of its hash map entry
  // (key, slot index and a control byte, in a table at least 7/16 full after it doubled:
  // x 16/7 < 3) and its share of dense_ (kDenseSpread entries, in a vector at most twice its
  // size), and its slot, accumulators and dirty_ entry (vectors at most twice their size after
  // they grew). dense_'s kDenseMinEntries come on top (kDenseFixedBytes).
  size_t BytesPerKey() const {
    return std::max(3 * (sizeof(std::pair<const int64_t, uint32_t>) + 1),
                    2 * kDenseSpread * sizeof(uint32_t)) +
           2 * (sizeof(Slot) + aggs_.size() * sizeof(Acc) + sizeof(uint32_t)) +
           2 * (sizeof(Block) + sizeof(uint32_t)) +
           3 * (sizeof(std::pair<const std::pair<int, int64_t>, uint32_t>) + 1);  // its block's, at most
  }
  static constexpr size_t kDenseFixedBytes = 2 * kDenseMinEntries * sizeof(uint32_t);

  // Process() in memory: folds `r` into its key's slot (added at its first record).
  absl::Status ProcessInMemory(const Record& r) {
    const int64_t key = key_field_ >= 0 ? r[key_field_].i : key_exprs_[0]->EvalInt(r);
    const size_t n = aggs_.size();
    uint32_t i;
    if (uint32_t* dense = DenseEntry(key); dense != nullptr) {
      if (ABSL_PREDICT_FALSE(*dense == kNoSlot)) {
        *dense = NewSlot(key, r);
        ++dense_keys_;
      }
      i = *dense;
    } else {
      RecentKey& recent = recent_[RecentIndex(key)];
      i = recent.slot;
      if (ABSL_PREDICT_FALSE(recent.key != key || i == kNoSlot)) {
        auto [it, added] = slot_of_.try_emplace(key, static_cast<uint32_t>(slots_.size()));
        if (added) NewSlot(key, r);
        i = it->second;
        recent = RecentKey{key, i};
      }
    }
    Acc* accs = &slot_accs_[i * n];
    SLUICE_RETURN_IF_ERROR(Fold(r, accs));
    if (!slots_[i].dirty) {
      slots_[i].dirty = true;
      Block& block = blocks_[slots_[i].block];
      if ((block.flags & kBlockDirty) == 0) {
        block.flags |= kBlockDirty;
        dirty_blocks_.push_back(slots_[i].block);
      }
    }
    if (!emit_final_) {
      key_record_[0].i = key;
      SLUICE_RETURN_IF_ERROR(EmitRow(accs));
    }
    if (slots_.size() >= max_in_memory_keys_) return MoveToBackend();
    return absl::OkStatus();
  }

  // The entry of dense_ for `key` (kNoSlot: no slot yet), growing dense_ to take it while
  // it stays within kDenseSpread entries per key; null: the key goes to the hash map. The
  // first key starts the range; keys below it go to the map.
  uint32_t* DenseEntry(int64_t key) {
    if (ABSL_PREDICT_FALSE(dense_.empty())) dense_base_ = key;
    const uint64_t offset = static_cast<uint64_t>(key) - static_cast<uint64_t>(dense_base_);
    if (ABSL_PREDICT_TRUE(offset < dense_.size())) return &dense_[offset];
    const uint64_t most = kDenseSpread * (dense_keys_ + 1) + kDenseMinEntries;
    if (offset >= most) return nullptr;
    dense_.resize(std::min<uint64_t>(std::max<uint64_t>(offset + 1, 2 * dense_.size()), most),
                  kNoSlot);
    return &dense_[offset];
  }
  // Adds the slot of `key`, the key of `r`; returns its index.
  uint32_t NewSlot(int64_t key, const Record& r) {
    key_record_[0].i = key;
    return AddSlot(key, KeyGroup(r));
  }
  // Adds the slot of `key` (of key group `kg`, with new accumulators) to slots_ and to its block
  // (a new one for the first key of its range in kg); returns its index.
  uint32_t AddSlot(int64_t key, int kg) {
    const auto i = static_cast<uint32_t>(slots_.size());
    const int64_t range = key >> kBlockShift;
    if (ABSL_PREDICT_FALSE(static_cast<size_t>(kg) >= last_block_of_group_.size())) {
      last_block_of_group_.resize(static_cast<size_t>(kg) + 1, kNoSlot);
    }
    uint32_t& last = last_block_of_group_[static_cast<size_t>(kg)];
    if (last == kNoSlot || blocks_[last].range != range) {
      const auto [it, added] =
          block_of_.try_emplace(std::make_pair(kg, range), static_cast<uint32_t>(blocks_.size()));
      if (added) blocks_.push_back(Block{range, kg, i, kNoSlot, 0, 0});
      last = it->second;
    }
    Block& block = blocks_[last];
    if (block.tail != kNoSlot) slots_[block.tail].next = i;
    block.tail = i;
    ++block.count;
    slots_.push_back(Slot{key, kg, false, last});
    slot_accs_.resize(slot_accs_.size() + aggs_.size());
    return i;
  }

  // The in-memory slots by key group, then key: the same order in every run. A counting sort
  // by key group keeps the slots' order within a group, and slots mostly come in key order
  // (ids that grow), so each group's sort by key mostly finds it sorted. (One std::sort of
  // every slot by (key group, key) was ~1.4% of q4's join threads' samples, at the input's end.)
  std::vector<uint32_t> SlotsInKeyOrder() const {
    int groups = ctx_.max_parallelism;
    for (const Slot& s : slots_) groups = std::max(groups, s.key_group + 1);
    std::vector<uint32_t> start(static_cast<size_t>(groups) + 1, 0);
    for (const Slot& s : slots_) ++start[s.key_group + 1];
    for (size_t g = 1; g < start.size(); ++g) start[g] += start[g - 1];
    std::vector<uint32_t> order(slots_.size());
    std::vector<uint32_t> next(start.begin(), start.end() - 1);
    for (uint32_t i = 0; i < slots_.size(); ++i) order[next[slots_[i].key_group]++] = i;
    const auto by_key = [this](uint32_t a, uint32_t b) { return slots_[a].key < slots_[b].key; };
    for (size_t g = 0; g + 1 < start.size(); ++g) {
      const auto first = order.begin() + start[g];
      const auto last = order.begin() + start[g + 1];
      if (!std::is_sorted(first, last, by_key)) std::sort(first, last, by_key);
    }
    return order;
  }

  // Writes slot `i` as its key's stored accumulators.
  absl::Status WriteSlot(uint32_t i) {
    Slot& slot = slots_[i];
    slot.dirty = false;
    key_record_[0].i = slot.key;
    key_bytes_.clear();
    EncodeRecord(key_schema_, key_record_, &key_bytes_);
    state_->SetCurrentKey(key_bytes_, slot.key_group);
    return Store(&slot_accs_[i * aggs_.size()]);
  }

  // Leaves the in-memory path: every key to the backend, which holds them from now on (as
  // per-key entries; the stored blocks are deleted).
  absl::Status MoveToBackend() {
    state_->ReserveCacheBytes(0);
    for (uint32_t i = 0; i < slots_.size(); ++i) SLUICE_RETURN_IF_ERROR(WriteSlot(i));
    for (const Block& block : blocks_) {
      if ((block.flags & kBlockStored) == 0) continue;
      state_->SetCurrentKey(BlockKey(block.key_group, block.range), block.key_group);
      SLUICE_RETURN_IF_ERROR(state_->Delete(blocks_id_));
    }
    in_memory_ = false;
    recent_.fill(RecentKey{});
    dense_ = {};
    dense_keys_ = 0;
    slot_of_ = {};
    slots_ = {};
    slot_accs_ = {};
    blocks_ = {};
    block_of_ = {};
    dirty_blocks_ = {};
    last_block_of_group_ = {};
    return absl::OkStatus();
  }

  // Block `b` (class comment) into the backend: [kBlockFormat][aggregates][keys] (varints), then
  // per key [its value - the range's first value (varint)][one Acc per aggregate, as an entry's].
  // Its keys are clean after.
  static constexpr uint8_t kBlockFormat = 1;
  absl::Status WriteBlock(uint32_t b) {
    Block& block = blocks_[b];
    const size_t n = aggs_.size();
    block_value_.assign(1, static_cast<char>(kBlockFormat));
    PutVarint64(n, &block_value_);
    PutVarint64(block.count, &block_value_);
    const int64_t first = static_cast<int64_t>(static_cast<uint64_t>(block.range) << kBlockShift);
    for (uint32_t i = block.head; i != kNoSlot; i = slots_[i].next) {
      slots_[i].dirty = false;
      PutVarint64(static_cast<uint64_t>(slots_[i].key) - static_cast<uint64_t>(first), &block_value_);
      block_value_.append(reinterpret_cast<const char*>(&slot_accs_[i * n]), n * sizeof(Acc));
    }
    state_->SetCurrentKey(BlockKey(block.key_group, block.range), block.key_group);
    SLUICE_RETURN_IF_ERROR(state_->Put(blocks_id_, block_value_));
    block.flags = kBlockStored;
    return absl::OkStatus();
  }
  // The backend's key of a block (PutBlockKey).
  const std::string& BlockKey(int kg, int64_t range) {
    PutBlockKey(kg, range, &block_key_);
    return block_key_;
  }
  // A restored key of a block: its value, key group and accumulators.
  struct BlockKeyAccs {
    int64_t key;
    int key_group;
    size_t accs;  // its first Acc in the decoded accumulators
  };
  // The keys of stored block `block_key` (of this subtask's key groups) appended to *keys, their
  // accumulators to *accs. kDataLoss unless it decodes, holds keys of its key group and range
  // and as many aggregates as this aggregate.
  absl::Status DecodeBlock(const std::string& block_key, std::vector<BlockKeyAccs>* keys,
                           std::vector<Acc>* accs) {
    auto corrupt = [&](absl::string_view why) {
      return ctx_.state_origin.DataLoss(absl::StrCat("aggregate block (", block_value_.size(),
                                                     " bytes): ", why));
    };
    int kg = 0;
    int64_t range = 0;
    if (!ParseBlockKey(block_key, &kg, &range)) return corrupt("its key is not 12 bytes");
    state_->SetCurrentKey(block_key, kg);
    SLUICE_ASSIGN_OR_RETURN(bool found, state_->Get(blocks_id_, &block_value_));
    if (!found) return absl::OkStatus();
    const char* p = block_value_.data();
    const char* end = p + block_value_.size();
    if (p == end || static_cast<uint8_t>(*p) != kBlockFormat) return corrupt("an unknown format");
    uint64_t n = 0;
    uint64_t count = 0;
    p = GetVarint64(p + 1, end, &n);
    if (p != nullptr) p = GetVarint64(p, end, &count);
    if (p == nullptr) return corrupt("no header");
    if (n != aggs_.size()) {
      return corrupt(absl::StrCat(n, " aggregates, expected ", aggs_.size(),
                                  ": the state was written by another aggregate"));
    }
    const int64_t first = static_cast<int64_t>(static_cast<uint64_t>(range) << kBlockShift);
    for (uint64_t k = 0; k < count; ++k) {
      uint64_t offset = 0;
      p = GetVarint64(p, end, &offset);
      if (p == nullptr || offset >> kBlockShift != 0 ||
          static_cast<size_t>(end - p) < n * sizeof(Acc)) {
        return corrupt("a key cut short or out of its range");
      }
      const int64_t key = static_cast<int64_t>(static_cast<uint64_t>(first) + offset);
      key_record_[0].i = key;
      if (KeyGroupForHash(KeyHasher::HashKeyRecord(key_schema_, key_record_), ctx_.max_parallelism) !=
          kg) {
        return corrupt(absl::StrCat("key ", key, " is not of its key group ", kg));
      }
      keys->push_back(BlockKeyAccs{key, kg, accs->size()});
      accs->resize(accs->size() + n);
      std::memcpy(&(*accs)[accs->size() - n], p, n * sizeof(Acc));
      p += n * sizeof(Acc);
    }
    if (p != end) return corrupt("bytes left over");
    return absl::OkStatus();
  }
  // Restore on the in-memory path: the keys of the stored blocks `block_keys` into slots, in key
  // order (keys close together find dense_ as in the run), their blocks stored and clean; over
  // the cap, to the backend (MoveToBackend).
  absl::Status RestoreBlocks(const std::vector<std::string>& block_keys) {
    std::vector<BlockKeyAccs> keys;
    std::vector<Acc> accs;
    for (const std::string& bk : block_keys) SLUICE_RETURN_IF_ERROR(DecodeBlock(bk, &keys, &accs));
    std::sort(keys.begin(), keys.end(),
              [](const BlockKeyAccs& a, const BlockKeyAccs& b) { return a.key < b.key; });
    const size_t n = aggs_.size();
    for (const BlockKeyAccs& k : keys) {
      uint32_t* dense = DenseEntry(k.key);
      const auto i = static_cast<uint32_t>(slots_.size());
      const bool added = dense != nullptr ? *dense == kNoSlot : slot_of_.try_emplace(k.key, i).second;
      if (!added) return ctx_.state_origin.DataLoss(absl::StrCat("aggregate blocks hold key ", k.key, " twice"));
      if (dense != nullptr) {
        *dense = i;
        ++dense_keys_;
      }
      AddSlot(k.key, k.key_group);
      std::memcpy(&slot_accs_[i * n], &accs[k.accs], n * sizeof(Acc));
    }
    for (Block& block : blocks_) block.flags = kBlockStored;
    if (slots_.size() >= max_in_memory_keys_) return MoveToBackend();
    return absl::OkStatus();
  }
  // Restore on the backend path: the keys of the stored blocks `block_keys` into per-key
  // entries, as the backend path stores them; the blocks deleted.
  absl::Status BlocksToEntries(const std::vector<std::string>& block_keys) {
    std::vector<BlockKeyAccs> keys;
    std::vector<Acc> accs;
    for (const std::string& bk : block_keys) {
      keys.clear();
      accs.clear();
      SLUICE_RETURN_IF_ERROR(DecodeBlock(bk, &keys, &accs));
      for (const BlockKeyAccs& k : keys) {
        key_record_[0].i = k.key;
        key_bytes_.clear();
        EncodeRecord(key_schema_, key_record_, &key_bytes_);
        state_->SetCurrentKey(key_bytes_, k.key_group);
        SLUICE_RETURN_IF_ERROR(Store(&accs[k.accs]));
      }
      state_->SetCurrentKey(bk, keys.empty() ? 0 : keys[0].key_group);
      if (!keys.empty()) SLUICE_RETURN_IF_ERROR(state_->Delete(blocks_id_));
    }
    return absl::OkStatus();
  }

  // key_record_ = the key fields of `r`.
  void EvalKey(const Record& r) {
    for (size_t i = 0; i < key_exprs_.size(); ++i) {
      plan::EvalInto(*key_exprs_[i], r, key_schema_.field(i).type, &key_record_, i);
    }
  }
  // The key group of key_record_, the key of `r`: the one the exchange carried with `r`, if
  // any (Record::carried_key_group()).
  int KeyGroup(const Record& r) const {
    if (r.carried_key_group() >= 0) return r.carried_key_group();
    return KeyGroupForHash(KeyHasher::HashKeyRecord(key_schema_, key_record_),
                           ctx_.max_parallelism);
  }

  // Updates the current key's accumulators with `r` and emits the key's row (emit: updates).
  absl::Status Update(const Record& r) {
    SLUICE_RETURN_IF_ERROR(LoadCurrent(accs_.data()));
    if (has_plugin_) SLUICE_RETURN_IF_ERROR(LoadPluginAccumulators());
    SLUICE_RETURN_IF_ERROR(Fold(r, accs_.data()));
    SLUICE_RETURN_IF_ERROR(Store(accs_.data()));
    if (has_plugin_) SLUICE_RETURN_IF_ERROR(StorePluginAccumulators());
    if (emit_final_) return absl::OkStatus();
    return EmitRow(accs_.data());
  }

  // `accs` (one per aggregate) = the current key's stored accumulators, or new ones.
  absl::Status LoadCurrent(Acc* accs) {
    SLUICE_ASSIGN_OR_RETURN(bool found, state_->Get(state_id_, &value_));
    if (found) return LoadAccumulators(accs);
    std::fill(accs, accs + aggs_.size(), Acc{});
    return absl::OkStatus();
  }
  // Writes `accs` as the current key's accumulators.
  absl::Status Store(const Acc* accs) {
    std::memcpy(acc_bytes_.data() + 1, accs, aggs_.size() * sizeof(Acc));
    return state_->Put(state_id_, absl::string_view(acc_bytes_.data(), acc_bytes_.size()));
  }
  // Folds `r` into `accs` (plugins' into plugin_accs_).
  absl::Status Fold(const Record& r, Acc* accs) {
    for (size_t a = 0; a < aggs_.size(); ++a) {
      const Agg& agg = aggs_[a];
      Acc& s = accs[a];
      if (agg.nullable && r.IsNull(agg.field)) continue;  // as SQL: aggregates skip nulls
      if (agg.fn == Fn::kCount) {
        s.i++;
        continue;
      }
      const Value& v = r[agg.field];
      switch (agg.fn) {
        case Fn::kSum:
        case Fn::kAvg:
          if (agg.is_double) s.d += v.d; else s.i += v.i;
          break;
        case Fn::kMin:
          if (s.n == 0 || (agg.is_double ? v.d < s.d : v.i < s.i)) { s.d = v.d; s.i = v.i; }
          break;
        case Fn::kMax:
          if (s.n == 0 || (agg.is_double ? v.d > s.d : v.i > s.i)) { s.d = v.d; s.i = v.i; }
          break;
        case Fn::kFirst:
          if (s.n == 0) { s.d = v.d; s.i = v.i; }
          break;
        case Fn::kLast:
          s.d = v.d;
          s.i = v.i;
          break;
        case Fn::kPlugin:
          SLUICE_RETURN_IF_ERROR(agg.plugin->Add(agg.in_type, v, &plugin_accs_[a]));
          break;
        default: break;
      }
      s.n++;
    }
    return absl::OkStatus();
  }
  // Emits the row of key_record_ with `accs`.
  absl::Status EmitRow(const Acc* accs) {
    for (size_t i = 0; i < key_schema_.size(); ++i) {
      CopyValue(key_schema_.field(i).type, key_record_, i, &out_, i);
    }
    SLUICE_RETURN_IF_ERROR(FillAggregates(accs));
    return output_->Emit(out_);
  }

  // The stored accumulators of the current key (in value_): [format version: 1 byte][Acc per
  // aggregate]. Values written before the version byte existed (exactly one Acc per aggregate)
  // are read as version 0. Anything else is kDataLoss naming the task and what was found, never
  // a silent restart from zero.
  static constexpr uint8_t kAccumulatorFormat = 1;
  absl::Status LoadAccumulators(Acc* accs) {
    const size_t body = accs_.size() * sizeof(Acc);
    size_t offset;
    if (value_.size() == body + 1 && static_cast<uint8_t>(value_[0]) == kAccumulatorFormat) {
      offset = 1;
    } else if (value_.size() == body) {
      offset = 0;  // format 0
    } else {
      return ctx_.state_origin.DataLoss(absl::StrCat(
          "stored accumulators of a key have ", value_.size(),
          " bytes (format ", value_.empty() ? -1 : static_cast<uint8_t>(value_[0]), "), expected ",
          body + 1, " (format ", kAccumulatorFormat, ", ", accs_.size(),
          " aggregates): the state was written by another aggregate or is corrupt"));
    }
    std::memcpy(accs, value_.data() + offset, body);
    return absl::OkStatus();
  }

  // The plugins' accumulators of the current key into plugin_accs_ (new ones when it has
  // none): [format 1: 1 byte] then per plugin aggregate, in order, [accumulator version:
  // 4 bytes LE][size: 4 bytes LE][the plugin's bytes]. kDataLoss for a malformed value;
  // kFailedPrecondition for an accumulator version the plugin does not read.
  static constexpr uint8_t kPluginFormat = 1;
  absl::Status LoadPluginAccumulators() {
    SLUICE_ASSIGN_OR_RETURN(bool found, state_->Get(plugin_state_id_, &plugin_value_));
    absl::string_view in(plugin_value_);
    if (found && (in.empty() || static_cast<uint8_t>(in[0]) != kPluginFormat)) {
      return absl::DataLossError(absl::StrCat("aggregate ", ctx_.task_name,
                                              ": plugin accumulators of an unknown format"));
    }
    if (found) in.remove_prefix(1);
    for (size_t a = 0; a < aggs_.size(); ++a) {
      const Agg& agg = aggs_[a];
      if (agg.fn != Fn::kPlugin) continue;
      if (!found) {
        SLUICE_RETURN_IF_ERROR(agg.plugin->Create(agg.in_type, &plugin_accs_[a]));
        continue;
      }
      uint32_t header[2];
      if (in.size() < sizeof(header)) {
        return absl::DataLossError(absl::StrCat("aggregate ", ctx_.task_name,
                                                ": plugin accumulators cut short"));
      }
      std::memcpy(header, in.data(), sizeof(header));
      in.remove_prefix(sizeof(header));
      if (header[0] != agg.plugin->AccumulatorVersion()) {
        return absl::FailedPreconditionError(absl::StrCat(
            "aggregate ", ctx_.task_name, ": the state holds accumulators of aggregate function '",
            agg.plugin->name(), "' in format version ", header[0], ", but ", agg.plugin->origin(),
            " reads version ", agg.plugin->AccumulatorVersion(),
            ": restore with the plugin version that wrote the state"));
      }
      if (in.size() < header[1]) {
        return absl::DataLossError(absl::StrCat("aggregate ", ctx_.task_name,
                                                ": plugin accumulators cut short"));
      }
      plugin_accs_[a].assign(in.data(), header[1]);
      in.remove_prefix(header[1]);
    }
    return absl::OkStatus();
  }
  absl::Status StorePluginAccumulators() {
    plugin_value_.assign(1, static_cast<char>(kPluginFormat));
    for (size_t a = 0; a < aggs_.size(); ++a) {
      if (aggs_[a].fn != Fn::kPlugin) continue;
      const uint32_t header[2] = {aggs_[a].plugin->AccumulatorVersion(),
                                  static_cast<uint32_t>(plugin_accs_[a].size())};
      plugin_value_.append(reinterpret_cast<const char*>(header), sizeof(header));
      plugin_value_.append(plugin_accs_[a]);
    }
    return state_->Put(plugin_state_id_, plugin_value_);
  }

  absl::Status FillAggregates(const Acc* accs) {
    const size_t k = key_schema_.size();
    for (size_t a = 0; a < aggs_.size(); ++a) {
      const Agg& agg = aggs_[a];
      const Acc& s = accs[a];
      Value& out = out_[k + a];
      if (agg.fn == Fn::kPlugin) {
        bool is_null = false;
        SLUICE_RETURN_IF_ERROR(agg.plugin->Result(agg.in_type, plugin_accs_[a], &out, &is_null));
        out_.SetNullTo(k + a, is_null);
        continue;
      }
      if (agg.fn != Fn::kCount) out_.SetNullTo(k + a, s.n == 0);  // every value was null
      if (agg.fn == Fn::kAvg) {
        out.d = s.n == 0 ? 0 : (agg.is_double ? s.d : static_cast<double>(s.i)) / s.n;
      } else if (agg.fn == Fn::kCount) {
        out.i = s.i;
      } else if (agg.is_double) {
        out.d = s.d;
      } else {
        out.i = s.i;
      }
    }
    return absl::OkStatus();
  }

  state::KeyedStateBackend* state_ = nullptr;
  state::StateId state_id_ = 0;
  state::StateId plugin_state_id_ = 0;
  bool has_plugin_ = false;
  std::vector<std::string> plugin_accs_;  // per aggregate (kPlugin ones used)
  std::string plugin_value_;
  std::vector<std::unique_ptr<Expr>> key_exprs_;
  Schema key_schema_;
  std::vector<Agg> aggs_;
  bool emit_final_ = false;
  std::vector<Acc> accs_;  // Process(): the current key's
  std::vector<char> acc_bytes_;  // [kAccumulatorFormat][accs_], the stored value
  Record key_record_;
  std::string key_bytes_;
  // ProcessBatch(): the batch's encoded keys one after another, where each ends, and the keys.
  std::string batch_key_bytes_;
  std::vector<size_t> batch_key_ends_;
  std::vector<state::KeyInGroup> batch_keys_;
  std::vector<Record> batch_key_records_;  // ... and key fields (swapped with key_record_)
  // ... its distinct keys' slots, the record where each first comes, and their accumulators
  // (aggs_.size() per slot).
  absl::flat_hash_map<absl::string_view, uint32_t> batch_slot_;
  std::vector<size_t> batch_first_;
  std::vector<Acc> batch_accs_;
  std::string value_;
  Record out_;
  // The in-memory path (class comment): each key's value -> its slot; per slot its key, key
  // group and aggs_.size() accumulators; the slots changed since the last snapshot.
  bool in_memory_ = false;
  size_t max_in_memory_keys_ = 0;  // the budget's cap (class comment), from Open()
  absl::flat_hash_map<int64_t, uint32_t> slot_of_;
  // ... in front of slot_of_, the slots of the keys seen last, one per RecentIndex(): a run of
  // records of a few keys (Nexmark q4's bids go to the ~100 newest auctions) finds its slots
  // here, where slot_of_ (hashed across a table of every key) would miss the cache.
  std::array<RecentKey, kRecentKeys> recent_{};
  // Before both, keys close together (ids that grow, as Nexmark's auctions: new keys append,
  // the newest stay in cache) by their offset from the first key: entry key - dense_base_ is
  // the key's slot, or kNoSlot; dense_keys_ of them are slots (DenseEntry()).
  std::vector<uint32_t> dense_;
  int64_t dense_base_ = 0;
  size_t dense_keys_ = 0;
  int key_field_ = -1;  // the key's input field when the key is a bare integer field
  std::vector<Slot> slots_;
  std::vector<Acc> slot_accs_;
  // The blocks of the slots (class comment), each one's index by (key group, range), per key
  // group its block taken last (kNoSlot: none), and the blocks changed since the last checkpoint.
  state::StateId blocks_id_ = 0;
  std::vector<Block> blocks_;
  absl::flat_hash_map<std::pair<int, int64_t>, uint32_t> block_of_;
  std::vector<uint32_t> last_block_of_group_;
  std::vector<uint32_t> dirty_blocks_;
  std::string block_value_;
  std::string block_key_;
};

}  // namespace

std::unique_ptr<Operator> MakeAggregate() { return std::make_unique<AggregateOperator>(); }

}  // namespace sluice::ops
