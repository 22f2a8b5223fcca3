// Who a request is served under, as celld's per-tenant shares see it: the key of every share of
// a resource that many clients draw from (waiting connections, pending opens, bytes held in
// partly received requests, log lines), so that no one identity can take what the others need.
//
//   Identity who = Identity::ForPeer(peer);      // SO_PEERCRED of a Unix-socket client
//   ++waiting[who];                              // ordered and comparable: a map key
//   spdlog::warn("{} holds too many connections", who.ToString());   // "uid 1000"
//
// Today an identity is the peer's uid. The HTTP gateway will connect as one uid on behalf of many
// tenants; its requests will then be keyed by (gateway uid, asserted tenant), a second field
// here, so that every tenant behind the gateway gets a share of its own and the gateway's
// traffic as a whole is never starved by one of them. Code that keys shares by Identity needs
// no change for that: only the constructors and ToString grow.
#ifndef CELLHOUSE_SUPERVISOR_IDENTITY_H_
#define CELLHOUSE_SUPERVISOR_IDENTITY_H_

#include <sys/types.h>

#include <compare>
#include <string>

#include "ipc/unix_socket.h"

namespace cellhouse::supervisor {

class Identity {
 public:
  // A client on celld's Unix socket, by the kernel's word.
  static Identity ForPeer(const ipc::PeerCredentials& peer) { return Identity(peer.uid); }
  static Identity ForUid(uid_t uid) { return Identity(uid); }

  uid_t uid() const { return uid_; }
  // For log lines and error messages: "uid 1000".
  std::string ToString() const { return "uid " + std::to_string(uid_); }

  auto operator<=>(const Identity&) const = default;
  bool operator==(const Identity&) const = default;

 private:
  explicit Identity(uid_t uid) : uid_(uid) {}
  uid_t uid_;
};

}  // namespace cellhouse::supervisor

#endif  // CELLHOUSE_SUPERVISOR_IDENTITY_H_
