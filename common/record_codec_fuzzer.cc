// libFuzzer target of the record codec: any bytes, decoded by one of a few schemas, give
// records or kDataLoss and never a read out of bounds; Next(), NextBatch() and (integer
// schemas) NextIntRows() agree; what
// decodes re-encodes (in a buffer of exactly EncodedSizeBound() bytes, so that ASan sees a
// write past the bound) to bytes that decode to the same values. Built with
// -DSLUICE_FUZZERS=ON and clang (see common/README.md):
//
//   build-fuzz/bin/record_codec_fuzzer -max_total_time=60

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "common/record.h"
#include "common/record_codec.h"

namespace sluice {
namespace {

std::vector<Schema> FuzzSchemas() {
  std::vector<Schema> schemas;
  for (size_t n = 1; n <= 6; ++n) {  // the integral loops: unrolled for 1-4 fields, else not
    std::vector<Field> fields;
    for (size_t i = 0; i < n; ++i) fields.push_back({"f", i % 2 ? FieldType::kTimestamp : FieldType::kInt64});
    schemas.emplace_back(std::move(fields));
  }
  schemas.push_back(Schema({{"id", FieldType::kInt64},
                            {"price", FieldType::kDouble},
                            {"name", FieldType::kString},
                            {"ok", FieldType::kBool},
                            {"ts", FieldType::kTimestamp}}));
  schemas.push_back(Schema({{"n", FieldType::kInt64, true},
                            {"s", FieldType::kString, true},
                            {"d", FieldType::kDouble, true},
                            {"b", FieldType::kBool, true},
                            {"k", FieldType::kInt64}}));
  return schemas;
}

bool SameValues(const Schema& schema, const Record& a, const Record& b) {
  for (size_t i = 0; i < schema.size(); ++i) {
    if (a.IsNull(i) != b.IsNull(i)) return false;
    if (a.IsNull(i)) continue;
    switch (schema.field(i).type) {
      case FieldType::kDouble:
        if (std::memcmp(&a[i].d, &b[i].d, 8) != 0) return false;
        break;
      case FieldType::kString:
        if (a[i].s != b[i].s) return false;
        break;
      case FieldType::kBool:
        if ((a[i].i != 0) != (b[i].i != 0)) return false;
        break;
      default:
        if (a[i].i != b[i].i) return false;
        break;
    }
  }
  return true;
}

void Check(bool ok) {
  if (!ok) std::abort();
}

}  // namespace
}  // namespace sluice

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sluice;  // NOLINT
  static const std::vector<Schema>* const schemas = new std::vector<Schema>(FuzzSchemas());
  if (size < 2) return 0;
  const Schema& schema = (*schemas)[data[0] % schemas->size()];
  const size_t max = 1 + data[1] % 8;
  // A copy of exactly the input's size, so that ASan sees a read past its end.
  std::unique_ptr<char[]> bytes(new char[size - 2]);
  std::memcpy(bytes.get(), data + 2, size - 2);
  const absl::string_view buf(bytes.get(), size - 2);

  std::vector<Record> one;
  RecordDecoder dec(&schema, buf);
  absl::Status one_status;
  while (!dec.Done()) {
    Record r(schema.size());
    one_status = dec.Next(&r);
    if (!one_status.ok()) {
      Check(one_status.code() == absl::StatusCode::kDataLoss);
      break;
    }
    one.push_back(std::move(r));
  }

  RecordDecoder batch_dec(&schema, buf);
  std::vector<Record> batch(max, Record(schema.size()));
  size_t total = 0;
  absl::Status batch_status;
  while (!batch_dec.Done()) {
    size_t n = 0;
    batch_status = batch_dec.NextBatch(batch.data(), max, &n);
    Check(n <= max);
    for (size_t k = 0; k < n; ++k) {
      Check(total + k < one.size() && SameValues(schema, batch[k], one[total + k]));
    }
    total += n;
    if (!batch_status.ok()) break;
  }
  Check(total == one.size());
  Check(batch_status.code() == one_status.code());

  // NextIntRows(): the same values as rows of int64s (integral schemas), else refused.
  RecordDecoder rows_dec(&schema, buf);
  std::vector<int64_t> rows(max * schema.size());
  size_t rows_total = 0;
  absl::Status rows_status;
  while (!rows_dec.Done()) {
    size_t n = 0;
    rows_status = rows_dec.NextIntRows(rows.data(), max, &n);
    Check(n <= max);
    for (size_t k = 0; k < n; ++k) {
      Check(rows_total + k < one.size());
      for (size_t i = 0; i < schema.size(); ++i) Check(rows[k * schema.size() + i] == one[rows_total + k][i].i);
    }
    rows_total += n;
    if (!rows_status.ok()) break;
  }
  if (schema.all_integral()) {
    Check(rows_total == one.size());
    Check(rows_status.code() == one_status.code());
  } else {
    Check(rows_total == 0 && (buf.empty() || rows_status.code() == absl::StatusCode::kFailedPrecondition));
  }

  std::string encoded;
  for (const Record& r : one) {
    const size_t bound = EncodedSizeBound(schema, r);
    std::unique_ptr<char[]> out(new char[bound]);
    const char* end = EncodeRecordTo(schema, r, out.get());
    Check(end >= out.get() && end <= out.get() + bound);
    const size_t appended = encoded.size();
    EncodeRecord(schema, r, &encoded);
    Check(encoded.compare(appended, std::string::npos, out.get(), end - out.get()) == 0);
  }
  RecordDecoder again(&schema, encoded);
  Record r(schema.size());
  for (const Record& want : one) {
    Check(again.Next(&r).ok() && SameValues(schema, r, want));
  }
  Check(again.Done());
  return 0;
}
