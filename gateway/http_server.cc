#include "gateway/http_server.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <set>

#include <spdlog/spdlog.h>

#include "base/strings.h"

namespace cellhouse::gateway {
namespace {

constexpr int kAcceptsPerWakeup = 32;
constexpr int64_t kAcceptPauseMs = 250;
constexpr size_t kStreamBlockBytes = 4096;

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

// libmicrohttpd's messages are about what clients sent: debug level, never a flood at warning.
void LogFromMhd(void* /*cls*/, const char* format, va_list args) {
  char line[512];
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
  static_cast<void>(std::vsnprintf(line, sizeof(line), format, args));
#pragma GCC diagnostic pop
  std::string_view text(line);
  while (!text.empty() && text.back() == '\n') text.remove_suffix(1);
  spdlog::debug("http: {}", text);
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

MHD_Result CollectHeader(void* cls, MHD_ValueKind /*kind*/, const char* key, const char* value) {
  auto* headers = static_cast<std::map<std::string, std::string>*>(cls);
  if (key == nullptr) return MHD_YES;
  std::string name = Lower(key);
  std::string v = value != nullptr ? value : "";
  // A repeated header is joined as RFC 9110 5.3 allows for list-valued ones.
  auto [it, inserted] = headers->emplace(name, v);
  if (!inserted) it->second += ", " + v;
  return MHD_YES;
}

// What *req_cls and a content reader's cls point to: a share of the exchange.
struct ExchangeRef {
  std::shared_ptr<HttpExchange> exchange;
};

}  // namespace

const std::string& HttpRequest::Header(const std::string& lower_name) const {
  static const std::string kEmpty;
  auto it = headers.find(lower_name);
  return it == headers.end() ? kEmpty : it->second;
}

struct HttpEndpoint {
  struct Tracked {
    int fd = -1;
    std::string peer;
    int64_t since_ns = 0;    // connected, or answered last
    bool answering = false;  // a complete request is being answered
    bool evicted = false;    // shut down by us; libmicrohttpd will notice and close it
  };

  HttpServer* server = nullptr;
  UniqueFd listener;
  MHD_Daemon* daemon = nullptr;
  int epoll_fd = -1;
  TimerId timer = 0;
  TimerId run_timer = 0;
  TimerId accept_resume_timer = 0;
  int64_t last_accept_warning_ns = 0;
  bool accepting = true;
  std::map<MHD_Connection*, Tracked> connections;
  std::set<HttpExchange*> exchanges;  // alive on a connection

  EventLoop& loop() const { return server->loop_; }
  const HttpServerOptions& options() const { return server->options_; }
  int64_t Now() const { return loop().clock().NowNanos(); }

  // ---- connections: caps and timeouts (as supervisor/metrics_server.cc) ----

  bool EvictOldest(const std::string* peer) {
    Tracked* oldest = nullptr;
    for (auto& [connection, t] : connections) {
      if (t.evicted || t.answering || (peer != nullptr && t.peer != *peer)) continue;
      if (oldest == nullptr || t.since_ns < oldest->since_ns) oldest = &t;
    }
    if (oldest == nullptr) return false;
    spdlog::debug("http: closing an idle connection from {} to make room", oldest->peer);
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

  bool Admit(const sockaddr* addr) {
    std::string peer = PeerKey(addr);
    if (Live(&peer) >= options().max_connections_per_ip && !EvictOldest(&peer)) return false;
    if (Live(nullptr) >= options().max_connections && !EvictOldest(nullptr)) return false;
    return true;
  }

  void OnAccept() {
    for (int i = 0; i < kAcceptsPerWakeup && accepting; ++i) {
      sockaddr_storage addr{};
      socklen_t len = sizeof(addr);
      int fd = ::accept4(listener.get(), reinterpret_cast<sockaddr*>(&addr), &len,
                         SOCK_CLOEXEC | SOCK_NONBLOCK);
      if (fd < 0) {
        int err = errno;
        if (err == EAGAIN) break;
        if (err == EINTR || err == ECONNABORTED || err == EPROTO) continue;
        PauseAccepting(Error::FromErrno(err, "accept on the HTTP listener"));
        break;
      }
      if (!Admit(reinterpret_cast<sockaddr*>(&addr))) {
        static_cast<void>(::close(fd));
        continue;
      }
      // libmicrohttpd owns the descriptor from here, and closes it if it cannot take it.
      if (MHD_add_connection(daemon, fd, reinterpret_cast<sockaddr*>(&addr), len) != MHD_YES) {
        spdlog::debug("http: a connection was refused by libmicrohttpd");
      }
    }
    Run();
  }

  void PauseAccepting(const Error& why) {
    loop().Remove(listener.get());
    int64_t now = Now();
    if (last_accept_warning_ns == 0 || now - last_accept_warning_ns >= 10 * kNanosPerSecond) {
      spdlog::warn("{}; accepting again in {} ms", why.message(), kAcceptPauseMs);
      last_accept_warning_ns = now;
    }
    if (accept_resume_timer != 0) return;
    accept_resume_timer = loop().AddTimer(now + kAcceptPauseMs * kNanosPerMilli, [this] {
      accept_resume_timer = 0;
      Status watched = WatchListener();
      if (!watched) PauseAccepting(std::move(watched).error());
    });
  }

  Status WatchListener() {
    if (!accepting || loop().Watching(listener.get())) return Ok();
    return loop().Add(listener.get(), EPOLLIN, [this](uint32_t) { OnAccept(); });
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

  void SetAnswering(MHD_Connection* connection, bool answering) {
    auto it = connections.find(connection);
    if (it == connections.end()) return;
    it->second.answering = answering;
    if (!answering) it->second.since_ns = Now();
  }

  // Connections that did not complete a request in time are shut down; returns the next
  // deadline among the others (0: none).
  int64_t SweepRequestTimeouts() {
    int64_t now = Now();
    int64_t limit = options().request_timeout_ms * kNanosPerMilli;
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

  void Run() {
    if (MHD_run(daemon) != MHD_YES) spdlog::debug("http: MHD_run reported an error");
    Rearm();
  }

  void ScheduleRun() {
    if (run_timer != 0) return;
    run_timer = loop().AddTimer(Now(), [this] {
      run_timer = 0;
      Run();
    });
  }

  void Rearm() {
    if (timer != 0) loop().CancelTimer(timer);
    timer = 0;
    int64_t next = SweepRequestTimeouts();
    MHD_UNSIGNED_LONG_LONG ms = 0;
    if (MHD_get_timeout(daemon, &ms) == MHD_YES) {
      int64_t mhd_next = Now() + static_cast<int64_t>(ms) * kNanosPerMilli;
      if (next == 0 || mhd_next < next) next = mhd_next;
    }
    if (next != 0) {
      timer = loop().AddTimer(next, [this] {
        timer = 0;
        Run();
      });
    }
  }

  // ---- exchanges ----

  void Suspend(HttpExchange& ex) {
    if (ex.suspended_ || ex.connection_ == nullptr) return;
    MHD_suspend_connection(static_cast<MHD_Connection*>(ex.connection_));
    ex.suspended_ = true;
    // libmicrohttpd does not look at a suspended connection: watch for the peer leaving.
    if (ex.fd_ >= 0 && !ex.watching_hangup_ && !loop().Watching(ex.fd_)) {
      HttpExchange* raw = &ex;
      Status watched = loop().Add(ex.fd_, EPOLLRDHUP, [this, raw](uint32_t) {
        raw->hangup_ = true;
        Resume(*raw);
      });
      ex.watching_hangup_ = watched.has_value();
    }
  }

  void Resume(HttpExchange& ex) {
    if (ex.watching_hangup_) {
      loop().Remove(ex.fd_);
      ex.watching_hangup_ = false;
    }
    if (ex.suspended_ && ex.connection_ != nullptr) {
      MHD_resume_connection(static_cast<MHD_Connection*>(ex.connection_));
      ex.suspended_ = false;
    }
    ScheduleRun();
  }

  MHD_Result Queue(MHD_Connection* connection, HttpExchange& ex,
                   const std::shared_ptr<HttpExchange>& shared) {
    MHD_Response* response = nullptr;
    int status = 0;
    const Headers* headers = nullptr;
    const std::string* type = nullptr;
    if (ex.streaming_) {
      auto* ref = new ExchangeRef{shared};
      response = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, kStreamBlockBytes,
                                                   &HttpEndpoint::Read, ref, &HttpEndpoint::Free);
      if (response == nullptr) delete ref;
      status = ex.status_;
      headers = &ex.stream_headers_;
      type = &ex.stream_type_;
    } else {
      HttpAnswer& a = *ex.answer_;
      response =
          MHD_create_response_from_buffer(a.body.size(), a.body.data(), MHD_RESPMEM_MUST_COPY);
      status = a.status;
      headers = &a.headers;
      type = &a.content_type;
    }
    if (response == nullptr) return MHD_NO;
    if (!type->empty()) {
      static_cast<void>(
          MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, type->c_str()));
    }
    for (const auto& [name, value] : *headers) {
      static_cast<void>(MHD_add_response_header(response, name.c_str(), value.c_str()));
    }
    MHD_Result queued = MHD_queue_response(connection, static_cast<unsigned>(status), response);
    MHD_destroy_response(response);
    ex.queued_ = queued == MHD_YES;
    return queued;
  }

  MHD_Result Access(MHD_Connection* connection, const char* url, const char* method,
                    const char* upload_data, size_t* upload_size, void** req_cls) {
    auto* ref = static_cast<ExchangeRef*>(*req_cls);
    if (ref == nullptr) return Begin(connection, url, method, req_cls);
    HttpExchange& ex = *ref->exchange;
    if (*upload_size != 0) {
      if (!ex.body_too_large_) {
        if (ex.request_.body.size() + *upload_size > ex.max_body_) {
          ex.body_too_large_ = true;
          std::string().swap(ex.request_.body);
        } else {
          ex.request_.body.append(upload_data, *upload_size);
        }
      }
      *upload_size = 0;  // consumed (or discarded)
      return MHD_YES;
    }
    if (ex.hangup_ || ex.gone_) return MHD_NO;
    if (ex.body_too_large_ && !ex.answered_) {
      ex.answer_ = server->handler_.BodyTooLarge(ex.request_, ex.max_body_);
      ex.answered_ = true;
    }
    if (!ex.dispatched_ && !ex.answered_) {
      ex.dispatched_ = true;
      SetAnswering(connection, true);
      server->handler_.OnRequest(ref->exchange);
    }
    if (ex.answered_ && !ex.queued_) return Queue(connection, ex, ref->exchange);
    if (!ex.queued_) Suspend(ex);
    return MHD_YES;
  }

  MHD_Result Begin(MHD_Connection* connection, const char* url, const char* method,
                   void** req_cls) {
    std::shared_ptr<HttpExchange> shared(new HttpExchange());
    HttpExchange& ex = *shared;
    ex.endpoint_ = this;
    ex.connection_ = connection;
    ex.started_ns_ = Now();
    const MHD_ConnectionInfo* fd =
        MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CONNECTION_FD);
    ex.fd_ = fd != nullptr ? fd->connect_fd : -1;
    const MHD_ConnectionInfo* addr =
        MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    ex.request_.peer = PeerKey(addr != nullptr ? addr->client_addr : nullptr);
    ex.request_.method = method != nullptr ? method : "";
    ex.request_.path = url != nullptr ? url : "";
    static_cast<void>(MHD_get_connection_values(connection, MHD_HEADER_KIND, &CollectHeader,
                                                &ex.request_.headers));
    *req_cls = new ExchangeRef{shared};
    exchanges.insert(&ex);

    size_t max_body = options().max_body_bytes;
    std::optional<HttpAnswer> refused = server->handler_.OnHeaders(ex.request_, &max_body);
    ex.max_body_ = std::min(max_body, options().max_body_bytes);
    if (!refused) {
      const std::string& declared = ex.request_.Header("content-length");
      if (!declared.empty()) {
        Result<uint64_t> length = ParseUint64(declared, "Content-Length");
        if (length && *length > ex.max_body_) {
          refused = server->handler_.BodyTooLarge(ex.request_, ex.max_body_);
        }
      }
    }
    if (!refused) return MHD_YES;
    // Answered before the body is read: libmicrohttpd closes the connection after it.
    ex.answer_ = std::move(*refused);
    ex.answered_ = true;
    ex.dispatched_ = true;
    return Queue(connection, ex, shared);
  }

  static ssize_t Read(void* cls, uint64_t /*pos*/, char* buf, size_t max) {
    HttpExchange& ex = *static_cast<ExchangeRef*>(cls)->exchange;
    HttpEndpoint* self = ex.endpoint_;
    if (ex.hangup_ || ex.gone_) return MHD_CONTENT_READER_END_WITH_ERROR;
    size_t available = ex.buffered();
    if (available > 0) {
      size_t n = std::min(available, max);
      std::memcpy(buf, ex.buffer_.data() + ex.taken_, n);
      ex.taken_ += n;
      if (ex.taken_ == ex.buffer_.size()) {
        ex.buffer_.clear();
        ex.taken_ = 0;
      } else if (ex.taken_ > (size_t{64} << 10)) {
        ex.buffer_.erase(0, ex.taken_);
        ex.taken_ = 0;
      }
      if (ex.above_low_water_ && ex.buffered() <= ex.low_water_ && ex.on_drained_) {
        ex.above_low_water_ = false;
        // From the loop, not from inside libmicrohttpd.
        std::shared_ptr<HttpExchange> keep = static_cast<ExchangeRef*>(cls)->exchange;
        self->loop().AddTimer(self->Now(), [keep] {
          if (keep->on_drained_) keep->on_drained_();
        });
      }
      return static_cast<ssize_t>(n);
    }
    if (ex.ended_) return MHD_CONTENT_READER_END_OF_STREAM;
    self->Suspend(ex);
    return 0;
  }

  static void Free(void* cls) { delete static_cast<ExchangeRef*>(cls); }

  void Completed(MHD_Connection* connection, void** req_cls, MHD_RequestTerminationCode code) {
    SetAnswering(connection, false);
    auto* ref = static_cast<ExchangeRef*>(*req_cls);
    *req_cls = nullptr;
    if (ref == nullptr) return;
    std::shared_ptr<HttpExchange> shared = std::move(ref->exchange);
    delete ref;
    HttpExchange& ex = *shared;
    exchanges.erase(&ex);
    if (ex.watching_hangup_) {
      loop().Remove(ex.fd_);
      ex.watching_hangup_ = false;
    }
    ex.connection_ = nullptr;
    ex.suspended_ = false;
    bool complete = code == MHD_REQUEST_TERMINATED_COMPLETED_OK && ex.answered_ &&
                    (!ex.streaming_ || ex.ended_);
    if (!complete) {
      // From the loop: the handler's reaction (cancel a generation) must not run inside
      // libmicrohttpd.
      loop().AddTimer(Now(), [shared] { shared->ClientLeft(); });
    }
  }

  // Before the daemon stops: a suspended connection must be resumed first (microhttpd.h).
  void ResumeAll() {
    for (HttpExchange* ex : exchanges) {
      if (ex->watching_hangup_) {
        loop().Remove(ex->fd_);
        ex->watching_hangup_ = false;
      }
      if (ex->suspended_ && ex->connection_ != nullptr) {
        ex->gone_ = true;
        MHD_resume_connection(static_cast<MHD_Connection*>(ex->connection_));
        ex->suspended_ = false;
      }
    }
  }
};

namespace {

void OnConnection(void* cls, MHD_Connection* connection, void** /*socket_context*/,
                  MHD_ConnectionNotificationCode code) {
  auto* endpoint = static_cast<HttpEndpoint*>(cls);
  if (code == MHD_CONNECTION_NOTIFY_STARTED) {
    endpoint->Started(connection);
  } else {
    endpoint->connections.erase(connection);
  }
}

MHD_Result OnAccess(void* cls, MHD_Connection* connection, const char* url, const char* method,
                    const char* /*version*/, const char* upload_data, size_t* upload_size,
                    void** req_cls) {
  return static_cast<HttpEndpoint*>(cls)->Access(connection, url, method, upload_data, upload_size,
                                                 req_cls);
}

void OnCompleted(void* cls, MHD_Connection* connection, void** req_cls,
                 MHD_RequestTerminationCode code) {
  static_cast<HttpEndpoint*>(cls)->Completed(connection, req_cls, code);
}

}  // namespace

// ---- HttpExchange ----

void HttpExchange::Respond(HttpAnswer answer) {
  if (answered_ || gone_) return;
  status_ = answer.status;
  answer_ = std::move(answer);
  answered_ = true;
  Wake();
}

void HttpExchange::StartStream(int status, const std::string& content_type, Headers headers) {
  if (answered_ || gone_) return;
  status_ = status;
  streaming_ = true;
  stream_type_ = content_type;
  stream_headers_ = std::move(headers);
  answered_ = true;
  Wake();
}

void HttpExchange::Write(std::string_view bytes) {
  if (!streaming_ || ended_ || gone_ || bytes.empty()) return;
  buffer_.append(bytes);
  if (buffered() > low_water_) above_low_water_ = true;
  Wake();
}

void HttpExchange::EndStream() {
  if (!streaming_ || ended_) return;
  ended_ = true;
  Wake();
}

void HttpExchange::OnDrained(size_t low_water, std::function<void()> callback) {
  low_water_ = low_water;
  on_drained_ = std::move(callback);
  above_low_water_ = buffered() > low_water_;
}

void HttpExchange::OnClientGone(std::function<void()> callback) { on_gone_ = std::move(callback); }

void HttpExchange::ClientLeft() {
  if (gone_) return;
  gone_ = true;
  std::function<void()> callback = std::move(on_gone_);
  on_drained_ = nullptr;
  if (callback) callback();
}

void HttpExchange::Wake() {
  if (connection_ == nullptr || endpoint_ == nullptr) return;
  endpoint_->Resume(*this);
}

// ---- HttpServer ----

HttpServer::HttpServer(EventLoop& loop, HttpHandler& handler, const HttpServerOptions& options)
    : loop_(loop), handler_(handler), options_(options) {}

HttpServer::~HttpServer() {
  for (auto& endpoint : endpoints_) {
    for (TimerId t : {endpoint->timer, endpoint->run_timer, endpoint->accept_resume_timer}) {
      if (t != 0) loop_.CancelTimer(t);
    }
    loop_.Remove(endpoint->listener.get());
    if (endpoint->epoll_fd >= 0) loop_.Remove(endpoint->epoll_fd);
    endpoint->ResumeAll();
    MHD_stop_daemon(endpoint->daemon);  // closes its connections
  }
}

Status HttpServer::AddListener(UniqueFd listener) {
  auto endpoint = std::make_unique<HttpEndpoint>();
  endpoint->server = this;
  endpoint->listener = std::move(listener);
  HttpEndpoint* raw = endpoint.get();
  unsigned header_bytes = static_cast<unsigned>(std::max<size_t>(options_.header_bytes, 4096));
  // External epoll mode: no thread (no MHD_USE_INTERNAL_POLLING_THREAD); our loop watches its
  // epoll descriptor and calls MHD_run. No listening socket of its own: we accept and add.
  endpoint->daemon = MHD_start_daemon(
      MHD_USE_EPOLL | MHD_USE_NO_LISTEN_SOCKET | MHD_USE_ERROR_LOG | MHD_ALLOW_SUSPEND_RESUME, 0,
      nullptr, nullptr, &OnAccess, raw,                           //
      MHD_OPTION_EXTERNAL_LOGGER, &LogFromMhd, nullptr,           //
      MHD_OPTION_CONNECTION_TIMEOUT, options_.idle_timeout_s,     //
      MHD_OPTION_CONNECTION_LIMIT, options_.max_connections * 2,  // backstops above our caps
      MHD_OPTION_PER_IP_CONNECTION_LIMIT, options_.max_connections_per_ip * 2,  //
      MHD_OPTION_CONNECTION_MEMORY_LIMIT, static_cast<size_t>(header_bytes),    //
      MHD_OPTION_STRICT_FOR_CLIENT, 1,                                          //
      MHD_OPTION_NOTIFY_CONNECTION, &OnConnection, raw,                         //
      MHD_OPTION_NOTIFY_COMPLETED, &OnCompleted, raw,                           //
      MHD_OPTION_END);
  if (endpoint->daemon == nullptr) {
    return Error("libmicrohttpd could not start for the HTTP listener (fd " +
                 std::to_string(endpoint->listener.get()) + ")");
  }
  const MHD_DaemonInfo* info = MHD_get_daemon_info(endpoint->daemon, MHD_DAEMON_INFO_EPOLL_FD);
  if (info == nullptr) {
    MHD_stop_daemon(endpoint->daemon);
    return Error("libmicrohttpd has no epoll descriptor for the HTTP listener");
  }
  endpoint->epoll_fd = info->epoll_fd;
  Status watched = loop_.Add(endpoint->epoll_fd, EPOLLIN, [raw](uint32_t) { raw->Run(); });
  if (watched) watched = endpoint->WatchListener();
  if (!watched) {
    loop_.Remove(endpoint->epoll_fd);
    MHD_stop_daemon(endpoint->daemon);
    return std::move(watched).error().Context("watching the HTTP server");
  }
  endpoint->Rearm();
  endpoints_.push_back(std::move(endpoint));
  return Ok();
}

size_t HttpServer::connections() const {
  size_t n = 0;
  for (const auto& endpoint : endpoints_) n += endpoint->connections.size();
  return n;
}

void HttpServer::StopAccepting() {
  for (auto& endpoint : endpoints_) {
    endpoint->accepting = false;
    loop_.Remove(endpoint->listener.get());
  }
}

// ---- listeners ----

Result<UniqueFd> ListenTcp(const std::string& host_port, const std::string& flag) {
  size_t colon = host_port.rfind(':');
  if (colon == std::string::npos) {
    return Error(flag + " " + Quote(host_port) + ": expected HOST:PORT");
  }
  std::string host = host_port.substr(0, colon);
  Result<uint64_t> port = ParseUint64(host_port.substr(colon + 1), flag + " port");
  // Port 0: the kernel picks one (tests); the log line "serving HTTP on ..." names it.
  if (!port || *port > 65535) return Error(flag + ": the port must be 0..65535");
  sockaddr_storage addr{};
  socklen_t len = 0;
  if (!host.empty() && host.front() == '[' && host.back() == ']') {
    auto* a6 = reinterpret_cast<sockaddr_in6*>(&addr);
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons(static_cast<uint16_t>(*port));
    if (::inet_pton(AF_INET6, host.substr(1, host.size() - 2).c_str(), &a6->sin6_addr) != 1) {
      return Error(flag + ": " + Quote(host) + " is not an IPv6 address");
    }
    len = sizeof(sockaddr_in6);
  } else {
    auto* a4 = reinterpret_cast<sockaddr_in*>(&addr);
    a4->sin_family = AF_INET;
    a4->sin_port = htons(static_cast<uint16_t>(*port));
    if (::inet_pton(AF_INET, host.c_str(), &a4->sin_addr) != 1) {
      return Error(flag + ": " + Quote(host) + " is not an IPv4 address");
    }
    len = sizeof(sockaddr_in);
  }
  UniqueFd fd(::socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd.valid()) return Error::FromErrno(errno, "socket for " + flag);
  int one = 1;
  static_cast<void>(::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)));
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), len) != 0) {
    return Error::FromErrno(errno, "bind " + flag + " " + Quote(host_port));
  }
  if (::listen(fd.get(), 128) != 0) return Error::FromErrno(errno, "listen on " + Quote(host_port));
  return fd;
}

std::string SocketAddress(int fd) {
  sockaddr_storage addr{};
  socklen_t len = sizeof(addr);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return "?";
  char text[INET6_ADDRSTRLEN] = "?";
  if (addr.ss_family == AF_INET) {
    const auto* a4 = reinterpret_cast<const sockaddr_in*>(&addr);
    static_cast<void>(::inet_ntop(AF_INET, &a4->sin_addr, text, sizeof(text)));
    return std::string(text) + ":" + std::to_string(ntohs(a4->sin_port));
  }
  if (addr.ss_family == AF_INET6) {
    const auto* a6 = reinterpret_cast<const sockaddr_in6*>(&addr);
    static_cast<void>(::inet_ntop(AF_INET6, &a6->sin6_addr, text, sizeof(text)));
    return "[" + std::string(text) + "]:" + std::to_string(ntohs(a6->sin6_port));
  }
  return "?";
}

Result<bool> IsLoopbackListener(int fd) {
  sockaddr_storage addr{};
  socklen_t len = sizeof(addr);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    return Error::FromErrno(errno, "getsockname");
  }
  if (addr.ss_family == AF_INET) {
    const auto* a4 = reinterpret_cast<const sockaddr_in*>(&addr);
    return (ntohl(a4->sin_addr.s_addr) >> 24) == 127;
  }
  if (addr.ss_family == AF_INET6) {
    const auto* a6 = reinterpret_cast<const sockaddr_in6*>(&addr);
    return static_cast<bool>(IN6_IS_ADDR_LOOPBACK(&a6->sin6_addr));
  }
  return addr.ss_family == AF_UNIX;
}

}  // namespace cellhouse::gateway
