// The worker's side of its executor slot: per step, for each round, write the rows, Exchange, read
// the answer; if anything goes wrong — the executor died, dropped the slot, or stopped answering
// — the client says so once and stays failed over, and the worker computes that step again from
// round 0 on its own, and every later step too (docs/EXECUTOR.md, "Failover").
//
//   SlotClient slot(worker_slot);                  // from the zygote (slot_memory.h)
//   for (uint32_t round = 0; round < slot.shape().rounds; ++round) {
//     fill slot.row(r) for r < rows ...           // input_row_floats each
//     if (slot.Exchange(round, rows, RowKind::kDecode) != SlotOutcome::kOk) {
//       return ComputeStepAlone();                 // bit-identical to the executor's answer
//     }
//     read slot.row(r) (output_row_floats), or slot.final_output() after the last round ...
//   }
//   slot.Idle();                                   // the turn is over: do not wait for me
//
// A worker that is the only busy one may take its decode steps alone (alone(), Solo()) and come
// back with its next Exchange: nothing to batch with, so no round trips to pay.
//
// Waiting takes only `futex` (FUTEX_WAIT_BITSET with a deadline), which every worker filter
// allows: the worker sleeps on the response word and looks at the liveness word every
// liveness_check (the kernel marks it when the executor dies, slot_arena.h).
#ifndef CELLHOUSE_EXECUTOR_SLOT_CLIENT_H_
#define CELLHOUSE_EXECUTOR_SLOT_CLIENT_H_

#include <cstdint>
#include <string_view>

#include "executor/slot_layout.h"
#include "executor/slot_memory.h"

namespace cellhouse::executor {

struct SlotClientOptions {
  // An executor that answers nothing for this long is given up on (it may be stopped or hung);
  // longer than any batch takes.
  int64_t response_timeout_ns = 10'000'000'000;
  // How often a waiting worker looks whether the executor has died.
  int64_t liveness_check_ns = 10'000'000;
};

enum class SlotOutcome {
  kOk,        // the answer is in the slot
  kFailover,  // compute alone from now on (failover_reason() says why)
};

enum class FailoverReason {
  kNone,
  kNoSlot,        // the worker has no slot, or its header is not what it expects
  kExecutorGone,  // the executor ended (the kernel marked the liveness word), or never came
  kNoAnswer,      // no answer within response_timeout
  kDropped,       // the executor dropped the slot: timed out, refused or removed
  kViolation,     // the executor says this worker broke the protocol
  kLeft,          // Leave() was called
};
std::string_view FailoverReasonName(FailoverReason reason);

class SlotClient {
 public:
  explicit SlotClient(WorkerSlot slot, SlotClientOptions options = {});

  const SlotShape& shape() const { return shape_; }
  // False once failed over: do not touch the slot any more.
  bool active() const { return reason_ == FailoverReason::kNone; }
  FailoverReason failover_reason() const { return reason_; }

  // Row r of the payload: input_row_floats to write before a round, output_row_floats to read
  // after it (rounds before the last). r < shape().max_rows.
  float* row(uint32_t r) { return payload_ + size_t{r} * RowStrideFloats(shape_); }
  // The last round's answer: final_floats.
  const float* final_output() const { return payload_; }

  // Sends round `round` of the current step (rows and kind as at its round 0; step_flags
  // kStepSkipsFinal on a step that ends after round rounds - 2) and waits for the answer.
  SlotOutcome Exchange(uint32_t round, uint32_t rows, RowKind kind, uint32_t step_flags = 0);
  // The turn ended: the executor stops waiting for this worker. Does not wait for an answer.
  void Idle();
  // Whether the executor says no other session is busy (the slot's `alone` word): the worker may
  // then take its decode steps on its own path, after Solo(). False once failed over.
  bool alone() const { return active() && header_->alone.load(std::memory_order_relaxed) == 1; }
  // The worker takes its steps on its own path until it sends a round again: the executor counts
  // it as busy (so that another session's arrival turns alone() false) but does not wait for it.
  // Does not wait for an answer.
  void Solo();
  // Stop using the executor (the worker computes alone from now on).
  void Leave();

 private:
  // Sends one message (after the previous one was answered).
  bool Send(SlotCommand command, uint32_t round, uint32_t rows, RowKind kind, uint32_t flags);
  // Waits for the answer to message `seq`; on failure records why.
  bool AwaitAnswer(uint32_t seq);
  void FailOver(FailoverReason reason) {
    if (reason_ == FailoverReason::kNone) reason_ = reason;
  }

  SlotHeader* header_ = nullptr;
  float* payload_ = nullptr;
  SlotShape shape_;
  SlotClientOptions options_;
  uint32_t sent_ = 0;        // sequence number of the last message sent
  bool unanswered_ = false;  // an Idle() or Solo() whose answer was not awaited yet
  FailoverReason reason_ = FailoverReason::kNone;
};

}  // namespace cellhouse::executor

#endif  // CELLHOUSE_EXECUTOR_SLOT_CLIENT_H_
