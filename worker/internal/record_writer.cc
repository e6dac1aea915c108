#include "worker/internal/record_writer.h"

#include <algorithm>
#include <limits>
#include <optional>

#include "absl/base/optimization.h"
#include "absl/strings/str_cat.h"
#include "common/key_groups.h"
#include "common/record_codec.h"
#include "common/status.h"
#include "worker/internal/channel_state.h"

namespace sluice::worker {

// One output edge: serializes its records into per-channel buffers and sends full (or timed
// out) buffers to the channel writers, backlogging those without credit.
class RecordWriter::EdgeOutput {
 public:
  // Room of a channel's buffer: a full buffer and the largest record usually seen after it.
  static constexpr size_t kPendingCapacity = kOutputBufferBytes + 1024;
  static constexpr size_t kGrowBytes = 4096;
  // Key groups a channel's buffer is first given room for (records of ~8 bytes fill a buffer).
  static constexpr size_t kPendingKeyGroups = kOutputBufferBytes / 8;

  EdgeOutput(const plan::Edge* edge, int max_parallelism,
             std::vector<std::unique_ptr<ChannelWriter>> channels, ops::KeyHasher hasher,
             Clock* clock)
      : edge_(edge),
        max_parallelism_(max_parallelism),
        channels_(std::move(channels)),
        hasher_(std::move(hasher)),
        clock_(clock),
        pending_(channels_.size()),
        pending_bytes_(channels_.size()),
        pending_records_(channels_.size()),
        integral_(edge->schema.all_integral()),
        num_fields_(edge->schema.size()),
        carry_(edge->carry_key_groups),
        key_group_width_(KeyGroupWidth(max_parallelism)),
        pending_key_groups_(channels_.size()),
        pending_watermark_(channels_.size()),
        backlog_(channels_.size()),
        queued_barrier_at_(channels_.size(), -1) {
    for (auto& p : pending_) p.reserve(kPendingCapacity);
    if (carry_) {
      for (auto& k : pending_key_groups_) k.reserve(kPendingKeyGroups * key_group_width_);
    }
  }

  void AddCounters(MetricsRegistry* metrics, const Labels& base, const std::string& owner,
                   const std::vector<std::string>& targets) {
    for (size_t i = 0; i < channels_.size(); ++i) {
      Labels l = base;
      l.push_back({"edge", absl::StrCat(edge_->id)});
      l.push_back({"target", targets[i]});
      bytes_.push_back(metrics->AddCounter("sluice_channel_bytes_sent_total",
                                           "Bytes of records sent per output channel", l, owner));
      buffers_.push_back(metrics->AddCounter("sluice_channel_buffers_sent_total",
                                             "Buffers sent per output channel", l, owner));
      converted_.push_back(metrics->AddCounter(
          "sluice_channel_barriers_converted_total",
          "Checkpoint barriers sent in place that overtook their backlog after aligned_timeout",
          l, owner));
      // A plain gauge the task thread refreshes after each send: a callback into the writer
      // could outlive it (metrics are rendered outside the registry lock).
      credit_wait_.push_back(metrics->AddGauge(
          "sluice_channel_credit_wait_seconds",
          "Seconds the sender spent blocked waiting for credit", l, owner));
    }
  }

  const plan::Edge& edge() const { return *edge_; }

  absl::Status Emit(const Record& r) {
    switch (edge_->partition) {
      case plan::Partition::kForward: return Append(0, r);
      case plan::Partition::kHash: {
        const int kg = KeyGroupForHash(hasher_.Hash(r), max_parallelism_);
        const int c = SubtaskForKeyGroup(kg, max_parallelism_, static_cast<int>(channels_.size()));
        if (carry_) AppendKeyGroup(c, kg);
        return Append(c, r);
      }
      case plan::Partition::kRebalance: {
        size_t c = next_++;
        if (next_ == channels_.size()) next_ = 0;
        return Append(c, r);
      }
      case plan::Partition::kBroadcast:
        for (size_t c = 0; c < channels_.size(); ++c) SLUICE_RETURN_IF_ERROR(Append(c, r));
        return absl::OkStatus();
    }
    return absl::OkStatus();
  }

  // Emit() of records[0..n) in order: a hash edge finds the channels of up to kHashRun
  // records, then encodes them.
  absl::Status EmitBatch(const Record* records, size_t n) {
    if (edge_->partition != plan::Partition::kHash) {
      for (size_t i = 0; i < n; ++i) SLUICE_RETURN_IF_ERROR(Emit(records[i]));
      return absl::OkStatus();
    }
    constexpr size_t kHashRun = 64;
    uint64_t hash[kHashRun];
    int channel[kHashRun];
    int key_group[kHashRun];
    const int channels = static_cast<int>(channels_.size());
    for (size_t start = 0; start < n; start += kHashRun) {
      const size_t run = std::min(kHashRun, n - start);
      hasher_.HashBatch(records + start, run, hash);
      for (size_t i = 0; i < run; ++i) {
        key_group[i] = KeyGroupForHash(hash[i], max_parallelism_);
        channel[i] = SubtaskForKeyGroup(key_group[i], max_parallelism_, channels);
      }
      if (integral_ && channels <= kMaxRunChannels) {
        absl::Status appended;
        switch (num_fields_) {  // records of 1 to 4 integers: loops of their own, unrolled
          case 1: appended = AppendIntegralRun<1>(records + start, channel, key_group, run); break;
          case 2: appended = AppendIntegralRun<2>(records + start, channel, key_group, run); break;
          case 3: appended = AppendIntegralRun<3>(records + start, channel, key_group, run); break;
          case 4: appended = AppendIntegralRun<4>(records + start, channel, key_group, run); break;
          default: appended = AppendIntegralRun<0>(records + start, channel, key_group, run); break;
        }
        SLUICE_RETURN_IF_ERROR(appended);
        continue;
      }
      for (size_t i = 0; i < run; ++i) {
        if (carry_) AppendKeyGroup(channel[i], key_group[i]);
        SLUICE_RETURN_IF_ERROR(Append(channel[i], records[start + i]));
      }
    }
    return absl::OkStatus();
  }

  int64_t pending_since() const { return pending_since_; }

  absl::Status FlushAll() {
    for (size_t c = 0; c < channels_.size(); ++c) {
      if (pending_records_[c] > 0 || pending_watermark_[c].has_value()) {
        SLUICE_RETURN_IF_ERROR(Flush(c, false));
      }
    }
    pending_since_ = 0;
    return absl::OkStatus();
  }

  absl::Status EndOfPartition() {
    SLUICE_RETURN_IF_ERROR(FlushAll());
    for (size_t c = 0; c < channels_.size(); ++c) {
      SLUICE_RETURN_IF_ERROR(Deliver(c, BufferItem(0, worker::EndOfPartition{}), false));
    }
    for (size_t c = 0; c < channels_.size(); ++c) SLUICE_RETURN_IF_ERROR(DrainBlocking(c, 0));
    for (auto& ch : channels_) SLUICE_RETURN_IF_ERROR(ch->Close());
    return absl::OkStatus();
  }

  // Sends checkpoint barrier `id` on every channel, after everything emitted before it; with
  // `priority`, ahead of the backlog, whose copies it adds to `in_flight` (channel indices
  // offset by `first_channel`).
  absl::Status EmitBarrier(int64_t id, bool priority, bool timed_out, int64_t waited_ms,
                           int first_channel, proto::ChannelStateFile* in_flight) {
    SLUICE_RETURN_IF_ERROR(FlushAll());
    for (size_t c = 0; c < channels_.size(); ++c) {
      BufferItem b(0, Barrier{id, priority, /*timeoutable=*/false, timed_out, waited_ms});
      if (priority) {
        SLUICE_RETURN_IF_ERROR(channels_[c]->SendPriority(std::move(b)));
        StoreBacklog(c, backlog_[c].size(), first_channel, in_flight);
      } else {
        SLUICE_RETURN_IF_ERROR(Deliver(c, std::move(b), false));
      }
    }
    return absl::OkStatus();
  }

  // Sends timeoutable barrier `id` in place on every channel, after everything emitted before
  // it; where it waits in a backlog, its place is kept for ConvertQueuedBarrier(). Its
  // checkpoint started at `origin_nanos` (clock_): the barrier says how long ago when it leaves.
  absl::Status EmitTimeoutableBarrier(int64_t id, int64_t origin_nanos) {
    SLUICE_RETURN_IF_ERROR(FlushAll());
    barrier_origin_nanos_ = origin_nanos;
    for (size_t c = 0; c < channels_.size(); ++c) {
      BufferItem b(0, Barrier{id, /*priority=*/false, /*timeoutable=*/true, false, WaitedMs()});
      const size_t at = backlog_[c].size();
      SLUICE_RETURN_IF_ERROR(Deliver(c, std::move(b), false));
      if (backlog_[c].size() > at) queued_barrier_at_[c] = static_cast<int>(at);
    }
    return absl::OkStatus();
  }

  // Whether a barrier of EmitTimeoutableBarrier() still waits in a backlog.
  bool HasQueuedBarrier() const {
    for (int at : queued_barrier_at_) {
      if (at >= 0) return true;
    }
    return false;
  }

  // On each channel where the timeoutable barrier still waits in the backlog: sends it with
  // priority (`timed_out`) ahead of the backlog and adds copies of the items it overtakes (those
  // before it) to `in_flight` (channel indices offset by `first_channel`), as EmitBarrier() does
  // with a priority barrier. The items after it stay queued behind.
  absl::Status ConvertQueuedBarrier(int first_channel, proto::ChannelStateFile* in_flight) {
    for (size_t c = 0; c < channels_.size(); ++c) {
      const int at = queued_barrier_at_[c];
      if (at < 0) continue;
      std::deque<BufferItem>& q = backlog_[c];
      Barrier b = *q[at].as<Barrier>();
      b.timeoutable = false;
      b.timed_out = true;
      b.waited_ms = WaitedMs();
      q.erase(q.begin() + at);
      queued_barrier_at_[c] = -1;
      SLUICE_RETURN_IF_ERROR(channels_[c]->SendPriority(BufferItem(0, b)));
      if (!converted_.empty()) converted_[c]->Add();
      StoreBacklog(c, at, first_channel, in_flight);
    }
    return absl::OkStatus();
  }

  // Takes the timeoutable barrier out of each backlog where it still waits (it is never sent).
  void DropQueuedBarrier() {
    for (size_t c = 0; c < channels_.size(); ++c) {
      const int at = queued_barrier_at_[c];
      if (at < 0) continue;
      backlog_[c].erase(backlog_[c].begin() + at);
      queued_barrier_at_[c] = -1;
    }
  }

  // Sends backlogged buffers while credit lasts, waiting for it until `deadline_nanos`
  // (Clock::Real(); 0: not at all) or an Interrupt() of the writer. Returns whether every
  // backlog is empty.
  absl::StatusOr<bool> Drain(int64_t deadline_nanos) {
    for (size_t c = 0; c < channels_.size(); ++c) {
      std::deque<BufferItem>& q = backlog_[c];
      while (!q.empty()) {
        StampQueuedBarrier(c);
        SLUICE_ASSIGN_OR_RETURN(bool sent, channels_[c]->Offer(q.front(), deadline_nanos));
        if (!sent) return false;
        PopFront(c);
        UpdateCreditWait(c);
      }
    }
    return true;
  }

  bool HasBacklog() const {
    for (const auto& q : backlog_) {
      if (!q.empty()) return true;
    }
    return false;
  }

  void PushRestored(size_t c, BufferItem item) { backlog_[c].push_back(std::move(item)); }

  // The watermark goes into each channel's pending buffer behind its records (replacing an
  // older, lower one not sent yet: watermarks only advance; records between the two then see
  // the older watermark downstream, as if the newer had come later) and leaves with the buffer,
  // when it is full or times out (alone if no record follows). Sends nothing itself.
  void EmitWatermark(int64_t watermark_ms) {
    for (size_t c = 0; c < channels_.size(); ++c) {
      std::optional<CarriedWatermark>& w = pending_watermark_[c];
      if (w.has_value() && w->ms >= watermark_ms) continue;
      w = CarriedWatermark{watermark_ms, pending_records_[c], pending_bytes_[c]};
    }
    if (pending_since_ == 0) pending_since_ = clock_->NowNanos();
  }

  absl::Status EmitWatermarkStatus(bool idle) {
    SLUICE_RETURN_IF_ERROR(FlushAll());
    for (size_t c = 0; c < channels_.size(); ++c) {
      SLUICE_RETURN_IF_ERROR(Deliver(c, BufferItem(0, WatermarkStatusChange{idle}), true));
    }
    return absl::OkStatus();
  }

  const std::vector<std::unique_ptr<ChannelWriter>>& channels() const { return channels_; }

 private:
  // Adds key group `kg` of the record about to be appended to channel `c` (RecordBuffer's
  // layout), before Append(), which may send the buffer.
  void AppendKeyGroup(size_t c, int kg) {
    std::string& k = pending_key_groups_[c];
    k.push_back(static_cast<char>(kg & 0xff));
    if (key_group_width_ == 2) k.push_back(static_cast<char>(kg >> 8));
  }

  // Channels of an edge whose hash runs AppendIntegralRun() encodes.
  static constexpr int kMaxRunChannels = 16;

  // Append() of records[0..n) of an integral edge to channels channel[0..n) (key groups
  // key_group[0..n) if carried): the same bytes, with each channel's write position, room,
  // record count and key-group position kept in locals for the run (the encoder's byte stores
  // could otherwise alias every member, which the compiler then reloads per record). On a
  // failed send the channels keep what was appended before it. REQUIRES: integral_, at most
  // kMaxRunChannels channels; kFields, when not 0, is num_fields_ (a constant the compiler
  // unrolls).
  template <size_t kFields>
  absl::Status AppendIntegralRun(const Record* records, const int* channel, const int* key_group,
                                 size_t n) {
    if (n == 0) return absl::OkStatus();
    if (pending_since_ == 0) pending_since_ = clock_->NowNanos();
    const size_t fields = kFields != 0 ? kFields : num_fields_;
    const size_t bound = EncodedSizeBound(edge_->schema, records[0]);  // the same for every record
    const size_t num_channels = channels_.size();
    const bool carry = carry_;
    const size_t width = key_group_width_;
    char* pos[kMaxRunChannels];
    char* room[kMaxRunChannels];
    char* full[kMaxRunChannels];  // where the buffer is sent
    int added[kMaxRunChannels];
    char* key_groups[kMaxRunChannels];  // with `carry`: where the next key group goes
    // Loads channel c's positions, its key groups given room for `left` more records.
    auto load = [&](size_t c, size_t left) {
      char* const begin = &pending_[c][0];
      pos[c] = begin + pending_bytes_[c];
      room[c] = begin + pending_[c].size();
      full[c] = begin + kOutputBufferBytes;
      added[c] = 0;
      if (carry) {
        std::string& k = pending_key_groups_[c];
        const size_t used = k.size();
        k.resize(used + left * width);
        key_groups[c] = &k[0] + used;
      }
    };
    auto store = [&](size_t c) {
      pending_bytes_[c] = static_cast<size_t>(pos[c] - &pending_[c][0]);
      pending_records_[c] += added[c];
      added[c] = 0;
      if (carry) {
        std::string& k = pending_key_groups_[c];
        k.resize(static_cast<size_t>(key_groups[c] - &k[0]));
      }
    };
    for (size_t c = 0; c < num_channels; ++c) load(c, n);
    for (size_t i = 0; i < n; ++i) {
      const size_t c = static_cast<size_t>(channel[i]);
      if (ABSL_PREDICT_FALSE(static_cast<size_t>(room[c] - pos[c]) < bound)) {
        store(c);
        std::string& buf = pending_[c];
        const size_t used = pending_bytes_[c];
        buf.resize(std::max(used + bound, std::min(buf.capacity(), used + kGrowBytes)));
        load(c, n - i);
      }
      if (carry) {  // AppendKeyGroup()'s bytes
        *key_groups[c]++ = static_cast<char>(key_group[i] & 0xff);
        if (width == 2) *key_groups[c]++ = static_cast<char>(key_group[i] >> 8);
      }
      pos[c] = EncodeIntegralRecordTo(records[i], fields, pos[c]);
      ++added[c];
      if (ABSL_PREDICT_FALSE(pos[c] >= full[c])) {
        store(c);
        const absl::Status flushed = Flush(c, true);
        if (!flushed.ok()) {
          for (size_t d = 0; d < num_channels; ++d) {
            if (d != c) store(d);
          }
          return flushed;
        }
        load(c, n - i - 1);
      }
    }
    for (size_t c = 0; c < num_channels; ++c) store(c);
    return absl::OkStatus();
  }

  // Encodes `r` straight into channel `c`'s buffer (no append, no copy). The buffer's size is
  // the room to encode into: grown kGrowBytes at a time within the capacity reserved up front
  // (each byte zero-filled once; a buffer flushed with few records touches little memory), or
  // as far as a larger record needs.
  absl::Status Append(size_t c, const Record& r) {
    std::string& buf = pending_[c];
    if (pending_since_ == 0) pending_since_ = clock_->NowNanos();
    size_t used = pending_bytes_[c];
    const size_t bound = EncodedSizeBound(edge_->schema, r);
    if (ABSL_PREDICT_FALSE(buf.size() - used < bound)) {
      buf.resize(std::max(used + bound, std::min(buf.capacity(), used + kGrowBytes)));
    }
    char* const begin = &buf[0];
    const char* const end = integral_ ? EncodeIntegralRecordTo(r, num_fields_, begin + used)
                                      : EncodeRecordTo(edge_->schema, r, begin + used);
    used = static_cast<size_t>(end - begin);
    pending_bytes_[c] = used;
    ++pending_records_[c];
    if (used >= kOutputBufferBytes) return Flush(c, true);
    return absl::OkStatus();
  }

  // Sends (or backlogs) channel `c`'s pending buffer; `may_block`: as Deliver().
  // Its pending watermark rides with it (alone if it has no records).
  absl::Status Flush(size_t c, bool may_block) {
    std::optional<CarriedWatermark> watermark = pending_watermark_[c];
    pending_watermark_[c].reset();
    if (pending_records_[c] == 0) {
      if (!watermark.has_value()) return absl::OkStatus();
      return Deliver(c, BufferItem(0, WatermarkAdvance{watermark->ms}), may_block);
    }
    const size_t bytes = pending_bytes_[c];
    pending_[c].resize(bytes);
    BufferItem item(0, RecordBuffer{std::move(pending_[c]), pending_records_[c],
                                    std::move(pending_key_groups_[c]), watermark});
    pending_[c] = std::string();
    pending_[c].reserve(kPendingCapacity);
    if (carry_) {
      pending_key_groups_[c] = std::string();
      pending_key_groups_[c].reserve(kPendingKeyGroups * key_group_width_);
    }
    pending_bytes_[c] = 0;
    pending_records_[c] = 0;
    if (!bytes_.empty()) {
      bytes_[c]->Add(bytes);
      buffers_[c]->Add();
    }
    return Deliver(c, std::move(item), may_block);
  }

  // Sends `item` on channel `c` if it has credit and no backlog, else queues it; with
  // `may_block`, then waits for credit while the backlog exceeds kOverdraftBuffers.
  absl::Status Deliver(size_t c, BufferItem item, bool may_block) {
    std::deque<BufferItem>& q = backlog_[c];
    if (q.empty()) {
      SLUICE_ASSIGN_OR_RETURN(bool sent, channels_[c]->Offer(item, 0));
      if (sent) return absl::OkStatus();
    }
    q.push_back(std::move(item));
    return may_block ? DrainBlocking(c, kOverdraftBuffers) : absl::OkStatus();
  }

  // Sends channel `c`'s backlog, waiting for credit, until at most `keep` buffers are left.
  absl::Status DrainBlocking(size_t c, size_t keep) {
    std::deque<BufferItem>& q = backlog_[c];
    while (q.size() > keep) {
      StampQueuedBarrier(c);
      SLUICE_RETURN_IF_ERROR(channels_[c]->Send(std::move(q.front())));
      PopFront(c);
      UpdateCreditWait(c);
    }
    return absl::OkStatus();
  }

  // Adds copies of the first `n` items of channel `c`'s backlog to `in_flight` (null: none) as
  // output-side channel state (channel index offset by `first_channel`), except barriers: a
  // savepoint's barrier still queued there is no data (it would restore as an empty buffer).
  void StoreBacklog(size_t c, size_t n, int first_channel, proto::ChannelStateFile* in_flight) {
    if (in_flight == nullptr) return;
    const std::deque<BufferItem>& q = backlog_[c];
    for (size_t k = 0; k < n; ++k) {
      if (q[k].as<Barrier>() != nullptr) continue;
      AddChannelStateItem(true, first_channel + static_cast<int>(c), q[k], in_flight);
    }
  }

  // How long ago the timeoutable barrier's checkpoint started, ms.
  int64_t WaitedMs() const {
    return std::max<int64_t>(0, (clock_->NowNanos() - barrier_origin_nanos_) / 1'000'000);
  }

  // About to send the front of channel `c`'s backlog: if it is the timeoutable barrier, it
  // says how long its checkpoint has waited (as the send begins; a send waiting for credit
  // adds that wait uncounted: at most its deadline, or, a blocking send past the overdraft or
  // at the end of partition, until credit comes).
  void StampQueuedBarrier(size_t c) {
    if (queued_barrier_at_[c] == 0) backlog_[c].front().as<Barrier>()->waited_ms = WaitedMs();
  }

  // Removes the sent front of channel `c`'s backlog (a queued timeoutable barrier moves up, or
  // has left).
  void PopFront(size_t c) {
    backlog_[c].pop_front();
    if (queued_barrier_at_[c] >= 0) --queued_barrier_at_[c];
  }

  void UpdateCreditWait(size_t c) {
    if (!credit_wait_.empty()) credit_wait_[c]->Set(channels_[c]->CreditWaitNanos() / 1e9);
  }

  const plan::Edge* edge_;
  const int max_parallelism_;
  std::vector<std::unique_ptr<ChannelWriter>> channels_;
  ops::KeyHasher hasher_;
  Clock* clock_;
  // Per channel: the buffer being filled (its first pending_bytes_ bytes are records, the rest
  // of its size room to encode into; see Append()), and the records in it.
  std::vector<std::string> pending_;
  std::vector<size_t> pending_bytes_;
  std::vector<int> pending_records_;
  // The edge's records are all NOT NULL integers (encoded inline), of num_fields_ fields.
  const bool integral_;
  const size_t num_fields_;
  // The edge carries key groups (plan::Edge::carry_key_groups): each pending record's, of
  // key_group_width_ bytes, per channel.
  const bool carry_;
  const size_t key_group_width_;
  std::vector<std::string> pending_key_groups_;
  // Per channel: the watermark to send with (or, without records, as) its pending buffer.
  std::vector<std::optional<CarriedWatermark>> pending_watermark_;
  // When the oldest pending record or watermark came (clock nanoseconds; 0: nothing pending).
  int64_t pending_since_ = 0;
  std::vector<std::deque<BufferItem>> backlog_;  // per channel: unsent, in order
  // Per channel: where a timeoutable barrier waits in its backlog (-1: none, or it left).
  std::vector<int> queued_barrier_at_;
  int64_t barrier_origin_nanos_ = 0;  // its checkpoint's start (clock_ nanoseconds)
  size_t next_ = 0;
  std::vector<std::shared_ptr<Counter>> bytes_;
  std::vector<std::shared_ptr<Counter>> buffers_;
  std::vector<std::shared_ptr<Counter>> converted_;  // ConvertQueuedBarrier()'s, per channel
  std::vector<std::shared_ptr<Gauge>> credit_wait_;
};

RecordWriter::RecordWriter(Clock* clock, int64_t buffer_timeout_nanos, int num_side_outputs)
    : clock_(clock), buffer_timeout_nanos_(buffer_timeout_nanos), side_(num_side_outputs) {}

RecordWriter::~RecordWriter() { Shutdown(false); }

void RecordWriter::AddEdge(const plan::Edge* edge, int max_parallelism,
                           std::vector<std::unique_ptr<ChannelWriter>> channels,
                           ops::KeyHasher hasher, MetricsRegistry* metrics, const Labels& labels,
                           const std::string& metrics_owner,
                           const std::vector<std::string>& targets) {
  auto e = std::make_unique<EdgeOutput>(edge, max_parallelism, std::move(channels),
                                        std::move(hasher), clock_);
  if (metrics != nullptr) e->AddCounters(metrics, labels, metrics_owner, targets);
  if (edge->side_output < 0) {
    main_.push_back(e.get());
  } else if (edge->side_output < static_cast<int>(side_.size())) {
    side_[edge->side_output].push_back(e.get());
  }
  edges_.push_back(std::move(e));
  // Only now, owned by edges_, may Cancel() reach them.
  absl::MutexLock lock(&mu_);
  for (const auto& ch : edges_.back()->channels()) {
    if (cancelled_) ch->Cancel();
    live_.push_back(ch.get());
  }
}

absl::Status RecordWriter::Emit(const Record& r) {
  for (EdgeOutput* e : main_) SLUICE_RETURN_IF_ERROR(e->Emit(r));
  return absl::OkStatus();
}

absl::Status RecordWriter::EmitBatch(const Record* records, size_t n) {
  for (EdgeOutput* e : main_) SLUICE_RETURN_IF_ERROR(e->EmitBatch(records, n));
  return absl::OkStatus();
}

absl::Status RecordWriter::EmitSide(int side_output, const Record& r) {
  if (side_output < 0 || side_output >= static_cast<int>(side_.size())) return absl::OkStatus();
  for (EdgeOutput* e : side_[side_output]) SLUICE_RETURN_IF_ERROR(e->Emit(r));
  return absl::OkStatus();
}

absl::Status RecordWriter::EmitWatermark(int64_t watermark_ms) {
  for (auto& e : edges_) e->EmitWatermark(watermark_ms);
  return absl::OkStatus();
}

absl::Status RecordWriter::EmitWatermarkStatus(bool idle) {
  for (auto& e : edges_) SLUICE_RETURN_IF_ERROR(e->EmitWatermarkStatus(idle));
  return absl::OkStatus();
}

absl::Status RecordWriter::EmitBarrier(int64_t id, bool priority,
                                       proto::ChannelStateFile* in_flight, bool timed_out,
                                       int64_t waited_ms) {
  int first_channel = 0;
  for (auto& e : edges_) {
    SLUICE_RETURN_IF_ERROR(
        e->EmitBarrier(id, priority, timed_out, waited_ms, first_channel, in_flight));
    first_channel += static_cast<int>(e->channels().size());
  }
  return absl::OkStatus();
}

absl::Status RecordWriter::EmitTimeoutableBarrier(int64_t id, int64_t waited_nanos) {
  const int64_t origin = clock_->NowNanos() - waited_nanos;
  for (auto& e : edges_) SLUICE_RETURN_IF_ERROR(e->EmitTimeoutableBarrier(id, origin));
  return absl::OkStatus();
}

bool RecordWriter::HasQueuedBarrier() const {
  for (const auto& e : edges_) {
    if (e->HasQueuedBarrier()) return true;
  }
  return false;
}

void RecordWriter::DropQueuedBarrier() {
  for (auto& e : edges_) e->DropQueuedBarrier();
}

absl::Status RecordWriter::ConvertQueuedBarrier(proto::ChannelStateFile* in_flight) {
  int first_channel = 0;
  for (auto& e : edges_) {
    SLUICE_RETURN_IF_ERROR(e->ConvertQueuedBarrier(first_channel, in_flight));
    first_channel += static_cast<int>(e->channels().size());
  }
  return absl::OkStatus();
}

absl::Status RecordWriter::EndOfPartition() {
  for (auto& e : edges_) SLUICE_RETURN_IF_ERROR(e->EndOfPartition());
  return absl::OkStatus();
}

absl::Status RecordWriter::FlushAll() {
  for (auto& e : edges_) SLUICE_RETURN_IF_ERROR(e->FlushAll());
  return absl::OkStatus();
}

absl::Status RecordWriter::FlushIfDue(bool force) {
  int64_t now = 0;
  for (auto& e : edges_) {
    const int64_t since = e->pending_since();
    if (since == 0) continue;
    if (!force) {
      if (now == 0) now = clock_->NowNanos();
      if (now - since < buffer_timeout_nanos_) continue;
    }
    SLUICE_RETURN_IF_ERROR(e->FlushAll());
  }
  return absl::OkStatus();
}

int64_t RecordWriter::FlushDeadlineNanos() const {
  int64_t deadline = std::numeric_limits<int64_t>::max();
  for (const auto& e : edges_) {
    if (e->pending_since() != 0) deadline = std::min(deadline, e->pending_since() + buffer_timeout_nanos_);
  }
  return deadline;
}

absl::StatusOr<bool> RecordWriter::TrySend() {
  bool sent = true;
  for (auto& e : edges_) {
    SLUICE_ASSIGN_OR_RETURN(bool done, e->Drain(0));
    sent = sent && done;
  }
  return sent;
}

absl::Status RecordWriter::WaitForCredit(int64_t deadline_nanos) {
  for (auto& e : edges_) {
    if (!e->HasBacklog()) continue;
    return e->Drain(deadline_nanos).status();
  }
  return absl::OkStatus();
}

bool RecordWriter::HasBacklog() const {
  for (const auto& e : edges_) {
    if (e->HasBacklog()) return true;
  }
  return false;
}

bool RecordWriter::PushRestored(int channel, BufferItem item) {
  if (channel < 0) return false;
  for (auto& e : edges_) {
    const int n = static_cast<int>(e->channels().size());
    if (channel < n) {
      e->PushRestored(channel, std::move(item));
      return true;
    }
    channel -= n;
  }
  return false;
}

int RecordWriter::num_channels() const {
  int n = 0;
  for (const auto& e : edges_) n += static_cast<int>(e->channels().size());
  return n;
}

void RecordWriter::Cancel() {
  absl::MutexLock lock(&mu_);
  cancelled_ = true;
  for (ChannelWriter* w : live_) w->Cancel();
}

void RecordWriter::Interrupt() {
  absl::MutexLock lock(&mu_);
  for (ChannelWriter* w : live_) w->Interrupt();
}

void RecordWriter::Shutdown(bool cancel_channels) {
  {
    absl::MutexLock lock(&mu_);
    live_.clear();
  }
  if (cancel_channels) {
    for (auto& e : edges_) {
      for (auto& ch : e->channels()) ch->Cancel();
    }
  }
  main_.clear();
  for (auto& s : side_) s.clear();
  edges_.clear();
}

}  // namespace sluice::worker
