// Per-process attributes of the sandbox: hostname, resource limits, the descriptor table,
// dumpability, the parent-death signal, no_new_privs and the seccomp filter. Each function runs
// in the child, is async-signal-safe, and returns errno or 0.
#ifndef CELLHOUSE_WORKER_SANDBOX_PROCESS_ATTRS_H_
#define CELLHOUSE_WORKER_SANDBOX_PROCESS_ATTRS_H_

#include <linux/filter.h>
#include <sys/resource.h>

#include <cstddef>

namespace cellhouse::sandbox {

struct RlimitSetting {
  int resource = 0;
  rlim_t soft = 0;
  rlim_t hard = 0;
};

int SetHostnameInChild(const char* name, size_t length);
// setrlimit(2) each; a limit above the current hard limit fails (no privilege to raise it).
int ApplyRlimitsInChild(const RlimitSetting* limits, size_t count);
// close_range(2) over every gap between the kept descriptors (sorted, ascending).
int CloseFdsInChild(const int* keep_sorted, size_t count);
// PR_SET_DUMPABLE 0: no core dumps, no ptrace attach by same-uid peers, /proc/PID owned by root.
int SetNotDumpableInChild();
// SIGKILL when the parent (celld, through CLONE_PARENT) dies. Set after the uid switch, which
// would clear it (prctl(2), PR_SET_PDEATHSIG).
int SetParentDeathSignalInChild();
int SetNoNewPrivsInChild();
// seccomp(SECCOMP_SET_MODE_FILTER). An empty program is refused (fail closed).
int InstallSeccompInChild(const sock_fprog& program);

}  // namespace cellhouse::sandbox

#endif  // CELLHOUSE_WORKER_SANDBOX_PROCESS_ATTRS_H_
