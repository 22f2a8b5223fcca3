// Host uid/gid blocks for sessions: each live session gets its own block of consecutive host ids
// from its policy's range, never shared with another live session (of any policy: ranges of
// different policies may overlap, the allocator still keeps blocks apart).
//
//   HostIdAllocator ids;
//   CH_ASSIGN_OR_RETURN(uint32_t first, ids.Allocate(policy_first, policy_count, 2));
//   ... session ends ...
//   ids.Release(first);
#ifndef CELLHOUSE_SUPERVISOR_HOST_IDS_H_
#define CELLHOUSE_SUPERVISOR_HOST_IDS_H_

#include <cstdint>
#include <map>

#include "base/result.h"

namespace cellhouse::supervisor {

class HostIdAllocator {
 public:
  // A free block of `block` ids inside [range_first, range_first + range_count).
  Result<uint32_t> Allocate(uint32_t range_first, uint32_t range_count, uint32_t block);
  void Release(uint32_t first);
  size_t live() const { return live_.size(); }

 private:
  std::map<uint32_t, uint32_t> live_;  // first → block size
};

}  // namespace cellhouse::supervisor

#endif  // CELLHOUSE_SUPERVISOR_HOST_IDS_H_
