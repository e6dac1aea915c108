#include "operators/nexmark/generator.h"

#include <set>
#include <vector>

#include "gtest/gtest.h"

namespace sluice::nexmark {
namespace {

// Expected values were computed with java.util.Random itself (OpenJDK 17) and a transcription
// of Beam's generator formulas (NEXMARK.md), independently of this code.

TEST(JavaRandomTest, MatchesJavaUtilRandom) {
  // new Random(42): nextInt() = -1170105035, nextInt(10) = 3 (second call), nextLong() and
  // nextDouble() from a fresh Random(42).
  JavaRandom r(42);
  EXPECT_EQ(r.NextInt(), -1170105035);
  EXPECT_EQ(r.NextInt(10), 3);
  JavaRandom l(42);
  EXPECT_EQ(l.NextLong(), -5025562857975149833LL);
  JavaRandom d(42);
  EXPECT_DOUBLE_EQ(d.NextDouble(), 0.7275636800328681);
}

// Beam's nextExactString as written in Java, for the padding's fast path to be checked
// against: one nextInt() per 6 characters, 'a' + rnd % 26, rnd /= 26.
std::string ReferenceExactString(JavaRandom& r, int length) {
  std::string s;
  int32_t rnd = 0;
  int n = 0;
  while (length-- > 0) {
    if (n == 0) {
      rnd = r.NextInt();
      n = 6;
    }
    s.push_back(static_cast<char>('a' + rnd % 26));
    rnd /= 26;
    --n;
  }
  return s;
}

TEST(GeneratorTest, PaddingEqualsBeamsCharacterByCharacterLoop) {
  for (int64_t seed : {0LL, 1LL, 42LL, -7LL, 123456789LL, 0x7fffffffffffLL}) {
    for (int length : {0, 1, 5, 6, 7, 68, 480, 1000}) {
      JavaRandom fast(seed), slow(seed);
      EXPECT_EQ(ExactStringForTest(fast, length), ReferenceExactString(slow, length)) << seed << " " << length;
      EXPECT_EQ(fast.NextInt(), slow.NextInt()) << "the state after " << seed << " " << length;
    }
  }
}

TEST(GeneratorTest, KindsByIdModulo50) {
  EXPECT_EQ(KindOf(0), EventKind::kPerson);
  EXPECT_EQ(KindOf(50), EventKind::kPerson);
  for (int64_t id : {1, 2, 3, 51, 53}) EXPECT_EQ(KindOf(id), EventKind::kAuction) << id;
  for (int64_t id : {4, 5, 49, 54, 99}) EXPECT_EQ(KindOf(id), EventKind::kBid) << id;
  int counts[3] = {0, 0, 0};
  for (int64_t id = 0; id < 5000; ++id) ++counts[static_cast<int>(KindOf(id))];
  EXPECT_EQ(counts[0], 100);
  EXPECT_EQ(counts[1], 300);
  EXPECT_EQ(counts[2], 4600);
}

TEST(GeneratorTest, LastIds) {
  EXPECT_EQ(LastBase0PersonId(0), 0);
  EXPECT_EQ(LastBase0PersonId(49), 0);
  EXPECT_EQ(LastBase0PersonId(50), 1);
  EXPECT_EQ(LastBase0AuctionId(0), -1);  // before the first auction
  EXPECT_EQ(LastBase0AuctionId(1), 0);
  EXPECT_EQ(LastBase0AuctionId(3), 2);
  EXPECT_EQ(LastBase0AuctionId(4), 2);
  EXPECT_EQ(LastBase0AuctionId(50), 2);
  EXPECT_EQ(LastBase0AuctionId(51), 3);
}

TEST(GeneratorTest, Timestamps) {
  Generator g;  // 10M events/s: 10,000 events per ms
  EXPECT_EQ(g.TimestampOf(0), 1436918400000);
  EXPECT_EQ(g.TimestampOf(9999), 1436918400000);
  EXPECT_EQ(g.TimestampOf(10000), 1436918400001);
  EXPECT_EQ(g.TimestampOf(123456789), 1436918412345);
  GeneratorConfig slow;
  slow.event_rate = 1000;  // one event per ms
  EXPECT_EQ(Generator(slow).TimestampOf(1234), 1436918400000 + 1234);
}

TEST(GeneratorTest, PersonsMatchJava) {
  Generator g;
  Person p;
  g.MakePerson(0, kAllFields, &p);
  EXPECT_EQ(p.id, 1000);
  EXPECT_EQ(p.name, "Peter Jones");
  EXPECT_EQ(p.email_address, "nhd@xcat.com");
  EXPECT_EQ(p.credit_card, "7241 7320 9143 4888");
  EXPECT_EQ(p.city, "Portland");
  EXPECT_EQ(p.state, "WY");
  EXPECT_EQ(p.date_time, 1436918400000);
  EXPECT_EQ(p.extra,
            "WN_HS_bnpkkiwhwana_L^`KZjdgsid`K]MLU[aaOH`ztxbulvlxtkn_ZZ^T\\mqgdjzvlkymsmfrhkfVYSXK_OY["
            "aVYVKa\\X^]RO]OYguwiduWJNQLLaMLHOTaHY_J[YKWaUOSJN_VHWXZ]`SgbnjqeVVQ\\[[");
  g.MakePerson(50, kAllFields, &p);
  EXPECT_EQ(p.id, 1001);
  EXPECT_EQ(p.name, "Sarah Smith");
  EXPECT_EQ(p.email_address, "f  y@yumv.com");  // inner spaces stay, trim() cuts only the ends
  EXPECT_EQ(p.credit_card, "0892 2755 1923 0591");
  EXPECT_EQ(p.city, "Los Angeles");
  EXPECT_EQ(p.state, "ID");
  g.MakePerson(12345, kAllFields, &p);
  EXPECT_EQ(p.id, 1246);
  EXPECT_EQ(p.name, "Kate Bartels");
  EXPECT_EQ(p.email_address, "nnpbik@rp.com");
  EXPECT_EQ(p.date_time, 1436918400001);
}

TEST(GeneratorTest, AuctionsMatchJava) {
  Generator g;
  Auction a;
  g.MakeAuction(1, kAllFields, &a);
  EXPECT_EQ(a.id, 1000);
  EXPECT_EQ(a.seller, 1000);
  EXPECT_EQ(a.category, 13);
  EXPECT_EQ(a.initial_bid, 28873);
  EXPECT_EQ(a.expires, 1436918400001);
  EXPECT_EQ(a.item_name, "wkx mgee");
  EXPECT_EQ(a.description, "eszpqxtdxrvwmmywkmogoahf");
  EXPECT_EQ(a.reserve, 29448);
  EXPECT_EQ(a.extra.substr(0, 20), "zcurskufssowmihzpmZH");
  g.MakeAuction(3, kAllFields, &a);
  EXPECT_EQ(a.id, 1002);
  EXPECT_EQ(a.category, 10);
  EXPECT_EQ(a.initial_bid, 267);
  EXPECT_EQ(a.reserve, 422398);
  EXPECT_EQ(a.item_name, "gxycmhtobprpd");
  g.MakeAuction(1002, kAllFields, &a);
  EXPECT_EQ(a.id, 1061);
  EXPECT_EQ(a.category, 12);
  EXPECT_EQ(a.initial_bid, 2597);
  EXPECT_EQ(a.reserve, 2842);
  EXPECT_EQ(a.item_name, "tlow qfmkdukkutn");
  EXPECT_EQ(a.extra.size(), 375u);
}

TEST(GeneratorTest, BidsMatchJava) {
  Generator g;
  Bid b;
  g.MakeBid(4, kAllFields, &b);
  EXPECT_EQ(b.auction, 1000);
  EXPECT_EQ(b.bidder, 1001);
  EXPECT_EQ(b.price, 32530001);
  EXPECT_EQ(b.channel, "Google");
  EXPECT_EQ(b.date_time, 1436918400000);
  EXPECT_EQ(b.extra, "sbolvyqwgticfdrwdyiyofziYMU\\Z`UaTQO][NX\\RM]WPYTOuwogvszlx");
  g.MakeBid(49, kAllFields, &b);
  EXPECT_EQ(b.price, 545);
  EXPECT_EQ(b.channel, "channel-4763");
  g.MakeBid(1000004, kAllFields, &b);
  EXPECT_EQ(b.auction, 60927);
  EXPECT_EQ(b.bidder, 21001);
  EXPECT_EQ(b.price, 1291);
  EXPECT_EQ(b.channel, "channel-4910");
  EXPECT_EQ(b.date_time, 1436918400100);
  g.MakeBid(123456789, kAllFields, &b);
  EXPECT_EQ(b.auction, 7408400);
  EXPECT_EQ(b.bidder, 2470101);
  EXPECT_EQ(b.price, 55171);
  EXPECT_EQ(b.channel, "channel-7554");
  EXPECT_EQ(b.date_time, 1436918412345);
  EXPECT_EQ(b.extra, "bnbbvx`IJaTUlijwuzqreryzpurngvxbqwvpwzlgufnwkaduqjacxqdnbbmplkdyoqkljrylJ`[");
  // Channels and URLs come from a fixed table: the same in every generator.
  Generator other;
  Bid c;
  other.MakeBid(123456789, kAllFields, &c);
  EXPECT_EQ(c.url, b.url);
  EXPECT_EQ(b.url.substr(0, 24), "https://www.nexmark.com/");
}

// Event k made alone equals event k made in a sequential run (no state between events), and a
// projection changes no field it keeps.
TEST(GeneratorTest, DeterministicByEventIdAndProjection) {
  Generator g;
  std::vector<Bid> seq;
  for (int64_t id = 0; id < 2000; ++id) {
    if (KindOf(id) != EventKind::kBid) continue;
    Bid b;
    g.MakeBid(id, kAllFields, &b);
    seq.push_back(b);
  }
  size_t i = 0;
  Generator fresh;
  for (int64_t id = 1999; id >= 0; --id) {  // backwards: no event depends on an earlier one
    if (KindOf(id) != EventKind::kBid) continue;
    Bid alone, narrow;
    fresh.MakeBid(id, kAllFields, &alone);
    g.MakeBid(id, kBidAuction | kBidPrice, &narrow);
    const Bid& s = seq[seq.size() - 1 - i++];
    EXPECT_EQ(alone.auction, s.auction);
    EXPECT_EQ(alone.bidder, s.bidder);
    EXPECT_EQ(alone.price, s.price);
    EXPECT_EQ(alone.channel, s.channel);
    EXPECT_EQ(alone.url, s.url);
    EXPECT_EQ(alone.date_time, s.date_time);
    EXPECT_EQ(alone.extra, s.extra);
    EXPECT_EQ(narrow.auction, s.auction);
    EXPECT_EQ(narrow.price, s.price);
    EXPECT_TRUE(narrow.extra.empty());
  }
  Person p1, p2;
  g.MakePerson(100, kAllFields, &p1);
  g.MakePerson(100, kPersonId | kPersonState | kPersonExtra, &p2);
  EXPECT_EQ(p1.state, p2.state);
  EXPECT_EQ(p1.extra, p2.extra);
  EXPECT_TRUE(p2.name.empty());
  Auction a1, a2;
  g.MakeAuction(102, kAllFields, &a1);
  g.MakeAuction(102, kAuctionReserve | kAuctionExtra, &a2);
  EXPECT_EQ(a1.reserve, a2.reserve);
  EXPECT_EQ(a1.extra, a2.extra);
  EXPECT_EQ(a1.expires, a2.expires);
}

// Ids stay in their ranges: persons and auctions are numbered densely from 1000 in id order;
// bids reference at most PERSON_ID_LEAD / AUCTION_ID_LEAD ids ahead of the last generated.
TEST(GeneratorTest, IdRanges) {
  Generator g;
  Person p;
  Auction a;
  Bid b;
  int64_t next_person = 1000, next_auction = 1000;
  for (int64_t id = 0; id < 200'000; ++id) {
    switch (KindOf(id)) {
      case EventKind::kPerson:
        g.MakePerson(id, kPersonId, &p);
        ASSERT_EQ(p.id, next_person++);
        break;
      case EventKind::kAuction:
        g.MakeAuction(id, kAllFields, &a);
        ASSERT_EQ(a.id, next_auction++);
        ASSERT_GE(a.category, 10);
        ASSERT_LE(a.category, 14);
        ASSERT_GE(a.seller, 1000);
        ASSERT_LT(a.seller, next_person + 10);
        ASSERT_GT(a.expires, a.date_time);
        ASSERT_GE(a.initial_bid, 100);
        ASSERT_LE(a.initial_bid, 100'000'000);
        ASSERT_GE(a.reserve, a.initial_bid);
        break;
      case EventKind::kBid:
        g.MakeBid(id, kAllFields, &b);
        ASSERT_GE(b.auction, 1000);
        ASSERT_LT(b.auction, next_auction + 10);
        ASSERT_GE(b.bidder, 1000);
        ASSERT_LT(b.bidder, next_person + 10);
        ASSERT_GE(b.price, 100);
        ASSERT_LE(b.price, 100'000'000);
        ASSERT_GE(b.extra.size(), 54u);
        ASSERT_LE(b.extra.size(), 81u);
        break;
    }
  }
}

}  // namespace
}  // namespace sluice::nexmark
