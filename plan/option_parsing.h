#pragma once

// Helpers for operator types' options parsers (and the job parser): typed getters that report
// errors at the YAML node's position, expression compilation with positioned errors, keys,
// field lists and event time. Every error is kInvalidArgument "<file>:<line>:<column>: reason".

#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/record.h"
#include "plan/expr.h"
#include "plan/operator_type.h"
#include "yaml-cpp/yaml.h"

namespace sluice::plan {

// Builds positioned errors: "<file>:<line>:<col>: reason", capped (CapText) since a reason may
// quote the job's text.
class ErrorContext {
 public:
  explicit ErrorContext(absl::string_view source) : source_(source) {}
  absl::Status At(const YAML::Node& node, absl::string_view reason) const;
  // line <= 0: "<file>: reason".
  absl::Status AtPos(int line, int column, absl::string_view reason) const;

 private:
  std::string source_;
};

// A source's `event_time` option: where records' event time comes from and how watermarks
// are generated (bounded out-of-orderness per split, with idleness).
//   event_time: {field: ts, max_out_of_orderness: 2s, idle_timeout: 30s}
//   event_time: {kafka_timestamp: ts, ...}   # kafka only: adds timestamp field `ts`
struct EventTimeSpec {
  std::string field;                  // the timestamp (or int64) field, in ms since the epoch
  int field_index = -1;               // its index in the source's output schema
  bool from_kafka_timestamp = false;  // `field` is added and filled from the message timestamp
  int64_t max_out_of_orderness_ms = 0;
  int64_t idle_timeout_ms = 0;        // 0: a split without records never turns idle
};

bool IsIdentifier(absl::string_view s);
// Identifiers joined by dots (`left.amount`): names an expression reads as one field name.
bool IsDottedIdentifier(absl::string_view s);
// Whether a value of type `from` may be stored in a field of type `to`.
bool Assignable(FieldType from, FieldType to);

// `parent[key]` as a string; "" when absent and not required.
absl::StatusOr<std::string> GetString(const ErrorContext& ec, const YAML::Node& parent,
                                      const char* key, bool required);
absl::StatusOr<int64_t> GetInt(const ErrorContext& ec, const YAML::Node& parent, const char* key,
                               int64_t default_value, int64_t min, int64_t max);
absl::StatusOr<double> GetDouble(const ErrorContext& ec, const YAML::Node& parent, const char* key,
                                 double default_value, double min);
absl::StatusOr<bool> GetBool(const ErrorContext& ec, const YAML::Node& parent, const char* key,
                             bool default_value);
// A duration ("500ms", "1s", ...; see ParseDurationMs) in milliseconds.
absl::StatusOr<int64_t> GetDuration(const ErrorContext& ec, const YAML::Node& parent,
                                    const char* key, int64_t default_value);
// `node` must be a mapping whose keys are all in `allowed` (`what` names it in errors).
absl::Status CheckKeys(const ErrorContext& ec, const YAML::Node& node, const char* what,
                       const std::set<std::string>& allowed);

// Compiles `text` against `schema`, positioning expression errors at `node` and quoting an
// excerpt of the expression around the error.
absl::StatusOr<std::unique_ptr<Expr>> CompileAt(const ErrorContext& ec, const YAML::Node& node,
                                                const std::string& text, const Schema& schema);

// A `key` option: a field name, an expression or a list of them ({name, expr} entries too),
// each compiled against `input`. A key that may be null is refused (as Flink's keyBy refuses
// null keys), at its position.
absl::StatusOr<std::vector<KeySpec>> ParseKey(const ErrorContext& ec, const YAML::Node& node,
                                              const Schema& input);

// A source's `event_time` option (absent: nullopt) against its output schema `*schema`. With
// `kafka`, `kafka_timestamp: NAME` appends a timestamp field NAME to `*schema`.
absl::StatusOr<std::optional<EventTimeSpec>> ParseEventTime(const ErrorContext& ec,
                                                            const YAML::Node& config,
                                                            Schema* schema, bool kafka);

// A `properties` option: a mapping of librdkafka settings (checked by librdkafka when the
// client starts), in the order written.
absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ParseProperties(
    const ErrorContext& ec, const YAML::Node& config);

// An aggregate `{fn, field, as}` whose `fn` is no built-in: the catalog's function of that name
// (a plugin's) applied to input field `field` (index `field_index`, -1 when not given), and its
// result type in *result_type. Errors at `aggregate`'s position: an unknown function (naming
// `builtins` and the catalog's functions), a missing field, or an input type the function
// refuses (with its reason).
absl::StatusOr<std::shared_ptr<const AggregateFunction>> ResolveAggregateFunction(
    const ParseContext& ctx, const YAML::Node& aggregate, const std::string& fn,
    const std::string& field, int field_index, absl::string_view builtins, FieldType* result_type);

}  // namespace sluice::plan
