#include "ipc/unix_socket.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <utility>

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

namespace {

std::string Octal(mode_t mode) {
  char buf[16];
  static_cast<void>(std::snprintf(buf, sizeof(buf), "%04o", mode & 07777));
  return buf;
}

// Whether `st` (a directory) lets someone other than root and us change its entries.
bool OthersMayWrite(const struct stat& st, bool sticky_ok) {
  bool owner_ok = st.st_uid == 0 || st.st_uid == ::geteuid();
  bool writable = (st.st_mode & (S_IWGRP | S_IWOTH)) != 0;
  if (writable && sticky_ok && (st.st_mode & S_ISVTX) != 0) writable = false;
  return !owner_ok || writable;
}

// The directory part of `path` ("." for a bare name) and the name.
std::pair<std::string, std::string> SplitPath(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return {".", path};
  return {slash == 0 ? "/" : path.substr(0, slash), path.substr(slash + 1)};
}

}  // namespace

Result<std::string> CheckPrivateDirectory(const std::string& dir) {
  char resolved[PATH_MAX];
  if (::realpath(dir.c_str(), resolved) == nullptr) {
    return Error::FromErrno(errno, "resolve the socket directory " + Quote(dir));
  }
  // From the directory itself up to "/": the directory must not be writable by others at all
  // (a sticky bit does not stop them from planting a name); above it a sticky directory is fine,
  // as nobody else can rename or remove what root made there.
  std::string current = resolved;
  bool first = true;
  for (;;) {
    struct stat st {};
    if (::lstat(current.c_str(), &st) != 0) {
      return Error::FromErrno(errno, "stat " + Quote(current));
    }
    if (OthersMayWrite(st, /*sticky_ok=*/!first)) {
      return Error("the socket directory " + Quote(dir) +
                   (current == resolved ? std::string() : " (through " + Quote(current) + ")") +
                   " can be changed by other users (owner uid " + std::to_string(st.st_uid) +
                   ", mode " + Octal(st.st_mode) +
                   "): they could replace the socket or redirect its permissions. Use a "
                   "directory only root may write, such as /run/cellhouse. Refusing.");
    }
    if (current == "/") return std::string(resolved);
    current = SplitPath(current).first;
    first = false;
  }
}

Result<UniqueFd> ListenUnix(const ListenOptions& options, SocketFile* bound) {
  CH_RETURN_IF_ERROR(MakeAddress(options.path));
  const std::pair<std::string, std::string> parts = SplitPath(options.path);
  const std::string& name = parts.second;
  // From here on only the resolved directory is used: a link on the way may belong to someone.
  Result<std::string> resolved = CheckPrivateDirectory(parts.first);
  if (!resolved) return std::move(resolved).error();
  const std::string prefix = *resolved == "/" ? std::string() : *resolved;
  const std::string path = prefix + "/" + name;
  CH_ASSIGN_OR_RETURN(sockaddr_un final_addr, MakeAddress(path));
  struct stat existing {};
  if (::lstat(path.c_str(), &existing) == 0) {
    if (!S_ISSOCK(existing.st_mode)) {
      return Error(Quote(options.path) + " exists and is not a socket; remove it or choose " +
                   "another --socket. Refusing.");
    }
    if (SomeoneListens(final_addr)) {
      return Error("another server is listening on " + Quote(options.path) +
                   "; stop it or choose another --socket. Refusing.");
    }
    // A stale socket: the rename below replaces it atomically.
  }

  // A directory of our own beside the socket (same file system, so the rename is atomic),
  // where nobody else can swap the file between bind and chmod/chown.
  std::string private_dir = prefix + "/.celld.XXXXXX";
  if (::mkdtemp(private_dir.data()) == nullptr) {
    return Error::FromErrno(errno, "make a private directory beside " + Quote(options.path));
  }
  std::string staged = private_dir + "/" + name;
  auto cleanup = [&] {
    static_cast<void>(::unlink(staged.c_str()));
    static_cast<void>(::rmdir(private_dir.c_str()));
  };
  Result<sockaddr_un> staged_addr = MakeAddress(staged);
  if (!staged_addr) {
    cleanup();
    return Error("socket path " + Quote(options.path) +
                 " is too long to be bound safely (it is staged in a directory beside it); "
                 "choose a shorter --socket");
  }
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  auto fail = [&](int err, const std::string& what) {
    cleanup();
    return Error::FromErrno(err, what);
  };
  if (!fd.valid()) return fail(errno, "socket(AF_UNIX)");
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&*staged_addr), sizeof(*staged_addr)) !=
      0) {
    return fail(errno, "bind " + Quote(staged));
  }
  if (options.group && ::lchown(staged.c_str(), static_cast<uid_t>(-1), *options.group) != 0) {
    return fail(errno,
                "chown " + Quote(options.path) + " to gid " + std::to_string(*options.group));
  }
  if (::chmod(staged.c_str(), options.mode) != 0) {
    return fail(errno, "chmod " + Quote(options.path));
  }
  struct stat made {};
  if (::lstat(staged.c_str(), &made) != 0) return fail(errno, "stat " + Quote(staged));
  if (::listen(fd.get(), options.backlog) != 0) {
    return fail(errno, "listen on " + Quote(options.path));
  }
  if (::rename(staged.c_str(), path.c_str()) != 0) {
    return fail(errno, "rename " + Quote(staged) + " to " + Quote(options.path));
  }
  static_cast<void>(::rmdir(private_dir.c_str()));
  if (bound != nullptr) *bound = SocketFile{path, made.st_dev, made.st_ino};
  return fd;
}

Status RemoveSocketFile(const SocketFile& file) {
  struct stat st {};
  if (::lstat(file.path.c_str(), &st) != 0) {
    if (errno == ENOENT) return Ok();
    return Error::FromErrno(errno, "stat " + Quote(file.path));
  }
  if (st.st_dev != file.dev || st.st_ino != file.ino) return Ok();  // not ours any more
  if (::unlink(file.path.c_str()) != 0 && errno != ENOENT) {
    return Error::FromErrno(errno, "remove " + Quote(file.path));
  }
  return Ok();
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
