#include "bench/nexmark/loops.h"

#include <map>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace sluice::nexmark {
namespace {

using Emit = absl::FunctionRef<void(const Record&)>;

constexpr int64_t kTenSeconds = 10'000;

Schema MakeSchema(std::vector<Field> fields) { return Schema(std::move(fields)); }

// q0: every bid as (auction, bidder, price, dateTime, extra). q1 (kEuros): the same with the
// price in euros, price * 0.908 (a double).
template <bool kEuros>
void BidsWithPadding(const Generator& g, int64_t events, Emit emit) {
  Bid b;
  Record row(5);
  for (int64_t id = 0; id < events; ++id) {
    if (KindOf(id) != EventKind::kBid) continue;
    g.MakeBid(id, kBidAuction | kBidBidder | kBidPrice | kBidDateTime | kBidExtra, &b, &row[4].s);
    row.SetInt(0, b.auction);
    row.SetInt(1, b.bidder);
    if (kEuros) {
      row.SetDouble(2, static_cast<double>(b.price) * 0.908);
    } else {
      row.SetInt(2, b.price);
    }
    row.SetInt(3, b.date_time);
    emit(row);
  }
}

// q2: (auction, price) of the bids with auction % 123 == 0.
void Q2(const Generator& g, int64_t events, Emit emit) {
  Bid b;
  Record row(2);
  for (int64_t id = 0; id < events; ++id) {
    if (KindOf(id) != EventKind::kBid) continue;
    g.MakeBid(id, kBidAuction | kBidPrice, &b);
    if (b.auction % 123 != 0) continue;
    row.SetInt(0, b.auction);
    row.SetInt(1, b.price);
    emit(row);
  }
}

// q3: (name, city, state, auction id) for auctions of category 10 and their sellers in OR,
// ID or CA: an unbounded inner join on seller = person id (every matching pair, whichever
// came first).
void Q3(const Generator& g, int64_t events, Emit emit) {
  struct Seller {
    std::string name;
    absl::string_view city, state;
  };
  absl::flat_hash_map<int64_t, Seller> sellers;
  absl::flat_hash_map<int64_t, std::vector<int64_t>> auctions_by_seller;
  Person p;
  Auction a;
  Record row(4);
  auto out = [&](const Seller& s, int64_t auction) {
    row.SetString(0, s.name);
    row.SetString(1, s.city);
    row.SetString(2, s.state);
    row.SetInt(3, auction);
    emit(row);
  };
  for (int64_t id = 0; id < events; ++id) {
    switch (KindOf(id)) {
      case EventKind::kPerson: {
        g.MakePerson(id, kPersonId | kPersonName | kPersonCity | kPersonState, &p);
        if (p.state != "OR" && p.state != "ID" && p.state != "CA") break;
        Seller& s = sellers[p.id];
        s = Seller{p.name, p.city, p.state};
        auto it = auctions_by_seller.find(p.id);
        if (it != auctions_by_seller.end()) {
          for (int64_t auction : it->second) out(s, auction);
        }
        break;
      }
      case EventKind::kAuction: {
        g.MakeAuction(id, kAuctionId | kAuctionSeller | kAuctionCategory, &a);
        if (a.category != 10) break;
        auctions_by_seller[a.seller].push_back(a.id);
        auto it = sellers.find(a.seller);
        if (it != sellers.end()) out(it->second, a.id);
        break;
      }
      case EventKind::kBid: break;
    }
  }
}

// q4: per auction, the highest price among its bids whose dateTime is within [auction
// dateTime, expires]; then per category the average of those (a double). The final rows
// (category, avg) at the end of input.
void Q4(const Generator& g, int64_t events, Emit emit) {
  struct AuctionInfo {
    int64_t category, start, expires;
  };
  absl::flat_hash_map<int64_t, AuctionInfo> auctions;
  absl::flat_hash_map<int64_t, int64_t> max_price;  // auctions with a matching bid
  // Bids for auctions not generated yet (ids run up to 10 ahead): (price, dateTime).
  absl::flat_hash_map<int64_t, std::vector<std::pair<int64_t, int64_t>>> early;
  Auction a;
  Bid b;
  auto add = [&](int64_t auction, const AuctionInfo& info, int64_t price, int64_t ts) {
    if (ts < info.start || ts > info.expires) return;
    auto [it, inserted] = max_price.try_emplace(auction, price);
    if (!inserted && price > it->second) it->second = price;
  };
  for (int64_t id = 0; id < events; ++id) {
    switch (KindOf(id)) {
      case EventKind::kPerson: break;
      case EventKind::kAuction: {
        g.MakeAuction(id, kAuctionId | kAuctionCategory | kAuctionDateTime | kAuctionExpires, &a);
        AuctionInfo info{a.category, a.date_time, a.expires};
        auctions[a.id] = info;
        auto it = early.find(a.id);
        if (it != early.end()) {
          for (auto [price, ts] : it->second) add(a.id, info, price, ts);
          early.erase(it);
        }
        break;
      }
      case EventKind::kBid: {
        g.MakeBid(id, kBidAuction | kBidPrice | kBidDateTime, &b);
        auto it = auctions.find(b.auction);
        if (it == auctions.end()) {
          early[b.auction].emplace_back(b.price, b.date_time);
        } else {
          add(b.auction, it->second, b.price, b.date_time);
        }
        break;
      }
    }
  }
  std::map<int64_t, std::pair<double, int64_t>> per_category;  // sum, count
  for (const auto& [auction, price] : max_price) {
    auto& [sum, count] = per_category[auctions[auction].category];
    sum += static_cast<double>(price);
    ++count;
  }
  Record row(2);
  for (const auto& [category, sc] : per_category) {
    row.SetInt(0, category);
    row.SetDouble(1, sc.first / static_cast<double>(sc.second));
    emit(row);
  }
}

// q5: hot items. Sliding windows of 10 s every 2 s on bid dateTime ([start, start + 10 s));
// bids counted per auction per window; per window the auctions whose count is the window's
// maximum: (auction, num).
void Q5(const Generator& g, int64_t events, Emit emit) {
  constexpr int64_t kSlide = 2'000;
  std::map<int64_t, absl::flat_hash_map<int64_t, int64_t>> windows;  // start -> auction -> count
  Record row(2);
  auto close = [&](const absl::flat_hash_map<int64_t, int64_t>& counts) {
    int64_t max = 0;
    for (const auto& [auction, n] : counts) max = std::max(max, n);
    for (const auto& [auction, n] : counts) {
      if (n != max) continue;
      row.SetInt(0, auction);
      row.SetInt(1, n);
      emit(row);
    }
  };
  Bid b;
  for (int64_t id = 0; id < events; ++id) {
    if (KindOf(id) != EventKind::kBid) continue;
    g.MakeBid(id, kBidAuction | kBidDateTime, &b);
    const int64_t ts = b.date_time;
    // Windows that ended before this bid are complete (bids come in dateTime order).
    while (!windows.empty() && windows.begin()->first + kTenSeconds <= ts) {
      close(windows.begin()->second);
      windows.erase(windows.begin());
    }
    const int64_t last_start = ts - ts % kSlide;
    for (int64_t start = last_start; start > ts - kTenSeconds; start -= kSlide) {
      ++windows[start][b.auction];
    }
  }
  for (const auto& [start, counts] : windows) close(counts);
}

// q7: highest bid. Tumbling windows of 10 s; the maximum price per window; the bids whose
// price equals a window's maximum and whose dateTime is within [end - 10 s, end] (SQL BETWEEN,
// both ends included, so a bid at exactly `end` counts too): (auction, price, bidder, dateTime,
// extra).
void Q7(const Generator& g, int64_t events, Emit emit) {
  struct Row {
    int64_t auction, price, bidder, date_time;
    std::string extra;
  };
  struct Window {
    int64_t max = -1;
    std::vector<Row> at_max;    // this window's bids at its maximum so far
    std::vector<Row> at_start;  // bids at exactly its start (= the previous window's end)
  };
  std::map<int64_t, Window> windows;  // by start
  Record row(5);
  auto out = [&](const Row& r) {
    row.SetInt(0, r.auction);
    row.SetInt(1, r.price);
    row.SetInt(2, r.bidder);
    row.SetInt(3, r.date_time);
    row.SetString(4, r.extra);
    emit(row);
  };
  auto close = [&](int64_t start, const Window& w) {
    for (const Row& r : w.at_max) out(r);
    auto next = windows.find(start + kTenSeconds);
    if (next == windows.end()) return;
    for (const Row& r : next->second.at_start) {
      if (r.price == w.max) out(r);
    }
  };
  Bid b;
  for (int64_t id = 0; id < events; ++id) {
    if (KindOf(id) != EventKind::kBid) continue;
    g.MakeBid(id, kBidAuction | kBidPrice | kBidBidder | kBidDateTime | kBidExtra, &b);
    const int64_t ts = b.date_time;
    while (!windows.empty() && windows.begin()->first + kTenSeconds < ts) {
      close(windows.begin()->first, windows.begin()->second);
      windows.erase(windows.begin());
    }
    Window& w = windows[ts - ts % kTenSeconds];
    if (b.price > w.max) {
      w.max = b.price;
      w.at_max.clear();
    }
    if (b.price == w.max) w.at_max.push_back(Row{b.auction, b.price, b.bidder, ts, b.extra});
    if (ts % kTenSeconds == 0) w.at_start.push_back(Row{b.auction, b.price, b.bidder, ts, b.extra});
  }
  while (!windows.empty()) {
    close(windows.begin()->first, windows.begin()->second);
    windows.erase(windows.begin());
  }
}

// q8: monitor new users. Tumbling windows of 10 s; the people who registered and opened an
// auction (as seller) in the same window: (id, name, window start).
void Q8(const Generator& g, int64_t events, Emit emit) {
  struct Window {
    absl::flat_hash_map<int64_t, std::string> people;
    absl::flat_hash_set<int64_t> sellers;
  };
  std::map<int64_t, Window> windows;
  Record row(3);
  auto close = [&](int64_t start, const Window& w) {
    for (const auto& [id, name] : w.people) {
      if (!w.sellers.contains(id)) continue;
      row.SetInt(0, id);
      row.SetString(1, name);
      row.SetInt(2, start);
      emit(row);
    }
  };
  Person p;
  Auction a;
  for (int64_t id = 0; id < events; ++id) {
    const EventKind kind = KindOf(id);
    if (kind == EventKind::kBid) continue;
    int64_t ts;
    if (kind == EventKind::kPerson) {
      g.MakePerson(id, kPersonId | kPersonName | kPersonDateTime, &p);
      ts = p.date_time;
    } else {
      g.MakeAuction(id, kAuctionSeller | kAuctionDateTime, &a);
      ts = a.date_time;
    }
    while (!windows.empty() && windows.begin()->first + kTenSeconds <= ts) {
      close(windows.begin()->first, windows.begin()->second);
      windows.erase(windows.begin());
    }
    Window& w = windows[ts - ts % kTenSeconds];
    if (kind == EventKind::kPerson) {
      w.people.emplace(p.id, p.name);
    } else {
      w.sellers.insert(a.seller);
    }
  }
  for (const auto& [start, w] : windows) close(start, w);
}

// q11: user sessions. Session windows per bidder with a 10 s gap (a bid joins the session if
// its dateTime <= the session's last + 10 s, as Flink merges windows [ts, ts + gap) that touch):
// (bidder, bid_count, starttime, endtime = last bid + 10 s).
void Q11(const Generator& g, int64_t events, Emit emit) {
  struct Session {
    int64_t start, last, count;
  };
  absl::flat_hash_map<int64_t, Session> sessions;
  Record row(4);
  auto out = [&](int64_t bidder, const Session& s) {
    row.SetInt(0, bidder);
    row.SetInt(1, s.count);
    row.SetInt(2, s.start);
    row.SetInt(3, s.last + kTenSeconds);
    emit(row);
  };
  Bid b;
  for (int64_t id = 0; id < events; ++id) {
    if (KindOf(id) != EventKind::kBid) continue;
    g.MakeBid(id, kBidBidder | kBidDateTime, &b);
    auto [it, inserted] = sessions.try_emplace(b.bidder, Session{b.date_time, b.date_time, 1});
    if (inserted) continue;
    Session& s = it->second;
    if (b.date_time <= s.last + kTenSeconds) {
      s.last = b.date_time;
      ++s.count;
    } else {
      out(b.bidder, s);
      s = Session{b.date_time, b.date_time, 1};
    }
  }
  for (const auto& [bidder, s] : sessions) out(bidder, s);
}

// q14: the bids with 0.908 * price (a double) in (1,000,000, 50,000,000), that price, the
// class of their dateTime's hour of day (UTC: 8..18 'dayTime', 0..6 and 20..23 'nightTime', 7
// and 19 'otherTime') and the number of 'c' in their padding: (auction, bidder, price,
// bidTimeType, dateTime, extra, c_counts).
void Q14(const Generator& g, int64_t events, Emit emit) {
  constexpr int64_t kHourMs = 3'600'000;
  Bid b;
  Record row(7);
  for (int64_t id = 0; id < events; ++id) {
    if (KindOf(id) != EventKind::kBid) continue;
    g.MakeBid(id, kBidAuction | kBidBidder | kBidPrice | kBidDateTime | kBidExtra, &b, &row[5].s);
    const double euros = static_cast<double>(b.price) * 0.908;
    if (!(euros > 1'000'000 && euros < 50'000'000)) continue;
    const int64_t hour = b.date_time / kHourMs % 24;  // dateTime is after the epoch
    row.SetInt(0, b.auction);
    row.SetInt(1, b.bidder);
    row.SetDouble(2, euros);
    row.SetString(3, hour >= 8 && hour <= 18  ? "dayTime"
                     : hour <= 6 || hour >= 20 ? "nightTime"
                                               : "otherTime");
    row.SetInt(4, b.date_time);
    int64_t cs = 0;
    for (char c : row[5].s) cs += c == 'c';
    row.SetInt(6, cs);
    emit(row);
  }
}

// REGEXP_EXTRACT(url, '(&|^)channel_id=([^&]*)', 2): the value of the first `channel_id`
// parameter (at the start of `url` or after a '&') up to the next '&'; false if there is none.
bool ChannelIdOf(absl::string_view url, absl::string_view* value) {
  constexpr absl::string_view kParam = "channel_id=";
  size_t start;
  if (absl::StartsWith(url, kParam)) {
    start = kParam.size();
  } else {
    const size_t at = url.find(absl::StrCat("&", kParam));
    if (at == absl::string_view::npos) return false;
    start = at + 1 + kParam.size();
  }
  const size_t end = url.find('&', start);
  *value = url.substr(start, end == absl::string_view::npos ? end : end - start);
  return true;
}

// q20: every bid on an auction of category 10 joined with that auction (an unbounded inner
// join on bid auction = auction id; a bid may come before its auction, which has an id at most
// 10 ahead): (auction, bidder, price, channel, url, bid_dateTime, bid_extra, itemName,
// description, initialBid, reserve, auction_dateTime, expires, seller, category,
// auction_extra).
void Q20(const Generator& g, int64_t events, Emit emit) {
  absl::flat_hash_map<int64_t, Auction> category10;  // by id
  int64_t max_auction = -1;                           // the highest auction id generated
  absl::flat_hash_map<int64_t, std::vector<Bid>> early;  // bids on auctions not generated yet
  Record row(16);
  auto out = [&](const Bid& b, const Auction& a) {
    row.SetInt(0, b.auction);
    row.SetInt(1, b.bidder);
    row.SetInt(2, b.price);
    row.SetString(3, b.channel);
    row.SetString(4, b.url);
    row.SetInt(5, b.date_time);
    row.SetString(6, b.extra);
    row.SetString(7, a.item_name);
    row.SetString(8, a.description);
    row.SetInt(9, a.initial_bid);
    row.SetInt(10, a.reserve);
    row.SetInt(11, a.date_time);
    row.SetInt(12, a.expires);
    row.SetInt(13, a.seller);
    row.SetInt(14, a.category);
    row.SetString(15, a.extra);
    emit(row);
  };
  Auction a;
  Bid b;
  for (int64_t id = 0; id < events; ++id) {
    switch (KindOf(id)) {
      case EventKind::kPerson: break;
      case EventKind::kAuction: {
        g.MakeAuction(id, kAllFields, &a);
        max_auction = std::max(max_auction, a.id);
        auto it = early.find(a.id);
        if (a.category == 10) {
          const Auction& kept = category10[a.id] = a;
          if (it != early.end()) {
            for (const Bid& e : it->second) out(e, kept);
          }
        }
        if (it != early.end()) early.erase(it);
        break;
      }
      case EventKind::kBid: {
        g.MakeBid(id, kAllFields, &b);
        if (b.auction > max_auction) {
          early[b.auction].push_back(b);
          break;
        }
        auto it = category10.find(b.auction);
        if (it != category10.end()) out(b, it->second);
        break;
      }
    }
  }
}

// q21: bids with a channel id: '0'..'3' for the channels apple, google, facebook and baidu
// (any case), else the url's channel_id parameter; the bids with neither are dropped:
// (auction, bidder, price, channel, channel_id).
void Q21(const Generator& g, int64_t events, Emit emit) {
  constexpr absl::string_view kNamed[] = {"apple", "google", "facebook", "baidu"};
  constexpr absl::string_view kIds[] = {"0", "1", "2", "3"};
  Bid b;
  Record row(5);
  for (int64_t id = 0; id < events; ++id) {
    if (KindOf(id) != EventKind::kBid) continue;
    g.MakeBid(id, kBidAuction | kBidBidder | kBidPrice | kBidChannel | kBidUrl, &b);
    absl::string_view channel_id;
    bool found = false;
    for (int i = 0; i < 4 && !found; ++i) {
      if (absl::EqualsIgnoreCase(b.channel, kNamed[i])) {
        channel_id = kIds[i];
        found = true;
      }
    }
    if (!found && !ChannelIdOf(b.url, &channel_id)) continue;
    row.SetInt(0, b.auction);
    row.SetInt(1, b.bidder);
    row.SetInt(2, b.price);
    row.SetString(3, b.channel);
    row.SetString(4, channel_id);
    emit(row);
  }
}

// The n-th (from 0) piece of `s` cut at every `sep`; false if `s` has fewer pieces.
bool PieceOf(absl::string_view s, char sep, int n, absl::string_view* piece) {
  for (int i = 0; i < n; ++i) {
    const size_t at = s.find(sep);
    if (at == absl::string_view::npos) return false;
    s.remove_prefix(at + 1);
  }
  *piece = s.substr(0, s.find(sep));
  return true;
}

// q22: every bid with the 4th, 5th and 6th pieces of its url split at '/' (Flink's
// SPLIT_INDEX(url, '/', 3..5), null where the url has fewer pieces): (auction, bidder, price,
// channel, dir1, dir2, dir3).
void Q22(const Generator& g, int64_t events, Emit emit) {
  Bid b;
  Record row(7);
  for (int64_t id = 0; id < events; ++id) {
    if (KindOf(id) != EventKind::kBid) continue;
    g.MakeBid(id, kBidAuction | kBidBidder | kBidPrice | kBidChannel | kBidUrl, &b);
    row.SetInt(0, b.auction);
    row.SetInt(1, b.bidder);
    row.SetInt(2, b.price);
    row.SetString(3, b.channel);
    for (int dir = 0; dir < 3; ++dir) {
      absl::string_view piece;
      const bool found = PieceOf(b.url, '/', 3 + dir, &piece);
      row.SetNullTo(4 + dir, !found);
      if (found) row.SetString(4 + dir, piece);
    }
    emit(row);
  }
}

using LoopFn = void (*)(const Generator&, int64_t, Emit);

struct Entry {
  LoopQuery query;
  LoopFn fn;
};

const std::vector<Entry>& Entries() {
  static const auto* entries = [] {
    const FieldType i = FieldType::kInt64, d = FieldType::kDouble, s = FieldType::kString,
                    t = FieldType::kTimestamp;
    return new std::vector<Entry>{
        {{"q0", MakeSchema({{"auction", i}, {"bidder", i}, {"price", i}, {"dateTime", t}, {"extra", s}})}, &BidsWithPadding<false>},
        {{"q1", MakeSchema({{"auction", i}, {"bidder", i}, {"price", d}, {"dateTime", t}, {"extra", s}})}, &BidsWithPadding<true>},
        {{"q2", MakeSchema({{"auction", i}, {"price", i}})}, &Q2},
        {{"q3", MakeSchema({{"name", s}, {"city", s}, {"state", s}, {"id", i}})}, &Q3},
        {{"q4", MakeSchema({{"category", i}, {"avg", d}})}, &Q4},
        {{"q5", MakeSchema({{"auction", i}, {"num", i}})}, &Q5},
        {{"q7", MakeSchema({{"auction", i}, {"price", i}, {"bidder", i}, {"dateTime", t}, {"extra", s}})}, &Q7},
        {{"q8", MakeSchema({{"id", i}, {"name", s}, {"starttime", t}})}, &Q8},
        {{"q11", MakeSchema({{"bidder", i}, {"bid_count", i}, {"starttime", t}, {"endtime", t}})}, &Q11},
        {{"q14", MakeSchema({{"auction", i}, {"bidder", i}, {"price", d}, {"bidTimeType", s}, {"dateTime", t}, {"extra", s}, {"c_counts", i}})}, &Q14},
        {{"q20", MakeSchema({{"auction", i}, {"bidder", i}, {"price", i}, {"channel", s}, {"url", s}, {"bid_dateTime", t}, {"bid_extra", s},
                             {"itemName", s}, {"description", s}, {"initialBid", i}, {"reserve", i}, {"auction_dateTime", t},
                             {"expires", t}, {"seller", i}, {"category", i}, {"auction_extra", s}})}, &Q20},
        {{"q21", MakeSchema({{"auction", i}, {"bidder", i}, {"price", i}, {"channel", s}, {"channel_id", s, true}})}, &Q21},
        {{"q22", MakeSchema({{"auction", i}, {"bidder", i}, {"price", i}, {"channel", s}, {"dir1", s, true}, {"dir2", s, true}, {"dir3", s, true}})}, &Q22},
    };
  }();
  return *entries;
}

}  // namespace

const std::vector<LoopQuery>& LoopQueries() {
  static const auto* queries = [] {
    auto* v = new std::vector<LoopQuery>;
    for (const Entry& e : Entries()) v->push_back(e.query);
    return v;
  }();
  return *queries;
}

const LoopQuery* FindLoopQuery(absl::string_view name) {
  for (const LoopQuery& q : LoopQueries()) {
    if (q.name == name) return &q;
  }
  return nullptr;
}

absl::Status RunLoop(absl::string_view name, const Generator& generator, int64_t events, Emit emit) {
  for (const Entry& e : Entries()) {
    if (e.query.name == name) {
      e.fn(generator, events, emit);
      return absl::OkStatus();
    }
  }
  return absl::NotFoundError(absl::StrCat("no Nexmark loop for query '", name, "'"));
}

}  // namespace sluice::nexmark
