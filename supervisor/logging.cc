#include "supervisor/logging.h"

#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include "base/strings.h"

namespace cellhouse::supervisor {
namespace {

// "%*": the sd-daemon(3) priority prefix for the message's level.
class PriorityFlag final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    int priority = 6;  // SD_INFO
    switch (msg.level) {
      case spdlog::level::trace:
      case spdlog::level::debug: priority = 7; break;
      case spdlog::level::info: priority = 6; break;
      case spdlog::level::warn: priority = 4; break;
      case spdlog::level::err: priority = 3; break;
      case spdlog::level::critical: priority = 2; break;
      default: break;
    }
    const char text[4] = {'<', static_cast<char>('0' + priority), '>', '\0'};
    dest.append(text, text + 3);
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<PriorityFlag>();
  }
};

}  // namespace

bool StderrIsJournal() {
  // NOLINTNEXTLINE(concurrency-mt-unsafe): read once at start-up
  const char* stream = std::getenv("JOURNAL_STREAM");
  if (stream == nullptr) return false;
  auto parts = Split(stream, ':');
  if (parts.size() != 2) return false;
  auto dev = ParseUint64(parts[0], "JOURNAL_STREAM");
  auto ino = ParseUint64(parts[1], "JOURNAL_STREAM");
  struct stat st {};
  if (!dev || !ino || ::fstat(2, &st) != 0) return false;
  return st.st_dev == *dev && st.st_ino == *ino;
}

Status SetupLogging(std::string_view level) {
  spdlog::level::level_enum parsed = spdlog::level::from_str(std::string(level));
  if (parsed == spdlog::level::off && level != "off") {
    return Error("--log-level " + Quote(level) +
                 ": expected trace, debug, info, warning, error, critical or off");
  }
  auto logger = std::make_shared<spdlog::logger>(
      "celld", std::make_shared<spdlog::sinks::stderr_sink_mt>());
  auto formatter = std::make_unique<spdlog::pattern_formatter>();
  formatter->add_flag<PriorityFlag>('*');
  formatter->set_pattern(StderrIsJournal() ? "%*%v" : "%Y-%m-%d %H:%M:%S.%e %^%l%$ %v");
  logger->set_formatter(std::move(formatter));
  logger->set_level(parsed);
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(std::move(logger));
  return Ok();
}

}  // namespace cellhouse::supervisor
