#include "operators/internal/builtins.h"

#include <memory>
#include <vector>

#include "common/status.h"
#include "operators/map_options.h"
#include "plan/expr.h"

namespace sluice::ops {
namespace {

using plan::CompileExpr;
using plan::Expr;

class MapOperator final : public Operator {
 public:
  absl::Status Open(const OperatorContext& ctx, Output* output) override {
    SLUICE_RETURN_IF_ERROR(Operator::Open(ctx, output));
    SLUICE_ASSIGN_OR_RETURN(const MapOptions* o, TypedOptions<MapOptions>(ctx));
    for (const auto& f : o->fields) {
      SLUICE_ASSIGN_OR_RETURN(auto e, CompileExpr(f.expr, ctx.spec->input_schema));
      exprs_.push_back(std::move(e));
    }
    out_.Resize(exprs_.size());
    return absl::OkStatus();
  }
  absl::Status Process(const Record& r) override {
    const Schema& schema = ctx_.spec->output_schema;
    for (size_t i = 0; i < exprs_.size(); ++i) {
      plan::EvalInto(*exprs_[i], r, schema.field(i).type, &out_, i);
    }
    return output_->Emit(out_);
  }

 private:
  std::vector<std::unique_ptr<Expr>> exprs_;
  Record out_;
};

}  // namespace

std::unique_ptr<Operator> MakeMap() { return std::make_unique<MapOperator>(); }

}  // namespace sluice::ops
