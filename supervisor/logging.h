// celld's logging: spdlog to standard error. Under systemd (JOURNAL_STREAM set) every line
// starts with its syslog priority ("<3>" for errors, sd-daemon(3)), each line of a message that
// spans several included, so the journal records levels; the journal adds its own timestamps,
// so those are left out there. Lines about a session also carry structured fields: under the
// journal they are sent with sd_journal_sendv(3) as SESSION_ID, TENANT, POLICY and OUTCOME, so
// `journalctl SESSION_ID=3f9c...` finds a session's lines; on standard error their words say it.
//
//   CH_RETURN_IF_ERROR(SetupLogging("info"));
//   LogSession(spdlog::level::info, {.session_id = hex, .tenant_uid = 1000, .policy = "default"},
//              "session " + hex + " started: ...");
#ifndef CELLHOUSE_SUPERVISOR_LOGGING_H_
#define CELLHOUSE_SUPERVISOR_LOGGING_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <spdlog/common.h>

#include "base/result.h"

namespace cellhouse::supervisor {

// Sends one journal entry of "KEY=value" fields; 0 or a negative errno (sd_journal_sendv(3)).
using JournalSender = std::function<int(const std::vector<std::string>& fields)>;

struct LoggingOptions {
  // Whether standard error is the journal; unset: JOURNAL_STREAM says (StderrIsJournal).
  std::optional<bool> journal;
  // Where structured entries go under the journal; unset: sd_journal_sendv. Tests capture here.
  JournalSender send;
};

// level: trace, debug, info, warning, error, critical, off.
Status SetupLogging(std::string_view level, LoggingOptions options = {});

// The structured fields of a line about one session.
struct SessionLogFields {
  std::string session_id;  // lower-case hex, as in the message
  std::optional<uint32_t> tenant_uid;
  std::string policy;
  std::string outcome;  // an api::SessionOutcome name, on the line saying how it ended
};

// Logs `message` at `level`: under the journal as one entry with `fields` (falling back to
// standard error if the journal refuses it), otherwise as any other line.
void LogSession(spdlog::level::level_enum level, const SessionLogFields& fields,
                const std::string& message);

// The entry LogSession sends: MESSAGE, PRIORITY, SYSLOG_IDENTIFIER and the fields that are set.
std::vector<std::string> JournalFields(spdlog::level::level_enum level,
                                       const SessionLogFields& fields, std::string_view message);

}  // namespace cellhouse::supervisor

#endif  // CELLHOUSE_SUPERVISOR_LOGGING_H_
