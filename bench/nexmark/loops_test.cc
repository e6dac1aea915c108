// The streaming loops (loops.cc close windows and join as events arrive) against the queries'
// definitions computed the slow way: every event of the run in memory, then the SQL of
// nexmark/nexmark's queries/q*.sql taken literally. At 1,000 events/s of event time, 60,000
// events span a minute: several tumbling, sliding and session windows.

#include "bench/nexmark/loops.h"

#include <algorithm>
#include <map>
#include <regex>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/civil_time.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace sluice::nexmark {
namespace {

constexpr int64_t kEvents = 60'000;

struct AllEvents {
  std::vector<Person> people;
  std::vector<Auction> auctions;
  std::vector<Bid> bids;
};

GeneratorConfig SlowTime() {
  GeneratorConfig c;
  c.event_rate = 1000;
  return c;
}

AllEvents Generate(const Generator& g) {
  AllEvents all;
  for (int64_t id = 0; id < kEvents; ++id) {
    switch (KindOf(id)) {
      case EventKind::kPerson: g.MakePerson(id, kAllFields, &all.people.emplace_back()); break;
      case EventKind::kAuction: g.MakeAuction(id, kAllFields, &all.auctions.emplace_back()); break;
      case EventKind::kBid: g.MakeBid(id, kAllFields, &all.bids.emplace_back()); break;
    }
  }
  return all;
}

// The loop's rows as sorted text.
std::vector<std::string> LoopRows(const std::string& query, const Generator& g) {
  const LoopQuery* q = FindLoopQuery(query);
  EXPECT_NE(q, nullptr);
  std::vector<std::string> rows;
  EXPECT_TRUE(RunLoop(query, g, kEvents, [&](const Record& row) {
                std::string line;
                AppendRecordJson(q->schema, row, &line);
                rows.push_back(std::move(line));
              }).ok());
  std::sort(rows.begin(), rows.end());
  return rows;
}

// Rows given as records of the query's schema, as sorted text.
class Rows {
 public:
  explicit Rows(const std::string& query) : schema_(FindLoopQuery(query)->schema), row_(schema_.size()) {}
  Record& row() { return row_; }
  void Add() {
    std::string line;
    AppendRecordJson(schema_, row_, &line);
    rows_.push_back(std::move(line));
  }
  std::vector<std::string> Sorted() {
    std::sort(rows_.begin(), rows_.end());
    return rows_;
  }

 private:
  Schema schema_;
  Record row_;
  std::vector<std::string> rows_;
};

int64_t WindowStart(int64_t ts, int64_t size) { return ts - ts % size; }

class LoopsTest : public ::testing::Test {
 protected:
  LoopsTest() : generator_(SlowTime()), all_(Generate(generator_)) {}
  Generator generator_;
  AllEvents all_;
};

TEST_F(LoopsTest, Q0Q1Q2) {
  Rows q0("q0"), q1("q1"), q2("q2");
  for (const Bid& b : all_.bids) {
    for (Rows* r : {&q0, &q1}) {
      r->row().SetInt(0, b.auction);
      r->row().SetInt(1, b.bidder);
      r->row().SetInt(3, b.date_time);
      r->row().SetString(4, b.extra);
    }
    q0.row().SetInt(2, b.price);
    q1.row().SetDouble(2, 0.908 * static_cast<double>(b.price));
    q0.Add();
    q1.Add();
    if (b.auction % 123 == 0) {
      q2.row().SetInt(0, b.auction);
      q2.row().SetInt(1, b.price);
      q2.Add();
    }
  }
  EXPECT_EQ(LoopRows("q0", generator_), q0.Sorted());
  EXPECT_EQ(LoopRows("q1", generator_), q1.Sorted());
  const std::vector<std::string> q2_rows = q2.Sorted();
  EXPECT_FALSE(q2_rows.empty());
  EXPECT_EQ(LoopRows("q2", generator_), q2_rows);
}

TEST_F(LoopsTest, Q3JoinsEveryMatchingPair) {
  Rows rows("q3");
  for (const Auction& a : all_.auctions) {
    if (a.category != 10) continue;
    for (const Person& p : all_.people) {
      if (p.id != a.seller || (p.state != "OR" && p.state != "ID" && p.state != "CA")) continue;
      rows.row().SetString(0, p.name);
      rows.row().SetString(1, p.city);
      rows.row().SetString(2, p.state);
      rows.row().SetInt(3, a.id);
      rows.Add();
    }
  }
  const std::vector<std::string> expected = rows.Sorted();
  EXPECT_GT(expected.size(), 10u);
  EXPECT_EQ(LoopRows("q3", generator_), expected);
}

TEST_F(LoopsTest, Q4AveragesTheWinningBidsPerCategory) {
  std::map<int64_t, std::pair<double, int64_t>> per_category;
  for (const Auction& a : all_.auctions) {
    int64_t max = -1;
    for (const Bid& b : all_.bids) {
      if (b.auction == a.id && b.date_time >= a.date_time && b.date_time <= a.expires) {
        max = std::max(max, b.price);
      }
    }
    if (max < 0) continue;
    per_category[a.category].first += static_cast<double>(max);
    ++per_category[a.category].second;
  }
  Rows rows("q4");
  for (const auto& [category, sc] : per_category) {
    rows.row().SetInt(0, category);
    rows.row().SetDouble(1, sc.first / static_cast<double>(sc.second));
    rows.Add();
  }
  const std::vector<std::string> expected = rows.Sorted();
  EXPECT_EQ(expected.size(), 5u);
  EXPECT_EQ(LoopRows("q4", generator_), expected);
}

TEST_F(LoopsTest, Q5HotItemsPerSlidingWindow) {
  std::map<int64_t, std::map<int64_t, int64_t>> counts;  // window start -> auction -> bids
  for (const Bid& b : all_.bids) {
    for (int64_t start = WindowStart(b.date_time, 2000) - 8000; start <= b.date_time; start += 2000) {
      if (b.date_time < start + 10'000) ++counts[start][b.auction];
    }
  }
  Rows rows("q5");
  for (const auto& [start, by_auction] : counts) {
    int64_t max = 0;
    for (const auto& [auction, n] : by_auction) max = std::max(max, n);
    for (const auto& [auction, n] : by_auction) {
      if (n < max) continue;
      rows.row().SetInt(0, auction);
      rows.row().SetInt(1, n);
      rows.Add();
    }
  }
  const std::vector<std::string> expected = rows.Sorted();
  EXPECT_GT(expected.size(), 30u);  // 34 windows over a minute, at least one row each
  EXPECT_EQ(LoopRows("q5", generator_), expected);
}

TEST_F(LoopsTest, Q7HighestBidsWithTheirWindowEndIncluded) {
  std::map<int64_t, int64_t> max_by_end;
  for (const Bid& b : all_.bids) {
    int64_t& m = max_by_end[WindowStart(b.date_time, 10'000) + 10'000];
    m = std::max(m, b.price);
  }
  Rows rows("q7");
  for (const auto& [end, max] : max_by_end) {
    for (const Bid& b : all_.bids) {
      if (b.price != max || b.date_time < end - 10'000 || b.date_time > end) continue;
      rows.row().SetInt(0, b.auction);
      rows.row().SetInt(1, b.price);
      rows.row().SetInt(2, b.bidder);
      rows.row().SetInt(3, b.date_time);
      rows.row().SetString(4, b.extra);
      rows.Add();
    }
  }
  const std::vector<std::string> expected = rows.Sorted();
  EXPECT_GE(expected.size(), max_by_end.size());
  EXPECT_EQ(LoopRows("q7", generator_), expected);
}

TEST_F(LoopsTest, Q8NewSellersPerWindow) {
  std::set<std::pair<int64_t, int64_t>> sellers;  // (window start, seller)
  for (const Auction& a : all_.auctions) sellers.emplace(WindowStart(a.date_time, 10'000), a.seller);
  Rows rows("q8");
  for (const Person& p : all_.people) {
    const int64_t start = WindowStart(p.date_time, 10'000);
    if (!sellers.count({start, p.id})) continue;
    rows.row().SetInt(0, p.id);
    rows.row().SetString(1, p.name);
    rows.row().SetInt(2, start);
    rows.Add();
  }
  const std::vector<std::string> expected = rows.Sorted();
  EXPECT_GT(expected.size(), 10u);
  EXPECT_EQ(LoopRows("q8", generator_), expected);
}

TEST_F(LoopsTest, Q11SessionsPerBidder) {
  std::map<int64_t, std::vector<int64_t>> times;
  for (const Bid& b : all_.bids) times[b.bidder].push_back(b.date_time);
  Rows rows("q11");
  for (auto& [bidder, ts] : times) {
    std::sort(ts.begin(), ts.end());
    size_t first = 0;
    for (size_t i = 1; i <= ts.size(); ++i) {
      if (i < ts.size() && ts[i] <= ts[i - 1] + 10'000) continue;
      rows.row().SetInt(0, bidder);
      rows.row().SetInt(1, static_cast<int64_t>(i - first));
      rows.row().SetInt(2, ts[first]);
      rows.row().SetInt(3, ts[i - 1] + 10'000);
      rows.Add();
      first = i;
    }
  }
  const std::vector<std::string> expected = rows.Sorted();
  EXPECT_GT(expected.size(), times.size());  // some bidders pause for more than 10 s
  EXPECT_EQ(LoopRows("q11", generator_), expected);
}

// q14 at 0.5 events per second of event time: 60,000 events span 33 hours, so every hour
// class occurs. The hour from absl's civil time, the filter on the double as the SQL reads.
TEST(LoopsQ14Test, PriceRangeHourClassAndCharCount) {
  GeneratorConfig config;
  config.event_rate = 0.5;
  const Generator g(config);
  Rows rows("q14");
  std::set<std::string> classes;
  Bid b;
  for (int64_t id = 0; id < kEvents; ++id) {
    if (KindOf(id) != EventKind::kBid) continue;
    g.MakeBid(id, kAllFields, &b);
    const double price = 0.908 * static_cast<double>(b.price);
    if (price <= 1000000 || price >= 50000000) continue;
    const int hour =
        absl::ToCivilHour(absl::FromUnixMillis(b.date_time), absl::UTCTimeZone()).hour();
    const std::string type = hour >= 8 && hour <= 18   ? "dayTime"
                             : hour <= 6 || hour >= 20 ? "nightTime"
                                                       : "otherTime";
    classes.insert(type);
    Record& r = rows.row();
    r.SetInt(0, b.auction);
    r.SetInt(1, b.bidder);
    r.SetDouble(2, price);
    r.SetString(3, type);
    r.SetInt(4, b.date_time);
    r.SetString(5, b.extra);
    r.SetInt(6, std::count(b.extra.begin(), b.extra.end(), 'c'));
    rows.Add();
  }
  EXPECT_EQ(classes.size(), 3u);
  const std::vector<std::string> expected = rows.Sorted();
  EXPECT_GT(expected.size(), 1000u);
  EXPECT_EQ(LoopRows("q14", g), expected);
}

// q20 as the SQL reads: every (bid, auction) with bid.auction = auction.id and category 10.
TEST_F(LoopsTest, Q20BidsWithTheirCategory10Auction) {
  std::map<int64_t, const Auction*> auctions;
  for (const Auction& a : all_.auctions) auctions[a.id] = &a;
  Rows rows("q20");
  for (const Bid& b : all_.bids) {
    auto it = auctions.find(b.auction);
    if (it == auctions.end() || it->second->category != 10) continue;
    const Auction& a = *it->second;
    Record& r = rows.row();
    r.SetInt(0, b.auction);
    r.SetInt(1, b.bidder);
    r.SetInt(2, b.price);
    r.SetString(3, b.channel);
    r.SetString(4, b.url);
    r.SetInt(5, b.date_time);
    r.SetString(6, b.extra);
    r.SetString(7, a.item_name);
    r.SetString(8, a.description);
    r.SetInt(9, a.initial_bid);
    r.SetInt(10, a.reserve);
    r.SetInt(11, a.date_time);
    r.SetInt(12, a.expires);
    r.SetInt(13, a.seller);
    r.SetInt(14, a.category);
    r.SetString(15, a.extra);
    rows.Add();
  }
  const std::vector<std::string> expected = rows.Sorted();
  EXPECT_GT(expected.size(), 1000u);
  EXPECT_EQ(LoopRows("q20", generator_), expected);
}

// q21 with the SQL's regular expression (std::regex) and lower().
TEST_F(LoopsTest, Q21ChannelIds) {
  const std::regex channel_id("(&|^)channel_id=([^&]*)");
  const std::map<std::string, std::string> named = {
      {"apple", "0"}, {"google", "1"}, {"facebook", "2"}, {"baidu", "3"}};
  Rows rows("q21");
  int extracted = 0, dropped = 0;
  for (const Bid& b : all_.bids) {
    const std::string url(b.url);
    std::smatch m;
    const bool has_param = std::regex_search(url, m, channel_id);
    auto it = named.find(absl::AsciiStrToLower(b.channel));
    if (!has_param && it == named.end()) {
      ++dropped;
      continue;
    }
    Record& r = rows.row();
    r.SetInt(0, b.auction);
    r.SetInt(1, b.bidder);
    r.SetInt(2, b.price);
    r.SetString(3, b.channel);
    if (it != named.end()) {
      r.SetString(4, it->second);
    } else {
      r.SetString(4, m[2].str());
      ++extracted;
    }
    rows.Add();
  }
  EXPECT_GT(extracted, 0);
  EXPECT_GT(dropped, 0);
  EXPECT_EQ(LoopRows("q21", generator_), rows.Sorted());
}

// q22 with absl::StrSplit.
TEST_F(LoopsTest, Q22UrlDirectories) {
  Rows rows("q22");
  for (const Bid& b : all_.bids) {
    const std::vector<absl::string_view> pieces = absl::StrSplit(b.url, '/');
    Record& r = rows.row();
    r.SetInt(0, b.auction);
    r.SetInt(1, b.bidder);
    r.SetInt(2, b.price);
    r.SetString(3, b.channel);
    ASSERT_GE(pieces.size(), 6u) << b.url;
    for (size_t i = 0; i < 3; ++i) r.SetString(4 + i, pieces[3 + i]);
    rows.Add();
  }
  EXPECT_EQ(LoopRows("q22", generator_), rows.Sorted());
}

TEST(LoopsRegistryTest, KnowsTheQueries) {
  std::vector<std::string> names;
  for (const LoopQuery& q : LoopQueries()) names.push_back(q.name);
  EXPECT_EQ(names, (std::vector<std::string>{"q0", "q1", "q2", "q3", "q4", "q5", "q7", "q8", "q11",
                                              "q14", "q20", "q21", "q22"}));
  EXPECT_EQ(FindLoopQuery("q6"), nullptr);
  Generator g;
  EXPECT_EQ(RunLoop("q6", g, 10, [](const Record&) {}).code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace sluice::nexmark
