#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "plan/operator_type.h"
#include "plan/option_parsing.h"

namespace sluice::ops {

// `datagen`: records made from their sequence number, every field an expression over `seq`.
struct DatagenOptions final : plan::OptionsOf<DatagenOptions> {
  struct Field {
    std::string name;
    FieldType type = FieldType::kInt64;
    std::string expr;  // over Schema{seq: int64}, type-checked
  };
  int64_t count = -1;  // -1: unbounded
  double rate = 0;     // records/s for the whole source; 0: as fast as possible
  std::vector<Field> fields;
  std::optional<plan::EventTimeSpec> event_time;
  Schema schema;  // the output: `fields`
};

// The schema datagen expressions are compiled against.
const Schema& DatagenSeqSchema();

std::unique_ptr<plan::OperatorType> MakeDatagenType();

}  // namespace sluice::ops
