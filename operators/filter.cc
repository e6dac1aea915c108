#include "operators/internal/builtins.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>

#include "common/status.h"
#include "operators/filter_options.h"
#include "plan/expr.h"

namespace sluice::ops {
namespace {

using plan::CompileExpr;
using plan::Expr;

class FilterOperator final : public Operator {
 public:
  absl::Status Open(const OperatorContext& ctx, Output* output) override {
    SLUICE_RETURN_IF_ERROR(Operator::Open(ctx, output));
    SLUICE_ASSIGN_OR_RETURN(const FilterOptions* o, TypedOptions<FilterOptions>(ctx));
    SLUICE_ASSIGN_OR_RETURN(where_, CompileExpr(o->where, ctx.spec->input_schema));
    return absl::OkStatus();
  }
  absl::Status Process(const Record& r) override {
    if (Keep(r)) return output_->Emit(r);
    return absl::OkStatus();
  }
  // A record the filter may give away passes on as such.
  absl::Status ProcessOwned(Record* r) override {
    if (Keep(*r)) return output_->EmitOwned(r);
    return absl::OkStatus();
  }
  // A batch (a source's, or another filter's kept run): the condition over the batch in one
  // pass (Expr::EvalBoolBatch(), Keep()'s results), then each run of kept records passes on as
  // one batch, in order.
  bool TakesOwnedBatches() const override { return true; }
  absl::Status ProcessOwnedBatch(Record* records, size_t n) override {
    uint8_t keep[Expr::kEvalBatch];
    for (size_t start = 0; start < n; start += Expr::kEvalBatch) {
      Record* const part = records + start;
      const size_t m = std::min(n - start, Expr::kEvalBatch);
      where_->EvalBoolBatch(part, m, keep);
      for (size_t i = 0; i < m;) {
        const void* kept = std::memchr(keep + i, 1, m - i);
        if (kept == nullptr) break;
        i = static_cast<size_t>(static_cast<const uint8_t*>(kept) - keep);
        size_t end = i + 1;
        while (end < m && keep[end] != 0) ++end;
        SLUICE_RETURN_IF_ERROR(output_->EmitOwnedBatch(part + i, end - i));
        i = end;
      }
    }
    return absl::OkStatus();
  }

 private:
  bool Keep(const Record& r) const {
    bool keep;
    if (!where_->nullable()) return where_->EvalBool(r);
    // A null condition drops the record, as SQL's WHERE.
    return where_->EvalBoolOrNull(r, &keep) && keep;
  }

  std::unique_ptr<Expr> where_;
};

}  // namespace

std::unique_ptr<Operator> MakeFilter() { return std::make_unique<FilterOperator>(); }

}  // namespace sluice::ops
