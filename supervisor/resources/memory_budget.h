// The default memory budget for sessions when celld is not given --memory-budget.
//
//   CH_ASSIGN_OR_RETURN(std::string meminfo, ReadFileToString("/proc/meminfo", 1 << 16));
//   CH_ASSIGN_OR_RETURN(uint64_t total, ParseMemTotal(meminfo));
//   CH_ASSIGN_OR_RETURN(std::optional<uint64_t> cap, driver->OwnMemoryLimit());
//   uint64_t budget = DefaultMemoryBudget(total, cap, zygote_ready.weights_locked()
//                                                         ? zygote_ready.weights_bytes() : 0);
//
// The rule: half of the memory celld can have (MemTotal, or its cgroup's limit when lower),
// minus the weights when they are locked in memory. The other half is left for the kernel, the
// page cache (the model's unlocked pages, the files of everything else), celld and the zygote,
// and the rest of the host: admission counts each session at its worst case, and sessions that
// all reach it at once must still not push the host into its own OOM killer. A host that wants
// more gives --memory-budget explicitly.
#ifndef CELLHOUSE_SUPERVISOR_RESOURCES_MEMORY_BUDGET_H_
#define CELLHOUSE_SUPERVISOR_RESOURCES_MEMORY_BUDGET_H_

#include <cstdint>
#include <optional>
#include <string_view>

#include "base/result.h"

namespace cellhouse::resources {

// The "MemTotal:" line of /proc/meminfo (proc(5)), in bytes.
Result<uint64_t> ParseMemTotal(std::string_view meminfo);

// 0 when the locked weights alone take the whole half: then no session fits, and celld should
// say so at start-up rather than refuse every session later.
uint64_t DefaultMemoryBudget(uint64_t mem_total, std::optional<uint64_t> cgroup_limit,
                             uint64_t locked_weights_bytes);

}  // namespace cellhouse::resources

#endif  // CELLHOUSE_SUPERVISOR_RESOURCES_MEMORY_BUDGET_H_
