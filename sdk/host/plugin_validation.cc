#include "sdk/host/plugin_validation.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/clock.h"
#include "common/status.h"
#include "nlohmann/json.hpp"
#include "plan/job_spec.h"

extern char** environ;

namespace sluice::plugin {
namespace {

using nlohmann::json;

json SchemaJson(const Schema& schema) {
  json fields = json::array();
  for (const Field& f : schema.fields()) {
    fields.push_back({f.name, std::string(FieldTypeName(f.type)), f.nullable});
  }
  return fields;
}

absl::StatusOr<Schema> SchemaFromJson(const json& fields) {
  std::vector<Field> out;
  for (const json& f : fields) {
    SLUICE_ASSIGN_OR_RETURN(FieldType type, ParseFieldType(f.at(1).get<std::string>()));
    out.push_back(Field{f.at(0).get<std::string>(), type, f.size() > 2 && f.at(2).get<bool>()});
  }
  return Schema(std::move(out));
}

constexpr int kFieldTypes = 5;  // int64, double, string, bool, timestamp

// A reported aggregate function: plans (its result type per input type, as the helper's plugin
// said), never runs.
class ValidatedAggregateFunction final : public plan::AggregateFunction {
 public:
  explicit ValidatedAggregateFunction(ValidatedPlugins::AggregateFunction f) : f_(std::move(f)) {}
  const std::string& name() const override { return f_.name; }
  const std::string& origin() const override { return f_.origin; }
  absl::StatusOr<FieldType> ResultType(FieldType in) const override {
    const int t = static_cast<int>(in);
    if (t < 0 || t >= kFieldTypes) return absl::InvalidArgumentError("unknown field type");
    if (f_.result_types[t] < 0) return absl::InvalidArgumentError(f_.refusals[t]);
    return static_cast<FieldType>(f_.result_types[t]);
  }
  bool Runnable() const override { return false; }
  uint32_t AccumulatorVersion() const override { return f_.accumulator_version; }
  absl::Status Create(FieldType, std::string*) const override { return NotHere(); }
  absl::Status Add(FieldType, const Value&, std::string*) const override { return NotHere(); }
  absl::Status Merge(FieldType, absl::string_view, std::string*) const override { return NotHere(); }
  absl::Status Result(FieldType, absl::string_view, Value*, bool*) const override { return NotHere(); }

 private:
  absl::Status NotHere() const {
    return absl::FailedPreconditionError(
        absl::StrCat("aggregate function '", f_.name, "' was only validated in this process"));
  }
  const ValidatedPlugins::AggregateFunction f_;
};

// A plugin type's entry, saying "at: ..." on `progress` before each call into the plugin.
class ReportingEntry final : public plan::OperatorType {
 public:
  ReportingEntry(const LoadedPlugin& plugin, const PluginOperatorType& type, std::FILE* progress)
      : plan::OperatorType(PluginOperatorTypeEntry(&plugin, &type).traits()),
        entry_(&plugin, &type),
        plugin_path_(plugin.path),
        progress_(progress) {}

  absl::StatusOr<std::shared_ptr<const plan::OperatorOptions>> ParseOptions(
      const YAML::Node& config, const plan::ParseContext& ctx) const override {
    std::fprintf(progress_, "at: running validate and output_schema of operator '%s' (type '%s') in %s\n",
                 ctx.op().id.c_str(), name().c_str(), plugin_path_.c_str());
    std::fflush(progress_);
    return entry_.ParseOptions(config, ctx);
  }
  Schema InferSchema(const plan::OperatorOptions& options, const plan::ParseContext& ctx) const override {
    return entry_.InferSchema(options, ctx);
  }
  const std::string& plugin_path() const { return plugin_path_; }

 private:
  const PluginOperatorTypeEntry entry_;
  const std::string plugin_path_;
  std::FILE* const progress_;
};

// A reported type: hands back what the helper's hooks accepted.
class ValidatedEntry final : public plan::OperatorType {
 public:
  ValidatedEntry(plan::OperatorTraits traits, const ValidatedPlugins* validated)
      : plan::OperatorType(std::move(traits)), validated_(validated) {}

  absl::StatusOr<std::shared_ptr<const plan::OperatorOptions>> ParseOptions(
      const YAML::Node&, const plan::ParseContext& ctx) const override {
    auto it = validated_->options.find(ctx.op().id);
    if (it == validated_->options.end()) {
      return absl::InternalError(
          absl::StrCat("the plugin helper did not validate operator '", ctx.op().id, "' (type '", name(), "')"));
    }
    return std::shared_ptr<const plan::OperatorOptions>(it->second);
  }
  Schema InferSchema(const plan::OperatorOptions& options, const plan::ParseContext&) const override {
    return options.As<PluginOptions>()->output_schema;  // options come from ParseOptions() above
  }

 private:
  const ValidatedPlugins* const validated_;
};

std::string ErrorReport(const absl::Status& s) {
  return json{{"code", static_cast<int>(s.code())}, {"error", std::string(s.message())}}.dump();
}

absl::StatusOr<ValidatedPlugins> ParseReport(const std::string& text) {
  json report = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (report.is_discarded() || !report.is_object()) {
    return absl::InternalError(absl::StrCat("the plugin helper printed no report: '", text, "'"));
  }
  if (report.contains("error")) {
    const int code = report.value("code", static_cast<int>(absl::StatusCode::kInvalidArgument));
    return absl::Status(code > 0 && code <= 16 ? static_cast<absl::StatusCode>(code) : absl::StatusCode::kUnknown,
                        report["error"].get<std::string>());
  }
  ValidatedPlugins v;
  for (const json& t : report.value("types", json::array())) {
    ValidatedPlugins::Type type;
    type.traits.name = t.at("name").get<std::string>();
    type.traits.inputs = t.at("inputs").get<int>() == 2 ? plan::InputArity::kTwo : plan::InputArity::kOne;
    type.traits.keyed = t.at("keyed").get<bool>();
    type.traits.any_option_keys = true;
    type.plugin = t.at("plugin").get<std::string>();
    v.types.push_back(std::move(type));
  }
  for (const json& o : report.value("operators", json::array())) {
    auto options = std::make_shared<PluginOptions>();
    options->json = o.at("json").get<std::string>();
    SLUICE_ASSIGN_OR_RETURN(options->output_schema, SchemaFromJson(o.at("output_schema")));
    SLUICE_ASSIGN_OR_RETURN(options->second_input_schema, SchemaFromJson(o.at("second_input_schema")));
    v.options[o.at("id").get<std::string>()] = std::move(options);
  }
  for (const json& f : report.value("aggregate_functions", json::array())) {
    ValidatedPlugins::AggregateFunction fn;
    fn.name = f.at("name").get<std::string>();
    fn.origin = f.at("origin").get<std::string>();
    fn.accumulator_version = f.at("accumulator_version").get<uint32_t>();
    const json& results = f.at("results");
    if (!results.is_array() || results.size() != kFieldTypes) {
      return absl::InternalError(absl::StrCat("the plugin helper reported aggregate function '", fn.name,
                                              "' without a result per field type"));
    }
    for (int t = 0; t < kFieldTypes; ++t) {
      const json& r = results[t];
      if (r.is_string()) {
        SLUICE_ASSIGN_OR_RETURN(FieldType type, ParseFieldType(r.get<std::string>()));
        fn.result_types[t] = static_cast<int>(type);
      } else {
        fn.refusals[t] = r.at("refused").get<std::string>();
      }
    }
    v.aggregate_functions.push_back(std::move(fn));
  }
  return v;
}

std::string DefaultHelperPath() {
  std::error_code ec;
  std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? "sluice-plugin-host" : (self.parent_path() / "sluice-plugin-host").string();
}

// Reads what is ready on `fd` into `out`; false at end of file or on an error.
bool ReadSome(int fd, std::string* out) {
  char buf[4096];
  ssize_t n = read(fd, buf, sizeof(buf));
  if (n < 0 && (errno == EINTR || errno == EAGAIN)) return true;
  if (n <= 0) return false;
  out->append(buf, static_cast<size_t>(n));
  return true;
}

// What the helper said it was doing last ("" when it said nothing).
std::string LastProgress(const std::string& stderr_text) {
  std::string last;
  for (absl::string_view line : absl::StrSplit(stderr_text, '\n')) {
    if (absl::StartsWith(line, "at: ")) last = std::string(line.substr(4));
  }
  return last;
}

}  // namespace

std::string ValidationReport(const std::string& yaml, const std::string& source_name, int parallelism,
                             const std::string& plugin_dir, plan::OperatorTypeCatalog catalog,
                             std::FILE* progress) {
  absl::StatusOr<std::vector<plan::PluginRef>> refs = plan::ReadJobPlugins(yaml, source_name);
  if (!refs.ok()) return ErrorReport(refs.status());
  PluginLoader* loader = PluginLoader::Default();
  if (!plugin_dir.empty()) {
    std::fprintf(progress, "at: loading the plugins of --plugin-dir %s\n", plugin_dir.c_str());
    std::fflush(progress);
  }
  absl::StatusOr<std::vector<const LoadedPlugin*>> plugins = LoadPluginDir(loader, plugin_dir);
  if (!plugins.ok()) return ErrorReport(plugins.status());
  for (const plan::PluginRef& ref : *refs) {
    std::fprintf(progress, "at: loading %s\n", ref.path.c_str());
    std::fflush(progress);
    absl::StatusOr<std::vector<const LoadedPlugin*>> one = LoadJobPlugins(loader, {ref}, source_name);
    if (!one.ok()) return ErrorReport(one.status());
    plugins->insert(plugins->end(), one->begin(), one->end());
  }
  json types = json::array();
  absl::Status added = AddPluginTypes(*plugins, [&](const LoadedPlugin& p, const PluginOperatorType& t) {
    auto entry = std::make_unique<ReportingEntry>(p, t, progress);
    types.push_back({{"name", t.name}, {"inputs", t.num_inputs}, {"keyed", t.keyed}, {"plugin", p.path}});
    return catalog.Add(std::move(entry));
  });
  if (!added.ok()) return ErrorReport(added);
  // Aggregate functions: the result type the plugin gives for each input type (result_type is
  // a pure type hook), so that the caller plans with them without loading the plugin.
  json functions = json::array();
  std::fprintf(progress, "at: running result_type of the plugins' aggregate functions\n");
  std::fflush(progress);
  added = AddPluginAggregateFunctions(*plugins, [&](std::shared_ptr<const plan::AggregateFunction> fn) {
    json results = json::array();
    for (int t = 0; t < kFieldTypes; ++t) {
      absl::StatusOr<FieldType> r = fn->ResultType(static_cast<FieldType>(t));
      if (r.ok()) {
        results.push_back(std::string(FieldTypeName(*r)));
      } else {
        results.push_back({{"refused", std::string(r.status().message())}});
      }
    }
    functions.push_back({{"name", fn->name()},
                         {"origin", fn->origin()},
                         {"accumulator_version", fn->AccumulatorVersion()},
                         {"results", std::move(results)}});
    return catalog.AddAggregateFunction(std::move(fn));
  });
  if (!added.ok()) return ErrorReport(added);
  absl::StatusOr<plan::JobSpec> job = plan::ParseJobSpec(yaml, source_name, catalog, parallelism);
  if (!job.ok()) return ErrorReport(job.status());
  json operators = json::array();
  for (const plan::OperatorSpec& op : job->operators) {
    const PluginOptions* o = op.options_as<PluginOptions>();
    if (o == nullptr) continue;
    operators.push_back({{"id", op.id},
                         {"json", o->json},
                         {"output_schema", SchemaJson(o->output_schema)},
                         {"second_input_schema", SchemaJson(o->second_input_schema)}});
  }
  return json{{"types", types}, {"operators", operators}, {"aggregate_functions", functions}}.dump();
}

absl::StatusOr<ValidatedPlugins> ValidateInHelper(const std::string& yaml, const std::string& source_name,
                                                  int parallelism, const HelperOptions& options) {
  const std::string helper = options.path.empty() ? DefaultHelperPath() : options.path;
  // The job file goes through a temporary file (a pipe could fill while the helper is busy).
  std::string job_file = (std::filesystem::temp_directory_path() / "sluice-validate-XXXXXX").string();
  int job_fd = mkstemp(job_file.data());
  if (job_fd < 0) return absl::UnavailableError(absl::StrCat("cannot create a temporary file: ", std::strerror(errno)));
  bool written = write(job_fd, yaml.data(), yaml.size()) == static_cast<ssize_t>(yaml.size());
  close(job_fd);
  struct Unlink {
    std::string path;
    ~Unlink() { unlink(path.c_str()); }
  } unlink_job{job_file};
  if (!written) return absl::UnavailableError(absl::StrCat("cannot write ", job_file));

  std::vector<std::string> args = {helper, "validate", "--file", job_file, "--name", source_name,
                                   "--parallelism", absl::StrCat(parallelism)};
  if (!options.plugin_dir.empty()) {
    args.push_back("--plugin-dir");
    args.push_back(options.plugin_dir);
  }
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  int out_pipe[2];
  int err_pipe[2];
  if (pipe2(out_pipe, O_CLOEXEC) != 0) return absl::UnavailableError("cannot create a pipe");
  if (pipe2(err_pipe, O_CLOEXEC) != 0) {
    close(out_pipe[0]);
    close(out_pipe[1]);
    return absl::UnavailableError("cannot create a pipe");
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out_pipe[1], STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, err_pipe[1], STDERR_FILENO);
  // The helper starts with no signal blocked or ignored (daemons block SIGTERM, ignore SIGPIPE).
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  sigset_t defaults;
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGPIPE);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  pid_t pid = 0;
  int spawned = posix_spawn(&pid, helper.c_str(), &actions, &attr, argv.data(), environ);
  posix_spawnattr_destroy(&attr);
  posix_spawn_file_actions_destroy(&actions);
  close(out_pipe[1]);
  close(err_pipe[1]);
  if (spawned != 0) {
    close(out_pipe[0]);
    close(err_pipe[0]);
    return absl::UnavailableError(
        absl::StrCat("cannot start the plugin helper ", helper, ": ", std::strerror(spawned)));
  }

  // Read both pipes until the helper closes them or the deadline passes.
  std::string out;
  std::string err;
  Clock* clock = Clock::Real();
  const int64_t deadline = clock->NowNanos() + options.timeout_ms * 1'000'000;
  bool out_open = true;
  bool err_open = true;
  bool timed_out = false;
  while (out_open || err_open) {
    const int64_t left_ms = (deadline - clock->NowNanos()) / 1'000'000;
    if (left_ms <= 0) {
      timed_out = true;
      break;
    }
    pollfd fds[2] = {{out_open ? out_pipe[0] : -1, POLLIN, 0}, {err_open ? err_pipe[0] : -1, POLLIN, 0}};
    int ready = poll(fds, 2, static_cast<int>(std::min<int64_t>(left_ms, 1000)));
    if (ready < 0 && errno != EINTR) {
      timed_out = true;  // cannot wait for it: end it as if its time were up
      break;
    }
    if (ready <= 0) continue;
    if (out_open && (fds[0].revents & (POLLIN | POLLHUP | POLLERR))) out_open = ReadSome(out_pipe[0], &out);
    if (err_open && (fds[1].revents & (POLLIN | POLLHUP | POLLERR))) err_open = ReadSome(err_pipe[0], &err);
  }
  close(out_pipe[0]);
  close(err_pipe[0]);
  // It closed its output; it still has until the deadline to exit.
  int wstatus = 0;
  bool reaped = false;
  while (!timed_out) {
    pid_t done = waitpid(pid, &wstatus, WNOHANG);
    if (done == pid || (done < 0 && errno != EINTR)) {
      reaped = true;
      break;
    }
    if (clock->NowNanos() >= deadline) {
      timed_out = true;
      break;
    }
    clock->SleepNanos(1'000'000);
  }
  if (!reaped) {
    kill(pid, SIGKILL);
    while (waitpid(pid, &wstatus, 0) < 0 && errno == EINTR) {
    }
  }

  const std::string progress = LastProgress(err);
  const std::string where = progress.empty() ? "" : absl::StrCat(" while ", progress);
  const std::string what = absl::StrCat("cannot validate the plugin operators of ", source_name, ": the plugin helper");
  if (timed_out) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " did not finish within ", options.timeout_ms, " ms (it was killed)", where));
  }
  if (WIFSIGNALED(wstatus)) {
    const int sig = WTERMSIG(wstatus);
    return absl::InvalidArgumentError(
        absl::StrCat(what, " was killed by signal ", sig, " (", strsignal(sig), ")", where));
  }
  if (!WIFEXITED(wstatus) || WEXITSTATUS(wstatus) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(what, " exited with status ", WEXITSTATUS(wstatus), where,
                                                   err.empty() ? "" : ": ", err));
  }
  return ParseReport(out);
}

absl::Status AddValidatedPluginTypes(const ValidatedPlugins& validated, plan::OperatorTypeCatalog* catalog) {
  for (const ValidatedPlugins::Type& t : validated.types) {
    absl::Status s = catalog->Add(std::make_unique<ValidatedEntry>(t.traits, &validated));
    if (!s.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("operator type '", t.traits.name, "' of plugin ", t.plugin, " is already registered"));
    }
  }
  for (const ValidatedPlugins::AggregateFunction& f : validated.aggregate_functions) {
    absl::Status s = catalog->AddAggregateFunction(std::make_shared<ValidatedAggregateFunction>(f));
    if (!s.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("aggregate function '", f.name, "' of ", f.origin, " is already registered"));
    }
  }
  return absl::OkStatus();
}

}  // namespace sluice::plugin
