// The shared executor as the zygote really starts it: forked into its sandbox with its own seccomp
// list, serving slots the zygote gives sandboxed workers. Checked from outside (/proc) and by what
// the workers get. Privileged: runs as root in CI.
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <map>
#include <memory>
#include <string>

#include <gtest/gtest.h>

#include "base/clock.h"
#include "base/io.h"
#include "base/process.h"
#include "base/strings.h"
#include "executor/executor_filter.h"
#include "executor/executor_process.h"
#include "executor/slot_client.h"
#include "executor/thread_pool.h"
#include "ipc/executor.pb.h"
#include "ipc/packet.h"
#include "tests/executor/fake_compute.h"
#include "tests/executor/rig.h"
#include "tests/support/zygote_harness.h"

namespace cellhouse::testing {
namespace {

using executor::FailoverReason;

std::map<std::string, std::string> ProcStatus(pid_t pid) {
  std::map<std::string, std::string> fields;
  auto text = ReadFileToString("/proc/" + std::to_string(pid) + "/status", 1 << 16);
  if (!text) return fields;
  for (std::string_view line : Split(*text, '\n')) {
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    fields[std::string(line.substr(0, colon))] = std::string(Trim(line.substr(colon + 1)));
  }
  return fields;
}

// Lines of /proc/PID/maps that contain `what`.
int MapsLines(pid_t pid, std::string_view what) {
  auto text = ReadFileToString("/proc/" + std::to_string(pid) + "/maps", 1 << 22);
  EXPECT_TRUE(text);
  int n = 0;
  for (std::string_view line : Split(text ? *text : "", '\n')) {
    n += line.find(what) != std::string_view::npos ? 1 : 0;
  }
  return n;
}

// The worker: waits for a byte on its control channel (so the test can look at it first), runs
// a fake session of `steps` given in the request's session id, and sends its SessionResult back.
int SlotWorker(UniqueFd control, const zygote::SpawnRequest& request, executor::WorkerSlot slot) {
  char go = 0;
  if (::read(control.get(), &go, 1) != 1) return 1;
  executor::SlotClient client(slot);
  const uint32_t steps = static_cast<uint32_t>(std::stoul(request.session_id()));
  SessionResult result =
      RunFakeSession(client, {.seed = static_cast<uint32_t>(request.request_id()), .steps = steps});
  if (::write(control.get(), &result, sizeof(result)) != sizeof(result)) return 1;
  return 0;
}

zygote_runtime::ExecutorSupport FakeExecutor() {
  return {.shape = SmallShape(),
          .entry = [](executor::ExecutorChannels channels, const zygote::ExecutorSpec& spec) {
            return executor::RunExecutorWith(
                std::move(channels), spec, []() -> Result<std::unique_ptr<executor::StepCompute>> {
                  return std::unique_ptr<executor::StepCompute>(
                      std::make_unique<FakeCompute>(SmallShape()));
                });
          }};
}

class ExecutorSandboxTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root (user namespaces with host id maps)";
    auto worker_filter = ShippedDefaultFilter();
    ASSERT_TRUE(worker_filter) << worker_filter.error().message();
    worker_filter_ = *worker_filter;
    auto executor_filter = executor::ExecutorFilterBytes();
    ASSERT_TRUE(executor_filter) << executor_filter.error().message();
    executor_filter_ = *executor_filter;
  }

  struct Live {
    ChildProcess process;
    UniqueFd channel;  // the test's end of its control channel
    bool has_slot = false;
  };

  Live StartExecutor(ZygoteHarness& zygote) {
    auto channel = MakeSocketPair(SOCK_SEQPACKET);
    EXPECT_TRUE(channel);
    zygote::SpawnRequest request;
    request.set_request_id(1);
    *request.mutable_sandbox() = TestSandboxSpec(3'200'000, executor_filter_);
    request.mutable_executor()->set_report_interval_ms(100);
    auto spawned = zygote.Spawn(request, channel->second.get(), {});
    EXPECT_TRUE(spawned) << spawned.error().message();
    EXPECT_TRUE(spawned->reply.has_spawned()) << spawned->reply.DebugString();
    return {std::move(spawned->worker), std::move(channel->first)};
  }

  Live StartWorker(ZygoteHarness& zygote, uint64_t slot_id, uint32_t steps) {
    auto channel = MakeSocketPair(SOCK_SEQPACKET);
    EXPECT_TRUE(channel);
    zygote::SpawnRequest request;
    request.set_request_id(slot_id);
    request.set_session_id(std::to_string(steps));
    request.set_executor_slot(slot_id);
    *request.mutable_sandbox() =
        TestSandboxSpec(3'200'010 + 2 * static_cast<uint32_t>(slot_id), worker_filter_);
    auto spawned = zygote.Spawn(request, channel->second.get(), {});
    EXPECT_TRUE(spawned) << spawned.error().message();
    EXPECT_TRUE(spawned->reply.has_spawned()) << spawned->reply.DebugString();
    return {std::move(spawned->worker), std::move(channel->first),
            spawned->reply.spawned().executor_slot()};
  }

  static SessionResult Finish(Live& worker) {
    char go = 1;
    EXPECT_EQ(::write(worker.channel.get(), &go, 1), 1);
    SessionResult result;
    EXPECT_TRUE(ReadFull(worker.channel.get(),
                         std::as_writable_bytes(std::span<SessionResult>(&result, 1)),
                         "a worker's result"));
    auto st = worker.process.Wait();
    EXPECT_TRUE(st && st->Success()) << (st ? st->ToString() : st.error().message());
    return result;
  }

  std::string worker_filter_;
  std::string executor_filter_;
};

TEST_F(ExecutorSandboxTest, TheExecutorRunsConfinedAndServesSandboxedWorkers) {
  ZygoteHarness zygote(&SlotWorker, FakeExecutor());
  Live exec = StartExecutor(zygote);
  const pid_t pid = exec.process.pid();
  ::usleep(200'000);
  {
    auto early = exec.process.TryReap();
    ASSERT_TRUE(early);
    ASSERT_FALSE(early->has_value()) << "the executor ended: " << (*early)->ToString();
  }
  // Its threads come up once it is contained: one per CPU of its affinity mask.
  std::map<std::string, std::string> status;
  const int64_t give_up = MonotonicNanos() + 5 * kNanosPerSecond;
  do {
    status = ProcStatus(pid);
  } while (status["Threads"] != std::to_string(cellhouse::CpusAllowed()) &&
           MonotonicNanos() < give_up && ::usleep(10'000) == 0);
  EXPECT_EQ(status["Threads"], std::to_string(cellhouse::CpusAllowed()));
  EXPECT_EQ(status["Seccomp"], "2");
  EXPECT_EQ(status["NoNewPrivs"], "1");
  for (const char* set : {"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"}) {
    EXPECT_EQ(status[set], "0000000000000000") << set;
  }
  EXPECT_NE(std::string(Split(status["Uid"], '\t')[0]), "0");
  // Its root is empty; it holds its two channels and nothing else.
  auto root = ListDirectory("/proc/" + std::to_string(pid) + "/root");
  ASSERT_TRUE(root);
  EXPECT_TRUE(root->empty());
  auto fds = ListDirectory("/proc/" + std::to_string(pid) + "/fd");
  ASSERT_TRUE(fds);
  EXPECT_EQ(fds->size(), 2u);

  Live workers[3] = {StartWorker(zygote, 1, 60), StartWorker(zygote, 2, 60),
                     StartWorker(zygote, 3, 60)};
  for (Live& w : workers) {
    EXPECT_TRUE(w.has_slot);
    // Each worker maps its own slot and nothing the zygote shares with the executor.
    EXPECT_EQ(MapsLines(w.process.pid(), "memfd:cellhouse-slot"), 1);
    EXPECT_EQ(MapsLines(w.process.pid(), "/dev/zero"), 0);
  }
  for (Live& w : workers) {
    SessionResult r = Finish(w);
    EXPECT_EQ(r.steps_done, 60u);
    EXPECT_EQ(r.mismatches, 0u);
    EXPECT_EQ(r.failover_step, kNoFailover)
        << executor::FailoverReasonName(static_cast<FailoverReason>(r.failover_reason));
    EXPECT_GT(r.exchanges, 0u);
  }
  // It survived its batch loop under its filter, and reports what each slot cost.
  auto alive = exec.process.TryReap();
  ASSERT_TRUE(alive);
  EXPECT_FALSE(alive->has_value()) << (*alive)->ToString();
  EXPECT_EQ(MapsLines(pid, "memfd:cellhouse-slot"), 3);
  uint64_t rows_reported = 0;
  while (rows_reported == 0) {
    auto report = ipc::ReceiveMessage<executor_ipc::ExecutorReport>(exec.channel.get(), {});
    ASSERT_TRUE(report && !report->end_of_stream);
    for (const executor_ipc::SlotUsage& u : report->message.slots()) rows_reported += u.rows();
    EXPECT_EQ(report->message.threads(), static_cast<uint32_t>(cellhouse::CpusAllowed()));
  }

  // Killed in the middle of a session, the executor sends its worker to its own path at once.
  Live last = StartWorker(zygote, 4, 3000);
  ASSERT_TRUE(last.has_slot);
  char go = 1;
  ASSERT_EQ(::write(last.channel.get(), &go, 1), 1);
  ::usleep(100'000);
  ASSERT_TRUE(exec.process.Kill(SIGKILL));
  auto st = exec.process.Wait();
  ASSERT_TRUE(st);
  EXPECT_EQ(st->signal, SIGKILL) << st->ToString();  // not SIGSYS: the filter never fired
  SessionResult result;
  ASSERT_TRUE(ReadFull(last.channel.get(),
                       std::as_writable_bytes(std::span<SessionResult>(&result, 1)), "result"));
  EXPECT_EQ(result.steps_done, 3000u);
  EXPECT_EQ(result.mismatches, 0u);
  EXPECT_NE(result.failover_step, kNoFailover);
  EXPECT_EQ(static_cast<FailoverReason>(result.failover_reason), FailoverReason::kExecutorGone);
  auto last_status = last.process.Wait();
  ASSERT_TRUE(last_status);
  EXPECT_TRUE(last_status->Success()) << last_status->ToString();

  // With the executor gone, a new worker gets no slot and computes alone.
  Live alone = StartWorker(zygote, 5, 5);
  EXPECT_FALSE(alone.has_slot);
  SessionResult r = Finish(alone);
  EXPECT_EQ(r.steps_done, 5u);
  EXPECT_EQ(static_cast<FailoverReason>(r.failover_reason), FailoverReason::kNoSlot);
}

TEST_F(ExecutorSandboxTest, StoppedByCelldItSendsItsWorkersToTheirOwnPath) {
  ZygoteHarness zygote(&SlotWorker, FakeExecutor());
  Live exec = StartExecutor(zygote);
  Live worker = StartWorker(zygote, 1, 3000);
  ASSERT_TRUE(worker.has_slot);
  char go = 1;
  ASSERT_EQ(::write(worker.channel.get(), &go, 1), 1);
  ::usleep(100'000);
  executor_ipc::ExecutorControl stop;
  stop.mutable_stop();
  ASSERT_TRUE(ipc::SendMessage(exec.channel.get(), stop));
  auto st = exec.process.Wait();
  ASSERT_TRUE(st);
  EXPECT_TRUE(st->Success()) << st->ToString();
  SessionResult result;
  ASSERT_TRUE(ReadFull(worker.channel.get(),
                       std::as_writable_bytes(std::span<SessionResult>(&result, 1)), "result"));
  EXPECT_EQ(result.steps_done, 3000u);
  EXPECT_EQ(result.mismatches, 0u);
  EXPECT_NE(result.failover_step, kNoFailover);
  // Told by its liveness word (kExecutorGone), not by waiting out the response timeout (that
  // would be kNoAnswer): the reason says which, whatever the machine's speed.
  EXPECT_EQ(static_cast<FailoverReason>(result.failover_reason), FailoverReason::kExecutorGone);
  auto ws = worker.process.Wait();
  ASSERT_TRUE(ws);
  EXPECT_TRUE(ws->Success()) << ws->ToString();
}

TEST_F(ExecutorSandboxTest, AZygoteWithoutSupportRefusesToStartOne) {
  ZygoteHarness zygote(&SlotWorker);
  auto channel = MakeSocketPair(SOCK_SEQPACKET);
  ASSERT_TRUE(channel);
  zygote::SpawnRequest request;
  *request.mutable_sandbox() = TestSandboxSpec(3'200'100, executor_filter_);
  request.mutable_executor();
  auto spawned = zygote.Spawn(request, channel->second.get(), {});
  ASSERT_TRUE(spawned);
  ASSERT_TRUE(spawned->reply.has_failed());
  EXPECT_NE(spawned->reply.failed().message().find("cannot start an executor"), std::string::npos);
}

}  // namespace
}  // namespace cellhouse::testing
