#pragma once

#include <cstdint>
#include <limits>
#include <string>

namespace sluice {

// Event time is milliseconds since the epoch, like timestamp fields. A watermark W travels
// with the records of a channel and says: no record with a timestamp <= W follows (a record
// that does is late). Watermarks of one channel only move forward.

// "No watermark yet" (Flink's Long.MIN_VALUE): the producer has not seen any event time.
inline constexpr int64_t kNoWatermark = std::numeric_limits<int64_t>::min();
// End of event time: an event-time source emits it when its input ends (Flink's MAX_WATERMARK).
inline constexpr int64_t kMaxWatermark = std::numeric_limits<int64_t>::max();

// "12345 (2024-05-01T10:00:00.012Z)", "none" or "end of input", for people.
std::string FormatWatermark(int64_t watermark_ms);

}  // namespace sluice
