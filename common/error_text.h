#pragma once

#include <cstddef>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace sluice {

// Error messages travel in gRPC status trailers (metadata, a few KiB at most) and are printed
// on one line, so a message never grows with the user's input: text taken from the input is
// echoed as an excerpt, and whole messages are capped at the edges (the RPC layer, the CLI).

// Largest error message sent over gRPC or printed; well under gRPC's 8 KiB metadata limit.
inline constexpr size_t kMaxErrorMessageBytes = 2048;

// `text` if it has at most `max_bytes` bytes; else its first bytes (cut at a UTF-8 character
// boundary) followed by "... (N more bytes)", at most `max_bytes` + 32 bytes in all.
std::string CapText(absl::string_view text, size_t max_bytes = kMaxErrorMessageBytes);

// `s` with its message capped by CapText (code and payloads kept); OK stays OK.
absl::Status CapMessage(const absl::Status& s, size_t max_bytes = kMaxErrorMessageBytes);

// At most `width` bytes of `text` around byte offset `pos` (clamped to the text), with "..."
// where text was left out on either side; never cuts a UTF-8 character. `text` itself when it
// fits in `width`.
std::string Excerpt(absl::string_view text, size_t pos, size_t width);

}  // namespace sluice
