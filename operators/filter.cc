#include "operators/internal/builtins.h"

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
