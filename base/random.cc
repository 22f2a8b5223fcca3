#include "base/random.h"

#include <sys/random.h>

#include <cerrno>
#include <cstring>

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

Result<std::string> RandomBytes(size_t n) {
  std::string out(n, '\0');
  CH_RETURN_IF_ERROR(FillRandom(std::as_writable_bytes(std::span<char>(out.data(), out.size()))));
  return out;
}

Result<uint64_t> RandomUint64() {
  CH_ASSIGN_OR_RETURN(std::string bytes, RandomBytes(sizeof(uint64_t)));
  uint64_t value = 0;
  std::memcpy(&value, bytes.data(), sizeof(value));
  return value;
}

}  // namespace cellhouse
