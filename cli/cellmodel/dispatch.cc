#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include "base/print.h"
#include "cli/cellmodel/commands.h"

namespace cellhouse::cellmodel {

namespace {

constexpr const char* kUsage =
    "Usage: cellmodel COMMAND [OPTIONS]\n"
    "\n"
    "Makes, inspects and runs llama2.c-format models with cellhouse's inference engine.\n"
    "\n"
    "Commands:\n"
    "  make   write a deterministic pseudo-random model and its tokenizer\n"
    "  info   show a checkpoint's configuration, parameter count, size and chunks\n"
    "  run    generate text from a prompt, as llama2.c's run does\n"
    "\n"
    "`cellmodel COMMAND --help` describes each command's options.\n";

}  // namespace

int Main(int argc, char** argv) {
  if (argc < 2) {
    Printf(stderr, "%s", kUsage);
    Printf(stderr, "%s", kExitCodesHelp);
    return kExitUsage;
  }
  const std::string_view command = argv[1];
  const std::vector<std::string> args(argv + 2, argv + argc);
  if (command == "make") {
    return MakeCommand(args);
  }
  if (command == "info") {
    return InfoCommand(args);
  }
  if (command == "run") {
    return RunCommand(args);
  }
  if (command == "help" || command == "--help" || command == "-h") {
    Printf(stdout, "%s", kUsage);
    Printf(stdout, "%s", kExitCodesHelp);
    return kExitOk;
  }
  Printf(stderr, "cellmodel: unknown command '%s'; see cellmodel --help\n", argv[1]);
  return kExitUsage;
}

}  // namespace cellhouse::cellmodel
