#include "supervisor/metrics_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/strings.h"

namespace cellhouse::supervisor {
namespace {
constexpr size_t kMaxRequestBytes = 8192;
constexpr int64_t kClientTimeoutNs = 5 * kNanosPerSecond;
constexpr size_t kMaxClients = 64;
}  // namespace

Result<UniqueFd> ListenTcp(const std::string& host_port, bool allow_remote) {
  size_t colon = host_port.rfind(':');
  if (colon == std::string::npos) {
    return Error("--metrics-listen " + Quote(host_port) + ": expected HOST:PORT");
  }
  std::string host = host_port.substr(0, colon);
  CH_ASSIGN_OR_RETURN(uint64_t port, ParseUint64(host_port.substr(colon + 1), "port"));
  if (port == 0 || port > 65535) return Error("--metrics-listen: port must be 1..65535");
  sockaddr_storage addr{};
  socklen_t len = 0;
  bool loopback = false;
  if (!host.empty() && host.front() == '[' && host.back() == ']') {
    auto* a6 = reinterpret_cast<sockaddr_in6*>(&addr);
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons(static_cast<uint16_t>(port));
    if (::inet_pton(AF_INET6, host.substr(1, host.size() - 2).c_str(), &a6->sin6_addr) != 1) {
      return Error("--metrics-listen: " + Quote(host) + " is not an IPv6 address");
    }
    loopback = IN6_IS_ADDR_LOOPBACK(&a6->sin6_addr);
    len = sizeof(sockaddr_in6);
  } else {
    auto* a4 = reinterpret_cast<sockaddr_in*>(&addr);
    a4->sin_family = AF_INET;
    a4->sin_port = htons(static_cast<uint16_t>(port));
    if (::inet_pton(AF_INET, host.c_str(), &a4->sin_addr) != 1) {
      return Error("--metrics-listen: " + Quote(host) + " is not an IPv4 address");
    }
    loopback = (ntohl(a4->sin_addr.s_addr) >> 24) == 127;
    len = sizeof(sockaddr_in);
  }
  if (!loopback && !allow_remote) {
    return Error("--metrics-listen " + Quote(host_port) +
                 " is not a loopback address; metrics reveal session counts by policy. Pass "
                 "--metrics-allow-remote to expose them. Refusing.");
  }
  UniqueFd fd(::socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd.valid()) return Error::FromErrno(errno, "socket for metrics");
  int one = 1;
  static_cast<void>(::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)));
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), len) != 0) {
    return Error::FromErrno(errno, "bind metrics listener " + Quote(host_port));
  }
  if (::listen(fd.get(), 16) != 0) return Error::FromErrno(errno, "listen (metrics)");
  return fd;
}

MetricsServer::~MetricsServer() {
  for (auto& [fd, client] : clients_) {
    loop_.Remove(fd);
    loop_.CancelTimer(client.timeout);
  }
  for (const UniqueFd& l : listeners_) loop_.Remove(l.get());
}

Status MetricsServer::AddListener(UniqueFd listener) {
  int fd = listener.get();
  CH_RETURN_IF_ERROR(loop_.Add(fd, EPOLLIN, [this, fd](uint32_t) { OnAccept(fd); }));
  listeners_.push_back(std::move(listener));
  return Ok();
}

void MetricsServer::OnAccept(int listener) {
  for (;;) {
    UniqueFd fd(::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
    if (!fd.valid()) return;
    if (clients_.size() >= kMaxClients) continue;  // closes it: scrapers retry
    int raw = fd.get();
    if (!loop_.Add(raw, EPOLLIN, [this, raw](uint32_t ev) { OnClient(raw, ev); })) continue;
    Client& c = clients_[raw];
    c.fd = std::move(fd);
    c.timeout = loop_.AddTimer(loop_.clock().NowNanos() + kClientTimeoutNs, [this, raw] {
      clients_[raw].timeout = 0;
      Drop(raw);
    });
  }
}

void MetricsServer::OnClient(int fd, uint32_t events) {
  auto it = clients_.find(fd);
  if (it == clients_.end()) return;
  Client& c = it->second;
  if (c.out.empty()) {
    char buf[2048];
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n <= 0) {
      if (n < 0 && errno == EAGAIN) return;
      Drop(fd);
      return;
    }
    c.in.append(buf, static_cast<size_t>(n));
    if (c.in.size() > kMaxRequestBytes) {
      Drop(fd);
      return;
    }
    if (c.in.find("\r\n\r\n") == std::string::npos && c.in.find("\n\n") == std::string::npos) {
      return;
    }
    bool get = StartsWith(c.in, "GET ");
    std::string body = get ? render_() : "only GET is served here\n";
    c.out = std::string(get ? "HTTP/1.0 200 OK\r\n" : "HTTP/1.0 405 Method Not Allowed\r\n") +
            "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
            "Content-Length: " +
            std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
    static_cast<void>(loop_.Modify(fd, EPOLLOUT));
  }
  if ((events & (EPOLLOUT | EPOLLIN)) != 0 || !c.out.empty()) {
    while (c.sent < c.out.size()) {
      ssize_t n = ::send(fd, c.out.data() + c.sent, c.out.size() - c.sent, MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EAGAIN) return;
        Drop(fd);
        return;
      }
      c.sent += static_cast<size_t>(n);
    }
    Drop(fd);
  }
}

void MetricsServer::Drop(int fd) {
  auto it = clients_.find(fd);
  if (it == clients_.end()) return;
  loop_.Remove(fd);
  if (it->second.timeout != 0) loop_.CancelTimer(it->second.timeout);
  clients_.erase(it);
}

}  // namespace cellhouse::supervisor
