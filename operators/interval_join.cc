#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/inlined_vector.h"
#include "absl/strings/str_cat.h"
#include "common/record_codec.h"
#include "common/state_format.h"
#include "common/status.h"
#include "common/watermark.h"
#include "operators/internal/builtins.h"
#include "operators/join_base.h"
#include "operators/join_options.h"

namespace sluice::ops {
namespace {

// The format of "interval_join.rows" values (format 1 was the bucket layout of join_base.h:
// map states "interval_join.left"/".right" with their ".index" value states, still restored).
inline constexpr int kRowsFormat = 2;

// Memory of kept keys and records above which a subtask spills (SetIntervalJoinMemoryForTest).
constexpr size_t kDefaultMaxBytes = size_t{512} << 20;
size_t max_bytes_for_test = 0;

// interval_join (Flink's IntervalJoinOperator): per key, each input's records are kept; a
// record joins the other side's records whose time lies in its interval
// (left.ts + lower <= right.ts <= left.ts + upper), and is then kept until the watermark passes
// the last time a record of the other side could still match it:
//   a left record at t:  until the watermark exceeds t + upper  (cleanup time t + upper + 1);
//   a right record at t: until the watermark exceeds t - lower  (cleanup time t - lower + 1).
// A record with ts < watermark is late: dropped and counted, as Flink. Joined rows are emitted
// as the second record of a pair arrives; their event time is max(left.ts, right.ts), never
// behind the watermark they are emitted under.
//
// Kept records live in memory (as Flink's heap state keeps them), per key and side as encoded
// records sorted by time, with one pending cleanup time per key in a min-heap: the watermark
// (ProcessWatermark, which runs where the event-time timers of the key would) drops the records
// it passes, so no timer and no state access per record. SnapshotState() writes the keys changed
// since the last checkpoint to the keyed backend (value state "interval_join.rows" per key:
// [kRowsFormat] then per side [count: varint] and per record [ts: fixed64 LE][size: varint]
// [record]), and deletes those emptied, so checkpoints, restores and rescaling cover the whole
// join state; a restore loads its key groups' keys back (and converts format 1). When the kept
// keys and records exceed 512 MiB, the changed keys are written out and every key is dropped
// from memory with an event-time timer in the backend at its earliest cleanup time (memory
// stays bounded); such a key is read back when a record of it comes or its timer fires.
//
// Threading: the task thread only.
class IntervalJoinOperator final : public JoinOperatorBase {
 public:
  absl::Status Open(const OperatorContext& ctx, Output* output) override {
    SLUICE_ASSIGN_OR_RETURN(options_, TypedOptions<IntervalJoinOptions>(ctx));
    SLUICE_RETURN_IF_ERROR(OpenJoin(ctx, output, options_->sides));
    rows_id_ = state_->RegisterState("interval_join.rows", state::StateKind::kValue);
    for (int side = 0; side < 2; ++side) scratch_[side].Resize(options_->sides.input[side].size());
    if (!ctx.restored) return absl::OkStatus();
    SLUICE_RETURN_IF_ERROR(state_->ForEachKey(rows_id_, [this](absl::string_view key) {
      return RestoreKey(key);
    }));
    return RestoreFormat1();
  }

  absl::Status SnapshotState(int64_t checkpoint_id, std::vector<std::string>* entries) override {
    return WriteDirty();
  }

  absl::Status ProcessInput(int side, const Record& r) override {
    if (side != 0 && side != 1) return absl::InvalidArgumentError("interval_join has two inputs");
    const int64_t ts = TimeOf(side, r);
    const int64_t watermark = timers_->CurrentWatermark();
    if (watermark != kNoWatermark && ts < watermark) {
      CountLate();
      return absl::OkStatus();
    }
    EvalKey(side, r);
    uint32_t slot;
    auto it = slot_of_.find(key_bytes());
    if (it != slot_of_.end()) {
      slot = it->second;
    } else {
      SLUICE_ASSIGN_OR_RETURN(slot, SlotOfAbsent(key_bytes(), EvaluatedKeyGroup()));
    }
    KeyState& ks = keys_[slot];
    // The other side's times that match: right in [ts + lower, ts + upper] for a left record,
    // left in [ts - upper, ts - lower] for a right one.
    const int other = 1 - side;
    const int64_t lo = side == 0 ? SaturatingAdd(ts, options_->lower_ms) : SaturatingAdd(ts, -options_->upper_ms);
    const int64_t hi = side == 0 ? SaturatingAdd(ts, options_->upper_ms) : SaturatingAdd(ts, -options_->lower_ms);
    const Refs& o = ks.refs[other];
    auto first = std::lower_bound(o.begin(), o.end(), lo,
                                  [](const RowRef& a, int64_t t) { return a.ts < t; });
    for (auto ref = first; ref != o.end() && ref->ts <= hi; ++ref) {
      const char* pos = ks.bytes.data() + ref->offset;
      SLUICE_RETURN_IF_ERROR(DecodeOne(other, &pos, pos + ref->size, &scratch_[other]));
      SLUICE_RETURN_IF_ERROR(side == 0 ? EmitJoined(&r, &scratch_[other]) : EmitJoined(&scratch_[other], &r));
    }
    const size_t before = ks.bytes.size();
    EncodeRecord(options_->sides.input[side], r, &ks.bytes);
    Insert(&ks.refs[side], RowRef{ts, static_cast<uint32_t>(before), static_cast<uint32_t>(ks.bytes.size() - before)});
    bytes_ += ks.bytes.size() - before;
    MarkDirty(slot);
    const int64_t cleanup = CleanupTime(side, ts);
    if (cleanup < ks.scheduled) Schedule(slot, cleanup);
    if (bytes_ > max_bytes_) return Spill();
    return absl::OkStatus();
  }

  // Drops the records the watermark has passed (where their keys' event-time timers would fire,
  // before the watermark goes on).
  absl::Status ProcessWatermark(int64_t watermark) override {
    while (!heap_.empty() && heap_.front().time <= watermark) {
      std::pop_heap(heap_.begin(), heap_.end(), Later);
      const SweepEntry e = heap_.back();
      heap_.pop_back();
      KeyState& ks = keys_[e.slot];
      if (!ks.live || ks.generation != e.generation || ks.scheduled != e.time) continue;  // stale
      ks.scheduled = kNever;
      SLUICE_RETURN_IF_ERROR(Sweep(e.slot, watermark));
    }
    return output_->EmitWatermark(watermark);
  }

  // A spilled key's timer (at its earliest cleanup time): the key is read back into memory, so
  // that the sweep after the timers (ProcessWatermark) drops its records. Keys in memory, and
  // the timers per record of format 1, have nothing to do here.
  absl::Status OnTimer(int64_t, TimeDomain domain, absl::string_view key) override {
    if (domain != TimeDomain::kEventTime || !backend_has_more_ || slot_of_.contains(key)) {
      return absl::OkStatus();
    }
    timer_key_.assign(key.data(), key.size());  // `key` is the current key: Get leaves it
    SLUICE_ASSIGN_OR_RETURN(bool found, state_->Get(rows_id_, &value_));
    if (!found) return absl::OkStatus();  // emptied and deleted since
    SLUICE_ASSIGN_OR_RETURN(int key_group, KeyGroupOf(timer_key_));
    return AddRestored(timer_key_, key_group).status();
  }

 private:
  static constexpr int64_t kNever = INT64_MAX;
  // Memory of keys and records above which everything is written to the backend and dropped.
  const size_t max_bytes_ = max_bytes_for_test != 0 ? max_bytes_for_test : kDefaultMaxBytes;

  struct RowRef {
    int64_t ts;
    uint32_t offset;  // in KeyState::bytes
    uint32_t size;
  };
  // One side's kept records of a key, sorted by time (a few inline: a key's state then sits in
  // a few adjacent cache lines).
  using Refs = absl::InlinedVector<RowRef, 2>;
  struct KeyState {
    std::string key;
    int key_group = 0;
    uint32_t generation = 0;  // bumped when the slot is freed: heap entries of the old key go stale
    bool live = false;        // the slot holds a key
    bool dirty = false;       // changed since last written to the backend
    bool in_backend = false;  // the backend holds a value for the key (maybe an older one)
    int64_t scheduled = kNever;  // the time of this key's live heap entry
    Refs refs[2];
    std::string bytes;  // both sides' encoded records, in arrival order (dropped ones too)
    size_t dead = 0;    // bytes of dropped records in `bytes`
    bool empty() const { return refs[0].empty() && refs[1].empty(); }
  };
  struct SweepEntry {
    int64_t time;
    uint32_t slot;
    uint32_t generation;
  };
  static bool Later(const SweepEntry& a, const SweepEntry& b) { return a.time > b.time; }


  int64_t CleanupTime(int side, int64_t ts) const {
    return SaturatingAdd(side == 0 ? SaturatingAdd(ts, options_->upper_ms)
                                   : SaturatingAdd(ts, -options_->lower_ms),
                         1);
  }
  int64_t EarliestCleanup(const KeyState& ks) const {
    int64_t t = kNever;
    for (int side = 0; side < 2; ++side) {
      if (!ks.refs[side].empty()) t = std::min(t, CleanupTime(side, ks.refs[side].front().ts));
    }
    return t;
  }

  // Adds `ref` to `refs` in time order (records mostly arrive near the end).
  static void Insert(Refs* refs, const RowRef& ref) {
    auto pos = std::upper_bound(refs->begin(), refs->end(), ref.ts,
                                [](int64_t t, const RowRef& a) { return t < a.ts; });
    refs->insert(pos, ref);
  }

  uint32_t NewSlot(absl::string_view key, int key_group) {
    uint32_t slot;
    if (!free_.empty()) {
      slot = free_.back();
      free_.pop_back();
    } else {
      slot = static_cast<uint32_t>(keys_.size());
      keys_.emplace_back();
    }
    KeyState& ks = keys_[slot];
    ks.key.assign(key.data(), key.size());
    ks.key_group = key_group;
    ks.live = true;
    ks.dirty = false;
    ks.in_backend = false;
    ks.scheduled = kNever;
    slot_of_.emplace(ks.key, slot);
    bytes_ += KeyOverhead(ks);
    return slot;
  }
  static size_t KeyOverhead(const KeyState& ks) { return sizeof(KeyState) + 2 * ks.key.size() + 16; }

  // The slot of `key` (of `key_group`), which has none in memory: the key's records read back
  // from the backend after a spill, or a new empty key.
  absl::StatusOr<uint32_t> SlotOfAbsent(absl::string_view key, int key_group) {
    if (backend_has_more_) {
      state_->SetCurrentKey(key, key_group);
      SLUICE_ASSIGN_OR_RETURN(bool found, state_->Get(rows_id_, &value_));
      if (found) return AddRestored(key, key_group);
    }
    return NewSlot(key, key_group);
  }
  // A key whose records are in value_ (read from the backend): in memory, its sweep scheduled.
  absl::StatusOr<uint32_t> AddRestored(absl::string_view key, int key_group) {
    const uint32_t slot = NewSlot(key, key_group);
    KeyState& ks = keys_[slot];
    ks.in_backend = true;
    SLUICE_RETURN_IF_ERROR(ParseRows(value_, &ks));
    const int64_t next = EarliestCleanup(ks);
    if (next != kNever) Schedule(slot, next);
    return slot;
  }
  void FreeSlot(uint32_t slot) {
    KeyState& ks = keys_[slot];
    bytes_ -= KeyOverhead(ks);
    slot_of_.erase(ks.key);
    ks.live = false;
    ++ks.generation;
    ClearRows(&ks);
    free_.push_back(slot);
  }
  void ClearRows(KeyState* ks) {
    bytes_ -= ks->bytes.size();
    ks->refs[0].clear();
    ks->refs[1].clear();
    ks->bytes.clear();
    ks->dead = 0;
  }
  void MarkDirty(uint32_t slot) {
    if (keys_[slot].dirty) return;
    keys_[slot].dirty = true;
    dirty_.push_back(slot);
  }
  void Schedule(uint32_t slot, int64_t time) {
    keys_[slot].scheduled = time;
    heap_.push_back(SweepEntry{time, slot, keys_[slot].generation});
    std::push_heap(heap_.begin(), heap_.end(), Later);
  }

  // Drops the records of key `slot` that `watermark` has passed, then schedules its next sweep,
  // or forgets the key when nothing is left.
  absl::Status Sweep(uint32_t slot, int64_t watermark) {
    KeyState& ks = keys_[slot];
    for (int side = 0; side < 2; ++side) {
      Refs& refs = ks.refs[side];
      size_t due = 0;  // cleanup times grow with record times: the due records come first
      while (due < refs.size() && CleanupTime(side, refs[due].ts) <= watermark) {
        ks.dead += refs[due].size;
        ++due;
      }
      if (due == 0) continue;
      refs.erase(refs.begin(), refs.begin() + due);
      MarkDirty(slot);
    }
    if (ks.empty()) {
      ClearRows(&ks);
    } else if (ks.dead > ks.bytes.size() / 2) {
      Compact(&ks);
    }
    const int64_t next = EarliestCleanup(ks);
    if (next != kNever) {
      Schedule(slot, next);
      return absl::OkStatus();
    }
    if (ks.in_backend) {
      state_->SetCurrentKey(ks.key, ks.key_group);
      SLUICE_RETURN_IF_ERROR(state_->Delete(rows_id_));
    }
    FreeSlot(slot);
    return absl::OkStatus();
  }

  // Rewrites `ks`' bytes without the dropped records.
  void Compact(KeyState* ks) {
    compact_.clear();
    for (Refs& refs : ks->refs) {
      for (RowRef& ref : refs) {
        const uint32_t offset = static_cast<uint32_t>(compact_.size());
        compact_.append(ks->bytes, ref.offset, ref.size);
        ref.offset = offset;
      }
    }
    bytes_ -= ks->bytes.size() - compact_.size();
    ks->bytes.swap(compact_);
    ks->dead = 0;
  }

  // Writes the keys changed since the last call to the backend (deleting those left empty).
  absl::Status WriteDirty() {
    for (uint32_t slot : dirty_) {
      KeyState& ks = keys_[slot];
      if (!ks.live || !ks.dirty) continue;
      ks.dirty = false;
      state_->SetCurrentKey(ks.key, ks.key_group);
      if (ks.empty()) {
        if (ks.in_backend) SLUICE_RETURN_IF_ERROR(state_->Delete(rows_id_));
        ks.in_backend = false;
        continue;
      }
      value_.assign(1, static_cast<char>(kRowsFormat));
      for (const Refs& refs : ks.refs) {
        PutVarint64(refs.size(), &value_);
        for (const RowRef& ref : refs) {
          PutFixed64LE(static_cast<uint64_t>(ref.ts), &value_);
          PutVarint64(ref.size, &value_);
          value_.append(ks.bytes, ref.offset, ref.size);
        }
      }
      SLUICE_RETURN_IF_ERROR(state_->Put(rows_id_, value_));
      ks.in_backend = true;
    }
    dirty_.clear();
    return absl::OkStatus();
  }

  // Too many kept bytes: writes the changed keys out and forgets every key, each with an
  // event-time timer in the backend at its earliest cleanup time (OnTimer reads it back then).
  absl::Status Spill() {
    SLUICE_RETURN_IF_ERROR(WriteDirty());
    for (const KeyState& ks : keys_) {
      if (!ks.live) continue;
      state_->SetCurrentKey(ks.key, ks.key_group);
      SLUICE_RETURN_IF_ERROR(timers_->RegisterEventTimeTimer(EarliestCleanup(ks)));
    }
    keys_.clear();
    keys_.shrink_to_fit();
    slot_of_.clear();
    free_.clear();
    heap_.clear();
    bytes_ = 0;
    backend_has_more_ = true;
    return absl::OkStatus();
  }

  // `value` ("interval_join.rows") into ks' rows (none before); kDataLoss when it does not decode.
  absl::Status ParseRows(absl::string_view value, KeyState* ks) {
    absl::string_view body;
    SLUICE_ASSIGN_OR_RETURN(int version, ReadStateVersion(ctx_.state_origin, "interval join rows",
                                                          value, kRowsFormat, &body));
    if (version != kRowsFormat) {
      return ctx_.state_origin.DataLoss(absl::StrCat("interval join rows of format ", version, ", expected ", kRowsFormat));
    }
    const char* p = body.data();
    const char* end = p + body.size();
    for (int side = 0; side < 2; ++side) {
      uint64_t count;
      p = GetVarint64(p, end, &count);
      if (p == nullptr) return Corrupt(value, "a side's count");
      for (uint64_t i = 0; i < count; ++i) {
        if (end - p < 8) return Corrupt(value, "a record's time");
        const int64_t ts = static_cast<int64_t>(GetFixed64LE(p));
        uint64_t size;
        p = GetVarint64(p + 8, end, &size);
        if (p == nullptr) return Corrupt(value, "a record's size");
        if (static_cast<uint64_t>(end - p) < size) return Corrupt(value, "a record");
        SLUICE_RETURN_IF_ERROR(AddDecoded(side, ts, p, size, ks));
        p += size;
      }
    }
    if (p != end) return Corrupt(value, "the end");
    return absl::OkStatus();
  }
  absl::Status Corrupt(absl::string_view value, absl::string_view where) const {
    return ctx_.state_origin.DataLoss(
        absl::StrCat("interval join rows (", value.size(), " bytes) do not decode at ", where));
  }

  // Adds the encoded record [p, p + size) of input `side` at `ts` to `ks`, after checking that
  // it decodes (as exactly one record).
  absl::Status AddDecoded(int side, int64_t ts, const char* p, size_t size, KeyState* ks) {
    const char* pos = p;
    SLUICE_RETURN_IF_ERROR(DecodeOne(side, &pos, p + size, &scratch_[side]));
    if (pos != p + size) return ctx_.state_origin.DataLoss("an interval join record has bytes left over");
    const size_t offset = ks->bytes.size();
    ks->bytes.append(p, size);
    bytes_ += size;
    Insert(&ks->refs[side], RowRef{ts, static_cast<uint32_t>(offset), static_cast<uint32_t>(size)});
    return absl::OkStatus();
  }

  // A restored key of "interval_join.rows" (the backend's current key).
  absl::Status RestoreKey(absl::string_view key) {
    if (slot_of_.contains(key)) return absl::OkStatus();  // read back already after a spill
    SLUICE_ASSIGN_OR_RETURN(bool found, state_->Get(rows_id_, &value_));
    if (!found) return absl::OkStatus();
    SLUICE_ASSIGN_OR_RETURN(int key_group, KeyGroupOf(key));
    SLUICE_RETURN_IF_ERROR(AddRestored(key, key_group).status());
    if (bytes_ > max_bytes_) return Spill();
    return absl::OkStatus();
  }

  // Format 1 (map states "interval_join.left"/".right", buckets of records by time, with
  // ".index" value states): moves every restored key's records into memory (written in format
  // 2 at the next checkpoint) and deletes the old entries.
  absl::Status RestoreFormat1() {
    for (int side = 0; side < 2; ++side) {
      const std::string name = side == 0 ? "interval_join.left" : "interval_join.right";
      const state::StateId buckets = state_->RegisterState(name, state::StateKind::kMap);
      const state::StateId index_id = state_->RegisterState(name + ".index", state::StateKind::kValue);
      BucketIndex index(state_, index_id);
      SLUICE_RETURN_IF_ERROR(state_->ForEachKey(index_id, [&](absl::string_view key) -> absl::Status {
        const std::string key_copy(key);  // SetCurrentKey below may move what `key` views
        SLUICE_RETURN_IF_ERROR(index.Load());
        SLUICE_ASSIGN_OR_RETURN(int key_group, KeyGroupOf(key_copy));
        auto it = slot_of_.find(key_copy);
        uint32_t slot;
        if (it != slot_of_.end()) {
          slot = it->second;
        } else {
          SLUICE_ASSIGN_OR_RETURN(slot, SlotOfAbsent(key_copy, key_group));
        }
        state_->SetCurrentKey(key_copy, key_group);
        for (size_t b = 0; b < index.size(); ++b) {
          SLUICE_ASSIGN_OR_RETURN(bool found, state_->MapGet(buckets, index.user_key(b), &value_));
          if (!found) continue;
          SLUICE_ASSIGN_OR_RETURN(absl::string_view body, BucketBody(ctx_.state_origin, value_));
          const int64_t ts = index.time(b);
          const char* pos = body.data();
          const char* end = pos + body.size();
          while (pos < end) {
            const char* start = pos;
            SLUICE_RETURN_IF_ERROR(DecodeOne(side, &pos, end, &scratch_[side]));
            SLUICE_RETURN_IF_ERROR(AddDecoded(side, ts, start, pos - start, &keys_[slot]));
          }
          SLUICE_RETURN_IF_ERROR(state_->MapRemove(buckets, index.user_key(b)));
        }
        index.EraseFront(index.size());
        SLUICE_RETURN_IF_ERROR(index.Store());
        MarkDirty(slot);
        KeyState& ks = keys_[slot];
        const int64_t next = EarliestCleanup(ks);
        if (next < ks.scheduled) Schedule(slot, next);
        if (bytes_ > max_bytes_) return Spill();
        return absl::OkStatus();
      }));
    }
    return absl::OkStatus();
  }

  const IntervalJoinOptions* options_ = nullptr;
  state::StateId rows_id_ = 0;
  std::vector<KeyState> keys_;                          // by slot
  absl::flat_hash_map<std::string, uint32_t> slot_of_;  // live keys' slots
  std::vector<uint32_t> free_;                          // free slots
  std::vector<uint32_t> dirty_;                         // slots changed since WriteDirty()
  std::vector<SweepEntry> heap_;                        // min-heap by time
  size_t bytes_ = 0;              // memory of the keys and records kept (roughly)
  bool backend_has_more_ = false;  // spilled: keys not in memory may be in the backend
  std::string timer_key_;
  Record scratch_[2];                                   // a decoded record of each side
  std::string value_;
  std::string compact_;
};

}  // namespace

std::unique_ptr<Operator> MakeIntervalJoin() { return std::make_unique<IntervalJoinOperator>(); }

void SetIntervalJoinMemoryForTest(size_t bytes) { max_bytes_for_test = bytes; }

}  // namespace sluice::ops
