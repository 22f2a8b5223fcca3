// Internal to supervisor/cgroup: the two Driver implementations and the layouts DetectDriver
// found for them.
//
//   CH_ASSIGN_OR_RETURN(V2Layout layout, ...);  // from DetectDriver
//   std::unique_ptr<Driver> driver = MakeV2Driver(fs, processes, options, std::move(layout));
#ifndef CELLHOUSE_SUPERVISOR_CGROUP_DRIVERS_H_
#define CELLHOUSE_SUPERVISOR_CGROUP_DRIVERS_H_

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "supervisor/cgroup/driver.h"

namespace cellhouse::cgroup::internal {

struct V2Layout {
  std::string mount;                  // "/sys/fs/cgroup" or "/sys/fs/cgroup/unified"
  std::string own;                    // celld's cgroup within it, e.g. "/ci"
  std::set<std::string> controllers;  // the own cgroup's cgroup.controllers
  std::string why;                    // the detection reasoning, for Describe()
};

// One v1 hierarchy celld uses. Co-mounted controllers (cpu,cpuacct) share mount and own.
struct V1Hierarchy {
  std::string controller;  // "memory", "pids", "cpu", "cpuacct"
  std::string mount;       // "/sys/fs/cgroup/memory"
  std::string own;         // celld's cgroup in it, e.g. "/process_api/5c62..."
};

struct V1Layout {
  std::vector<V1Hierarchy> hierarchies;  // memory, pids, cpu, then cpuacct when present
  std::string why;
};

std::unique_ptr<Driver> MakeV2Driver(const Fs& fs, const Processes& processes,
                                     const DriverOptions& options, V2Layout layout);
std::unique_ptr<Driver> MakeV1Driver(const Fs& fs, const Processes& processes,
                                     const DriverOptions& options, V1Layout layout);

}  // namespace cellhouse::cgroup::internal

#endif  // CELLHOUSE_SUPERVISOR_CGROUP_DRIVERS_H_
