#include "common/metrics.h"

#include <cmath>
#include <map>

#include "absl/strings/str_cat.h"

namespace sluice {

std::shared_ptr<Counter> MetricsRegistry::AddCounter(const std::string& name,
                                                     const std::string& help, Labels labels,
                                                     const std::string& owner) {
  auto c = std::make_shared<Counter>();
  absl::MutexLock lock(&mu_);
  entries_.push_back(Entry{name, help, true, std::move(labels), owner, c, nullptr, nullptr});
  return c;
}

std::shared_ptr<Gauge> MetricsRegistry::AddGauge(const std::string& name, const std::string& help,
                                                 Labels labels, const std::string& owner) {
  auto g = std::make_shared<Gauge>();
  absl::MutexLock lock(&mu_);
  entries_.push_back(Entry{name, help, false, std::move(labels), owner, nullptr, g, nullptr});
  return g;
}

void MetricsRegistry::AddCallbackGauge(const std::string& name, const std::string& help,
                                       Labels labels, std::function<double()> fn,
                                       const std::string& owner) {
  absl::MutexLock lock(&mu_);
  entries_.push_back(
      Entry{name, help, false, std::move(labels), owner, nullptr, nullptr, std::move(fn)});
}

void MetricsRegistry::RemoveOwner(const std::string& owner) {
  absl::MutexLock lock(&mu_);
  std::vector<Entry> kept;
  for (auto& e : entries_) {
    if (e.owner != owner) kept.push_back(std::move(e));
  }
  entries_ = std::move(kept);
}

namespace {
std::string EscapeLabel(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out.push_back('\\');
    if (c == '\n') {
      out.append("\\n");
      continue;
    }
    out.push_back(c);
  }
  return out;
}
}  // namespace

std::string MetricsRegistry::RenderPrometheus() const {
  // Copy the entries under the lock and render without it: callback gauges take their
  // owners' locks, and owners register metrics while holding them.
  std::vector<Entry> entries;
  {
    absl::MutexLock lock(&mu_);
    entries = entries_;
  }
  std::map<std::string, std::vector<const Entry*>> families;  // one HELP/TYPE per name
  for (const auto& e : entries) families[e.name].push_back(&e);
  std::string out;
  for (const auto& [name, members] : families) {
    absl::StrAppend(&out, "# HELP ", name, " ", members[0]->help, "\n# TYPE ", name, " ",
                    members[0]->is_counter ? "counter" : "gauge", "\n");
    for (const Entry* e : members) {
      out += name;
      if (!e->labels.empty()) {
        out += "{";
        for (size_t i = 0; i < e->labels.size(); ++i) {
          if (i > 0) out += ",";
          absl::StrAppend(&out, e->labels[i].first, "=\"", EscapeLabel(e->labels[i].second), "\"");
        }
        out += "}";
      }
      double v = e->counter ? static_cast<double>(e->counter->Value())
                 : e->gauge ? e->gauge->Value()
                            : e->fn();
      // Integral values in full (counters, millisecond timestamps); others as %g.
      if (std::isfinite(v) && v == std::trunc(v) && std::fabs(v) < 9e15) {
        absl::StrAppend(&out, " ", static_cast<int64_t>(v), "\n");
      } else {
        absl::StrAppend(&out, " ", v, "\n");
      }
    }
  }
  return out;
}

}  // namespace sluice
