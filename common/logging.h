#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "spdlog/fmt/fmt.h"
#include "spdlog/spdlog.h"

namespace sluice {

// Sets up the process's logger: timestamps, level, and the component name in every line,
// written to stderr. `level` is one of trace, debug, info, warn, error.
void InitLogging(const std::string& component, const std::string& level = "info");

}  // namespace sluice

// Lets spdlog/fmt format Abseil's own string_view (distinct from std::string_view in the
// Abseil we use) and Status.
template <>
struct fmt::formatter<absl::string_view> : fmt::formatter<fmt::string_view> {
  template <typename Ctx>
  auto format(absl::string_view s, Ctx& ctx) const {
    return fmt::formatter<fmt::string_view>::format(fmt::string_view(s.data(), s.size()), ctx);
  }
};
template <>
struct fmt::formatter<absl::Status> : fmt::formatter<fmt::string_view> {
  template <typename Ctx>
  auto format(const absl::Status& s, Ctx& ctx) const {
    std::string str = s.ToString();
    return fmt::formatter<fmt::string_view>::format(fmt::string_view(str), ctx);
  }
};
