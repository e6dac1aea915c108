#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "common/metrics.h"
#include "operators/registry.h"
#include "plan/job_graph.h"
#include "proto/control.pb.h"
#include "proto/data.pb.h"
#include "worker/internal/input_gate.h"

namespace sluice::worker {

// Creates the writer for one output channel (local or remote, the factory decides).
using ChannelFactory = std::function<absl::StatusOr<std::unique_ptr<ChannelWriter>>(
    const proto::ChannelHeader& header, const std::string& target_address)>;

// Everything a task needs to know about itself.
struct TaskDescriptor {
  std::string job_id;
  int64_t attempt = 0;
  int vertex = 0;
  int subtask = 0;
  std::shared_ptr<const plan::JobSpec> job;
  std::shared_ptr<const plan::JobGraph> graph;
  // vertex -> subtask -> data address of the worker running it
  std::vector<std::vector<std::string>> placement;
};

// Index of the channel (edge, src subtask) within the input gate of the edge's consumer.
int GateChannelIndex(const plan::JobGraph& graph, int edge, int src_subtask);
// Number of channels into one subtask of `vertex`.
int GateChannelCount(const plan::JobGraph& graph, int vertex);

// One running subtask: a chain of operators driven by one thread.
//
// Lifecycle: constructed at deploy (its input gate exists from then on, so producers can
// connect), Start() spawns the thread, which opens the operators, runs until end of input,
// cancellation or failure, then reports its final state through `on_done` (called on the task
// thread). Cancel() may be called from any thread. Join() waits for the thread.
// The operators and their state belong to the task thread alone.
class Task {
 public:
  using DoneCallback = std::function<void(Task*)>;

  Task(TaskDescriptor desc, const ops::OperatorRegistry* registry, ChannelFactory channels,
       MetricsRegistry* metrics, Clock* clock, DoneCallback on_done);
  ~Task();

  void Start();
  void Cancel();
  void Join();

  const TaskDescriptor& descriptor() const { return desc_; }
  const std::shared_ptr<InputGate>& gate() const { return gate_; }
  std::string name() const;  // "<job>/<vertex name>#<subtask>"

  // Thread-safe snapshot of state, error and per-operator counters.
  proto::TaskStatus Status() const;

 private:
  struct OperatorSlot;
  class ChainOutput;
  class EdgeWriter;
  class TailOutput;

  absl::Status Run();
  absl::Status RunSource();
  absl::Status RunInput();
  absl::Status FlushIfDue(bool force);
  void SetState(proto::TaskState state, const std::string& error);

  const TaskDescriptor desc_;
  const ops::OperatorRegistry* registry_;
  ChannelFactory channels_;
  MetricsRegistry* metrics_;
  Clock* clock_;
  DoneCallback on_done_;
  const std::string metrics_owner_;
  std::shared_ptr<InputGate> gate_;
  std::atomic<bool> cancelled_{false};
  std::thread thread_;

  // Owned by the task thread (built in Run()).
  std::vector<std::unique_ptr<OperatorSlot>> ops_;
  std::vector<std::unique_ptr<ChainOutput>> chain_outputs_;
  std::vector<std::unique_ptr<EdgeWriter>> edge_writers_;
  std::unique_ptr<TailOutput> tail_output_;
  std::string failed_op_;
  int64_t buffer_timeout_nanos_ = 0;

  mutable absl::Mutex mu_;
  proto::TaskState state_ ABSL_GUARDED_BY(mu_) = proto::TASK_DEPLOYING;
  std::string error_ ABSL_GUARDED_BY(mu_);
  // Writers are created by the task thread; Cancel() reaches them through this list.
  std::vector<ChannelWriter*> live_writers_ ABSL_GUARDED_BY(mu_);
  std::vector<std::pair<std::string, std::shared_ptr<Counter>>> in_counters_ ABSL_GUARDED_BY(mu_);
  std::vector<std::shared_ptr<Counter>> out_counters_ ABSL_GUARDED_BY(mu_);
};

}  // namespace sluice::worker
