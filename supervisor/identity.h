// Who a request is served under, as celld's per-tenant shares see it: the key of every share of
// a resource that many clients draw from (waiting connections, pending opens, bytes held in
// partly received requests, log lines), so that no one identity can take what the others need.
//
//   Identity who = Identity::ForPeer(peer);      // SO_PEERCRED of a Unix-socket client
//   ++waiting[who];                              // ordered and comparable: a map key
//   spdlog::warn("{} holds too many connections", who.ToString());   // "uid 1000"
//
// A direct client's identity is its uid. The HTTP gateway connects as one uid (celld's
// --gateway-user) on behalf of many tenants: once a connection of it asserts a tenant
// (api Request.tenant), it is keyed by (gateway uid, tenant), so that every tenant behind the
// gateway gets shares of its own and the gateway's traffic as a whole is never starved by one
// of them.
#ifndef CELLHOUSE_SUPERVISOR_IDENTITY_H_
#define CELLHOUSE_SUPERVISOR_IDENTITY_H_

#include <sys/types.h>

#include <compare>
#include <string>
#include <utility>

#include "ipc/unix_socket.h"

namespace cellhouse::supervisor {

class Identity {
 public:
  // A client on celld's Unix socket, by the kernel's word.
  static Identity ForPeer(const ipc::PeerCredentials& peer) { return Identity(peer.uid); }
  static Identity ForUid(uid_t uid) { return Identity(uid); }
  // A tenant asserted by a connection of the gateway's uid (validated by the caller).
  static Identity ForGatewayTenant(uid_t gateway_uid, std::string tenant) {
    Identity who(gateway_uid);
    who.tenant_ = std::move(tenant);
    return who;
  }

  uid_t uid() const { return uid_; }
  // The asserted gateway tenant; empty for a direct client.
  const std::string& tenant() const { return tenant_; }
  // For log lines and error messages: "uid 1000", "gateway tenant 'alice' (uid 998)".
  std::string ToString() const {
    if (tenant_.empty()) return "uid " + std::to_string(uid_);
    return "gateway tenant '" + tenant_ + "' (uid " + std::to_string(uid_) + ")";
  }

  auto operator<=>(const Identity&) const = default;
  bool operator==(const Identity&) const = default;

 private:
  explicit Identity(uid_t uid) : uid_(uid) {}
  uid_t uid_;
  std::string tenant_;
};

}  // namespace cellhouse::supervisor

#endif  // CELLHOUSE_SUPERVISOR_IDENTITY_H_
