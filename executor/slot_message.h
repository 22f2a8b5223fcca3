// Taking a worker's message out of its slot, as the executor does: every field is loaded once into
// private memory and checked there, against the executor's own record of where that worker is in
// its step (SlotProgress) and its own shape; nothing is read from the slot twice, so a worker that
// rewrites its header after the check changes nothing the executor uses.
//
//   uint32_t request = header->request.load(std::memory_order_acquire);
//   if (request != progress.answered) {
//     Result<SlotMessage> m = TakeMessage(*header, request, progress, shape);
//     if (!m) FailSlot(kViolation, m.error().message());   // the worker broke the protocol
//     ... compute, answer ...
//     Advance(&progress, *m, shape);
//   }
//
// Pure code over a header it only reads: fuzzed (tests/executor/slot_message_fuzzer.cc).
#ifndef CELLHOUSE_EXECUTOR_SLOT_MESSAGE_H_
#define CELLHOUSE_EXECUTOR_SLOT_MESSAGE_H_

#include <cstdint>
#include <optional>

#include "base/result.h"
#include "executor/slot_layout.h"

namespace cellhouse::executor {

// The executor's private record of one slot's worker.
struct SlotProgress {
  enum class Phase {
    kIdle,          // not generating: not waited for (a new slot starts here)
    kInStep,        // in the middle of a step: its next round is last_round + 1
    kBetweenSteps,  // finished a step: expected back with round 0 of the next one
    kSolo,          // generating in its own worker while alone (kSolo): busy, not waited for
  };
  uint32_t answered = 0;  // sequence number of the last message answered (0: none yet)
  Phase phase = Phase::kIdle;
  uint32_t last_round = 0;  // the last round answered, in a step
  uint32_t step_rows = 0;   // rows, kind and flags of the current step (fixed at its round 0)
  RowKind step_kind = RowKind::kDecode;
  uint32_t step_flags = 0;
};

// A message as taken from the slot and checked.
struct SlotMessage {
  uint32_t seq = 0;
  SlotCommand command = SlotCommand::kIdle;
  uint32_t round = 0;
  uint32_t rows = 0;
  RowKind kind = RowKind::kDecode;
  uint32_t step_flags = 0;
};

// Takes the message whose sequence number `request` the caller loaded (acquire) from
// header.request, and checks it: the sequence number follows the last answered one; the command
// is known; a round is the one expected next (0 outside a step, last_round + 1 inside), with 1 to
// max_rows rows (exactly 1 for decode) of a known kind and known flags at round 0, and the same
// rows, kind and flags as round 0 afterwards. The error says what was wrong.
Result<SlotMessage> TakeMessage(const SlotHeader& header, uint32_t request,
                                const SlotProgress& progress, const SlotShape& shape);

// Whether `round` is the last of a step with these flags (its answer is the final output).
inline bool IsFinalRound(uint32_t round, const SlotShape& shape) {
  return round + 1 == shape.rounds;
}

// The round this worker sends next if it goes on generating; nullopt when it is idle.
std::optional<uint32_t> ExpectedRound(const SlotProgress& progress);

// Records that `message` (taken by TakeMessage with this progress) was answered.
void Advance(SlotProgress* progress, const SlotMessage& message, const SlotShape& shape);

}  // namespace cellhouse::executor

#endif  // CELLHOUSE_EXECUTOR_SLOT_MESSAGE_H_
