#include "executor/slot_message.h"

#include "base/str_cat.h"

namespace cellhouse::executor {
namespace {

Error Refuse(uint32_t seq, const std::string& what) {
  return Error(StrCat("slot message ", seq, ": ", what));
}

bool KnownKind(uint32_t kind) {
  return kind == static_cast<uint32_t>(RowKind::kDecode) ||
         kind == static_cast<uint32_t>(RowKind::kPrefill);
}

}  // namespace

Result<SlotMessage> TakeMessage(const SlotHeader& header, uint32_t request,
                                const SlotProgress& progress, const SlotShape& shape) {
  if (request != progress.answered + 1) {
    return Refuse(request, StrCat("sequence number out of order (the last answered was ",
                                  progress.answered, ")"));
  }
  // One load per field, into private memory; only these copies are looked at from here on.
  const uint32_t command = header.command.load(std::memory_order_relaxed);
  const uint32_t round = header.round.load(std::memory_order_relaxed);
  const uint32_t rows = header.rows.load(std::memory_order_relaxed);
  const uint32_t kind = header.kind.load(std::memory_order_relaxed);
  const uint32_t flags = header.step_flags.load(std::memory_order_relaxed);

  SlotMessage m;
  m.seq = request;
  switch (command) {
    case static_cast<uint32_t>(SlotCommand::kIdle):
    case static_cast<uint32_t>(SlotCommand::kLeave):
    case static_cast<uint32_t>(SlotCommand::kSolo):
      m.command = static_cast<SlotCommand>(command);
      return m;
    case static_cast<uint32_t>(SlotCommand::kRound):
      m.command = SlotCommand::kRound;
      break;
    default:
      return Refuse(request, StrCat("unknown command ", command));
  }
  const uint32_t expected =
      progress.phase == SlotProgress::Phase::kInStep ? progress.last_round + 1 : 0;
  if (round != expected || round >= shape.rounds) {
    return Refuse(request, StrCat("round ", round, " where round ", expected, " was expected"));
  }
  if (round == 0) {
    if (rows < 1 || rows > shape.max_rows) {
      return Refuse(request, StrCat(rows, " rows (1 to ", shape.max_rows, " allowed)"));
    }
    if (!KnownKind(kind)) return Refuse(request, StrCat("unknown row kind ", kind));
    if (kind == static_cast<uint32_t>(RowKind::kDecode) && rows != 1) {
      return Refuse(request, StrCat("a decode step of ", rows, " rows"));
    }
    if ((flags & ~kKnownStepFlags) != 0) {
      return Refuse(request, StrCat("unknown step flags ", flags));
    }
  } else if (rows != progress.step_rows || kind != static_cast<uint32_t>(progress.step_kind) ||
             flags != progress.step_flags) {
    return Refuse(request,
                  StrCat("round ", round, " changes the rows, kind or flags its step began with"));
  }
  m.round = round;
  m.rows = rows;
  m.kind = static_cast<RowKind>(kind);
  m.step_flags = flags;
  return m;
}

std::optional<uint32_t> ExpectedRound(const SlotProgress& p) {
  switch (p.phase) {
    case SlotProgress::Phase::kIdle:
    case SlotProgress::Phase::kSolo:
      return std::nullopt;
    case SlotProgress::Phase::kInStep:
      return p.last_round + 1;
    case SlotProgress::Phase::kBetweenSteps:
      return 0;
  }
  return std::nullopt;
}

void Advance(SlotProgress* p, const SlotMessage& m, const SlotShape& shape) {
  p->answered = m.seq;
  if (m.command != SlotCommand::kRound) {
    p->phase =
        m.command == SlotCommand::kSolo ? SlotProgress::Phase::kSolo : SlotProgress::Phase::kIdle;
    return;
  }
  if (m.round == 0) {
    p->step_rows = m.rows;
    p->step_kind = m.kind;
    p->step_flags = m.step_flags;
  }
  p->last_round = m.round;
  const bool ends_early = (m.step_flags & kStepSkipsFinal) != 0 && m.round + 2 == shape.rounds;
  p->phase = IsFinalRound(m.round, shape) || ends_early ? SlotProgress::Phase::kBetweenSteps
                                                        : SlotProgress::Phase::kInStep;
}

}  // namespace cellhouse::executor
