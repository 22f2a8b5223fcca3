// The executor process's main loop, once the zygote has forked and contained it: starts its
// threads (one per CPU of its cpuset), registers the slots' liveness words, then serves —
// slots arriving from the zygote (with a doorbell futex so that it never polls for them),
// celld's RemoveSlot/PauseSlot/Stop, the batch loop, and a usage report to celld every report
// interval (docs/EXECUTOR.md).
//
//   // in the zygote's executor entry, after the sandbox is complete:
//   return RunExecutor(std::move(channels), OptionsFromSpec(spec), *compute);
//
// System calls it makes after its start: futex and futex_waitv (waiting and waking), recvmsg and
// sendmsg on its two channels, close, mmap/munmap/mprotect/madvise (slots and buffers),
// fstat/fcntl (checking a slot's memfd), clock_gettime, and clone for its threads at the
// start. executor_filter.h lists them.
#ifndef CELLHOUSE_EXECUTOR_EXECUTOR_PROCESS_H_
#define CELLHOUSE_EXECUTOR_EXECUTOR_PROCESS_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>

#include "base/result.h"
#include "base/unique_fd.h"
#include "executor/batch_loop.h"
#include "executor/compute.h"
#include "ipc/zygote.pb.h"

namespace cellhouse::executor {

// The executor's exit status says why it ended.
enum class ExecutorExit : int {
  kStopped = 0,          // celld sent StopExecutor
  kZygoteGone = 11,      // the zygote's channel closed
  kSupervisorGone = 12,  // celld's channel closed
  kChannelError = 13,    // a channel carried something it should not
  kSetupFailed = 14,     // threads, buffers or the robust list could not be set up
  kWaitFailed = 15,      // futex_waitv refused (a kernel before 5.16, or a filter without it)
};

struct ExecutorChannels {
  UniqueFd control;  // SOCK_SEQPACKET to celld: ExecutorControl in, ExecutorReport out
  UniqueFd zygote;   // SOCK_SEQPACKET from the zygote: ExecutorCommand (+ a slot's memfd)
  // Bumped by the zygote after each command; in a page only the zygote and the executor map.
  std::atomic<uint32_t>* doorbell = nullptr;
};

// The spec's fields, zero ones replaced by the defaults of ExecutorOptions.
ExecutorOptions OptionsFromSpec(const zygote::ExecutorSpec& spec);

int RunExecutor(ExecutorChannels channels, const ExecutorOptions& options, StepCompute& compute);

// What the zygote runs in its executor child once contained: makes the compute there (so its
// scratch memory is the executor's), then RunExecutor.
using ComputeFactory = std::function<Result<std::unique_ptr<StepCompute>>()>;
int RunExecutorWith(ExecutorChannels channels, const zygote::ExecutorSpec& spec,
                    const ComputeFactory& factory);

}  // namespace cellhouse::executor

#endif  // CELLHOUSE_EXECUTOR_EXECUTOR_PROCESS_H_
