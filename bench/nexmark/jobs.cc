#include "bench/nexmark/jobs.h"

#include <fstream>
#include <optional>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "plan/variables.h"

namespace sluice::nexmark {

std::string DefaultJobDir() { return SLUICE_NEXMARK_JOB_DIR; }

absl::StatusOr<std::string> LoadJob(const std::string& dir, const std::string& query,
                                    const std::map<std::string, std::string>& vars) {
  const std::string path = absl::StrCat(dir, "/", query, ".yaml");
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("no job file ", path));
  std::stringstream text;
  text << in.rdbuf();
  return plan::ExpandVariables(text.str(), path, [&](const std::string& name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  });
}

}  // namespace sluice::nexmark
