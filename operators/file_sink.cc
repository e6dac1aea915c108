#include "operators/internal/builtins.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include <unistd.h>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "common/record_codec.h"
#include "common/status.h"
#include "operators/file_sink_options.h"
#include "operators/two_phase_commit_sink.h"

namespace sluice::ops {
namespace {

// The `file` sink, a TwoPhaseCommitSink over files. Writes JSON lines under `path`, exactly
// once with checkpoints. File names are unique per job run, as Flink's
// part-<uuid>-<subtask>-<n>: part-<job>-<subtask>-<attempt>-<n> while checkpointing,
// part-<job>-<subtask> without. A file is written as .inprogress, renamed to
// .pending at the checkpoint barrier and to .jsonl when the checkpoint completes; a commit never
// replaces an existing file, so jobs restored from one another's savepoints, or unrelated jobs,
// can share a directory. Only files of the sink's own job are ever removed. A pending file's
// absolute path is its transaction handle, so a job restored with another output path still
// commits it in place.
class FileSink final : public TwoPhaseCommitSink {
 public:
  ~FileSink() override { Close(); }

  void Close() override {
    if (file_ != nullptr) {
      // Not pre-committed: no checkpoint refers to it, so nobody will ever commit it.
      std::fclose(file_);
      file_ = nullptr;
      std::remove(path_.c_str());
    }
  }

 protected:
  absl::Status Initialize() override {
    SLUICE_ASSIGN_OR_RETURN(const FileSinkOptions* o, TypedOptions<FileSinkOptions>(ctx_));
    dir_ = o->path;
    std::error_code ec;
    std::filesystem::create_directories(dir_, ec);
    if (ec) {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot create directory ", dir_.string(), ": ", ec.message()));
    }
    dir_ = std::filesystem::absolute(dir_, ec);
    prefix_ = absl::StrCat("part-", ctx_.job_id, "-");
    buffer_.reserve(kFlushBytes + 4096);
    return absl::OkStatus();
  }

  absl::StatusOr<std::string> BeginTransaction(bool transactional) override {
    std::string name = transactional
                           ? absl::StrCat(prefix_, ctx_.subtask, "-", ctx_.attempt, "-", ++seq_, ".inprogress")
                           : absl::StrCat(prefix_, ctx_.subtask, ".inprogress");
    path_ = (dir_ / name).string();
    // "x": exclusive; an existing file of that name is never truncated.
    file_ = std::fopen(path_.c_str(), "wx");
    if (file_ == nullptr) {
      return absl::FailedPreconditionError(absl::StrCat("cannot create ", path_, ": ", std::strerror(errno)));
    }
    return path_;
  }

  absl::Status Write(const Record& r) override {
    AppendRecordJson(ctx_.spec->input_schema, r, &buffer_);
    buffer_.push_back('\n');
    if (buffer_.size() >= kFlushBytes) return Flush();
    return absl::OkStatus();
  }

  absl::Status Flush() override {
    if ((!buffer_.empty() && std::fwrite(buffer_.data(), 1, buffer_.size(), file_) != buffer_.size()) ||
        std::fflush(file_) != 0) {
      return absl::UnavailableError(absl::StrCat("cannot write ", path_, ": ", std::strerror(errno)));
    }
    buffer_.clear();
    return absl::OkStatus();
  }

  absl::StatusOr<std::string> PreCommit(const std::string& txn) override {
    SLUICE_RETURN_IF_ERROR(Flush());
    if (std::fflush(file_) != 0 || fsync(fileno(file_)) != 0) {
      return absl::UnavailableError(absl::StrCat("cannot sync ", txn, ": ", std::strerror(errno)));
    }
    std::fclose(file_);
    file_ = nullptr;
    std::string pending = ReplaceSuffix(txn, ".inprogress", ".pending");
    SLUICE_RETURN_IF_ERROR(RenameNoReplace(txn, pending));
    return pending;
  }

  // <dir>/part-J-S-A-N.pending -> <dir>/part-J-S-A-N.jsonl. Idempotent: a redo after a restore
  // finds the pending file gone and the committed one there.
  absl::Status Commit(const std::string& pending) override {
    if (!absl::EndsWith(pending, ".pending") || !absl::StartsWith(pending, "/")) {
      return ctx_.state_origin.DataLoss(absl::StrCat("file sink pending file '", absl::CEscape(pending),
                                                     "' is not an absolute path of a .pending file"));
    }
    const std::string final_name = ReplaceSuffix(pending, ".pending", ".jsonl");
    absl::Status s = RenameNoReplace(pending, final_name);
    if (s.ok()) return s;
    std::error_code ec;
    if (absl::IsNotFound(s)) {
      if (std::filesystem::exists(final_name, ec)) return absl::OkStatus();  // committed before
      return ctx_.state_origin.DataLoss(absl::StrCat("pending file ", pending,
                                                     " of a completed checkpoint is missing"));
    }
    if (absl::IsAlreadyExists(s)) {
      if (SameFile(pending, final_name)) {
        // A commit interrupted between link and unlink (filesystems without renameat2).
        std::filesystem::remove(pending, ec);
        return absl::OkStatus();
      }
      return absl::FailedPreconditionError(absl::StrCat(
          "cannot commit ", pending, ": ", final_name,
          " already exists and holds other output (does another job write the same file names "
          "into this path?); nothing was replaced, the pending file is kept"));
    }
    return s;
  }

  absl::Status AbortLeftovers(const std::set<std::string>& keep) override {
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(dir_, ec)) {
      const std::string name = entry.path().filename().string();
      bool garbage = absl::EndsWith(name, ".inprogress") || absl::EndsWith(name, ".pending");
      if (!garbage || !absl::StartsWith(name, prefix_) || keep.count(entry.path().string())) continue;
      // part-<this job>-S-A-N.*: only files of this job's earlier attempts (whose tasks are
      // gone) are touched; other jobs' files, also those of the job a savepoint came from, never.
      std::vector<std::string> parts = absl::StrSplit(name.substr(prefix_.size()), absl::ByAnyChar("-."));
      int64_t attempt = 0;
      if (parts.size() == 4 && absl::SimpleAtoi(parts[1], &attempt) && attempt < ctx_.attempt) {
        std::filesystem::remove(entry.path(), ec);
      }
    }
    return absl::OkStatus();
  }

 private:
  static constexpr size_t kFlushBytes = 64 * 1024;

  static std::string ReplaceSuffix(const std::string& s, absl::string_view from, absl::string_view to) {
    return absl::StrCat(absl::string_view(s).substr(0, s.size() - from.size()), to);
  }

  std::filesystem::path dir_;
  std::string prefix_;  // part-<job>-
  int64_t seq_ = 0;
  std::string path_;
  std::FILE* file_ = nullptr;
  std::string buffer_;
};

}  // namespace

std::unique_ptr<Operator> MakeFileSink() { return std::make_unique<FileSink>(); }

}  // namespace sluice::ops
