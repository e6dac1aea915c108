// The built-in operators. Each is small; they share this file so the registry sees them all.

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <unistd.h>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "common/logging.h"
#include "common/record_codec.h"
#include "common/status.h"
#include "operators/aggregate_options.h"
#include "operators/blackhole_sink_options.h"
#include "operators/datagen_options.h"
#include "operators/file_sink_options.h"
#include "operators/filter_options.h"
#include "operators/key_by_options.h"
#include "operators/key_hasher.h"
#include "operators/map_options.h"
#include "operators/print_sink_options.h"
#include "operators/union_options.h"
#include "operators/registry.h"
#include "operators/two_phase_commit_sink.h"
#include "operators/watermark_generator.h"
#include "plan/expr.h"
#include "state/keyed_state_backend.h"

namespace sluice::ops {
namespace {

using plan::CompileExpr;
using plan::Expr;

// Generates records deterministically from their sequence number: every field is an
// expression over `seq`. The sequence space is cut into splits (base, stride): subtask i of n
// starts with split (i, n), producing seq = i, i+n, i+2n, ... below `count` (or forever). A
// split's position is the source's checkpointed state, so replay after recovery gives the
// same records; on rescale, splits are dealt round-robin to the new subtasks. `rate` is
// records/s for the whole source (0: unlimited). With `event_time`, the subtask emits
// bounded-out-of-orderness watermarks over its records every watermark interval (all its
// sequences as one split) and the end of event time when its count is reached.
class DatagenSource final : public SourceOperator {
 public:
  absl::Status Open(const OperatorContext& ctx, Output* output) override {
    SLUICE_RETURN_IF_ERROR(SourceOperator::Open(ctx, output));
    SLUICE_ASSIGN_OR_RETURN(const DatagenOptions* o, TypedOptions<DatagenOptions>(ctx));
    count_ = o->count;
    nanos_per_record_ = o->rate > 0 ? 1e9 * ctx.parallelism / o->rate : 0;
    for (const auto& f : o->fields) {
      SLUICE_ASSIGN_OR_RETURN(auto e, CompileExpr(f.expr, DatagenSeqSchema()));
      exprs_.push_back(std::move(e));
    }
    seq_record_.Resize(1);
    out_.Resize(exprs_.size());
    if (ctx.restored) {
      for (const std::string& entry : ctx.restored_state) {
        Split split;
        if (entry.size() != sizeof(Split)) {
          return absl::DataLossError(absl::StrCat("corrupt datagen split state of ", ctx.task_name));
        }
        std::memcpy(&split, entry.data(), sizeof(Split));
        splits_.push_back(split);
      }
    } else {
      splits_.push_back(Split{ctx.subtask, ctx.parallelism, ctx.subtask});
    }
    start_nanos_ = ctx.clock->NowNanos();
    if (o->event_time.has_value()) {
      const plan::EventTimeSpec& et = *o->event_time;
      watermarks_ = std::make_unique<SplitWatermarks>(et.max_out_of_orderness_ms, et.idle_timeout_ms);
      watermarks_->AddSplit(start_nanos_);
      watermark_interval_nanos_ = (ctx.job != nullptr ? ctx.job->watermark_interval_ms : 200) * 1'000'000;
      next_watermark_nanos_ = start_nanos_ + watermark_interval_nanos_;
      ts_field_ = et.field_index;
    }
    return absl::OkStatus();
  }

  absl::StatusOr<State> Poll(int max_records, int64_t* wake_at_nanos) override {
    const Schema& schema = ctx_.spec->output_schema;
    if (watermarks_ != nullptr) {
      const int64_t now = ctx_.clock->NowNanos();
      if (now >= next_watermark_nanos_) {
        SLUICE_RETURN_IF_ERROR(watermarks_->OnPeriodic(now, output_));
        next_watermark_nanos_ = now + watermark_interval_nanos_;
      }
    }
    for (int n = 0; n < max_records; ++n) {
      // Next split with records left, round-robin.
      size_t tried = 0;
      while (tried < splits_.size() && count_ >= 0 && splits_[current_].next >= count_) {
        current_ = (current_ + 1) % splits_.size();
        ++tried;
      }
      if (splits_.empty() || tried == splits_.size()) return State::kEnd;
      if (nanos_per_record_ > 0) {
        int64_t due = start_nanos_ + static_cast<int64_t>(emitted_ * nanos_per_record_);
        int64_t now = ctx_.clock->NowNanos();
        if (now - due > kMaxLagNanos) {
          // Held back (backpressure): do not burst to catch up, resume the rate from here.
          start_nanos_ += now - due - kMaxLagNanos;
          due = now - kMaxLagNanos;
        }
        if (due > now) {
          // Wake for the next record or the next watermark, whichever is first.
          *wake_at_nanos = watermarks_ != nullptr ? std::min(due, next_watermark_nanos_) : due;
          return State::kWait;
        }
      }
      Split& split = splits_[current_];
      seq_record_.SetInt(0, split.next);
      for (size_t i = 0; i < exprs_.size(); ++i) {
        plan::EvalInto(*exprs_[i], seq_record_, schema.field(i).type, &out_, i);
      }
      if (watermarks_ != nullptr && watermarks_->OnEvent(0, out_.GetInt(ts_field_))) {
        SLUICE_RETURN_IF_ERROR(output_->EmitWatermarkStatus(false));
      }
      SLUICE_RETURN_IF_ERROR(output_->Emit(out_));
      split.next += split.stride;
      ++emitted_;
      if (splits_.size() > 1) current_ = (current_ + 1) % splits_.size();
    }
    return State::kMore;
  }

  // Bounded: event time ends with the input.
  absl::Status Finish() override {
    if (watermarks_ == nullptr) return absl::OkStatus();
    return output_->EmitWatermark(kMaxWatermark);
  }

  absl::Status SnapshotState(int64_t, std::vector<std::string>* entries) override {
    for (const Split& split : splits_) {
      entries->emplace_back(reinterpret_cast<const char*>(&split), sizeof(Split));
    }
    return absl::OkStatus();
  }

 private:
  struct Split {
    int64_t base;
    int64_t stride;
    int64_t next;
  };
  static constexpr int64_t kMaxLagNanos = 100'000'000;
  int64_t count_ = -1;
  double nanos_per_record_ = 0;
  int64_t start_nanos_ = 0;
  int64_t emitted_ = 0;
  std::vector<Split> splits_;
  size_t current_ = 0;
  std::vector<std::unique_ptr<Expr>> exprs_;
  Record seq_record_;
  Record out_;
  // Event time (null without `event_time`).
  std::unique_ptr<SplitWatermarks> watermarks_;
  int ts_field_ = -1;
  int64_t watermark_interval_nanos_ = 0;
  int64_t next_watermark_nanos_ = 0;
};

class FilterOperator final : public Operator {
 public:
  absl::Status Open(const OperatorContext& ctx, Output* output) override {
    SLUICE_RETURN_IF_ERROR(Operator::Open(ctx, output));
    SLUICE_ASSIGN_OR_RETURN(const FilterOptions* o, TypedOptions<FilterOptions>(ctx));
    SLUICE_ASSIGN_OR_RETURN(where_, CompileExpr(o->where, ctx.spec->input_schema));
    return absl::OkStatus();
  }
  absl::Status Process(const Record& r) override {
    if (where_->EvalBool(r)) return output_->Emit(r);
    return absl::OkStatus();
  }

 private:
  std::unique_ptr<Expr> where_;
};

class MapOperator final : public Operator {
 public:
  absl::Status Open(const OperatorContext& ctx, Output* output) override {
    SLUICE_RETURN_IF_ERROR(Operator::Open(ctx, output));
    SLUICE_ASSIGN_OR_RETURN(const MapOptions* o, TypedOptions<MapOptions>(ctx));
    for (const auto& f : o->fields) {
      SLUICE_ASSIGN_OR_RETURN(auto e, CompileExpr(f.expr, ctx.spec->input_schema));
      exprs_.push_back(std::move(e));
    }
    out_.Resize(exprs_.size());
    return absl::OkStatus();
  }
  absl::Status Process(const Record& r) override {
    const Schema& schema = ctx_.spec->output_schema;
    for (size_t i = 0; i < exprs_.size(); ++i) {
      plan::EvalInto(*exprs_[i], r, schema.field(i).type, &out_, i);
    }
    return output_->Emit(out_);
  }

 private:
  std::vector<std::unique_ptr<Expr>> exprs_;
  Record out_;
};

// key_by and union change where records go, not the records: the task routes them.
class PassThroughOperator final : public Operator {
 public:
  absl::Status Process(const Record& r) override { return output_->Emit(r); }
};

// Rolling aggregate per key: count, sum, min, max, avg. With emit: updates (the default), every
// input record emits the key's updated row; with emit: final, each key's row is emitted once
// at end of input. Accumulators live in the keyed state backend (RocksDB behind a write-back
// cache), one value per key, optionally with a TTL.
class AggregateOperator final : public Operator {
 public:
  bool IsKeyed() const override { return true; }

  absl::Status Open(const OperatorContext& ctx, Output* output) override {
    SLUICE_RETURN_IF_ERROR(Operator::Open(ctx, output));
    const auto& spec = *ctx.spec;
    if (ctx.keyed_state == nullptr) {
      return absl::FailedPreconditionError("aggregate needs a keyed state backend");
    }
    state_ = ctx.keyed_state;
    for (const auto& k : spec.key) {
      SLUICE_ASSIGN_OR_RETURN(auto e, CompileExpr(k.expr, spec.input_schema));
      key_exprs_.push_back(std::move(e));
    }
    std::vector<Field> key_fields(spec.output_schema.fields().begin(),
                                  spec.output_schema.fields().begin() + spec.key.size());
    key_schema_ = Schema(std::move(key_fields));
    SLUICE_ASSIGN_OR_RETURN(const AggregateOptions* o, TypedOptions<AggregateOptions>(ctx));
    for (const AggregateOptions::Aggregate& a : o->aggregates) {
      Agg agg;
      agg.fn = a.fn;
      agg.field = a.field;
      if (a.field >= 0) agg.is_double = spec.input_schema.field(a.field).type == FieldType::kDouble;
      aggs_.push_back(agg);
    }
    emit_final_ = o->emit_final;
    state_id_ = state_->RegisterState("accumulators", state::StateKind::kValue, o->ttl_ms);
    key_record_.Resize(key_schema_.size());
    out_.Resize(spec.output_schema.size());
    accs_.resize(aggs_.size());
    return absl::OkStatus();
  }

  absl::Status Process(const Record& r) override {
    for (size_t i = 0; i < key_exprs_.size(); ++i) {
      plan::EvalInto(*key_exprs_[i], r, key_schema_.field(i).type, &key_record_, i);
    }
    key_bytes_.clear();
    EncodeRecord(key_schema_, key_record_, &key_bytes_);
    state_->SetCurrentKey(key_bytes_, KeyGroupForHash(KeyHasher::HashKeyRecord(key_schema_, key_record_),
                                                       ctx_.max_parallelism));
    SLUICE_ASSIGN_OR_RETURN(bool found, state_->Get(state_id_, &value_));
    if (found && value_.size() == accs_.size() * sizeof(Acc)) {
      std::memcpy(accs_.data(), value_.data(), value_.size());
    } else {
      std::fill(accs_.begin(), accs_.end(), Acc{});
    }
    for (size_t a = 0; a < aggs_.size(); ++a) {
      const Agg& agg = aggs_[a];
      Acc& s = accs_[a];
      if (agg.fn == Fn::kCount) {
        s.i++;
        continue;
      }
      const Value& v = r[agg.field];
      switch (agg.fn) {
        case Fn::kSum:
        case Fn::kAvg:
          if (agg.is_double) s.d += v.d; else s.i += v.i;
          break;
        case Fn::kMin:
          if (s.n == 0 || (agg.is_double ? v.d < s.d : v.i < s.i)) { s.d = v.d; s.i = v.i; }
          break;
        case Fn::kMax:
          if (s.n == 0 || (agg.is_double ? v.d > s.d : v.i > s.i)) { s.d = v.d; s.i = v.i; }
          break;
        default: break;
      }
      s.n++;
    }
    value_.assign(reinterpret_cast<const char*>(accs_.data()), accs_.size() * sizeof(Acc));
    SLUICE_RETURN_IF_ERROR(state_->Put(state_id_, value_));
    if (emit_final_) return absl::OkStatus();
    for (size_t i = 0; i < key_schema_.size(); ++i) {
      CopyValue(key_schema_.field(i).type, key_record_, i, &out_, i);
    }
    FillAggregates();
    return output_->Emit(out_);
  }

  absl::Status Finish() override {
    if (!emit_final_) return absl::OkStatus();
    return state_->ForEachKey(state_id_, [this](absl::string_view key) -> absl::Status {
      RecordDecoder dec(&key_schema_, key);
      SLUICE_RETURN_IF_ERROR(dec.Next(&out_));  // key fields come first in the output
      SLUICE_ASSIGN_OR_RETURN(bool found, state_->Get(state_id_, &value_));
      if (!found || value_.size() != accs_.size() * sizeof(Acc)) return absl::OkStatus();
      std::memcpy(accs_.data(), value_.data(), value_.size());
      FillAggregates();
      return output_->Emit(out_);
    });
  }

 private:
  using Fn = AggregateOptions::Fn;
  struct Agg {
    Fn fn = Fn::kCount;
    int field = -1;
    bool is_double = false;
  };
  struct Acc {
    int64_t i = 0;
    double d = 0;
    int64_t n = 0;
  };

  void FillAggregates() {
    const size_t k = key_schema_.size();
    for (size_t a = 0; a < aggs_.size(); ++a) {
      const Agg& agg = aggs_[a];
      const Acc& s = accs_[a];
      Value& out = out_[k + a];
      if (agg.fn == Fn::kAvg) {
        out.d = s.n == 0 ? 0 : (agg.is_double ? s.d : static_cast<double>(s.i)) / s.n;
      } else if (agg.fn == Fn::kCount) {
        out.i = s.i;
      } else if (agg.is_double) {
        out.d = s.d;
      } else {
        out.i = s.i;
      }
    }
  }

  state::KeyedStateBackend* state_ = nullptr;
  state::StateId state_id_ = 0;
  std::vector<std::unique_ptr<Expr>> key_exprs_;
  Schema key_schema_;
  std::vector<Agg> aggs_;
  bool emit_final_ = false;
  std::vector<Acc> accs_;
  Record key_record_;
  std::string key_bytes_;
  std::string value_;
  Record out_;
};

// Writes JSON lines, exactly once under checkpoints (a TwoPhaseCommitSink over files).
//
// Without checkpoints: to <path>/part-<subtask>.jsonl.
// With checkpoints: a transaction is a file part-<subtask>-<attempt>-<n>.inprogress;
// pre-commit flushes, syncs and renames it to .pending (its absolute path is the handle, so a
// job restored with another output path still commits it in place); commit renames it to
// .jsonl. Leftovers are .inprogress/.pending files of earlier attempts. Renames are atomic.
// Writes JSON lines under `path`, exactly once with checkpoints. File names are unique per
// job run, as Flink's part-<uuid>-<subtask>-<n>: part-<job>-<subtask>-<attempt>-<n> while
// checkpointing, part-<job>-<subtask> without. A file is written as .inprogress, renamed to
// .pending at the checkpoint barrier and to .jsonl when the checkpoint completes; a commit never
// replaces an existing file, so jobs restored from one another's savepoints, or unrelated jobs,
// can share a directory. Only files of the sink's own job are ever removed.
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
    if (!absl::EndsWith(pending, ".pending")) return absl::OkStatus();
    const std::string final_name = ReplaceSuffix(pending, ".pending", ".jsonl");
    absl::Status s = RenameNoReplace(pending, final_name);
    if (s.ok()) return s;
    std::error_code ec;
    if (absl::IsNotFound(s)) {
      if (std::filesystem::exists(final_name, ec)) return absl::OkStatus();  // committed before
      return absl::DataLossError(absl::StrCat("pending file ", pending,
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

// Logs each record as JSON at info level.
class PrintSink final : public Operator {
 public:
  absl::Status Process(const Record& r) override {
    line_.clear();
    AppendRecordJson(ctx_.spec->input_schema, r, &line_);
    spdlog::info("{}: {}", ctx_.task_name, line_);
    return absl::OkStatus();
  }

 private:
  std::string line_;
};

// Discards records, optionally no faster than max_rate records/s per subtask (a slow sink,
// for backpressure tests and demos).
class BlackholeSink final : public Operator {
 public:
  absl::Status Open(const OperatorContext& ctx, Output* output) override {
    SLUICE_RETURN_IF_ERROR(Operator::Open(ctx, output));
    SLUICE_ASSIGN_OR_RETURN(const BlackholeSinkOptions* o, TypedOptions<BlackholeSinkOptions>(ctx));
    nanos_per_record_ = o->max_rate > 0 ? 1e9 / o->max_rate : 0;
    start_ = ctx.clock->NowNanos();
    return absl::OkStatus();
  }
  absl::Status Process(const Record&) override {
    ++count_;
    if (nanos_per_record_ > 0) {
      int64_t due = start_ + static_cast<int64_t>(count_ * nanos_per_record_);
      int64_t now = ctx_.clock->NowNanos();
      if (due > now) ctx_.clock->SleepNanos(due - now);
    }
    return absl::OkStatus();
  }

 private:
  double nanos_per_record_ = 0;
  int64_t start_ = 0;
  int64_t count_ = 0;
};

template <typename T>
OperatorRegistry::Factory Make() {
  return [](const plan::OperatorSpec&) { return std::make_unique<T>(); };
}

}  // namespace

absl::Status RegisterBuiltinOperators(OperatorRegistry* registry) {
  SLUICE_RETURN_IF_ERROR(registry->Register(MakeDatagenType(), Make<DatagenSource>()));
  SLUICE_RETURN_IF_ERROR(registry->Register(MakeFilterType(), Make<FilterOperator>()));
  SLUICE_RETURN_IF_ERROR(registry->Register(MakeMapType(), Make<MapOperator>()));
  SLUICE_RETURN_IF_ERROR(registry->Register(MakeKeyByType(), Make<PassThroughOperator>()));
  SLUICE_RETURN_IF_ERROR(registry->Register(MakeAggregateType(), Make<AggregateOperator>()));
  SLUICE_RETURN_IF_ERROR(registry->Register(MakeUnionType(), Make<PassThroughOperator>()));
  SLUICE_RETURN_IF_ERROR(registry->Register(MakeFileSinkType(), Make<FileSink>()));
  SLUICE_RETURN_IF_ERROR(registry->Register(MakePrintSinkType(), Make<PrintSink>()));
  return registry->Register(MakeBlackholeSinkType(), Make<BlackholeSink>());
}

}  // namespace sluice::ops
