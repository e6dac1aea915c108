#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

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

// `local_top_n`: the local (pre-shuffle) stage of a windowed `top_n`, as Flink's two-phase
// (local-global) aggregation. Placed before the `key_by` that feeds the top_n (so in the
// producer's chain), it keeps per group (the values of `key`, and window_end) only the rows
// that rank within the group's top `n` with ties (RANK() <= n) among the rows it has seen, and
// emits them unchanged (same fields, no rank) when the watermark passes window_end - 1, before
// forwarding that watermark; the top_n downstream then ranks each subtask's candidates only.
// The result is exactly the top_n's without the local stage, ties included: a row in a group's
// top n with ties is also in the top n with ties of any subset holding it (no more rows beat
// it there), and no row outside the union of those candidates can rank. Only the order in
// which tied rows reach the top_n (its output order of ties) may differ.
//
//   - id: local_top
//     type: local_top_n
//     key: [window_end]        # the key of the key_by that follows (or a finer one)
//     n: 1                     # n, order_by and order: as the top_n after the key_by
//     order_by: price
//
// REQUIRES (not checked: the stage does not see the top_n): `key` holds at least the top_n's
// key, and n, order_by and order are the top_n's. The input must have a `window_end` timestamp
// field (kInvalidArgument otherwise). Rows whose window_end - 1 is at or below the watermark
// pass through at once (the top_n counts them late). At a checkpoint the held rows and the
// watermark are operator state (format 2: one entry per group, its rows encoded, and one with
// the watermark; every subtask reads all of them at a restore, takes its share of the groups
// and the smallest watermark; format 1 had the groups only, split over the subtasks); at the
// end of input every held row is emitted.
struct LocalTopNOptions final : plan::OptionsOf<LocalTopNOptions> {
  int64_t n = 1;
  std::string order_by;
  FieldType order_type = FieldType::kInt64;
  bool descending = true;
  std::vector<plan::KeySpec> key;  // grouped by these and window_end
  int window_end = -1;             // index of the input's window_end field
};

std::unique_ptr<plan::OperatorType> MakeTopNType();
std::unique_ptr<plan::OperatorType> MakeLocalTopNType();

}  // namespace sluice::ops
