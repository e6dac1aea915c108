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
    uint64_t h = 0x1234567;
    for (const auto& e : exprs_) {
      uint64_t v;
      switch (e->type()) {
        case FieldType::kString: v = HashBytes(e->EvalString(r)); break;
        case FieldType::kDouble: {
          double d = e->EvalDouble(r);
          if (d == 0) d = 0;  // -0.0 and 0.0 are one key
          int64_t bits;
          std::memcpy(&bits, &d, 8);
          v = HashInt64(bits);
          break;
        }
        case FieldType::kBool: v = HashInt64(e->EvalBool(r) ? 1 : 0); break;
        default: v = HashInt64(e->EvalInt(r)); break;
      }
      h = HashCombine(h, v);
    }
    return h;
  }
  const std::vector<std::unique_ptr<plan::Expr>>& exprs() const { return exprs_; }

 private:
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
