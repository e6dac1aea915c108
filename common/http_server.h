#pragma once

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "common/metrics.h"

namespace httplib {
class Server;
}

namespace sluice {

// Serves /healthz ("ok": the process is alive), /readyz (200 "ready" when the readiness probe
// returns OK, else 503 with its message: Kubernetes' readiness) and /metrics (Prometheus text
// from a registry) over HTTP on its own threads. Start() binds (port 0 picks a free port);
// Stop() shuts down and joins. Not copyable; Start/Stop from one thread. The probe is called
// on an HTTP thread and must be thread-safe and quick.
class HttpStatusServer {
 public:
  explicit HttpStatusServer(MetricsRegistry* registry);
  ~HttpStatusServer();

  // REQUIRES: before Start(). Without a probe, /readyz answers like /healthz.
  void SetReadinessProbe(std::function<absl::Status()> probe) { readiness_ = std::move(probe); }

  // Binds `host:port` and starts serving. Returns the bound port.
  absl::StatusOr<int> Start(const std::string& host, int port);
  void Stop();

 private:
  MetricsRegistry* registry_;
  std::function<absl::Status()> readiness_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
};

}  // namespace sluice
