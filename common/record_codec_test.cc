#include "common/record_codec.h"

#include <cstring>
#include <limits>
#include <memory>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/status_matchers.h"
#include "gtest/gtest.h"

namespace sluice {
namespace {

using ::sluice::testing::StatusIs;

Schema TestSchema() {
  return Schema({{"id", FieldType::kInt64},
                 {"price", FieldType::kDouble},
                 {"name", FieldType::kString},
                 {"ok", FieldType::kBool},
                 {"ts", FieldType::kTimestamp}});
}

// TestSchema() and two nullable fields, an int64 and a string.
Schema NullableTestSchema() {
  std::vector<Field> fields = TestSchema().fields();
  fields.push_back({"n", FieldType::kInt64, true});
  fields.push_back({"m", FieldType::kString, true});
  return Schema(std::move(fields));
}

TEST(RecordCodecTest, RoundTripsEveryType) {
  Schema schema = TestSchema();
  Record r(schema.size());
  std::string buf;
  const int64_t ints[] = {0, 1, -1, 300, std::numeric_limits<int64_t>::min(),
                          std::numeric_limits<int64_t>::max()};
  for (int64_t v : ints) {
    r.SetInt(0, v);
    r.SetDouble(1, v * 0.5);
    r.SetString(2, std::string(static_cast<size_t>(v & 0xff), 'x'));
    r.SetBool(3, v % 2 != 0);
    r.SetInt(4, v / 3);
    EncodeRecord(schema, r, &buf);
  }
  RecordDecoder dec(&schema, buf);
  Record out(schema.size());
  for (int64_t v : ints) {
    ASSERT_FALSE(dec.Done());
    ASSERT_OK(dec.Next(&out));
    EXPECT_EQ(out.GetInt(0), v);
    EXPECT_EQ(out.GetDouble(1), v * 0.5);
    EXPECT_EQ(out.GetString(2), std::string(static_cast<size_t>(v & 0xff), 'x'));
    EXPECT_EQ(out.GetBool(3), v % 2 != 0);
    EXPECT_EQ(out.GetInt(4), v / 3);
  }
  EXPECT_TRUE(dec.Done());
}

// The exact bytes (data-plane buffers and keyed state of earlier versions must decode).
TEST(RecordCodecTest, EncodesTheDocumentedBytes) {
  Schema schema = NullableTestSchema();
  Record r(schema.size());
  r.SetInt(0, 300);
  r.SetDouble(1, 1.5);
  r.SetString(2, "ab");
  r.SetBool(3, true);
  r.SetInt(4, -2);
  r.SetNull(5);
  r.SetString(6, "c");
  std::string buf = "x";  // appends after what is there
  EncodeRecord(schema, r, &buf);
  const std::string want("x" "\xd8\x04" "\0\0\0\0\0\0\xf8\x3f" "\x02" "ab" "\x01" "\x03" "\x01"
                         "\0\x01" "c",
                         20);
  EXPECT_EQ(buf, want);
  RecordDecoder dec(&schema, absl::string_view(buf).substr(1));
  Record out(schema.size());
  ASSERT_OK(dec.Next(&out));
  EXPECT_TRUE(dec.Done());
  EXPECT_EQ(out.GetInt(0), 300);
  EXPECT_EQ(out.GetDouble(1), 1.5);
  EXPECT_EQ(out.GetString(2), "ab");
  EXPECT_TRUE(out.GetBool(3));
  EXPECT_EQ(out.GetInt(4), -2);
  EXPECT_TRUE(out.IsNull(5));
  EXPECT_FALSE(out.IsNull(6));
  EXPECT_EQ(out.GetString(6), "c");
}

// In place: the bytes EncodeRecord() appends, never more than the bound (here the worst case of
// every type: 10-byte varints, nulls, strings of 0 and 600 bytes beyond the stack buffer).
TEST(RecordCodecTest, EncodeRecordToWritesWhatEncodeRecordAppendsWithinTheBound) {
  const Schema schema = NullableTestSchema();
  Record r(schema.size());
  for (int64_t v : {int64_t{0}, int64_t{-1}, std::numeric_limits<int64_t>::min(),
                    std::numeric_limits<int64_t>::max()}) {
    for (size_t len : {size_t{0}, size_t{1}, size_t{600}}) {
      for (bool null : {false, true}) {
        r.SetInt(0, v);
        r.SetDouble(1, -0.0);
        r.SetString(2, std::string(len, 'a'));
        r.SetBool(3, v != 0);
        r.SetInt(4, v);
        r.SetInt(5, v);
        r.SetNullTo(5, null);
        r.SetString(6, std::string(len, 'b'));
        r.SetNullTo(6, !null);
        std::string appended = "prefix";
        EncodeRecord(schema, r, &appended);
        const size_t bound = EncodedSizeBound(schema, r);
        std::string in_place(bound + 16, '#');
        const char* end = EncodeRecordTo(schema, r, &in_place[8]);
        ASSERT_LE(end - &in_place[8], static_cast<ptrdiff_t>(bound));
        EXPECT_EQ(absl::string_view(&in_place[8], end - &in_place[8]), appended.substr(6))
            << "v " << v << " len " << len << " null " << null;
        EXPECT_EQ(in_place.substr(0, 8), "########");
        EXPECT_EQ(in_place.substr(8 + bound), "########") << "wrote past the bound";
      }
    }
  }
}

TEST(RecordCodecTest, SmallIntsAreCompact) {
  Schema schema({{"a", FieldType::kInt64}, {"b", FieldType::kInt64}});
  Record r(2);
  r.SetInt(0, 5);
  r.SetInt(1, -3);
  std::string buf;
  EncodeRecord(schema, r, &buf);
  EXPECT_EQ(buf.size(), 2u);
}

TEST(RecordCodecTest, TruncatedBufferIsDataLossNotCrash) {
  Schema schema = TestSchema();
  Record r(schema.size());
  r.SetInt(0, 123456789);
  r.SetString(2, "hello world");
  std::string buf;
  EncodeRecord(schema, r, &buf);
  for (size_t cut = 0; cut + 1 < buf.size(); ++cut) {
    RecordDecoder dec(&schema, absl::string_view(buf.data(), cut + 1));
    Record out(schema.size());
    EXPECT_THAT(dec.Next(&out), StatusIs(absl::StatusCode::kDataLoss, ::testing::_)) << cut;
  }
}

// Schemas of NOT NULL integers only take the codec's loop of varints
// (Schema::all_integral()): the same bytes as the generic encoding, and the same checks of
// truncated and overlong varints, whether or not 10 bytes follow the record.
TEST(RecordCodecTest, IntegralSchemasKeepTheBytesAndTheChecks) {
  const Schema ints({{"k", FieldType::kInt64}, {"ts", FieldType::kTimestamp}});
  EXPECT_TRUE(ints.all_integral());
  EXPECT_FALSE(ints.has_strings());
  EXPECT_TRUE(Schema().all_integral());
  EXPECT_FALSE(Schema({{"k", FieldType::kInt64, true}}).all_integral());
  EXPECT_FALSE(Schema({{"k", FieldType::kInt64}, {"d", FieldType::kDouble}}).all_integral());
  EXPECT_TRUE(Schema({{"k", FieldType::kInt64}, {"s", FieldType::kString}}).has_strings());

  Record r(2);
  r.SetInt(0, 9999);  // zig-zag 19998: 0x9e 0x9c 0x01
  r.SetInt(1, -2);    // zig-zag 3
  std::string buf;
  EncodeRecord(ints, r, &buf);
  EXPECT_EQ(buf, std::string("\x9e\x9c\x01\x03", 4));
  EXPECT_EQ(EncodedSizeBound(ints, r), 22u);
  r.SetInt(0, std::numeric_limits<int64_t>::min());
  r.SetInt(1, std::numeric_limits<int64_t>::max());
  EncodeRecord(ints, r, &buf);
  EXPECT_EQ(buf.size(), 4u + 20u);

  RecordDecoder dec(&ints, buf);  // the first record with 20 bytes after it, then 0
  Record out(2);
  ASSERT_OK(dec.Next(&out));
  EXPECT_EQ(out.GetInt(0), 9999);
  EXPECT_EQ(out.GetInt(1), -2);
  ASSERT_OK(dec.Next(&out));
  EXPECT_EQ(out.GetInt(0), std::numeric_limits<int64_t>::min());
  EXPECT_EQ(out.GetInt(1), std::numeric_limits<int64_t>::max());
  EXPECT_TRUE(dec.Done());

  for (size_t cut = 0; cut + 1 < buf.size(); ++cut) {
    if (cut + 1 == 4) continue;  // a whole record
    RecordDecoder d(&ints, absl::string_view(buf.data(), cut + 1));
    absl::Status s = d.Next(&out);
    if (s.ok()) s = d.Next(&out);
    EXPECT_THAT(s, StatusIs(absl::StatusCode::kDataLoss, ::testing::HasSubstr("varint"))) << cut;
  }
  // An 11-byte varint, with and without 10 bytes after its start.
  for (size_t tail : {0, 12}) {
    std::string bad(11, '\x80');
    bad += std::string(1 + tail, '\x01');
    RecordDecoder d(&ints, bad);
    EXPECT_THAT(d.Next(&out), StatusIs(absl::StatusCode::kDataLoss, "corrupt varint in field 0")) << tail;
  }
}

// NextBatch() gives what Next() gives record by record: the same values, batches of at most
// `max` until the buffer ends, and at a corrupt record the records before it and Next()'s
// error; for schemas of NOT NULL integers (their own loop, with values of 1 to 10 bytes and
// records near the end of the buffer) and others.
TEST(RecordCodecTest, NextBatchDecodesWhatNextDecodes) {
  const Schema ints({{"k", FieldType::kInt64}, {"ts", FieldType::kTimestamp}});
  const int64_t values[] = {0, -1, 63, -64, 64, 8191, 8192, std::numeric_limits<int64_t>::min(),
                            std::numeric_limits<int64_t>::max(), 1234567890123, -987654321};
  for (const Schema& schema : {ints, TestSchema()}) {
    std::string buf;
    Record r(schema.size());
    constexpr size_t kRecords = 50;
    for (size_t i = 0; i < kRecords; ++i) {
      r.SetInt(0, values[i % 11]);
      r.SetInt(schema.size() - 1, values[(i * 7) % 11]);
      if (schema.size() > 2) r.SetString(2, std::string(i % 5, 'x'));
      EncodeRecord(schema, r, &buf);
    }
    for (size_t max : {1, 7, 64}) {
      RecordDecoder one(&schema, buf);
      RecordDecoder batch(&schema, buf);
      std::vector<Record> got(max, Record(schema.size()));
      Record want(schema.size());
      size_t total = 0;
      while (!batch.Done()) {
        size_t n = 0;
        ASSERT_OK(batch.NextBatch(got.data(), max, &n));
        ASSERT_EQ(n, std::min(max, kRecords - total)) << max;
        for (size_t i = 0; i < n; ++i) {
          ASSERT_OK(one.Next(&want));
          for (size_t f = 0; f < schema.size(); ++f) {
            ASSERT_EQ(got[i][f].i, want[f].i) << total + i;
            ASSERT_EQ(got[i][f].s, want[f].s) << total + i;
          }
        }
        total += n;
      }
      EXPECT_EQ(total, kRecords);
      EXPECT_TRUE(one.Done());
    }
    // Record 30 cut short (the buffer ends in its first field), and overlong (an 11-byte varint).
    RecordDecoder count(&schema, buf);
    for (int i = 0; i < 30; ++i) ASSERT_OK(count.Next(&r));
    const size_t at = buf.size() - count.Remaining();
    for (const std::string& bad : {buf.substr(0, at) + "\x80",
                                   buf.substr(0, at) + std::string(11, '\x80') + std::string(40, '\x01')}) {
      RecordDecoder one(&schema, bad);
      absl::Status want;
      for (int i = 0; i <= 30 && want.ok(); ++i) want = one.Next(&r);
      RecordDecoder batch(&schema, bad);
      std::vector<Record> got(64, Record(schema.size()));
      size_t n = 99;
      EXPECT_EQ(batch.NextBatch(got.data(), 64, &n), want);
      EXPECT_EQ(n, 30u);
      EXPECT_EQ(got[29][0].i, values[29 % 11]);
    }
  }
}

// NextIntRows() gives what Next() gives record by record, as rows of int64s: schemas of 1 to 6
// NOT NULL integer fields, values of every varint length, batches of at most `max` until the
// buffer ends (records near its end read byte by byte), and at a cut or overlong record the
// records before it, Next()'s error and the decoder at that record; random bytes (a fuzz of
// 3000 buffers) decode to the same records and status as Next() gives. A schema with other
// fields is refused.
TEST(RecordCodecTest, NextIntRowsDecodesWhatNextDecodes) {
  std::vector<int64_t> values;
  for (int bits = 0; bits < 64; bits += 3) {
    values.push_back(static_cast<int64_t>(uint64_t{1} << bits));
    values.push_back(-static_cast<int64_t>(uint64_t{1} << bits) - 1);
  }
  values.push_back(std::numeric_limits<int64_t>::min());
  values.push_back(std::numeric_limits<int64_t>::max());
  // Next() record by record until the end or an error: the values and the status.
  auto by_next = [](const Schema& schema, absl::string_view buf, std::vector<int64_t>* want) {
    RecordDecoder one(&schema, buf);
    Record r(schema.size());
    while (!one.Done()) {
      absl::Status s = one.Next(&r);
      if (!s.ok()) return s;
      for (size_t f = 0; f < schema.size(); ++f) want->push_back(r[f].i);
    }
    return absl::OkStatus();
  };
  // NextIntRows() `max` at a time until the end or an error; *remaining: the decoder's bytes
  // left at the end.
  auto by_rows = [](const Schema& schema, absl::string_view buf, size_t max, std::vector<int64_t>* got,
                    size_t* remaining) {
    RecordDecoder dec(&schema, buf);
    std::vector<int64_t> rows(max * schema.size() + 1, 77);
    absl::Status s;
    while (s.ok() && !dec.Done()) {
      size_t n = 99;
      s = dec.NextIntRows(rows.data(), max, &n);
      EXPECT_LE(n, max);
      EXPECT_EQ(rows.back(), 77);  // nothing written past max rows
      got->insert(got->end(), rows.begin(), rows.begin() + static_cast<ptrdiff_t>(n * schema.size()));
    }
    *remaining = dec.Remaining();
    return s;
  };
  uint64_t x = 5;
  auto next = [&x]() {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    return x >> 17;
  };
  for (size_t width = 1; width <= 6; ++width) {
    std::vector<Field> fields;
    for (size_t f = 0; f < width; ++f) fields.push_back({"f", f % 2 ? FieldType::kTimestamp : FieldType::kInt64});
    const Schema schema(fields);
    std::string buf;
    Record r(width);
    constexpr size_t kRecords = 300;
    for (size_t i = 0; i < kRecords; ++i) {
      for (size_t f = 0; f < width; ++f) r[f].i = values[next() % values.size()];
      EncodeRecord(schema, r, &buf);
    }
    std::vector<int64_t> want;
    ASSERT_OK(by_next(schema, buf, &want));
    ASSERT_EQ(want.size(), kRecords * width);
    for (size_t max : {1, 3, 64, 512}) {
      std::vector<int64_t> got;
      size_t remaining;
      ASSERT_OK(by_rows(schema, buf, max, &got, &remaining));
      EXPECT_EQ(got, want) << width << " " << max;
    }
    // Cut within record 200 (at each of its bytes) and overlong in its last field.
    RecordDecoder count(&schema, buf);
    for (int i = 0; i < 200; ++i) ASSERT_OK(count.Next(&r));
    const size_t at = buf.size() - count.Remaining();
    ASSERT_OK(count.Next(&r));
    const size_t record_end = buf.size() - count.Remaining();
    std::vector<std::string> bad;
    for (size_t cut = at + 1; cut < record_end; ++cut) bad.push_back(buf.substr(0, cut));
    std::string overlong = buf.substr(0, at);
    for (size_t f = 0; f + 1 < width; ++f) overlong += "\x01";
    bad.push_back(overlong + std::string(10, '\x80') + "\x01" + buf.substr(record_end));
    for (const std::string& b : bad) {
      std::vector<int64_t> want_bad;
      const absl::Status want_status = by_next(schema, b, &want_bad);
      ASSERT_EQ(want_status.code(), absl::StatusCode::kDataLoss);
      for (size_t max : {1, 7, 512}) {
        std::vector<int64_t> got;
        size_t remaining;
        EXPECT_EQ(by_rows(schema, b, max, &got, &remaining), want_status) << width << " " << max;
        EXPECT_EQ(got, want_bad) << width << " " << max;
        EXPECT_EQ(remaining, b.size() - at) << width << " " << max;
      }
    }
    // Random bytes: mostly small varints, some stop bits missing.
    for (int round = 0; round < 500; ++round) {
      std::string random(next() % 200, '\0');
      for (char& c : random) c = static_cast<char>(next() % 16 == 0 ? 0x80 | next() % 128 : next() % 128);
      std::vector<int64_t> want_random;
      const absl::Status want_status = by_next(schema, random, &want_random);
      std::vector<int64_t> got;
      size_t remaining;
      EXPECT_EQ(by_rows(schema, random, 1 + next() % 9, &got, &remaining), want_status) << width << " " << round;
      EXPECT_EQ(got, want_random) << width << " " << round;
    }
  }
  const Schema mixed_schema = TestSchema();
  RecordDecoder mixed(&mixed_schema, "");
  int64_t row;
  size_t n = 99;
  EXPECT_THAT(mixed.NextIntRows(&row, 1, &n), StatusIs(absl::StatusCode::kFailedPrecondition, ::testing::_));
  EXPECT_EQ(n, 0u);
}

// A schema of no fields has records of no bytes: NextBatch() and NextIntRows() decode none of
// an empty buffer, and refuse bytes left over as kDataLoss at once (decoding records of no bytes
// would never reach the end of them), nothing decoded.
TEST(RecordCodecTest, RecordsOfNoFieldsLeaveNoBytes) {
  const Schema none(std::vector<Field>{});
  std::vector<Record> records(8);
  int64_t rows[8];
  size_t n = 99;
  RecordDecoder empty(&none, "");
  EXPECT_OK(empty.NextBatch(records.data(), records.size(), &n));
  EXPECT_EQ(n, 0u);
  n = 99;
  EXPECT_OK(empty.NextIntRows(rows, 8, &n));
  EXPECT_EQ(n, 0u);
  for (const std::string bytes : {std::string("\x01"), std::string(100, '\0')}) {
    RecordDecoder batch(&none, bytes);
    n = 99;
    EXPECT_THAT(batch.NextBatch(records.data(), records.size(), &n),
                StatusIs(absl::StatusCode::kDataLoss, "bytes after records of no fields"));
    EXPECT_EQ(n, 0u);
    EXPECT_EQ(batch.Remaining(), bytes.size());
    RecordDecoder by_rows(&none, bytes);
    n = 99;
    EXPECT_THAT(by_rows.NextIntRows(rows, 8, &n),
                StatusIs(absl::StatusCode::kDataLoss, "bytes after records of no fields"));
    EXPECT_EQ(n, 0u);
    EXPECT_EQ(by_rows.Remaining(), bytes.size());
  }
}

// The varint a byte at a time, as the codec writes it and read it before it read a word at a
// time (the format's definition, kept here as the reference).
std::string ReferenceVarint(uint64_t v) {
  std::string out;
  while (v >= 0x80) {
    out.push_back(static_cast<char>(v | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
  return out;
}

// Values whose zig-zag varints have every length from 1 to 10 bytes, and both sides of each
// length's edges.
std::vector<int64_t> VarintEdgeValues() {
  std::vector<int64_t> values = {0, -1, std::numeric_limits<int64_t>::min(),
                                 std::numeric_limits<int64_t>::max()};
  for (int bits = 1; bits < 64; ++bits) {
    const uint64_t edge = uint64_t{1} << bits;
    for (uint64_t z : {edge - 1, edge, edge + 1}) values.push_back(UnZigZag(z));
  }
  return values;
}

// Varints are read a word at a time: the bytes of the reference
// (every length from 1 to 10, integral schemas of 1 to 6 fields and a mixed one), never a
// byte beyond EncodedSizeBound(), and the same values back from Next() and NextBatch(), with
// and without 10 bytes after each record.
TEST(RecordCodecTest, VarintsOfEveryLengthKeepTheReferenceBytes) {
  const std::vector<int64_t> values = VarintEdgeValues();
  std::vector<Schema> schemas;
  for (size_t n = 1; n <= 6; ++n) {
    std::vector<Field> fields;
    for (size_t i = 0; i < n; ++i) fields.push_back({absl::StrCat("f", i), FieldType::kInt64});
    schemas.emplace_back(std::move(fields));
  }
  schemas.push_back(NullableTestSchema());
  for (const Schema& schema : schemas) {
    const bool integral = schema.all_integral();
    std::string buf;
    std::string want;
    Record r(schema.size());
    for (size_t k = 0; k < values.size(); ++k) {
      for (size_t f = 0; f < schema.size(); ++f) r.SetInt(f, values[(k + 3 * f) % values.size()]);
      if (!integral) {
        r.SetString(2, std::string(k % 3, 'x'));
        r.SetDouble(1, 0.25);
        r.SetBool(3, k % 2 == 1);
        r.SetNullTo(5, k % 2 == 0);
        r.SetNullTo(6, false);
        r.SetString(6, "y");
      }
      for (size_t f = 0; f < schema.size(); ++f) {
        const Field& field = schema.field(f);
        if (field.nullable) want.push_back(r.IsNull(f) ? 1 : 0);
        if (field.nullable && r.IsNull(f)) continue;
        switch (field.type) {
          case FieldType::kDouble: want.append(reinterpret_cast<const char*>(&r[f].d), 8); break;
          case FieldType::kBool: want.push_back(r.GetBool(f) ? 1 : 0); break;
          case FieldType::kString: want += ReferenceVarint(r[f].s.size()) + r[f].s; break;
          default: want += ReferenceVarint(ZigZag(r.GetInt(f))); break;
        }
      }
      const size_t bound = EncodedSizeBound(schema, r);
      std::string in_place(bound + 8, '#');
      const char* end = integral ? EncodeIntegralRecordTo(r, schema.size(), &in_place[0])
                                 : EncodeRecordTo(schema, r, &in_place[0]);
      EXPECT_EQ(in_place.substr(bound), "########") << "wrote past the bound";
      EncodeRecord(schema, r, &buf);
      ASSERT_EQ(absl::string_view(in_place.data(), end - in_place.data()),
                absl::string_view(buf).substr(buf.size() - (end - in_place.data())))
          << schema.ToString() << " record " << k;
    }
    ASSERT_EQ(buf, want) << schema.ToString();
    // Every record decoded alone (no bytes after it: the checked path) and in batches.
    RecordDecoder one(&schema, buf);
    RecordDecoder batch(&schema, buf);
    std::vector<Record> got(values.size(), Record(schema.size()));
    size_t n = 0;
    ASSERT_OK(batch.NextBatch(got.data(), got.size(), &n));
    ASSERT_EQ(n, values.size());
    EXPECT_TRUE(batch.Done());
    Record alone(schema.size());
    for (size_t k = 0; k < values.size(); ++k) {
      const size_t start = buf.size() - one.Remaining();
      ASSERT_OK(one.Next(&r));
      const std::string bytes = buf.substr(start, buf.size() - one.Remaining() - start);
      RecordDecoder exact(&schema, bytes);
      ASSERT_OK(exact.Next(&alone));
      EXPECT_TRUE(exact.Done());
      for (size_t f = 0; f < schema.size(); ++f) {
        if (schema.field(f).type == FieldType::kString || r.IsNull(f)) continue;
        const int64_t v = values[(k + 3 * f) % values.size()];
        if (IsIntegral(schema.field(f).type)) {
          ASSERT_EQ(r.GetInt(f), v) << k << " " << f;
          ASSERT_EQ(got[k].GetInt(f), v) << k << " " << f;
          ASSERT_EQ(alone.GetInt(f), v) << k << " " << f;
        }
      }
    }
  }
}

// Varints the encoder never writes still decode as the byte-at-a-time reader decoded them:
// non-minimal ones (0x80 0x00 is 0) and a 10th byte whose high bits fall off, whether the
// word-at-a-time path or the checked one reads them.
TEST(RecordCodecTest, NonMinimalVarintsDecodeAsBefore) {
  const Schema ints({{"k", FieldType::kInt64}});
  const std::pair<std::string, int64_t> cases[] = {
      {std::string("\x80\x00", 2), 0},
      {std::string("\x81\x80\x80\x00", 4), UnZigZag(1)},
      {std::string(9, '\xff') + "\x7f", UnZigZag(~uint64_t{0})},
      {std::string(9, '\xff') + "\x01", UnZigZag(~uint64_t{0})},
      {std::string(8, '\x80') + "\x01", UnZigZag(uint64_t{1} << 56)},
  };
  for (const auto& [bytes, value] : cases) {
    for (size_t tail : {0, 12}) {
      const std::string buf = bytes + std::string(tail, '\x02');  // then records of 1
      RecordDecoder dec(&ints, buf);
      std::vector<Record> got(1 + tail, Record(1));
      size_t n = 0;
      ASSERT_OK(dec.NextBatch(got.data(), got.size(), &n));
      ASSERT_EQ(n, 1 + tail);
      EXPECT_EQ(got[0].GetInt(0), value) << absl::CHexEscape(bytes) << " tail " << tail;
      if (tail > 0) {
        EXPECT_EQ(got[tail].GetInt(0), 1);
      }
    }
  }
}

// A record decoded on its own from a buffer of exactly its bytes (as a join decodes its kept
// rows): varints in the buffer's last 10 bytes are read from the word that ends at the buffer's
// end. Every prefix of the record is kDataLoss naming the field that runs out; the whole record
// decodes exactly. The bytes live in heap blocks of their exact size (ASan sees any read past
// them or before them).
TEST(RecordCodecTest, RecordsInBuffersOfTheirExactSizeDecodeAndPrefixesAreRejected) {
  const Schema ints({{"id", FieldType::kInt64}, {"key", FieldType::kInt64}, {"ts", FieldType::kTimestamp}});
  const Schema mixed({{"id", FieldType::kInt64}, {"s", FieldType::kString}, {"n", FieldType::kInt64, true}});
  const std::vector<int64_t> values = VarintEdgeValues();
  int decoded = 0;
  for (const Schema* schema : {&ints, &mixed}) {
    for (size_t k = 0; k < values.size(); ++k) {
      Record r(schema->size());
      r.SetInt(0, values[k]);
      r.SetInt(2, values[(k * 7 + 3) % values.size()]);
      if (schema == &ints) r.SetInt(1, values[(k * 5 + 1) % values.size()]);
      if (schema == &mixed) r.SetString(1, std::string(k % 4, 'z'));
      std::string enc;
      EncodeRecord(*schema, r, &enc);
      // Where each field's bytes end: a prefix that ends before field i's end fails in field i.
      std::vector<size_t> field_end;
      for (size_t f = 0, at = 0; f < schema->size(); ++f) {
        Record one_field(1);
        const Schema single({schema->field(f)});
        std::string bytes;
        CopyValue(schema->field(f).type, r, f, &one_field, 0);
        EncodeRecord(single, one_field, &bytes);
        at += bytes.size();
        field_end.push_back(at);
      }
      ASSERT_EQ(field_end.back(), enc.size());
      for (size_t len = 0; len <= enc.size(); ++len) {
        // The prefix at the end of a block, after a byte of no record (the decoder's buffer
        // starts after it: the word must not start there).
        std::unique_ptr<char[]> block(new char[len + 1]);
        block[0] = '\x81';
        std::memcpy(block.get() + 1, enc.data(), len);
        {
          RecordDecoder dec(schema, absl::string_view(block.get() + 1, len));
          Record got(schema->size());
          const absl::Status s = dec.Next(&got);
          if (len == enc.size()) {
            ASSERT_OK(s);
            EXPECT_TRUE(dec.Done());
            EXPECT_EQ(got.GetInt(0), r.GetInt(0));
            EXPECT_EQ(got.GetInt(2), r.GetInt(2));
            if (schema == &ints) {
              EXPECT_EQ(got.GetInt(1), r.GetInt(1));
            } else {
              EXPECT_EQ(got.GetString(1), r.GetString(1));
            }
            ++decoded;
          } else {
            size_t f = 0;
            while (field_end[f] <= len) ++f;
            ASSERT_EQ(s.code(), absl::StatusCode::kDataLoss) << k << " len " << len;
            if (schema == &ints) {
              EXPECT_EQ(s.message(), absl::StrCat("corrupt varint in field ", f)) << k << " len " << len;
            }
          }
        }
      }
    }
  }
  EXPECT_EQ(decoded, 2 * static_cast<int>(values.size()));
}

TEST(RecordCodecTest, HugeStringLengthIsRejected) {
  Schema schema({{"s", FieldType::kString}});
  std::string buf;
  PutVarint64(1ULL << 40, &buf);
  buf += "abc";
  RecordDecoder dec(&schema, buf);
  Record out(1);
  EXPECT_THAT(dec.Next(&out), StatusIs(absl::StatusCode::kDataLoss, ::testing::HasSubstr("string")));
}

TEST(RecordJsonTest, EscapesAndFormats) {
  Schema schema = TestSchema();
  Record r(schema.size());
  r.SetInt(0, -7);
  r.SetDouble(1, 0.1);
  r.SetString(2, "a\"b\\c\n");
  r.SetBool(3, true);
  r.SetInt(4, 1000);
  std::string out;
  AppendRecordJson(schema, r, &out);
  EXPECT_EQ(out, R"({"id":-7,"price":0.1,"name":"a\"b\\c\n","ok":true,"ts":1000})");
}

// Bytes an earlier version (no nullable fields) wrote for a NOT NULL schema: the same bytes
// decode to the same values, so keyed state and checkpointed records stay readable.
TEST(RecordCodecTest, NotNullFieldsKeepTheEarlierFormat) {
  Schema schema({{"a", FieldType::kInt64}, {"s", FieldType::kString}, {"b", FieldType::kBool}});
  const std::string earlier("\x0a\x02hi\x01", 5);  // a = 5 (zig-zag 10), s = "hi", b = true
  Record r(3);
  r.SetInt(0, 5);
  r.SetString(1, "hi");
  r.SetBool(2, true);
  std::string buf;
  EncodeRecord(schema, r, &buf);
  EXPECT_EQ(buf, earlier);
  RecordDecoder dec(&schema, earlier);
  Record out(3);
  ASSERT_OK(dec.Next(&out));
  EXPECT_EQ(out.GetInt(0), 5);
  EXPECT_EQ(out.GetString(1), "hi");
  EXPECT_TRUE(out.GetBool(2));
  EXPECT_FALSE(out.HasNulls());
}

TEST(RecordCodecTest, NullableFieldsRoundTripNullsAndValues) {
  Schema schema({{"id", FieldType::kInt64},
                 {"n", FieldType::kInt64, true},
                 {"s", FieldType::kString, true},
                 {"d", FieldType::kDouble, true}});
  Record r(4);
  r.SetInt(0, 1);
  r.SetNull(1);
  r.SetString(2, "x");
  r.SetNull(3);
  std::string buf;
  EncodeRecord(schema, r, &buf);
  EXPECT_EQ(buf, std::string("\x02\x01\x00\x01x\x01", 6));
  r.ClearNulls();
  r.SetInt(1, -2);
  r.SetNull(2);
  r.SetDouble(3, 2.5);
  EncodeRecord(schema, r, &buf);
  RecordDecoder dec(&schema, buf);
  Record out(4);
  ASSERT_OK(dec.Next(&out));
  EXPECT_FALSE(out.IsNull(0));
  EXPECT_TRUE(out.IsNull(1));
  EXPECT_FALSE(out.IsNull(2));
  EXPECT_EQ(out.GetString(2), "x");
  EXPECT_TRUE(out.IsNull(3));
  ASSERT_OK(dec.Next(&out));  // the reused record's null bits follow the second record
  EXPECT_FALSE(out.IsNull(1));
  EXPECT_EQ(out.GetInt(1), -2);
  EXPECT_TRUE(out.IsNull(2));
  EXPECT_FALSE(out.IsNull(3));
  EXPECT_EQ(out.GetDouble(3), 2.5);
  EXPECT_TRUE(dec.Done());
}

TEST(RecordCodecTest, CorruptNullFlagIsDataLoss) {
  Schema schema({{"n", FieldType::kInt64, true}});
  const std::string corrupt("\x07\x02", 2);  // the decoder views its input: keep it alive
  RecordDecoder dec(&schema, corrupt);
  Record out(1);
  EXPECT_THAT(dec.Next(&out), StatusIs(absl::StatusCode::kDataLoss, ::testing::HasSubstr("null flag")));
  RecordDecoder empty(&schema, "");
  EXPECT_THAT(empty.Next(&out), StatusIs(absl::StatusCode::kDataLoss, ::testing::HasSubstr("null flag")));
}

TEST(RecordTest, NullBitsBeyondOneWordAndJson) {
  Record r(130);
  r.SetNull(0);
  r.SetNull(64);
  r.SetNull(129);
  EXPECT_TRUE(r.IsNull(0) && r.IsNull(64) && r.IsNull(129));
  EXPECT_FALSE(r.IsNull(1) || r.IsNull(63) || r.IsNull(65) || r.IsNull(128));
  r.ClearNull(64);
  EXPECT_FALSE(r.IsNull(64));
  r.ClearNulls();
  EXPECT_FALSE(r.HasNulls());

  Schema schema({{"a", FieldType::kInt64, true}, {"s", FieldType::kString, true}, {"b", FieldType::kBool}});
  Record j(3);
  j.SetNull(0);
  j.SetString(1, "q");
  j.SetBool(2, false);
  std::string out;
  AppendRecordJson(schema, j, &out);
  EXPECT_EQ(out, R"({"a":null,"s":"q","b":false})");
  out.clear();
  AppendValueText(FieldType::kInt64, j, 0, &out);
  EXPECT_EQ(out, "");
  EXPECT_EQ(schema.ToString(), "(a int64 null, s string null, b bool)");
  Record copy(1);
  CopyValue(FieldType::kInt64, j, 0, &copy, 0);
  EXPECT_TRUE(copy.IsNull(0));
}

}  // namespace
}  // namespace sluice
