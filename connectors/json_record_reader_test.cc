#include "connectors/json_record_reader.h"

#include "common/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sluice::connectors {
namespace {

using ::sluice::testing::StatusIs;

class JsonRecordReaderTest : public ::testing::Test {
 protected:
  absl::Status Read(absl::string_view text, size_t fields = 5) {
    return ReadJsonRecord(text, schema_, fields, &out_, &reader_);
  }
  Schema schema_{{{"user", FieldType::kString}, {"n", FieldType::kInt64}, {"x", FieldType::kDouble},
                  {"ok", FieldType::kBool}, {"ts", FieldType::kTimestamp}}};
  Record out_{5};
  JsonRecordReader reader_;
};

TEST_F(JsonRecordReaderTest, ReadsFieldsInAnyOrderAndIgnoresOthers) {
  ASSERT_OK(Read(R"({"ts": 1798761600000, "extra": {"a": [1, {"n": "no"}]}, "x": 2, "ok": true,
                     "user": "a name longer than sixteen bytes", "n": -7, "more": null})"));
  EXPECT_EQ(out_.GetString(0), "a name longer than sixteen bytes");
  EXPECT_EQ(out_.GetInt(1), -7);
  EXPECT_EQ(out_.GetDouble(2), 2.0);
  EXPECT_TRUE(out_.GetBool(3));
  EXPECT_EQ(out_.GetInt(4), 1798761600000);
  // The reader is reused record after record.
  ASSERT_OK(Read(R"({"user": "b", "n": 1, "x": 0.5, "ok": false, "ts": 0})"));
  EXPECT_EQ(out_.GetString(0), "b");
  EXPECT_EQ(out_.GetDouble(2), 0.5);
  EXPECT_FALSE(out_.GetBool(3));
}

TEST_F(JsonRecordReaderTest, ReadsOnlyTheLeadingFieldsItIsAskedFor) {
  // As for a source that fills its last field from the Kafka timestamp.
  ASSERT_OK(Read(R"({"user": "a", "n": 1, "x": 2, "ok": true})", 4));
  EXPECT_EQ(out_.GetInt(1), 1);
  EXPECT_OK(Read(R"({"user": "a", "n": 1, "x": 2, "ok": true, "ts": "ignored"})", 4));
}

TEST_F(JsonRecordReaderTest, ErrorsNameTheField) {
  EXPECT_THAT(Read("this is not json"),
              StatusIs(absl::StatusCode::kInvalidArgument, "not valid JSON (syntax error at byte 2)"));
  EXPECT_THAT(Read("[1, 2]"), StatusIs(absl::StatusCode::kInvalidArgument, "not a JSON object"));
  EXPECT_THAT(Read("42"), StatusIs(absl::StatusCode::kInvalidArgument, "not a JSON object"));
  EXPECT_THAT(Read(R"({"user": "a", "n": 1, "x": 1)"),
              StatusIs(absl::StatusCode::kInvalidArgument, "not valid JSON (syntax error at byte 29)"));
  EXPECT_THAT(Read(R"({"user": "a", "x": 1, "ok": true, "ts": 1})"),
              StatusIs(absl::StatusCode::kInvalidArgument, "missing field 'n'"));
  EXPECT_THAT(Read(R"({"user": "a", "n": 1.5, "x": 1, "ok": true, "ts": 1})"),
              StatusIs(absl::StatusCode::kInvalidArgument, "field 'n' is not an integer"));
  EXPECT_THAT(Read(R"({"user": 3, "n": 1, "x": 1, "ok": true, "ts": 1})"),
              StatusIs(absl::StatusCode::kInvalidArgument, "field 'user' is not a string"));
  EXPECT_THAT(Read(R"({"user": "a", "n": 1, "x": "1", "ok": true, "ts": 1})"),
              StatusIs(absl::StatusCode::kInvalidArgument, "field 'x' is not a number"));
  EXPECT_THAT(Read(R"({"user": "a", "n": 1, "x": 1, "ok": 1, "ts": 1})"),
              StatusIs(absl::StatusCode::kInvalidArgument, "field 'ok' is not a boolean"));
  EXPECT_THAT(Read(R"({"user": "a", "n": {"v": 1}, "x": 1, "ok": true, "ts": 1})"),
              StatusIs(absl::StatusCode::kInvalidArgument, "field 'n' is not an integer"));
  EXPECT_THAT(Read(R"({"user": "a", "n": 18446744073709551615, "x": 1, "ok": true, "ts": 1})"),
              StatusIs(absl::StatusCode::kInvalidArgument, "field 'n' is not an integer"));
  EXPECT_THAT(Read(R"({"user": null, "n": 1, "x": 1, "ok": true, "ts": 1})"),
              StatusIs(absl::StatusCode::kInvalidArgument, "field 'user' is not a string"));
}

}  // namespace
}  // namespace sluice::connectors
