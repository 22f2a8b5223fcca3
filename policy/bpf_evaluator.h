// A user-space interpreter for seccomp classic-BPF programs, so filters are tested by what they
// do (evaluate a program against a system call number, architecture and arguments) rather than by
// the instructions they happen to contain.
//
//   seccomp_data call{.nr = __NR_mmap, .arch = AUDIT_ARCH_X86_64, .args = {0, 4096, PROT_EXEC}};
//   uint32_t ret = EvaluateSeccomp(policy->bpf(), call);
//   EXPECT_EQ(ret & SECCOMP_RET_ACTION_FULL, SECCOMP_RET_KILL_PROCESS);
//
// VerifySeccompProgram applies the checks the kernel makes when a filter is installed
// (net/core/filter.c bpf_check_classic and kernel/seccomp.c seccomp_check_filter): only the
// instructions seccomp accepts, aligned in-bounds loads of struct seccomp_data, jumps inside the
// program, a return at the end, no division by a constant zero, scratch memory written before it
// is read.
#ifndef CELLHOUSE_POLICY_BPF_EVALUATOR_H_
#define CELLHOUSE_POLICY_BPF_EVALUATOR_H_

#include <linux/filter.h>
#include <linux/seccomp.h>

#include <cstdint>
#include <span>

#include "base/result.h"

namespace cellhouse::policy {

// Refuses a program the kernel would refuse, naming the instruction and the reason.
Status VerifySeccompProgram(std::span<const sock_filter> program);

// Runs `program` on `data` and returns what it returns: a SECCOMP_RET_* action in the high bits
// and its data (an errno for SECCOMP_RET_ERRNO) in the low 16. A program VerifySeccompProgram
// refuses yields SECCOMP_RET_KILL_PROCESS: a broken filter fails closed.
uint32_t EvaluateSeccomp(std::span<const sock_filter> program, const seccomp_data& data);

}  // namespace cellhouse::policy

#endif  // CELLHOUSE_POLICY_BPF_EVALUATOR_H_
