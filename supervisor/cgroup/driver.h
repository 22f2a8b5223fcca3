// celld's cgroup management: one interface, a v2 driver and a v1 driver, chosen by looking at
// the mounted file systems and the controllers they offer (never at the kernel version).
//
// celld manages only the subtree it was started in ("own cgroup", from /proc/self/cgroup per
// controller; under systemd the unit's cgroup with Delegate=yes), plus an optional `subtree`
// below it:
//   v2:  <own>/[subtree/]supervisor/     celld itself (and the zygote it starts), a leaf
//        <own>/[subtree/]sessions/<n>/   one per session; +memory +pids +cpu [+dmem] enabled
//   v1:  per hierarchy (memory, pids, cpu, cpuacct): <own>/[subtree/]sessions/<n>/
// Directories are mode 0700; <n> is a number, not the session id.
//
//   RealFs fs;
//   RealProcesses processes;
//   CH_ASSIGN_OR_RETURN(std::unique_ptr<Driver> driver, DetectDriver(fs, processes, {}));
//   log.info("{}", driver->Describe());        // which driver and why
//   CH_ASSIGN_OR_RETURN(SetupReport setup, driver->Setup());  // leaf move, leftovers removed
//   CH_ASSIGN_OR_RETURN(SessionCgroup cg, driver->CreateSession(id, limits));
//   ... cg.Remove() when the session ends ...
//   CH_RETURN_IF_ERROR(driver->Shutdown());    // after the zygote and every worker are gone
//
// Nothing here runs in a destructor: Setup, SessionCgroup::Remove and Shutdown are explicit.
// The Fs and Processes passed in must outlive the driver and its sessions.
#ifndef CELLHOUSE_SUPERVISOR_CGROUP_DRIVER_H_
#define CELLHOUSE_SUPERVISOR_CGROUP_DRIVER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "supervisor/cgroup/fs.h"
#include "supervisor/cgroup/limits.h"
#include "supervisor/cgroup/session_cgroup.h"

namespace cellhouse::cgroup {

struct DriverOptions {
  // Where the cgroup file systems are mounted.
  std::string cgroup_root = "/sys/fs/cgroup";
  // Which cgroup celld is in (cgroups(7) "/proc/[pid]/cgroup").
  std::string self_cgroup_file = "/proc/self/cgroup";
  // A relative path below the own cgroup that holds everything the driver creates; empty means
  // the own cgroup itself. celld gives each instance its own by default (InstanceSubtree), as
  // several may share a cgroup (on a v1 host, celld started from a shell sits in a hierarchy's
  // root). Setup() locks it first and refuses while another celld holds it; then it removes
  // whatever it finds under <own>/<subtree>/sessions as a crashed predecessor's leftover.
  std::string subtree;
  TeardownOptions teardown;
};

// One line of /proc/self/cgroup: "hierarchy-ID:controller-list:cgroup-path".
struct CgroupMembership {
  int hierarchy = 0;
  std::vector<std::string> controllers;  // empty for the v2 line ("0::/path")
  std::string path;                      // absolute within its hierarchy
};
Result<std::vector<CgroupMembership>> ParseProcCgroup(std::string_view text);

struct SetupReport {
  // Session cgroups a previous celld left behind (it crashed), killed and removed by Setup.
  std::vector<std::string> removed_leftovers;
};

// A region of the v2 dmem controller (dmem.capacity at the cgroup root).
struct DeviceMemoryRegion {
  std::string name;  // e.g. "drm/0000:03:00.0/vram0"
  uint64_t capacity_bytes = 0;
};

class Driver {
 public:
  virtual ~Driver() = default;

  virtual Version version() const = 0;
  // One line for the start-up log: which driver, which controllers, and why, e.g.
  // "cgroup v1 (memory, pids, cpu, cpuacct): /sys/fs/cgroup is a tmpfs of v1 hierarchies and the
  // cgroup2 mount at /sys/fs/cgroup/unified has no memory controller; sessions in ...".
  virtual std::string Describe() const = 0;

  // Prepares the subtree: makes its levels and takes an exclusive lock on it (Fs::LockDirectory,
  // held until Shutdown; while another celld holds it, refuses before touching anything else),
  // removes what a crashed predecessor left under sessions/ (kill, then rmdir), creates
  // sessions/; on v2 also moves celld into the supervisor/ leaf and enables the controllers for
  // the children. Every directory is made mode 0700. Call once, before starting the zygote
  // (which inherits the supervisor/ cgroup). On failure what it did is undone as far as possible.
  virtual Result<SetupReport> Setup() = 0;

  // Creates sessions/<id> with `limits` written, and the placement descriptors. `id` is a
  // cgroup name (1..64 of [A-Za-z0-9_.-]); an existing cgroup of that name is an error. celld
  // names them by an internal number, never by the session id (a secret: cgroup paths show in
  // /proc/PID/cgroup to anyone).
  virtual Result<SessionCgroup> CreateSession(std::string_view id, const Limits& limits) = 0;

  // Kills and removes every session cgroup still there, then sessions/ and what Setup created;
  // on v2 disables the controllers it enabled and moves celld back into its own cgroup so that
  // supervisor/ can go too. Call after the zygote and the workers were reaped. Continues past
  // errors and returns the first.
  virtual Status Shutdown() = 0;

  // The smallest memory limit on the own cgroup and its ancestors (nullopt: unlimited), for the
  // default memory budget.
  virtual Result<std::optional<uint64_t>> OwnMemoryLimit() const = 0;

  // The dmem regions sessions can be limited on: empty unless this is v2 with the dmem
  // controller delegated (Linux >= 6.14 with a driver that registers regions).
  virtual Result<std::vector<DeviceMemoryRegion>> DeviceMemoryRegions() const = 0;
};

// celld's default subtree, one per instance: "celld-" and the socket path it serves, made a
// cgroup name ("/run/cellhouse/celld.sock" -> "celld-run-cellhouse-celld.sock"; a path too long
// for a name is shortened to a hash of it). Stable across restarts, so a successor on the same
// socket finds what a crashed celld left, and distinct for two celld on two sockets.
std::string InstanceSubtree(std::string_view socket_path);

// Looks at options.cgroup_root:
//   - a cgroup2 mount: the v2 driver, if celld's own cgroup offers memory, pids and cpu
//     (cgroup.controllers); otherwise an error saying what is missing and how to delegate it;
//   - a tmpfs: the v1 driver when memory, pids and cpu each have a v1 hierarchy (statfs says
//     CGROUP_SUPER_MAGIC) at <root>/<controllers>; else the v2 driver on <root>/unified if that
//     cgroup2 mount offers them; otherwise an error listing what was found;
//   - anything else: an error.
Result<std::unique_ptr<Driver>> DetectDriver(const Fs& fs, const Processes& processes,
                                             const DriverOptions& options);

}  // namespace cellhouse::cgroup

#endif  // CELLHOUSE_SUPERVISOR_CGROUP_DRIVER_H_
