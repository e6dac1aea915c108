#pragma once

// Reading the Prometheus text that workers and the coordinator serve on /metrics: a strict
// parser of the exposition format (the subset Sluice writes) and a scrape over HTTP.

#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "httplib.h"

namespace sluice::testing {

// One sample line: name{labels} value.
struct MetricSample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

// Parses `text` as Prometheus text format 0.0.4: every line is `# HELP name text`,
// `# TYPE name counter|gauge`, or a sample `name{k="v",...} value`; each family has one HELP
// and one TYPE line, before its samples; names and label names are valid identifiers; label
// values are quoted with \\, \" and \n escapes; values are numbers; counters are not negative;
// the text ends with a newline. Returns kInvalidArgument naming the line and what is wrong.
inline absl::StatusOr<std::vector<MetricSample>> ParsePrometheusText(absl::string_view text) {
  auto is_name = [](absl::string_view s, bool colon) {
    if (s.empty() || (s[0] >= '0' && s[0] <= '9')) return false;
    for (char c : s) {
      if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
            (colon && c == ':'))) {
        return false;
      }
    }
    return true;
  };
  if (!text.empty() && text.back() != '\n') return absl::InvalidArgumentError("no final newline");
  std::map<std::string, std::string> type_of;  // family -> counter|gauge
  std::set<std::string> helped;
  std::vector<MetricSample> samples;
  int number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++number;
    if (line.empty()) continue;  // the split after the final newline
    auto error = [&](absl::string_view why) {
      return absl::InvalidArgumentError(absl::StrCat("line ", number, " (", line, "): ", why));
    };
    if (line[0] == '#') {
      std::vector<absl::string_view> parts = absl::StrSplit(line, absl::MaxSplits(' ', 3));
      if (parts.size() < 3 || parts[0] != "#" || (parts[1] != "HELP" && parts[1] != "TYPE")) {
        return error("a comment that is neither HELP nor TYPE");
      }
      const std::string family(parts[2]);
      if (!is_name(family, true)) return error("bad metric name");
      if (parts[1] == "HELP") {
        if (parts.size() < 4 || parts[3].empty()) return error("HELP without text");
        if (!helped.insert(family).second) return error("second HELP of the family");
      } else {
        if (parts.size() != 4 || (parts[3] != "counter" && parts[3] != "gauge")) {
          return error("TYPE is not counter or gauge");
        }
        if (helped.count(family) == 0) return error("TYPE before HELP");
        if (!type_of.emplace(family, std::string(parts[3])).second) return error("second TYPE of the family");
      }
      continue;
    }
    MetricSample s;
    size_t at = line.find_first_of("{ ");
    if (at == absl::string_view::npos) return error("no value");
    s.name = std::string(line.substr(0, at));
    if (!is_name(s.name, true)) return error("bad metric name");
    if (line[at] == '{') {
      ++at;
      while (at < line.size() && line[at] != '}') {
        const size_t eq = line.find('=', at);
        if (eq == absl::string_view::npos || eq + 1 >= line.size() || line[eq + 1] != '"') {
          return error("a label without =\"value\"");
        }
        const std::string label(line.substr(at, eq - at));
        if (!is_name(label, false)) return error("bad label name");
        std::string value;
        size_t i = eq + 2;
        for (; i < line.size() && line[i] != '"'; ++i) {
          if (line[i] == '\\') {
            if (++i >= line.size()) break;
            if (line[i] == 'n') {
              value += '\n';
            } else if (line[i] == '\\' || line[i] == '"') {
              value += line[i];
            } else {
              return error("bad escape in a label value");
            }
          } else {
            value += line[i];
          }
        }
        if (i >= line.size()) return error("unterminated label value");
        if (!s.labels.emplace(label, value).second) return error("label twice");
        at = i + 1;
        if (at < line.size() && line[at] == ',') ++at;
      }
      if (at >= line.size()) return error("unterminated label set");
      ++at;  // '}'
    }
    if (at >= line.size() || line[at] != ' ') return error("no space before the value");
    if (!absl::SimpleAtod(line.substr(at + 1), &s.value)) return error("the value is not a number");
    auto type = type_of.find(s.name);
    if (type == type_of.end()) return error("a sample without HELP and TYPE before it");
    if (type->second == "counter" && !(s.value >= 0)) return error("a negative counter");
    samples.push_back(std::move(s));
  }
  return samples;
}

// GET /metrics from `host_port` ("host:port"); the body, or kUnavailable.
inline absl::StatusOr<std::string> ScrapeMetrics(const std::string& host_port) {
  const size_t colon = host_port.rfind(':');
  int port = 0;
  if (colon == std::string::npos || !absl::SimpleAtoi(host_port.substr(colon + 1), &port)) {
    return absl::InvalidArgumentError(absl::StrCat("not host:port: ", host_port));
  }
  httplib::Client http(host_port.substr(0, colon), port);
  auto res = http.Get("/metrics");
  if (!res || res->status != 200) {
    return absl::UnavailableError(absl::StrCat("GET http://", host_port, "/metrics failed"));
  }
  return res->body;
}

// The sum of the samples named `name` whose labels include every pair of `match`.
inline double SumOf(const std::vector<MetricSample>& samples, const std::string& name,
                    const std::map<std::string, std::string>& match = {}) {
  double sum = 0;
  for (const MetricSample& s : samples) {
    if (s.name != name) continue;
    bool all = true;
    for (const auto& [k, v] : match) {
      auto it = s.labels.find(k);
      all &= it != s.labels.end() && it->second == v;
    }
    if (all) sum += s.value;
  }
  return sum;
}

}  // namespace sluice::testing
