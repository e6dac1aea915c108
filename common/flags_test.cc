#include "common/flags.h"

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "common/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sluice {
namespace {

using ::sluice::testing::StatusIs;
using ::testing::HasSubstr;

// A daemon-like command line: --port (default 0), --ha-dir, a required --coordinator.
struct Daemon {
  CLI::App app{"test"};
  int port = 0;
  std::string ha_dir;
  std::string coordinator;
  Daemon() {
    app.add_option("--port", port, "port")->check(CLI::Range(0, 65535));
    app.add_option("--ha-dir", ha_dir, "ha");
    app.add_option("--coordinator", coordinator, "coordinator")->required();
  }
  // Sets up and parses `args` (argv[0] added); returns the status of config loading and
  // whether parsing succeeded.
  absl::Status Parse(std::vector<std::string> args, bool* parsed) {
    args.insert(args.begin(), "daemon");
    std::vector<const char*> argv;
    for (const auto& a : args) argv.push_back(a.c_str());
    absl::Status s = ApplyConfigFile(&app, static_cast<int>(argv.size()), argv.data());
    BindEnvironment(&app);
    *parsed = false;
    if (!s.ok()) return s;
    try {
      app.parse(static_cast<int>(argv.size()), argv.data());
      *parsed = true;
    } catch (const CLI::ParseError&) {
    }
    return absl::OkStatus();
  }
};

class FlagsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    unsetenv("SLUICE_PORT");
    unsetenv("SLUICE_CONFIG");
    config_ = (std::filesystem::temp_directory_path() / ("flags-test-" + std::to_string(getpid()) + ".yaml")).string();
  }
  void TearDown() override {
    unsetenv("SLUICE_PORT");
    unsetenv("SLUICE_CONFIG");
    std::filesystem::remove(config_);
  }
  void WriteConfig(const std::string& text) { std::ofstream(config_) << text; }
  std::string config_;
};

TEST_F(FlagsTest, FlagsBeatEnvironmentWhichBeatsTheConfigFile) {
  WriteConfig("port: 1111\nha-dir: /from/file\ncoordinator: c:1\n");
  {
    Daemon d;
    bool parsed;
    ASSERT_OK(d.Parse({"--config", config_}, &parsed));
    ASSERT_TRUE(parsed);
    EXPECT_EQ(d.port, 1111);
    EXPECT_EQ(d.ha_dir, "/from/file");
    EXPECT_EQ(d.coordinator, "c:1");  // required, satisfied by the file
  }
  setenv("SLUICE_PORT", "2222", 1);
  {
    Daemon d;
    bool parsed;
    ASSERT_OK(d.Parse({"--config=" + config_}, &parsed));
    ASSERT_TRUE(parsed);
    EXPECT_EQ(d.port, 2222);
    EXPECT_EQ(d.ha_dir, "/from/file");
  }
  {
    Daemon d;
    bool parsed;
    ASSERT_OK(d.Parse({"--config", config_, "--port", "3333"}, &parsed));
    ASSERT_TRUE(parsed);
    EXPECT_EQ(d.port, 3333);
  }
  setenv("SLUICE_CONFIG", config_.c_str(), 1);  // the file named by the environment
  {
    Daemon d;
    bool parsed;
    ASSERT_OK(d.Parse({}, &parsed));
    ASSERT_TRUE(parsed);
    EXPECT_EQ(d.ha_dir, "/from/file");
  }
}

TEST_F(FlagsTest, WithoutAConfigFileTheRequiredFlagIsRequired) {
  Daemon d;
  bool parsed;
  ASSERT_OK(d.Parse({}, &parsed));
  EXPECT_FALSE(parsed);
}

TEST_F(FlagsTest, UnknownSettingsAndBadValuesNameTheLine) {
  WriteConfig("port: 1\nprot: 2\n");
  Daemon d;
  bool parsed;
  EXPECT_THAT(d.Parse({"--config", config_}, &parsed),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr(config_ + ":2: unknown setting 'prot' (settings are the long flags")));
  WriteConfig("port: 70000\n");
  Daemon d2;
  EXPECT_THAT(d2.Parse({"--config", config_}, &parsed),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(config_ + ":1: 'port': ")));
  WriteConfig("ha-dir: [a, b]\n");
  Daemon d3;
  EXPECT_THAT(d3.Parse({"--config", config_}, &parsed),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(":1: 'ha-dir' must be a single value")));
  Daemon d4;
  EXPECT_THAT(d4.Parse({"--config", config_ + ".missing"}, &parsed),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("cannot read config file")));
}

}  // namespace
}  // namespace sluice

#include "common/address.h"

namespace sluice {
namespace {

TEST(AddressTest, AdvertisesTheBindHostUnlessItIsAWildcard) {
  unsetenv("POD_IP");
  EXPECT_EQ(DefaultAdvertiseHost("10.1.2.3"), "10.1.2.3");
  EXPECT_EQ(DefaultAdvertiseHost("sluice-worker-0.sluice"), "sluice-worker-0.sluice");
  setenv("POD_IP", "10.9.8.7", 1);
  EXPECT_EQ(DefaultAdvertiseHost("0.0.0.0"), "10.9.8.7");
  EXPECT_EQ(DefaultAdvertiseHost("::"), "10.9.8.7");
  unsetenv("POD_IP");
  const std::string guessed = DefaultAdvertiseHost("0.0.0.0");
  EXPECT_FALSE(guessed.empty());
  EXPECT_NE(guessed.rfind("127.", 0), 0u) << "a loopback address is no use to peers: " << guessed;
}

}  // namespace
}  // namespace sluice
