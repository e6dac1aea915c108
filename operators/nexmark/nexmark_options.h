#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "common/record.h"
#include "operators/nexmark/generator.h"
#include "plan/operator_type.h"
#include "plan/option_parsing.h"

namespace sluice::ops {

// `nexmark`: the Nexmark events of one kind (operators/nexmark/README.md).
//
//   - id: bids
//     type: nexmark
//     emit: bid                  # bid | auction | person
//     events: 1000000            # ids 0..N-1 of all kinds (bids are 46 in 50); omit: unbounded
//     rate: 0                    # events of this kind per second, whole source; 0: unlimited
//     fields: [auction, price]   # projection, in this order (default: all of the kind)
//     event_rate: 10000000       # events per second of event time (dateTime spacing)
//     max_out_of_orderness: 4s   # watermark = largest dateTime - this - 1 ms
struct NexmarkOptions final : plan::OptionsOf<NexmarkOptions> {
  nexmark::EventKind emit = nexmark::EventKind::kBid;
  int64_t events = -1;  // -1: unbounded
  double rate = 0;
  double event_rate = 10'000'000;
  int64_t max_out_of_orderness_ms = 4000;
  // Output field j is the kind's field fields[j] (an index into NexmarkFields(emit)).
  std::vector<int> fields;
  uint32_t field_mask = 0;  // bit fields[j] set for every j
  Schema schema;
};

// Every field of `kind`, in the generator's order (bit i of its field mask is field i).
const std::vector<Field>& NexmarkFields(nexmark::EventKind kind);

std::unique_ptr<plan::OperatorType> MakeNexmarkType();

}  // namespace sluice::ops
