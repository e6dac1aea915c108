#include "common/process.h"

#include <pthread.h>
#include <signal.h>

#include "common/filesystem.h"

namespace sluice {

namespace {
sigset_t TerminationSignals() {
  sigset_t s;
  sigemptyset(&s);
  sigaddset(&s, SIGTERM);
  sigaddset(&s, SIGINT);
  return s;
}
}  // namespace

void BlockTerminationSignals() {
  sigset_t s = TerminationSignals();
  pthread_sigmask(SIG_BLOCK, &s, nullptr);
  signal(SIGPIPE, SIG_IGN);
}

int WaitForTerminationSignal() {
  sigset_t s = TerminationSignals();
  int sig = 0;
  sigwait(&s, &sig);
  return sig;
}

absl::Status WriteFileAtomically(const std::string& path, const std::string& content) {
  return WriteFileDurably(*FileSystem::Default(), path, content);
}

}  // namespace sluice
