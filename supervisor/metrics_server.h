// Serves the metrics text to Prometheus over HTTP on celld's metrics listeners (the socket
// celld-metrics.socket passes, name "metrics", or --metrics-listen: loopback TCP unless an admin
// says otherwise). celld accepts on the listener (pausing, not spinning, when it runs out of
// descriptors) and hands each connection to libmicrohttpd, which is driven from celld's own
// EventLoop (its epoll descriptor is watched, MHD_run is called when it is ready or when its
// timeout is due) with no thread of its own: celld stays single-threaded. GET and HEAD get the
// metrics, anything else 405; every answer closes its connection (HTTP/1.0 semantics).
//
// An admin interface without peer credentials, so it defends itself: a request must be complete
// within header_timeout_ms of the connection (or of the previous answer), an idle connection is
// closed after idle_timeout_s, and at most max_connections are open, max_connections_per_peer
// from one address. A newcomer over either cap makes room by closing the oldest connection that
// is not being answered (from its own address first), so idle sockets cannot keep a scraper out.
//
//   auto server = std::make_unique<MetricsServer>(*loop, [&] { return metrics.Render(...); });
//   CH_RETURN_IF_ERROR(server->AddListener(std::move(fd)));
#ifndef CELLHOUSE_SUPERVISOR_METRICS_SERVER_H_
#define CELLHOUSE_SUPERVISOR_METRICS_SERVER_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/result.h"
#include "base/unique_fd.h"
#include "supervisor/event_loop.h"

namespace cellhouse::supervisor {

// Binds a TCP listener for "HOST:PORT" (IPv4 or [IPv6]). A non-loopback address is refused
// unless allow_remote.
Result<UniqueFd> ListenTcp(const std::string& host_port, bool allow_remote);

struct MetricsServerOptions {
  unsigned max_connections = 64;
  unsigned max_connections_per_peer = 8;
  int64_t header_timeout_ms = 5'000;
  unsigned idle_timeout_s = 10;
};

class MetricsServer {
 public:
  using Render = std::function<std::string()>;
  MetricsServer(EventLoop& loop, Render render, const MetricsServerOptions& options = {});
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  // Serves `listener` (a listening stream socket) from now on.
  Status AddListener(UniqueFd listener);
  // Connections open now, over all listeners (tests).
  size_t connections() const;

  struct Endpoint;  // one listener and its libmicrohttpd daemon (metrics_server.cc)

 private:
  EventLoop& loop_;
  Render render_;
  MetricsServerOptions options_;
  std::vector<std::unique_ptr<Endpoint>> endpoints_;
};

}  // namespace cellhouse::supervisor

#endif  // CELLHOUSE_SUPERVISOR_METRICS_SERVER_H_
