#include "coordinator/ha_store.h"

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace sluice::coordinator {

namespace {
constexpr absl::string_view kSuffix = ".pb";
}  // namespace

HaStore::HaStore(FileSystem* fs, std::string dir) : fs_(fs), jobs_dir_(JoinPath(dir, "jobs")) {}

std::string HaStore::RecordPath(const std::string& job_id) const {
  return JoinPath(jobs_dir_, absl::StrCat(job_id, kSuffix));
}

absl::Status HaStore::Write(const proto::JobRecord& r) const {
  SLUICE_RETURN_IF_ERROR(CreateDirsDurably(*fs_, jobs_dir_));
  return WriteFileDurably(*fs_, RecordPath(r.job_id()), r.SerializeAsString());
}

absl::StatusOr<proto::JobRecord> HaStore::Read(const std::string& job_id) const {
  const std::string path = RecordPath(job_id);
  SLUICE_ASSIGN_OR_RETURN(std::string data, fs_->ReadFile(path));
  proto::JobRecord r;
  if (data.empty() || !r.ParseFromString(data)) {
    return absl::DataLossError(absl::StrCat("cannot decode job record ", path, " (", data.size(), " bytes)"));
  }
  if (r.job_id() != job_id) {
    return absl::DataLossError(absl::StrCat("job record ", path, " names job '", r.job_id(), "'"));
  }
  return r;
}

absl::Status HaStore::Delete(const std::string& job_id) const {
  absl::Status s = fs_->DeleteFile(RecordPath(job_id));
  if (absl::IsNotFound(s)) return absl::OkStatus();
  SLUICE_RETURN_IF_ERROR(s);
  return fs_->SyncDir(jobs_dir_);
}

std::vector<proto::JobRecord> HaStore::List(std::vector<std::string>* errors) const {
  std::vector<proto::JobRecord> records;
  absl::StatusOr<std::vector<std::string>> names = fs_->ListDir(jobs_dir_);
  if (!names.ok()) {
    if (!absl::IsNotFound(names.status())) errors->push_back(std::string(names.status().message()));
    return records;
  }
  for (const std::string& name : *names) {
    if (!absl::EndsWith(name, kSuffix)) continue;  // e.g. <id>.pb.tmp of an interrupted write
    absl::StatusOr<proto::JobRecord> r = Read(name.substr(0, name.size() - kSuffix.size()));
    if (r.ok()) {
      records.push_back(std::move(*r));
    } else {
      errors->push_back(std::string(r.status().message()));
    }
  }
  return records;
}

}  // namespace sluice::coordinator
