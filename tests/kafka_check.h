#pragma once

// Reading what a Kafka sink wrote, for the tests using the embedded endpoint (sluice-kafka).
// The endpoint (librdkafka's mock) writes no transaction markers, ignores TxnOffsetCommit and
// does not fence old producers, so for the exactly_once sink the visible topic is not the truth:
// the sink's transaction log (`transaction_log:`, one line per transaction event, from every
// attempt) is replayed to compute what a read_committed consumer of a real broker shows.

#include <fstream>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/cluster_fixture.h"

namespace sluice::testing {

// What a read_committed consumer of a real broker sees, from the transaction log: a commit
// makes its transaction visible; a redo after recovery (the same records again, in a new
// transaction) is what a broker with working TxnOffsetCommit does only when the original's
// marker is missing, i.e. when neither the original nor an earlier redo committed.
struct ProtocolView {
  std::set<std::string> visible;  // "<txn id>#<instance>"
  int64_t commits = 0, redos = 0, mock_only_redos = 0;
  std::map<std::string, std::set<int64_t>> init_attempts;  // txn id -> attempts that initialised it
  std::set<std::string> ids;
};

inline ProtocolView ReplayTransactionLog(const std::string& path) {
  ProtocolView v;
  std::set<std::string> committed_originals;  // "<txn id>#<original instance>"
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    auto e = nlohmann::json::parse(line);
    const std::string ev = e["event"], txn = e["txn"], instance = e["instance"];
    v.ids.insert(txn);
    if (ev == "init") v.init_attempts[txn].insert(e["attempt"].get<int64_t>());
    if (ev == "commit") {
      ++v.commits;
      committed_originals.insert(txn + "#" + instance);
      v.visible.insert(txn + "#" + instance);
    } else if (ev == "recover_redo") {
      ++v.redos;
      if (committed_originals.insert(txn + "#" + e["redoes"].get<std::string>()).second) {
        v.visible.insert(txn + "#" + instance);
      } else {
        ++v.mock_only_redos;
      }
    }
  }
  return v;
}

// Every message of `topic` on `bootstrap` (kcat, with `extra` options) as (transaction id from
// the sink's `sluice.txn` header or empty, value).
inline std::vector<std::pair<std::string, std::string>> ReadKafkaTopic(const std::string& bootstrap,
                                                                       const std::string& topic,
                                                                       const std::string& extra = "") {
  std::string out;
  EXPECT_EQ(RunCommand(absl::StrCat("timeout 60 kcat -b ", bootstrap, " ", extra, " -C -t ", topic,
                                    " -o beginning -e -q -f '%h|%s\\n'"), &out), 0) << out;
  std::vector<std::pair<std::string, std::string>> messages;
  for (absl::string_view line : absl::StrSplit(out, '\n', absl::SkipEmpty())) {
    size_t bar = line.find('|');
    if (bar == absl::string_view::npos) continue;
    std::string header(line.substr(0, bar));
    if (absl::StartsWith(header, "sluice.txn=")) header = header.substr(11);
    messages.push_back({header, std::string(line.substr(bar + 1))});
  }
  return messages;
}

// The values of `topic` that a read_committed consumer of a real broker sees, given the sink's
// transaction log `log` (replayed into *view).
inline std::vector<std::string> CommittedKafkaValues(const std::string& bootstrap, const std::string& topic,
                                                     const std::string& log, ProtocolView* view) {
  *view = ReplayTransactionLog(log);
  std::vector<std::string> values;
  for (const auto& [txn, value] : ReadKafkaTopic(bootstrap, topic)) {
    if (view->visible.count(txn)) values.push_back(value);
  }
  return values;
}

}  // namespace sluice::testing
