#include "worker/internal/data_item.h"

#include <utility>

namespace sluice::worker {

namespace {

template <class... F>
struct Overloaded : F... {
  using F::operator()...;
};
template <class... F>
Overloaded(F...) -> Overloaded<F...>;

proto::WatermarkStatus StatusToProto(bool idle) {
  return idle ? proto::WATERMARK_IDLE : proto::WATERMARK_ACTIVE;
}

}  // namespace

bool BufferItem::IsPriority() const {
  if (const Barrier* b = as<Barrier>()) return b->priority;
  return as<BarrierAnnouncement>() != nullptr;
}

proto::DataMessage ToMessage(BufferItem item) {
  proto::DataMessage msg;
  std::visit(Overloaded{
                 [&](RecordBuffer& b) {
                   msg.set_buffer(std::move(b.data));
                   msg.set_num_records(b.num_records);
                   if (!b.key_groups.empty()) msg.set_key_groups(std::move(b.key_groups));
                 },
                 [&](Barrier& b) {
                   msg.set_barrier(b.id);
                   msg.set_priority(b.priority);
                 },
                 [&](BarrierAnnouncement& a) {
                   msg.set_barrier(a.id);
                   msg.set_priority(true);
                 },
                 [&](WatermarkAdvance& w) { msg.set_watermark(w.ms); },
                 [&](WatermarkStatusChange& s) { msg.set_watermark_status(StatusToProto(s.idle)); },
                 [&](EndOfPartition&) { msg.set_end_of_partition(true); },
             },
             item.content);
  return msg;
}

BufferItem FromMessage(proto::DataMessage* msg, int channel) {
  if (msg->end_of_partition()) return BufferItem(channel, EndOfPartition{});
  if (msg->barrier() > 0) return BufferItem(channel, Barrier{msg->barrier(), msg->priority()});
  if (msg->has_watermark()) return BufferItem(channel, WatermarkAdvance{msg->watermark()});
  if (msg->watermark_status() == proto::WATERMARK_IDLE) {
    return BufferItem(channel, WatermarkStatusChange{true});
  }
  if (msg->watermark_status() == proto::WATERMARK_ACTIVE) {
    return BufferItem(channel, WatermarkStatusChange{false});
  }
  return BufferItem(channel, RecordBuffer{std::move(*msg->mutable_buffer()), msg->num_records(),
                                          std::move(*msg->mutable_key_groups())});
}

void AddChannelStateItem(bool output, int channel, const BufferItem& item,
                         proto::ChannelStateFile* file) {
  proto::ChannelStateItem* p = file->add_items();
  p->set_output(output);
  p->set_channel(channel);
  if (const RecordBuffer* b = item.as<RecordBuffer>()) {
    p->set_buffer(b->data);
    p->set_num_records(b->num_records);
  } else if (const WatermarkAdvance* w = item.as<WatermarkAdvance>()) {
    p->set_watermark(w->ms);
  } else if (const WatermarkStatusChange* s = item.as<WatermarkStatusChange>()) {
    p->set_watermark_status(StatusToProto(s->idle));
  }
}

BufferItem FromChannelStateItem(const proto::ChannelStateItem& p) {
  BufferItem item;
  item.channel = p.channel();
  if (p.has_watermark()) {
    item.content = WatermarkAdvance{p.watermark()};
  } else if (p.watermark_status() == proto::WATERMARK_IDLE) {
    item.content = WatermarkStatusChange{true};
  } else if (p.watermark_status() == proto::WATERMARK_ACTIVE) {
    item.content = WatermarkStatusChange{false};
  } else {
    item.content = RecordBuffer{p.buffer(), p.num_records()};
  }
  item.restored = true;
  return item;
}

}  // namespace sluice::worker
