#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "common/record.h"
#include "common/watermark.h"
#include "operators/join_options.h"
#include "operators/operator.h"
#include "plan/expr.h"
#include "state/keyed_state_backend.h"

namespace sluice::ops {

class BucketIndex;
class JoinRowStore;

// The first byte of every bucket and index the joins write: the layout of what follows, so
// that a later layout can still read state written by this one.
inline constexpr char kJoinStateFormat = 1;

// The bytes of `bucket` after its format byte; kDataLoss naming `origin` for another format.
absl::StatusOr<absl::string_view> BucketBody(const StateOrigin& origin, absl::string_view bucket);

// What the join operators (interval_join.cc, regular_join.cc, window_join.cc) share: keys,
// the output row, record decoding, the checkpointed watermark and the late-record counter.
//
// The joins keep their records in memory (a JoinRowStore, join_rows.h) and write them at
// snapshots in format 2. Format 1 kept them in the keyed state backend as "buckets": map-state
// entries whose value is a format byte (kJoinStateFormat) and a concatenation of records in the
// record codec's format (common/record_codec.h), under an 8-byte user key (a timestamp,
// order-preserving), listed per key by a BucketIndex (not for window_join); restores still read
// it (DecodeBucket, BucketIndex, JoinRowStore::RestoreBuckets).
//
// Lifecycle and threading as every operator: the task thread calls everything.
class JoinOperatorBase : public TwoInputOperator {
 public:
  bool IsKeyed() const override { return true; }

  // Records dropped as late by this subtask (also counted in the task's
  // OperatorContext::late_records_dropped, the metric sluice_operator_late_records_dropped_total).
  uint64_t late_records_dropped() const { return late_dropped_; }
  // int_key() (the row stores file keys by value), for tests.
  bool IntKeyForTest() const { return int_key_; }
  // The operator's row store (tests).
  virtual JoinRowStore* RowStoreForTest() = 0;

 protected:
  friend class JoinRowStore;  // decodes records and key groups for the operator

  // Call from Open() with the options' sides. kFailedPrecondition without keyed state.
  absl::Status OpenJoin(const OperatorContext& ctx, Output* output, const JoinSides& sides);

  // Evaluates input `side`'s key over `r` into key_bytes() (the serialized key), leaving the
  // backend's current key alone.
  void EvalKey(int side, const Record& r);
  // The key last evaluated (EvalKey), serialized, and its key group (the one the exchange
  // carried with the record when it did, Record::carried_key_group()).
  const std::string& key_bytes() const { return key_bytes_; }
  int EvaluatedKeyGroup() const;
  // True when the key is one integral NOT NULL value on both inputs: the row stores then file
  // keys by that value (no key bytes built or hashed per record).
  bool int_key() const { return int_key_; }
  // REQUIRES: int_key(). Input `side`'s key of `r` (read in place when it is a bare field).
  int64_t IntKeyOf(int side, const Record& r) const {
    const int field = int_key_field_[side];
    return field >= 0 ? r.GetInt(field) : key_exprs_[side][0]->EvalInt(r);
  }
  // REQUIRES: int_key(). The key last evaluated (EvalKey), as a value.
  int64_t EvaluatedIntKey() const { return key_record_.GetInt(0); }
  // REQUIRES: int_key(). The value of serialized key `key` (as EvalKey or a restore's KeyGroupOf
  // made it: a zigzag varint); false when it does not decode.
  static bool IntKeyOfBytes(absl::string_view key, int64_t* value);
  // The key group of serialized key `key` (as a restore finds it in the backend); kDataLoss
  // when it does not decode.
  absl::StatusOr<int> KeyGroupOf(absl::string_view key);
  int64_t TimeOf(int side, const Record& r) const { return r.GetInt(sides_->time_field[side]); }

  // Copies `r` (a record of input `side`) into the output row's part of that side, or nulls
  // when `r` is null.
  void FillSide(int side, const Record* r);
  absl::Status EmitJoined(const Record* left, const Record* right) {
    FillSide(0, left);
    FillSide(1, right);
    return output_->Emit(out_);
  }
  // Whether input `side`'s part of the output row may be written as int64 values (`Value::i`)
  // at OutputOffset(side) on: the input is NOT NULL integers only and its null bits are clear
  // (no padded row since its last FillSide with a record).
  bool FillsIntsDirectly(int side) const {
    return copy_[side] == SideCopy::kInts && !nulled_[side];
  }
  size_t OutputOffset(int side) const { return offset_[side]; }

  // Decodes every record of a bucket of input `side` (without flag bytes) into
  // (*records)[0..*count), reusing the records' storage. kDataLoss on corrupt bytes.
  absl::Status DecodeBucket(int side, absl::string_view bucket, std::vector<Record>* records,
                            size_t* count) const;
  // Decodes one record from `*pos` (advanced); kDataLoss on corrupt bytes.
  absl::Status DecodeOne(int side, const char** pos, const char* end, Record* record) const;

  // The event time the join judges records late by: the input watermark, or the one restored
  // if higher (the smallest any old subtask had seen at the checkpoint restored: rescaling may
  // give this subtask keys of any of them). So records the failed attempt dropped are dropped
  // again, and records replayed before the first new watermark do not join state that was
  // already dropped. kNoWatermark when neither is known.
  int64_t Watermark() const { return std::max(timers_->CurrentWatermark(), restored_watermark_); }
  // The operator's non-keyed state (SnapshotState, with UnionState() true): the watermark,
  // [format 1][fixed64 LE]. RestoreWatermark reads it from the context at Open (kDataLoss when
  // an entry does not decode).
  absl::Status RestoreWatermark(const OperatorContext& ctx);
  void SnapshotWatermark(std::vector<std::string>* entries) const;

  // A record `r` of input `side`, declared `unique` (at most one record per key), came while
  // another record of its key is kept: kFailedPrecondition naming the key.
  absl::Status UniqueViolated(int side, const Record& r);

  void CountLate() {
    ++late_dropped_;
    if (ctx_.late_records_dropped != nullptr) ctx_.late_records_dropped->Add();
  }

  const JoinSides* sides_ = nullptr;
  state::KeyedStateBackend* state_ = nullptr;
  TimerService* timers_ = nullptr;
  Record out_;  // the output row; extra fields after both sides are the derived class's

 private:
  std::vector<std::unique_ptr<plan::Expr>> key_exprs_[2];
  Schema key_schema_;
  Record key_record_;
  std::string key_bytes_;
  int carried_key_group_ = -1;  // of the record last given to EvalKey; -1: none carried
  bool int_key_ = false;         // int_key()
  int int_key_field_[2] = {-1, -1};  // when int_key(): each input's key field, -1 when not bare
  size_t offset_[2] = {0, 0};  // where each side's fields start in the output
  // How FillSide copies each input's fields: kInts (NOT NULL integers, bools and timestamps:
  // Value::i), kNumbers (NOT NULL and no strings: Value::i and Value::d), kGeneric (per field
  // by type, with its null bit).
  enum class SideCopy : uint8_t { kInts, kNumbers, kGeneric };
  SideCopy copy_[2] = {SideCopy::kGeneric, SideCopy::kGeneric};
  bool nulled_[2] = {false, false};  // FillSide(side, nullptr) set the side's null bits since
  uint64_t late_dropped_ = 0;
  int64_t restored_watermark_ = kNoWatermark;
};

// Which buckets of one map state the current key has (format 1): their 8-byte time user keys,
// sorted, in one value-state entry per key; a restore finds the buckets through it.
class BucketIndex {
 public:
  BucketIndex(state::KeyedStateBackend* state, state::StateId id) : state_(state), id_(id) {}

  // Reads the current key's index (empty when absent).
  absl::Status Load();
  // Writes it back (deletes the entry when empty).
  absl::Status Store();

  size_t size() const { return data_.size() / 8; }
  absl::string_view user_key(size_t i) const { return absl::string_view(data_).substr(8 * i, 8); }
  int64_t time(size_t i) const;
  // Drops the first `n` entries (the oldest).
  void EraseFront(size_t n) { data_.erase(0, 8 * n); }

 private:
  state::KeyedStateBackend* const state_;
  const state::StateId id_;
  std::string data_;  // the entries, without the format byte
  std::string stored_;
};

// An order-preserving 8-byte user key for a timestamp (big-endian, sign bit flipped), written
// into `buf`, and back.
absl::string_view TimeUserKey(int64_t ts, char (&buf)[8]);
int64_t TimeFromUserKey(absl::string_view key);

// interval_join sweeps a key's records kIntervalJoinSweepSlackMs of event time after the
// watermark passes their cleanup time (interval_join.cc); a key's next record drops them
// before that. Tests set another slack (0: at the watermark; -1 restores the default) for the
// operators opened afterwards.
inline constexpr int64_t kIntervalJoinSweepSlackMs = 1000;
void SetIntervalJoinSweepSlackForTest(int64_t ms);

// a + b, saturated to the int64 range.
inline int64_t SaturatingAdd(int64_t a, int64_t b) {
  int64_t r;
  if (!__builtin_add_overflow(a, b, &r)) return r;
  return b > 0 ? INT64_MAX : INT64_MIN;
}

}  // namespace sluice::ops
