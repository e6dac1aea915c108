#include "common/http_server.h"

#include "absl/strings/str_cat.h"
#include "httplib.h"

namespace sluice {

HttpStatusServer::HttpStatusServer(MetricsRegistry* registry)
    : registry_(registry), server_(std::make_unique<httplib::Server>()) {}

HttpStatusServer::~HttpStatusServer() { Stop(); }

absl::StatusOr<int> HttpStatusServer::Start(const std::string& host, int port) {
  server_->Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("ok\n", "text/plain");
  });
  server_->Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(registry_->RenderPrometheus(), "text/plain; version=0.0.4");
  });
  int bound = port == 0 ? server_->bind_to_any_port(host) : (server_->bind_to_port(host, port) ? port : -1);
  if (bound < 0) {
    return absl::UnavailableError(absl::StrCat("cannot bind HTTP status port ", host, ":", port));
  }
  thread_ = std::thread([this] { server_->listen_after_bind(); });
  return bound;
}

void HttpStatusServer::Stop() {
  if (thread_.joinable()) {
    server_->stop();
    thread_.join();
  }
}

}  // namespace sluice
