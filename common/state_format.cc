#include "common/state_format.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace sluice {

StateOrigin::StateOrigin() : text_("unnamed state") {}

StateOrigin::StateOrigin(absl::string_view job_id, absl::string_view operator_id,
                         absl::string_view operator_type, int subtask,
                         int64_t restored_checkpoint_id)
    : text_(absl::StrCat("job ", job_id, ", operator '", operator_id, "' (type ", operator_type,
                         "), subtask ", subtask,
                         restored_checkpoint_id > 0
                             ? absl::StrCat(", restored from checkpoint ", restored_checkpoint_id)
                             : std::string(", not restored from a checkpoint"))) {}

absl::Status StateOrigin::DataLoss(absl::string_view what) const {
  return absl::DataLossError(absl::StrCat("cannot decode operator state (", text_, "): ", what));
}

std::string NewerStateVersionText(absl::string_view what, int found, int current) {
  return absl::StrCat(what, " has format version ", found,
                      ", newer than this build reads (up to ", current,
                      "): restore it with the release that wrote it, or a later one");
}

absl::StatusOr<int> ReadStateVersion(const StateOrigin& origin, absl::string_view what,
                                     absl::string_view entry, int current,
                                     absl::string_view* body) {
  if (entry.empty()) return origin.DataLoss(absl::StrCat(what, " is empty (truncated)"));
  const int version = static_cast<uint8_t>(entry[0]);
  if (version == 0) return origin.DataLoss(absl::StrCat(what, " has format version 0, which is not a version"));
  if (version > current) return origin.DataLoss(NewerStateVersionText(what, version, current));
  *body = entry.substr(1);
  return version;
}

absl::StatusOr<int> ReadTextStateVersion(const StateOrigin& origin, absl::string_view what,
                                         absl::string_view entry, int current,
                                         absl::string_view* body) {
  if (!entry.empty() && static_cast<uint8_t>(entry[0]) >= 0x20) {
    *body = entry;
    return 0;
  }
  return ReadStateVersion(origin, what, entry, current, body);
}

std::string WatermarkStateEntry(int version, int64_t watermark) {
  std::string entry(1, static_cast<char>(version));
  PutFixed64LE(static_cast<uint64_t>(watermark), &entry);
  return entry;
}

absl::Status ReadWatermarkStateEntry(const StateOrigin& origin, absl::string_view what,
                                     absl::string_view entry, int current, int64_t* watermark) {
  absl::string_view body;
  SLUICE_ASSIGN_OR_RETURN(int version, ReadStateVersion(origin, what, entry, current, &body));
  (void)version;
  if (body.size() != 8) {
    return origin.DataLoss(absl::StrCat(what, " has ", entry.size(), " bytes, expected 9"));
  }
  *watermark = static_cast<int64_t>(GetFixed64LE(body.data()));
  return absl::OkStatus();
}

absl::Status ReadSmallestWatermark(const StateOrigin& origin, absl::string_view what,
                                   const std::vector<std::string>& entries, int current,
                                   int64_t* smallest) {
  bool first = true;
  for (const std::string& entry : entries) {
    int64_t wm;
    SLUICE_RETURN_IF_ERROR(ReadWatermarkStateEntry(origin, what, entry, current, &wm));
    *smallest = first ? wm : std::min(*smallest, wm);
    first = false;
  }
  return absl::OkStatus();
}

void PutBlockKey(int key_group, int64_t range, std::string* out) {
  out->resize(12);
  const uint64_t r = static_cast<uint64_t>(range) ^ (uint64_t{1} << 63);
  for (int i = 0; i < 4; ++i) (*out)[i] = static_cast<char>(static_cast<uint32_t>(key_group) >> (8 * (3 - i)));
  for (int i = 0; i < 8; ++i) (*out)[4 + i] = static_cast<char>(r >> (8 * (7 - i)));
}

bool ParseBlockKey(absl::string_view key, int* key_group, int64_t* range) {
  if (key.size() != 12) return false;
  uint32_t kg = 0;
  uint64_t r = 0;
  for (int i = 0; i < 4; ++i) kg = (kg << 8) | static_cast<uint8_t>(key[i]);
  for (int i = 4; i < 12; ++i) r = (r << 8) | static_cast<uint8_t>(key[i]);
  *key_group = static_cast<int>(kg);
  *range = static_cast<int64_t>(r ^ (uint64_t{1} << 63));
  return true;
}

}  // namespace sluice
