// What celld holds of one model's shared step executor (docs/EXECUTOR.md): the process (its
// pidfd, from the zygote's reply), its control channel (ExecutorControl out, ExecutorReport in),
// its cgroup, the slots celld handed out, and the restart schedule. The Supervisor drives it
// (executor.cc).
//
//   celld start-up: kOff (not asked for, or the model has no executor) or kStarting
//   kStarting → the zygote's reply → kRunning (or kRestartWait if it failed)
//   kRunning → the process ends → kRestartWait → timer → kStarting → ...
//   shutdown: → kOff (StopExecutor sent; it also ends when the zygote's channel closes)
#ifndef CELLHOUSE_SUPERVISOR_SHARED_EXECUTOR_H_
#define CELLHOUSE_SUPERVISOR_SHARED_EXECUTOR_H_

#include <cstdint>
#include <optional>
#include <string>

#include "base/clock.h"
#include "base/process.h"
#include "base/unique_fd.h"
#include "supervisor/cgroup/session_cgroup.h"
#include "supervisor/event_loop.h"
#include "supervisor/executor_end.h"
#include "supervisor/executor_fairness.h"
#include "supervisor/executor_slots.h"
#include "supervisor/session.h"

namespace cellhouse::supervisor {

// celld's options for its executors (command line: supervisor/main.cc).
struct SharedExecutorOptions {
  bool enabled = true;  // --shared-executor (the default; =false: every worker computes alone)
  // The first of the host ids executors take, two per model (root inside for the set-up, then
  // the unprivileged id), held for celld's life in the allocator sessions draw from. Just past
  // the shipped default policy's range.
  uint32_t host_uid_first = 0x70010000;
  uint32_t threads = 0;                      // --executor-threads; 0: the CPUs of its cpuset
  uint64_t memory_max_bytes = 512ULL << 20;  // its cgroup's memory.max
  bool solo = false;  // --executor-solo: a lone busy session decodes in its own worker (off)
};

// An executor that sends no report for this long (it reports every second) is wedged or stopped:
// celld kills it, its workers fail over at once, and the next one starts. Until then, a worker
// waiting on it gives up after its own response timeout, also 10 s.
inline constexpr int64_t kExecutorSilenceNs = 10'000'000'000;

// Host ids the executors' blocks are drawn from (from host_uid_first): 128 models.
inline constexpr uint32_t kExecutorHostIdRange = 256;

// Slots an executor serves: futex_waitv's 128 words, one kept for its doorbell.
inline constexpr uint32_t kExecutorSlotCapacity = 127;

struct SharedExecutor {
  enum class State {
    kOff,          // not running and not coming back
    kStarting,     // asked the zygote; its reply is pending
    kRunning,      // serving
    kRestartWait,  // it ended; the next one starts when restart_timer fires
  };

  explicit SharedExecutor(EventLoop& loop)
      : restart_timer(loop),
        silence_timer(loop),
        slots(kExecutorSlotCapacity),
        fairness(kNanosPerSecond) {}

  // Workers may be given a slot: the executor runs, or its start is on the zygote's queue ahead
  // of any later worker's.
  bool TakesSlots() const { return state == State::kStarting || state == State::kRunning; }

  State state = State::kOff;
  uint32_t host_id_first = 0;
  ChildProcess process;
  UniqueFd control;  // celld's end
  std::optional<cgroup::SessionCgroup> cgroup;
  uint64_t spawn_request_id = 0;
  int64_t started_ns = 0;
  uint64_t starts = 0;
  bool stop_requested = false;
  std::string last_end;  // why the previous one ended
  RestartBackoff backoff;
  OwnedTimer restart_timer;
  OwnedTimer silence_timer;    // re-armed by every report
  bool killed_silent = false;  // celld killed it for its silence
  ExecutorSlots slots;
  // The executor CPU each slot's session used, against its policy's CPU quota.
  FairShare fairness;
};

}  // namespace cellhouse::supervisor

#endif  // CELLHOUSE_SUPERVISOR_SHARED_EXECUTOR_H_
