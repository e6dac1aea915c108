// Cost of the Nexmark generator per event (operators/nexmark/generator.h), by kind and by the
// fields asked for. The budget: at most ~45-50 ns per bid on the 2-core dev machine.
//
//   build/bin/nexmark_generator_benchmark

#include <cstdint>

#include "benchmark/benchmark.h"
#include "operators/nexmark/generator.h"

namespace sluice::nexmark {
namespace {

// Bids of consecutive ids (skipping the other kinds without generating them), `fields` filled.
void BidBenchmark(benchmark::State& state, uint32_t fields) {
  Generator g;
  Bid b;
  int64_t id = 0;
  for (auto _ : state) {
    if (KindOf(id) != EventKind::kBid) id = (id / kTotalProportion) * kTotalProportion + 4;
    g.MakeBid(id++, fields, &b);
    benchmark::DoNotOptimize(b.auction + b.bidder + b.price);
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_BidAllFields(benchmark::State& s) { BidBenchmark(s, kAllFields); }
void BM_BidQ0Fields(benchmark::State& s) {
  BidBenchmark(s, kBidAuction | kBidBidder | kBidPrice | kBidDateTime | kBidExtra);
}
void BM_BidNoExtra(benchmark::State& s) {
  BidBenchmark(s, kBidAuction | kBidBidder | kBidPrice | kBidChannel | kBidUrl | kBidDateTime);
}
void BM_BidQ2Fields(benchmark::State& s) { BidBenchmark(s, kBidAuction | kBidPrice); }
void BM_BidIdsOnly(benchmark::State& s) { BidBenchmark(s, kBidAuction | kBidBidder); }

// Persons (every 50th id from 0) or auctions (every 50th from 1), every field.
template <typename Event, void (Generator::*kMake)(int64_t, uint32_t, Event*, std::string*) const>
void EventBenchmark(benchmark::State& state, int64_t first_id) {
  Generator g;
  Event e;
  int64_t id = first_id;
  for (auto _ : state) {
    (g.*kMake)(id, kAllFields, &e, nullptr);
    id += kTotalProportion;
    benchmark::DoNotOptimize(e.extra.data());
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_Person(benchmark::State& s) { EventBenchmark<Person, &Generator::MakePerson>(s, 0); }
void BM_Auction(benchmark::State& s) { EventBenchmark<Auction, &Generator::MakeAuction>(s, 1); }

BENCHMARK(BM_BidAllFields);
BENCHMARK(BM_BidQ0Fields);
BENCHMARK(BM_BidNoExtra);
BENCHMARK(BM_BidQ2Fields);
BENCHMARK(BM_BidIdsOnly);
BENCHMARK(BM_Person);
BENCHMARK(BM_Auction);

}  // namespace
}  // namespace sluice::nexmark

BENCHMARK_MAIN();
