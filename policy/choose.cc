#include "policy/choose.h"

#include "policy/builtin_default.h"

namespace cellhouse::policy {

Result<std::shared_ptr<const CompiledPolicy>> ChoosePolicy(const PolicySet& set,
                                                           const std::string& name, uid_t uid,
                                                           gid_t gid,
                                                           std::span<const gid_t> groups) {
  if (!name.empty()) {
    auto it = set.find(name);
    if (it == set.end()) {
      return Error("no policy named '" + name + "'; `cellctl policy list` shows the policies");
    }
    if (!it->second->MayUse(uid, gid, groups)) {
      return Error("policy '" + name + "' does not allow uid " + std::to_string(uid) + " (gid " +
                   std::to_string(gid) + ")");
    }
    return it->second;
  }
  auto def = set.find("default");
  if (def != set.end() && def->second->MayUse(uid, gid, groups)) return def->second;
  for (const auto& [policy_name, policy] : set) {
    if (policy->MayUse(uid, gid, groups)) return policy;
  }
  return Error("no policy allows uid " + std::to_string(uid) + " (gid " + std::to_string(gid) +
               "); an administrator must add it to a policy's uids or gids");
}

Result<PolicySet> BuiltinPolicySet(const ModelFacts* facts) {
  CH_ASSIGN_OR_RETURN(
      std::shared_ptr<const CompiledPolicy> policy,
      LoadPolicyFromString(kBuiltinDefaultPolicy, "<built-in>/default.textproto", facts));
  PolicySet set;
  set.emplace(policy->name(), std::move(policy));
  return set;
}

}  // namespace cellhouse::policy
