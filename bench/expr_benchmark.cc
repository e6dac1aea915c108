// Expression evaluation (plan/expr.h) per record versus a hand-written C++ lambda computing the
// same thing, in the same run: the shapes of the Nexmark q1 map, the q2 filter and the
// datagen fields of window_benchmark. Prints ns per record of both, their ratio, the command,
// and `BENCH expr_<case> ns_per_record=... loop_ns_per_record=... loop_ratio=...` lines
// (medians over --reps).
//
//   cmake --build build --target expr_benchmark && build/bin/expr_benchmark --records 20000000

#include <time.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/record.h"
#include "plan/expr.h"

namespace {

using sluice::FieldType;
using sluice::Record;
using sluice::Schema;

double ThreadCpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// ns per record of `body(i)` over `records` records; `body` returns a value folded into a
// checksum so that nothing is optimised away.
double Time(int64_t records, const std::function<uint64_t(int64_t)>& body, uint64_t* checksum) {
  const double start = ThreadCpuSeconds();
  uint64_t sum = 0;
  for (int64_t i = 0; i < records; ++i) sum += body(i);
  const double s = ThreadCpuSeconds() - start;
  *checksum = sum;
  return s * 1e9 / static_cast<double>(records);
}

// One case: the engine's evaluation and the hand-written one, which must agree (checksum).
struct Case {
  std::string name;
  std::function<uint64_t(int64_t)> engine;
  std::function<uint64_t(int64_t)> loop;
};

std::unique_ptr<sluice::plan::Expr> MustCompile(const std::string& text, const Schema& schema) {
  auto e = sluice::plan::CompileExpr(text, schema);
  if (!e.ok()) {
    std::fprintf(stderr, "%s: %s\n", text.c_str(), e.status().ToString().c_str());
    std::exit(1);
  }
  return std::move(e).value();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Expression evaluation per record versus a hand-written lambda"};
  int64_t records = 20'000'000;
  int reps = 3;
  app.add_option("--records", records, "Records per case and repetition")->capture_default_str();
  app.add_option("--reps", reps, "Repetitions (medians are reported)")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  // Nexmark bids as q1 reads them (auction, bidder, price, dateTime, extra).
  const Schema bid({{"auction", FieldType::kInt64},
                    {"bidder", FieldType::kInt64},
                    {"price", FieldType::kInt64},
                    {"dateTime", FieldType::kTimestamp},
                    {"extra", FieldType::kString}});
  Record in(5);
  in.SetString(4, std::string(40, 'x'));
  auto set_bid = [&in](int64_t i) {
    in.SetInt(0, 1000 + i / 7);
    in.SetInt(1, 2000 + i % 1013);
    in.SetInt(2, 100 + (i * 31) % 100000);
    in.SetInt(3, 1700000000000 + i);
  };

  // q1: map [auction, bidder, price * 0.908, dateTime, extra].
  const std::vector<std::string> q1_fields = {"auction", "bidder", "price * 0.908", "dateTime",
                                              "extra"};
  const std::vector<FieldType> q1_types = {FieldType::kInt64, FieldType::kInt64,
                                           FieldType::kDouble, FieldType::kTimestamp,
                                           FieldType::kString};
  std::vector<std::unique_ptr<sluice::plan::Expr>> q1;
  for (const std::string& f : q1_fields) q1.push_back(MustCompile(f, bid));
  Record out(5);
  auto q1_checksum = [&out] {
    return static_cast<uint64_t>(out.GetInt(0) + out.GetInt(1) + out.GetInt(3)) +
           static_cast<uint64_t>(out.GetDouble(2)) + out.GetString(4).size();
  };

  // q2: filter `auction % 123 == 0`.
  auto q2 = MustCompile("auction % 123 == 0", bid);

  // window_benchmark's datagen: key and ts from seq.
  const Schema seq({{"seq", FieldType::kInt64}});
  Record seq_in(1);
  auto key = MustCompile("(seq * 7919) % 10000", seq);
  auto ts = MustCompile("seq / 100 - (seq * 7919) % 500", seq);

  std::vector<Case> cases = {
      {"q1_map",
       [&](int64_t i) {
         set_bid(i);
         for (size_t f = 0; f < q1.size(); ++f) sluice::plan::EvalInto(*q1[f], in, q1_types[f], &out, f);
         return q1_checksum();
       },
       [&](int64_t i) {
         set_bid(i);
         out[0].i = in[0].i;
         out[1].i = in[1].i;
         out[2].d = static_cast<double>(in[2].i) * 0.908;
         out[3].i = in[3].i;
         out[4].s.assign(in[4].s);
         return q1_checksum();
       }},
      {"q2_filter",
       [&](int64_t i) {
         set_bid(i);
         return static_cast<uint64_t>(q2->EvalBool(in));
       },
       [&](int64_t i) {
         set_bid(i);
         return static_cast<uint64_t>(in.GetInt(0) % 123 == 0);
       }},
      {"datagen_key_ts",
       [&](int64_t i) {
         seq_in.SetInt(0, i);
         return static_cast<uint64_t>(key->EvalInt(seq_in) + ts->EvalInt(seq_in));
       },
       [&](int64_t i) {
         seq_in.SetInt(0, i);
         const int64_t s = seq_in.GetInt(0);
         return static_cast<uint64_t>((s * 7919) % 10000 + (s / 100 - (s * 7919) % 500));
       }},
  };

  int failures = 0;
  std::string lines;
  for (const Case& c : cases) {
    std::vector<double> engine_ns, loop_ns;
    for (int rep = 0; rep < reps; ++rep) {
      uint64_t a = 0, b = 0;
      engine_ns.push_back(Time(records, c.engine, &a));
      loop_ns.push_back(Time(records, c.loop, &b));
      if (a != b) {
        std::fprintf(stderr, "%s: checksums differ (engine %llu, loop %llu)\n", c.name.c_str(),
                     static_cast<unsigned long long>(a), static_cast<unsigned long long>(b));
        ++failures;
      }
      std::printf("%s: engine %.2f ns/record, loop %.2f ns/record\n", c.name.c_str(),
                  engine_ns.back(), loop_ns.back());
    }
    const double e = Median(engine_ns);
    const double l = Median(loop_ns);
    absl::StrAppend(&lines, "BENCH expr_", c.name, " ns_per_record=", absl::StrFormat("%.2f", e),
                    " loop_ns_per_record=", absl::StrFormat("%.2f", l),
                    " loop_ratio=", absl::StrFormat("%.2f", e / l), "\n");
  }
  std::printf("reproduce: build/bin/expr_benchmark --records %lld --reps %d\n%s",
              static_cast<long long>(records), reps, lines.c_str());
  return failures == 0 ? 0 : 1;
}
