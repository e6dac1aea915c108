#pragma once

#include <functional>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace sluice::plan {

// Replaces ${NAME} in a job file with lookup(NAME) (the CLI looks in the environment), before
// the job is parsed, so one file runs against different clusters: `bootstrap: ${KAFKA}`.
// ${NAME:-default} uses `default` when NAME is unset; $$ is a literal $. An unset variable
// without a default, or an unterminated ${, is kInvalidArgument "<source>:<line>:<column>: ...".
absl::StatusOr<std::string> ExpandVariables(
    absl::string_view text, absl::string_view source_name,
    const std::function<std::optional<std::string>(const std::string&)>& lookup);

}  // namespace sluice::plan
