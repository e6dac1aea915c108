#include "common/testing/fault_injecting_filesystem.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/status.h"

namespace sluice::testing {

const char* FsOpName(FsOp op) {
  switch (op) {
    case FsOp::kWrite: return "write";
    case FsOp::kRead: return "read";
    case FsOp::kSyncFile: return "sync file";
    case FsOp::kSyncDir: return "sync dir";
    case FsOp::kRename: return "rename";
    case FsOp::kList: return "list";
    case FsOp::kDelete: return "delete";
    case FsOp::kDeleteRecursively: return "delete recursively";
    case FsOp::kCreateDirs: return "create dirs";
    case FsOp::kCopy: return "copy";
  }
  return "?";
}

struct FaultInjectingFileSystem::Node {
  bool dir = false;
  std::string data;          // what readers see
  std::string durable_data;  // as of the last SyncFile()
  std::map<std::string, std::shared_ptr<Node>> children;          // what readers see
  std::map<std::string, std::shared_ptr<Node>> durable_children;  // as of the last SyncDir()
};

namespace {

std::vector<std::string> Components(const std::string& path) {
  std::vector<std::string> parts;
  for (absl::string_view p : absl::StrSplit(path, '/', absl::SkipEmpty())) {
    if (p == ".") continue;
    if (p == ".." && !parts.empty()) {
      parts.pop_back();
      continue;
    }
    parts.emplace_back(p);
  }
  return parts;
}

}  // namespace

FaultInjectingFileSystem::FaultInjectingFileSystem() : root_(std::make_shared<Node>()) {
  root_->dir = true;
}

FaultInjectingFileSystem::~FaultInjectingFileSystem() = default;

void FaultInjectingFileSystem::SetHook(Hook hook) {
  absl::MutexLock lock(&mu_);
  hook_ = std::move(hook);
}

void FaultInjectingFileSystem::CrashAfter(int64_t n) {
  absl::MutexLock lock(&mu_);
  crash_after_ = n < 0 ? -1 : mutations_ + n;
}

int64_t FaultInjectingFileSystem::mutations() const {
  absl::MutexLock lock(&mu_);
  return mutations_;
}

void FaultInjectingFileSystem::PowerLoss() {
  absl::MutexLock lock(&mu_);
  crash_after_ = -1;
  // Depth first over what a crash leaves: durable entries, durable contents.
  std::vector<Node*> stack = {root_.get()};
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    if (!n->dir) {
      n->data = n->durable_data;
      continue;
    }
    n->children = n->durable_children;
    for (auto& [name, child] : n->children) stack.push_back(child.get());
  }
}

absl::Status FaultInjectingFileSystem::Before(FsOp op, const std::string& path, bool mutating,
                                              bool* crashed) {
  Hook hook;
  {
    absl::MutexLock lock(&mu_);
    if (mutating) {
      const int64_t n = mutations_++;
      if (crash_after_ >= 0 && n >= crash_after_) {
        if (crashed != nullptr) *crashed = true;
        return absl::UnavailableError(absl::StrCat("power lost before ", FsOpName(op), " ", path));
      }
    }
    hook = hook_;
  }
  return hook ? hook(op, path) : absl::OkStatus();
}

FaultInjectingFileSystem::Node* FaultInjectingFileSystem::LookupLocked(const std::string& path) const {
  Node* n = root_.get();
  for (const std::string& c : Components(path)) {
    if (!n->dir) return nullptr;
    auto it = n->children.find(c);
    if (it == n->children.end()) return nullptr;
    n = it->second.get();
  }
  return n;
}

absl::StatusOr<FaultInjectingFileSystem::Node*> FaultInjectingFileSystem::ParentLocked(
    const std::string& path, std::string* name) const {
  std::vector<std::string> parts = Components(path);
  if (parts.empty()) return absl::InvalidArgumentError(absl::StrCat("no file name in '", path, "'"));
  *name = parts.back();
  Node* n = root_.get();
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    auto it = n->children.find(parts[i]);
    if (it == n->children.end() || !it->second->dir) {
      return absl::NotFoundError(absl::StrCat("no directory for ", path));
    }
    n = it->second.get();
  }
  return n;
}

absl::StatusOr<FaultInjectingFileSystem::Node*> FaultInjectingFileSystem::CreateFileLocked(const std::string& path) {
  std::string name;
  SLUICE_ASSIGN_OR_RETURN(Node* parent, ParentLocked(path, &name));
  std::shared_ptr<Node>& f = parent->children[name];
  if (f != nullptr && f->dir) return absl::UnavailableError(absl::StrCat(path, " is a directory"));
  if (f == nullptr) f = std::make_shared<Node>();
  return f.get();
}

absl::Status FaultInjectingFileSystem::WriteFile(const std::string& path, absl::string_view data) {
  bool crashed = false;
  absl::Status before = Before(FsOp::kWrite, path, true, &crashed);
  if (crashed) return before;
  absl::MutexLock lock(&mu_);
  absl::StatusOr<Node*> f = CreateFileLocked(path);
  if (!f.ok()) return f.status();
  (*f)->data = std::string(before.ok() ? data : data.substr(0, data.size() / 2));
  return before;
}

absl::StatusOr<std::string> FaultInjectingFileSystem::ReadFile(const std::string& path) {
  if (absl::Status s = Before(FsOp::kRead, path, false); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  Node* n = LookupLocked(path);
  if (n == nullptr || n->dir) return absl::NotFoundError(absl::StrCat("no file ", path));
  return n->data;
}

absl::Status FaultInjectingFileSystem::SyncFile(const std::string& path) {
  if (absl::Status s = Before(FsOp::kSyncFile, path, true); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  Node* n = LookupLocked(path);
  if (n == nullptr || n->dir) return absl::NotFoundError(absl::StrCat("no file ", path));
  n->durable_data = n->data;
  return absl::OkStatus();
}

absl::Status FaultInjectingFileSystem::SyncDir(const std::string& dir) {
  if (absl::Status s = Before(FsOp::kSyncDir, dir, true); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  Node* n = LookupLocked(dir);
  if (n == nullptr || !n->dir) return absl::NotFoundError(absl::StrCat("no directory ", dir));
  n->durable_children = n->children;
  return absl::OkStatus();
}

absl::Status FaultInjectingFileSystem::Rename(const std::string& from, const std::string& to) {
  if (absl::Status s = Before(FsOp::kRename, to, true); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  std::string from_name, to_name;
  absl::StatusOr<Node*> from_dir = ParentLocked(from, &from_name);
  if (!from_dir.ok()) return from_dir.status();
  absl::StatusOr<Node*> to_dir = ParentLocked(to, &to_name);
  if (!to_dir.ok()) return to_dir.status();
  auto it = (*from_dir)->children.find(from_name);
  if (it == (*from_dir)->children.end()) return absl::NotFoundError(absl::StrCat("no file ", from));
  auto target = (*to_dir)->children.find(to_name);
  if (target != (*to_dir)->children.end() && target->second->dir != it->second->dir) {
    return absl::UnavailableError(absl::StrCat("cannot rename ", from, " over ", to));
  }
  std::shared_ptr<Node> node = it->second;
  (*from_dir)->children.erase(it);
  (*to_dir)->children[to_name] = std::move(node);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> FaultInjectingFileSystem::ListDir(const std::string& dir) {
  if (absl::Status s = Before(FsOp::kList, dir, false); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  Node* n = LookupLocked(dir);
  if (n == nullptr || !n->dir) return absl::NotFoundError(absl::StrCat("no directory ", dir));
  std::vector<std::string> names;
  for (const auto& [name, child] : n->children) names.push_back(name);
  return names;
}

absl::Status FaultInjectingFileSystem::DeleteFile(const std::string& path) {
  if (absl::Status s = Before(FsOp::kDelete, path, true); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  std::string name;
  absl::StatusOr<Node*> parent = ParentLocked(path, &name);
  if (!parent.ok()) return parent.status();
  auto it = (*parent)->children.find(name);
  if (it == (*parent)->children.end() || it->second->dir) {
    return absl::NotFoundError(absl::StrCat("no file ", path));
  }
  (*parent)->children.erase(it);
  return absl::OkStatus();
}

absl::Status FaultInjectingFileSystem::DeleteRecursively(const std::string& path) {
  if (absl::Status s = Before(FsOp::kDeleteRecursively, path, true); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  std::string name;
  absl::StatusOr<Node*> parent = ParentLocked(path, &name);
  if (parent.ok()) (*parent)->children.erase(name);
  return absl::OkStatus();
}

absl::Status FaultInjectingFileSystem::CreateDirs(const std::string& dir) {
  if (absl::Status s = Before(FsOp::kCreateDirs, dir, true); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  Node* n = root_.get();
  for (const std::string& c : Components(dir)) {
    std::shared_ptr<Node>& child = n->children[c];
    if (child == nullptr) {
      child = std::make_shared<Node>();
      child->dir = true;
    } else if (!child->dir) {
      return absl::UnavailableError(absl::StrCat("cannot create directory ", dir, ": ", c, " is a file"));
    }
    n = child.get();
  }
  return absl::OkStatus();
}

absl::Status FaultInjectingFileSystem::CopyFile(const std::string& from, const std::string& to) {
  if (absl::Status s = Before(FsOp::kCopy, to, true); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  Node* src = LookupLocked(from);
  if (src == nullptr || src->dir) return absl::NotFoundError(absl::StrCat("no file ", from));
  absl::StatusOr<Node*> f = CreateFileLocked(to);
  if (!f.ok()) return f.status();
  (*f)->data = src->data;
  return absl::OkStatus();
}

bool FaultInjectingFileSystem::Exists(const std::string& path) {
  absl::MutexLock lock(&mu_);
  return LookupLocked(path) != nullptr;
}

bool FaultInjectingFileSystem::IsDirectory(const std::string& path) {
  absl::MutexLock lock(&mu_);
  Node* n = LookupLocked(path);
  return n != nullptr && n->dir;
}

}  // namespace sluice::testing
