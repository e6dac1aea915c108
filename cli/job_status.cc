#include "cli/job_status.h"

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "cli/client.h"
#include "common/watermark.h"

namespace sluice::cli {

std::string FormatRate(double r) {
  if (r >= 1e6) return absl::StrFormat("%.2fM/s", r / 1e6);
  if (r >= 1e3) return absl::StrFormat("%.1fK/s", r / 1e3);
  return absl::StrFormat("%.0f/s", r);
}

std::string FormatDuration(const proto::JobInfo& j, int64_t now_ms) {
  if (j.submit_time_ms() == 0) return "-";
  int64_t end = j.end_time_ms() > 0 ? j.end_time_ms() : now_ms;
  return absl::StrFormat("%.1fs", (end - j.submit_time_ms()) / 1000.0);
}

std::string FormatBytes(uint64_t b) {
  if (b >= (uint64_t{1} << 30)) return absl::StrFormat("%.2f GiB", b / 1073741824.0);
  if (b >= (uint64_t{1} << 20)) return absl::StrFormat("%.1f MiB", b / 1048576.0);
  if (b >= (uint64_t{1} << 10)) return absl::StrFormat("%.1f KiB", b / 1024.0);
  return absl::StrFormat("%d B", b);
}

std::string FormatHitRate(uint64_t hits, uint64_t misses) {
  if (hits + misses == 0) return "-";
  return absl::StrFormat("%.1f%%", 100.0 * hits / (hits + misses));
}

absl::string_view FailureLabel(proto::JobState state) {
  switch (state) {
    case proto::JOB_FAILED:
      return "error";
    case proto::JOB_RUNNING:
    case proto::JOB_FINISHED:
      return "earlier failure (recovered)";
    case proto::JOB_CANCELLING:
    case proto::JOB_CANCELLED:
      return "earlier failure";
    default:
      return "last failure";
  }
}

std::string FailureCode(const proto::JobInfo& j) {
  if (j.error_code() == 0 || j.error().empty()) return "";
  return absl::StrCat(" (", absl::StatusCodeToString(static_cast<absl::StatusCode>(j.error_code())), ")");
}

std::string FormatJobStatus(const proto::JobInfo& j, int64_t now_ms) {
  std::string out = absl::StrCat("Job ", j.job_id(), " (", j.name(), "): ", JobStateName(j.state()),
                                 j.state() == proto::JOB_FAILED ? FailureCode(j) : "", ", ",
                                 FormatDuration(j, now_ms), "\n");
  if (!j.stopped_with_savepoint().empty()) {
    absl::StrAppend(&out, "  stopped with savepoint ", j.stopped_with_savepoint(), "\n");
  }
  if (!j.error().empty()) {
    absl::StrAppend(&out, "  ", FailureLabel(j.state()), FailureCode(j), ": ", j.error(), "\n");
  }
  absl::StrAppend(&out, absl::StrFormat("  %-20s %-10s %4s %14s %14s %10s %10s\n", "OPERATOR", "TYPE",
                                        "PAR", "RECORDS IN", "RECORDS OUT", "IN RATE", "OUT RATE"));
  for (const auto& v : j.vertices()) {
    for (const auto& o : v.operators()) {
      absl::StrAppend(&out, absl::StrFormat("  %-20s %-10s %4d %14d %14d %10s %10s\n", o.id(), o.type(),
                                            o.parallelism(), o.records_in(), o.records_out(),
                                            FormatRate(o.records_in_per_s()),
                                            FormatRate(o.records_out_per_s())));
      if (o.records_skipped() > 0) {
        absl::StrAppend(&out, absl::StrFormat("  %-20s %d bad record%s skipped\n", "", o.records_skipped(),
                                              o.records_skipped() == 1 ? "" : "s"));
      }
      if (o.late_records_dropped() > 0) {
        absl::StrAppend(&out, absl::StrFormat("  %-20s %d late record%s dropped\n", "",
                                              o.late_records_dropped(),
                                              o.late_records_dropped() == 1 ? "" : "s"));
      }
      if (o.has_state()) {
        absl::StrAppend(&out, absl::StrFormat("  %-20s state %s, cache hit rate %s (%d hits, %d misses)\n",
                                              "", FormatBytes(o.state_size_bytes()),
                                              FormatHitRate(o.state_cache_hits(), o.state_cache_misses()),
                                              o.state_cache_hits(), o.state_cache_misses()));
        if (o.subtask_states_size() > 1) {
          std::string per;
          for (const auto& s : o.subtask_states()) {
            absl::StrAppend(&per, per.empty() ? "" : ", ", "#", s.subtask(), " ",
                            FormatBytes(s.state_size_bytes()), " ",
                            FormatHitRate(s.state_cache_hits(), s.state_cache_misses()));
          }
          absl::StrAppend(&out, absl::StrFormat("  %-20s per subtask: %s\n", "", per));
        }
      }
      if (o.has_input_watermark_ms() || o.idle_subtasks() > 0) {
        std::string idle = o.idle_subtasks() == 0 ? ""
                           : o.idle_subtasks() == o.parallelism()
                               ? ", idle"
                               : absl::StrFormat(", %d of %d subtasks idle", o.idle_subtasks(), o.parallelism());
        absl::StrAppend(&out, absl::StrFormat("  %-20s watermark %s%s\n", "",
                                              FormatWatermark(o.has_input_watermark_ms()
                                                                  ? o.input_watermark_ms()
                                                                  : kNoWatermark),
                                              idle));
      }
    }
  }
  if (j.attempt() > 1 || j.restarts() > 0) {
    absl::StrAppend(&out, "  attempt ", j.attempt(), ", ", j.restarts(), " restart(s)\n");
  }
  if (!j.restored_from().empty()) absl::StrAppend(&out, "  restored from ", j.restored_from(), "\n");
  if (j.restored_checkpoint_id() > 0) {
    absl::StrAppend(&out, "  this attempt restored checkpoint ", j.restored_checkpoint_id(), "\n");
  }
  if (j.waiting_for_slots() > 0) {
    absl::StrAppend(&out, absl::StrFormat("  waiting for %d slots (for %.1fs; restart.slot_wait_timeout bounds it)\n",
                                          j.waiting_for_slots(), (now_ms - j.waiting_since_ms()) / 1000.0));
  }
  if (j.checkpoints_size() > 0) {
    absl::StrAppend(&out, absl::StrFormat("  %-6s %-11s %10s %12s %12s %-9s %10s %10s\n", "CHKPT", "STATUS",
                                          "DURATION", "SIZE", "UPLOADED", "KIND", "ALIGNMENT",
                                          "IN-FLIGHT"));
    for (const auto& c : j.checkpoints()) {
      absl::StrAppend(&out, absl::StrFormat("  %-6d %-11s %8dms %12d %12d %-9s %8dms %10d%s\n", c.checkpoint_id(),
                                            c.status() + (c.savepoint() ? "*" : ""), c.duration_ms(),
                                            c.full_size(), c.incremental_size(),
                                            c.unaligned() ? "unaligned" : "aligned", c.alignment_ms(),
                                            c.persisted_bytes(),
                                            c.reason().empty() ? "" : "  " + c.reason()));
    }
  }
  absl::StrAppend(&out, "  placement:\n");
  for (const auto& v : j.vertices()) {
    absl::StrAppend(&out, "    [", v.name(), "]");
    for (const auto& s : v.subtasks()) {
      absl::StrAppend(&out, " #", s.subtask(), "@", s.worker_id(), "(", TaskStateName(s.state()), ")");
    }
    absl::StrAppend(&out, "\n");
  }
  return out;
}

}  // namespace sluice::cli
