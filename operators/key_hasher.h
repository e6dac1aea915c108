#pragma once

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "common/key_groups.h"
#include "plan/expr.h"
#include "plan/job_spec.h"

namespace sluice::ops {

// Evaluates a key (a list of expressions) over records and hashes it stably, so that every
// process routes a key to the same subtask. One per thread.
//
// Null key values (of a key expression that may be null: nullable()): as SQL's GROUP BY, all
// nulls of a key component are one value, hashed as kNullHash whatever the record's slot holds;
// the keyed operators encode them as a value of their own (the codec's null byte, RecordKey),
// so Hash() and HashKeyRecord() agree and the exchange and the key group put every null-keyed
// record of one key in one place. Keys whose expressions are all NOT NULL hash exactly as
// before nulls existed. (The planner refuses keys that may be null today, plan/option_parsing.cc
// ParseKey; this is the runtime's side for when it accepts them.)
class KeyHasher {
 public:
  static absl::StatusOr<KeyHasher> Create(const std::vector<plan::KeySpec>& key,
                                          const Schema& schema);

  uint64_t Hash(const Record& r) const {
    uint64_t h = kSeed;
    if (!fields_.empty()) {  // every key a bare field: read in place, no virtual call
      for (const KeyField& f : fields_) h = CombineValue(h, f.type, r, f.index);
      return h;
    }
    for (const auto& e : exprs_) {
      if (e->nullable()) {
        h = CombineNullable(h, *e, r);
        continue;
      }
      switch (e->type()) {
        case FieldType::kString: h = HashCombine(h, HashBytes(e->EvalString(r))); break;
        case FieldType::kDouble: h = HashCombine(h, HashDouble(e->EvalDouble(r))); break;
        case FieldType::kBool: h = HashCombine(h, HashInt64(e->EvalBool(r) ? 1 : 0)); break;
        default: h = HashCombine(h, HashInt64(e->EvalInt(r))); break;
      }
    }
    return h;
  }

  // Hash() of records[0..n) into hashes[0..n). A key of one NOT NULL integer field is hashed
  // in one inlined loop (the records' multiplications overlap); other keys record by record.
  void HashBatch(const Record* records, size_t n, uint64_t* hashes) const {
    if (fields_.size() == 1 && IsIntegral(fields_[0].type)) {
      const size_t index = fields_[0].index;
      for (size_t i = 0; i < n; ++i) hashes[i] = HashCombine(kSeed, HashInt64(records[i].GetInt(index)));
      return;
    }
    for (size_t i = 0; i < n; ++i) hashes[i] = Hash(records[i]);
  }
  // The same hash from key values already evaluated into `key` (laid out by `schema`, whose
  // types are the key expressions' types): no second evaluation of the expressions.
  // A nullable field of `schema` whose value is null hashes as a null key component does.
  static uint64_t HashKeyRecord(const Schema& schema, const Record& key) {
    uint64_t h = kSeed;
    for (size_t i = 0; i < schema.size(); ++i) {
      const Field& f = schema.field(i);
      h = f.nullable && key.IsNull(i) ? HashCombine(h, kNullHash) : CombineValue(h, f.type, key, i);
    }
    return h;
  }

  const std::vector<std::unique_ptr<plan::Expr>>& exprs() const { return exprs_; }

 private:
  static constexpr uint64_t kSeed = 0x1234567;
  // What a null key component contributes (any constant: a non-null value hashing alike only
  // shares its subtask).
  static constexpr uint64_t kNullHash = 0x6e756c6c6b6579ULL;
  // A key expression that is a bare field: its index and type.
  struct KeyField {
    size_t index;
    FieldType type;
  };
  // `h` combined with the hash of value `i` of `r`, of type `type` (as the expressions give it).
  static uint64_t CombineValue(uint64_t h, FieldType type, const Record& r, size_t i) {
    switch (type) {
      case FieldType::kString: return HashCombine(h, HashBytes(r.GetString(i)));
      case FieldType::kDouble: return HashCombine(h, HashDouble(r.GetDouble(i)));
      case FieldType::kBool: return HashCombine(h, HashInt64(r.GetBool(i) ? 1 : 0));
      default: return HashCombine(h, HashInt64(r.GetInt(i)));
    }
  }
  // `h` combined with the hash of nullable expression `e` over `r`, evaluated once.
  static uint64_t CombineNullable(uint64_t h, const plan::Expr& e, const Record& r) {
    switch (e.type()) {
      case FieldType::kString: {
        absl::string_view s;
        return HashCombine(h, e.EvalStringOrNull(r, &s) ? HashBytes(s) : kNullHash);
      }
      case FieldType::kDouble: {
        double d;
        return HashCombine(h, e.EvalDoubleOrNull(r, &d) ? HashDouble(d) : kNullHash);
      }
      case FieldType::kBool: {
        bool b;
        return HashCombine(h, e.EvalBoolOrNull(r, &b) ? HashInt64(b ? 1 : 0) : kNullHash);
      }
      default: {
        int64_t i;
        return HashCombine(h, e.EvalIntOrNull(r, &i) ? HashInt64(i) : kNullHash);
      }
    }
  }
  static uint64_t HashDouble(double d) {
    if (d == 0) d = 0;  // -0.0 and 0.0 are one key
    int64_t bits;
    std::memcpy(&bits, &d, 8);
    return HashInt64(bits);
  }
  std::vector<std::unique_ptr<plan::Expr>> exprs_;
  std::vector<KeyField> fields_;  // when every expression is a bare NOT NULL field; else empty
};

inline absl::StatusOr<KeyHasher> KeyHasher::Create(const std::vector<plan::KeySpec>& key,
                                                   const Schema& schema) {
  KeyHasher h;
  for (const auto& k : key) {
    auto e = plan::CompileExpr(k.expr, schema);
    if (!e.ok()) return e.status();
    h.exprs_.push_back(std::move(*e));
  }
  for (const auto& e : h.exprs_) {
    if (e->FieldIndex() < 0 || e->nullable()) {
      h.fields_.clear();
      break;
    }
    h.fields_.push_back({static_cast<size_t>(e->FieldIndex()), e->type()});
  }
  return h;
}

}  // namespace sluice::ops
