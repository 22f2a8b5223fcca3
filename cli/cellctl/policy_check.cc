// `cellctl policy check FILE...`: validates policy files without celld and prints each one's
// effective policy and compiled filter (policy::CheckPolicyFiles).
#include <cstdio>

#include "base/flags.h"
#include "base/print.h"
#include "cli/cellctl/commands.h"
#include "policy/policy.h"

namespace cellhouse::cli {

int CmdPolicyCheck(const GlobalOptions& /*global*/, const std::vector<std::string>& args) {
  FlagSet flags("cellctl policy check FILE...",
                "Validates policy files (text format *.textproto or JSON *.json) and prints, for\n"
                "each, the effective policy with every default filled in and the compiled\n"
                "seccomp filter: its default action, the allowed system calls and every rule.\n"
                "Checks that depend on the model (memory against the context) are made by celld\n"
                "when it loads the directory. Exit status 0 when every file is valid, else 1.");
  Result<std::vector<std::string>> files = flags.Parse(args);
  if (!files) {
    Printf(stderr, "cellctl: %s\n", files.error().message().c_str());
    return kExitUsage;
  }
  if (flags.help_requested()) {
    WriteAndFlush(stdout, flags.Usage().c_str());
    return kExitOk;
  }
  if (files->empty()) {
    Printf(stderr, "cellctl policy check: name at least one FILE; see --help\n");
    return kExitUsage;
  }
  policy::PolicyCheck check = policy::CheckPolicyFiles(*files, nullptr);
  WriteAndFlush(check.ok ? stdout : stderr, check.report);
  return check.ok ? kExitOk : kExitRefused;
}

}  // namespace cellhouse::cli
