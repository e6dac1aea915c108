#include "common/flags.h"

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "yaml-cpp/yaml.h"

namespace sluice {

namespace {

// The option's long name ("advertise-address"), or "" if it has none.
std::string LongName(const CLI::Option* opt) {
  const auto& names = opt->get_lnames();
  return names.empty() ? "" : names.front();
}

std::string ConfigPath(int argc, const char* const* argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--config" && i + 1 < argc) return argv[i + 1];
    if (absl::StartsWith(arg, "--config=")) return arg.substr(9);
  }
  const char* env = std::getenv("SLUICE_CONFIG");
  return env == nullptr ? "" : env;
}

}  // namespace

void BindEnvironment(CLI::App* app) {
  for (CLI::Option* opt : app->get_options()) {
    const std::string name = LongName(opt);
    if (name.empty() || name == "help" || name == "config") continue;
    opt->envname(absl::StrCat("SLUICE_", absl::AsciiStrToUpper(absl::StrReplaceAll(name, {{"-", "_"}}))));
  }
}

absl::Status ApplyConfigFile(CLI::App* app, int argc, const char* const* argv) {
  // Not bound to a variable: the path is read from argv above, before parsing.
  app->add_option("--config", "YAML file of defaults: long flag names to values ($SLUICE_CONFIG)");
  const std::string path = ConfigPath(argc, argv);
  if (path.empty()) return absl::OkStatus();
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read config file ", path));
  std::stringstream text;
  text << in.rdbuf();
  YAML::Node root;
  try {
    root = YAML::Load(text.str());
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ":", e.mark.line + 1, ":", e.mark.column + 1, ": ", e.msg));
  }
  if (root.IsNull()) return absl::OkStatus();
  if (!root.IsMap()) return absl::InvalidArgumentError(absl::StrCat(path, ": expected a mapping of flag names to values"));
  for (const auto& kv : root) {
    const std::string key = kv.first.Scalar();
    const std::string where = absl::StrCat(path, ":", kv.first.Mark().line + 1, ": ");
    CLI::Option* opt = key == "config" || key == "help" ? nullptr : app->get_option_no_throw("--" + key);
    if (opt == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(where, "unknown setting '", key, "' (settings are the long flags: see --help)"));
    }
    if (!kv.second.IsScalar()) return absl::InvalidArgumentError(absl::StrCat(where, "'", key, "' must be a single value"));
    try {
      opt->default_val(kv.second.Scalar());
    } catch (const CLI::Error& e) {
      return absl::InvalidArgumentError(absl::StrCat(where, "'", key, "': ", e.what()));
    }
    opt->required(false);
  }
  return absl::OkStatus();
}

}  // namespace sluice
