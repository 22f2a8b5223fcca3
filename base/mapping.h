// Mapping owns one mmap()ed region and unmaps it when it goes out of scope.
//
//   CH_ASSIGN_OR_RETURN(Mapping weights, Mapping::MapReadOnlyShared(fd, size, "model.bin"));
//   std::span<const std::byte> bytes = weights.bytes();
//
// A read-only shared file mapping is how every worker sees the model: one copy in the page cache,
// inherited across fork.
#ifndef CELLHOUSE_BASE_MAPPING_H_
#define CELLHOUSE_BASE_MAPPING_H_

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <utility>

#include "base/result.h"
#include "base/unique_fd.h"

namespace cellhouse {

// Bytes of [data, data + size) in memory now (mincore(2)): every page that holds part of the
// range counts for that part. For a shared file mapping that is the file's page cache, whether or
// not this process ever touched it. `data` need not be page-aligned.
Result<uint64_t> ResidentBytesIn(const void* data, size_t size);

// Faults in, for writing, every page that holds part of [data, data + size) of a private writable
// mapping, in one madvise(MADV_POPULATE_WRITE) call (Linux 5.14 on): on these VMs about 1 us a
// page, where a first write faults each page in on its own at 11-12 us. Best effort: false
// (nothing else done) where the kernel or the seccomp filter refuses or memory runs short; the
// writes then fault the pages in one at a time as they would have. `data` need not be
// page-aligned.
bool PopulateForWrite(void* data, size_t size);

class Mapping {
 public:
  Mapping() = default;
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  Mapping(Mapping&& other) noexcept
      : addr_(std::exchange(other.addr_, nullptr)), size_(std::exchange(other.size_, 0)) {}
  Mapping& operator=(Mapping&& other) noexcept {
    if (this != &other) {
      Reset();
      addr_ = std::exchange(other.addr_, nullptr);
      size_ = std::exchange(other.size_, 0);
    }
    return *this;
  }
  ~Mapping() { Reset(); }

  // mmap(PROT_READ, MAP_SHARED) of the first `size` bytes of `fd`. `name` is for messages.
  static Result<Mapping> MapReadOnlyShared(const UniqueFd& fd, size_t size, std::string_view name);
  // mmap(PROT_READ | PROT_WRITE, MAP_SHARED): memory two processes write (a memfd).
  static Result<Mapping> MapReadWriteShared(const UniqueFd& fd, size_t size, std::string_view name);
  // Opens `path` and maps the whole file read-only and shared.
  static Result<Mapping> MapFile(const char* path);
  // Shared anonymous read-write memory (MAP_SHARED | MAP_ANONYMOUS): shared with the children
  // forked while it exists, unless they are forked after madvise(MADV_DONTFORK).
  static Result<Mapping> AnonymousShared(size_t size, std::string_view what);
  // Private anonymous read-write memory, zero-filled, pages touched lazily.
  static Result<Mapping> Anonymous(size_t size, std::string_view what);

  std::span<const std::byte> bytes() const { return {static_cast<const std::byte*>(addr_), size_}; }
  std::byte* mutable_data() { return static_cast<std::byte*>(addr_); }
  // Bytes of the mapping in memory now (ResidentBytesIn).
  Result<uint64_t> ResidentBytes() const { return ResidentBytesIn(addr_, size_); }
  void* address() const { return addr_; }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }

 private:
  Mapping(void* addr, size_t size) : addr_(addr), size_(size) {}
  void Reset();

  void* addr_ = nullptr;
  size_t size_ = 0;
};

}  // namespace cellhouse

#endif  // CELLHOUSE_BASE_MAPPING_H_
