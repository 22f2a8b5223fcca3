#include "policy/choose.h"

#include <algorithm>
#include <functional>

#include "policy/builtin_default.h"

namespace cellhouse::policy {

namespace {

using MayUseFn = std::function<bool(const CompiledPolicy&)>;

Result<std::shared_ptr<const CompiledPolicy>> Choose(const PolicySet& set, const std::string& name,
                                                     const MayUseFn& may_use,
                                                     const std::string& who,
                                                     const std::string& remedy) {
  if (!name.empty()) {
    auto it = set.find(name);
    if (it == set.end()) {
      return Error("no policy named '" + name + "'; `cellctl policy list` shows the policies");
    }
    if (!may_use(*it->second)) return Error("policy '" + name + "' does not allow " + who);
    return it->second;
  }
  auto def = set.find("default");
  if (def != set.end() && may_use(*def->second)) return def->second;
  for (const auto& [policy_name, policy] : set) {
    if (may_use(*policy)) return policy;
  }
  return Error("no policy allows " + who + "; " + remedy);
}

}  // namespace

Result<std::shared_ptr<const CompiledPolicy>> ChoosePolicy(const PolicySet& set,
                                                           const std::string& name, uid_t uid,
                                                           gid_t gid,
                                                           std::span<const gid_t> groups) {
  return Choose(
      set, name, [&](const CompiledPolicy& p) { return p.MayUse(uid, gid, groups); },
      "uid " + std::to_string(uid) + " (gid " + std::to_string(gid) + ")",
      "an administrator must add it to a policy's uids or gids");
}

Result<std::shared_ptr<const CompiledPolicy>> ChooseTenantPolicy(const PolicySet& set,
                                                                 const std::string& name,
                                                                 const std::string& tenant,
                                                                 uid_t uid, gid_t gid,
                                                                 std::span<const gid_t> groups) {
  bool named = std::any_of(set.begin(), set.end(), [&](const auto& entry) {
    return entry.second->NamesGatewayTenant(tenant);
  });
  MayUseFn may_use = [&](const CompiledPolicy& p) {
    return named ? p.NamesGatewayTenant(tenant) : p.MayUse(uid, gid, groups);
  };
  return Choose(set, name, may_use, "gateway tenant '" + tenant + "'",
                "an administrator must add it to a policy's gateway_tenants");
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
