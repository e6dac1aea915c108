#include "operators/internal/builtins.h"

#include <string>

#include "common/logging.h"
#include "common/record_codec.h"
#include "operators/print_sink_options.h"

namespace sluice::ops {
namespace {

// Logs each record as JSON at info level.
class PrintSink final : public Operator {
 public:
  absl::Status Process(const Record& r) override {
    line_.clear();
    AppendRecordJson(ctx_.spec->input_schema, r, &line_);
    spdlog::info("{}: {}", ctx_.task_name, line_);
    return absl::OkStatus();
  }

 private:
  std::string line_;
};

}  // namespace

std::unique_ptr<Operator> MakePrintSink() { return std::make_unique<PrintSink>(); }

}  // namespace sluice::ops
