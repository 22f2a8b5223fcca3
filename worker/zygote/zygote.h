// The zygote's loop: celld asks for workers over a SOCK_SEQPACKET channel; the zygote forks each
// one into its sandbox (sandbox/spawn.h) and answers with the worker's pidfd, or with the step
// that failed. It never reads a tenant byte: client connections go from celld to the worker
// directly, over the worker's control channel.
//
//   Zygote zygote(std::move(channel), ready_info, MakeSessionWorkerEntry(engine_factory));
//   CH_RETURN_IF_ERROR(zygote.Run());   // returns when celld closes the channel
//
// With ExecutorSupport it also forks the model's shared step executor when celld asks
// (SpawnRequest.executor), and gives each worker that asks (SpawnRequest.executor_slot) a slot:
// a memfd mapped into the zygote only across that worker's fork, then sent to the executor
// (docs/EXECUTOR.md). The zygote keeps a channel to the executor and a doorbell page shared with
// it alone (never inherited by a worker: MADV_DONTFORK).
//
// The zygote stays single-threaded (a threaded process cannot create a user namespace, and fork
// in a threaded process is unsafe): Run() checks that before it forks anything.
#ifndef CELLHOUSE_WORKER_ZYGOTE_ZYGOTE_H_
#define CELLHOUSE_WORKER_ZYGOTE_ZYGOTE_H_

#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "base/mapping.h"
#include "base/result.h"
#include "base/unique_fd.h"
#include "executor/executor_process.h"
#include "executor/slot_memory.h"
#include "ipc/zygote.pb.h"
#include "worker/session/turn_engine.h"

namespace cellhouse::zygote_runtime {

// Runs in the worker once its sandbox is complete; the return value is the worker's exit
// status. `control` is the worker's end of its control channel; `slot` its executor slot, or
// an empty one (it computes alone).
using WorkerEntry = std::function<int(UniqueFd control, const zygote::SpawnRequest& request,
                                      executor::WorkerSlot slot)>;

// Runs in the executor once its sandbox is complete; the return value is its exit status.
using ExecutorEntry =
    std::function<int(executor::ExecutorChannels channels, const zygote::ExecutorSpec& spec)>;

// What a zygote needs to start an executor: the shape of its slots and its entry.
struct ExecutorSupport {
  executor::SlotShape shape;
  ExecutorEntry entry;
};

// Makes a session's conversation (in the worker, after the sandbox: its memory is charged to
// the session's cgroup). `limits` carries the context length and the policy's chat settings.
// `slot` is the worker's executor slot, or an empty one (it computes alone); an engine that
// computes through the shared executor takes it (issue 17, phase 2b), one that does not ignores
// it.
using EngineFactory = std::function<Result<std::unique_ptr<session::TurnEngine>>(
    const zygote::SessionLimits& limits, executor::WorkerSlot slot)>;

// The real worker: a SessionServer over a conversation from `factory`.
WorkerEntry MakeSessionWorkerEntry(EngineFactory factory);

// Fails unless this process has exactly one thread (/proc/self/task).
Status CheckSingleThreaded();

class Zygote {
 public:
  Zygote(UniqueFd channel, zygote::ZygoteReady ready, WorkerEntry entry,
         std::optional<ExecutorSupport> executor = std::nullopt)
      : channel_(std::move(channel)),
        ready_(std::move(ready)),
        entry_(std::move(entry)),
        executor_support_(std::move(executor)) {}

  // Sends ZygoteReady, then serves spawn requests until celld closes the channel.
  Status Run();

 private:
  // Spawns one worker (or the executor) and sends the reply (with its pidfd once clone3
  // succeeded).
  Status HandleSpawn(const zygote::SpawnRequest& request, std::vector<UniqueFd> fds);
  // Spawns the executor (its channel and doorbell, and what its child runs) and sends the reply.
  Status SpawnExecutor(const zygote::SpawnRequest& request, UniqueFd control,
                       std::vector<UniqueFd> cgroup_fds, zygote::SpawnReply* reply);
  // A new worker's slot (nullopt: no executor, or the memfd could not be made).
  std::optional<executor::SlotMemory> MakeSlot(const zygote::SpawnRequest& request);
  // Sends the slot to the executor; false (and the executor link dropped if it is gone) when
  // that failed.
  bool HandSlotToExecutor(uint64_t slot_id, executor::SlotMemory& slot);

  UniqueFd channel_;
  zygote::ZygoteReady ready_;
  WorkerEntry entry_;
  std::optional<ExecutorSupport> executor_support_;
  // The running executor: the zygote's end of its command channel, and the doorbell page.
  UniqueFd executor_channel_;
  Mapping executor_doorbell_;
};

}  // namespace cellhouse::zygote_runtime

#endif  // CELLHOUSE_WORKER_ZYGOTE_ZYGOTE_H_
