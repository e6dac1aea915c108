#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "proto/checkpoint.pb.h"
#include "proto/data.pb.h"

namespace sluice::worker {

struct BufferItem;

// The kinds of what travels on a channel, in channel order (Flink's buffers and events).

// Encoded records (common/record_codec.h) of one channel. On an edge that carries key groups
// (plan::Edge::carry_key_groups), `key_groups` holds each record's key group in record order,
// little-endian, one byte each when the job's max parallelism is at most 256, else two
// (KeyGroupWidth()); empty when none came (other edges, buffers restored from channel state).
// `watermark`: a watermark emitted while the buffer was filled, which rides with it (sender
// side only: the consumer's gate splits such a buffer, see SplitCarriedWatermark()).
struct CarriedWatermark {
  int64_t ms = 0;
  int records = 0;   // records of the buffer before the watermark
  size_t bytes = 0;  // their bytes
};
struct RecordBuffer {
  std::string data;
  int num_records = 0;
  std::string key_groups = {};
  std::optional<CarriedWatermark> watermark = {};
};

// Bytes per key group in RecordBuffer::key_groups for `max_parallelism`.
inline size_t KeyGroupWidth(int max_parallelism) { return max_parallelism <= 256 ? 1 : 2; }
// Checkpoint barrier `id`. `priority`: sent without credit (unaligned-capable, see
// ChannelWriter::SendPriority); the consumer returns no credit for it. `timeoutable` (not
// priority): sent aligned, in place with credit, but its checkpoint may go unaligned (a source's
// barrier in mode auto, or one a task forwards after aligning: the consumer may time its
// alignment out). `timed_out` (priority): sent
// aligned and converted to priority by its sender after aligned_timeout: a consumer in mode auto
// takes the checkpoint unaligned at once (Flink's CheckpointBarrier#asUnaligned).
struct Barrier {
  int64_t id = 0;
  bool priority = false;
  bool timeoutable = false;
  bool timed_out = false;
  // How long its checkpoint had already waited when it was sent, ms (a sender's part of
  // aligned_timeout; see DataMessage.barrier_waited_ms): 0..kMaxBarrierWaitedMs as received.
  int64_t waited_ms = 0;
};
// The most a received barrier's wait is taken as (a corrupt value above it would overflow the
// receiver's nanosecond arithmetic): about 11.6 days, beyond any aligned_timeout.
inline constexpr int64_t kMaxBarrierWaitedMs = 1'000'000'000;
// Made by the gate for a priority barrier `id`: its announcement, put ahead of every queued
// item; `overtaken` holds copies of the items of its channel queued before the barrier (which
// stays in place behind them). Never crosses the wire.
struct BarrierAnnouncement {
  int64_t id = 0;
  std::vector<BufferItem> overtaken;
  bool timed_out = false;  // the barrier's (see Barrier)
  int64_t waited_ms = 0;   // the barrier's (see Barrier)
};
// The channel's event-time watermark advanced to `ms`.
struct WatermarkAdvance {
  int64_t ms = 0;
};
// The channel turned idle, or active again.
struct WatermarkStatusChange {
  bool idle = false;
};
// The producer's last item on the channel.
struct EndOfPartition {};

// One unit on a channel: its kind and content, and the channel it came on.
struct BufferItem {
  using Content = std::variant<RecordBuffer, Barrier, BarrierAnnouncement, WatermarkAdvance,
                               WatermarkStatusChange, EndOfPartition>;

  int channel = 0;
  Content content;
  // Replayed from a checkpoint's channel state: it came through no gate, so no credit.
  bool restored = false;
  // A piece of a message split by SplitCarriedWatermark() other than its last: the message's
  // credit is returned with its last piece.
  bool continued = false;

  BufferItem() = default;
  BufferItem(int channel, Content content) : channel(channel), content(std::move(content)) {}

  template <typename T>
  const T* as() const {
    return std::get_if<T>(&content);
  }
  template <typename T>
  T* as() {
    return std::get_if<T>(&content);
  }
  // A priority barrier or its announcement.
  bool IsPriority() const;
  // Whether the consumer returns a credit once it has processed the item.
  bool TakesCredit() const { return !restored && !continued && !IsPriority(); }
  // A copy of a records, watermark or watermark status item (with its channel), for in-flight
  // data.
  BufferItem CopyContent() const { return BufferItem(channel, content); }
};

// Conversions to and from protobuf, the one place they happen.

// The wire message of `item` (a barrier announcement has none: it is sent as its barrier).
proto::DataMessage ToMessage(BufferItem item);
// The item a received message carries, on `channel` (its buffer is moved out of `msg`). A
// message says one thing; if it sets several, the first of end of partition, barrier, watermark,
// watermark status counts, else its buffer.
BufferItem FromMessage(proto::DataMessage* msg, int channel);

// Splits a records item carrying a watermark into its pieces in channel order: the records
// before the watermark (if any), the watermark, the records after it (if any), into
// `pieces`; returns how many. Every piece but the last is `continued`. Any other item is
// returned as it is (one piece). Offsets beyond the buffer put the watermark after it.
int SplitCarriedWatermark(BufferItem item, BufferItem (&pieces)[3]);

// Appends `item` (records, a watermark or a watermark status; a barrier or end of partition is
// stored as an empty buffer) to in-flight data `file`: input side (`output` false, `channel`:
// the gate's channel) or output side (`channel`: the task's output channel index). A buffer
// carrying a watermark is stored as its pieces (SplitCarriedWatermark()). A buffer's
// key groups are not stored: restored, its records come without (their consumer hashes).
void AddChannelStateItem(bool output, int channel, const BufferItem& item,
                         proto::ChannelStateFile* file);
// The item a persisted one stands for (marked `restored`: it takes no credit).
BufferItem FromChannelStateItem(const proto::ChannelStateItem& item);

}  // namespace sluice::worker
