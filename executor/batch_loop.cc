#include "executor/batch_loop.h"

#include <time.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <utility>

#include "base/clock.h"
#include "base/str_cat.h"
#include "executor/slot_memory.h"

namespace cellhouse::executor {
namespace {

constexpr int64_t kNoDeadline = std::numeric_limits<int64_t>::max();
// RemoveSlot ids remembered before their AddSlot arrived: celld removes a slot only after the
// zygote answered for its worker, so at most a few are ever in flight.
constexpr size_t kMaxRemovedEarly = 256;
// The executor sleeps through arrivals for three quarters of a gather's usual spread (first
// arrival to last) from its first arrival, and never longer than max_nap_ns or the shortest
// gather window. The usual spread is an average of spreads each cut to twice the average (plus
// kNapGrowthNs, to grow from zero), so one slow gather (a worker short of CPU for 50 ms) does not
// make the next ones nap long.
constexpr int64_t kNapShareNumerator = 3;
constexpr int64_t kNapShareDenominator = 4;
constexpr int64_t kNapGrowthNs = 100'000;

int64_t ProcessCpuNanos() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<int64_t>(ts.tv_sec) * kNanosPerSecond + ts.tv_nsec;
}

}  // namespace

size_t BatchRowsBucket(uint32_t rows) {
  size_t bucket = 0;
  while (bucket + 1 < kBatchRowsBuckets && (uint64_t{1} << bucket) < rows) ++bucket;
  return bucket;
}

Result<std::unique_ptr<BatchLoop>> BatchLoop::Create(StepCompute& compute, ThreadPool& pool,
                                                     const ExecutorOptions& options) {
  const SlotShape shape = compute.shape();
  CH_RETURN_IF_ERROR(ValidateShape(shape));
  if (options.max_slots < 1 || options.max_slots > kFutexWaitMax - 1) {
    return Error(StrCat("executor: max_slots ", options.max_slots, " (1 to ", kFutexWaitMax - 1,
                        ": futex_waitv watches at most ", kFutexWaitMax, " words)"));
  }
  if (options.max_batch_rows < shape.max_rows) {
    return Error(StrCat("executor: max_batch_rows ", options.max_batch_rows,
                        " is below the slots' ", shape.max_rows, " rows"));
  }
  if (options.gather_window_min_ns < 0 ||
      options.gather_window_max_ns < options.gather_window_min_ns || options.slot_timeout_ns <= 0 ||
      options.max_nap_ns < 0) {
    return Error("executor: gather window, slot timeout or nap out of range");
  }
  CH_ASSIGN_OR_RETURN(SlotArena arena, SlotArena::Create(SlotBytes(shape), options.max_slots));
  CH_ASSIGN_OR_RETURN(Mapping input, Mapping::Anonymous(size_t{options.max_batch_rows} *
                                                            shape.input_row_floats * sizeof(float),
                                                        "the executor's batch input"));
  return std::unique_ptr<BatchLoop>(
      new BatchLoop(compute, pool, options, std::move(arena), std::move(input)));
}

BatchLoop::BatchLoop(StepCompute& compute, ThreadPool& pool, const ExecutorOptions& options,
                     SlotArena arena, Mapping input)
    : compute_(compute),
      pool_(pool),
      options_(options),
      shape_(compute.shape()),
      arena_(std::move(arena)),
      input_(std::move(input)) {
  // Nothing below grows while batches run.
  slots_.reserve(options_.max_slots);
  entries_.reserve(options_.max_slots);
  taken_.reserve(options_.max_slots);
  gather_.reserve(options_.max_slots);
  waiters_.reserve(kFutexWaitMax);
}

Status BatchLoop::RegisterLiveness() { return arena_.RegisterOnThisThread(); }

Status BatchLoop::AddSlot(uint64_t slot_id, UniqueFd memfd) {
  auto refuse = [&](Error error) -> Status {
    events_.push_back({slot_id, SlotEvent::Kind::kRefused, error.message(), {slot_id}});
    return error;
  };
  for (const Slot& s : slots_) {
    if (s.id == slot_id) return refuse(Error(StrCat("slot ", slot_id, " is already served")));
  }
  if (auto early = std::find(removed_early_.begin(), removed_early_.end(), slot_id);
      early != removed_early_.end()) {
    removed_early_.erase(early);
    // Its worker is gone already: nobody waits on the slot, so it is not even mapped.
    return refuse(Error(StrCat("slot ", slot_id, " was removed before it arrived")));
  }
  if (Status st = CheckSlotFd(memfd.get(), shape_); !st) return refuse(std::move(st).error());
  Result<int> cell = arena_.Map(memfd.get());
  if (!cell) {
    // Full: the worker learns it from its slot, mapped just long enough to say so.
    Result<Mapping> view =
        Mapping::MapReadWriteShared(memfd, SlotBytes(shape_), "a refused executor slot");
    if (view) {
      SlotHeader* h = HeaderOf(view->address());
      h->verdict.store(static_cast<uint32_t>(SlotVerdict::kRefused), std::memory_order_relaxed);
      h->liveness.store(kLivenessOwnerDied, std::memory_order_release);
      FutexWake(&h->liveness, 1 << 30);
    }
    return refuse(std::move(cell).error());
  }
  memfd.reset();  // the mapping keeps the memory
  void* base = arena_.slot(*cell);
  if (ShapeInHeader(*HeaderOf(base)) != shape_ ||
      HeaderOf(base)->magic.load(std::memory_order_relaxed) != kSlotMagic) {
    arena_.Release(*cell);
    return refuse(Error("the slot's header does not match the executor's shape"));
  }
  Slot slot;
  slot.id = slot_id;
  slot.cell = *cell;
  slot.header = HeaderOf(base);
  slot.payload = PayloadOf(base);
  slot.since_ns = MonotonicNanos();
  slot.usage.slot_id = slot_id;
  slot.header->napping.store(0, std::memory_order_seq_cst);
  slot.header->alone.store(0, std::memory_order_relaxed);
  arena_.Attach(*cell);
  slots_.push_back(slot);
  events_.push_back({slot_id, SlotEvent::Kind::kAttached, "", {slot_id}});
  return Ok();
}

void BatchLoop::RemoveSlot(uint64_t slot_id) {
  for (size_t i = 0; i < slots_.size(); ++i) {
    if (slots_[i].id == slot_id) {
      Drop(i, SlotVerdict::kRemoved, SlotEvent::Kind::kRemoved, "");
      return;
    }
  }
  if (removed_early_.size() == kMaxRemovedEarly) removed_early_.erase(removed_early_.begin());
  removed_early_.push_back(slot_id);
}

void BatchLoop::PauseSlot(uint64_t slot_id, int64_t until_ns) {
  const int64_t now = MonotonicNanos();
  until_ns = std::min(until_ns, now + kMaxPauseNs);
  for (Slot& s : slots_) {
    if (s.id != slot_id) continue;
    // The pause's length is counted when it is given; one replaced early gives back the rest.
    if (s.paused_until_ns > now) s.usage.paused_ns -= s.paused_until_ns - now;
    if (until_ns > now) s.usage.paused_ns += until_ns - now;
    s.paused_until_ns = until_ns;
    return;
  }
}

void BatchLoop::RefreshPauses(int64_t now) {
  for (Slot& s : slots_) s.paused = now < s.paused_until_ns;
}

void BatchLoop::Answer(Slot& slot, SlotVerdict verdict, uint32_t seq) {
  slot.header->verdict.store(static_cast<uint32_t>(verdict), std::memory_order_relaxed);
  slot.header->response.store(seq, std::memory_order_release);
  FutexWake(&slot.header->response);
}

void BatchLoop::Drop(size_t index, SlotVerdict verdict, SlotEvent::Kind kind, std::string detail) {
  Slot& slot = slots_[index];
  // Answer the message the worker sent, or the next one it will send: whichever it waits for,
  // it finds the verdict and computes alone.
  Answer(slot, verdict, slot.progress.answered + 1);
  events_.push_back({slot.id, kind, std::move(detail), slot.usage});
  arena_.Release(slot.cell);
  slots_.erase(slots_.begin() + static_cast<std::ptrdiff_t>(index));
}

void BatchLoop::Intake(int64_t now) {
  for (size_t i = 0; i < slots_.size();) {
    Slot& slot = slots_[i];
    const uint32_t request = slot.header->request.load(std::memory_order_acquire);
    if (slot.ready) {
      // One message at a time: a worker that sends another before its answer broke the protocol.
      if (request != slot.message.seq) {
        Drop(i, SlotVerdict::kViolation, SlotEvent::Kind::kViolation,
             "sent a message before its previous one was answered");
        continue;
      }
      ++i;
      continue;
    }
    if (request == slot.progress.answered) {
      ++i;
      continue;
    }
    Result<SlotMessage> message = TakeMessage(*slot.header, request, slot.progress, shape_);
    if (!message) {
      Drop(i, SlotVerdict::kViolation, SlotEvent::Kind::kViolation, message.error().message());
      continue;
    }
    switch (message->command) {
      case SlotCommand::kRound:
        slot.ready = true;
        slot.message = *message;
        slot.since_ns = now;
        slot.late = false;
        ++i;
        break;
      case SlotCommand::kIdle:
      case SlotCommand::kSolo:
        Answer(slot, SlotVerdict::kOk, message->seq);
        Advance(&slot.progress, *message, shape_);
        slot.since_ns = now;
        ++i;
        break;
      case SlotCommand::kLeave:
        Drop(i, SlotVerdict::kOk, SlotEvent::Kind::kLeft, "");
        break;
    }
  }
}

void BatchLoop::ExpireSilent(int64_t now) {
  for (size_t i = 0; i < slots_.size();) {
    const Slot& slot = slots_[i];
    if (!slot.ready && slot.progress.phase == SlotProgress::Phase::kInStep &&
        now - slot.since_ns > options_.slot_timeout_ns) {
      Drop(i, SlotVerdict::kTimedOut, SlotEvent::Kind::kTimedOut,
           StrCat("no round ", slot.progress.last_round + 1, " within ",
                  options_.slot_timeout_ns / kNanosPerMilli, " ms"));
      continue;
    }
    ++i;
  }
}

bool BatchLoop::Expected(const Slot& slot) const {
  return !slot.ready && !slot.late && !slot.paused && ExpectedRound(slot.progress).has_value();
}

void BatchLoop::GiveUpOnAbsent(int64_t now) {
  // A slot that stays away longer than the longest gather window after its answer is not
  // waited for any more (even when no batch is waiting for it yet): it is late, once.
  for (Slot& s : slots_) {
    if (Expected(s) && now - s.since_ns > options_.gather_window_max_ns) {
      s.late = true;
      s.usage.late += 1;
    }
  }
}

int64_t BatchLoop::gather_window_ns() const {
  return std::clamp(2 * spread_ema_ns_, options_.gather_window_min_ns,
                    options_.gather_window_max_ns);
}

bool BatchLoop::RunOnce(std::span<const FutexWaiter> extra, int64_t deadline_ns) {
  int64_t now = MonotonicNanos();
  Intake(now);
  ExpireSilent(now);
  RefreshPauses(now);
  GiveUpOnAbsent(now);
  RefreshAlone();
  gather_.clear();
  for (const Slot& s : slots_) {
    GatherSlot g;
    // A paused slot is neither run nor waited for: the others' batches go on without it.
    g.ready = s.ready && !s.paused;
    g.ready_since_ns = s.since_ns;
    if (s.ready) {
      g.round = s.message.round;
    } else if (Expected(s)) {
      g.round = *ExpectedRound(s.progress);
      g.expected = true;
    }
    gather_.push_back(g);
  }
  const GatherDecision decision =
      DecideGather(gather_, shape_.rounds, sweep_, now, gather_window_ns());
  if (decision.kind == GatherDecision::kRun) {
    RunRound(decision.round);
    return true;
  }
  const int64_t nap_until = NapUntil(decision);
  const bool nap = now < nap_until;
  waiters_.clear();
  for (Slot& s : slots_) {
    if (s.ready) continue;
    SetNapping(s, nap);
    waiters_.push_back({&s.header->request, s.progress.answered});
  }
  for (const FutexWaiter& w : extra) {
    if (waiters_.size() < kFutexWaitMax) waiters_.push_back(w);
  }
  if (waiters_.empty()) waiters_.push_back({&never_woken_, 0});
  int64_t deadline = NextDeadline(decision, deadline_ns);
  if (nap) deadline = deadline < 0 ? nap_until : std::min(deadline, nap_until);
  totals_.sleeps += 1;
  totals_.naps += nap ? 1 : 0;
  return FutexWaitAny(waiters_, deadline) != FutexWaitResult::kError;
}

int64_t BatchLoop::NapUntil(const GatherDecision& decision) const {
  if (decision.kind != GatherDecision::kWait || options_.max_nap_ns <= 0) return 0;
  // From the round's first arrival: the others come within about the spread after it.
  int64_t first_ready = std::numeric_limits<int64_t>::max();
  for (const Slot& s : slots_) {
    if (s.ready && !s.paused && s.message.round == decision.round) {
      first_ready = std::min(first_ready, s.since_ns);
    }
  }
  if (first_ready == std::numeric_limits<int64_t>::max()) return 0;
  // Never past the shortest gather window, whatever max_nap_ns says.
  return first_ready + std::min({options_.max_nap_ns, options_.gather_window_min_ns,
                                 nap_spread_ns_ * kNapShareNumerator / kNapShareDenominator});
}

void BatchLoop::SetNapping(Slot& slot, bool napping) {
  if (slot.napping == napping) return;
  slot.napping = napping;
  // Sequentially consistent (a full fence here) before the futex wait reads `request`: see
  // SlotClient::Send.
  slot.header->napping.store(napping ? 1 : 0, std::memory_order_seq_cst);
}

void BatchLoop::RefreshAlone() {
  if (!options_.solo) return;  // every word stays 0, as AddSlot wrote it
  // Busy: generating, here (a round waiting, or in or between steps and not late) or on its own.
  // A late slot stops counting (a worker that failed over, or that waits on a slow client) until
  // it sends again.
  auto is_busy = [](const Slot& s) {
    const SlotProgress::Phase phase = s.progress.phase;
    return s.ready || phase == SlotProgress::Phase::kSolo ||
           (phase != SlotProgress::Phase::kIdle && !s.late);
  };
  size_t busy = 0;
  for (const Slot& s : slots_) busy += is_busy(s) ? 1 : 0;
  for (Slot& s : slots_) {
    // Only a busy slot is told: an idle worker has no step to take, and the word would tell it
    // about the others for nothing.
    const bool alone = is_busy(s) && busy == 1;
    if (s.alone == alone) continue;
    s.alone = alone;
    // A hint the worker reads before its next decode step; nothing waits on it.
    s.header->alone.store(alone ? 1 : 0, std::memory_order_relaxed);
  }
}

int64_t BatchLoop::NextDeadline(const GatherDecision& decision, int64_t caller) const {
  int64_t deadline = caller < 0 ? kNoDeadline : caller;
  if (decision.kind == GatherDecision::kWait) deadline = std::min(deadline, decision.wait_until_ns);
  for (const Slot& s : slots_) {
    if (s.paused) deadline = std::min(deadline, s.paused_until_ns);
    if (s.ready) continue;
    // When a slot stops being expected, the gather may change its mind.
    if (Expected(s)) {
      deadline = std::min(deadline, s.since_ns + options_.gather_window_max_ns + 1);
    }
    if (s.progress.phase == SlotProgress::Phase::kInStep) {
      deadline = std::min(deadline, s.since_ns + options_.slot_timeout_ns + 1);
    }
  }
  return deadline == kNoDeadline ? -1 : deadline;
}

void BatchLoop::RunRound(uint32_t round) {
  // The slots ready at `round`, oldest first, up to the batch's row budget.
  taken_.clear();
  for (size_t i = 0; i < slots_.size(); ++i) {
    const Slot& s = slots_[i];
    if (s.ready && !s.paused && s.message.round == round) taken_.push_back(i);
  }
  std::sort(taken_.begin(), taken_.end(),
            [&](size_t a, size_t b) { return slots_[a].since_ns < slots_[b].since_ns; });
  const size_t ready_at_round = taken_.size();
  uint32_t total_rows = 0;
  size_t keep = 0;
  while (keep < taken_.size() &&
         total_rows + slots_[taken_[keep]].message.rows <= options_.max_batch_rows) {
    total_rows += slots_[taken_[keep]].message.rows;
    ++keep;
  }
  taken_.resize(keep);
  const bool all_taken = keep == ready_at_round;
  int64_t first_ready = std::numeric_limits<int64_t>::max();
  int64_t last_ready = 0;

  // Those expected at this round that the batch does not wait for are late until they send
  // their next round.
  bool cut_short = false;
  for (Slot& s : slots_) {
    if (Expected(s) && ExpectedRound(s.progress) == round) {
      s.late = true;
      s.usage.late += 1;
      cut_short = true;
    }
  }

  // Copy each slot's rows into private memory: from here on the compute sees only the copy.
  const uint32_t in_floats = shape_.input_row_floats;
  const uint32_t stride = RowStrideFloats(shape_);
  auto* input = reinterpret_cast<float*>(input_.mutable_data());
  entries_.clear();
  uint32_t next_row = 0;
  for (size_t index : taken_) {
    Slot& s = slots_[index];
    first_ready = std::min(first_ready, s.since_ns);
    last_ready = std::max(last_ready, s.since_ns);
    for (uint32_t r = 0; r < s.message.rows; ++r) {
      std::memcpy(input + size_t{next_row + r} * in_floats, s.payload + size_t{r} * stride,
                  size_t{in_floats} * sizeof(float));
    }
    entries_.push_back({.first_row = next_row,
                        .rows = s.message.rows,
                        .kind = s.message.kind,
                        .step_flags = s.message.step_flags,
                        .output = s.payload,
                        .output_stride_floats = stride});
    next_row += s.message.rows;
  }
  Batch batch;
  batch.round = round;
  batch.final_round = IsFinalRound(round, shape_);
  batch.entries = entries_;
  batch.total_rows = next_row;
  batch.input = input;
  const int64_t cpu_before = ProcessCpuNanos();
  compute_.Run(batch, pool_);
  pool_.Rest();  // until the next batch: the workers' attention needs the CPUs
  const int64_t cpu = ProcessCpuNanos() - cpu_before;
  const int64_t done = MonotonicNanos();

  for (size_t index : taken_) {
    Slot& s = slots_[index];
    Answer(s, SlotVerdict::kOk, s.message.seq);
    Advance(&s.progress, s.message, shape_);
    s.ready = false;
    s.since_ns = done;
    s.usage.rounds += 1;
    s.usage.rows += s.message.rows;
    if (s.progress.phase == SlotProgress::Phase::kBetweenSteps) s.usage.steps += 1;
    s.usage.cpu_ns += next_row > 0 ? cpu * s.message.rows / next_row : 0;
  }
  if (!cut_short && taken_.size() > 1) {
    // How long a complete gather took from its start to its last arrival: the window follows it.
    const int64_t spread = last_ready - std::max(sweep_.arrived_ns, first_ready);
    spread_ema_ns_ += (std::max<int64_t>(spread, 0) - spread_ema_ns_) / 8;
    const int64_t usual = std::clamp<int64_t>(spread, 0, 2 * nap_spread_ns_ + kNapGrowthNs);
    nap_spread_ns_ += (usual - nap_spread_ns_) / 8;
  }
  totals_.batches += 1;
  totals_.rows += next_row;
  totals_.cpu_ns += cpu;
  totals_.gathers_cut_short += cut_short ? 1 : 0;
  totals_.batch_rows[BatchRowsBucket(next_row)] += 1;
  if (all_taken) sweep_.position = (round + 1) % shape_.rounds;
  sweep_.arrived_ns = done;
}

std::vector<SlotEvent> BatchLoop::TakeEvents() { return std::exchange(events_, {}); }

std::vector<SlotUsage> BatchLoop::Usage() const {
  std::vector<SlotUsage> out;
  out.reserve(slots_.size());
  for (const Slot& s : slots_) out.push_back(s.usage);
  return out;
}

}  // namespace cellhouse::executor
