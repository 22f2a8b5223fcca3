// UniqueFd owns one file descriptor and closes it when it goes out of scope. Every descriptor the
// project opens is held by one of these (and opened O_CLOEXEC), so nothing leaks into children.
//
//   CH_ASSIGN_OR_RETURN(UniqueFd fd, OpenReadOnly(path));
//   read(fd.get(), ...);
#ifndef CELLHOUSE_BASE_UNIQUE_FD_H_
#define CELLHOUSE_BASE_UNIQUE_FD_H_

#include <unistd.h>

#include <utility>

namespace cellhouse {

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) {
      reset(other.release());
    }
    return *this;
  }
  ~UniqueFd() { reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  explicit operator bool() const { return valid(); }

  // Gives up ownership without closing.
  int release() { return std::exchange(fd_, -1); }
  // Closes the held descriptor (if any) and takes `fd`. close() errors are ignored on purpose:
  // on Linux the descriptor is released even when close reports EINTR or EIO (close(2)).
  void reset(int fd = -1) {
    if (fd_ >= 0) {
      static_cast<void>(::close(fd_));
    }
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

}  // namespace cellhouse

#endif  // CELLHOUSE_BASE_UNIQUE_FD_H_
