#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "plan/operator_type.h"

namespace sluice::ops {

// `aggregate`: rolling count/sum/min/max/avg/first/last per key (the key of its keyed input),
// and plugins' aggregate functions (kPlugin, by name: `{fn: p90, field: amount}`). `first` is
// the field's value in the first record of the key that the operator saw with it not null (in
// arrival order, not event time: for a field that is a function of the key, e.g. an auction's
// category by its id, any record's value), `last` the latest such value; both take fields of
// any type but string.
struct AggregateOptions final : plan::OptionsOf<AggregateOptions> {
  enum class Fn { kCount, kSum, kMin, kMax, kAvg, kFirst, kLast, kPlugin };
  struct Aggregate {
    Fn fn = Fn::kCount;
    int field = -1;  // index in the input schema; -1 for count of rows (no field)
    std::string as;  // output field name
    std::shared_ptr<const plan::AggregateFunction> plugin;  // kPlugin only
  };
  std::vector<Aggregate> aggregates;
  bool emit_final = false;  // `emit: final`; default `updates`
  int64_t ttl_ms = 0;       // 0: state kept forever
  // `state: backend`: accumulators always in the keyed state backend (RocksDB behind its
  // cache); default `auto`: in memory when the key allows it, within the memory budget
  // (aggregate.cc, operators/README.md).
  bool backend_state = false;
  Schema schema;            // the output: key fields, then one field per aggregate
};

std::unique_ptr<plan::OperatorType> MakeAggregateType();

}  // namespace sluice::ops
