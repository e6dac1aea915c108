#include "plan/job_spec.h"

#include <algorithm>
#include <functional>
#include <map>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/strip.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/error_text.h"
#include "common/key_groups.h"
#include "common/status.h"
#include "plan/expr.h"

namespace sluice::plan {

absl::string_view PartitionName(Partition p) {
  switch (p) {
    case Partition::kForward: return "forward";
    case Partition::kHash: return "hash";
    case Partition::kRebalance: return "rebalance";
    case Partition::kBroadcast: return "broadcast";
  }
  return "?";
}

namespace {

struct OperatorType {
  const char* name;
  OperatorKind kind;
  int min_inputs;
  int max_inputs;
  std::vector<std::string> keys;  // allowed option keys besides id/type/parallelism/input(s)
};

const std::vector<OperatorType>& OperatorTypes() {
  static const auto* types = new std::vector<OperatorType>{
      {"datagen", OperatorKind::kDatagen, 0, 0, {"count", "rate", "fields", "event_time"}},
      {"kafka", OperatorKind::kKafkaSource, 0, 0,
       {"bootstrap", "topic", "topics", "format", "fields", "start", "group", "bounded", "on_error",
        "dead_letter_topic", "event_time", "partition_discovery", "properties"}},
      {"filter", OperatorKind::kFilter, 1, 1, {"where"}},
      {"map", OperatorKind::kMap, 1, 1, {"fields"}},
      {"key_by", OperatorKind::kKeyBy, 1, 1, {"key"}},
      {"aggregate", OperatorKind::kAggregate, 1, 1, {"aggregates", "emit", "ttl"}},
      {"union", OperatorKind::kUnion, 2, 64, {}},
      {"file", OperatorKind::kFileSink, 1, 64, {"path"}},
      {"kafka_sink", OperatorKind::kKafkaSink, 1, 64,
       {"bootstrap", "topic", "format", "key", "guarantee", "transactional_id_prefix",
        "transaction_timeout", "producer_pool_size", "flush_timeout", "properties", "transaction_log",
        "max_transaction_bytes"}},
      {"print", OperatorKind::kPrintSink, 1, 64, {}},
      {"blackhole", OperatorKind::kBlackholeSink, 1, 64, {"max_rate"}},
  };
  return *types;
}

std::string KnownTypes() {
  std::vector<std::string> names;
  for (const auto& t : OperatorTypes()) names.push_back(t.name);
  return absl::StrJoin(names, ", ");
}

// Builds positioned errors: "<file>:<line>:<col>: reason".
class ErrorContext {
 public:
  explicit ErrorContext(absl::string_view source) : source_(source) {}
  absl::Status At(const YAML::Node& node, absl::string_view reason) const {
    YAML::Mark m = node.Mark();
    return AtPos(m.line + 1, m.column + 1, reason);
  }
  // The message is capped (CapText): a reason may quote the job's text.
  absl::Status AtPos(int line, int column, absl::string_view reason) const {
    if (line <= 0) return absl::InvalidArgumentError(CapText(absl::StrCat(source_, ": ", reason)));
    return absl::InvalidArgumentError(
        CapText(absl::StrCat(source_, ":", line, ":", column, ": ", reason)));
  }

 private:
  std::string source_;
};

bool IsIdentifier(absl::string_view s) {
  if (s.empty() || !(absl::ascii_isalpha(s[0]) || s[0] == '_')) return false;
  for (char c : s) {
    if (!(absl::ascii_isalnum(c) || c == '_')) return false;
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
      k.name = IsIdentifier(k.expr) ? k.expr : absl::StrCat("key", i);
    } else if (item.IsMap()) {
      SLUICE_ASSIGN_OR_RETURN(k.name, GetString(ec, item, "name", true));
      SLUICE_ASSIGN_OR_RETURN(k.expr, GetString(ec, item, "expr", true));
    } else {
      return ec.At(item, "a key entry must be an expression or {name, expr}");
    }
    SLUICE_ASSIGN_OR_RETURN(auto e, CompileAt(ec, item, k.expr, input));
    (void)e;
    out.push_back(std::move(k));
  }
  return out;
}

absl::StatusOr<Partition> ParsePartition(const ErrorContext& ec, const YAML::Node& n) {
  if (!n.IsScalar()) return ec.At(n, "'partition' must be a string");
  const std::string& s = n.Scalar();
  if (s == "forward") return Partition::kForward;
  if (s == "hash") return Partition::kHash;
  if (s == "rebalance") return Partition::kRebalance;
  if (s == "broadcast") return Partition::kBroadcast;
  return ec.At(n, absl::StrCat("unknown partition '", s,
                               "' (expected forward, hash, rebalance or broadcast)"));
}

absl::Status ParseInputs(const ErrorContext& ec, const YAML::Node& op, OperatorSpec* spec) {
  YAML::Node in = op["input"] ? op["input"] : op["inputs"];
  if (op["input"] && op["inputs"]) return ec.At(op, "give either 'input' or 'inputs', not both");
  if (!in) return absl::OkStatus();
  std::vector<YAML::Node> items;
  if (in.IsSequence()) {
    for (const auto& i : in) items.push_back(static_cast<const YAML::Node&>(i));
  } else {
    items.push_back(in);
  }
  for (const YAML::Node& item : items) {
    InputSpec is;
    is.line = item.Mark().line + 1;
    is.column = item.Mark().column + 1;
    if (item.IsScalar()) {
      is.from = item.Scalar();
    } else if (item.IsMap()) {
      for (const auto& kv : item) {
        std::string k = kv.first.Scalar();
        if (k != "from" && k != "partition" && k != "key") {
          return ec.At(kv.first, absl::StrCat("unknown key '", k,
                                              "' in input (expected from, partition, key)"));
        }
      }
      SLUICE_ASSIGN_OR_RETURN(is.from, GetString(ec, item, "from", true));
      if (item["partition"]) {
        SLUICE_ASSIGN_OR_RETURN(is.partition, ParsePartition(ec, item["partition"]));
        is.explicit_partition = true;
      }
      // Keys are compiled later, once the producer's schema is known.
      if (item["key"]) {
        if (is.partition != Partition::kHash) {
          return ec.At(item["key"], "'key' is only allowed with partition: hash");
        }
      } else if (is.partition == Partition::kHash) {
        return ec.At(item, "partition: hash needs a 'key'");
      }
    } else {
      return ec.At(item, "an input must be an operator id or {from, partition, key}");
    }
    spec->inputs.push_back(std::move(is));
  }
  return absl::OkStatus();
}

absl::StatusOr<int64_t> GetDuration(const ErrorContext& ec, const YAML::Node& parent,
                                    const char* key, int64_t default_value);
absl::Status CheckKeys(const ErrorContext& ec, const YAML::Node& node, const char* what,
                       const std::set<std::string>& allowed);

// Parses a source's `event_time` option against its output schema. For a kafka source
// (`kafka`), `kafka_timestamp: NAME` appends a timestamp field NAME to the output schema.
absl::Status ParseEventTime(const ErrorContext& ec, OperatorSpec& op, bool kafka) {
  const YAML::Node e = op.config["event_time"];
  if (!e) return absl::OkStatus();
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
    if (op.output_schema.IndexOf(et.field) >= 0) {
      return ec.At(e["kafka_timestamp"],
                   absl::StrCat("field '", et.field, "' already exists in ", op.output_schema.ToString(),
                                "; kafka_timestamp names a new field for the message timestamp"));
    }
    std::vector<Field> fields = op.output_schema.fields();
    fields.push_back({et.field, FieldType::kTimestamp});
    op.output_schema = Schema(std::move(fields));
    et.from_kafka_timestamp = true;
  } else if (e["field"]) {
    SLUICE_ASSIGN_OR_RETURN(et.field, GetString(ec, e, "field", true));
    int idx = op.output_schema.IndexOf(et.field);
    if (idx < 0) {
      return ec.At(e["field"], absl::StrCat("unknown event-time field '", et.field, "' (the source has ",
                                            op.output_schema.ToString(), ")"));
    }
    if (!IsIntegral(op.output_schema.field(idx).type)) {
      return ec.At(e["field"], absl::StrCat("event-time field '", et.field, "' is ",
                                            FieldTypeName(op.output_schema.field(idx).type),
                                            "; it must be a timestamp or int64 (milliseconds since the epoch)"));
    }
  } else {
    return ec.At(e, kafka ? "event_time needs 'field' (a timestamp or int64 field of the record) or "
                            "'kafka_timestamp' (a new timestamp field filled from each message's Kafka timestamp)"
                          : "event_time needs 'field' (a timestamp or int64 field of the record)");
  }
  et.field_index = op.output_schema.IndexOf(et.field);
  SLUICE_ASSIGN_OR_RETURN(et.max_out_of_orderness_ms, GetDuration(ec, e, "max_out_of_orderness", 0));
  SLUICE_ASSIGN_OR_RETURN(et.idle_timeout_ms, GetDuration(ec, e, "idle_timeout", 0));
  constexpr int64_t kYearMs = 366LL * 24 * 3600 * 1000;
  if (et.max_out_of_orderness_ms > kYearMs) {
    return ec.At(e["max_out_of_orderness"], "'max_out_of_orderness' must be at most a year");
  }
  op.has_event_time = true;
  op.event_time = std::move(et);
  return absl::OkStatus();
}

// `properties`: a mapping of librdkafka settings (checked by librdkafka when the client starts).
absl::Status CheckKafkaProperties(const ErrorContext& ec, const YAML::Node& c) {
  if (YAML::Node props = c["properties"]) {
    if (!props.IsMap()) return ec.At(props, "'properties' must be a mapping of librdkafka settings");
    for (const auto& kv : props) {
      if (!kv.second.IsScalar()) return ec.At(kv.second, "a property value must be a scalar");
    }
  }
  return absl::OkStatus();
}

// Type-checks one operator's own options and infers its output schema.
absl::Status CheckOperator(const ErrorContext& ec, std::vector<OperatorSpec>& ops,
                           OperatorSpec& op) {
  const YAML::Node& c = op.config;
  static const Schema kSeqSchema({{"seq", FieldType::kInt64}});
  switch (op.kind) {
    case OperatorKind::kDatagen: {
      SLUICE_ASSIGN_OR_RETURN(int64_t count, GetInt(ec, c, "count", -1, 0, INT64_MAX));
      (void)count;
      SLUICE_ASSIGN_OR_RETURN(double rate, GetDouble(ec, c, "rate", 0, 0));
      (void)rate;
      YAML::Node fields = c["fields"];
      if (!fields) return ec.At(c, "datagen needs 'fields'");
      if (!fields.IsSequence() || fields.size() == 0) {
        return ec.At(fields, "'fields' must be a non-empty list of {name, type, expr}");
      }
      std::vector<Field> out;
      std::set<std::string> seen;
      for (const auto& f : fields) {
        if (!f.IsMap()) return ec.At(f, "a datagen field must be {name, type, expr}");
        SLUICE_ASSIGN_OR_RETURN(std::string name, GetString(ec, f, "name", true));
        SLUICE_ASSIGN_OR_RETURN(std::string type_name, GetString(ec, f, "type", true));
        SLUICE_ASSIGN_OR_RETURN(std::string expr, GetString(ec, f, "expr", true));
        auto type = ParseFieldType(type_name);
        if (!type.ok()) return ec.At(f["type"], type.status().message());
        if (!seen.insert(name).second) return ec.At(f, absl::StrCat("duplicate field '", name, "'"));
        SLUICE_ASSIGN_OR_RETURN(auto e, CompileAt(ec, f["expr"], expr, kSeqSchema));
        if (!Assignable(e->type(), *type)) {
          return ec.At(f["expr"], absl::StrCat("expression has type ", FieldTypeName(e->type()),
                                               " but field '", name, "' is ",
                                               FieldTypeName(*type)));
        }
        out.push_back({name, *type});
      }
      op.output_schema = Schema(std::move(out));
      return ParseEventTime(ec, op, /*kafka=*/false);
    }
    case OperatorKind::kKafkaSource: {
      SLUICE_ASSIGN_OR_RETURN(std::string bootstrap, GetString(ec, c, "bootstrap", true));
      SLUICE_RETURN_IF_ERROR(CheckKafkaProperties(ec, c));
      if (c["topic"] && c["topics"]) return ec.At(c["topics"], "give either 'topic' or 'topics', not both");
      std::string topic;
      if (YAML::Node ts = c["topics"]) {
        if (!ts.IsSequence() || ts.size() == 0) return ec.At(ts, "'topics' must be a non-empty list of topic names");
        std::set<std::string> seen;
        for (const auto& t : ts) {
          if (!t.IsScalar() || t.Scalar().empty() || t.Scalar().find(':') != std::string::npos) {
            return ec.At(t, "a topic name must be a non-empty string without ':'");
          }
          if (!seen.insert(t.Scalar()).second) return ec.At(t, absl::StrCat("topic '", t.Scalar(), "' is listed twice"));
        }
      } else {
        SLUICE_ASSIGN_OR_RETURN(topic, GetString(ec, c, "topic", true));
      }
      SLUICE_ASSIGN_OR_RETURN(std::string format, GetString(ec, c, "format", false));
      if (format.empty()) format = "json";
      if (format != "json" && format != "csv" && format != "raw") {
        return ec.At(c["format"], absl::StrCat("unknown format '", format, "' (expected json, csv or raw)"));
      }
      SLUICE_ASSIGN_OR_RETURN(std::string start, GetString(ec, c, "start", false));
      if (!start.empty() && start != "earliest" && start != "latest" && start != "committed") {
        return ec.At(c["start"], absl::StrCat("unknown start '", start,
                                              "' (expected earliest, latest or committed; the embedded "
                                              "endpoint cannot look up offsets by timestamp)"));
      }
      SLUICE_ASSIGN_OR_RETURN(std::string on_error, GetString(ec, c, "on_error", false));
      if (!on_error.empty() && on_error != "fail" && on_error != "skip" && on_error != "dead_letter") {
        return ec.At(c["on_error"], absl::StrCat("unknown on_error '", on_error,
                                                 "' (expected fail, skip or dead_letter)"));
      }
      if (on_error == "dead_letter" && !c["dead_letter_topic"]) {
        return ec.At(c["on_error"], "on_error: dead_letter needs a 'dead_letter_topic'");
      }
      bool bounded = false;
      if (c["bounded"]) {
        if (!YAML::convert<bool>::decode(c["bounded"], bounded)) return ec.At(c["bounded"], "'bounded' must be true or false");
      }
      SLUICE_ASSIGN_OR_RETURN(int64_t discovery, GetDuration(ec, c, "partition_discovery", 0));
      if (bounded && discovery > 0) {
        return ec.At(c["partition_discovery"],
                     "a bounded kafka source reads the partitions that exist at start; remove "
                     "partition_discovery (or set it to 0)");
      }
      if (format == "raw") {
        if (c["fields"]) return ec.At(c["fields"], "format raw has fixed fields (key, value)");
        op.output_schema = Schema({{"key", FieldType::kString}, {"value", FieldType::kString}});
        return ParseEventTime(ec, op, /*kafka=*/true);
      }
      YAML::Node fields = c["fields"];
      if (!fields || !fields.IsSequence() || fields.size() == 0) {
        return ec.At(fields ? fields : c, "kafka with format json or csv needs 'fields': a list of {name, type}");
      }
      std::vector<Field> out;
      std::set<std::string> seen;
      for (const auto& f : fields) {
        if (!f.IsMap()) return ec.At(f, "a field must be {name, type}");
        SLUICE_ASSIGN_OR_RETURN(std::string name, GetString(ec, f, "name", true));
        SLUICE_ASSIGN_OR_RETURN(std::string type_name, GetString(ec, f, "type", true));
        auto type = ParseFieldType(type_name);
        if (!type.ok()) return ec.At(f["type"], type.status().message());
        if (!seen.insert(name).second) return ec.At(f, absl::StrCat("duplicate field '", name, "'"));
        out.push_back({name, *type});
      }
      op.output_schema = Schema(std::move(out));
      (void)bootstrap;
      (void)topic;
      return ParseEventTime(ec, op, /*kafka=*/true);
    }
    case OperatorKind::kFilter: {
      SLUICE_ASSIGN_OR_RETURN(std::string where, GetString(ec, c, "where", true));
      SLUICE_ASSIGN_OR_RETURN(auto e, CompileAt(ec, c["where"], where, op.input_schema));
      if (e->type() != FieldType::kBool) {
        return ec.At(c["where"], absl::StrCat("filter condition must be bool, got ",
                                              FieldTypeName(e->type())));
      }
      op.output_schema = op.input_schema;
      return absl::OkStatus();
    }
    case OperatorKind::kMap: {
      YAML::Node fields = c["fields"];
      if (!fields || !fields.IsSequence() || fields.size() == 0) {
        return ec.At(fields ? fields : c, "map needs 'fields': a list of names or {name, expr}");
      }
      std::vector<Field> out;
      std::set<std::string> seen;
      for (const auto& f : fields) {
        std::string name, expr;
        if (f.IsScalar()) {
          name = expr = f.Scalar();
        } else if (f.IsMap()) {
          SLUICE_ASSIGN_OR_RETURN(name, GetString(ec, f, "name", true));
          SLUICE_ASSIGN_OR_RETURN(expr, GetString(ec, f, "expr", true));
        } else {
          return ec.At(f, "a map field must be a field name or {name, expr}");
        }
        if (!IsIdentifier(name)) {
          return ec.At(f, absl::StrCat("'", name, "' is not a valid field name; use {name, expr}"));
        }
        if (!seen.insert(name).second) return ec.At(f, absl::StrCat("duplicate field '", name, "'"));
        SLUICE_ASSIGN_OR_RETURN(auto e, CompileAt(ec, f, expr, op.input_schema));
        FieldType type = e->type();
        if (f.IsMap() && f["type"]) {
          auto t = ParseFieldType(f["type"].Scalar());
          if (!t.ok()) return ec.At(f["type"], t.status().message());
          if (!Assignable(type, *t)) {
            return ec.At(f, absl::StrCat("expression has type ", FieldTypeName(type),
                                         ", cannot be stored as ", FieldTypeName(*t)));
          }
          type = *t;
        }
        out.push_back({name, type});
      }
      op.output_schema = Schema(std::move(out));
      return absl::OkStatus();
    }
    case OperatorKind::kKeyBy: {
      if (!c["key"]) return ec.At(c, "key_by needs 'key'");
      SLUICE_ASSIGN_OR_RETURN(op.key, ParseKey(ec, c["key"], op.input_schema));
      op.output_schema = op.input_schema;
      return absl::OkStatus();
    }
    case OperatorKind::kAggregate: {
      const InputSpec& in = op.inputs[0];
      const OperatorSpec& producer = ops[in.from_index];
      if (in.partition == Partition::kHash) {
        op.key = in.key;
      } else if (producer.kind == OperatorKind::kKeyBy &&
                 (op.parallelism == 1 || in.partition == Partition::kForward)) {
        // Forward from a key_by of equal parallelism keeps each key on one subtask only when
        // the key_by's own input was hash-partitioned by the same key; require parallelism 1
        // or an explicit hash otherwise.
        if (op.parallelism != 1) {
          return ec.AtPos(in.line, in.column,
                          absl::StrCat("aggregate '", op.id, "' reads from key_by '", producer.id,
                                       "' with partition: ", PartitionName(in.partition),
                                       ", which splits keys across subtasks; use partition: hash"));
        }
        op.key = producer.key;
      } else if (producer.kind == OperatorKind::kKeyBy) {
        return ec.AtPos(in.line, in.column,
                        absl::StrCat("aggregate '", op.id, "' reads from key_by '", producer.id,
                                     "' with partition: ", PartitionName(in.partition),
                                     ", which splits keys across subtasks; use partition: hash"));
      } else {
        return ec.AtPos(op.line, op.column,
                        absl::StrCat("aggregate '", op.id,
                                     "' needs a keyed input: put a key_by before it or read with "
                                     "partition: hash and a key"));
      }
      std::vector<Field> out;
      std::set<std::string> seen;
      for (const KeySpec& k : op.key) {
        auto e = CompileExpr(k.expr, op.input_schema);
        if (!e.ok()) return ec.AtPos(op.line, op.column, e.status().message());
        out.push_back({k.name, (*e)->type()});
        seen.insert(k.name);
      }
      YAML::Node aggs = c["aggregates"];
      if (!aggs || !aggs.IsSequence() || aggs.size() == 0) {
        return ec.At(aggs ? aggs : c, "aggregate needs 'aggregates': a list of {fn, field, as}");
      }
      for (const auto& a : aggs) {
        if (!a.IsMap()) return ec.At(a, "an aggregate must be {fn, field, as}");
        SLUICE_ASSIGN_OR_RETURN(std::string fn, GetString(ec, a, "fn", true));
        SLUICE_ASSIGN_OR_RETURN(std::string field, GetString(ec, a, "field", fn != "count"));
        SLUICE_ASSIGN_OR_RETURN(std::string as, GetString(ec, a, "as", false));
        if (as.empty()) as = field.empty() ? fn : absl::StrCat(fn, "_", field);
        FieldType in_type = FieldType::kInt64;
        if (!field.empty()) {
          int idx = op.input_schema.IndexOf(field);
          if (idx < 0) {
            return ec.At(a["field"], absl::StrCat("unknown field '", field, "' (input has ",
                                                  op.input_schema.ToString(), ")"));
          }
          in_type = op.input_schema.field(idx).type;
        }
        FieldType out_type;
        if (fn == "count") {
          out_type = FieldType::kInt64;
        } else if (fn == "sum" || fn == "min" || fn == "max" || fn == "avg") {
          if (!IsNumeric(in_type)) {
            return ec.At(a["field"], absl::StrCat(fn, " needs a numeric field; '", field,
                                                  "' is ", FieldTypeName(in_type)));
          }
          out_type = fn == "avg" ? FieldType::kDouble
                     : fn == "sum" && in_type == FieldType::kTimestamp ? FieldType::kInt64
                                                                       : in_type;
        } else {
          return ec.At(a["fn"], absl::StrCat("unknown aggregate function '", fn,
                                             "' (expected count, sum, min, max, avg)"));
        }
        if (!seen.insert(as).second) return ec.At(a, absl::StrCat("duplicate output field '", as, "'"));
        out.push_back({as, out_type});
      }
      if (c["ttl"]) {
        SLUICE_ASSIGN_OR_RETURN(int64_t ttl, GetDuration(ec, c, "ttl", 0));
        (void)ttl;
      }
      if (c["emit"]) {
        const std::string emit = c["emit"].Scalar();
        if (emit != "updates" && emit != "final") {
          return ec.At(c["emit"], "'emit' must be 'updates' or 'final'");
        }
      }
      op.output_schema = Schema(std::move(out));
      return absl::OkStatus();
    }
    case OperatorKind::kUnion: {
      for (const InputSpec& in : op.inputs) {
        const Schema& s = ops[in.from_index].output_schema;
        if (s != op.input_schema) {
          return ec.AtPos(in.line, in.column,
                          absl::StrCat("union inputs must have the same schema: '", in.from,
                                       "' has ", s.ToString(), ", '", op.inputs[0].from,
                                       "' has ", op.input_schema.ToString()));
        }
      }
      op.output_schema = op.input_schema;
      return absl::OkStatus();
    }
    case OperatorKind::kFileSink: {
      SLUICE_ASSIGN_OR_RETURN(std::string path, GetString(ec, c, "path", true));
      if (path.empty()) return ec.At(c["path"], "'path' must not be empty");
      return absl::OkStatus();
    }
    case OperatorKind::kKafkaSink: {
      SLUICE_ASSIGN_OR_RETURN(std::string bootstrap, GetString(ec, c, "bootstrap", true));
      SLUICE_ASSIGN_OR_RETURN(std::string topic, GetString(ec, c, "topic", true));
      SLUICE_ASSIGN_OR_RETURN(std::string format, GetString(ec, c, "format", false));
      if (!format.empty() && format != "json" && format != "csv" && format != "raw") {
        return ec.At(c["format"], absl::StrCat("unknown format '", format, "' (expected json, csv or raw)"));
      }
      if (format == "raw") {
        int v = op.input_schema.IndexOf("value");
        if (v < 0 || op.input_schema.field(v).type != FieldType::kString) {
          return ec.At(c["format"], absl::StrCat("format raw writes the string field 'value', which input ",
                                                  op.input_schema.ToString(), " does not have"));
        }
      }
      if (YAML::Node k = c["key"]) {
        if (!k.IsSequence()) return ec.At(k, "'key' must be a list of field names");
        for (const auto& f : k) {
          if (!f.IsScalar() || op.input_schema.IndexOf(f.Scalar()) < 0) {
            return ec.At(f, absl::StrCat("key field '", f.IsScalar() ? f.Scalar() : "?",
                                         "' is not in the input ", op.input_schema.ToString()));
          }
        }
      }
      SLUICE_ASSIGN_OR_RETURN(std::string guarantee, GetString(ec, c, "guarantee", false));
      if (!guarantee.empty() && guarantee != "none" && guarantee != "at_least_once" && guarantee != "exactly_once") {
        return ec.At(c["guarantee"], absl::StrCat("unknown guarantee '", guarantee,
                                                  "' (expected none, at_least_once or exactly_once)"));
      }
      SLUICE_ASSIGN_OR_RETURN(int64_t tt, GetDuration(ec, c, "transaction_timeout", 900000));
      SLUICE_ASSIGN_OR_RETURN(int64_t ft, GetDuration(ec, c, "flush_timeout", 60000));
      if (tt <= 0) return ec.At(c["transaction_timeout"], "'transaction_timeout' must be positive");
      if (ft <= 0) return ec.At(c["flush_timeout"], "'flush_timeout' must be positive");
      SLUICE_ASSIGN_OR_RETURN(int64_t pool, GetInt(ec, c, "producer_pool_size", 5, 2, 64));
      SLUICE_ASSIGN_OR_RETURN(int64_t max_bytes, GetInt(ec, c, "max_transaction_bytes", 32 << 20, 1, 1 << 30));
      // Pending transactions travel in checkpoint acknowledgements (gRPC messages of at most
      // 256 MiB, with room left for the rest of the state).
      if (max_bytes * pool > (192 << 20)) {
        return ec.At(c["max_transaction_bytes"] ? c["max_transaction_bytes"] : c["producer_pool_size"],
                     absl::StrCat("max_transaction_bytes x producer_pool_size (", max_bytes, " x ", pool,
                                  ") must stay within 192 MiB: pending transactions travel in the checkpoint"));
      }
      if (YAML::Node prefix = c["transactional_id_prefix"]) {
        const std::string& v = prefix.Scalar();
        bool ok = !v.empty();
        for (char ch : v) ok &= absl::ascii_isalnum(ch) || ch == '.' || ch == '_' || ch == '-';
        if (!ok) return ec.At(prefix, "'transactional_id_prefix' may only hold letters, digits, '.', '_' and '-'");
      }
      SLUICE_RETURN_IF_ERROR(CheckKafkaProperties(ec, c));
      (void)bootstrap;
      (void)topic;
      (void)pool;
      return absl::OkStatus();
    }
    case OperatorKind::kPrintSink: return absl::OkStatus();
    case OperatorKind::kBlackholeSink: {
      SLUICE_ASSIGN_OR_RETURN(double r, GetDouble(ec, c, "max_rate", 0, 0));
      (void)r;
      return absl::OkStatus();
    }
  }
  return absl::OkStatus();
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

absl::Status ParseCheckpointAndRestart(const ErrorContext& ec, const YAML::Node& root, JobSpec* job) {
  if (YAML::Node c = root["checkpoint"]) {
    SLUICE_RETURN_IF_ERROR(
        CheckKeys(ec, c, "checkpoint", {"interval", "timeout", "min_pause", "retain", "tolerable_failures"}));
    if (!c["interval"]) {
      return ec.At(c, "checkpoint needs an 'interval' (at least 10ms; leave out the checkpoint "
                      "section to take no checkpoints)");
    }
    SLUICE_ASSIGN_OR_RETURN(job->checkpoint.interval_ms, GetDuration(ec, c, "interval", 0));
    SLUICE_ASSIGN_OR_RETURN(job->checkpoint.timeout_ms, GetDuration(ec, c, "timeout", 60000));
    SLUICE_ASSIGN_OR_RETURN(job->checkpoint.min_pause_ms, GetDuration(ec, c, "min_pause", 0));
    SLUICE_ASSIGN_OR_RETURN(int64_t retain, GetInt(ec, c, "retain", 3, 1, 1000));
    job->checkpoint.retain = static_cast<int>(retain);
    SLUICE_ASSIGN_OR_RETURN(int64_t tolerable, GetInt(ec, c, "tolerable_failures", 0, 0, 1000000));
    job->checkpoint.tolerable_failures = static_cast<int>(tolerable);
    if (job->checkpoint.interval_ms < kMinCheckpointIntervalMs) {
      return ec.At(c["interval"],
                   absl::StrCat("checkpoint interval must be at least ", kMinCheckpointIntervalMs,
                                "ms, got ", job->checkpoint.interval_ms,
                                "ms (leave out the checkpoint section to take no checkpoints)"));
    }
    if (job->checkpoint.timeout_ms <= 0) return ec.At(c["timeout"], "checkpoint timeout must be positive");
  }
  if (YAML::Node r = root["restart"]) {
    SLUICE_RETURN_IF_ERROR(CheckKeys(ec, r, "restart",
                                     {"strategy", "attempts", "delay", "initial_delay", "max_delay",
                                      "slot_wait_timeout"}));
    SLUICE_ASSIGN_OR_RETURN(std::string strategy, GetString(ec, r, "strategy", false));
    if (strategy.empty() || strategy == "fixed_delay") {
      job->restart.strategy = RestartConfig::Strategy::kFixedDelay;
    } else if (strategy == "exponential_backoff") {
      job->restart.strategy = RestartConfig::Strategy::kExponentialBackoff;
    } else if (strategy == "none") {
      job->restart.strategy = RestartConfig::Strategy::kNone;
    } else {
      return ec.At(r["strategy"], absl::StrCat("unknown restart strategy '", strategy,
                                               "' (expected fixed_delay, exponential_backoff or none)"));
    }
    SLUICE_ASSIGN_OR_RETURN(int64_t attempts, GetInt(ec, r, "attempts", 3, 0, 1000000));
    job->restart.attempts = static_cast<int>(attempts);
    SLUICE_ASSIGN_OR_RETURN(job->restart.delay_ms,
                            GetDuration(ec, r, r["initial_delay"] ? "initial_delay" : "delay", 1000));
    SLUICE_ASSIGN_OR_RETURN(job->restart.max_delay_ms, GetDuration(ec, r, "max_delay", 60000));
    SLUICE_ASSIGN_OR_RETURN(job->restart.slot_wait_timeout_ms,
                            GetDuration(ec, r, "slot_wait_timeout", job->restart.slot_wait_timeout_ms));
    if (job->restart.slot_wait_timeout_ms <= 0) {
      return ec.At(r["slot_wait_timeout"], "restart slot_wait_timeout must be positive");
    }
  }
  return absl::OkStatus();
}

// Length of the well-formed UTF-8 sequence that starts at text[i] (Unicode's table 3-7: no
// overlong forms, no surrogates, nothing above U+10FFFF), or 0 if there is none.
size_t Utf8SequenceLength(absl::string_view text, size_t i) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(text[k]); };
  const unsigned char c = byte(i);
  if (c < 0x80) return 1;
  size_t n = 0;
  unsigned char lo = 0x80, hi = 0xBF;  // range of the second byte
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  if (i + n > text.size() || byte(i + 1) < lo || byte(i + 1) > hi) return 0;
  for (size_t k = 2; k < n; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80) return 0;
  }
  return n;
}

}  // namespace

absl::Status CheckJobText(absl::string_view text, absl::string_view source_name) {
  ErrorContext ec(source_name);
  if (text.size() > kMaxJobFileBytes) {
    return ec.AtPos(0, 0, absl::StrCat("job file exceeds the limit of 1 MiB (", kMaxJobFileBytes,
                                       " bytes)"));
  }
  int line = 1;
  int column = 1;
  for (size_t i = 0; i < text.size();) {
    if (text[i] == '\0') return ec.AtPos(line, column, "NUL byte: a job file must be text");
    const size_t n = Utf8SequenceLength(text, i);
    if (n == 0) {
      return ec.AtPos(line, column,
                      absl::StrFormat("invalid UTF-8 (byte 0x%02x): a job file must be UTF-8 text",
                                      static_cast<unsigned char>(text[i])));
    }
    if (text[i] == '\n') {
      ++line;
      column = 1;
    } else {
      ++column;
    }
    i += n;
  }
  return absl::OkStatus();
}

absl::StatusOr<int64_t> ParseDurationMs(absl::string_view text) {
  std::string t(absl::StripAsciiWhitespace(text));
  size_t i = 0;
  while (i < t.size() && (absl::ascii_isdigit(t[i]) || t[i] == '.')) ++i;
  double v;
  if (i == 0 || !absl::SimpleAtod(t.substr(0, i), &v) || v < 0) {
    return absl::InvalidArgumentError(absl::StrCat("bad duration '", text, "' (use e.g. 500ms, 1s, 2m)"));
  }
  std::string unit = t.substr(i);
  double ms;
  if (unit.empty() || unit == "ms") ms = v;
  else if (unit == "s") ms = v * 1000;
  else if (unit == "m" || unit == "min") ms = v * 60000;
  else if (unit == "h") ms = v * 3600000;
  else return absl::InvalidArgumentError(absl::StrCat("bad duration unit '", unit, "' (ms, s, m or h)"));
  return static_cast<int64_t>(ms);
}

absl::StatusOr<JobSpec> ParseJobSpec(absl::string_view yaml_text, absl::string_view source_name,
                                     int parallelism_override) {
  SLUICE_RETURN_IF_ERROR(CheckJobText(yaml_text, source_name));
  ErrorContext ec(source_name);
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml_text));
  } catch (const YAML::Exception& e) {
    return ec.AtPos(e.mark.line + 1, e.mark.column + 1, absl::StrCat("invalid YAML: ", e.msg));
  }
  if (!root.IsMap()) return ec.AtPos(1, 1, "a job must be a YAML mapping with 'operators'");

  JobSpec job;
  job.source_name = std::string(source_name);
  static const std::set<std::string> kJobKeys = {"name", "parallelism", "max_parallelism",
                                                 "buffer_timeout_ms", "operators", "checkpoint",
                                                 "restart", "watermark_interval"};
  for (const auto& kv : root) {
    if (!kJobKeys.count(kv.first.Scalar())) {
      return ec.At(kv.first, absl::StrCat("unknown job key '", kv.first.Scalar(),
                                          "' (expected name, parallelism, max_parallelism, "
                                          "buffer_timeout_ms, watermark_interval, checkpoint, restart, "
                                          "operators)"));
    }
  }
  SLUICE_ASSIGN_OR_RETURN(job.name, GetString(ec, root, "name", false));
  if (job.name.empty()) job.name = "unnamed";
  SLUICE_ASSIGN_OR_RETURN(int64_t p, GetInt(ec, root, "parallelism", 1, 1, 1024));
  if (parallelism_override > 1024) {
    return ec.AtPos(0, 0, absl::StrCat("parallelism override must be between 1 and 1024, got ",
                                       parallelism_override));
  }
  job.parallelism = parallelism_override > 0 ? parallelism_override : static_cast<int>(p);
  SLUICE_ASSIGN_OR_RETURN(int64_t maxp, GetInt(ec, root, "max_parallelism", kDefaultMaxParallelism,
                                               1, kUpperMaxParallelism));
  job.max_parallelism = static_cast<int>(maxp);
  SLUICE_ASSIGN_OR_RETURN(job.buffer_timeout_ms, GetInt(ec, root, "buffer_timeout_ms", 10, 0, 60000));
  SLUICE_ASSIGN_OR_RETURN(job.watermark_interval_ms, GetDuration(ec, root, "watermark_interval", 200));
  if (job.watermark_interval_ms < 1 || job.watermark_interval_ms > 3600000) {
    return ec.At(root["watermark_interval"], "'watermark_interval' must be between 1ms and 1h");
  }

  SLUICE_RETURN_IF_ERROR(ParseCheckpointAndRestart(ec, root, &job));

  YAML::Node ops = root["operators"];
  if (!ops) return ec.AtPos(1, 1, "a job needs 'operators'");
  if (!ops.IsSequence() || ops.size() == 0) return ec.At(ops, "'operators' must be a non-empty list");

  // Pass 1: identity, type, options, parallelism, inputs.
  std::vector<OperatorSpec> specs;
  std::map<std::string, int> by_id;
  for (const auto& node : ops) {
    if (!node.IsMap()) return ec.At(node, "an operator must be a mapping with 'id' and 'type'");
    OperatorSpec op;
    op.index = static_cast<int>(specs.size());
    op.line = node.Mark().line + 1;
    op.column = node.Mark().column + 1;
    op.config = static_cast<const YAML::Node&>(node);
    SLUICE_ASSIGN_OR_RETURN(op.id, GetString(ec, node, "id", true));
    SLUICE_ASSIGN_OR_RETURN(op.type, GetString(ec, node, "type", true));
    if (!IsIdentifier(op.id)) {
      return ec.At(node["id"], absl::StrCat("operator id '", op.id,
                                            "' must be letters, digits and underscores"));
    }
    if (by_id.count(op.id)) return ec.At(node["id"], absl::StrCat("duplicate operator id '", op.id, "'"));
    const OperatorType* type = nullptr;
    for (const auto& t : OperatorTypes()) {
      if (op.type == t.name) type = &t;
    }
    if (type == nullptr) {
      return ec.At(node["type"], absl::StrCat("unknown operator type '", op.type,
                                              "' (known: ", KnownTypes(), ")"));
    }
    op.kind = type->kind;
    for (const auto& kv : node) {
      const std::string k = kv.first.Scalar();
      if (k == "id" || k == "type" || k == "parallelism" || k == "input" || k == "inputs") continue;
      if (std::find(type->keys.begin(), type->keys.end(), k) == type->keys.end()) {
        std::string expected = absl::StrJoin(type->keys, ", ");
        return ec.At(kv.first, absl::StrCat("unknown option '", k, "' for ", op.type, " operator '",
                                            op.id, "'",
                                            expected.empty() ? std::string(" (it takes none)")
                                                             : absl::StrCat(" (expected ", expected, ")")));
      }
    }
    SLUICE_ASSIGN_OR_RETURN(int64_t par, GetInt(ec, node, "parallelism", job.parallelism, 1, 1024));
    if (par > job.max_parallelism) {
      // The operator may inherit the job's parallelism and have no 'parallelism' key of its own.
      return ec.At(node["parallelism"] ? node["parallelism"] : node,
                   absl::StrCat("parallelism ", par, " exceeds max_parallelism ",
                                job.max_parallelism));
    }
    op.parallelism = static_cast<int>(par);
    SLUICE_RETURN_IF_ERROR(ParseInputs(ec, node, &op));
    // Default input: the previous operator in the list.
    if (op.inputs.empty() && type->min_inputs > 0) {
      if (specs.empty() || specs.back().is_sink()) {
        return ec.At(node, absl::StrCat(op.type, " operator '", op.id,
                                        "' needs an 'input' (no previous operator to read from)"));
      }
      InputSpec is;
      is.from = specs.back().id;
      is.line = op.line;
      is.column = op.column;
      op.inputs.push_back(is);
    }
    if (static_cast<int>(op.inputs.size()) < type->min_inputs ||
        static_cast<int>(op.inputs.size()) > type->max_inputs) {
      return ec.At(node, type->max_inputs == 0
                             ? absl::StrCat(op.type, " is a source and takes no input")
                             : absl::StrCat(op.type, " operator '", op.id, "' takes ",
                                            type->min_inputs == type->max_inputs
                                                ? absl::StrCat(type->min_inputs)
                                                : absl::StrCat(type->min_inputs, " to ", type->max_inputs),
                                            " input(s), got ", op.inputs.size()));
    }
    by_id[op.id] = op.index;
    specs.push_back(std::move(op));
  }

  // Pass 2: resolve references.
  for (auto& op : specs) {
    for (auto& in : op.inputs) {
      auto it = by_id.find(in.from);
      if (it == by_id.end()) {
        return ec.AtPos(in.line, in.column, absl::StrCat("operator '", op.id, "' reads from unknown operator '",
                                                         in.from, "'"));
      }
      in.from_index = it->second;
      if (in.from_index == op.index) {
        return ec.AtPos(in.line, in.column, absl::StrCat("operator '", op.id, "' reads from itself"));
      }
      if (specs[in.from_index].is_sink()) {
        return ec.AtPos(in.line, in.column, absl::StrCat("operator '", op.id, "' reads from sink '",
                                                         in.from, "', which has no output"));
      }
    }
  }

  // Pass 3: topological order (Kahn), reporting a cycle with its members.
  std::vector<int> indegree(specs.size());
  std::vector<std::vector<int>> consumers(specs.size());
  for (const auto& op : specs) {
    for (const auto& in : op.inputs) {
      indegree[op.index]++;
      consumers[in.from_index].push_back(op.index);
    }
  }
  std::vector<int> order;
  for (size_t i = 0; i < specs.size(); ++i) {
    if (indegree[i] == 0) order.push_back(static_cast<int>(i));
  }
  for (size_t head = 0; head < order.size(); ++head) {
    for (int c : consumers[order[head]]) {
      if (--indegree[c] == 0) order.push_back(c);
    }
  }
  if (order.size() != specs.size()) {
    std::vector<std::string> members;
    int first = -1;
    for (size_t i = 0; i < specs.size(); ++i) {
      if (indegree[i] > 0) {
        members.push_back(specs[i].id);
        if (first < 0) first = static_cast<int>(i);
      }
    }
    return ec.AtPos(specs[first].line, specs[first].column,
                    absl::StrCat("the job graph has a cycle through operators ",
                                 absl::StrJoin(members, ", ")));
  }

  // Pass 4: schemas and options, in topological order.
  for (int idx : order) {
    OperatorSpec& op = specs[idx];
    if (!op.inputs.empty()) op.input_schema = specs[op.inputs[0].from_index].output_schema;
    for (auto& in : op.inputs) {
      const OperatorSpec& producer = specs[in.from_index];
      if (!in.explicit_partition) {
        if (producer.kind == OperatorKind::kKeyBy) {
          in.partition = Partition::kHash;
          in.key = producer.key;
        } else {
          in.partition = producer.parallelism == op.parallelism ? Partition::kForward
                                                                : Partition::kRebalance;
        }
      } else if (in.partition == Partition::kHash && in.key.empty()) {
        // Find the YAML node of this input again to compile its key with position.
        YAML::Node inputs = op.config["input"] ? op.config["input"] : op.config["inputs"];
        YAML::Node item = inputs.IsSequence() ? YAML::Node() : inputs;
        if (inputs.IsSequence()) {
          for (const auto& i : inputs) {
            if (i.IsMap() && i["from"] && i["from"].Scalar() == in.from) item = static_cast<const YAML::Node&>(i);
          }
        }
        SLUICE_ASSIGN_OR_RETURN(in.key, ParseKey(ec, item["key"], producer.output_schema));
      }
      if (in.partition == Partition::kForward && producer.parallelism != op.parallelism) {
        return ec.AtPos(in.line, in.column,
                        absl::StrCat("forward edge from '", producer.id, "' (parallelism ",
                                     producer.parallelism, ") to '", op.id, "' (parallelism ",
                                     op.parallelism, ") needs equal parallelism; use rebalance or hash"));
      }
    }
    SLUICE_RETURN_IF_ERROR(CheckOperator(ec, specs, op));
  }

  // Keep operators in topological order; re-number indices and references.
  std::vector<int> new_index(specs.size());
  for (size_t i = 0; i < order.size(); ++i) new_index[order[i]] = static_cast<int>(i);
  for (int idx : order) {
    OperatorSpec op = specs[idx];
    op.index = new_index[idx];
    for (auto& in : op.inputs) in.from_index = new_index[in.from_index];
    job.operators.push_back(std::move(op));
  }
  bool has_sink = false;
  for (const auto& op : job.operators) has_sink |= op.is_sink();
  if (!has_sink) return ec.AtPos(1, 1, "the job has no sink (file, kafka_sink, print or blackhole)");
  for (const auto& op : job.operators) {
    if (op.kind != OperatorKind::kKafkaSink || !op.config["guarantee"] ||
        op.config["guarantee"].Scalar() != "exactly_once") {
      continue;
    }
    if (!job.checkpoint.enabled()) {
      return ec.At(op.config["guarantee"],
                   "guarantee exactly_once commits a Kafka transaction per checkpoint: enable checkpoints "
                   "(checkpoint: {interval: ...})");
    }
    // Flink's known trap: a transaction that outlives transaction.timeout.ms is aborted by the
    // broker, and its records are silently lost.
    int64_t budget = 0;
    if (job.restart.strategy != RestartConfig::Strategy::kNone) {
      for (int i = 1; i <= job.restart.attempts && i <= 10000; ++i) budget += job.restart.DelayFor(i);
    }
    int64_t timeout = op.config["transaction_timeout"] ? *ParseDurationMs(op.config["transaction_timeout"].Scalar()) : 900000;
    if (timeout < job.checkpoint.interval_ms + budget) {
      job.warnings.push_back(absl::StrCat(
          "operator '", op.id, "': transaction_timeout ", timeout, " ms is shorter than the checkpoint interval (",
          job.checkpoint.interval_ms, " ms) plus the restart budget (", budget,
          " ms): a transaction still open when the broker's timeout hits is aborted and its records are lost"));
    }
  }
  return job;
}

}  // namespace sluice::plan
