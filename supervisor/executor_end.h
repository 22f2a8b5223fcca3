// Why the shared executor ended, from what celld knows for certain (its exit status, the audit
// record of a seccomp kill, its cgroup's OOM counter, whether celld asked it to stop), and when
// celld starts the next one. Pure code, unit-tested; the Supervisor (executor.cc) acts on it.
//
//   ExecutorEnd end = ClassifyExecutorEnd({.status = st, .seccomp_syscall = "getuid"});
//   metrics.executor_exits.Inc({end.reason});   // "seccomp"
//   log("the shared executor ended: {}", end.message);
//   RestartBackoff backoff;
//   int64_t delay = backoff.Next(ran_ns);          // 0.5 s, 1 s, 2 s ... 30 s; 0.5 s again
//                                                  // after a run of a minute or more
#ifndef CELLHOUSE_SUPERVISOR_EXECUTOR_END_H_
#define CELLHOUSE_SUPERVISOR_EXECUTOR_END_H_

#include <cstdint>
#include <optional>
#include <string>

#include "base/process.h"

namespace cellhouse::supervisor {

struct ExecutorEndFacts {
  ExitStatus status;
  bool stop_requested = false;                 // celld sent StopExecutor (or killed it itself)
  std::optional<std::string> seccomp_syscall;  // from the audit record, for a SIGSYS
  std::optional<uint64_t> oom_kills;           // its cgroup's counter, read after a SIGKILL
  uint64_t memory_limit_bytes = 0;
};

struct ExecutorEnd {
  // The `reason` label of cellhouse_executor_exits_total: stopped, seccomp, oom, killed,
  // crashed (another signal), exited (a status of its own: executor::ExecutorExit).
  std::string reason;
  std::string message;  // one sentence for the log
};

ExecutorEnd ClassifyExecutorEnd(const ExecutorEndFacts& facts);

// The delay before the next executor after one ended: doubling from kFirstNs up to kMaxNs while
// executors keep ending soon after they start, back to kFirstNs after one that ran for at least
// kHealthyNs.
class RestartBackoff {
 public:
  static constexpr int64_t kFirstNs = 500'000'000;
  static constexpr int64_t kMaxNs = 30'000'000'000;
  static constexpr int64_t kHealthyNs = 60'000'000'000;

  int64_t Next(int64_t ran_ns);

 private:
  int64_t next_ns_ = kFirstNs;
};

}  // namespace cellhouse::supervisor

#endif  // CELLHOUSE_SUPERVISOR_EXECUTOR_END_H_
