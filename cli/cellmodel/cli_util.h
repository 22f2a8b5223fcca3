// Helpers the cellmodel subcommands share: flag parsing with --help and usage errors handled
// the same way everywhere, and error printing.
#ifndef CELLHOUSE_CLI_CELLMODEL_CLI_UTIL_H_
#define CELLHOUSE_CLI_CELLMODEL_CLI_UTIL_H_

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/flags.h"
#include "base/result.h"

namespace cellhouse::cellmodel {

// Parses `args`. Returns the positional arguments, or an exit code: 0 after printing --help,
// 2 after printing a usage error.
struct Parsed {
  std::vector<std::string> positional;
  std::optional<int> exit_code;
};
Parsed ParseFlags(FlagSet& flags, const std::vector<std::string>& args);

// A JSON string literal of `text`: quotes, backslashes and control bytes escaped.
std::string JsonQuote(std::string_view text);

// Prints "cellmodel <command>: <message>" to stderr and returns `code`.
int Fail(const char* command, const Error& error, int code);

}  // namespace cellhouse::cellmodel

#endif  // CELLHOUSE_CLI_CELLMODEL_CLI_UTIL_H_
