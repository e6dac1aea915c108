#include "worker/internal/data_item.h"

#include <algorithm>
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
                   if (b.watermark.has_value()) {
                     msg.set_carried_watermark(b.watermark->ms);
                     msg.set_watermark_records(b.watermark->records);
                     msg.set_watermark_bytes(static_cast<int64_t>(b.watermark->bytes));
                   }
                 },
                 [&](Barrier& b) {
                   msg.set_barrier(b.id);
                   msg.set_priority(b.priority);
                   msg.set_barrier_timeoutable(b.timeoutable);
                   msg.set_barrier_timed_out(b.timed_out);
                   msg.set_barrier_waited_ms(b.waited_ms);
                 },
                 [&](BarrierAnnouncement& a) {
                   msg.set_barrier(a.id);
                   msg.set_priority(true);
                   msg.set_barrier_timed_out(a.timed_out);
                   msg.set_barrier_waited_ms(a.waited_ms);
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
  if (msg->barrier() > 0) {
    return BufferItem(channel, Barrier{msg->barrier(), msg->priority(), msg->barrier_timeoutable(),
                                       msg->barrier_timed_out(),
                                       std::clamp<int64_t>(msg->barrier_waited_ms(), 0,
                                                           kMaxBarrierWaitedMs)});
  }
  if (msg->has_carried_watermark() && msg->num_records() > 0) {
    const int records = std::clamp(msg->watermark_records(), 0, msg->num_records());
    const size_t bytes = static_cast<size_t>(
        std::clamp<int64_t>(msg->watermark_bytes(), 0, static_cast<int64_t>(msg->buffer().size())));
    return BufferItem(channel, RecordBuffer{std::move(*msg->mutable_buffer()), msg->num_records(),
                                            std::move(*msg->mutable_key_groups()),
                                            CarriedWatermark{msg->carried_watermark(), records, bytes}});
  }
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

int SplitCarriedWatermark(BufferItem item, BufferItem (&pieces)[3]) {
  RecordBuffer* b = item.as<RecordBuffer>();
  if (b == nullptr || !b->watermark.has_value()) {
    pieces[0] = std::move(item);
    return 1;
  }
  const CarriedWatermark w = *b->watermark;
  b->watermark.reset();
  const bool before = w.records > 0 && w.bytes > 0;
  const bool after = w.records < b->num_records && w.bytes < b->data.size();
  auto piece = [&](BufferItem::Content content) {
    BufferItem p(item.channel, std::move(content));
    p.restored = item.restored;
    p.continued = true;
    return p;
  };
  int n = 0;
  if (before && after) {
    // The tail is copied (once per watermark); the head keeps the buffer.
    const size_t width =
        b->num_records > 0 ? b->key_groups.size() / static_cast<size_t>(b->num_records) : 0;
    const size_t kg_split = width * static_cast<size_t>(w.records);
    RecordBuffer tail{b->data.substr(w.bytes), b->num_records - w.records,
                      kg_split < b->key_groups.size() ? b->key_groups.substr(kg_split) : ""};
    b->data.resize(w.bytes);
    b->num_records = w.records;
    if (kg_split < b->key_groups.size()) b->key_groups.resize(kg_split);
    pieces[n++] = piece(std::move(*b));
    pieces[n++] = piece(WatermarkAdvance{w.ms});
    pieces[n++] = piece(std::move(tail));
  } else if (after) {
    pieces[n++] = piece(WatermarkAdvance{w.ms});
    pieces[n++] = piece(std::move(*b));
  } else if (before) {
    pieces[n++] = piece(std::move(*b));
    pieces[n++] = piece(WatermarkAdvance{w.ms});
  } else {
    pieces[n++] = piece(WatermarkAdvance{w.ms});
  }
  pieces[n - 1].continued = item.continued;
  return n;
}

void AddChannelStateItem(bool output, int channel, const BufferItem& item,
                         proto::ChannelStateFile* file) {
  if (const RecordBuffer* b = item.as<RecordBuffer>(); b != nullptr && b->watermark.has_value()) {
    BufferItem pieces[3];
    const int n = SplitCarriedWatermark(item.CopyContent(), pieces);
    for (int i = 0; i < n; ++i) AddChannelStateItem(output, channel, pieces[i], file);
    return;
  }
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
