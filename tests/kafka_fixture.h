#pragma once

// An embedded Kafka endpoint (sluice-kafka) for the length of one integration test, fed with
// kcat (an independent client), and the YAML of the event-time Kafka job that the window and
// top_n tests share.

#include <signal.h>
#include <sys/wait.h>

#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/cluster_fixture.h"

namespace sluice::testing {

// sluice-kafka started in a test's directory, stopped (SIGTERM, then reaped) when it goes out
// of scope, also when an assertion returns early. Not copyable; used on the test's thread.
class KafkaProcess {
 public:
  // Starts sluice-kafka in `dir` with `topics` (NAME:PARTITIONS). bootstrap() is empty if it
  // did not come up (its log is `dir`/kafka.log).
  KafkaProcess(const std::string& dir, const std::vector<std::string>& topics) : dir_(dir) {
    pid_ = SpawnKafka(dir_, topics, &bootstrap_);
  }
  KafkaProcess(const KafkaProcess&) = delete;
  KafkaProcess& operator=(const KafkaProcess&) = delete;
  ~KafkaProcess() {
    if (pid_ <= 0) return;
    kill(pid_, SIGTERM);
    waitpid(pid_, nullptr, 0);
  }

  const std::string& bootstrap() const { return bootstrap_; }
  std::string Log() const { return ReadAll(dir_ + "/kafka.log"); }

  // Appends `lines` (one record each) to partition `partition` of `topic` with kcat; a failure
  // of kcat fails the test (check HasFatalFailure() after).
  void Produce(const std::string& topic, int partition, const std::string& lines) const {
    const std::string file = dir_ + "/kcat-input";
    std::ofstream(file) << lines;
    std::string out;
    ASSERT_EQ(RunCommand(absl::StrCat("timeout 60 kcat -b ", bootstrap_, " -P -t ", topic, " -p ",
                                      partition, " < ", file),
                         &out),
              0)
        << out;
  }

 private:
  const std::string dir_;
  pid_t pid_ = -1;
  std::string bootstrap_;
};

// A job `name` at parallelism 2 (watermarks every 50 ms, checkpoints every 200 ms) reading JSON
// records {"key": <int64>, "ts": <ms>} from topic `events` at `bootstrap` (event time from ts,
// 100 ms out of order, a partition idle after `idle_timeout` without records; "" for never),
// keyed by key (operator `by_key`), followed by `operators` (YAML list items, indented by two
// spaces). An idle partition's later records may be late (their windows fired without them),
// so a test that must count every record in its window writes its partitions with no idle
// timeout: event time then waits for every partition.
inline std::string KafkaKeyedEventsJob(const std::string& name, const std::string& bootstrap,
                                       const std::string& operators,
                                       const std::string& idle_timeout = "1s") {
  return absl::StrCat("name: ", name, R"y(
parallelism: 2
watermark_interval: 50ms
checkpoint: {interval: 200ms, timeout: 20s}
operators:
  - id: events
    type: kafka
    bootstrap: ")y", bootstrap, R"y("
    topic: events
    format: json
    fields: [{name: key, type: int64}, {name: ts, type: timestamp}]
    event_time: {field: ts, max_out_of_orderness: 100ms)y",
                      idle_timeout.empty() ? "" : absl::StrCat(", idle_timeout: ", idle_timeout), R"y(}
  - {id: by_key, type: key_by, key: [key]}
)y", operators);
}

}  // namespace sluice::testing
