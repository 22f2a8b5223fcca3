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

Result<uint64_t> Mapping::ResidentBytes() const {
  if (addr_ == nullptr) return uint64_t{0};
  const auto page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  // In slices, so the residency vector stays small for a model of many GiB.
  constexpr size_t kSlicePages = 1 << 16;
  std::vector<unsigned char> pages(kSlicePages);
  uint64_t resident = 0;
  for (size_t offset = 0; offset < size_; offset += kSlicePages * page) {
    size_t length = std::min(size_ - offset, kSlicePages * page);
    if (::mincore(static_cast<std::byte*>(addr_) + offset, length, pages.data()) != 0) {
      return Error::FromErrno(errno, "mincore");
    }
    size_t count = (length + page - 1) / page;
    for (size_t i = 0; i < count; ++i) {
      if ((pages[i] & 1) != 0) resident += std::min(page, length - i * page);
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
