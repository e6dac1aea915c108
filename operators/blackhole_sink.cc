#include "operators/internal/builtins.h"

#include "common/status.h"
#include "operators/blackhole_sink_options.h"

namespace sluice::ops {
namespace {

// Discards records, optionally no faster than max_rate records/s per subtask (a slow sink,
// for backpressure tests and demos).
class BlackholeSink final : public Operator {
 public:
  absl::Status Open(const OperatorContext& ctx, Output* output) override {
    SLUICE_RETURN_IF_ERROR(Operator::Open(ctx, output));
    SLUICE_ASSIGN_OR_RETURN(const BlackholeSinkOptions* o, TypedOptions<BlackholeSinkOptions>(ctx));
    nanos_per_record_ = o->max_rate > 0 ? 1e9 / o->max_rate : 0;
    start_ = ctx.clock->NowNanos();
    return absl::OkStatus();
  }
  absl::Status Process(const Record&) override {
    ++count_;
    if (nanos_per_record_ > 0) {
      int64_t due = start_ + static_cast<int64_t>(count_ * nanos_per_record_);
      int64_t now = ctx_.clock->NowNanos();
      if (due > now) ctx_.clock->SleepNanos(due - now);
    }
    return absl::OkStatus();
  }

 private:
  double nanos_per_record_ = 0;
  int64_t start_ = 0;
  int64_t count_ = 0;
};

}  // namespace

std::unique_ptr<Operator> MakeBlackholeSink() { return std::make_unique<BlackholeSink>(); }

}  // namespace sluice::ops
