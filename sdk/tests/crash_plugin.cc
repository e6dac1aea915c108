// A plugin whose validate hook never returns normally (libsdk_test_crash_plugin.so), for the
// helper process that validates plugin operators (host/plugin_validation.h): `abort_in_validate`
// calls abort(), `hang_in_validate` waits forever.
#include <unistd.h>

#include <cstdlib>

#include "sluice/sdk.h"

namespace {

namespace sdk = sluice::sdk;

class AbortInValidate : public sdk::Operator {
 public:
  static sdk::Status Validate(const sdk::Options&) { std::abort(); }
  sdk::Status Process(const sdk::Record& in, sdk::Context& ctx) override { return ctx.Forward(in); }
};

class HangInValidate : public sdk::Operator {
 public:
  static sdk::Status Validate(const sdk::Options&) {
    for (;;) pause();
  }
  sdk::Status Process(const sdk::Record& in, sdk::Context& ctx) override { return ctx.Forward(in); }
};

}  // namespace

SLUICE_PLUGIN("sdk-test-crash", "0.1.0", plugin) {
  plugin.AddOperator<AbortInValidate>("abort_in_validate").Validate(&AbortInValidate::Validate);
  plugin.AddOperator<HangInValidate>("hang_in_validate").Validate(&HangInValidate::Validate);
}
