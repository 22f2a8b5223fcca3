// `cellctl policy check [--model FILE] FILE...`: validates policy files without celld and prints
// each one's effective policy and compiled filter (policy::CheckPolicyFiles); with --model, also
// the checks that depend on the model, which celld makes when it loads the directory.
#include <cstdio>
#include <optional>

#include "base/flags.h"
#include "base/print.h"
#include "base/strings.h"
#include "cli/cellctl/commands.h"
#include "cli/cellctl/model_facts.h"
#include "policy/policy.h"

namespace cellhouse::cli {

int CmdPolicyCheck(const GlobalOptions& /*global*/, const std::vector<std::string>& args) {
  std::string model;
  FlagSet flags("cellctl policy check [--model FILE] FILE...",
                "Validates policy files (text format *.textproto or JSON *.json) and prints, for\n"
                "each, the effective policy with every default filled in and the compiled\n"
                "seccomp filter: its default action, the allowed system calls and every rule,\n"
                "then notes (how an imported seccomp profile joined the worker's own allow-list:\n"
                "it can only make that list stricter unless use_builtin_allowlist is false) and\n"
                "warnings (calls allowed that no worker needs, such as ptrace or execve).\n"
                "With --model, also the checks that depend on the model, as celld makes them\n"
                "when it loads the directory: the context length against the model's, the\n"
                "memory cap against what a session needs (read with `cellmodel info`).\n"
                "Exit status 0 when every file is valid, else 1.");
  flags.String("model", &model, "FILE", "the model celld serves (llama2.c or int8 checkpoint)");
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
  std::optional<policy::ModelFacts> facts;
  if (!model.empty()) {
    Result<policy::ModelFacts> read = ModelFactsFromCellmodel(model);
    if (!read) {
      Printf(stderr, "cellctl policy check: %s\n", read.error().message().c_str());
      return kExitRefused;
    }
    facts = *read;
    Printf(stdout,
           "model %s: context up to %u tokens, %s of KV cache per token, %s of state and %s "
           "of worker per session\n",
           model.c_str(), facts->seq_len, FormatBytes(facts->kv_bytes_per_token).c_str(),
           FormatBytes(facts->state_fixed_bytes).c_str(),
           FormatBytes(facts->worker_overhead_bytes).c_str());
  }
  policy::PolicyCheck check = policy::CheckPolicyFiles(*files, facts ? &*facts : nullptr);
  WriteAndFlush(check.ok ? stdout : stderr, check.report);
  return check.ok ? kExitOk : kExitRefused;
}

}  // namespace cellhouse::cli
