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
  int64_t ctx_size = 0;
  bool shared_executor = true;
  FlagSet flags("cellctl policy check [--model FILE [--ctx-size N]] FILE...",
                "Validates policy files (text format *.textproto or JSON *.json) and prints, for\n"
                "each, the effective policy with every default filled in and the compiled\n"
                "seccomp filter: its default action, the allowed system calls and every rule,\n"
                "then notes (how an imported seccomp profile joined the worker's own allow-list:\n"
                "it can only make that list stricter unless use_builtin_allowlist is false) and\n"
                "warnings (calls allowed that no worker needs, such as ptrace or execve).\n"
                "With --model, also the checks that depend on the model, as celld makes them\n"
                "when it loads the directory: the context length against the model's, the\n"
                "memory cap against what a session needs (read with `cellmodel info`; for a\n"
                "GGUF model with celld's shared executor, its slot included). Give --ctx-size\n"
                "and --shared-executor as celld has them.\n"
                "Exit status 0 when every file is valid, else 1.");
  flags.String("model", &model, "FILE",
               "the model celld serves (llama2.c checkpoint, int8 file or GGUF)");
  flags.Int("ctx-size", &ctx_size, "N", "with --model: celld's --ctx-size (0: the model's own)");
  flags.Bool("shared-executor", &shared_executor,
             "with --model: celld's --shared-executor (a GGUF model's sharing sessions add a "
             "slot)");
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
    if (ctx_size < 0) {
      Printf(stderr, "cellctl policy check: --ctx-size must not be negative\n");
      return kExitUsage;
    }
    Result<policy::ModelFacts> read = ModelFactsFromCellmodel(model, ctx_size);
    if (!read) {
      Printf(stderr, "cellctl policy check: %s\n", read.error().message().c_str());
      return kExitRefused;
    }
    facts = *read;
    if (!shared_executor) facts->executor_slot_bytes = 0;
    Printf(stdout,
           "model %s: context up to %u tokens, %s of KV cache per token, %s of state and %s "
           "of worker per session\n",
           model.c_str(), facts->seq_len, FormatBytes(facts->kv_bytes_per_token).c_str(),
           FormatBytes(facts->state_fixed_bytes).c_str(),
           FormatBytes(facts->worker_overhead_bytes).c_str());
    if (facts->executor_slot_bytes > 0) {
      Printf(stdout, "  and %s of shared-executor slot for a policy that shares it\n",
             FormatBytes(facts->executor_slot_bytes).c_str());
    }
  }
  policy::PolicyCheck check = policy::CheckPolicyFiles(*files, facts ? &*facts : nullptr);
  WriteAndFlush(check.ok ? stdout : stderr, check.report);
  return check.ok ? kExitOk : kExitRefused;
}

}  // namespace cellhouse::cli
