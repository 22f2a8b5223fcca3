#include "base/random.h"

#include <sys/random.h>

#include <cerrno>

namespace cellhouse {

Status FillRandom(std::span<std::byte> out) {
  size_t done = 0;
  while (done < out.size()) {
    ssize_t n = ::getrandom(out.data() + done, out.size() - done, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Error::FromErrno(errno, "getrandom");
    }
    done += static_cast<size_t>(n);
  }
  return Ok();
}

}  // namespace cellhouse
