#include <dlfcn.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "common/clock.h"
#include "common/key_groups.h"
#include "common/record.h"
#include "common/record_codec.h"
#include "common/status.h"
#include "common/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "operators/key_hasher.h"
#include "operators/operator.h"
#include "operators/timer_service.h"
#include "plan/job_spec.h"
#include "sdk/host/options_json.h"
#include "sdk/host/plugin_loader.h"
#include "operators/operator_types.h"
#include "sdk/host/plugin_operator.h"
#include "sdk/host/plugin_types.h"
#include "sdk/host/plugin_validation.h"
#include "sluice/plugin.h"
#include "sluice/sdk.h"
#include "sluice/testing.h"
#include "state/keyed_state_backend.h"
#include "yaml-cpp/yaml.h"

// The entry point of the test operators compiled into this binary (test_operators.cc).
extern "C" const sluice_plugin* sluice_plugin_init_v1(sluice_error* error);

namespace sluice::plugin {
namespace {

using ::sluice::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::IsEmpty;
using Harness = ::sluice::sdk::testing::Harness;
using HarnessOptions = ::sluice::sdk::testing::HarnessOptions;
using SdkType = ::sluice::sdk::FieldType;
using SdkCode = ::sluice::sdk::StatusCode;

std::string PluginPath(const std::string& name) {
  return absl::StrCat(SLUICE_TEST_PLUGIN_DIR, "/lib", name, ".so");
}

// ---------------------------------------------------------------------------------------------
// Loading and ABI versions

TEST(PluginLoaderTest, MissingFileIsNotFound) {
  PluginLoader loader;
  EXPECT_THAT(loader.Load("/nonexistent/libnothing.so"),
              StatusIs(absl::StatusCode::kNotFound, "cannot load plugin /nonexistent/libnothing.so: no such file"));
}

TEST(PluginLoaderTest, NotASharedLibraryIsRefused) {
  std::string path = absl::StrCat(::testing::TempDir(), "/sluice-sdk-not-a-plugin-", getpid(), ".so");
  FILE* f = fopen(path.c_str(), "w");
  ASSERT_NE(f, nullptr);
  fputs("hello", f);
  fclose(f);
  PluginLoader loader;
  EXPECT_THAT(loader.Load(path), StatusIs(absl::StatusCode::kFailedPrecondition,
                                          ::testing::StartsWith(absl::StrCat("cannot load plugin ", path, ": "))));
}

TEST(PluginLoaderTest, MissingEntryPointIsNamed) {
  PluginLoader loader;
  std::string path = PluginPath("test_plugin_abi_no_entry");
  EXPECT_THAT(loader.Load(path),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       absl::StrCat("cannot load plugin ", path,
                                    ": it exports no sluice_plugin_init_v1 (the entry point of plugin ABI 1): "
                                    "build it with sluice_add_plugin() and define the entry point with "
                                    "SLUICE_PLUGIN(...) from sluice/sdk.h")));
}

TEST(PluginLoaderTest, SameMajorOlderOrEqualMinorLoads) {
  PluginLoader loader(AbiVersion{1, 2});
  auto old_minor = loader.Load(PluginPath("test_plugin_abi_1_0"));
  ASSERT_OK(old_minor);
  EXPECT_EQ((*old_minor)->abi.major, 1u);
  EXPECT_EQ((*old_minor)->abi.minor, 0u);
  EXPECT_EQ((*old_minor)->name, "abi-test");
  EXPECT_EQ((*old_minor)->version, "1.0.0");
  ASSERT_EQ((*old_minor)->types.size(), 1u);
  EXPECT_EQ((*old_minor)->types[0].name, "noop");
  EXPECT_FALSE((*old_minor)->types[0].keyed);
  auto same_minor = loader.Load(PluginPath("test_plugin_abi_1_2"));
  ASSERT_OK(same_minor);
  EXPECT_EQ((*same_minor)->abi.minor, 2u);
  // Loading a path again gives the same plugin.
  auto again = loader.Load(PluginPath("test_plugin_abi_1_0"));
  ASSERT_OK(again);
  EXPECT_EQ(*again, *old_minor);
}

TEST(PluginLoaderTest, NewerMinorIsRefusedWithBothVersionsAndRemedy) {
  PluginLoader loader;  // this build's ABI, 1.2
  std::string path = PluginPath("test_plugin_abi_1_3");
  EXPECT_THAT(loader.Load(path),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       absl::StrCat("cannot load plugin ", path,
                                    ": it was built for plugin ABI 1.3, but this Sluice build supports ABI 1.2 "
                                    "(it loads plugins built for ABI 1.0 to 1.2): rebuild the plugin against the "
                                    "Sluice SDK of this build (ABI 1.2), or upgrade Sluice to a release with ABI "
                                    "1.3 or later")));
  // A 1.0 host refuses a 1.1 plugin the same way.
  PluginLoader old_host(AbiVersion{1, 0});
  EXPECT_THAT(old_host.Load(PluginPath("test_plugin_abi_1_1")),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       ::testing::HasSubstr("it was built for plugin ABI 1.1, but this Sluice build supports ABI "
                                            "1.0 (it loads plugins built for ABI 1.0 to 1.0)")));
}

TEST(PluginLoaderTest, ThisHostIsAbi12AndLoads10And11Plugins) {
  EXPECT_EQ(kHostAbi.major, 1u);
  EXPECT_EQ(kHostAbi.minor, 2u);
  PluginLoader loader;
  auto p = loader.Load(PluginPath("test_plugin_abi_1_0"));
  ASSERT_OK(p);
  EXPECT_EQ((*p)->abi.minor, 0u);
  auto q = loader.Load(PluginPath("test_plugin_abi_1_1"));
  ASSERT_OK(q);
  EXPECT_EQ((*q)->abi.minor, 1u);
  auto r = loader.Load(PluginPath("test_plugin_abi_1_2"));
  ASSERT_OK(r);
  EXPECT_EQ((*r)->abi.minor, 2u);
}

TEST(PluginLoaderTest, TwoInputTypesNeedAbi11AndAtMostTwoInputs) {
  PluginLoader loader;
  std::string v10 = PluginPath("test_plugin_abi_1_0_two_inputs");
  EXPECT_THAT(loader.Load(v10),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       absl::StrCat("cannot load plugin ", v10,
                                    ": operator type 'noop' has 2 inputs, but the plugin was built for plugin ABI "
                                    "1.0, which runs one-input operators only: rebuild it against Sluice SDK 1.1 "
                                    "or later")));
  auto v11 = loader.Load(PluginPath("test_plugin_abi_1_1_two_inputs"));
  ASSERT_OK(v11);
  EXPECT_EQ((*v11)->types[0].num_inputs, 2);
  std::string three = PluginPath("test_plugin_abi_1_1_three_inputs");
  EXPECT_THAT(loader.Load(three),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       absl::StrCat("cannot load plugin ", three,
                                    ": operator type 'noop' has 3 inputs; this Sluice build runs plugin operators "
                                    "with 1 or 2 inputs")));
}

TEST(PluginLoaderTest, OtherMajorIsRefusedWithBothVersionsAndRemedy) {
  PluginLoader loader(AbiVersion{1, 3});
  std::string v2 = PluginPath("test_plugin_abi_2_0");
  EXPECT_THAT(loader.Load(v2),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       absl::StrCat("cannot load plugin ", v2,
                                    ": it exports sluice_plugin_init_v2 (plugin ABI 2.x), but this Sluice build "
                                    "supports ABI 1.3 (it loads plugins built for ABI 1.0 to 1.3): rebuild the "
                                    "plugin against Sluice SDK 1 (find_package(Sluice 1))")));
  // An entry point of major 1 whose descriptor says 2 is refused the same way.
  std::string lying = PluginPath("test_plugin_abi_v1_says_2");
  EXPECT_THAT(loader.Load(lying),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       absl::StrCat("cannot load plugin ", lying,
                                    ": it was built for plugin ABI 2.0, but this Sluice build supports ABI 1.3 "
                                    "(it loads plugins built for ABI 1.0 to 1.3): rebuild the plugin against "
                                    "Sluice SDK 1 (find_package(Sluice 1))")));
}

TEST(PluginLoaderTest, TooSmallDescriptorIsRefused) {
  sluice_plugin d{};
  d.struct_size = 4;
  LoadedPlugin p;
  p.path = "/x/liby.so";
  EXPECT_THAT(CheckDescriptor(&d, kHostAbi, &p),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       "cannot load plugin /x/liby.so: its descriptor is 4 bytes, too small to hold an ABI "
                       "version: the file is damaged or was not built with the Sluice SDK"));
}

TEST(PluginLoaderTest, FailedCreateReturnsThePluginsMessage) {
  PluginLoader loader;
  auto plugin = loader.Load(PluginPath("test_plugin_abi_1_0"));
  ASSERT_OK(plugin);
  EXPECT_THAT(PluginOperator::Create(*plugin, &(*plugin)->types[0], "{}"),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       absl::StrCat("operator type 'noop' of plugin 'abi-test' 1.0.0 (", PluginPath("test_plugin_abi_1_0"),
                                    ") could not create an instance: this test plugin creates nothing")));
}

class SdkPluginTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto p = PluginLoader::Default()->Load(PluginPath("sdk_test_plugin"));
    ASSERT_OK(p);
    plugin_ = *p;
  }
  const PluginOperatorType& Type(const std::string& name) {
    const PluginOperatorType* t = plugin_->FindType(name);
    EXPECT_NE(t, nullptr) << name;
    return *t;
  }
  const LoadedPlugin* plugin_ = nullptr;
};

TEST_F(SdkPluginTest, DescribesItsTypes) {
  EXPECT_EQ(plugin_->name, "sdk-test");
  EXPECT_EQ(plugin_->version, "0.1.0");
  std::vector<std::string> names;
  for (const auto& t : plugin_->types) names.push_back(absl::StrCat(t.name, t.keyed ? " (keyed)" : ""));
  EXPECT_THAT(names, ElementsAre("positive_filter", "keyed_count (keyed)", "distinct (keyed)", "thrower", "refuser", "fail_at",
                                 "tier_join (keyed)", "forward_both", "null_if_negative",
                                 "null_everything"));
  EXPECT_EQ(Type("positive_filter").description, "keeps records whose field is above min");
  EXPECT_EQ(plugin_->abi.minor, 2u);
  EXPECT_EQ(Type("positive_filter").num_inputs, 1);
  EXPECT_EQ(Type("tier_join").num_inputs, 2);
  EXPECT_EQ(Type("forward_both").num_inputs, 2);
  // Options described through ABI 1.1.
  const PluginOperatorType& f = Type("positive_filter");
  EXPECT_TRUE(f.options_described);
  ASSERT_EQ(f.options.size(), 2u);
  EXPECT_EQ(f.options[0].name, "field");
  EXPECT_EQ(f.options[0].type, "string");
  EXPECT_TRUE(f.options[0].required);
  EXPECT_EQ(f.options[0].description, "the int64 field to test");
  EXPECT_EQ(f.options[1].name, "min");
  EXPECT_FALSE(f.options[1].required);
  EXPECT_EQ(f.options[1].default_value, "0");
  EXPECT_FALSE(Type("keyed_count").options_described);
}

TEST_F(SdkPluginTest, TwoInputOutputSchemaFromBothInputs) {
  Schema events({{"user", FieldType::kString}, {"amount", FieldType::kInt64}});
  Schema tiers({{"user", FieldType::kString}, {"tier", FieldType::kString}});
  auto out = OutputSchema(*plugin_, Type("tier_join"), std::vector<Schema>{events, tiers}, "{}", "");
  ASSERT_OK(out);
  EXPECT_EQ(out->ToString(), "(user string, amount int64, tier string, input int64)");
  EXPECT_THAT(OutputSchema(*plugin_, Type("tier_join"), std::vector<Schema>{events, events}, "{}", "job.yaml:3:5"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       ::testing::EndsWith("): no output schema: input 1 needs a string field 'tier'")));
  EXPECT_THAT(OutputSchema(*plugin_, Type("tier_join"), events, "{}", ""),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::EndsWith("): it has 2 input(s), but 1 were given")));
  // Without a two-input schema function: input 0's schema.
  auto same = OutputSchema(*plugin_, Type("forward_both"), std::vector<Schema>{events, tiers}, "{}", "");
  ASSERT_OK(same);
  EXPECT_EQ(*same, events);
}

// The same test operators, built against the frozen SDK 1.0 headers (sdk_1_0/).
TEST(Abi10PluginTest, LoadsAndRunsInTheFakeHostOfThisSdk) {
  std::string path = PluginPath("sdk_test_plugin_1_0");
  auto p = PluginLoader::Default()->Load(path);
  ASSERT_OK(p);
  EXPECT_EQ((*p)->abi.major, 1u);
  EXPECT_EQ((*p)->abi.minor, 0u);
  EXPECT_EQ((*p)->types.size(), 6u);  // no two-input types in 1.0
  EXPECT_FALSE((*p)->types[0].options_described);  // 1.0 cannot describe options
  EXPECT_EQ((*p)->descriptor->operator_types[0]->struct_size, SLUICE_OPERATOR_TYPE_SIZE_1_0);
  // The 1.1 fake host drives the 1.0 plugin through its own entry point.
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD);
  ASSERT_NE(handle, nullptr);
  auto init = reinterpret_cast<sluice_plugin_init_v1_fn>(dlsym(handle, SLUICE_PLUGIN_ENTRY_POINT));
  ASSERT_NE(init, nullptr);
  HarnessOptions o;
  o.type = "keyed_count";
  o.options_json = R"({"key_field":"user","timer":"event","at":500})";
  o.input = {{"user", SdkType::kString}, {"amount", SdkType::kInt64}};
  o.key = {"user"};
  Harness h(init, o);
  ASSERT_TRUE(h.Open().ok());
  ASSERT_TRUE(h.ProcessBatch({{"b", 1}, {"a", 1}, {"b", 1}}).ok());
  ASSERT_TRUE(h.AdvanceWatermark(500).ok());
  EXPECT_THAT(h.output(), ElementsAre(R"({"user":"a","count":1})", R"({"user":"b","count":2})"));
  EXPECT_EQ(h.Process(1, {"a", 1}).message(), "operator type 'keyed_count' has no input 1");
}

TEST_F(SdkPluginTest, ValidateRefusalCarriesThePluginsMessageAndPosition) {
  std::string who = absl::StrCat("operator type 'positive_filter' of plugin 'sdk-test' 0.1.0 (",
                                 PluginPath("sdk_test_plugin"), ") refused its options: ");
  EXPECT_OK(ValidateOptions(*plugin_, Type("positive_filter"), R"({"field":"amount","min":3})", "job.yaml:7:5"));
  EXPECT_THAT(ValidateOptions(*plugin_, Type("positive_filter"), R"({"field":3})", "job.yaml:7:5"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       absl::StrCat("job.yaml:7:5: ", who, "option 'field' must be a string")));
  EXPECT_THAT(ValidateOptions(*plugin_, Type("positive_filter"), R"({"field":"a","mni":1})", "job.yaml:7:5"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       absl::StrCat("job.yaml:7:5: ", who, "unknown option 'mni' (known: field, min)")));
  EXPECT_THAT(ValidateOptions(*plugin_, Type("positive_filter"), R"({"min":1})", ""),
              StatusIs(absl::StatusCode::kInvalidArgument, absl::StrCat(who, "missing required option 'field'")));
  EXPECT_THAT(ValidateOptions(*plugin_, Type("positive_filter"), R"({"field":)", ""),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       absl::StrCat(who, "options are not valid JSON: expected a value at offset 9")));
}

TEST_F(SdkPluginTest, OutputSchemaFromInputAndOptions) {
  Schema input({{"user", FieldType::kString}, {"amount", FieldType::kInt64}});
  auto out = OutputSchema(*plugin_, Type("keyed_count"), input, R"({"key_field":"user"})", "job.yaml:9:5");
  ASSERT_OK(out);
  EXPECT_EQ(out->ToString(), "(user string, count int64)");
  EXPECT_THAT(OutputSchema(*plugin_, Type("keyed_count"), input, R"({"key_field":"nope"})", "job.yaml:9:5"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       absl::StrCat("job.yaml:9:5: operator type 'keyed_count' of plugin 'sdk-test' 0.1.0 (",
                                    PluginPath("sdk_test_plugin"),
                                    "): no output schema: key_field 'nope' is not an input field")));
  // A type without an OutputSchema function keeps its input schema.
  auto same = OutputSchema(*plugin_, Type("positive_filter"), input, R"({"field":"amount"})", "");
  ASSERT_OK(same);
  EXPECT_EQ(*same, input);
}

TEST(OptionsJsonTest, YamlOptionsBecomeJsonWithoutEngineKeys) {
  YAML::Node n = YAML::Load(R"(
id: f
type: positive_filter
parallelism: 2
input: src
key: [user]
field: amount
min: 10
ratio: 0.5
quoted: "10"
on: true
nothing: null
pattern: 'a"b\c'
list: [1, x]
nested: {a: 1}
)");
  EXPECT_EQ(OptionsJson(n),
            R"({"field":"amount","min":10,"ratio":0.5,"quoted":"10","on":true,"nothing":null,)"
            R"("pattern":"a\"b\\c","list":[1,"x"],"nested":{"a":1}})");
}

// ---------------------------------------------------------------------------------------------
// The C++ layer through the fake host (sluice/testing.h)

HarnessOptions FilterOptions() {
  HarnessOptions o;
  o.type = "positive_filter";
  o.options_json = R"({"field":"amount","min":0})";
  o.input = {{"user", SdkType::kString}, {"amount", SdkType::kInt64}, {"ok", SdkType::kBool}};
  return o;
}

TEST(FakeHostTest, FilterReadsFieldsByIndexAndForwards) {
  Harness h(&sluice_plugin_init_v1, FilterOptions());
  ASSERT_TRUE(h.Open().ok());
  ASSERT_TRUE(h.ProcessBatch({{"a", 5, true}, {"b", -1, false}, {"c", 0, true}, {"d", 7, false}}).ok());
  ASSERT_TRUE(h.Process({"e", 1, true}).ok());
  ASSERT_TRUE(h.AdvanceWatermark(100).ok());
  EXPECT_THAT(h.output(), ElementsAre(R"({"user":"a","amount":5,"ok":true})", R"({"user":"d","amount":7,"ok":false})",
                                      R"({"user":"e","amount":1,"ok":true})"));
  EXPECT_THAT(h.watermarks(), ElementsAre(100));
  EXPECT_EQ(h.CounterValue("kept"), 3u);
}

TEST(FakeHostTest, ValidateAndOpenErrorsComeBack) {
  HarnessOptions o = FilterOptions();
  o.options_json = R"({"field":"amount","min":"x"})";
  Harness bad_option(&sluice_plugin_init_v1, o);
  sdk::Status s = bad_option.Validate();
  EXPECT_EQ(s.code(), SdkCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "option 'min' must be an integer");

  o = FilterOptions();
  o.options_json = R"({"field":"user"})";
  Harness wrong_type(&sluice_plugin_init_v1, o);
  s = wrong_type.Open();
  EXPECT_EQ(s.code(), SdkCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "input field 'user' is string, not int64");

  o.options_json = R"({"field":"missing"})";
  Harness missing(&sluice_plugin_init_v1, o);
  s = missing.Open();
  EXPECT_EQ(s.code(), SdkCode::kNotFound);
  EXPECT_EQ(s.message(), "input has no field 'missing'");
}

TEST(FakeHostTest, ExceptionBecomesStatusNamingTheOperator) {
  HarnessOptions o;
  o.type = "thrower";
  o.operator_id = "explode";
  o.input = {{"x", SdkType::kInt64}};
  Harness h(&sluice_plugin_init_v1, o);
  ASSERT_TRUE(h.Open().ok());
  sdk::Status s = h.Process({1});
  EXPECT_EQ(s.code(), SdkCode::kInternal);
  EXPECT_EQ(s.message(), "operator 'explode' (type 'thrower') threw an exception in Process: boom");
}

TEST(FakeHostTest, ErrorStatusFromProcessComesBack) {
  HarnessOptions o;
  o.type = "refuser";
  o.input = {{"x", SdkType::kInt64}};
  Harness h(&sluice_plugin_init_v1, o);
  ASSERT_TRUE(h.Open().ok());
  sdk::Status s = h.Process({1});
  EXPECT_EQ(s.code(), SdkCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "record refused by policy");
}

HarnessOptions CountOptions(const std::string& options_json) {
  HarnessOptions o;
  o.type = "keyed_count";
  o.options_json = options_json;
  o.input = {{"user", SdkType::kString}, {"amount", SdkType::kInt64}};
  o.key = {"user"};
  o.processing_time_ms = 1000;
  return o;
}

TEST(FakeHostTest, KeyedCountOfAnInt64Key) {
  HarnessOptions o = CountOptions(R"({"key_field":"amount"})");
  o.key = {"amount"};
  Harness h(&sluice_plugin_init_v1, o);
  ASSERT_TRUE(h.Open().ok());
  ASSERT_TRUE(h.ProcessBatch({{"a", 7}, {"b", 8}, {"c", 7}}).ok());
  EXPECT_THAT(h.output(), ElementsAre(R"({"amount":7,"count":1})", R"({"amount":8,"count":1})",
                                      R"({"amount":7,"count":2})"));
}

TEST(FakeHostTest, KeyedValueStatePerKey) {
  Harness h(&sluice_plugin_init_v1, CountOptions(R"({"key_field":"user"})"));
  ASSERT_TRUE(h.Open().ok());
  EXPECT_EQ(h.output_schema().size(), 2u);
  ASSERT_TRUE(h.ProcessBatch({{"a", 1}, {"b", 1}, {"a", 1}}).ok());
  ASSERT_TRUE(h.Process({"a", 1}).ok());
  EXPECT_THAT(h.output(), ElementsAre(R"({"user":"a","count":1})", R"({"user":"b","count":1})",
                                      R"({"user":"a","count":2})", R"({"user":"a","count":3})"));
}

TEST(FakeHostTest, EventTimeTimersFireInOrderWithTheirKey) {
  Harness h(&sluice_plugin_init_v1, CountOptions(R"({"key_field":"user","timer":"event","at":500})"));
  ASSERT_TRUE(h.Open().ok());
  ASSERT_TRUE(h.ProcessBatch({{"b", 1}, {"a", 1}, {"b", 1}}).ok());
  EXPECT_THAT(h.output(), IsEmpty());
  EXPECT_THAT(h.PendingTimers(), ElementsAre(R"(event@500 {"user":"a"})", R"(event@500 {"user":"b"})"));
  ASSERT_TRUE(h.AdvanceWatermark(499).ok());
  EXPECT_THAT(h.output(), IsEmpty());
  ASSERT_TRUE(h.AdvanceWatermark(500).ok());
  EXPECT_THAT(h.output(), ElementsAre(R"({"user":"a","count":1})", R"({"user":"b","count":2})"));
  EXPECT_THAT(h.PendingTimers(), IsEmpty());
  EXPECT_THAT(h.watermarks(), ElementsAre(499, 500));
}

TEST(FakeHostTest, ProcessingTimeTimersFireWhenTheClockMoves) {
  Harness h(&sluice_plugin_init_v1, CountOptions(R"({"key_field":"user","timer":"processing","at":100})"));
  ASSERT_TRUE(h.Open().ok());
  ASSERT_TRUE(h.Process({"a", 1}).ok());
  EXPECT_THAT(h.PendingTimers(), ElementsAre(R"(processing@1100 {"user":"a"})"));
  ASSERT_TRUE(h.AdvanceProcessingTime(1099).ok());
  EXPECT_THAT(h.output(), IsEmpty());
  ASSERT_TRUE(h.AdvanceProcessingTime(1100).ok());
  EXPECT_THAT(h.output(), ElementsAre(R"({"user":"a","count":1})"));
}

TEST(FakeHostTest, MapAndListStateWithTtl) {
  HarnessOptions o;
  o.type = "distinct";
  o.options_json = R"({"ttl_ms":50})";
  o.input = {{"user", SdkType::kString}, {"value", SdkType::kString}};
  o.key = {"user"};
  o.processing_time_ms = 0;
  Harness h(&sluice_plugin_init_v1, o);
  ASSERT_TRUE(h.Open().ok());
  ASSERT_TRUE(h.ProcessBatch({{"a", "x"}, {"a", "x"}, {"b", "x"}, {"a", "y"}}).ok());
  ASSERT_TRUE(h.AdvanceProcessingTime(50).ok());  // the map entries expire, the list stays
  ASSERT_TRUE(h.Process({"a", "x"}).ok());
  EXPECT_THAT(h.output(), ElementsAre(R"({"user":"a","value":"x","seen":1})", R"({"user":"b","value":"x","seen":1})",
                                      R"({"user":"a","value":"y","seen":3})", R"({"user":"a","value":"x","seen":4})"));
}

HarnessOptions TierJoinOptions() {
  HarnessOptions o;
  o.type = "tier_join";
  o.input = {{"user", SdkType::kString}, {"amount", SdkType::kInt64}};
  o.key = {"user"};
  o.input2 = {{"tier", SdkType::kString}, {"name", SdkType::kString}};
  o.key2 = {"name"};
  return o;
}

TEST(FakeHostTest, TwoInputKeyedStateWrittenByOneInputReadByTheOther) {
  Harness h(&sluice_plugin_init_v1, TierJoinOptions());
  ASSERT_TRUE(h.Open().ok());
  ASSERT_TRUE(h.Process(0, {"a", 1}).ok());
  ASSERT_TRUE(h.ProcessBatch(1, {{"gold", "a"}, {"silver", "b"}}).ok());
  ASSERT_TRUE(h.ProcessBatch(0, {{"a", 2}, {"b", 3}, {"c", 4}}).ok());
  ASSERT_TRUE(h.Process(1, {"bronze", "a"}).ok());
  ASSERT_TRUE(h.Process({"a", 5}).ok());
  EXPECT_THAT(h.output(), ElementsAre(R"({"user":"a","amount":1,"tier":"","input":0})",
                                      R"({"user":"a","amount":2,"tier":"gold","input":0})",
                                      R"({"user":"b","amount":3,"tier":"silver","input":0})",
                                      R"({"user":"c","amount":4,"tier":"","input":0})",
                                      R"({"user":"a","amount":5,"tier":"bronze","input":0})"));
  EXPECT_EQ(h.Process(2, {"a", 1}).message(), "operator type 'tier_join' has no input 2");
}

TEST(FakeHostTest, TwoInputKeysMustMatchInTypeAndCount) {
  HarnessOptions o = TierJoinOptions();
  o.key2 = {};
  EXPECT_EQ(Harness(&sluice_plugin_init_v1, o).Open().message(),
            "a keyed two-input type needs key2 with as many fields as key");
  o = TierJoinOptions();
  o.input2 = {{"tier", SdkType::kString}, {"name", SdkType::kInt64}};
  EXPECT_EQ(Harness(&sluice_plugin_init_v1, o).Open().message(),
            "key2 field 'name' is int64, but key field 'user' is string");
  HarnessOptions one = FilterOptions();
  one.input2 = {{"x", SdkType::kInt64}};
  EXPECT_EQ(Harness(&sluice_plugin_init_v1, one).Open().message(),
            "input2 and key2 are for two-input types; 'positive_filter' has one input");
}

TEST(FakeHostTest, TwoInputForwardNeedsTheRecordsInputToHaveTheOutputSchema) {
  HarnessOptions o;
  o.type = "forward_both";
  o.input = {{"x", SdkType::kInt64}};
  o.input2 = {{"y", SdkType::kString}};
  Harness h(&sluice_plugin_init_v1, o);
  ASSERT_TRUE(h.Open().ok());
  ASSERT_TRUE(h.Process(0, {7}).ok());
  EXPECT_THAT(h.output(), ElementsAre(R"({"x":7})"));
  sdk::Status s = h.Process(1, {"no"});
  EXPECT_EQ(s.code(), SdkCode::kFailedPrecondition);
  EXPECT_EQ(s.message(), "emit_input: the output schema is not the schema of input 1");
}

TEST(SdkOptionsTest, ParsesScalarsEscapesAndNesting) {
  sdk::Options o;
  ASSERT_TRUE(sdk::Options::Parse(R"( {"s":"a\"\u00e9\n","i":-12,"d":2.5e1,"b":false,"n":null,"l":[1,{"x":"]"}]} )", &o).ok());
  std::string s;
  int64_t i = 0;
  double d = 0;
  bool b = true;
  ASSERT_TRUE(o.GetString("s", &s).ok());
  EXPECT_EQ(s, "a\"\xc3\xa9\n");
  ASSERT_TRUE(o.GetInt("i", &i).ok());
  EXPECT_EQ(i, -12);
  ASSERT_TRUE(o.GetDouble("d", &d).ok());
  EXPECT_EQ(d, 25.0);
  ASSERT_TRUE(o.GetBool("b", &b).ok());
  EXPECT_FALSE(b);
  ASSERT_TRUE(o.GetRaw("l", &s).ok());
  EXPECT_EQ(s, R"([1,{"x":"]"}])");
  EXPECT_EQ(o.GetInt("d", &i).message(), "option 'd' must be an integer");
  EXPECT_EQ(sdk::Options::Parse(R"({"a":1} x)", &o).message(), "options are not valid JSON: trailing text at offset 8");
}

// ---------------------------------------------------------------------------------------------
// The host adapter (PluginOperator) with the real RocksDB backend

class CollectingOutput final : public ops::Output {
 public:
  absl::Status Emit(const Record& r) override {
    std::string s;
    AppendRecordJson(*schema, r, &s);
    records.push_back(s);
    return fail_with;
  }
  absl::Status EmitWatermark(int64_t wm) override {
    watermarks.push_back(wm);
    return absl::OkStatus();
  }
  const Schema* schema = nullptr;
  std::vector<std::string> records;
  std::vector<int64_t> watermarks;
  absl::Status fail_with;
};

class AdapterTest : public SdkPluginTest {
 protected:
  // Creates and opens `type` with `options_json` over `input` (keyed by `key` when keyed).
  // Two-input types: `second` is input 1's schema, `second_key` its key field.
  absl::StatusOr<std::unique_ptr<PluginOperator>> Open(const std::string& type, const std::string& options_json,
                                                       const Schema& input, const std::string& key = "",
                                                       const Schema* second = nullptr,
                                                       const std::string& second_key = "") {
    const PluginOperatorType& t = Type(type);
    spec_.id = "op1";
    spec_.type = type;
    spec_.input_schema = input;
    std::vector<Schema> inputs = {input};
    if (second != nullptr) inputs.push_back(*second);
    SLUICE_ASSIGN_OR_RETURN(spec_.output_schema, OutputSchema(*plugin_, t, inputs, options_json, ""));
    if (!key.empty()) spec_.key = {plan::KeySpec{key, key}};
    out_.schema = &spec_.output_schema;
    SLUICE_ASSIGN_OR_RETURN(auto op, PluginOperator::Create(plugin_, &t, options_json));
    if (second != nullptr) {
      std::vector<plan::KeySpec> k;
      if (!second_key.empty()) k.push_back(plan::KeySpec{second_key, second_key});
      op->SetSecondInput(*second, std::move(k));
    }
    ops::OperatorContext ctx;
    ctx.spec = &spec_;
    ctx.job_id = "job-1";
    ctx.clock = &clock_;
    ctx.task_name = "job-1/op1#0";
    ctx.max_parallelism = kDefaultMaxParallelism;
    if (op->IsKeyed()) {
      state::StateBackendOptions o;
      o.local_dir = absl::StrCat(::testing::TempDir(), "/sluice-sdk-", getpid(), "-", counter_++);
      o.operator_id = spec_.id;
      o.max_parallelism = kDefaultMaxParallelism;
      o.range = KeyGroupRangeForSubtask(kDefaultMaxParallelism, 1, 0);
      o.clock = &clock_;
      if (restore_ != nullptr) {
        SLUICE_ASSIGN_OR_RETURN(backend_, state::KeyedStateBackend::Restore(o, {*restore_}, checkpoint_dir_));
        ctx.restored = true;
      } else {
        SLUICE_ASSIGN_OR_RETURN(backend_, state::KeyedStateBackend::Open(o));
      }
      ctx.keyed_state = backend_.get();
      timers_ = std::make_unique<ops::TimerService>(backend_.get(), &clock_);
      ctx.timers = timers_.get();
    }
    SLUICE_RETURN_IF_ERROR(op->Open(ctx, &out_));
    return op;
  }

  // The watermark reaches `op` as the task passes it: due event-time timers first.
  absl::Status Watermark(ops::Operator* op, int64_t watermark_ms) {
    if (timers_ != nullptr) SLUICE_RETURN_IF_ERROR(timers_->AdvanceWatermark(watermark_ms, op));
    return op->ProcessWatermark(watermark_ms);
  }

  static Record Rec(const std::string& user, int64_t amount) {
    Record r(2);
    r.SetString(0, user);
    r.SetInt(1, amount);
    return r;
  }

  Schema input_{{{"user", FieldType::kString}, {"amount", FieldType::kInt64}}};
  plan::OperatorSpec spec_;
  FakeClock clock_;
  CollectingOutput out_;
  std::unique_ptr<state::KeyedStateBackend> backend_;
  std::unique_ptr<ops::TimerService> timers_;
  // Set: Open() restores the keyed state from this snapshot (in checkpoint_dir_).
  const proto::KeyedStateHandle* restore_ = nullptr;
  const std::string checkpoint_dir_ = absl::StrCat(::testing::TempDir(), "/sluice-sdk-checkpoints-", getpid());
  static inline int counter_ = 0;
};

TEST_F(AdapterTest, PluginFilterOverRecords) {
  auto op = Open("positive_filter", R"({"field":"amount","min":1})", input_);
  ASSERT_OK(op);
  std::vector<Record> batch = {Rec("a", 1), Rec("b", 2), Rec("c", 0), Rec("d", 9)};
  ASSERT_OK((*op)->ProcessBatch(0, batch.data(), batch.size()));
  ASSERT_OK((*op)->Process(Rec("e", 5)));
  ASSERT_OK((*op)->Process(Rec("f", -5)));
  ASSERT_OK((*op)->ProcessWatermark(42));
  ASSERT_OK((*op)->Finish());
  (*op)->Close();
  EXPECT_THAT(out_.records, ElementsAre(R"({"user":"b","amount":2})", R"({"user":"d","amount":9})",
                                        R"({"user":"e","amount":5})"));
  EXPECT_THAT(out_.watermarks, ElementsAre(42));
}

TEST_F(AdapterTest, PluginKeyedCountInRocksDb) {
  auto op = Open("keyed_count", R"({"key_field":"user"})", input_, "user");
  ASSERT_OK(op);
  EXPECT_TRUE((*op)->IsKeyed());
  std::vector<Record> batch = {Rec("a", 1), Rec("b", 1), Rec("a", 1)};
  ASSERT_OK((*op)->ProcessBatch(0, batch.data(), batch.size()));
  ASSERT_OK((*op)->Process(Rec("a", 1)));
  ASSERT_OK((*op)->Process(Rec("b", 1)));
  EXPECT_THAT(out_.records, ElementsAre(R"({"user":"a","count":1})", R"({"user":"b","count":1})",
                                        R"({"user":"a","count":2})", R"({"user":"a","count":3})",
                                        R"({"user":"b","count":2})"));
  // The counts are in the backend, under the key the engine routes by.
  std::string key;
  Schema key_schema({{"user", FieldType::kString}});
  Record k(1);
  k.SetString(0, "a");
  EncodeRecord(key_schema, k, &key);
  backend_->SetCurrentKey(key, KeyGroupForHash(ops::KeyHasher::HashKeyRecord(key_schema, k), kDefaultMaxParallelism));
  state::StateId id = backend_->RegisterState("count", state::StateKind::kValue);
  std::string value;
  auto found = backend_->Get(id, &value);
  ASSERT_OK(found);
  ASSERT_TRUE(*found);
  EXPECT_EQ(value, std::string("\x03\0\0\0\0\0\0\0", 8));
}

TEST_F(AdapterTest, PluginEventTimersFireFromRocksDbWithTheirKey) {
  auto op = Open("keyed_count", R"({"key_field":"user","timer":"event","at":100})", input_, "user");
  ASSERT_OK(op);
  std::vector<Record> batch = {Rec("b", 1), Rec("a", 1), Rec("b", 1)};
  ASSERT_OK((*op)->ProcessBatch(0, batch.data(), batch.size()));
  ASSERT_OK(Watermark(op->get(), 99));
  EXPECT_THAT(out_.records, IsEmpty());
  ASSERT_OK(Watermark(op->get(), 100));
  EXPECT_THAT(out_.records, ::testing::UnorderedElementsAre(R"({"user":"a","count":1})", R"({"user":"b","count":2})"));
  EXPECT_THAT(out_.watermarks, ElementsAre(99, 100));
}

TEST_F(AdapterTest, PluginProcessingTimersFireWhenTheClockHasPassed) {
  auto op = Open("keyed_count", R"({"key_field":"user","timer":"processing","at":10})", input_, "user");
  ASSERT_OK(op);
  ASSERT_OK((*op)->Process(Rec("a", 1)));
  ASSERT_OK((*op)->Process(Rec("a", 1)));
  EXPECT_THAT(out_.records, IsEmpty());
  ASSERT_OK(timers_->FireProcessingTimers(op->get()));
  EXPECT_THAT(out_.records, IsEmpty());
  clock_.AdvanceNanos(10'000'000);
  ASSERT_OK(timers_->FireProcessingTimers(op->get()));  // as the task's loop does
  EXPECT_THAT(out_.records, ElementsAre(R"({"user":"a","count":2})"));
}

TEST_F(AdapterTest, ExceptionInProcessFailsWithTheOperatorsName) {
  auto op = Open("thrower", "{}", input_);
  ASSERT_OK(op);
  EXPECT_THAT((*op)->Process(Rec("a", 1)),
              StatusIs(absl::StatusCode::kInternal, "operator 'op1' (type 'thrower') threw an exception in Process: boom"));
}

TEST_F(AdapterTest, HostErrorsReachTheTaskUnchanged) {
  auto op = Open("positive_filter", R"({"field":"amount"})", input_);
  ASSERT_OK(op);
  out_.fail_with = absl::CancelledError("task cancelled");
  EXPECT_THAT((*op)->Process(Rec("a", 1)), StatusIs(absl::StatusCode::kCancelled, "task cancelled"));
}

// Checkpoints of earlier builds hold a per-key value state `__sluice_timer_key` beside the
// timers (the adapter kept each timer's key there). Restored, that state is unused (the backend
// gives the timer's key) and does not stop the restore; the timers fire with their keys.
TEST_F(AdapterTest, TimersRestoredFromACheckpointWithTheOldTimerKeyStateFire) {
  auto op = Open("keyed_count", R"({"key_field":"user","timer":"event","at":100})", input_, "user");
  ASSERT_OK(op);
  std::vector<Record> batch = {Rec("b", 1), Rec("a", 1), Rec("b", 1)};
  ASSERT_OK((*op)->ProcessBatch(0, batch.data(), batch.size()));
  // What the old adapter wrote per timer registration: the key, under the current key.
  state::StateId old_state = backend_->RegisterState("__sluice_timer_key", state::StateKind::kValue);
  Schema key_schema({{"user", FieldType::kString}});
  for (const char* user : {"a", "b"}) {
    Record k(1);
    k.SetString(0, user);
    std::string key;
    EncodeRecord(key_schema, k, &key);
    backend_->SetCurrentKey(key, KeyGroupForHash(ops::KeyHasher::HashKeyRecord(key_schema, k), kDefaultMaxParallelism));
    ASSERT_OK(backend_->Put(old_state, key));
  }
  auto snap = backend_->SnapshotSync(1);
  ASSERT_OK(snap);
  auto handle = backend_->UploadSnapshot(*snap, checkpoint_dir_, "chk-1/op1");
  ASSERT_OK(handle);
  (*op)->Close();
  op->reset();
  backend_.reset();

  restore_ = &*handle;
  auto restored = Open("keyed_count", R"({"key_field":"user","timer":"event","at":100})", input_, "user");
  ASSERT_OK(restored);
  ASSERT_OK(Watermark(restored->get(), 100));
  EXPECT_THAT(out_.records, ::testing::UnorderedElementsAre(R"({"user":"a","count":1})", R"({"user":"b","count":2})"));
}

TEST_F(AdapterTest, Abi10PluginRunsKeyedStateAndTimersInRocksDb) {
  auto p = PluginLoader::Default()->Load(PluginPath("sdk_test_plugin_1_0"));
  ASSERT_OK(p);
  plugin_ = *p;
  auto op = Open("keyed_count", R"({"key_field":"user","timer":"event","at":100})", input_, "user");
  ASSERT_OK(op);
  std::vector<Record> batch = {Rec("b", 1), Rec("a", 1), Rec("b", 1)};
  ASSERT_OK((*op)->ProcessBatch(0, batch.data(), batch.size()));
  ASSERT_OK(Watermark(op->get(), 100));
  EXPECT_THAT(out_.records, ::testing::UnorderedElementsAre(R"({"user":"a","count":1})", R"({"user":"b","count":2})"));
}

TEST_F(AdapterTest, TwoInputKeyedStateInRocksDbWrittenByInput1ReadByInput0) {
  Schema tiers({{"tier", FieldType::kString}, {"name", FieldType::kString}});
  auto op = Open("tier_join", "{}", input_, "user", &tiers, "name");
  ASSERT_OK(op);
  auto tier = [](const std::string& t, const std::string& name) {
    Record r(2);
    r.SetString(0, t);
    r.SetString(1, name);
    return r;
  };
  ASSERT_OK((*op)->Process(Rec("a", 1)));
  std::vector<Record> t1 = {tier("gold", "a"), tier("silver", "b")};
  ASSERT_OK((*op)->ProcessBatch(1, t1.data(), t1.size()));
  std::vector<Record> events = {Rec("a", 2), Rec("b", 3), Rec("c", 4)};
  ASSERT_OK((*op)->ProcessBatch(0, events.data(), events.size()));
  Record t2 = tier("bronze", "a");
  ASSERT_OK((*op)->ProcessBatch(1, &t2, 1));
  ASSERT_OK((*op)->ProcessBatch(0, events.data(), 1));
  EXPECT_THAT(out_.records, ElementsAre(R"({"user":"a","amount":1,"tier":"","input":0})",
                                        R"({"user":"a","amount":2,"tier":"gold","input":0})",
                                        R"({"user":"b","amount":3,"tier":"silver","input":0})",
                                        R"({"user":"c","amount":4,"tier":"","input":0})",
                                        R"({"user":"a","amount":2,"tier":"bronze","input":0})"));
  EXPECT_THAT((*op)->ProcessBatch(2, events.data(), 1),
              StatusIs(absl::StatusCode::kInvalidArgument, "plugin operator type 'tier_join' has no input 2"));
}

TEST_F(AdapterTest, TwoInputTypesNeedTheSecondInputAndMatchingKeys) {
  Schema tiers({{"tier", FieldType::kString}, {"name", FieldType::kString}});
  const PluginOperatorType& t = Type("forward_both");
  auto op = PluginOperator::Create(plugin_, &t, "{}");
  ASSERT_OK(op);
  spec_.input_schema = input_;
  spec_.output_schema = input_;
  ops::OperatorContext ctx;
  ctx.spec = &spec_;
  ctx.clock = &clock_;
  EXPECT_THAT((*op)->Open(ctx, &out_),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       "plugin operator type 'forward_both' has 2 inputs, but was opened without its second "
                       "input's schema (SetSecondInput)"));
  EXPECT_THAT(Open("tier_join", "{}", input_, "user", &tiers, ""),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       "keyed plugin operator type 'tier_join': input 1 is keyed by 0 field(s), input 0 by 1"));
  Schema int_names({{"tier", FieldType::kString}, {"name", FieldType::kInt64}});
  EXPECT_THAT(Open("tier_join", "{}", input_, "user", &int_names, "name"),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       "keyed plugin operator type 'tier_join': key field 0 is int64 in input 1 but string in input 0"));
}

TEST_F(AdapterTest, TwoInputForwardChecksTheRecordsInput) {
  Schema other({{"y", FieldType::kString}});
  auto op = Open("forward_both", "{}", input_, "", &other);
  ASSERT_OK(op);
  ASSERT_OK((*op)->ProcessBatch(0, std::vector<Record>{Rec("a", 1)}.data(), 1));
  Record y(1);
  y.SetString(0, "no");
  EXPECT_THAT((*op)->ProcessBatch(1, &y, 1),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       "plugin operator type 'forward_both' emitted an input record unchanged, but its output schema "
                       "(user string, amount int64) is not the schema (y string) of input 1"));
  EXPECT_THAT(out_.records, ElementsAre(R"({"user":"a","amount":1})"));
}

TEST_F(AdapterTest, KeyedTypeWithoutBackendIsRefused) {
  const PluginOperatorType& t = Type("keyed_count");
  auto op = PluginOperator::Create(plugin_, &t, R"({"key_field":"user"})");
  ASSERT_OK(op);
  spec_.input_schema = input_;
  ops::OperatorContext ctx;
  ctx.spec = &spec_;
  ctx.clock = &clock_;
  EXPECT_THAT((*op)->Open(ctx, &out_), StatusIs(absl::StatusCode::kFailedPrecondition,
                                                "keyed plugin operator type 'keyed_count' needs a keyed state backend"));
}

}  // namespace
}  // namespace sluice::plugin

// ---------------------------------------------------------------------------------------------
// Plugin operator types as catalog entries (what the coordinator and workers plan jobs with)

namespace sluice::plugin {
namespace {

using ::testing::HasSubstr;

class PluginTypesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK(ops::RegisterBuiltinOperatorTypes(&catalog_));
    auto plugins = LoadJobPlugins(PluginLoader::Default(), {{PluginPath("sdk_test_plugin"), 2, 12}}, "job.yaml");
    ASSERT_OK(plugins);
    plugins_ = *plugins;
    // The same plugin twice (--plugin-dir and the job) adds its types once.
    plugins_.push_back(plugins_[0]);
    ASSERT_OK(AddPluginTypesToCatalog(plugins_, &catalog_));
  }

  static std::string Job(const std::string& filter_options) {
    return absl::StrCat(R"y(name: p
operators:
  - id: gen
    type: datagen
    count: 10
    fields: [{name: v, type: int64, expr: "seq"}]
  - id: keep
    type: positive_filter
    )y", filter_options, R"y(
  - {id: out, type: print}
)y");
  }

  plan::OperatorTypeCatalog catalog_;
  std::vector<const LoadedPlugin*> plugins_;
};

TEST_F(PluginTypesTest, OptionsValidatedOnceAsJsonWithTheOutputSchema) {
  auto job = plan::ParseJobSpec(Job("field: v\n    min: 3"), "job.yaml", catalog_);
  ASSERT_OK(job);
  const plan::OperatorSpec& keep = job->operators[1];
  ASSERT_EQ(keep.type, "positive_filter");
  const PluginOptions* options = keep.options_as<PluginOptions>();
  ASSERT_NE(options, nullptr);
  EXPECT_EQ(options->json, R"({"field":"v","min":3})");
  EXPECT_EQ(keep.output_schema, keep.input_schema);
}

TEST_F(PluginTypesTest, RefusedOptionsCarryThePluginsMessageAndThePosition) {
  auto job = plan::ParseJobSpec(Job("field: v\n    mni: 3"), "job.yaml", catalog_);
  EXPECT_THAT(job.status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       ::testing::AllOf(::testing::StartsWith("job.yaml:7:5: operator type 'positive_filter' of plugin 'sdk-test'"),
                                        HasSubstr("unknown option 'mni'"))));
}

TEST_F(PluginTypesTest, ATakenTypeNameIsRefused) {
  plan::OperatorTypeCatalog other;
  ASSERT_OK(AddPluginTypesToCatalog(plugins_, &other));
  EXPECT_THAT(AddPluginTypesToCatalog(plugins_, &other),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("operator type 'positive_filter' of plugin 'sdk-test' 0.1.0")));
}

TEST_F(PluginTypesTest, AJobPluginThatDoesNotLoadIsRefusedWithItsPosition) {
  auto plugins = LoadJobPlugins(PluginLoader::Default(), {{"/nonexistent/libx.so", 3, 5}}, "job.yaml");
  EXPECT_THAT(plugins.status(), StatusIs(absl::StatusCode::kInvalidArgument,
                                         ::testing::StartsWith("job.yaml:3:5: ")));
  EXPECT_THAT(plugins.status().message(), HasSubstr("/nonexistent/libx.so"));
  EXPECT_THAT(LoadPluginDir(PluginLoader::Default(), "/nonexistent-dir").status(),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("/nonexistent-dir")));
}

TEST_F(PluginTypesTest, AKeyedTwoInputTypeNeedsItsSecondInputKeyed) {
  const std::string job = R"y(name: p
operators:
  - id: events
    type: datagen
    count: 10
    fields: [{name: user, type: int64, expr: "seq"}]
  - id: tiers
    type: datagen
    count: 10
    fields: [{name: user, type: int64, expr: "seq"}, {name: tier, type: string, expr: "'gold'"}]
  - id: joined
    type: tier_join
    inputs: [{from: events, partition: hash, key: [user]}, INPUT1]
  - {id: out, type: print}
)y";
  auto keyed = plan::ParseJobSpec(
      absl::StrReplaceAll(job, {{"INPUT1", "{from: tiers, partition: hash, key: [user]}"}}), "job.yaml", catalog_);
  ASSERT_OK(keyed);
  const PluginOptions* options = keyed->operators[2].options_as<PluginOptions>();
  ASSERT_NE(options, nullptr);
  EXPECT_EQ(options->second_input_schema.size(), 2u);
  EXPECT_THAT(plan::ParseJobSpec(absl::StrReplaceAll(job, {{"INPUT1", "tiers"}}), "job.yaml", catalog_).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("job.yaml:13:60: tier_join 'joined' is keyed: read its input 1 ('tiers') "
                                 "with partition: hash")));
}


// ---------------------------------------------------------------------------------------------
// Validation in the helper process (sluice-plugin-host), as the coordinator does it

class HelperValidationTest : public ::testing::Test {
 protected:
  static std::string Job(const std::string& plugin, const std::string& op) {
    return absl::StrCat("name: p\nplugins: [", PluginPath(plugin), R"y(]
operators:
  - id: gen
    type: datagen
    count: 10
    fields: [{name: v, type: int64, expr: "seq"}]
  - id: op
    )y", op, R"y(
  - {id: out, type: print}
)y");
  }
  static HelperOptions Options(int64_t timeout_ms = 10'000) {
    HelperOptions o;
    o.path = SLUICE_TEST_PLUGIN_HOST;
    o.timeout_ms = timeout_ms;
    return o;
  }
};

// What the helper reports plans the same job as the plugin loaded in this process does.
TEST_F(HelperValidationTest, ReportedOptionsPlanTheSameJobAsThePluginItself) {
  const std::string yaml = Job("sdk_test_plugin", "type: positive_filter\n    field: v\n    min: 3");
  auto validated = ValidateInHelper(yaml, "job.yaml", 0, Options());
  ASSERT_OK(validated);
  plan::OperatorTypeCatalog catalog;
  ASSERT_OK(ops::RegisterBuiltinOperatorTypes(&catalog));
  ASSERT_OK(AddValidatedPluginTypes(*validated, &catalog));
  auto job = plan::ParseJobSpec(yaml, "job.yaml", catalog);
  ASSERT_OK(job);
  const PluginOptions* options = job->operators[1].options_as<PluginOptions>();
  ASSERT_NE(options, nullptr);
  EXPECT_EQ(options->json, R"({"field":"v","min":3})");
  EXPECT_EQ(job->operators[1].output_schema, Schema({{"v", FieldType::kInt64}}));
  EXPECT_EQ(job->operators[2].input_schema, Schema({{"v", FieldType::kInt64}}));
  // Every type of the plugin is known, with its traits.
  const plan::OperatorType* keyed = catalog.Find("keyed_count");
  ASSERT_NE(keyed, nullptr);
  EXPECT_TRUE(keyed->traits().keyed);
}

TEST_F(HelperValidationTest, RefusedOptionsKeepThePluginsMessageAndThePosition) {
  auto validated = ValidateInHelper(Job("sdk_test_plugin", "type: positive_filter\n    field: v\n    mni: 3"),
                                    "job.yaml", 0, Options());
  EXPECT_THAT(validated.status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       ::testing::AllOf(::testing::StartsWith("job.yaml:8:5: operator type 'positive_filter' of plugin 'sdk-test'"),
                                        HasSubstr("unknown option 'mni'"))));
}

// The helper's failure while in operator 'op' of `type` (of the crash plugin) is kInvalidArgument
// "cannot validate ... the plugin helper <how> while running validate ... in <the plugin file>".
void ExpectHelperFailure(absl::StatusOr<ValidatedPlugins> validated, const std::string& how, const std::string& type) {
  EXPECT_THAT(validated.status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       absl::StrCat("cannot validate the plugin operators of job.yaml: the plugin helper ", how,
                                    " while running validate and output_schema of operator 'op' (type '", type,
                                    "') in ", PluginPath("sdk_test_crash_plugin"))));
}

TEST_F(HelperValidationTest, APluginThatAbortsInValidateIsNamed) {
  ExpectHelperFailure(ValidateInHelper(Job("sdk_test_crash_plugin", "type: abort_in_validate"), "job.yaml", 0, Options()),
                      "was killed by signal 6 (Aborted)", "abort_in_validate");
}

TEST_F(HelperValidationTest, APluginThatHangsInValidateIsKilledAfterTheTimeout) {
  ExpectHelperFailure(
      ValidateInHelper(Job("sdk_test_crash_plugin", "type: hang_in_validate"), "job.yaml", 0, Options(300)),
      "did not finish within 300 ms (it was killed)", "hang_in_validate");
}

TEST_F(HelperValidationTest, AMissingHelperIsUnavailable) {
  HelperOptions o = Options();
  o.path = "/nonexistent/sluice-plugin-host";
  EXPECT_THAT(ValidateInHelper(Job("sdk_test_plugin", "type: positive_filter\n    field: v"), "job.yaml", 0, o).status(),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("/nonexistent/sluice-plugin-host")));
}

}  // namespace
}  // namespace sluice::plugin

// ---------------------------------------------------------------------------------------------
// ABI 1.2: nulls in both directions, aggregate functions; plugins of 1.0 and 1.1 keep working

namespace sluice::plugin {
namespace {

using ::testing::HasSubstr;

// A record (user, amount) whose amount is null; its stale value is 7.
Record NullAmount(const std::string& user) {
  Record r(2);
  r.SetString(0, user);
  r.SetInt(1, 7);
  r.SetNull(1);
  return r;
}

const Schema kNullableAmount({{"user", FieldType::kString}, {"amount", FieldType::kInt64, true}});

TEST_F(AdapterTest, Abi12PluginsReadNullBitsAndEmitNulls) {
  auto op = Open("null_if_negative", "{}", kNullableAmount);
  ASSERT_OK(op);
  EXPECT_EQ(spec_.output_schema.ToString(), "(value int64 null, was_null bool)");
  std::vector<Record> batch = {Rec("a", 5), NullAmount("b"), Rec("c", -3), Rec("d", 4)};
  ASSERT_OK((*op)->ProcessBatch(0, batch.data(), batch.size()));
  EXPECT_THAT(out_.records,
              ElementsAre(R"({"value":5,"was_null":false})", R"({"value":null,"was_null":true})",
                          R"({"value":null,"was_null":false})", R"({"value":4,"was_null":false})"));
}

TEST_F(AdapterTest, ANullIntoANotNullFieldIsRefused) {
  auto op = Open("null_everything", "{}", input_);
  ASSERT_OK(op);
  EXPECT_THAT((*op)->Process(Rec("a", 1)),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       "plugin operator type 'null_everything' emitted null into output field 'user', which is "
                       "not nullable (declare it with add_nullable_field)"));
  EXPECT_THAT(out_.records, IsEmpty());
}

// Plugins built before 1.2 see a null as the type's default (0 here), not the stale value 7.
TEST_F(AdapterTest, Abi11And10PluginsSeeNullsAsDefaultValues) {
  for (const char* name : {"sdk_test_plugin_1_1", "sdk_test_plugin_1_0", "sdk_test_plugin"}) {
    auto p = PluginLoader::Default()->Load(PluginPath(name));
    ASSERT_OK(p);
    plugin_ = *p;
    out_.records.clear();
    auto op = Open("positive_filter", R"({"field":"amount","min":0})", kNullableAmount);
    ASSERT_OK(op) << name;
    std::vector<Record> batch = {NullAmount("a"), Rec("b", 2)};
    ASSERT_OK((*op)->ProcessBatch(0, batch.data(), batch.size()));
    EXPECT_THAT(out_.records, ElementsAre(R"({"user":"b","amount":2})")) << name;
  }
}

TEST(Abi11PluginTest, LoadsWithTheDescriptorOf11AndRunsInTheFakeHostOfThisSdk) {
  std::string path = PluginPath("sdk_test_plugin_1_1");
  auto p = PluginLoader::Default()->Load(path);
  ASSERT_OK(p);
  EXPECT_EQ((*p)->abi.minor, 1u);
  EXPECT_EQ((*p)->descriptor->struct_size, SLUICE_PLUGIN_SIZE_1_0);  // no aggregate functions field
  EXPECT_EQ((*p)->types.size(), 8u);
  EXPECT_TRUE((*p)->aggregate_functions.empty());
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD);
  ASSERT_NE(handle, nullptr);
  auto init = reinterpret_cast<sluice_plugin_init_v1_fn>(dlsym(handle, SLUICE_PLUGIN_ENTRY_POINT));
  ASSERT_NE(init, nullptr);
  HarnessOptions o;
  o.type = "tier_join";
  o.input = {{"user", SdkType::kString}, {"amount", SdkType::kInt64}};
  o.input2 = {{"user", SdkType::kString}, {"tier", SdkType::kString}};
  o.key = {"user"};
  o.key2 = {"user"};
  Harness h(init, o);
  ASSERT_TRUE(h.Open().ok());
  ASSERT_TRUE(h.Process(1, {"a", "gold"}).ok());
  ASSERT_TRUE(h.Process(0, {"a", 3}).ok());
  EXPECT_THAT(h.output(), ElementsAre(R"({"user":"a","amount":3,"tier":"gold","input":0})"));
}

TEST(SdkNullsTest, TheFakeHostCarriesNullsBothWays) {
  HarnessOptions o;
  o.type = "null_if_negative";
  o.input = {{"user", SdkType::kString}, {"amount", SdkType::kInt64}};
  Harness h(&sluice_plugin_init_v1, o);
  ASSERT_TRUE(h.Open().ok());
  ASSERT_TRUE(h.ProcessBatch({{"a", 1}, {"b", sdk::testing::TestValue::Null()}, {"c", -1}}).ok());
  EXPECT_THAT(h.output(), ElementsAre(R"({"value":1,"was_null":false})", R"({"value":null,"was_null":true})",
                                      R"({"value":null,"was_null":false})"));
}

class AggregateFunctionTest : public SdkPluginTest {
 protected:
  PluginAggregateFunction Fn(const std::string& name) {
    for (const auto& f : plugin_->aggregate_functions) {
      if (f.name == name) return PluginAggregateFunction(plugin_, &f);
    }
    ADD_FAILURE() << "no aggregate function " << name;
    return PluginAggregateFunction(plugin_, &plugin_->aggregate_functions[0]);
  }
};

TEST_F(AggregateFunctionTest, LoadedWithTheirHooks) {
  ASSERT_EQ(plugin_->aggregate_functions.size(), 2u);
  EXPECT_EQ(plugin_->aggregate_functions[0].name, "sum_sq");
  EXPECT_EQ(plugin_->aggregate_functions[0].description, "sum of squares");
  EXPECT_EQ(plugin_->aggregate_functions[1].name, "throwing_agg");
}

TEST_F(AggregateFunctionTest, AccumulatorsRoundTripThroughTheAbi) {
  PluginAggregateFunction f = Fn("sum_sq");
  EXPECT_EQ(f.name(), "sum_sq");
  EXPECT_EQ(f.origin(), absl::StrCat("plugin 'sdk-test' 0.1.0 (", PluginPath("sdk_test_plugin"), ")"));
  EXPECT_TRUE(f.Runnable());
  EXPECT_EQ(f.AccumulatorVersion(), 3u);
  auto int_result = f.ResultType(FieldType::kInt64);
  ASSERT_OK(int_result);
  EXPECT_EQ(*int_result, FieldType::kInt64);
  EXPECT_THAT(f.ResultType(FieldType::kString),
              StatusIs(absl::StatusCode::kInvalidArgument, "sum_sq needs int64 or double, not string"));
  std::string a, b;
  ASSERT_OK(f.Create(FieldType::kInt64, &a));
  EXPECT_EQ(a.size(), 8u);  // the plugin resized the host's accumulator
  Value v;
  for (int64_t x : {3, 4}) {
    v.i = x;
    ASSERT_OK(f.Add(FieldType::kInt64, v, &a));
  }
  ASSERT_OK(f.Create(FieldType::kInt64, &b));
  v.i = -2;
  ASSERT_OK(f.Add(FieldType::kInt64, v, &b));
  Value out;
  bool is_null = true;
  ASSERT_OK(f.Result(FieldType::kInt64, a, &out, &is_null));
  EXPECT_EQ(out.i, 25);
  EXPECT_FALSE(is_null);
  ASSERT_OK(f.Merge(FieldType::kInt64, b, &a));
  ASSERT_OK(f.Result(FieldType::kInt64, a, &out, &is_null));
  EXPECT_EQ(out.i, 29);
  // Doubles go through .d.
  std::string d;
  ASSERT_OK(f.Create(FieldType::kDouble, &d));
  v.d = 1.5;
  ASSERT_OK(f.Add(FieldType::kDouble, v, &d));
  ASSERT_OK(f.Result(FieldType::kDouble, d, &out, &is_null));
  EXPECT_EQ(out.d, 2.25);
  // A malformed accumulator is the plugin's error, named.
  EXPECT_THAT(f.Merge(FieldType::kInt64, "xyz", &a),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       absl::StrCat("aggregate function 'sum_sq' of ", f.origin(), " failed in merge: bad accumulator")));
}

TEST_F(AggregateFunctionTest, AnExceptionBecomesAnErrorNamingTheFunction) {
  PluginAggregateFunction f = Fn("throwing_agg");
  std::string a;
  ASSERT_OK(f.Create(FieldType::kInt64, &a));
  EXPECT_THAT(f.Add(FieldType::kInt64, Value(), &a),
              StatusIs(absl::StatusCode::kInternal,
                       HasSubstr("aggregate function 'throwing_agg' threw an exception in Add: add exploded")));
}

// A window job using the plugin's function, planned against the catalog: an unknown function
// and a field type the function refuses are refused with the aggregate's position.
TEST_F(PluginTypesTest, WindowAggregatesNameThePluginsFunctionsAndAreCheckedAtPlanTime) {
  auto job_with = [](const std::string& aggregate) {
    return absl::StrCat(R"y(name: p
operators:
  - id: gen
    type: datagen
    count: 10
    fields: [{name: k, type: int64, expr: "seq % 3"}, {name: v, type: int64, expr: "seq"}, {name: s, type: string, expr: "'x'"}]
  - {id: by_k, type: key_by, key: [k]}
  - id: win
    type: window
    tumble: {size: 10ms}
    time_field: v
    aggregates:
      - )y", aggregate, R"y(
  - {id: out, type: print}
)y");
  };
  auto ok = plan::ParseJobSpec(job_with("{fn: sum_sq, field: v, as: sq}"), "job.yaml", catalog_);
  ASSERT_OK(ok);
  EXPECT_EQ(ok->operators[2].output_schema.ToString(),
            "(k int64, window_start timestamp, window_end timestamp, sq int64 null, update bool)");
  EXPECT_THAT(plan::ParseJobSpec(job_with("{fn: sum_sqq, field: v}"), "job.yaml", catalog_).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "job.yaml:13:14: unknown aggregate function 'sum_sqq' (expected count, sum, min, max, avg, "
                       "first, last, count_distinct; from plugins: sum_sq, throwing_agg)"));
  EXPECT_THAT(plan::ParseJobSpec(job_with("{fn: sum_sq, field: s}"), "job.yaml", catalog_).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       absl::StrCat("job.yaml:13:29: aggregate function 'sum_sq' of plugin 'sdk-test' 0.1.0 (",
                                    PluginPath("sdk_test_plugin"),
                                    ") does not take 's' (string): sum_sq needs int64 or double, not string")));
}

// The helper reports the plugin's aggregate functions: the coordinator plans with them (and
// refuses wrong input types at the aggregate's line) without loading the plugin.
TEST_F(HelperValidationTest, AggregateFunctionsArePlannedFromTheReport) {
  const std::string op = R"y(type: key_by
    key: [v]
  - id: win
    type: aggregate
    aggregates: [{fn: sum_sq, field: v, as: sq}])y";
  const std::string yaml = Job("sdk_test_plugin", op);
  auto validated = ValidateInHelper(yaml, "job.yaml", 0, Options());
  ASSERT_OK(validated);
  ASSERT_EQ(validated->aggregate_functions.size(), 2u);
  EXPECT_EQ(validated->aggregate_functions[0].name, "sum_sq");
  EXPECT_EQ(validated->aggregate_functions[0].accumulator_version, 3u);
  plan::OperatorTypeCatalog catalog;
  ASSERT_OK(ops::RegisterBuiltinOperatorTypes(&catalog));
  ASSERT_OK(AddValidatedPluginTypes(*validated, &catalog));
  auto job = plan::ParseJobSpec(yaml, "job.yaml", catalog);
  ASSERT_OK(job);
  EXPECT_EQ(job->operators[2].output_schema.ToString(), "(v int64, sq int64 null)");
  std::shared_ptr<const plan::AggregateFunction> f = catalog.FindAggregateFunction("sum_sq");
  ASSERT_NE(f, nullptr);
  EXPECT_FALSE(f->Runnable());
  EXPECT_THAT(f->ResultType(FieldType::kString),
              StatusIs(absl::StatusCode::kInvalidArgument, "sum_sq needs int64 or double, not string"));
  // The helper refuses a field the function does not take, at the aggregate's position.
  const std::string strings = absl::StrCat("name: p\nplugins: [", PluginPath("sdk_test_plugin"), R"y(]
operators:
  - {id: gen, type: datagen, count: 10, fields: [{name: s, type: string, expr: "'x'"}]}
  - {id: by_s, type: key_by, key: [s]}
  - id: agg
    type: aggregate
    aggregates: [{fn: sum_sq, field: s}]
  - {id: out, type: print}
)y");
  EXPECT_THAT(ValidateInHelper(strings, "job.yaml", 0, Options()).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       ::testing::AllOf(::testing::StartsWith("job.yaml:8:38: aggregate function 'sum_sq' of plugin "
                                                              "'sdk-test' 0.1.0 ("),
                                        ::testing::EndsWith("does not take 's' (string): sum_sq needs int64 or "
                                                            "double, not string"))));
}

}  // namespace
}  // namespace sluice::plugin
