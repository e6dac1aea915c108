#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "plan/operator_type.h"
#include "sdk/host/plugin_types.h"

namespace sluice::plugin {

// Validating a job's plugin operators in a helper process (`sluice-plugin-host validate`), so
// that no plugin code runs in the caller (the coordinator): a plugin that crashes or hangs in
// its load, validate or output_schema hooks costs the helper, not the coordinator.
//
// The helper plans the whole job (the producers' schemas are the inputs of output_schema
// hooks) with the built-in types and the plugins loaded in its own process, then prints a
// report (one JSON object on stdout): the plugin types the job may use and, per plugin
// operator, the options its hooks accepted (PluginOptions), the plugins' aggregate functions
// with their result type per input type, or the planner's error (code and message, with the
// job file position: an unknown aggregate function or one refusing its field's type is
// reported at the aggregate's line). The caller turns the report into catalog entries that
// hand back those options, and plans the job again with them: the same JobSpec as planning with
// the plugins loaded, without loading them.

// What the helper reports for a job that plans.
struct ValidatedPlugins {
  struct Type {
    plan::OperatorTraits traits;
    std::string plugin;  // the plugin file
  };
  std::vector<Type> types;
  std::map<std::string, std::shared_ptr<const PluginOptions>> options;  // by operator id
  // The plugins' aggregate functions (ABI 1.2) and, per input field type (FieldType order), the
  // result type they give or the reason they refuse it.
  struct AggregateFunction {
    std::string name;
    std::string origin;  // "plugin 'p' 1.0.0 (/path/libp.so)"
    uint32_t accumulator_version = 0;
    int result_types[5] = {-1, -1, -1, -1, -1};  // a FieldType, or -1: refused
    std::string refusals[5];
  };
  std::vector<AggregateFunction> aggregate_functions;
};

// Helper side: plans `yaml` (its file name `source_name`, for positions) at `parallelism` with
// `catalog` plus the plugins of `plugin_dir` and of the job, loaded in this process, and returns
// the report. Before loading plugins and before each plugin hook it writes what it is about to
// do to `progress` as a line "at: ..." (flushed), so that a caller can tell which plugin a
// crash or hang happened in.
std::string ValidationReport(const std::string& yaml, const std::string& source_name, int parallelism,
                             const std::string& plugin_dir, plan::OperatorTypeCatalog catalog,
                             std::FILE* progress);

struct HelperOptions {
  // The helper binary; "" = sluice-plugin-host beside this process's executable.
  std::string path;
  std::string plugin_dir;
  int64_t timeout_ms = 10'000;
};

// Caller side: runs the helper on the job and parses its report. Returns the planner's error as
// the helper reports it (code and message, e.g. kInvalidArgument "job.yaml:7:5: ..." for options
// a plugin refused), or kInvalidArgument naming the plugin file(s) when the helper crashed
// ("... was killed by signal 6 (Aborted) while running validate of operator 'x' (type 't') in
// /p/libx.so"), did not answer within the timeout (it is killed), or printed no report;
// kUnavailable when the helper cannot be started.
absl::StatusOr<ValidatedPlugins> ValidateInHelper(const std::string& yaml, const std::string& source_name,
                                                  int parallelism, const HelperOptions& options);

// Adds an entry per reported type to `catalog`: its ParseOptions() returns the reported options
// of the operator (by id; kInternal for one the helper did not report), InferSchema() their
// output schema; and per reported aggregate function an entry that plans (result types) but
// does not run. kInvalidArgument for a type or function name that is taken.
absl::Status AddValidatedPluginTypes(const ValidatedPlugins& validated, plan::OperatorTypeCatalog* catalog);

}  // namespace sluice::plugin
