// The compiled filter installed for real: a forked child installs the strict example's program
// (as the worker does, after PR_SET_NO_NEW_PRIVS) and makes one allowed and one forbidden call.
// The kernel must agree with the user-space evaluator the unit tests rely on.
#include <fcntl.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <csignal>

#include "base/io.h"
#include "policy/policy.h"
#include "tests/policy/policy_test_util.h"
#include "tests/support/test_env.h"

namespace cellhouse::policy {
namespace {

using testing::Evaluate;

// Exit codes the child uses to say which step failed (it may not print once filtered).
constexpr int kNoNewPrivsFailed = 10;
constexpr int kInstallFailed = 11;
constexpr int kWriteFailed = 12;

// In the child: install `program`, write one byte to `fd` (allowed), then make `forbidden_nr`.
// Only raw system calls after the filter is in place: nothing else may run.
[[noreturn]] void RunFilteredInChild(std::span<const sock_filter> program, int fd,
                                     long forbidden_nr) {
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    _exit(kNoNewPrivsFailed);
  }
  sock_fprog prog{.len = static_cast<unsigned short>(program.size()),
                  .filter = const_cast<sock_filter*>(program.data())};
  if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0) {
    _exit(kInstallFailed);
  }
  const char byte = 'x';
  if (syscall(SYS_write, fd, &byte, 1) != 1) {
    syscall(SYS_exit_group, kWriteFailed);
  }
  syscall(forbidden_nr);
  syscall(SYS_exit_group, 0);  // reached only if the forbidden call was let through
  __builtin_unreachable();
}

struct ChildEnd {
  int status = 0;
  std::string written;
};

ChildEnd RunChild(const CompiledPolicy& policy, long forbidden_nr) {
  ChildEnd end;
  auto pipe = MakePipe();
  EXPECT_TRUE(pipe);
  if (!pipe) {
    return end;
  }
  pid_t pid = fork();
  if (pid == 0) {
    pipe->first.reset();
    RunFilteredInChild(policy.bpf(), pipe->second.get(), forbidden_nr);
  }
  EXPECT_GT(pid, 0);
  pipe->second.reset();
  char buf[8];
  ssize_t n = read(pipe->first.get(), buf, sizeof(buf));
  if (n > 0) {
    end.written.assign(buf, static_cast<size_t>(n));
  }
  EXPECT_EQ(waitpid(pid, &end.status, 0), pid);
  return end;
}

TEST(SeccompInstallTest, StrictFilterAllowsWritesAndKillsOnGetpid) {
  auto p = LoadPolicyFile(cellhouse::testing::SourceDir() + "/policy/examples/strict.textproto",
                          nullptr);
  ASSERT_TRUE(p) << p.error().message();
  // What the evaluator predicts ...
  ASSERT_EQ(Evaluate(**p, SYS_write), SECCOMP_RET_ALLOW);
  ASSERT_EQ(Evaluate(**p, SYS_getpid), SECCOMP_RET_KILL_PROCESS);
  // ... is what the kernel does.
  ChildEnd end = RunChild(**p, SYS_getpid);
  EXPECT_EQ(end.written, "x");
  ASSERT_TRUE(WIFSIGNALED(end.status)) << "exit status " << WEXITSTATUS(end.status);
  EXPECT_EQ(WTERMSIG(end.status), SIGSYS);
}

TEST(SeccompInstallTest, ErrnoRuleReturnsTheErrnoInTheKernelToo) {
  auto p = testing::CompileText(R"(
    seccomp { use_builtin_allowlist: false allow: "@strict"
              rules { syscalls: "getppid" action: ERRNO error: "EACCES" } })");
  ASSERT_TRUE(p) << p.error().message();
  ASSERT_EQ(Evaluate(**p, SYS_getppid), SECCOMP_RET_ERRNO | EACCES);
  // getppid fails with EACCES and the child carries on to exit_group(0).
  ChildEnd end = RunChild(**p, SYS_getppid);
  EXPECT_EQ(end.written, "x");
  ASSERT_TRUE(WIFEXITED(end.status));
  EXPECT_EQ(WEXITSTATUS(end.status), 0);
}

}  // namespace
}  // namespace cellhouse::policy
