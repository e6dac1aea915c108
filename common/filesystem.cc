#include "common/filesystem.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status.h"

namespace sluice {

namespace {

absl::Status ErrnoStatus(absl::string_view what, const std::string& path, int err) {
  std::string text = absl::StrCat(what, " ", path, ": ", std::strerror(err));
  if (err == ENOENT) return absl::NotFoundError(text);
  if (err == ENOSPC || err == EDQUOT) return absl::ResourceExhaustedError(text);
  return absl::UnavailableError(text);
}

absl::Status FsStatus(absl::string_view what, const std::string& path, const std::error_code& ec) {
  return ErrnoStatus(what, path, ec.value());
}

class PosixFileSystem final : public FileSystem {
 public:
  absl::Status WriteFile(const std::string& path, absl::string_view data) override {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return ErrnoStatus("cannot create", path, errno);
    size_t done = 0;
    while (done < data.size()) {
      ssize_t n = ::write(fd, data.data() + done, data.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        const int err = n < 0 ? errno : ENOSPC;
        ::close(fd);
        return ErrnoStatus("cannot write", path, err);
      }
      done += static_cast<size_t>(n);
    }
    if (::close(fd) != 0) return ErrnoStatus("cannot write", path, errno);
    return absl::OkStatus();
  }

  absl::StatusOr<std::string> ReadFile(const std::string& path) override {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ErrnoStatus("cannot open", path, errno);
    std::string out;
    char buf[64 * 1024];
    while (true) {
      ssize_t n = ::read(fd, buf, sizeof(buf));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        const int err = errno;
        ::close(fd);
        return ErrnoStatus("cannot read", path, err);
      }
      if (n == 0) break;
      out.append(buf, static_cast<size_t>(n));
    }
    ::close(fd);
    return out;
  }

  absl::Status SyncFile(const std::string& path) override { return sluice::SyncFile(path); }
  absl::Status SyncDir(const std::string& dir) override { return sluice::SyncDir(dir); }

  absl::Status Rename(const std::string& from, const std::string& to) override {
    if (std::rename(from.c_str(), to.c_str()) != 0) {
      return ErrnoStatus(absl::StrCat("cannot rename to ", to, ":"), from, errno);
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<std::string>> ListDir(const std::string& dir) override {
    DIR* d = ::opendir(dir.c_str());
    if (d == nullptr) return ErrnoStatus("cannot list", dir, errno);
    std::vector<std::string> names;
    while (struct dirent* e = ::readdir(d)) {
      const absl::string_view name = e->d_name;
      if (name != "." && name != "..") names.emplace_back(name);
    }
    ::closedir(d);
    std::sort(names.begin(), names.end());
    return names;
  }

  absl::Status DeleteFile(const std::string& path) override {
    if (::unlink(path.c_str()) != 0) return ErrnoStatus("cannot remove", path, errno);
    return absl::OkStatus();
  }

  absl::Status DeleteRecursively(const std::string& path) override {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
    if (ec) return FsStatus("cannot remove", path, ec);
    return absl::OkStatus();
  }

  absl::Status CreateDirs(const std::string& dir) override {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) return FsStatus("cannot create directory", dir, ec);
    return absl::OkStatus();
  }

  absl::Status CopyFile(const std::string& from, const std::string& to) override {
    std::error_code ec;
    std::filesystem::copy_file(from, to, std::filesystem::copy_options::overwrite_existing, ec);
    if (ec) return FsStatus(absl::StrCat("cannot copy to ", to, ":"), from, ec);
    return absl::OkStatus();
  }

  bool Exists(const std::string& path) override {
    struct stat st;
    return ::stat(path.c_str(), &st) == 0;
  }

  bool IsDirectory(const std::string& path) override {
    struct stat st;
    return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
  }
};

}  // namespace

FileSystem* FileSystem::Default() {
  static FileSystem* fs = new PosixFileSystem();
  return fs;
}

std::string DirName(const std::string& path) {
  std::string dir = std::filesystem::path(path).parent_path().string();
  return dir.empty() ? "." : dir;
}

std::string JoinPath(absl::string_view dir, absl::string_view name) {
  if (dir.empty()) return std::string(name);
  if (dir.back() == '/') return absl::StrCat(dir, name);
  return absl::StrCat(dir, "/", name);
}

absl::Status CreateDirsDurably(FileSystem& fs, const std::string& dir) {
  // Outermost missing directory first, each made durable in its parent.
  std::vector<std::string> missing;
  for (std::filesystem::path p(dir); !p.empty() && !fs.Exists(p.string()); p = p.parent_path()) {
    missing.push_back(p.string());
    if (p == p.parent_path()) break;
  }
  for (auto it = missing.rbegin(); it != missing.rend(); ++it) {
    SLUICE_RETURN_IF_ERROR(fs.CreateDirs(*it));
    SLUICE_RETURN_IF_ERROR(fs.SyncDir(DirName(*it)));
  }
  return absl::OkStatus();
}

absl::Status WriteFileDurably(FileSystem& fs, const std::string& path, absl::string_view data) {
  const std::string tmp = path + ".tmp";
  absl::Status s = fs.WriteFile(tmp, data);
  // The content reaches the disk before the name does.
  if (s.ok()) s = fs.SyncFile(tmp);
  if (s.ok()) s = fs.Rename(tmp, path);
  if (!s.ok()) {
    fs.DeleteFile(tmp).IgnoreError();  // best effort; a leftover is overwritten next time
    return s;
  }
  return fs.SyncDir(DirName(path));
}

absl::Status CopyFileDurably(FileSystem& fs, const std::string& from, const std::string& to) {
  const std::string tmp = to + ".tmp";
  absl::Status s = fs.CopyFile(from, tmp);
  if (s.ok()) s = fs.SyncFile(tmp);
  if (s.ok()) s = fs.Rename(tmp, to);
  if (!s.ok()) fs.DeleteFile(tmp).IgnoreError();
  return s;
}

}  // namespace sluice
