#include "gateway/metrics.h"

namespace cellhouse::gateway {
namespace {

void Gauge(std::string* out, const std::string& name, const std::string& help, int64_t value) {
  *out += "# HELP " + name + " " + help + "\n# TYPE " + name + " gauge\n" + name + " " +
          std::to_string(value) + "\n";
}

}  // namespace

std::string GatewayMetrics::Render() const {
  std::string out;
  requests.Render(&out);
  time_to_first_token.Render(&out);
  inter_token_latency.Render(&out);
  sessions_reused.Render(&out);
  Gauge(&out, "cellhouse_gateway_active_streams", "Streaming (SSE) responses open now.",
        active_streams);
  Gauge(&out, "cellhouse_gateway_active_requests",
        "Generation requests being served now, streaming or not.", active_requests);
  Gauge(&out, "cellhouse_gateway_idle_sessions",
        "Sessions kept idle for conversation reuse, all tenants together.", idle_sessions);
  Gauge(&out, "cellhouse_gateway_connections", "HTTP connections open now.", connections);
  return out;
}

}  // namespace cellhouse::gateway
