// ContainInChild: every containment step the worker goes through, in the order of the design
// brief, in one function that reads like the list. Runs in the child right after clone3; the
// namespaces themselves came with the clone, the id maps and the cgroup with the parent (see
// spawn.h). Everything here is async-signal-safe: the plan is built before the fork.
#ifndef CELLHOUSE_WORKER_SANDBOX_CONTAIN_H_
#define CELLHOUSE_WORKER_SANDBOX_CONTAIN_H_

#include <linux/filter.h>
#include <sys/types.h>

#include <cstddef>

#include "worker/sandbox/capabilities.h"
#include "worker/sandbox/process_attrs.h"
#include "worker/sandbox/rootfs.h"
#include "worker/sandbox/steps.h"

namespace cellhouse::sandbox {

struct ChildPlan {
  int release_fd = -1;  // read end: one byte from the parent once maps and cgroup are in place
  int status_fd = -1;   // write end: the ChildReport
  RootPlan root;
  const char* hostname = "cell";
  size_t hostname_length = 4;
  const RlimitSetting* rlimits = nullptr;
  size_t rlimit_count = 0;
  const int* keep_fds = nullptr;  // sorted; includes status_fd
  size_t keep_fd_count = 0;
  const CapabilityPlan* capabilities = nullptr;
  uid_t inside_uid = 1;
  gid_t inside_gid = 1;
  sock_fprog filter{};
};

// Applies every step or stops at the first failure. Writes the ChildReport to status_fd in both
// cases; on success the status descriptor is closed too (the parent sees the report, then EOF).
// Returns true when the sandbox is complete.
bool ContainInChild(const ChildPlan& plan);

}  // namespace cellhouse::sandbox

#endif  // CELLHOUSE_WORKER_SANDBOX_CONTAIN_H_
