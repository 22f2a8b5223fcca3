// Runs a real zygote loop in a forked child of the test, so the test process stands where celld
// does: workers (and the executor, given ExecutorSupport) are cloned with CLONE_PARENT and become
// the test's children.
//
//   ZygoteHarness zygote(entry);
//   auto reply = zygote.Spawn(request, control_end, {});   // the SpawnReply and the pidfd
#ifndef CELLHOUSE_TESTS_SUPPORT_ZYGOTE_HARNESS_H_
#define CELLHOUSE_TESTS_SUPPORT_ZYGOTE_HARNESS_H_

#include <linux/filter.h>

#include <optional>
#include <string>
#include <vector>

#include "base/process.h"
#include "base/result.h"
#include "base/unique_fd.h"
#include "ipc/zygote.pb.h"
#include "worker/zygote/zygote.h"

namespace cellhouse::testing {

class ZygoteHarness {
 public:
  explicit ZygoteHarness(zygote_runtime::WorkerEntry entry,
                         std::optional<zygote_runtime::ExecutorSupport> executor = std::nullopt);
  ~ZygoteHarness();

  struct Spawned {
    zygote::SpawnReply reply;
    ChildProcess worker;  // valid once clone3 succeeded (also on failure)
  };
  // Sends one request with the worker's control end (and cgroup fds) and waits for the reply.
  Result<Spawned> Spawn(const zygote::SpawnRequest& request, int control_end,
                        const std::vector<int>& cgroup_fds);

 private:
  UniqueFd channel_;
  ChildProcess zygote_;
};

// The seccomp program of the shipped default policy (policy/examples/default.textproto), as the
// raw bytes a SandboxSpec carries.
Result<std::string> ShippedDefaultFilter();

// A SandboxSpec with every namespace, the given host ids and filter.
zygote::SandboxSpec TestSandboxSpec(uint32_t host_uid, const std::string& filter);

}  // namespace cellhouse::testing

#endif  // CELLHOUSE_TESTS_SUPPORT_ZYGOTE_HARNESS_H_
