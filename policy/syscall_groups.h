// Named groups of system calls: the built-in worker allow-list ("@worker"), the smallest list a
// session can run with ("@strict"), and groups admins name in rules ("@network", ...). All of
// them live in ONE data table (syscall_groups.cc); a new group or call is a new row, not code.
//
//   const SyscallGroup* worker = FindSyscallGroup("@worker");
//   for (const GroupMember& m : worker->members) ...   // a member may name another group
//
//   CH_ASSIGN_OR_RETURN(std::vector<ExpandedSyscall> calls, ExpandSyscallName("@strict"));
#ifndef CELLHOUSE_POLICY_SYSCALL_GROUPS_H_
#define CELLHOUSE_POLICY_SYSCALL_GROUPS_H_

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "policy/policy.pb.h"

namespace cellhouse::policy {

// An argument condition a group attaches to one of its calls (mmap only without PROT_EXEC).
struct GroupArgCheck {
  uint32_t index = 0;
  ArgCondition::Op op = ArgCondition::OP_UNSPECIFIED;
  uint64_t value = 0;
  uint64_t mask = 0;
};

// A system call name, or "@name" of another group (then `check` is empty).
struct GroupMember {
  std::string_view name;
  std::optional<GroupArgCheck> check;
};

struct SyscallGroup {
  std::string_view name;     // "@memory"
  std::string_view purpose;  // why a worker needs these, for `cellctl policy check`
  std::span<const GroupMember> members;
};

// Every group, in table order.
std::span<const SyscallGroup> SyscallGroups();
// The group called `name` ("@memory"), or nullptr.
const SyscallGroup* FindSyscallGroup(std::string_view name);

// One system call a name expands to, with the condition its group attaches (if any) and the
// innermost group it came from ("" for a plain name).
struct ExpandedSyscall {
  std::string name;
  std::optional<GroupArgCheck> check;
  std::string group;
};

// "read" -> {read}; "@memory" -> its calls, following nested groups. Unknown groups are errors;
// system call names are returned as given (the compiler resolves and checks them).
Result<std::vector<ExpandedSyscall>> ExpandSyscallName(std::string_view name);

}  // namespace cellhouse::policy

#endif  // CELLHOUSE_POLICY_SYSCALL_GROUPS_H_
