#include "supervisor/outcome.h"

#include <signal.h>

#include "ipc/worker_contract.h"

namespace cellhouse::supervisor {

std::string ReasonLabel(api::SessionOutcome outcome) {
  switch (outcome) {
    case api::CLOSED:
      return "closed";
    case api::IDLE_TIMEOUT:
      return "idle";
    case api::OOM_KILLED:
      return "oom";
    case api::SECCOMP_VIOLATION:
      return "seccomp";
    case api::LIFETIME_EXCEEDED:
    case api::LIMIT_EXCEEDED:
      return "limit";
    case api::KILLED:
    case api::SHUTDOWN:
      return "killed";
    default:
      return "error";
  }
}

namespace {

SessionEnd Make(api::SessionOutcome outcome, std::string message) {
  SessionEnd end;
  end.outcome = outcome;
  end.message = std::move(message);
  end.reason_label = ReasonLabel(outcome);
  return end;
}

std::string MiB(uint64_t bytes) { return std::to_string(bytes >> 20) + " MiB"; }

}  // namespace

SessionEnd ClassifyEnd(const EndFacts& facts) {
  const ExitStatus& st = facts.status;
  if (facts.setup_failure) {
    return Make(api::SETUP_FAILED, "the session could not start: " + *facts.setup_failure);
  }
  if (st.kind == ExitStatus::Kind::kSignaled && st.signal == SIGSYS) {
    std::string what = facts.seccomp_syscall
                           ? "forbidden system call '" + *facts.seccomp_syscall + "'"
                           : "a forbidden system call";
    return Make(api::SECCOMP_VIOLATION, "the sandbox stopped the session: " + what);
  }
  if (st.kind == ExitStatus::Kind::kSignaled && st.signal == SIGKILL && facts.oom_kills &&
      *facts.oom_kills > 0) {
    return Make(api::OOM_KILLED,
                "memory limit exceeded (limit " + MiB(facts.memory_limit_bytes) + ")");
  }
  if (facts.requested) {
    std::string message = facts.requested_reason.empty()
                              ? std::string("the session was ended by the server")
                              : facts.requested_reason;
    return Make(*facts.requested, message);
  }
  if (st.kind == ExitStatus::Kind::kExited) {
    switch (st.code) {
      case static_cast<int>(ipc::WorkerExit::kClosed):
        return Make(api::CLOSED, "closed by the client");
      case static_cast<int>(ipc::WorkerExit::kIdleTimeout):
        return Make(api::IDLE_TIMEOUT, "the session was idle longer than its policy allows");
      case static_cast<int>(ipc::WorkerExit::kSetupFailed):
        return Make(api::SETUP_FAILED, "the session's sandbox could not be set up");
      default:
        break;
    }
  }
  return Make(api::WORKER_CRASHED, "the session's worker " + st.ToString());
}

}  // namespace cellhouse::supervisor
