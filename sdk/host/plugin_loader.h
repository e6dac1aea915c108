#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "common/record.h"
#include "sluice/plugin.h"

namespace sluice::plugin {

// An ABI version: a plugin loads when the majors are equal and plugin minor <= host minor.
struct AbiVersion {
  uint32_t major = SLUICE_ABI_MAJOR;
  uint32_t minor = SLUICE_ABI_MINOR;
};
inline constexpr AbiVersion kHostAbi{SLUICE_ABI_MAJOR, SLUICE_ABI_MINOR};

// One option of a plugin operator type, as the plugin describes it (ABI 1.1 and later).
struct PluginOptionInfo {
  std::string name;
  std::string type;
  bool required = false;
  std::string default_value;
  std::string description;
};

// One operator type of a loaded plugin, checked at load (name, create, release present).
struct PluginOperatorType {
  std::string name;
  std::string description;
  bool keyed = false;
  int num_inputs = 1;  // 1, or 2 (plugins of ABI 1.1 and later)
  bool options_described = false;        // the plugin describes its options (ABI 1.1)
  std::vector<PluginOptionInfo> options;  // in the plugin's order
  const sluice_operator_type* abi = nullptr;  // static in the plugin
};

// One aggregate function of a loaded plugin (ABI 1.2), checked at load (name, every hook).
struct PluginAggregateFunctionInfo {
  std::string name;
  std::string description;
  const sluice_aggregate_function* abi = nullptr;  // static in the plugin
};

// A plugin loaded into this process. Never unloaded: it lives as long as the process, and so
// do the pointers into it. Immutable after load; thread-safe to read.
struct LoadedPlugin {
  std::string path;  // as given to Load()
  std::string name;
  std::string version;
  AbiVersion abi;
  const sluice_plugin* descriptor = nullptr;
  std::vector<PluginOperatorType> types;
  std::vector<PluginAggregateFunctionInfo> aggregate_functions;  // ABI 1.2

  // The type called `name`, or null.
  const PluginOperatorType* FindType(absl::string_view name) const;
};

// Loads plugins with dlopen(RTLD_NOW | RTLD_LOCAL), once per path, and never unloads them.
// Checks the ABI version and the struct sizes before using anything else from a plugin.
// Thread-safe.
class PluginLoader {
 public:
  // `host` is the ABI this process speaks; tests pass other versions.
  explicit PluginLoader(AbiVersion host = kHostAbi) : host_(host) {}
  PluginLoader(const PluginLoader&) = delete;
  PluginLoader& operator=(const PluginLoader&) = delete;

  // The process-wide loader (host ABI kHostAbi).
  static PluginLoader* Default();

  // Loads the plugin at `path` (or returns the one loaded before from the same path).
  // Returns:
  //   kNotFound            the file does not exist;
  //   kFailedPrecondition  dlopen failed (not a shared library, undefined symbols), no entry
  //                        point sluice_plugin_init_v1, an ABI version this host cannot load,
  //                        a malformed descriptor or operator type (one with other than 1 or 2
  //                        inputs, or 2 inputs in an ABI 1.0 plugin), a malformed aggregate
  //                        function (no name, a name twice, a hook missing), or the entry
  //                        point failed.
  // Every message names the file; version errors name both versions and the remedy.
  absl::StatusOr<const LoadedPlugin*> Load(const std::string& path) ABSL_LOCKS_EXCLUDED(mu_);

  AbiVersion host_abi() const { return host_; }

 private:
  const AbiVersion host_;
  absl::Mutex mu_;
  std::map<std::string, std::unique_ptr<LoadedPlugin>> loaded_ ABSL_GUARDED_BY(mu_);
};

// Checks a descriptor returned by a plugin's entry point and fills `out` (path already set).
// Exposed for tests; Load() calls it.
absl::Status CheckDescriptor(const sluice_plugin* d, AbiVersion host, LoadedPlugin* out);

// "plugin 'name' 1.2.0 (/path/libx.so)", for messages.
std::string Describe(const LoadedPlugin& plugin);

// Type-level hooks, run at job submission (any thread).

// Runs the type's validate hook on `options_json`. On refusal returns kInvalidArgument
// "<where>: operator type 'T' of plugin 'P' (PATH) refused its options: <plugin's message>";
// `where` is the job file position ("job.yaml:12:5") or empty.
absl::Status ValidateOptions(const LoadedPlugin& plugin, const PluginOperatorType& type,
                             absl::string_view options_json, absl::string_view where);

// The output schema the type gives for `input` and `options_json` (the input schema when the
// plugin has no output_schema hook). kInvalidArgument with the plugin's message and `where`
// when it refuses, or when it names a field twice or gives an unknown type.
absl::StatusOr<Schema> OutputSchema(const LoadedPlugin& plugin, const PluginOperatorType& type,
                                    const Schema& input, absl::string_view options_json,
                                    absl::string_view where);
// The same for a type with several inputs (one schema per input, in input order): the type's
// output_schema_inputs hook (ABI 1.1) when it has one, else output_schema on inputs[0], else
// inputs[0]. kInvalidArgument also when inputs.size() is not the type's number of inputs.
absl::StatusOr<Schema> OutputSchema(const LoadedPlugin& plugin, const PluginOperatorType& type,
                                    const std::vector<Schema>& inputs, absl::string_view options_json,
                                    absl::string_view where);

// A host-owned sluice_error that copies the message set on it.
class ErrorSink {
 public:
  ErrorSink();
  ErrorSink(const ErrorSink&) = delete;
  ErrorSink& operator=(const ErrorSink&) = delete;
  sluice_error* get() { return &abi_; }
  const std::string& message() const { return message_; }
  void Clear() { message_.clear(); }

 private:
  static void SetMessage(sluice_error* self, const char* data, size_t size);
  sluice_error abi_;
  std::string message_;
};

// Field types between the engine and the ABI (same numbering, checked).
sluice_field_type ToAbi(FieldType t);
absl::StatusOr<FieldType> FromAbi(sluice_field_type t);

// A Schema laid out as a sluice_schema whose strings point into `schema` (which must
// outlive it).
class AbiSchema {
 public:
  AbiSchema() = default;
  explicit AbiSchema(const Schema& schema);
  AbiSchema(const AbiSchema&) = delete;
  AbiSchema& operator=(const AbiSchema&) = delete;
  const sluice_schema* get() const { return &abi_; }

 private:
  std::vector<sluice_field> fields_;
  sluice_schema abi_{nullptr, 0};
};

}  // namespace sluice::plugin
