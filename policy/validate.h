// Semantic validation of a parsed policy: fills in every default (so the result is the
// effective policy) and refuses unsafe values and contradictions, each problem naming its field
// and ending in "Refusing.". Also turns the seccomp part into filter rules for the compiler.
//
//   std::vector<Problem> problems;
//   ApplyDefaultsAndValidate(&policy, facts, &problems);   // policy is now effective
//   std::vector<std::string> notes;  // how an imported profile was merged, for policy check
//   FilterSpec spec = BuildFilterSpec(policy, imported_profile, &problems, &notes);
#ifndef CELLHOUSE_POLICY_VALIDATE_H_
#define CELLHOUSE_POLICY_VALIDATE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "policy/oci_import.h"
#include "policy/policy.pb.h"
#include "policy/problem.h"
#include "policy/seccomp_compiler.h"

namespace cellhouse::policy {

// What the loaded model costs a session; from the zygote's ZygoteReady.
struct ModelFacts {
  uint32_t seq_len = 0;                // the model's maximum context, in tokens
  uint64_t kv_bytes_per_token = 0;     // KV cache bytes one position costs
  uint64_t state_fixed_bytes = 0;      // activations and buffers independent of context
  uint64_t worker_overhead_bytes = 0;  // the worker process itself (stack, heap, libraries)
  // One shared executor slot (ZygoteReady.executor_slot_bytes): what a session of a policy with
  // shared_executor adds. 0 when celld runs no executor.
  uint64_t executor_slot_bytes = 0;
};

// KV cache for `context_length` tokens + fixed state + worker overhead; saturates at
// UINT64_MAX instead of wrapping.
uint64_t SessionBytes(const ModelFacts& facts, uint32_t context_length);
// SessionBytes, plus the executor slot when the (effective) policy shares the executor.
uint64_t PolicySessionBytes(const Policy& policy, const ModelFacts& facts, uint32_t context_length);

// `facts` may be null: model-dependent defaults and checks are then skipped.
void ApplyDefaultsAndValidate(Policy* policy, const ModelFacts* facts,
                              std::vector<Problem>* problems);

// The filter rules an effective policy asks for, with the imported profile's rules (may be
// null). Problems: unknown names, conditions the compiler cannot express. The default action is
// the policy's (KILL_PROCESS unless written), never the profile's. With the built-in worker list
// the profile may only make it stricter: rules that would allow a call the list does not, or
// answer such a call more softly than the default, are dropped, and `notes` says which. Without
// the built-in list the profile's rules apply as written.
FilterSpec BuildFilterSpec(const Policy& policy, const OciImport* profile,
                           std::vector<Problem>* problems, std::vector<std::string>* notes);

}  // namespace cellhouse::policy

#endif  // CELLHOUSE_POLICY_VALIDATE_H_
