#pragma once

#include <string>

#include "absl/status/status.h"

namespace sluice {

// Process plumbing shared by the daemons' main() functions.

// Blocks SIGTERM and SIGINT in the calling thread and every thread it creates afterwards, and
// ignores SIGPIPE. Call first in main(), before any thread starts.
void BlockTerminationSignals();
// Waits for SIGTERM or SIGINT (blocked by BlockTerminationSignals) and returns its number.
int WaitForTerminationSignal();
// WriteFileDurably (common/filesystem.h) on the POSIX filesystem: writes `content` to `path`
// through a temporary file (fsynced) and a rename, then fsyncs the
// directory: readers never see a partial file, and a machine crash leaves the old content or
// the new one.
absl::Status WriteFileAtomically(const std::string& path, const std::string& content);

}  // namespace sluice
