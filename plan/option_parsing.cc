#include "plan/option_parsing.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/str_join.h"
#include "common/error_text.h"
#include "common/status.h"
#include "plan/job_spec.h"

namespace sluice::plan {

absl::Status ErrorContext::At(const YAML::Node& node, absl::string_view reason) const {
  YAML::Mark m = node.Mark();
  return AtPos(m.line + 1, m.column + 1, reason);
}

absl::Status ErrorContext::AtPos(int line, int column, absl::string_view reason) const {
  if (line <= 0) return absl::InvalidArgumentError(CapText(absl::StrCat(source_, ": ", reason)));
  return absl::InvalidArgumentError(
      CapText(absl::StrCat(source_, ":", line, ":", column, ": ", reason)));
}

absl::StatusOr<bool> GetBool(const ErrorContext& ec, const YAML::Node& parent, const char* key,
                             bool default_value) {
  YAML::Node n = parent[key];
  if (!n) return default_value;
  bool v = false;
  if (!n.IsScalar() || !YAML::convert<bool>::decode(n, v)) {
    return ec.At(n, absl::StrCat("'", key, "' must be true or false"));
  }
  return v;
}

absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ParseProperties(
    const ErrorContext& ec, const YAML::Node& config) {
  std::vector<std::pair<std::string, std::string>> out;
  if (YAML::Node props = config["properties"]) {
    if (!props.IsMap()) return ec.At(props, "'properties' must be a mapping of librdkafka settings");
    for (const auto& kv : props) {
      if (!kv.second.IsScalar()) return ec.At(kv.second, "a property value must be a scalar");
      out.emplace_back(kv.first.Scalar(), kv.second.Scalar());
    }
  }
  return out;
}

bool IsIdentifier(absl::string_view s) {
  if (s.empty() || !(absl::ascii_isalpha(s[0]) || s[0] == '_')) return false;
  for (char c : s) {
    if (!(absl::ascii_isalnum(c) || c == '_')) return false;
  }
  return true;
}

bool IsDottedIdentifier(absl::string_view s) {
  for (absl::string_view part : absl::StrSplit(s, '.')) {
    if (!IsIdentifier(part)) return false;
  }
  return true;
}

absl::StatusOr<std::string> GetString(const ErrorContext& ec, const YAML::Node& parent,
                                      const char* key, bool required) {
  YAML::Node n = parent[key];
  if (!n) {
    if (required) return ec.At(parent, absl::StrCat("missing required key '", key, "'"));
    return std::string();
  }
  if (!n.IsScalar()) return ec.At(n, absl::StrCat("'", key, "' must be a string"));
  return n.Scalar();
}

absl::StatusOr<int64_t> GetInt(const ErrorContext& ec, const YAML::Node& parent, const char* key,
                               int64_t default_value, int64_t min, int64_t max) {
  YAML::Node n = parent[key];
  if (!n) return default_value;
  int64_t v;
  if (!n.IsScalar() || !YAML::convert<int64_t>::decode(n, v)) {
    return ec.At(n, absl::StrCat("'", key, "' must be an integer, got '",
                                 n.IsScalar() ? n.Scalar() : "a collection", "'"));
  }
  if (v < min || v > max) {
    return ec.At(n, absl::StrCat("'", key, "' must be between ", min, " and ", max, ", got ", v));
  }
  return v;
}

absl::StatusOr<double> GetDouble(const ErrorContext& ec, const YAML::Node& parent, const char* key,
                                 double default_value, double min) {
  YAML::Node n = parent[key];
  if (!n) return default_value;
  double v;
  if (!n.IsScalar() || !YAML::convert<double>::decode(n, v)) {
    return ec.At(n, absl::StrCat("'", key, "' must be a number"));
  }
  if (v < min) return ec.At(n, absl::StrCat("'", key, "' must be at least ", min));
  return v;
}

// Most bytes of an expression quoted in an error: longer ones are shown as an excerpt around
// the error's column.
constexpr size_t kMaxQuotedExprBytes = 60;

// Compiles `text` against `schema`, re-positioning expression errors at the YAML node.
absl::StatusOr<std::unique_ptr<Expr>> CompileAt(const ErrorContext& ec, const YAML::Node& node,
                                                const std::string& text, const Schema& schema) {
  auto e = CompileExpr(text, schema);
  if (!e.ok()) {
    const int column = ExprErrorColumn(e.status());
    const size_t pos = column > 0 ? static_cast<size_t>(column - 1) : 0;
    return ec.At(node, absl::StrCat("in expression \"", Excerpt(text, pos, kMaxQuotedExprBytes),
                                    "\": ", e.status().message()));
  }
  return e;
}

bool Assignable(FieldType from, FieldType to) {
  if (from == to) return true;
  return IsNumeric(from) && IsNumeric(to);
}

absl::StatusOr<std::vector<KeySpec>> ParseKey(const ErrorContext& ec, const YAML::Node& node,
                                              const Schema& input) {
  if (!node.IsSequence() && !node.IsScalar()) {
    return ec.At(node, "'key' must be a field name, an expression or a list of them");
  }
  std::vector<YAML::Node> items;
  if (node.IsScalar()) {
    items.push_back(node);
  } else {
    for (const auto& item : node) items.push_back(static_cast<const YAML::Node&>(item));
  }
  if (items.empty()) return ec.At(node, "'key' must not be empty");
  std::vector<KeySpec> out;
  for (size_t i = 0; i < items.size(); ++i) {
    const YAML::Node& item = items[i];
    KeySpec k;
    if (item.IsScalar()) {
      k.expr = item.Scalar();
      k.name = IsDottedIdentifier(k.expr) ? k.expr : absl::StrCat("key", i);
    } else if (item.IsMap()) {
      SLUICE_ASSIGN_OR_RETURN(k.name, GetString(ec, item, "name", true));
      SLUICE_ASSIGN_OR_RETURN(k.expr, GetString(ec, item, "expr", true));
    } else {
      return ec.At(item, "a key entry must be an expression or {name, expr}");
    }
    SLUICE_ASSIGN_OR_RETURN(auto e, CompileAt(ec, item, k.expr, input));
    if (e->nullable()) {
      // As Flink's keyBy, which refuses null keys: a null key has no key group.
      return ec.At(item, absl::StrCat("key '", k.expr, "' may be null (it reads a nullable field of ",
                                      input.ToString(), "); keys must not be null: use coalesce(",
                                      k.expr, ", <default>) or filter out is_null(", k.expr, ") first"));
    }
    out.push_back(std::move(k));
  }
  return out;
}

absl::StatusOr<int64_t> GetDuration(const ErrorContext& ec, const YAML::Node& parent,
                                    const char* key, int64_t default_value) {
  YAML::Node n = parent[key];
  if (!n) return default_value;
  if (!n.IsScalar()) return ec.At(n, absl::StrCat("'", key, "' must be a duration like 500ms or 1s"));
  auto d = ParseDurationMs(n.Scalar());
  if (!d.ok()) return ec.At(n, absl::StrCat("'", key, "': ", d.status().message()));
  return *d;
}

absl::Status CheckKeys(const ErrorContext& ec, const YAML::Node& node, const char* what,
                       const std::set<std::string>& allowed) {
  if (!node.IsMap()) return ec.At(node, absl::StrCat("'", what, "' must be a mapping"));
  for (const auto& kv : node) {
    if (!allowed.count(kv.first.Scalar())) {
      std::vector<std::string> names(allowed.begin(), allowed.end());
      return ec.At(kv.first, absl::StrCat("unknown key '", kv.first.Scalar(), "' in ", what,
                                          " (expected ", absl::StrJoin(names, ", "), ")"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<EventTimeSpec>> ParseEventTime(const ErrorContext& ec,
                                                            const YAML::Node& config,
                                                            Schema* schema, bool kafka) {
  const YAML::Node e = config["event_time"];
  if (!e) return std::optional<EventTimeSpec>();
  const char* shape = kafka ? "{field | kafka_timestamp, max_out_of_orderness, idle_timeout}"
                            : "{field, max_out_of_orderness, idle_timeout}";
  if (!e.IsMap()) return ec.At(e, absl::StrCat("'event_time' must be a mapping ", shape));
  std::set<std::string> keys = {"field", "max_out_of_orderness", "idle_timeout"};
  if (kafka) keys.insert("kafka_timestamp");
  SLUICE_RETURN_IF_ERROR(CheckKeys(ec, e, "event_time", keys));
  EventTimeSpec et;
  if (e["field"] && e["kafka_timestamp"]) {
    return ec.At(e["kafka_timestamp"], "give either 'field' or 'kafka_timestamp' in event_time, not both");
  }
  if (e["kafka_timestamp"]) {
    SLUICE_ASSIGN_OR_RETURN(et.field, GetString(ec, e, "kafka_timestamp", true));
    if (!IsIdentifier(et.field)) {
      return ec.At(e["kafka_timestamp"], absl::StrCat("'", et.field, "' is not a valid field name"));
    }
    if (schema->IndexOf(et.field) >= 0) {
      return ec.At(e["kafka_timestamp"],
                   absl::StrCat("field '", et.field, "' already exists in ", schema->ToString(),
                                "; kafka_timestamp names a new field for the message timestamp"));
    }
    std::vector<Field> fields = schema->fields();
    fields.push_back({et.field, FieldType::kTimestamp});
    *schema = Schema(std::move(fields));
    et.from_kafka_timestamp = true;
  } else if (e["field"]) {
    SLUICE_ASSIGN_OR_RETURN(et.field, GetString(ec, e, "field", true));
    int idx = schema->IndexOf(et.field);
    if (idx < 0) {
      return ec.At(e["field"], absl::StrCat("unknown event-time field '", et.field, "' (the source has ",
                                            schema->ToString(), ")"));
    }
    if (!IsIntegral(schema->field(idx).type)) {
      return ec.At(e["field"], absl::StrCat("event-time field '", et.field, "' is ",
                                            FieldTypeName(schema->field(idx).type),
                                            "; it must be a timestamp or int64 (milliseconds since the epoch)"));
    }
  } else {
    return ec.At(e, kafka ? "event_time needs 'field' (a timestamp or int64 field of the record) or "
                            "'kafka_timestamp' (a new timestamp field filled from each message's Kafka timestamp)"
                          : "event_time needs 'field' (a timestamp or int64 field of the record)");
  }
  et.field_index = schema->IndexOf(et.field);
  SLUICE_ASSIGN_OR_RETURN(et.max_out_of_orderness_ms, GetDuration(ec, e, "max_out_of_orderness", 0));
  SLUICE_ASSIGN_OR_RETURN(et.idle_timeout_ms, GetDuration(ec, e, "idle_timeout", 0));
  constexpr int64_t kYearMs = 366LL * 24 * 3600 * 1000;
  if (et.max_out_of_orderness_ms > kYearMs) {
    return ec.At(e["max_out_of_orderness"], "'max_out_of_orderness' must be at most a year");
  }
  return std::optional<EventTimeSpec>(std::move(et));
}

absl::StatusOr<std::shared_ptr<const AggregateFunction>> ResolveAggregateFunction(
    const ParseContext& ctx, const YAML::Node& aggregate, const std::string& fn,
    const std::string& field, int field_index, absl::string_view builtins, FieldType* result_type) {
  std::shared_ptr<const AggregateFunction> f = ctx.FindAggregateFunction(fn);
  if (f == nullptr) {
    const std::string plugins = ctx.AggregateFunctionNames();
    return ctx.At(aggregate["fn"] ? aggregate["fn"] : aggregate,
                  absl::StrCat("unknown aggregate function '", fn, "' (expected ", builtins,
                               plugins.empty() ? "" : "; from plugins: ", plugins, ")"));
  }
  if (field_index < 0) {
    return ctx.At(aggregate, absl::StrCat("aggregate function '", fn, "' of ", f->origin(),
                                          " needs a 'field'"));
  }
  const FieldType in = ctx.op().input_schema.field(field_index).type;
  absl::StatusOr<FieldType> out = f->ResultType(in);
  if (!out.ok()) {
    return ctx.At(aggregate["field"],
                  absl::StrCat("aggregate function '", fn, "' of ", f->origin(), " does not take '",
                               field, "' (", FieldTypeName(in), "): ", out.status().message()));
  }
  *result_type = *out;
  return f;
}

}  // namespace sluice::plan
