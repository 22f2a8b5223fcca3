// celld's logging: spdlog to standard error. Under systemd (JOURNAL_STREAM set) every line
// starts with its syslog priority ("<3>" for errors, sd-daemon(3)), each line of a message that
// spans several included, so the journal records levels; the journal adds its own timestamps,
// so those are left out there.
//
//   CH_RETURN_IF_ERROR(SetupLogging("info"));
#ifndef CELLHOUSE_SUPERVISOR_LOGGING_H_
#define CELLHOUSE_SUPERVISOR_LOGGING_H_

#include <string_view>

#include "base/result.h"

namespace cellhouse::supervisor {

// level: trace, debug, info, warning, error, critical, off.
Status SetupLogging(std::string_view level);

}  // namespace cellhouse::supervisor

#endif  // CELLHOUSE_SUPERVISOR_LOGGING_H_
