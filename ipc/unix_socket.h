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

// The file a listener was bound to, to remove it later only if it is still that file.
struct SocketFile {
  std::string path;
  dev_t dev = 0;
  ino_t ino = 0;
};

// Binds and listens (non-blocking, close-on-exec). A stale socket file left by a dead daemon is
// replaced; a live one (something accepts connections there) is an error, never stolen.
//
// The socket's directory, and every directory above it, must be writable by nobody but root and
// this process's user (sticky directories such as /tmp are tolerated above the socket's own
// directory, not as it): otherwise another user could replace the socket, or plant a link where
// its mode is set, and the call is refused. The socket is bound in a private directory made
// beside it, given its mode and group there (where nobody else can reach it), then renamed into
// place, so no path another user could change is ever followed.
Result<UniqueFd> ListenUnix(const ListenOptions& options, SocketFile* bound = nullptr);

// Checks that nobody but root and this process's user can write `dir` or a directory above it
// (see ListenUnix); returns the directory with every symbolic link resolved, the path to use
// from then on. The error names the directory, its owner and mode.
Result<std::string> CheckPrivateDirectory(const std::string& dir);

// Removes the socket file if it is still the one bound (a successor may have bound its own
// there since). Missing is not an error.
Status RemoveSocketFile(const SocketFile& file);

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
