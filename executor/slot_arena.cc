#include "executor/slot_arena.h"

#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>

#include "base/str_cat.h"
#include "executor/futex.h"
#include "executor/slot_layout.h"

namespace cellhouse::executor {
namespace {

constexpr int kReserveFlags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;

// The liveness word's place in a cell, relative to the entry at the cell's start.
const long kFutexOffset = static_cast<long>(kSlotPageBytes + offsetof(SlotHeader, liveness));

robust_list* EntryOf(std::byte* cell) { return reinterpret_cast<robust_list*>(cell); }

}  // namespace

Result<SlotArena> SlotArena::Create(size_t slot_bytes, size_t cells) {
  if (slot_bytes == 0 || slot_bytes % kSlotPageBytes != 0 || cells == 0 || cells > 4096) {
    return Error(StrCat("slot arena: ", cells, " cells of ", slot_bytes, " bytes"));
  }
  const size_t cell_bytes = kSlotPageBytes + slot_bytes;
  // Address space only: PROT_NONE and no reserve; a cell costs memory once a slot is mapped.
  void* base = ::mmap(nullptr, cell_bytes * cells, PROT_NONE, kReserveFlags, -1, 0);
  if (base == MAP_FAILED) {
    return Error::FromErrno(errno, StrCat("reserving ", cell_bytes * cells, " bytes for slots"));
  }
  return SlotArena(static_cast<std::byte*>(base), cell_bytes, cells, slot_bytes);
}

SlotArena::SlotArena(std::byte* base, size_t cell_bytes, size_t cells, size_t slot_bytes)
    : base_(base),
      cell_bytes_(cell_bytes),
      cells_(cells),
      slot_bytes_(slot_bytes),
      used_(cells, false),
      linked_(cells, false),
      head_(std::make_unique<robust_list_head>()) {
  head_->list.next = &head_->list;  // empty: a list of one, the head itself
  head_->futex_offset = kFutexOffset;
  head_->list_op_pending = nullptr;
}

SlotArena::SlotArena(SlotArena&& other) noexcept
    : base_(std::exchange(other.base_, nullptr)),
      cell_bytes_(other.cell_bytes_),
      cells_(std::exchange(other.cells_, 0)),
      slot_bytes_(other.slot_bytes_),
      used_(std::move(other.used_)),
      linked_(std::move(other.linked_)),
      head_(std::move(other.head_)),
      tid_(other.tid_) {}

SlotArena::~SlotArena() {
  if (base_ == nullptr) return;
  // The executor is ending in an orderly way (its process exits next), but its entries go with
  // this memory and the kernel's walk would find none: say it ourselves, as the kernel would.
  for (size_t cell = 0; cell < cells_; ++cell) {
    if (!linked_[cell]) continue;
    SlotHeader* header = HeaderOf(slot(static_cast<int>(cell)));
    header->liveness.store(kLivenessOwnerDied, std::memory_order_release);
    FutexWake(&header->liveness, 1 << 30);
  }
  if (head_) head_->list.next = &head_->list;
  static_cast<void>(::munmap(base_, cell_bytes_ * cells_));
}

Status SlotArena::RegisterOnThisThread() {
  if (::syscall(SYS_set_robust_list, head_.get(), sizeof(robust_list_head)) != 0) {
    return Error::FromErrno(errno, "set_robust_list for the slots' liveness words");
  }
  tid_ = static_cast<pid_t>(::syscall(SYS_gettid));
  return Ok();
}

Result<int> SlotArena::Map(int fd) {
  int cell = -1;
  for (size_t i = 0; i < cells_ && cell < 0; ++i) {
    if (!used_[i]) cell = static_cast<int>(i);
  }
  if (cell < 0) return Error(StrCat("the executor is full (", cells_, " slots)"));
  std::byte* base = cell_base(cell);
  void* entry = ::mmap(base, kSlotPageBytes, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
  if (entry == MAP_FAILED) return Error::FromErrno(errno, "mapping a slot's list page");
  void* slot = ::mmap(base + kSlotPageBytes, slot_bytes_, PROT_READ | PROT_WRITE,
                      MAP_SHARED | MAP_FIXED, fd, 0);
  if (slot == MAP_FAILED) {
    const int err = errno;
    static_cast<void>(::mmap(base, cell_bytes_, PROT_NONE, kReserveFlags | MAP_FIXED, -1, 0));
    return Error::FromErrno(err, "mapping a slot");
  }
  used_[static_cast<size_t>(cell)] = true;
  return cell;
}

void* SlotArena::slot(int cell) const { return cell_base(cell) + kSlotPageBytes; }

void SlotArena::Attach(int cell) {
  SlotHeader* header = HeaderOf(slot(cell));
  const uint32_t tid = static_cast<uint32_t>(tid_) & kLivenessTidMask;
  header->liveness.store(tid | kLivenessWaiters, std::memory_order_release);
  // Push front: the list is whole before and after the one store that links the entry.
  robust_list* entry = EntryOf(cell_base(cell));
  entry->next = head_->list.next;
  head_->list.next = entry;
  linked_[static_cast<size_t>(cell)] = true;
  FutexWake(&header->liveness, 1 << 30);
}

void SlotArena::Unlink(int cell) {
  if (!linked_[static_cast<size_t>(cell)]) return;
  robust_list* entry = EntryOf(cell_base(cell));
  for (robust_list* prev = &head_->list; prev->next != &head_->list; prev = prev->next) {
    if (prev->next == entry) {
      prev->next = entry->next;
      break;
    }
  }
  linked_[static_cast<size_t>(cell)] = false;
}

void SlotArena::Release(int cell) {
  if (cell < 0 || static_cast<size_t>(cell) >= cells_ || !used_[static_cast<size_t>(cell)]) return;
  Unlink(cell);
  // Back to a reservation in one call: the shared mapping and the list page both go.
  static_cast<void>(
      ::mmap(cell_base(cell), cell_bytes_, PROT_NONE, kReserveFlags | MAP_FIXED, -1, 0));
  used_[static_cast<size_t>(cell)] = false;
}

size_t SlotArena::in_use() const {
  size_t n = 0;
  for (bool u : used_) n += u ? 1 : 0;
  return n;
}

}  // namespace cellhouse::executor
