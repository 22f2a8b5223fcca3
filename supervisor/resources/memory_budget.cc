#include "supervisor/resources/memory_budget.h"

#include <algorithm>
#include <string>

#include "base/strings.h"

namespace cellhouse::resources {

Result<uint64_t> ParseMemTotal(std::string_view meminfo) {
  for (std::string_view line : Split(meminfo, '\n')) {
    if (!StartsWith(line, "MemTotal:")) {
      continue;
    }
    std::string_view rest = Trim(line.substr(9));
    if (rest.size() < 3 || rest.substr(rest.size() - 3) != " kB") {
      return Error("/proc/meminfo: MemTotal line " + Quote(line) + " does not end in kB");
    }
    CH_ASSIGN_OR_RETURN(uint64_t kib,
                        ParseUint64(Trim(rest.substr(0, rest.size() - 3)), "MemTotal"));
    return kib * 1024;
  }
  return Error("/proc/meminfo: no MemTotal line");
}

uint64_t DefaultMemoryBudget(uint64_t mem_total, std::optional<uint64_t> cgroup_limit,
                             uint64_t locked_weights_bytes) {
  uint64_t usable = cgroup_limit ? std::min(mem_total, *cgroup_limit) : mem_total;
  uint64_t half = usable / 2;
  return half > locked_weights_bytes ? half - locked_weights_bytes : 0;
}

}  // namespace cellhouse::resources
