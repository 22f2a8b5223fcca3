// What one session's cgroup enforces, independent of the cgroup version: the drivers translate
// these into v2 files (memory.max, cpu.weight, ...) or v1 files (memory.limit_in_bytes,
// cpu.shares, ...). celld fills them from the session's policy.
//
//   Limits limits{.memory_max = 512 << 20, .memory_high = 448 << 20, .pids_max = 16,
//                 .cpu = CpuQuota{.quota_us = 50000, .period_us = 100000}, .cpu_weight = 100};
//   CH_RETURN_IF_ERROR(ValidateLimits(limits));
#ifndef CELLHOUSE_SUPERVISOR_CGROUP_LIMITS_H_
#define CELLHOUSE_SUPERVISOR_CGROUP_LIMITS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"

namespace cellhouse::cgroup {

// Bandwidth limit: at most quota_us of CPU time per period_us (sched-bwc.rst). A quota larger
// than the period grants more than one CPU.
struct CpuQuota {
  uint32_t quota_us = 0;
  uint32_t period_us = 100000;
};

// A device-memory limit for the v2 `dmem` controller (Linux >= 6.14): `region` is a name from
// the root's dmem.capacity, e.g. "drm/0000:03:00.0/vram0".
struct DeviceMemoryLimit {
  std::string region;
  uint64_t bytes = 0;
};

// Unset (nullopt) means "not limited here": the kernel default ("max") stays.
struct Limits {
  // Bytes of private memory (anonymous + page cache first touched by the session). Exceeding it
  // after reclaim gets the worker OOM-killed. v2 memory.max, v1 memory.limit_in_bytes.
  std::optional<uint64_t> memory_max;
  // Reclaim and throttle above this (v2 memory.high). On v1 it becomes the soft limit
  // (memory.soft_limit_in_bytes), which only orders reclaim under global pressure.
  std::optional<uint64_t> memory_high;
  // Swap the session may use besides memory_max. Zero by default: a session that swaps would
  // slow every other one. v2 memory.swap.max; v1 memory.memsw.limit_in_bytes = memory_max + this
  // (only with memory_max). Skipped where the kernel has no swap accounting (see Describe()).
  uint64_t swap_max = 0;
  // Processes and threads (v2/v1 pids.max). A fork past it fails with EAGAIN.
  std::optional<uint64_t> pids_max;
  // v2 cpu.max, v1 cpu.cfs_quota_us / cpu.cfs_period_us.
  std::optional<CpuQuota> cpu;
  // Relative share under contention, 1..10000, default 100 (v2 cpu.weight); on v1 mapped to
  // cpu.shares by CpuWeightToShares.
  std::optional<uint32_t> cpu_weight;
  // v2 dmem.max lines; refused by a driver without the dmem controller.
  std::vector<DeviceMemoryLimit> device_memory;
};

inline constexpr uint32_t kCpuWeightMin = 1;
inline constexpr uint32_t kCpuWeightMax = 10000;
inline constexpr uint32_t kCpuWeightDefault = 100;

// Checks ranges the kernel would refuse with a bare EINVAL, so the error names the field:
// cpu_weight in 1..10000, quota >= 1 ms, period in 1 ms..1 s, pids_max >= 1, memory_max >= 1 MiB,
// memory_high <= memory_max.
Status ValidateLimits(const Limits& limits);

// The v2 weight to v1 cpu.shares: linear through the two defaults (100 <-> 1024), clamped to
// the kernel's range [2, 262144]. Linear keeps ratios: weights 100:300 become shares 1024:3072.
// This is systemd's mapping (CPUWeight= on a v1 host).
uint64_t CpuWeightToShares(uint32_t weight);

}  // namespace cellhouse::cgroup

#endif  // CELLHOUSE_SUPERVISOR_CGROUP_LIMITS_H_
