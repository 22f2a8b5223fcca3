// Where the executor maps its slots, and how their workers learn that it died.
//
// Each slot's liveness word (slot_layout.h) holds the executor's thread id and sits on the
// executor's robust futex list (set_robust_list(2)): whenever the executor's thread ends —
// crash, seccomp kill, OOM kill, SIGKILL or a clean exit — the kernel walks that list and sets
// FUTEX_OWNER_DIED in every word on it, so every worker sees at once, through memory alone and
// without a descriptor, that it must compute on its own.
//
// The kernel finds each word at a fixed offset from its list entry, and the entries must be in
// memory no worker can write (a worker-written `next` pointer would steer the kernel's walk). So
// the arena is one reservation of cells, each a private page holding the entry followed by the
// slot's shared mapping:
//
//   cell i:  [ private page: robust_list entry ][ slot i (memfd, MAP_SHARED) ............ ]
//            entry + futex_offset = &slot->liveness
//
//   CH_ASSIGN_OR_RETURN(SlotArena arena, SlotArena::Create(SlotBytes(shape), 127));
//   CH_RETURN_IF_ERROR(arena.RegisterOnThisThread());   // the thread that lives as long as the
//   process CH_ASSIGN_OR_RETURN(int cell, arena.Map(memfd.get())); arena.Attach(cell); // liveness
//   = tid | FUTEX_WAITERS, entry linked
//   ...
//   arena.Release(cell);           // unlinked first, then unmapped (the kernel never walks into
//                                  // a hole)
//
// Destroying the arena (an orderly end of the executor) marks every attached slot's liveness
// word itself, since its list entries go with it.
#ifndef CELLHOUSE_EXECUTOR_SLOT_ARENA_H_
#define CELLHOUSE_EXECUTOR_SLOT_ARENA_H_

#include <linux/futex.h>
#include <sys/types.h>

#include <cstddef>
#include <memory>
#include <vector>

#include "base/result.h"

namespace cellhouse::executor {

class SlotArena {
 public:
  static Result<SlotArena> Create(size_t slot_bytes, size_t cells);
  SlotArena(SlotArena&& other) noexcept;
  SlotArena& operator=(SlotArena&&) = delete;
  SlotArena(const SlotArena&) = delete;
  ~SlotArena();

  // Registers the arena's robust list as the calling thread's (replacing glibc's, which only
  // robust pthread mutexes use; the executor has none). Call once, on the thread that outlives
  // the others (the executor's main thread), before the first Attach.
  Status RegisterOnThisThread();

  // Maps the slot memfd `fd` into a free cell. Errors: no free cell, or mmap failed.
  Result<int> Map(int fd);
  void* slot(int cell) const;
  // Writes this thread's id (| FUTEX_WAITERS) into the slot's liveness word, links the cell's
  // entry into the robust list, and wakes the worker if it waits on that word.
  void Attach(int cell);
  // Unlinks the cell's entry (if attached), unmaps the slot and frees the cell.
  void Release(int cell);

  size_t capacity() const { return cells_; }
  size_t in_use() const;

 private:
  SlotArena(std::byte* base, size_t cell_bytes, size_t cells, size_t slot_bytes);
  std::byte* cell_base(int cell) const { return base_ + static_cast<size_t>(cell) * cell_bytes_; }
  void Unlink(int cell);

  std::byte* base_ = nullptr;
  size_t cell_bytes_ = 0;
  size_t cells_ = 0;
  size_t slot_bytes_ = 0;
  std::vector<bool> used_;
  std::vector<bool> linked_;
  // Heap-allocated so its address (registered with the kernel) survives moves of the arena.
  std::unique_ptr<robust_list_head> head_;
  pid_t tid_ = 0;
};

}  // namespace cellhouse::executor

#endif  // CELLHOUSE_EXECUTOR_SLOT_ARENA_H_
