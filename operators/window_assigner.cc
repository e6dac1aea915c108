#include "operators/window_assigner.h"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <set>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "plan/job_spec.h"

namespace sluice::ops {
namespace {

constexpr __int128 kMin = std::numeric_limits<int64_t>::min();
constexpr __int128 kMax = std::numeric_limits<int64_t>::max();

bool Fits(__int128 start, __int128 end) { return start >= kMin && end <= kMax; }

// `node` as a duration > 0 ("1m"); `what` names it in errors.
absl::StatusOr<int64_t> PositiveDuration(const plan::ErrorContext& ec, const YAML::Node& node,
                                         const std::string& what) {
  if (!node.IsScalar()) {
    return ec.At(node, absl::StrCat("'", what, "' must be a duration like 1s or 5m"));
  }
  auto d = plan::ParseDurationMs(node.Scalar());
  if (!d.ok()) return ec.At(node, absl::StrCat("'", what, "': ", d.status().message()));
  if (*d <= 0) return ec.At(node, absl::StrCat("'", what, "' must be positive"));
  return *d;
}

}  // namespace

int64_t WindowSpec::MaxWindowsPerRecord() const {
  if (kind != Kind::kHop) return 1;
  return (size_ms + slide_ms - 1) / slide_ms;
}

absl::StatusOr<WindowSpec> ParseWindowSpec(const plan::ErrorContext& ec, const YAML::Node& config) {
  WindowSpec s;
  int kinds = 0;
  for (const char* k : {"tumble", "hop", "session"}) kinds += config[k] ? 1 : 0;
  if (kinds != 1) {
    return ec.At(config, kinds == 0 ? "windows need one of 'tumble: {size}', 'hop: {size, slide}', "
                                      "'session: {gap}'"
                                    : "give only one of 'tumble', 'hop', 'session'");
  }
  if (YAML::Node t = config["tumble"]) {
    s.kind = WindowSpec::Kind::kTumble;
    if (t.IsScalar()) {
      SLUICE_ASSIGN_OR_RETURN(s.size_ms, PositiveDuration(ec, t, "tumble"));
    } else {
      SLUICE_RETURN_IF_ERROR(plan::CheckKeys(ec, t, "tumble", {"size"}));
      if (!t["size"]) return ec.At(t, "'tumble' needs 'size'");
      SLUICE_ASSIGN_OR_RETURN(s.size_ms, PositiveDuration(ec, t["size"], "size"));
    }
    s.slide_ms = s.size_ms;
  } else if (YAML::Node h = config["hop"]) {
    s.kind = WindowSpec::Kind::kHop;
    SLUICE_RETURN_IF_ERROR(plan::CheckKeys(ec, h, "hop", {"size", "slide"}));
    if (!h["size"] || !h["slide"]) return ec.At(h, "'hop' needs 'size' and 'slide'");
    SLUICE_ASSIGN_OR_RETURN(s.size_ms, PositiveDuration(ec, h["size"], "size"));
    SLUICE_ASSIGN_OR_RETURN(s.slide_ms, PositiveDuration(ec, h["slide"], "slide"));
    if (s.slide_ms > s.size_ms) {
      return ec.At(h["slide"],
                   "'slide' must not exceed 'size' (records between windows would "
                   "belong to none)");
    }
    if (s.MaxWindowsPerRecord() > kMaxWindowsPerRecord) {
      return ec.At(h, absl::StrCat("size / slide = ", s.MaxWindowsPerRecord(),
                                   " windows per record; at most ", kMaxWindowsPerRecord));
    }
  } else {
    YAML::Node g = config["session"];
    s.kind = WindowSpec::Kind::kSession;
    if (g.IsScalar()) {
      SLUICE_ASSIGN_OR_RETURN(s.gap_ms, PositiveDuration(ec, g, "session"));
    } else {
      SLUICE_RETURN_IF_ERROR(plan::CheckKeys(ec, g, "session", {"gap"}));
      if (!g["gap"]) return ec.At(g, "'session' needs 'gap'");
      SLUICE_ASSIGN_OR_RETURN(s.gap_ms, PositiveDuration(ec, g["gap"], "gap"));
    }
  }
  if (YAML::Node o = config["offset"]) {
    if (s.kind == WindowSpec::Kind::kSession) {
      return ec.At(o, "'offset' applies to tumble and hop windows, not session windows");
    }
    if (!o.IsScalar()) return ec.At(o, "'offset' must be a duration like 15s or -15s");
    absl::string_view text = o.Scalar();
    const bool negative = !text.empty() && text[0] == '-';
    if (negative) text.remove_prefix(1);
    auto d = plan::ParseDurationMs(text);
    if (!d.ok()) return ec.At(o, absl::StrCat("'offset': ", d.status().message()));
    if (*d >= s.slide_ms) {
      return ec.At(o, absl::StrCat("|offset| must be smaller than the ",
                                   s.kind == WindowSpec::Kind::kHop ? "slide" : "size", " (",
                                   s.slide_ms, "ms)"));
    }
    s.offset_ms = negative ? -*d : *d;
  }
  return s;
}

__int128 WindowStart(int64_t ts, int64_t offset, int64_t size) {
  int64_t shifted;
  if (!__builtin_sub_overflow(ts, offset, &shifted)) {  // in 64 bits (no 128-bit division)
    int64_t rem64 = shifted % size;
    if (rem64 < 0) rem64 += size;
    return static_cast<__int128>(ts) - rem64;
  }
  __int128 rem = (static_cast<__int128>(ts) - offset) % size;
  if (rem < 0) rem += size;
  return static_cast<__int128>(ts) - rem;
}

void AssignWindows(const WindowSpec& spec, int64_t ts, std::vector<TimeWindow>* out) {
  out->clear();
  switch (spec.kind) {
    case WindowSpec::Kind::kTumble: {
      __int128 start = WindowStart(ts, spec.offset_ms, spec.size_ms);
      __int128 end = start + spec.size_ms;
      if (Fits(start, end)) {
        out->push_back({static_cast<int64_t>(start), static_cast<int64_t>(end)});
      }
      return;
    }
    case WindowSpec::Kind::kHop: {
      __int128 last = WindowStart(ts, spec.offset_ms, spec.slide_ms);
      __int128 first = last;
      while (first - spec.slide_ms > static_cast<__int128>(ts) - spec.size_ms)
        first -= spec.slide_ms;
      for (__int128 start = first; start <= last; start += spec.slide_ms) {
        __int128 end = start + spec.size_ms;
        if (Fits(start, end)) {
          out->push_back({static_cast<int64_t>(start), static_cast<int64_t>(end)});
        }
      }
      return;
    }
    case WindowSpec::Kind::kSession: {
      __int128 end = static_cast<__int128>(ts) + spec.gap_ms;
      if (Fits(ts, end)) out->push_back({ts, static_cast<int64_t>(end)});
      return;
    }
  }
}

TimeWindow MergeSession(absl::Span<const TimeWindow> open, const TimeWindow& w,
                        std::vector<TimeWindow>* absorbed) {
  absorbed->clear();
  // The open sessions are sorted and pairwise apart, so the ones `w` touches are contiguous:
  // from the first whose end reaches w.start to the last whose start is within w.end.
  auto it = std::lower_bound(open.begin(), open.end(), w.start,
                             [](const TimeWindow& s, int64_t start) { return s.end < start; });
  TimeWindow merged = w;
  for (; it != open.end() && it->start <= w.end; ++it) {
    absorbed->push_back(*it);
    merged = merged.Cover(*it);
  }
  return merged;
}

}  // namespace sluice::ops
