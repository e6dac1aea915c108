#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/record.h"
#include "operators/window_assigner.h"
#include "plan/operator_type.h"

namespace sluice::ops {

// `window`: keyed tumbling, hopping or session windows with incremental aggregates (see
// window.cc for the runtime and operators/README.md for the semantics).
//
//   - id: per_minute
//     type: window
//     tumble: {size: 1m}            # or hop: {size, slide}, session: {gap}; offset: 15s
//     time: event                   # default; or processing
//     time_field: ts                # event time: a timestamp or int64 field of the input
//     allowed_lateness: 10s         # default 0
//     late_output: late             # records later than that go to side output `per_minute.late`
//     emit_every: 1s                # early firings in processing time (default: none)
//     aggregates:
//       - {fn: count, as: n}
//       - {fn: sum, field: amount, as: total}
//       - {fn: p90, field: amount, as: p90_amount}   # a plugin's aggregate function (ABI 1.2)
//
// Output: the key fields, window_start and window_end (timestamps), one field per aggregate,
// and `update` (bool: false on a window's first emitted row, true on every later one).
struct WindowOptions final : plan::OptionsOf<WindowOptions> {
  // The aggregate functions. Adding one: a value here, its name in kWindowAggregateNames
  // order, its input and output types in window_options.cc, its accumulator in window.cc.
  // kPlugin: a function of the catalog (a plugin's), in `plugin`.
  enum class Fn { kCount, kSum, kMin, kMax, kAvg, kFirst, kLast, kCountDistinct, kPlugin };
  struct Aggregate {
    Fn fn = Fn::kCount;
    int field = -1;  // index in the input schema; -1 for count
    FieldType in_type = FieldType::kInt64;
    FieldType out_type = FieldType::kInt64;
    std::string as;  // output field name
    std::shared_ptr<const plan::AggregateFunction> plugin;  // kPlugin only
  };

  WindowSpec windows;
  bool event_time = true;  // `time: event` (default) or `processing`
  int time_field = -1;     // event time: index of the timestamp field in the input schema
  int64_t allowed_lateness_ms = 0;
  std::string late_output;    // side output name for records later than the lateness; "" = none
  int64_t emit_every_ms = 0;  // 0: no early firing
  std::vector<Aggregate> aggregates;
  Schema schema;  // the output
};

// "count", "sum", ... by Fn value.
absl::string_view WindowAggregateName(WindowOptions::Fn fn);

std::unique_ptr<plan::OperatorType> MakeWindowType();

}  // namespace sluice::ops
