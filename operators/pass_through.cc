#include "operators/internal/builtins.h"

#include <memory>

namespace sluice::ops {
namespace {

// key_by and union change where records go, not the records: the task routes them.
class PassThroughOperator final : public Operator {
 public:
  absl::Status Process(const Record& r) override { return output_->Emit(r); }
  absl::Status ProcessOwned(Record* r) override { return output_->EmitOwned(r); }
  bool ForwardsUnchanged() const override { return true; }
};

}  // namespace

// key_by and union: the task routes their records (hash-partitioned by the key, or merged).
std::unique_ptr<Operator> MakeKeyBy() { return std::make_unique<PassThroughOperator>(); }
std::unique_ptr<Operator> MakeUnion() { return std::make_unique<PassThroughOperator>(); }

}  // namespace sluice::ops
