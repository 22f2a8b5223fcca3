// The executor's batch loop: gathers the slots whose workers sent a round, copies and checks
// what they wrote, runs the compute over them as one batch, writes the answers into the slots
// and wakes the workers — without busy-waiting, and without letting any one worker hold the
// others up by more than one bounded delay (docs/EXECUTOR.md).
//
//   CH_ASSIGN_OR_RETURN(auto loop, BatchLoop::Create(compute, pool, options));
//   CH_RETURN_IF_ERROR(loop->RegisterLiveness());       // on the thread that runs the loop
//   CH_RETURN_IF_ERROR(loop->AddSlot(17, std::move(memfd)));
//   while (loop->RunOnce(extra_waiters, next_housekeeping_ns)) { ... }   // false: cannot sleep
//
// Every slot is hostile: its message is copied and checked (slot_message.h), its rows copied
// into private memory before the compute sees them, and every offset comes from the executor's
// own shape. A slot that breaks the protocol, or that stays silent mid-step beyond the slot
// timeout, is dropped (its worker is told through the slot, celld through an event); the batch
// goes on without it.
#ifndef CELLHOUSE_EXECUTOR_BATCH_LOOP_H_
#define CELLHOUSE_EXECUTOR_BATCH_LOOP_H_

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "base/mapping.h"
#include "base/result.h"
#include "base/unique_fd.h"
#include "executor/compute.h"
#include "executor/futex.h"
#include "executor/gather.h"
#include "executor/slot_arena.h"
#include "executor/slot_message.h"
#include "executor/thread_pool.h"

namespace cellhouse::executor {

struct ExecutorOptions {
  uint32_t max_slots = kFutexWaitMax - 1;  // one futex_waitv word is kept for the doorbell
  int threads = 0;                         // 0: CpusAllowed(), at most max_threads
  int max_threads = 0;                     // 0: no cap
  int64_t gather_window_min_ns = 5'000'000;
  int64_t gather_window_max_ns = 100'000'000;
  int64_t slot_timeout_ns = 2'000'000'000;
  uint32_t max_batch_rows = 512;
  int64_t report_interval_ns = 1'000'000'000;
  // The longest the executor sleeps through arrivals at the start of a gather (0: never); see
  // BatchLoop::RunOnce.
  int64_t max_nap_ns = 2'000'000;
  // Tell a session that is the only busy one to decode in its own worker (the slot's `alone`
  // word; SlotCommand::kSolo), until another starts generating: no round trips, one core. Off by
  // default: this executor's threads decode a lone session faster (docs/EXECUTOR.md).
  bool solo = false;
};

// What one slot cost, cumulative.
struct SlotUsage {
  uint64_t slot_id = 0;
  uint64_t rounds = 0;
  uint64_t rows = 0;
  uint64_t steps = 0;
  int64_t cpu_ns = 0;
  uint64_t late = 0;
  int64_t paused_ns = 0;
};

struct SlotEvent {
  enum class Kind { kAttached, kRefused, kLeft, kTimedOut, kViolation, kRemoved };
  uint64_t slot_id = 0;
  Kind kind = Kind::kAttached;
  std::string detail;
  SlotUsage usage;
};

// Batches by rows: bucket i holds those of at most 2^i rows and more than 2^(i-1); the last, all
// larger ones (ipc/executor.proto ExecutorReport.batch_rows_buckets).
inline constexpr size_t kBatchRowsBuckets = 12;
size_t BatchRowsBucket(uint32_t rows);

// The longest pause celld may ask for: below a worker's response timeout (slot_client.h), so a
// paused worker waits instead of failing over.
inline constexpr int64_t kMaxPauseNs = 2'000'000'000;

struct LoopTotals {
  uint64_t batches = 0;
  uint64_t rows = 0;
  int64_t cpu_ns = 0;
  uint64_t gathers_cut_short = 0;
  uint64_t batch_rows[kBatchRowsBuckets] = {};
  uint64_t sleeps = 0;  // RunOnce calls that slept
  uint64_t naps = 0;    // of those, the ones that slept through the slots' arrivals
};

class BatchLoop {
 public:
  static Result<std::unique_ptr<BatchLoop>> Create(StepCompute& compute, ThreadPool& pool,
                                                   const ExecutorOptions& options);
  BatchLoop(const BatchLoop&) = delete;
  BatchLoop& operator=(const BatchLoop&) = delete;

  // Registers the slots' liveness words on the calling thread's robust futex list; call once,
  // on the thread that runs the loop, before the first AddSlot.
  Status RegisterLiveness();

  // Takes a new slot: checks its memfd, maps it and starts serving it. On failure the slot is
  // refused (its worker is told through the slot when it could be mapped; a REFUSED event says
  // why) and the error is returned.
  Status AddSlot(uint64_t slot_id, UniqueFd memfd);
  // celld says the slot's worker is gone. An id not served yet is remembered (a bounded number
  // of them): its AddSlot, overtaken on the other channel, is then refused.
  void RemoveSlot(uint64_t slot_id);
  // Fairness: the slot's rounds are not served until `until_ns` (CLOCK_MONOTONIC, at most
  // kMaxPauseNs from now); batches neither include nor wait for it meanwhile. Replaces an earlier
  // pause; a time in the past ends it. Unknown ids are ignored.
  void PauseSlot(uint64_t slot_id, int64_t until_ns);

  // One turn: takes new messages, drops slots silent past the timeout, and runs one batch if the
  // gather policy says so; otherwise sleeps until a slot sends something, one of `extra` is
  // woken, a gather deadline passes, or `deadline_ns` (CLOCK_MONOTONIC; negative: none).
  // A gather whose first slot has arrived naps: for three quarters of the usual spread of
  // arrivals (at most max_nap_ns) the slots' headers say `napping` and their workers do not wake
  // the executor (each wake would cost it a turn and a worker its core); then it takes what came
  // and waits, woken again, for the rest.
  // False when that sleep failed (futex_waitv refused: a kernel before 5.16, a system call filter
  // without it, or a bad `extra` word; errno says why): calling again would only spin, so the
  // caller ends the loop.
  [[nodiscard]] bool RunOnce(std::span<const FutexWaiter> extra, int64_t deadline_ns);

  std::vector<SlotEvent> TakeEvents();
  std::vector<SlotUsage> Usage() const;
  const LoopTotals& totals() const { return totals_; }
  size_t slot_count() const { return slots_.size(); }
  size_t slot_capacity() const { return options_.max_slots; }
  int64_t gather_window_ns() const;

 private:
  struct Slot {
    uint64_t id = 0;
    int cell = -1;
    SlotHeader* header = nullptr;
    float* payload = nullptr;
    SlotProgress progress;
    bool ready = false;  // `message` waits for a batch
    SlotMessage message;
    int64_t since_ns = 0;  // ready: when taken; otherwise when last answered
    bool late = false;
    int64_t paused_until_ns = 0;
    bool paused = false;   // paused_until_ns is ahead (refreshed at each turn)
    bool napping = false;  // what header->napping was last set to
    bool alone = false;    // what header->alone was last set to
    SlotUsage usage;
  };

  BatchLoop(StepCompute& compute, ThreadPool& pool, const ExecutorOptions& options, SlotArena arena,
            Mapping input);
  void Intake(int64_t now);
  void RefreshPauses(int64_t now);
  void ExpireSilent(int64_t now);
  // Waited for: not ready, not late, and in a step or between steps.
  bool Expected(const Slot& slot) const;
  void GiveUpOnAbsent(int64_t now);
  void RunRound(uint32_t round);
  void Answer(Slot& slot, SlotVerdict verdict, uint32_t seq);
  // Drops slot `index`: tells its worker `verdict` (answering its next message in advance),
  // records the event and frees the cell.
  void Drop(size_t index, SlotVerdict verdict, SlotEvent::Kind kind, std::string detail);
  int64_t NextDeadline(const GatherDecision& decision, int64_t caller) const;
  // Until when the wait for `decision`'s round sleeps through arrivals (0: not at all).
  int64_t NapUntil(const GatherDecision& decision) const;
  void SetNapping(Slot& slot, bool napping);
  // Rewrites each slot's `alone` word where it changed: 1 when no other slot is busy.
  void RefreshAlone();

  StepCompute& compute_;
  ThreadPool& pool_;
  const ExecutorOptions options_;
  const SlotShape shape_;
  SlotArena arena_;
  Mapping input_;  // [max_batch_rows][input_row_floats]
  std::vector<Slot> slots_;
  std::vector<BatchEntry> entries_;
  std::vector<size_t> taken_;
  std::vector<GatherSlot> gather_;
  std::vector<FutexWaiter> waiters_;
  std::vector<SlotEvent> events_;
  std::vector<uint64_t> removed_early_;  // RemoveSlot before AddSlot, oldest first (bounded)
  Sweep sweep_;
  int64_t spread_ema_ns_ = 0;
  int64_t nap_spread_ns_ = 0;  // the spread NapUntil expects (batch_loop.cc)
  LoopTotals totals_;
  std::atomic<uint32_t> never_woken_{0};  // waited on when there is nothing else to wait on
};

}  // namespace cellhouse::executor

#endif  // CELLHOUSE_EXECUTOR_BATCH_LOOP_H_
