#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/record.h"
#include "plan/aggregate_function.h"
#include "yaml-cpp/yaml.h"

namespace sluice::plan {

class ErrorContext;
class OperatorTypeCatalog;
struct JobSpec;
struct OperatorSpec;

// One key component: an expression over the input record and the name it gets in outputs.
struct KeySpec {
  std::string name;
  std::string expr;
};

// A named side output an operator declares besides its main output (e.g. a window's
// `late_output`): a consumer reads it as input `<operator id>.<name>`; its records have
// `schema`. The operator emits to it with Output::EmitSide(index in the declared list, record).
struct SideOutputSpec {
  std::string name;
  Schema schema;
};

// Where the values of one output field of an operator come from (OperatorType::FieldOrigins):
// in every record the operator emits, a copy (same type, same value) of field `field` of a
// record of input `input` that this subtask received; `input` -1: anything else (computed,
// constant, or not known). The planner follows them to see that a stream stays partitioned by
// a key (OperatorSpec::partitioned_by).
struct FieldOrigin {
  int input = -1;
  int field = -1;
  bool operator==(const FieldOrigin& o) const { return input == o.input && field == o.field; }
};

// How many inputs an operator type reads.
enum class InputArity {
  kSource,  // none: it produces records itself
  kOne,     // exactly one
  kTwo,     // exactly two (input 0 and input 1), schemas may differ
  kMany,    // OperatorTraits::min_inputs to kMaxInputs inputs, all of one schema
};
inline constexpr int kMaxInputs = 64;

// An operator's parsed, validated options: what its type's ParseOptions() made of its YAML,
// once, at submission. Immutable and shared (OperatorSpec copies share it). Each type has its
// own options struct, derived through OptionsOf<T>; the operator reads it back with As<T>(),
// which checks the dynamic type by a tag (no RTTI) and returns null on a mismatch.
class OperatorOptions {
 public:
  virtual ~OperatorOptions() = default;

  template <typename T>
  const T* As() const {
    return TypeTag() == &T::kOptionsTag ? static_cast<const T*>(this) : nullptr;
  }

 protected:
  virtual const void* TypeTag() const = 0;
};

// Base of a concrete options struct: `struct FilterOptions final : OptionsOf<FilterOptions>`.
template <typename T>
class OptionsOf : public OperatorOptions {
 public:
  static inline const char kOptionsTag = 0;

 protected:
  const void* TypeTag() const final { return &kOptionsTag; }
};

// Options of a type that takes none (print, key_by's pass-through runtime, union).
struct NoOptions final : OptionsOf<NoOptions> {};

// What ParseOptions() and InferSchema() may read: the operator as planned so far (id, type,
// parallelism, inputs with their partitioning, input_schema, and for keyed types `key`, the key
// its input is partitioned by), its producers, the job-level settings (checkpoint, restart,
// watermark interval), and where to report errors and warnings.
class ParseContext {
 public:
  // `catalog` (may be null: no aggregate functions but the built-ins) is what the job is planned
  // against.
  ParseContext(const ErrorContext* errors, const JobSpec* job, const OperatorSpec* op,
               std::vector<const OperatorSpec*> producers, std::vector<std::string>* warnings,
               const OperatorTypeCatalog* catalog = nullptr)
      : errors_(errors),
        job_(job),
        op_(op),
        producers_(std::move(producers)),
        warnings_(warnings),
        catalog_(catalog) {}

  // A kInvalidArgument status "<file>:<line>:<column>: <reason>" at `node` (or a position).
  absl::Status At(const YAML::Node& node, absl::string_view reason) const;
  absl::Status AtPos(int line, int column, absl::string_view reason) const;
  const ErrorContext& errors() const { return *errors_; }

  const OperatorSpec& op() const { return *op_; }
  const JobSpec& job() const { return *job_; }
  // The operator that input `i` reads from.
  const OperatorSpec& producer(int i) const { return *producers_[i]; }
  // The schema of the records input `i` carries: its producer's output schema, or the schema
  // of the side output it reads.
  const Schema& input_schema(int i) const;
  // A valid but risky setting, shown to the user at submission.
  void Warn(std::string warning) const { warnings_->push_back(std::move(warning)); }
  // The catalog's aggregate function `name` (a plugin's), or null.
  std::shared_ptr<const AggregateFunction> FindAggregateFunction(absl::string_view name) const;
  // Their names, comma-separated ("" when there are none), for "unknown function" errors.
  std::string AggregateFunctionNames() const;

 private:
  const ErrorContext* errors_;
  const JobSpec* job_;
  const OperatorSpec* op_;
  std::vector<const OperatorSpec*> producers_;
  std::vector<std::string>* warnings_;
  const OperatorTypeCatalog* catalog_;
};

// What the planner needs to know about an operator type besides its options.
struct OperatorTraits {
  std::string name;                       // the YAML `type`
  InputArity inputs = InputArity::kOne;
  int min_inputs = 1;                     // kMany only
  bool has_output = true;                 // false: a sink
  // Needs a keyed input (hash-partitioned, or a key_by of parallelism 1) and gets a keyed state
  // backend; the planner sets OperatorSpec::key to the input's key before parsing options.
  bool keyed = false;
  // Its output is hash-partitioned by OutputKey() (key_by).
  bool keys_output = false;
  // Option keys it accepts besides id, type, parallelism and input/inputs.
  std::vector<std::string> option_keys;
  // Accepts any option key (plugin types: their own validate hook refuses unknown ones).
  bool any_option_keys = false;
};

// One operator type of the catalog: its traits, its options parser and its schema inference.
// Immutable after construction; used by the planner on whatever thread plans a job.
class OperatorType {
 public:
  explicit OperatorType(OperatorTraits traits) : traits_(std::move(traits)) {}
  virtual ~OperatorType() = default;

  const OperatorTraits& traits() const { return traits_; }
  const std::string& name() const { return traits_.name; }
  int min_inputs() const;
  int max_inputs() const;

  // Parses and validates the operator's options from its YAML mapping `config` (keys already
  // checked against option_keys). Errors are kInvalidArgument from ctx.At() (with positions).
  virtual absl::StatusOr<std::shared_ptr<const OperatorOptions>> ParseOptions(
      const YAML::Node& config, const ParseContext& ctx) const = 0;
  // The output schema (empty for sinks), from options ParseOptions() returned.
  virtual Schema InferSchema(const OperatorOptions& options, const ParseContext& ctx) const = 0;
  // keys_output types: the key their output is partitioned by.
  virtual std::vector<KeySpec> OutputKey(const OperatorOptions& options) const;
  // The side outputs an operator with these options declares (none by default), in the order
  // of their indices for Output::EmitSide(). Names are unique identifiers.
  virtual std::vector<SideOutputSpec> SideOutputs(const OperatorOptions& options,
                                                  const ParseContext& ctx) const;
  // Where each field of its main output comes from, one entry per output field (see
  // FieldOrigin); empty (the default) when nothing is known: then its output counts as
  // partitioned by no key.
  virtual std::vector<FieldOrigin> FieldOrigins(const OperatorOptions& options,
                                                const ParseContext& ctx) const;

 private:
  const OperatorTraits traits_;
};

using FieldOriginsFn =
    std::function<std::vector<FieldOrigin>(const OperatorOptions&, const ParseContext&)>;

// `type` with FieldOrigins() given by `origins`, and everything else its own (for a type whose
// origins are declared apart from where it is made, e.g. by the registry of the built-ins).
std::unique_ptr<OperatorType> WithFieldOrigins(std::unique_ptr<OperatorType> type,
                                               FieldOriginsFn origins);

// An OperatorType from two functions over a concrete options struct `Options`.
template <typename Options>
class TypedOperatorType final : public OperatorType {
 public:
  using ParseFn = absl::StatusOr<Options> (*)(const YAML::Node&, const ParseContext&);
  using InferFn = Schema (*)(const Options&, const ParseContext&);
  using KeyFn = std::vector<KeySpec> (*)(const Options&);
  using SideFn = std::vector<SideOutputSpec> (*)(const Options&, const ParseContext&);
  using OriginFn = std::vector<FieldOrigin> (*)(const Options&, const ParseContext&);

  TypedOperatorType(OperatorTraits traits, ParseFn parse, InferFn infer, KeyFn key = nullptr,
                    SideFn side = nullptr, OriginFn origins = nullptr)
      : OperatorType(std::move(traits)),
        parse_(parse),
        infer_(infer),
        key_(key),
        side_(side),
        origins_(origins) {}

  absl::StatusOr<std::shared_ptr<const OperatorOptions>> ParseOptions(
      const YAML::Node& config, const ParseContext& ctx) const override {
    absl::StatusOr<Options> options = parse_(config, ctx);
    if (!options.ok()) return options.status();
    return std::shared_ptr<const OperatorOptions>(std::make_shared<Options>(*std::move(options)));
  }
  Schema InferSchema(const OperatorOptions& options, const ParseContext& ctx) const override {
    return infer_(*options.As<Options>(), ctx);  // options come from ParseOptions() above
  }
  std::vector<KeySpec> OutputKey(const OperatorOptions& options) const override {
    return key_ == nullptr ? std::vector<KeySpec>() : key_(*options.As<Options>());
  }
  std::vector<SideOutputSpec> SideOutputs(const OperatorOptions& options,
                                          const ParseContext& ctx) const override {
    return side_ == nullptr ? std::vector<SideOutputSpec>() : side_(*options.As<Options>(), ctx);
  }
  std::vector<FieldOrigin> FieldOrigins(const OperatorOptions& options,
                                        const ParseContext& ctx) const override {
    return origins_ == nullptr ? std::vector<FieldOrigin>() : origins_(*options.As<Options>(), ctx);
  }

 private:
  const ParseFn parse_;
  const InferFn infer_;
  const KeyFn key_;
  const SideFn side_;
  const OriginFn origins_;
};

// FieldOrigins of an operator whose output records are its input records unchanged (filter,
// key_by): field i of the output is field i of input 0.
std::vector<FieldOrigin> SameFieldsAsInput(const ParseContext& ctx);

// The operator types a planner knows, by name, and the aggregate functions besides the
// built-ins (plugins'). Filled before use (RegisterBuiltinOperatorTypes,
// connectors::RegisterConnectorOperatorTypes, an OperatorRegistry, plugins); read-only and
// thread-safe afterwards.
class OperatorTypeCatalog {
 public:
  // kAlreadyExists: "operator type '<name>' already registered".
  absl::Status Add(std::unique_ptr<OperatorType> type);
  // Null for an unknown type.
  const OperatorType* Find(absl::string_view name) const;
  // kAlreadyExists: "aggregate function '<name>' already registered". Built-in names (count,
  // sum, ...) are the operators' to refuse.
  absl::Status AddAggregateFunction(std::shared_ptr<const AggregateFunction> fn);
  // Null for an unknown name.
  std::shared_ptr<const AggregateFunction> FindAggregateFunction(absl::string_view name) const;
  std::string AggregateFunctionNames() const;
  // The names, as listed in "unknown operator type" errors: sources, then transformations,
  // then sinks, each in registration order.
  std::string KnownTypes() const;
  size_t size() const { return types_.size(); }

 private:
  std::vector<std::unique_ptr<OperatorType>> types_;
  std::vector<std::shared_ptr<const AggregateFunction>> aggregate_functions_;
};

}  // namespace sluice::plan
