#include "supervisor/metrics_server.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <map>

#include <spdlog/spdlog.h>

#include "base/strings.h"

namespace cellhouse::supervisor {

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

namespace {

constexpr int kAcceptsPerWakeup = 16;
constexpr int64_t kAcceptPauseMs = 250;

// The peer a connection counts against: its IP address (a port is per connection), or "local"
// for a Unix-domain scraper.
std::string PeerKey(const sockaddr* addr) {
  char text[INET6_ADDRSTRLEN] = "";
  if (addr != nullptr && addr->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(addr);
    if (::inet_ntop(AF_INET, &in->sin_addr, text, sizeof(text)) != nullptr) return text;
  } else if (addr != nullptr && addr->sa_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(addr);
    if (::inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof(text)) != nullptr) return text;
  }
  return "local";
}

// libmicrohttpd's own messages (a connection refused at a limit, a malformed request) are the
// clients' doing: debug level, never a flood at warning.
void LogFromMhd(void* /*cls*/, const char* format, va_list args) {
  char line[512];
  // The library's own format string, with its own arguments.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
  static_cast<void>(std::vsnprintf(line, sizeof(line), format, args));
#pragma GCC diagnostic pop
  std::string_view text(line);
  while (!text.empty() && text.back() == '\n') text.remove_suffix(1);
  spdlog::debug("metrics: {}", text);
}

}  // namespace

struct MetricsServer::Endpoint {
  struct Tracked {
    int fd = -1;
    std::string peer;
    int64_t since_ns = 0;    // connected, or answered last
    bool answering = false;  // a request is being answered
    bool evicted = false;    // shut down by us; libmicrohttpd will notice and close it
  };

  MetricsServer* server = nullptr;
  UniqueFd listener;
  MHD_Daemon* daemon = nullptr;
  int epoll_fd = -1;
  TimerId timer = 0;
  TimerId accept_resume_timer = 0;
  int64_t last_accept_warning_ns = 0;
  std::map<MHD_Connection*, Tracked> connections;

  int64_t Now() const { return server->loop_.clock().NowNanos(); }

  // Shuts down (does not close: libmicrohttpd owns the descriptor) the oldest connection that
  // is not being answered, from `peer` when given; false when there is none.
  bool EvictOldest(const std::string* peer) {
    Tracked* oldest = nullptr;
    for (auto& [connection, t] : connections) {
      if (t.evicted || t.answering || (peer != nullptr && t.peer != *peer)) continue;
      if (oldest == nullptr || t.since_ns < oldest->since_ns) oldest = &t;
    }
    if (oldest == nullptr) return false;
    spdlog::debug("metrics: closing an idle connection from {} to make room", oldest->peer);
    static_cast<void>(::shutdown(oldest->fd, SHUT_RDWR));
    oldest->evicted = true;
    return true;
  }

  size_t Live(const std::string* peer) const {
    size_t n = 0;
    for (const auto& [connection, t] : connections) {
      if (!t.evicted && (peer == nullptr || t.peer == *peer)) ++n;
    }
    return n;
  }

  // A new connection from `addr`: let it in, after making room if a cap is reached.
  bool Admit(const sockaddr* addr) {
    const MetricsServerOptions& o = server->options_;
    std::string peer = PeerKey(addr);
    if (Live(&peer) >= o.max_connections_per_peer && !EvictOldest(&peer)) return false;
    if (Live(nullptr) >= o.max_connections && !EvictOldest(nullptr)) return false;
    return true;
  }

  // celld accepts, so that running out of descriptors pauses the listener (libmicrohttpd's own
  // accept would busy-wait while it holds no connection) and the caps make room before a
  // connection is taken; libmicrohttpd gets each accepted connection.
  void OnAccept() {
    for (int i = 0; i < kAcceptsPerWakeup; ++i) {
      sockaddr_storage addr{};
      socklen_t len = sizeof(addr);
      int fd = ::accept4(listener.get(), reinterpret_cast<sockaddr*>(&addr), &len,
                         SOCK_CLOEXEC | SOCK_NONBLOCK);
      if (fd < 0) {
        int err = errno;
        if (err == EAGAIN) break;
        if (err == EINTR || err == ECONNABORTED || err == EPROTO) continue;
        PauseAccepting(Error::FromErrno(err, "accept on the metrics socket"));
        break;
      }
      if (!Admit(reinterpret_cast<sockaddr*>(&addr))) {
        static_cast<void>(::close(fd));
        continue;
      }
      // libmicrohttpd owns the descriptor from here, and closes it if it cannot take it.
      if (MHD_add_connection(daemon, fd, reinterpret_cast<sockaddr*>(&addr), len) != MHD_YES) {
        spdlog::debug("metrics: a connection was refused by libmicrohttpd");
      }
    }
    Run();
  }

  void PauseAccepting(const Error& why) {
    EventLoop& loop = server->loop_;
    loop.Remove(listener.get());
    int64_t now = Now();
    if (last_accept_warning_ns == 0 || now - last_accept_warning_ns >= 10 * kNanosPerSecond) {
      spdlog::warn("{}; accepting again in {} ms", why.message(), kAcceptPauseMs);
      last_accept_warning_ns = now;
    }
    if (accept_resume_timer != 0) return;
    accept_resume_timer = loop.AddTimer(now + kAcceptPauseMs * kNanosPerMilli, [this] {
      accept_resume_timer = 0;
      Status watched = WatchListener();
      if (!watched) PauseAccepting(std::move(watched).error());
    });
  }

  Status WatchListener() {
    if (server->loop_.Watching(listener.get())) return Ok();
    return server->loop_.Add(listener.get(), EPOLLIN, [this](uint32_t) { OnAccept(); });
  }

  void Started(MHD_Connection* connection) {
    Tracked t;
    const MHD_ConnectionInfo* fd =
        MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CONNECTION_FD);
    const MHD_ConnectionInfo* addr =
        MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    t.fd = fd != nullptr ? fd->connect_fd : -1;
    t.peer = PeerKey(addr != nullptr ? addr->client_addr : nullptr);
    t.since_ns = Now();
    connections[connection] = t;
  }

  MHD_Result Answer(MHD_Connection* connection, const char* method) {
    auto it = connections.find(connection);
    if (it != connections.end()) it->second.answering = true;
    bool get = std::strcmp(method, MHD_HTTP_METHOD_GET) == 0 ||
               std::strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;
    std::string body = get ? server->render_() : "only GET is served here\n";
    MHD_Response* response =
        MHD_create_response_from_buffer(body.size(), body.data(), MHD_RESPMEM_MUST_COPY);
    if (response == nullptr) return MHD_NO;
    // An HTTP/1.0 answer that closes the connection, as Prometheus expects of a simple
    // exporter: nothing stays open between scrapes.
    static_cast<void>(MHD_set_response_options(response, MHD_RF_HTTP_1_0_SERVER, MHD_RO_END));
    static_cast<void>(MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE,
                                              "text/plain; version=0.0.4; charset=utf-8"));
    if (!get) {
      static_cast<void>(MHD_add_response_header(response, MHD_HTTP_HEADER_ALLOW, "GET, HEAD"));
    }
    MHD_Result queued =
        MHD_queue_response(connection, get ? MHD_HTTP_OK : MHD_HTTP_METHOD_NOT_ALLOWED, response);
    MHD_destroy_response(response);
    return queued;
  }

  void Completed(MHD_Connection* connection) {
    auto it = connections.find(connection);
    if (it == connections.end()) return;
    it->second.answering = false;
    it->second.since_ns = Now();
  }

  // Connections that did not finish a request in time are shut down; returns the next deadline
  // among the others (0: none).
  int64_t SweepHeaderTimeouts() {
    int64_t now = Now();
    int64_t limit = server->options_.header_timeout_ms * kNanosPerMilli;
    int64_t next = 0;
    for (auto& [connection, t] : connections) {
      if (t.evicted || t.answering) continue;
      if (now - t.since_ns >= limit) {
        static_cast<void>(::shutdown(t.fd, SHUT_RDWR));
        t.evicted = true;
        continue;
      }
      int64_t deadline = t.since_ns + limit;
      if (next == 0 || deadline < next) next = deadline;
    }
    return next;
  }

  // Lets libmicrohttpd do what is ready, then arms the loop's timer for the earlier of its
  // timeout and ours.
  void Run() {
    if (MHD_run(daemon) != MHD_YES) spdlog::debug("metrics: MHD_run reported an error");
    Rearm();
  }

  void Rearm() {
    EventLoop& loop = server->loop_;
    if (timer != 0) loop.CancelTimer(timer);
    timer = 0;
    int64_t next = SweepHeaderTimeouts();
    MHD_UNSIGNED_LONG_LONG ms = 0;
    if (MHD_get_timeout(daemon, &ms) == MHD_YES) {
      int64_t mhd_next = Now() + static_cast<int64_t>(ms) * kNanosPerMilli;
      if (next == 0 || mhd_next < next) next = mhd_next;
    }
    if (next != 0) {
      timer = loop.AddTimer(next, [this] {
        timer = 0;
        Run();
      });
    }
  }
};

namespace {

void OnConnection(void* cls, MHD_Connection* connection, void** /*socket_context*/,
                  MHD_ConnectionNotificationCode code) {
  auto* endpoint = static_cast<MetricsServer::Endpoint*>(cls);
  if (code == MHD_CONNECTION_NOTIFY_STARTED) {
    endpoint->Started(connection);
  } else {
    endpoint->connections.erase(connection);
  }
}

MHD_Result OnRequest(void* cls, MHD_Connection* connection, const char* /*url*/, const char* method,
                     const char* /*version*/, const char* /*upload_data*/, size_t* upload_data_size,
                     void** /*request_context*/) {
  // A body is not wanted: whatever arrives of one is discarded.
  *upload_data_size = 0;
  return static_cast<MetricsServer::Endpoint*>(cls)->Answer(connection, method);
}

void OnCompleted(void* cls, MHD_Connection* connection, void** /*request_context*/,
                 MHD_RequestTerminationCode /*code*/) {
  static_cast<MetricsServer::Endpoint*>(cls)->Completed(connection);
}

}  // namespace

MetricsServer::MetricsServer(EventLoop& loop, Render render, const MetricsServerOptions& options)
    : loop_(loop), render_(std::move(render)), options_(options) {}

MetricsServer::~MetricsServer() {
  for (auto& endpoint : endpoints_) {
    if (endpoint->timer != 0) loop_.CancelTimer(endpoint->timer);
    if (endpoint->accept_resume_timer != 0) loop_.CancelTimer(endpoint->accept_resume_timer);
    loop_.Remove(endpoint->listener.get());
    if (endpoint->epoll_fd >= 0) loop_.Remove(endpoint->epoll_fd);
    MHD_stop_daemon(endpoint->daemon);  // closes its connections
  }
}

Status MetricsServer::AddListener(UniqueFd listener) {
  auto endpoint = std::make_unique<Endpoint>();
  endpoint->server = this;
  endpoint->listener = std::move(listener);
  Endpoint* raw = endpoint.get();
  // External epoll mode: no thread of its own (no MHD_USE_INTERNAL_POLLING_THREAD); celld's
  // loop watches its epoll descriptor and calls MHD_run. No listening socket of its own either:
  // celld accepts and adds each connection (Endpoint::OnAccept).
  endpoint->daemon = MHD_start_daemon(
      MHD_USE_EPOLL | MHD_USE_NO_LISTEN_SOCKET | MHD_USE_ERROR_LOG, 0, nullptr, nullptr, &OnRequest,
      raw,                                                     //
      MHD_OPTION_EXTERNAL_LOGGER, &LogFromMhd, nullptr,        //
      MHD_OPTION_CONNECTION_TIMEOUT, options_.idle_timeout_s,  //
      // libmicrohttpd's own caps are a backstop above ours (ours make room, its refuse): room
      // for the connections shut down in one burst of accepts that it has not closed yet.
      MHD_OPTION_CONNECTION_LIMIT, options_.max_connections * 4,         //
      MHD_OPTION_PER_IP_CONNECTION_LIMIT, options_.max_connections * 2,  //
      MHD_OPTION_CONNECTION_MEMORY_LIMIT, size_t{32} * 1024,             //
      MHD_OPTION_NOTIFY_CONNECTION, &OnConnection, raw,                  //
      MHD_OPTION_NOTIFY_COMPLETED, &OnCompleted, raw,                    //
      MHD_OPTION_END);
  if (endpoint->daemon == nullptr) {
    return Error("libmicrohttpd could not start for the metrics listener (fd " +
                 std::to_string(endpoint->listener.get()) + ")");
  }
  const MHD_DaemonInfo* info = MHD_get_daemon_info(endpoint->daemon, MHD_DAEMON_INFO_EPOLL_FD);
  if (info == nullptr) {
    MHD_stop_daemon(endpoint->daemon);
    return Error("libmicrohttpd has no epoll descriptor for the metrics listener");
  }
  endpoint->epoll_fd = info->epoll_fd;
  Status watched = loop_.Add(endpoint->epoll_fd, EPOLLIN, [raw](uint32_t) { raw->Run(); });
  if (watched) watched = endpoint->WatchListener();
  if (!watched) {
    loop_.Remove(endpoint->epoll_fd);
    MHD_stop_daemon(endpoint->daemon);
    return std::move(watched).error().Context("watching the metrics server");
  }
  endpoint->Rearm();
  endpoints_.push_back(std::move(endpoint));
  return Ok();
}

size_t MetricsServer::connections() const {
  size_t n = 0;
  for (const auto& endpoint : endpoints_) n += endpoint->connections.size();
  return n;
}

}  // namespace cellhouse::supervisor
