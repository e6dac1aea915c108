#include "plan/variables.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace sluice::plan {

absl::StatusOr<std::string> ExpandVariables(
    absl::string_view text, absl::string_view source_name,
    const std::function<std::optional<std::string>(const std::string&)>& lookup) {
  std::string out;
  out.reserve(text.size());
  int line = 1, column = 1;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '$' && i + 1 < text.size() && text[i + 1] == '$') {
      out.push_back('$');
      ++i;
      column += 2;
      continue;
    }
    if (c == '$' && i + 1 < text.size() && text[i + 1] == '{') {
      size_t close = text.find('}', i + 2);
      size_t nl = text.find('\n', i + 2);
      if (close == absl::string_view::npos || (nl != absl::string_view::npos && nl < close)) {
        return absl::InvalidArgumentError(absl::StrCat(source_name, ":", line, ":", column, ": unterminated ${"));
      }
      absl::string_view body = text.substr(i + 2, close - i - 2);
      std::string name(body.substr(0, body.find(":-")));
      std::optional<std::string> value = lookup(name);
      if (!value && body.find(":-") != absl::string_view::npos) value = std::string(body.substr(body.find(":-") + 2));
      bool valid = !name.empty();
      for (char ch : name) valid &= absl::ascii_isalnum(ch) || ch == '_';
      if (!valid) {
        return absl::InvalidArgumentError(absl::StrCat(source_name, ":", line, ":", column, ": bad variable name '",
                                                       name, "' (letters, digits and _)"));
      }
      if (!value) {
        return absl::InvalidArgumentError(absl::StrCat(source_name, ":", line, ":", column, ": variable ", name,
                                                       " is not set (export it, or write ${", name,
                                                       ":-default})"));
      }
      out.append(*value);
      column += static_cast<int>(close - i + 1);
      i = close;
      continue;
    }
    out.push_back(c);
    if (c == '\n') {
      ++line;
      column = 1;
    } else {
      ++column;
    }
  }
  return out;
}

}  // namespace sluice::plan
