#pragma once

#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "common/metrics.h"

namespace httplib {
class Server;
}

namespace sluice {

// Serves /healthz ("ok") and /metrics (Prometheus text from a registry) over HTTP on its own
// thread. Start() binds (port 0 picks a free port); Stop() shuts down and joins. Not
// copyable; Start/Stop from one thread.
class HttpStatusServer {
 public:
  explicit HttpStatusServer(MetricsRegistry* registry);
  ~HttpStatusServer();

  // Binds `host:port` and starts serving. Returns the bound port.
  absl::StatusOr<int> Start(const std::string& host, int port);
  void Stop();

 private:
  MetricsRegistry* registry_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
};

}  // namespace sluice
