#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "plan/operator_type.h"

namespace sluice::ops {

// `aggregate`: rolling count/sum/min/max/avg per key (the key of its keyed input), and
// plugins' aggregate functions (kPlugin, by name: `{fn: p90, field: amount}`).
struct AggregateOptions final : plan::OptionsOf<AggregateOptions> {
  enum class Fn { kCount, kSum, kMin, kMax, kAvg, kPlugin };
  struct Aggregate {
    Fn fn = Fn::kCount;
    int field = -1;  // index in the input schema; -1 for count of rows (no field)
    std::string as;  // output field name
    std::shared_ptr<const plan::AggregateFunction> plugin;  // kPlugin only
  };
  std::vector<Aggregate> aggregates;
  bool emit_final = false;  // `emit: final`; default `updates`
  int64_t ttl_ms = 0;       // 0: state kept forever
  Schema schema;            // the output: key fields, then one field per aggregate
};

std::unique_ptr<plan::OperatorType> MakeAggregateType();

}  // namespace sluice::ops
