// Child processes, held by pidfd (pidfd_open(2)): a pid can be reused once reaped, a pidfd cannot,
// so signals and waits through it never reach the wrong process.
//
//   CH_ASSIGN_OR_RETURN(ChildProcess zygote,
//                       SpawnProgram({.argv = {"/usr/libexec/cellhouse/cell-zygote"},
//                                     .fds = {{3, channel.get()}}}));
//   ... poll zygote.pidfd() for POLLIN: the process has ended ...
//   CH_ASSIGN_OR_RETURN(std::optional<ExitStatus> st, zygote.TryReap());
//
// Teardown is explicit: the destructor neither kills nor waits (a silent kill in a destructor
// hides bugs). Callers Kill() and Reap() and a test checks they did.
#ifndef CELLHOUSE_BASE_PROCESS_H_
#define CELLHOUSE_BASE_PROCESS_H_

#include <sys/types.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "base/result.h"
#include "base/unique_fd.h"

namespace cellhouse {

// How a process ended, as waitid(2) reports it.
struct ExitStatus {
  enum class Kind { kExited, kSignaled };
  Kind kind = Kind::kExited;
  int code = 0;    // exit code when kExited
  int signal = 0;  // signal number when kSignaled
  bool core_dumped = false;

  bool Success() const { return kind == Kind::kExited && code == 0; }
  // "exited with status 3", "killed by signal SIGSYS (Bad system call)"
  std::string ToString() const;
};

class ChildProcess {
 public:
  ChildProcess() = default;
  ChildProcess(pid_t pid, UniqueFd pidfd) : pid_(pid), pidfd_(std::move(pidfd)) {}
  ChildProcess(ChildProcess&&) noexcept = default;
  ChildProcess& operator=(ChildProcess&&) noexcept = default;

  // Takes a child by pid (the caller must be its parent, so it cannot be reaped and reused
  // before pidfd_open runs).
  static Result<ChildProcess> FromPid(pid_t pid);

  pid_t pid() const { return pid_; }
  int pidfd() const { return pidfd_.get(); }
  bool valid() const { return pidfd_.valid(); }

  // pidfd_send_signal(2). Signalling a process that already ended (ESRCH) is not an error.
  Status Kill(int signal) const;
  // waitid(P_PIDFD, WEXITED | WNOHANG): the status if the process has ended (and reaps it).
  Result<std::optional<ExitStatus>> TryReap();
  // Blocks until the process ends and reaps it.
  Result<ExitStatus> Wait();
  // Whether the process was reaped through this handle.
  bool reaped() const { return reaped_; }

 private:
  Result<std::optional<ExitStatus>> WaitImpl(int options);

  pid_t pid_ = -1;
  UniqueFd pidfd_;
  bool reaped_ = false;
};

struct SpawnOptions {
  std::vector<std::string> argv;  // argv[0] is the program path (no PATH search)
  // Descriptors the child gets: {child_fd, parent_fd}. Everything else is closed in the child.
  std::vector<std::pair<int, int>> fds;
  // When set, the child's environment; otherwise the parent's.
  std::optional<std::vector<std::string>> env;
  // Kill the child when the parent thread dies (PR_SET_PDEATHSIG).
  bool die_with_parent = true;
};

// fork + execve with an explicit fd plan; returns once the exec succeeded, or the exec error.
Result<ChildProcess> SpawnProgram(const SpawnOptions& options);

// The directory holding the running executable ("/usr/bin" for /usr/bin/celld).
Result<std::string> SelfExeDir();

// CPUs in this thread's affinity mask (sched_getaffinity(2)): what its cpuset allows; at least 1.
int CpusAllowed();

}  // namespace cellhouse

#endif  // CELLHOUSE_BASE_PROCESS_H_
