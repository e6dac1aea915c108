#include <algorithm>
#include <limits>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "common/status.h"
#include "common/status_matchers.h"
#include "common/watermark.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "operators/nexmark/generator.h"
#include "operators/operator.h"
#include "operators/registry.h"
#include "plan/job_spec.h"

namespace sluice::ops {
namespace {

using ::sluice::testing::StatusIs;
using ::testing::HasSubstr;

// Keeps records and watermarks in arrival order, and the size of each batch emitted with
// EmitOwnedBatch(). An owned record's values are taken (moved out, as a receiver may), so a
// value the source does not set again for its next record shows up.
class Collector final : public Output {
 public:
  absl::Status Emit(const Record& record) override {
    records.push_back(record);
    return absl::OkStatus();
  }
  absl::Status EmitOwned(Record* record) override {
    records.emplace_back(record->size());
    for (size_t i = 0; i < record->size(); ++i) {
      records.back()[i].i = (*record)[i].i;
      records.back()[i].s = std::move((*record)[i].s);
      (*record)[i].s = "taken";
    }
    return absl::OkStatus();
  }
  absl::Status EmitOwnedBatch(Record* batch, size_t n) override {
    batches.push_back(n);
    return Output::EmitOwnedBatch(batch, n);
  }
  absl::Status EmitWatermark(int64_t watermark_ms) override {
    watermarks.push_back(watermark_ms);
    return absl::OkStatus();
  }
  std::vector<Record> records;
  std::vector<int64_t> watermarks;
  std::vector<size_t> batches;
};

class NexmarkSourceTest : public ::testing::Test {
 protected:
  NexmarkSourceTest() { EXPECT_OK(RegisterBuiltinOperators(&registry_)); }

  absl::Status Load(const std::string& source_yaml) {
    auto job = plan::ParseJobSpec(absl::StrCat("operators:\n  - ", source_yaml, "\n  - {id: out, type: print}\n"),
                                  "job.yaml", registry_.catalog());
    if (!job.ok()) return job.status();
    job_ = *std::move(job);
    return absl::OkStatus();
  }

  // Opens the source as subtask `subtask` of `parallelism`, restored from `state` if given.
  absl::StatusOr<std::unique_ptr<SourceOperator>> TryOpen(int subtask, int parallelism, Output* out,
                                                          const std::vector<std::string>* state) {
    const plan::OperatorSpec& spec = job_.operators.front();
    SLUICE_ASSIGN_OR_RETURN(std::unique_ptr<Operator> op, registry_.Create(spec));
    OperatorContext ctx;
    ctx.job = &job_;
    ctx.spec = &spec;
    ctx.subtask = subtask;
    ctx.parallelism = parallelism;
    ctx.clock = &clock_;
    ctx.task_name = absl::StrCat("job-1/src#", subtask);
    if (state != nullptr) {
      ctx.restored = true;
      ctx.restored_checkpoint_id = 3;
      ctx.state_origin = StateOrigin("job-1", spec.id, spec.type, subtask, 3);
      ctx.restored_state = *state;
    }
    SLUICE_RETURN_IF_ERROR(op->Open(ctx, out));
    return std::unique_ptr<SourceOperator>(dynamic_cast<SourceOperator*>(op.release()));
  }
  std::unique_ptr<SourceOperator> Open(int subtask, int parallelism, Output* out,
                                       const std::vector<std::string>* state = nullptr) {
    auto source = TryOpen(subtask, parallelism, out, state);
    EXPECT_OK(source);
    return source.ok() ? std::move(*source) : nullptr;
  }

  // Polls until the source ends or `limit` records came out.
  static void Run(SourceOperator* source, Collector* out, size_t limit = SIZE_MAX) {
    int64_t wake = 0;
    while (out->records.size() < limit) {
      auto state = source->Poll(static_cast<int>(std::min<size_t>(64, limit - out->records.size())), &wake);
      ASSERT_OK(state);
      if (*state == SourceOperator::State::kEnd) return;
      ASSERT_EQ(*state, SourceOperator::State::kMore);
    }
  }

  OperatorRegistry registry_;
  FakeClock clock_;
  plan::JobSpec job_;
};

using BidRow = std::tuple<int64_t, int64_t, int64_t, int64_t>;  // auction, bidder, price, dateTime

std::vector<BidRow> Rows(const std::vector<Record>& records) {
  std::vector<BidRow> rows;
  for (const Record& r : records) rows.emplace_back(r.GetInt(0), r.GetInt(1), r.GetInt(2), r.GetInt(3));
  return rows;
}

// The bids of ids 0..n-1 straight from the generator, sorted. At 1000 events/s of event time
// dateTime is base + id ms, so every row is distinct and names its event.
std::vector<BidRow> ExpectedBids(int64_t n) {
  nexmark::GeneratorConfig config;
  config.event_rate = 1000;
  nexmark::Generator g(config);
  std::vector<BidRow> rows;
  nexmark::Bid b;
  for (int64_t id = 0; id < n; ++id) {
    if (nexmark::KindOf(id) != nexmark::EventKind::kBid) continue;
    g.MakeBid(id, nexmark::kAllFields, &b);
    rows.emplace_back(b.auction, b.bidder, b.price, b.date_time);
  }
  std::sort(rows.begin(), rows.end());
  return rows;
}

constexpr char kBids[] =
    "{id: src, type: nexmark, emit: bid, events: 10000, event_rate: 1000, "
    "fields: [auction, bidder, price, dateTime]}";

TEST_F(NexmarkSourceTest, SubtasksTogetherProduceEachBidOnce) {
  ASSERT_OK(Load(kBids));
  std::vector<BidRow> all;
  for (int i = 0; i < 3; ++i) {
    Collector out;
    auto src = Open(i, 3, &out);
    Run(src.get(), &out);
    EXPECT_GT(out.records.size(), 2900u) << i;  // epochs of 50 ids dealt round-robin
    std::vector<BidRow> rows = Rows(out.records);
    all.insert(all.end(), rows.begin(), rows.end());
  }
  std::sort(all.begin(), all.end());
  EXPECT_EQ(all, ExpectedBids(10000));
  EXPECT_EQ(all.size(), 9200u);
}

TEST_F(NexmarkSourceTest, EveryKindReachesEverySubtask) {
  // Persons are 1 in 50 ids: with epochs dealt to subtasks each subtask still gets its share.
  ASSERT_OK(Load("{id: src, type: nexmark, emit: person, events: 1000, fields: [id, name, state]}"));
  std::vector<int64_t> ids;
  for (int i = 0; i < 2; ++i) {
    Collector out;
    auto src = Open(i, 2, &out);
    Run(src.get(), &out);
    EXPECT_EQ(out.records.size(), 10u) << i;
    for (const Record& r : out.records) {
      ids.push_back(r.GetInt(0));
      EXPECT_FALSE(r.GetString(1).empty());
      EXPECT_EQ(r.GetString(2).size(), 2u);
    }
  }
  std::sort(ids.begin(), ids.end());
  std::vector<int64_t> expected;
  for (int64_t id = 1000; id < 1020; ++id) expected.push_back(id);
  EXPECT_EQ(ids, expected);
}

TEST_F(NexmarkSourceTest, ProjectionKeepsTheOrderAskedAndPadsOnlyWhenAsked) {
  ASSERT_OK(Load("{id: src, type: nexmark, emit: bid, events: 100, fields: [price, extra, auction]}"));
  EXPECT_EQ(job_.operators.front().output_schema.ToString(), "(price int64, extra string, auction int64)");
  Collector out;
  auto src = Open(0, 1, &out);
  Run(src.get(), &out);
  ASSERT_EQ(out.records.size(), 92u);
  nexmark::Generator g;
  nexmark::Bid b;
  g.MakeBid(4, nexmark::kAllFields, &b);
  EXPECT_EQ(out.records[0].GetInt(0), b.price);
  EXPECT_EQ(out.records[0].GetString(1), b.extra);
  EXPECT_EQ(out.records[0].GetInt(2), b.auction);
  ASSERT_OK(Load("{id: src, type: nexmark, emit: auction, events: 100}"));
  EXPECT_EQ(job_.operators.front().output_schema.ToString(),
            "(id int64, itemName string, description string, initialBid int64, reserve int64, "
            "dateTime timestamp, expires timestamp, seller int64, category int64, extra string)");
}

TEST_F(NexmarkSourceTest, RestoresAndRescalesFromSplitPositions) {
  ASSERT_OK(Load(kBids));
  std::vector<BidRow> all;
  std::vector<std::string> state;
  for (int i = 0; i < 2; ++i) {
    Collector out;
    auto src = Open(i, 2, &out);
    Run(src.get(), &out, 1000 + 300 * i);
    ASSERT_OK(src->SnapshotState(1, &state));
    std::vector<BidRow> rows = Rows(out.records);
    all.insert(all.end(), rows.begin(), rows.end());
  }
  ASSERT_EQ(state.size(), 2u);
  // Rescaled to 3: entries dealt round-robin (subtask 2 gets none and ends at once).
  for (int i = 0; i < 3; ++i) {
    std::vector<std::string> mine;
    for (size_t e = i; e < state.size(); e += 3) mine.push_back(state[e]);
    Collector out;
    auto src = Open(i, 3, &out, &mine);
    Run(src.get(), &out);
    if (i == 2) {
      EXPECT_TRUE(out.records.empty());
    }
    std::vector<BidRow> rows = Rows(out.records);
    all.insert(all.end(), rows.begin(), rows.end());
  }
  std::sort(all.begin(), all.end());
  EXPECT_EQ(all, ExpectedBids(10000));
}

TEST_F(NexmarkSourceTest, CorruptStateIsRefused) {
  ASSERT_OK(Load(kBids));
  Collector out;
  const std::string named = "(job job-1, operator 'src' (type nexmark), subtask 0, restored from checkpoint 3): ";
  for (const auto& [entry, reason] : std::vector<std::pair<std::string, std::string>>{
           {std::string(1, '\1') + std::string(10, '\0'), "nexmark split has 11 bytes, expected 25"},
           {std::string(1, '\1') + std::string(24, '\0'), "nexmark split (0, 0, 0) is not a split"},
           {std::string(1, '\2') + std::string(24, '\1'), "nexmark split has format version 2, newer than this build"},
           {"", "nexmark split is empty (truncated)"}}) {
    const std::vector<std::string> state = {entry};
    EXPECT_THAT(TryOpen(0, 1, &out, &state), StatusIs(absl::StatusCode::kDataLoss, HasSubstr(named + reason)));
  }
}

TEST_F(NexmarkSourceTest, WatermarksTrailDateTimeByFourSeconds) {
  ASSERT_OK(Load("{id: src, type: nexmark, emit: bid, events: 20000, event_rate: 1000, fields: [dateTime]}"));
  Collector out;
  auto src = Open(0, 1, &out);
  Run(src.get(), &out, 5000);
  clock_.AdvanceNanos(1'000'000'000);  // past the watermark interval
  Run(src.get(), &out, 5001);
  ASSERT_EQ(out.watermarks.size(), 1u);
  // The largest dateTime before that poll was the 5000th record's.
  EXPECT_EQ(out.watermarks[0], out.records[4999].GetInt(0) - 4000 - 1);
  Run(src.get(), &out);
  ASSERT_OK(src->Finish());
  EXPECT_EQ(out.watermarks.back(), kMaxWatermark);
  EXPECT_EQ(out.records.size(), 18400u);
}

TEST_F(NexmarkSourceTest, RateIsSharedBySubtasksAndUnboundedNeverEnds) {
  // 100 bids/s for the source, 2 subtasks: one bid every 20 ms each.
  ASSERT_OK(Load("{id: src, type: nexmark, emit: bid, rate: 100, fields: [auction]}"));
  Collector out;
  auto src = Open(1, 2, &out);
  int64_t wake = 0;
  auto state = src->Poll(10, &wake);
  ASSERT_OK(state);
  EXPECT_EQ(*state, SourceOperator::State::kWait);
  EXPECT_EQ(out.records.size(), 1u);
  EXPECT_EQ(wake, clock_.NowNanos() + 20'000'000);
  clock_.AdvanceNanos(60'000'000);  // 60 ms later: the bids due at 20, 40 and 60 ms
  state = src->Poll(100, &wake);
  ASSERT_OK(state);
  EXPECT_EQ(*state, SourceOperator::State::kWait);
  EXPECT_EQ(out.records.size(), 4u);
}

TEST_F(NexmarkSourceTest, WatermarkIsTheMinimumOverSplitsAfterARescale) {
  // Subtask 0 of 2 runs far ahead of subtask 1; restored into one subtask, the watermark
  // follows the split that is behind, so none of its records is late.
  ASSERT_OK(Load("{id: src, type: nexmark, emit: bid, events: 100000, event_rate: 1000, fields: [dateTime]}"));
  std::vector<std::string> state;
  for (int i = 0; i < 2; ++i) {
    Collector out;
    auto src = Open(i, 2, &out);
    Run(src.get(), &out, i == 0 ? 20000 : 100);
    ASSERT_OK(src->SnapshotState(1, &state));
  }
  Collector out;
  auto src = Open(0, 1, &out, &state);
  Run(src.get(), &out, 10);  // round-robin: even records from the split ahead, odd from the one behind
  clock_.AdvanceNanos(1'000'000'000);
  Run(src.get(), &out, 11);
  ASSERT_EQ(out.watermarks.size(), 1u);
  EXPECT_GT(out.records[8].GetInt(0), out.records[9].GetInt(0) + 10'000);
  EXPECT_EQ(out.watermarks[0], out.records[9].GetInt(0) - 4000 - 1);
}

// One split per subtask (the ids of an epoch taken a run at a time, one watermark update per
// batch): each subtask emits exactly the ids of its epochs (subtask, subtask + parallelism, ...)
// in order, of every kind, up to `events` (which ends within an epoch here), whatever the poll
// size; and every periodic watermark trails the largest dateTime emitted before it by the
// out-of-orderness and a millisecond, as per event.
TEST_F(NexmarkSourceTest, OneSplitEmitsItsEpochsIdsInOrderAndWatermarksAsPerEvent) {
  // Records and watermarks in arrival order: a record as its dateTime, a watermark as "w<ms>".
  class Log final : public Output {
   public:
    absl::Status Emit(const Record& r) override {
      log.push_back(absl::StrCat(r.GetInt(0)));
      return absl::OkStatus();
    }
    absl::Status EmitWatermark(int64_t w) override {
      log.push_back(absl::StrCat("w", w));
      return absl::OkStatus();
    }
    std::vector<std::string> log;
  };
  constexpr int64_t kEvents = 5037;
  for (const std::string kind : {"bid", "auction", "person"}) {
    ASSERT_OK(Load(absl::StrCat("{id: src, type: nexmark, emit: ", kind, ", events: ", kEvents,
                                ", event_rate: 1000, fields: [dateTime]}")));
    nexmark::GeneratorConfig config;
    config.event_rate = 1000;
    nexmark::Generator g(config);
    const std::vector<std::pair<int, int>> subtasks = {{0, 1}, {1, 3}, {2, 3}};
    for (const auto& [subtask, parallelism] : subtasks) {
      for (int poll : {1, 37, 64, 100}) {
        SCOPED_TRACE(
            absl::StrCat(kind, " subtask ", subtask, " of ", parallelism, " polls of ", poll));
        // Expected: the dateTimes of the kind's ids in the subtask's epochs, in id order, with a
        // watermark before every poll after the first (the clock passes the interval each time).
        std::vector<std::string> want;
        int64_t max_ts = std::numeric_limits<int64_t>::min();
        int64_t emitted = 0;
        for (int64_t id = 0; id < kEvents; ++id) {
          if ((id / nexmark::kTotalProportion) % parallelism != subtask) continue;
          const nexmark::EventKind k = nexmark::KindOf(id);
          if (k != (kind == "bid"       ? nexmark::EventKind::kBid
                    : kind == "auction" ? nexmark::EventKind::kAuction
                                        : nexmark::EventKind::kPerson)) {
            continue;
          }
          if (emitted > 0 && emitted % poll == 0) {
            want.push_back(absl::StrCat("w", max_ts - 4000 - 1));
          }
          int64_t ts;
          if (k == nexmark::EventKind::kBid) {
            nexmark::Bid b;
            g.MakeBid(id, nexmark::kAllFields, &b);
            ts = b.date_time;
          } else if (k == nexmark::EventKind::kAuction) {
            nexmark::Auction a;
            g.MakeAuction(id, nexmark::kAllFields, &a);
            ts = a.date_time;
          } else {
            nexmark::Person p;
            g.MakePerson(id, nexmark::kAllFields, &p);
            ts = p.date_time;
          }
          want.push_back(absl::StrCat(ts));
          max_ts = std::max(max_ts, ts);
          ++emitted;
        }
        // A poll that fills up is followed by one more, which emits a watermark first.
        if (emitted % poll == 0) want.push_back(absl::StrCat("w", max_ts - 4000 - 1));
        ASSERT_GT(emitted, 3);
        Log log;
        auto source = Open(subtask, parallelism, &log);
        ASSERT_NE(source, nullptr);
        int64_t wake = 0;
        for (int polls = 0;; ++polls) {
          ASSERT_LT(polls, kEvents + 2);
          auto state = source->Poll(poll, &wake);
          ASSERT_OK(state);
          if (*state == SourceOperator::State::kEnd) break;
          clock_.AdvanceNanos(1'000'000'000);
        }
        EXPECT_EQ(log.log, want);
      }
    }
  }
}

// Events are generated in batches and then emitted (one at a time with padding, which goes
// straight into the record; without, a batch of up to 64 records at a time): every record is
// the generator's event of its id, for every kind, with and without padding, from two splits in
// one subtask, whatever the poll size (1, a batch and a bit, more than a batch), also when the
// receiver takes the records' values.
TEST_F(NexmarkSourceTest, BatchedEventsAreTheGeneratorsEventByEvent) {
  const int64_t kBase = nexmark::GeneratorConfig().base_time_ms;
  nexmark::GeneratorConfig config;
  config.event_rate = 1000;  // dateTime = base + id ms names the event
  const nexmark::Generator g(config);
  for (const char* kind : {"bid", "auction", "person"}) {
    for (const bool padding : {true, false}) {
      for (int poll : {1, 67, 256}) {
        ASSERT_OK(Load(absl::StrCat("{id: src, type: nexmark, emit: ", kind,
                                    ", events: 3000, event_rate: 1000, fields: [dateTime, ",
                                    padding ? "extra" : std::string(kind) == "bid" ? "bidder" : "id", ", ",
                                    std::string(kind) == "person" ? "name"
                                    : std::string(kind) == "bid"  ? "auction"
                                                                  : "itemName",
                                    "]}")));
        std::vector<std::string> state;
        for (int i = 0; i < 2; ++i) {
          Collector none;
          auto src = Open(i, 2, &none);
          ASSERT_OK(src->SnapshotState(1, &state));
        }
        Collector out;
        auto src = Open(0, 1, &out, &state);  // both splits in one subtask
        int64_t wake = 0;
        for (;;) {
          auto st = src->Poll(poll, &wake);
          ASSERT_OK(st);
          if (*st == SourceOperator::State::kEnd) break;
        }
        const size_t per_epoch = std::string(kind) == "bid" ? 46 : std::string(kind) == "auction" ? 3 : 1;
        ASSERT_EQ(out.records.size(), 60 * per_epoch) << kind << " " << poll;
        if (padding) {
          EXPECT_TRUE(out.batches.empty());
        } else {
          // Each poll's records in batches of 64 and the rest.
          std::vector<size_t> expected;
          for (size_t left = out.records.size(); left > 0;) {
            size_t in_poll = std::min<size_t>(poll, left);
            left -= in_poll;
            for (; in_poll > 0; in_poll -= std::min<size_t>(64, in_poll)) expected.push_back(std::min<size_t>(64, in_poll));
          }
          EXPECT_EQ(out.batches, expected) << kind << " " << poll;
        }
        std::vector<int64_t> ids;
        for (const Record& r : out.records) {
          const int64_t id = r.GetInt(0) - kBase;
          ids.push_back(id);
          std::string extra, third;
          if (std::string(kind) == "bid") {
            nexmark::Bid e;
            g.MakeBid(id, nexmark::kAllFields, &e);
            extra = e.extra;
            ASSERT_EQ(r.GetInt(2), e.auction) << id;
          } else if (std::string(kind) == "auction") {
            nexmark::Auction e;
            g.MakeAuction(id, nexmark::kAllFields, &e);
            extra = e.extra;
            ASSERT_EQ(r.GetString(2), e.item_name) << id;
          } else {
            nexmark::Person e;
            g.MakePerson(id, nexmark::kAllFields, &e);
            extra = e.extra;
            ASSERT_EQ(r.GetString(2), e.name) << id;
          }
          if (padding) {
            ASSERT_EQ(r.GetString(1), extra) << kind << " " << id;
          }
        }
        // Round-robin over the two splits: epochs 0, 2, 4, ... and 1, 3, 5, ..., alternating
        // record by record; each id once.
        EXPECT_EQ(ids[0] / 50 % 2, 0);
        if (ids.size() > 1) {
          EXPECT_EQ(ids[1] / 50 % 2, 1);
        }
        std::sort(ids.begin(), ids.end());
        EXPECT_EQ(std::adjacent_find(ids.begin(), ids.end()), ids.end());
      }
    }
  }
}

TEST_F(NexmarkSourceTest, BadOptionsAreRefusedWithPositions) {
  EXPECT_THAT(Load("{id: src, type: nexmark, emit: bids}"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("job.yaml:2:36: 'emit' must be bid, auction or person, not 'bids'")));
  EXPECT_THAT(Load("{id: src, type: nexmark, emit: bid, fields: [auction, seller]}"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("no field 'seller' in a nexmark bid (auction, bidder, price, channel, "
                                 "url, dateTime, extra)")));
  EXPECT_THAT(Load("{id: src, type: nexmark, emit: bid, fields: [price, price]}"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("duplicate field 'price'")));
  EXPECT_THAT(Load("{id: src, type: nexmark}"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("emit")));
}

}  // namespace
}  // namespace sluice::ops
