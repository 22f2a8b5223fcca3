// The gateway's own metrics, in the Prometheus text format with the prefix cellhouse_gateway_:
// requests by route and status, time to first token and inter-token latency as the HTTP client
// sees them (from the request's arrival, through the backend, to the piece leaving the gateway),
// and streams open now. Labels are fixed route names and status codes: never a tenant, a key or
// a model supplied by a client (unbounded cardinality, and tenants' traffic is theirs). Served
// on a separate admin listener (loopback only) by supervisor/metrics_server.h.
//
//   GatewayMetrics m;
//   m.requests.Inc({"chat_completions", "200"});
//   std::string text = m.Render();
#ifndef CELLHOUSE_GATEWAY_METRICS_H_
#define CELLHOUSE_GATEWAY_METRICS_H_

#include <cstdint>
#include <string>

#include "supervisor/metrics.h"

namespace cellhouse::gateway {

struct GatewayMetrics {
  supervisor::LabeledCounter requests{"cellhouse_gateway_requests_total",
                                      "HTTP requests answered, by route and status code.",
                                      {"route", "status"}};
  supervisor::Histogram time_to_first_token{
      "cellhouse_gateway_time_to_first_token_seconds",
      "From a generation request's arrival to its first piece of text leaving the gateway.",
      {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}};
  supervisor::Histogram inter_token_latency{
      "cellhouse_gateway_inter_token_latency_seconds",
      "Time between consecutive pieces of a generation, as they leave the gateway.",
      {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1}};
  supervisor::LabeledCounter sessions_reused{
      "cellhouse_gateway_conversation_reuse_total",
      "Chat requests by whether an idle session holding their conversation served them.",
      {"reused"}};
  int64_t active_streams = 0;
  int64_t active_requests = 0;
  int64_t idle_sessions = 0;
  int64_t connections = 0;

  std::string Render() const;
};

}  // namespace cellhouse::gateway

#endif  // CELLHOUSE_GATEWAY_METRICS_H_
