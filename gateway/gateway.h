// The gateway proper: routes, authentication, Host/Origin checks, and each generation request
// from its JSON to the backend and back as a response or a Server-Sent Events stream. It is the
// HttpServer's handler and the only user of the SessionBackend seam; everything runs in the one
// event loop.
//
//   Gateway gateway(loop, backend, std::move(keys), std::move(web), {.allowed_hosts = {...}});
//   HttpServer http(loop, gateway, http_options);
//   CH_RETURN_IF_ERROR(http.AddListener(std::move(listener)));
//   ... on SIGHUP: gateway.ReplaceKeys(*KeyStore::Load(path));
//
// Routes: GET /health (no key); GET / and the page's files (no key: the page asks for one);
// GET /v1/models, GET /v1/models/{id}, POST /v1/chat/completions, POST /v1/completions
// (Authorization: Bearer KEY). A request is served under the tenant its key names; every limit
// comes from SessionBackend::Limits(tenant) and is checked before anything is queued.
#ifndef CELLHOUSE_GATEWAY_GATEWAY_H_
#define CELLHOUSE_GATEWAY_GATEWAY_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "gateway/api_error.h"
#include "gateway/backend.h"
#include "gateway/conversation_cache.h"
#include "gateway/http_server.h"
#include "gateway/keys.h"
#include "gateway/metrics.h"
#include "gateway/web_assets.h"

namespace cellhouse::gateway {

struct GatewayOptions {
  // Names a browser may use to reach the gateway, compared with the Host and Origin headers
  // (without port, case-insensitively): a page from any other name is refused (DNS rebinding).
  std::vector<std::string> allowed_hosts = {"localhost", "127.0.0.1", "::1"};
  // A stream whose reader falls this far behind pauses its generation until it drains.
  size_t stream_high_water = size_t{256} << 10;
  size_t stream_low_water = size_t{64} << 10;
  // Sessions kept for conversation reuse end after this long unused.
  int64_t idle_session_ttl_ms = 120'000;
};

class Gateway : public HttpHandler {
 public:
  Gateway(EventLoop& loop, SessionBackend& backend, KeyStore keys, WebAssets web,
          GatewayOptions options);
  ~Gateway() override;
  Gateway(const Gateway&) = delete;
  Gateway& operator=(const Gateway&) = delete;

  void ReplaceKeys(KeyStore keys) { keys_ = std::move(keys); }
  GatewayMetrics& metrics() { return metrics_; }
  size_t idle_sessions() const { return cache_.size(); }
  size_t active_generations() const { return generations_.size(); }
  // Closes every idle session (shutdown).
  void DropIdleSessions() { cache_.Clear(); }

  std::optional<HttpAnswer> OnHeaders(const HttpRequest& request, size_t* max_body) override;
  void OnRequest(const std::shared_ptr<HttpExchange>& exchange) override;
  HttpAnswer BodyTooLarge(const HttpRequest& request, size_t limit) override;

  class Generation;  // one generation request (gateway.cc)

 private:
  friend class Generation;
  std::optional<ApiError> CheckHostAndOrigin(const HttpRequest& request) const;
  // The tenant of the request's bearer key, or the 401 to answer.
  std::optional<Tenant> Authenticate(const HttpRequest& request, ApiError* error) const;
  void Answer(HttpExchange& exchange, std::string_view route, HttpAnswer answer);
  void AnswerError(HttpExchange& exchange, std::string_view route, const ApiError& error);
  void AnswerJson(HttpExchange& exchange, std::string_view route, int status, const Json& body);
  void ServeModels(HttpExchange& exchange, const Tenant& tenant);
  void ServeGeneration(const std::shared_ptr<HttpExchange>& exchange, const Tenant& tenant,
                       bool chat);
  // Generation ended: forget it (on the next loop iteration, outside any callback).
  void Retire(uint64_t id);
  void ScheduleExpiry();

  EventLoop& loop_;
  SessionBackend& backend_;
  KeyStore keys_;
  WebAssets web_;
  GatewayOptions options_;
  GatewayMetrics metrics_;
  ConversationCache cache_;
  uint64_t next_generation_ = 1;
  std::map<uint64_t, std::unique_ptr<Generation>> generations_;
  std::map<std::string, size_t> active_by_tenant_;
  TimerId expiry_timer_ = 0;
  std::vector<uint64_t> retiring_;
  TimerId retire_timer_ = 0;
};

}  // namespace cellhouse::gateway

#endif  // CELLHOUSE_GATEWAY_GATEWAY_H_
