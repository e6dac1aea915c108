#pragma once

// gtest helpers for absl::Status, which Debian's Abseil does not ship.

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sluice::testing {

inline const absl::Status& GetStatus(const absl::Status& s) { return s; }
template <typename T>
const absl::Status& GetStatus(const absl::StatusOr<T>& s) {
  return s.status();
}

MATCHER_P2(StatusIs, code, message_matcher, "") {
  const absl::Status& s = ::sluice::testing::GetStatus(arg);
  if (s.code() != code) {
    *result_listener << "status is " << s.ToString();
    return false;
  }
  return ::testing::ExplainMatchResult(message_matcher, std::string(s.message()),
                                       result_listener);
}

}  // namespace sluice::testing

#define ASSERT_OK(expr) ASSERT_TRUE((::sluice::testing::GetStatus(expr)).ok()) \
    << (::sluice::testing::GetStatus(expr)).ToString()
#define EXPECT_OK(expr) EXPECT_TRUE((::sluice::testing::GetStatus(expr)).ok()) \
    << (::sluice::testing::GetStatus(expr)).ToString()
