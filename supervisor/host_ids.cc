#include "supervisor/host_ids.h"

#include <string>

namespace cellhouse::supervisor {

Result<uint32_t> HostIdAllocator::Allocate(uint32_t range_first, uint32_t range_count,
                                           uint32_t block) {
  uint64_t end = uint64_t{range_first} + range_count;
  uint64_t candidate = range_first;
  // Walk the live blocks that could overlap, in order; take the first gap that fits.
  auto it = live_.upper_bound(range_first);
  if (it != live_.begin()) --it;
  for (; candidate + block <= end; ++it) {
    if (it == live_.end() || candidate + block <= it->first) {
      live_.emplace(static_cast<uint32_t>(candidate), block);
      return static_cast<uint32_t>(candidate);
    }
    uint64_t taken_end = uint64_t{it->first} + it->second;
    if (taken_end > candidate) candidate = taken_end;
  }
  return Error("no free host ids left in the policy's range " + std::to_string(range_first) + "+" +
               std::to_string(range_count) + " (" + std::to_string(range_count / block) +
               " sessions at most)");
}

void HostIdAllocator::Release(uint32_t first) { live_.erase(first); }

}  // namespace cellhouse::supervisor
