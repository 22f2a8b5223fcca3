// Sandbox policies: loading, validating and freezing them for the supervisor. A policy file
// (schema and defaults in policy/policy.proto) becomes an immutable CompiledPolicy holding the
// effective policy and its seccomp program, compiled once at load. A running session keeps the
// shared_ptr it started with, so a reload never changes a session under its feet.
//
//   ModelFacts facts{.seq_len = 2048, .kv_bytes_per_token = 65536, ...};
//   Result<PolicySet> loaded = LoadPolicyDirectory("/etc/cellhouse/policies", &facts);
//   if (!loaded) { log(loaded.error().message()); /* keep the old set */ }
//   else policies = std::move(*loaded);                    // swap the whole set at once
//
//   const CompiledPolicy& p = *policies.at("default");
//   if (!p.MayUse(uid, gid, groups)) ...
//   clone3 flags: p.CloneNamespaceFlags(); filter: p.bpf(); limits: p.proto().cgroup()
//
// Files: one policy per file, `NAME.textproto` (protobuf text format) or `NAME.json` (proto3
// JSON); NAME must equal the policy's name. Files ending in `.seccomp.json` (imported OCI
// profiles) and files with other extensions are not policies and are skipped, as are hidden
// files and subdirectories. Every error names FILE:LINE:COL and the field, says what to change
// and ends in "Refusing."; a directory with any invalid file loads nothing.
#ifndef CELLHOUSE_POLICY_POLICY_H_
#define CELLHOUSE_POLICY_POLICY_H_

#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "policy/bpf_evaluator.h"  // EvaluateSeccomp, for callers checking a filter
#include "policy/policy.pb.h"
#include "policy/seccomp_compiler.h"
#include "policy/validate.h"  // ModelFacts

namespace cellhouse::policy {

// Largest policy file accepted.
inline constexpr size_t kMaxPolicyFileBytes = 1 << 20;

// One setrlimit(2) call: resource is RLIMIT_* (as in ipc/zygote.proto Rlimit).
struct RlimitSetting {
  int resource = 0;
  uint64_t soft = 0;
  uint64_t hard = 0;
};

// A validated policy with its compiled filter. Immutable once built; shared by
// std::shared_ptr<const CompiledPolicy> between the policy set and the sessions using it.
// A gateway tenant's name (Policy.gateway_tenants, api Request.tenant): 1 to 64 of
// [A-Za-z0-9_.@-], so that it is safe in log lines and error messages as it is.
inline constexpr size_t kMaxGatewayTenantBytes = 64;
bool ValidGatewayTenant(std::string_view tenant);
// A served model's name (celld --model NAME=PATH, Policy.models, api OpenSession.model): 1 to 64
// of [A-Za-z0-9._:-], not starting with '.' or '-'.
inline constexpr size_t kMaxModelNameBytes = 64;
bool ValidModelName(std::string_view name);

class CompiledPolicy {
 public:
  // NOLINTBEGIN(readability-identifier-naming): accessors are named like what they return
  // (Google style), as the supervisor's API asks.
  const std::string& name() const { return proto_.name(); }
  // The file it was loaded from ("" when compiled from a message).
  const std::string& source() const { return source_; }
  // The effective policy: every default filled in (policy.proto says which).
  const Policy& proto() const { return proto_; }
  // The seccomp program, for seccomp(SECCOMP_SET_MODE_FILTER) after PR_SET_NO_NEW_PRIVS.
  std::span<const sock_filter> bpf() const { return filter_.program; }
  // Names of the system calls the filter lets run (ALLOW or LOG, maybe only with some
  // arguments), sorted.
  const std::vector<std::string>& allowed_syscalls() const { return filter_.allowed; }
  // The merged rules and default action the program was compiled from (for descriptions).
  const CompiledFilter& filter() const { return filter_; }
  // Every rlimit the worker sets, defaults included, in RLIMIT_* numbers.
  std::span<const RlimitSetting> rlimits() const { return rlimits_; }
  // Notes for `cellctl policy check`: how an imported profile joined the filter, what it had
  // skipped or dropped.
  const std::vector<std::string>& notes() const { return notes_; }
  // Calls the filter allows that no worker needs and that hand a compromised one much more
  // (ptrace, execve, ...): the policy loads, and `policy check` and celld's log say so.
  const std::vector<std::string>& warnings() const { return warnings_; }
  // NOLINTEND(readability-identifier-naming)

  // Whether a caller with these credentials (SO_PEERCRED's uid and gid, plus its supplementary
  // groups) may open sessions under this policy.
  bool MayUse(uid_t uid, gid_t gid, std::span<const gid_t> supplementary) const;
  // Whether the policy lists this gateway tenant in gateway_tenants.
  bool NamesGatewayTenant(std::string_view tenant) const;
  // Whether its sessions may run the served model `model` (Policy.models; empty: every one).
  bool AllowsModel(std::string_view model) const;
  // CLONE_NEWUSER | CLONE_NEWPID | ... as the policy's namespaces say.
  uint64_t CloneNamespaceFlags() const;
  // Memory a session needs at `context_length` tokens (0: the policy's context_length, else the
  // model's seq_len): KV cache + fixed state + worker overhead, + its executor slot when the
  // policy shares the executor and celld runs one. What admission reserves.
  uint64_t WorstCaseSessionBytes(const ModelFacts& facts, uint32_t context_length) const;

 private:
  friend Result<std::shared_ptr<const CompiledPolicy>> FreezePolicy(
      Policy effective, std::string source, CompiledFilter filter, std::vector<std::string> notes,
      std::vector<std::string> warnings);
  CompiledPolicy() = default;

  Policy proto_;
  std::string source_;
  CompiledFilter filter_;
  std::vector<RlimitSetting> rlimits_;
  std::vector<std::string> notes_;
  std::vector<std::string> warnings_;
};

using PolicySet = std::map<std::string, std::shared_ptr<const CompiledPolicy>>;

// The builder stage, for policies made in code (tests, embedders): validates `policy`, fills
// defaults, compiles its filter and freezes the result. An `oci_profile` path is taken relative
// to the current directory. The name is not checked against any file name.
Result<std::shared_ptr<const CompiledPolicy>> CompilePolicy(Policy policy, const ModelFacts* facts);

// Parses `content` as the policy file `path` (the extension picks the format; the file name
// must match the policy's name; `oci_profile` is relative to the file's directory) and compiles
// it. Nothing is read but an imported profile. `facts` null: model-dependent checks skipped.
Result<std::shared_ptr<const CompiledPolicy>> LoadPolicyFromString(std::string_view content,
                                                                   const std::string& path,
                                                                   const ModelFacts* facts);
// Reads and loads one policy file.
Result<std::shared_ptr<const CompiledPolicy>> LoadPolicyFile(const std::string& path,
                                                             const ModelFacts* facts);
// Loads every policy file in `dir`: all valid and at least one -> the new set; anything
// invalid (or duplicate names, or no policy at all) -> an error listing every problem of every
// file, and the caller keeps the set it has.
Result<PolicySet> LoadPolicyDirectory(const std::string& dir, const ModelFacts* facts);

// For `cellctl policy check` and `policy list`: the effective policy in text format, then the
// compiled filter (architecture, default action, allowed system calls, every rule's action,
// conditions and origin).
std::string DescribePolicy(const CompiledPolicy& policy);

// `cellctl policy check FILE...`: loads each file on its own, then checks names are unique
// across them. `report` holds each file's description or its problems; `ok` is the exit status.
struct PolicyCheck {
  bool ok = false;
  std::string report;
};
PolicyCheck CheckPolicyFiles(std::span<const std::string> paths, const ModelFacts* facts);

}  // namespace cellhouse::policy

#endif  // CELLHOUSE_POLICY_POLICY_H_
