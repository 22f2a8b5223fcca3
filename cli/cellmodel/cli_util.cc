#include "cli/cellmodel/cli_util.h"

#include <array>
#include <cstdio>

#include "base/print.h"
#include "cli/cellmodel/commands.h"

namespace cellhouse::cellmodel {

Parsed ParseFlags(FlagSet& flags, const std::vector<std::string>& args) {
  Result<std::vector<std::string>> positional = flags.Parse(args);
  if (!positional) {
    Printf(stderr, "cellmodel: %s\n", positional.error().message().c_str());
    return {.exit_code = kExitUsage};
  }
  if (flags.help_requested()) {
    Printf(stdout, "%s", flags.Usage().c_str());
    Printf(stdout, "%s", kExitCodesHelp);
    return {.exit_code = kExitOk};
  }
  return {.positional = std::move(*positional)};
}

std::string JsonQuote(std::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (u < 0x20) {
      std::array<char, 8> buf{};
      static_cast<void>(std::snprintf(buf.data(), buf.size(), "\\u%04x", u));
      out += buf.data();
    } else {
      out += c;
    }
  }
  return out + "\"";
}

int Fail(const char* command, const Error& error, int code) {
  Printf(stderr, "cellmodel %s: %s\n", command, error.message().c_str());
  return code;
}

}  // namespace cellhouse::cellmodel
