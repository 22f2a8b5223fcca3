#include "supervisor/sandbox_spec.h"

#include <sched.h>
#include <sys/resource.h>

#include <cstring>

#include "ipc/worker_contract.h"

namespace cellhouse::supervisor {

zygote::SandboxSpec BuildSandboxSpec(const policy::CompiledPolicy& policy, uint32_t host_id_first,
                                     zygote::SandboxSpec::CgroupPlacement placement,
                                     const resources::WorkerGpuView* gpu, bool sandbox_enabled) {
  zygote::SandboxSpec spec;
  spec.set_cgroup(placement);
  if (!sandbox_enabled) {
    spec.set_disabled(true);
    return spec;
  }
  spec.set_namespace_flags(policy.CloneNamespaceFlags());
  spec.set_host_uid(host_id_first);
  spec.set_host_gid(host_id_first);
  spec.set_inside_uid(ipc::kWorkerInsideUid);
  spec.set_inside_gid(ipc::kWorkerInsideGid);
  spec.set_hostname("cell");
  for (const policy::RlimitSetting& r : policy.rlimits()) {
    zygote::Rlimit* out = spec.add_rlimits();
    out->set_resource(r.resource);
    out->set_soft(r.soft);
    out->set_hard(r.hard);
  }
  std::span<const sock_filter> bpf = policy.bpf();
  std::string bytes(bpf.size() * sizeof(sock_filter), '\0');
  std::memcpy(bytes.data(), bpf.data(), bytes.size());
  spec.set_seccomp_bpf(std::move(bytes));
  if (gpu != nullptr) {
    for (const std::string& env : gpu->env) spec.add_env(env);
    for (const std::string& node : gpu->device_nodes) spec.add_device_nodes(node);
    for (const std::string& dir : gpu->directories) spec.add_bind_directories(dir);
  }
  return spec;
}

cgroup::Limits CgroupLimitsFor(const policy::Policy& p, const resources::WorkerGpuView* gpu) {
  // The policy is the effective one (defaults filled in): unset means "no limit".
  cgroup::Limits limits;
  const policy::Cgroup& c = p.cgroup();
  if (c.has_memory_max_bytes()) limits.memory_max = c.memory_max_bytes();
  if (c.has_memory_high_bytes()) limits.memory_high = c.memory_high_bytes();
  limits.swap_max = c.memory_swap_max_bytes();
  if (c.has_pids_max()) limits.pids_max = c.pids_max();
  if (c.has_cpu_quota()) {
    // The loader bounds both to the kernel's ranges (period <= 1 s), so they fit 32 bits.
    limits.cpu = cgroup::CpuQuota{static_cast<uint32_t>(c.cpu_quota().quota_us()),
                                  static_cast<uint32_t>(c.cpu_quota().period_us())};
  }
  if (c.has_cpu_weight()) limits.cpu_weight = c.cpu_weight();
  if (gpu != nullptr) limits.device_memory = gpu->device_memory;
  return limits;
}

zygote::SandboxSpec BuildExecutorSandboxSpec(const ExecutorRecipe& recipe,
                                             zygote::SandboxSpec::CgroupPlacement placement) {
  zygote::SandboxSpec spec;
  spec.set_cgroup(placement);
  if (!recipe.sandbox_enabled) {
    spec.set_disabled(true);
    return spec;
  }
  spec.set_namespace_flags(CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWUTS |
                           CLONE_NEWIPC | CLONE_NEWNET);
  spec.set_host_uid(recipe.host_id_first);
  spec.set_host_gid(recipe.host_id_first);
  spec.set_inside_uid(ipc::kWorkerInsideUid);
  spec.set_inside_gid(ipc::kWorkerInsideGid);
  spec.set_hostname("cell-executor");
  const uint64_t nproc = uint64_t{recipe.threads} + 2;
  for (auto [resource, value] :
       {std::pair{RLIMIT_CORE, uint64_t{0}}, std::pair{RLIMIT_FSIZE, uint64_t{0}},
        std::pair{RLIMIT_MEMLOCK, uint64_t{0}}, std::pair{RLIMIT_NOFILE, uint64_t{16}},
        std::pair{RLIMIT_NPROC, nproc}}) {
    zygote::Rlimit* r = spec.add_rlimits();
    r->set_resource(resource);
    r->set_soft(value);
    r->set_hard(value);
  }
  spec.set_seccomp_bpf(recipe.seccomp_bpf);
  return spec;
}

cgroup::Limits ExecutorCgroupLimits(const ExecutorRecipe& recipe) {
  cgroup::Limits limits;
  limits.memory_max = recipe.memory_max_bytes;
  limits.swap_max = 0;
  limits.pids_max = uint64_t{recipe.threads} + 4;
  return limits;
}

}  // namespace cellhouse::supervisor
