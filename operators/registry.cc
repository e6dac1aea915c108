#include "operators/registry.h"

#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace sluice::ops {

absl::Status OperatorRegistry::Register(std::unique_ptr<plan::OperatorType> type, Factory factory) {
  const std::string name = type->name();
  SLUICE_RETURN_IF_ERROR(catalog_.Add(std::move(type)));
  factories_.emplace(name, std::move(factory));
  return absl::OkStatus();
}

absl::Status OperatorRegistry::ReplaceFactoryForTest(const std::string& type, Factory factory) {
  auto it = factories_.find(type);
  if (it == factories_.end()) {
    return absl::NotFoundError(absl::StrCat("no operator type '", type, "' registered"));
  }
  it->second = std::move(factory);
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Operator>> OperatorRegistry::Create(
    const plan::OperatorSpec& spec) const {
  auto it = factories_.find(spec.type);
  if (it == factories_.end()) {
    return absl::NotFoundError(absl::StrCat("no operator type '", spec.type, "' on this worker"));
  }
  return it->second(spec);
}

}  // namespace sluice::ops
