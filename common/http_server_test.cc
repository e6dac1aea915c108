#include "common/http_server.h"

#include <arpa/inet.h>
#include <poll.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <vector>

#include "common/metrics.h"
#include "common/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "httplib.h"

namespace sluice {
namespace {

// Opens `n` connections to 127.0.0.1:port that send nothing: connects them all at once (a
// full accept queue drops handshakes, which are retried after 1 s: in parallel, not in turn),
// then waits until each is established. Returns the sockets; fewer on failure.
std::vector<int> ConnectIdle(int port, int n) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::vector<int> fds;
  for (int i = 0; i < n; ++i) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (fd < 0) break;
    fds.push_back(fd);
    if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 && errno != EINPROGRESS) {
      break;
    }
  }
  std::vector<int> established;
  for (int fd : fds) {
    pollfd p{fd, POLLOUT, 0};
    int error = 0;
    socklen_t len = sizeof(error);
    if (poll(&p, 1, /*timeout_ms=*/30000) == 1 &&
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len) == 0 && error == 0) {
      established.push_back(fd);
    } else {
      close(fd);
    }
  }
  return established;
}

// A liveness probe must get its answer while idle connections are held open: they may not
// take every thread that serves requests.
TEST(HttpStatusServerTest, HealthzAnswersWhileTwoHundredIdleConnectionsAreHeld) {
  MetricsRegistry registry;
  HttpStatusServer server(&registry);
  auto port = server.Start("127.0.0.1", 0);
  ASSERT_OK(port);
  std::vector<int> idle = ConnectIdle(*port, 200);
  ASSERT_EQ(idle.size(), 200u);
  httplib::Client probe("127.0.0.1", *port);
  probe.set_connection_timeout(5, 0);
  probe.set_read_timeout(5, 0);
  auto health = probe.Get("/healthz");
  for (int fd : idle) close(fd);
  ASSERT_TRUE(health) << "no answer: " << httplib::to_string(health.error());
  EXPECT_EQ(health->status, 200);
  EXPECT_EQ(health->body, "ok\n");
  server.Stop();
}

}  // namespace
}  // namespace sluice

namespace sluice {
namespace {

TEST(HttpStatusServerTest, ReadyzFollowsTheReadinessProbe) {
  MetricsRegistry registry;
  HttpStatusServer server(&registry);
  std::atomic<bool> ready{false};
  server.SetReadinessProbe([&ready]() -> absl::Status {
    if (ready.load()) return absl::OkStatus();
    return absl::UnavailableError("not registered with coordinator sluice-coordinator:6123 yet");
  });
  auto port = server.Start("127.0.0.1", 0);
  ASSERT_OK(port);
  httplib::Client client("127.0.0.1", *port);
  auto res = client.Get("/readyz");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 503);
  EXPECT_EQ(res->body, "not ready: not registered with coordinator sluice-coordinator:6123 yet\n");
  res = client.Get("/healthz");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);  // alive all the same
  ready = true;
  res = client.Get("/readyz");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->body, "ready\n");
  server.Stop();
}

}  // namespace
}  // namespace sluice
