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
class KeyHasher {
 public:
  static absl::StatusOr<KeyHasher> Create(const std::vector<plan::KeySpec>& key,
                                          const Schema& schema);

  uint64_t Hash(const Record& r) const {
    uint64_t h = kSeed;
    for (const auto& e : exprs_) {
      switch (e->type()) {
        case FieldType::kString: h = HashCombine(h, HashBytes(e->EvalString(r))); break;
        case FieldType::kDouble: h = HashCombine(h, HashDouble(e->EvalDouble(r))); break;
        case FieldType::kBool: h = HashCombine(h, HashInt64(e->EvalBool(r) ? 1 : 0)); break;
        default: h = HashCombine(h, HashInt64(e->EvalInt(r))); break;
      }
    }
    return h;
  }

  // The same hash from key values already evaluated into `key` (laid out by `schema`, whose
  // types are the key expressions' types): no second evaluation of the expressions.
  static uint64_t HashKeyRecord(const Schema& schema, const Record& key) {
    uint64_t h = kSeed;
    for (size_t i = 0; i < schema.size(); ++i) {
      switch (schema.field(i).type) {
        case FieldType::kString: h = HashCombine(h, HashBytes(key.GetString(i))); break;
        case FieldType::kDouble: h = HashCombine(h, HashDouble(key.GetDouble(i))); break;
        case FieldType::kBool: h = HashCombine(h, HashInt64(key.GetBool(i) ? 1 : 0)); break;
        default: h = HashCombine(h, HashInt64(key.GetInt(i))); break;
      }
    }
    return h;
  }

  const std::vector<std::unique_ptr<plan::Expr>>& exprs() const { return exprs_; }

 private:
  static constexpr uint64_t kSeed = 0x1234567;
  static uint64_t HashDouble(double d) {
    if (d == 0) d = 0;  // -0.0 and 0.0 are one key
    int64_t bits;
    std::memcpy(&bits, &d, 8);
    return HashInt64(bits);
  }
  std::vector<std::unique_ptr<plan::Expr>> exprs_;
};

inline absl::StatusOr<KeyHasher> KeyHasher::Create(const std::vector<plan::KeySpec>& key,
                                                   const Schema& schema) {
  KeyHasher h;
  for (const auto& k : key) {
    auto e = plan::CompileExpr(k.expr, schema);
    if (!e.ok()) return e.status();
    h.exprs_.push_back(std::move(*e));
  }
  return h;
}

}  // namespace sluice::ops
