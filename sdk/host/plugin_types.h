#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/record.h"
#include "plan/job_spec.h"
#include "plan/operator_type.h"
#include "sdk/host/plugin_loader.h"

namespace sluice::plugin {

// The options of a plugin operator as the catalog keeps them: the operator's YAML mapping
// without the engine's keys, as JSON (OptionsJson), made and validated once at submission by
// the plugin's validate hook, and the output schema its output_schema hook gave.
struct PluginOptions final : plan::OptionsOf<PluginOptions> {
  std::string json;
  Schema output_schema;
  Schema second_input_schema;  // two-input types: input 1's (OperatorSpec has input 0's)
};

// One operator type of a loaded plugin as a catalog entry (plan/operator_type.h): its traits
// come from the plugin (inputs, keyed; any option key, since the plugin's validate hook
// refuses unknown ones), ParseOptions() runs the plugin's validate and output_schema hooks
// with the operator's file position. A keyed two-input type needs both inputs keyed by keys of
// as many components (input 1 read with partition: hash and a key). `plugin` and `type` live for the process (plugins are
// never unloaded). Immutable; thread-safe.
class PluginOperatorTypeEntry final : public plan::OperatorType {
 public:
  PluginOperatorTypeEntry(const LoadedPlugin* plugin, const PluginOperatorType* type);

  absl::StatusOr<std::shared_ptr<const plan::OperatorOptions>> ParseOptions(
      const YAML::Node& config, const plan::ParseContext& ctx) const override;
  Schema InferSchema(const plan::OperatorOptions& options, const plan::ParseContext& ctx) const override;

  const LoadedPlugin& plugin() const { return *plugin_; }
  const PluginOperatorType& type() const { return *type_; }

 private:
  const LoadedPlugin* const plugin_;
  const PluginOperatorType* const type_;
};

// A plugin's aggregate function (ABI 1.2) as the catalog keeps it: runs the plugin's hooks, an
// accumulator being a std::string the hooks read and resize in place (no allocation once it
// has grown). Any thread, concurrently (the hooks keep no state). A failing hook is
// kInvalidArgument (result_type: the input type is refused) or the hook's code, with
// "aggregate function 'f' of plugin ...: <the plugin's message>".
class PluginAggregateFunction final : public plan::AggregateFunction {
 public:
  PluginAggregateFunction(const LoadedPlugin* plugin, const PluginAggregateFunctionInfo* fn);

  const std::string& name() const override { return fn_->name; }
  const std::string& origin() const override { return origin_; }
  absl::StatusOr<FieldType> ResultType(FieldType in) const override;
  bool Runnable() const override { return true; }
  uint32_t AccumulatorVersion() const override { return fn_->abi->accumulator_version; }
  absl::Status Create(FieldType in, std::string* acc) const override;
  absl::Status Add(FieldType in, const Value& v, std::string* acc) const override;
  absl::Status Merge(FieldType in, absl::string_view other, std::string* acc) const override;
  absl::Status Result(FieldType in, absl::string_view acc, Value* out, bool* is_null) const override;

 private:
  absl::Status Failed(sluice_status code, const char* hook, const std::string& message) const;

  static constexpr int kFieldTypes = 5;  // int64, double, string, bool, timestamp
  const PluginAggregateFunctionInfo* const fn_;
  const std::string origin_;  // Describe(plugin)
  int result_types_[kFieldTypes];  // by input type: the result type, or -1 (refused)
};

// Adds the aggregate functions of `plugins` through `add` (OperatorTypeCatalog::
// AddAggregateFunction, or a registry's), each plugin once. kInvalidArgument for a name that is
// taken ("aggregate function 'x' of plugin 'p' 1.0.0 (/path) is already registered") or that
// is a built-in's (count, sum, min, max, avg, first, last, count_distinct).
using AddAggregateFn = std::function<absl::Status(std::shared_ptr<const plan::AggregateFunction> fn)>;
absl::Status AddPluginAggregateFunctions(const std::vector<const LoadedPlugin*>& plugins,
                                         const AddAggregateFn& add);

// Loads every regular file ending in ".so" in `dir` (in name order). An empty `dir` loads
// nothing. kNotFound when `dir` is not a readable directory; a file that does not load fails
// the whole call with the loader's reason (which names the file).
absl::StatusOr<std::vector<const LoadedPlugin*>> LoadPluginDir(PluginLoader* loader, const std::string& dir);

// Loads the plugins a job names. A plugin that does not load is kInvalidArgument
// "<source_name>:<line>:<column>: <the loader's reason>" (the reason names the file and, for a
// version mismatch, both ABI versions).
absl::StatusOr<std::vector<const LoadedPlugin*>> LoadJobPlugins(PluginLoader* loader,
                                                                const std::vector<plan::PluginRef>& refs,
                                                                absl::string_view source_name);

// Adds the operator types of `plugins` through `add` (OperatorTypeCatalog::Add, or a registry's
// Register with a factory). A plugin listed twice (the same file in --plugin-dir and in the job)
// is added once. A type name that is taken (a built-in, or another plugin's) is
// kInvalidArgument "operator type 'x' of plugin 'p' 1.0.0 (/path) is already registered".
using AddTypeFn = std::function<absl::Status(const LoadedPlugin& plugin, const PluginOperatorType& type)>;
absl::Status AddPluginTypes(const std::vector<const LoadedPlugin*>& plugins, const AddTypeFn& add);

// The catalog entry of every type and aggregate function of `plugins` added to `catalog`
// (AddPluginTypes, AddPluginAggregateFunctions).
absl::Status AddPluginTypesToCatalog(const std::vector<const LoadedPlugin*>& plugins,
                                     plan::OperatorTypeCatalog* catalog);

}  // namespace sluice::plugin
