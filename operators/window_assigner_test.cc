#include "operators/window_assigner.h"

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "common/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sluice::ops {
namespace {

using ::sluice::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

std::vector<TimeWindow> Assign(const WindowSpec& spec, int64_t ts) {
  std::vector<TimeWindow> out;
  AssignWindows(spec, ts, &out);
  return out;
}

WindowSpec Tumble(int64_t size, int64_t offset = 0) {
  WindowSpec s;
  s.kind = WindowSpec::Kind::kTumble;
  s.size_ms = s.slide_ms = size;
  s.offset_ms = offset;
  return s;
}

WindowSpec Hop(int64_t size, int64_t slide, int64_t offset = 0) {
  WindowSpec s;
  s.kind = WindowSpec::Kind::kHop;
  s.size_ms = size;
  s.slide_ms = slide;
  s.offset_ms = offset;
  return s;
}

WindowSpec Session(int64_t gap) {
  WindowSpec s;
  s.kind = WindowSpec::Kind::kSession;
  s.gap_ms = gap;
  return s;
}

absl::StatusOr<WindowSpec> Parse(const std::string& yaml) {
  plan::ErrorContext ec("job.yaml");
  return ParseWindowSpec(ec, YAML::Load(yaml));
}

TEST(WindowAssignerTest, TumblingEdges) {
  // [0,10): 0 and 9 (end - 1) are in it, 10 (end) is in the next.
  EXPECT_THAT(Assign(Tumble(10), 0), ElementsAre(TimeWindow{0, 10}));
  EXPECT_THAT(Assign(Tumble(10), 9), ElementsAre(TimeWindow{0, 10}));
  EXPECT_THAT(Assign(Tumble(10), 10), ElementsAre(TimeWindow{10, 20}));
  EXPECT_EQ(TimeWindow({0, 10}).max_timestamp(), 9);
}

TEST(WindowAssignerTest, TumblingNegativeTimestamps) {
  // A truncating % would put -1 in [0,10) and -10 in [-10,0) only by luck.
  EXPECT_THAT(Assign(Tumble(10), -1), ElementsAre(TimeWindow{-10, 0}));
  EXPECT_THAT(Assign(Tumble(10), -10), ElementsAre(TimeWindow{-10, 0}));
  EXPECT_THAT(Assign(Tumble(10), -11), ElementsAre(TimeWindow{-20, -10}));
  EXPECT_EQ(WindowStart(-7, 0, 5), -10);
  EXPECT_EQ(WindowStart(-5, 0, 5), -5);
}

TEST(WindowAssignerTest, TumblingOffsets) {
  // Windows [3,13), [13,23), ...: 12 is the last of [3,13), 13 the first of the next.
  EXPECT_THAT(Assign(Tumble(10, 3), 12), ElementsAre(TimeWindow{3, 13}));
  EXPECT_THAT(Assign(Tumble(10, 3), 13), ElementsAre(TimeWindow{13, 23}));
  EXPECT_THAT(Assign(Tumble(10, 3), 2), ElementsAre(TimeWindow{-7, 3}));
  EXPECT_THAT(Assign(Tumble(10, -3), 7), ElementsAre(TimeWindow{7, 17}));
  EXPECT_THAT(Assign(Tumble(10, -3), 6), ElementsAre(TimeWindow{-3, 7}));
  EXPECT_THAT(Assign(Tumble(10, -3), -4), ElementsAre(TimeWindow{-13, -3}));
}

TEST(WindowAssignerTest, TumblingNearInt64Limits) {
  constexpr int64_t kMin = std::numeric_limits<int64_t>::min();
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  // The window of INT64_MAX would end past it: none. INT64_MIN is a multiple of 2^k sizes.
  EXPECT_THAT(Assign(Tumble(10), kMax), IsEmpty());
  EXPECT_THAT(Assign(Tumble(1024), kMin), ElementsAre(TimeWindow{kMin, kMin + 1024}));
  // INT64_MIN is not a multiple of 10: its window would start below it.
  EXPECT_THAT(Assign(Tumble(10), kMin), IsEmpty());
}

TEST(WindowAssignerTest, HoppingEveryWindowWithStartAfterTsMinusSize) {
  // size 10, slide 5: 7 is in [0,10) and [5,15); 5 in [0,10) and [5,15); 4 in [-5,5), [0,10).
  EXPECT_THAT(Assign(Hop(10, 5), 7), ElementsAre(TimeWindow{0, 10}, TimeWindow{5, 15}));
  EXPECT_THAT(Assign(Hop(10, 5), 5), ElementsAre(TimeWindow{0, 10}, TimeWindow{5, 15}));
  EXPECT_THAT(Assign(Hop(10, 5), 4), ElementsAre(TimeWindow{-5, 5}, TimeWindow{0, 10}));
  EXPECT_THAT(Assign(Hop(10, 5), -1), ElementsAre(TimeWindow{-10, 0}, TimeWindow{-5, 5}));
  // size not a multiple of slide: size 10, slide 4: starts in (ts-10, ts] aligned on 4.
  EXPECT_THAT(Assign(Hop(10, 4), 9),
              ElementsAre(TimeWindow{0, 10}, TimeWindow{4, 14}, TimeWindow{8, 18}));
  EXPECT_THAT(Assign(Hop(10, 4), 10), ElementsAre(TimeWindow{4, 14}, TimeWindow{8, 18}));
  // Offset 1: starts 1, 6, 11, ...
  EXPECT_THAT(Assign(Hop(10, 5, 1), 10), ElementsAre(TimeWindow{1, 11}, TimeWindow{6, 16}));
  EXPECT_THAT(Assign(Hop(10, 5, 1), 11), ElementsAre(TimeWindow{6, 16}, TimeWindow{11, 21}));
  // Every window holds ts, and every aligned window that holds ts is listed.
  for (int64_t ts = -30; ts <= 30; ++ts) {
    std::vector<TimeWindow> expected;
    for (int64_t start = -60; start <= 60; start += 4) {
      if (start <= ts && ts < start + 10) expected.push_back({start, start + 10});
    }
    EXPECT_EQ(Assign(Hop(10, 4), ts), expected) << "ts " << ts;
  }
}

TEST(WindowAssignerTest, SessionWindowIsTsToTsPlusGap) {
  EXPECT_THAT(Assign(Session(5), 3), ElementsAre(TimeWindow{3, 8}));
  EXPECT_THAT(Assign(Session(5), -3), ElementsAre(TimeWindow{-3, 2}));
}

TEST(WindowAssignerTest, SessionMerging) {
  std::vector<TimeWindow> absorbed;
  // No open session: a new one.
  EXPECT_EQ(MergeSession({}, {0, 5}, &absorbed), (TimeWindow{0, 5}));
  EXPECT_THAT(absorbed, IsEmpty());
  // Apart from [0,5): new session.
  std::vector<TimeWindow> open = {{0, 5}};
  EXPECT_EQ(MergeSession(open, {6, 11}, &absorbed), (TimeWindow{6, 11}));
  EXPECT_THAT(absorbed, IsEmpty());
  // Touching [0,5) at 5: merged, as Flink.
  EXPECT_EQ(MergeSession(open, {5, 10}, &absorbed), (TimeWindow{0, 10}));
  EXPECT_THAT(absorbed, ElementsAre(TimeWindow{0, 5}));
  // Touching from the left ([-5,0) ends where [0,5) starts).
  EXPECT_EQ(MergeSession(open, {-5, 0}, &absorbed), (TimeWindow{-5, 5}));
  EXPECT_THAT(absorbed, ElementsAre(TimeWindow{0, 5}));
  // Inside: the session unchanged.
  EXPECT_EQ(MergeSession(open, {1, 4}, &absorbed), (TimeWindow{0, 5}));
  EXPECT_THAT(absorbed, ElementsAre(TimeWindow{0, 5}));
}

TEST(WindowAssignerTest, LateRecordBridgingTwoSessionsMergesThem) {
  std::vector<TimeWindow> absorbed;
  std::vector<TimeWindow> open = {{0, 10}, {12, 20}, {30, 35}};
  EXPECT_EQ(MergeSession(open, {9, 19}, &absorbed), (TimeWindow{0, 20}));
  EXPECT_THAT(absorbed, ElementsAre(TimeWindow{0, 10}, TimeWindow{12, 20}));
  // One record covering all three.
  EXPECT_EQ(MergeSession(open, {10, 30}, &absorbed), (TimeWindow{0, 35}));
  EXPECT_THAT(absorbed, ElementsAre(TimeWindow{0, 10}, TimeWindow{12, 20}, TimeWindow{30, 35}));
  // Between the first two without touching either.
  EXPECT_EQ(MergeSession(open, {10, 12}, &absorbed), (TimeWindow{0, 20}));
  open = {{0, 10}, {13, 20}};
  EXPECT_EQ(MergeSession(open, {11, 12}, &absorbed), (TimeWindow{11, 12}));
  EXPECT_THAT(absorbed, IsEmpty());
}

TEST(WindowAssignerTest, ParseWindowSpec) {
  auto t = Parse("{tumble: {size: 1m}, offset: -15s}");
  ASSERT_OK(t);
  EXPECT_EQ(t->kind, WindowSpec::Kind::kTumble);
  EXPECT_EQ(t->size_ms, 60000);
  EXPECT_EQ(t->slide_ms, 60000);
  EXPECT_EQ(t->offset_ms, -15000);
  auto short_form = Parse("{tumble: 2s}");
  ASSERT_OK(short_form);
  EXPECT_EQ(short_form->size_ms, 2000);
  auto h = Parse("{hop: {size: 10s, slide: 2s}}");
  ASSERT_OK(h);
  EXPECT_EQ(h->kind, WindowSpec::Kind::kHop);
  EXPECT_EQ(h->MaxWindowsPerRecord(), 5);
  auto s = Parse("{session: {gap: 30s}}");
  ASSERT_OK(s);
  EXPECT_TRUE(s->merging());
  EXPECT_EQ(s->gap_ms, 30000);
}

TEST(WindowAssignerTest, ParseWindowSpecErrors) {
  EXPECT_THAT(Parse("{offset: 1s}"), StatusIs(absl::StatusCode::kInvalidArgument,
                                              HasSubstr("need one of 'tumble")));
  EXPECT_THAT(Parse("{tumble: 1s, session: 1s}"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("only one")));
  EXPECT_THAT(Parse("{tumble: {sise: 1s}}"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unknown key 'sise'")));
  EXPECT_THAT(Parse("{tumble: 0s}"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("must be positive")));
  EXPECT_THAT(Parse("{hop: {size: 1s, slide: 2s}}"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("must not exceed")));
  EXPECT_THAT(Parse("{hop: {size: 1h, slide: 1ms}}"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("windows per record")));
  EXPECT_THAT(Parse("{tumble: 10s, offset: 10s}"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("smaller than the size")));
  EXPECT_THAT(Parse("{hop: {size: 10s, slide: 2s}, offset: -2s}"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("smaller than the slide")));
  EXPECT_THAT(Parse("{session: 1s, offset: 1ms}"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not session")));
  // Positioned: line 1, column of the value.
  EXPECT_THAT(Parse("{tumble: {size: soon}}"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("job.yaml:1:")));
}

}  // namespace
}  // namespace sluice::ops
