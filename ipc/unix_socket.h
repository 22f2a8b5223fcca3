// Unix-domain sockets: listening (with the mode and group clients need), connecting, and the
// kernel's word on who is at the other end (SO_PEERCRED, SO_PEERGROUPS).
//
//   CH_ASSIGN_OR_RETURN(UniqueFd listener, ListenUnix({.path = "/run/cellhouse/celld.sock"}));
//   UniqueFd conn(accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
//   CH_ASSIGN_OR_RETURN(PeerCredentials peer, GetPeerCredentials(conn.get()));
#ifndef CELLHOUSE_IPC_UNIX_SOCKET_H_
#define CELLHOUSE_IPC_UNIX_SOCKET_H_

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "base/result.h"
#include "base/unique_fd.h"

namespace cellhouse::ipc {

struct ListenOptions {
  std::string path;
  mode_t mode = 0660;          // applied to the socket file
  std::optional<gid_t> group;  // chown the socket to this group (clients' group)
  int backlog = 128;
};

// Binds and listens (non-blocking, close-on-exec). A stale socket file left by a dead daemon is
// replaced; a live one (something accepts connections there) is an error, never stolen.
Result<UniqueFd> ListenUnix(const ListenOptions& options);

// Connects a blocking, close-on-exec stream socket to `path`.
Result<UniqueFd> ConnectUnix(const std::string& path);

// Checks that an inherited descriptor is a listening stream socket of any family (socket
// activation: the metrics socket may be TCP), or a listening Unix stream socket (the API).
Status CheckListeningStream(int fd);
Status CheckListeningUnixStream(int fd);

struct PeerCredentials {
  pid_t pid = 0;
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;  // supplementary groups (SO_PEERGROUPS)
};

// The credentials the peer had when it connected (SO_PEERCRED): the kernel's, not the peer's say.
Result<PeerCredentials> GetPeerCredentials(int fd);

}  // namespace cellhouse::ipc

#endif  // CELLHOUSE_IPC_UNIX_SOCKET_H_
