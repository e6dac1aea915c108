#pragma once

#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "proto/control.pb.h"

namespace sluice::cli {

// Text of `sluice status`, `sluice list` and `sluice run --wait`. Pure functions of the job
// info and the current time (ms since the epoch), so they are tested without a cluster.

// "12.34K/s" and the like.
std::string FormatRate(double records_per_s);

// Seconds since submission: until the end for an ended job, else until `now_ms`; "-" if the
// job has no submission time.
// "12.3 MiB" and the like.
std::string FormatBytes(uint64_t bytes);
// hits / (hits + misses) as "97.5%"; "-" when there were no reads.
std::string FormatHitRate(uint64_t hits, uint64_t misses);

std::string FormatDuration(const proto::JobInfo& j, int64_t now_ms);

// How `sluice status` labels the job's recorded failure (JobInfo.error), by the job's state:
// "error" when it failed the job, "last failure" while the job is restarting from it, and
// "earlier failure (recovered)" once the job runs again or finished; a cancelled job's is an
// "earlier failure".
absl::string_view FailureLabel(proto::JobState state);

// " (DATA_LOSS)" and the like: the status code of the job's failure (JobInfo.error_code), or ""
// when it has none.
std::string FailureCode(const proto::JobInfo& j);

// The whole `sluice status JOB` text: state, failure, operators, restarts, checkpoints,
// placement; lines end with '\n'.
std::string FormatJobStatus(const proto::JobInfo& j, int64_t now_ms);

}  // namespace sluice::cli
