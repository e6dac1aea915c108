#include "common/record_codec.h"

#include <limits>

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

}  // namespace
}  // namespace sluice
