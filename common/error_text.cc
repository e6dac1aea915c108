#include "common/error_text.h"

#include <algorithm>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"

namespace sluice {
namespace {

bool IsUtf8Continuation(char c) { return (static_cast<unsigned char>(c) & 0xC0) == 0x80; }

// Moves `i` back to the start of the UTF-8 character it points into (at most 3 bytes).
size_t CharStartAtOrBefore(absl::string_view text, size_t i) {
  for (int n = 0; n < 3 && i > 0 && i < text.size() && IsUtf8Continuation(text[i]); ++n) --i;
  return i;
}

}  // namespace

std::string CapText(absl::string_view text, size_t max_bytes) {
  if (text.size() <= max_bytes) return std::string(text);
  size_t cut = CharStartAtOrBefore(text, max_bytes);
  return absl::StrCat(text.substr(0, cut), "... (", text.size() - cut, " more bytes)");
}

absl::Status CapMessage(const absl::Status& s, size_t max_bytes) {
  if (s.message().size() <= max_bytes) return s;
  absl::Status capped(s.code(), CapText(s.message(), max_bytes));
  s.ForEachPayload([&capped](absl::string_view url, const absl::Cord& payload) {
    capped.SetPayload(url, payload);
  });
  return capped;
}

std::string Excerpt(absl::string_view text, size_t pos, size_t width) {
  if (text.size() <= width) return std::string(text);
  pos = std::min(pos, text.size());
  // Centre the window on `pos`, shifted to stay inside the text.
  size_t begin = pos > width / 2 ? pos - width / 2 : 0;
  begin = std::min(begin, text.size() - width);
  size_t end = begin + width;
  while (begin < end && IsUtf8Continuation(text[begin])) ++begin;  // a whole first character
  end = CharStartAtOrBefore(text, end);                              // and a whole last one
  return absl::StrCat(begin > 0 ? "..." : "", text.substr(begin, end - begin),
                      end < text.size() ? "..." : "");
}

}  // namespace sluice
