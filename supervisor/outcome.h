// Why a session ended, decided by celld from what it knows for certain (the exit status from the
// kernel, the session cgroup's OOM counter, kernel audit records, its own kill requests) and only
// then from the worker's exit code, which a compromised worker could choose.
//
//   EndFacts facts{.status = exit_status, .oom_kills = cg.OomKills(), ...};
//   SessionEnd end = ClassifyEnd(facts);
//   // end.outcome == api::OOM_KILLED, end.message == "memory limit exceeded (limit 64 MiB)"
#ifndef CELLHOUSE_SUPERVISOR_OUTCOME_H_
#define CELLHOUSE_SUPERVISOR_OUTCOME_H_

#include <cstdint>
#include <optional>
#include <string>

#include "base/process.h"
#include "ipc/api.pb.h"

namespace cellhouse::supervisor {

struct EndFacts {
  ExitStatus status;
  // Set when celld itself ended the session (kill, shutdown, idle, lifetime, unresponsive, a
  // protocol violation), with the reason it gave.
  std::optional<api::SessionOutcome> requested;
  std::string requested_reason;
  // OOM kills counted in the session's cgroup (nullopt: unknown).
  std::optional<uint64_t> oom_kills;
  uint64_t memory_limit_bytes = 0;
  // From the kernel's audit record of the seccomp kill (nullopt: none seen).
  std::optional<std::string> seccomp_syscall;
  // The sandbox step that failed (set when the zygote reported a setup failure).
  std::optional<std::string> setup_failure;
};

struct SessionEnd {
  api::SessionOutcome outcome = api::OUTCOME_UNSPECIFIED;
  // One sentence for the client and the log.
  std::string message;
  // The metric label: closed, idle, oom, seccomp, limit, killed, error.
  std::string reason_label;
};

SessionEnd ClassifyEnd(const EndFacts& facts);

// The label for an outcome (the `reason` of cellhouse_sessions_ended_total).
std::string ReasonLabel(api::SessionOutcome outcome);

}  // namespace cellhouse::supervisor

#endif  // CELLHOUSE_SUPERVISOR_OUTCOME_H_
