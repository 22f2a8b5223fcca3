// The gateway's HTTP server: libmicrohttpd in external epoll mode, driven from the gateway's one
// EventLoop (its epoll descriptor is watched; MHD_run when it is ready or its timeout is due),
// no thread of its own and none per connection. A request whose answer is not ready is
// suspended (MHD_suspend_connection) and costs nothing until the answer, or the next piece of a
// stream, arrives; a stream is a chunked response whose content reader hands over what the
// handler wrote, suspending the connection when it has nothing.
//
// Defences, each an immediate refusal or a close, never a queue: connections in all and per
// client address (a newcomer over a cap makes room by closing the oldest idle connection, of its
// own address first), a complete request (line, headers, body) within request_timeout_ms of the
// connection or of the previous answer (slowloris), an idle timeout, header memory (a request
// line and headers over header_bytes get 431/414 from libmicrohttpd), a body limit decided per
// request after its headers (413 before a byte of an oversized declared body is read), strict
// HTTP syntax (400). While a connection waits suspended its socket is watched for the peer
// hanging up (EPOLLRDHUP), so a client that leaves mid-generation is noticed at once.
//
//   HttpServer server(loop, handler, {.max_connections_per_ip = 64});
//   CH_RETURN_IF_ERROR(server.AddListener(std::move(tcp_listener)));
//   ... handler.OnRequest(exchange): exchange->Respond(200, "application/json", body);
//       or exchange->StartStream(200, "text/event-stream"); exchange->Write(...); EndStream();
#ifndef CELLHOUSE_GATEWAY_HTTP_SERVER_H_
#define CELLHOUSE_GATEWAY_HTTP_SERVER_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "base/result.h"
#include "base/unique_fd.h"
#include "supervisor/event_loop.h"

namespace cellhouse::gateway {

using supervisor::EventLoop;
using supervisor::TimerId;

struct HttpServerOptions {
  unsigned max_connections = 1024;
  unsigned max_connections_per_ip = 64;  // behind a reverse proxy: its connection pool
  int64_t request_timeout_ms = 10'000;
  unsigned idle_timeout_s = 60;             // also a stalled write (libmicrohttpd's timeout)
  size_t header_bytes = size_t{32} << 10;   // request line + headers (+ response headers)
  size_t max_body_bytes = size_t{1} << 20;  // the ceiling; a handler may lower it per request
};

using Headers = std::vector<std::pair<std::string, std::string>>;

struct HttpRequest {
  std::string method;
  std::string path;                            // without the query string
  std::string peer;                            // client IP address
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;
  // The header's value, or "" when absent.
  const std::string& Header(const std::string& lower_name) const;
};

struct HttpAnswer {
  int status = 200;
  std::string content_type;
  std::string body;
  Headers headers;
};

class HttpServer;
struct HttpEndpoint;  // one listener and its libmicrohttpd daemon (http_server.cc)

// One request and its answer. Shared between the server (while the connection lives) and the
// handler (while it works on the answer); either may let go first.
class HttpExchange {
 public:
  const HttpRequest& request() const { return request_; }
  int64_t started_ns() const { return started_ns_; }

  // A complete answer. Once only; ignored after the client left.
  void Respond(HttpAnswer answer);
  // A streamed answer: the status and headers now (chunked transfer), then Write as the body
  // grows and EndStream at its end.
  void StartStream(int status, const std::string& content_type, Headers headers = {});
  void Write(std::string_view bytes);
  void EndStream();

  // Bytes written and not yet taken by the connection: what a slow reader leaves behind.
  size_t buffered() const { return buffer_.size() - taken_; }
  // Runs (from the event loop) each time `buffered()` falls to `low_water` or below after
  // having been above it: for a handler that paused its producer when a reader fell behind.
  void OnDrained(size_t low_water, std::function<void()> callback);
  // Runs once if the client goes away before the answer is complete (not after a normal end).
  void OnClientGone(std::function<void()> callback);
  bool client_gone() const { return gone_; }
  bool answered() const { return answered_; }
  int status() const { return status_; }

 private:
  friend class HttpServer;
  friend struct HttpEndpoint;
  HttpExchange() = default;
  void ClientLeft();
  void Wake();

  HttpEndpoint* endpoint_ = nullptr;
  HttpRequest request_;
  int64_t started_ns_ = 0;
  void* connection_ = nullptr;  // MHD_Connection*, while it lives
  int fd_ = -1;                 // its socket
  bool suspended_ = false;
  bool watching_hangup_ = false;
  bool dispatched_ = false;
  bool queued_ = false;    // a response was given to libmicrohttpd
  bool answered_ = false;  // Respond or StartStream was called
  bool streaming_ = false;
  bool ended_ = false;  // EndStream
  bool gone_ = false;
  bool hangup_ = false;  // the peer hung up while we waited
  bool body_too_large_ = false;
  size_t max_body_ = 0;
  int status_ = 0;
  std::optional<HttpAnswer> answer_;
  Headers stream_headers_;
  std::string stream_type_;
  std::string buffer_;
  size_t taken_ = 0;
  size_t low_water_ = 0;
  bool above_low_water_ = false;
  std::function<void()> on_drained_;
  std::function<void()> on_gone_;
};

class HttpHandler {
 public:
  virtual ~HttpHandler() = default;
  // After the headers, before the body is read: refuse at once (an answer), or allow a body of
  // up to *max_body bytes (preset to the server's ceiling; lower it, e.g. per tenant).
  virtual std::optional<HttpAnswer> OnHeaders(const HttpRequest& request, size_t* max_body) = 0;
  // The whole request has arrived: answer now or later through the exchange.
  virtual void OnRequest(const std::shared_ptr<HttpExchange>& exchange) = 0;
  // The body was over the limit OnHeaders allowed (a body without a declared length).
  virtual HttpAnswer BodyTooLarge(const HttpRequest& request, size_t limit) = 0;
};

class HttpServer {
 public:
  HttpServer(EventLoop& loop, HttpHandler& handler, const HttpServerOptions& options = {});
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Serves `listener` (a listening stream socket, any family) from now on.
  Status AddListener(UniqueFd listener);
  // Connections open now (tests, metrics).
  size_t connections() const;
  // Stops accepting; open connections go on.
  void StopAccepting();

 private:
  friend struct HttpEndpoint;
  EventLoop& loop_;
  HttpHandler& handler_;
  HttpServerOptions options_;
  std::vector<std::unique_ptr<HttpEndpoint>> endpoints_;
};

// Binds a TCP listener for "HOST:PORT" (IPv4, or [IPv6]); `flag` names the option in errors.
Result<UniqueFd> ListenTcp(const std::string& host_port, const std::string& flag);
// "127.0.0.1:8080", "[::1]:8080" of a bound socket ("?" when unknown).
std::string SocketAddress(int fd);
// Whether a listening socket's address is a loopback one.
Result<bool> IsLoopbackListener(int fd);

}  // namespace cellhouse::gateway

#endif  // CELLHOUSE_GATEWAY_HTTP_SERVER_H_
