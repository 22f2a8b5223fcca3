// The metrics server in an EventLoop of its own, with clients in the same thread: idle
// connections make room for a scraper, a request trickled past the header timeout is cut off,
// and libmicrohttpd adds no thread.
#include "supervisor/metrics_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "base/io.h"

namespace cellhouse::supervisor {
namespace {

size_t Threads() {
  auto tasks = ListDirectory("/proc/self/task");
  return tasks ? tasks->size() : 0;
}

class MetricsServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto loop = EventLoop::Create(clock_);
    ASSERT_TRUE(loop);
    loop_ = std::move(*loop);
    UniqueFd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    ASSERT_TRUE(listener.valid());
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    ASSERT_EQ(::listen(listener.get(), 128), 0);
    socklen_t len = sizeof(addr);
    ASSERT_EQ(::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&addr), &len), 0);
    port_ = ntohs(addr.sin_port);
    threads_before_ = Threads();
    server_ = std::make_unique<MetricsServer>(*loop_, [] { return std::string("up 1\n"); });
    ASSERT_TRUE(server_->AddListener(std::move(listener)));
  }

  UniqueFd Connect() {
    UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(port_);
    int rc = ::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    EXPECT_TRUE(rc == 0 || errno == EINPROGRESS);
    Pump();
    return fd;
  }

  void Pump(int rounds = 5) {
    for (int i = 0; i < rounds; ++i) ASSERT_TRUE(loop_->RunOnce(2));
  }

  // What the server sent, until it closed (or nothing more came for a while).
  std::string ReadAll(int fd, bool* closed) {
    std::string got;
    *closed = false;
    for (int i = 0; i < 200 && !*closed; ++i) {
      Pump(1);
      char buf[4096];
      ssize_t n = ::recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
      if (n > 0) got.append(buf, static_cast<size_t>(n));
      if (n == 0 || (n < 0 && errno != EAGAIN)) *closed = true;
    }
    return got;
  }

  FakeClock clock_{1'000'000'000};
  std::unique_ptr<EventLoop> loop_;
  std::unique_ptr<MetricsServer> server_;
  uint16_t port_ = 0;
  size_t threads_before_ = 0;
};

TEST_F(MetricsServerTest, SixtyFourIdleConnectionsDoNotKeepAScrapeOut) {
  std::vector<UniqueFd> idle;
  idle.reserve(64);
  for (int i = 0; i < 64; ++i) idle.push_back(Connect());
  Pump(20);
  // No more than the per-peer cap stays open from one address.
  EXPECT_LE(server_->connections(), MetricsServerOptions{}.max_connections_per_peer);
  UniqueFd scrape = Connect();
  ASSERT_TRUE(WriteFull(scrape.get(), std::string_view("GET /metrics HTTP/1.0\r\n\r\n"), "get"));
  bool closed = false;
  std::string answer = ReadAll(scrape.get(), &closed);
  EXPECT_TRUE(closed);
  EXPECT_EQ(answer.rfind("HTTP/1.0 200 OK\r\n", 0), 0u) << answer;
  EXPECT_NE(answer.find("\r\n\r\nup 1\n"), std::string::npos) << answer;
  EXPECT_EQ(Threads(), threads_before_) << "libmicrohttpd started a thread";
}

TEST_F(MetricsServerTest, ARequestNotCompleteWithinTheHeaderTimeoutIsCutOff) {
  UniqueFd slow = Connect();
  ASSERT_TRUE(WriteFull(slow.get(), std::string_view("GET /metrics HTTP/1.0\r\nX-Slow: "), "h"));
  Pump();
  EXPECT_EQ(server_->connections(), 1u);
  clock_.Advance((MetricsServerOptions{}.header_timeout_ms - 1) * kNanosPerMilli);
  Pump();
  EXPECT_EQ(server_->connections(), 1u);
  clock_.Advance(2 * kNanosPerMilli);
  bool closed = false;
  std::string answer = ReadAll(slow.get(), &closed);
  EXPECT_TRUE(closed);
  EXPECT_EQ(server_->connections(), 0u);
}

TEST_F(MetricsServerTest, OnlyGetAndHeadAreServed) {
  UniqueFd post = Connect();
  ASSERT_TRUE(WriteFull(post.get(),
                        std::string_view("POST /metrics HTTP/1.1\r\nHost: x\r\n"
                                         "Content-Length: 0\r\n\r\n"),
                        "post"));
  bool closed = false;
  std::string answer = ReadAll(post.get(), &closed);
  EXPECT_NE(answer.find(" 405 "), std::string::npos) << answer;
  EXPECT_NE(answer.find("Allow: GET, HEAD"), std::string::npos) << answer;
}

}  // namespace
}  // namespace cellhouse::supervisor
