#include "executor/slot_client.h"

#include <algorithm>
#include <cstring>

#include "base/clock.h"
#include "executor/futex.h"

namespace cellhouse::executor {

std::string_view FailoverReasonName(FailoverReason reason) {
  switch (reason) {
    case FailoverReason::kNone:
      return "none";
    case FailoverReason::kNoSlot:
      return "no slot";
    case FailoverReason::kExecutorGone:
      return "the executor is gone";
    case FailoverReason::kNoAnswer:
      return "the executor did not answer";
    case FailoverReason::kDropped:
      return "the executor dropped the slot";
    case FailoverReason::kViolation:
      return "the executor reported a protocol violation";
    case FailoverReason::kLeft:
      return "left";
  }
  return "unknown";
}

SlotClient::SlotClient(WorkerSlot slot, SlotClientOptions options)
    : shape_(slot.shape), options_(options) {
  if (!slot.valid() || !ValidateShape(slot.shape) || slot.bytes != SlotBytes(slot.shape)) {
    reason_ = FailoverReason::kNoSlot;
    return;
  }
  header_ = HeaderOf(slot.base);
  payload_ = PayloadOf(slot.base);
  if (header_->magic.load(std::memory_order_relaxed) != kSlotMagic ||
      ShapeInHeader(*header_) != shape_) {
    reason_ = FailoverReason::kNoSlot;
    return;
  }
  // Touch the payload now, from the worker: shared memory is charged to the cgroup that faults
  // it in first, and this is the session's memory.
  std::memset(payload_, 0, slot.bytes - kSlotHeaderBytes);
}

bool SlotClient::Send(SlotCommand command, uint32_t round, uint32_t rows, RowKind kind,
                      uint32_t flags) {
  if (!active()) return false;
  if (unanswered_) {
    unanswered_ = false;
    if (!AwaitAnswer(sent_)) return false;
  }
  header_->command.store(static_cast<uint32_t>(command), std::memory_order_relaxed);
  header_->round.store(round, std::memory_order_relaxed);
  header_->rows.store(rows, std::memory_order_relaxed);
  header_->kind.store(static_cast<uint32_t>(kind), std::memory_order_relaxed);
  header_->step_flags.store(flags, std::memory_order_relaxed);
  sent_ += 1;
  // Publishes the rows too. Sequentially consistent with the load below, as the executor's store
  // of `napping` is with its futex wait: either it sees this request before it sleeps, or this
  // sees it awake-wanting and wakes it.
  header_->request.store(sent_, std::memory_order_seq_cst);
  if (header_->napping.load(std::memory_order_seq_cst) == 0) FutexWake(&header_->request);
  return true;
}

bool SlotClient::AwaitAnswer(uint32_t seq) {
  const int64_t give_up = MonotonicNanos() + options_.response_timeout_ns;
  for (;;) {
    const uint32_t response = header_->response.load(std::memory_order_acquire);
    if (response == seq) {
      switch (static_cast<SlotVerdict>(header_->verdict.load(std::memory_order_relaxed))) {
        case SlotVerdict::kOk:
          return true;
        case SlotVerdict::kViolation:
          FailOver(FailoverReason::kViolation);
          return false;
        default:
          FailOver(FailoverReason::kDropped);
          return false;
      }
    }
    // An answer that came before the executor died is still good: the response is looked at
    // first.
    if ((header_->liveness.load(std::memory_order_acquire) & kLivenessOwnerDied) != 0) {
      FailOver(FailoverReason::kExecutorGone);
      return false;
    }
    const int64_t now = MonotonicNanos();
    if (now >= give_up) {
      FailOver(FailoverReason::kNoAnswer);
      return false;
    }
    FutexWaitOne(&header_->response, response, std::min(give_up, now + options_.liveness_check_ns));
  }
}

SlotOutcome SlotClient::Exchange(uint32_t round, uint32_t rows, RowKind kind, uint32_t step_flags) {
  if (!Send(SlotCommand::kRound, round, rows, kind, step_flags)) return SlotOutcome::kFailover;
  return AwaitAnswer(sent_) ? SlotOutcome::kOk : SlotOutcome::kFailover;
}

void SlotClient::Idle() {
  if (Send(SlotCommand::kIdle, 0, 0, RowKind::kDecode, 0)) unanswered_ = true;
}

void SlotClient::Solo() {
  if (Send(SlotCommand::kSolo, 0, 0, RowKind::kDecode, 0)) unanswered_ = true;
}

void SlotClient::Leave() {
  // Only when in step with the executor: a message sent while another is unanswered would read
  // as a protocol violation.
  if (Send(SlotCommand::kLeave, 0, 0, RowKind::kDecode, 0)) unanswered_ = false;
  FailOver(FailoverReason::kLeft);
}

}  // namespace cellhouse::executor
