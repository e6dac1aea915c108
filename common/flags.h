#pragma once

#include <string>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"

namespace sluice {

// Process configuration for the daemons (sluice-coordinator, sluice-worker), from three
// sources in this precedence: command-line flags, then environment variables SLUICE_<NAME>
// (the long flag's name upper-cased, dashes as underscores: --advertise-address ->
// SLUICE_ADVERTISE_ADDRESS), then an optional YAML config file given by --config FILE (or
// SLUICE_CONFIG), a mapping of long flag names without dashes to scalars:
//
//   port: 6123
//   ha-dir: /var/lib/sluice/ha
//
// Call BindEnvironment() after every option is added and before parsing; ApplyConfigFile()
// before parsing too (it reads argv for --config). Both run once, in main(), on one thread.

// Gives every long option of `app` (but --config and --help) the environment variable
// SLUICE_<NAME>.
void BindEnvironment(CLI::App* app);

// Finds --config FILE / --config=FILE in argv (else $SLUICE_CONFIG) and makes each entry the
// default of its option, so flags and environment variables still win. An option given in the
// file no longer needs to be on the command line. Adds the --config option itself.
// Returns kInvalidArgument naming the file, line and key for an unknown key, a value that is
// not a scalar or one the option refuses; kNotFound if the file cannot be read.
absl::Status ApplyConfigFile(CLI::App* app, int argc, const char* const* argv);

}  // namespace sluice
