#include "sdk/host/plugin_operator.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/key_groups.h"
#include "common/logging.h"
#include "common/record_codec.h"
#include "common/status.h"
#include "operators/key_hasher.h"
#include "sdk/host/options_json.h"

namespace sluice::plugin {
namespace {

constexpr absl::string_view kReservedPrefix = "__sluice";

absl::StatusCode ToAbslCode(sluice_status code) {
  switch (code) {
    case SLUICE_ERR_INVALID_ARGUMENT: return absl::StatusCode::kInvalidArgument;
    case SLUICE_ERR_FAILED_PRECONDITION: return absl::StatusCode::kFailedPrecondition;
    case SLUICE_ERR_UNAVAILABLE: return absl::StatusCode::kUnavailable;
    case SLUICE_ERR_CANCELLED: return absl::StatusCode::kCancelled;
    case SLUICE_ERR_NOT_FOUND: return absl::StatusCode::kNotFound;
    default: return absl::StatusCode::kInternal;
  }
}

sluice_status ToAbiCode(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kOk: return SLUICE_OK;
    case absl::StatusCode::kInvalidArgument: return SLUICE_ERR_INVALID_ARGUMENT;
    case absl::StatusCode::kFailedPrecondition: return SLUICE_ERR_FAILED_PRECONDITION;
    case absl::StatusCode::kUnavailable: return SLUICE_ERR_UNAVAILABLE;
    case absl::StatusCode::kCancelled: return SLUICE_ERR_CANCELLED;
    case absl::StatusCode::kNotFound: return SLUICE_ERR_NOT_FOUND;
    default: return SLUICE_ERR_INTERNAL;
  }
}

// Collects snapshot entries into a vector.
struct EntryCollector {
  sluice_snapshot_writer abi;
  std::vector<std::string>* entries;
  static void Add(sluice_snapshot_writer* self, const char* data, size_t size) {
    auto* c = reinterpret_cast<EntryCollector*>(self);
    c->entries->emplace_back(data == nullptr ? "" : data, data == nullptr ? 0 : size);
  }
};

}  // namespace

struct PluginOperator::CounterSlot {
  std::shared_ptr<Counter> counter;
};

const sluice_host_api PluginOperator::kApi = {
    sizeof(sluice_host_api),
    &PluginOperator::Emit,
    &PluginOperator::EmitInput,
    &PluginOperator::EmitWatermarkCb,
    &PluginOperator::CurrentWatermark,
    &PluginOperator::ProcessingTimeMs,
    &PluginOperator::EnterKey,
    &PluginOperator::CurrentKey,
    &PluginOperator::RegisterState,
    &PluginOperator::ValueGet,
    &PluginOperator::ValuePut,
    &PluginOperator::ValueClear,
    &PluginOperator::ListAppend,
    &PluginOperator::ListGet,
    &PluginOperator::ListClear,
    &PluginOperator::MapGet,
    &PluginOperator::MapPut,
    &PluginOperator::MapRemove,
    &PluginOperator::MapEntries,
    &PluginOperator::RegisterTimer,
    &PluginOperator::DeleteTimer,
    &PluginOperator::RegisterCounter,
    &PluginOperator::CounterAdd,
    &PluginOperator::Log,
    &PluginOperator::InputNulls,
};

PluginOperator::PluginOperator(const LoadedPlugin* plugin, const PluginOperatorType* type,
                               std::string options_json)
    : plugin_(plugin), type_(type), options_json_(std::move(options_json)) {}

absl::StatusOr<std::unique_ptr<PluginOperator>> PluginOperator::Create(const LoadedPlugin* plugin,
                                                                       const PluginOperatorType* type,
                                                                       std::string options_json) {
  std::unique_ptr<PluginOperator> op(new PluginOperator(plugin, type, std::move(options_json)));
  ErrorSink error;
  const std::string& json = op->options_json_;
  sluice_status s =
      type->abi->create(type->abi->type_data, sluice_string{json.data(), json.size()}, &op->op_, error.get());
  std::string who = absl::StrCat("operator type '", type->name, "' of ", Describe(*plugin));
  if (s != SLUICE_OK) {
    op->op_ = sluice_operator{};  // a failed create leaves nothing to release
    return absl::Status(ToAbslCode(s), absl::StrCat(who, " could not create an instance: ",
                                                    error.message().empty() ? "(no message)" : error.message()));
  }
  const sluice_operator& o = op->op_;
  absl::string_view missing;
  if (o.struct_size < SLUICE_OPERATOR_SIZE_1_0) {
    missing = "a complete sluice_operator (struct_size too small)";
  } else if (o.release == nullptr) {
    missing = "a release hook";
  } else if (o.open == nullptr) {
    missing = "an open hook";
  } else if (type->num_inputs == 1 && o.process == nullptr) {
    missing = "a process hook";
  } else if (type->num_inputs == 2 &&
             (!SLUICE_HAS_FIELD(&o, sluice_operator, process_input) || o.process_input == nullptr)) {
    missing = "a process_input hook (required for two-input types)";
  }
  if (!missing.empty()) {
    if (o.struct_size >= offsetof(sluice_operator, release) + sizeof(o.release) && o.release != nullptr) {
      o.release(o.instance);
    }
    op->op_ = sluice_operator{};
    return absl::FailedPreconditionError(absl::StrCat(who, " created an instance without ", missing));
  }
  return op;
}

PluginOperator::~PluginOperator() {
  if (op_.release == nullptr) return;
  if (opened_ && !closed_ && op_.close != nullptr) op_.close(op_.instance);
  op_.release(op_.instance);
}

absl::Status PluginOperator::Open(const ops::OperatorContext& ctx, ops::Output* output) {
  SLUICE_RETURN_IF_ERROR(ops::Operator::Open(ctx, output));
  if (ctx.spec == nullptr) return absl::FailedPreconditionError("a plugin operator needs its spec");
  const plan::OperatorSpec& spec = *ctx.spec;
  const bool two = type_->num_inputs == 2;
  if (two && !has_second_input_) {
    return absl::FailedPreconditionError(absl::StrCat(
        "plugin operator type '", type_->name, "' has 2 inputs, but was opened without its second input's "
        "schema (SetSecondInput)"));
  }
  input_schema_ = spec.input_schema;
  output_schema_ = spec.output_schema;
  same_schema_[0] = input_schema_ == output_schema_;
  same_schema_[1] = two && second_schema_ == output_schema_;
  for (const Field& f : input_schema_.fields()) input_types_[0].push_back(f.type);
  for (const Field& f : second_schema_.fields()) input_types_[1].push_back(f.type);
  for (const Field& f : output_schema_.fields()) output_types_.push_back(f.type);
  for (int i = 0; i < 2; ++i) {
    for (const Field& f : (i == 0 ? input_schema_ : second_schema_).fields()) {
      input_nullable_[i].push_back(f.nullable ? 1 : 0);
      input_has_nullable_[i] = input_has_nullable_[i] || f.nullable;
    }
    input_nullable_ptrs_[i] = input_nullable_[i].data();
  }
  for (const Field& f : output_schema_.fields()) output_nullable_.push_back(f.nullable ? 1 : 0);
  output_nulls_.assign(output_schema_.size(), 0);
  plugin_sees_nulls_ = plugin_->abi.minor >= 2;
  if (type_->keyed) {
    if (ctx.keyed_state == nullptr) {
      return absl::FailedPreconditionError(
          absl::StrCat("keyed plugin operator type '", type_->name, "' needs a keyed state backend"));
    }
    if (spec.key.empty()) {
      return absl::FailedPreconditionError(
          absl::StrCat("keyed plugin operator type '", type_->name, "' needs a key"));
    }
    backend_ = ctx.keyed_state;
    std::vector<Field> key_fields;
    for (const auto& k : spec.key) {
      SLUICE_ASSIGN_OR_RETURN(auto e, plan::CompileExpr(k.expr, input_schema_));
      key_fields.push_back(Field{k.name, e->type()});
      key_exprs_[0].push_back(std::move(e));
    }
    if (two) {
      if (second_key_.size() != spec.key.size()) {
        return absl::FailedPreconditionError(absl::StrCat(
            "keyed plugin operator type '", type_->name, "': input 1 is keyed by ", second_key_.size(),
            " field(s), input 0 by ", spec.key.size()));
      }
      for (size_t i = 0; i < second_key_.size(); ++i) {
        SLUICE_ASSIGN_OR_RETURN(auto e, plan::CompileExpr(second_key_[i].expr, second_schema_));
        if (e->type() != key_fields[i].type) {
          return absl::FailedPreconditionError(absl::StrCat(
              "keyed plugin operator type '", type_->name, "': key field ", i, " is ",
              FieldTypeName(e->type()), " in input 1 but ", FieldTypeName(key_fields[i].type), " in input 0"));
        }
        key_exprs_[1].push_back(std::move(e));
      }
    }
    key_schema_ = Schema(std::move(key_fields));
    key_record_.Resize(key_schema_.size());
    key_values_.resize(key_schema_.size());
  }
  abi_input_ = std::make_unique<AbiSchema>(input_schema_);
  abi_second_ = std::make_unique<AbiSchema>(second_schema_);
  abi_inputs_[0] = *abi_input_->get();
  abi_inputs_[1] = *abi_second_->get();
  abi_output_ = std::make_unique<AbiSchema>(output_schema_);
  abi_key_ = std::make_unique<AbiSchema>(key_schema_);
  output_values_.assign(output_schema_.size(), sluice_value{0, 0, {nullptr, 0}});
  out_record_.Resize(output_schema_.size());
  restored_copy_ = ctx.restored_state;
  for (const auto& e : restored_copy_) restored_views_.push_back(sluice_string{e.data(), e.size()});

  info_.struct_size = sizeof(info_);
  info_.host = reinterpret_cast<sluice_host*>(this);
  info_.api = &kApi;
  info_.operator_id = sluice_string{spec.id.data(), spec.id.size()};
  info_.task_name = sluice_string{ctx_.task_name.data(), ctx_.task_name.size()};
  info_.subtask = ctx.subtask;
  info_.parallelism = ctx.parallelism;
  info_.input_schema = abi_input_->get();
  info_.output_schema = abi_output_->get();
  info_.key_schema = abi_key_->get();
  info_.output_values = output_values_.data();
  info_.restored = ctx.restored ? 1 : 0;
  info_.restored_entries = restored_views_.data();
  info_.num_restored_entries = restored_views_.size();
  info_.num_inputs = type_->num_inputs;
  info_.input_schemas = abi_inputs_;
  info_.input_nullable = input_nullable_ptrs_;
  info_.output_nullable = output_nullable_.data();
  info_.output_nulls = output_nulls_.data();

  opened_ = true;  // close is due from here on, even if open fails
  in_open_ = true;
  host_error_ = absl::OkStatus();
  error_.Clear();
  sluice_status code = op_.open(op_.instance, &info_, error_.get());
  in_open_ = false;
  return Result(code, "open");
}

absl::Status PluginOperator::Result(sluice_status code, const char* hook) {
  if (code == SLUICE_OK) return absl::OkStatus();
  if (!host_error_.ok() &&
      (host_error_.code() == absl::StatusCode::kCancelled || error_.message().empty())) {
    return std::exchange(host_error_, absl::OkStatus());
  }
  if (error_.message().empty()) {
    return absl::Status(ToAbslCode(code), absl::StrCat("plugin operator type '", type_->name, "' failed in ",
                                                       hook, " with code ", code, " and no message"));
  }
  return absl::Status(ToAbslCode(code), error_.message());
}

sluice_status PluginOperator::HostFail(absl::Status s) {
  sluice_status code = ToAbiCode(s.code());
  host_error_ = std::move(s);
  return code;
}

sluice_status PluginOperator::NeedKeyed(const char* what) {
  if (backend_ != nullptr) return SLUICE_OK;
  return HostFail(absl::FailedPreconditionError(
      absl::StrCat("plugin operator type '", type_->name, "' called ", what,
                   ", which needs a keyed operator type (declare it keyed)")));
}

void PluginOperator::SetSecondInput(Schema schema, std::vector<plan::KeySpec> key) {
  has_second_input_ = true;
  second_schema_ = std::move(schema);
  second_key_ = std::move(key);
}

void PluginOperator::FillValues(const Record& r, sluice_value* out, uint8_t* nulls) const {
  const std::vector<FieldType>& types = input_types_[batch_input_];
  const std::vector<uint8_t>& nullable = input_nullable_[batch_input_];
  for (size_t i = 0; i < types.size(); ++i) {
    if (nulls != nullptr) {
      nulls[i] = nullable[i] != 0 && r.IsNull(i) ? 1 : 0;
      if (nulls[i] != 0) {  // a null reads as the type's default
        out[i] = sluice_value{0, 0, {"", 0}};
        continue;
      }
    }
    const Value& v = r[i];
    switch (types[i]) {
      case FieldType::kDouble: out[i].d = v.d; break;
      case FieldType::kString: out[i].s = sluice_string{v.s.data(), v.s.size()}; break;
      default: out[i].i = v.i; break;
    }
  }
}

absl::Status PluginOperator::Process(const Record& record) { return ProcessBatch(0, &record, 1); }

absl::Status PluginOperator::ProcessBatch(int input, const Record* records, size_t count) {
  if (input < 0 || input >= type_->num_inputs) {
    return absl::InvalidArgumentError(
        absl::StrCat("plugin operator type '", type_->name, "' has no input ", input));
  }
  if (count == 0) return absl::OkStatus();
  batch_input_ = input;
  const size_t nf = input_types_[input].size();
  if (input_values_.size() < count * nf) input_values_.resize(count * nf);
  if (batch_.size() < count) batch_.resize(count);
  const bool nulls = input_has_nullable_[input];
  if (nulls && input_nulls_.size() < count * nf) input_nulls_.resize(count * nf);
  for (size_t i = 0; i < count; ++i) {
    sluice_value* values = input_values_.data() + i * nf;
    FillValues(records[i], values, nulls ? input_nulls_.data() + i * nf : nullptr);
    batch_[i] = sluice_record{values, &records[i]};
  }
  host_error_ = absl::OkStatus();
  error_.Clear();
  batch_count_ = count;
  sluice_status code = type_->num_inputs == 2
                           ? op_.process_input(op_.instance, input, batch_.data(), count, error_.get())
                           : op_.process(op_.instance, batch_.data(), count, error_.get());
  batch_count_ = 0;
  return Result(code, type_->num_inputs == 2 ? "process_input" : "process");
}

absl::Status PluginOperator::ProcessWatermark(int64_t watermark_ms) {
  watermark_ = watermark_ms;
  if (op_.process_watermark == nullptr) return output_->EmitWatermark(watermark_ms);
  host_error_ = absl::OkStatus();
  error_.Clear();
  return Result(op_.process_watermark(op_.instance, watermark_ms, error_.get()), "process_watermark");
}

absl::Status PluginOperator::OnTimer(int64_t timestamp_ms, ops::TimeDomain domain, absl::string_view key) {
  if (backend_ == nullptr || op_.on_timer == nullptr) return absl::OkStatus();
  // The key as current_key() gives it to the plugin; the backend already has it current.
  key_bytes_.assign(key.data(), key.size());
  RecordDecoder decoder(&key_schema_, key_bytes_);
  absl::Status decoded = decoder.Next(&key_record_);
  if (!decoded.ok()) {
    return ctx_.state_origin.DataLoss(absl::StrCat("plugin operator type '", type_->name, "': a timer at ", timestamp_ms,
                                                   " fired for a key that does not decode: ", decoded.message()));
  }
  if (domain == ops::TimeDomain::kEventTime && ctx_.timers != nullptr) watermark_ = ctx_.timers->CurrentWatermark();
  host_error_ = absl::OkStatus();
  error_.Clear();
  return Result(op_.on_timer(op_.instance, static_cast<sluice_timer_domain>(domain), timestamp_ms, error_.get()),
                "on_timer");
}

absl::Status PluginOperator::Finish() {
  if (op_.finish == nullptr) return absl::OkStatus();
  host_error_ = absl::OkStatus();
  error_.Clear();
  return Result(op_.finish(op_.instance, error_.get()), "finish");
}

void PluginOperator::Close() {
  if (opened_ && !closed_ && op_.close != nullptr) op_.close(op_.instance);
  closed_ = true;
}

absl::Status PluginOperator::SnapshotState(int64_t checkpoint_id, std::vector<std::string>* entries) {
  if (op_.snapshot == nullptr) return absl::OkStatus();
  EntryCollector collector{{sizeof(sluice_snapshot_writer), nullptr, &EntryCollector::Add}, entries};
  host_error_ = absl::OkStatus();
  error_.Clear();
  return Result(op_.snapshot(op_.instance, checkpoint_id, &collector.abi, error_.get()), "snapshot");
}

absl::Status PluginOperator::NotifyCheckpointComplete(int64_t checkpoint_id) {
  if (op_.notify_checkpoint_complete == nullptr) return absl::OkStatus();
  host_error_ = absl::OkStatus();
  error_.Clear();
  return Result(op_.notify_checkpoint_complete(op_.instance, checkpoint_id, error_.get()),
                "notify_checkpoint_complete");
}

// --- Host callbacks ---------------------------------------------------------------------------

sluice_status PluginOperator::Emit(sluice_host* host) {
  PluginOperator* self = Self(host);
  if (self->in_open_) return self->HostFail(absl::FailedPreconditionError("emit called during open"));
  for (size_t i = 0; i < self->output_types_.size(); ++i) {
    const sluice_value& v = self->output_values_[i];
    Value& out = self->out_record_[i];
    switch (self->output_types_[i]) {
      case FieldType::kDouble: out.d = v.d; break;
      case FieldType::kString: out.s.assign(v.s.data == nullptr ? "" : v.s.data, v.s.data == nullptr ? 0 : v.s.size); break;
      default: out.i = v.i; break;
    }
  }
  if (self->plugin_sees_nulls_) {
    for (size_t i = 0; i < self->output_nulls_.size(); ++i) {
      const bool null = self->output_nulls_[i] != 0;
      if (null && self->output_nullable_[i] == 0) {
        return self->HostFail(absl::FailedPreconditionError(absl::StrCat(
            "plugin operator type '", self->type_->name, "' emitted null into output field '",
            self->output_schema_.field(i).name, "', which is not nullable (declare it with add_nullable_field)")));
      }
      self->out_record_.SetNullTo(i, null);
    }
  }
  absl::Status s = self->output_->Emit(self->out_record_);
  return s.ok() ? SLUICE_OK : self->HostFail(std::move(s));
}

sluice_status PluginOperator::EmitInput(sluice_host* host, const sluice_record* record) {
  PluginOperator* self = Self(host);
  if (!self->same_schema_[self->batch_input_]) {
    const Schema& in = self->batch_input_ == 0 ? self->input_schema_ : self->second_schema_;
    return self->HostFail(absl::FailedPreconditionError(absl::StrCat(
        "plugin operator type '", self->type_->name, "' emitted an input record unchanged, but its output schema ",
        self->output_schema_.ToString(), " is not the schema ", in.ToString(), " of input ", self->batch_input_)));
  }
  if (record < self->batch_.data() || record >= self->batch_.data() + self->batch_count_) {
    return self->HostFail(absl::FailedPreconditionError(absl::StrCat(
        "plugin operator type '", self->type_->name, "' emitted a record that is not one of the current process call")));
  }
  absl::Status s = self->output_->Emit(*static_cast<const Record*>(record->host_record));
  return s.ok() ? SLUICE_OK : self->HostFail(std::move(s));
}

sluice_status PluginOperator::EmitWatermarkCb(sluice_host* host, int64_t watermark_ms) {
  absl::Status s = Self(host)->output_->EmitWatermark(watermark_ms);
  return s.ok() ? SLUICE_OK : Self(host)->HostFail(std::move(s));
}

int64_t PluginOperator::CurrentWatermark(sluice_host* host) { return Self(host)->watermark_; }

int64_t PluginOperator::ProcessingTimeMs(sluice_host* host) { return Self(host)->ctx_.clock->WallMillis(); }

sluice_status PluginOperator::EnterKey(sluice_host* host, const sluice_record* record) {
  PluginOperator* self = Self(host);
  if (sluice_status s = self->NeedKeyed("enter_key"); s != SLUICE_OK) return s;
  if (record < self->batch_.data() || record >= self->batch_.data() + self->batch_count_) {
    return self->HostFail(absl::FailedPreconditionError(absl::StrCat(
        "plugin operator type '", self->type_->name, "' entered the key of a record that is not one of the current process call")));
  }
  const Record& r = *static_cast<const Record*>(record->host_record);
  const auto& exprs = self->key_exprs_[self->batch_input_];
  for (size_t i = 0; i < exprs.size(); ++i) {
    plan::EvalInto(*exprs[i], r, self->key_schema_.field(i).type, &self->key_record_, i);
  }
  self->key_bytes_.clear();
  EncodeRecord(self->key_schema_, self->key_record_, &self->key_bytes_);
  uint64_t hash = ops::KeyHasher::HashKeyRecord(self->key_schema_, self->key_record_);
  self->backend_->SetCurrentKey(self->key_bytes_, KeyGroupForHash(hash, self->ctx_.max_parallelism));
  return SLUICE_OK;
}

sluice_status PluginOperator::CurrentKey(sluice_host* host, const sluice_value** values, size_t* count) {
  PluginOperator* self = Self(host);
  if (sluice_status s = self->NeedKeyed("current_key"); s != SLUICE_OK) return s;
  for (size_t i = 0; i < self->key_values_.size(); ++i) {
    const Value& v = self->key_record_[i];
    sluice_value& out = self->key_values_[i];
    switch (self->key_schema_.field(i).type) {
      case FieldType::kDouble: out.d = v.d; break;
      case FieldType::kString: out.s = sluice_string{v.s.data(), v.s.size()}; break;
      default: out.i = v.i; break;
    }
  }
  *values = self->key_values_.data();
  *count = self->key_values_.size();
  return SLUICE_OK;
}

sluice_status PluginOperator::RegisterState(sluice_host* host, const char* name, size_t size,
                                            sluice_state_kind kind, int64_t ttl_ms, int32_t* id) {
  PluginOperator* self = Self(host);
  if (sluice_status s = self->NeedKeyed("register_state"); s != SLUICE_OK) return s;
  std::string n(name == nullptr ? "" : name, name == nullptr ? 0 : size);
  if (!self->in_open_) {
    return self->HostFail(absl::FailedPreconditionError(absl::StrCat("state '", n, "' registered outside open")));
  }
  if (n.empty() || absl::string_view(n).substr(0, kReservedPrefix.size()) == kReservedPrefix) {
    return self->HostFail(absl::InvalidArgumentError(
        absl::StrCat("state name '", n, "' is empty or starts with the reserved '", kReservedPrefix, "'")));
  }
  state::StateKind k;
  switch (kind) {
    case SLUICE_STATE_VALUE: k = state::StateKind::kValue; break;
    case SLUICE_STATE_LIST: k = state::StateKind::kList; break;
    case SLUICE_STATE_MAP: k = state::StateKind::kMap; break;
    default: return self->HostFail(absl::InvalidArgumentError(absl::StrCat("unknown state kind ", kind)));
  }
  *id = self->backend_->RegisterState(n, k, ttl_ms > 0 ? ttl_ms : 0);
  return SLUICE_OK;
}

sluice_status PluginOperator::ValueGet(sluice_host* host, int32_t id, sluice_string* value, int32_t* found) {
  PluginOperator* self = Self(host);
  if (sluice_status s = self->NeedKeyed("value_get"); s != SLUICE_OK) return s;
  absl::StatusOr<bool> f = self->backend_->Get(id, &self->value_buf_);
  if (!f.ok()) return self->HostFail(f.status());
  *found = *f ? 1 : 0;
  if (*f) *value = sluice_string{self->value_buf_.data(), self->value_buf_.size()};
  return SLUICE_OK;
}

sluice_status PluginOperator::ValuePut(sluice_host* host, int32_t id, const char* data, size_t size) {
  PluginOperator* self = Self(host);
  if (sluice_status s = self->NeedKeyed("value_put"); s != SLUICE_OK) return s;
  absl::Status s = self->backend_->Put(id, absl::string_view(data, data == nullptr ? 0 : size));
  return s.ok() ? SLUICE_OK : self->HostFail(std::move(s));
}

sluice_status PluginOperator::ValueClear(sluice_host* host, int32_t id) {
  PluginOperator* self = Self(host);
  if (sluice_status s = self->NeedKeyed("value_clear"); s != SLUICE_OK) return s;
  absl::Status s = self->backend_->Delete(id);
  return s.ok() ? SLUICE_OK : self->HostFail(std::move(s));
}

sluice_status PluginOperator::ListAppend(sluice_host* host, int32_t id, const char* data, size_t size) {
  PluginOperator* self = Self(host);
  if (sluice_status s = self->NeedKeyed("list_append"); s != SLUICE_OK) return s;
  absl::Status s = self->backend_->Append(id, absl::string_view(data, data == nullptr ? 0 : size));
  return s.ok() ? SLUICE_OK : self->HostFail(std::move(s));
}

sluice_status PluginOperator::ListGet(sluice_host* host, int32_t id, const sluice_string** items, size_t* count) {
  PluginOperator* self = Self(host);
  if (sluice_status s = self->NeedKeyed("list_get"); s != SLUICE_OK) return s;
  absl::Status s = self->backend_->GetList(id, &self->list_buf_);
  if (!s.ok()) return self->HostFail(std::move(s));
  self->views_buf_.clear();
  for (const auto& e : self->list_buf_) self->views_buf_.push_back(sluice_string{e.data(), e.size()});
  *items = self->views_buf_.data();
  *count = self->views_buf_.size();
  return SLUICE_OK;
}

sluice_status PluginOperator::ListClear(sluice_host* host, int32_t id) {
  PluginOperator* self = Self(host);
  if (sluice_status s = self->NeedKeyed("list_clear"); s != SLUICE_OK) return s;
  absl::Status s = self->backend_->ClearList(id);
  return s.ok() ? SLUICE_OK : self->HostFail(std::move(s));
}

sluice_status PluginOperator::MapGet(sluice_host* host, int32_t id, const char* key, size_t key_size,
                                     sluice_string* value, int32_t* found) {
  PluginOperator* self = Self(host);
  if (sluice_status s = self->NeedKeyed("map_get"); s != SLUICE_OK) return s;
  absl::StatusOr<bool> f =
      self->backend_->MapGet(id, absl::string_view(key, key == nullptr ? 0 : key_size), &self->value_buf_);
  if (!f.ok()) return self->HostFail(f.status());
  *found = *f ? 1 : 0;
  if (*f) *value = sluice_string{self->value_buf_.data(), self->value_buf_.size()};
  return SLUICE_OK;
}

sluice_status PluginOperator::MapPut(sluice_host* host, int32_t id, const char* key, size_t key_size,
                                     const char* value, size_t value_size) {
  PluginOperator* self = Self(host);
  if (sluice_status s = self->NeedKeyed("map_put"); s != SLUICE_OK) return s;
  absl::Status s = self->backend_->MapPut(id, absl::string_view(key, key == nullptr ? 0 : key_size),
                                          absl::string_view(value, value == nullptr ? 0 : value_size));
  return s.ok() ? SLUICE_OK : self->HostFail(std::move(s));
}

sluice_status PluginOperator::MapRemove(sluice_host* host, int32_t id, const char* key, size_t key_size) {
  PluginOperator* self = Self(host);
  if (sluice_status s = self->NeedKeyed("map_remove"); s != SLUICE_OK) return s;
  absl::Status s = self->backend_->MapRemove(id, absl::string_view(key, key == nullptr ? 0 : key_size));
  return s.ok() ? SLUICE_OK : self->HostFail(std::move(s));
}

sluice_status PluginOperator::MapEntries(sluice_host* host, int32_t id, const sluice_string** entries,
                                         size_t* count) {
  PluginOperator* self = Self(host);
  if (sluice_status s = self->NeedKeyed("map_entries"); s != SLUICE_OK) return s;
  absl::Status s = self->backend_->MapEntries(id, &self->map_buf_);
  if (!s.ok()) return self->HostFail(std::move(s));
  self->views_buf_.clear();
  for (const auto& [k, v] : self->map_buf_) {
    self->views_buf_.push_back(sluice_string{k.data(), k.size()});
    self->views_buf_.push_back(sluice_string{v.data(), v.size()});
  }
  *entries = self->views_buf_.data();
  *count = self->map_buf_.size();
  return SLUICE_OK;
}

sluice_status PluginOperator::RegisterTimer(sluice_host* host, sluice_timer_domain domain, int64_t ts) {
  PluginOperator* self = Self(host);
  if (sluice_status s = self->NeedKeyed("register_timer"); s != SLUICE_OK) return s;
  if (domain != SLUICE_EVENT_TIME && domain != SLUICE_PROCESSING_TIME) {
    return self->HostFail(absl::InvalidArgumentError(absl::StrCat("unknown timer domain ", domain)));
  }
  absl::Status s = self->backend_->RegisterTimer(static_cast<state::TimerDomain>(domain), ts);
  return s.ok() ? SLUICE_OK : self->HostFail(std::move(s));
}

sluice_status PluginOperator::DeleteTimer(sluice_host* host, sluice_timer_domain domain, int64_t ts) {
  PluginOperator* self = Self(host);
  if (sluice_status s = self->NeedKeyed("delete_timer"); s != SLUICE_OK) return s;
  if (domain != SLUICE_EVENT_TIME && domain != SLUICE_PROCESSING_TIME) {
    return self->HostFail(absl::InvalidArgumentError(absl::StrCat("unknown timer domain ", domain)));
  }
  absl::Status s = self->backend_->DeleteTimer(static_cast<state::TimerDomain>(domain), ts);
  return s.ok() ? SLUICE_OK : self->HostFail(std::move(s));
}

sluice_status PluginOperator::RegisterCounter(sluice_host* host, const char* name, size_t size,
                                              sluice_counter** counter) {
  PluginOperator* self = Self(host);
  std::string n(name == nullptr ? "" : name, name == nullptr ? 0 : size);
  if (!self->in_open_) {
    return self->HostFail(absl::FailedPreconditionError(absl::StrCat("counter '", n, "' registered outside open")));
  }
  auto slot = std::make_unique<CounterSlot>();
  if (self->ctx_.metrics != nullptr) {
    Labels labels = self->ctx_.metric_labels;
    labels.emplace_back("name", n);
    slot->counter = self->ctx_.metrics->AddCounter("sluice_plugin_counter_total",
                                                   "Counters of plugin operators", std::move(labels),
                                                   self->ctx_.metrics_owner);
  } else {
    slot->counter = std::make_shared<Counter>();
  }
  *counter = reinterpret_cast<sluice_counter*>(slot->counter.get());
  self->counters_.push_back(std::move(slot));
  return SLUICE_OK;
}

void PluginOperator::CounterAdd(sluice_host* host, sluice_counter* counter, uint64_t n) {
  if (counter != nullptr) reinterpret_cast<Counter*>(counter)->Add(n);
}

void PluginOperator::Log(sluice_host* host, sluice_log_level level, const char* message, size_t size) {
  PluginOperator* self = Self(host);
  absl::string_view m(message == nullptr ? "" : message, message == nullptr ? 0 : size);
  switch (level) {
    case SLUICE_LOG_DEBUG: spdlog::debug("{}: {}", self->ctx_.task_name, m); break;
    case SLUICE_LOG_WARN: spdlog::warn("{}: {}", self->ctx_.task_name, m); break;
    case SLUICE_LOG_ERROR: spdlog::error("{}: {}", self->ctx_.task_name, m); break;
    default: spdlog::info("{}: {}", self->ctx_.task_name, m); break;
  }
}

sluice_status PluginOperator::InputNulls(sluice_host* host, const uint8_t** nulls) {
  PluginOperator* self = Self(host);
  if (self->batch_count_ == 0) {
    return self->HostFail(absl::FailedPreconditionError(absl::StrCat(
        "plugin operator type '", self->type_->name, "' asked for input_nulls outside a process call")));
  }
  *nulls = self->input_has_nullable_[self->batch_input_] ? self->input_nulls_.data() : nullptr;
  return SLUICE_OK;
}

absl::StatusOr<std::unique_ptr<ops::Operator>> CreatePluginOperator(const LoadedPlugin& plugin,
                                                                   const PluginOperatorType& type,
                                                                   const plan::OperatorSpec& spec) {
  const PluginOptions* options = spec.options_as<PluginOptions>();
  if (options == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("operator '", spec.id, "' has no plugin options (its type is not a plugin type)"));
  }
  SLUICE_ASSIGN_OR_RETURN(auto op, PluginOperator::Create(&plugin, &type, options->json));
  if (type.num_inputs == 2 && spec.inputs.size() == 2) {
    op->SetSecondInput(options->second_input_schema, spec.inputs[1].key);
  }
  return std::unique_ptr<ops::Operator>(std::move(op));
}

}  // namespace sluice::plugin
