#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "common/record.h"
#include "plan/operator_type.h"

namespace sluice::ops {

// `top_n`: per key of its keyed input, the `n` rows with the largest (or, with `order: asc`,
// smallest) value of `order_by`, ranked as SQL's RANK() (1, 2, 2, 4: every row tied at the
// n-th value is kept). Output: the input fields and `rank` (int64).
//
//   - id: hot
//     type: top_n
//     n: 3
//     order_by: bids           # an expression over the input
//     order: desc              # default; or asc
//
// Emit mode: when the input has a `window_end` timestamp field (rows of a `window`), rows are
// grouped per key and window_end and each group's ranked rows are emitted once, when the
// watermark passes window_end - 1 (all of that window's rows are in by then); rows of a group
// already emitted are late (dropped and counted). Otherwise the key's whole ranked list is
// emitted again each time a row enters it.
struct TopNOptions final : plan::OptionsOf<TopNOptions> {
  int64_t n = 1;
  std::string order_by;  // the expression, compiled against the input schema at Open()
  FieldType order_type = FieldType::kInt64;
  bool descending = true;
  int window_end = -1;  // index of the input's window_end field; -1: not windowed
  Schema schema;        // the output: the input fields, then rank
};

std::unique_ptr<plan::OperatorType> MakeTopNType();

}  // namespace sluice::ops
