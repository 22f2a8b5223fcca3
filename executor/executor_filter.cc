#include "executor/executor_filter.h"

#include <errno.h>
#include <sched.h>
#include <sys/mman.h>

#include <cstring>
#include <optional>

#include "base/str_cat.h"
#include "policy/seccomp_compiler.h"

namespace cellhouse::executor {
namespace {

using policy::ArgCondition;
using policy::FilterCondition;
using policy::FilterRule;
using policy::Seccomp;

// CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID |
// CLONE_NEWNET.
constexpr uint64_t kNamespaceFlags = 0x7E020000;

constexpr ExecutorSyscall kAllowed[] = {
    {"futex", "waiting on slots, waking workers, parking its threads"},
    {"futex_waitv", "waiting on every slot at once"},
    {"recvmsg", "commands from the zygote (with slot memfds) and from celld"},
    {"sendmsg", "usage reports to celld"},
    {"write", "the sandbox's report on its status pipe, once"},
    {"close", "a slot's memfd once mapped"},
    {"fstat", "checking a slot memfd's size"},
    {"newfstatat", "fstat as glibc makes it"},
    {"fcntl", "checking a slot memfd's seals"},
    {"mmap", "mapping slots (never executable)"},
    {"mprotect", "thread stack guards (never executable)"},
    {"munmap", "unmapping slots"},
    {"madvise", "glibc freeing thread stacks and heap"},
    {"brk", "the heap"},
    {"mremap", "the heap"},
    {"clone", "its threads only (CLONE_THREAD, no namespace flag)"},
    {"set_robust_list", "the liveness words' robust list; glibc's per thread"},
    {"rseq", "glibc registers each new thread"},
    {"rt_sigprocmask", "glibc blocks signals around thread creation"},
    {"rt_sigaction", "glibc sets its thread signal handlers at the first thread"},
    {"rt_sigreturn", "returning from a signal"},
    {"sched_getaffinity", "counting the CPUs of its cpuset"},
    {"sched_yield", "glibc's locks"},
    {"gettid", "its thread id for the liveness words"},
    {"getpid", "glibc"},
    {"clock_gettime", "deadlines and CPU accounting (CLOCK_PROCESS_CPUTIME_ID is a system call)"},
    {"restart_syscall", "an interrupted wait"},
    {"exit", "a thread's end"},
    {"exit_group", "the executor's end"},
};

// Extra conditions for some calls of kAllowed.
std::optional<FilterCondition> ConditionFor(std::string_view name) {
  if (name == "mmap" || name == "mprotect") {
    return FilterCondition{
        .index = 2, .op = ArgCondition::MASKED_EQ, .value = 0, .mask = PROT_EXEC};
  }
  if (name == "clone") {
    return FilterCondition{.index = 0,
                           .op = ArgCondition::MASKED_EQ,
                           .value = CLONE_THREAD,
                           .mask = CLONE_THREAD | kNamespaceFlags};
  }
  return std::nullopt;
}

}  // namespace

std::span<const ExecutorSyscall> ExecutorSyscalls() { return kAllowed; }

Result<std::vector<sock_filter>> CompileExecutorFilter() {
  policy::FilterSpec spec;
  spec.default_action = {Seccomp::KILL_PROCESS, 0};
  for (const ExecutorSyscall& call : kAllowed) {
    FilterRule allow;
    allow.action = {Seccomp::ALLOW, 0};
    allow.origin = "executor";
    if (std::optional<FilterCondition> c = ConditionFor(call.name)) allow.conditions.push_back(*c);
    CH_RETURN_IF_ERROR(policy::AddNamedRules(call.name, allow, &spec.rules));
  }
  FilterRule no_clone3;
  no_clone3.action = {Seccomp::ERRNO, ENOSYS};
  no_clone3.origin = "executor";
  CH_RETURN_IF_ERROR(policy::AddNamedRules("clone3", no_clone3, &spec.rules));
  std::vector<policy::Problem> problems;
  std::optional<policy::CompiledFilter> filter = policy::CompileFilter(spec, &problems);
  if (!filter) {
    return Error(
        StrCat("compiling the executor's seccomp filter: ",
               problems.empty() ? std::string("libseccomp failed") : problems.front().message));
  }
  return std::move(filter->program);
}

Result<std::string> ExecutorFilterBytes() {
  CH_ASSIGN_OR_RETURN(std::vector<sock_filter> program, CompileExecutorFilter());
  std::string bytes(program.size() * sizeof(sock_filter), '\0');
  std::memcpy(bytes.data(), program.data(), bytes.size());
  return bytes;
}

}  // namespace cellhouse::executor
