// One session's cgroup, made by Driver::CreateSession: where its worker is placed, what it has
// used, whether the OOM killer struck, and its explicit removal.
//
//   CH_ASSIGN_OR_RETURN(SessionCgroup cg, driver->CreateSession(session_id, limits));
//   // hand cg.placement().RawFds() to the zygote with the SpawnRequest (SCM_RIGHTS) ...
//   // ... the worker ends with SIGKILL:
//   CH_ASSIGN_OR_RETURN(std::optional<std::string> oom, cg.OomOutcome());
//   if (oom) outcome_message = *oom;  // "memory limit exceeded (limit 64 MiB)"
//   CH_RETURN_IF_ERROR(cg.Remove());
//
// The destructor closes the placement descriptors and nothing else: a cgroup is removed only by
// Remove() (or swept by Driver::Shutdown / the next Driver::Setup), never silently.
#ifndef CELLHOUSE_SUPERVISOR_CGROUP_SESSION_CGROUP_H_
#define CELLHOUSE_SUPERVISOR_CGROUP_SESSION_CGROUP_H_

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"
#include "base/unique_fd.h"
#include "supervisor/cgroup/fs.h"
#include "supervisor/cgroup/limits.h"

namespace cellhouse::cgroup {

enum class Version { kV1, kV2 };

// How a worker gets into its session's cgroup before it runs any session code. The descriptors
// are plain fds so celld can pass them to the zygote over SCM_RIGHTS in the SpawnRequest.
struct Placement {
  enum class Kind {
    // v2: fds holds one directory fd of the session cgroup, for clone3(CLONE_INTO_CGROUP)
    // (clone(2): the child starts life in that cgroup, so not a single instruction runs outside).
    kCloneIntoCgroup,
    // v1: fds holds one O_WRONLY fd of `cgroup.procs` per hierarchy (memory, pids, cpu,
    // cpuacct); the parent writes the child's pid into each (PlaceProcessFromParent) while the
    // child still waits to be released.
    kWriteProcs,
  };
  Kind kind = Kind::kCloneIntoCgroup;
  std::vector<UniqueFd> fds;

  std::vector<int> RawFds() const;
};

// v1 placement, run by the parent of a new worker (the zygote) before it releases the child:
// writes `pid` (in the writer's pid namespace) into each cgroup.procs descriptor. Only write(2)
// on a stack buffer until an error is built, so it is also safe between fork and exec.
Status PlaceProcessFromParent(std::span<const int> procs_fds, pid_t pid);

// How patiently teardown waits for killed processes to leave and for rmdir to stop saying EBUSY.
struct TeardownOptions {
  int kill_rounds = 200;               // SIGKILL + re-check rounds
  int rmdir_rounds = 50;               // rmdir attempts while EBUSY
  std::chrono::milliseconds poll{10};  // pause between rounds
};

// The cgroup directory of one controller's files; equal paths for v2, one per hierarchy for v1.
struct SessionPaths {
  std::string memory;
  std::string pids;
  std::string cpu;
  std::string cpuacct;  // empty on v1 without a cpuacct hierarchy: CpuUsageNanos() then fails
};

class SessionCgroup {
 public:
  // Made by the drivers; the Fs and Processes must outlive the object.
  SessionCgroup(std::string id, Version version, SessionPaths paths, Limits limits,
                Placement placement, const Fs* fs, const Processes* processes,
                TeardownOptions teardown);
  SessionCgroup(SessionCgroup&&) noexcept = default;
  SessionCgroup& operator=(SessionCgroup&&) noexcept = default;
  SessionCgroup(const SessionCgroup&) = delete;
  SessionCgroup& operator=(const SessionCgroup&) = delete;
  ~SessionCgroup() = default;

  const std::string& id() const { return id_; }
  Version version() const { return version_; }
  const SessionPaths& paths() const { return paths_; }
  // The distinct directories (one on v2; on v1 one per hierarchy, memory first).
  std::vector<std::string> Directories() const;
  const Limits& limits() const { return limits_; }
  const Placement& placement() const { return placement_; }
  bool removed() const { return removed_; }

  // Bytes charged now (v2 memory.current, v1 memory.usage_in_bytes).
  Result<uint64_t> MemoryCurrent() const;
  // High-water mark (v2 memory.peak, Linux >= 5.19; v1 memory.max_usage_in_bytes).
  Result<uint64_t> MemoryPeak() const;
  // Processes the OOM killer killed in this cgroup (v2 memory.events oom_kill; v1
  // memory.oom_control oom_kill, Linux >= 4.13; an error names the missing counter).
  Result<uint64_t> OomKills() const;
  // Times the memory limit was hit, reclaim or not (v2 memory.events max, v1 memory.failcnt).
  Result<uint64_t> MemoryLimitHits() const;
  // CPU time used, nanoseconds (v2 cpu.stat usage_usec * 1000, v1 cpuacct.usage).
  Result<uint64_t> CpuUsageNanos() const;
  // The pids in the cgroup now (the union over v1 hierarchies).
  Result<std::vector<pid_t>> Pids() const;

  // After a worker died by SIGKILL: "memory limit exceeded (limit 64 MiB)" when the OOM killer
  // acted in this cgroup, nullopt when it did not. Falls back to MemoryLimitHits() where the
  // kernel has no oom_kill counter.
  Result<std::optional<std::string>> OomOutcome() const;

  // Changes the CPU weight (1..10000; v2 cpu.weight, v1 cpu.shares by CpuWeightToShares) of a
  // cgroup whose share follows what it serves: the shared executor's, weighted by its sessions.
  Status SetCpuWeight(uint32_t weight);

  // Sends SIGKILL to everything in the cgroup once (v2 cgroup.kill where present), no waiting.
  Status Kill() const;
  // Kills what is left, waits until the cgroup is empty, removes its directories. Idempotent
  // after success; a failure leaves the object as it was, so Remove() can be tried again.
  Status Remove();

 private:
  std::string id_;
  Version version_ = Version::kV2;
  SessionPaths paths_;
  Limits limits_;
  Placement placement_;
  const Fs* fs_ = nullptr;
  const Processes* processes_ = nullptr;
  TeardownOptions teardown_;
  bool removed_ = false;
};

}  // namespace cellhouse::cgroup

#endif  // CELLHOUSE_SUPERVISOR_CGROUP_SESSION_CGROUP_H_
