// cellctl's subcommands. Each parses its own flags (base/flags.h) and returns an exit status:
#ifndef CELLHOUSE_CLI_CELLCTL_COMMANDS_H_
#define CELLHOUSE_CLI_CELLCTL_COMMANDS_H_

#include <string>
#include <vector>

namespace cellhouse::cli {

inline constexpr int kExitOk = 0;            // done
inline constexpr int kExitRefused = 1;       // celld refused or failed the request; a policy
                                             // file is invalid (policy check)
inline constexpr int kExitUsage = 2;         // bad command line
inline constexpr int kExitUnreachable = 3;   // celld could not be reached
inline constexpr int kExitSessionEnded = 4;  // the session ended under us (the message says why)

struct GlobalOptions {
  std::string socket;
  bool json = false;
};

int CmdGenerate(const GlobalOptions& global, const std::vector<std::string>& args);
int CmdChat(const GlobalOptions& global, const std::vector<std::string>& args);
int CmdOpen(const GlobalOptions& global, const std::vector<std::string>& args);
int CmdAttach(const GlobalOptions& global, const std::vector<std::string>& args);
int CmdSessions(const GlobalOptions& global, const std::vector<std::string>& args);
int CmdKill(const GlobalOptions& global, const std::vector<std::string>& args);
int CmdStatus(const GlobalOptions& global, const std::vector<std::string>& args);
int CmdReload(const GlobalOptions& global, const std::vector<std::string>& args);
int CmdPolicyList(const GlobalOptions& global, const std::vector<std::string>& args);
// Local: validates files without celld (policy_check.cc).
int CmdPolicyCheck(const GlobalOptions& global, const std::vector<std::string>& args);

}  // namespace cellhouse::cli

#endif  // CELLHOUSE_CLI_CELLCTL_COMMANDS_H_
