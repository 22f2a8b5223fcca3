// Every shipped example (policy/examples/) loads, alone and as a directory, with and without
// model facts, and means what its comments say.
#include <fcntl.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cerrno>

#include "policy/policy.h"
#include "tests/policy/policy_test_util.h"
#include "tests/support/test_env.h"

namespace cellhouse::policy {
namespace {

using testing::Evaluate;
using ::testing::HasSubstr;
using testing::SmallModel;

std::string ExamplesDir() { return cellhouse::testing::SourceDir() + "/policy/examples"; }

TEST(ExamplesTest, DirectoryLoadsWithAndWithoutModelFacts) {
  const ModelFacts facts = SmallModel();
  for (const ModelFacts* f : {static_cast<const ModelFacts*>(nullptr), &facts}) {
    auto set = LoadPolicyDirectory(ExamplesDir(), f);
    ASSERT_TRUE(set) << set.error().message();
    EXPECT_EQ(set->size(), 3u);
    for (const char* name : {"default", "strict", "gpu"}) {
      ASSERT_EQ(set->count(name), 1u) << name;
      EXPECT_FALSE(DescribePolicy(*set->at(name)).empty());
    }
  }
}

TEST(ExamplesTest, Default) {
  auto p = LoadPolicyFile(ExamplesDir() + "/default.textproto", nullptr);
  ASSERT_TRUE(p) << p.error().message();
  const Policy& e = (*p)->proto();
  EXPECT_EQ(e.gids(0), 100u);
  EXPECT_EQ(e.cgroup().cpu_quota().quota_us(), 100000u);
  EXPECT_EQ(e.budgets().max_sessions_per_tenant(), 8u);
  EXPECT_EQ(Evaluate(**p, __NR_getrandom), SECCOMP_RET_ALLOW);
  EXPECT_EQ(Evaluate(**p, __NR_execve), SECCOMP_RET_KILL_PROCESS);
  EXPECT_EQ(Evaluate(**p, __NR_mprotect, {0, 0, PROT_EXEC}), SECCOMP_RET_KILL_PROCESS);
}

TEST(ExamplesTest, StrictIsSmallerThanDefault) {
  auto strict = LoadPolicyFile(ExamplesDir() + "/strict.textproto", nullptr);
  auto def = LoadPolicyFile(ExamplesDir() + "/default.textproto", nullptr);
  ASSERT_TRUE(strict) << strict.error().message();
  ASSERT_TRUE(def) << def.error().message();
  const auto& s = (*strict)->allowed_syscalls();
  const auto& d = (*def)->allowed_syscalls();
  EXPECT_LT(s.size(), d.size());
  EXPECT_TRUE(std::includes(d.begin(), d.end(), s.begin(), s.end()))
      << "strict allows something default does not";
  EXPECT_EQ(Evaluate(**strict, __NR_getpid), SECCOMP_RET_KILL_PROCESS);
  EXPECT_EQ(Evaluate(**strict, __NR_sendmsg), SECCOMP_RET_ALLOW);
  // What the worker calls (e2e_examples_test serves a session under it) and only that.
  EXPECT_EQ(Evaluate(**strict, __NR_getrandom), SECCOMP_RET_ALLOW);
  EXPECT_EQ(Evaluate(**strict, __NR_poll), SECCOMP_RET_ALLOW);
  EXPECT_EQ(Evaluate(**strict, __NR_fcntl, {3, F_SETFL, O_NONBLOCK}), SECCOMP_RET_ALLOW);
  EXPECT_EQ(Evaluate(**strict, __NR_fcntl, {3, F_DUPFD, 0}), SECCOMP_RET_KILL_PROCESS);
  EXPECT_EQ(Evaluate(**strict, __NR_sendto, {3, 0, 8, 0, 0, 0}), SECCOMP_RET_ALLOW);
  EXPECT_EQ(Evaluate(**strict, __NR_sendto, {3, 0, 8, 0, 0x1000, 16}), SECCOMP_RET_KILL_PROCESS);
  EXPECT_NE((*strict)->CloneNamespaceFlags() & CLONE_NEWCGROUP, 0u);
  EXPECT_EQ((*strict)->proto().cgroup().pids_max(), 1u);
}

TEST(ExamplesTest, Gpu) {
  auto p = LoadPolicyFile(ExamplesDir() + "/gpu.textproto", nullptr);
  ASSERT_TRUE(p) << p.error().message();
  EXPECT_DOUBLE_EQ((*p)->proto().gpu().compute_fraction(), 0.25);
  EXPECT_EQ((*p)->proto().gpu().device_memory_bytes(), 4294967296u);
  EXPECT_EQ(Evaluate(**p, __NR_ioctl), SECCOMP_RET_ALLOW);
  EXPECT_EQ(Evaluate(**p, __NR_socket, {AF_INET}), SECCOMP_RET_ERRNO | EACCES);
  EXPECT_EQ(Evaluate(**p, __NR_execve), SECCOMP_RET_KILL_PROCESS);
  // Threads yes, namespaces no.
  EXPECT_EQ(Evaluate(**p, __NR_clone, {CLONE_VM | CLONE_THREAD | CLONE_SIGHAND}),
            SECCOMP_RET_ALLOW);
  EXPECT_EQ(Evaluate(**p, __NR_clone, {CLONE_NEWUSER}), SECCOMP_RET_KILL_PROCESS);
  EXPECT_EQ(Evaluate(**p, __NR_clone3), SECCOMP_RET_ERRNO | ENOSYS);
  EXPECT_THAT(DescribePolicy(**p), HasSubstr("the CUDA driver probes sockets"));
}

}  // namespace
}  // namespace cellhouse::policy
