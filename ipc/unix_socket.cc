#include "ipc/unix_socket.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/strings.h"

namespace cellhouse::ipc {
namespace {

Result<sockaddr_un> MakeAddress(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) {
    return Error("socket path " + Quote(path) + " must be 1 to " +
                 std::to_string(sizeof(addr.sun_path) - 1) + " bytes long");
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
  return addr;
}

// True when something accepts connections at `addr` right now.
bool SomeoneListens(const sockaddr_un& addr) {
  UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!probe.valid()) return false;
  return ::connect(probe.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0;
}

}  // namespace

Result<UniqueFd> ListenUnix(const ListenOptions& options) {
  CH_ASSIGN_OR_RETURN(sockaddr_un addr, MakeAddress(options.path));
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd.valid()) return Error::FromErrno(errno, "socket(AF_UNIX)");
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
    if (errno != EADDRINUSE) return Error::FromErrno(errno, "bind " + Quote(options.path));
    struct stat st {};
    if (::lstat(options.path.c_str(), &st) != 0 || !S_ISSOCK(st.st_mode)) {
      return Error(Quote(options.path) + " exists and is not a socket; remove it or choose " +
                   "another --socket. Refusing.");
    }
    if (SomeoneListens(addr)) {
      return Error("another server is listening on " + Quote(options.path) +
                   "; stop it or choose another --socket. Refusing.");
    }
    if (::unlink(options.path.c_str()) != 0) {
      return Error::FromErrno(errno, "remove stale socket " + Quote(options.path));
    }
    if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
      return Error::FromErrno(errno, "bind " + Quote(options.path));
    }
  }
  if (options.group && ::chown(options.path.c_str(), static_cast<uid_t>(-1), *options.group) != 0) {
    return Error::FromErrno(
        errno, "chown " + Quote(options.path) + " to gid " + std::to_string(*options.group));
  }
  if (::chmod(options.path.c_str(), options.mode) != 0) {
    return Error::FromErrno(errno, "chmod " + Quote(options.path));
  }
  if (::listen(fd.get(), options.backlog) != 0) {
    return Error::FromErrno(errno, "listen on " + Quote(options.path));
  }
  return fd;
}

Result<UniqueFd> ConnectUnix(const std::string& path) {
  CH_ASSIGN_OR_RETURN(sockaddr_un addr, MakeAddress(path));
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return Error::FromErrno(errno, "socket(AF_UNIX)");
  int rc;
  do {
    rc = ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr));
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) return Error::FromErrno(errno, "connect to " + Quote(path));
  return fd;
}

Status CheckListeningStream(int fd) {
  int type = 0;
  socklen_t len = sizeof(type);
  if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0) {
    return Error::FromErrno(errno, "getsockopt(SO_TYPE) on fd " + std::to_string(fd));
  }
  if (type != SOCK_STREAM) return Error("fd " + std::to_string(fd) + " is not a stream socket");
  int listening = 0;
  len = sizeof(listening);
  if (::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0) {
    return Error::FromErrno(errno, "getsockopt(SO_ACCEPTCONN) on fd " + std::to_string(fd));
  }
  if (listening == 0) return Error("fd " + std::to_string(fd) + " is not listening");
  return Ok();
}

Status CheckListeningUnixStream(int fd) {
  sockaddr_storage addr{};
  socklen_t len = sizeof(addr);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    return Error::FromErrno(errno, "getsockname on fd " + std::to_string(fd));
  }
  if (addr.ss_family != AF_UNIX) {
    return Error("fd " + std::to_string(fd) + " is not a Unix-domain socket");
  }
  return CheckListeningStream(fd);
}

Result<PeerCredentials> GetPeerCredentials(int fd) {
  ucred cred{};
  socklen_t len = sizeof(cred);
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    return Error::FromErrno(errno, "getsockopt(SO_PEERCRED)");
  }
  PeerCredentials peer{.pid = cred.pid, .uid = cred.uid, .gid = cred.gid, .groups = {}};
  // SO_PEERGROUPS (Linux 4.13): ERANGE tells the size needed.
  std::vector<gid_t> groups(64);
  for (int attempt = 0; attempt < 4; ++attempt) {
    len = static_cast<socklen_t>(groups.size() * sizeof(gid_t));
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &len) == 0) {
      groups.resize(len / sizeof(gid_t));
      peer.groups = std::move(groups);
      return peer;
    }
    if (errno != ERANGE) return Error::FromErrno(errno, "getsockopt(SO_PEERGROUPS)");
    groups.resize(len / sizeof(gid_t) + 1);
  }
  return Error("getsockopt(SO_PEERGROUPS): group list keeps growing");
}

}  // namespace cellhouse::ipc
