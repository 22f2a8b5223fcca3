// What celld and its workers agree on besides the messages: exit statuses and the id layout of
// a session's user namespace. celld treats a worker's exit status as a hint only.
#ifndef CELLHOUSE_IPC_WORKER_CONTRACT_H_
#define CELLHOUSE_IPC_WORKER_CONTRACT_H_

#include <cstdint>

namespace cellhouse::ipc {

// A worker's exit status says why it ended.
enum class WorkerExit : int {
  kClosed = 0,           // the client sent CloseSession
  kIdleTimeout = 10,     // nobody spoke for the idle timeout
  kSupervisorGone = 11,  // the control channel closed
  kStopped = 12,         // celld sent Stop
  kInternalError = 13,   // a channel failed in a way the worker cannot recover from
  kSetupFailed = 121,    // the sandbox could not be set up (the step was reported first)
};

// Each session maps this many consecutive host ids: inside 0 → first (setup only), inside 1 →
// first + 1 (what the worker runs as).
inline constexpr uint32_t kIdsPerSession = 2;
inline constexpr uint32_t kWorkerInsideUid = 1;
inline constexpr uint32_t kWorkerInsideGid = 1;

}  // namespace cellhouse::ipc

#endif  // CELLHOUSE_IPC_WORKER_CONTRACT_H_
