#include "supervisor/cgroup/fs.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <memory>

#include "base/io.h"
#include "base/strings.h"

namespace cellhouse::cgroup {

namespace {
constexpr size_t kMaxCgroupFileBytes = 1 << 20;
}  // namespace

Result<std::string> RealFs::ReadFile(const std::string& path) const {
  return ReadFileToString(path, kMaxCgroupFileBytes);
}

Status RealFs::WriteFile(const std::string& path, std::string_view value) const {
  return WriteStringToFile(path, value);
}

Status RealFs::MakeDir(const std::string& path) const {
  if (::mkdir(path.c_str(), 0700) != 0) {
    return Error::FromErrno(errno, "mkdir '" + path + "'");
  }
  return Ok();
}

Status RealFs::RemoveDir(const std::string& path) const {
  if (::rmdir(path.c_str()) != 0) {
    return Error::FromErrno(errno, "rmdir '" + path + "'");
  }
  return Ok();
}

Result<std::vector<std::string>> RealFs::ListSubdirs(const std::string& path) const {
  UniqueFd dir_fd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir_fd.valid()) {
    return Error::FromErrno(errno, "open directory '" + path + "'");
  }
  std::unique_ptr<DIR, int (*)(DIR*)> dir(::fdopendir(dir_fd.get()), &::closedir);
  if (!dir) {
    return Error::FromErrno(errno, "fdopendir '" + path + "'");
  }
  static_cast<void>(dir_fd.release());  // closedir owns it now
  std::vector<std::string> names;
  for (;;) {
    errno = 0;
    const dirent* entry = ::readdir(dir.get());  // NOLINT(concurrency-mt-unsafe): dir is local
    if (entry == nullptr) {
      if (errno != 0) {
        return Error::FromErrno(errno, "readdir '" + path + "'");
      }
      break;
    }
    std::string_view name(entry->d_name);
    if (name == "." || name == "..") {
      continue;
    }
    bool is_dir = entry->d_type == DT_DIR;
    if (entry->d_type == DT_UNKNOWN) {
      struct stat st {};
      is_dir = ::fstatat(::dirfd(dir.get()), entry->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
               S_ISDIR(st.st_mode);
    }
    if (is_dir) {
      names.emplace_back(name);
    }
  }
  std::sort(names.begin(), names.end());
  return names;
}

Result<int64_t> RealFs::FilesystemType(const std::string& path) const {
  struct statfs st {};
  if (::statfs(path.c_str(), &st) != 0) {
    return Error::FromErrno(errno, "statfs '" + path + "'");
  }
  return static_cast<int64_t>(st.f_type);
}

bool RealFs::Exists(const std::string& path) const {
  return ::faccessat(AT_FDCWD, path.c_str(), F_OK, AT_EACCESS) == 0;
}

Result<UniqueFd> RealFs::OpenDirectory(const std::string& path) const {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid()) {
    return Error::FromErrno(errno, "open directory '" + path + "'");
  }
  return fd;
}

Result<UniqueFd> RealFs::OpenForWriting(const std::string& path) const {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd.valid()) {
    return Error::FromErrno(errno, "open '" + path + "' for writing");
  }
  return fd;
}

namespace {

// The pid holding a flock on (dev, ino), from /proc/locks ("1: FLOCK ADVISORY WRITE 4242
// 00:23:6434 0 EOF", device as hex major:minor), or 0 when it does not say.
pid_t FlockHolder(dev_t dev, ino_t ino) {
  Result<std::string> locks = ReadFileToString("/proc/locks", 1 << 20);
  if (!locks) {
    return 0;
  }
  for (std::string_view line : Split(*locks, '\n')) {
    if (line.find("FLOCK") == std::string_view::npos || line.find("->") != std::string_view::npos) {
      continue;  // another kind of lock, or a waiter
    }
    unsigned major_dev = 0;
    unsigned minor_dev = 0;
    unsigned long long inode = 0;
    long long pid = 0;
    const std::string text(line);
    // NOLINTNEXTLINE(cert-err34-c): the count of converted fields is checked
    if (std::sscanf(text.c_str(), "%*d: FLOCK %*s %*s %lld %x:%x:%llu", &pid, &major_dev,
                    &minor_dev, &inode) == 4 &&
        major_dev == major(dev) && minor_dev == minor(dev) && inode == ino) {
      return static_cast<pid_t>(pid);
    }
  }
  return 0;
}

}  // namespace

Result<UniqueFd> RealFs::LockDirectory(const std::string& path) const {
  // A directory removed and made again between open and flock would leave us holding a lock on
  // the old one: check that the path still names the locked directory, and try again if not.
  for (int attempt = 0; attempt < 3; ++attempt) {
    CH_ASSIGN_OR_RETURN(UniqueFd fd, OpenDirectory(path));
    if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
      const int err = errno;
      struct stat locked {};
      pid_t holder = err == EWOULDBLOCK && ::fstat(fd.get(), &locked) == 0
                         ? FlockHolder(locked.st_dev, locked.st_ino)
                         : 0;
      return Error::FromErrno(
          err, "flock '" + path + "'" +
                   (holder > 0 ? " (held by pid " + std::to_string(holder) + ")" : std::string()));
    }
    struct stat locked {};
    struct stat named {};
    if (::fstat(fd.get(), &locked) != 0) {
      return Error::FromErrno(errno, "fstat '" + path + "'");
    }
    if (::stat(path.c_str(), &named) == 0 && named.st_dev == locked.st_dev &&
        named.st_ino == locked.st_ino) {
      return fd;
    }
  }
  return Error("flock '" + path + "': the directory keeps being replaced");
}

Status RealProcesses::Kill(pid_t pid, int signal) const {
  if (::kill(pid, signal) != 0 && errno != ESRCH) {
    return Error::FromErrno(errno, "kill pid " + std::to_string(pid));
  }
  return Ok();
}

pid_t RealProcesses::SelfPid() const { return ::getpid(); }

void RealProcesses::Pause(std::chrono::milliseconds duration) const {
  timespec left{.tv_sec = static_cast<time_t>(duration.count() / 1000),
                .tv_nsec = static_cast<long>((duration.count() % 1000) * 1000000)};
  while (::nanosleep(&left, &left) != 0 && errno == EINTR) {
  }
}

}  // namespace cellhouse::cgroup
