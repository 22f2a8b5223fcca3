// Which policy a caller gets, and the policy set celld uses when it has no --policy-dir.
//
//   CH_ASSIGN_OR_RETURN(std::shared_ptr<const CompiledPolicy> p,
//                       ChoosePolicy(set, request.policy(), peer.uid, peer.gid, peer.groups));
#ifndef CELLHOUSE_POLICY_CHOOSE_H_
#define CELLHOUSE_POLICY_CHOOSE_H_

#include <sys/types.h>

#include <memory>
#include <span>
#include <string>

#include "base/result.h"
#include "policy/policy.h"

namespace cellhouse::policy {

// What a worker process costs beyond its KV cache and activations (stack, heap, protobuf,
// libraries' private pages), for admission and for the memory-limit check of a policy.
inline constexpr uint64_t kDefaultWorkerOverheadBytes = 16ull << 20;

// `name` empty: "default" when the caller may use it, else the first (by name) it may use.
// Errors say whether the policy is unknown or not allowed for this caller.
Result<std::shared_ptr<const CompiledPolicy>> ChoosePolicy(const PolicySet& set,
                                                           const std::string& name, uid_t uid,
                                                           gid_t gid,
                                                           std::span<const gid_t> groups);

// For a tenant of the HTTP gateway (asserted by a connection of celld's --gateway-user, whose
// credentials are uid/gid/groups): the policies naming it in gateway_tenants; when none does,
// those the gateway's own credentials may use. `name` as above.
Result<std::shared_ptr<const CompiledPolicy>> ChooseTenantPolicy(const PolicySet& set,
                                                                 const std::string& name,
                                                                 const std::string& tenant,
                                                                 uid_t uid, gid_t gid,
                                                                 std::span<const gid_t> groups);

// The shipped policy/examples/default.textproto, built in: celld without --policy-dir.
Result<PolicySet> BuiltinPolicySet(const ModelFacts* facts);

}  // namespace cellhouse::policy

#endif  // CELLHOUSE_POLICY_CHOOSE_H_
