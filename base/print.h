// Printf: formatted output for command-line tools, where a failed write to stdout or stderr is
// not actionable (the exit status reports the work, and a closed pipe ends the tool anyway).
// One place casts the result away, instead of every call site (cert-err33-c).
//
//   Printf(stdout, "%d layers\n", config.n_layers);
//   Printf(stderr, "cellmodel: %s\n", error.message().c_str());
#ifndef CELLHOUSE_BASE_PRINT_H_
#define CELLHOUSE_BASE_PRINT_H_

#include <cstdarg>
#include <cstdio>
#include <string_view>

namespace cellhouse {

__attribute__((format(printf, 2, 3))) inline void Printf(std::FILE* stream, const char* format,
                                                         ...) {
  va_list args;
  va_start(args, format);
  static_cast<void>(std::vfprintf(stream, format, args));
  va_end(args);
}

// Writes raw bytes (which may contain NUL) and flushes, for streamed output.
inline void WriteAndFlush(std::FILE* stream, std::string_view bytes) {
  static_cast<void>(std::fwrite(bytes.data(), 1, bytes.size(), stream));
  static_cast<void>(std::fflush(stream));
}

}  // namespace cellhouse

#endif  // CELLHOUSE_BASE_PRINT_H_
