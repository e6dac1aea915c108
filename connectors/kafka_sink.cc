#include "connectors/kafka_sink.h"

#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/logging.h"
#include "common/record_codec.h"
#include "common/status.h"
#include "connectors/kafka_client.h"
#include "connectors/kafka_sink_options.h"
#include "operators/two_phase_commit_sink.h"
#include "plan/job_spec.h"

namespace sluice::connectors {
namespace {

// The options as the sink uses them: the validated options plus what depends on the job
// (the transactional id prefix defaults to "<job name>-<operator id>").
struct SinkConfig {
  std::string bootstrap;
  std::string topic;
  KafkaSinkOptions::Format format = KafkaSinkOptions::Format::kJson;
  std::vector<int> key_fields;
  KafkaSinkOptions::Guarantee guarantee = KafkaSinkOptions::Guarantee::kAtLeastOnce;
  std::string prefix;
  int64_t transaction_timeout_ms = 0;
  int pool_size = 0;
  int64_t flush_timeout_ms = 0;
  KafkaSettings properties;  // the user's, applied last
  std::string transaction_log;
  int64_t max_transaction_bytes = 0;
  int value_field = -1;  // raw
};

absl::StatusOr<SinkConfig> ReadConfig(const ops::OperatorContext& ctx) {
  SLUICE_ASSIGN_OR_RETURN(const KafkaSinkOptions* o, ops::TypedOptions<KafkaSinkOptions>(ctx));
  SinkConfig cfg;
  cfg.bootstrap = o->bootstrap;
  cfg.topic = o->topic;
  cfg.format = o->format;
  cfg.key_fields = o->key_fields;
  cfg.guarantee = o->guarantee;
  cfg.prefix = o->transactional_id_prefix.empty() ? absl::StrCat(ctx.job->name, "-", ctx.spec->id)
                                                  : o->transactional_id_prefix;
  for (char& ch : cfg.prefix) {  // the default from names: keep it to [A-Za-z0-9._-]
    if (!absl::ascii_isalnum(ch) && ch != '.' && ch != '_' && ch != '-') ch = '_';
  }
  cfg.transaction_timeout_ms = o->transaction_timeout_ms;
  cfg.pool_size = o->producer_pool_size;
  cfg.flush_timeout_ms = o->flush_timeout_ms;
  cfg.properties = o->properties;
  cfg.transaction_log = o->transaction_log;
  cfg.max_transaction_bytes = o->max_transaction_bytes;
  cfg.value_field = o->value_field;
  return cfg;
}


// One librdkafka producer on the sink's topic. Delivery failures are remembered and reported
// by Flush(); everything runs on the task thread (delivery callbacks come from poll/flush).
class Producer {
 public:
  static absl::StatusOr<std::unique_ptr<Producer>> Create(const SinkConfig& cfg, const std::string& transactional_id) {
    auto p = std::unique_ptr<Producer>(new Producer());
    p->topic_ = cfg.topic;
    p->id_ = transactional_id;
    KafkaSettings settings = {
        {"bootstrap.servers", cfg.bootstrap}, {"log_level", "3"}, {"partitioner", "murmur2_random"},
        {"linger.ms", "5"}};
    if (!transactional_id.empty()) {
      settings.push_back({"transactional.id", transactional_id});
      settings.push_back({"transaction.timeout.ms", std::to_string(cfg.transaction_timeout_ms)});
    }
    settings.insert(settings.end(), cfg.properties.begin(), cfg.properties.end());
    SLUICE_ASSIGN_OR_RETURN(p->rk_, NewKafkaClient(RD_KAFKA_PRODUCER, settings, "kafka_sink", &Producer::Configure, p.get()));
    p->rkt_ = rd_kafka_topic_new(p->rk_, cfg.topic.c_str(), nullptr);
    if (!transactional_id.empty()) {
      SLUICE_RETURN_IF_ERROR(KafkaErrorStatus(rd_kafka_init_transactions(p->rk_, static_cast<int>(cfg.flush_timeout_ms)),
                                         absl::StrCat("initialising transactional id ", transactional_id)));
    }
    return p;
  }

  ~Producer() {
    if (rkt_ != nullptr) rd_kafka_topic_destroy(rkt_);
    if (rk_ != nullptr) rd_kafka_destroy(rk_);
  }

  // Hands one message to librdkafka, waiting (serving delivery reports) while its queue is full.
  absl::Status Produce(absl::string_view key, absl::string_view value, absl::string_view txn_header,
                       int64_t timeout_ms) {
    int waited = 0;
    for (;;) {
      int rc;
      if (txn_header.empty()) {
        rc = rd_kafka_produce(rkt_, RD_KAFKA_PARTITION_UA, RD_KAFKA_MSG_F_COPY, const_cast<char*>(value.data()),
                              value.size(), key.empty() ? nullptr : key.data(), key.size(), nullptr);
        if (rc == 0) break;
        rc = rd_kafka_last_error();
      } else {
        rc = rd_kafka_producev(rk_, RD_KAFKA_V_RKT(rkt_), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                               RD_KAFKA_V_KEY(key.empty() ? nullptr : key.data(), key.size()),
                               RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()),
                               RD_KAFKA_V_HEADER("sluice.txn", txn_header.data(), static_cast<ssize_t>(txn_header.size())),
                               RD_KAFKA_V_END);
        if (rc == 0) break;
      }
      if (rc != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
        return absl::UnavailableError(absl::StrCat("kafka topic ", topic_, ": ", rd_kafka_err2str(static_cast<rd_kafka_resp_err_t>(rc))));
      }
      if (waited >= timeout_ms) {
        return absl::DeadlineExceededError(absl::StrCat("kafka topic ", topic_, ": producer queue stayed full for ",
                                                        timeout_ms, " ms (broker unreachable?)"));
      }
      rd_kafka_poll(rk_, 10);
      waited += 10;
    }
    if (++since_poll_ >= 1024) {
      since_poll_ = 0;
      rd_kafka_poll(rk_, 0);
    }
    return DeliveryStatus();
  }

  // Waits until every produced message is acknowledged (or failed).
  absl::Status Flush(int64_t timeout_ms) {
    rd_kafka_resp_err_t err = rd_kafka_flush(rk_, static_cast<int>(timeout_ms));
    SLUICE_RETURN_IF_ERROR(DeliveryStatus());
    if (err == RD_KAFKA_RESP_ERR__TIMED_OUT) {
      return absl::DeadlineExceededError(absl::StrCat("kafka topic ", topic_, ": ", rd_kafka_outq_len(rk_),
                                                      " message(s) not acknowledged after ", timeout_ms,
                                                      " ms (broker unreachable?)"));
    }
    return absl::OkStatus();
  }

  absl::Status DeliveryStatus() const {
    if (error_.empty()) return absl::OkStatus();
    return absl::UnavailableError(absl::StrCat("kafka topic ", topic_, ": delivery failed: ", error_));
  }

  rd_kafka_t* handle() const { return rk_; }
  const std::string& id() const { return id_; }

 private:
  Producer() = default;
  static void Configure(rd_kafka_conf_t* conf, void* self) {
    rd_kafka_conf_set_opaque(conf, self);
    rd_kafka_conf_set_dr_msg_cb(conf, &Producer::OnDelivery);
  }
  static void OnDelivery(rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) {
    auto* self = static_cast<Producer*>(opaque);
    if (m->err && self->error_.empty()) self->error_ = rd_kafka_err2str(m->err);
  }

  rd_kafka_t* rk_ = nullptr;
  rd_kafka_topic_t* rkt_ = nullptr;
  std::string topic_;
  std::string id_;
  std::string error_;  // first delivery failure
  int since_poll_ = 0;
};

// Builds a record's message key and value in reusable buffers.
class Serializer {
 public:
  void Init(const Schema* schema, const SinkConfig* cfg) {
    schema_ = schema;
    cfg_ = cfg;
    format_ = cfg->format;
  }
  void Serialize(const Record& r) {
    key_.clear();
    value_.clear();
    for (size_t k = 0; k < cfg_->key_fields.size(); ++k) {
      if (k > 0) key_.push_back('|');
      int i = cfg_->key_fields[k];
      AppendValueText(schema_->field(i).type, r, i, &key_);
    }
    if (format_ == Format::kRaw) {
      value_.append(r[cfg_->value_field].s);
    } else if (format_ == Format::kCsv) {
      for (size_t i = 0; i < schema_->size(); ++i) {
        if (i > 0) value_.push_back(',');
        AppendValueText(schema_->field(i).type, r, i, &value_);
      }
    } else {
      AppendRecordJson(*schema_, r, &value_);
    }
  }
  const std::string& key() const { return key_; }
  const std::string& value() const { return value_; }

 private:
  using Format = KafkaSinkOptions::Format;
  const Schema* schema_ = nullptr;
  const SinkConfig* cfg_ = nullptr;
  Format format_ = Format::kJson;
  std::string key_;
  std::string value_;
};

// The sink's own metrics (when the task gives it a registry).
struct SinkMetrics {
  std::shared_ptr<Counter> committed, redone;
  std::shared_ptr<Gauge> pending, last_flush_ms;
  void Init(const ops::OperatorContext& ctx) {
    if (ctx.metrics == nullptr) return;
    committed = ctx.metrics->AddCounter("sluice_kafka_sink_transactions_committed_total",
                                        "Kafka transactions committed by a sink subtask", ctx.metric_labels, ctx.metrics_owner);
    redone = ctx.metrics->AddCounter("sluice_kafka_sink_transactions_redone_total",
                                     "Restored Kafka transactions produced again because their commit marker was missing",
                                     ctx.metric_labels, ctx.metrics_owner);
    pending = ctx.metrics->AddGauge("sluice_kafka_sink_transactions_pending",
                                    "Pre-committed Kafka transactions waiting for their checkpoint to complete",
                                    ctx.metric_labels, ctx.metrics_owner);
    last_flush_ms = ctx.metrics->AddGauge("sluice_kafka_sink_last_flush_ms",
                                          "Duration of the sink's last flush (at a checkpoint barrier)", ctx.metric_labels,
                                          ctx.metrics_owner);
  }
  void Flushed(int64_t start_nanos, const Clock* clock) {
    if (last_flush_ms) last_flush_ms->Set(static_cast<double>(clock->NowNanos() - start_nanos) / 1e6);
  }
};

// guarantee none / at_least_once.
class KafkaSink final : public ops::Operator {
 public:
  absl::Status Open(const ops::OperatorContext& ctx, ops::Output* output) override {
    SLUICE_RETURN_IF_ERROR(Operator::Open(ctx, output));
    SLUICE_ASSIGN_OR_RETURN(cfg_, ReadConfig(ctx));
    serializer_.Init(&ctx.spec->input_schema, &cfg_);
    SLUICE_ASSIGN_OR_RETURN(producer_, Producer::Create(cfg_, ""));
    metrics_.Init(ctx);
    return absl::OkStatus();
  }
  absl::Status Process(const Record& r) override {
    serializer_.Serialize(r);
    return producer_->Produce(serializer_.key(), serializer_.value(), {}, cfg_.flush_timeout_ms);
  }
  absl::Status SnapshotState(int64_t, std::vector<std::string>*) override {
    if (cfg_.guarantee != KafkaSinkOptions::Guarantee::kAtLeastOnce) return producer_->DeliveryStatus();
    const int64_t start = ctx_.clock->NowNanos();
    SLUICE_RETURN_IF_ERROR(producer_->Flush(cfg_.flush_timeout_ms));
    metrics_.Flushed(start, ctx_.clock);
    return absl::OkStatus();
  }
  absl::Status Finish() override { return producer_->Flush(cfg_.flush_timeout_ms); }
  void Close() override { producer_.reset(); }

 private:
  SinkConfig cfg_;
  Serializer serializer_;
  std::unique_ptr<Producer> producer_;
  SinkMetrics metrics_;
};

// guarantee exactly_once. A transaction handle while open is the pool index; once
// pre-committed it is "txn <transactional id> <subtask> <index> <checkpoint> <instance> <run>\n"
// followed by the transaction's messages (varint-framed key and value), so any later process
// can redo it. <run> is the job id of the run that wrote it: its marker lives in consumer
// group "<transactional id>.<run>", so markers of other runs of the same job (whose checkpoint
// ids start again at 1) are never mistaken for it.
class TransactionalKafkaSink final : public ops::TwoPhaseCommitSink {
 public:
  ~TransactionalKafkaSink() override { Close(); }

  void Close() override {
    // Abort every transaction still open on the broker: the open one (no checkpoint covers it)
    // and pre-committed ones whose commit has not come (a restore redoes them from the
    // checkpoint, whose marker check sees they did not commit). Left open, they would hold back
    // read_committed consumers until transaction_timeout; and librdkafka asserts when a producer
    // is destroyed while its transaction still adds partitions.
    for (Slot& slot : pool_) {
      if (!slot.busy) continue;
      absl::Status s = KafkaErrorStatus(rd_kafka_abort_transaction(slot.producer->handle(), 10000), "abort");
      if (!s.ok()) spdlog::warn("{}: aborting the transaction on {}: {}", ctx_.task_name, slot.producer->id(), s);
      Log("abort", slot.producer->id(), slot.checkpoint, slot.instance);
      slot.busy = false;
    }
    open_ = -1;
    pool_.clear();
    if (log_ != nullptr) {
      std::fclose(log_);
      log_ = nullptr;
    }
  }

  absl::Status SnapshotState(int64_t checkpoint_id, std::vector<std::string>* entries) override {
    checkpoint_id_ = checkpoint_id;
    SLUICE_RETURN_IF_ERROR(TwoPhaseCommitSink::SnapshotState(checkpoint_id, entries));
    entries->push_back(VersionedEntry(absl::StrCat("meta ", ctx_.subtask, " ", ctx_.parallelism, " ", cfg_.pool_size, " ", cfg_.prefix)));
    return absl::OkStatus();
  }

 protected:
  absl::Status Initialize() override {
    SLUICE_ASSIGN_OR_RETURN(cfg_, ReadConfig(ctx_));
    serializer_.Init(&ctx_.spec->input_schema, &cfg_);
    metrics_.Init(ctx_);
    run_ = ctx_.job_id.empty() ? "run" : ctx_.job_id;
    if (!cfg_.transaction_log.empty()) {
      log_ = std::fopen(cfg_.transaction_log.c_str(), "a");
      if (log_ == nullptr) return absl::FailedPreconditionError(absl::StrCat("cannot open ", cfg_.transaction_log));
    }
    // Initialising every id of the pool fences producers of earlier attempts with the same ids
    // and aborts their open transactions (on a real broker).
    for (int n = 0; n < cfg_.pool_size; ++n) {
      SLUICE_ASSIGN_OR_RETURN(auto p, Producer::Create(cfg_, Id(ctx_.subtask, n)));
      Log("init", p->id(), 0, "");
      Slot slot;
      slot.producer = std::move(p);
      pool_.push_back(std::move(slot));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::string> BeginTransaction(bool) override {
    for (size_t n = 0; n < pool_.size(); ++n) {
      Slot& slot = pool_[n];
      if (slot.busy) continue;
      SLUICE_RETURN_IF_ERROR(KafkaErrorStatus(rd_kafka_begin_transaction(slot.producer->handle()),
                                         absl::StrCat("beginning a transaction on ", slot.producer->id())));
      slot.busy = true;
      slot.checkpoint = 0;
      slot.staged.clear();
      slot.instance = absl::StrCat(ctx_.attempt, ".", ++begun_);
      header_ = absl::StrCat(slot.producer->id(), "#", slot.instance);
      open_ = static_cast<int>(n);
      Log("begin", slot.producer->id(), 0, slot.instance);
      return std::to_string(n);
    }
    return absl::ResourceExhaustedError(absl::StrCat(
        "all ", pool_.size(), " transactional producers of ", ctx_.task_name,
        " hold transactions waiting for their checkpoint to complete (checkpoints keep failing?); "
        "raise producer_pool_size to tolerate more"));
  }

  absl::Status Write(const Record& r) override {
    Slot& slot = pool_[open_];
    serializer_.Serialize(r);
    SLUICE_RETURN_IF_ERROR(slot.producer->Produce(serializer_.key(), serializer_.value(),
                                                  log_ != nullptr ? absl::string_view(header_) : absl::string_view(),
                                                  cfg_.flush_timeout_ms));
    if (static_cast<int64_t>(slot.staged.size()) > cfg_.max_transaction_bytes) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "the transaction of ", slot.producer->id(), " holds more than ", cfg_.max_transaction_bytes,
          " bytes of records (max_transaction_bytes), which the checkpoint keeps to redo it after a failure; "
          "take checkpoints more often (checkpoint.interval) or use guarantee at_least_once"));
    }
    PutVarint64(serializer_.key().size(), &slot.staged);
    slot.staged.append(serializer_.key());
    PutVarint64(serializer_.value().size(), &slot.staged);
    slot.staged.append(serializer_.value());
    return absl::OkStatus();
  }

  absl::Status Flush() override { return pool_[open_].producer->Flush(cfg_.flush_timeout_ms); }

  absl::StatusOr<std::string> PreCommit(const std::string&) override {
    Slot& slot = pool_[open_];
    const int64_t start = ctx_.clock->NowNanos();
    SLUICE_RETURN_IF_ERROR(slot.producer->Flush(cfg_.flush_timeout_ms));
    metrics_.Flushed(start, ctx_.clock);
    SLUICE_RETURN_IF_ERROR(SendMarker(slot.producer.get(), checkpoint_id_, run_));
    slot.checkpoint = checkpoint_id_;
    Log("precommit", slot.producer->id(), checkpoint_id_, slot.instance);
    std::string handle = absl::StrCat("txn ", slot.producer->id(), " ", ctx_.subtask, " ", open_, " ", checkpoint_id_, " ",
                                      slot.instance, " ", run_, "\n");
    handle.append(slot.staged);
    slot.staged.clear();
    open_ = -1;
    if (metrics_.pending) metrics_.pending->Set(metrics_.pending->Value() + 1);
    return handle;
  }

  absl::Status Commit(const std::string& handle) override {
    SLUICE_ASSIGN_OR_RETURN(Pending p, Parse(handle));
    if (p.id == Id(ctx_.subtask, p.index) && p.run == run_ && p.index < static_cast<int>(pool_.size()) &&
        pool_[p.index].busy && pool_[p.index].checkpoint == p.checkpoint && pool_[p.index].instance == p.instance) {
      Slot& slot = pool_[p.index];
      SLUICE_RETURN_IF_ERROR(KafkaErrorStatus(rd_kafka_commit_transaction(slot.producer->handle(), static_cast<int>(cfg_.flush_timeout_ms)),
                                         absl::StrCat("committing transaction of checkpoint ", p.checkpoint, " on ",
                                                      slot.producer->id())));
      slot.busy = false;
      Log("commit", slot.producer->id(), p.checkpoint, slot.instance);
      if (metrics_.committed) {
        metrics_.committed->Add();
        metrics_.pending->Set(metrics_.pending->Value() - 1);
      }
      return absl::OkStatus();
    }
    return Redo(p, handle);
  }

  absl::Status AbortLeftovers(const std::set<std::string>&) override { return absl::OkStatus(); }

  // Each subtask redoes the restored transactions of the ids it now owns (old subtask s goes
  // to s % parallelism), then fences the ids of old subtasks that no longer exist.
  absl::Status RecoverRestored(const std::vector<std::string>& restored) override {
    int old_parallelism = 0, old_pool = 0;
    std::string old_prefix = cfg_.prefix;
    std::vector<std::pair<Pending, const std::string*>> mine;
    for (const std::string& e : restored) {
      if (e.rfind("meta ", 0) == 0) {
        std::vector<std::string> f = absl::StrSplit(e, ' ');
        int p = 0, pool = 0;
        if (f.size() != 5 || !absl::SimpleAtoi(f[2], &p) || !absl::SimpleAtoi(f[3], &pool)) {
          return ctx_.state_origin.DataLoss(absl::StrCat("kafka_sink entry '", absl::CEscape(e),
                                                         "' is not 'meta <subtask> <parallelism> <pool size> <prefix>'"));
        }
        old_parallelism = std::max(old_parallelism, p);
        old_pool = std::max(old_pool, pool);
        old_prefix = f[4];
        continue;
      }
      SLUICE_ASSIGN_OR_RETURN(Pending p, Parse(e));
      if (p.subtask % ctx_.parallelism == ctx_.subtask) mine.push_back({p, &e});
    }
    std::stable_sort(mine.begin(), mine.end(), [](const auto& a, const auto& b) { return a.first.checkpoint < b.first.checkpoint; });
    for (const auto& [p, handle] : mine) SLUICE_RETURN_IF_ERROR(Redo(p, *handle));
    // Ids of the old run this subtask's pool did not initialise: removed subtasks, a smaller
    // pool, or another prefix.
    for (int s = 0; s < old_parallelism; ++s) {
      if (s % ctx_.parallelism != ctx_.subtask) continue;
      for (int n = 0; n < old_pool; ++n) {
        const std::string id = absl::StrCat(old_prefix, "-", s, "-", n);
        if (s == ctx_.subtask && n < cfg_.pool_size && id == Id(s, n)) continue;
        SLUICE_ASSIGN_OR_RETURN(auto fence, Producer::Create(cfg_, id));
        Log("fence", fence->id(), 0, "");
      }
    }
    return absl::OkStatus();
  }

 private:
  struct Slot {
    std::unique_ptr<Producer> producer;
    bool busy = false;        // a transaction is open or waits for its commit
    int64_t checkpoint = 0;   // pre-committed for this checkpoint; 0 = still open
    std::string instance;     // "<attempt>.<n>": which transaction on this id
    std::string staged;       // the open transaction's messages, for the pending list
  };
  struct Pending {
    std::string id;  // transactional id
    int subtask = 0;
    int index = 0;
    int64_t checkpoint = 0;
    std::string instance;
    std::string run;  // job id of the run that wrote it
    absl::string_view messages;
  };

  std::string Id(int subtask, int n) const { return absl::StrCat(cfg_.prefix, "-", subtask, "-", n); }

  absl::StatusOr<Pending> Parse(const std::string& handle) const {
    size_t nl = handle.find('\n');
    Pending p;
    std::vector<std::string> f = absl::StrSplit(absl::string_view(handle).substr(0, nl), ' ');
    if (nl == std::string::npos || f.size() != 7 || f[0] != "txn" || !absl::SimpleAtoi(f[2], &p.subtask) ||
        !absl::SimpleAtoi(f[3], &p.index) || !absl::SimpleAtoi(f[4], &p.checkpoint)) {
      return ctx_.state_origin.DataLoss(absl::StrCat("kafka_sink transaction '",
                                                     absl::CEscape(absl::string_view(handle).substr(0, std::min<size_t>(nl, 200))),
                                                     "' is not 'txn <id> <subtask> <index> <checkpoint> <instance> <run>'"));
    }
    p.id = f[1];
    p.instance = f[5];
    p.run = f[6];
    p.messages = absl::string_view(handle).substr(nl + 1);
    return p;
  }

  // The marker of a transaction: its checkpoint id, committed (atomically with the
  // transaction) as group "<transactional id>.<run>"'s offset of partition 0 of the topic.
  // Transactions on one id commit in order within a run, so a marker at or past a checkpoint
  // means that checkpoint's transaction committed.
  absl::Status SendMarker(Producer* producer, int64_t checkpoint_id, const std::string& run) {
    rd_kafka_topic_partition_list_t* offsets = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(offsets, cfg_.topic.c_str(), 0)->offset = checkpoint_id;
    const std::string group_id = absl::StrCat(producer->id(), ".", run);
    rd_kafka_consumer_group_metadata_t* group = rd_kafka_consumer_group_metadata_new(group_id.c_str());
    rd_kafka_error_t* error = rd_kafka_send_offsets_to_transaction(producer->handle(), offsets, group,
                                                                   static_cast<int>(cfg_.flush_timeout_ms));
    rd_kafka_consumer_group_metadata_destroy(group);
    rd_kafka_topic_partition_list_destroy(offsets);
    return KafkaErrorStatus(error, absl::StrCat("committing the marker of checkpoint ", checkpoint_id, " on ", producer->id()));
  }

  // Whether the transaction of `checkpoint_id` on `id` in `run` committed: its marker (or a
  // later one of the same run).
  absl::StatusOr<bool> MarkerCommitted(const std::string& id, int64_t checkpoint_id, const std::string& run) {
    const std::string group_id = absl::StrCat(id, ".", run);
    // The user's properties too (security settings, mostly; producer-only ones are accepted by
    // a consumer's configuration and ignored).
    KafkaSettings settings = {{"bootstrap.servers", cfg_.bootstrap}, {"log_level", "3"}};
    settings.insert(settings.end(), cfg_.properties.begin(), cfg_.properties.end());
    settings.push_back({"group.id", group_id});
    SLUICE_ASSIGN_OR_RETURN(rd_kafka_t * consumer, NewKafkaClient(RD_KAFKA_CONSUMER, settings, "kafka_sink marker check"));
    rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(list, cfg_.topic.c_str(), 0);
    rd_kafka_resp_err_t err = rd_kafka_committed(consumer, list, static_cast<int>(cfg_.flush_timeout_ms));
    if (!err) err = list->elems[0].err;
    const int64_t committed = list->elems[0].offset;
    rd_kafka_topic_partition_list_destroy(list);
    rd_kafka_destroy(consumer);
    if (err) return absl::UnavailableError(absl::StrCat("reading the commit marker ", group_id, ": ", rd_kafka_err2str(err)));
    return committed >= checkpoint_id;
  }

  // Completes a restored pre-committed transaction: its id has been initialised (which waits
  // for a commit in flight and aborts an open transaction); if its marker is not committed,
  // its messages are produced again in a new transaction with the marker, and committed.
  absl::Status Redo(const Pending& p, const std::string& handle) {
    const std::string& id = p.id;
    std::unique_ptr<Producer> temp;
    Producer* producer;
    if (id == Id(ctx_.subtask, p.index) && p.index < static_cast<int>(pool_.size()) && !pool_[p.index].busy) {
      producer = pool_[p.index].producer.get();
    } else {
      SLUICE_ASSIGN_OR_RETURN(temp, Producer::Create(cfg_, id));
      producer = temp.get();
    }
    SLUICE_ASSIGN_OR_RETURN(bool committed, MarkerCommitted(id, p.checkpoint, p.run));
    if (committed) {
      Log("recover_committed", id, p.checkpoint, p.instance);
      return absl::OkStatus();
    }
    SLUICE_RETURN_IF_ERROR(KafkaErrorStatus(rd_kafka_begin_transaction(producer->handle()), absl::StrCat("beginning a transaction on ", id)));
    absl::Status s = RedoInTransaction(p, producer);
    if (!s.ok()) {
      // Never leave the transaction open: it would hold back read_committed consumers, and
      // librdkafka asserts when a producer is destroyed mid-transaction.
      rd_kafka_error_t* abort = rd_kafka_abort_transaction(producer->handle(), 10000);
      if (abort != nullptr) rd_kafka_error_destroy(abort);
    }
    (void)handle;
    return s;
  }

  // Produces a restored transaction's messages again, with its marker, and commits.
  absl::Status RedoInTransaction(const Pending& p, Producer* producer) {
    const std::string& id = p.id;
    const std::string instance = absl::StrCat(ctx_.attempt, ".r", ++begun_);
    const std::string header = absl::StrCat(id, "#", instance);
    const char* pos = p.messages.data();
    const char* end = pos + p.messages.size();
    int64_t count = 0;
    while (pos < end) {
      uint64_t klen = 0, vlen = 0;
      pos = GetVarint64(pos, end, &klen);
      if (pos == nullptr || static_cast<uint64_t>(end - pos) < klen) return Truncated(p, count);
      absl::string_view key(pos, klen);
      pos = GetVarint64(pos + klen, end, &vlen);
      if (pos == nullptr || static_cast<uint64_t>(end - pos) < vlen) return Truncated(p, count);
      absl::string_view value(pos, vlen);
      pos += vlen;
      SLUICE_RETURN_IF_ERROR(producer->Produce(key, value, log_ != nullptr ? absl::string_view(header) : absl::string_view(),
                                               cfg_.flush_timeout_ms));
      ++count;
    }
    SLUICE_RETURN_IF_ERROR(producer->Flush(cfg_.flush_timeout_ms));
    SLUICE_RETURN_IF_ERROR(SendMarker(producer, p.checkpoint, p.run));
    SLUICE_RETURN_IF_ERROR(KafkaErrorStatus(rd_kafka_commit_transaction(producer->handle(), static_cast<int>(cfg_.flush_timeout_ms)),
                                       absl::StrCat("committing the redone transaction of checkpoint ", p.checkpoint, " on ", id)));
    spdlog::info("{}: redid transaction {} of checkpoint {} ({} records): its commit marker was missing",
                 ctx_.task_name, id, p.checkpoint, count);
    Log("recover_redo", id, p.checkpoint, instance, p.instance);
    if (metrics_.redone) metrics_.redone->Add();
    return absl::OkStatus();
  }

  absl::Status Truncated(const Pending& p, int64_t count) const {
    return ctx_.state_origin.DataLoss(absl::StrCat("the messages of kafka_sink transaction ", p.id, " of checkpoint ",
                                                   p.checkpoint, " are truncated after ", count, " records"));
  }

  // One JSON line per transaction event (transaction_log).
  void Log(const char* event, const std::string& id, int64_t checkpoint, const std::string& instance,
           const std::string& redoes = "") {
    if (log_ == nullptr) return;
    std::string line = absl::StrCat("{\"ms\":", ctx_.clock->WallMillis(), ",\"task\":\"", ctx_.task_name,
                                    "\",\"attempt\":", ctx_.attempt, ",\"event\":\"", event, "\",\"txn\":\"", id,
                                    "\",\"checkpoint\":", checkpoint, ",\"instance\":\"", instance, "\"");
    if (!redoes.empty()) absl::StrAppend(&line, ",\"redoes\":\"", redoes, "\"");
    line += "}\n";
    std::fwrite(line.data(), 1, line.size(), log_);  // one write per line: O_APPEND keeps lines whole
    std::fflush(log_);
  }

  SinkConfig cfg_;
  Serializer serializer_;
  SinkMetrics metrics_;
  std::vector<Slot> pool_;
  int open_ = -1;
  int64_t checkpoint_id_ = 0;
  int64_t begun_ = 0;
  std::string run_;  // this run's job id: names its markers
  std::string header_;
  std::FILE* log_ = nullptr;
};

}  // namespace

std::unique_ptr<ops::Operator> MakeKafkaSink(const plan::OperatorSpec& spec) {
  const KafkaSinkOptions* o = spec.options_as<KafkaSinkOptions>();
  if (o != nullptr && o->guarantee == KafkaSinkOptions::Guarantee::kExactlyOnce) {
    return std::make_unique<TransactionalKafkaSink>();
  }
  return std::make_unique<KafkaSink>();
}

}  // namespace sluice::connectors
