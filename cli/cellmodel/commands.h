// The subcommands of `cellmodel`, each a function from its arguments to an exit code, so that
// main.cc only dispatches. Exit codes: 0 success, 1 runtime error, 2 usage error.
#ifndef CELLHOUSE_CLI_CELLMODEL_COMMANDS_H_
#define CELLHOUSE_CLI_CELLMODEL_COMMANDS_H_

#include <string>
#include <vector>

namespace cellhouse::cellmodel {

inline constexpr int kExitOk = 0;
inline constexpr int kExitRuntimeError = 1;
inline constexpr int kExitUsage = 2;

// The text every --help ends with.
inline constexpr const char* kExitCodesHelp =
    "Exit status: 0 success, 1 runtime error (unreadable or malformed file, I/O), 2 usage error.\n";

// `args` excludes the program and subcommand names.
int MakeCommand(const std::vector<std::string>& args);
int InfoCommand(const std::vector<std::string>& args);
int RunCommand(const std::vector<std::string>& args);
int QuantizeCommand(const std::vector<std::string>& args);
int ConvertCommand(const std::vector<std::string>& args);
int TokenizeCommand(const std::vector<std::string>& args);
int RenderCommand(const std::vector<std::string>& args);
int ChatCommand(const std::vector<std::string>& args);

// Dispatches argv[1] to a subcommand.
int Main(int argc, char** argv);

}  // namespace cellhouse::cellmodel

#endif  // CELLHOUSE_CLI_CELLMODEL_COMMANDS_H_
