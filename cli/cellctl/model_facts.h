// What a model costs a session, for `cellctl policy check --model FILE`: the same figures celld
// learns from its zygote (context length, KV cache bytes per token, fixed state, and for GGUF
// the shared executor's slot a sharing session adds), so that the
// model-dependent checks (memory against the context) run before a reload does. cellctl must not
// link the engine (it would pull in OpenBLAS), so it asks `cellmodel info --json`, which does:
// the cellmodel beside cellctl, else the first in $PATH.
//
//   CH_ASSIGN_OR_RETURN(policy::ModelFacts facts, ModelFactsFromCellmodel("/var/lib/m.bin"));
//   policy::PolicyCheck check = policy::CheckPolicyFiles(files, &facts);
#ifndef CELLHOUSE_CLI_CELLCTL_MODEL_FACTS_H_
#define CELLHOUSE_CLI_CELLCTL_MODEL_FACTS_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "base/result.h"
#include "policy/validate.h"

namespace cellhouse::cli {

// ctx_size > 0: the context capped as celld --ctx-size caps it (the costs follow the cap).
Result<policy::ModelFacts> ModelFactsFromCellmodel(const std::string& model, int64_t ctx_size = 0);

// The facts in `cellmodel info --json` output (exposed for tests).
Result<policy::ModelFacts> ParseModelFacts(std::string_view json);

}  // namespace cellhouse::cli

#endif  // CELLHOUSE_CLI_CELLCTL_MODEL_FACTS_H_
