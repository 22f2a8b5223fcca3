// The executor's batch loop between real processes (no sandbox): workers get exactly what their
// own computation gives, alone or batched with any neighbours; a neighbour killed, stopped or
// writing garbage mid-step costs the others one bounded wait and never a wrong answer; an
// executor that dies sends every worker to its own path at once.
#include "executor/batch_loop.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <memory>
#include <random>

#include <gtest/gtest.h>

#include "base/clock.h"
#include "base/process.h"
#include "executor/futex.h"
#include "executor/slot_client.h"
#include "executor/thread_pool.h"
#include "tests/executor/fake_compute.h"
#include "tests/executor/rig.h"

namespace cellhouse::testing {
namespace {

using executor::ExecutorOptions;
using executor::FailoverReason;
using executor::SlotClient;
using executor::SlotEvent;

ExecutorOptions TestOptions() {
  ExecutorOptions o;
  o.gather_window_max_ns = 50 * kNanosPerMilli;
  o.slot_timeout_ns = 400 * kNanosPerMilli;
  return o;
}

std::function<SessionResult(SlotClient&)> Session(const SessionPlan& plan) {
  return [plan](SlotClient& c) { return RunFakeSession(c, plan); };
}

void ExpectClean(const SessionResult& r, uint32_t steps, const char* who) {
  EXPECT_EQ(r.steps_done, steps) << who;
  EXPECT_EQ(r.mismatches, 0u) << who;
  EXPECT_EQ(r.failover_step, kNoFailover)
      << who << " failed over: "
      << executor::FailoverReasonName(static_cast<FailoverReason>(r.failover_reason));
  EXPECT_GT(r.exchanges, 0u) << who;
}

TEST(BatchLoopTest, OneWorkerGetsExactlyItsOwnComputation) {
  ExecutorRig rig(SmallShape(), TestOptions(), 1);
  rig.StartExecutor();
  rig.StartWorker(0, Session({.seed = 3, .steps = 30}));
  ExpectClean(rig.WaitWorker(0), 30, "worker 0");
  ExecutorSummary s = rig.StopExecutor();
  EXPECT_GT(s.batches, 0u);
  EXPECT_TRUE(HasEvent(s, 0, SlotEvent::Kind::kAttached));
}

TEST(BatchLoopTest, NeighboursAreBatchedAndStillGetTheirOwnResults) {
  constexpr int kWorkers = 8;
  constexpr uint32_t kSteps = 40;
  ExecutorRig rig(SmallShape(), TestOptions(), kWorkers);
  rig.StartExecutor();
  for (int i = 0; i < kWorkers; ++i) {
    rig.StartWorker(i, Session({.seed = static_cast<uint32_t>(100 + i), .steps = kSteps}));
  }
  uint64_t exchanges = 0;
  for (int i = 0; i < kWorkers; ++i) {
    SessionResult r = rig.WaitWorker(i);
    ExpectClean(r, kSteps, "a worker");
    exchanges += r.exchanges;
  }
  ExecutorSummary s = rig.StopExecutor();
  // Fewer batches than rounds answered: slots shared batches (and each still matched its own
  // computation bit for bit, above).
  EXPECT_LT(s.batches, exchanges);
  std::printf("%d workers: %llu exchanges in %llu batches (%.2f slots per batch)\n", kWorkers,
              static_cast<unsigned long long>(exchanges),
              static_cast<unsigned long long>(s.batches),
              static_cast<double>(exchanges) / static_cast<double>(s.batches));
}

// A gather naps through its first arrivals: the executor sets `napping` in the headers of the
// slots it waits for, their workers then send without waking it, and it takes what came at the
// nap's end. Every answer stays exact with naps and without, and there are naps only where
// allowed; how often the executor slept per batch each way is printed, not asserted (it depends
// on the machine's load).
TEST(BatchLoopTest, AGatherNapsThroughArrivalsAndEveryAnswerStaysExact) {
  constexpr int kWorkers = 4;
  constexpr uint32_t kSteps = 40;
  ExecutorSummary summaries[2];
  for (int nap = 0; nap < 2; ++nap) {
    ExecutorOptions options = TestOptions();
    options.max_nap_ns = nap == 1 ? ExecutorOptions{}.max_nap_ns : 0;
    ExecutorRig rig(SmallShape(), options, kWorkers);
    rig.StartExecutor();
    for (int i = 0; i < kWorkers; ++i) {
      SessionPlan plan{.seed = static_cast<uint32_t>(20 + i), .steps = kSteps, .prefill = false};
      // Each round's attention: 200 µs of the worker's own, so that arrivals spread out.
      plan.after_round = [](uint32_t, uint32_t, SlotClient&) {
        const int64_t until = MonotonicNanos() + 200'000;
        while (MonotonicNanos() < until) {
        }
      };
      rig.StartWorker(i, Session(plan));
    }
    for (int i = 0; i < kWorkers; ++i) ExpectClean(rig.WaitWorker(i), kSteps, "a worker");
    summaries[nap] = rig.StopExecutor();
    EXPECT_FALSE(summaries[nap].wait_failed);
  }
  EXPECT_EQ(summaries[0].naps, 0u) << "max_nap_ns 0 napped";
  EXPECT_GT(summaries[1].naps, 0u) << "no gather napped";
  for (int nap = 0; nap < 2; ++nap) {
    std::printf(
        "%s: %llu batches, %.2f sleeps per batch (%llu naps)\n", nap == 1 ? "with naps" : "without",
        static_cast<unsigned long long>(summaries[nap].batches),
        static_cast<double>(summaries[nap].sleeps) / static_cast<double>(summaries[nap].batches),
        static_cast<unsigned long long>(summaries[nap].naps));
  }
}

// A neighbour that dies or stops mid-step: the others wait for it once (one gather window), it is
// then late and never waited for again, and after the slot timeout it is dropped.
void CheckOneBadNeighbour(int signal) {
  constexpr int kWorkers = 4;
  constexpr uint32_t kSteps = 40;
  // A fixed window, long enough that no honest neighbour is ever late on a loaded machine:
  // then the only lateness is the stopped one's.
  ExecutorOptions options = TestOptions();
  options.gather_window_min_ns = options.gather_window_max_ns;
  ExecutorRig rig(SmallShape(), options, kWorkers);
  rig.StartExecutor();
  SessionPlan bad{.seed = 1, .steps = kSteps, .prefill = false};
  bad.after_round = [signal](uint32_t step, uint32_t round, SlotClient&) {
    if (step == 5 && round == 1) {
      static_cast<void>(::raise(signal));  // mid-step: round 2 is expected next
    }
  };
  rig.StartWorker(0, Session(bad));
  for (int i = 1; i < kWorkers; ++i) {
    rig.StartWorker(i, Session({.seed = static_cast<uint32_t>(10 + i), .steps = kSteps}));
  }
  int64_t worst = 0;
  for (int i = 1; i < kWorkers; ++i) {
    SessionResult r = rig.WaitWorker(i);
    ExpectClean(r, kSteps, "a neighbour");
    worst = std::max(worst, r.max_exchange_ns);
  }
  std::printf("signal %d: neighbours' slowest exchange %.1f ms (window at most %.0f ms)\n", signal,
              static_cast<double>(worst) / 1e6, 50.0);
  // Wait past the slot timeout so the executor drops the silent slot.
  ::usleep(600'000);
  if (signal == SIGSTOP) {
    // Back from the stop, the worker finds its slot dropped and finishes on its own path.
    ASSERT_TRUE(rig.worker(0).Kill(SIGCONT));
    SessionResult r = rig.WaitWorker(0);
    EXPECT_EQ(r.steps_done, kSteps);
    EXPECT_EQ(r.mismatches, 0u);
    EXPECT_EQ(r.failover_step, 5u);
    EXPECT_EQ(static_cast<FailoverReason>(r.failover_reason), FailoverReason::kDropped);
  } else {
    auto st = rig.worker(0).Wait();
    ASSERT_TRUE(st);
    EXPECT_EQ(st->signal, SIGKILL);
  }
  ExecutorSummary s = rig.StopExecutor();
  EXPECT_TRUE(HasEvent(s, 0, SlotEvent::Kind::kTimedOut));
  // The executor let it hold a batch up once, and only once.
  EXPECT_EQ(s.late[0], 1u);
  for (int i = 1; i < kWorkers; ++i) EXPECT_FALSE(HasEvent(s, i, SlotEvent::Kind::kTimedOut));
}

TEST(BatchLoopTest, AKilledNeighbourCostsOneBoundedWait) { CheckOneBadNeighbour(SIGKILL); }

TEST(BatchLoopTest, AStoppedNeighbourCostsOneBoundedWaitAndFailsOverWhenResumed) {
  CheckOneBadNeighbour(SIGSTOP);
}

TEST(BatchLoopTest, GarbageInAHeaderDropsOnlyItsWriter) {
  constexpr int kWorkers = 3;
  constexpr uint32_t kSteps = 30;
  ExecutorRig rig(SmallShape(), TestOptions(), kWorkers);
  rig.StartExecutor();
  const executor::WorkerSlot view = rig.slot_view(0);
  SessionPlan bad{.seed = 5, .steps = kSteps};
  bad.after_round = [view](uint32_t step, uint32_t round, SlotClient&) {
    if (step != 4 || round != 1) return;
    executor::SlotHeader* h = executor::HeaderOf(view.base);
    h->rows.store(0xffffffff);
    h->round.store(0x7fffffff);
    h->command.store(1);
    h->request.fetch_add(1);  // a message the executor must take, check and refuse
    executor::FutexWake(&h->request);
    ::usleep(100'000);  // before the honest client overwrites it with its next round
  };
  rig.StartWorker(0, Session(bad));
  for (int i = 1; i < kWorkers; ++i) {
    rig.StartWorker(i, Session({.seed = static_cast<uint32_t>(20 + i), .steps = kSteps}));
  }
  SessionResult r0 = rig.WaitWorker(0);
  EXPECT_EQ(r0.steps_done, kSteps);
  EXPECT_EQ(r0.mismatches, 0u);  // its own answers before the garbage were right, too
  EXPECT_EQ(r0.failover_step, 4u);
  EXPECT_EQ(static_cast<FailoverReason>(r0.failover_reason), FailoverReason::kViolation);
  for (int i = 1; i < kWorkers; ++i) ExpectClean(rig.WaitWorker(i), kSteps, "a neighbour");
  ExecutorSummary s = rig.StopExecutor();
  EXPECT_TRUE(HasEvent(s, 0, SlotEvent::Kind::kViolation));
  for (int i = 1; i < kWorkers; ++i) EXPECT_FALSE(HasEvent(s, i, SlotEvent::Kind::kViolation));
}

TEST(BatchLoopTest, AScribblerDuringTheBatchCannotReachItsNeighbours) {
  constexpr int kWorkers = 3;
  constexpr uint32_t kSteps = 60;
  ExecutorRig rig(SmallShape(), TestOptions(), kWorkers);
  rig.StartExecutor();
  const executor::WorkerSlot view = rig.slot_view(0);
  // Worker 0 runs honest sessions while a second process with the same mapping rewrites its
  // rows and header fields at random, all the time: whatever the executor copies, at whatever
  // moment, only slot 0's answers can be wrong.
  rig.StartWorker(0, [view](SlotClient& c) {
    pid_t scribbler = ::fork();
    if (scribbler == 0) {
      std::mt19937 rng(7);
      executor::SlotHeader* h = executor::HeaderOf(view.base);
      float* payload = executor::PayloadOf(view.base);
      const size_t floats = (view.bytes - executor::kSlotHeaderBytes) / sizeof(float);
      for (;;) {
        payload[rng() % floats] = static_cast<float>(rng()) * 1e30F;
        switch (rng() % 64) {
          case 0:
            h->rows.store(rng() % 8);
            break;
          case 1:
            h->kind.store(rng() % 4);
            break;
          case 2:
            h->round.store(rng() % 6);
            break;
          default:
            break;
        }
      }
    }
    SessionResult r = RunFakeSession(c, {.seed = 9, .steps = kSteps});
    ::kill(scribbler, SIGKILL);
    ::waitpid(scribbler, nullptr, 0);
    return r;
  });
  for (int i = 1; i < kWorkers; ++i) {
    rig.StartWorker(i, Session({.seed = static_cast<uint32_t>(30 + i), .steps = kSteps}));
  }
  SessionResult r0 = rig.WaitWorker(0);
  EXPECT_EQ(r0.steps_done, kSteps);  // it ends, one way or another
  for (int i = 1; i < kWorkers; ++i) ExpectClean(rig.WaitWorker(i), kSteps, "a neighbour");
  ExecutorSummary s = rig.StopExecutor();  // and the executor is still there to stop
  for (int i = 1; i < kWorkers; ++i) EXPECT_EQ(s.events[i], 1U << 0) << "only ATTACHED";
}

TEST(BatchLoopTest, AnExecutorThatDiesSendsEveryWorkerToItsOwnPath) {
  constexpr int kWorkers = 3;
  constexpr uint32_t kSteps = 400;
  ExecutorRig rig(SmallShape(), TestOptions(), kWorkers);
  rig.StartExecutor();
  for (int i = 0; i < kWorkers; ++i) {
    rig.StartWorker(i, Session({.seed = static_cast<uint32_t>(40 + i), .steps = kSteps}));
  }
  ::usleep(50'000);  // mid-run
  ASSERT_TRUE(rig.executor().Kill(SIGKILL));
  auto st = rig.executor().Wait();
  ASSERT_TRUE(st);
  for (int i = 0; i < kWorkers; ++i) {
    SessionResult r = rig.WaitWorker(i);
    EXPECT_EQ(r.steps_done, kSteps);
    EXPECT_EQ(r.mismatches, 0u);
    ASSERT_NE(r.failover_step, kNoFailover) << "worker " << i << " finished before the kill";
    // Found out through the liveness word (kExecutorGone), not by waiting out the response
    // timeout (that would be kNoAnswer): the reason says which, whatever the machine's speed.
    EXPECT_EQ(static_cast<FailoverReason>(r.failover_reason), FailoverReason::kExecutorGone);
  }
}

TEST(BatchLoopTest, IdleWorkersAreNotWaitedForAndLeaversAreForgotten) {
  ExecutorRig rig(SmallShape(), TestOptions(), 2);
  rig.StartExecutor();
  // Worker 0 runs one short turn, goes idle and stays alive; worker 1 then runs alone. If the
  // executor waited for the idle one, every round of worker 1 would take a gather window.
  rig.StartWorker(0, [](SlotClient& c) {
    SessionResult r = RunFakeSession(c, {.seed = 1, .steps = 2});
    ::usleep(1'500'000);
    c.Leave();
    return r;
  });
  ::usleep(100'000);
  rig.StartWorker(1, Session({.seed = 2, .steps = 50}));
  SessionResult r1 = rig.WaitWorker(1);
  ExpectClean(r1, 50, "worker 1");
  ExpectClean(rig.WaitWorker(0), 2, "worker 0");
  ExecutorSummary s = rig.StopExecutor();
  EXPECT_TRUE(HasEvent(s, 0, SlotEvent::Kind::kLeft));
  // Idle, it was never waited for (a slot waited for in vain is late once).
  EXPECT_EQ(s.late[0], 0u);
}

// Polls slot `slot`'s `alone` word (what the executor last told its worker) from the test
// process, which maps every slot, until it reads `want` or 5 s have passed.
bool AloneBecomes(const ExecutorRig& rig, int slot, bool want) {
  const executor::SlotHeader* h = executor::HeaderOf(rig.slot_view(slot).base);
  const int64_t give_up = MonotonicNanos() + 5 * kNanosPerSecond;
  while (MonotonicNanos() < give_up) {
    if ((h->alone.load() == 1) == want) return true;
    ::usleep(1000);
  }
  return false;
}

// A session that is the only busy one is told so once solo, and is told when a second session
// starts generating; it then comes back to the batches with round 0, and both get exact answers.
// Idle slots are told nothing.
TEST(BatchLoopTest, ALoneSessionIsToldSoAndRejoinsWhenAnotherStarts) {
  ExecutorOptions options = TestOptions();
  options.solo = true;
  ExecutorRig rig(SmallShape(), options, 2);
  rig.StartExecutor();
  rig.StartWorker(0, [](SlotClient& c) {
    auto wait_for = [&](bool alone) {
      const int64_t give_up = MonotonicNanos() + 5 * kNanosPerSecond;
      while (c.alone() != alone && MonotonicNanos() < give_up) ::usleep(1000);
      return c.alone() == alone;
    };
    c.Solo();
    if (!wait_for(true)) return SessionResult{};
    if (!wait_for(false)) return SessionResult{};  // the other session's arrival
    return RunFakeSession(c, {.seed = 4, .steps = 20});
  });
  // Solo and the only busy one: told it is alone. The idle slot is not told.
  ASSERT_TRUE(AloneBecomes(rig, 0, true));
  EXPECT_EQ(executor::HeaderOf(rig.slot_view(1).base)->alone.load(), 0u);
  rig.StartWorker(1, Session({.seed = 5, .steps = 20}));
  ExpectClean(rig.WaitWorker(0), 20, "worker 0");
  ExpectClean(rig.WaitWorker(1), 20, "worker 1");
  EXPECT_TRUE(AloneBecomes(rig, 0, false));  // both idle at the end
  EXPECT_TRUE(AloneBecomes(rig, 1, false));
  ExecutorSummary s = rig.StopExecutor();
  EXPECT_GT(s.slot_rows[0], 0u);  // it rejoined the batches
}

// Solo, a session is busy but never waited for: its neighbour's rounds take no gather window.
// With `solo` off, nobody is ever told to go alone.
TEST(BatchLoopTest, ASoloSlotIsNotWaitedForAndSoloCanBeTurnedOff) {
  for (bool solo : {true, false}) {
    ExecutorOptions options = TestOptions();
    options.solo = solo;
    ExecutorRig rig(SmallShape(), options, 2);
    rig.StartExecutor();
    rig.StartWorker(0, [](SlotClient& c) {
      SessionResult r = RunFakeSession(c, {.seed = 1, .steps = 2});
      c.Solo();
      ::usleep(1'500'000);
      c.Idle();
      return r;
    });
    if (solo) {
      EXPECT_TRUE(AloneBecomes(rig, 0, true));
    } else {
      ::usleep(200'000);
      EXPECT_EQ(executor::HeaderOf(rig.slot_view(0).base)->alone.load(), 0u);
    }
    rig.StartWorker(1, Session({.seed = 2, .steps = 50}));
    ExpectClean(rig.WaitWorker(1), 50, "worker 1");
    ExpectClean(rig.WaitWorker(0), 2, "worker 0");
    ExecutorSummary s = rig.StopExecutor();
    EXPECT_EQ(s.late[0], 0u) << "solo " << solo;
  }
}

TEST(BatchLoopTest, AFullExecutorRefusesASlotAndItsWorkerComputesAlone) {
  ExecutorOptions options = TestOptions();
  options.max_slots = 1;
  ExecutorRig rig(SmallShape(), options, 2);
  rig.StartExecutor();
  rig.StartWorker(0, Session({.seed = 1, .steps = 10}));
  rig.StartWorker(1, Session({.seed = 2, .steps = 10}));
  ExpectClean(rig.WaitWorker(0), 10, "worker 0");
  SessionResult r1 = rig.WaitWorker(1);
  EXPECT_EQ(r1.steps_done, 10u);
  EXPECT_EQ(r1.failover_step, 0u);
  EXPECT_EQ(static_cast<FailoverReason>(r1.failover_reason), FailoverReason::kExecutorGone);
  ExecutorSummary s = rig.StopExecutor();
  EXPECT_TRUE(HasEvent(s, 1, SlotEvent::Kind::kRefused));
}

TEST(BatchLoopTest, APausedSlotIsNeitherServedNorWaitedForAndResumesExact) {
  constexpr int64_t kPauseNs = 600 * kNanosPerMilli;
  ExecutorRig rig(SmallShape(), TestOptions(), 2);
  rig.StartExecutor();
  // Both run steadily; the first in chunks of 4 rows, the second one row at a time.
  rig.StartWorker(0, Session({.seed = 5,
                              .steps = 100000,
                              .rows = 4,
                              .deadline_ns = MonotonicNanos() + 1500 * kNanosPerMilli}));
  rig.StartWorker(1, Session({.seed = 6,
                              .steps = 100000,
                              .rows = 1,
                              .deadline_ns = MonotonicNanos() + 1500 * kNanosPerMilli}));
  ::usleep(300'000);
  rig.PauseSlot(0, kPauseNs);
  SessionResult paused = rig.WaitWorker(0);
  SessionResult other = rig.WaitWorker(1);
  ExecutorSummary s = rig.StopExecutor();
  // The paused one waited out its pause in one exchange, then went on with the executor: no
  // failover, every answer its own.
  EXPECT_EQ(paused.mismatches, 0u);
  EXPECT_EQ(paused.failover_step, kNoFailover)
      << executor::FailoverReasonName(static_cast<FailoverReason>(paused.failover_reason));
  EXPECT_GE(paused.max_exchange_ns, kPauseNs / 2);
  EXPECT_GT(s.slot_paused_ns[0], 0);
  EXPECT_LE(s.slot_paused_ns[0], kPauseNs);
  // Its neighbour was neither stopped nor made to wait for it (the window is 50 ms here).
  ExpectClean(other, other.steps_done, "the neighbour");
  EXPECT_LT(other.max_exchange_ns, kPauseNs / 2);
  EXPECT_EQ(s.slot_paused_ns[1], 0);
}

// A batch loop over a fake compute on one thread, driven by the test's own calls (no executor
// thread, no workers).
struct BareLoop {
  BareLoop(const BareLoop&) = delete;  // the loop holds references to the members
  BareLoop& operator=(const BareLoop&) = delete;
  BareLoop() : compute(SmallShape()) {
    auto started = executor::ThreadPool::Start(1);
    EXPECT_TRUE(started) << started.error().message();
    if (!started) return;
    pool = std::move(*started);
    auto created = executor::BatchLoop::Create(compute, *pool, TestOptions());
    EXPECT_TRUE(created) << created.error().message();
    if (created) loop = std::move(*created);
  }
  FakeCompute compute;
  std::unique_ptr<executor::ThreadPool> pool;
  std::unique_ptr<executor::BatchLoop> loop;  // destroyed first: it uses the two above
};

TEST(BatchLoopTest, ARemoveSlotThatOvertakesItsAddSlotRefusesIt) {
  BareLoop bare;
  ASSERT_NE(bare.loop, nullptr);
  executor::BatchLoop* loop = bare.loop.get();
  auto slot = executor::SlotMemory::Create(SmallShape());
  ASSERT_TRUE(slot) << slot.error().message();
  loop->RemoveSlot(7);
  Status added = loop->AddSlot(7, UniqueFd(::fcntl(slot->fd().get(), F_DUPFD_CLOEXEC, 0)));
  EXPECT_FALSE(added);
  EXPECT_EQ(loop->slot_count(), 0u);
  std::vector<SlotEvent> events = loop->TakeEvents();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, SlotEvent::Kind::kRefused);
  EXPECT_NE(events[0].detail.find("removed before it arrived"), std::string::npos);
}

// A slot's header may still say `napping` (a worker wrote it, or an earlier executor left it):
// a new slot starts with its worker waking the executor.
TEST(BatchLoopTest, AnAddedSlotStartsWithoutANap) {
  BareLoop bare;
  ASSERT_NE(bare.loop, nullptr);
  auto slot = executor::SlotMemory::Create(SmallShape());
  ASSERT_TRUE(slot) << slot.error().message();
  executor::SlotHeader* header = executor::HeaderOf(slot->worker_view().base);
  header->napping.store(1);
  ASSERT_TRUE(bare.loop->AddSlot(4, UniqueFd(::fcntl(slot->fd().get(), F_DUPFD_CLOEXEC, 0))));
  EXPECT_EQ(header->napping.load(), 0u);
}

// A sleep the kernel refuses (here a misaligned futex word: EINVAL, as a kernel without
// futex_waitv gives ENOSYS and a filter EPERM) is reported, not retried: the executor would
// otherwise spin on a core.
TEST(BatchLoopTest, RunOnceSaysWhenItCannotSleep) {
  BareLoop bare;
  ASSERT_NE(bare.loop, nullptr);
  executor::BatchLoop* loop = bare.loop.get();
  alignas(8) std::atomic<uint32_t> words[2] = {};
  EXPECT_TRUE(loop->RunOnce({}, MonotonicNanos()));
  const auto* misaligned =
      reinterpret_cast<const std::atomic<uint32_t>*>(reinterpret_cast<const char*>(&words[0]) + 1);
  const executor::FutexWaiter bad{misaligned, 0};
  errno = 0;
  EXPECT_FALSE(loop->RunOnce({&bad, 1}, MonotonicNanos() + kNanosPerMilli));
  EXPECT_EQ(errno, EINVAL);
}

TEST(BatchLoopTest, BatchesAreCountedByRowsInPowerOfTwoBuckets) {
  EXPECT_EQ(executor::BatchRowsBucket(0), 0u);
  EXPECT_EQ(executor::BatchRowsBucket(1), 0u);
  EXPECT_EQ(executor::BatchRowsBucket(2), 1u);
  EXPECT_EQ(executor::BatchRowsBucket(3), 2u);
  EXPECT_EQ(executor::BatchRowsBucket(16), 4u);
  EXPECT_EQ(executor::BatchRowsBucket(17), 5u);
  EXPECT_EQ(executor::BatchRowsBucket(1024), 10u);
  EXPECT_EQ(executor::BatchRowsBucket(1025), executor::kBatchRowsBuckets - 1);
  EXPECT_EQ(executor::BatchRowsBucket(1u << 20), executor::kBatchRowsBuckets - 1);
}

TEST(ThreadPoolTest, EveryPartRunsOnceAndTheSplitCoversEverything) {
  auto pool = executor::ThreadPool::Start(4);
  ASSERT_TRUE(pool) << pool.error().message();
  EXPECT_EQ((*pool)->parts(), 4);
  std::vector<int> hits(1000, 0);
  for (int round = 0; round < 200; ++round) {
    (*pool)->ForEachPart([&](int part, int parts) {
      auto [begin, end] = executor::PartRange(1000, part, parts);
      for (int64_t i = begin; i < end; ++i) hits[static_cast<size_t>(i)] += 1;
    });
  }
  for (int h : hits) ASSERT_EQ(h, 200);
  EXPECT_GE(cellhouse::CpusAllowed(), 1);
}

TEST(SlotMemoryTest, TheExecutorRefusesAnUnsealedOrMisSizedDescriptor) {
  auto slot = executor::SlotMemory::Create(SmallShape());
  ASSERT_TRUE(slot) << slot.error().message();
  EXPECT_TRUE(executor::CheckSlotFd(slot->fd().get(), SmallShape()));
  executor::SlotShape other = SmallShape();
  other.max_rows = 64;
  EXPECT_FALSE(executor::CheckSlotFd(slot->fd().get(), other));
  // The seals hold: nobody can shrink it under the executor's mapping.
  EXPECT_NE(::ftruncate(slot->fd().get(), 0), 0);
  UniqueFd plain(::memfd_create("unsealed", MFD_CLOEXEC));
  ASSERT_TRUE(plain);
  ASSERT_EQ(::ftruncate(plain.get(), static_cast<off_t>(executor::SlotBytes(SmallShape()))), 0);
  EXPECT_FALSE(executor::CheckSlotFd(plain.get(), SmallShape()));
}

}  // namespace
}  // namespace cellhouse::testing
