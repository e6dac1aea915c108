#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/state_format.h"

namespace sluice::ops {

// Pacing and split rotation shared by the generating sources (datagen, nexmark). Owned by the
// source's task thread; not thread-safe; no allocation, lock or clock read of its own.

// Paces one source subtask at its share of a source-wide rate.
class SourcePacer {
 public:
  // `rate`: records/s for the whole source (0: unlimited), shared evenly by `parallelism`
  // subtasks; the pace starts at `start_nanos`.
  SourcePacer(double rate, int parallelism, int64_t start_nanos)
      : nanos_per_record_(rate > 0 ? 1e9 * parallelism / rate : 0), start_nanos_(start_nanos) {}

  SourcePacer() : SourcePacer(0, 1, 0) {}

  bool limited() const { return nanos_per_record_ > 0; }

  // Whether this subtask's record number `emitted` (from 0) is due at `now_nanos`; if not,
  // sets *due_nanos to when it is. A subtask held back (backpressure) by more than 100 ms does
  // not burst to catch up: its pace resumes from now.
  bool Ready(int64_t emitted, int64_t now_nanos, int64_t* due_nanos) {
    if (nanos_per_record_ <= 0) return true;
    int64_t due = start_nanos_ + static_cast<int64_t>(emitted * nanos_per_record_);
    if (now_nanos - due > kMaxLagNanos) {
      start_nanos_ += now_nanos - due - kMaxLagNanos;
      due = now_nanos - kMaxLagNanos;
    }
    *due_nanos = due;
    return due <= now_nanos;
  }

 private:
  static constexpr int64_t kMaxLagNanos = 100'000'000;
  double nanos_per_record_;
  int64_t start_nanos_;
};

// Moves `*current` round-robin to the first split (from `*current` on) whose `next` is below
// `limit` (< 0: no limit). Returns false when no split has records left (or there is none).
template <typename Split>
bool NextSplitWithRecords(const std::vector<Split>& splits, int64_t limit, size_t* current) {
  if (splits.empty()) return false;
  for (size_t tried = 0; tried < splits.size(); ++tried) {
    if (limit < 0 || splits[*current].next < limit) return true;
    *current = (*current + 1) % splits.size();
  }
  return false;
}

// A generating source's split as a state entry: [version 1][three int64: 8 bytes LE each]
// (datagen: base, stride, next; nexmark: first epoch, stride, next).
inline constexpr int kSplitStateVersion = 1;
inline constexpr size_t kSplitStateBytes = 3 * 8;

inline std::string EncodeSplitState(const int64_t (&v)[3]) {
  std::string entry(1, static_cast<char>(kSplitStateVersion));
  for (int64_t x : v) PutFixed64LE(static_cast<uint64_t>(x), &entry);
  return entry;
}

// Decodes a split entry of `what` into v. With `format0`, an entry of exactly 24 bytes is the
// unversioned layout written before versions existed (three native int64s). kDataLoss naming
// `origin` for a newer version or an entry of the wrong size.
inline absl::Status DecodeSplitState(const StateOrigin& origin, absl::string_view what,
                                     absl::string_view entry, bool format0, int64_t (&v)[3]) {
  if (format0 && entry.size() == kSplitStateBytes) {
    std::memcpy(v, entry.data(), kSplitStateBytes);
    return absl::OkStatus();
  }
  absl::string_view body;
  absl::StatusOr<int> version = ReadStateVersion(origin, what, entry, kSplitStateVersion, &body);
  if (!version.ok()) return version.status();
  if (body.size() != kSplitStateBytes) {
    return origin.DataLoss(absl::StrCat(what, " has ", entry.size(), " bytes, expected ", 1 + kSplitStateBytes));
  }
  for (int i = 0; i < 3; ++i) v[i] = static_cast<int64_t>(GetFixed64LE(body.data() + 8 * i));
  return absl::OkStatus();
}

}  // namespace sluice::ops
