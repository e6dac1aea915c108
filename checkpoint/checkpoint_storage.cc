#include "checkpoint/checkpoint_storage.h"

#include <algorithm>
#include <map>
#include <string>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/status.h"

namespace sluice::checkpoint {

namespace {

constexpr absl::string_view kChkPrefix = "chk-";
constexpr absl::string_view kSharedDir = "shared";

// "chk-<id>" -> id.
bool ParseCheckpointDir(absl::string_view name, int64_t* id) {
  return absl::ConsumePrefix(&name, kChkPrefix) && absl::SimpleAtoi(name, id) && *id > 0;
}

// "000123.sst" -> 123.
bool ParseSstNumber(absl::string_view local_name, uint64_t* n) {
  return absl::ConsumeSuffix(&local_name, ".sst") && !local_name.empty() &&
         absl::SimpleAtoi(local_name, n);
}

// What a name in shared/ holds, within its backend: the kind of file and its place in the
// order the backend writes them (SST and OPTIONS numbers, a MANIFEST's number then size, the
// number of the MANIFEST a CURRENT names). state/rocksdb_backend.cc names them.
struct SharedFile {
  std::string backend;
  std::string kind;  // "sst", "MANIFEST", "CURRENT", "OPTIONS"
  std::pair<uint64_t, uint64_t> rank;
};

// "<backend>-<sst>", "<backend>-MANIFEST-<n>-<size>", "<backend>-CURRENT-MANIFEST-<n>",
// "<backend>-OPTIONS-<n>" (each with or without ".tmp").
bool ParseSharedName(absl::string_view name, SharedFile* out) {
  absl::ConsumeSuffix(&name, ".tmp");
  const size_t dash = name.find('-');
  if (dash == absl::string_view::npos || dash == 0) return false;
  out->backend = std::string(name.substr(0, dash));
  absl::string_view rest = name.substr(dash + 1);
  out->rank = {0, 0};
  if (absl::ConsumePrefix(&rest, "MANIFEST-")) {
    out->kind = "MANIFEST";
    const size_t d = rest.find('-');
    return d != absl::string_view::npos && absl::SimpleAtoi(rest.substr(0, d), &out->rank.first) &&
           absl::SimpleAtoi(rest.substr(d + 1), &out->rank.second);
  }
  if (absl::ConsumePrefix(&rest, "CURRENT-MANIFEST-")) {
    out->kind = "CURRENT";
    return absl::SimpleAtoi(rest, &out->rank.first);
  }
  if (absl::ConsumePrefix(&rest, "OPTIONS-")) {
    out->kind = "OPTIONS";
    return absl::SimpleAtoi(rest, &out->rank.first);
  }
  out->kind = "sst";
  return ParseSstNumber(rest, &out->rank.first);
}

}  // namespace

std::string CheckpointStorage::CheckpointDir(const std::string& job_dir, int64_t id) {
  return JoinPath(job_dir, absl::StrCat(kChkPrefix, id));
}

std::string CheckpointStorage::MetadataPath(const std::string& job_dir, int64_t id) {
  return JoinPath(CheckpointDir(job_dir, id), kMetadataFileName);
}

std::set<std::string> CheckpointStorage::ReferencedFiles(const proto::CheckpointMetadata& md) {
  std::set<std::string> files;
  for (const auto& st : md.subtasks()) {
    for (const auto& h : st.keyed()) {
      for (const auto& f : h.files()) {
        files.insert(f.shared() ? absl::StrCat(kSharedDir, "/", f.name())
                                : absl::StrCat(h.private_dir(), "/", f.name()));
      }
    }
  }
  return files;
}

absl::StatusOr<std::string> CheckpointStorage::WriteMetadata(const std::string& job_dir,
                                                             proto::CheckpointMetadata md) const {
  md.set_format_version(kMetadataFormatVersion);
  const std::string dir = CheckpointDir(job_dir, md.checkpoint_id());
  SLUICE_RETURN_IF_ERROR(CreateDirsDurably(*fs_, dir));
  // Workers created the directory for their private files: its entry may not be durable yet.
  SLUICE_RETURN_IF_ERROR(fs_->SyncDir(job_dir));
  const std::string path = JoinPath(dir, kMetadataFileName);
  SLUICE_RETURN_IF_ERROR(WriteFileDurably(*fs_, path, md.SerializeAsString()));
  return path;
}

absl::StatusOr<proto::CheckpointMetadata> CheckpointStorage::ReadMetadata(const std::string& path) const {
  absl::StatusOr<std::string> data = fs_->ReadFile(path);
  if (!data.ok()) {
    if (absl::IsNotFound(data.status())) return data.status();
    return absl::DataLossError(absl::StrCat("cannot read checkpoint metadata ", path, ": ",
                                            data.status().message()));
  }
  proto::CheckpointMetadata md;
  // An empty file is what a crash leaves of metadata written without fsync: never complete.
  if (data->empty() || !md.ParseFromString(*data)) {
    return absl::DataLossError(absl::StrCat("cannot decode checkpoint metadata ", path, " (",
                                            data->size(), " bytes)"));
  }
  if (md.format_version() > kMetadataFormatVersion) {
    return absl::FailedPreconditionError(absl::StrCat(
        "checkpoint metadata ", path, " has format version ", md.format_version(),
        ", newer than this build reads (", kMetadataFormatVersion, "); restore it with a newer Sluice"));
  }
  return md;
}

absl::StatusOr<RestorePoint> CheckpointStorage::ResolveRestorePath(const std::string& path) const {
  std::string metadata = path;
  if (fs_->IsDirectory(path)) metadata = JoinPath(path, kMetadataFileName);
  if (!fs_->Exists(metadata)) {
    return absl::NotFoundError(absl::StrCat("no checkpoint or savepoint at ", path, " (no ",
                                            kMetadataFileName, ")"));
  }
  RestorePoint point;
  point.metadata_path = metadata;
  const std::string parent = DirName(metadata);
  // A checkpoint's metadata sits in <job dir>/chk-<id>/; a savepoint's at its root.
  int64_t id = 0;
  const std::string base = parent.substr(parent.find_last_of('/') + 1);
  point.dir = ParseCheckpointDir(base, &id) ? DirName(parent) : parent;
  return point;
}

std::vector<int64_t> CheckpointStorage::ListCheckpointDirs(const std::string& job_dir) const {
  std::vector<int64_t> ids;
  absl::StatusOr<std::vector<std::string>> names = fs_->ListDir(job_dir);
  if (!names.ok()) return ids;
  for (const std::string& name : *names) {
    int64_t id = 0;
    if (ParseCheckpointDir(name, &id)) ids.push_back(id);
  }
  std::sort(ids.begin(), ids.end());
  return ids;
}

absl::Status CheckpointStorage::VerifyFiles(const std::string& dir, const proto::CheckpointMetadata& md) const {
  for (const std::string& f : ReferencedFiles(md)) {
    if (!fs_->Exists(JoinPath(dir, f))) {
      return absl::DataLossError(absl::StrCat("checkpoint ", md.checkpoint_id(), " references ",
                                              JoinPath(dir, f), ", which is missing"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<CompletedCheckpoint> CheckpointStorage::FindLatestCompleted(const std::string& job_dir) const {
  std::vector<int64_t> ids = ListCheckpointDirs(job_dir);
  for (auto it = ids.rbegin(); it != ids.rend(); ++it) {
    CompletedCheckpoint c;
    c.id = *it;
    c.metadata_path = MetadataPath(job_dir, c.id);
    absl::StatusOr<proto::CheckpointMetadata> md = ReadMetadata(c.metadata_path);
    if (absl::IsFailedPrecondition(md.status())) return md.status();
    if (!md.ok() || md->checkpoint_id() != c.id || !VerifyFiles(job_dir, *md).ok()) continue;
    c.metadata = std::move(*md);
    return c;
  }
  return absl::NotFoundError(absl::StrCat("no completed checkpoint in ", job_dir));
}

absl::Status CheckpointStorage::Discard(const std::string& job_dir, int64_t id) const {
  return fs_->DeleteRecursively(CheckpointDir(job_dir, id));
}

absl::Status CheckpointStorage::Subsume(const std::string& job_dir, const std::set<int64_t>& keep) const {
  if (keep.empty()) return absl::OkStatus();
  const int64_t newest = *keep.rbegin();
  std::set<std::string> still;  // referenced by a kept checkpoint
  for (int64_t id : keep) {
    absl::StatusOr<proto::CheckpointMetadata> md = ReadMetadata(MetadataPath(job_dir, id));
    // A kept checkpoint whose metadata cannot be read: what it references is unknown, so no
    // shared file may go.
    if (!md.ok()) return md.status();
    std::set<std::string> f = ReferencedFiles(*md);
    still.insert(f.begin(), f.end());
  }
  absl::Status result = absl::OkStatus();
  std::set<std::string> unreferenced;
  std::vector<int64_t> dropped;
  for (int64_t id : ListCheckpointDirs(job_dir)) {
    if (id >= newest || keep.count(id)) continue;
    dropped.push_back(id);
    const std::string path = MetadataPath(job_dir, id);
    absl::StatusOr<proto::CheckpointMetadata> md = ReadMetadata(path);
    if (md.ok()) {
      for (const std::string& f : ReferencedFiles(*md)) {
        if (!still.count(f)) unreferenced.insert(f);
      }
      // The metadata goes first: a crash from here on never leaves one naming deleted files.
      result.Update(fs_->DeleteFile(path));
      result.Update(fs_->SyncDir(CheckpointDir(job_dir, id)));
    }
  }
  for (const std::string& f : unreferenced) {
    absl::Status s = fs_->DeleteFile(JoinPath(job_dir, f));
    if (!absl::IsNotFound(s)) result.Update(s);
  }
  for (int64_t id : dropped) result.Update(Discard(job_dir, id));
  return result;
}

absl::StatusOr<int> CheckpointStorage::CollectSharedGarbage(const std::string& job_dir,
                                                            const proto::CheckpointMetadata& completed) const {
  // The highest file of each kind each backend of `completed` referenced. An SST keeps the name
  // of the backend that wrote it (a restored one another backend's), so SSTs count by the
  // referencing backend and their local number; the other kinds are always named by it.
  std::map<std::pair<std::string, std::string>, std::pair<uint64_t, uint64_t>> high;
  for (const auto& st : completed.subtasks()) {
    for (const auto& h : st.keyed()) {
      for (const auto& f : h.files()) {
        if (!f.shared()) continue;
        SharedFile parsed;
        uint64_t n = 0;
        if (ParseSstNumber(f.local_name(), &n)) {
          parsed.backend = h.backend_id();
          parsed.kind = "sst";
          parsed.rank = {n, 0};
        } else if (!ParseSharedName(f.name(), &parsed) || parsed.backend != h.backend_id()) {
          continue;
        }
        auto& m = high[{parsed.backend, parsed.kind}];
        m = std::max(m, parsed.rank);
      }
    }
  }
  if (high.empty()) return 0;
  std::set<std::string> referenced;
  for (int64_t id : ListCheckpointDirs(job_dir)) {
    absl::StatusOr<proto::CheckpointMetadata> md = ReadMetadata(MetadataPath(job_dir, id));
    if (absl::IsNotFound(md.status())) continue;  // aborted or pending: references nothing yet
    if (!md.ok()) return md.status();
    std::set<std::string> f = ReferencedFiles(*md);
    referenced.insert(f.begin(), f.end());
  }
  const std::string shared_dir = JoinPath(job_dir, kSharedDir);
  absl::StatusOr<std::vector<std::string>> names = fs_->ListDir(shared_dir);
  if (!names.ok()) return absl::IsNotFound(names.status()) ? absl::StatusOr<int>(0) : names.status();
  int deleted = 0;
  absl::Status result = absl::OkStatus();
  for (const std::string& name : *names) {
    SharedFile parsed;
    if (!ParseSharedName(name, &parsed)) continue;
    auto it = high.find({parsed.backend, parsed.kind});
    if (it == high.end() || parsed.rank >= it->second) continue;
    if (referenced.count(absl::StrCat(kSharedDir, "/", name))) continue;
    absl::Status s = fs_->DeleteFile(JoinPath(shared_dir, name));
    if (s.ok()) {
      ++deleted;
    } else if (!absl::IsNotFound(s)) {
      result.Update(s);
    }
  }
  if (!result.ok()) return result;
  return deleted;
}

absl::StatusOr<std::string> CheckpointStorage::CopySavepoint(const std::string& job_dir,
                                                             const proto::CheckpointMetadata& md,
                                                             const std::string& savepoint_dir) const {
  const std::string root =
      JoinPath(savepoint_dir, absl::StrCat("savepoint-", md.job_id(), "-", md.checkpoint_id()));
  // Created even when there is no file to copy (state all in the metadata).
  SLUICE_RETURN_IF_ERROR(CreateDirsDurably(*fs_, root));
  std::set<std::string> dirs;
  for (const std::string& f : ReferencedFiles(md)) {
    const std::string to = JoinPath(root, f);
    const std::string dir = DirName(to);
    if (dirs.insert(dir).second) SLUICE_RETURN_IF_ERROR(CreateDirsDurably(*fs_, dir));
    SLUICE_RETURN_IF_ERROR(CopyFileDurably(*fs_, JoinPath(job_dir, f), to));
  }
  // The copies' names must be durable before the metadata that names them.
  for (const std::string& dir : dirs) SLUICE_RETURN_IF_ERROR(fs_->SyncDir(dir));
  proto::CheckpointMetadata copy = md;
  copy.set_format_version(kMetadataFormatVersion);
  SLUICE_RETURN_IF_ERROR(WriteFileDurably(*fs_, JoinPath(root, kMetadataFileName), copy.SerializeAsString()));
  return root;
}

}  // namespace sluice::checkpoint
