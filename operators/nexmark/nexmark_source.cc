#include <algorithm>
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
    out_.Resize(options_->fields.size());
    extra_slot_ = -1;
    const int extra_index = static_cast<int>(NexmarkFields(options_->emit).size()) - 1;
    for (size_t j = 0; j < fields_.size(); ++j) {
      if (options_->fields[j] == extra_index) extra_slot_ = static_cast<int>(j);
    }
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
      splits_.push_back(Split{ctx.subtask, ctx.parallelism, ctx.subtask * nexmark::kTotalProportion + range_.lo});
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
      Split& split = splits_[current_];
      const int64_t id = split.next;
      const int64_t ts = Generate(id);
      if (watermarks_->OnEvent(static_cast<int>(current_), ts)) {
        SLUICE_RETURN_IF_ERROR(output_->EmitWatermarkStatus(false));
      }
      SLUICE_RETURN_IF_ERROR(output_->Emit(out_));
      // The next id of this kind: the next in this epoch, else the first of the next epoch.
      split.next = id % nexmark::kTotalProportion < range_.hi
                       ? id + 1
                       : (id / nexmark::kTotalProportion + split.stride) * nexmark::kTotalProportion + range_.lo;
      ++emitted_;
      if (splits_.size() > 1) current_ = (current_ + 1) % splits_.size();
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

  // Generates event `id` into out_ (the projected fields); returns its dateTime.
  int64_t Generate(int64_t id) {
    const uint32_t mask = mask_;
    // The padding is generated straight into the output record's string.
    std::string* extra_out = extra_slot_ >= 0 ? &out_[extra_slot_].s : nullptr;
    switch (emit_) {
      case EventKind::kBid: {
        generator_->MakeBid(id, mask, &bid_, extra_out);
        for (size_t j = 0; j < fields_.size(); ++j) {
          switch (fields_[j]) {
            case 0: out_.SetInt(j, bid_.auction); break;
            case 1: out_.SetInt(j, bid_.bidder); break;
            case 2: out_.SetInt(j, bid_.price); break;
            case 3: out_.SetString(j, bid_.channel); break;
            case 4: out_.SetString(j, bid_.url); break;
            case 5: out_.SetInt(j, bid_.date_time); break;
            default: break;  // extra: already in place
          }
        }
        return bid_.date_time;
      }
      case EventKind::kAuction: {
        generator_->MakeAuction(id, mask, &auction_, extra_out);
        for (size_t j = 0; j < fields_.size(); ++j) {
          switch (fields_[j]) {
            case 0: out_.SetInt(j, auction_.id); break;
            case 1: out_.SetString(j, auction_.item_name); break;
            case 2: out_.SetString(j, auction_.description); break;
            case 3: out_.SetInt(j, auction_.initial_bid); break;
            case 4: out_.SetInt(j, auction_.reserve); break;
            case 5: out_.SetInt(j, auction_.date_time); break;
            case 6: out_.SetInt(j, auction_.expires); break;
            case 7: out_.SetInt(j, auction_.seller); break;
            case 8: out_.SetInt(j, auction_.category); break;
            default: break;
          }
        }
        return auction_.date_time;
      }
      case EventKind::kPerson: break;
    }
    generator_->MakePerson(id, mask, &person_, extra_out);
    for (size_t j = 0; j < fields_.size(); ++j) {
      switch (fields_[j]) {
        case 0: out_.SetInt(j, person_.id); break;
        case 1: out_.SetString(j, person_.name); break;
        case 2: out_.SetString(j, person_.email_address); break;
        case 3: out_.SetString(j, person_.credit_card); break;
        case 4: out_.SetString(j, person_.city); break;
        case 5: out_.SetString(j, person_.state); break;
        case 6: out_.SetInt(j, person_.date_time); break;
        default: break;
      }
    }
    return person_.date_time;
  }

  const NexmarkOptions* options_ = nullptr;
  // Copies of the options read per event, kept beside the rest of the hot state.
  EventKind emit_ = EventKind::kBid;
  uint32_t mask_ = 0;
  std::vector<int> fields_;
  std::unique_ptr<nexmark::Generator> generator_;
  KindRange range_{0, 0};
  int64_t events_ = -1;
  SourcePacer pacer_;
  int64_t start_nanos_ = 0;
  int64_t emitted_ = 0;
  std::vector<Split> splits_;
  size_t current_ = 0;
  int extra_slot_ = -1;
  nexmark::Person person_;
  nexmark::Auction auction_;
  nexmark::Bid bid_;
  Record out_;
  std::unique_ptr<SplitWatermarks> watermarks_;
  int64_t watermark_interval_nanos_ = 0;
  int64_t next_watermark_nanos_ = 0;
};

}  // namespace

std::unique_ptr<Operator> MakeNexmarkSource() { return std::make_unique<NexmarkSource>(); }

}  // namespace sluice::ops
