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
#include <string>
#include <vector>

#include "gateway/backend.h"
#include "gateway/http_server.h"
#include "ipc/api.pb.h"

namespace cellhouse::gateway {

struct CelldBackendOptions {
  std::string socket_path;
  // TEMPORARY until celld serves several models and lists them (issue 16, celld side): the
  // names under which the one model today's celld serves is offered (cellgate --model-name).
  std::vector<std::string> models = {"cellhouse"};
  // Defaults for every tenant (cellgate flags); lowered by what celld's policy reports when a
  // session opens (SessionOpened.max_new_tokens, context_length).
  TenantLimits limits;
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

  // Connections to celld open now, closing ones included (tests).
  size_t connections() const { return connections_.size(); }

  class Connection;  // one session's socket (celld_backend.cc)

 private:
  friend class Connection;
  void Learned(const Tenant& tenant, const api::SessionOpened& opened);
  void Forget(Connection* connection);

  EventLoop& loop_;
  CelldBackendOptions options_;
  int64_t started_unix_ = 0;
  std::map<std::string, TenantLimits> learned_;  // by tenant
  std::map<Connection*, std::unique_ptr<Connection>> connections_;
  std::vector<Connection*> forgotten_;
  TimerId forget_timer_ = 0;
};

}  // namespace cellhouse::gateway

#endif  // CELLHOUSE_GATEWAY_CELLD_BACKEND_H_
