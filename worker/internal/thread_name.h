#pragma once

#include <pthread.h>

#include <algorithm>
#include <string>

namespace sluice::worker {

// Names the calling thread `name` (Linux keeps its first 15 characters), so that top -H, perf
// and /proc/<pid>/task/*/comm tell a worker's threads apart: a thread otherwise inherits its
// creator's name (a task thread a gRPC callback thread's).
inline void NameThisThread(std::string name) {
  name.resize(std::min<size_t>(name.size(), 15));
  pthread_setname_np(pthread_self(), name.c_str());
}

}  // namespace sluice::worker
