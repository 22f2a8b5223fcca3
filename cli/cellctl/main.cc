// cellctl: the command-line client of celld. A thin front end: every command is in
// commands.cc, the protocol in session_client.cc.
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "base/print.h"
#include "base/strings.h"
#include "cli/cellctl/commands.h"
#include "ipc/defaults.h"

namespace cellhouse::cli {
namespace {

constexpr const char* kUsage =
    "usage: cellctl [--socket PATH] [--json] COMMAND [options]\n"
    "\n"
    "Talks to celld, the cellhouse supervisor.\n"
    "\n"
    "commands:\n"
    "  generate --prompt TEXT    open a session, stream the generated text, close\n"
    "  chat                      interactive multi-turn session (one line a turn)\n"
    "  open                      open a session; print its id and re-attach token\n"
    "  attach ID --token T       continue a session after a lost connection\n"
    "  sessions                  list sessions (root: all tenants)\n"
    "  kill ID                   end a session\n"
    "  status                    celld's model, sessions and memory\n"
    "  policy list               policies celld has loaded\n"
    "  policy check FILE...      validate policy files locally; print the effective policy\n"
    "  reload                    re-read celld's policy directory (root)\n"
    "\n"
    "options:\n"
    "  --socket PATH   celld's socket (default: $CELLHOUSE_SOCKET or /run/cellhouse/celld.sock)\n"
    "  --json          machine-readable output (open, sessions, status, policy list)\n"
    "  -h, --help      this help; `cellctl COMMAND --help` for a command's options\n"
    "\n"
    "exit status: 0 ok; 1 refused or failed (the message says why; an invalid policy file for\n"
    "policy check); 2 usage error; 3 celld unreachable; 4 the session ended under us.\n";

int Main(int argc, char** argv) {
  GlobalOptions global;
  // NOLINTNEXTLINE(concurrency-mt-unsafe): single-threaded
  const char* env = std::getenv(ipc::kSocketEnvironmentVariable);
  global.socket = env != nullptr ? env : ipc::kDefaultSocketPath;
  int i = 1;
  for (; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--socket" && i + 1 < argc) {
      global.socket = argv[++i];
    } else if (StartsWith(arg, "--socket=")) {
      global.socket = arg.substr(9);
    } else if (arg == "--json") {
      global.json = true;
    } else if (arg == "-h" || arg == "--help") {
      WriteAndFlush(stdout, kUsage);
      return kExitOk;
    } else if (StartsWith(arg, "-")) {
      Printf(stderr, "cellctl: unknown option %s; see --help\n", Quote(arg).c_str());
      return kExitUsage;
    } else {
      break;
    }
  }
  if (i >= argc) {
    WriteAndFlush(stderr, kUsage);
    return kExitUsage;
  }
  std::string command = argv[i++];
  std::vector<std::string> args(argv + i, argv + argc);
  // Global flags may also follow the command.
  for (auto it = args.begin(); it != args.end();) {
    if (*it == "--json") {
      global.json = true;
      it = args.erase(it);
    } else if (*it == "--socket" && it + 1 != args.end()) {
      global.socket = *(it + 1);
      it = args.erase(it, it + 2);
    } else {
      ++it;
    }
  }
  if (command == "generate") return CmdGenerate(global, args);
  if (command == "chat") return CmdChat(global, args);
  if (command == "open") return CmdOpen(global, args);
  if (command == "attach") return CmdAttach(global, args);
  if (command == "sessions") return CmdSessions(global, args);
  if (command == "kill") return CmdKill(global, args);
  if (command == "status") return CmdStatus(global, args);
  if (command == "reload") return CmdReload(global, args);
  if (command == "policy") {
    std::string sub = args.empty() ? "" : args.front();
    if (!args.empty()) args.erase(args.begin());
    if (sub == "list") return CmdPolicyList(global, args);
    if (sub == "check") return CmdPolicyCheck(global, args);
    Printf(stderr, "cellctl policy: expected 'list' or 'check FILE...'\n");
    return kExitUsage;
  }
  Printf(stderr, "cellctl: unknown command %s; see --help\n", Quote(command).c_str());
  return kExitUsage;
}

}  // namespace
}  // namespace cellhouse::cli

int main(int argc, char** argv) { return cellhouse::cli::Main(argc, argv); }
