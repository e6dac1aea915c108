#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "sdk/host/plugin_loader.h"

namespace sluice::cli {

// `sluice plugin check` and `sluice plugin new`: tools for plugin authors. They run in the CLI
// process only (no cluster). Not thread-safe concerns: plain functions.

// Loads the plugin at `path` through `loader` (the host's version and struct checks) and
// describes it: name, version, ABI version, file, then each operator type with its inputs,
// keyed flag, description and options (when the plugin describes them, ABI 1.1). Returns the
// loader's status (kNotFound, kFailedPrecondition with its message) when it cannot load.
absl::StatusOr<std::string> CheckPlugin(plugin::PluginLoader& loader, const std::string& path);

// The text CheckPlugin prints for an already loaded plugin.
std::string DescribePlugin(const plugin::LoadedPlugin& plugin);

// Writes a ready plugin project named `name` into directory `dir` (created; it must not
// exist or be empty): CMakeLists.txt (find_package(Sluice 1.<this ABI minor> CONFIG REQUIRED) +
// sluice_add_plugin), `<name>.cc` with one operator type `<name>`, and `<name>_test.cc`, a
// fake-host test registered with CTest. Returns the files written, one per line.
// kInvalidArgument: `name` is not a lower-case identifier ([a-z][a-z0-9_]*, at most 64 bytes);
// kAlreadyExists: `dir` has files; kFailedPrecondition: a file cannot be written.
absl::StatusOr<std::string> NewPluginProject(const std::string& name, const std::string& dir);

}  // namespace sluice::cli
