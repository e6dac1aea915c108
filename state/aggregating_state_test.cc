#include "state/aggregating_state.h"

#include <cstdlib>
#include <filesystem>

#include "common/status_matchers.h"
#include "gtest/gtest.h"

namespace sluice::state {
namespace {

class AggregatingStateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (std::filesystem::temp_directory_path() / "sluice-agg-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    StateBackendOptions o;
    o.local_dir = dir_ + "/backend";
    o.operator_id = "agg";
    auto b = KeyedStateBackend::Open(o);
    ASSERT_OK(b);
    backend_ = std::move(*b);
  }
  void TearDown() override {
    backend_.reset();
    std::filesystem::remove_all(dir_);
  }
  void Key(const std::string& k) { backend_->SetCurrentKey(k, KeyGroupForHash(HashBytes(k), 128)); }

  std::string dir_;
  std::unique_ptr<KeyedStateBackend> backend_;
};

struct AvgAcc {
  double sum;
  int64_t count;
};

TEST_F(AggregatingStateTest, AveragesPerKey) {
  AggregatingState<double, AvgAcc, double> avg(
      backend_.get(), "avg",
      {[] { return AvgAcc{0, 0}; }, [](AvgAcc& a, const double& v) { a.sum += v; a.count++; },
       [](const AvgAcc& a) { return a.sum / a.count; }});
  Key("a");
  auto none = avg.Get();
  ASSERT_OK(none);
  EXPECT_FALSE(none->has_value());
  ASSERT_OK(avg.Add(1));
  ASSERT_OK(avg.Add(2));
  Key("b");
  ASSERT_OK(avg.Add(10));
  Key("a");
  ASSERT_OK(avg.Add(6));
  auto a = avg.Get();
  ASSERT_OK(a);
  EXPECT_DOUBLE_EQ(**a, 3.0);
  Key("b");
  EXPECT_DOUBLE_EQ(**avg.Get(), 10.0);
  ASSERT_OK(avg.Clear());
  EXPECT_FALSE(avg.Get()->has_value());
}

TEST_F(AggregatingStateTest, ReducesAndSurvivesSnapshotRestore) {
  ReducingState<int64_t> max(backend_.get(), "max", [](const int64_t& a, const int64_t& b) { return a > b ? a : b; });
  for (int i = 0; i < 100; ++i) {
    Key("k" + std::to_string(i % 7));
    ASSERT_OK(max.Add((i * 37) % 101 - 50));
  }
  std::map<std::string, int64_t> expected;
  for (int i = 0; i < 100; ++i) {
    auto& e = expected.emplace("k" + std::to_string(i % 7), INT64_MIN).first->second;
    e = std::max<int64_t>(e, (i * 37) % 101 - 50);
  }
  auto snap = backend_->SnapshotSync(1);
  ASSERT_OK(snap);
  auto handle = backend_->UploadSnapshot(*snap, dir_ + "/checkpoints", "chk-1/agg");
  ASSERT_OK(handle);
  backend_.reset();
  StateBackendOptions o;
  o.local_dir = dir_ + "/restored";
  o.operator_id = "agg";
  auto restored = KeyedStateBackend::Restore(o, {*handle}, dir_ + "/checkpoints");
  ASSERT_OK(restored);
  backend_ = std::move(*restored);
  ReducingState<int64_t> again(backend_.get(), "max", [](const int64_t& a, const int64_t& b) { return a > b ? a : b; });
  for (const auto& [k, v] : expected) {
    Key(k);
    auto got = again.Get();
    ASSERT_OK(got);
    ASSERT_TRUE(got->has_value()) << k;
    EXPECT_EQ(**got, v) << k;
  }
}

// Format 1 is [1][Acc bytes]; Acc bytes alone (format 0) still read; a future version or a
// truncated value is kDataLoss naming the backend's origin.
TEST_F(AggregatingStateTest, ReadsFormatZeroAndRefusesFutureAndTruncatedValues) {
  AggregatingState<double, AvgAcc, double> avg(
      backend_.get(), "avg",
      {[] { return AvgAcc{0, 0}; }, [](AvgAcc& a, const double& v) { a.sum += v; a.count++; },
       [](const AvgAcc& a) { return a.sum / a.count; }});
  const StateId id = backend_->RegisterState("avg", StateKind::kValue);
  Key("new");
  ASSERT_OK(avg.Add(4));
  std::string stored;
  ASSERT_TRUE(*backend_->Get(id, &stored));
  ASSERT_EQ(stored.size(), 1 + sizeof(AvgAcc));
  EXPECT_EQ(stored[0], 1);

  Key("old");
  const AvgAcc old{9, 3};
  ASSERT_OK(backend_->Put(id, absl::string_view(reinterpret_cast<const char*>(&old), sizeof(old))));
  EXPECT_DOUBLE_EQ(**avg.Get(), 3.0);
  ASSERT_OK(avg.Add(7));  // rewritten as format 1
  EXPECT_DOUBLE_EQ(**avg.Get(), 4.0);

  Key("future");
  ASSERT_OK(backend_->Put(id, std::string(1, '\x02') + stored.substr(1)));
  EXPECT_THAT(avg.Get(), sluice::testing::StatusIs(absl::StatusCode::kDataLoss,
                                                   ::testing::HasSubstr("aggregating state has format version 2")));
  Key("truncated");
  // (Cut to exactly sizeof(Acc) bytes, a value cannot be told from one of format 0.)
  ASSERT_OK(backend_->Put(id, stored.substr(0, 10)));
  EXPECT_THAT(avg.Add(1), sluice::testing::StatusIs(absl::StatusCode::kDataLoss,
                                                    ::testing::HasSubstr("holds 10 bytes, expected 17")));
}

}  // namespace
}  // namespace sluice::state
