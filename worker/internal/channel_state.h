#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "proto/checkpoint.pb.h"
#include "worker/internal/data_item.h"

namespace sluice::worker {

// In-flight data of unaligned checkpoints (proto::ChannelStateFile): which items a subtask
// persists with a checkpoint and replays first on restore. Free functions, any thread. Items
// are converted to and from proto::ChannelStateItem in data_item.h.

inline constexpr int kChannelStateFormat = 1;

// Bytes of records in `file`.
int64_t ChannelStateBytes(const proto::ChannelStateFile& file);

// Writes `file` to `path` durably (temporary file, fsync, rename, fsync of the directory),
// creating the directory. Returns kUnavailable naming the path on failure.
absl::Status WriteChannelState(const std::string& path, const proto::ChannelStateFile& file);

// Reads the channel state at `path`, which must be of checkpoint `checkpoint_id` and subtask
// (`vertex`, `subtask`). Returns kDataLoss naming the file when it is missing, unreadable, of
// another format version or another subtask.
absl::StatusOr<proto::ChannelStateFile> ReadChannelState(const std::string& path,
                                                         int64_t checkpoint_id, int vertex,
                                                         int subtask);

}  // namespace sluice::worker
