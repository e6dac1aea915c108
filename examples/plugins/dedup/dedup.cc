// dedup: a keyed operator plugin with state and timers. Drops repeats of a key within a
// time bound, in event time: the first event of a key passes and opens a window of `within_ms`
// milliseconds (from its event time); later events of the key whose event time falls inside
// that window are dropped. When the watermark passes the window's end, an event-time timer
// clears the key's state, so the next event of the key passes again.
//
//   - id: unique_payments
//     type: dedup
//     key: [payment_id]           # what "the same event" means
//     time_field: ts              # timestamp (or int64 ms) field with the event time
//     within_ms: 60000
//     ttl_ms: 3600000             # optional: state also expires this long (processing time)
//                                 # after it was written, should the watermark stall
//
// The output is the input, unchanged. Counters: `passed`, `duplicates`.
#include <string>

#include "sluice/sdk.h"

namespace {

using sluice::sdk::Context;
using sluice::sdk::Field;
using sluice::sdk::FieldType;
using sluice::sdk::Options;
using sluice::sdk::Record;
using sluice::sdk::Status;
using sluice::sdk::TimerDomain;

class Dedup : public sluice::sdk::Operator {
 public:
  explicit Dedup(const Options& o) {
    (void)o.GetString("time_field", &time_field_);
    (void)o.GetInt("within_ms", &within_ms_);
    (void)o.GetInt("ttl_ms", &ttl_ms_, 0);
  }

  static Status Validate(const Options& o) {
    SLUICE_SDK_RETURN_IF_ERROR(o.CheckKnownKeys({"time_field", "within_ms", "ttl_ms"}));
    std::string s;
    SLUICE_SDK_RETURN_IF_ERROR(o.GetString("time_field", &s));
    int64_t within = 0;
    SLUICE_SDK_RETURN_IF_ERROR(o.GetInt("within_ms", &within));
    if (within <= 0)
      return Status::InvalidArgument("option 'within_ms' must be positive, got " +
                                     std::to_string(within));
    int64_t ttl = 0;
    SLUICE_SDK_RETURN_IF_ERROR(o.GetInt("ttl_ms", &ttl, 0));
    if (ttl < 0) return Status::InvalidArgument("option 'ttl_ms' must be 0 (no TTL) or positive");
    return Status::Ok();
  }

  Status Open(Context& ctx) override {
    // Event time from a timestamp field, or an int64 of milliseconds.
    if (!ctx.InputField(time_field_, FieldType::kTimestamp, &time_).ok()) {
      Status s = ctx.InputField(time_field_, FieldType::kInt64, &time_);
      if (!s.ok()) {
        return Status::InvalidArgument(
            "option 'time_field': the input has no timestamp or int64 field '" + time_field_ + "'");
      }
    }
    SLUICE_SDK_RETURN_IF_ERROR(ctx.RegisterValueState("window_start", &window_start_, ttl_ms_));
    SLUICE_SDK_RETURN_IF_ERROR(ctx.RegisterCounter("passed", &passed_));
    return ctx.RegisterCounter("duplicates", &duplicates_);
  }

  Status Process(const Record& in, Context& ctx) override {
    const int64_t ts = in.Int(time_);
    int64_t start = 0;
    bool found = false;
    SLUICE_SDK_RETURN_IF_ERROR(window_start_.GetInt64(&start, &found));
    if (found && ts < start + within_ms_) {
      duplicates_.Add();
      return Status::Ok();
    }
    // A new window for this key; the old one's timer (if its watermark has not come) goes.
    if (found)
      SLUICE_SDK_RETURN_IF_ERROR(ctx.DeleteTimer(TimerDomain::kEventTime, start + within_ms_));
    SLUICE_SDK_RETURN_IF_ERROR(window_start_.PutInt64(ts));
    SLUICE_SDK_RETURN_IF_ERROR(ctx.RegisterTimer(TimerDomain::kEventTime, ts + within_ms_));
    passed_.Add();
    return ctx.Forward(in);
  }

  // A window of the timer's key ended in event time: forget the key, unless the state is a
  // later window's (the TTL dropped the state this timer was for, and a new window began).
  Status OnTimer(TimerDomain, int64_t timestamp_ms, Context&) override {
    int64_t start = 0;
    bool found = false;
    SLUICE_SDK_RETURN_IF_ERROR(window_start_.GetInt64(&start, &found));
    if (found && start + within_ms_ == timestamp_ms) return window_start_.Clear();
    return Status::Ok();
  }

 private:
  std::string time_field_;
  int64_t within_ms_ = 0;
  int64_t ttl_ms_ = 0;
  Field time_;
  sluice::sdk::ValueState window_start_;
  sluice::sdk::Counter passed_;
  sluice::sdk::Counter duplicates_;
};

}  // namespace

SLUICE_PLUGIN("dedup", "1.0.0", plugin) {
  plugin.AddOperator<Dedup>("dedup")
      .Keyed()
      .Description(
          "drops repeats of a key within within_ms of event time (keyed state + event-time timer)")
      .Validate(&Dedup::Validate)
      .RequiredOption("time_field", "string", "timestamp or int64 field with the event time (ms)")
      .RequiredOption("within_ms", "int64", "repeats of a key this close in event time are dropped")
      .Option("ttl_ms", "int64", "0",
              "state also expires this long after it was written (processing time); 0: never");
}
