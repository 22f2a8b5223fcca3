// Children for the real-cgroup tests: each is created stopped on a pipe (as the zygote holds a
// new worker until its cgroup placement is done), placed, then released to run one small body
// that exercises a limit. On v2 the child can instead be created straight into its cgroup with
// clone3(CLONE_INTO_CGROUP).
//
//   CH_ASSIGN_OR_RETURN(WaitingChild child, StartWaiting(BusyLoopBody, &spec));
//   CH_RETURN_IF_ERROR(PlaceProcessFromParent(session.placement().RawFds(), child.process.pid()));
//   CH_RETURN_IF_ERROR(child.Release());
//   CH_ASSIGN_OR_RETURN(ExitStatus status, child.process.Wait());
//
// The bodies run in a forked copy of a single-threaded test process and use system calls only.
#ifndef CELLHOUSE_TESTS_CGROUP_CHILD_HELPERS_H_
#define CELLHOUSE_TESTS_CGROUP_CHILD_HELPERS_H_

#include <sys/types.h>

#include <cstdint>
#include <string>

#include "base/process.h"
#include "base/result.h"
#include "base/unique_fd.h"

namespace cellhouse::cgroup::testing {

struct WaitingChild {
  ChildProcess process;
  UniqueFd release;  // write one byte to let the child run its body
  Status Release();
};

// The child's body: its return value is the exit status.
using ChildBody = int (*)(const void* arg);

// fork(); or, with cgroup_dir_fd >= 0, clone3(CLONE_INTO_CGROUP) into that cgroup v2 directory.
Result<WaitingChild> StartWaiting(ChildBody body, const void* arg, int cgroup_dir_fd = -1);

// Kills (SIGKILL) and reaps a child that has not been reaped yet; for test teardown.
void KillAndReap(ChildProcess& child);

// Bodies.
struct AllocateSpec {
  uint64_t bytes = 0;  // mmap and touch this much anonymous memory; exit 0 if it all fit
};
int AllocateBody(const void* arg);

struct ForkSpec {
  int max_forks = 64;  // fork children that wait until the first fork fails
};
// Exit status: the number of forks that succeeded before one failed with EAGAIN; 200 if none
// failed; 201 on another error.
int ForkUntilRefusedBody(const void* arg);

struct BusySpec {
  int cpu = 0;         // pinned here with sched_setaffinity, so weights are what decides
  double seconds = 3;  // busy for this long (wall clock)
};
int BusyLoopBody(const void* arg);

// Waits until killed.
int PauseBody(const void* arg);

struct ReportSpec {
  int fd = -1;  // receives the child's /proc/self/cgroup
};
int ReportCgroupBody(const void* arg);

// The first CPU this process may run on.
Result<int> FirstAllowedCpu();

// /proc/<pid>/cgroup as text.
Result<std::string> CgroupFileOf(pid_t pid);

}  // namespace cellhouse::cgroup::testing

#endif  // CELLHOUSE_TESTS_CGROUP_CHILD_HELPERS_H_
