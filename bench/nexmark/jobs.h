#pragma once

#include <map>
#include <string>

#include "absl/status/statusor.h"

namespace sluice::nexmark {

// The directory holding the Nexmark job files q*.yaml (bench/nexmark/ of the source tree this
// binary was built from).
std::string DefaultJobDir();

// Reads `<dir>/<query>.yaml` and expands its ${NAME} variables from `vars` (their defaults
// where a variable is not in `vars`; the environment is not consulted, so a run does not
// depend on the caller's shell). kNotFound if there is no such file; kInvalidArgument with
// the position for a bad variable.
absl::StatusOr<std::string> LoadJob(const std::string& dir, const std::string& query,
                                    const std::map<std::string, std::string>& vars);

}  // namespace sluice::nexmark
