#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/metrics.h"
#include "common/record.h"
#include "operators/operator.h"
#include "plan/expr.h"
#include "plan/operator_type.h"
#include "plan/job_spec.h"
#include "sdk/host/plugin_loader.h"
#include "sdk/host/plugin_types.h"
#include "sluice/plugin.h"
#include "state/keyed_state_backend.h"

namespace sluice::plugin {

// Runs one instance of a plugin operator type as an engine operator (ops::Operator).
//
// Lifecycle: the constructor creates the plugin instance (its `create` hook); Open() passes it
// the schemas, the key and the host callbacks (`open`); ProcessBatch() hands it a batch of
// records in one `process` call, as sluice_record views (no copy of strings, no allocation once
// the batch buffers have grown; PrefersBatches() is true, so the task batches chained input
// too); Process() is a batch of one; ProcessWatermark() calls `process_watermark` (or
// forwards); OnTimer() calls `on_timer` with the timer's key current; Finish(),
// SnapshotState(), NotifyCheckpointComplete() and Close() map to the hooks of the same names.
// The destructor calls `close` (if open was called and Close() was not) and then `release`.
//
// Keyed types: the key is the spec's `key`, evaluated by the host per record when the plugin
// enters it; state and timers live in the task's KeyedStateBackend (checkpointed, restored
// and rescaled with no help from the plugin). Timers are registered in the backend and fired
// by the task's TimerService (OperatorContext::timers) on OnTimer(), like any keyed operator's:
// event-time ones before the watermark that makes them due, processing-time ones from the
// task's loop.
//
// Errors: a non-OK hook fails the task with the plugin's message and code; when the plugin
// only passes on a failed host callback (e.g. Emit() cancelled), the host's own status is
// returned.
//
// Nulls: a null input value reaches every plugin as its type's default (0, 0.0, false, ""); a
// plugin of ABI 1.2 or later also learns which values are null (`input_nulls`) and may emit
// null into a nullable output field (`output_nulls`); older plugins emit no null.
//
// Two-input types (ABI 1.1): SetSecondInput() before Open() gives input 1's schema and key;
// ProcessBatch(input, ...) hands a batch of either input to `process_input`.
// CreatePluginOperator() calls SetSecondInput() from the spec.
//
// Threading: one task thread, like every operator; not thread-safe.
class PluginOperator final : public ops::Operator {
 public:
  // Creates the plugin instance for `options_json` (as given to the type's validate hook).
  // `plugin` and `type` live for the process.
  static absl::StatusOr<std::unique_ptr<PluginOperator>> Create(const LoadedPlugin* plugin,
                                                                const PluginOperatorType* type,
                                                                std::string options_json);
  ~PluginOperator() override;

  // Two-input types: the second input's schema and, for keyed types, its key (the same number
  // and types of fields as the spec's `key`, which is input 0's). REQUIRES: before Open().
  // (The spec has one input schema until the engine has two-input operators.)
  void SetSecondInput(Schema schema, std::vector<plan::KeySpec> key);

  // kFailedPrecondition for a two-input type without SetSecondInput(), or whose inputs' keys
  // differ in number or types.
  absl::Status Open(const ops::OperatorContext& ctx, ops::Output* output) override;
  // A batch of one (of input 0).
  absl::Status Process(const Record& record) override;
  // A batch of one of input `input_index`.
  absl::Status ProcessInput(int input_index, const Record& record) override {
    return ProcessBatch(input_index, &record, 1);
  }
  // Hands `count` records of input `input` (0, or 1 for two-input types) to the plugin in one
  // call: `process_input` for two-input types, `process` otherwise. kInvalidArgument for an
  // input the type does not have.
  absl::Status ProcessBatch(int input, const Record* records, size_t count) override;
  bool PrefersBatches() const override { return true; }
  absl::Status ProcessWatermark(int64_t watermark_ms) override;
  // A timer of the plugin is due; `key` is the backend's current key (encoded with the key
  // schema). kDataLoss if it does not decode.
  absl::Status OnTimer(int64_t timestamp_ms, ops::TimeDomain domain, absl::string_view key) override;
  absl::Status Finish() override;
  void Close() override;
  bool IsKeyed() const override { return type_->keyed; }
  absl::Status SnapshotState(int64_t checkpoint_id, std::vector<std::string>* entries) override;
  absl::Status NotifyCheckpointComplete(int64_t checkpoint_id) override;

 private:
  struct CounterSlot;
  PluginOperator(const LoadedPlugin* plugin, const PluginOperatorType* type, std::string options_json);

  // The status of a hook that returned `code`.
  absl::Status Result(sluice_status code, const char* hook);
  // Remembers a failed host callback's status and returns its code.
  sluice_status HostFail(absl::Status s);
  sluice_status NeedKeyed(const char* what);
  // Record r's values into out (nulls as defaults) and, when `nulls` is not null, one byte per
  // field into it (1: null).
  void FillValues(const Record& r, sluice_value* out, uint8_t* nulls) const;

  // The host callbacks (static table; `host` is this operator).
  static const sluice_host_api kApi;
  static PluginOperator* Self(sluice_host* host) { return reinterpret_cast<PluginOperator*>(host); }
  static sluice_status Emit(sluice_host* host);
  static sluice_status EmitInput(sluice_host* host, const sluice_record* record);
  static sluice_status EmitWatermarkCb(sluice_host* host, int64_t watermark_ms);
  static int64_t CurrentWatermark(sluice_host* host);
  static int64_t ProcessingTimeMs(sluice_host* host);
  static sluice_status EnterKey(sluice_host* host, const sluice_record* record);
  static sluice_status CurrentKey(sluice_host* host, const sluice_value** values, size_t* count);
  static sluice_status RegisterState(sluice_host* host, const char* name, size_t size,
                                     sluice_state_kind kind, int64_t ttl_ms, int32_t* id);
  static sluice_status ValueGet(sluice_host* host, int32_t id, sluice_string* value, int32_t* found);
  static sluice_status ValuePut(sluice_host* host, int32_t id, const char* data, size_t size);
  static sluice_status ValueClear(sluice_host* host, int32_t id);
  static sluice_status ListAppend(sluice_host* host, int32_t id, const char* data, size_t size);
  static sluice_status ListGet(sluice_host* host, int32_t id, const sluice_string** items, size_t* count);
  static sluice_status ListClear(sluice_host* host, int32_t id);
  static sluice_status MapGet(sluice_host* host, int32_t id, const char* key, size_t key_size,
                              sluice_string* value, int32_t* found);
  static sluice_status MapPut(sluice_host* host, int32_t id, const char* key, size_t key_size,
                              const char* value, size_t value_size);
  static sluice_status MapRemove(sluice_host* host, int32_t id, const char* key, size_t key_size);
  static sluice_status MapEntries(sluice_host* host, int32_t id, const sluice_string** entries,
                                  size_t* count);
  static sluice_status RegisterTimer(sluice_host* host, sluice_timer_domain domain, int64_t ts);
  static sluice_status DeleteTimer(sluice_host* host, sluice_timer_domain domain, int64_t ts);
  static sluice_status RegisterCounter(sluice_host* host, const char* name, size_t size,
                                       sluice_counter** counter);
  static void CounterAdd(sluice_host* host, sluice_counter* counter, uint64_t n);
  static void Log(sluice_host* host, sluice_log_level level, const char* message, size_t size);
  static sluice_status InputNulls(sluice_host* host, const uint8_t** nulls);

  // Constant after construction.
  const LoadedPlugin* const plugin_;
  const PluginOperatorType* const type_;
  const std::string options_json_;
  sluice_operator op_{};

  // Set at open.
  bool opened_ = false;
  bool closed_ = false;
  bool in_open_ = false;
  Schema input_schema_;
  Schema output_schema_;
  Schema key_schema_;
  std::unique_ptr<AbiSchema> abi_input_;
  std::unique_ptr<AbiSchema> abi_output_;
  std::unique_ptr<AbiSchema> abi_key_;
  bool same_schema_[2] = {false, false};  // output schema == input i's schema
  std::vector<FieldType> input_types_[2];
  std::vector<FieldType> output_types_;
  std::vector<uint8_t> input_nullable_[2];  // per input field: 1 when nullable
  bool input_has_nullable_[2] = {false, false};
  const uint8_t* input_nullable_ptrs_[2] = {nullptr, nullptr};
  std::vector<uint8_t> output_nullable_;
  bool plugin_sees_nulls_ = false;  // the plugin is of ABI 1.2 or later
  std::vector<std::unique_ptr<plan::Expr>> key_exprs_[2];  // per input
  bool has_second_input_ = false;
  Schema second_schema_;
  std::vector<plan::KeySpec> second_key_;
  std::unique_ptr<AbiSchema> abi_second_;
  sluice_schema abi_inputs_[2] = {{nullptr, 0}, {nullptr, 0}};
  state::KeyedStateBackend* backend_ = nullptr;
  std::vector<std::string> restored_copy_;
  std::vector<sluice_string> restored_views_;
  sluice_open_info info_{};
  std::vector<std::unique_ptr<CounterSlot>> counters_;

  // Per call (reused buffers: no allocation once grown).
  std::vector<sluice_value> output_values_;
  std::vector<uint8_t> output_nulls_;  // written by the plugin (ABI 1.2)
  std::vector<uint8_t> input_nulls_;   // the batch's, when its input has nullable fields
  Record out_record_;
  std::vector<sluice_value> input_values_;
  std::vector<sluice_record> batch_;
  size_t batch_count_ = 0;  // records of the process call under way (0 outside one)
  int batch_input_ = 0;     // and their input
  Record key_record_;
  std::vector<sluice_value> key_values_;
  std::string key_bytes_;
  std::string value_buf_;
  std::vector<std::string> list_buf_;
  std::vector<std::pair<std::string, std::string>> map_buf_;
  std::vector<sluice_string> views_buf_;
  int64_t watermark_ = INT64_MIN;
  ErrorSink error_;
  absl::Status host_error_;
};

// Creates the operator for `spec` (a plugin operator type) from its PluginOptions (for a
// two-input type also giving it input 1's schema and key).
// Returns kFailedPrecondition if spec carries options of another type.
absl::StatusOr<std::unique_ptr<ops::Operator>> CreatePluginOperator(const LoadedPlugin& plugin,
                                                                   const PluginOperatorType& type,
                                                                   const plan::OperatorSpec& spec);

}  // namespace sluice::plugin
