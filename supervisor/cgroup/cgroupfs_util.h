// Internal to supervisor/cgroup: reading cgroupfs values and tearing cgroup trees down, shared by
// both drivers and SessionCgroup. Everything goes through the Fs/Processes seams.
//
//   CH_ASSIGN_OR_RETURN(uint64_t bytes, ReadUint64(fs, dir + "/memory.current"));
//   CH_RETURN_IF_ERROR(KillAndRemoveTree(fs, processes, dir, teardown));
#ifndef CELLHOUSE_SUPERVISOR_CGROUP_CGROUPFS_UTIL_H_
#define CELLHOUSE_SUPERVISOR_CGROUP_CGROUPFS_UTIL_H_

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "supervisor/cgroup/fs.h"
#include "supervisor/cgroup/session_cgroup.h"

namespace cellhouse::cgroup::internal {

// "a" + "/" + "b" with no doubled or trailing slash; "/" as `b` adds nothing.
std::string JoinPath(std::string_view a, std::string_view b);

// A cgroup name we create: 1..64 of [A-Za-z0-9_.-], not starting with '.'.
bool IsValidCgroupName(std::string_view name);

// A file holding one unsigned number.
Result<uint64_t> ReadUint64(const Fs& fs, const std::string& path);
// A flat-keyed file ("key value" lines: memory.events, cpu.stat, memory.oom_control): the value
// of `key`, or nullopt when the key is absent.
Result<std::optional<uint64_t>> ReadKeyedUint64(const Fs& fs, const std::string& path,
                                                std::string_view key);
// cgroup.procs; a cgroup that no longer exists has no processes.
Result<std::vector<pid_t>> ReadPids(const Fs& fs, const std::string& dir);
// The space-separated controller names of cgroup.controllers / cgroup.subtree_control.
Result<std::set<std::string>> ReadControllerSet(const Fs& fs, const std::string& path);

// The full paths of the child cgroups of `dir` (none when `dir` does not exist).
Result<std::vector<std::string>> ChildCgroups(const Fs& fs, const std::string& dir);

// MakeDir that accepts an existing directory; returns whether it created it.
Result<bool> EnsureDir(const Fs& fs, const std::string& path);

// SIGKILL everything in the subtrees at `dirs` (v2 cgroup.kill at a top where present, else
// kill(2) of each pid in each cgroup.procs), repeated until they are empty.
Status KillTrees(const Fs& fs, const Processes& processes, const std::vector<std::string>& dirs,
                 const TeardownOptions& teardown);
// One round of the above without waiting.
Status KillTreesOnce(const Fs& fs, const Processes& processes,
                     const std::vector<std::string>& dirs);
// KillTrees, then rmdir every directory of the subtrees, children first, retrying on EBUSY.
// A directory already gone counts as removed.
Status KillAndRemoveTrees(const Fs& fs, const Processes& processes,
                          const std::vector<std::string>& dirs, const TeardownOptions& teardown);
// rmdir with EBUSY retries; ENOENT is success.
Status RemoveDirPatiently(const Fs& fs, const Processes& processes, const std::string& dir,
                          const TeardownOptions& teardown);
// Setup's refusal when Fs::LockDirectory on the subtree at `base` failed: while another celld
// holds it (EWOULDBLOCK), saying so and what to do; otherwise the error as it is.
Error SubtreeHeldError(Error lock_error, const std::string& base);

// The --cgroup-subtree levels, outermost first, innermost removed first: each is celld's whether
// this run made it or adopted it from a crashed predecessor, but a level that still holds a child
// cgroup belongs to someone else too and is left (with every level above it).
Status RemoveSubtreeLevels(const Fs& fs, const Processes& processes,
                           const std::vector<std::string>& levels, const TeardownOptions& teardown);

}  // namespace cellhouse::cgroup::internal

#endif  // CELLHOUSE_SUPERVISOR_CGROUP_CGROUPFS_UTIL_H_
