#include <algorithm>
#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "operators/internal/builtins.h"
#include "operators/internal/source_pacing.h"
#include "operators/nexmark/generator.h"
#include "operators/nexmark/nexmark_options.h"
#include "operators/watermark_generator.h"

namespace sluice::ops {
namespace {

using nexmark::EventKind;

// The ids of one kind within each block of 50 (an "epoch"): [lo, hi].
struct KindRange {
  int64_t lo, hi;
};
KindRange RangeOf(EventKind kind) {
  switch (kind) {
    case EventKind::kPerson: return {0, nexmark::kPersonProportion - 1};
    case EventKind::kAuction:
      return {nexmark::kPersonProportion, nexmark::kPersonProportion + nexmark::kAuctionProportion - 1};
    case EventKind::kBid: break;
  }
  return {nexmark::kPersonProportion + nexmark::kAuctionProportion, nexmark::kTotalProportion - 1};
}

// The `nexmark` source: events of one kind, each generated from its id alone
// (operators/nexmark/generator.h), so a split's position is all its state.
//
// Splits: the id space is cut into epochs of 50 ids (1 person, 3 auctions, 46 bids); subtask i
// of n starts with the split of epochs i, i+n, i+2n, ..., so every subtask produces every kind
// and all subtasks together produce exactly the events of ids 0..events-1. A split's state is
// (first epoch, epoch stride, next id); the next id jumps over the ids of other kinds without
// generating them. On rescale the splits are dealt round-robin to the new subtasks (as datagen's).
//
// Event time: watermarks of bounded out-of-orderness over the emitted dateTimes per split, the
// minimum over the subtask's splits (after a rescale one subtask may hold splits far apart in
// event time), every watermark interval, and the end of event time when a bounded source is
// exhausted. `rate` is events of this kind per second for the whole source.
class NexmarkSource final : public SourceOperator {
 public:
  absl::Status Open(const OperatorContext& ctx, Output* output) override {
    SLUICE_RETURN_IF_ERROR(SourceOperator::Open(ctx, output));
    SLUICE_ASSIGN_OR_RETURN(options_, TypedOptions<NexmarkOptions>(ctx));
    nexmark::GeneratorConfig config;
    config.event_rate = options_->event_rate;
    generator_ = std::make_unique<nexmark::Generator>(config);
    range_ = RangeOf(options_->emit);
    emit_ = options_->emit;
    mask_ = options_->field_mask;
    fields_ = options_->fields;
    events_ = options_->events;
    // Bids projected to integer fields only (q2's, q11's): copied by member pointer, without a
    // switch per field.
    bid_ints_.clear();
    if (emit_ == EventKind::kBid) {
      for (int f : fields_) {
        int64_t nexmark::Bid::*m = f == 0   ? &nexmark::Bid::auction
                                   : f == 1 ? &nexmark::Bid::bidder
                                   : f == 2 ? &nexmark::Bid::price
                                   : f == 5 ? &nexmark::Bid::date_time
                                            : nullptr;
        if (m == nullptr) {
          bid_ints_.clear();
          break;
        }
        bid_ints_.push_back(m);
      }
    }
    out_.Resize(options_->fields.size());
    out_batch_.assign(kBatch, Record(options_->fields.size()));
    switch (emit_) {
      case EventKind::kPerson: persons_.resize(kBatch); break;
      case EventKind::kAuction: auctions_.resize(kBatch); break;
      case EventKind::kBid: bids_.resize(kBatch); break;
    }
    extra_slot_ = -1;
    const int extra_index = static_cast<int>(NexmarkFields(options_->emit).size()) - 1;
    for (size_t j = 0; j < fields_.size(); ++j) {
      if (options_->fields[j] == extra_index) extra_slot_ = static_cast<int>(j);
    }
    // Batches unless paced or with padding, which is generated straight into the output
    // record: in batches (each padding in its own string, swapped into the record) q0 measured
    // ~6% slower.
    batch_ = extra_slot_ >= 0 || options_->rate > 0 ? 1 : kBatch;
    if (ctx.restored) {
      for (const std::string& entry : ctx.restored_state) {
        int64_t v[3] = {0, 0, 0};
        SLUICE_RETURN_IF_ERROR(DecodeSplitState(ctx.state_origin, "nexmark split", entry, /*format0=*/false, v));
        if (v[0] < 0 || v[1] <= 0 || v[2] < 0) {
          return ctx.state_origin.DataLoss(absl::StrCat("nexmark split (", v[0], ", ", v[1], ", ", v[2], ") is not a split"));
        }
        splits_.push_back(Split{v[0], v[1], v[2]});
      }
    } else {
      splits_.push_back(Split{ctx.subtask, ctx.parallelism, FirstIdIn(ctx.subtask)});
    }
    start_nanos_ = ctx.clock->NowNanos();
    pacer_ = SourcePacer(options_->rate, ctx.parallelism, start_nanos_);
    watermarks_ = std::make_unique<SplitWatermarks>(options_->max_out_of_orderness_ms, 0);
    for (size_t i = 0; i < splits_.size(); ++i) watermarks_->AddSplit(start_nanos_);
    watermark_interval_nanos_ = (ctx.job != nullptr ? ctx.job->watermark_interval_ms : 200) * 1'000'000;
    next_watermark_nanos_ = start_nanos_ + watermark_interval_nanos_;
    return absl::OkStatus();
  }

  absl::StatusOr<State> Poll(int max_records, int64_t* wake_at_nanos) override {
    {
      const int64_t now = ctx_.clock->NowNanos();
      if (now >= next_watermark_nanos_) {
        SLUICE_RETURN_IF_ERROR(watermarks_->OnPeriodic(now, output_));
        next_watermark_nanos_ = now + watermark_interval_nanos_;
      }
    }
    if (batch_ > 1) return PollBatches(max_records);
    // One event at a time: paced, or with padding (generated straight into the record).
    for (int n = 0; n < max_records; ++n) {
      if (!NextSplitWithRecords(splits_, events_, &current_)) return State::kEnd;
      if (pacer_.limited()) {
        int64_t due = 0;
        if (!pacer_.Ready(emitted_, ctx_.clock->NowNanos(), &due)) {
          // Wake for the next record or the next watermark, whichever is first.
          *wake_at_nanos = std::min(due, next_watermark_nanos_);
          return State::kWait;
        }
      }
      const int split = static_cast<int>(current_);
      batch_ids_[0] = TakeId();
      GenerateBatch(1);
      SLUICE_RETURN_IF_ERROR(EmitEvent(split, 0));
    }
    return State::kMore;
  }

  // Bounded: event time ends with the input.
  absl::Status Finish() override { return output_->EmitWatermark(kMaxWatermark); }

  absl::Status SnapshotState(int64_t, std::vector<std::string>* entries) override {
    for (const Split& split : splits_) entries->push_back(EncodeSplitState({split.first_epoch, split.stride, split.next}));
    return absl::OkStatus();
  }

 private:
  struct Split {
    int64_t first_epoch;
    int64_t stride;  // in epochs
    int64_t next;    // the next event id to emit
  };
  // A split's state entry: EncodeSplitState (internal/source_pacing.h), the layout version 1
  // always had here.

  // Events generated per batch (at most).
  static constexpr int kBatch = 64;

  // Unpaced and without padding: the events of a batch are generated one after the other (the
  // generator's code and branch history stay hot, as in a plain loop), then projected into the
  // batch's records and emitted at once (Output::EmitOwnedBatch(); cut where the subtask turns
  // active, which goes between the records as EmitEvent() orders it). Split positions advance
  // as ids are taken; a failed Emit fails the task, and no snapshot is taken inside Poll().
  absl::StatusOr<State> PollBatches(int max_records) {
    for (int done = 0; done < max_records;) {
      const int cap = std::min(kBatch, max_records - done);
      if (splits_.size() == 1) {
        // One split (every subtask's before a rescale): its ids in runs, one watermark update.
        const int n = TakeIdsOfOneSplit(cap);
        if (n == 0) return State::kEnd;
        GenerateBatch(n);
        int64_t max_ts = std::numeric_limits<int64_t>::min();
        for (int k = 0; k < n; ++k) {
          Record* out = &out_batch_[k];
          max_ts = std::max(max_ts, bid_ints_.empty() ? Project(k, out) : ProjectBidInts(k, out));
        }
        // What OnEvent() per event does: the split's maximum, and the subtask turning active
        // before the batch's first record.
        if (watermarks_->OnEvent(0, max_ts)) {
          SLUICE_RETURN_IF_ERROR(output_->EmitWatermarkStatus(false));
        }
        SLUICE_RETURN_IF_ERROR(output_->EmitOwnedBatch(out_batch_.data(), static_cast<size_t>(n)));
        emitted_ += n;
        done += n;
        continue;
      }
      int n = 0;
      while (n < cap && NextSplitWithRecords(splits_, events_, &current_)) {
        batch_splits_[n] = static_cast<int>(current_);
        batch_ids_[n++] = TakeId();
      }
      if (n == 0) return State::kEnd;
      GenerateBatch(n);
      int unsent = 0;  // out_batch_[unsent, k) wait to be emitted
      for (int k = 0; k < n; ++k) {
        const int64_t ts = bid_ints_.empty() ? Project(k, &out_batch_[k]) : ProjectBidInts(k, &out_batch_[k]);
        if (watermarks_->OnEvent(batch_splits_[k], ts)) {
          SLUICE_RETURN_IF_ERROR(output_->EmitOwnedBatch(&out_batch_[unsent], static_cast<size_t>(k - unsent)));
          unsent = k;
          SLUICE_RETURN_IF_ERROR(output_->EmitWatermarkStatus(false));
        }
      }
      // Every value of out_batch_ is set again for the next batch (Project()).
      SLUICE_RETURN_IF_ERROR(output_->EmitOwnedBatch(&out_batch_[unsent], static_cast<size_t>(n - unsent)));
      emitted_ += n;
      done += n;
    }
    return State::kMore;
  }

  // The first id of this source's kind in epoch `epoch`.
  int64_t FirstIdIn(int64_t epoch) const { return epoch * nexmark::kTotalProportion + range_.lo; }

  // The next id of the current split, which moves on to its next id of this kind (the next in
  // this epoch, else the first of its next epoch); the splits rotate.
  int64_t TakeId() {
    Split& split = splits_[current_];
    const int64_t id = split.next;
    split.next = id % nexmark::kTotalProportion < range_.hi
                     ? id + 1
                     : FirstIdIn(id / nexmark::kTotalProportion + split.stride);
    if (splits_.size() > 1) current_ = (current_ + 1) % splits_.size();
    return id;
  }

  // TakeId() of the only split, up to `cap` times (fewer when the source's events end), into
  // batch_ids_; returns how many. The ids of this kind within an epoch are consecutive, so they
  // are taken a run at a time: one division per run (at most one per epoch; a batch's end cuts
  // a run) instead of one per id.
  int TakeIdsOfOneSplit(int cap) {
    Split& split = splits_[0];
    int n = 0;
    while (n < cap && (events_ < 0 || split.next < events_)) {
      const int64_t epoch = split.next / nexmark::kTotalProportion;
      const int64_t last = epoch * nexmark::kTotalProportion + range_.hi;  // of this kind
      int64_t count = std::min<int64_t>(last - split.next + 1, cap - n);
      if (events_ >= 0) count = std::min(count, events_ - split.next);
      // A restored position past its kind's last id in the epoch is taken alone, as TakeId() does.
      count = std::max<int64_t>(count, 1);
      for (int64_t i = 0; i < count; ++i) batch_ids_[n++] = split.next + i;
      split.next += count;
      if (split.next > last) {
        split.next = FirstIdIn(epoch + split.stride);
      }
    }
    return n;
  }

  // Projects event k of the batch (from split `split`) into the record and emits it.
  absl::Status EmitEvent(int split, int k) {
    const int64_t ts = Project(k, &out_);
    if (watermarks_->OnEvent(split, ts)) SLUICE_RETURN_IF_ERROR(output_->EmitWatermarkStatus(false));
    // Every value of out_ is written again for the next event (Project, the padding).
    SLUICE_RETURN_IF_ERROR(output_->EmitOwned(&out_));
    ++emitted_;
    return absl::OkStatus();
  }

  // Generates the events batch_ids_[0..n) into the batch's events (the asked-for fields only).
  void GenerateBatch(int n) {
    const uint32_t mask = mask_;
    // With padding, n is 1 and the padding goes straight into the output record.
    std::string* extra = extra_slot_ >= 0 ? &out_[extra_slot_].s : nullptr;
    switch (emit_) {
      case EventKind::kBid:
        for (int k = 0; k < n; ++k) generator_->MakeBid(batch_ids_[k], mask, &bids_[k], extra);
        return;
      case EventKind::kAuction:
        for (int k = 0; k < n; ++k) generator_->MakeAuction(batch_ids_[k], mask, &auctions_[k], extra);
        return;
      case EventKind::kPerson:
        for (int k = 0; k < n; ++k) generator_->MakePerson(batch_ids_[k], mask, &persons_[k], extra);
        return;
    }
  }

  // Project() of bid k when every field is an integer (bid_ints_ not empty): a member pointer
  // per field instead of a switch (~40% of Poll's time in q11's profile, against MakeBid's).
  int64_t ProjectBidInts(int k, Record* out) const {
    const nexmark::Bid& bid = bids_[k];
    for (size_t j = 0; j < bid_ints_.size(); ++j) out->SetInt(j, bid.*bid_ints_[j]);
    return bid.date_time;
  }
  // Projects event k of the batch into `out` (sets every field but the padding, which is
  // already there); returns its dateTime.
  int64_t Project(int k, Record* out) {
    switch (emit_) {
      case EventKind::kBid: {
        const nexmark::Bid& bid = bids_[k];
        for (size_t j = 0; j < fields_.size(); ++j) {
          switch (fields_[j]) {
            case 0: out->SetInt(j, bid.auction); break;
            case 1: out->SetInt(j, bid.bidder); break;
            case 2: out->SetInt(j, bid.price); break;
            case 3: out->SetString(j, bid.channel); break;
            case 4: out->SetString(j, bid.url); break;
            case 5: out->SetInt(j, bid.date_time); break;
            default: break;  // extra: already in place
          }
        }
        return bid.date_time;
      }
      case EventKind::kAuction: {
        const nexmark::Auction& auction = auctions_[k];
        for (size_t j = 0; j < fields_.size(); ++j) {
          switch (fields_[j]) {
            case 0: out->SetInt(j, auction.id); break;
            case 1: out->SetString(j, auction.item_name); break;
            case 2: out->SetString(j, auction.description); break;
            case 3: out->SetInt(j, auction.initial_bid); break;
            case 4: out->SetInt(j, auction.reserve); break;
            case 5: out->SetInt(j, auction.date_time); break;
            case 6: out->SetInt(j, auction.expires); break;
            case 7: out->SetInt(j, auction.seller); break;
            case 8: out->SetInt(j, auction.category); break;
            default: break;
          }
        }
        return auction.date_time;
      }
      case EventKind::kPerson: break;
    }
    const nexmark::Person& person = persons_[k];
    for (size_t j = 0; j < fields_.size(); ++j) {
      switch (fields_[j]) {
        case 0: out->SetInt(j, person.id); break;
        case 1: out->SetString(j, person.name); break;
        case 2: out->SetString(j, person.email_address); break;
        case 3: out->SetString(j, person.credit_card); break;
        case 4: out->SetString(j, person.city); break;
        case 5: out->SetString(j, person.state); break;
        case 6: out->SetInt(j, person.date_time); break;
        default: break;
      }
    }
    return person.date_time;
  }

  const NexmarkOptions* options_ = nullptr;
  // Copies of the options read per event, kept beside the rest of the hot state.
  EventKind emit_ = EventKind::kBid;
  uint32_t mask_ = 0;
  std::vector<int> fields_;
  std::vector<int64_t nexmark::Bid::*> bid_ints_;  // fields_ as Bid members, when all are integers
  std::unique_ptr<nexmark::Generator> generator_;
  KindRange range_{0, 0};
  int64_t events_ = -1;
  SourcePacer pacer_;
  int64_t start_nanos_ = 0;
  int64_t emitted_ = 0;
  std::vector<Split> splits_;
  size_t current_ = 0;
  int extra_slot_ = -1;  // the padding's index in out_, or -1
  int batch_ = kBatch;    // events per batch: kBatch, or 1 (paced, or with padding)
  // The current batch: event ids, their splits, and the generated events (of kind emit_).
  int64_t batch_ids_[kBatch];
  int batch_splits_[kBatch];
  std::vector<nexmark::Person> persons_;
  std::vector<nexmark::Auction> auctions_;
  std::vector<nexmark::Bid> bids_;
  Record out_;                    // the record of one event at a time
  std::vector<Record> out_batch_;  // PollBatches(): the batch's records (kBatch)
  std::unique_ptr<SplitWatermarks> watermarks_;
  int64_t watermark_interval_nanos_ = 0;
  int64_t next_watermark_nanos_ = 0;
};

}  // namespace

std::unique_ptr<Operator> MakeNexmarkSource() { return std::make_unique<NexmarkSource>(); }

}  // namespace sluice::ops
