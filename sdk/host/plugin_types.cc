#include "sdk/host/plugin_types.h"

#include <algorithm>
#include <filesystem>
#include <set>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "sdk/host/options_json.h"

namespace sluice::plugin {

namespace {

plan::OperatorTraits TraitsOf(const PluginOperatorType& type) {
  plan::OperatorTraits t;
  t.name = type.name;
  t.inputs = type.num_inputs == 2 ? plan::InputArity::kTwo : plan::InputArity::kOne;
  t.keyed = type.keyed;
  t.any_option_keys = true;
  return t;
}

}  // namespace

PluginOperatorTypeEntry::PluginOperatorTypeEntry(const LoadedPlugin* plugin, const PluginOperatorType* type)
    : plan::OperatorType(TraitsOf(*type)), plugin_(plugin), type_(type) {}

absl::StatusOr<std::shared_ptr<const plan::OperatorOptions>> PluginOperatorTypeEntry::ParseOptions(
    const YAML::Node& config, const plan::ParseContext& ctx) const {
  const plan::OperatorSpec& op = ctx.op();
  const std::string where = absl::StrCat(ctx.job().source_name, ":", op.line, ":", op.column);
  auto options = std::make_shared<PluginOptions>();
  options->json = OptionsJson(config);
  SLUICE_RETURN_IF_ERROR(ValidateOptions(*plugin_, *type_, options->json, where));
  std::vector<Schema> inputs;
  for (size_t i = 0; i < op.inputs.size(); ++i) inputs.push_back(ctx.input_schema(static_cast<int>(i)));
  SLUICE_ASSIGN_OR_RETURN(options->output_schema, OutputSchema(*plugin_, *type_, inputs, options->json, where));
  if (type_->num_inputs == 2 && op.inputs.size() == 2) {
    options->second_input_schema = inputs[1];
    const plan::InputSpec& in = op.inputs[1];
    if (type_->keyed && (in.partition != plan::Partition::kHash || in.key.size() != op.key.size())) {
      return ctx.AtPos(in.line, in.column,
                       absl::StrCat(op.type, " '", op.id, "' is keyed: read its input 1 ('", in.from,
                                    "') with partition: hash and a key of ", op.key.size(),
                                    " component(s), like input 0's"));
    }
  }
  return std::shared_ptr<const plan::OperatorOptions>(std::move(options));
}

Schema PluginOperatorTypeEntry::InferSchema(const plan::OperatorOptions& options,
                                            const plan::ParseContext&) const {
  return options.As<PluginOptions>()->output_schema;  // options come from ParseOptions() above
}

absl::StatusOr<std::vector<const LoadedPlugin*>> LoadPluginDir(PluginLoader* loader, const std::string& dir) {
  std::vector<const LoadedPlugin*> plugins;
  if (dir.empty()) return plugins;
  std::error_code ec;
  std::vector<std::string> files;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    if (entry.is_regular_file() && absl::EndsWith(entry.path().filename().string(), ".so")) {
      files.push_back(entry.path().string());
    }
  }
  if (ec) return absl::NotFoundError(absl::StrCat("cannot read plugin directory ", dir, ": ", ec.message()));
  std::sort(files.begin(), files.end());
  for (const std::string& f : files) {
    SLUICE_ASSIGN_OR_RETURN(const LoadedPlugin* p, loader->Load(f));
    plugins.push_back(p);
  }
  return plugins;
}

absl::StatusOr<std::vector<const LoadedPlugin*>> LoadJobPlugins(PluginLoader* loader,
                                                                const std::vector<plan::PluginRef>& refs,
                                                                absl::string_view source_name) {
  std::vector<const LoadedPlugin*> plugins;
  for (const plan::PluginRef& ref : refs) {
    absl::StatusOr<const LoadedPlugin*> p = loader->Load(ref.path);
    if (!p.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(source_name, ":", ref.line, ":", ref.column, ": ", p.status().message()));
    }
    plugins.push_back(*p);
  }
  return plugins;
}

absl::Status AddPluginTypes(const std::vector<const LoadedPlugin*>& plugins, const AddTypeFn& add) {
  std::set<const LoadedPlugin*> seen;
  for (const LoadedPlugin* p : plugins) {
    if (!seen.insert(p).second) continue;
    for (const PluginOperatorType& t : p->types) {
      absl::Status s = add(*p, t);
      if (absl::IsAlreadyExists(s)) {
        return absl::InvalidArgumentError(
            absl::StrCat("operator type '", t.name, "' of ", Describe(*p), " is already registered"));
      }
      SLUICE_RETURN_IF_ERROR(s);
    }
  }
  return absl::OkStatus();
}

absl::Status AddPluginTypesToCatalog(const std::vector<const LoadedPlugin*>& plugins,
                                     plan::OperatorTypeCatalog* catalog) {
  return AddPluginTypes(plugins, [catalog](const LoadedPlugin& p, const PluginOperatorType& t) {
    return catalog->Add(std::make_unique<PluginOperatorTypeEntry>(&p, &t));
  });
}

}  // namespace sluice::plugin
