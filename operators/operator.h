#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/clock.h"
#include "common/metrics.h"
#include "common/record.h"
#include "plan/job_spec.h"

namespace sluice::ops {

// Where an operator sends its output records. Emit() may block (backpressure: the next
// channel has no credit) and returns an error when the task is being cancelled or a
// downstream operator failed.
class Output {
 public:
  virtual ~Output() = default;
  virtual absl::Status Emit(const Record& record) = 0;
};

// What an operator is told when it is opened.
struct OperatorContext {
  const plan::JobSpec* job = nullptr;
  const plan::OperatorSpec* spec = nullptr;
  std::string job_id;
  int subtask = 0;
  int parallelism = 1;
  Clock* clock = nullptr;
  // "<job>/<operator>#<subtask>", for logs and errors.
  std::string task_name;
};

// The operator contract (push-based, as Arrow Acero's ExecNode):
//   Open() once, then Process() per input record in arrival order, then Finish() once when
//   every input has ended (flush anything buffered), then Close(). All calls come from the
//   one thread of the task that owns the operator: operators need no locks.
// Process() may call Output::Emit() any number of times. A non-OK status fails the task with
// that status (the task adds the job, task and operator names).
class Operator {
 public:
  virtual ~Operator() = default;

  virtual absl::Status Open(const OperatorContext& ctx, Output* output) {
    ctx_ = ctx;
    output_ = output;
    return absl::OkStatus();
  }
  virtual absl::Status Process(const Record& record) = 0;
  virtual absl::Status Finish() { return absl::OkStatus(); }
  virtual void Close() {}

 protected:
  OperatorContext ctx_;
  Output* output_ = nullptr;
};

// A source produces records on its own: the task calls Poll() repeatedly instead of Process().
class SourceOperator : public Operator {
 public:
  enum class State { kMore, kWait, kEnd };

  absl::Status Process(const Record&) final {
    return absl::FailedPreconditionError("a source has no input");
  }
  // Emits up to `max_records`. Returns kMore when more records are ready now, kWait when the
  // next record is not due before `*wake_at_nanos` (rate limiting), kEnd when the source is
  // exhausted (a bounded source).
  virtual absl::StatusOr<State> Poll(int max_records, int64_t* wake_at_nanos) = 0;
};

}  // namespace sluice::ops
