// A test rig for the executor without a sandbox: the test process plays the zygote. It makes the
// slots, forks an executor process serving them (the real BatchLoop over FakeCompute) and worker
// processes running fake sessions through the real SlotClient, and collects what each saw.
//
//   ExecutorRig rig(SmallShape(), options, 3);
//   rig.StartExecutor();
//   for (int i = 0; i < 3; ++i) rig.StartWorker(i, [](SlotClient& c) { return RunFakeSession(c,
//   {}); }); SessionResult r = rig.WaitWorker(0);          // mismatches, failover, ...
//   ExecutorSummary s = rig.StopExecutor();       // batches, events per slot
//
// Every child inherits every slot's mapping (isolation is the sandbox's business, tested in the
// privileged test); the test process stays single-threaded, so forking it is safe.
#ifndef CELLHOUSE_TESTS_EXECUTOR_RIG_H_
#define CELLHOUSE_TESTS_EXECUTOR_RIG_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <limits>
#include <optional>
#include <vector>

#include "base/mapping.h"
#include "base/process.h"
#include "base/unique_fd.h"
#include "executor/batch_loop.h"
#include "executor/slot_client.h"
#include "executor/slot_memory.h"
#include "tests/executor/fake_compute.h"
#include "tests/executor/fake_session.h"

namespace cellhouse::testing {

inline constexpr int kRigMaxSlots = 16;

// What the executor process saw; fixed size, sent over a pipe when it stops.
struct ExecutorSummary {
  uint64_t batches = 0;
  uint64_t rows = 0;
  uint64_t cut_short = 0;
  // Per slot (index = slot id): bit (1 << SlotEvent::Kind) for each event seen, and its
  // counters (from its final usage if it was dropped, else its live usage).
  uint32_t events[kRigMaxSlots] = {};
  uint64_t late[kRigMaxSlots] = {};
  uint64_t slot_rows[kRigMaxSlots] = {};
  int64_t slot_paused_ns[kRigMaxSlots] = {};
  bool wait_failed = false;  // a RunOnce could not sleep (BatchLoop::RunOnce)
  uint64_t sleeps = 0;       // LoopTotals'
  uint64_t naps = 0;
};

inline bool HasEvent(const ExecutorSummary& s, int slot, executor::SlotEvent::Kind kind) {
  return (s.events[slot] & (1U << static_cast<unsigned>(kind))) != 0;
}

class ExecutorRig {
 public:
  ExecutorRig(const executor::SlotShape& shape, const executor::ExecutorOptions& options,
              int slots);
  ~ExecutorRig();
  ExecutorRig(const ExecutorRig&) = delete;
  ExecutorRig& operator=(const ExecutorRig&) = delete;

  // Forks the executor; it adds every slot (ids 0..slots-1), then serves until StopExecutor.
  void StartExecutor(int threads = 2);
  void StartWorker(int slot, const std::function<SessionResult(executor::SlotClient&)>& body,
                   executor::SlotClientOptions client_options = {});
  SessionResult WaitWorker(int slot);
  // Has the executor pause the slot for `duration_ns` from when it takes the command (celld's
  // PauseSlot); returns at once.
  void PauseSlot(int slot, int64_t duration_ns);
  ExecutorSummary StopExecutor();
  ChildProcess& executor() { return executor_; }
  ChildProcess& worker(int slot) { return workers_[static_cast<size_t>(slot)]; }
  executor::WorkerSlot slot_view(int slot) const {
    return slots_[static_cast<size_t>(slot)].worker_view();
  }

 private:
  executor::SlotShape shape_;
  executor::ExecutorOptions options_;
  std::vector<executor::SlotMemory> slots_;
  // Futex words shared with the executor: [0] stop, [1] the number of pause commands sent, [2]
  // the slot and [3..4] the duration of the latest.
  Mapping stop_;
  ChildProcess executor_;
  UniqueFd executor_pipe_;
  std::vector<ChildProcess> workers_;
  std::vector<UniqueFd> worker_pipes_;
};

}  // namespace cellhouse::testing

#endif  // CELLHOUSE_TESTS_EXECUTOR_RIG_H_
