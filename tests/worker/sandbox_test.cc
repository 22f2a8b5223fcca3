// A real sandboxed worker, spawned by a real zygote loop, inspected from outside while it serves
// a session. Privileged: runs as root in CI.
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <map>
#include <set>

#include <gtest/gtest.h>

#include "base/io.h"
#include "base/strings.h"
#include "ipc/client.h"
#include "ipc/control.pb.h"
#include "ipc/packet.h"
#include "tests/support/fake_engine.h"
#include "tests/support/zygote_harness.h"
#include "worker/sandbox/spawn.h"

namespace cellhouse {
namespace {

using testing::FakeEngine;

zygote_runtime::WorkerEntry FakeSessionEntry() {
  return zygote_runtime::MakeSessionWorkerEntry(
      [](const zygote::SessionLimits&,
         executor::WorkerSlot) -> Result<std::unique_ptr<session::TurnEngine>> {
        return std::unique_ptr<session::TurnEngine>(std::make_unique<FakeEngine>());
      });
}

std::map<std::string, std::string> ProcStatus(pid_t pid) {
  std::map<std::string, std::string> fields;
  auto text = ReadFileToString("/proc/" + std::to_string(pid) + "/status", 1 << 16);
  EXPECT_TRUE(text);
  if (!text) return fields;
  for (std::string_view line : Split(*text, '\n')) {
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    fields[std::string(line.substr(0, colon))] = std::string(Trim(line.substr(colon + 1)));
  }
  return fields;
}

std::string NamespaceOf(const std::string& pid, const std::string& ns) {
  char buf[64] = {};
  std::string path = "/proc/" + pid + "/ns/" + ns;
  ssize_t n = readlink(path.c_str(), buf, sizeof(buf) - 1);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
}

class SandboxTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root (user namespaces with host id maps)";
    auto filter = testing::ShippedDefaultFilter();
    ASSERT_TRUE(filter) << filter.error().message();
    filter_ = *filter;
  }

  struct Live {
    ChildProcess worker;
    UniqueFd channel;
  };

  Live SpawnWorker(testing::ZygoteHarness& zygote, uint32_t host_uid) {
    auto channel = MakeSocketPair(SOCK_SEQPACKET);
    EXPECT_TRUE(channel);
    zygote::SpawnRequest request;
    request.set_request_id(host_uid);
    request.set_session_id(std::string(16, 's'));
    *request.mutable_sandbox() = testing::TestSandboxSpec(host_uid, filter_);
    request.mutable_limits()->set_context_length(1000);
    request.mutable_limits()->set_max_new_tokens(8);
    auto spawned = zygote.Spawn(request, channel->second.get(), {});
    EXPECT_TRUE(spawned) << spawned.error().message();
    EXPECT_TRUE(spawned->reply.has_spawned()) << spawned->reply.DebugString();
    channel->second.reset();
    // The worker says Hello once its sandbox is complete.
    auto hello = ipc::ReceiveMessage<control::WorkerMessage>(channel->first.get(), {});
    EXPECT_TRUE(hello && hello->message.has_hello());
    return {std::move(spawned->worker), std::move(channel->first)};
  }

  static void Reap(Live& live) {
    ASSERT_TRUE(live.worker.Kill(SIGKILL));
    auto st = live.worker.Wait();
    ASSERT_TRUE(st);
  }

  std::string filter_;
};

TEST_F(SandboxTest, WorkerIsContainedAsSeenFromOutside) {
  testing::ZygoteHarness zygote(FakeSessionEntry());
  Live a = SpawnWorker(zygote, 3'100'000);
  Live b = SpawnWorker(zygote, 3'100'002);
  std::set<std::string> host_uids;
  for (Live* live : {&a, &b}) {
    auto status = ProcStatus(live->worker.pid());
    EXPECT_EQ(status["Seccomp"], "2");
    EXPECT_EQ(status["NoNewPrivs"], "1");
    for (const char* set : {"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"}) {
      EXPECT_EQ(status[set], "0000000000000000") << set;
    }
    std::string uid = std::string(Split(status["Uid"], '\t')[0]);
    EXPECT_NE(uid, "0");
    host_uids.insert(uid);
    std::string pid = std::to_string(live->worker.pid());
    for (const char* ns : {"user", "pid", "mnt", "uts", "ipc", "net"}) {
      EXPECT_NE(NamespaceOf(pid, ns), NamespaceOf("self", ns)) << ns;
    }
    // Its root is an empty directory.
    auto entries = ListDirectory("/proc/" + pid + "/root");
    ASSERT_TRUE(entries) << entries.error().message();
    EXPECT_TRUE(entries->empty());
    // Only the control channel is open.
    auto fds = ListDirectory("/proc/" + pid + "/fd");
    ASSERT_TRUE(fds);
    EXPECT_EQ(fds->size(), 1u);
  }
  EXPECT_EQ(host_uids, (std::set<std::string>{"3100001", "3100003"}));
  Reap(a);
  Reap(b);
}

TEST_F(SandboxTest, ContainedWorkerServesASession) {
  testing::ZygoteHarness zygote(FakeSessionEntry());
  Live live = SpawnWorker(zygote, 3'100'010);
  auto pair = MakeSocketPair(SOCK_STREAM);
  ASSERT_TRUE(pair);
  control::SupervisorMessage attach;
  attach.mutable_attach_client();
  ASSERT_TRUE(ipc::SendMessage(live.channel.get(), attach, {{pair->second.get()}}));
  pair->second.reset();
  ipc::ClientConnection client(std::move(pair->first));
  auto ready = client.Receive(5000);
  ASSERT_TRUE(ready && ready->has_ready());
  api::Request gen;
  gen.mutable_generate()->set_prompt("hi");
  gen.mutable_generate()->set_max_new_tokens(3);
  ASSERT_TRUE(client.Send(gen));
  std::string text;
  for (;;) {
    auto r = client.Receive(5000);
    ASSERT_TRUE(r) << r.error().message();
    if (r->has_piece()) {
      text += r->piece().text();
      continue;
    }
    ASSERT_TRUE(r->has_done()) << r->DebugString();
    break;
  }
  EXPECT_EQ(text, "t0 t1 t2 ");
  api::Request close;
  close.mutable_close();
  ASSERT_TRUE(client.Send(close));
  auto st = live.worker.Wait();
  ASSERT_TRUE(st);
  EXPECT_TRUE(st->Success()) << st->ToString();
}

TEST_F(SandboxTest, FailingStepIsReportedWithItsErrno) {
  testing::ZygoteHarness zygote(FakeSessionEntry());
  auto channel = MakeSocketPair(SOCK_SEQPACKET);
  ASSERT_TRUE(channel);
  zygote::SpawnRequest request;
  request.set_session_id(std::string(16, 'f'));
  *request.mutable_sandbox() = testing::TestSandboxSpec(3'100'020, filter_);
  // Raising a hard limit needs privilege in the initial namespace: setrlimit fails with EPERM.
  zygote::Rlimit* r = request.mutable_sandbox()->add_rlimits();
  r->set_resource(RLIMIT_NOFILE);
  r->set_soft(1 << 30);
  r->set_hard(1 << 30);
  auto spawned = zygote.Spawn(request, channel->second.get(), {});
  ASSERT_TRUE(spawned);
  ASSERT_TRUE(spawned->reply.has_failed());
  EXPECT_EQ(spawned->reply.failed().step(), "setrlimit");
  EXPECT_EQ(spawned->reply.failed().errno_value(), EPERM);
  EXPECT_NE(spawned->reply.failed().message().find("EPERM"), std::string::npos);
  ASSERT_TRUE(spawned->worker.valid());
  auto st = spawned->worker.Wait();
  ASSERT_TRUE(st);
  EXPECT_EQ(st->code, sandbox::kSetupFailedExitCode);
}

// Out of descriptors before the fork: the failure names the handshake step and the errno the
// kernel gave (not a guessed EMFILE under the step that never ran, clone3), and no child exists.
TEST_F(SandboxTest, HandshakePipesThatCannotBeMadeAreReportedAsSuch) {
  zygote::SandboxSpec spec = testing::TestSandboxSpec(3'100'040, filter_);
  auto channel = MakeSocketPair(SOCK_SEQPACKET);
  ASSERT_TRUE(channel);
  auto plan = sandbox::SandboxPlan::Build(spec, channel->second.get(), {});
  ASSERT_TRUE(plan) << plan.error().message();
  // The lowest free descriptor becomes the limit: the next one cannot be made.
  int lowest = ::fcntl(0, F_DUPFD_CLOEXEC, 0);
  ASSERT_GE(lowest, 0);
  ::close(lowest);
  rlimit saved{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &saved), 0);
  rlimit tight = saved;
  tight.rlim_cur = static_cast<rlim_t>(lowest);
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &tight), 0);
  sandbox::SpawnOutcome out = sandbox::SpawnSandboxed(*plan, [] { return 0; });
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &saved), 0);
  EXPECT_FALSE(out.ok);
  EXPECT_EQ(out.failed_step, sandbox::Step::kHandshake);
  EXPECT_EQ(out.error, EMFILE);
  EXPECT_NE(out.message.find("sandbox step 'handshake pipes' failed: pipe2"), std::string::npos)
      << out.message;
  EXPECT_FALSE(out.process.valid());
}

TEST_F(SandboxTest, ForbiddenSyscallKillsWithSigsys) {
  testing::ZygoteHarness zygote(
      [](UniqueFd, const zygote::SpawnRequest&, executor::WorkerSlot) -> int {
        // Not on the allow-list: the filter kills the whole process.
        return static_cast<int>(getppid());
      });
  auto channel = MakeSocketPair(SOCK_SEQPACKET);
  ASSERT_TRUE(channel);
  zygote::SpawnRequest request;
  *request.mutable_sandbox() = testing::TestSandboxSpec(3'100'030, filter_);
  auto spawned = zygote.Spawn(request, channel->second.get(), {});
  ASSERT_TRUE(spawned);
  ASSERT_TRUE(spawned->reply.has_spawned());
  auto st = spawned->worker.Wait();
  ASSERT_TRUE(st);
  EXPECT_EQ(st->kind, ExitStatus::Kind::kSignaled);
  EXPECT_EQ(st->signal, SIGSYS);
}

}  // namespace
}  // namespace cellhouse
