#include "common/file_util.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"

namespace sluice {

namespace {

absl::Status Errno(const std::string& what, int err) {
  std::string text = absl::StrCat(what, ": ", std::strerror(err));
  if (err == EEXIST) return absl::AlreadyExistsError(text);
  if (err == ENOENT) return absl::NotFoundError(text);
  return absl::UnavailableError(text);
}

std::string DirOf(const std::string& path) {
  std::string dir = std::filesystem::path(path).parent_path().string();
  return dir.empty() ? "." : dir;
}

}  // namespace

absl::Status SyncDir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Errno(absl::StrCat("cannot open directory ", dir), errno);
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) return Errno(absl::StrCat("cannot sync directory ", dir), err);
  return absl::OkStatus();
}

absl::Status SyncFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Errno(absl::StrCat("cannot open ", path), errno);
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) return Errno(absl::StrCat("cannot sync ", path), err);
  return absl::OkStatus();
}

absl::Status RenameNoReplace(const std::string& from, const std::string& to) {
  if (::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_NOREPLACE) != 0) {
    const int err = errno;
    if (err != EINVAL && err != ENOSYS) {
      return Errno(absl::StrCat("cannot rename ", from, " to ", to), err);
    }
    // The filesystem has no RENAME_NOREPLACE: link() refuses an existing target too. A crash
    // between link and unlink leaves both names on one inode, which SameFile() recognises.
    if (::link(from.c_str(), to.c_str()) != 0) {
      return Errno(absl::StrCat("cannot link ", from, " to ", to), errno);
    }
    if (::unlink(from.c_str()) != 0) return Errno(absl::StrCat("cannot remove ", from), errno);
  }
  return SyncDir(DirOf(to));
}

bool SameFile(const std::string& a, const std::string& b) {
  struct stat sa, sb;
  if (::stat(a.c_str(), &sa) != 0 || ::stat(b.c_str(), &sb) != 0) return false;
  return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

}  // namespace sluice
