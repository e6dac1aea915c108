#pragma once

#include <chrono>
#include <string>
#include <thread>

#include "gtest/gtest.h"

namespace sluice::testing {

// Waits for `condition` (a callable returning bool) to hold, looking at it every `poll`, for at
// most `timeout`. Returns success, or a failure naming `what` for the test to report:
//   ASSERT_TRUE(WaitFor([&] { return Checkpoints() > 0; }, std::chrono::seconds(20),
//                       "a completed checkpoint"));
// Tests wait on the condition they need this way, never by sleeping a guessed time; the poll
// interval is only how often the condition is evaluated.
template <typename Condition>
::testing::AssertionResult WaitFor(Condition condition, std::chrono::milliseconds timeout,
                                   const std::string& what,
                                   std::chrono::milliseconds poll = std::chrono::milliseconds(20)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!condition()) {
    if (std::chrono::steady_clock::now() >= deadline) {
      return ::testing::AssertionFailure()
             << "gave up after " << timeout.count() << " ms waiting for " << what;
    }
    std::this_thread::sleep_for(poll);
  }
  return ::testing::AssertionSuccess();
}

}  // namespace sluice::testing
