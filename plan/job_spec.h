#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/record.h"
#include "plan/operator_type.h"
#include "yaml-cpp/yaml.h"

namespace sluice::plan {

// How records of an edge are distributed over the consumer's subtasks.
enum class Partition { kForward, kHash, kRebalance, kBroadcast };
absl::string_view PartitionName(Partition p);

// Where an operator reads from: `from: op` (its main output) or `from: op.name` (its side
// output `name`, see SideOutputSpec).
struct InputSpec {
  std::string from;          // the producer's id (without the side output)
  std::string side_output;   // "" for the main output
  int from_index = -1;  // index into JobSpec::operators
  int side_output_index = -1;  // index into the producer's side_outputs; -1: main output
  Partition partition = Partition::kForward;
  bool explicit_partition = false;
  std::vector<KeySpec> key;  // for kHash
  int line = 0;
  int column = 0;
};

// One operator of a job as written, validated, with its output schema inferred.
struct OperatorSpec {
  std::string id;
  std::string type;
  // From the type's traits (plan/operator_type.h).
  InputArity arity = InputArity::kOne;
  bool has_output = true;   // false: a sink
  bool keyed = false;       // gets a keyed state backend; `key` is its input's key
  bool keys_output = false; // key_by: its output is hash-partitioned by `key`
  int index = 0;
  int parallelism = 0;
  int line = 0;       // 1-based position of the operator in the file
  int column = 0;
  std::vector<InputSpec> inputs;
  Schema input_schema;   // empty for sources; input 0's for two-input operators
  Schema output_schema;  // empty for sinks
  std::vector<SideOutputSpec> side_outputs;  // declared by its type for its options
  std::vector<KeySpec> key;  // keyed operators: the key their input is partitioned by
  // The keys its main output is hash-partitioned by, each as the indices of NOT NULL fields of
  // output_schema: under such a key, every record that its subtask s emits has a key group of
  // subtask s (KeyGroupRangeForSubtask with the job's max_parallelism and its parallelism), as
  // if a hash edge by that key had brought it there. Derived from the hash edges into it (keys
  // of bare fields) and its producers' over forward edges, through its type's FieldOrigins().
  // A key_by whose input is partitioned by its own key feeds its consumers of one input
  // forward. Computed by ParseJobSpec only (not carried in a plan).
  std::vector<std::vector<int>> partitioned_by;
  // The options its type parsed and validated at submission; operators read them with
  // options_as<T>() (null if they are not a T) and never see the YAML.
  std::shared_ptr<const OperatorOptions> options;
  // The same options as text: the operator's YAML mapping without id, type, parallelism and
  // input/inputs, normalized (OptionsYaml()). This is what a planned job carries to the workers
  // (plan/plan_codec.h), whose copy of the type parses it into `options` again.
  std::string options_yaml;

  template <typename T>
  const T* options_as() const {
    return options == nullptr ? nullptr : options->As<T>();
  }
  bool is_source() const { return arity == InputArity::kSource; }
  bool is_sink() const { return !has_output; }
};

// The schema of the records `in` carries from `producer`: its output schema or that of the side
// output it reads.
inline const Schema& InputSchema(const OperatorSpec& producer, const InputSpec& in) {
  return in.side_output_index >= 0 ? producer.side_outputs[in.side_output_index].schema
                                   : producer.output_schema;
}

// `checkpoint: {interval: 1s, timeout: 60s, min_pause: 0s, retain: 3, tolerable_failures: 0,
//               mode: auto, aligned_timeout: 1s}`.
// A job without a `checkpoint` section takes no checkpoints (interval_ms 0); a section needs an
// interval of at least kMinCheckpointIntervalMs.
inline constexpr int64_t kMinCheckpointIntervalMs = 10;  // Flink's minimum too
struct CheckpointConfig {
  int64_t interval_ms = 0;
  int64_t timeout_ms = 60000;
  int64_t min_pause_ms = 0;
  int retain = 3;
  // Consecutive failed checkpoints (timed out, declined, unwritable) a job tolerates before it
  // is failed over; Flink's execution.checkpointing.tolerable-failed-checkpoints (default 0).
  int tolerable_failures = 0;
  // How barriers cross backpressure (Flink's execution.checkpointing.unaligned and
  // aligned-checkpoint-timeout): kAligned waits behind in-flight buffers; kUnaligned lets
  // barriers overtake them and stores them with the checkpoint; kAuto aligns first and switches
  // to unaligned when alignment takes longer than aligned_timeout_ms. Savepoints are aligned.
  enum class Mode { kAuto, kAligned, kUnaligned };
  Mode mode = Mode::kAuto;
  int64_t aligned_timeout_ms = 1000;
  bool enabled() const { return interval_ms > 0; }
};

// `restart: {strategy: fixed_delay, attempts: 3, delay: 1s}` or
// `{strategy: exponential_backoff, attempts: 10, initial_delay: 100ms, max_delay: 10s}`.
struct RestartConfig {
  enum class Strategy { kNone, kFixedDelay, kExponentialBackoff };
  Strategy strategy = Strategy::kFixedDelay;
  int attempts = 3;
  int64_t delay_ms = 1000;      // fixed delay, or the initial delay of the backoff
  int64_t max_delay_ms = 60000;
  // How long a restarting job waits for enough free slots (workers re-registering after a
  // coordinator restart, a replacement worker starting) before it fails. Waiting is not a
  // restart attempt (Flink's slot.request.timeout, 5 min by default).
  int64_t slot_wait_timeout_ms = 300000;
  // Delay before restart number `restart` (1-based).
  int64_t DelayFor(int restart) const {
    if (strategy != Strategy::kExponentialBackoff) return delay_ms;
    int64_t d = delay_ms;
    for (int i = 1; i < restart && d < max_delay_ms; ++i) d *= 2;
    return d < max_delay_ms ? d : max_delay_ms;
  }
};

// One entry of a job's `plugins: [path/to/libfoo.so, ...]`: a plugin file as the workers see
// it, and where the job file names it.
struct PluginRef {
  std::string path;
  int line = 0;
  int column = 0;
};

// A validated job: every reference resolved, every expression type-checked.
struct JobSpec {
  std::string name;
  std::string source_name;  // file name used in error positions
  int parallelism = 1;
  int max_parallelism = 0;
  int64_t buffer_timeout_ms = 10;
  // How often event-time sources emit watermarks (Flink's auto-watermark interval).
  int64_t watermark_interval_ms = 200;
  CheckpointConfig checkpoint;
  RestartConfig restart;
  std::vector<OperatorSpec> operators;  // in a topological order (inputs first)
  // The plugins the job names (loaded, and their types added to the catalog, before parsing).
  std::vector<PluginRef> plugins;
  // Valid but risky settings, shown to the user at submission.
  std::vector<std::string> warnings;
};

// Refuses a key of the operator's mapping `config` that is not an option of its type (id,
// type, parallelism, input and inputs are the planner's own): kInvalidArgument "unknown option
// 'k' for <type> operator '<id>' (expected ...)" at the key.
absl::Status CheckOptionKeys(const ErrorContext& ec, const YAML::Node& config,
                             const OperatorTraits& traits, const OperatorSpec& op);

// The normalized YAML text of an operator's options: its mapping `config` without the keys the
// planner itself reads (id, type, parallelism, input, inputs), in their order. Loading it gives
// a mapping that the type's ParseOptions() accepts as it accepted `config`.
std::string OptionsYaml(const YAML::Node& config);

// Parses a duration: "250ms", "1s", "2m", "1h", or a bare number of milliseconds.
absl::StatusOr<int64_t> ParseDurationMs(absl::string_view text);

// Largest job file accepted (the text submitted, after ${NAME} expansion): 1 MiB.
inline constexpr size_t kMaxJobFileBytes = 1 << 20;

// Refuses what cannot be a job file, before any parsing: more than kMaxJobFileBytes ("<source>:
// job file exceeds the limit of 1 MiB (1048576 bytes)"), bytes that are not UTF-8
// ("<source>:<line>:<column>: invalid UTF-8 (byte 0xff): a job file must be UTF-8 text") and NUL
// bytes ("<source>:<line>:<column>: NUL byte: a job file must be text"). Columns count
// characters, 1-based. Errors are kInvalidArgument. ParseJobSpec calls it; the CLI calls it
// before sending a file.
absl::Status CheckJobText(absl::string_view text, absl::string_view source_name);

// The job's `plugins` list (empty without one), read before planning so that their operator
// types can be added to the catalog ParseJobSpec() plans with. Errors are kInvalidArgument
// with positions ("job.yaml:2:12: 'plugins' must be a list of plugin file paths").
absl::StatusOr<std::vector<PluginRef>> ReadJobPlugins(absl::string_view yaml_text,
                                                      absl::string_view source_name);

// Parses and validates a job (CheckJobText first). `parallelism_override` > 0 replaces the
// job's default parallelism. Errors are kInvalidArgument, formatted
// "<source_name>:<line>:<column>: <reason>" (for example "job.yaml:12:11: unknown operator
// type 'fitler' (known: ...)"), at most kMaxErrorMessageBytes long (common/error_text.h).
// Operator types come from `catalog`: their options are parsed once, here, into each
// OperatorSpec::options.
absl::StatusOr<JobSpec> ParseJobSpec(absl::string_view yaml_text, absl::string_view source_name,
                                     const OperatorTypeCatalog& catalog,
                                     int parallelism_override = 0);

}  // namespace sluice::plan
