// The seccomp compiler: rules from a policy (the built-in allow-list, `allow`, an imported OCI
// profile, `rules`) merged into one unambiguous rule set and compiled with libseccomp into a
// classic-BPF program for the machine's own architecture. It runs once, when a policy loads;
// the program is then frozen into the CompiledPolicy and installed by every worker of it.
//
//   FilterSpec spec{.default_action = Seccomp::KILL_PROCESS};
//   CH_RETURN_IF_ERROR(AddNamedRules("@worker", {.action = Seccomp::ALLOW}, &spec.rules));
//   std::vector<Problem> problems;
//   std::optional<CompiledFilter> filter = CompileFilter(spec, &problems);
//   // filter->program: std::vector<sock_filter>, for seccomp(SECCOMP_SET_MODE_FILTER)
//
// Merging (documented for admins in policy.proto, message Seccomp): per system call, rules of
// a higher level replace lower ones when unconditional and join them when conditional; a rule
// that libseccomp would silently shadow, or two rules that could both match one call with
// different actions, are reported as problems instead of compiled into an order-dependent
// filter. Calls from any other architecture (including x32 on x86-64) kill the process.
#ifndef CELLHOUSE_POLICY_SECCOMP_COMPILER_H_
#define CELLHOUSE_POLICY_SECCOMP_COMPILER_H_

#include <linux/filter.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "policy/policy.pb.h"
#include "policy/problem.h"

namespace cellhouse::policy {

struct FilterCondition {
  uint32_t index = 0;
  ArgCondition::Op op = ArgCondition::OP_UNSPECIFIED;
  uint64_t value = 0;
  uint64_t mask = 0;  // MASKED_EQ only
};

// Where a rule comes from, lowest precedence first.
enum class RuleLevel { kAllowList = 0, kProfile = 1, kPolicyRule = 2 };

// An action with its errno (ERRNO only).
struct FilterAction {
  Seccomp::Action action = Seccomp::ACTION_UNSPECIFIED;
  uint16_t errno_value = 0;
  bool operator==(const FilterAction&) const = default;
};

struct FilterRule {
  std::string syscall;
  int nr = -1;
  FilterAction action;
  std::vector<FilterCondition> conditions;  // all must hold
  RuleLevel level = RuleLevel::kAllowList;
  // For people: "built-in @memory", "seccomp.allow", "seccomp.rules[2]", "profile syscalls[7]".
  std::string origin;
  // Where problems with this rule point: a policy field path, or a profile file and position.
  std::string field;
  std::string file;
  SourcePosition position;
  std::string comment;
};

struct FilterSpec {
  FilterAction default_action{Seccomp::KILL_PROCESS, 0};
  std::vector<FilterRule> rules;
};

struct CompiledFilter {
  std::vector<sock_filter> program;
  // The rules that made it into the program (after merging; rules whose action equals the
  // default are left out), sorted by system call name.
  std::vector<FilterRule> rules;
  // Names of the calls some rule lets run (ALLOW or LOG), sorted.
  std::vector<std::string> allowed;
  FilterAction default_action;
  uint32_t arch = 0;  // AUDIT_ARCH_* of the program
};

// Merges and compiles. Every contradiction found is appended to `problems`; returns nullopt
// when there was any (or libseccomp failed, also reported as a problem).
std::optional<CompiledFilter> CompileFilter(const FilterSpec& spec, std::vector<Problem>* problems);

// How a system call name resolves on this machine.
struct ResolvedSyscall {
  enum Kind { kNative, kOtherArchitecture, kUnknown } kind = kUnknown;
  int nr = -1;
};
ResolvedSyscall ResolveSyscall(std::string_view name);
// "read" for (AUDIT_ARCH_X86_64, 0); "syscall 999" when libseccomp knows no name. For logging
// which call a seccomp kill was for (siginfo si_syscall, si_arch; audit records).
std::string SyscallName(uint32_t arch, int nr);
// libseccomp's name of the native architecture ("x86_64").
std::string NativeArchitectureName();

// What AddNamedRules does with a name that is a system call of another architecture only.
enum class OtherArchitecture { kRefuse, kSkip };

// Appends one rule per system call `name` stands for (a name or an "@group"; a group's own
// argument conditions are added to `prototype.conditions`). The rule copies everything else from
// `prototype`. An unknown name is an error saying so; a name of another architecture is an
// error or, with kSkip, appended to `skipped`.
Status AddNamedRules(std::string_view name, const FilterRule& prototype,
                     std::vector<FilterRule>* rules,
                     OtherArchitecture other = OtherArchitecture::kRefuse,
                     std::vector<std::string>* skipped = nullptr);

// "EPERM" or "1" -> 1. Refuses 0 (a filter that fakes success) and values above 4095.
Result<uint16_t> ParseErrno(std::string_view text);
// 1 -> "EPERM"; a number when glibc knows no name.
std::string ErrnoName(int value);
// The SECCOMP_RET_* value (= libseccomp's SCMP_ACT_*) of an action.
uint32_t ActionReturnValue(const FilterAction& action);
// How firmly an action stops a call: KILL_PROCESS 5, KILL_THREAD 4, TRAP 3, ERRNO 2, LOG 1,
// ALLOW 0. Where two sources disagree about a call, this decides: the stricter of an imported
// profile's duplicate rules wins, and a profile may only make the worker list stricter.
int ActionStrictness(Seccomp::Action action);
// "KILL_PROCESS", "ERRNO(EACCES)".
std::string DescribeAction(const FilterAction& action);
// "arg2 & 0x4 == 0x0", "arg0 == 0x1".
std::string DescribeCondition(const FilterCondition& condition);

}  // namespace cellhouse::policy

#endif  // CELLHOUSE_POLICY_SECCOMP_COMPILER_H_
