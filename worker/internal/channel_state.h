#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "proto/checkpoint.pb.h"
#include "worker/internal/input_gate.h"

namespace sluice::worker {

// In-flight data of unaligned checkpoints (proto::ChannelStateFile): which items a subtask
// persists with a checkpoint and replays first on restore. Free functions, any thread.

inline constexpr int kChannelStateFormat = 1;

// Appends a copy of `item` (records, a watermark or a watermark status) to `file`; `output`:
// it was emitted on the task's output channel `channel`, else received on gate channel
// `channel`.
void AddChannelStateItem(bool output, int channel, const BufferItem& item,
                         proto::ChannelStateFile* file);

// Bytes of records in `file`.
int64_t ChannelStateBytes(const proto::ChannelStateFile& file);

// The item a persisted one stands for (marked `restored`: it takes no credit).
BufferItem FromChannelStateItem(const proto::ChannelStateItem& item);

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
