// celld's book of the shared executor's slots (docs/EXECUTOR.md): which slot id it gave to which
// session's worker, and the executor's usage reports turned into what each session and policy
// used since the previous report. Pure bookkeeping, no process or descriptor: the Supervisor
// (executor.cc) feeds it and acts on what it returns.
//
//   ExecutorSlots slots(127);
//   std::optional<uint64_t> id = slots.Reserve(session_id, "default");   // SpawnRequest field
//   ... the zygote's reply says the worker has no slot:  slots.Forget(*id);
//   ... an ExecutorReport arrives:
//   ReportDigest d = slots.Apply(report);
//   for (const SlotDelta& u : d.deltas) account u.cpu_ns to u.session_id / u.policy ...
//   for (const SlotNews& e : d.events) if (e.kind == VIOLATION) end e.session_id ...
//   ... its worker is reaped:  slots.Detach(*id); send RemoveSlot
//   ... the executor died:     slots.Reset();
//
// What the executor reports is not trusted beyond arithmetic: an unknown slot id is ignored, a
// counter that goes backwards restarts its baseline instead of making a negative delta, and a
// slot's counters are bounded by the report's size (celld caps the message).
#ifndef CELLHOUSE_SUPERVISOR_EXECUTOR_SLOTS_H_
#define CELLHOUSE_SUPERVISOR_EXECUTOR_SLOTS_H_

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "ipc/executor.pb.h"

namespace cellhouse::supervisor {

// ExecutorReport.batch_rows_buckets: batches of at most 2^i rows (the last: more than 1024).
inline constexpr size_t kExecutorBatchRowsBuckets = 12;

// What one slot cost the executor since the previous report.
struct SlotDelta {
  uint64_t slot_id = 0;
  std::string session_id;  // empty once its worker was reaped (the final usage of a removed slot)
  std::string policy;
  uint64_t rounds = 0;
  uint64_t rows = 0;
  uint64_t steps = 0;
  uint64_t late = 0;
  uint64_t cpu_ns = 0;
  uint64_t paused_ns = 0;
};

// A slot the executor stopped serving, or began to (SlotEvent, with the session it belonged to).
struct SlotNews {
  uint64_t slot_id = 0;
  std::string session_id;  // empty when its worker was reaped already
  std::string policy;
  executor_ipc::SlotEvent::Kind kind = executor_ipc::SlotEvent::KIND_UNSPECIFIED;
  std::string detail;
};

struct ReportDigest {
  std::vector<SlotDelta> deltas;  // only slots whose counters moved
  std::vector<SlotNews> events;   // in the executor's order; unknown slots left out
  uint64_t batches = 0;           // since the previous report
  uint64_t rows = 0;
  uint64_t cpu_ns = 0;
  uint64_t gathers_cut_short = 0;  // batches run without some expected slot
  std::array<uint64_t, kExecutorBatchRowsBuckets> batch_rows{};
  uint32_t threads = 0;  // as of this report
  uint32_t slots_in_use = 0;
};

class ExecutorSlots {
 public:
  // `capacity`: slots the executor serves at most (ExecutorSpec.max_slots); no more are handed
  // out, so a worker past it computes alone from the start instead of being refused.
  explicit ExecutorSlots(uint32_t capacity) : capacity_(capacity) {}

  // A fresh id (never 0, never reused) for a session's new worker; nullopt when every slot is
  // taken.
  std::optional<uint64_t> Reserve(const std::string& session_id, const std::string& policy);
  // The zygote gave the worker no slot (no executor running, or the hand-off failed): the
  // executor never heard of it.
  void Forget(uint64_t slot_id);
  // The worker was reaped (celld sends RemoveSlot): no session any more, but the record stays
  // until the executor reports the slot gone, so its final usage still counts for its policy.
  void Detach(uint64_t slot_id);
  // The executor ended: every slot with it. Returns the sessions that held one.
  std::vector<std::string> Reset();
  // Folds one report in (counters are cumulative per executor: Reset() starts them again).
  ReportDigest Apply(const executor_ipc::ExecutorReport& report);

  bool Holds(uint64_t slot_id) const { return records_.count(slot_id) != 0; }
  // Slots handed out and not known to be gone (reserved, served, or removed without the
  // executor's word yet).
  size_t in_use() const { return records_.size(); }
  uint32_t capacity() const { return capacity_; }

 private:
  struct Record {
    std::string session_id;
    std::string policy;
    executor_ipc::SlotUsage last;  // the counters of the previous report
  };
  // The difference between `now` and what `record` saw last, then remembers `now`.
  SlotDelta Advance(uint64_t slot_id, Record& record, const executor_ipc::SlotUsage& now);

  uint32_t capacity_;
  uint64_t next_id_ = 1;
  std::map<uint64_t, Record> records_;
  executor_ipc::ExecutorReport last_totals_;  // the previous report, slots and events cleared
};

}  // namespace cellhouse::supervisor

#endif  // CELLHOUSE_SUPERVISOR_EXECUTOR_SLOTS_H_
