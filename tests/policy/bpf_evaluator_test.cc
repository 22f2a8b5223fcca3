#include "policy/bpf_evaluator.h"

#include <linux/audit.h>
#include <sys/syscall.h>

#include <gtest/gtest.h>

#include <cstddef>
#include <vector>

namespace cellhouse::policy {
namespace {

// Tiny hand-written programs: these test the interpreter itself, so writing instructions here
// is the point (filters from the compiler are tested by evaluation only).
constexpr uint32_t kNrOffset = offsetof(seccomp_data, nr);
constexpr uint32_t kArchOffset = offsetof(seccomp_data, arch);
constexpr uint32_t kArg0Low = offsetof(seccomp_data, args);

sock_filter Stmt(uint16_t code, uint32_t k) { return BPF_STMT(code, k); }
sock_filter Jump(uint16_t code, uint32_t k, uint8_t jt, uint8_t jf) {
  return BPF_JUMP(code, k, jt, jf);
}

seccomp_data Call(int nr, uint64_t arg0 = 0) {
  seccomp_data d{};
  d.nr = nr;
  d.arch = AUDIT_ARCH_X86_64;
  d.args[0] = arg0;
  return d;
}

TEST(BpfEvaluatorTest, ReturnsWhatTheProgramDecides) {
  // if (nr == getpid) ALLOW else ERRNO(EPERM)
  std::vector<sock_filter> p = {
      Stmt(BPF_LD | BPF_W | BPF_ABS, kNrOffset),
      Jump(BPF_JMP | BPF_JEQ | BPF_K, __NR_getpid, 0, 1),
      Stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      Stmt(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | 1),
  };
  ASSERT_TRUE(VerifySeccompProgram(p));
  EXPECT_EQ(EvaluateSeccomp(p, Call(__NR_getpid)), SECCOMP_RET_ALLOW);
  EXPECT_EQ(EvaluateSeccomp(p, Call(__NR_getppid)), SECCOMP_RET_ERRNO | 1);
}

TEST(BpfEvaluatorTest, AluScratchMemoryAndIndexRegister) {
  // A = arg0 & 0xff; mem[3] = A; X = 0x10; A = mem[3]; A += X; if (A > 0x20) KILL else A
  std::vector<sock_filter> p = {
      Stmt(BPF_LD | BPF_W | BPF_ABS, kArg0Low),
      Stmt(BPF_ALU | BPF_AND | BPF_K, 0xff),
      Stmt(BPF_ST, 3),
      Stmt(BPF_LDX | BPF_IMM, 0x10),
      Stmt(BPF_LD | BPF_MEM, 3),
      Stmt(BPF_ALU | BPF_ADD | BPF_X, 0),
      Jump(BPF_JMP | BPF_JGT | BPF_K, 0x20, 0, 1),
      Stmt(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
      Stmt(BPF_RET | BPF_A, 0),
  };
  ASSERT_TRUE(VerifySeccompProgram(p));
  EXPECT_EQ(EvaluateSeccomp(p, Call(0, 0x105)), 0x15u);  // (0x105 & 0xff) + 0x10
  EXPECT_EQ(EvaluateSeccomp(p, Call(0, 0x11)), SECCOMP_RET_KILL_PROCESS);
}

TEST(BpfEvaluatorTest, JsetAndJa) {
  std::vector<sock_filter> p = {
      Stmt(BPF_LD | BPF_W | BPF_ABS, kArchOffset),
      Jump(BPF_JMP | BPF_JSET | BPF_K, 0x80000000, 1, 0),  // __AUDIT_ARCH_64BIT
      Stmt(BPF_JMP | BPF_JA, 1),
      Stmt(BPF_RET | BPF_K, SECCOMP_RET_LOG),
      Stmt(BPF_RET | BPF_K, SECCOMP_RET_TRAP),
  };
  ASSERT_TRUE(VerifySeccompProgram(p));
  EXPECT_EQ(EvaluateSeccomp(p, Call(0)), SECCOMP_RET_LOG);
  seccomp_data x86 = Call(0);
  x86.arch = AUDIT_ARCH_I386;
  EXPECT_EQ(EvaluateSeccomp(p, x86), SECCOMP_RET_TRAP);
}

TEST(BpfEvaluatorTest, RefusesWhatTheKernelRefusesAndFailsClosed) {
  const seccomp_data any = Call(0);
  struct Case {
    const char* why;
    std::vector<sock_filter> program;
  };
  const std::vector<Case> cases = {
      {"empty", {}},
      {"no final return", {Stmt(BPF_LD | BPF_W | BPF_ABS, kNrOffset)}},
      {"unaligned load",
       {Stmt(BPF_LD | BPF_W | BPF_ABS, 2), Stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)}},
      {"load past seccomp_data",
       {Stmt(BPF_LD | BPF_W | BPF_ABS, sizeof(seccomp_data)),
        Stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)}},
      {"byte load (not allowed in seccomp)",
       {Stmt(BPF_LD | BPF_B | BPF_ABS, 0), Stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)}},
      {"jump past the end",
       {Jump(BPF_JMP | BPF_JEQ | BPF_K, 0, 5, 0), Stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)}},
      {"ja past the end", {Stmt(BPF_JMP | BPF_JA, 1), Stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)}},
      {"division by constant zero",
       {Stmt(BPF_ALU | BPF_DIV | BPF_K, 0), Stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)}},
      {"scratch read before write",
       {Stmt(BPF_LD | BPF_MEM, 0), Stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)}},
      {"scratch index out of range", {Stmt(BPF_ST, 16), Stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)}},
      {"written on one path only",
       {Jump(BPF_JMP | BPF_JEQ | BPF_K, 0, 1, 0), Stmt(BPF_ST, 0), Stmt(BPF_LD | BPF_MEM, 0),
        Stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)}},
  };
  for (const Case& c : cases) {
    EXPECT_FALSE(VerifySeccompProgram(c.program)) << c.why;
    EXPECT_EQ(EvaluateSeccomp(c.program, any), SECCOMP_RET_KILL_PROCESS) << c.why;
  }
  std::vector<sock_filter> too_long(BPF_MAXINSNS + 1, Stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
  EXPECT_FALSE(VerifySeccompProgram(too_long));
}

}  // namespace
}  // namespace cellhouse::policy
