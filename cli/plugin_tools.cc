#include "cli/plugin_tools.h"

#include <filesystem>
#include <fstream>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"

namespace sluice::cli {
namespace {

// ---------------------------------------------------------------------------------------------
// Templates of `sluice plugin new`: @NAME@ is the plugin and operator type name, @CLASS@ its
// class name.

constexpr char kCMakeTemplate[] =
    R"TPL(# The @NAME@ operator plugin for Sluice (made by `sluice plugin new @NAME@`).
#
# Build and test it against an installed Sluice SDK
# (cmake --install <sluice build> --prefix <prefix> --component sdk):
#   cmake -S . -B build -DCMAKE_PREFIX_PATH=<prefix>
#   cmake --build build && ctest --test-dir build --output-on-failure
#   sluice plugin check build/lib@NAME@.so
cmake_minimum_required(VERSION 3.22)
project(@NAME@ LANGUAGES CXX)
set(CMAKE_CXX_STANDARD 17)
set(CMAKE_CXX_STANDARD_REQUIRED ON)

find_package(Sluice 1 CONFIG REQUIRED)

# lib@NAME@.so: hidden visibility, only the entry point exported, no undefined symbols.
sluice_add_plugin(@NAME@ SOURCES @NAME@.cc)

# The operator's unit test, against the SDK's in-memory fake host (sluice/testing.h).
enable_testing()
add_executable(@NAME@_test @NAME@_test.cc @NAME@.cc)
target_link_libraries(@NAME@_test PRIVATE Sluice::sdk)
add_test(NAME @NAME@_test COMMAND @NAME@_test)
)TPL";

constexpr char kOperatorTemplate[] =
    R"TPL(// @NAME@: a Sluice operator plugin (made by `sluice plugin new @NAME@`).
// Keeps the records whose int64 field `field` is at least `min`, and counts the others.
//
//   - id: big
//     type: @NAME@
//     field: amount
//     min: 10
//
// sluice/sdk.h documents the API (keyed state, timers, two inputs); the SDK's README the rules
// (one thread per instance, who owns what). Test it with sluice/testing.h (@NAME@_test.cc).
#include <string>

#include "sluice/sdk.h"

namespace {

using sluice::sdk::Context;
using sluice::sdk::Field;
using sluice::sdk::FieldType;
using sluice::sdk::Options;
using sluice::sdk::Record;
using sluice::sdk::Status;

class @CLASS@ : public sluice::sdk::Operator {
 public:
  // Options were checked by Validate (at job submission) before any instance is made.
  explicit @CLASS@(const Options& o) {
    (void)o.GetString("field", &field_name_);
    (void)o.GetInt("min", &min_, 0);
  }

  // Runs when a job is submitted: refuse bad options here, saying what is wrong.
  static Status Validate(const Options& o) {
    SLUICE_SDK_RETURN_IF_ERROR(o.CheckKnownKeys({"field", "min"}));
    std::string field;
    SLUICE_SDK_RETURN_IF_ERROR(o.GetString("field", &field));
    int64_t min = 0;
    return o.GetInt("min", &min, 0);
  }

  // Resolve fields by name once (then use them by index per record); register counters and
  // state here.
  Status Open(Context& ctx) override {
    SLUICE_SDK_RETURN_IF_ERROR(ctx.InputField(field_name_, FieldType::kInt64, &field_));
    return ctx.RegisterCounter("dropped", &dropped_);
  }

  // One input record: emit any number of records (here: the record itself, or nothing).
  Status Process(const Record& in, Context& ctx) override {
    if (in.Int(field_) >= min_) return ctx.Forward(in);
    dropped_.Add();
    return Status::Ok();
  }

 private:
  std::string field_name_;
  int64_t min_ = 0;
  Field field_;
  sluice::sdk::Counter dropped_;
};

}  // namespace

SLUICE_PLUGIN("@NAME@", "0.1.0", plugin) {
  plugin.AddOperator<@CLASS@>("@NAME@")
      .Description("keeps records whose int64 field is at least min")
      .Validate(&@CLASS@::Validate)
      .RequiredOption("field", "string", "the int64 field to test")
      .Option("min", "int64", "0", "the smallest value kept");
}
)TPL";

constexpr char kTestTemplate[] =
    R"TPL(// Unit test of @NAME@ against the SDK's fake host: records in, records out, no cluster.
// Exits 0 when every check passes.
#include <cstdio>
#include <string>
#include <vector>

#include "sluice/testing.h"

extern "C" const sluice_plugin* sluice_plugin_init_v1(sluice_error* error);

namespace {

using sluice::sdk::FieldType;
using sluice::sdk::testing::Harness;
using sluice::sdk::testing::HarnessOptions;

int failures = 0;

void Check(bool ok, const std::string& what) {
  if (!ok) {
    std::fprintf(stderr, "FAILED: %s\n", what.c_str());
    ++failures;
  }
}

HarnessOptions Options(const std::string& json) {
  HarnessOptions o;
  o.type = "@NAME@";
  o.options_json = json;
  o.input = {{"user", FieldType::kString}, {"amount", FieldType::kInt64}};
  return o;
}

}  // namespace

int main() {
  {
    Harness h(&sluice_plugin_init_v1, Options(R"({"field":"amount","min":10})"));
    Check(h.Validate().ok(), "options accepted");
    Check(h.Open().ok(), "open");
    Check(h.ProcessBatch({{"ann", 5}, {"bob", 10}, {"cid", 42}}).ok(), "process");
    std::vector<std::string> want = {R"({"user":"bob","amount":10})", R"({"user":"cid","amount":42})"};
    Check(h.output() == want, "kept records");
    Check(h.CounterValue("dropped") == 1, "dropped counter");
  }
  {
    Harness h(&sluice_plugin_init_v1, Options(R"({"field":"amount","mni":1})"));
    Check(h.Validate().message() == "unknown option 'mni' (known: field, min)", "unknown option refused");
  }
  {
    Harness h(&sluice_plugin_init_v1, Options(R"({"field":"user"})"));
    Check(h.Open().message() == "input field 'user' is string, not int64", "field type checked");
  }
  if (failures == 0) std::printf("@NAME@_test: all checks passed\n");
  return failures == 0 ? 0 : 1;
}
)TPL";

std::string ClassName(const std::string& name) {
  std::string out;
  bool upper = true;
  for (char c : name) {
    if (c == '_') {
      upper = true;
      continue;
    }
    out.push_back(upper && c >= 'a' && c <= 'z' ? static_cast<char>(c - 'a' + 'A') : c);
    upper = false;
  }
  if (out.empty() || (out[0] >= '0' && out[0] <= '9')) out.insert(0, "Op");
  return out;
}

bool ValidName(const std::string& name) {
  if (name.empty() || name.size() > 64 || name[0] < 'a' || name[0] > 'z') return false;
  for (char c : name) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return false;
  }
  return true;
}

std::string Inputs(int n) { return n == 1 ? "1 input" : absl::StrCat(n, " inputs"); }

}  // namespace

std::string DescribePlugin(const plugin::LoadedPlugin& p) {
  const plugin::AbiVersion host = plugin::kHostAbi;
  std::string out = absl::StrCat("plugin ", p.name, " ", p.version, "\n");
  absl::StrAppend(&out, "  file: ", p.path, "\n");
  absl::StrAppend(&out, "  ABI:  ", p.abi.major, ".", p.abi.minor, " (this Sluice loads ",
                  host.major, ".0 to ", host.major, ".", host.minor, ")\n");
  absl::StrAppend(&out, "  operator types (", p.types.size(), "):\n");
  for (const auto& t : p.types) {
    absl::StrAppend(&out, "    ", t.name, ": ", Inputs(t.num_inputs), ", ",
                    t.keyed ? "keyed" : "not keyed", "\n");
    if (!t.description.empty()) absl::StrAppend(&out, "      ", t.description, "\n");
    if (!t.options_described) {
      absl::StrAppend(&out, "      options: not described by the plugin",
                      p.abi.minor < 1 ? " (built for ABI 1.0, which cannot)" : "", "\n");
      continue;
    }
    absl::StrAppend(&out, "      options:\n");
    size_t name_width = 0;
    size_t type_width = 0;
    for (const auto& o : t.options) {
      name_width = std::max(name_width, o.name.size());
      type_width = std::max(type_width, o.type.size());
    }
    for (const auto& o : t.options) {
      std::string when = o.required                ? "required"
                         : o.default_value.empty() ? "optional"
                                                   : absl::StrCat("default ", o.default_value);
      std::string line = absl::StrFormat("        %-*s  %-*s  %s", static_cast<int>(name_width),
                                         o.name, static_cast<int>(type_width), o.type, when);
      if (!o.description.empty()) absl::StrAppend(&line, ": ", o.description);
      absl::StrAppend(&out, line, "\n");
    }
  }
  if (!p.aggregate_functions.empty()) {
    absl::StrAppend(&out, "  aggregate functions (", p.aggregate_functions.size(), "):\n");
    for (const auto& f : p.aggregate_functions) {
      absl::StrAppend(&out, "    ", f.name, ": accumulator version ", f.abi->accumulator_version, "\n");
      if (!f.description.empty()) absl::StrAppend(&out, "      ", f.description, "\n");
    }
  }
  return out;
}

absl::StatusOr<std::string> CheckPlugin(plugin::PluginLoader& loader, const std::string& path) {
  // dlopen searches the library path for a name without '/': a file name means this one.
  std::error_code ec;
  std::filesystem::path abs = std::filesystem::absolute(path, ec);
  const std::string resolved = ec ? path : abs.lexically_normal().string();
  auto p = loader.Load(resolved);
  if (!p.ok()) return p.status();
  return DescribePlugin(**p);
}

absl::StatusOr<std::string> NewPluginProject(const std::string& name, const std::string& dir) {
  if (!ValidName(name)) {
    return absl::InvalidArgumentError(
        absl::StrCat("plugin name '", name,
                     "' must be a lower-case identifier: a letter, then letters, digits or '_' "
                     "(at most 64), e.g. geo_hash"));
  }
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::exists(dir, ec) && !(fs::is_directory(dir, ec) && fs::is_empty(dir, ec))) {
    return absl::AlreadyExistsError(
        absl::StrCat(dir, " already exists and is not an empty directory: choose another --dir"));
  }
  fs::create_directories(dir, ec);
  if (ec)
    return absl::FailedPreconditionError(absl::StrCat("cannot create ", dir, ": ", ec.message()));
  const std::vector<std::pair<std::string, std::string>> vars = {{"@NAME@", name},
                                                                 {"@CLASS@", ClassName(name)}};
  const std::vector<std::pair<std::string, const char*>> files = {
      {"CMakeLists.txt", kCMakeTemplate},
      {name + ".cc", kOperatorTemplate},
      {name + "_test.cc", kTestTemplate},
  };
  std::string written;
  for (const auto& [file, text] : files) {
    const std::string path = (fs::path(dir) / file).string();
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << absl::StrReplaceAll(text, vars);
    out.close();
    if (!out) return absl::FailedPreconditionError(absl::StrCat("cannot write ", path));
    absl::StrAppend(&written, path, "\n");
  }
  return written;
}

}  // namespace sluice::cli
