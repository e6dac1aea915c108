#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/filesystem.h"
#include "proto/control.pb.h"

namespace sluice::coordinator {

// The coordinator's durable job records (its "HA store"): one file <dir>/jobs/<job id>.pb per
// job, holding a JobRecord. A write replaces a record durably (write temp, fsync, rename, fsync
// dir), so a machine crash leaves the old record or the new one, never a torn one; a delete is
// durable once it returns.
//
// Every call does blocking I/O: the coordinator calls them on its I/O thread (or before it
// serves), never under its state mutex or on a gRPC callback thread. Stateless apart from the
// FileSystem pointer: thread-safe, though writes of one job's record must be ordered by the
// caller (the last write wins).
class HaStore {
 public:
  // REQUIRES: `fs` outlives this; `dir` is not empty.
  HaStore(FileSystem* fs, std::string dir);

  std::string RecordPath(const std::string& job_id) const;

  // Replaces the record of r.job_id(). Returns the failing call's status (kResourceExhausted for
  // a full disk, kUnavailable otherwise).
  absl::Status Write(const proto::JobRecord& r) const;
  // kNotFound if there is none; kDataLoss if it cannot be decoded.
  absl::StatusOr<proto::JobRecord> Read(const std::string& job_id) const;
  // Removes a record; OK if it is missing.
  absl::Status Delete(const std::string& job_id) const;
  // Every record, in file-name order. Records that cannot be read are skipped, each reported in
  // *errors (its path and why); temporaries of interrupted writes are ignored. An empty or
  // missing store has none.
  std::vector<proto::JobRecord> List(std::vector<std::string>* errors) const;

 private:
  FileSystem* const fs_;
  const std::string jobs_dir_;
};

}  // namespace sluice::coordinator
