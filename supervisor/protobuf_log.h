// libprotobuf's own log lines, routed into celld's log. The library writes some complaints
// itself (a string field that is not valid UTF-8 is one line per message parsed), straight to
// standard error and without the journal's priority prefix; a client sending such requests in a
// loop would fill the journal. Installed once, the handler sends every line through spdlog, says
// whose bytes caused it, and bounds how many get through: one per connection, and a few per
// window for all sources together, the rest counted and reported with the next line let through.
//
//   InstallProtobufLogHandler();                     // once, at start-up
//   ...
//   {
//     ProtobufLogScope scope(conn.identity.ToString(), &conn.protobuf_log_lines);
//     ok = request.ParseFromString(frame);           // complaints: "uid 1000 sent ..."
//   }
#ifndef CELLHOUSE_SUPERVISOR_PROTOBUF_LOG_H_
#define CELLHOUSE_SUPERVISOR_PROTOBUF_LOG_H_

#include <cstdint>
#include <string>

namespace cellhouse::supervisor {

// Lets `burst` lines through per `window_ns`, and counts the ones it holds back.
class LogRateLimiter {
 public:
  LogRateLimiter(uint32_t burst, int64_t window_ns) : burst_(burst), window_ns_(window_ns) {}
  // Whether a line may be logged at `now_ns`. When it may, *suppressed is set to the number of
  // lines held back since the last one let through (and the count restarts).
  bool Allow(int64_t now_ns, uint64_t* suppressed);

 private:
  uint32_t burst_;
  int64_t window_ns_;
  int64_t window_start_ns_ = 0;
  uint32_t in_window_ = 0;
  uint64_t suppressed_ = 0;
  bool started_ = false;
};

// Lines let through per connection, and for all sources together per window.
inline constexpr uint32_t kProtobufLinesPerConnection = 1;
inline constexpr uint32_t kProtobufLinesPerWindow = 5;
inline constexpr int64_t kProtobufLogWindowNs = 10'000'000'000;

// Routes libprotobuf's log to spdlog. Idempotent.
void InstallProtobufLogHandler();

// While it lives, libprotobuf's lines are attributed to `source` and counted in *lines (the
// caller keeps one counter per connection).
class ProtobufLogScope {
 public:
  ProtobufLogScope(std::string source, uint32_t* lines);
  ~ProtobufLogScope();
  ProtobufLogScope(const ProtobufLogScope&) = delete;
  ProtobufLogScope& operator=(const ProtobufLogScope&) = delete;

 private:
  std::string source_;
  uint32_t* lines_;
  ProtobufLogScope* previous_;
  friend void HandleProtobufLogLine(int, const char*, int, const std::string&);
};

// The handler itself (protobuf's LogLevel as an int), for tests.
void HandleProtobufLogLine(int level, const char* filename, int line, const std::string& message);

}  // namespace cellhouse::supervisor

#endif  // CELLHOUSE_SUPERVISOR_PROTOBUF_LOG_H_
