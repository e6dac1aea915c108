#include "connectors/kafka_source.h"

#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/logging.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/optional.h"
#include "common/status.h"
#include "common/watermark.h"
#include "connectors/json_record_reader.h"
#include "connectors/kafka_client.h"
#include "connectors/kafka_sink.h"
#include "connectors/kafka_sink_options.h"
#include "connectors/kafka_source_options.h"
#include "nlohmann/json.hpp"
#include "operators/watermark_generator.h"
#include "plan/job_spec.h"

namespace sluice::connectors {
namespace {

using PartitionCountFn = std::function<absl::StatusOr<int>()>;
// Partition counts of every topic the source reads, in its order.
using PartitionCountsFn = std::function<absl::StatusOr<std::vector<int>>()>;

constexpr int kMetadataTimeoutMs = 10000;
// Checkpointed offsets: [version 1] "<topic>:<partition>:<next offset>[:<end offset>]".
constexpr int kOffsetsVersion = 1;
// And, with on_error: dead_letter, [version 2] "#dlt:<partition>:<end offset>": where the
// dead-letter topic's partition ended at the checkpoint ('#' is in no Kafka topic name), or
// "#dlt:*" from a subtask that knew no positions (a restore reads the topic from its start).
// Version-2 entries may also be offsets entries; a build that reads only version 1 refuses them.
constexpr int kDeadLetterPositionVersion = 2;
constexpr absl::string_view kDeadLetterPositionPrefix = "#dlt:";
constexpr int kDeadLetterScanTimeoutMs = 60000;

// The number of partitions of `topic` from the brokers' metadata. kNotFound when the topic
// does not exist, kUnavailable when the brokers do not answer.
absl::StatusOr<int> FetchPartitionCount(rd_kafka_t* rk, const std::string& topic) {
  const rd_kafka_metadata_t* md = nullptr;
  rd_kafka_topic_t* t = rd_kafka_topic_new(rk, topic.c_str(), nullptr);
  rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, t, &md, kMetadataTimeoutMs);
  rd_kafka_topic_destroy(t);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return absl::UnavailableError(absl::StrCat("kafka metadata for topic ", topic, ": ", rd_kafka_err2str(err)));
  }
  int partitions = md->topic_cnt == 1 && md->topics[0].err == 0 ? md->topics[0].partition_cnt : 0;
  rd_kafka_metadata_destroy(md);
  if (partitions == 0) return absl::NotFoundError(absl::StrCat("kafka topic ", topic, " does not exist"));
  return partitions;
}

// Counts the topics' partitions off the task thread: a metadata request can take its whole
// timeout when the brokers are away, and the task thread must keep serving checkpoints.
// The task thread calls Request() when discovery is due and TakeResult() on later polls
// (an atomic load while nothing has come). The thread starts in the constructor and is joined
// in the destructor. Thread-safe.
class PartitionCounter {
 public:
  explicit PartitionCounter(PartitionCountsFn count) : count_(std::move(count)) {
    thread_ = std::thread([this] { Loop(); });
  }
  ~PartitionCounter() {
    {
      absl::MutexLock lock(&mu_);
      stop_ = true;
    }
    thread_.join();
  }

  // Asks for a count, unless one is being fetched already.
  void Request() {
    absl::MutexLock lock(&mu_);
    requested_ = true;
  }

  // The answer to a request, once it has come.
  absl::optional<absl::StatusOr<std::vector<int>>> TakeResult() {
    if (!has_result_.load(std::memory_order_acquire)) return absl::nullopt;
    absl::MutexLock lock(&mu_);
    has_result_.store(false);
    absl::optional<absl::StatusOr<std::vector<int>>> r = std::move(result_);
    result_.reset();
    return r;
  }

 private:
  void Loop() {
    while (true) {
      {
        absl::MutexLock lock(&mu_);
        auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return requested_ || stop_; };
        mu_.Await(absl::Condition(&ready));
        if (stop_) return;
        requested_ = false;
      }
      absl::StatusOr<std::vector<int>> r = count_();
      absl::MutexLock lock(&mu_);
      result_ = std::move(r);
      has_result_.store(true, std::memory_order_release);
    }
  }

  const PartitionCountsFn count_;
  absl::Mutex mu_;
  bool requested_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  absl::optional<absl::StatusOr<std::vector<int>>> result_ ABSL_GUARDED_BY(mu_);
  std::atomic<bool> has_result_{false};
  std::thread thread_;
};

class KafkaSource final : public ops::SourceOperator {
 public:
  // `count_for_test`: null for the brokers' metadata.
  explicit KafkaSource(PartitionCountFn count_for_test = nullptr)
      : count_for_test_(std::move(count_for_test)) {}
  ~KafkaSource() override { Close(); }

  absl::Status Open(const ops::OperatorContext& ctx, ops::Output* output) override {
    SLUICE_RETURN_IF_ERROR(SourceOperator::Open(ctx, output));
    SLUICE_ASSIGN_OR_RETURN(const KafkaSourceOptions* o, ops::TypedOptions<KafkaSourceOptions>(ctx));
    topics_ = o->topics;
    format_ = o->format;
    bounded_ = o->bounded;
    skip_bad_ = o->on_error != KafkaSourceOptions::OnError::kFail;
    if (o->on_error == KafkaSourceOptions::OnError::kDeadLetter) dead_letter_topic_ = o->dead_letter_topic;
    const KafkaSourceOptions::Start start = o->start;
    const std::string group = o->group.empty() ? absl::StrCat("sluice-", ctx.job_id) : o->group;
    out_.Resize(ctx.spec->output_schema.size());
    skipped_ = 0;
    dead_letter_positions_.clear();
    dead_letters_from_start_ = false;
    written_dead_letters_.clear();

    // Bounded sources learn from end-of-partition events that a partition is read to its end (a
    // transactional topic ends with a control record, which is never delivered); with an idle
    // timeout, that a partition has nothing left to read, so it may turn idle.
    const bool partition_eof = bounded_ || (o->event_time.has_value() && o->event_time->idle_timeout_ms > 0);
    KafkaSettings settings = {
        {"bootstrap.servers", o->bootstrap},
        {"group.id", group},
        {"log_level", "3"},
        // A checkpointed offset that retention has deleted restarts at the earliest kept
        // record rather than silently skipping to the end (librdkafka's default).
        {"auto.offset.reset", "earliest"}};
    settings.insert(settings.end(), o->properties.begin(), o->properties.end());  // the user's librdkafka consumer settings
    settings.push_back({"enable.auto.commit", "false"});  // offsets live in our checkpoints
    settings.push_back({"enable.partition.eof", partition_eof ? "true" : "false"});
    SLUICE_ASSIGN_OR_RETURN(rk_, NewKafkaClient(RD_KAFKA_CONSUMER, settings, "kafka source"));
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
    if (!dead_letter_topic_.empty()) {
      // The user's properties apply to this producer too (security settings; consumer-only
      // ones are accepted by a producer's configuration and ignored).
      KafkaSettings dlq = {{"bootstrap.servers", o->bootstrap}, {"log_level", "3"}};
      dlq.insert(dlq.end(), o->properties.begin(), o->properties.end());
      SLUICE_ASSIGN_OR_RETURN(dlq_, NewKafkaClient(RD_KAFKA_PRODUCER, dlq, "dead-letter producer"));
    }

    // Event time and discovery.
    const int64_t now = ctx.clock->NowNanos();
    if (o->event_time.has_value()) {
      const plan::EventTimeSpec& et = *o->event_time;
      watermarks_ = std::make_unique<ops::SplitWatermarks>(et.max_out_of_orderness_ms, et.idle_timeout_ms);
      ts_field_ = et.field_index;
      kafka_timestamp_ = et.from_kafka_timestamp;
      watermark_interval_nanos_ = (ctx.job != nullptr ? ctx.job->watermark_interval_ms : 200) * 1'000'000;
      next_watermark_nanos_ = now;  // the first poll says whether the subtask is idle
    }
    decoded_fields_ = ctx.spec->output_schema.size() - (kafka_timestamp_ ? 1 : 0);
    if (!bounded_) {
      discovery_interval_nanos_ = o->partition_discovery_ms * 1'000'000;
      next_discovery_nanos_ = now + discovery_interval_nanos_;
    }

    // Which partitions exist, and which are ours.
    PartitionCountsFn count;
    if (count_for_test_) {
      PartitionCountFn one = count_for_test_;
      count = [one]() -> absl::StatusOr<std::vector<int>> {
        SLUICE_ASSIGN_OR_RETURN(int n, one());
        return std::vector<int>{n};
      };
    } else {
      rd_kafka_t* rk = rk_;
      std::vector<std::string> topics = topics_;
      count = [rk, topics]() -> absl::StatusOr<std::vector<int>> {
        std::vector<int> counts;
        for (const std::string& t : topics) {
          SLUICE_ASSIGN_OR_RETURN(int n, FetchPartitionCount(rk, t));
          counts.push_back(n);
        }
        return counts;
      };
    }
    SLUICE_ASSIGN_OR_RETURN(known_partitions_, count());

    // Entries are [kOffsetsVersion] "<topic>:<partition>:<offset>" (format 0: without the
    // version byte; before sources read several topics "<partition>:<offset>", the first
    // topic). Topics the job no longer reads are dropped. (Bounded sources add ":<end offset>",
    // so a restored job stops where the first run would.) An entry that does not parse fails
    // the restore: resuming from the start position would read records twice or skip them.
    std::map<TopicPartition, std::pair<int64_t, int64_t>> restored;  // -> (next, end or -1)
    for (const std::string& e : ctx.restored_state) {
      absl::string_view body;
      SLUICE_ASSIGN_OR_RETURN(int version, ReadTextStateVersion(ctx.state_origin, "kafka source offsets", e,
                                                                kDeadLetterPositionVersion, &body));
      if (version >= kDeadLetterPositionVersion && absl::ConsumePrefix(&body, kDeadLetterPositionPrefix)) {
        if (body == "*") {
          dead_letters_from_start_ = true;
          continue;
        }
        std::pair<std::string, std::string> pe = absl::StrSplit(body, absl::MaxSplits(':', 1));
        int32_t p;
        int64_t end;
        if (!absl::SimpleAtoi(pe.first, &p) || p < 0 || !absl::SimpleAtoi(pe.second, &end) || end < 0) {
          return ctx.state_origin.DataLoss(absl::StrCat("kafka source entry '", absl::CEscape(e),
                                                        "' is not #dlt:<partition>:<offset>"));
        }
        // Every subtask's entries come back: scan from the smallest.
        auto [it, inserted] = dead_letter_positions_.insert({p, end});
        if (!inserted) it->second = std::min(it->second, end);
        continue;
      }
      std::vector<std::string> parts = absl::StrSplit(body, ':');
      int32_t p;
      int64_t off, end = -1;
      if (parts.size() == 2 && version == 0) parts.insert(parts.begin(), topics_[0]);
      if ((parts.size() != 3 && parts.size() != 4) || parts[0].empty() || !absl::SimpleAtoi(parts[1], &p) ||
          p < 0 || !absl::SimpleAtoi(parts[2], &off) || (parts.size() == 4 && !absl::SimpleAtoi(parts[3], &end))) {
        return ctx.state_origin.DataLoss(absl::StrCat("kafka source offsets entry '", absl::CEscape(e),
                                                      "' is not <topic>:<partition>:<offset>[:<end offset>]"));
      }
      auto t = std::find(topics_.begin(), topics_.end(), parts[0]);
      if (t != topics_.end()) restored[{static_cast<int>(t - topics_.begin()), p}] = {off, end};
    }
    rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(8);
    for (int t = 0; t < static_cast<int>(topics_.size()); ++t) {
      for (int32_t p = 0; p < known_partitions_[t]; ++p) {
        if (!Owns(t, p)) continue;
        int64_t offset = start == KafkaSourceOptions::Start::kLatest ? RD_KAFKA_OFFSET_END
                         : start == KafkaSourceOptions::Start::kCommitted ? RD_KAFKA_OFFSET_STORED
                                                : RD_KAFKA_OFFSET_BEGINNING;
        auto it = restored.find({t, p});
        if (it != restored.end()) {
          offset = it->second.first;
        } else if (ctx.restored && discovery_interval_nanos_ > 0) {
          offset = RD_KAFKA_OFFSET_BEGINNING;  // appeared after the checkpoint: a new partition
        }
        int64_t low = 0, high = 0;
        if (bounded_ || offset == RD_KAFKA_OFFSET_END) {
          err = rd_kafka_query_watermark_offsets(rk_, topics_[t].c_str(), p, &low, &high, kMetadataTimeoutMs);
          if (err) {
            rd_kafka_topic_partition_list_destroy(list);
            return absl::UnavailableError(absl::StrCat("kafka watermarks of ", topics_[t], "/", p, ": ", rd_kafka_err2str(err)));
          }
        }
        // "latest" and "committed" are resolved now: checkpointed as placeholders, they would
        // mean another offset when restored (records in between would be skipped).
        if (offset == RD_KAFKA_OFFSET_END) offset = high;
        if (offset == RD_KAFKA_OFFSET_STORED) {
          SLUICE_ASSIGN_OR_RETURN(offset, CommittedOffset(topics_[t], p));
          if (offset < 0) offset = RD_KAFKA_OFFSET_BEGINNING;  // nothing committed yet: earliest
        }
        rd_kafka_topic_partition_list_add(list, topics_[t].c_str(), p)->offset = offset;
        Partition part;
        part.id = p;
        // Bounded sources compare positions with end offsets, so "earliest" is the low offset.
        part.next = bounded_ && offset == RD_KAFKA_OFFSET_BEGINNING ? low : offset;
        part.end = it != restored.end() && it->second.second >= 0 ? it->second.second : high;
        if (watermarks_ != nullptr) part.split = watermarks_->AddSplit(now);
        partitions_[{t, p}] = part;
      }
    }
    err = rd_kafka_assign(rk_, list);
    rd_kafka_topic_partition_list_destroy(list);
    if (err) return absl::UnavailableError(absl::StrCat("kafka assign: ", rd_kafka_err2str(err)));
    if (discovery_interval_nanos_ > 0) counter_ = std::make_unique<PartitionCounter>(std::move(count));
    if (dlq_ != nullptr && ctx.restored) {
      KafkaSettings scan = {{"bootstrap.servers", o->bootstrap}, {"group.id", group}, {"log_level", "3"}};
      scan.insert(scan.end(), o->properties.begin(), o->properties.end());
      scan.push_back({"enable.auto.commit", "false"});
      SLUICE_RETURN_IF_ERROR(FindWrittenDeadLetters(scan));
    }
    if (ctx.metrics != nullptr) {
      lag_ = ctx.metrics->AddGauge("sluice_kafka_source_lag_records",
                                   "Records between a source subtask's positions and the ends of its partitions",
                                   ctx.metric_labels, ctx.metrics_owner);
    }
    spdlog::info("{}: reading {} partition(s) of {}{}", ctx.task_name, partitions_.size(), absl::StrJoin(topics_, ", "),
                 ctx.restored ? " from checkpointed offsets" : "");
    return absl::OkStatus();
  }

  absl::StatusOr<State> Poll(int max_records, int64_t* wake_at_nanos) override {
    if (bounded_ && Done()) return State::kEnd;
    SLUICE_RETURN_IF_ERROR(Periodic());
    for (int n = 0; n < max_records; ++n) {
      rd_kafka_message_t* m = rd_kafka_consumer_poll(rk_, 0);
      if (m == nullptr) {
        *wake_at_nanos = ctx_.clock->NowNanos() + 5'000'000;
        return bounded_ && Done() ? State::kEnd : State::kWait;
      }
      if (m->err) {
        absl::Status s = ConsumerError(m);
        rd_kafka_message_destroy(m);
        SLUICE_RETURN_IF_ERROR(s);
        continue;
      }
      const int t = TopicIndex(m->rkt);
      auto it = partitions_.find({t, m->partition});
      if (it == partitions_.end()) {
        rd_kafka_message_destroy(m);
        continue;
      }
      absl::Status s = Decode(m);
      const int64_t offset = m->offset;
      it->second.next = offset + 1;
      it->second.at_end = false;
      if (s.ok() && watermarks_ != nullptr && watermarks_->OnEvent(it->second.split, out_.GetInt(ts_field_))) {
        s = output_->EmitWatermarkStatus(false);  // idle until this record
        if (!s.ok()) {
          rd_kafka_message_destroy(m);
          return s;
        }
      }
      if (!s.ok()) {
        std::string where = absl::StrCat("topic ", topics_[t], " partition ", m->partition, " offset ", offset);
        // A failed attempt may have written this record's letter after the restored checkpoint.
        const bool written = !written_dead_letters_.empty() &&
                             written_dead_letters_.erase(std::make_tuple(t, m->partition, offset)) > 0;
        if (dlq_ != nullptr && !written) {
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

  absl::Status SnapshotState(int64_t checkpoint_id, std::vector<std::string>* entries) override {
    if (dlq_ != nullptr) {
      // Dead letters of records before the barrier are in Kafka before the checkpoint counts.
      rd_kafka_resp_err_t err = rd_kafka_flush(dlq_, 30000);
      if (err) return absl::UnavailableError(absl::StrCat("dead-letter topic ", dead_letter_topic_, ": ", rd_kafka_err2str(err)));
      // Letters of records after the barrier come after these positions: a restore looks there
      // for those a failed attempt wrote (FindWrittenDeadLetters). Taken at every checkpoint,
      // also by a subtask that wrote none since: a restore scans from the smallest position of
      // all subtasks, so a quiet subtask's old positions would make every restore read all the
      // letters written since (and, past kDeadLetterScanTimeoutMs, fail). Costs one metadata
      // query and one end-offset query per dead-letter partition, on the task thread.
      UpdateDeadLetterPositions();
      if (dead_letter_positions_.empty()) {
        entries->push_back(absl::StrCat(std::string(1, static_cast<char>(kDeadLetterPositionVersion)),
                                        kDeadLetterPositionPrefix, "*"));
      }
      for (const auto& [p, end] : dead_letter_positions_) {
        std::string entry(1, static_cast<char>(kDeadLetterPositionVersion));
        absl::StrAppend(&entry, kDeadLetterPositionPrefix, p, ":", end);
        entries->push_back(std::move(entry));
      }
    }
    // Every partition, also those not read yet: their logical start offset (earliest, latest,
    // committed) is resolved again on restore, and a restored source can tell partitions it
    // knew from those that appeared since.
    std::map<TopicPartition, int64_t>& offsets = snapshots_[checkpoint_id];
    for (const auto& [tp, part] : partitions_) {
      std::string entry(1, static_cast<char>(kOffsetsVersion));
      absl::StrAppend(&entry, topics_[tp.first], ":", tp.second, ":", part.next);
      if (bounded_) absl::StrAppend(&entry, ":", part.end);
      entries->push_back(std::move(entry));
      offsets[tp] = part.next;
    }
    return absl::OkStatus();
  }
  bool UnionState() const override { return true; }

  // Every partition read to its end (see Partition::at_end).
  bool ReadToEndForTest() const {
    for (const auto& [tp, part] : partitions_) {
      if (!part.at_end) return false;
    }
    return true;
  }

  int64_t FetchedLagForTest() const { return FetchedLag(); }

  // Bounded: event time ends with the input.
  absl::Status Finish() override {
    if (watermarks_ == nullptr) return absl::OkStatus();
    return output_->EmitWatermark(kMaxWatermark);
  }

  absl::Status NotifyCheckpointComplete(int64_t checkpoint_id) override {
    // For monitoring tools (and start: committed) only: our checkpoints hold the offsets we
    // resume from. The offsets of that checkpoint, not of a later one still in flight.
    auto it = snapshots_.find(checkpoint_id);
    if (it != snapshots_.end()) {
      rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(static_cast<int>(it->second.size()));
      for (const auto& [tp, next] : it->second) {
        if (next >= 0) rd_kafka_topic_partition_list_add(list, topics_[tp.first].c_str(), tp.second)->offset = next;
      }
      if (list->cnt > 0) rd_kafka_commit(rk_, list, 1);
      rd_kafka_topic_partition_list_destroy(list);
    }
    snapshots_.erase(snapshots_.begin(), snapshots_.upper_bound(checkpoint_id));
    return absl::OkStatus();
  }

  void Close() override {
    counter_.reset();  // joins the discovery thread, which uses rk_
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
  using TopicPartition = std::pair<int, int32_t>;  // (index in topics_, partition)
  struct Partition {
    int32_t id = 0;
    // Next offset to read, or before the first record a logical offset (RD_KAFKA_OFFSET_
    // BEGINNING, _END or _STORED) as assigned.
    int64_t next = RD_KAFKA_OFFSET_END;
    int64_t end = 0;  // bounded: stop here
    int split = -1;   // index in watermarks_
    // Read to the end: an end-of-partition event came after its last record read (only with
    // enable.partition.eof). Until the first one the partition may have records to read.
    bool at_end = false;
  };

  // Once per poll: periodic watermarks, partition discovery and the lag gauge, when due.
  absl::Status Periodic() {
    const int64_t now = ctx_.clock->NowNanos();
    if (lag_ != nullptr && now >= next_lag_nanos_) {
      lag_->Set(static_cast<double>(FetchedLag()));
      next_lag_nanos_ = now + 1'000'000'000;
    }
    if (counter_ != nullptr) {
      if (now >= next_discovery_nanos_) {
        counter_->Request();
        next_discovery_nanos_ = now + discovery_interval_nanos_;
      }
      if (absl::optional<absl::StatusOr<std::vector<int>>> count = counter_->TakeResult()) {
        SLUICE_RETURN_IF_ERROR(AddPartitions(*count, now));
      }
    }
    if (watermarks_ != nullptr && now >= next_watermark_nanos_) {
      // A partition not read to its end has records to read (or may have: not fetched yet),
      // however long since its last one: it is not idle (a slow first fetch, backpressure), and
      // an idle one wakes. An end-of-partition event says only that nothing followed it when it
      // was taken: records fetched since (the cached high watermark is past the position) wait
      // in librdkafka's queue behind a poll that has not come yet (a backpressured task).
      // With isolation.level=read_committed the high watermark, not the last stable offset,
      // counts: a partition with an open transaction does not turn idle until it ends.
      for (auto& [tp, part] : partitions_) {
        if (part.at_end && Lag(tp, part) > 0) part.at_end = false;
        if (!part.at_end) watermarks_->OnBacklog(part.split);
      }
      SLUICE_RETURN_IF_ERROR(watermarks_->OnPeriodic(now, output_));
      next_watermark_nanos_ = now + watermark_interval_nanos_;
    }
    return absl::OkStatus();
  }

  // Records between a partition's position and the high watermark librdkafka caches from its
  // fetches (no request); 0 before its first record or fetch.
  int64_t Lag(const TopicPartition& tp, const Partition& part) const {
    int64_t low = 0, high = 0;
    if (part.next < 0 ||
        rd_kafka_get_watermark_offsets(rk_, topics_[tp.first].c_str(), tp.second, &low, &high) != 0 ||
        high <= part.next) {
      return 0;
    }
    return high - part.next;
  }
  // Records behind the partitions' ends, from the cached high watermarks: Kafka's consumer lag.
  int64_t FetchedLag() const {
    int64_t lag = 0;
    for (const auto& [tp, part] : partitions_) lag += Lag(tp, part);
    return lag;
  }

  // Discovery found `counts` partitions per topic: reads ours among the new ones from the
  // earliest offset.
  absl::Status AddPartitions(const absl::StatusOr<std::vector<int>>& counts, int64_t now) {
    if (!counts.ok()) {
      // The next discovery tries again; reading the known partitions goes on meanwhile.
      spdlog::warn("{}: partition discovery: {}", ctx_.task_name, counts.status());
      return absl::OkStatus();
    }
    rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(8);
    for (int t = 0; t < static_cast<int>(topics_.size()) && t < static_cast<int>(counts->size()); ++t) {
      const int count = (*counts)[t];
      if (count <= known_partitions_[t]) continue;  // Kafka never removes partitions
      const int before = list->cnt;
      for (int32_t p = known_partitions_[t]; p < count; ++p) {
        if (!Owns(t, p) || partitions_.count({t, p})) continue;
        rd_kafka_topic_partition_list_add(list, topics_[t].c_str(), p)->offset = RD_KAFKA_OFFSET_BEGINNING;
        Partition part;
        part.id = p;
        part.next = RD_KAFKA_OFFSET_BEGINNING;
        if (watermarks_ != nullptr) part.split = watermarks_->AddSplit(now);
        partitions_[{t, p}] = part;
      }
      spdlog::info("{}: topic {} has {} partitions (was {}); reading {} new one(s) from the earliest offset",
                   ctx_.task_name, topics_[t], count, known_partitions_[t], list->cnt - before);
      known_partitions_[t] = count;
    }
    rd_kafka_error_t* error = list->cnt > 0 ? rd_kafka_incremental_assign(rk_, list) : nullptr;
    rd_kafka_topic_partition_list_destroy(list);
    return KafkaErrorStatus(error, "kafka assign of new partitions");
  }

  // Sets dead_letter_positions_ to the dead-letter topic's end offsets. On failure (the topic
  // does not exist yet, the brokers do not answer) the positions stay as they were, lower or
  // none: a restore then scans more of the topic (from its start without positions), which is
  // slower, never wrong.
  void UpdateDeadLetterPositions() {
    absl::StatusOr<int> count = FetchPartitionCount(dlq_, dead_letter_topic_);
    if (!count.ok()) {
      // A topic that does not exist yet (made by the first letter) is no news at every checkpoint.
      if (!absl::IsNotFound(count.status())) {
        spdlog::warn("{}: dead-letter topic positions: {}", ctx_.task_name, count.status());
      }
      return;
    }
    std::map<int32_t, int64_t> positions;
    for (int32_t p = 0; p < *count; ++p) {
      int64_t low = 0, high = 0;
      rd_kafka_resp_err_t err = rd_kafka_query_watermark_offsets(dlq_, dead_letter_topic_.c_str(), p, &low, &high,
                                                                 kMetadataTimeoutMs);
      if (err) {
        spdlog::warn("{}: dead-letter topic {}/{} end offset: {}", ctx_.task_name, dead_letter_topic_, p,
                     rd_kafka_err2str(err));
        return;
      }
      positions[p] = high;
    }
    dead_letter_positions_ = std::move(positions);
  }

  // Restored with on_error: dead_letter: reads the dead-letter topic from the checkpoint's
  // positions (from its start for partitions without one) to its current end and keeps, in
  // written_dead_letters_, the origins (sluice.origin header) of letters for records this
  // subtask will read again: its partitions, at or after the restored offsets. Those letters
  // were written after the checkpoint by the attempt that failed; Poll does not write them again.
  // kUnavailable when the topic cannot be read to its end within kDeadLetterScanTimeoutMs.
  absl::Status FindWrittenDeadLetters(const KafkaSettings& settings) {
    absl::StatusOr<int> count = FetchPartitionCount(rk_, dead_letter_topic_);
    if (absl::IsNotFound(count.status())) return absl::OkStatus();  // no letter written yet
    SLUICE_RETURN_IF_ERROR(count.status());
    SLUICE_ASSIGN_OR_RETURN(rd_kafka_t* scan, NewKafkaClient(RD_KAFKA_CONSUMER, settings, "dead-letter topic reader"));
    struct Destroy {
      rd_kafka_t* rk;
      ~Destroy() {
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
      }
    } destroy{scan};
    std::map<int32_t, int64_t> ends;  // partitions still to read -> end offset
    rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(*count);
    for (int32_t p = 0; p < *count; ++p) {
      int64_t low = 0, high = 0;
      rd_kafka_resp_err_t err = rd_kafka_query_watermark_offsets(scan, dead_letter_topic_.c_str(), p, &low, &high,
                                                                 kMetadataTimeoutMs);
      if (err) {
        rd_kafka_topic_partition_list_destroy(list);
        return absl::UnavailableError(absl::StrCat("dead-letter topic ", dead_letter_topic_, "/", p, " end offset: ",
                                                   rd_kafka_err2str(err)));
      }
      auto pos = dead_letter_positions_.find(p);
      const bool known = !dead_letters_from_start_ && pos != dead_letter_positions_.end();
      const int64_t from = std::max(low, known ? pos->second : low);
      if (from >= high) continue;
      rd_kafka_topic_partition_list_add(list, dead_letter_topic_.c_str(), p)->offset = from;
      ends[p] = high;
    }
    rd_kafka_resp_err_t err = ends.empty() ? RD_KAFKA_RESP_ERR_NO_ERROR : rd_kafka_assign(scan, list);
    rd_kafka_topic_partition_list_destroy(list);
    if (err) return absl::UnavailableError(absl::StrCat("dead-letter topic assign: ", rd_kafka_err2str(err)));
    int64_t letters = 0;
    const int64_t deadline = ctx_.clock->NowNanos() + int64_t{kDeadLetterScanTimeoutMs} * 1'000'000;
    while (!ends.empty()) {
      if (ctx_.clock->NowNanos() > deadline) {
        return absl::UnavailableError(absl::StrCat("dead-letter topic ", dead_letter_topic_, ": not read to its end in ",
                                                   kDeadLetterScanTimeoutMs / 1000, " s"));
      }
      rd_kafka_message_t* m = rd_kafka_consumer_poll(scan, 100);
      if (m == nullptr) continue;
      if (m->err) {
        std::string error = rd_kafka_message_errstr(m);
        const bool transient = m->err == RD_KAFKA_RESP_ERR__TRANSPORT || m->err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN ||
                               m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF;
        rd_kafka_message_destroy(m);
        if (transient) continue;
        return absl::UnavailableError(absl::StrCat("dead-letter topic ", dead_letter_topic_, ": ", error));
      }
      NoteWrittenDeadLetter(m);
      auto end = ends.find(m->partition);
      if (end != ends.end() && m->offset + 1 >= end->second) ends.erase(end);
      rd_kafka_message_destroy(m);
      ++letters;
    }
    spdlog::info("{}: read {} dead letter(s) written since the checkpoint; {} are of records read again here",
                 ctx_.task_name, letters, written_dead_letters_.size());
    return absl::OkStatus();
  }

  // Adds a dead letter's origin to written_dead_letters_ when it is a record this subtask reads
  // again. Letters without a sluice.origin this source writes are ignored.
  void NoteWrittenDeadLetter(const rd_kafka_message_t* m) {
    rd_kafka_headers_t* headers = nullptr;
    const void* value = nullptr;
    size_t size = 0;
    if (rd_kafka_message_headers(m, &headers) != RD_KAFKA_RESP_ERR_NO_ERROR ||
        rd_kafka_header_get_last(headers, "sluice.origin", &value, &size) != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return;
    }
    // "topic <topic> partition <p> offset <o>", as Poll writes it.
    std::vector<absl::string_view> words = absl::StrSplit(absl::string_view(static_cast<const char*>(value), size), ' ');
    int32_t p;
    int64_t offset;
    if (words.size() != 6 || words[0] != "topic" || words[2] != "partition" || words[4] != "offset" ||
        !absl::SimpleAtoi(words[3], &p) || !absl::SimpleAtoi(words[5], &offset)) {
      return;
    }
    const int t = static_cast<int>(std::find(topics_.begin(), topics_.end(), words[1]) - topics_.begin());
    auto it = partitions_.find({t, p});
    if (it == partitions_.end() || offset < std::max<int64_t>(it->second.next, 0)) return;
    written_dead_letters_.insert(std::make_tuple(t, p, offset));
  }

  // An error event from the consumer. End of a partition (bounded sources): that partition is
  // read to its end. Transient broker trouble: librdkafka retries, so it is logged (rate
  // limited) and reading goes on. Anything else fails the task.
  absl::Status ConsumerError(const rd_kafka_message_t* m) {
    const std::string topic = m->rkt != nullptr ? rd_kafka_topic_name(m->rkt) : "(all topics)";
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      const int t = m->rkt != nullptr ? TopicIndex(m->rkt) : -1;
      auto it = partitions_.find({t, m->partition});
      if (it != partitions_.end()) {
        if (m->offset > it->second.next) it->second.next = m->offset;
        it->second.at_end = true;
      }
      return absl::OkStatus();
    }
    char fatal[256];
    if (rd_kafka_fatal_error(rk_, fatal, sizeof(fatal)) != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return absl::FailedPreconditionError(absl::StrCat("kafka consumer: ", fatal, " (fatal)"));
    }
    switch (m->err) {
      case RD_KAFKA_RESP_ERR__TRANSPORT:
      case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
      case RD_KAFKA_RESP_ERR__TIMED_OUT:
      case RD_KAFKA_RESP_ERR__RESOLVE:
      case RD_KAFKA_RESP_ERR__MAX_POLL_EXCEEDED:
      case RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE:
      case RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION:
      case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
        if (++transient_errors_ <= 10 || transient_errors_ % 100 == 0) {
          spdlog::warn("{}: kafka topic {}: {} (retrying; {} such errors so far)", ctx_.task_name, topic,
                       rd_kafka_message_errstr(m), transient_errors_);
        }
        return absl::OkStatus();
      default:
        return absl::UnavailableError(absl::StrCat("kafka topic ", topic, ": ", rd_kafka_message_errstr(m)));
    }
  }

  // The consumer group's committed offset of a partition (start: committed), or < 0 if none.
  absl::StatusOr<int64_t> CommittedOffset(const std::string& topic, int32_t p) {
    rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(list, topic.c_str(), p);
    rd_kafka_resp_err_t err = rd_kafka_committed(rk_, list, kMetadataTimeoutMs);
    if (!err) err = list->elems[0].err;
    const int64_t offset = list->elems[0].offset;
    rd_kafka_topic_partition_list_destroy(list);
    if (err) return absl::UnavailableError(absl::StrCat("committed offset of ", topic, "/", p, ": ", rd_kafka_err2str(err)));
    return offset;
  }

  // Partition p of topic t goes to subtask (t + p) % parallelism: with one topic, p % parallelism;
  // several topics start at different subtasks, so small topics do not all land on subtask 0.
  bool Owns(int t, int32_t p) const { return (t + p) % ctx_.parallelism == ctx_.subtask; }

  // The index of a message's topic (a pointer compare once the handle has been seen).
  int TopicIndex(rd_kafka_topic_t* rkt) {
    if (topics_.size() == 1) return 0;
    for (const auto& [handle, index] : topic_handles_) {
      if (handle == rkt) return index;
    }
    const char* name = rd_kafka_topic_name(rkt);
    int index = static_cast<int>(std::find(topics_.begin(), topics_.end(), name) - topics_.begin());
    if (index == static_cast<int>(topics_.size())) index = -1;
    topic_handles_.push_back({rkt, index});
    return index;
  }

  bool Done() const {
    for (const auto& [p, part] : partitions_) {
      if (part.next < part.end) return false;
    }
    return true;
  }

  absl::Status Decode(const rd_kafka_message_t* m) {
    if (kafka_timestamp_) {
      const int64_t ts = rd_kafka_message_timestamp(m, nullptr);
      if (ts < 0) return absl::InvalidArgumentError("the message has no timestamp");
      out_.SetInt(ts_field_, ts);
    }
    const Schema& schema = ctx_.spec->output_schema;
    absl::string_view value(static_cast<const char*>(m->payload), m->len);
    if (format_ == Format::kRaw) {
      out_.SetString(0, absl::string_view(static_cast<const char*>(m->key), m->key_len));
      out_.SetString(1, value);
      return absl::OkStatus();
    }
    if (format_ == Format::kCsv) {
      columns_.clear();
      for (absl::string_view col : absl::StrSplit(value, ',')) columns_.push_back(col);
      if (columns_.size() != decoded_fields_) {
        return absl::InvalidArgumentError(absl::StrCat("expected ", decoded_fields_, " columns, got ", columns_.size()));
      }
      for (size_t i = 0; i < decoded_fields_; ++i) SLUICE_RETURN_IF_ERROR(SetFromText(i, columns_[i]));
      return absl::OkStatus();
    }
    return ReadJsonRecord(value, schema, decoded_fields_, &out_, &json_);
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
  // The dead-letter topic's end offsets per partition as of the last checkpoint (or restored).
  std::map<int32_t, int64_t> dead_letter_positions_;
  bool dead_letters_from_start_ = false;  // restored: a subtask knew no positions
  // (topic index, partition, offset) of records read again after a restore whose dead letter
  // the failed attempt wrote; each is skipped once.
  std::set<std::tuple<int, int32_t, int64_t>> written_dead_letters_;
  std::vector<std::string> topics_;
  std::vector<std::pair<rd_kafka_topic_t*, int>> topic_handles_;  // message topic -> index
  using Format = KafkaSourceOptions::Format;
  Format format_ = Format::kJson;  // decided once, compared per record
  bool bounded_ = false;
  bool skip_bad_ = false;
  int64_t skipped_ = 0;
  std::map<TopicPartition, Partition> partitions_;
  std::map<int64_t, std::map<TopicPartition, int64_t>> snapshots_;  // checkpoint -> offsets
  Record out_;
  JsonRecordReader json_;
  size_t decoded_fields_ = 0;  // fields read from the message (all but a kafka_timestamp one)
  // Event time (watermarks_ null without `event_time`).
  std::unique_ptr<ops::SplitWatermarks> watermarks_;
  int ts_field_ = -1;
  bool kafka_timestamp_ = false;
  int64_t watermark_interval_nanos_ = 0;
  int64_t next_watermark_nanos_ = 0;
  // Partition discovery (counter_ null when off).
  const PartitionCountFn count_for_test_;
  std::vector<int> known_partitions_;  // per topic
  int64_t discovery_interval_nanos_ = 0;
  int64_t next_discovery_nanos_ = 0;
  std::unique_ptr<PartitionCounter> counter_;
  std::shared_ptr<Gauge> lag_;  // null without a metrics registry
  int64_t transient_errors_ = 0;
  std::vector<absl::string_view> columns_;  // csv: reused per record
  int64_t next_lag_nanos_ = 0;
};

}  // namespace

std::unique_ptr<ops::Operator> MakeKafkaSource() { return std::make_unique<KafkaSource>(); }

std::unique_ptr<ops::Operator> MakeKafkaSourceForTest(std::function<absl::StatusOr<int>()> partition_count) {
  return std::make_unique<KafkaSource>(std::move(partition_count));
}

bool KafkaSourceReadToEndForTest(const ops::Operator& source) {
  return static_cast<const KafkaSource&>(source).ReadToEndForTest();
}

int64_t KafkaSourceFetchedLagForTest(const ops::Operator& source) {
  return static_cast<const KafkaSource&>(source).FetchedLagForTest();
}

absl::Status RegisterConnectorOperators(ops::OperatorRegistry* registry) {
  SLUICE_RETURN_IF_ERROR(registry->Register(MakeKafkaSourceType(), [](const plan::OperatorSpec&) {
    return MakeKafkaSource();
  }));
  return registry->Register(MakeKafkaSinkType(),
                            [](const plan::OperatorSpec& spec) { return MakeKafkaSink(spec); });
}

}  // namespace sluice::connectors
