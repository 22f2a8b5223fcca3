// The executor's seccomp filter: fixed, not taken from any tenant's policy, and tighter than a
// worker's. After its start the executor only waits and wakes (futex), maps the slots it is sent,
// and talks over its two inherited channels; it opens nothing, signals no one, creates nothing
// but its own threads. celld compiles it (it links libseccomp; the zygote does not) and sends it
// in the executor's SandboxSpec, where the sandbox installs it as its last step.
//
//   CH_ASSIGN_OR_RETURN(std::string bpf, ExecutorFilterBytes());
//   spec.set_seccomp_bpf(bpf);
//
// Default action: kill the process. clone is allowed only for threads (CLONE_THREAD set, no
// CLONE_NEW* flag); clone3, whose flags a filter cannot read, fails with ENOSYS so glibc falls
// back to clone.
#ifndef CELLHOUSE_EXECUTOR_EXECUTOR_FILTER_H_
#define CELLHOUSE_EXECUTOR_EXECUTOR_FILTER_H_

#include <linux/filter.h>

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace cellhouse::executor {

struct ExecutorSyscall {
  std::string_view name;
  std::string_view why;
};
// The allow-list, for documentation and `cellctl`-style listings.
std::span<const ExecutorSyscall> ExecutorSyscalls();

Result<std::vector<sock_filter>> CompileExecutorFilter();
// The program as the raw bytes a SandboxSpec carries.
Result<std::string> ExecutorFilterBytes();

}  // namespace cellhouse::executor

#endif  // CELLHOUSE_EXECUTOR_EXECUTOR_FILTER_H_
