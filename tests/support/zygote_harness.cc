#include "tests/support/zygote_harness.h"

#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "base/io.h"
#include "base/print.h"
#include "ipc/packet.h"
#include "policy/policy.h"
#include "tests/support/test_env.h"

namespace cellhouse::testing {

ZygoteHarness::ZygoteHarness(zygote_runtime::WorkerEntry entry,
                             std::optional<zygote_runtime::ExecutorSupport> executor) {
  auto pair = MakeSocketPair(SOCK_SEQPACKET);
  if (!pair) {
    ADD_FAILURE() << pair.error().message();
    return;
  }
  pid_t pid = ::fork();
  if (pid == 0) {
    pair->first.reset();
    zygote::ZygoteReady ready;
    ready.set_pid(::getpid());
    zygote_runtime::Zygote zygote(std::move(pair->second), ready, std::move(entry),
                                  std::move(executor));
    Status st = zygote.Run();
    if (!st) {
      Printf(stderr, "test zygote: %s\n", st.error().message().c_str());
      ::_exit(1);
    }
    ::_exit(0);
  }
  pair->second.reset();
  channel_ = std::move(pair->first);
  auto child = ChildProcess::FromPid(pid);
  if (!child) {
    ADD_FAILURE() << child.error().message();
    return;
  }
  zygote_ = std::move(*child);
  auto ready = ipc::ReceiveMessage<zygote::ZygoteReady>(channel_.get(), {});
  EXPECT_TRUE(ready && !ready->end_of_stream) << "the test zygote did not start";
}

ZygoteHarness::~ZygoteHarness() {
  channel_.reset();
  if (zygote_.valid()) {
    auto st = zygote_.Wait();
    EXPECT_TRUE(st && st->Success()) << (st ? st->ToString() : st.error().message());
  }
}

Result<ZygoteHarness::Spawned> ZygoteHarness::Spawn(const zygote::SpawnRequest& request,
                                                    int control_end,
                                                    const std::vector<int>& cgroup_fds) {
  std::vector<int> fds = {control_end};
  fds.insert(fds.end(), cgroup_fds.begin(), cgroup_fds.end());
  CH_RETURN_IF_ERROR(ipc::SendMessage(channel_.get(), request, fds));
  CH_ASSIGN_OR_RETURN(auto reply,
                      ipc::ReceiveMessage<zygote::SpawnReply>(channel_.get(), {.max_fds = 1}));
  if (reply.end_of_stream) return Error("the zygote closed the channel");
  Spawned out;
  out.reply = reply.message;
  if (!reply.fds.empty()) {
    pid_t pid = reply.message.has_spawned() ? reply.message.spawned().pid() : -1;
    out.worker = ChildProcess(pid, std::move(reply.fds[0]));
  }
  return out;
}

Result<std::string> ShippedDefaultFilter() {
  CH_ASSIGN_OR_RETURN(
      std::shared_ptr<const policy::CompiledPolicy> p,
      policy::LoadPolicyFile(SourceDir() + "/policy/examples/default.textproto", nullptr));
  std::span<const sock_filter> bpf = p->bpf();
  return std::string(reinterpret_cast<const char*>(bpf.data()), bpf.size() * sizeof(sock_filter));
}

zygote::SandboxSpec TestSandboxSpec(uint32_t host_uid, const std::string& filter) {
  zygote::SandboxSpec spec;
  spec.set_namespace_flags(CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWUTS |
                           CLONE_NEWIPC | CLONE_NEWNET);
  spec.set_host_uid(host_uid);
  spec.set_host_gid(host_uid);
  spec.set_hostname("cell-test");
  spec.set_seccomp_bpf(filter);
  for (auto [resource, value] : {std::pair{RLIMIT_CORE, 0ul}, std::pair{RLIMIT_FSIZE, 0ul},
                                 std::pair{RLIMIT_NOFILE, 32ul}}) {
    zygote::Rlimit* r = spec.add_rlimits();
    r->set_resource(resource);
    r->set_soft(value);
    r->set_hard(value);
  }
  return spec;
}

}  // namespace cellhouse::testing
