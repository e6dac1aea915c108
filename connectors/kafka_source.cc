#include "connectors/kafka_source.h"

#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/logging.h"
#include "connectors/json_record_reader.h"
#include "connectors/kafka_sink.h"
#include "common/status.h"
#include "nlohmann/json.hpp"

namespace sluice::connectors {
namespace {

class KafkaSource final : public ops::SourceOperator {
 public:
  ~KafkaSource() override { Close(); }

  absl::Status Open(const ops::OperatorContext& ctx, ops::Output* output) override {
    SLUICE_RETURN_IF_ERROR(SourceOperator::Open(ctx, output));
    const YAML::Node& c = ctx.spec->config;
    topic_ = c["topic"].Scalar();
    format_ = c["format"] ? c["format"].Scalar() : "json";
    bounded_ = c["bounded"] && c["bounded"].as<bool>();
    std::string on_error = c["on_error"] ? c["on_error"].Scalar() : "fail";
    skip_bad_ = on_error == "skip" || on_error == "dead_letter";
    if (on_error == "dead_letter") dead_letter_topic_ = c["dead_letter_topic"].Scalar();
    std::string start = c["start"] ? c["start"].Scalar() : "earliest";
    std::string group = c["group"] ? c["group"].Scalar() : absl::StrCat("sluice-", ctx.job_id);
    out_.Resize(ctx.spec->output_schema.size());
    skipped_ = 0;

    char errstr[512];
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    auto set = [&](const char* k, const std::string& v) -> absl::Status {
      if (rd_kafka_conf_set(conf, k, v.c_str(), errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) {
        return absl::InvalidArgumentError(absl::StrCat("kafka option ", k, ": ", errstr));
      }
      return absl::OkStatus();
    };
    absl::Status s = set("bootstrap.servers", c["bootstrap"].Scalar());
    s.Update(set("group.id", group));
    s.Update(set("enable.auto.commit", "false"));
    s.Update(set("enable.partition.eof", "false"));
    s.Update(set("log_level", "3"));
    if (!s.ok()) {
      rd_kafka_conf_destroy(conf);
      return s;
    }
    rk_ = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    if (rk_ == nullptr) return absl::UnavailableError(absl::StrCat("kafka consumer: ", errstr));
    if (!dead_letter_topic_.empty()) {
      rd_kafka_conf_t* pconf = rd_kafka_conf_new();
      if (rd_kafka_conf_set(pconf, "bootstrap.servers", c["bootstrap"].Scalar().c_str(), errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK ||
          rd_kafka_conf_set(pconf, "log_level", "3", errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) {
        rd_kafka_conf_destroy(pconf);
        return absl::InvalidArgumentError(absl::StrCat("dead-letter producer: ", errstr));
      }
      dlq_ = rd_kafka_new(RD_KAFKA_PRODUCER, pconf, errstr, sizeof(errstr));
      if (dlq_ == nullptr) return absl::UnavailableError(absl::StrCat("dead-letter producer: ", errstr));
    }

    // Which partitions exist, and which are ours.
    const rd_kafka_metadata_t* md = nullptr;
    rd_kafka_topic_t* t = rd_kafka_topic_new(rk_, topic_.c_str(), nullptr);
    rd_kafka_resp_err_t err = rd_kafka_metadata(rk_, 0, t, &md, 10000);
    rd_kafka_topic_destroy(t);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return absl::UnavailableError(absl::StrCat("kafka metadata for topic ", topic_, ": ", rd_kafka_err2str(err)));
    }
    int partitions = md->topic_cnt == 1 && md->topics[0].err == 0 ? md->topics[0].partition_cnt : 0;
    rd_kafka_metadata_destroy(md);
    if (partitions == 0) return absl::NotFoundError(absl::StrCat("kafka topic ", topic_, " does not exist"));

    std::map<int32_t, int64_t> restored;
    for (const std::string& e : ctx.restored_state) {
      std::vector<std::string> parts = absl::StrSplit(e, ':');
      int32_t p;
      int64_t off;
      if (parts.size() == 2 && absl::SimpleAtoi(parts[0], &p) && absl::SimpleAtoi(parts[1], &off)) restored[p] = off;
    }
    rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(partitions);
    for (int32_t p = 0; p < partitions; ++p) {
      if (p % ctx.parallelism != ctx.subtask) continue;
      int64_t offset = start == "latest" ? RD_KAFKA_OFFSET_END
                       : start == "committed" ? RD_KAFKA_OFFSET_STORED
                                              : RD_KAFKA_OFFSET_BEGINNING;
      auto it = restored.find(p);
      if (it != restored.end()) offset = it->second;
      rd_kafka_topic_partition_list_add(list, topic_.c_str(), p)->offset = offset;
      int64_t low = 0, high = 0;
      if (bounded_) {
        err = rd_kafka_query_watermark_offsets(rk_, topic_.c_str(), p, &low, &high, 10000);
        if (err) {
          rd_kafka_topic_partition_list_destroy(list);
          return absl::UnavailableError(absl::StrCat("kafka watermarks of ", topic_, "/", p, ": ", rd_kafka_err2str(err)));
        }
      }
      Partition part;
      part.id = p;
      part.next = it != restored.end() ? it->second : (offset == RD_KAFKA_OFFSET_BEGINNING ? low : -1);
      part.end = high;
      partitions_[p] = part;
    }
    err = rd_kafka_assign(rk_, list);
    rd_kafka_topic_partition_list_destroy(list);
    if (err) return absl::UnavailableError(absl::StrCat("kafka assign: ", rd_kafka_err2str(err)));
    spdlog::info("{}: reading {} partition(s) of {}{}", ctx.task_name, partitions_.size(), topic_,
                 ctx.restored ? " from checkpointed offsets" : "");
    return absl::OkStatus();
  }

  absl::StatusOr<State> Poll(int max_records, int64_t* wake_at_nanos) override {
    if (bounded_ && Done()) return State::kEnd;
    for (int n = 0; n < max_records; ++n) {
      rd_kafka_message_t* m = rd_kafka_consumer_poll(rk_, 0);
      if (m == nullptr) {
        *wake_at_nanos = ctx_.clock->NowNanos() + 5'000'000;
        return bounded_ && Done() ? State::kEnd : State::kWait;
      }
      if (m->err) {
        std::string e = rd_kafka_message_errstr(m);
        rd_kafka_message_destroy(m);
        return absl::UnavailableError(absl::StrCat("kafka topic ", topic_, ": ", e));
      }
      auto it = partitions_.find(m->partition);
      if (it == partitions_.end()) {
        rd_kafka_message_destroy(m);
        continue;
      }
      absl::Status s = Decode(m);
      const int64_t offset = m->offset;
      it->second.next = offset + 1;
      if (!s.ok()) {
        std::string where = absl::StrCat("topic ", topic_, " partition ", m->partition, " offset ", offset);
        if (dlq_ != nullptr) {
          // The original bytes, with the error and origin in headers.
          std::string error(s.message());
          rd_kafka_resp_err_t perr = rd_kafka_producev(
              dlq_, RD_KAFKA_V_TOPIC(dead_letter_topic_.c_str()),
              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_KEY(m->key, m->key_len),
              RD_KAFKA_V_VALUE(m->payload, m->len),
              RD_KAFKA_V_HEADER("sluice.error", error.data(), static_cast<ssize_t>(error.size())),
              RD_KAFKA_V_HEADER("sluice.origin", where.data(), static_cast<ssize_t>(where.size())),
              RD_KAFKA_V_END);
          if (perr) {
            rd_kafka_message_destroy(m);
            return absl::UnavailableError(absl::StrCat("dead-letter topic ", dead_letter_topic_, ": ", rd_kafka_err2str(perr)));
          }
          rd_kafka_poll(dlq_, 0);
        }
        rd_kafka_message_destroy(m);
        if (!skip_bad_) return absl::InvalidArgumentError(absl::StrCat("bad record at ", where, ": ", s.message()));
        ++skipped_;
        if (ctx_.records_skipped != nullptr) ctx_.records_skipped->Add();
        if (skipped_ <= 10 || skipped_ % 1000 == 0) {
          spdlog::warn("{}: skipped bad record at {} ({} skipped so far): {}", ctx_.task_name, where, skipped_, s.message());
        }
        continue;
      }
      rd_kafka_message_destroy(m);
      SLUICE_RETURN_IF_ERROR(output_->Emit(out_));
    }
    return State::kMore;
  }

  absl::Status SnapshotState(int64_t, std::vector<std::string>* entries) override {
    if (dlq_ != nullptr) {
      // Dead letters of records before the barrier are in Kafka before the checkpoint counts.
      rd_kafka_resp_err_t err = rd_kafka_flush(dlq_, 30000);
      if (err) return absl::UnavailableError(absl::StrCat("dead-letter topic ", dead_letter_topic_, ": ", rd_kafka_err2str(err)));
    }
    for (const auto& [p, part] : partitions_) {
      if (part.next >= 0) entries->push_back(absl::StrCat(p, ":", part.next));
    }
    snapshot_ = partitions_;
    return absl::OkStatus();
  }
  bool UnionState() const override { return true; }

  absl::Status NotifyCheckpointComplete(int64_t) override {
    // For monitoring tools only: our checkpoints hold the offsets we resume from.
    rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(snapshot_.size());
    for (const auto& [p, part] : snapshot_) {
      if (part.next >= 0) rd_kafka_topic_partition_list_add(list, topic_.c_str(), p)->offset = part.next;
    }
    if (list->cnt > 0) rd_kafka_commit(rk_, list, 1);
    rd_kafka_topic_partition_list_destroy(list);
    return absl::OkStatus();
  }

  void Close() override {
    if (dlq_ != nullptr) {
      rd_kafka_flush(dlq_, 10000);
      rd_kafka_destroy(dlq_);
      dlq_ = nullptr;
    }
    if (rk_ != nullptr) {
      rd_kafka_consumer_close(rk_);
      rd_kafka_destroy(rk_);
      rk_ = nullptr;
    }
  }

 private:
  struct Partition {
    int32_t id = 0;
    int64_t next = -1;  // next offset to read; -1 unknown (latest/committed before first record)
    int64_t end = 0;    // bounded: stop here
  };

  bool Done() const {
    for (const auto& [p, part] : partitions_) {
      if (part.next < part.end) return false;
    }
    return true;
  }

  absl::Status Decode(const rd_kafka_message_t* m) {
    const Schema& schema = ctx_.spec->output_schema;
    absl::string_view value(static_cast<const char*>(m->payload), m->len);
    if (format_ == "raw") {
      out_.SetString(0, absl::string_view(static_cast<const char*>(m->key), m->key_len));
      out_.SetString(1, value);
      return absl::OkStatus();
    }
    if (format_ == "csv") {
      std::vector<absl::string_view> cols = absl::StrSplit(value, ',');
      if (cols.size() != schema.size()) {
        return absl::InvalidArgumentError(absl::StrCat("expected ", schema.size(), " columns, got ", cols.size()));
      }
      for (size_t i = 0; i < schema.size(); ++i) SLUICE_RETURN_IF_ERROR(SetFromText(i, cols[i]));
      return absl::OkStatus();
    }
    return ReadJsonRecord(value, schema, &out_, &json_);
  }

  absl::Status SetFromText(size_t i, absl::string_view text) {
    const Field& f = ctx_.spec->output_schema.field(i);
    switch (f.type) {
      case FieldType::kInt64:
      case FieldType::kTimestamp: {
        int64_t v;
        if (!absl::SimpleAtoi(text, &v)) return absl::InvalidArgumentError(absl::StrCat("field '", f.name, "': not an integer"));
        out_.SetInt(i, v);
        return absl::OkStatus();
      }
      case FieldType::kDouble: {
        double v;
        if (!absl::SimpleAtod(text, &v)) return absl::InvalidArgumentError(absl::StrCat("field '", f.name, "': not a number"));
        out_.SetDouble(i, v);
        return absl::OkStatus();
      }
      case FieldType::kBool:
        if (text != "true" && text != "false") return absl::InvalidArgumentError(absl::StrCat("field '", f.name, "': not a boolean"));
        out_.SetBool(i, text == "true");
        return absl::OkStatus();
      case FieldType::kString:
        out_.SetString(i, text);
        return absl::OkStatus();
    }
    return absl::OkStatus();
  }

  rd_kafka_t* rk_ = nullptr;
  rd_kafka_t* dlq_ = nullptr;  // dead-letter producer (on_error: dead_letter)
  std::string dead_letter_topic_;
  std::string topic_;
  std::string format_;
  bool bounded_ = false;
  bool skip_bad_ = false;
  int64_t skipped_ = 0;
  std::map<int32_t, Partition> partitions_;
  std::map<int32_t, Partition> snapshot_;
  Record out_;
  JsonRecordReader json_;
};

}  // namespace

std::unique_ptr<ops::Operator> MakeKafkaSource() { return std::make_unique<KafkaSource>(); }

void RegisterConnectorOperators(ops::OperatorRegistry* registry) {
  absl::Status s = registry->Register("kafka", [](const plan::OperatorSpec&) { return MakeKafkaSource(); });
  s.Update(registry->Register("kafka_sink", [](const plan::OperatorSpec& spec) { return MakeKafkaSink(spec); }));
  if (!s.ok()) spdlog::error("registering connectors: {}", s);
}

}  // namespace sluice::connectors
