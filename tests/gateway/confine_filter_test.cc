// cellgate's seccomp filter, evaluated in user space (policy/bpf_evaluator.h): what it lets the
// gateway do once confined, and what kills it.
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/seccomp.h>
#include <sys/socket.h>
#include <sys/syscall.h>

#include <vector>

#include <gtest/gtest.h>

#include "gateway/confine.h"
#include "policy/bpf_evaluator.h"

namespace cellhouse::gateway {
namespace {

class GatewayFilterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::vector<policy::Problem> problems;
    std::optional<policy::CompiledFilter> f = policy::CompileFilter(GatewayFilterSpec(), &problems);
    ASSERT_TRUE(f) << (problems.empty() ? "" : problems.front().message);
    filter_ = std::move(*f);
    ASSERT_TRUE(policy::VerifySeccompProgram(filter_.program));
  }
  uint32_t Run(int nr, std::vector<uint64_t> args = {}) const {
    seccomp_data d{};
    d.nr = nr;
    d.arch = filter_.arch;
    for (size_t i = 0; i < args.size() && i < 6; ++i) d.args[i] = args[i];
    return policy::EvaluateSeccomp(filter_.program, d) & SECCOMP_RET_ACTION_FULL;
  }
  policy::CompiledFilter filter_;
};

TEST_F(GatewayFilterTest, ServesSocketsAndTheLoop) {
  for (int nr : {SYS_read, SYS_write, SYS_close, SYS_accept4, SYS_epoll_wait, SYS_epoll_ctl,
                 SYS_sendto, SYS_recvfrom, SYS_setsockopt, SYS_getrandom, SYS_exit_group,
                 SYS_timerfd_settime, SYS_connect}) {
    EXPECT_EQ(Run(nr), SECCOMP_RET_ALLOW) << nr;
  }
  EXPECT_EQ(Run(SYS_socket, {AF_UNIX, SOCK_STREAM}), SECCOMP_RET_ALLOW);
  EXPECT_EQ(Run(SYS_openat, {0, 0, O_RDONLY | O_CLOEXEC}), SECCOMP_RET_ALLOW);
}

TEST_F(GatewayFilterTest, KillsWhatAnAttackerWouldNeed) {
  for (int nr : {SYS_execve, SYS_execveat, SYS_ptrace, SYS_fork, SYS_clone3, SYS_mount, SYS_setuid,
                 SYS_bind, SYS_listen, SYS_unlinkat, SYS_mkdirat, SYS_kill}) {
    EXPECT_EQ(Run(nr), SECCOMP_RET_KILL_PROCESS) << nr;
  }
  EXPECT_EQ(Run(SYS_socket, {AF_INET, SOCK_STREAM}), SECCOMP_RET_KILL_PROCESS);
  EXPECT_EQ(Run(SYS_openat, {0, 0, O_WRONLY}), SECCOMP_RET_KILL_PROCESS);
  EXPECT_EQ(Run(SYS_openat, {0, 0, O_RDWR | O_CREAT}), SECCOMP_RET_KILL_PROCESS);
  EXPECT_EQ(Run(SYS_mmap, {0, 4096, 0x4 /*PROT_EXEC*/}), SECCOMP_RET_KILL_PROCESS);
}

}  // namespace
}  // namespace cellhouse::gateway
