#include "operators/map_options.h"

#include <set>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "plan/expr.h"
#include "plan/job_spec.h"
#include "plan/option_parsing.h"

namespace sluice::ops {
namespace {

absl::StatusOr<MapOptions> Parse(const YAML::Node& c, const plan::ParseContext& ctx) {
  const plan::ErrorContext& ec = ctx.errors();
  YAML::Node fields = c["fields"];
  if (!fields || !fields.IsSequence() || fields.size() == 0) {
    return ctx.At(fields ? fields : c, "map needs 'fields': a list of names or {name, expr}");
  }
  MapOptions o;
  std::set<std::string> seen;
  for (const auto& f : fields) {
    MapOptions::Field field;
    if (f.IsScalar()) {
      field.name = field.expr = f.Scalar();
    } else if (f.IsMap()) {
      SLUICE_ASSIGN_OR_RETURN(field.name, plan::GetString(ec, f, "name", true));
      SLUICE_ASSIGN_OR_RETURN(field.expr, plan::GetString(ec, f, "expr", true));
    } else {
      return ctx.At(f, "a map field must be a field name or {name, expr}");
    }
    if (!plan::IsDottedIdentifier(field.name)) {
      return ctx.At(f, absl::StrCat("'", field.name, "' is not a valid field name; use {name, expr}"));
    }
    if (!seen.insert(field.name).second) return ctx.At(f, absl::StrCat("duplicate field '", field.name, "'"));
    SLUICE_ASSIGN_OR_RETURN(auto e, plan::CompileAt(ec, f, field.expr, ctx.op().input_schema));
    field.type = e->type();
    field.nullable = e->nullable();
    if (f.IsMap() && f["type"]) {
      auto t = ParseFieldType(f["type"].Scalar());
      if (!t.ok()) return ctx.At(f["type"], t.status().message());
      if (!plan::Assignable(field.type, *t)) {
        return ctx.At(f, absl::StrCat("expression has type ", FieldTypeName(field.type),
                                      ", cannot be stored as ", FieldTypeName(*t)));
      }
      field.type = *t;
    }
    o.fields.push_back(std::move(field));
  }
  return o;
}

Schema Infer(const MapOptions& o, const plan::ParseContext&) {
  std::vector<Field> out;
  for (const auto& f : o.fields) out.push_back({f.name, f.type, f.nullable});
  return Schema(std::move(out));
}

// A field whose expression is a bare input field, kept at its type, is a copy of it.
std::vector<plan::FieldOrigin> Origins(const MapOptions& o, const plan::ParseContext& ctx) {
  const Schema& in = ctx.op().input_schema;
  std::vector<plan::FieldOrigin> origins(o.fields.size());
  for (size_t i = 0; i < o.fields.size(); ++i) {
    auto e = plan::CompileExpr(o.fields[i].expr, in);
    const int f = e.ok() ? (*e)->FieldIndex() : -1;
    if (f >= 0 && in.field(f).type == o.fields[i].type) origins[i] = {0, f};
  }
  return origins;
}

}  // namespace

std::unique_ptr<plan::OperatorType> MakeMapType() {
  plan::OperatorTraits t;
  t.name = "map";
  t.option_keys = {"fields"};
  return std::make_unique<plan::TypedOperatorType<MapOptions>>(std::move(t), &Parse, &Infer,
                                                               nullptr, nullptr, &Origins);
}

}  // namespace sluice::ops
