#include "sdk/host/plugin_loader.h"

#include <dlfcn.h>
#include <sys/stat.h>

#include <set>
#include <utility>

#include "absl/strings/str_cat.h"

namespace sluice::plugin {
namespace {

std::string Version(AbiVersion v) { return absl::StrCat(v.major, ".", v.minor); }

std::string Str(sluice_string s) {
  return s.data == nullptr ? std::string() : std::string(s.data, s.size);
}

absl::Status CannotLoad(const std::string& path, absl::string_view why) {
  return absl::FailedPreconditionError(absl::StrCat("cannot load plugin ", path, ": ", why));
}

// What every version refusal says after "built for plugin ABI X.Y, but ...".
std::string Supported(AbiVersion host) {
  return absl::StrCat("this Sluice build supports ABI ", Version(host), " (it loads plugins built for ABI ",
                      host.major, ".0 to ", Version(host), ")");
}

std::string Prefix(absl::string_view where) {
  return where.empty() ? std::string() : absl::StrCat(where, ": ");
}

class SchemaCollector {
 public:
  SchemaCollector() {
    abi_.struct_size = sizeof(abi_);
    abi_.host_data = this;
    abi_.add_field = &AddField;
    abi_.add_nullable_field = &AddNullableField;
  }
  sluice_schema_builder* get() { return &abi_; }
  struct Added {
    std::string name;
    sluice_field_type type;
    bool nullable;
  };
  std::vector<Added> fields;

 private:
  static void Add(sluice_schema_builder* self, const char* name, size_t size, sluice_field_type type,
                  bool nullable) {
    static_cast<SchemaCollector*>(self->host_data)
        ->fields.push_back(Added{std::string(name == nullptr ? "" : name, name == nullptr ? 0 : size), type, nullable});
  }
  static void AddField(sluice_schema_builder* self, const char* name, size_t size, sluice_field_type type) {
    Add(self, name, size, type, false);
  }
  static void AddNullableField(sluice_schema_builder* self, const char* name, size_t size,
                               sluice_field_type type) {
    Add(self, name, size, type, true);
  }
  sluice_schema_builder abi_;
};

// ABI 1.2: the descriptor's aggregate functions into out->aggregate_functions.
absl::Status CheckAggregateFunctions(const sluice_plugin* d, AbiVersion abi, LoadedPlugin* out) {
  const std::string& path = out->path;
  if (abi.minor < 2 || !SLUICE_HAS_FIELD(d, sluice_plugin, num_aggregate_functions) ||
      d->num_aggregate_functions == 0) {
    return absl::OkStatus();
  }
  if (d->aggregate_functions == nullptr) {
    return CannotLoad(path, "its descriptor lists aggregate functions but gives no array");
  }
  std::set<std::string> names;
  for (size_t i = 0; i < d->num_aggregate_functions; ++i) {
    const sluice_aggregate_function* f = d->aggregate_functions[i];
    if (f == nullptr) return CannotLoad(path, absl::StrCat("aggregate function #", i, " is null"));
    // Added in 1.2 whole: every field up to get_result is there.
    constexpr size_t kSize12 = offsetof(sluice_aggregate_function, get_result) + sizeof(f->get_result);
    if (f->struct_size < kSize12) {
      return CannotLoad(path, absl::StrCat("aggregate function #", i, " is ", f->struct_size,
                                           " bytes, smaller than ABI 1.2's ", kSize12));
    }
    PluginAggregateFunctionInfo info{Str(f->name), Str(f->description), f};
    if (info.name.empty()) return CannotLoad(path, absl::StrCat("aggregate function #", i, " has no name"));
    if (!names.insert(info.name).second) {
      return CannotLoad(path, absl::StrCat("aggregate function '", info.name, "' is defined twice"));
    }
    const char* missing = f->result_type == nullptr ? "result_type"
                          : f->create == nullptr    ? "create"
                          : f->add == nullptr       ? "add"
                          : f->merge == nullptr     ? "merge"
                          : f->get_result == nullptr ? "get_result"
                                                     : nullptr;
    if (missing != nullptr) {
      return CannotLoad(path, absl::StrCat("aggregate function '", info.name, "' has no ", missing, " hook"));
    }
    out->aggregate_functions.push_back(std::move(info));
  }
  return absl::OkStatus();
}

}  // namespace

const PluginOperatorType* LoadedPlugin::FindType(absl::string_view name) const {
  for (const auto& t : types) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

std::string Describe(const LoadedPlugin& p) {
  return absl::StrCat("plugin '", p.name, "' ", p.version, " (", p.path, ")");
}

PluginLoader* PluginLoader::Default() {
  static PluginLoader* loader = new PluginLoader();
  return loader;
}

ErrorSink::ErrorSink() {
  abi_.struct_size = sizeof(abi_);
  abi_.host_data = this;
  abi_.set_message = &SetMessage;
}

void ErrorSink::SetMessage(sluice_error* self, const char* data, size_t size) {
  auto* sink = static_cast<ErrorSink*>(self->host_data);
  if (data == nullptr) size = 0;
  sink->message_.assign(data == nullptr ? "" : data, size);
}

sluice_field_type ToAbi(FieldType t) { return static_cast<sluice_field_type>(t); }

absl::StatusOr<FieldType> FromAbi(sluice_field_type t) {
  static_assert(SLUICE_TYPE_INT64 == static_cast<int>(FieldType::kInt64), "type numbering");
  static_assert(SLUICE_TYPE_DOUBLE == static_cast<int>(FieldType::kDouble), "type numbering");
  static_assert(SLUICE_TYPE_STRING == static_cast<int>(FieldType::kString), "type numbering");
  static_assert(SLUICE_TYPE_BOOL == static_cast<int>(FieldType::kBool), "type numbering");
  static_assert(SLUICE_TYPE_TIMESTAMP == static_cast<int>(FieldType::kTimestamp), "type numbering");
  if (t < SLUICE_TYPE_INT64 || t > SLUICE_TYPE_TIMESTAMP) {
    return absl::InvalidArgumentError(absl::StrCat("unknown field type ", t));
  }
  return static_cast<FieldType>(t);
}

AbiSchema::AbiSchema(const Schema& schema) {
  fields_.reserve(schema.size());
  for (const Field& f : schema.fields()) {
    fields_.push_back(sluice_field{{f.name.data(), f.name.size()}, ToAbi(f.type)});
  }
  abi_ = sluice_schema{fields_.data(), fields_.size()};
}

absl::Status CheckDescriptor(const sluice_plugin* d, AbiVersion host, LoadedPlugin* out) {
  const std::string& path = out->path;
  constexpr size_t kVersionEnd = offsetof(sluice_plugin, abi_minor) + sizeof(uint32_t);
  if (d->struct_size < kVersionEnd) {
    return CannotLoad(path, absl::StrCat("its descriptor is ", d->struct_size,
                                         " bytes, too small to hold an ABI version: the file is "
                                         "damaged or was not built with the Sluice SDK"));
  }
  AbiVersion abi{d->abi_major, d->abi_minor};
  if (abi.major != host.major || abi.minor > host.minor) {
    std::string remedy =
        abi.major != host.major
            ? absl::StrCat("rebuild the plugin against Sluice SDK ", host.major, " (find_package(Sluice ",
                           host.major, "))")
            : absl::StrCat("rebuild the plugin against the Sluice SDK of this build (ABI ", Version(host),
                           "), or upgrade Sluice to a release with ABI ", Version(abi), " or later");
    return CannotLoad(path, absl::StrCat("it was built for plugin ABI ", Version(abi), ", but ",
                                         Supported(host), ": ", remedy));
  }
  // Minor 0 of this major defined the fields up to the operator types: a smaller descriptor is
  // damaged.
  if (d->struct_size < SLUICE_PLUGIN_SIZE_1_0) {
    return CannotLoad(path, absl::StrCat("its descriptor is ", d->struct_size, " bytes, smaller than ABI ",
                                         host.major, ".0's ", SLUICE_PLUGIN_SIZE_1_0,
                                         ": the file is damaged or was not built with the Sluice SDK"));
  }
  out->abi = abi;
  out->descriptor = d;
  out->name = Str(d->name);
  out->version = Str(d->version);
  if (out->name.empty()) return CannotLoad(path, "its descriptor has no name");
  if (d->num_operator_types > 0 && d->operator_types == nullptr) {
    return CannotLoad(path, "its descriptor lists operator types but gives no array");
  }
  std::set<std::string> names;
  for (size_t i = 0; i < d->num_operator_types; ++i) {
    const sluice_operator_type* t = d->operator_types[i];
    if (t == nullptr) return CannotLoad(path, absl::StrCat("operator type #", i, " is null"));
    if (t->struct_size < SLUICE_OPERATOR_TYPE_SIZE_1_0) {
      return CannotLoad(path, absl::StrCat("operator type #", i, " is ", t->struct_size,
                                           " bytes, smaller than ABI ", host.major, ".0's ",
                                           SLUICE_OPERATOR_TYPE_SIZE_1_0));
    }
    PluginOperatorType type;
    type.name = Str(t->name);
    type.description = Str(t->description);
    type.keyed = t->keyed != 0;
    type.num_inputs = t->num_inputs;
    type.abi = t;
    if (abi.minor >= 1 && SLUICE_HAS_FIELD(t, sluice_operator_type, num_options) && t->num_options > 0) {
      if (t->options == nullptr) {
        return CannotLoad(path, absl::StrCat("operator type '", type.name, "' lists options but gives no array"));
      }
      type.options_described = true;
      for (size_t k = 0; k < t->num_options; ++k) {
        const sluice_option_info& o = t->options[k];
        type.options.push_back(PluginOptionInfo{Str(o.name), Str(o.type), o.required != 0, Str(o.default_value),
                                                Str(o.description)});
      }
    }
    if (type.name.empty()) return CannotLoad(path, absl::StrCat("operator type #", i, " has no name"));
    if (!names.insert(type.name).second) {
      return CannotLoad(path, absl::StrCat("operator type '", type.name, "' is defined twice"));
    }
    if (t->create == nullptr) {
      return CannotLoad(path, absl::StrCat("operator type '", type.name, "' has no create hook"));
    }
    // Two inputs need process_input, which ABI 1.1 added: a 1.0 plugin cannot say which input a
    // batch came from.
    if (type.num_inputs == 2 && abi.minor < 1) {
      return CannotLoad(path, absl::StrCat("operator type '", type.name,
                                           "' has 2 inputs, but the plugin was built for plugin ABI ",
                                           Version(abi), ", which runs one-input operators only: rebuild it "
                                           "against Sluice SDK 1.1 or later"));
    }
    if (type.num_inputs != 1 && type.num_inputs != 2) {
      return CannotLoad(path, absl::StrCat("operator type '", type.name, "' has ", type.num_inputs,
                                           " inputs; this Sluice build runs plugin operators with 1 or 2 inputs"));
    }
    out->types.push_back(std::move(type));
  }
  return CheckAggregateFunctions(d, abi, out);
}

absl::StatusOr<const LoadedPlugin*> PluginLoader::Load(const std::string& path) {
  absl::MutexLock lock(&mu_);
  auto it = loaded_.find(path);
  if (it != loaded_.end()) return it->second.get();

  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    return absl::NotFoundError(absl::StrCat("cannot load plugin ", path, ": no such file"));
  }
  // Never closed: code and static data of a plugin live as long as the process.
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* e = dlerror();
    return CannotLoad(path, e == nullptr ? "dlopen failed" : e);
  }
  void* entry = dlsym(handle, SLUICE_PLUGIN_ENTRY_POINT);
  if (entry == nullptr) {
    for (uint32_t major = 0; major < 10; ++major) {
      if (major == host_.major) continue;
      std::string other = absl::StrCat("sluice_plugin_init_v", major);
      if (dlsym(handle, other.c_str()) != nullptr) {
        return CannotLoad(path, absl::StrCat("it exports ", other, " (plugin ABI ", major, ".x), but ",
                                             Supported(host_), ": rebuild the plugin against Sluice SDK ",
                                             host_.major, " (find_package(Sluice ", host_.major, "))"));
      }
    }
    return CannotLoad(path, absl::StrCat("it exports no ", SLUICE_PLUGIN_ENTRY_POINT,
                                         " (the entry point of plugin ABI ", host_.major,
                                         "): build it with sluice_add_plugin() and define the entry point "
                                         "with SLUICE_PLUGIN(...) from sluice/sdk.h"));
  }
  auto init = reinterpret_cast<sluice_plugin_init_v1_fn>(entry);
  ErrorSink error;
  const sluice_plugin* d = init(error.get());
  if (d == nullptr) {
    return CannotLoad(path, absl::StrCat(SLUICE_PLUGIN_ENTRY_POINT, " failed: ",
                                         error.message().empty() ? "(no message)" : error.message()));
  }
  auto plugin = std::make_unique<LoadedPlugin>();
  plugin->path = path;
  absl::Status s = CheckDescriptor(d, host_, plugin.get());
  if (!s.ok()) return s;
  const LoadedPlugin* result = plugin.get();
  loaded_.emplace(path, std::move(plugin));
  return result;
}

absl::Status ValidateOptions(const LoadedPlugin& plugin, const PluginOperatorType& type,
                             absl::string_view options_json, absl::string_view where) {
  if (type.abi->validate == nullptr) return absl::OkStatus();
  ErrorSink error;
  sluice_status s = type.abi->validate(type.abi->type_data,
                                       sluice_string{options_json.data(), options_json.size()}, error.get());
  if (s == SLUICE_OK) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(Prefix(where), "operator type '", type.name, "' of ", Describe(plugin),
                   " refused its options: ", error.message().empty() ? "(no message)" : error.message()));
}

absl::StatusOr<Schema> OutputSchema(const LoadedPlugin& plugin, const PluginOperatorType& type,
                                    const Schema& input, absl::string_view options_json,
                                    absl::string_view where) {
  return OutputSchema(plugin, type, std::vector<Schema>{input}, options_json, where);
}

absl::StatusOr<Schema> OutputSchema(const LoadedPlugin& plugin, const PluginOperatorType& type,
                                    const std::vector<Schema>& inputs, absl::string_view options_json,
                                    absl::string_view where) {
  auto fail = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat(Prefix(where), "operator type '", type.name, "' of ",
                                                   Describe(plugin), ": ", why));
  };
  if (inputs.size() != static_cast<size_t>(type.num_inputs)) {
    return fail(absl::StrCat("it has ", type.num_inputs, " input(s), but ", inputs.size(), " were given"));
  }
  const bool multi = inputs.size() > 1 && SLUICE_HAS_FIELD(type.abi, sluice_operator_type, output_schema_inputs) &&
                     type.abi->output_schema_inputs != nullptr;
  if (!multi && type.abi->output_schema == nullptr) return inputs[0];
  std::vector<std::unique_ptr<AbiSchema>> in;
  std::vector<sluice_schema> in_array;
  for (const Schema& schema : inputs) {
    in.push_back(std::make_unique<AbiSchema>(schema));
    in_array.push_back(*in.back()->get());
  }
  SchemaCollector out;
  ErrorSink error;
  const sluice_string options{options_json.data(), options_json.size()};
  sluice_status s = multi ? type.abi->output_schema_inputs(type.abi->type_data, in_array.data(), in_array.size(),
                                                           options, out.get(), error.get())
                          : type.abi->output_schema(type.abi->type_data, in[0]->get(), options, out.get(),
                                                    error.get());
  if (s != SLUICE_OK) {
    return fail(absl::StrCat("no output schema: ",
                             error.message().empty() ? "(no message)" : error.message()));
  }
  std::vector<Field> fields;
  std::set<std::string> names;
  for (const SchemaCollector::Added& f : out.fields) {
    auto t = FromAbi(f.type);
    if (!t.ok()) return fail(absl::StrCat("output field '", f.name, "' has ", t.status().message()));
    if (f.name.empty()) return fail("an output field has no name");
    if (!names.insert(f.name).second) return fail(absl::StrCat("output field '", f.name, "' is given twice"));
    fields.push_back(Field{f.name, *t, f.nullable});
  }
  Schema schema(std::move(fields));
  // A plugin built before ABI 1.2 cannot declare a nullable field: an output with an input's
  // names and types is that input's schema, nullability included (so records it forwards keep
  // their nulls).
  if (plugin.abi.minor < 2) {
    for (const Schema& in : inputs) {
      bool same = in.size() == schema.size();
      for (size_t i = 0; same && i < in.size(); ++i) {
        same = in.field(i).name == schema.field(i).name && in.field(i).type == schema.field(i).type;
      }
      if (same) return in;
    }
  }
  return schema;
}

}  // namespace sluice::plugin
