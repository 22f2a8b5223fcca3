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
    "Makes, inspects, quantizes, converts and runs models with cellhouse's inference engine:\n"
    "llama2.c fp32 checkpoints, cellhouse's int8 format made from them by `quantize`, and GGUF\n"
    "files (llama, qwen2, qwen3), which `convert` writes from a llama2.c checkpoint.\n"
    "\n"
    "Commands:\n"
    "  make      write a deterministic pseudo-random model and its tokenizer\n"
    "  info      show a model's format, configuration, parameter count, size and chunks\n"
    "  quantize  convert an fp32 checkpoint to int8 groups (about 3.5x smaller and faster)\n"
    "  convert   write an fp32 checkpoint as GGUF: F32, F16, Q8_0, Q4_0, Q4_K_M or Q6_K\n"
    "  run       generate text from a prompt, as llama2.c's run does\n"
    "  tokenize  print the tokens of a text in a model's vocabulary\n"
    "  render    print the prompt a model's chat template makes of JSON messages\n"
    "  chat      a conversation on standard input, with the model's chat template\n"
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
  if (command == "quantize") {
    return QuantizeCommand(args);
  }
  if (command == "convert") {
    return ConvertCommand(args);
  }
  if (command == "tokenize") {
    return TokenizeCommand(args);
  }
  if (command == "render") {
    return RenderCommand(args);
  }
  if (command == "chat") {
    return ChatCommand(args);
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
