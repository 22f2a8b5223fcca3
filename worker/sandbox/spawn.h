// The zygote's side of starting a sandboxed worker: clone3 into the policy's namespaces (with
// CLONE_PARENT, so celld is the parent and reaps it), write the id maps, place the child in its
// cgroup, release it, and read back how its own containment went.
//
//   CH_ASSIGN_OR_RETURN(SandboxPlan plan, SandboxPlan::Build(spec, control_fd, cgroup_fds));
//   SpawnOutcome out = SpawnSandboxed(plan, [&] { return ServeSession(...); });
//   if (!out.ok) ... out.failed_step, out.error, out.message; out.process (to reap) ...
//
// The plan is built before the fork because the child may not allocate; the filter was compiled
// by celld from the policy before it asked for the worker, and is installed last.
#ifndef CELLHOUSE_WORKER_SANDBOX_SPAWN_H_
#define CELLHOUSE_WORKER_SANDBOX_SPAWN_H_

#include <linux/filter.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "base/process.h"
#include "base/result.h"
#include "base/unique_fd.h"
#include "ipc/worker_contract.h"
#include "ipc/zygote.pb.h"
#include "worker/sandbox/capabilities.h"
#include "worker/sandbox/contain.h"
#include "worker/sandbox/steps.h"

namespace cellhouse::sandbox {

// Everything the parent and the child need, owned here, with the raw views ChildPlan points at.
class SandboxPlan {
 public:
  // Validates the spec (namespaces include user and mount unless disabled; the filter is a
  // whole number of instructions, at most BPF_MAXINSNS; a placement matches its descriptors).
  // The child keeps `control_fd` and `extra_fds` (the executor's channel to the zygote) open at
  // their numbers; every other descriptor is closed.
  static Result<SandboxPlan> Build(const zygote::SandboxSpec& spec, int control_fd,
                                   std::span<const UniqueFd> cgroup_fds,
                                   std::span<const int> extra_fds = {});
  SandboxPlan(SandboxPlan&&) noexcept = default;
  SandboxPlan& operator=(SandboxPlan&&) = delete;

  const zygote::SandboxSpec& spec() const { return spec_; }
  int control_fd() const { return control_fd_; }
  std::span<const UniqueFd> cgroup_fds() const { return cgroup_fds_; }
  // The child's half of the plan; it points into this object, which must outlive the fork.
  ChildPlan MakeChildPlan(int release_fd, int status_fd);

 private:
  SandboxPlan(const zygote::SandboxSpec& spec, int control_fd, std::span<const UniqueFd> cgroup_fds,
              std::span<const int> extra_fds, CapabilityPlan caps)
      : spec_(spec),
        control_fd_(control_fd),
        cgroup_fds_(cgroup_fds),
        extra_fds_(extra_fds.begin(), extra_fds.end()),
        caps_(std::move(caps)) {}
  Status Prepare();

  const zygote::SandboxSpec& spec_;
  int control_fd_;
  std::span<const UniqueFd> cgroup_fds_;
  std::vector<int> extra_fds_;
  CapabilityPlan caps_;
  std::vector<sock_filter> filter_;
  std::vector<RlimitSetting> rlimits_;
  std::vector<std::string> strings_;  // backing store for the C strings below
  std::vector<const char*> directories_;
  std::vector<const char*> bind_sources_;
  std::vector<const char*> bind_targets_;
  std::unique_ptr<bool[]> bind_is_directory_;
  std::string hostname_;
  std::vector<int> keep_fds_;  // sorted: control, status and extra_fds
};

struct SpawnOutcome {
  bool ok = false;
  // The worker (also on failure once clone3 succeeded: the caller still has to reap it).
  ChildProcess process;
  Step failed_step = Step::kClone;
  int error = 0;
  std::string message;  // "sandbox step 'pivot_root' failed: Operation not permitted (EPERM)"
  std::vector<std::pair<std::string, uint64_t>> step_micros;
};

// The child runs `serve` once contained and exits with its return value; it never returns here.
SpawnOutcome SpawnSandboxed(SandboxPlan& plan, const std::function<int()>& serve);

// Exit status of a child that failed to contain itself (it reported the step first).
inline constexpr int kSetupFailedExitCode = static_cast<int>(ipc::WorkerExit::kSetupFailed);

}  // namespace cellhouse::sandbox

#endif  // CELLHOUSE_WORKER_SANDBOX_SPAWN_H_
