#include "state/memory_budget.h"

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "common/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "rocksdb/cache.h"

namespace sluice::state {
namespace {

namespace fs = std::filesystem;
using ::sluice::testing::StatusIs;
using ::testing::_;
using ::testing::HasSubstr;

// The parsed size, or UINT64_MAX on an error.
uint64_t Parsed(const std::string& text) {
  absl::StatusOr<uint64_t> v = ParseMemorySize(text);
  return v.ok() ? *v : ~uint64_t{0};
}

TEST(ParseMemorySizeTest, UnitsAndPlainBytes) {
  EXPECT_EQ(Parsed("1073741824"), uint64_t{1} << 30);
  EXPECT_EQ(Parsed("64MiB"), uint64_t{64} << 20);
  EXPECT_EQ(Parsed(" 64 MiB "), uint64_t{64} << 20);
  EXPECT_EQ(Parsed("2GiB"), uint64_t{2} << 30);
  EXPECT_EQ(Parsed("2Gi"), uint64_t{2} << 30);
  EXPECT_EQ(Parsed("512KiB"), uint64_t{512} << 10);
  EXPECT_EQ(Parsed("1.5GiB"), uint64_t{3} << 29);
  EXPECT_EQ(Parsed("3MB"), uint64_t{3000000});
  EXPECT_EQ(Parsed("3M"), uint64_t{3000000});
  EXPECT_EQ(Parsed("1TiB"), uint64_t{1} << 40);
  EXPECT_EQ(Parsed("100B"), uint64_t{100});
  EXPECT_EQ(Parsed("0"), uint64_t{0});
}

TEST(ParseMemorySizeTest, BadInputSaysWhereAndWhy) {
  EXPECT_THAT(ParseMemorySize(""), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("empty")));
  EXPECT_THAT(ParseMemorySize("MiB"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no number at position 0")));
  EXPECT_THAT(ParseMemorySize("64XB"), StatusIs(absl::StatusCode::kInvalidArgument,
                                                HasSubstr("unknown unit 'XB' at position 2")));
  EXPECT_THAT(ParseMemorySize("-1"), StatusIs(absl::StatusCode::kInvalidArgument, _));
  EXPECT_THAT(ParseMemorySize("1.2.3GiB"), StatusIs(absl::StatusCode::kInvalidArgument, _));
  EXPECT_THAT(ParseMemorySize("99999999TiB"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("too large")));
}

// A fake cgroup file system in a temp dir.
class CgroupTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "cgroup-test-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    root_ = tmpl;
  }
  void TearDown() override { fs::remove_all(root_); }
  void Write(const std::string& rel, const std::string& content) {
    fs::path p = fs::path(root_) / rel;
    fs::create_directories(p.parent_path());
    std::ofstream(p) << content;
  }
  std::string root_;
};

TEST_F(CgroupTest, V2LimitOfOwnCgroup) {
  Write("kubepods/pod1/memory.max", "2147483648\n");
  Write("memory.max", "max\n");
  EXPECT_EQ(CgroupMemoryLimit("0::/kubepods/pod1\n", root_), uint64_t{2} << 30);
}

TEST_F(CgroupTest, V2MaxIsNoLimit) {
  Write("user.slice/memory.max", "max\n");
  EXPECT_EQ(CgroupMemoryLimit("0::/user.slice\n", root_), 0u);
}

TEST_F(CgroupTest, V2NamespacedContainerReadsTheRoot) {
  // Inside a cgroup namespace /proc/self/cgroup says "/" and the limit is at the mount's root.
  Write("memory.max", "536870912\n");
  EXPECT_EQ(CgroupMemoryLimit("0::/\n", root_), uint64_t{512} << 20);
}

TEST_F(CgroupTest, V1MemoryController) {
  Write("memory/docker/abc/memory.limit_in_bytes", "1073741824\n");
  EXPECT_EQ(CgroupMemoryLimit("12:cpu,cpuacct:/docker/abc\n4:memory:/docker/abc\n", root_),
            uint64_t{1} << 30);
}

TEST_F(CgroupTest, V1UnlimitedIsNoLimit) {
  Write("memory/memory.limit_in_bytes", "9223372036854771712\n");
  EXPECT_EQ(CgroupMemoryLimit("4:memory:/\n", root_), 0u);
}

TEST_F(CgroupTest, NoFilesOrGarbageIsNoLimit) {
  EXPECT_EQ(CgroupMemoryLimit("0::/gone\n", root_), 0u);
  EXPECT_EQ(CgroupMemoryLimit("", root_), 0u);
  Write("memory.max", "lots\n");
  EXPECT_EQ(CgroupMemoryLimit("0::/\n", root_), 0u);
}

TEST(MachineMemoryTest, ReadsMemTotal) {
  EXPECT_EQ(MachineMemory("MemFree:  10 kB\nMemTotal:       24576000 kB\n"), uint64_t{24576000} * 1024);
  EXPECT_EQ(MachineMemory("MemFree:  10 kB\n"), 0u);
}

TEST(DefaultStateMemoryTest, FortyPercentOfTheSmallerOfMachineAndCgroup) {
  const uint64_t gib = uint64_t{1} << 30;
  EXPECT_EQ(DefaultStateMemoryFrom(10 * gib, 0), 4 * gib);
  EXPECT_EQ(DefaultStateMemoryFrom(10 * gib, 5 * gib), 2 * gib);
  EXPECT_EQ(DefaultStateMemoryFrom(10 * gib, 20 * gib), 4 * gib);
  EXPECT_EQ(DefaultStateMemoryFrom(0, 5 * gib), 2 * gib);
  EXPECT_GT(DefaultStateMemory(), 0u);
  EXPECT_EQ(DefaultStateMemory(10 * gib), 4 * gib);  // --memory-limit instead of detection
}

TEST(StateMemoryTest, SlotShareSplitBetweenCacheAndRocksDb) {
  StateMemory memory(uint64_t{256} << 20, 2);  // 128 MiB per slot
  EXPECT_EQ(memory.slot_bytes(), uint64_t{128} << 20);
  StateBackendOptions o;
  memory.Configure(2, &o);  // two keyed operators: 64 MiB each
  EXPECT_EQ(o.cache_bytes, size_t{32} << 20);
  EXPECT_EQ(o.write_buffer_bytes, size_t{16} << 20);
  ASSERT_NE(o.shared_block_cache, nullptr);
  ASSERT_NE(o.write_buffer_manager, nullptr);
  EXPECT_EQ(o.shared_block_cache->GetCapacity(), size_t{128} << 20);  // half the budget
  StateBackendOptions other;
  memory.Configure(0, &other);  // counts as one operator
  EXPECT_EQ(other.cache_bytes, size_t{64} << 20);
  EXPECT_EQ(other.shared_block_cache, o.shared_block_cache);
  EXPECT_EQ(other.write_buffer_manager, o.write_buffer_manager);
}

}  // namespace
}  // namespace sluice::state
