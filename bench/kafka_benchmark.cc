// Kafka in, Kafka out, on the embedded endpoint (sluice-kafka, librdkafka's mock cluster), in
// one run:
// 1. Baseline: a plain librdkafka producer writes N JSON records into an input topic, and a
//    plain librdkafka consumer (partitions assigned, no group join) reads them back.
// 2. Throughput: a bounded job reads that topic with the `kafka` source, counts and sums per
//    user (key_by + aggregate, checkpoints every second) and writes every update with
//    `kafka_sink`, at_least_once and then exactly_once; compared with the raw consume rate.
// 3. Latency: an unbounded job kafka -> filter -> kafka_sink (at_least_once, small linger)
//    while this process produces records carrying their send time at a fixed rate and reads
//    the output topic; beside it, plain consumers read the input topic directly (the same hop
//    without Sluice), one with librdkafka's default fetch wait and one with 1 ms, as the job's
//    source is configured here (`properties: {fetch.wait.max.ms: "1"}`).
// Every topic's record count is checked against what was written (the mock keeps at most
// 5 MiB or 100,000 batches per partition and silently drops older data).
//
// The mock shapes the figures: a fetch that finds no data is answered only after the
// consumer's fetch.wait.max.ms (500 by default; the latency job sets 1 ms) even if data
// arrives meanwhile; a fetch returns at most one batch per partition; and finding a batch scans
// the partition's batches from the oldest. Small batches (a small linger over many partitions)
// make it the bottleneck; see bench/README.md.
//
//   build/bin/kafka_benchmark [--records N] [--partitions P] [--reps R] [--rate R] [--duration S]
//                             [--latency-partitions P] [--linger-ms L] [--no-exactly-once]
//                             [--no-latency]

#include <librdkafka/rdkafka.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "bench/bench_util.h"
#include "cli/client.h"
#include "cli/local_cluster.h"

namespace {

using sluice::bench::CpuSeconds;
using sluice::bench::Median;
using Clock = std::chrono::steady_clock;

constexpr int kPartitionMaxBytes = 5 * 1024 * 1024;  // the mock's per-partition retention

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

// CPU seconds of this process (all threads, librdkafka's included).
double SelfCpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

int64_t WallMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

double SumCpu(const std::vector<pid_t>& pids) {
  double s = 0;
  for (pid_t p : pids) s += CpuSeconds(p);
  return s;
}

struct RdKafkaDeleter {
  void operator()(rd_kafka_t* rk) const { rd_kafka_destroy(rk); }
};
using RdKafka = std::unique_ptr<rd_kafka_t, RdKafkaDeleter>;

absl::StatusOr<RdKafka> NewClient(rd_kafka_type_t type,
                                  const std::map<std::string, std::string>& settings) {
  char errstr[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  for (const auto& [k, v] : settings) {
    if (rd_kafka_conf_set(conf, k.c_str(), v.c_str(), errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) {
      rd_kafka_conf_destroy(conf);
      return absl::InvalidArgumentError(absl::StrCat(k, ": ", errstr));
    }
  }
  rd_kafka_t* rk = rd_kafka_new(type, conf, errstr, sizeof(errstr));
  if (rk == nullptr) return absl::UnavailableError(errstr);
  return RdKafka(rk);
}

// A consumer with every partition of `topic` assigned from the beginning (no group join). The
// settings are those of the kafka source (connectors/kafka_source.cc) plus `extra`.
absl::StatusOr<RdKafka> NewAssignedConsumer(const std::string& bootstrap, const std::string& topic,
                                            int partitions,
                                            std::map<std::string, std::string> extra) {
  extra["bootstrap.servers"] = bootstrap;
  extra["group.id"] = absl::StrCat("kafka-benchmark-", topic);
  extra["enable.auto.commit"] = "false";
  extra["enable.partition.eof"] = "false";
  extra["log_level"] = "3";
  auto c = NewClient(RD_KAFKA_CONSUMER, extra);
  if (!c.ok()) return c.status();
  // Learn the leaders first, as the source does: a partition assigned before its leader is known
  // waits a fixed 500 ms backoff in librdkafka 2.0.2 before its offset is looked up.
  const rd_kafka_metadata_t* md = nullptr;
  rd_kafka_topic_t* t = rd_kafka_topic_new(c->get(), topic.c_str(), nullptr);
  rd_kafka_resp_err_t merr = rd_kafka_metadata(c->get(), 0, t, &md, 10000);
  rd_kafka_topic_destroy(t);
  if (merr) {
    return absl::UnavailableError(
        absl::StrCat("metadata of ", topic, ": ", rd_kafka_err2str(merr)));
  }
  rd_kafka_metadata_destroy(md);
  rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(partitions);
  for (int p = 0; p < partitions; ++p) {
    rd_kafka_topic_partition_list_add(list, topic.c_str(), p)->offset = RD_KAFKA_OFFSET_BEGINNING;
  }
  rd_kafka_resp_err_t err = rd_kafka_assign(c->get(), list);
  rd_kafka_topic_partition_list_destroy(list);
  if (err) {
    return absl::UnavailableError(absl::StrCat("assign ", topic, ": ", rd_kafka_err2str(err)));
  }
  return c;
}

// What the endpoint holds for a topic: records = sum of the high watermarks; dropped = some
// partition's low watermark moved off 0 (the mock discarded old batches to stay in its limits).
struct TopicCount {
  int64_t records = 0;
  bool dropped = false;
};

absl::StatusOr<TopicCount> CountTopic(rd_kafka_t* rk, const std::string& topic, int partitions) {
  TopicCount c;
  for (int p = 0; p < partitions; ++p) {
    int64_t low = 0, high = 0;
    rd_kafka_resp_err_t err =
        rd_kafka_query_watermark_offsets(rk, topic.c_str(), p, &low, &high, 10000);
    if (err) {
      return absl::UnavailableError(
          absl::StrCat("watermarks of ", topic, "/", p, ": ", rd_kafka_err2str(err)));
    }
    c.records += high;
    c.dropped |= low > 0;
  }
  return c;
}

// Record i of the input: {"user": <6 digits>, "amount": <up to 6 digits>}, 30-35 bytes.
int InputRecord(int64_t i, int64_t keys, char* buf, size_t size) {
  return std::snprintf(buf, size, "{\"user\": %lld, \"amount\": %lld}",
                       static_cast<long long>(100000 + (i * 7919) % keys),
                       static_cast<long long>((i * 104729) % 1000000));
}

// Hands one message to librdkafka, serving delivery reports while its queue is full.
// (As the sink does: rd_kafka_produce on a topic handle.)
absl::Status Produce(rd_kafka_t* rk, rd_kafka_topic_t* rkt, int32_t partition, const char* value,
                     size_t len) {
  for (;;) {
    if (rd_kafka_produce(rkt, partition, RD_KAFKA_MSG_F_COPY, const_cast<char*>(value), len,
                         nullptr, 0, nullptr) == 0) {
      return absl::OkStatus();
    }
    rd_kafka_resp_err_t err = rd_kafka_last_error();
    if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
      return absl::UnavailableError(
          absl::StrCat(rd_kafka_topic_name(rkt), ": ", rd_kafka_err2str(err)));
    }
    rd_kafka_poll(rk, 1);
  }
}

struct RdKafkaTopicDeleter {
  void operator()(rd_kafka_topic_t* rkt) const { rd_kafka_topic_destroy(rkt); }
};
using RdKafkaTopic = std::unique_ptr<rd_kafka_topic_t, RdKafkaTopicDeleter>;

void CountFailures(rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) {
  if (m->err) static_cast<std::atomic<int64_t>*>(opaque)->fetch_add(1);
}

absl::StatusOr<RdKafka> NewProducer(const std::string& bootstrap, std::atomic<int64_t>* failures,
                                    std::map<std::string, std::string> extra = {}) {
  char errstr[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  extra["bootstrap.servers"] = bootstrap;
  extra["log_level"] = "3";
  for (const auto& [k, v] : extra) {
    if (rd_kafka_conf_set(conf, k.c_str(), v.c_str(), errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) {
      rd_kafka_conf_destroy(conf);
      return absl::InvalidArgumentError(absl::StrCat(k, ": ", errstr));
    }
  }
  rd_kafka_conf_set_opaque(conf, failures);
  rd_kafka_conf_set_dr_msg_cb(conf, &CountFailures);
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
  if (rk == nullptr) return absl::UnavailableError(errstr);
  return RdKafka(rk);
}

struct RawRun {
  double seconds = 0;
  double client_cpu = 0;
  double broker_cpu = 0;
  int64_t records = 0;
  int64_t bytes = 0;
};

// Baseline 1: produces `records` input records round-robin over the partitions with librdkafka's
// default producer settings, until all are acknowledged.
absl::StatusOr<RawRun> RawProduce(const std::string& bootstrap, const std::string& topic,
                                  int partitions, int64_t records, int64_t keys, pid_t broker) {
  std::atomic<int64_t> failures{0};
  auto producer = NewProducer(bootstrap, &failures);
  if (!producer.ok()) return producer.status();
  RdKafkaTopic rkt(rd_kafka_topic_new(producer->get(), topic.c_str(), nullptr));
  RawRun run;
  char buf[128];
  const double cpu0 = SelfCpuSeconds(), broker0 = CpuSeconds(broker);
  const auto t0 = Clock::now();
  for (int64_t i = 0; i < records; ++i) {
    int len = InputRecord(i, keys, buf, sizeof(buf));
    run.bytes += len;
    absl::Status s =
        Produce(producer->get(), rkt.get(), static_cast<int32_t>(i % partitions), buf, len);
    if (!s.ok()) return s;
    if ((i & 1023) == 0) rd_kafka_poll(producer->get(), 0);
  }
  if (rd_kafka_resp_err_t err = rd_kafka_flush(producer->get(), 60000)) {
    return absl::DeadlineExceededError(absl::StrCat("flush: ", rd_kafka_err2str(err)));
  }
  run.seconds = Seconds(t0);
  run.client_cpu = SelfCpuSeconds() - cpu0;
  run.broker_cpu = CpuSeconds(broker) - broker0;
  if (failures > 0) {
    return absl::UnavailableError(absl::StrCat(failures.load(), " deliveries failed"));
  }
  run.records = records;
  return run;
}

// Baseline 2: reads `expected` records back with rd_kafka_consumer_poll, as the source does.
absl::StatusOr<RawRun> RawConsume(const std::string& bootstrap, const std::string& topic,
                                  int partitions, int64_t expected, pid_t broker) {
  const double cpu0 = SelfCpuSeconds(), broker0 = CpuSeconds(broker);
  const auto t0 = Clock::now();
  auto consumer = NewAssignedConsumer(bootstrap, topic, partitions, {});
  if (!consumer.ok()) return consumer.status();
  RawRun run;
  auto last_progress = Clock::now();
  while (run.records < expected && Clock::now() - last_progress < std::chrono::seconds(10)) {
    rd_kafka_message_t* m = rd_kafka_consumer_poll(consumer->get(), 100);
    if (m == nullptr) continue;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      ++run.records;
      run.bytes += m->len;
      last_progress = Clock::now();
    }
    rd_kafka_message_destroy(m);
  }
  run.seconds = Seconds(t0);
  run.client_cpu = SelfCpuSeconds() - cpu0;
  run.broker_cpu = CpuSeconds(broker) - broker0;
  rd_kafka_consumer_close(consumer->get());
  return run;
}

// Waits until job `id` ends; past `timeout` it cancels the job, and a minute later gives up
// (returns the last state seen). Sets *running_at when the job is first seen past CREATED.
sluice::proto::JobInfo WaitEnd(sluice::cli::CoordinatorClient& c, const std::string& id,
                               Clock::time_point* running_at, std::chrono::seconds timeout) {
  const auto deadline = Clock::now() + timeout;
  bool cancelled = false;
  sluice::proto::JobInfo last;
  while (true) {
    auto j = c.GetJob(id);
    if (j.ok()) {
      if (running_at != nullptr && *running_at == Clock::time_point() &&
          j->state() != sluice::proto::JOB_CREATED) {
        *running_at = Clock::now();
      }
      last = *j;
      if (j->state() == sluice::proto::JOB_FINISHED || j->state() == sluice::proto::JOB_FAILED ||
          j->state() == sluice::proto::JOB_CANCELLED) {
        return last;
      }
    }
    if (!cancelled && Clock::now() > deadline) {
      std::printf("job %s did not end in %lld s; cancelling\n", id.c_str(),
                  static_cast<long long>(timeout.count()));
      (void)c.Cancel(id);
      cancelled = true;
    }
    if (cancelled && Clock::now() > deadline + std::chrono::seconds(60)) {
      std::printf("job %s did not end after cancel; giving up on it\n", id.c_str());
      return last;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

const sluice::proto::OperatorInfo* FindOperator(const sluice::proto::JobInfo& j,
                                                const std::string& id) {
  for (const auto& v : j.vertices()) {
    for (const auto& o : v.operators()) {
      if (o.id() == id) return &o;
    }
  }
  return nullptr;
}

std::string SourceSpec(const std::string& bootstrap, const std::string& topic, bool bounded,
                       const std::string& fields, const std::string& properties = "") {
  return absl::StrCat(R"(
  - id: events
    type: kafka
    bootstrap: ")",
                      bootstrap, R"("
    topic: )",
                      topic, R"(
    format: json
    start: earliest
    bounded: )",
                      bounded ? "true" : "false", R"(
    fields: )",
                      fields, properties.empty() ? "" : "\n    properties: ", properties);
}

std::string ThroughputJob(const std::string& name, const std::string& bootstrap,
                          const std::string& in, const std::string& out,
                          const std::string& guarantee) {
  return absl::StrCat(
      "name: ", name, "\nparallelism: 2\ncheckpoint: {interval: 1s}\noperators:",
      SourceSpec(bootstrap, in, true, "[{name: user, type: int64}, {name: amount, type: int64}]"),
      R"(
  - {id: by_user, type: key_by, key: [user]}
  - {id: totals, type: aggregate, aggregates: [{fn: count, as: n}, {fn: sum, field: amount, as: total}]}
  - id: out
    type: kafka_sink
    bootstrap: ")",
      bootstrap, R"("
    topic: )",
      out, R"(
    format: json
    key: [user]
    guarantee: )",
      guarantee, "\n");
}

std::string LatencyJob(const std::string& name, const std::string& bootstrap, const std::string& in,
                       const std::string& out, int linger_ms) {
  return absl::StrCat(
      "name: ", name, "\nparallelism: 2\ncheckpoint: {interval: 1s}\noperators:",
      SourceSpec(
          bootstrap, in, false,
          "[{name: user, type: int64}, {name: amount, type: int64}, {name: ts, type: int64}]",
          // The mock answers an empty fetch only after fetch.wait.max.ms (500 by default).
          "{fetch.wait.max.ms: \"1\"}"),
      R"(
  - {id: valid, type: filter, where: "amount >= 0"}
  - id: out
    type: kafka_sink
    bootstrap: ")",
      bootstrap, R"("
    topic: )",
      out, R"(
    format: json
    guarantee: at_least_once
    properties: {linger.ms: ")",
      linger_ms, "\"}\n");
}

struct JobRun {
  bool ok = false;
  std::string error;
  double deploy_s = 0;  // submit -> RUNNING
  double wall_s = 0;    // RUNNING -> FINISHED
  double sluice_cpu = 0;
  double broker_cpu = 0;
  int64_t source_records = 0;
  int checkpoints = 0;
  int64_t last_checkpoint_ms = 0;  // the final checkpoint, which the job waits for
  int64_t max_checkpoint_bytes =
      0;  // full size (exactly_once: pending transactions carry their records)
};

JobRun RunJob(sluice::cli::CoordinatorClient& client, const std::vector<pid_t>& sluice_pids,
              pid_t broker, const std::string& yaml, std::chrono::seconds timeout) {
  JobRun run;
  const double cpu0 = SumCpu(sluice_pids), broker0 = CpuSeconds(broker);
  const auto t0 = Clock::now();
  auto submitted = client.Submit(yaml, "kafka-bench.yaml", 0);
  if (!submitted.ok()) {
    run.error = submitted.status().ToString();
    return run;
  }
  Clock::time_point running_at;
  sluice::proto::JobInfo info = WaitEnd(client, submitted->job_id(), &running_at, timeout);
  const auto t1 = Clock::now();
  run.sluice_cpu = SumCpu(sluice_pids) - cpu0;
  run.broker_cpu = CpuSeconds(broker) - broker0;
  if (running_at == Clock::time_point()) running_at = t0;
  run.deploy_s = std::chrono::duration<double>(running_at - t0).count();
  run.wall_s = std::chrono::duration<double>(t1 - running_at).count();
  if (info.state() != sluice::proto::JOB_FINISHED) {
    run.error = absl::StrCat(sluice::cli::JobStateName(info.state()), ": ", info.error());
    return run;
  }
  if (const auto* src = FindOperator(info, "events")) {
    run.source_records = static_cast<int64_t>(src->records_out());
  }
  for (const auto& c : info.checkpoints()) {
    if (c.status() != "COMPLETED") continue;
    ++run.checkpoints;
    run.last_checkpoint_ms = c.duration_ms();
    run.max_checkpoint_bytes = std::max(run.max_checkpoint_bytes, c.full_size());
  }
  run.ok = true;
  return run;
}

struct Latencies {
  std::vector<int64_t> micros;  // of records sent after the warm-up
  std::atomic<int64_t> received{0};
};

// Reads `topic` from the beginning until `stop`, recording receive time - the record's "ts"
// field (microseconds since the epoch) for records sent at or after `measure_from_us`.
void ReadLatencies(rd_kafka_t* consumer, const std::atomic<bool>* stop,
                   const std::atomic<int64_t>* measure_from_us, Latencies* out) {
  while (!stop->load()) {
    rd_kafka_message_t* m = rd_kafka_consumer_poll(consumer, 50);
    if (m == nullptr) continue;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      const int64_t now = WallMicros();
      std::string_view v(static_cast<const char*>(m->payload), m->len);
      size_t p = v.find("\"ts\"");
      if (p != std::string_view::npos) {
        p = v.find(':', p);
        const int64_t ts =
            p == std::string_view::npos ? 0 : std::strtoll(v.data() + p + 1, nullptr, 10);
        if (ts >= measure_from_us->load()) out->micros.push_back(now - ts);
      }
      out->received.fetch_add(1);
    }
    rd_kafka_message_destroy(m);
  }
}

double PercentileMs(const std::vector<int64_t>& sorted, double q) {
  if (sorted.empty()) return 0;
  size_t i = std::min(sorted.size() - 1, static_cast<size_t>(q * sorted.size()));
  return sorted[i] / 1000.0;
}

struct LatencyRun {
  bool ok = false;
  std::string error;
  int64_t sent = 0;
  int64_t received = 0;      // end to end, from the output topic
  int64_t raw_received = 0;  // from the input topic, by the plain consumers
  // The mock dropped old batches of the input or output topic to stay within 5 MiB per
  // partition. Harmless when they had been read (the counts say so), as in a long stream.
  bool dropped = false;
  double send_rate = 0;
  double p50_ms = 0, p99_ms = 0, max_ms = 0;
  double raw_p50_ms = 0, raw_p99_ms = 0, raw_max_ms = 0;
  double fast_p50_ms = 0, fast_p99_ms = 0, fast_max_ms = 0;
  double sluice_cpu_per_s = 0;  // Sluice's CPU seconds per second while producing
  double broker_cpu_per_s = 0;
};

LatencyRun RunLatency(sluice::cli::CoordinatorClient& client, const std::vector<pid_t>& sluice_pids,
                      pid_t broker, rd_kafka_t* admin, const std::string& bootstrap,
                      const std::string& in, const std::string& out, int partitions, int64_t keys,
                      double rate, double duration_s, double warmup_s, int linger_ms,
                      const std::string& name) {
  LatencyRun run;
  auto submitted =
      client.Submit(LatencyJob(name, bootstrap, in, out, linger_ms), "kafka-latency.yaml", 0);
  if (!submitted.ok()) {
    run.error = submitted.status().ToString();
    return run;
  }
  const std::string job = submitted->job_id();
  const auto started = Clock::now();
  while (true) {
    auto j = client.GetJob(job);
    if (j.ok() && j->state() == sluice::proto::JOB_RUNNING) break;
    if ((j.ok() && j->state() != sluice::proto::JOB_CREATED) || Seconds(started) > 30) {
      run.error = absl::StrCat("job did not start: ", j.ok() ? j->error() : j.status().ToString());
      (void)client.Cancel(job);
      return run;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  std::this_thread::sleep_for(std::chrono::seconds(1));  // let the source open and assign

  std::atomic<int64_t> failures{0};
  auto producer = NewProducer(bootstrap, &failures, {{"linger.ms", std::to_string(linger_ms)}});
  // The mock answers a fetch that finds no data only after fetch.wait.max.ms (default 500),
  // even if data arrives meanwhile. Our end-to-end reader and the job's source (its
  // `properties`) use 1 ms. Two plain readers of the input show the hop without Sluice: one
  // with librdkafka's default wait, one with 1 ms like the source.
  auto e2e = NewAssignedConsumer(bootstrap, out, partitions, {{"fetch.wait.max.ms", "1"}});
  auto raw = NewAssignedConsumer(bootstrap, in, partitions, {});
  auto fast = NewAssignedConsumer(bootstrap, in, partitions, {{"fetch.wait.max.ms", "1"}});
  if (!producer.ok() || !e2e.ok() || !raw.ok() || !fast.ok()) {
    run.error = "cannot create the latency clients";
    (void)client.Cancel(job);
    return run;
  }
  RdKafkaTopic rkt(rd_kafka_topic_new(producer->get(), in.c_str(), nullptr));
  std::atomic<bool> stop{false};
  std::atomic<int64_t> measure_from_us{WallMicros() + static_cast<int64_t>(warmup_s * 1e6)};
  Latencies e2e_lat, raw_lat, fast_lat;
  std::thread e2e_reader(ReadLatencies, e2e->get(), &stop, &measure_from_us, &e2e_lat);
  std::thread raw_reader(ReadLatencies, raw->get(), &stop, &measure_from_us, &raw_lat);
  std::thread fast_reader(ReadLatencies, fast->get(), &stop, &measure_from_us, &fast_lat);

  // Produce at `rate`, in small steps, each record stamped with its send time.
  char buf[160];
  const double cpu0 = SumCpu(sluice_pids), broker0 = CpuSeconds(broker);
  const auto t0 = Clock::now();
  const int64_t total = static_cast<int64_t>(rate * duration_s);
  while (run.sent < total) {
    const int64_t due = std::min<int64_t>(total, static_cast<int64_t>(rate * Seconds(t0)));
    for (; run.sent < due; ++run.sent) {
      const int64_t i = run.sent;
      int len = std::snprintf(buf, sizeof(buf), "{\"user\": %lld, \"amount\": %lld, \"ts\": %lld}",
                              static_cast<long long>(100000 + (i * 7919) % keys),
                              static_cast<long long>((i * 104729) % 1000000),
                              static_cast<long long>(WallMicros()));
      absl::Status s =
          Produce(producer->get(), rkt.get(), static_cast<int32_t>(i % partitions), buf, len);
      if (!s.ok()) {
        run.error = s.ToString();
        break;
      }
    }
    if (!run.error.empty()) break;
    rd_kafka_poll(producer->get(), 0);
    std::this_thread::sleep_for(std::chrono::microseconds(500));
  }
  const double produce_s = Seconds(t0);
  run.sluice_cpu_per_s = (SumCpu(sluice_pids) - cpu0) / produce_s;
  run.broker_cpu_per_s = (CpuSeconds(broker) - broker0) / produce_s;
  run.send_rate = run.sent / produce_s;
  if (rd_kafka_flush(producer->get(), 30000) != RD_KAFKA_RESP_ERR_NO_ERROR || failures > 0) {
    run.error = absl::StrCat("input not acknowledged (", failures.load(), " failed deliveries)");
  }
  // Drain: wait until the readers have everything, or nothing arrives for 10 s.
  int64_t last = -1;
  auto last_change = Clock::now();
  while (e2e_lat.received < run.sent || raw_lat.received < run.sent ||
         fast_lat.received < run.sent) {
    const int64_t now = e2e_lat.received + raw_lat.received + fast_lat.received;
    if (now != last) {
      last = now;
      last_change = Clock::now();
    } else if (Clock::now() - last_change > std::chrono::seconds(10)) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  stop = true;
  e2e_reader.join();
  raw_reader.join();
  fast_reader.join();
  rd_kafka_consumer_close(e2e->get());
  rd_kafka_consumer_close(raw->get());
  rd_kafka_consumer_close(fast->get());
  (void)client.Cancel(job);
  WaitEnd(client, job, nullptr, std::chrono::seconds(60));

  run.received = e2e_lat.received;
  run.raw_received = std::min(raw_lat.received.load(), fast_lat.received.load());
  for (const std::string& t : {in, out}) {
    auto c = CountTopic(admin, t, partitions);
    if (c.ok()) run.dropped |= c->dropped;
  }
  std::sort(e2e_lat.micros.begin(), e2e_lat.micros.end());
  std::sort(raw_lat.micros.begin(), raw_lat.micros.end());
  std::sort(fast_lat.micros.begin(), fast_lat.micros.end());
  run.p50_ms = PercentileMs(e2e_lat.micros, 0.50);
  run.p99_ms = PercentileMs(e2e_lat.micros, 0.99);
  run.max_ms = e2e_lat.micros.empty() ? 0 : e2e_lat.micros.back() / 1000.0;
  run.raw_p50_ms = PercentileMs(raw_lat.micros, 0.50);
  run.raw_p99_ms = PercentileMs(raw_lat.micros, 0.99);
  run.raw_max_ms = raw_lat.micros.empty() ? 0 : raw_lat.micros.back() / 1000.0;
  run.fast_p50_ms = PercentileMs(fast_lat.micros, 0.50);
  run.fast_p99_ms = PercentileMs(fast_lat.micros, 0.99);
  run.fast_max_ms = fast_lat.micros.empty() ? 0 : fast_lat.micros.back() / 1000.0;
  run.ok = run.error.empty();
  return run;
}

// One Kafka -> job -> Kafka variant's results over the repetitions.
struct JobSeries {
  std::vector<double> rate, per_cpu, sluice_cpu, broker_cpu, wall, deploy, last_cp_ms, max_cp_bytes;
  int failures = 0;
  int count_mismatches = 0;
};

pid_t ReadPid(const std::string& file) {
  std::ifstream in(file);
  pid_t pid = -1;
  in >> pid;
  return pid;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "Kafka -> Sluice -> Kafka throughput and latency on the embedded endpoint, against raw "
      "librdkafka"};
  int64_t records = 500'000;
  int64_t keys = 10'000;
  int partitions = 8;
  int latency_partitions = 2;
  int reps = 3;
  double rate = 20'000;
  double duration_s = 10;
  double warmup_s = 1;
  int linger_ms = 2;
  bool exactly_once = true;
  bool latency = true;
  app.add_option("--records", records, "Input records per throughput run")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--keys", keys, "Distinct users")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--partitions", partitions, "Partitions of every topic")
      ->capture_default_str()
      ->check(CLI::Range(1, 256));
  app.add_option("--latency-partitions", latency_partitions,
                 "Partitions of the latency runs' topics")
      ->capture_default_str()
      ->check(CLI::Range(1, 256));
  app.add_option("--reps", reps, "Repetitions (medians are reported)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--rate", rate, "Records/s produced in the latency runs")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--duration", duration_s, "Seconds of producing per latency run")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--warmup", warmup_s,
                 "Seconds at the start of a latency run left out of the percentiles")
      ->capture_default_str();
  app.add_option("--linger-ms", linger_ms,
                 "linger.ms of the latency producer and of the job's sink")
      ->capture_default_str();
  app.add_flag("--exactly-once,!--no-exactly-once", exactly_once,
               "Also run the job with guarantee exactly_once")
      ->capture_default_str();
  app.add_flag("--latency,!--no-latency", latency, "Run the latency part")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  std::setvbuf(stdout, nullptr, _IOLBF,
               0);  // progress lines show up as they happen, also in a file
  // A throughput job should take seconds; one that hangs (e.g. checkpoints that never complete)
  // is cancelled after this.
  const std::chrono::seconds job_timeout(std::max<int64_t>(60, records / 10'000));

  // ~10 bytes of record overhead in a v2 batch; the job's output records are a little larger.
  const double per_partition = records * 50.0 / partitions;
  if (per_partition > kPartitionMaxBytes) {
    std::printf(
        "warning: ~%.1f MiB per partition exceeds the mock's 5 MiB; it will drop data (raise "
        "--partitions)\n",
        per_partition / (1 << 20));
  }

  std::vector<std::string> topics;
  for (int r = 0; r < reps; ++r) {
    for (const char* t : {"in", "out-alo", "out-eo"}) {
      topics.push_back(absl::StrCat(t, "-", r, ":", partitions));
    }
    for (const char* t : {"lat-in", "lat-out"}) {
      topics.push_back(absl::StrCat(t, "-", r, ":", latency_partitions));
    }
  }
  std::string dir = (std::filesystem::temp_directory_path() / "sluice-kafkabench-XXXXXX").string();
  if (mkdtemp(dir.data()) == nullptr) return 1;
  sluice::cli::LocalClusterOptions o;
  o.dir = dir;
  o.workers = 2;
  o.slots = 1;
  o.log_level = "warn";
  o.die_with_parent = true;
  o.kafka = true;
  o.kafka_topics = topics;
  auto started = sluice::cli::LocalCluster::Start(o);
  if (!started.ok()) {
    std::cerr << "cannot start cluster: " << started.status() << "\n";
    return 1;
  }
  std::unique_ptr<sluice::cli::LocalCluster> cluster = std::move(*started);
  const std::string bootstrap = cluster->kafka_bootstrap();
  const pid_t broker = ReadPid(dir + "/kafka.pid");
  const std::vector<pid_t> sluice_pids = cluster->AllPids();
  sluice::cli::CoordinatorClient client(cluster->coordinator_address());
  std::atomic<int64_t> admin_failures{0};
  auto admin = NewProducer(bootstrap, &admin_failures);
  if (!admin.ok()) {
    std::cerr << "kafka client: " << admin.status() << "\n";
    return 1;
  }
  std::printf("cluster in %s, kafka endpoint %s (pid %d)\n", dir.c_str(), bootstrap.c_str(),
              broker);

  // 1 and 2: per repetition, the raw baseline then the jobs on the same input.
  std::vector<double> produce_rate, consume_rate, produce_client_cpu, produce_broker_cpu,
      consume_client_cpu, consume_broker_cpu, record_bytes;
  JobSeries alo, eo;
  int input_mismatches = 0;
  for (int r = 0; r < reps; ++r) {
    const std::string in = absl::StrCat("in-", r);
    auto produced = RawProduce(bootstrap, in, partitions, records, keys, broker);
    if (!produced.ok()) {
      std::cerr << "raw produce: " << produced.status() << "\n";
      return 1;
    }
    auto held = CountTopic(admin->get(), in, partitions);
    if (!held.ok() || held->records != records || held->dropped) {
      ++input_mismatches;
      std::printf(
          "run %d: COUNT MISMATCH input topic's offsets reach %lld%s, expected %lld records\n",
          r + 1, held.ok() ? static_cast<long long>(held->records) : -1LL,
          held.ok() && held->dropped ? " (the mock dropped old batches)" : "",
          static_cast<long long>(records));
    }
    auto consumed = RawConsume(bootstrap, in, partitions, records, broker);
    if (!consumed.ok()) {
      std::cerr << "raw consume: " << consumed.status() << "\n";
      return 1;
    }
    if (consumed->records != records) {
      ++input_mismatches;
      std::printf("run %d: COUNT MISMATCH raw consumer read %lld of %lld records\n", r + 1,
                  static_cast<long long>(consumed->records), static_cast<long long>(records));
    }
    // Runs that did not read everything measure something else: they stay out of the medians.
    produce_rate.push_back(records / produced->seconds);
    if (consumed->records == records) consume_rate.push_back(consumed->records / consumed->seconds);
    produce_client_cpu.push_back(produced->client_cpu);
    produce_broker_cpu.push_back(produced->broker_cpu);
    consume_client_cpu.push_back(consumed->client_cpu);
    consume_broker_cpu.push_back(consumed->broker_cpu);
    record_bytes.push_back(static_cast<double>(produced->bytes) / records);
    std::printf(
        "run %d raw: produce %.2f s (%.0f records/s, client %.2f CPU s, broker %.2f CPU s); "
        "consume %.2f s (%.0f records/s, client %.2f CPU s, broker %.2f CPU s)\n",
        r + 1, produced->seconds, records / produced->seconds, produced->client_cpu,
        produced->broker_cpu, consumed->seconds, consumed->records / consumed->seconds,
        consumed->client_cpu, consumed->broker_cpu);

    for (bool exact : {false, true}) {
      if (exact && !exactly_once) continue;
      const std::string guarantee = exact ? "exactly_once" : "at_least_once";
      const std::string out = absl::StrCat(exact ? "out-eo-" : "out-alo-", r);
      JobSeries& series = exact ? eo : alo;
      JobRun run = RunJob(client, sluice_pids, broker,
                          ThroughputJob(absl::StrCat("kafka-bench-", exact ? "eo-" : "alo-", r),
                                        bootstrap, in, out, guarantee),
                          job_timeout);
      if (!run.ok) {
        ++series.failures;
        std::printf("run %d %s: job failed: %s\n", r + 1, guarantee.c_str(), run.error.c_str());
        continue;
      }
      auto written = CountTopic(admin->get(), out, partitions);
      const bool counts_ok = written.ok() && written->records == records && !written->dropped &&
                             run.source_records == records;
      if (!counts_ok) {
        ++series.count_mismatches;
        std::printf(
            "run %d %s: COUNT MISMATCH source read %lld, output topic's offsets reach %lld%s, "
            "expected %lld each\n",
            r + 1, guarantee.c_str(), static_cast<long long>(run.source_records),
            written.ok() ? static_cast<long long>(written->records) : -1LL,
            written.ok() && written->dropped ? " (the mock dropped old batches)" : "",
            static_cast<long long>(records));
      }
      std::printf(
          "run %d %s: submit->running %.2f s, running->finished %.2f s, %.0f records/s, Sluice "
          "%.2f CPU s "
          "(%.0f records/CPU-s), broker %.2f CPU s, %d checkpoints (final %lld ms, largest %.1f "
          "MB)\n",
          r + 1, guarantee.c_str(), run.deploy_s, run.wall_s, records / run.wall_s, run.sluice_cpu,
          records / run.sluice_cpu, run.broker_cpu, run.checkpoints,
          static_cast<long long>(run.last_checkpoint_ms), run.max_checkpoint_bytes / 1e6);
      if (!counts_ok) continue;  // not the same work: out of the medians
      series.rate.push_back(records / run.wall_s);
      series.per_cpu.push_back(records / run.sluice_cpu);
      series.sluice_cpu.push_back(run.sluice_cpu);
      series.broker_cpu.push_back(run.broker_cpu);
      series.wall.push_back(run.wall_s);
      series.deploy.push_back(run.deploy_s);
      series.last_cp_ms.push_back(run.last_checkpoint_ms);
      series.max_cp_bytes.push_back(run.max_checkpoint_bytes);
    }
  }

  // 3. Latency at a fixed rate.
  std::vector<double> p50, p99, pmax, raw_p50, raw_p99, raw_max, fast_p50, fast_p99, fast_max,
      send_rate, lat_cpu, lat_broker;
  int latency_failures = 0, latency_mismatches = 0;
  for (int r = 0; latency && r < reps; ++r) {
    LatencyRun run =
        RunLatency(client, sluice_pids, broker, admin->get(), bootstrap, absl::StrCat("lat-in-", r),
                   absl::StrCat("lat-out-", r), latency_partitions, keys, rate, duration_s,
                   warmup_s, linger_ms, absl::StrCat("kafka-bench-latency-", r));
    if (!run.ok) {
      ++latency_failures;
      std::printf("latency %d: failed: %s\n", r + 1, run.error.c_str());
      continue;
    }
    const bool counts_ok = run.received == run.sent && run.raw_received == run.sent;
    if (!counts_ok) {
      ++latency_mismatches;
      std::printf("latency %d: COUNT MISMATCH sent %lld, output read %lld, input read %lld%s\n",
                  r + 1, static_cast<long long>(run.sent), static_cast<long long>(run.received),
                  static_cast<long long>(run.raw_received),
                  run.dropped ? " (the mock dropped old batches)" : "");
    } else if (run.dropped) {
      std::printf(
          "latency %d: (the mock dropped batches that had been read, to stay within 5 MiB per "
          "partition)\n",
          r + 1);
    }
    std::printf(
        "latency %d: sent %lld at %.0f records/s; end to end p50 %.1f ms, p99 %.1f ms, max %.1f "
        "ms; "
        "input read directly, source's settings: p50 %.1f ms, p99 %.1f ms, max %.1f ms; "
        "fetch.wait.max.ms=1: p50 %.1f ms, p99 %.1f ms, max %.1f ms; Sluice %.2f CPU s/s, broker "
        "%.2f CPU s/s\n",
        r + 1, static_cast<long long>(run.sent), run.send_rate, run.p50_ms, run.p99_ms, run.max_ms,
        run.raw_p50_ms, run.raw_p99_ms, run.raw_max_ms, run.fast_p50_ms, run.fast_p99_ms,
        run.fast_max_ms, run.sluice_cpu_per_s, run.broker_cpu_per_s);
    if (!counts_ok) continue;  // out of the medians
    p50.push_back(run.p50_ms);
    p99.push_back(run.p99_ms);
    pmax.push_back(run.max_ms);
    raw_p50.push_back(run.raw_p50_ms);
    raw_p99.push_back(run.raw_p99_ms);
    raw_max.push_back(run.raw_max_ms);
    fast_p50.push_back(run.fast_p50_ms);
    fast_p99.push_back(run.fast_p99_ms);
    fast_max.push_back(run.fast_max_ms);
    send_rate.push_back(run.send_rate);
    lat_cpu.push_back(run.sluice_cpu_per_s);
    lat_broker.push_back(run.broker_cpu_per_s);
  }

  admin->reset();
  cluster->Stop();
  std::filesystem::remove_all(dir);

  std::printf(
      "reproduce: build/bin/kafka_benchmark --records %lld --keys %lld --partitions %d --reps %d "
      "--rate %.0f "
      "--duration %g --warmup %g --linger-ms %d --latency-partitions %d%s%s\n",
      static_cast<long long>(records), static_cast<long long>(keys), partitions, reps, rate,
      duration_s, warmup_s, linger_ms, latency_partitions, exactly_once ? "" : " --no-exactly-once",
      latency ? "" : " --no-latency");
  const double raw_consume = Median(consume_rate);
  std::printf(
      "BENCH kafka_raw records=%lld partitions=%d record_bytes=%.1f produce_records_per_s=%.0f "
      "consume_records_per_s=%.0f produce_client_cpu_s=%.3f produce_broker_cpu_s=%.3f "
      "consume_client_cpu_s=%.3f consume_broker_cpu_s=%.3f count_mismatches=%d\n",
      static_cast<long long>(records), partitions, Median(record_bytes), Median(produce_rate),
      raw_consume, Median(produce_client_cpu), Median(produce_broker_cpu),
      Median(consume_client_cpu), Median(consume_broker_cpu), input_mismatches);
  for (bool exact : {false, true}) {
    if (exact && !exactly_once) continue;
    const JobSeries& s = exact ? eo : alo;
    std::printf(
        "BENCH kafka_job_%s records=%lld runs=%zu records_per_s=%.0f wall_s=%.3f "
        "submit_to_running_s=%.3f "
        "sluice_cpu_s=%.3f records_per_sluice_cpu_s=%.0f broker_cpu_s=%.3f "
        "final_checkpoint_ms=%.0f "
        "max_checkpoint_bytes=%.0f ratio_to_raw_consume=%.3f failures=%d count_mismatches=%d\n",
        exact ? "exactly_once" : "at_least_once", static_cast<long long>(records), s.rate.size(),
        Median(s.rate), Median(s.wall), Median(s.deploy), Median(s.sluice_cpu), Median(s.per_cpu),
        Median(s.broker_cpu), Median(s.last_cp_ms), Median(s.max_cp_bytes),
        raw_consume > 0 ? Median(s.rate) / raw_consume : 0, s.failures, s.count_mismatches);
  }
  if (latency) {
    std::printf(
        "BENCH kafka_latency rate=%.0f duration_s=%g runs=%zu send_records_per_s=%.0f p50_ms=%.1f "
        "p99_ms=%.1f "
        "max_ms=%.1f raw_p50_ms=%.1f raw_p99_ms=%.1f raw_max_ms=%.1f raw_fast_fetch_p50_ms=%.1f "
        "raw_fast_fetch_p99_ms=%.1f raw_fast_fetch_max_ms=%.1f sluice_cpu_s_per_s=%.3f "
        "broker_cpu_s_per_s=%.3f failures=%d count_mismatches=%d\n",
        rate, duration_s, p50.size(), Median(send_rate), Median(p50), Median(p99), Median(pmax),
        Median(raw_p50), Median(raw_p99), Median(raw_max), Median(fast_p50), Median(fast_p99),
        Median(fast_max), Median(lat_cpu), Median(lat_broker), latency_failures,
        latency_mismatches);
  }
  const bool clean = input_mismatches == 0 && alo.failures + alo.count_mismatches + eo.failures +
                                                      eo.count_mismatches + latency_failures +
                                                      latency_mismatches ==
                                                  0;
  return clean ? 0 : 2;
}
