// The one spawn recipe: what a policy means for a worker's sandbox (zygote::SandboxSpec) and for
// its cgroup (cgroup::Limits). The sandbox and the limits plug in here and nowhere else.
//
//   zygote::SandboxSpec spec = BuildSandboxSpec(*policy, host_ids, placement, gpu, true);
//   cgroup::Limits limits = CgroupLimitsFor(policy->proto());
//   zygote::SandboxSpec executor = BuildExecutorSandboxSpec(recipe, placement);
#ifndef CELLHOUSE_SUPERVISOR_SANDBOX_SPEC_H_
#define CELLHOUSE_SUPERVISOR_SANDBOX_SPEC_H_

#include <cstdint>
#include <string>

#include "ipc/zygote.pb.h"
#include "policy/choose.h"
#include "policy/policy.h"
#include "supervisor/cgroup/limits.h"
#include "supervisor/resources/gpu_share.h"

namespace cellhouse::supervisor {

// `sandbox_enabled` false (celld --insecure-no-sandbox) asks for no namespaces and no filter.
zygote::SandboxSpec BuildSandboxSpec(const policy::CompiledPolicy& policy, uint32_t host_id_first,
                                     zygote::SandboxSpec::CgroupPlacement placement,
                                     const resources::WorkerGpuView* gpu, bool sandbox_enabled);

// The session cgroup's limits; `gpu` adds its dmem.max lines.
cgroup::Limits CgroupLimitsFor(const policy::Policy& policy, const resources::WorkerGpuView* gpu);

// The shared step executor's recipe (docs/EXECUTOR.md): no tenant's policy, its own.
struct ExecutorRecipe {
  uint32_t host_id_first = 0;  // two host ids of its own: root inside (set-up), then H+1
  uint32_t threads = 1;        // the threads it will run (its cpuset's CPUs, or --executor-threads)
  uint64_t memory_max_bytes = 0;
  std::string seccomp_bpf;  // executor::ExecutorFilterBytes()
  bool sandbox_enabled = true;
};
// Every namespace a default worker gets (user, pid, mount, uts, ipc, net), its own host ids, the
// executor's filter, and rlimits for a process that writes no file and dumps no core: CORE 0,
// FSIZE 0, MEMLOCK 0, NOFILE 16 (its two channels and a slot's memfd at a time), NPROC its
// threads and two more.
zygote::SandboxSpec BuildExecutorSandboxSpec(const ExecutorRecipe& recipe,
                                             zygote::SandboxSpec::CgroupPlacement placement);
// Its cgroup: memory_max (swap 0), pids.max its threads and four more, no CPU quota (it works
// for every sharing session; fairness between them is celld's, executor_fairness.h), and the
// default weight until celld sets it to the sum of its sessions' weights.
cgroup::Limits ExecutorCgroupLimits(const ExecutorRecipe& recipe);

}  // namespace cellhouse::supervisor

#endif  // CELLHOUSE_SUPERVISOR_SANDBOX_SPEC_H_
