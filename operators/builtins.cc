// The built-in operators. Each is small; they share this file so the registry sees them all.

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/record_codec.h"
#include "common/status.h"
#include "operators/key_hasher.h"
#include "operators/registry.h"
#include "plan/expr.h"

namespace sluice::ops {
namespace {

using plan::CompileExpr;
using plan::Expr;

// Generates records deterministically from their sequence number: every field is an
// expression over `seq`. Subtask i of n produces seq = i, i+n, i+2n, ... below `count`
// (or forever when count is absent), at `rate` records/s for the whole source (0: unlimited).
class DatagenSource final : public SourceOperator {
 public:
  absl::Status Open(const OperatorContext& ctx, Output* output) override {
    SLUICE_RETURN_IF_ERROR(SourceOperator::Open(ctx, output));
    const YAML::Node& c = ctx.spec->config;
    count_ = c["count"] ? c["count"].as<int64_t>() : -1;
    double rate = c["rate"] ? c["rate"].as<double>() : 0;
    nanos_per_record_ = rate > 0 ? 1e9 * ctx.parallelism / rate : 0;
    static const Schema kSeq({{"seq", FieldType::kInt64}});
    for (const auto& f : c["fields"]) {
      SLUICE_ASSIGN_OR_RETURN(auto e, CompileExpr(f["expr"].Scalar(), kSeq));
      exprs_.push_back(std::move(e));
    }
    seq_record_.Resize(1);
    out_.Resize(exprs_.size());
    next_seq_ = ctx.subtask;
    start_nanos_ = ctx.clock->NowNanos();
    return absl::OkStatus();
  }

  absl::StatusOr<State> Poll(int max_records, int64_t* wake_at_nanos) override {
    const Schema& schema = ctx_.spec->output_schema;
    const int64_t stride = ctx_.parallelism;
    for (int n = 0; n < max_records; ++n) {
      if (count_ >= 0 && next_seq_ >= count_) return State::kEnd;
      if (nanos_per_record_ > 0) {
        int64_t due = start_nanos_ + static_cast<int64_t>(emitted_ * nanos_per_record_);
        int64_t now = ctx_.clock->NowNanos();
        if (now - due > kMaxLagNanos) {
          // Held back (backpressure): do not burst to catch up, resume the rate from here.
          start_nanos_ += now - due - kMaxLagNanos;
          due = now - kMaxLagNanos;
        }
        if (due > now) {
          *wake_at_nanos = due;
          return State::kWait;
        }
      }
      seq_record_.SetInt(0, next_seq_);
      for (size_t i = 0; i < exprs_.size(); ++i) {
        plan::EvalInto(*exprs_[i], seq_record_, schema.field(i).type, &out_, i);
      }
      SLUICE_RETURN_IF_ERROR(output_->Emit(out_));
      next_seq_ += stride;
      ++emitted_;
    }
    return State::kMore;
  }

 private:
  static constexpr int64_t kMaxLagNanos = 100'000'000;
  int64_t count_ = -1;
  double nanos_per_record_ = 0;
  int64_t start_nanos_ = 0;
  int64_t next_seq_ = 0;
  int64_t emitted_ = 0;
  std::vector<std::unique_ptr<Expr>> exprs_;
  Record seq_record_;
  Record out_;
};

class FilterOperator final : public Operator {
 public:
  absl::Status Open(const OperatorContext& ctx, Output* output) override {
    SLUICE_RETURN_IF_ERROR(Operator::Open(ctx, output));
    SLUICE_ASSIGN_OR_RETURN(where_, CompileExpr(ctx.spec->config["where"].Scalar(),
                                                ctx.spec->input_schema));
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
    for (const auto& f : ctx.spec->config["fields"]) {
      std::string expr = f.IsScalar() ? f.Scalar() : f["expr"].Scalar();
      SLUICE_ASSIGN_OR_RETURN(auto e, CompileExpr(expr, ctx.spec->input_schema));
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
// at end of input.
class AggregateOperator final : public Operator {
 public:
  absl::Status Open(const OperatorContext& ctx, Output* output) override {
    SLUICE_RETURN_IF_ERROR(Operator::Open(ctx, output));
    const auto& spec = *ctx.spec;
    for (const auto& k : spec.key) {
      SLUICE_ASSIGN_OR_RETURN(auto e, CompileExpr(k.expr, spec.input_schema));
      key_exprs_.push_back(std::move(e));
    }
    std::vector<Field> key_fields(spec.output_schema.fields().begin(),
                                  spec.output_schema.fields().begin() + spec.key.size());
    key_schema_ = Schema(std::move(key_fields));
    for (const auto& a : spec.config["aggregates"]) {
      Agg agg;
      std::string fn = a["fn"].Scalar();
      agg.fn = fn == "count" ? Fn::kCount
               : fn == "sum" ? Fn::kSum
               : fn == "min" ? Fn::kMin
               : fn == "max" ? Fn::kMax
                             : Fn::kAvg;
      if (a["field"]) {
        agg.field = spec.input_schema.IndexOf(a["field"].Scalar());
        agg.is_double = spec.input_schema.field(agg.field).type == FieldType::kDouble;
      }
      aggs_.push_back(agg);
    }
    emit_final_ = spec.config["emit"] && spec.config["emit"].Scalar() == "final";
    key_record_.Resize(key_schema_.size());
    out_.Resize(spec.output_schema.size());
    return absl::OkStatus();
  }

  absl::Status Process(const Record& r) override {
    for (size_t i = 0; i < key_exprs_.size(); ++i) {
      plan::EvalInto(*key_exprs_[i], r, key_schema_.field(i).type, &key_record_, i);
    }
    key_bytes_.clear();
    EncodeRecord(key_schema_, key_record_, &key_bytes_);
    auto it = index_.find(absl::string_view(key_bytes_));
    size_t base;
    if (it == index_.end()) {
      base = accs_.size();
      accs_.resize(accs_.size() + aggs_.size());
      index_.emplace(key_bytes_, base);
    } else {
      base = it->second;
    }
    Acc* acc = &accs_[base];
    for (size_t a = 0; a < aggs_.size(); ++a) {
      const Agg& agg = aggs_[a];
      Acc& s = acc[a];
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
    if (emit_final_) return absl::OkStatus();
    for (size_t i = 0; i < key_schema_.size(); ++i) {
      CopyValue(key_schema_.field(i).type, key_record_, i, &out_, i);
    }
    FillAggregates(acc);
    return output_->Emit(out_);
  }

  absl::Status Finish() override {
    if (!emit_final_) return absl::OkStatus();
    for (const auto& [key, base] : index_) {
      RecordDecoder dec(&key_schema_, key);
      SLUICE_RETURN_IF_ERROR(dec.Next(&out_));  // key fields come first in the output
      FillAggregates(&accs_[base]);
      SLUICE_RETURN_IF_ERROR(output_->Emit(out_));
    }
    return absl::OkStatus();
  }

 private:
  enum class Fn { kCount, kSum, kMin, kMax, kAvg };
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

  void FillAggregates(const Acc* acc) {
    const size_t k = key_schema_.size();
    for (size_t a = 0; a < aggs_.size(); ++a) {
      const Agg& agg = aggs_[a];
      const Acc& s = acc[a];
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

  std::vector<std::unique_ptr<Expr>> key_exprs_;
  Schema key_schema_;
  std::vector<Agg> aggs_;
  bool emit_final_ = false;
  absl::flat_hash_map<std::string, size_t> index_;  // encoded key -> offset in accs_
  std::vector<Acc> accs_;
  Record key_record_;
  std::string key_bytes_;
  Record out_;
};

// Writes JSON lines to <path>/part-<subtask>.jsonl.
class FileSink final : public Operator {
 public:
  ~FileSink() override { Close(); }

  absl::Status Open(const OperatorContext& ctx, Output* output) override {
    SLUICE_RETURN_IF_ERROR(Operator::Open(ctx, output));
    std::filesystem::path dir(ctx.spec->config["path"].Scalar());
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot create directory ", dir.string(), ": ", ec.message()));
    }
    path_ = (dir / absl::StrCat("part-", ctx.subtask, ".jsonl")).string();
    file_ = std::fopen(path_.c_str(), "w");
    if (file_ == nullptr) {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot open ", path_, ": ", std::strerror(errno)));
    }
    buffer_.reserve(kFlushBytes + 4096);
    return absl::OkStatus();
  }
  absl::Status Process(const Record& r) override {
    AppendRecordJson(ctx_.spec->input_schema, r, &buffer_);
    buffer_.push_back('\n');
    if (buffer_.size() >= kFlushBytes) return Flush();
    return absl::OkStatus();
  }
  absl::Status Finish() override {
    SLUICE_RETURN_IF_ERROR(Flush());
    if (std::fflush(file_) != 0) {
      return absl::UnavailableError(absl::StrCat("cannot flush ", path_, ": ", std::strerror(errno)));
    }
    return absl::OkStatus();
  }
  void Close() override {
    if (file_ != nullptr) {
      std::fclose(file_);
      file_ = nullptr;
    }
  }

 private:
  static constexpr size_t kFlushBytes = 64 * 1024;
  absl::Status Flush() {
    if (!buffer_.empty() && std::fwrite(buffer_.data(), 1, buffer_.size(), file_) != buffer_.size()) {
      return absl::UnavailableError(absl::StrCat("cannot write ", path_, ": ", std::strerror(errno)));
    }
    buffer_.clear();
    return absl::OkStatus();
  }
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
    double rate = ctx.spec->config["max_rate"] ? ctx.spec->config["max_rate"].as<double>() : 0;
    nanos_per_record_ = rate > 0 ? 1e9 / rate : 0;
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

absl::Status OperatorRegistry::Register(const std::string& type, Factory factory) {
  if (!factories_.emplace(type, std::move(factory)).second) {
    return absl::AlreadyExistsError(absl::StrCat("operator type '", type, "' already registered"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Operator>> OperatorRegistry::Create(
    const plan::OperatorSpec& spec) const {
  auto it = factories_.find(spec.type);
  if (it == factories_.end()) {
    return absl::NotFoundError(absl::StrCat("no operator type '", spec.type, "' on this worker"));
  }
  return it->second(spec);
}

void RegisterBuiltinOperators(OperatorRegistry* registry) {
  absl::Status s;
  s.Update(registry->Register("datagen", Make<DatagenSource>()));
  s.Update(registry->Register("filter", Make<FilterOperator>()));
  s.Update(registry->Register("map", Make<MapOperator>()));
  s.Update(registry->Register("key_by", Make<PassThroughOperator>()));
  s.Update(registry->Register("union", Make<PassThroughOperator>()));
  s.Update(registry->Register("aggregate", Make<AggregateOperator>()));
  s.Update(registry->Register("file", Make<FileSink>()));
  s.Update(registry->Register("print", Make<PrintSink>()));
  s.Update(registry->Register("blackhole", Make<BlackholeSink>()));
  if (!s.ok()) spdlog::error("registering built-in operators: {}", s);
}

}  // namespace sluice::ops
