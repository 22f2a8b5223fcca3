// What cellctl's commands share: turning failures into exit statuses and messages, flag
// parsing with --help, hex arguments.
#ifndef CELLHOUSE_CLI_CELLCTL_CLI_COMMON_H_
#define CELLHOUSE_CLI_CELLCTL_CLI_COMMON_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/flags.h"
#include "base/result.h"
#include "ipc/api.pb.h"

namespace cellhouse::cli {

// Prints "cellctl: WHAT [CODE]" and returns the exit status for it: the server's error code
// when there is one (kExitRefused, or kExitSessionEnded), else kExitUnreachable.
int Fail(const std::string& what, const std::optional<api::Error>& error);

// Parses a command's flags; returns an exit status when the command should stop there (--help
// printed, or a usage error printed).
std::optional<int> ParseFlags(FlagSet& flags, const std::vector<std::string>& args,
                              std::vector<std::string>* positional);

// A session id or token given in hex, as the bytes the protocol carries.
Result<std::string> HexArg(const std::string& text, const char* what);

// 1500 -> "1s", 90000 -> "1m": for tables.
std::string Duration(uint64_t ms);

}  // namespace cellhouse::cli

#endif  // CELLHOUSE_CLI_CELLCTL_CLI_COMMON_H_
