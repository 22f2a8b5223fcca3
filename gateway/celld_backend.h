// The SessionBackend over celld's Unix socket and its protobuf protocol (ipc/api.proto), in the
// gateway's event loop: one non-blocking connection per session (connect, OpenSession, then
// Generate/Cancel/Close with the worker that celld hands the connection to), frames decoded as
// they arrive, writes queued until the socket takes them. Nothing blocks.
//
//   CelldBackend backend(loop, {.socket_path = "/run/cellhouse/celld.sock",
//                               .models = {"tinyllama"}, .limits = limits});
//   auto session = backend.CreateSession(tenant, "tinyllama");   // see backend.h
//
// A session whose handle is dropped is closed properly: Cancel if a turn runs, then
// CloseSession, and the connection is kept until the worker closes it (or close_timeout_ms), so
// that the worker stops at once and its slot is free; an open still in progress is closed as
// soon as it completes.
#ifndef CELLHOUSE_GATEWAY_CELLD_BACKEND_H_
#define CELLHOUSE_GATEWAY_CELLD_BACKEND_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "gateway/backend.h"
#include "gateway/http_server.h"
#include "ipc/api.pb.h"

namespace cellhouse::gateway {

struct CelldBackendOptions {
  std::string socket_path;
  // Further names under which celld's default model is offered (cellgate --model-name), listed
  // before celld's own model names (ServerStatus.models).
  std::vector<std::string> model_aliases = {"cellhouse"};
  // Defaults for every tenant (cellgate flags); lowered by what celld says of the tenant's
  // policy (its status for the tenant, and SessionOpened).
  TenantLimits limits;
  // How old a tenant's catalog (models and policy limits, from celld's status for the tenant)
  // may grow before it is asked again; it is asked at once for a tenant not seen before.
  int64_t catalog_refresh_ms = 15'000;
  std::string policy;  // OpenSession.policy; "" lets celld choose
  int64_t open_timeout_ms = 60'000;
  int64_t close_timeout_ms = 5'000;
};

// Where the tenant a session is opened for is told to celld: Request.tenant, honoured only on
// connections of celld's --gateway-user (which must be the uid cellgate runs as). celld then
// keys the session, its policy, caps and shares by (gateway uid, tenant), so that one tenant's
// key can never reach another's sessions through celld either.
void AssertTenantToCelld(const Tenant& tenant, api::Request* request);

class CelldBackend : public SessionBackend {
 public:
  CelldBackend(EventLoop& loop, CelldBackendOptions options);
  ~CelldBackend() override;
  CelldBackend(const CelldBackend&) = delete;
  CelldBackend& operator=(const CelldBackend&) = delete;

  TenantLimits Limits(const Tenant& tenant) override;
  std::vector<ModelInfo> Models(const Tenant& tenant) override;
  std::optional<BackendError> Check(const TurnRequest& turn) override;
  std::unique_ptr<BackendSession> CreateSession(const Tenant& tenant,
                                                const std::string& model) override;

  // Asks celld now for each tenant's catalog (start-up, after the keys are reloaded), so that
  // its limits are known before its first request.
  void Prefetch(const std::vector<Tenant>& tenants);

  // Connections to celld open now, closing ones included (tests).
  size_t connections() const { return connections_.size(); }

  class Connection;  // one session's socket (celld_backend.cc)

 private:
  friend class Connection;
  // What celld said of a tenant: its models and its policy's limits.
  struct Catalog {
    std::vector<std::string> models;  // celld's names the tenant may use
    std::string default_model;
    uint32_t max_tokens = 0;      // 0: not known
    uint32_t context_length = 0;  // 0: not known
    // The policy's gateway limits; unset: the gateway's flags.
    std::optional<size_t> max_body_bytes, max_messages, max_concurrent_requests, max_idle_sessions;
    int64_t fetched_ns = 0;  // 0: never answered
    bool asking = false;
  };
  void Learned(const Tenant& tenant, const api::SessionOpened& opened);
  void Learned(const Tenant& tenant, const api::ServerStatus& status);
  void Asked(const Tenant& tenant, bool answered);
  // Starts a status query for the tenant unless one runs or the catalog is fresh.
  void MaybeRefresh(const Tenant& tenant);
  // The name celld knows a requested model by ("" for an alias of its default).
  std::string CelldModelName(const std::string& model) const;
  void Forget(Connection* connection);

  EventLoop& loop_;
  CelldBackendOptions options_;
  int64_t started_unix_ = 0;
  std::map<std::string, Catalog> catalogs_;  // by tenant
  std::map<Connection*, std::unique_ptr<Connection>> connections_;
  std::vector<Connection*> forgotten_;
  TimerId forget_timer_ = 0;
};

}  // namespace cellhouse::gateway

#endif  // CELLHOUSE_GATEWAY_CELLD_BACKEND_H_
