#include "supervisor/cgroup/limits.h"

#include <algorithm>
#include <string>

#include "base/strings.h"

namespace cellhouse::cgroup {

namespace {
constexpr uint64_t kSharesMin = 2;       // MIN_SHARES, kernel/sched/sched.h
constexpr uint64_t kSharesMax = 262144;  // MAX_SHARES
constexpr uint64_t kSharesDefault = 1024;
constexpr uint32_t kMinCpuPeriodUs = 1000;     // cpu.max: period and quota >= 1 ms
constexpr uint32_t kMaxCpuPeriodUs = 1000000;  // period <= 1 s
constexpr uint64_t kMinMemoryMax = 1 << 20;
}  // namespace

Status ValidateLimits(const Limits& limits) {
  if (limits.cpu_weight &&
      (*limits.cpu_weight < kCpuWeightMin || *limits.cpu_weight > kCpuWeightMax)) {
    return Error("cgroup limits: cpu weight " + std::to_string(*limits.cpu_weight) +
                 " is outside 1..10000");
  }
  if (limits.cpu) {
    if (limits.cpu->period_us < kMinCpuPeriodUs || limits.cpu->period_us > kMaxCpuPeriodUs) {
      return Error("cgroup limits: cpu period " + std::to_string(limits.cpu->period_us) +
                   " us is outside 1000..1000000 us");
    }
    if (limits.cpu->quota_us < kMinCpuPeriodUs) {
      return Error("cgroup limits: cpu quota " + std::to_string(limits.cpu->quota_us) +
                   " us is below the kernel's minimum of 1000 us");
    }
  }
  if (limits.pids_max && *limits.pids_max == 0) {
    return Error("cgroup limits: pids max 0 would not even admit the worker");
  }
  if (limits.memory_max && *limits.memory_max < kMinMemoryMax) {
    return Error("cgroup limits: memory max " + FormatBytes(*limits.memory_max) +
                 " is below 1 MiB, too small for any worker");
  }
  if (limits.memory_max && limits.memory_high && *limits.memory_high > *limits.memory_max) {
    return Error("cgroup limits: memory high " + FormatBytes(*limits.memory_high) +
                 " is above memory max " + FormatBytes(*limits.memory_max));
  }
  for (const DeviceMemoryLimit& d : limits.device_memory) {
    if (d.region.empty() || d.region.find_first_of(" \n\t") != std::string::npos) {
      return Error("cgroup limits: device memory region " + Quote(d.region) +
                   " is empty or contains white space");
    }
  }
  return Ok();
}

uint64_t CpuWeightToShares(uint32_t weight) {
  uint64_t shares = static_cast<uint64_t>(weight) * kSharesDefault / kCpuWeightDefault;
  return std::clamp(shares, kSharesMin, kSharesMax);
}

}  // namespace cellhouse::cgroup
