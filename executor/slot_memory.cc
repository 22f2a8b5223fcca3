#include "executor/slot_memory.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "base/str_cat.h"
#include "executor/futex.h"

namespace cellhouse::executor {
namespace {

constexpr unsigned kRequiredSeals = F_SEAL_SHRINK | F_SEAL_GROW;

}  // namespace

Result<SlotMemory> SlotMemory::Create(const SlotShape& shape) {
  CH_RETURN_IF_ERROR(ValidateShape(shape));
  const uint64_t bytes = SlotBytes(shape);
  UniqueFd fd(::memfd_create("cellhouse-slot", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!fd) return Error::FromErrno(errno, "memfd_create for an executor slot");
  if (::ftruncate(fd.get(), static_cast<off_t>(bytes)) != 0) {
    return Error::FromErrno(errno, StrCat("sizing an executor slot to ", bytes, " bytes"));
  }
  if (::fcntl(fd.get(), F_ADD_SEALS, kRequiredSeals | F_SEAL_SEAL) != 0) {
    return Error::FromErrno(errno, "sealing an executor slot");
  }
  CH_ASSIGN_OR_RETURN(Mapping mapping, Mapping::MapReadWriteShared(fd, bytes, "executor slot"));
  // Only the header page is touched here: the payload's pages are first written by the worker,
  // in its own cgroup, which is charged for them (shared memory is charged to whoever faults
  // a page in first; TouchPayload).
  InitHeader(HeaderOf(mapping.address()), shape);
  return SlotMemory(std::move(fd), std::move(mapping), shape);
}

void SlotMemory::MarkUnavailable() {
  SlotHeader* h = HeaderOf(mapping_.address());
  h->liveness.store(kLivenessOwnerDied, std::memory_order_release);
  FutexWake(&h->liveness, 1 << 30);
}

void TouchPayload(const WorkerSlot& slot) {
  if (!slot.valid()) return;
  auto* page = static_cast<std::byte*>(slot.base) + kSlotHeaderBytes;
  auto* end = static_cast<std::byte*>(slot.base) + slot.bytes;
  for (; page < end; page += kSlotPageBytes) {
    // One volatile store per page: the compiler may not drop it, and the payload is all zero
    // before the first message anyway.
    *reinterpret_cast<volatile std::byte*>(page) = std::byte{0};
  }
}

Status CheckSlotFd(int fd, const SlotShape& shape) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return Error::FromErrno(errno, "fstat of a slot descriptor");
  if (!S_ISREG(st.st_mode) || static_cast<uint64_t>(st.st_size) != SlotBytes(shape)) {
    return Error(StrCat("slot descriptor: ", static_cast<int64_t>(st.st_size), " bytes where ",
                        SlotBytes(shape), " were expected"));
  }
  int seals = ::fcntl(fd, F_GET_SEALS);
  if (seals < 0) return Error::FromErrno(errno, "F_GET_SEALS of a slot descriptor");
  if ((static_cast<unsigned>(seals) & kRequiredSeals) != kRequiredSeals) {
    return Error("slot descriptor: not sealed against shrinking and growing");
  }
  return Ok();
}

}  // namespace cellhouse::executor
