// Aggregate functions (ABI 1.2): `median` and `p90`, exact nearest-rank percentiles of an int64,
// timestamp or double field, for the `window` and `aggregate` operators:
//
//   aggregates:
//     - {fn: p90, field: amount, as: p90_amount}
//
// The result is the value at rank ceil(p * n) of the n values in ascending order (so always one
// of the values, of the input's type; the lower median for an even n), or null for no values.
// The accumulator holds every value, 8 bytes each, in arrival order: exact, and the result does
// not depend on the order of adds and merges, at the cost of memory linear in the values per
// key and window (an approximate sketch would bound it; this example keeps the result exact).
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "sluice/sdk.h"

namespace {

using sluice::sdk::Accumulator;
using sluice::sdk::AggregateResult;
using sluice::sdk::AggregateValue;
using sluice::sdk::FieldType;
using sluice::sdk::Status;

template <int kPercent>
class Percentile final : public sluice::sdk::AggregateFunction {
 public:
  Status ResultType(FieldType in, FieldType* out) const override {
    if (in != FieldType::kInt64 && in != FieldType::kTimestamp && in != FieldType::kDouble) {
      return Status::InvalidArgument(std::string("a percentile needs an int64, timestamp or double field, not ") +
                                     sluice::sdk::FieldTypeName(in));
    }
    *out = in;
    return Status::Ok();
  }
  Status Create(FieldType, Accumulator&) const override { return Status::Ok(); }  // no values
  Status Add(FieldType in, Accumulator& acc, const AggregateValue& v) const override {
    char bytes[8];
    if (in == FieldType::kDouble) {
      const double d = v.Double();
      std::memcpy(bytes, &d, 8);
    } else {
      const int64_t i = v.Int();
      std::memcpy(bytes, &i, 8);
    }
    return acc.Append(bytes, 8);
  }
  Status Merge(FieldType, Accumulator& acc, std::string_view other) const override {
    if (other.size() % 8 != 0) return Status::InvalidArgument("a percentile accumulator is a multiple of 8 bytes");
    return acc.Append(other.data(), other.size());
  }
  Status GetResult(FieldType in, std::string_view acc, AggregateResult& out) const override {
    if (acc.size() % 8 != 0) return Status::InvalidArgument("a percentile accumulator is a multiple of 8 bytes");
    const size_t n = acc.size() / 8;
    if (n == 0) {
      out.SetNull();
      return Status::Ok();
    }
    const size_t rank = std::max<size_t>(1, (kPercent * n + 99) / 100);  // ceil(p * n)
    if (in == FieldType::kDouble) {
      out.SetDouble(Nth<double>(acc, n, rank - 1));
    } else {
      out.SetInt(Nth<int64_t>(acc, n, rank - 1));
    }
    return Status::Ok();
  }

 private:
  template <typename T>
  static T Nth(std::string_view acc, size_t n, size_t k) {
    std::vector<T> values(n);
    std::memcpy(values.data(), acc.data(), n * 8);
    std::nth_element(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(k), values.end());
    return values[k];
  }
};

}  // namespace

SLUICE_PLUGIN("percentile", "1.0.0", plugin) {
  plugin.AddAggregateFunction<Percentile<50>>("median").Description(
      "exact median (nearest rank, the lower one for an even count)");
  plugin.AddAggregateFunction<Percentile<90>>("p90").Description(
      "exact 90th percentile (nearest rank)");
}
