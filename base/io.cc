#include "base/io.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <memory>

namespace cellhouse {

Result<FdPair> MakePipe(int extra_flags) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC | extra_flags) != 0) {
    return Error::FromErrno(errno, "pipe2");
  }
  return FdPair{UniqueFd(fds[0]), UniqueFd(fds[1])};
}

Result<FdPair> MakeSocketPair(int type) {
  int fds[2];
  if (::socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, fds) != 0) {
    return Error::FromErrno(errno, "socketpair");
  }
  return FdPair{UniqueFd(fds[0]), UniqueFd(fds[1])};
}

Status WriteFull(int fd, std::span<const std::byte> data, std::string_view what) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Error::FromErrno(errno, "write to " + std::string(what));
    }
    done += static_cast<size_t>(n);
  }
  return Ok();
}

Status WriteFull(int fd, std::string_view data, std::string_view what) {
  return WriteFull(fd, std::as_bytes(std::span<const char>(data.data(), data.size())), what);
}

Status ReadFull(int fd, std::span<std::byte> data, std::string_view what) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::read(fd, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Error::FromErrno(errno, "read from " + std::string(what));
    }
    if (n == 0) {
      return Error("read from " + std::string(what) + ": unexpected end of file after " +
                   std::to_string(done) + " of " + std::to_string(data.size()) + " bytes");
    }
    done += static_cast<size_t>(n);
  }
  return Ok();
}

Result<std::string> ReadFileToString(const std::string& path, size_t max_bytes) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return Error::FromErrno(errno, "open '" + path + "'");
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Error::FromErrno(errno, "read '" + path + "'");
    }
    if (n == 0) break;
    if (out.size() + static_cast<size_t>(n) > max_bytes) {
      return Error("read '" + path + "': larger than the limit of " + std::to_string(max_bytes) +
                   " bytes");
    }
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

Status WriteStringToFile(const std::string& path, std::string_view content) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd.valid()) return Error::FromErrno(errno, "open '" + path + "' for writing");
  ssize_t n;
  do {
    n = ::write(fd.get(), content.data(), content.size());
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    return Error::FromErrno(errno, "write '" + std::string(content) + "' to '" + path + "'");
  }
  if (static_cast<size_t>(n) != content.size()) {
    return Error("write to '" + path + "': short write");
  }
  return Ok();
}

Status CreateFileWithContent(const std::string& path, std::string_view content, mode_t mode) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode));
  if (!fd.valid()) return Error::FromErrno(errno, "create '" + path + "'");
  return WriteFull(fd.get(), content, "'" + path + "'");
}

Result<std::vector<std::string>> ListDirectory(const std::string& path) {
  std::unique_ptr<DIR, int (*)(DIR*)> dir(::opendir(path.c_str()), &::closedir);
  if (!dir) return Error::FromErrno(errno, "opendir '" + path + "'");
  std::vector<std::string> names;
  for (;;) {
    errno = 0;
    const dirent* entry = ::readdir(dir.get());  // NOLINT(concurrency-mt-unsafe): dir is local
    if (entry == nullptr) {
      if (errno != 0) return Error::FromErrno(errno, "readdir '" + path + "'");
      break;
    }
    std::string_view name(entry->d_name);
    if (name == "." || name == "..") continue;
    names.emplace_back(name);
  }
  std::sort(names.begin(), names.end());
  return names;
}

Status SetNonBlocking(int fd) {
  int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0) return Error::FromErrno(errno, "fcntl(F_GETFL)");
  if (::fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) {
    return Error::FromErrno(errno, "fcntl(F_SETFL, O_NONBLOCK)");
  }
  return Ok();
}

}  // namespace cellhouse
