// The one spawn recipe: what a policy means for a worker's sandbox (zygote::SandboxSpec) and for
// its cgroup (cgroup::Limits). The sandbox and the limits plug in here and nowhere else.
//
//   zygote::SandboxSpec spec = BuildSandboxSpec(*policy, host_ids, placement, gpu, true);
//   cgroup::Limits limits = CgroupLimitsFor(policy->proto());
#ifndef CELLHOUSE_SUPERVISOR_SANDBOX_SPEC_H_
#define CELLHOUSE_SUPERVISOR_SANDBOX_SPEC_H_

#include <cstdint>

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

}  // namespace cellhouse::supervisor

#endif  // CELLHOUSE_SUPERVISOR_SANDBOX_SPEC_H_
