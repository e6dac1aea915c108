#include "common/watermark.h"

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

namespace sluice {

std::string FormatWatermark(int64_t watermark_ms) {
  if (watermark_ms == kNoWatermark) return "none";
  if (watermark_ms == kMaxWatermark) return "end of input";
  return absl::StrCat(watermark_ms, " (",
                      absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::FromUnixMillis(watermark_ms),
                                       absl::UTCTimeZone()),
                      ")");
}

}  // namespace sluice
