#include "supervisor/executor_end.h"

#include <signal.h>

#include <algorithm>

namespace cellhouse::supervisor {
namespace {

// executor::ExecutorExit, spelled out for the log (celld does not link the executor library).
std::string ExitMeaning(int code) {
  switch (code) {
    case 0:
      return "it stopped in order";
    case 11:
      return "its channel to the zygote closed";
    case 12:
      return "its channel to celld closed";
    case 13:
      return "a channel carried something it should not";
    case 14:
      return "its threads, buffers or robust list could not be set up";
    case 15:
      return "futex_waitv failed (it needs Linux 5.16 or later, and any system call filter "
             "around celld must allow futex_waitv; --shared-executor=false runs without it)";
    default:
      return "exit status " + std::to_string(code);
  }
}

}  // namespace

ExecutorEnd ClassifyExecutorEnd(const ExecutorEndFacts& facts) {
  const ExitStatus& st = facts.status;
  if (st.kind == ExitStatus::Kind::kSignaled && st.signal == SIGSYS) {
    return {"seccomp", "its seccomp filter killed it for " +
                           (facts.seccomp_syscall
                                ? "the forbidden system call '" + *facts.seccomp_syscall + "'"
                                : std::string("a forbidden system call (no audit record)"))};
  }
  if (st.kind == ExitStatus::Kind::kSignaled && st.signal == SIGKILL && facts.oom_kills &&
      *facts.oom_kills > 0) {
    return {"oom", "the OOM killer ended it in its cgroup (memory limit " +
                       std::to_string(facts.memory_limit_bytes >> 20) +
                       " MiB, --executor-memory-max)"};
  }
  if (facts.stop_requested) return {"stopped", "celld stopped it (" + st.ToString() + ")"};
  if (st.kind == ExitStatus::Kind::kSignaled) {
    return {st.signal == SIGKILL ? "killed" : "crashed", "it was " + st.ToString()};
  }
  return {"exited", "it exited: " + ExitMeaning(st.code)};
}

int64_t RestartBackoff::Next(int64_t ran_ns) {
  if (ran_ns >= kHealthyNs) next_ns_ = kFirstNs;
  const int64_t delay = next_ns_;
  next_ns_ = std::min(next_ns_ * 2, kMaxNs);
  return delay;
}

}  // namespace cellhouse::supervisor
