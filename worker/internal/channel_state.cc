#include "worker/internal/channel_state.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "common/process.h"

namespace sluice::worker {

int64_t ChannelStateBytes(const proto::ChannelStateFile& file) {
  int64_t bytes = 0;
  for (const auto& item : file.items()) bytes += static_cast<int64_t>(item.buffer().size());
  return bytes;
}

absl::Status WriteChannelState(const std::string& path, const proto::ChannelStateFile& file) {
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
  if (ec) return absl::UnavailableError(absl::StrCat("cannot create the directory of ", path, ": ", ec.message()));
  return WriteFileAtomically(path, file.SerializeAsString());
}

absl::StatusOr<proto::ChannelStateFile> ReadChannelState(const std::string& path,
                                                         int64_t checkpoint_id, int vertex,
                                                         int subtask) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::DataLossError(absl::StrCat("in-flight data ", path, " of checkpoint ", checkpoint_id, " is missing"));
  std::stringstream bytes;
  bytes << in.rdbuf();
  proto::ChannelStateFile file;
  if (!file.ParseFromString(bytes.str())) {
    return absl::DataLossError(absl::StrCat("in-flight data ", path, " of checkpoint ", checkpoint_id,
                                            " cannot be decoded"));
  }
  if (file.format_version() != kChannelStateFormat) {
    return absl::DataLossError(absl::StrCat("in-flight data ", path, " has format version ",
                                            file.format_version(), "; this worker reads ",
                                            kChannelStateFormat));
  }
  if (file.checkpoint_id() != checkpoint_id || file.vertex() != vertex || file.subtask() != subtask) {
    return absl::DataLossError(absl::StrCat("in-flight data ", path, " belongs to checkpoint ",
                                            file.checkpoint_id(), " subtask ", file.vertex(), "-",
                                            file.subtask(), ", not checkpoint ", checkpoint_id,
                                            " subtask ", vertex, "-", subtask));
  }
  return file;
}

}  // namespace sluice::worker
