// cellgate's own confinement: it is the piece that faces the network, so it runs as an
// unprivileged user of its own, with no capability, no_new_privs and a seccomp allow-list
// (default: kill the process), and opens files only for reading. Applied once, after
// everything that needs more (listening sockets, reading the web page and the keys, looking up
// the user and its groups) and before the first request is read.
//
//   CH_ASSIGN_OR_RETURN(ConfinementPlan plan, PlanConfinement({.user = "cellgate"}));
//   ... open listeners, load files ...
//   CH_RETURN_IF_ERROR(Confine(plan));
//
// In order: supplementary groups, gid and uid of the user (when started as root with --user),
// every capability dropped (bounding set while CAP_SETPCAP allows, then effective, permitted,
// inheritable and ambient) and checked with capget, not dumpable, no_new_privs, then the
// filter. Started by systemd with User= (no capabilities at all), the same steps find nothing
// to drop and still install the filter.
#ifndef CELLHOUSE_GATEWAY_CONFINE_H_
#define CELLHOUSE_GATEWAY_CONFINE_H_

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "base/result.h"
#include "policy/seccomp_compiler.h"

namespace cellhouse::gateway {

struct ConfineOptions {
  std::string user;  // a user name or uid to switch to; "" keeps the current ids
};

struct ConfinementPlan {
  std::optional<uid_t> uid;
  gid_t gid = 0;
  std::vector<gid_t> groups;  // the user's supplementary groups (celld's socket group)
  policy::CompiledFilter filter;
};

// What the gateway may call once confined, as seccomp rules (for tests and `cellgate
// --print-filter`-style checks).
policy::FilterSpec GatewayFilterSpec();

// Resolves the user and compiles the filter: everything that needs /etc or libseccomp.
Result<ConfinementPlan> PlanConfinement(const ConfineOptions& options);
// Applies it to this process (single-threaded: the ids and the filter apply to this thread).
Status Confine(const ConfinementPlan& plan);

}  // namespace cellhouse::gateway

#endif  // CELLHOUSE_GATEWAY_CONFINE_H_
