#pragma once

// Helpers shared by the event-time operators (window, top_n): the current key of a record and
// composite state keys [key record][big-endian int64s] that put a window (or its end) beside
// the key, in the key's key group.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/key_groups.h"
#include "common/record.h"
#include "common/record_codec.h"
#include "common/status.h"
#include "operators/key_hasher.h"
#include "plan/expr.h"
#include "plan/job_spec.h"

namespace sluice::ops::internal {

// Appends `v` as 8 bytes whose byte order is numeric order (big-endian, sign bit flipped).
inline void PutOrderedInt64(int64_t v, std::string* out) {
  const uint64_t u = static_cast<uint64_t>(v) ^ (uint64_t{1} << 63);
  for (int i = 7; i >= 0; --i) out->push_back(static_cast<char>((u >> (8 * i)) & 0xff));
}

// Reads what PutOrderedInt64 wrote at `p` (8 bytes).
inline int64_t GetOrderedInt64(const char* p) {
  uint64_t u = 0;
  for (int i = 0; i < 8; ++i) u = (u << 8) | static_cast<unsigned char>(p[i]);
  return static_cast<int64_t>(u ^ (uint64_t{1} << 63));
}

// The key of a keyed operator's input records: evaluated from OperatorSpec::key, encoded, and
// its key group. Reused per record (no allocation once warm). Task thread only.
//
// Nulls: the key schema's field of an expression that may be null is nullable, so a null key
// value encodes as the codec's null byte (1) and a value as 0 and the value, and a null is
// never the previous record's value: all records whose key value is null form one key, in the
// key group KeyHasher gives them (as SQL's GROUP BY). Keys of NOT NULL expressions encode
// exactly as before.
class RecordKey {
 public:
  // kInvalidArgument if a key expression does not compile (it did at submission).
  absl::Status Init(const plan::OperatorSpec& spec, int max_parallelism) {
    max_parallelism_ = max_parallelism;
    std::vector<Field> fields;
    for (const auto& k : spec.key) {
      SLUICE_ASSIGN_OR_RETURN(auto e, plan::CompileExpr(k.expr, spec.input_schema));
      fields.push_back({k.name, e->type(), e->nullable()});
      exprs_.push_back(std::move(e));
    }
    schema_ = Schema(std::move(fields));
    record_.Resize(schema_.size());
    return absl::OkStatus();
  }

  // Evaluates the key of `r`: bytes(), key_group() and record() describe it until the next
  // call.
  void Set(const Record& r) {
    for (size_t i = 0; i < exprs_.size(); ++i) {
      plan::EvalInto(*exprs_[i], r, schema_.field(i).type, &record_, i);
    }
    encoded_ = false;
    key_group_ = r.carried_key_group();  // -1 unless the exchange carried it
  }
  // Sets the key from its encoded bytes (a timer's key without its suffix). kDataLoss if they
  // do not decode.
  absl::Status SetBytes(absl::string_view bytes) {
    RecordDecoder dec(&schema_, bytes);
    SLUICE_RETURN_IF_ERROR(dec.Next(&record_));
    encoded_ = false;
    key_group_ = -1;
    return absl::OkStatus();
  }

  const Schema& schema() const { return schema_; }
  // Encoded when first asked for (a key kept by value may not need them).
  const std::string& bytes() const {
    if (!encoded_) {
      bytes_.clear();
      EncodeRecord(schema_, record_, &bytes_);
      encoded_ = true;
    }
    return bytes_;
  }
  const Record& record() const { return record_; }
  // Computed when first asked for (a key found in memory may not need it).
  int key_group() const {
    if (key_group_ < 0) key_group_ = KeyGroupForHash(KeyHasher::HashKeyRecord(schema_, record_), max_parallelism_);
    return key_group_;
  }

 private:
  int max_parallelism_ = 128;
  std::vector<std::unique_ptr<plan::Expr>> exprs_;
  Schema schema_;
  Record record_;
  mutable std::string bytes_;
  mutable bool encoded_ = false;
  mutable int key_group_ = -1;  // -1: not computed yet
};

}  // namespace sluice::ops::internal
