#include "cli/cellctl/cli_common.h"

#include "base/print.h"
#include "base/strings.h"
#include "cli/cellctl/commands.h"
#include "ipc/messages.h"

namespace cellhouse::cli {
namespace {

int ExitFor(const std::optional<api::Error>& error) {
  if (error && error->code() == api::SESSION_ENDED) return kExitSessionEnded;
  return kExitRefused;
}

}  // namespace

int Fail(const std::string& what, const std::optional<api::Error>& error) {
  std::string code = error ? " [" + ipc::ErrorCodeName(error->code()) + "]" : "";
  Printf(stderr, "cellctl: %s%s\n", what.c_str(), code.c_str());
  return error ? ExitFor(error) : kExitUnreachable;
}

Result<std::string> HexArg(const std::string& text, const char* what) {
  CH_ASSIGN_OR_RETURN(std::vector<std::byte> bytes, HexDecode(text, what));
  return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

std::string Duration(uint64_t ms) {
  if (ms < 1000) return std::to_string(ms) + "ms";
  if (ms < 120'000) return std::to_string(ms / 1000) + "s";
  if (ms < 7'200'000) return std::to_string(ms / 60'000) + "m";
  return std::to_string(ms / 3'600'000) + "h";
}

// Parses a subcommand's flags; returns an exit status when it should stop (help or error).
std::optional<int> ParseFlags(FlagSet& flags, const std::vector<std::string>& args,
                              std::vector<std::string>* positional) {
  Result<std::vector<std::string>> rest = flags.Parse(args);
  if (!rest) {
    Printf(stderr, "cellctl: %s\n", rest.error().message().c_str());
    return kExitUsage;
  }
  if (flags.help_requested()) {
    WriteAndFlush(stdout, flags.Usage().c_str());
    return kExitOk;
  }
  *positional = std::move(*rest);
  return std::nullopt;
}

}  // namespace cellhouse::cli
