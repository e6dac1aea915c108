#include "cli/plugin_tools.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sluice::cli {
namespace {

using ::sluice::testing::StatusIs;
using ::testing::HasSubstr;

TEST(PluginCheckTest, DescribesTheKeyedExampleWithItsOptions) {
  plugin::PluginLoader loader;
  auto text = CheckPlugin(loader, CLI_TEST_DEDUP);
  ASSERT_OK(text);
  EXPECT_EQ(*text,
            absl::StrCat(
                "plugin dedup 1.0.0\n"
                "  file: ",
                CLI_TEST_DEDUP,
                "\n"
                "  ABI:  1.2 (this Sluice loads 1.0 to 1.2)\n"
                "  operator types (1):\n"
                "    dedup: 1 input, keyed\n"
                "      drops repeats of a key within within_ms of event time (keyed state + "
                "event-time timer)\n"
                "      options:\n"
                "        time_field  string  required: timestamp or int64 field with the event "
                "time (ms)\n"
                "        within_ms   int64   required: repeats of a key this close in event time "
                "are dropped\n"
                "        ttl_ms      int64   default 0: state also expires this long after it was "
                "written (processing time); 0: never\n"));
}

TEST(PluginCheckTest, DescribesTheTwoInputExample) {
  plugin::PluginLoader loader;
  auto text = CheckPlugin(loader, CLI_TEST_ENRICH);
  ASSERT_OK(text);
  EXPECT_THAT(
      *text,
      HasSubstr(
          "    enrich: 2 inputs, keyed\n"
          "      appends the latest value per key from input 1 to the events of input 0\n"
          "      options:\n"
          "        field       string  required: the field of input 1 to attach\n"
          "        as          string  default the value of field: its name in the output\n"));
  EXPECT_THAT(*text, HasSubstr("        default     string  optional: the value attached"));
}

TEST(PluginCheckTest, AnAbi10PluginLoadsAndSaysItCannotDescribeOptions) {
  plugin::PluginLoader loader;
  auto text = CheckPlugin(loader, CLI_TEST_SDK_1_0);
  ASSERT_OK(text);
  EXPECT_THAT(*text, HasSubstr("  ABI:  1.0 (this Sluice loads 1.0 to 1.2)\n"));
  EXPECT_THAT(
      *text,
      HasSubstr("    keyed_count: 1 input, keyed\n"
                "      options: not described by the plugin (built for ABI 1.0, which cannot)\n"));
}

TEST(PluginCheckTest, OtherMajorFailsWithTheLoadersMessage) {
  plugin::PluginLoader loader;
  EXPECT_THAT(
      CheckPlugin(loader, CLI_TEST_ABI_2_0),
      StatusIs(
          absl::StatusCode::kFailedPrecondition,
          absl::StrCat("cannot load plugin ", CLI_TEST_ABI_2_0,
                       ": it exports sluice_plugin_init_v2 (plugin ABI 2.x), but this Sluice build "
                       "supports ABI 1.2 (it loads plugins built for ABI 1.0 to 1.2): rebuild the "
                       "plugin against Sluice SDK 1 (find_package(Sluice 1))")));
  EXPECT_THAT(CheckPlugin(loader, "/nonexistent/libx.so"),
              StatusIs(absl::StatusCode::kNotFound,
                       "cannot load plugin /nonexistent/libx.so: no such file"));
}

TEST(PluginCheckTest, ARelativePathIsTheFileNotALibrarySearch) {
  plugin::PluginLoader loader;
  std::filesystem::path dedup(CLI_TEST_DEDUP);
  std::filesystem::path old = std::filesystem::current_path();
  std::filesystem::current_path(dedup.parent_path());
  auto text = CheckPlugin(loader, dedup.filename().string());
  std::filesystem::current_path(old);
  ASSERT_OK(text);
  EXPECT_THAT(*text, HasSubstr(absl::StrCat("  file: ", CLI_TEST_DEDUP, "\n")));
}

std::string Read(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(PluginNewTest, WritesAProjectFromTheTemplates) {
  std::string dir =
      absl::StrCat(::testing::TempDir(), "/sluice-plugin-new-", getpid(), "/geo_hash");
  auto written = NewPluginProject("geo_hash", dir);
  ASSERT_OK(written);
  EXPECT_EQ(*written, absl::StrCat(dir, "/CMakeLists.txt\n", dir, "/geo_hash.cc\n", dir,
                                   "/geo_hash_test.cc\n"));
  std::string cmake = Read(std::filesystem::path(dir) / "CMakeLists.txt");
  EXPECT_THAT(cmake, HasSubstr("find_package(Sluice 1 CONFIG REQUIRED)\n"));
  EXPECT_THAT(cmake, HasSubstr("sluice_add_plugin(geo_hash SOURCES geo_hash.cc)\n"));
  EXPECT_THAT(cmake, HasSubstr("add_test(NAME geo_hash_test COMMAND geo_hash_test)\n"));
  std::string op = Read(std::filesystem::path(dir) / "geo_hash.cc");
  EXPECT_THAT(op, HasSubstr("class GeoHash : public sluice::sdk::Operator {"));
  EXPECT_THAT(op, HasSubstr("SLUICE_PLUGIN(\"geo_hash\", \"0.1.0\", plugin) {"));
  EXPECT_THAT(op, ::testing::Not(HasSubstr("@")));
  EXPECT_THAT(Read(std::filesystem::path(dir) / "geo_hash_test.cc"),
              HasSubstr("o.type = \"geo_hash\";"));
  // The directory now has files: a second run refuses to overwrite them.
  EXPECT_THAT(
      NewPluginProject("geo_hash", dir),
      StatusIs(absl::StatusCode::kAlreadyExists,
               absl::StrCat(
                   dir, " already exists and is not an empty directory: choose another --dir")));
  std::filesystem::remove_all(std::filesystem::path(dir).parent_path());
}

TEST(PluginNewTest, RefusesNamesThatAreNotIdentifiers) {
  for (const char* bad : {"", "GeoHash", "1x", "geo-hash", "a/b", "../x"}) {
    EXPECT_THAT(
        NewPluginProject(bad, ::testing::TempDir() + "/never"),
        StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("must be a lower-case identifier")))
        << bad;
  }
  EXPECT_FALSE(std::filesystem::exists(::testing::TempDir() + "/never"));
}

}  // namespace
}  // namespace sluice::cli
