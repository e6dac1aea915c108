#include "plan/operator_type.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "plan/job_spec.h"
#include "plan/option_parsing.h"

namespace sluice::plan {

absl::Status ParseContext::At(const YAML::Node& node, absl::string_view reason) const {
  return errors_->At(node, reason);
}

absl::Status ParseContext::AtPos(int line, int column, absl::string_view reason) const {
  return errors_->AtPos(line, column, reason);
}

const Schema& ParseContext::input_schema(int i) const {
  return InputSchema(*producers_[i], op_->inputs[i]);
}

int OperatorType::min_inputs() const {
  switch (traits_.inputs) {
    case InputArity::kSource: return 0;
    case InputArity::kOne: return 1;
    case InputArity::kTwo: return 2;
    case InputArity::kMany: return traits_.min_inputs;
  }
  return 1;
}

int OperatorType::max_inputs() const {
  switch (traits_.inputs) {
    case InputArity::kSource: return 0;
    case InputArity::kOne: return 1;
    case InputArity::kTwo: return 2;
    case InputArity::kMany: return kMaxInputs;
  }
  return 1;
}

std::vector<KeySpec> OperatorType::OutputKey(const OperatorOptions&) const { return {}; }

std::vector<SideOutputSpec> OperatorType::SideOutputs(const OperatorOptions&,
                                                      const ParseContext&) const {
  return {};
}

std::vector<FieldOrigin> OperatorType::FieldOrigins(const OperatorOptions&,
                                                    const ParseContext&) const {
  return {};
}

std::vector<FieldOrigin> SameFieldsAsInput(const ParseContext& ctx) {
  std::vector<FieldOrigin> origins(ctx.input_schema(0).size());
  for (size_t i = 0; i < origins.size(); ++i) origins[i] = {0, static_cast<int>(i)};
  return origins;
}

namespace {

// An OperatorType that is another one with its FieldOrigins() given apart (WithFieldOrigins).
class WithOrigins final : public OperatorType {
 public:
  WithOrigins(std::unique_ptr<OperatorType> type, FieldOriginsFn origins)
      : OperatorType(type->traits()), type_(std::move(type)), origins_(std::move(origins)) {}

  absl::StatusOr<std::shared_ptr<const OperatorOptions>> ParseOptions(
      const YAML::Node& config, const ParseContext& ctx) const override {
    return type_->ParseOptions(config, ctx);
  }
  Schema InferSchema(const OperatorOptions& options, const ParseContext& ctx) const override {
    return type_->InferSchema(options, ctx);
  }
  std::vector<KeySpec> OutputKey(const OperatorOptions& options) const override {
    return type_->OutputKey(options);
  }
  std::vector<SideOutputSpec> SideOutputs(const OperatorOptions& options,
                                          const ParseContext& ctx) const override {
    return type_->SideOutputs(options, ctx);
  }
  std::vector<FieldOrigin> FieldOrigins(const OperatorOptions& options,
                                        const ParseContext& ctx) const override {
    return origins_(options, ctx);
  }

 private:
  const std::unique_ptr<OperatorType> type_;
  const FieldOriginsFn origins_;
};

}  // namespace

std::unique_ptr<OperatorType> WithFieldOrigins(std::unique_ptr<OperatorType> type,
                                               FieldOriginsFn origins) {
  return std::make_unique<WithOrigins>(std::move(type), std::move(origins));
}

absl::Status OperatorTypeCatalog::Add(std::unique_ptr<OperatorType> type) {
  if (Find(type->name()) != nullptr) {
    return absl::AlreadyExistsError(
        absl::StrCat("operator type '", type->name(), "' already registered"));
  }
  types_.push_back(std::move(type));
  return absl::OkStatus();
}

const OperatorType* OperatorTypeCatalog::Find(absl::string_view name) const {
  for (const auto& t : types_) {
    if (t->name() == name) return t.get();
  }
  return nullptr;
}

absl::Status OperatorTypeCatalog::AddAggregateFunction(std::shared_ptr<const AggregateFunction> fn) {
  if (FindAggregateFunction(fn->name()) != nullptr) {
    return absl::AlreadyExistsError(
        absl::StrCat("aggregate function '", fn->name(), "' already registered"));
  }
  aggregate_functions_.push_back(std::move(fn));
  return absl::OkStatus();
}

std::shared_ptr<const AggregateFunction> OperatorTypeCatalog::FindAggregateFunction(
    absl::string_view name) const {
  for (const auto& f : aggregate_functions_) {
    if (f->name() == name) return f;
  }
  return nullptr;
}

std::string OperatorTypeCatalog::AggregateFunctionNames() const {
  std::vector<std::string> names;
  for (const auto& f : aggregate_functions_) names.push_back(f->name());
  return absl::StrJoin(names, ", ");
}

std::shared_ptr<const AggregateFunction> ParseContext::FindAggregateFunction(
    absl::string_view name) const {
  return catalog_ == nullptr ? nullptr : catalog_->FindAggregateFunction(name);
}

std::string ParseContext::AggregateFunctionNames() const {
  return catalog_ == nullptr ? std::string() : catalog_->AggregateFunctionNames();
}

std::string OperatorTypeCatalog::KnownTypes() const {
  std::vector<std::string> names;
  const auto role = [](const OperatorType& t) {
    return t.traits().inputs == InputArity::kSource ? 0 : t.traits().has_output ? 1 : 2;
  };
  for (int r = 0; r < 3; ++r) {
    for (const auto& t : types_) {
      if (role(*t) == r) names.push_back(t->name());
    }
  }
  return absl::StrJoin(names, ", ");
}

}  // namespace sluice::plan
