#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "common/record.h"
#include "operators/nexmark/generator.h"

namespace sluice::nexmark {

// The Nexmark queries as hand-written single-threaded loops: generator + query in plain C++
// with absl::flat_hash_map, over events 0..N-1 in id order (so in event-time order). They are
// the benchmark's baseline (what the computation costs without an engine) and the tests'
// independent expected results. Semantics are those of nexmark/nexmark's queries/q*.sql
// (bench/nexmark/README.md spells out each query's output rows); windowed queries count every
// event (events come in order, so none is late for a 4 s bounded out-of-orderness watermark).
//
// Each loop generates only the event kinds and fields its query reads, as the `nexmark`
// source with `emit` and `fields` does.

struct LoopQuery {
  std::string name;  // "q0", ...
  Schema schema;     // of its output rows
};

// The queries that have a loop, in order: q0 q1 q2 q3 q4 q5 q7 q8 q11 q14 q20 q21
// q22.
const std::vector<LoopQuery>& LoopQueries();
// The query called `name`, or null.
const LoopQuery* FindLoopQuery(absl::string_view name);

// Runs query `name` over events 0..events-1 of `generator`, calling `emit` for each output row
// (laid out by the query's schema; the record is reused: copy what you keep). Queries with
// updating or windowed results emit their final rows when the input ends. Returns kNotFound
// for an unknown query.
absl::Status RunLoop(absl::string_view name, const Generator& generator, int64_t events,
                     absl::FunctionRef<void(const Record&)> emit);

}  // namespace sluice::nexmark
