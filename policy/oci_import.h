// Import of an OCI/Docker seccomp profile (the JSON `docker run --security-opt seccomp=FILE`
// takes; schema mirrored in oci_seccomp.proto) as filter rules of a cellhouse policy.
//
//   std::vector<Problem> problems;
//   std::optional<OciImport> imported = LoadOciProfile("/etc/cellhouse/docker.seccomp.json",
//                                                      &problems);
//   // imported->rules join the policy's filter at level RuleLevel::kProfile.
//
// What is refused, with the profile's file:line:col: unknown actions, operators, architectures
// and system call names; SCMP_ACT_TRACE and SCMP_ACT_NOTIFY (a worker has no tracer and no
// notification agent); a default action that lets calls through; SECCOMP_FILTER_FLAG_SPEC_ALLOW.
// What is adapted: names that are system calls of another architecture only are skipped (Docker's
// profile lists every architecture's calls); rules whose `includes` need capabilities are
// skipped and rules whose `excludes` name capabilities kept (a worker has none); `includes` and
// `excludes` arches and minKernel are evaluated for this machine; Podman's errno names (`errno`,
// `defaultErrno`) are read beside Docker's numbers; of several unconditional rules for one call,
// the strictest is kept. Docker's default profile and Podman's import unmodified
// (tests/policy/data/oci). How the rules then combine with the worker's own allow-list is
// BuildFilterSpec's (validate.h) and policy.proto's (message Seccomp) to say.
#ifndef CELLHOUSE_POLICY_OCI_IMPORT_H_
#define CELLHOUSE_POLICY_OCI_IMPORT_H_

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "policy/problem.h"
#include "policy/seccomp_compiler.h"

namespace cellhouse::policy {

struct OciImport {
  // The profile's defaultAction (never ALLOW or LOG).
  FilterAction default_action;
  // One rule per system call and condition set, level kProfile, pointing into the profile.
  std::vector<FilterRule> rules;
  // System calls the profile names that this architecture does not have.
  std::vector<std::string> skipped_syscalls;
  // Rules left out and why ("syscalls[12]: includes caps CAP_SYS_ADMIN").
  std::vector<std::string> skipped_rules;
  // Calls the profile gives unconditional rules with different actions, and which was kept (the
  // stricter): "setns: syscalls[1] says ALLOW and syscalls[15] says ERRNO(EPERM); ...".
  std::vector<std::string> resolved;
};

// Files larger than this are refused (Docker's own profile is about 20 KiB).
inline constexpr size_t kMaxOciProfileBytes = 4 << 20;

// Converts a profile's JSON. Problems name `path` and the position inside it.
std::optional<OciImport> ImportOciProfile(std::string_view content, const std::string& path,
                                          std::vector<Problem>* problems);
// Reads `path` and imports it.
std::optional<OciImport> LoadOciProfile(const std::string& path, std::vector<Problem>* problems);

}  // namespace cellhouse::policy

#endif  // CELLHOUSE_POLICY_OCI_IMPORT_H_
