#include "common/http_server.h"

#include <deque>
#include <functional>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "httplib.h"

namespace sluice {
namespace {

// Most connections served at once; more wait for a thread.
constexpr size_t kMaxConnectionThreads = 256;
// An open connection without a request is closed after this long (the first request included),
// a request that stops arriving or a reply that is not read after kIoTimeoutSeconds.
constexpr time_t kKeepAliveTimeoutSeconds = 1;
constexpr time_t kIoTimeoutSeconds = 2;

// httplib's task queue for HttpStatusServer: each accepted connection gets a thread at once,
// started on demand up to kMaxConnectionThreads and kept for later connections until
// shutdown(), which runs what is queued and joins them all. httplib's fixed ThreadPool (8
// threads here) lets 8 idle connections hold every thread while /healthz waits behind them; here
// an idle connection holds only its own thread, for at most the keep-alive timeout.
// Thread-safe; httplib's accept thread calls enqueue() and, at the end, shutdown().
class ConnectionThreads final : public httplib::TaskQueue {
 public:
  explicit ConnectionThreads(size_t max_threads) : max_threads_(max_threads) {}
  ~ConnectionThreads() override { shutdown(); }

  void enqueue(std::function<void()> fn) override {
    absl::MutexLock lock(&mu_);
    tasks_.push_back(std::move(fn));
    if (tasks_.size() > idle_ && threads_.size() < max_threads_) {
      threads_.emplace_back([this] { Run(); });
    }
  }

  void shutdown() override {
    std::vector<std::thread> threads;
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
      threads.swap(threads_);
    }
    for (auto& t : threads) t.join();
  }

 private:
  bool HasTaskOrStopping() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !tasks_.empty() || stopping_;
  }

  void Run() {
    while (true) {
      std::function<void()> task;
      {
        absl::MutexLock lock(&mu_);
        ++idle_;
        mu_.Await(absl::Condition(this, &ConnectionThreads::HasTaskOrStopping));
        --idle_;
        if (tasks_.empty()) return;  // stopping, nothing left to run
        task = std::move(tasks_.front());
        tasks_.pop_front();
      }
      task();
    }
  }

  const size_t max_threads_;

  absl::Mutex mu_;
  std::deque<std::function<void()>> tasks_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> threads_ ABSL_GUARDED_BY(mu_);
  size_t idle_ ABSL_GUARDED_BY(mu_) = 0;  // threads waiting for a task
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

HttpStatusServer::HttpStatusServer(MetricsRegistry* registry)
    : registry_(registry), server_(std::make_unique<httplib::Server>()) {
  server_->new_task_queue = [] { return new ConnectionThreads(kMaxConnectionThreads); };
  server_->set_keep_alive_timeout(kKeepAliveTimeoutSeconds);
  server_->set_read_timeout(kIoTimeoutSeconds, 0);
  server_->set_write_timeout(kIoTimeoutSeconds, 0);
}

HttpStatusServer::~HttpStatusServer() { Stop(); }

absl::StatusOr<int> HttpStatusServer::Start(const std::string& host, int port) {
  server_->Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("ok\n", "text/plain");
  });
  server_->Get("/readyz", [this](const httplib::Request&, httplib::Response& res) {
    absl::Status ready = readiness_ ? readiness_() : absl::OkStatus();
    if (ready.ok()) {
      res.set_content("ready\n", "text/plain");
    } else {
      res.status = 503;
      res.set_content(absl::StrCat("not ready: ", ready.message(), "\n"), "text/plain");
    }
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
