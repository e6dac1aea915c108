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

// `map`: every output value computed from the input record. Output fields that are a bare input
// field of the same type (or both integral) are copied without evaluating an expression; when
// the record is the operator's to take (ProcessOwned), one output per string input field swaps
// the string instead of copying it. Expressions are evaluated first and taken strings last, so
// every read sees the input's values.
class MapOperator final : public Operator {
 public:
  absl::Status Open(const OperatorContext& ctx, Output* output) override {
    SLUICE_RETURN_IF_ERROR(Operator::Open(ctx, output));
    SLUICE_ASSIGN_OR_RETURN(const MapOptions* o, TypedOptions<MapOptions>(ctx));
    const Schema& in = ctx.spec->input_schema;
    const Schema& schema = ctx.spec->output_schema;
    std::vector<bool> taken(in.size(), false);
    for (size_t i = 0; i < o->fields.size(); ++i) {
      SLUICE_ASSIGN_OR_RETURN(auto e, CompileExpr(o->fields[i].expr, in));
      const FieldType out_type = schema.field(i).type;
      const int from = e->FieldIndex();
      if (from >= 0 && (out_type == e->type() || (IsIntegral(out_type) && IsIntegral(e->type())))) {
        Copy c{static_cast<size_t>(from), i, out_type, e->nullable()};
        if (out_type == FieldType::kString && !taken[from]) {
          taken[from] = true;
          takes_.push_back(c);
        } else {
          copies_.push_back(c);
        }
        continue;
      }
      computed_.push_back(Computed{std::move(e), i, out_type});
    }
    out_.Resize(o->fields.size());
    return absl::OkStatus();
  }

  absl::Status Process(const Record& r) override {
    ComputeAndCopy(r);
    for (const Copy& c : takes_) CopyOne(c, r);
    return output_->EmitOwned(&out_);
  }

  // The input's strings are taken (swapped) rather than copied.
  absl::Status ProcessOwned(Record* r) override {
    ComputeAndCopy(*r);
    for (const Copy& c : takes_) {
      if (c.nullable) {
        const bool null = r->IsNull(c.from);
        out_.SetNullTo(c.to, null);
        if (null) continue;
      }
      out_[c.to].s.swap((*r)[c.from].s);
    }
    return output_->EmitOwned(&out_);
  }

 private:
  // Value `from` of the input copied to value `to` of the output (of type `type`).
  struct Copy {
    size_t from;
    size_t to;
    FieldType type;
    bool nullable;
  };
  struct Computed {
    std::unique_ptr<Expr> expr;
    size_t to;
    FieldType type;
  };

  void CopyOne(const Copy& c, const Record& r) {
    if (c.nullable) {
      const bool null = r.IsNull(c.from);
      out_.SetNullTo(c.to, null);
      if (null) return;
    }
    Value& v = out_[c.to];
    const Value& from = r[c.from];
    switch (c.type) {
      case FieldType::kDouble: v.d = from.d; return;
      case FieldType::kString: v.s.assign(from.s); return;
      default: v.i = from.i; return;
    }
  }
  // Every output value but the taken strings.
  void ComputeAndCopy(const Record& r) {
    for (const Computed& c : computed_) plan::EvalInto(*c.expr, r, c.type, &out_, c.to);
    for (const Copy& c : copies_) CopyOne(c, r);
  }

  std::vector<Computed> computed_;
  std::vector<Copy> copies_;
  std::vector<Copy> takes_;  // string inputs, each at most once
  Record out_;
};

}  // namespace

std::unique_ptr<Operator> MakeMap() { return std::make_unique<MapOperator>(); }

}  // namespace sluice::ops
