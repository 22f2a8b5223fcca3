#include "base/mapping.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <string>
#include <vector>

namespace cellhouse {

Result<Mapping> Mapping::MapReadOnlyShared(const UniqueFd& fd, size_t size, std::string_view name) {
  if (size == 0) {
    return Error("mapping '" + std::string(name) + "': the file is empty");
  }
  void* addr = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd.get(), 0);
  if (addr == MAP_FAILED) {
    return Error::FromErrno(errno, "mmap of '" + std::string(name) + "'");
  }
  return Mapping(addr, size);
}

Result<Mapping> Mapping::MapReadWriteShared(const UniqueFd& fd, size_t size,
                                            std::string_view name) {
  if (size == 0) return Error("mapping '" + std::string(name) + "': the size is 0");
  void* addr = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  if (addr == MAP_FAILED) {
    return Error::FromErrno(errno, "mmap of '" + std::string(name) + "'");
  }
  return Mapping(addr, size);
}

Result<Mapping> Mapping::MapFile(const char* path) {
  UniqueFd fd(::open(path, O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    return Error::FromErrno(errno, "open '" + std::string(path) + "'");
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) {
    return Error::FromErrno(errno, "stat '" + std::string(path) + "'");
  }
  if (!S_ISREG(st.st_mode)) {
    return Error("mapping '" + std::string(path) + "': not a regular file");
  }
  return MapReadOnlyShared(fd, static_cast<size_t>(st.st_size), path);
}

Result<Mapping> Mapping::Anonymous(size_t size, std::string_view what) {
  if (size == 0) return Mapping();
  void* addr = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (addr == MAP_FAILED) {
    return Error::FromErrno(
        errno, "allocating " + std::to_string(size) + " bytes for " + std::string(what));
  }
  return Mapping(addr, size);
}

Result<Mapping> Mapping::AnonymousShared(size_t size, std::string_view what) {
  if (size == 0) return Mapping();
  void* addr = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (addr == MAP_FAILED) {
    return Error::FromErrno(
        errno, "allocating " + std::to_string(size) + " shared bytes for " + std::string(what));
  }
  return Mapping(addr, size);
}

bool PopulateForWrite(void* data, size_t size) {
  if (data == nullptr || size == 0) return true;
  const auto page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const auto begin = reinterpret_cast<uintptr_t>(data) & ~(page - 1);
  const uintptr_t end = reinterpret_cast<uintptr_t>(data) + size;
  return ::madvise(reinterpret_cast<void*>(begin),  // NOLINT(performance-no-int-to-ptr)
                   end - begin, MADV_POPULATE_WRITE) == 0;
}

Result<uint64_t> ResidentBytesIn(const void* data, size_t size) {
  if (data == nullptr || size == 0) return uint64_t{0};
  const auto page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const auto begin = reinterpret_cast<uintptr_t>(data);
  const uintptr_t end = begin + size;
  // In slices, so the residency vector stays small for a model of many GiB.
  constexpr uintptr_t kSlicePages = 1 << 16;
  std::vector<unsigned char> pages(kSlicePages);
  uint64_t resident = 0;
  for (uintptr_t at = begin & ~(page - 1); at < end; at += kSlicePages * page) {
    const uintptr_t length = std::min(end - at, kSlicePages * page);
    // mincore only reads the page tables at this address.
    if (::mincore(reinterpret_cast<void*>(at),  // NOLINT(performance-no-int-to-ptr)
                  length, pages.data()) != 0) {
      return Error::FromErrno(errno, "mincore");
    }
    for (uintptr_t i = 0; i < (length + page - 1) / page; ++i) {
      if ((pages[i] & 1) == 0) continue;
      const uintptr_t first = std::max(begin, at + i * page);
      resident += std::min(end, at + (i + 1) * page) - first;
    }
  }
  return resident;
}

void Mapping::Reset() {
  if (addr_ != nullptr) static_cast<void>(::munmap(addr_, size_));
  addr_ = nullptr;
  size_ = 0;
}

}  // namespace cellhouse
