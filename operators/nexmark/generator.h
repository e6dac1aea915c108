#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace sluice::nexmark {

// The Nexmark event generator (an online auction: people register, open auctions and bid),
// deterministic by event id as Apache Beam's: every event is generated from its own
// java.util.Random seeded with its id, so any event can be regenerated alone, a source's
// position is an event number, and a replay yields the same events bit for bit.
// /work/shared/NEXMARK.md (copied in operators/nexmark/README.md) gives the rules.
//
// Differences from Beam: the event id is the event number (firstEventId 0, no out-of-order
// groups); bids carry nexmark-flink's `channel` and `url`, whose strings come from a fixed
// table made once per Generator (deterministic, unlike nexmark-flink's unseeded ones); the
// bidder gets FIRST_PERSON_ID added once (nexmark-flink adds it twice).
//
// Cost: a bid is ~10 LCG steps, one exp() (for the price) and, when asked for, its padding
// `extra` (~68 characters). Callers ask only for the fields they read (a field mask): the
// random draws are always made in the same order, but values nobody reads are not computed
// and strings nobody reads are not written.
//
// Thread-compatible: a Generator is immutable after construction (share it or copy it); the
// event structs are the caller's, reused across calls so strings keep their capacity.

// java.util.Random's 48-bit linear congruential generator, bit for bit.
class JavaRandom {
 public:
  explicit JavaRandom(int64_t seed) : seed_((static_cast<uint64_t>(seed) ^ kMultiplier) & kMask) {}

  int32_t Next(int bits) {
    seed_ = (seed_ * kMultiplier + kAddend) & kMask;
    return static_cast<int32_t>(static_cast<int64_t>(seed_) >> (48 - bits));
  }
  int32_t NextInt() { return Next(32); }
  // Uniform in [0, bound). REQUIRES: bound > 0.
  int32_t NextInt(int32_t bound) {
    if ((bound & -bound) == bound) {
      return static_cast<int32_t>((static_cast<int64_t>(bound) * Next(31)) >> 31);
    }
    int32_t bits, val;
    do {
      bits = Next(31);
      val = bits % bound;
      // Java's int overflow test: bits - val + (bound - 1) < 0 as a 32-bit int.
    } while (static_cast<int32_t>(static_cast<uint32_t>(bits) - static_cast<uint32_t>(val) +
                                  static_cast<uint32_t>(bound - 1)) < 0);
    return val;
  }
  int64_t NextLong() {
    const int64_t hi = Next(32);
    const int64_t lo = Next(32);
    return static_cast<int64_t>(static_cast<uint64_t>(hi) << 32) + lo;
  }
  // The raw 48-bit state, to jump ahead several steps at once (see generator.cc).
  uint64_t state() const { return seed_; }
  void set_state(uint64_t state) { seed_ = state; }
  static constexpr uint64_t kMultiplier = 0x5DEECE66DULL;
  static constexpr uint64_t kAddend = 0xB;
  static constexpr uint64_t kMask = (1ULL << 48) - 1;

  double NextDouble() {
    const int64_t hi = Next(26);
    const int64_t lo = Next(27);
    return static_cast<double>((hi << 27) + lo) * 0x1.0p-53;
  }

 private:
  uint64_t seed_;
};

enum class EventKind : uint8_t { kPerson = 0, kAuction = 1, kBid = 2 };

// Generator settings (Beam's NexmarkConfiguration defaults).
struct GeneratorConfig {
  // Event time of event 0 (ms since the epoch): 2015-07-15T00:00:00Z.
  int64_t base_time_ms = 1436918400000;
  // Events per second of event time: event n has time base + n * 1e6 / event_rate µs.
  double event_rate = 10'000'000;
  int num_active_people = 1000;
  int num_in_flight_auctions = 100;
  int hot_auction_ratio = 2;
  int hot_sellers_ratio = 4;
  int hot_bidders_ratio = 4;
  int avg_person_byte_size = 200;
  int avg_auction_byte_size = 500;
  int avg_bid_byte_size = 100;
};

// Proportions out of 50: id % 50 == 0 person, 1..3 auction, 4..49 bid.
inline constexpr int64_t kPersonProportion = 1;
inline constexpr int64_t kAuctionProportion = 3;
inline constexpr int64_t kTotalProportion = 50;
inline constexpr int64_t kFirstPersonId = 1000;
inline constexpr int64_t kFirstAuctionId = 1000;
inline constexpr int64_t kFirstCategoryId = 10;

inline EventKind KindOf(int64_t event_id) {
  const int64_t rem = event_id % kTotalProportion;
  return rem < kPersonProportion ? EventKind::kPerson
         : rem < kPersonProportion + kAuctionProportion ? EventKind::kAuction
                                                         : EventKind::kBid;
}
// The last person / auction id generated at or before event `event_id` (base 0).
int64_t LastBase0PersonId(int64_t event_id);
int64_t LastBase0AuctionId(int64_t event_id);

// Field masks: which fields a caller reads (bit i = field i in the order below, which is also
// the order of the source's output schema).
enum PersonField : uint32_t {
  kPersonId = 1 << 0, kPersonName = 1 << 1, kPersonEmail = 1 << 2, kPersonCreditCard = 1 << 3,
  kPersonCity = 1 << 4, kPersonState = 1 << 5, kPersonDateTime = 1 << 6, kPersonExtra = 1 << 7,
};
enum AuctionField : uint32_t {
  kAuctionId = 1 << 0, kAuctionItemName = 1 << 1, kAuctionDescription = 1 << 2,
  kAuctionInitialBid = 1 << 3, kAuctionReserve = 1 << 4, kAuctionDateTime = 1 << 5,
  kAuctionExpires = 1 << 6, kAuctionSeller = 1 << 7, kAuctionCategory = 1 << 8,
  kAuctionExtra = 1 << 9,
};
enum BidField : uint32_t {
  kBidAuction = 1 << 0, kBidBidder = 1 << 1, kBidPrice = 1 << 2, kBidChannel = 1 << 3,
  kBidUrl = 1 << 4, kBidDateTime = 1 << 5, kBidExtra = 1 << 6,
};
inline constexpr uint32_t kAllFields = ~0u;

// Events. Fields not asked for keep whatever they held.
struct Person {
  int64_t id = 0;
  std::string name;
  std::string email_address;
  std::string credit_card;
  absl::string_view city;
  absl::string_view state;
  int64_t date_time = 0;
  std::string extra;
};
struct Auction {
  int64_t id = 0;
  std::string item_name;
  std::string description;
  int64_t initial_bid = 0;
  int64_t reserve = 0;
  int64_t date_time = 0;
  int64_t expires = 0;
  int64_t seller = 0;
  int64_t category = 0;
  std::string extra;
};
struct Bid {
  int64_t auction = 0;
  int64_t bidder = 0;
  int64_t price = 0;
  absl::string_view channel;  // points into the Generator's table
  absl::string_view url;      // points into the Generator's table
  int64_t date_time = 0;
  std::string extra;
};

class Generator {
 public:
  explicit Generator(GeneratorConfig config = {});

  const GeneratorConfig& config() const { return config_; }

  // Event time of event number `n` (ms since the epoch).
  int64_t TimestampOf(int64_t n) const {
    return config_.base_time_ms + static_cast<int64_t>(static_cast<double>(n) * inter_event_delay_us_) / 1000;
  }

  // Event `event_id` (of the kind KindOf(event_id), REQUIRED), fields in `fields` filled. The
  // padding goes to `*extra` when given (e.g. straight into an output record), else to
  // out->extra.
  void MakePerson(int64_t event_id, uint32_t fields, Person* out, std::string* extra = nullptr) const;
  void MakeAuction(int64_t event_id, uint32_t fields, Auction* out, std::string* extra = nullptr) const;
  void MakeBid(int64_t event_id, uint32_t fields, Bid* out, std::string* extra = nullptr) const;

  // The channel table: 4 hot channels, then channel-0 .. channel-9999.
  static constexpr int kHotChannels = 4;
  static constexpr int kChannels = 10'000;

 private:
  GeneratorConfig config_;
  double inter_event_delay_us_;
  std::vector<std::string> channel_names_;  // kHotChannels + kChannels entries
  std::vector<std::string> channel_urls_;
};

// Beam's nextExactString(r, length) as the generator makes it (its padding), for tests.
std::string ExactStringForTest(JavaRandom& r, int length);

}  // namespace sluice::nexmark
