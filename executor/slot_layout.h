// The slot: the only memory a worker and the shared executor have in common. One memfd per worker,
// mapped by that worker and the executor and by no one else: a header page, then the payload the
// rows of one round travel in (docs/EXECUTOR.md, "The slot").
//
//   SlotShape shape{.max_rows = 16, .rounds = 13, .input_row_floats = 1536,
//                   .output_row_floats = 3072, .final_floats = 32000};
//   CH_RETURN_IF_ERROR(ValidateShape(shape));
//   uint64_t bytes = SlotBytes(shape);          // what a session costs the executor's way
//   SlotHeader* h = HeaderOf(base);  float* rows = PayloadOf(base);
//
// The layout is engine-agnostic: a step (one token, or one prefill chunk of up to max_rows
// tokens) is `rounds` exchanges; in each the worker writes rows × input_row_floats, the executor
// answers rows × output_row_floats in place (row r at payload + r × RowStrideFloats), except in
// the last round, whose answer is final_floats at the start of the payload (logits of the last
// row). The executor never trusts anything in the slot: it copies what the worker wrote and
// checks the copy (slot_message.h); offsets and lengths come from its own shape, never from the
// header.
#ifndef CELLHOUSE_EXECUTOR_SLOT_LAYOUT_H_
#define CELLHOUSE_EXECUTOR_SLOT_LAYOUT_H_

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "base/result.h"

namespace cellhouse::executor {

inline constexpr uint32_t kSlotMagic = 0x544f4c53;  // "SLOT"
inline constexpr uint32_t kSlotVersion = 2;
inline constexpr size_t kSlotHeaderBytes = 4096;
inline constexpr size_t kSlotPageBytes = 4096;

// Bounds that keep every size below computable without overflow and a slot below 1 GiB.
inline constexpr uint32_t kMaxSlotRows = 1024;
inline constexpr uint32_t kMaxSlotRounds = 1024;
inline constexpr uint32_t kMaxSlotRowFloats = 1U << 20;
inline constexpr uint32_t kMaxSlotFinalFloats = 1U << 24;
inline constexpr uint64_t kMaxSlotBytes = uint64_t{1} << 30;

struct SlotShape {
  uint32_t max_rows = 0;           // rows one round carries: a prefill chunk (decode uses 1)
  uint32_t rounds = 0;             // exchanges per step (a decoder: layers + 1)
  uint32_t input_row_floats = 0;   // the worker → executor part of a row
  uint32_t output_row_floats = 0;  // the executor → worker part of a row, rounds before the last
  uint32_t final_floats = 0;       // the last round's answer, once per slot (not per row)
  bool operator==(const SlotShape&) const = default;
};

// Every field in 1..its bound, at least two rounds, and SlotBytes within kMaxSlotBytes.
Status ValidateShape(const SlotShape& shape);

// Floats between the starts of two rows in the payload: max(input, output).
inline uint32_t RowStrideFloats(const SlotShape& s) {
  return s.input_row_floats > s.output_row_floats ? s.input_row_floats : s.output_row_floats;
}
// Floats of the payload: room for max_rows rows, or for the final answer if that is larger.
uint64_t PayloadFloats(const SlotShape& shape);
// Bytes of one slot's memfd: the header page and the payload, rounded up to whole pages.
uint64_t SlotBytes(const SlotShape& shape);

// What a worker's message asks for.
enum class SlotCommand : uint32_t {
  kRound = 1,  // compute round `round` of the current step over `rows` rows
  kIdle = 2,   // between turns: do not wait for me (the slot stays mine)
  kLeave = 3,  // I compute on my own from now on: forget the slot
  kSolo = 4,   // I am generating, on my own while I am alone (below): count me as busy
};

// The kind of the rows of a step: the executor picks its arithmetic by it (decode or prefill),
// never by the shape of the batch.
enum class RowKind : uint32_t {
  kDecode = 1,   // one token (rows must be 1)
  kPrefill = 2,  // a chunk of a prompt
};

// Flags of a step, given with its round 0 and kept for every round of it.
inline constexpr uint32_t kStepSkipsFinal = 1U << 0;  // the step ends after round rounds - 2
inline constexpr uint32_t kKnownStepFlags = kStepSkipsFinal;

// The executor's answer to a message.
enum class SlotVerdict : uint32_t {
  kNone = 0,
  kOk = 1,         // the outputs are in the payload
  kTimedOut = 2,   // the worker did not answer in time: it was dropped (it may compute alone)
  kViolation = 3,  // the worker broke the protocol: dropped and reported to celld
  kRefused = 4,    // the executor is full or stopping: compute alone
  kRemoved = 5,    // celld took the slot away
};

// The liveness word: 0 until the executor takes the slot; then its thread id with FUTEX_WAITERS,
// registered on its robust futex list, so that when the executor dies for any reason the kernel
// sets FUTEX_OWNER_DIED here (futex(2), "Robust futexes"; set_robust_list(2)). The zygote and a
// refusing executor set FUTEX_OWNER_DIED themselves.
inline constexpr uint32_t kLivenessOwnerDied = 0x40000000;  // FUTEX_OWNER_DIED
inline constexpr uint32_t kLivenessWaiters = 0x80000000;    // FUTEX_WAITERS
inline constexpr uint32_t kLivenessTidMask = 0x3fffffff;    // FUTEX_TID_MASK

// The header page. Three cache lines, each written by one side only, so that neither side's
// stores bounce the other's line. Every field is an atomic 32-bit word: the other process may
// write it at any moment, so each read is one load, taken once.
struct SlotHeader {
  // Written once by the zygote before anyone else sees the slot; nobody relies on it (the
  // executor checks it only as a sanity check of the hand-off).
  std::atomic<uint32_t> magic;
  std::atomic<uint32_t> version;
  std::atomic<uint32_t> shape[5];  // SlotShape, field by field
  // Worker → executor. `request` is the futex word the executor waits on: the sequence number of
  // the worker's latest message (1, 2, ...). The other fields are written before it.
  alignas(64) std::atomic<uint32_t> request;
  std::atomic<uint32_t> command;  // SlotCommand
  std::atomic<uint32_t> round;
  std::atomic<uint32_t> rows;
  std::atomic<uint32_t> kind;        // RowKind
  std::atomic<uint32_t> step_flags;  // kStepSkipsFinal
  // Executor → worker. `response` is the futex word the worker waits on: the sequence number
  // answered; `verdict` (SlotVerdict) is written before it.
  alignas(64) std::atomic<uint32_t> response;
  std::atomic<uint32_t> verdict;
  // 1 while the executor naps through the first part of a gather and wants no wake for the
  // slot's next request (batch_loop.h); 0 (as the slot starts): wake it. A hint: a worker that
  // wakes it anyway costs it a look, one that never does is seen at the nap's end or a deadline.
  std::atomic<uint32_t> napping;
  // 1 while this slot is busy (generating, here or on its own), no other slot of this executor
  // is, and the executor lets a lone session decode in its worker (ExecutorOptions::solo, off by
  // default): the worker may then take its decode steps alone (kSolo), with no round trips, and
  // comes back when this turns 0; 0 (as the slot starts): send them here. Advice only: either
  // way the bits are the same.
  std::atomic<uint32_t> alone;
  // The liveness word (above): the executor's, and the kernel's when the executor dies.
  alignas(64) std::atomic<uint32_t> liveness;
};
static_assert(sizeof(SlotHeader) <= kSlotHeaderBytes);
static_assert(std::atomic<uint32_t>::is_always_lock_free);

inline SlotHeader* HeaderOf(void* base) { return static_cast<SlotHeader*>(base); }
inline float* PayloadOf(void* base) {
  return reinterpret_cast<float*>(static_cast<std::byte*>(base) + kSlotHeaderBytes);
}

// Writes magic, version and shape into a fresh (zeroed) slot.
void InitHeader(SlotHeader* header, const SlotShape& shape);
// The shape a header claims (for the sanity check only).
SlotShape ShapeInHeader(const SlotHeader& header);

}  // namespace cellhouse::executor

#endif  // CELLHOUSE_EXECUTOR_SLOT_LAYOUT_H_
