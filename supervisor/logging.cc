#include "supervisor/logging.h"

#include <sys/stat.h>
#include <sys/uio.h>
#include <systemd/sd-journal.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include "base/journal.h"
#include "base/strings.h"

namespace cellhouse::supervisor {
namespace {

// syslog(3) priority of a level, as sd-daemon(3) prefixes and journal PRIORITY= use it.
int SyslogPriority(spdlog::level::level_enum level) {
  switch (level) {
    case spdlog::level::trace:
    case spdlog::level::debug:
      return 7;  // LOG_DEBUG
    case spdlog::level::warn:
      return 4;  // LOG_WARNING
    case spdlog::level::err:
      return 3;  // LOG_ERR
    case spdlog::level::critical:
      return 2;  // LOG_CRIT
    default:
      return 6;  // LOG_INFO
  }
}

// The sd-daemon(3) priority prefix ("<3>") for a message's level.
void AppendPriority(spdlog::level::level_enum level, spdlog::memory_buf_t& dest) {
  const char text[3] = {'<', static_cast<char>('0' + SyslogPriority(level)), '>'};
  dest.append(text, text + 3);
}

// Where LogSession's entries go; set by SetupLogging. celld is single-threaded.
struct JournalOutput {
  bool enabled = false;
  JournalSender send;
};
JournalOutput& Journal() {
  static JournalOutput* output = new JournalOutput();  // never destroyed: used until exit
  return *output;
}

// Whether journald listens for native entries. sd_journal_sendv(3) reports success without it
// (it fails silently when the journal is not available), and a JOURNAL_STREAM of a service run
// without journald, or of a test, would swallow the lines.
bool JournalSocketPresent() {
  struct stat st {};
  return ::stat("/run/systemd/journal/socket", &st) == 0 && S_ISSOCK(st.st_mode);
}

int SendToJournal(const std::vector<std::string>& fields) {
  std::vector<iovec> iov;
  iov.reserve(fields.size());
  for (const std::string& f : fields) {
    // NOLINTNEXTLINE(cppcoreguidelines-pro-type-const-cast): iovec's API; the journal only reads
    iov.push_back({.iov_base = const_cast<char*>(f.data()), .iov_len = f.size()});
  }
  return sd_journal_sendv(iov.data(), static_cast<int>(iov.size()));
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

Status SetupLogging(std::string_view level, LoggingOptions options) {
  spdlog::level::level_enum parsed = spdlog::level::from_str(std::string(level));
  if (parsed == spdlog::level::off && level != "off") {
    return Error("--log-level " + Quote(level) +
                 ": expected trace, debug, info, warning, error, critical or off");
  }
  auto logger =
      std::make_shared<spdlog::logger>("celld", std::make_shared<spdlog::sinks::stderr_sink_mt>());
  auto formatter = std::make_unique<spdlog::pattern_formatter>();
  formatter->add_flag<PrioritizedMessageFlag>('*');
  const bool journal = options.journal.value_or(StderrIsJournal());
  formatter->set_pattern(journal ? "%*" : "%Y-%m-%d %H:%M:%S.%e %^%l%$ %v");
  // Structured entries only where journald takes them; a test that passes its own sender says
  // so itself.
  Journal().enabled = journal && (options.send ? true : JournalSocketPresent());
  Journal().send = options.send ? std::move(options.send) : JournalSender(SendToJournal);
  logger->set_formatter(std::move(formatter));
  logger->set_level(parsed);
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(std::move(logger));
  return Ok();
}

std::vector<std::string> JournalFields(spdlog::level::level_enum level,
                                       const SessionLogFields& fields, std::string_view message) {
  std::vector<std::string> out = {"MESSAGE=" + std::string(message),
                                  "PRIORITY=" + std::to_string(SyslogPriority(level)),
                                  "SYSLOG_IDENTIFIER=celld"};
  if (!fields.session_id.empty()) out.push_back("SESSION_ID=" + fields.session_id);
  if (fields.tenant_uid) out.push_back("TENANT=" + std::to_string(*fields.tenant_uid));
  if (!fields.policy.empty()) out.push_back("POLICY=" + fields.policy);
  if (!fields.outcome.empty()) out.push_back("OUTCOME=" + fields.outcome);
  return out;
}

void LogSession(spdlog::level::level_enum level, const SessionLogFields& fields,
                const std::string& message) {
  if (!spdlog::should_log(level)) return;
  JournalOutput& journal = Journal();
  if (journal.enabled && journal.send && journal.send(JournalFields(level, fields, message)) >= 0) {
    return;
  }
  // Not under the journal, or it refused the entry (no journald socket): the line as any other.
  spdlog::log(level, "{}", message);
}

}  // namespace cellhouse::supervisor
