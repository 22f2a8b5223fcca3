#include "supervisor/sandbox_spec.h"

#include <sched.h>
#include <sys/resource.h>

#include <gtest/gtest.h>

#include "ipc/worker_contract.h"
#include "policy/policy.h"

namespace cellhouse::supervisor {
namespace {

std::shared_ptr<const policy::CompiledPolicy> Load(const std::string& text) {
  auto p = policy::LoadPolicyFromString(text, "/etc/cellhouse/policies/t.textproto", nullptr);
  EXPECT_TRUE(p) << p.error().message();
  return p ? *p : nullptr;
}

constexpr const char* kPolicy = R"(
name: "t"
uids: 0
host_uids { first: 500000 count: 1000 }
namespaces { net: false }
rlimits { resource: NOFILE soft: 16 hard: 16 }
cgroup { memory_max_bytes: 268435456 memory_high_bytes: 134217728 pids_max: 8
         cpu_percent: 50 cpu_weight: 300 }
)";

TEST(SandboxSpecTest, ThePolicyBecomesTheSpawnRecipe) {
  auto p = Load(kPolicy);
  ASSERT_TRUE(p);
  zygote::SandboxSpec spec =
      BuildSandboxSpec(*p, 500010, zygote::SandboxSpec::CGROUP_V1, nullptr, true);
  EXPECT_EQ(spec.namespace_flags(),
            static_cast<uint64_t>(CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWUTS |
                                  CLONE_NEWIPC));
  EXPECT_EQ(spec.host_uid(), 500010u);
  EXPECT_EQ(spec.host_gid(), 500010u);
  EXPECT_EQ(spec.inside_uid(), ipc::kWorkerInsideUid);
  EXPECT_EQ(spec.cgroup(), zygote::SandboxSpec::CGROUP_V1);
  EXPECT_EQ(spec.seccomp_bpf().size(), p->bpf().size() * sizeof(sock_filter));
  bool nofile = false;
  for (const zygote::Rlimit& r : spec.rlimits()) {
    if (r.resource() == RLIMIT_NOFILE) {
      nofile = true;
      EXPECT_EQ(r.soft(), 16u);
      EXPECT_EQ(r.hard(), 16u);
    }
  }
  EXPECT_TRUE(nofile);
  EXPECT_EQ(spec.env_size(), 0);           // no GPU share: no CUDA variables
  EXPECT_EQ(spec.device_nodes_size(), 0);  // and no device nodes
}

TEST(SandboxSpecTest, CgroupLimitsComeFromTheEffectivePolicy) {
  auto p = Load(kPolicy);
  ASSERT_TRUE(p);
  cgroup::Limits limits = CgroupLimitsFor(p->proto(), nullptr);
  EXPECT_EQ(limits.memory_max, 268435456u);
  EXPECT_EQ(limits.memory_high, 134217728u);
  EXPECT_EQ(limits.swap_max, 0u);
  EXPECT_EQ(limits.pids_max, 8u);
  ASSERT_TRUE(limits.cpu);
  EXPECT_EQ(limits.cpu->quota_us, 50000u);
  EXPECT_EQ(limits.cpu->period_us, 100000u);
  EXPECT_EQ(limits.cpu_weight, 300u);
}

TEST(SandboxSpecTest, AGpuViewAddsItsDevicesEnvironmentAndDmem) {
  auto p = Load(kPolicy);
  ASSERT_TRUE(p);
  resources::WorkerGpuView view;
  view.device_nodes = {"/dev/nvidia0", "/dev/nvidiactl"};
  view.directories = {"/tmp/nvidia-mps"};
  view.env = {"CUDA_VISIBLE_DEVICES=GPU-1234"};
  view.device_memory = {{"drm/0000:03:00.0/vram0", 1 << 30}};
  zygote::SandboxSpec spec =
      BuildSandboxSpec(*p, 500010, zygote::SandboxSpec::CGROUP_V2, &view, true);
  EXPECT_EQ(spec.device_nodes_size(), 2);
  EXPECT_EQ(spec.bind_directories(0), "/tmp/nvidia-mps");
  EXPECT_EQ(spec.env(0), "CUDA_VISIBLE_DEVICES=GPU-1234");
  EXPECT_EQ(CgroupLimitsFor(p->proto(), &view).device_memory.size(), 1u);
}

TEST(SandboxSpecTest, InsecureModeAsksForNoSandbox) {
  auto p = Load(kPolicy);
  ASSERT_TRUE(p);
  zygote::SandboxSpec spec =
      BuildSandboxSpec(*p, 500010, zygote::SandboxSpec::CGROUP_NONE, nullptr, false);
  EXPECT_TRUE(spec.disabled());
  EXPECT_EQ(spec.namespace_flags(), 0u);
  EXPECT_TRUE(spec.seccomp_bpf().empty());
}

}  // namespace
}  // namespace cellhouse::supervisor
