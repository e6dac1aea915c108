#include "connectors/kafka_source_options.h"

#include <set>

#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace sluice::connectors {
namespace {

using Options = KafkaSourceOptions;

absl::StatusOr<Options> Parse(const YAML::Node& c, const plan::ParseContext& ctx) {
  const plan::ErrorContext& ec = ctx.errors();
  Options o;
  SLUICE_ASSIGN_OR_RETURN(o.bootstrap, plan::GetString(ec, c, "bootstrap", true));
  SLUICE_ASSIGN_OR_RETURN(o.properties, plan::ParseProperties(ec, c));
  if (c["topic"] && c["topics"]) return ctx.At(c["topics"], "give either 'topic' or 'topics', not both");
  if (YAML::Node ts = c["topics"]) {
    if (!ts.IsSequence() || ts.size() == 0) return ctx.At(ts, "'topics' must be a non-empty list of topic names");
    std::set<std::string> seen;
    for (const auto& t : ts) {
      if (!t.IsScalar() || t.Scalar().empty() || t.Scalar().find(':') != std::string::npos) {
        return ctx.At(t, "a topic name must be a non-empty string without ':'");
      }
      if (!seen.insert(t.Scalar()).second) return ctx.At(t, absl::StrCat("topic '", t.Scalar(), "' is listed twice"));
      o.topics.push_back(t.Scalar());
    }
  } else {
    SLUICE_ASSIGN_OR_RETURN(std::string topic, plan::GetString(ec, c, "topic", true));
    o.topics.push_back(std::move(topic));
  }
  SLUICE_ASSIGN_OR_RETURN(std::string format, plan::GetString(ec, c, "format", false));
  if (format.empty() || format == "json") {
    o.format = Options::Format::kJson;
  } else if (format == "csv") {
    o.format = Options::Format::kCsv;
  } else if (format == "raw") {
    o.format = Options::Format::kRaw;
  } else {
    return ctx.At(c["format"], absl::StrCat("unknown format '", format, "' (expected json, csv or raw)"));
  }
  SLUICE_ASSIGN_OR_RETURN(std::string start, plan::GetString(ec, c, "start", false));
  if (start.empty() || start == "earliest") {
    o.start = Options::Start::kEarliest;
  } else if (start == "latest") {
    o.start = Options::Start::kLatest;
  } else if (start == "committed") {
    o.start = Options::Start::kCommitted;
  } else {
    return ctx.At(c["start"], absl::StrCat("unknown start '", start,
                                           "' (expected earliest, latest or committed; the embedded "
                                           "endpoint cannot look up offsets by timestamp)"));
  }
  SLUICE_ASSIGN_OR_RETURN(o.group, plan::GetString(ec, c, "group", false));
  SLUICE_ASSIGN_OR_RETURN(std::string on_error, plan::GetString(ec, c, "on_error", false));
  if (on_error.empty() || on_error == "fail") {
    o.on_error = Options::OnError::kFail;
  } else if (on_error == "skip") {
    o.on_error = Options::OnError::kSkip;
  } else if (on_error == "dead_letter") {
    o.on_error = Options::OnError::kDeadLetter;
  } else {
    return ctx.At(c["on_error"], absl::StrCat("unknown on_error '", on_error,
                                              "' (expected fail, skip or dead_letter)"));
  }
  if (o.on_error == Options::OnError::kDeadLetter && !c["dead_letter_topic"]) {
    return ctx.At(c["on_error"], "on_error: dead_letter needs a 'dead_letter_topic'");
  }
  SLUICE_ASSIGN_OR_RETURN(o.dead_letter_topic, plan::GetString(ec, c, "dead_letter_topic", false));
  SLUICE_ASSIGN_OR_RETURN(o.bounded, plan::GetBool(ec, c, "bounded", false));
  SLUICE_ASSIGN_OR_RETURN(int64_t discovery, plan::GetDuration(ec, c, "partition_discovery", 0));
  if (o.bounded && discovery > 0) {
    return ctx.At(c["partition_discovery"],
                  "a bounded kafka source reads the partitions that exist at start; remove "
                  "partition_discovery (or set it to 0)");
  }
  if (c["partition_discovery"]) o.partition_discovery_ms = discovery;
  if (o.format == Options::Format::kRaw) {
    if (c["fields"]) return ctx.At(c["fields"], "format raw has fixed fields (key, value)");
    o.schema = Schema({{"key", FieldType::kString}, {"value", FieldType::kString}});
  } else {
    YAML::Node fields = c["fields"];
    if (!fields || !fields.IsSequence() || fields.size() == 0) {
      return ctx.At(fields ? fields : c, "kafka with format json or csv needs 'fields': a list of {name, type}");
    }
    std::vector<Field> out;
    std::set<std::string> seen;
    for (const auto& f : fields) {
      if (!f.IsMap()) return ctx.At(f, "a field must be {name, type}");
      SLUICE_ASSIGN_OR_RETURN(std::string name, plan::GetString(ec, f, "name", true));
      SLUICE_ASSIGN_OR_RETURN(std::string type_name, plan::GetString(ec, f, "type", true));
      auto type = ParseFieldType(type_name);
      if (!type.ok()) return ctx.At(f["type"], type.status().message());
      if (!seen.insert(name).second) return ctx.At(f, absl::StrCat("duplicate field '", name, "'"));
      out.push_back({name, *type});
    }
    o.schema = Schema(std::move(out));
  }
  SLUICE_ASSIGN_OR_RETURN(o.event_time, plan::ParseEventTime(ec, c, &o.schema, /*kafka=*/true));
  return o;
}

Schema Infer(const Options& o, const plan::ParseContext&) { return o.schema; }

}  // namespace

std::unique_ptr<plan::OperatorType> MakeKafkaSourceType() {
  plan::OperatorTraits t;
  t.name = "kafka";
  t.inputs = plan::InputArity::kSource;
  t.option_keys = {"bootstrap", "topic", "topics", "format", "fields", "start", "group", "bounded",
                   "on_error", "dead_letter_topic", "event_time", "partition_discovery", "properties"};
  return std::make_unique<plan::TypedOperatorType<Options>>(std::move(t), &Parse, &Infer);
}

}  // namespace sluice::connectors
