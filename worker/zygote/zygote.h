// The zygote's loop: celld asks for workers over a SOCK_SEQPACKET channel; the zygote forks each
// one into its sandbox (sandbox/spawn.h) and answers with the worker's pidfd, or with the step
// that failed. It never reads a tenant byte: client connections go from celld to the worker
// directly, over the worker's control channel.
//
//   Zygote zygote(std::move(channel), ready_info, MakeSessionWorkerEntry(engine_factory));
//   CH_RETURN_IF_ERROR(zygote.Run());   // returns when celld closes the channel
//
// The zygote stays single-threaded (a threaded process cannot create a user namespace, and fork
// in a threaded process is unsafe): Run() checks that before it forks anything.
#ifndef CELLHOUSE_WORKER_ZYGOTE_ZYGOTE_H_
#define CELLHOUSE_WORKER_ZYGOTE_ZYGOTE_H_

#include <functional>
#include <memory>

#include "base/result.h"
#include "base/unique_fd.h"
#include "ipc/zygote.pb.h"
#include "worker/session/turn_engine.h"

namespace cellhouse::zygote_runtime {

// Runs in the worker once its sandbox is complete; the return value is the worker's exit
// status. `control` is the worker's end of its control channel.
using WorkerEntry = std::function<int(UniqueFd control, const zygote::SpawnRequest& request)>;

// Makes a session's conversation (in the worker, after the sandbox: its memory is charged to
// the session's cgroup).
// `limits` carries the context length and the policy's chat settings.
using EngineFactory = std::function<Result<std::unique_ptr<session::TurnEngine>>(
    const zygote::SessionLimits& limits)>;

// The real worker: a SessionServer over a conversation from `factory`.
WorkerEntry MakeSessionWorkerEntry(EngineFactory factory);

// Fails unless this process has exactly one thread (/proc/self/task).
Status CheckSingleThreaded();

class Zygote {
 public:
  Zygote(UniqueFd channel, zygote::ZygoteReady ready, WorkerEntry entry)
      : channel_(std::move(channel)), ready_(std::move(ready)), entry_(std::move(entry)) {}

  // Sends ZygoteReady, then serves spawn requests until celld closes the channel.
  Status Run();

 private:
  // Spawns one worker and sends the reply (with its pidfd once clone3 succeeded).
  Status HandleSpawn(const zygote::SpawnRequest& request, std::vector<UniqueFd> fds);

  UniqueFd channel_;
  zygote::ZygoteReady ready_;
  WorkerEntry entry_;
};

}  // namespace cellhouse::zygote_runtime

#endif  // CELLHOUSE_WORKER_ZYGOTE_ZYGOTE_H_
