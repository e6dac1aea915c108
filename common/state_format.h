#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace sluice {

// Where a piece of operator state belongs: job, operator (id and type), subtask and the
// checkpoint it was restored from. Every kDataLoss error about state that cannot be decoded
// names it, in one format (DataLoss()). Built once per operator subtask (the task makes one
// for each operator's context and state backend), never per record; copyable, immutable.
class StateOrigin {
 public:
  // "unnamed state": for tests and tools that have no job.
  StateOrigin();
  // `restored_checkpoint_id` 0: the subtask started without restoring (state written by this
  // run only).
  StateOrigin(absl::string_view job_id, absl::string_view operator_id,
              absl::string_view operator_type, int subtask, int64_t restored_checkpoint_id);

  // "job J, operator 'o' (type t), subtask S, restored from checkpoint C" (or "..., not
  // restored from a checkpoint").
  const std::string& text() const { return text_; }

  // kDataLoss "cannot decode operator state (<text()>): <what>". The task fails with it (and
  // restarts per the job's restart strategy); state is never silently reset.
  absl::Status DataLoss(absl::string_view what) const;

 private:
  std::string text_;
};

// Format versions of state entries: [version: 1 byte][body].
//
// Reads the version byte of `entry` (named `what` in errors) and sets *body to the rest.
// kDataLoss through `origin` when the entry is empty, its version is 0 or newer than
// `current` (written by a later release: restore it with that release).
absl::StatusOr<int> ReadStateVersion(const StateOrigin& origin, absl::string_view what,
                                     absl::string_view entry, int current,
                                     absl::string_view* body);

// As ReadStateVersion, for formats whose unversioned form (format 0, before versions existed)
// is text, which never starts with a byte below 0x20: such an entry is format 0 and *body is
// all of it. Version bytes are therefore below 0x20.
absl::StatusOr<int> ReadTextStateVersion(const StateOrigin& origin, absl::string_view what,
                                         absl::string_view entry, int current,
                                         absl::string_view* body);

// The message of a version newer than this build reads, for formats that check it themselves.
std::string NewerStateVersionText(absl::string_view what, int found, int current);

// Fixed-width little-endian integers, the byte order of state entries whatever the machine's.
inline void PutFixed64LE(uint64_t v, std::string* out) {
  for (int b = 0; b < 8; ++b) out->push_back(static_cast<char>(v >> (8 * b)));
}
// REQUIRES: 8 bytes at `p`.
inline uint64_t GetFixed64LE(const char* p) {
  uint64_t v = 0;
  for (int b = 0; b < 8; ++b) v |= static_cast<uint64_t>(static_cast<uint8_t>(p[b])) << (8 * b);
  return v;
}

// The backend key of a block of an operator's in-memory keys (aggregate_blocks, a join's
// row_blocks): its key group (4 bytes) and key range (8 bytes, sign bit flipped, so ranges sort
// as integers), big-endian. Replaces *out.
void PutBlockKey(int key_group, int64_t range, std::string* out);
// The key group and range of a block key; false unless `key` is 12 bytes.
bool ParseBlockKey(absl::string_view key, int* key_group, int64_t* range);

// The watermark an operator keeps as union operator state, so that after a restore records are
// judged late against the smallest watermark the old subtasks had seen: one entry a subtask,
// [version: 1 byte][watermark: int64 little-endian].
std::string WatermarkStateEntry(int version, int64_t watermark);
// Reads one such entry (named `what` in errors) into *watermark; kDataLoss through `origin`
// when its version is not one ReadStateVersion accepts or its body is not 8 bytes.
absl::Status ReadWatermarkStateEntry(const StateOrigin& origin, absl::string_view what,
                                     absl::string_view entry, int current, int64_t* watermark);
// The smallest watermark of `entries` into *smallest; *smallest is left alone when there are
// none. kDataLoss as ReadWatermarkStateEntry.
absl::Status ReadSmallestWatermark(const StateOrigin& origin, absl::string_view what,
                                   const std::vector<std::string>& entries, int current,
                                   int64_t* smallest);

}  // namespace sluice
