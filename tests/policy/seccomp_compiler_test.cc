#include "policy/seccomp_compiler.h"

#include <linux/audit.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>

#include "policy/syscall_groups.h"
#include "tests/policy/policy_test_util.h"

namespace cellhouse::policy {
namespace {

using testing::Action;
using testing::CompileText;
using testing::Data;
using testing::Evaluate;
using ::testing::HasSubstr;

constexpr uint32_t kX32SyscallBit = 0x40000000;

// Every system call name the "@worker" group stands for.
std::vector<std::string> WorkerNames() {
  std::vector<std::string> names;
  Result<std::vector<ExpandedSyscall>> calls = ExpandSyscallName("@worker");
  EXPECT_TRUE(calls);
  if (!calls) {
    return names;
  }
  for (const ExpandedSyscall& s : *calls) {
    names.push_back(s.name);
  }
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  return names;
}

TEST(SeccompCompilerTest, BuiltInListAllowsItsCallsAndKillsTheRest) {
  auto p = CompileText("");
  ASSERT_TRUE(p) << p.error().message();
  EXPECT_EQ((*p)->allowed_syscalls(), WorkerNames());
  for (const std::string& name : WorkerNames()) {
    ResolvedSyscall r = ResolveSyscall(name);
    ASSERT_EQ(r.kind, ResolvedSyscall::kNative) << name;
    // mmap/mprotect need a protection without PROT_EXEC: 0 (PROT_NONE) is one.
    EXPECT_EQ(Evaluate(**p, r.nr), SECCOMP_RET_ALLOW) << name;
  }
  for (int nr : {__NR_execve, __NR_socket, __NR_openat, __NR_ptrace, __NR_clone, __NR_mount,
                 __NR_bpf, __NR_io_uring_setup, __NR_getppid, __NR_kill, __NR_setuid}) {
    EXPECT_EQ(Evaluate(**p, nr), SECCOMP_RET_KILL_PROCESS) << nr;
  }
  // A number no kernel has yet is killed too.
  EXPECT_EQ(Evaluate(**p, 1000), SECCOMP_RET_KILL_PROCESS);
}

TEST(SeccompCompilerTest, ExecutableMemoryIsKilled) {
  auto p = CompileText("");
  ASSERT_TRUE(p) << p.error().message();
  for (int nr : {__NR_mmap, __NR_mprotect}) {
    EXPECT_EQ(Evaluate(**p, nr, {0, 4096, PROT_READ | PROT_WRITE}), SECCOMP_RET_ALLOW);
    EXPECT_EQ(Evaluate(**p, nr, {0, 4096, PROT_READ | PROT_EXEC}), SECCOMP_RET_KILL_PROCESS);
    EXPECT_EQ(Evaluate(**p, nr, {0, 4096, PROT_EXEC}), SECCOMP_RET_KILL_PROCESS);
    // High bits of the 64-bit argument cannot hide PROT_EXEC.
    EXPECT_EQ(Evaluate(**p, nr, {0, 4096, 0xffffffff00000000ULL | PROT_EXEC}),
              SECCOMP_RET_KILL_PROCESS);
  }
}

TEST(SeccompCompilerTest, OtherArchitecturesAndX32AreKilled) {
  auto p = CompileText("");
  ASSERT_TRUE(p) << p.error().message();
  ASSERT_EQ((*p)->filter().arch, AUDIT_ARCH_X86_64) << "these numbers are x86-64's";
  EXPECT_EQ(Evaluate(**p, __NR_read, {}, AUDIT_ARCH_I386), SECCOMP_RET_KILL_PROCESS);
  EXPECT_EQ(Evaluate(**p, __NR_read, {}, AUDIT_ARCH_AARCH64), SECCOMP_RET_KILL_PROCESS);
  EXPECT_EQ(Evaluate(**p, static_cast<int>(kX32SyscallBit | __NR_read)), SECCOMP_RET_KILL_PROCESS);
}

TEST(SeccompCompilerTest, PerRuleActions) {
  auto p = CompileText(R"(
    seccomp {
      rules { syscalls: "socket" action: ERRNO error: "EACCES" }
      rules { syscalls: "getppid" action: LOG }
      rules { syscalls: "getuid" action: TRAP }
      rules { syscalls: "getgid" action: KILL_THREAD }
      rules { syscalls: "uname" action: ERRNO }
      rules { syscalls: "ptrace" action: KILL_PROCESS comment: "same as the default" }
    })");
  ASSERT_TRUE(p) << p.error().message();
  EXPECT_EQ(Evaluate(**p, __NR_socket), SECCOMP_RET_ERRNO | EACCES);
  EXPECT_EQ(Evaluate(**p, __NR_getppid), SECCOMP_RET_LOG);
  EXPECT_EQ(Evaluate(**p, __NR_getuid), SECCOMP_RET_TRAP);
  EXPECT_EQ(Evaluate(**p, __NR_getgid), SECCOMP_RET_KILL_THREAD);
  EXPECT_EQ(Evaluate(**p, __NR_uname), SECCOMP_RET_ERRNO | EPERM);
  EXPECT_EQ(Evaluate(**p, __NR_ptrace), SECCOMP_RET_KILL_PROCESS);
  // LOG lets the call run: it counts as allowed; ERRNO does not.
  const auto& allowed = (*p)->allowed_syscalls();
  EXPECT_NE(std::find(allowed.begin(), allowed.end(), "getppid"), allowed.end());
  EXPECT_EQ(std::find(allowed.begin(), allowed.end(), "socket"), allowed.end());
}

TEST(SeccompCompilerTest, ArgumentConditions) {
  auto p = CompileText(R"(
    seccomp {
      rules { syscalls: "socket" action: ALLOW args { index: 0 op: EQ value: 1 } }
      rules { syscalls: "socket" action: ERRNO error: "EAFNOSUPPORT"
              args { index: 0 op: NE value: 1 } }
      rules { syscalls: "kill" action: ALLOW args { index: 1 op: LE value: 0 } }
      rules { syscalls: "setpriority" action: ALLOW
              args { index: 0 op: EQ value: 0 } args { index: 2 op: GE value: 10 } }
    })");
  ASSERT_TRUE(p) << p.error().message();
  EXPECT_EQ(Evaluate(**p, __NR_socket, {AF_UNIX}), SECCOMP_RET_ALLOW);
  EXPECT_EQ(Evaluate(**p, __NR_socket, {AF_INET}), SECCOMP_RET_ERRNO | EAFNOSUPPORT);
  EXPECT_EQ(Evaluate(**p, __NR_kill, {123, 0}), SECCOMP_RET_ALLOW);
  EXPECT_EQ(Evaluate(**p, __NR_kill, {123, 9}), SECCOMP_RET_KILL_PROCESS);
  // Conditions of one rule all have to hold.
  EXPECT_EQ(Evaluate(**p, __NR_setpriority, {0, 0, 19}), SECCOMP_RET_ALLOW);
  EXPECT_EQ(Evaluate(**p, __NR_setpriority, {1, 0, 19}), SECCOMP_RET_KILL_PROCESS);
  EXPECT_EQ(Evaluate(**p, __NR_setpriority, {0, 0, 5}), SECCOMP_RET_KILL_PROCESS);
}

TEST(SeccompCompilerTest, HigherLevelsReplaceOrJoinLowerOnes) {
  // A conditional ERRNO rule joins the built-in conditional ALLOW: the two cannot overlap.
  auto joined = CompileText(R"(
    seccomp { rules { syscalls: "mmap" action: ERRNO error: "EACCES"
                      args { index: 2 op: MASKED_EQ mask: 4 value: 4 } } })");
  ASSERT_TRUE(joined) << joined.error().message();
  EXPECT_EQ(Evaluate(**joined, __NR_mmap, {0, 0, PROT_READ}), SECCOMP_RET_ALLOW);
  EXPECT_EQ(Evaluate(**joined, __NR_mmap, {0, 0, PROT_READ | PROT_EXEC}),
            SECCOMP_RET_ERRNO | EACCES);
  // An unconditional rule replaces what the built-in list says about its call.
  auto replaced = CompileText(R"(seccomp { rules { syscalls: "mmap" action: ALLOW } })");
  ASSERT_TRUE(replaced) << replaced.error().message();
  EXPECT_EQ(Evaluate(**replaced, __NR_mmap, {0, 0, PROT_EXEC}), SECCOMP_RET_ALLOW);
  auto errno_read = CompileText(R"(seccomp { rules { syscalls: "read" action: ERRNO } })");
  ASSERT_TRUE(errno_read) << errno_read.error().message();
  EXPECT_EQ(Evaluate(**errno_read, __NR_read), SECCOMP_RET_ERRNO | EPERM);
}

TEST(SeccompCompilerTest, AmbiguousRulesAreRefused) {
  struct Case {
    const char* text;
    const char* expect;
  };
  const Case cases[] = {
      {R"(seccomp { rules { syscalls: "socket" action: ERRNO }
                    rules { syscalls: "socket" action: LOG } })",
       "two unconditional rules with different actions"},
      {R"(seccomp { rules { syscalls: "socket" action: ERRNO }
                    rules { syscalls: "socket" action: ALLOW args { index: 0 op: EQ value: 1 } } })",
       "would never apply"},
      {R"(seccomp { rules { syscalls: "socket" action: ALLOW args { index: 0 op: LE value: 2 } }
                    rules { syscalls: "socket" action: ERRNO args { index: 0 op: GE value: 2 } } })",
       "can both match one call"},
      {R"(seccomp { rules { syscalls: "mmap" action: ERRNO args { index: 1 op: EQ value: 4096 } } })",
       "can both match one call"},
  };
  for (const Case& c : cases) {
    auto p = CompileText(c.text);
    ASSERT_FALSE(p) << c.text;
    EXPECT_THAT(p.error().message(), HasSubstr(c.expect));
    EXPECT_THAT(p.error().message(), HasSubstr("Refusing."));
  }
}

TEST(SeccompCompilerTest, NamesAndGroups) {
  auto unknown = CompileText(R"(seccomp { allow: "reed" })");
  ASSERT_FALSE(unknown);
  EXPECT_THAT(unknown.error().message(), HasSubstr("seccomp.allow[0]: unknown system call 'reed'"));
  auto foreign = CompileText(R"(seccomp { allow: "socketcall" })");
  ASSERT_FALSE(foreign);
  EXPECT_THAT(foreign.error().message(), HasSubstr("not a system call on x86_64"));
  auto group = CompileText(R"(seccomp { allow: "@nope" })");
  ASSERT_FALSE(group);
  EXPECT_THAT(group.error().message(), HasSubstr("unknown syscall group '@nope'"));
  auto lifted = CompileText(R"(seccomp { allow: "mprotect" })");
  ASSERT_FALSE(lifted);
  EXPECT_THAT(lifted.error().message(), HasSubstr("allowed by the built-in list only if"));

  auto network = CompileText(R"(seccomp { rules { syscalls: "@network" action: ERRNO } })");
  ASSERT_TRUE(network) << network.error().message();
  EXPECT_EQ(Evaluate(**network, __NR_connect), SECCOMP_RET_ERRNO | EPERM);
  EXPECT_EQ(Evaluate(**network, __NR_socketpair), SECCOMP_RET_ERRNO | EPERM);
}

TEST(SeccompCompilerTest, StrictGroupAlone) {
  auto p = CompileText(R"(seccomp { use_builtin_allowlist: false allow: "@strict" })");
  ASSERT_TRUE(p) << p.error().message();
  EXPECT_EQ(Evaluate(**p, __NR_read), SECCOMP_RET_ALLOW);
  EXPECT_EQ(Evaluate(**p, __NR_exit_group), SECCOMP_RET_ALLOW);
  EXPECT_EQ(Evaluate(**p, __NR_mmap, {0, 0, PROT_READ | PROT_WRITE}), SECCOMP_RET_ALLOW);
  EXPECT_EQ(Evaluate(**p, __NR_mmap, {0, 0, PROT_EXEC}), SECCOMP_RET_KILL_PROCESS);
  EXPECT_EQ(Evaluate(**p, __NR_getpid), SECCOMP_RET_KILL_PROCESS);
  EXPECT_EQ(Evaluate(**p, __NR_mprotect), SECCOMP_RET_KILL_PROCESS);
  // madvise only to fault in the KV cache's pages ahead of its writes.
  EXPECT_EQ(Evaluate(**p, __NR_madvise, {0, 4096, MADV_POPULATE_WRITE}), SECCOMP_RET_ALLOW);
  EXPECT_EQ(Evaluate(**p, __NR_madvise, {0, 4096, MADV_DONTNEED}), SECCOMP_RET_KILL_PROCESS);
  EXPECT_LT((*p)->allowed_syscalls().size(), WorkerNames().size());
}

TEST(SeccompCompilerTest, DefaultActions) {
  auto errno_default = CompileText(R"(seccomp { default_action: ERRNO default_error: "ENOSYS" })");
  ASSERT_TRUE(errno_default) << errno_default.error().message();
  EXPECT_EQ(Evaluate(**errno_default, __NR_execve), SECCOMP_RET_ERRNO | ENOSYS);
  EXPECT_EQ(Evaluate(**errno_default, __NR_read), SECCOMP_RET_ALLOW);
  // Other architectures are killed whatever the default.
  EXPECT_EQ(Evaluate(**errno_default, __NR_read, {}, AUDIT_ARCH_I386), SECCOMP_RET_KILL_PROCESS);

  auto trap = CompileText(R"(seccomp { default_action: TRAP })");
  ASSERT_TRUE(trap) << trap.error().message();
  EXPECT_EQ(Action(Evaluate(**trap, __NR_execve)), SECCOMP_RET_TRAP);

  for (const char* open : {"ALLOW", "LOG"}) {
    auto p = CompileText(std::string("seccomp { default_action: ") + open + " }");
    ASSERT_FALSE(p) << open;
    EXPECT_THAT(p.error().message(), HasSubstr("seccomp.default_action"));
    EXPECT_THAT(p.error().message(), HasSubstr("would not be confined"));
  }
  auto zero = CompileText(R"(seccomp { default_action: ERRNO default_error: "0" })");
  ASSERT_FALSE(zero);
  EXPECT_THAT(zero.error().message(), HasSubstr("fake success"));
  EXPECT_EQ(Data(Evaluate(**errno_default, __NR_execve)), static_cast<uint32_t>(ENOSYS));
}

TEST(SeccompCompilerTest, ErrnoNamesAndNumbers) {
  EXPECT_EQ(*ParseErrno("EPERM"), EPERM);
  EXPECT_EQ(*ParseErrno("13"), EACCES);
  EXPECT_FALSE(ParseErrno("EWHATEVER"));
  EXPECT_FALSE(ParseErrno("4096"));
  EXPECT_FALSE(ParseErrno(""));
  EXPECT_EQ(ErrnoName(ENOSYS), "ENOSYS");
  EXPECT_EQ(SyscallName(AUDIT_ARCH_X86_64, __NR_openat), "openat");
}

}  // namespace
}  // namespace cellhouse::policy
