#include "coordinator/checkpoint_coordinator.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/filesystem.h"
#include "common/logging.h"

namespace sluice::coordinator {

namespace {
constexpr size_t kHistory = 10;
}  // namespace

CheckpointCoordinator::CheckpointCoordinator(std::string job_id, std::string dir,
                                             std::shared_ptr<const plan::JobSpec> spec,
                                             std::shared_ptr<const plan::JobGraph> graph, Clock* clock)
    : job_id_(std::move(job_id)),
      dir_(std::move(dir)),
      spec_(std::move(spec)),
      graph_(std::move(graph)),
      clock_(clock) {}

void CheckpointCoordinator::SetRestorePoint(std::string metadata, std::string dir, int64_t next_checkpoint_id,
                                            std::deque<int64_t> retained) {
  latest_metadata_ = std::move(metadata);
  latest_dir_ = std::move(dir);
  next_checkpoint_id_ = next_checkpoint_id;
  retained_ = std::move(retained);
}

void CheckpointCoordinator::Trigger(bool final, std::unique_ptr<PendingCheckpoint> p, CheckpointActions* out) {
  if (!p) p = std::make_unique<PendingCheckpoint>();
  p->id = next_checkpoint_id_++;
  p->final = final;
  p->trigger_nanos = clock_->NowNanos();
  p->trigger_ms = clock_->WallMillis();
  last_trigger_nanos_ = p->trigger_nanos;
  spdlog::debug("job {}: triggering {}checkpoint {}", job_id_, final ? "final " : "", p->id);
  out->trigger = CheckpointActions::ToTasks{p->id, final, p->savepoint};
  pending_ = std::move(p);
}

void CheckpointCoordinator::AddHistory(proto::CheckpointInfo info) {
  history_.push_back(std::move(info));
  if (history_.size() > kHistory) history_.pop_front();
}

void CheckpointCoordinator::RecordAbort(const PendingCheckpoint& p, const std::string& reason,
                                        CheckpointActions* out) {
  spdlog::warn("job {}: {} {} aborted: {}", job_id_, p.savepoint ? "savepoint" : "checkpoint", p.id, reason);
  proto::CheckpointInfo info;
  info.set_checkpoint_id(p.id);
  info.set_status("ABORTED");
  info.set_trigger_time_ms(p.trigger_ms);
  info.set_duration_ms((clock_->NowNanos() - p.trigger_nanos) / 1'000'000);
  info.set_reason(reason);
  info.set_savepoint(p.savepoint);
  AddHistory(std::move(info));
  if (p.done) out->replies.emplace_back(p.done, absl::AbortedError(absl::StrCat("savepoint aborted: ", reason)));
  // Its private files are of no use; shared files it uploaded are collected once the backends
  // that uploaded them complete a checkpoint without them (CheckpointStorage::CollectSharedGarbage).
  out->discard.push_back(p.id);
}

void CheckpointCoordinator::CountFailure(const std::string& what, CheckpointActions* out) {
  const int tolerable = spec_->checkpoint.tolerable_failures;
  if (++consecutive_failures_ <= tolerable) return;
  // As Flink's tolerable-failed-checkpoints: a job whose checkpoints keep failing is failed over
  // (restarted from its latest checkpoint) rather than left running without them.
  const int failures = consecutive_failures_;
  consecutive_failures_ = 0;
  out->fail_job = absl::StrCat(what, "; ", failures,
                               " consecutive checkpoint failure(s) exceed checkpoint.tolerable_failures (",
                               tolerable, ")");
}

void CheckpointCoordinator::Abort(const std::string& reason, bool counts, CheckpointActions* out) {
  if (!pending_) return;
  std::unique_ptr<PendingCheckpoint> p = std::move(pending_);
  RecordAbort(*p, reason, out);
  last_checkpoint_end_nanos_ = clock_->NowNanos();
  if (counts && !p->savepoint) CountFailure(absl::StrCat("checkpoint ", p->id, " ", reason), out);
}

void CheckpointCoordinator::Tick(bool all_input_ended, CheckpointActions* out) {
  const plan::CheckpointConfig& cc = spec_->checkpoint;
  if (!cc.enabled() || completing_) return;  // completing: its metadata is being written
  const int64_t now = clock_->NowNanos();
  if (pending_) {
    if (now - pending_->trigger_nanos > cc.timeout_ms * 1'000'000) {
      Abort(absl::StrCat("timed out after ", cc.timeout_ms, " ms"), true, out);
    } else if (all_input_ended && !pending_->final && !pending_->savepoint) {
      // Barriers cannot reach tasks whose input has ended: go straight to the final checkpoint.
      Abort("all input ended; taking the final checkpoint instead", false, out);
    }
    // A job failed over by the abort takes no new checkpoint of the attempt it leaves.
    if (pending_ || out->fail_job) return;
  }
  if (all_input_ended) {
    Trigger(true, nullptr, out);
    return;
  }
  if (now - last_checkpoint_end_nanos_ >= cc.min_pause_ms * 1'000'000 &&
      now - last_trigger_nanos_ >= cc.interval_ms * 1'000'000) {
    Trigger(false, nullptr, out);
  }
}

void CheckpointCoordinator::TriggerSavepoint(std::string savepoint_dir, bool stop_after, SavepointCallback done,
                                             CheckpointActions* out) {
  Abort("superseded by a savepoint", false, out);
  auto p = std::make_unique<PendingCheckpoint>();
  p->savepoint = true;
  p->savepoint_dir = std::move(savepoint_dir);
  p->stop_after = stop_after;
  p->done = std::move(done);
  Trigger(false, std::move(p), out);
}

void CheckpointCoordinator::Acknowledge(const proto::CheckpointAck& ack, size_t total_tasks,
                                        CheckpointActions* out) {
  const int vertex = ack.task().vertex();
  if (!pending_ || pending_->id != ack.checkpoint_id() || vertex < 0 ||
      vertex >= static_cast<int>(graph_->vertices.size())) {
    return;  // late ack of an aborted checkpoint (or of nothing this job has)
  }
  if (ack.declined()) {
    Abort(absl::StrCat("task ", graph_->vertices[vertex].name, "#", ack.task().subtask(),
                       " declined: ", ack.reason()),
          true, out);
    return;
  }
  pending_->acks[{vertex, ack.task().subtask()}] = ack;
  if (pending_->acks.size() < total_tasks) return;

  std::shared_ptr<PendingCheckpoint> p = std::move(pending_);
  auto md = std::make_shared<proto::CheckpointMetadata>();
  md->set_job_id(job_id_);
  md->set_checkpoint_id(p->id);
  md->set_timestamp_ms(p->trigger_ms);
  md->set_max_parallelism(spec_->max_parallelism);
  md->set_savepoint(p->savepoint);
  md->set_final(p->final);
  int64_t full = 0, incremental = 0;
  for (auto& [key, a] : p->acks) {
    for (const auto& h : a.state().keyed()) {
      full += h.full_size();
      incremental += h.incremental_size();
    }
    // Operator state (source positions, a sink's pending transactions) is written with the
    // metadata of every checkpoint: it counts as both full and uploaded size.
    for (const auto& o : a.state().operator_state()) {
      for (const auto& e : o.entries()) {
        full += static_cast<int64_t>(e.size());
        incremental += static_cast<int64_t>(e.size());
      }
    }
    *md->add_subtasks() = a.state();
  }
  for (const auto& op : spec_->operators) md->add_operator_ids(op.id);
  for (const auto& v : graph_->vertices) md->add_vertex_names(v.name);
  md->set_full_size(full);
  md->set_incremental_size(incremental);
  // Until it is written, no other checkpoint is triggered and the latest stays the previous one.
  completing_ = p;
  auto w = std::make_shared<CheckpointWrite>();
  w->pending = std::move(p);
  w->metadata = std::move(md);
  w->dir = dir_;
  out->write = std::move(w);
}

CheckpointWriteResult CheckpointCoordinator::Write(const checkpoint::CheckpointStorage& storage,
                                                   const CheckpointWrite& w) {
  CheckpointWriteResult r;
  r.metadata_path = storage.WriteMetadata(w.dir, *w.metadata);
  if (r.metadata_path.ok() && w.pending->savepoint) {
    r.savepoint_path = storage.CopySavepoint(w.dir, *w.metadata, w.pending->savepoint_dir);
  }
  return r;
}

std::optional<CheckpointCommit> CheckpointCoordinator::OnWritten(const CheckpointWrite& w,
                                                                 const CheckpointWriteResult& result,
                                                                 bool same_attempt, bool counts_failure,
                                                                 bool job_running, CheckpointActions* out) {
  const std::shared_ptr<PendingCheckpoint>& p = w.pending;
  if (completing_ == p) completing_.reset();
  last_checkpoint_end_nanos_ = clock_->NowNanos();
  if (!result.metadata_path.ok() || !result.savepoint_path.ok()) {
    const bool metadata_ok = result.metadata_path.ok();
    const absl::Status& s = metadata_ok ? result.savepoint_path.status() : result.metadata_path.status();
    const std::string reason =
        absl::StrCat(metadata_ok ? "cannot copy the savepoint: " : "cannot write metadata: ", s.message());
    RecordAbort(*p, reason, out);
    // A failed write counts as a failed checkpoint of the attempt that took it (a full disk fails
    // checkpoints, and the job once they exceed checkpoint.tolerable_failures, never its data).
    if (counts_failure && !p->savepoint) CountFailure(absl::StrCat("checkpoint ", p->id, " aborted: ", reason), out);
    return std::nullopt;
  }
  const int64_t duration_ms = (clock_->NowNanos() - p->trigger_nanos) / 1'000'000;
  const std::string path = p->savepoint ? *result.savepoint_path : DirName(*result.metadata_path);
  if (!same_attempt) {
    // The job restarted while the metadata was written: the new attempt restored from an older
    // checkpoint (and may have aborted the transactions this one holds), so this one must never
    // be restored from. A savepoint's copy stands on its own and is still reported.
    SavepointCallback done = std::move(p->done);
    RecordAbort(*p, "the job restarted while its metadata was written", out);
    if (done) out->replies.emplace_back(std::move(done), path);
    return std::nullopt;
  }
  int64_t alignment = 0, persisted = 0;
  bool unaligned = false;
  for (const auto& [key, ack] : p->acks) {
    alignment = std::max(alignment, ack.alignment_ms());
    unaligned |= ack.unaligned();
    persisted += ack.state().channel_state_bytes();
  }
  const proto::CheckpointMetadata& md = *w.metadata;
  spdlog::info("job {}: {} {} complete in {} ms ({} bytes, {} uploaded){}", job_id_,
               p->savepoint ? "savepoint" : "checkpoint", p->id, duration_ms, md.full_size(),
               md.incremental_size(), p->savepoint ? absl::StrCat(" at ", path) : "");
  proto::CheckpointInfo info;
  info.set_checkpoint_id(p->id);
  info.set_status("COMPLETED");
  info.set_trigger_time_ms(p->trigger_ms);
  info.set_duration_ms(duration_ms);
  info.set_full_size(md.full_size());
  info.set_incremental_size(md.incremental_size());
  info.set_alignment_ms(alignment);
  info.set_unaligned(unaligned);
  info.set_persisted_bytes(persisted);
  info.set_path(path);
  info.set_savepoint(p->savepoint);
  AddHistory(std::move(info));

  // The latest completed checkpoint is where recovery starts; retain a few.
  latest_metadata_ = *result.metadata_path;
  latest_dir_ = dir_;
  consecutive_failures_ = 0;
  retained_.push_back(p->id);
  while (static_cast<int>(retained_.size()) > std::max(1, spec_->checkpoint.retain)) retained_.pop_front();
  CheckpointCommit c;
  c.pending = p;
  c.metadata = w.metadata;
  c.path = path;
  c.stop = p->stop_after && job_running;
  c.keep = std::set<int64_t>(retained_.begin(), retained_.end());
  return c;
}

void CheckpointCoordinator::OnRecordWritten(const CheckpointCommit& c, const absl::Status& written, bool current,
                                            CheckpointActions* out) {
  const PendingCheckpoint& p = *c.pending;
  // Tasks commit only once the record naming this checkpoint is durable: a restarted
  // coordinator then recovers from it (or a later one), never from before a commit.
  if (current && written.ok()) out->notify_complete = CheckpointActions::ToTasks{p.id, p.final, false};
  if (!p.done) return;
  absl::StatusOr<std::string> result = c.path;
  if (c.stop && !written.ok()) {
    result = absl::UnavailableError(
        absl::StrCat("savepoint ", c.path, " was taken but the job was not stopped: ", written.message()));
  }
  out->replies.emplace_back(p.done, std::move(result));
}

void CheckpointCoordinator::CleanUp(const checkpoint::CheckpointStorage& storage, const std::string& dir,
                                    const CheckpointCommit& c) {
  absl::Status s = storage.Subsume(dir, c.keep);
  if (!s.ok()) spdlog::warn("deleting checkpoints of {} past retention: {}", dir, s);
  absl::StatusOr<int> collected = storage.CollectSharedGarbage(dir, *c.metadata);
  if (!collected.ok()) {
    spdlog::warn("collecting unreferenced shared files of {}: {}", dir, collected.status());
  } else if (*collected > 0) {
    spdlog::info("{}: deleted {} shared file(s) no checkpoint references", dir, *collected);
  }
}

void CheckpointCoordinator::ResetForAttempt() {
  pending_.reset();
  consecutive_failures_ = 0;
  last_trigger_nanos_ = last_checkpoint_end_nanos_ = clock_->NowNanos();
}

void CheckpointCoordinator::AddTo(proto::JobInfo* info) const {
  for (const auto& c : history_) *info->add_checkpoints() = c;
  for (const PendingCheckpoint* p : {completing_.get(), static_cast<const PendingCheckpoint*>(pending_.get())}) {
    if (p == nullptr) continue;
    auto* c = info->add_checkpoints();
    c->set_checkpoint_id(p->id);
    c->set_status("IN_PROGRESS");
    c->set_trigger_time_ms(p->trigger_ms);
    c->set_savepoint(p->savepoint);
  }
}

}  // namespace sluice::coordinator
