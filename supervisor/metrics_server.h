// Serves the metrics text to Prometheus: a minimal HTTP/1.0 responder on celld's metrics
// listeners (a Unix socket from systemd, or --metrics-listen, loopback TCP by default). Any GET
// gets the metrics; requests are bounded (8 KiB, 5 s) and answered from the event loop.
//
//   auto server = std::make_unique<MetricsServer>(*loop, [&] { return metrics.Render(...); });
//   CH_RETURN_IF_ERROR(server->AddListener(std::move(fd)));
#ifndef CELLHOUSE_SUPERVISOR_METRICS_SERVER_H_
#define CELLHOUSE_SUPERVISOR_METRICS_SERVER_H_

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "base/result.h"
#include "base/unique_fd.h"
#include "supervisor/event_loop.h"

namespace cellhouse::supervisor {

// Binds a TCP listener for "HOST:PORT" (IPv4 or [IPv6]). A non-loopback address is refused
// unless allow_remote.
Result<UniqueFd> ListenTcp(const std::string& host_port, bool allow_remote);

class MetricsServer {
 public:
  using Render = std::function<std::string()>;
  MetricsServer(EventLoop& loop, Render render) : loop_(loop), render_(std::move(render)) {}
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  Status AddListener(UniqueFd listener);

 private:
  struct Client {
    UniqueFd fd;
    std::string in;
    std::string out;
    size_t sent = 0;
    TimerId timeout = 0;
  };
  void OnAccept(int listener);
  void OnClient(int fd, uint32_t events);
  void Drop(int fd);

  EventLoop& loop_;
  Render render_;
  std::vector<UniqueFd> listeners_;
  std::map<int, Client> clients_;
};

}  // namespace cellhouse::supervisor

#endif  // CELLHOUSE_SUPERVISOR_METRICS_SERVER_H_
