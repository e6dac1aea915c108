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

void BM_Person(benchmark::State& state) {
  Generator g;
  Person p;
  int64_t id = 0;
  for (auto _ : state) {
    g.MakePerson(id, kAllFields, &p);
    id += kTotalProportion;
    benchmark::DoNotOptimize(p.extra.data());
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_Auction(benchmark::State& state) {
  Generator g;
  Auction a;
  int64_t id = 1;
  for (auto _ : state) {
    g.MakeAuction(id, kAllFields, &a);
    id += kTotalProportion;
    benchmark::DoNotOptimize(a.extra.data());
  }
  state.SetItemsProcessed(state.iterations());
}

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
