// Where a slot's memory comes from, and how each side holds it.
//
// The zygote makes one per worker just before it forks that worker: a memfd, sized, initialised
// and sealed against shrinking and growing, mapped into the zygote only for the fork. The worker
// inherits the mapping (it never holds the descriptor: the sandbox closes it); the zygote unmaps
// its copy right after the fork, so no later worker inherits it, and sends the descriptor to the
// executor, which checks it (CheckSlotFd) before mapping it.
//
//   CH_ASSIGN_OR_RETURN(SlotMemory slot, SlotMemory::Create(shape));
//   SpawnSandboxed(plan, [&] { return serve(slot.worker_view()); });   // the worker's copy
//   SendToExecutor(slot_id, slot.fd());  // or, if that fails: slot.MarkUnavailable()
//   // `slot` goes out of scope: the zygote's mapping and descriptor are gone
//
// Seals (memfd_create(2), fcntl(2) F_ADD_SEALS): a shrunk memfd would make the executor's reads
// of the lost pages fault with SIGBUS, which would end it and every session's batch with it.
#ifndef CELLHOUSE_EXECUTOR_SLOT_MEMORY_H_
#define CELLHOUSE_EXECUTOR_SLOT_MEMORY_H_

#include <cstddef>

#include "base/mapping.h"
#include "base/result.h"
#include "base/unique_fd.h"
#include "executor/slot_layout.h"

namespace cellhouse::executor {

// A worker's view of its slot: the mapping it inherited. Not owning: it lives as long as the
// worker. Empty when the worker has no slot (it computes alone).
struct WorkerSlot {
  void* base = nullptr;
  size_t bytes = 0;
  SlotShape shape;
  bool valid() const { return base != nullptr; }
};

class SlotMemory {
 public:
  static Result<SlotMemory> Create(const SlotShape& shape);

  const UniqueFd& fd() const { return fd_; }
  WorkerSlot worker_view() const { return {mapping_.address(), mapping_.size(), shape_}; }
  // The hand-off to the executor failed: tell the worker, through the liveness word, that no
  // executor will ever answer (it computes alone from its first step).
  void MarkUnavailable();

 private:
  SlotMemory(UniqueFd fd, Mapping mapping, const SlotShape& shape)
      : fd_(std::move(fd)), mapping_(std::move(mapping)), shape_(shape) {}
  UniqueFd fd_;
  Mapping mapping_;
  SlotShape shape_;
};

// Writes every page of the slot's payload once, from the worker, right after its fork: shared
// memory is charged to the cgroup that faults a page in first, so this charges the whole slot to
// the session — without it, the executor's answers would charge its own cgroup for the pages the
// worker never wrote (the final answer and outputs wider than the inputs).
void TouchPayload(const WorkerSlot& slot);

// The executor's check of a descriptor before it maps it: a memfd of exactly SlotBytes(shape)
// bytes, sealed against shrinking and growing.
Status CheckSlotFd(int fd, const SlotShape& shape);

}  // namespace cellhouse::executor

#endif  // CELLHOUSE_EXECUTOR_SLOT_MEMORY_H_
