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

namespace {

// A std::string as a sluice_accumulator: resize() resizes the string.
struct StringAccumulator {
  explicit StringAccumulator(std::string* s) : str(s) {
    abi.struct_size = sizeof(abi);
    abi.host_data = this;
    abi.data = s->data();
    abi.size = s->size();
    abi.resize = &Resize;
  }
  static sluice_status Resize(sluice_accumulator* self, size_t size) {
    auto* a = static_cast<StringAccumulator*>(self->host_data);
    a->str->resize(size);
    self->data = a->str->data();
    self->size = size;
    return SLUICE_OK;
  }
  sluice_accumulator abi;
  std::string* str;
};

sluice_value ToAbiValue(FieldType type, const Value& v) {
  sluice_value out{0, 0, {nullptr, 0}};
  switch (type) {
    case FieldType::kDouble: out.d = v.d; break;
    case FieldType::kString: out.s = sluice_string{v.s.data(), v.s.size()}; break;
    default: out.i = v.i; break;
  }
  return out;
}

}  // namespace

PluginAggregateFunction::PluginAggregateFunction(const LoadedPlugin* plugin,
                                                 const PluginAggregateFunctionInfo* fn)
    : fn_(fn), origin_(Describe(*plugin)) {
  for (int t = 0; t < kFieldTypes; ++t) {
    absl::StatusOr<FieldType> r = ResultType(static_cast<FieldType>(t));
    result_types_[t] = r.ok() ? static_cast<int>(*r) : -1;
  }
}

absl::Status PluginAggregateFunction::Failed(sluice_status code, const char* hook,
                                             const std::string& message) const {
  const absl::StatusCode c = code == SLUICE_ERR_INVALID_ARGUMENT    ? absl::StatusCode::kInvalidArgument
                             : code == SLUICE_ERR_FAILED_PRECONDITION ? absl::StatusCode::kFailedPrecondition
                             : code == SLUICE_ERR_UNAVAILABLE         ? absl::StatusCode::kUnavailable
                             : code == SLUICE_ERR_CANCELLED           ? absl::StatusCode::kCancelled
                                                                      : absl::StatusCode::kInternal;
  return absl::Status(c, absl::StrCat("aggregate function '", fn_->name, "' of ", origin_, " failed in ",
                                      hook, ": ", message.empty() ? "(no message)" : message));
}

absl::StatusOr<FieldType> PluginAggregateFunction::ResultType(FieldType in) const {
  ErrorSink error;
  sluice_field_type out = -1;
  sluice_status s = fn_->abi->result_type(fn_->abi->type_data, ToAbi(in), &out, error.get());
  if (s != SLUICE_OK) {
    return absl::InvalidArgumentError(error.message().empty() ? "(no message)" : error.message());
  }
  absl::StatusOr<FieldType> t = FromAbi(out);
  if (!t.ok()) return Failed(SLUICE_ERR_INTERNAL, "result_type", std::string(t.status().message()));
  return *t;
}

absl::Status PluginAggregateFunction::Create(FieldType in, std::string* acc) const {
  acc->clear();
  StringAccumulator a(acc);
  ErrorSink error;
  sluice_status s = fn_->abi->create(fn_->abi->type_data, ToAbi(in), &a.abi, error.get());
  return s == SLUICE_OK ? absl::OkStatus() : Failed(s, "create", error.message());
}

absl::Status PluginAggregateFunction::Add(FieldType in, const Value& v, std::string* acc) const {
  StringAccumulator a(acc);
  const sluice_value value = ToAbiValue(in, v);
  ErrorSink error;
  sluice_status s = fn_->abi->add(fn_->abi->type_data, ToAbi(in), &a.abi, &value, error.get());
  return s == SLUICE_OK ? absl::OkStatus() : Failed(s, "add", error.message());
}

absl::Status PluginAggregateFunction::Merge(FieldType in, absl::string_view other, std::string* acc) const {
  StringAccumulator a(acc);
  ErrorSink error;
  sluice_status s = fn_->abi->merge(fn_->abi->type_data, ToAbi(in), &a.abi,
                                    sluice_string{other.data(), other.size()}, error.get());
  return s == SLUICE_OK ? absl::OkStatus() : Failed(s, "merge", error.message());
}

absl::Status PluginAggregateFunction::Result(FieldType in, absl::string_view acc, Value* out,
                                             bool* is_null) const {
  const int t = static_cast<int>(in);
  if (t < 0 || t >= kFieldTypes || result_types_[t] < 0) {
    return Failed(SLUICE_ERR_FAILED_PRECONDITION, "get_result",
                  absl::StrCat("it takes no ", FieldTypeName(in), " input"));
  }
  const FieldType type = static_cast<FieldType>(result_types_[t]);
  sluice_value result{0, 0, {nullptr, 0}};
  int32_t null = 0;
  ErrorSink error;
  sluice_status s = fn_->abi->get_result(fn_->abi->type_data, ToAbi(in), sluice_string{acc.data(), acc.size()},
                                         &result, &null, error.get());
  if (s != SLUICE_OK) return Failed(s, "get_result", error.message());
  *is_null = null != 0;
  switch (type) {
    case FieldType::kDouble: out->d = *is_null ? 0 : result.d; break;
    case FieldType::kString:
      if (*is_null || result.s.data == nullptr) {
        out->s.clear();
      } else {
        out->s.assign(result.s.data, result.s.size);
      }
      break;
    default: out->i = *is_null ? 0 : result.i; break;
  }
  return absl::OkStatus();
}

absl::Status AddPluginAggregateFunctions(const std::vector<const LoadedPlugin*>& plugins,
                                         const AddAggregateFn& add) {
  static constexpr absl::string_view kBuiltins[] = {"count", "sum",  "min",  "max",
                                                    "avg",   "first", "last", "count_distinct"};
  std::set<const LoadedPlugin*> seen;
  for (const LoadedPlugin* p : plugins) {
    if (!seen.insert(p).second) continue;
    for (const PluginAggregateFunctionInfo& f : p->aggregate_functions) {
      const std::string who = absl::StrCat("aggregate function '", f.name, "' of ", Describe(*p));
      if (std::find(std::begin(kBuiltins), std::end(kBuiltins), f.name) != std::end(kBuiltins)) {
        return absl::InvalidArgumentError(absl::StrCat(who, " has the name of a built-in function"));
      }
      absl::Status s = add(std::make_shared<PluginAggregateFunction>(p, &f));
      if (absl::IsAlreadyExists(s)) return absl::InvalidArgumentError(absl::StrCat(who, " is already registered"));
      SLUICE_RETURN_IF_ERROR(s);
    }
  }
  return absl::OkStatus();
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
  SLUICE_RETURN_IF_ERROR(AddPluginTypes(plugins, [catalog](const LoadedPlugin& p, const PluginOperatorType& t) {
    return catalog->Add(std::make_unique<PluginOperatorTypeEntry>(&p, &t));
  }));
  return AddPluginAggregateFunctions(plugins, [catalog](std::shared_ptr<const plan::AggregateFunction> fn) {
    return catalog->AddAggregateFunction(std::move(fn));
  });
}

}  // namespace sluice::plugin
