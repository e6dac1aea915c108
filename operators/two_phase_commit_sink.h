#pragma once

#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/state_format.h"
#include "common/status.h"
#include "operators/operator.h"

namespace sluice::ops {

// A sink that writes in transactions and makes its output exactly-once through checkpoints,
// as Flink's TwoPhaseCommitSinkFunction: records go into the open transaction; at a checkpoint
// barrier the transaction is pre-committed (made durable, not yet visible) and remembered in the
// operator state; when that checkpoint completes it is committed. After a failure, the restored
// state lists the pre-committed transactions of the checkpoint restored from: they are committed
// (commits are idempotent), and transactions of earlier attempts not listed are aborted.
//
// Subclasses implement the transaction hooks (files here; Kafka transactions later). A
// transaction is named by a string handle. The list is union state, and only subtask 0 commits
// restored transactions and aborts leftovers, so rescaling needs nothing special. Without
// checkpoints the sink runs one transaction that Finish() flushes and commits.
// Each state entry is [kEntryVersion][handle] (VersionedEntry()); entries of format 0 are the
// handle alone, which is text (never starts with a byte below 0x20). Open() strips the
// versions before RecoverRestored(); a newer version fails the restore with kDataLoss.
// All calls come from the owning task thread.
class TwoPhaseCommitSink : public Operator {
 public:
  absl::Status Open(const OperatorContext& ctx, Output* output) override {
    SLUICE_RETURN_IF_ERROR(Operator::Open(ctx, output));
    SLUICE_RETURN_IF_ERROR(Initialize());
    transactional_ = ctx.checkpointing;
    if (transactional_ && ctx.restored) {
      std::vector<std::string> restored;
      for (const std::string& entry : ctx.restored_state) {
        absl::string_view body;
        SLUICE_ASSIGN_OR_RETURN(int version, ReadTextStateVersion(ctx.state_origin, "sink transaction state",
                                                                  entry, kEntryVersion, &body));
        (void)version;
        restored.emplace_back(body);
      }
      SLUICE_RETURN_IF_ERROR(RecoverRestored(restored));
    }
    return absl::OkStatus();
  }

  absl::Status Process(const Record& r) override {
    if (current_.empty()) {
      SLUICE_ASSIGN_OR_RETURN(current_, BeginTransaction(transactional_));
    }
    return Write(r);
  }

  absl::Status Finish() override {
    if (current_.empty()) return absl::OkStatus();
    SLUICE_RETURN_IF_ERROR(Flush());
    if (transactional_) return absl::OkStatus();  // the final checkpoint commits it
    SLUICE_ASSIGN_OR_RETURN(std::string pending, PreCommit(current_));
    current_.clear();
    return Commit(pending);
  }

  absl::Status SnapshotState(int64_t checkpoint_id, std::vector<std::string>* entries) override {
    if (!transactional_) return absl::OkStatus();
    if (!current_.empty()) {
      SLUICE_ASSIGN_OR_RETURN(std::string pending, PreCommit(current_));
      current_.clear();
      pending_.push_back({checkpoint_id, std::move(pending)});
    }
    for (const auto& p : pending_) entries->push_back(VersionedEntry(p.second));
    return absl::OkStatus();
  }
  bool UnionState() const final { return true; }

  absl::Status NotifyCheckpointComplete(int64_t checkpoint_id) override {
    while (!pending_.empty() && pending_.front().first <= checkpoint_id) {
      SLUICE_RETURN_IF_ERROR(Commit(pending_.front().second));
      pending_.erase(pending_.begin());
    }
    return absl::OkStatus();
  }

 protected:
  // Called once from Open().
  virtual absl::Status Initialize() { return absl::OkStatus(); }
  // Starts a transaction and returns its handle. `transactional` is false when the job takes
  // no checkpoints (the sink then writes its final output directly).
  virtual absl::StatusOr<std::string> BeginTransaction(bool transactional) = 0;
  // Writes a record into the open transaction.
  virtual absl::Status Write(const Record& r) = 0;
  // Pushes buffered records of the open transaction to its storage.
  virtual absl::Status Flush() = 0;
  // Makes the transaction durable but invisible; returns the handle that Commit() takes.
  // After this returns, Commit() of that handle must be able to succeed, also in a new process.
  virtual absl::StatusOr<std::string> PreCommit(const std::string& txn) = 0;
  // Makes a pre-committed transaction visible. Idempotent: committing twice is harmless.
  virtual absl::Status Commit(const std::string& pending) = 0;
  // After a restore (subtask 0): aborts transactions of earlier attempts not in `keep`.
  virtual absl::Status AbortLeftovers(const std::set<std::string>& keep) = 0;
  // After a restore, with the restored pending list (of every subtask: union state): by
  // default subtask 0 commits them all and aborts the leftovers. Sinks whose transactions
  // belong to one subtask (Kafka's transactional ids) split the work instead.
  virtual absl::Status RecoverRestored(const std::vector<std::string>& restored) {
    if (ctx_.subtask != 0) return absl::OkStatus();
    std::set<std::string> keep(restored.begin(), restored.end());
    for (const std::string& txn : keep) SLUICE_RETURN_IF_ERROR(Commit(txn));
    return AbortLeftovers(keep);
  }

  const std::string& current_transaction() const { return current_; }

  // A state entry of `body` (a handle, or a subclass's own text entry) in this format.
  static std::string VersionedEntry(absl::string_view body) {
    std::string entry(1, static_cast<char>(kEntryVersion));
    entry.append(body.data(), body.size());
    return entry;
  }
  static constexpr int kEntryVersion = 1;

 private:
  bool transactional_ = false;
  std::string current_;                                   // open transaction, "" = none
  std::vector<std::pair<int64_t, std::string>> pending_;  // (checkpoint id, pre-committed)
};

}  // namespace sluice::ops
