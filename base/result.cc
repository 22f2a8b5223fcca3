#include "base/result.h"

#include <string.h>

#include <string>

namespace cellhouse {

Error Error::FromErrno(int err, std::string_view what) {
  std::string message(what);
  message += ": ";
  // strerrordesc_np/strerrorname_np (glibc >= 2.32) are thread-safe and do not allocate.
  const char* desc = strerrordesc_np(err);
  const char* name = strerrorname_np(err);
  message += desc != nullptr ? desc : "unknown error";
  if (name != nullptr) {
    message += " (";
    message += name;
    message += ")";
  } else {
    message += " (errno " + std::to_string(err) + ")";
  }
  return Error(std::move(message), err);
}

Error Error::Context(std::string_view context) && {
  std::string message(context);
  message += ": ";
  message += message_;
  return Error(std::move(message), errno_);
}

}  // namespace cellhouse
