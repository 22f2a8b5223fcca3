#include "supervisor/logging.h"

#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include "base/journal.h"
#include "base/strings.h"

namespace cellhouse::supervisor {
namespace {

// The sd-daemon(3) priority prefix ("<3>") for a message's level.
void AppendPriority(spdlog::level::level_enum level, spdlog::memory_buf_t& dest) {
  int priority = 6;  // SD_INFO
  switch (level) {
    case spdlog::level::trace:
    case spdlog::level::debug:
      priority = 7;
      break;
    case spdlog::level::info:
      priority = 6;
      break;
    case spdlog::level::warn:
      priority = 4;
      break;
    case spdlog::level::err:
      priority = 3;
      break;
    case spdlog::level::critical:
      priority = 2;
      break;
    default:
      break;
  }
  const char text[3] = {'<', static_cast<char>('0' + priority), '>'};
  dest.append(text, text + 3);
}

// "%*": the message, every line of it prefixed with its priority. The journal makes one record
// per line of a stream (systemd-journald.service(8)), so a message that spans lines (a policy
// reload listing several problems) must carry the prefix on each, or its later lines would be
// recorded at the default level.
class PrioritizedMessageFlag final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    AppendPriority(msg.level, dest);
    const char* begin = msg.payload.data();
    const char* end = begin + msg.payload.size();
    for (const char* p = begin; p != end; ++p) {
      dest.push_back(*p);
      if (*p == '\n' && p + 1 != end) AppendPriority(msg.level, dest);
    }
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<PrioritizedMessageFlag>();
  }
};

}  // namespace

Status SetupLogging(std::string_view level) {
  spdlog::level::level_enum parsed = spdlog::level::from_str(std::string(level));
  if (parsed == spdlog::level::off && level != "off") {
    return Error("--log-level " + Quote(level) +
                 ": expected trace, debug, info, warning, error, critical or off");
  }
  auto logger =
      std::make_shared<spdlog::logger>("celld", std::make_shared<spdlog::sinks::stderr_sink_mt>());
  auto formatter = std::make_unique<spdlog::pattern_formatter>();
  formatter->add_flag<PrioritizedMessageFlag>('*');
  formatter->set_pattern(StderrIsJournal() ? "%*" : "%Y-%m-%d %H:%M:%S.%e %^%l%$ %v");
  logger->set_formatter(std::move(formatter));
  logger->set_level(parsed);
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(std::move(logger));
  return Ok();
}

}  // namespace cellhouse::supervisor
