#include "base/mapping.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <cerrno>
#include <string>

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

void Mapping::Reset() {
  if (addr_ != nullptr) static_cast<void>(::munmap(addr_, size_));
  addr_ = nullptr;
  size_ = 0;
}

}  // namespace cellhouse
