#include "common/error_text.h"

#include <string>

#include "absl/strings/cord.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sluice {
namespace {

TEST(ErrorTextTest, CapTextKeepsShortTextAndCutsLongText) {
  EXPECT_EQ(CapText("short", 10), "short");
  EXPECT_EQ(CapText("0123456789", 10), "0123456789");
  EXPECT_EQ(CapText("0123456789abc", 10), "0123456789... (3 more bytes)");
  // Never inside a UTF-8 character: "é" is 2 bytes at offsets 9-10.
  EXPECT_EQ(CapText("012345678\xc3\xa9xyz", 10), "012345678... (5 more bytes)");
  EXPECT_LE(CapText(std::string(1 << 20, 'x')).size(), kMaxErrorMessageBytes + 32);
}

TEST(ErrorTextTest, CapMessageKeepsCodeAndPayloads) {
  absl::Status s = absl::InvalidArgumentError(std::string(5000, 'x'));
  s.SetPayload("type.sluice.dev/test", absl::Cord("p"));
  absl::Status capped = CapMessage(s, 100);
  EXPECT_EQ(capped.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(capped.message(), std::string(100, 'x') + "... (4900 more bytes)");
  EXPECT_EQ(capped.GetPayload("type.sluice.dev/test").value_or(absl::Cord()), "p");
  EXPECT_TRUE(CapMessage(absl::OkStatus()).ok());
}

TEST(ErrorTextTest, ExcerptIsAWindowAroundThePosition) {
  EXPECT_EQ(Excerpt("a + b", 2, 10), "a + b");
  const std::string text = "0123456789abcdefghijklmnopqrstuvwxyz";
  EXPECT_EQ(Excerpt(text, 0, 10), "0123456789...");
  EXPECT_EQ(Excerpt(text, 20, 10), "...fghijklmno...");
  EXPECT_EQ(Excerpt(text, 35, 10), "...qrstuvwxyz");
  EXPECT_EQ(Excerpt(text, 1000, 10), "...qrstuvwxyz");
  // Whole UTF-8 characters only: "€" is 3 bytes.
  const std::string euros = "\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac";
  EXPECT_EQ(Excerpt(euros, 7, 5), "...\xe2\x82\xac...");
}

}  // namespace
}  // namespace sluice
