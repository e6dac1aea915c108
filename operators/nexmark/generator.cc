#include "operators/nexmark/generator.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"

namespace sluice::nexmark {
namespace {

constexpr int kMinStringLength = 3;
constexpr int64_t kPersonIdLead = 10;
constexpr int64_t kAuctionIdLead = 10;
constexpr int64_t kHotAuctionRatio = 100;
constexpr int64_t kHotBidderRatio = 100;
constexpr int64_t kHotSellerRatio = 100;
constexpr int kNumCategories = 5;

constexpr absl::string_view kUsStates[] = {"AZ", "CA", "ID", "OR", "WA", "WY"};
constexpr absl::string_view kUsCities[] = {"Phoenix", "Los Angeles", "San Francisco", "Boise",
                                           "Portland", "Bend", "Redmond", "Seattle", "Kent",
                                           "Cheyenne"};
constexpr absl::string_view kFirstNames[] = {"Peter", "Paul",  "Luke",  "John",   "Saul",  "Vicky",
                                             "Kate",  "Julie", "Sarah", "Deiter", "Walter"};
constexpr absl::string_view kLastNames[] = {"Shultz", "Abrams", "Spencer", "White", "Bartels",
                                            "Walton", "Smith",  "Jones",   "Noris"};
constexpr absl::string_view kHotChannelNames[] = {"Google", "Facebook", "Baidu", "Apple"};

template <typename T, size_t N>
constexpr int Size(const T (&)[N]) {
  return static_cast<int>(N);
}

// Beam's LongGenerator.nextLong: uniform in [0, n) for n below 2^31 - 1.
int64_t NextLong(JavaRandom& r, int64_t n) {
  if (n < 0x7fffffff) return r.NextInt(static_cast<int32_t>(n));
  return std::llabs(r.NextLong() % n);
}

// Beam's PriceGenerator.nextPrice: round(10^(6 d) * 100) cents, log-uniform over $1..$1M. The
// draw is always made; the value only when it is wanted. 10^x is computed as exp(x ln 10): a
// third of pow()'s cost here (9 against 26 ns), and after rounding to cents it agreed with
// pow(10, x) on all of 20M draws tried (their difference, a few ulps, decides a cent only when
// the price falls within ~1e-7 of a half cent).
int64_t NextPrice(JavaRandom& r, bool wanted) {
  const double d = r.NextDouble();
  if (!wanted) return 0;
  constexpr double kLn10 = 2.302585092994046;
  return static_cast<int64_t>(std::floor(std::exp(d * 6.0 * kLn10) * 100.0 + 0.5));
}

// Beam's StringsGenerator.nextString: 3 + nextInt(max - 3) characters, each `special` with
// probability 1/13 else a lowercase letter, then trimmed of spaces (Java's trim()). Writes it
// to `*out` when not null; returns its trimmed length either way.
int NextString(JavaRandom& r, int max_length, char special, std::string* out) {
  int len = kMinStringLength + r.NextInt(max_length - kMinStringLength);
  char buf[128];
  for (int i = 0; i < len; ++i) {
    buf[i] = r.NextInt(13) == 0 ? special : static_cast<char>('a' + r.NextInt(26));
  }
  int begin = 0, end = len;
  while (begin < end && buf[begin] <= ' ') ++begin;
  while (end > begin && buf[end - 1] <= ' ') --end;
  if (out != nullptr) out->assign(buf + begin, end - begin);
  return end - begin;
}

// Jumping ahead k steps of the LCG: state_k = (a[k] * state + c[k]) mod 2^48, so the draws of
// a padding string are computed independently of each other instead of in one serial chain.
struct LcgJumps {
  static constexpr int kMax = 128;
  uint64_t a[kMax + 1];
  uint64_t c[kMax + 1];
  LcgJumps() {
    a[0] = 1;
    c[0] = 0;
    for (int k = 0; k < kMax; ++k) {
      a[k + 1] = (a[k] * JavaRandom::kMultiplier) & JavaRandom::kMask;
      c[k + 1] = (c[k] * JavaRandom::kMultiplier + JavaRandom::kAddend) & JavaRandom::kMask;
    }
  }
};
const LcgJumps kJumps;

// Three characters of Beam's padding per value v in (-26^3, 26^3): 'a' + v % 26,
// 'a' + v / 26 % 26 and 'a' + v / 676 % 26 (Java's truncating division, so characters
// 'H'..'z'), padded to 4 bytes for one load and one store.
constexpr int32_t k26Pow3 = 26 * 26 * 26;
struct CharTriples {
  char triple[2 * k26Pow3 - 1][4];
  CharTriples() {
    for (int32_t v = -(k26Pow3 - 1); v < k26Pow3; ++v) {
      char* t = triple[v + k26Pow3 - 1];
      t[0] = static_cast<char>('a' + v % 26);
      t[1] = static_cast<char>('a' + v / 26 % 26);
      t[2] = static_cast<char>('a' + v / 676 % 26);
      t[3] = 0;
    }
  }
};
const CharTriples* const kCharTriples = new CharTriples;

// Beam's nextExactString: 6 characters per nextInt(), 'a' + rnd % 26 then rnd /= 26. Truncating
// divisions compose and keep the sign, so the 6 characters are the triples of rnd % 26^3 and
// rnd / 26^3 % 26^3: two independent lookups instead of a chain of six divisions. The draws
// themselves come from jumps ahead of one state, not a serial chain. The last group may write
// up to 7 bytes past `length`: the string is that much longer until the end.
void NextExactString(JavaRandom& r, int length, std::string* out) {
  out->resize(length + 8);
  char* p = out->data();
  const uint64_t s0 = r.state();
  uint64_t s = s0;
  int group = 0;
  for (int left = length; left > 0; left -= 6, p += 6) {
    ++group;
    if (group <= LcgJumps::kMax) {
      s = (kJumps.a[group] * s0 + kJumps.c[group]) & JavaRandom::kMask;
    } else {
      s = (s * JavaRandom::kMultiplier + JavaRandom::kAddend) & JavaRandom::kMask;
    }
    const int32_t rnd = static_cast<int32_t>(static_cast<int64_t>(s) >> 16);
    const int32_t high = rnd / k26Pow3;
    std::memcpy(p, kCharTriples->triple[rnd - high * k26Pow3 + k26Pow3 - 1], 4);
    std::memcpy(p + 3, kCharTriples->triple[high % k26Pow3 + k26Pow3 - 1], 4);
  }
  out->resize(length);
  r.set_state(s);
}

// Beam's nextExtra: padding so that current_size + its length averages `average_size`.
void NextExtra(JavaRandom& r, int current_size, int average_size, std::string* out) {
  if (current_size > average_size) {
    out->clear();
    return;
  }
  average_size -= current_size;
  const int delta = static_cast<int>(std::floor(average_size * 0.2 + 0.5));
  const int min_size = average_size - delta;
  const int size = min_size + (delta == 0 ? 0 : r.NextInt(2 * delta));
  NextExactString(r, size, out);
}

int64_t NextBase0PersonId(int64_t event_id, JavaRandom& r, const GeneratorConfig& c) {
  const int64_t num_people = LastBase0PersonId(event_id) + 1;
  const int64_t active = std::min<int64_t>(num_people, c.num_active_people);
  const int64_t n = NextLong(r, active + kPersonIdLead);
  return num_people - active + n;
}

int64_t NextBase0AuctionId(int64_t event_id, JavaRandom& r, const GeneratorConfig& c) {
  const int64_t max_auction = LastBase0AuctionId(event_id);
  const int64_t min_auction = std::max<int64_t>(max_auction - c.num_in_flight_auctions, 0);
  return min_auction + NextLong(r, max_auction - min_auction + 1 + kAuctionIdLead);
}

// "https://www.nexmark.com/xxx/xxx/xxx/item.htm?query=1" (nexmark-flink's getBaseUrl), from `r`.
std::string BaseUrl(JavaRandom& r) {
  std::string a, b, c;
  NextString(r, 5, '_', &a);
  NextString(r, 5, '_', &b);
  NextString(r, 5, '_', &c);
  return absl::StrCat("https://www.nexmark.com/", a, "/", b, "/", c, "/item.htm?query=1");
}

int32_t ReverseBits(int32_t v) {
  uint32_t x = static_cast<uint32_t>(v), y = 0;
  for (int i = 0; i < 32; ++i) {
    y = (y << 1) | (x & 1);
    x >>= 1;
  }
  return static_cast<int32_t>(y);
}

// Java's Math.abs(int): Integer.MIN_VALUE (channel 1 reversed) stays itself, where std::abs
// would be undefined.
int32_t JavaAbs(int32_t v) {
  return v == std::numeric_limits<int32_t>::min() ? v : std::abs(v);
}

}  // namespace

std::string ExactStringForTest(JavaRandom& r, int length) {
  std::string s;
  NextExactString(r, length, &s);
  return s;
}

int64_t LastBase0PersonId(int64_t event_id) {
  const int64_t epoch = event_id / kTotalProportion;
  int64_t offset = event_id % kTotalProportion;
  if (offset >= kPersonProportion) offset = kPersonProportion - 1;
  return epoch * kPersonProportion + offset;
}

int64_t LastBase0AuctionId(int64_t event_id) {
  int64_t epoch = event_id / kTotalProportion;
  int64_t offset = event_id % kTotalProportion;
  if (offset < kPersonProportion) {
    --epoch;
    offset = kAuctionProportion - 1;
  } else if (offset >= kPersonProportion + kAuctionProportion) {
    offset = kAuctionProportion - 1;
  } else {
    offset -= kPersonProportion;
  }
  return epoch * kAuctionProportion + offset;
}

Generator::Generator(GeneratorConfig config)
    : config_(config), inter_event_delay_us_(1e6 / config.event_rate) {
  channel_names_.reserve(kHotChannels + kChannels);
  channel_urls_.reserve(kHotChannels + kChannels);
  // nexmark-flink draws these URLs from unseeded Randoms; ours are seeded by the channel's
  // index (hot channels by -1 - i), so every process has the same table.
  for (int i = 0; i < kHotChannels; ++i) {
    JavaRandom r(-1 - i);
    channel_names_.emplace_back(kHotChannelNames[i]);
    channel_urls_.push_back(BaseUrl(r));
  }
  for (int c = 0; c < kChannels; ++c) {
    JavaRandom r(c);
    channel_names_.push_back(absl::StrCat("channel-", c));
    std::string url = BaseUrl(r);
    if (r.NextInt(10) > 0) absl::StrAppend(&url, "&channel_id=", JavaAbs(ReverseBits(c)));
    channel_urls_.push_back(std::move(url));
  }
}

void Generator::MakePerson(int64_t event_id, uint32_t fields, Person* out, std::string* extra_out) const {
  JavaRandom r(event_id);
  out->id = LastBase0PersonId(event_id) + kFirstPersonId;
  out->date_time = TimestampOf(event_id);
  const bool extra = (fields & kPersonExtra) != 0;
  const absl::string_view first = kFirstNames[r.NextInt(Size(kFirstNames))];
  const absl::string_view last = kLastNames[r.NextInt(Size(kLastNames))];
  if (fields & kPersonName) {
    out->name.clear();
    absl::StrAppend(&out->name, first, " ", last);
  }
  // Email: nextString(7) "@" nextString(5) ".com".
  std::string* email = (fields & kPersonEmail) ? &out->email_address : nullptr;
  std::string host;
  const int user_len = NextString(r, 7, ' ', email);
  const int host_len = NextString(r, 5, ' ', email != nullptr ? &host : nullptr);
  if (email != nullptr) absl::StrAppend(email, "@", host, ".com");
  if (fields & kPersonCreditCard) out->credit_card.clear();
  for (int i = 0; i < 4; ++i) {
    const int32_t group = r.NextInt(10000);
    if (fields & kPersonCreditCard) {
      char buf[6];
      int n = 0;
      if (i > 0) buf[n++] = ' ';
      buf[n++] = static_cast<char>('0' + group / 1000);
      buf[n++] = static_cast<char>('0' + group / 100 % 10);
      buf[n++] = static_cast<char>('0' + group / 10 % 10);
      buf[n++] = static_cast<char>('0' + group % 10);
      out->credit_card.append(buf, n);
    }
  }
  out->city = kUsCities[r.NextInt(Size(kUsCities))];
  out->state = kUsStates[r.NextInt(Size(kUsStates))];
  if (!extra) return;
  const int name_len = static_cast<int>(first.size() + 1 + last.size());
  const int email_len = user_len + 1 + host_len + 4;
  const int current = 8 + name_len + email_len + 19 + static_cast<int>(out->city.size()) +
                      static_cast<int>(out->state.size());
  NextExtra(r, current, config_.avg_person_byte_size, extra_out != nullptr ? extra_out : &out->extra);
}

void Generator::MakeAuction(int64_t event_id, uint32_t fields, Auction* out, std::string* extra_out) const {
  JavaRandom r(event_id);
  out->id = LastBase0AuctionId(event_id) + kFirstAuctionId;
  const int64_t ts = TimestampOf(event_id);
  out->date_time = ts;
  int64_t seller;
  if (r.NextInt(config_.hot_sellers_ratio) > 0) {
    seller = (LastBase0PersonId(event_id) / kHotSellerRatio) * kHotSellerRatio;
  } else {
    seller = NextBase0PersonId(event_id, r, config_);
  }
  out->seller = seller + kFirstPersonId;
  out->category = kFirstCategoryId + r.NextInt(kNumCategories);
  const bool reserve = (fields & kAuctionReserve) != 0;
  out->initial_bid = NextPrice(r, (fields & kAuctionInitialBid) != 0 || reserve);
  // Auction length: on average the time until num_in_flight_auctions more auctions exist.
  const int64_t events_for_auctions =
      (static_cast<int64_t>(config_.num_in_flight_auctions) * kTotalProportion) / kAuctionProportion;
  const int64_t horizon_ms = TimestampOf(event_id + events_for_auctions) - ts;
  out->expires = ts + 1 + NextLong(r, std::max<int64_t>(horizon_ms * 2, 1));
  const bool extra = (fields & kAuctionExtra) != 0;
  const int name_len = NextString(r, 20, ' ', (fields & kAuctionItemName) ? &out->item_name : nullptr);
  const int desc_len = NextString(r, 100, ' ', (fields & kAuctionDescription) ? &out->description : nullptr);
  const int64_t second_price = NextPrice(r, reserve);
  if (reserve) out->reserve = out->initial_bid + second_price;
  if (!extra) return;
  NextExtra(r, 8 + name_len + desc_len + 8 + 8 + 8 + 8 + 8, config_.avg_auction_byte_size,
            extra_out != nullptr ? extra_out : &out->extra);
}

void Generator::MakeBid(int64_t event_id, uint32_t fields, Bid* out, std::string* extra_out) const {
  JavaRandom r(event_id);
  if (r.NextInt(config_.hot_auction_ratio) > 0) {
    out->auction = (LastBase0AuctionId(event_id) / kHotAuctionRatio) * kHotAuctionRatio;
  } else {
    out->auction = NextBase0AuctionId(event_id, r, config_);
  }
  out->auction += kFirstAuctionId;
  if (r.NextInt(config_.hot_bidders_ratio) > 0) {
    out->bidder = (LastBase0PersonId(event_id) / kHotBidderRatio) * kHotBidderRatio + 1;
  } else {
    out->bidder = NextBase0PersonId(event_id, r, config_);
  }
  out->bidder += kFirstPersonId;
  out->date_time = TimestampOf(event_id);
  const uint32_t after_price = kBidChannel | kBidUrl | kBidExtra;
  if ((fields & (kBidPrice | after_price)) == 0) return;
  out->price = NextPrice(r, (fields & kBidPrice) != 0);
  if ((fields & after_price) == 0) return;
  int channel;
  if (r.NextInt(2) > 0) {
    channel = r.NextInt(kHotChannels);
  } else {
    channel = kHotChannels + r.NextInt(kChannels);
  }
  out->channel = channel_names_[channel];
  out->url = channel_urls_[channel];
  if (fields & kBidExtra) {
    NextExtra(r, 8 + 8 + 8 + 8, config_.avg_bid_byte_size, extra_out != nullptr ? extra_out : &out->extra);
  }
}

}  // namespace sluice::nexmark
