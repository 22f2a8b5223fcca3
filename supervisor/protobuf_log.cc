#include "supervisor/protobuf_log.h"

#include <google/protobuf/stubs/logging.h>

#include <string>
#include <utility>

#include <spdlog/spdlog.h>

#include "base/clock.h"

namespace cellhouse::supervisor {
namespace {

// celld is single-threaded: plain globals are enough (and the handler is a plain function).
ProtobufLogScope* g_scope = nullptr;
LogRateLimiter g_limiter(kProtobufLinesPerWindow, kProtobufLogWindowNs);

spdlog::level::level_enum LevelFor(int level, bool from_client) {
  switch (level) {
    case google::protobuf::LOGLEVEL_INFO:
      return spdlog::level::info;
    case google::protobuf::LOGLEVEL_WARNING:
      return spdlog::level::warn;
    case google::protobuf::LOGLEVEL_ERROR:
      // A client's malformed bytes are the client's error, not celld's.
      return from_client ? spdlog::level::warn : spdlog::level::err;
    default:
      return spdlog::level::critical;
  }
}

void Handler(google::protobuf::LogLevel level, const char* filename, int line,
             const std::string& message) {
  HandleProtobufLogLine(static_cast<int>(level), filename, line, message);
}

}  // namespace

bool LogRateLimiter::Allow(int64_t now_ns, uint64_t* suppressed) {
  if (!started_ || now_ns - window_start_ns_ >= window_ns_) {
    started_ = true;
    window_start_ns_ = now_ns;
    in_window_ = 0;
  }
  if (in_window_ >= burst_) {
    ++suppressed_;
    return false;
  }
  ++in_window_;
  *suppressed = suppressed_;
  suppressed_ = 0;
  return true;
}

ProtobufLogScope::ProtobufLogScope(std::string source, uint32_t* lines)
    : source_(std::move(source)), lines_(lines), previous_(g_scope) {
  g_scope = this;
}

ProtobufLogScope::~ProtobufLogScope() { g_scope = previous_; }

void HandleProtobufLogLine(int level, const char* filename, int line, const std::string& message) {
  bool fatal = level == google::protobuf::LOGLEVEL_FATAL;
  if (!fatal) {
    // One line per connection: a client repeating itself on one connection says nothing new.
    if (g_scope != nullptr && g_scope->lines_ != nullptr &&
        (*g_scope->lines_)++ >= kProtobufLinesPerConnection) {
      return;
    }
    uint64_t suppressed = 0;
    if (!g_limiter.Allow(MonotonicNanos(), &suppressed)) return;
    std::string more = suppressed == 0 ? std::string()
                                       : " (" + std::to_string(suppressed) +
                                             " more libprotobuf lines were not logged)";
    if (g_scope != nullptr) {
      spdlog::log(LevelFor(level, true), "{} sent a request libprotobuf complained about: {}{}",
                  g_scope->source_, message, more);
    } else {
      spdlog::log(LevelFor(level, false), "libprotobuf ({}:{}): {}{}", filename, line, message,
                  more);
    }
    return;
  }
  spdlog::critical("libprotobuf ({}:{}): {}", filename, line, message);
}

void InstallProtobufLogHandler() { google::protobuf::SetLogHandler(&Handler); }

}  // namespace cellhouse::supervisor
