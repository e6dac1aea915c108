#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/record.h"
#include "operators/window_assigner.h"
#include "plan/operator_type.h"

namespace sluice::ops {

// What the three joins share, parsed once at submission: both inputs' schemas, their keys and
// time fields, and the output schema with where each output field comes from.
//
// Inputs: `inputs: [left, right]`, each hash-partitioned by a key (after a key_by, or
// `{from: x, partition: hash, key: [...]}`); the two keys must have as many components, of the
// same types, so that equal keys meet in one subtask.
//
// Output: the left input's fields, then the right input's. A name that both sides have is
// prefixed `left.` / `right.` (only the clashing names); `left_as: a` / `right_as: b` prefix
// every field of that side with `a.` / `b.` instead. Expressions downstream read such names as
// they are (`left.ts`, see plan/expr.h). Fields of a side an outer join pads with nulls become
// nullable.
struct JoinSides {
  enum class Kind { kInner, kLeft, kRight, kFull };
  Kind kind = Kind::kInner;
  Schema input[2];                      // left (input 0), right (input 1)
  std::vector<plan::KeySpec> key[2];    // each over its input's schema
  int time_field[2] = {-1, -1};         // event-time joins: the timestamp / int64 field
  Schema output;                        // input[0]'s fields, then input[1]'s (then extras)
  bool pads(int side) const {
    return side == 0 ? kind == Kind::kRight || kind == Kind::kFull
                     : kind == Kind::kLeft || kind == Kind::kFull;
  }
};

// `interval_join`: a left record joins every right record of its key with
//   left.ts + lower <= right.ts <= left.ts + upper
// (`lower_exclusive` / `upper_exclusive` make a bound strict). Inner only, as Flink's.
//
// `unique: left` (or `right`), here and in `join`: that input has at most one record per key (a
// primary key, as Flink's PRIMARY KEY NOT ENFORCED; e.g. Nexmark's auctions by id). Then a
// record of the other input that comes while its key's unique record is kept joins it and is
// not kept itself (nothing else can match it), and the other input's records kept before it
// are dropped once they have joined it. A second unique record of a key while the first is
// kept fails the job (kFailedPrecondition); one that comes after the first was dropped misses
// the other input's records that joined the first (the declaration was false).
struct IntervalJoinOptions final : plan::OptionsOf<IntervalJoinOptions> {
  JoinSides sides;
  int64_t lower_ms = 0;  // inclusive (exclusive bounds already moved by 1 ms)
  int64_t upper_ms = 0;  // inclusive; lower_ms <= upper_ms
  int unique = -1;       // the input declared `unique` (0 left, 1 right), or -1
};

// `join`: regular (unbounded) join; both sides kept per key for `ttl` (processing time; 0:
// forever, inner joins only). `unique` as for interval_join (a unique record kept beyond its
// ttl no longer counts).
struct RegularJoinOptions final : plan::OptionsOf<RegularJoinOptions> {
  JoinSides sides;  // kInner or kLeft
  int64_t ttl_ms = 0;
  int unique = -1;  // the input declared `unique` (0 left, 1 right), or -1
};

// `window_join`: both inputs windowed by the same tumbling or hopping window on event time,
// joined per key and window when the window fires. Output ends with `window_start` and
// `window_end` (timestamps).
struct WindowJoinOptions final : plan::OptionsOf<WindowJoinOptions> {
  JoinSides sides;
  WindowSpec window;  // kTumble or kHop
};

std::unique_ptr<plan::OperatorType> MakeIntervalJoinType();
std::unique_ptr<plan::OperatorType> MakeRegularJoinType();
std::unique_ptr<plan::OperatorType> MakeWindowJoinType();

}  // namespace sluice::ops
