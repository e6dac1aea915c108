#include "operators/datagen_options.h"

#include <set>

#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace sluice::ops {

const Schema& DatagenSeqSchema() {
  static const auto* schema = new Schema({{"seq", FieldType::kInt64}});
  return *schema;
}

namespace {

absl::StatusOr<DatagenOptions> Parse(const YAML::Node& c, const plan::ParseContext& ctx) {
  const plan::ErrorContext& ec = ctx.errors();
  DatagenOptions o;
  SLUICE_ASSIGN_OR_RETURN(o.count, plan::GetInt(ec, c, "count", -1, 0, INT64_MAX));
  SLUICE_ASSIGN_OR_RETURN(o.rate, plan::GetDouble(ec, c, "rate", 0, 0));
  YAML::Node fields = c["fields"];
  if (!fields) return ctx.At(c, "datagen needs 'fields'");
  if (!fields.IsSequence() || fields.size() == 0) {
    return ctx.At(fields, "'fields' must be a non-empty list of {name, type, expr}");
  }
  std::vector<Field> out;
  std::set<std::string> seen;
  for (const auto& f : fields) {
    if (!f.IsMap()) return ctx.At(f, "a datagen field must be {name, type, expr}");
    DatagenOptions::Field field;
    SLUICE_ASSIGN_OR_RETURN(field.name, plan::GetString(ec, f, "name", true));
    SLUICE_ASSIGN_OR_RETURN(std::string type_name, plan::GetString(ec, f, "type", true));
    SLUICE_ASSIGN_OR_RETURN(field.expr, plan::GetString(ec, f, "expr", true));
    auto type = ParseFieldType(type_name);
    if (!type.ok()) return ctx.At(f["type"], type.status().message());
    field.type = *type;
    if (!seen.insert(field.name).second) {
      return ctx.At(f, absl::StrCat("duplicate field '", field.name, "'"));
    }
    SLUICE_ASSIGN_OR_RETURN(auto e, plan::CompileAt(ec, f["expr"], field.expr, DatagenSeqSchema()));
    if (!plan::Assignable(e->type(), field.type)) {
      return ctx.At(f["expr"], absl::StrCat("expression has type ", FieldTypeName(e->type()),
                                            " but field '", field.name, "' is ",
                                            FieldTypeName(field.type)));
    }
    out.push_back({field.name, field.type});
    o.fields.push_back(std::move(field));
  }
  o.schema = Schema(std::move(out));
  SLUICE_ASSIGN_OR_RETURN(o.event_time, plan::ParseEventTime(ec, c, &o.schema, /*kafka=*/false));
  return o;
}

Schema Infer(const DatagenOptions& o, const plan::ParseContext&) { return o.schema; }

}  // namespace

std::unique_ptr<plan::OperatorType> MakeDatagenType() {
  plan::OperatorTraits t;
  t.name = "datagen";
  t.inputs = plan::InputArity::kSource;
  t.option_keys = {"count", "rate", "fields", "event_time"};
  return std::make_unique<plan::TypedOperatorType<DatagenOptions>>(std::move(t), &Parse, &Infer);
}

}  // namespace sluice::ops
