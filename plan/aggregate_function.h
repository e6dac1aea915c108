#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/record.h"

namespace sluice::plan {

// An aggregate function that is not built in (a plugin's, ABI 1.2), as the `window` and
// `aggregate` operators use it by name in their `aggregates:` list. The planner asks only for
// its result type; the operators, at run time, keep one accumulator per key (and window) as
// opaque bytes in their keyed state and call Create/Add/Merge/Result on it.
//
// In the coordinator an entry only plans (what the plugin helper reported: Runnable() is
// false); in workers and in the helper it runs the plugin's hooks. Immutable; the methods may be
// called from any thread concurrently (the plugin's hooks keep no state).
class AggregateFunction {
 public:
  virtual ~AggregateFunction() = default;

  // The `fn:` name, and where it comes from for messages ("plugin 'p' 1.0.0 (/path/libp.so)").
  virtual const std::string& name() const = 0;
  virtual const std::string& origin() const = 0;

  // The result type for an input field of type `in`; kInvalidArgument with the function's
  // reason for an input type it does not take.
  virtual absl::StatusOr<FieldType> ResultType(FieldType in) const = 0;

  // Whether this process can run it (false in the coordinator). The methods below return
  // kFailedPrecondition when it cannot.
  virtual bool Runnable() const = 0;
  // The format version of the accumulator bytes, stored with every accumulator.
  virtual uint32_t AccumulatorVersion() const = 0;
  // *acc = the empty accumulator for input type `in`.
  virtual absl::Status Create(FieldType in, std::string* acc) const = 0;
  // Adds the (non-null) value `v` of type `in` to *acc.
  virtual absl::Status Add(FieldType in, const Value& v, std::string* acc) const = 0;
  // Merges accumulator `other` into *acc.
  virtual absl::Status Merge(FieldType in, absl::string_view other, std::string* acc) const = 0;
  // The result of `acc` into *out (of ResultType(in)); *is_null for a null result.
  virtual absl::Status Result(FieldType in, absl::string_view acc, Value* out, bool* is_null) const = 0;
};

}  // namespace sluice::plan
