// The pure pieces celld will drive the shared executor with: the slot book, the fairness buckets
// and the classification of an executor's end (supervisor/executor_{slots,fairness,end}.h).
#include <signal.h>

#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "supervisor/executor_end.h"
#include "supervisor/executor_fairness.h"
#include "supervisor/executor_slots.h"

namespace cellhouse::supervisor {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

executor_ipc::SlotUsage Usage(uint64_t id, uint64_t rows, uint64_t cpu_ns) {
  executor_ipc::SlotUsage u;
  u.set_slot_id(id);
  u.set_rows(rows);
  u.set_cpu_ns(cpu_ns);
  return u;
}

TEST(ExecutorSlotsTest, ReportsBecomeDeltasAndUnknownOrBackwardCountersAreHarmless) {
  ExecutorSlots slots(2);
  auto a = slots.Reserve("s-a", "default");
  auto b = slots.Reserve("s-b", "gold");
  ASSERT_TRUE(a && b);
  EXPECT_NE(*a, *b);
  EXPECT_FALSE(slots.Reserve("s-c", "default")) << "capacity 2";

  executor_ipc::ExecutorReport r1;
  *r1.add_slots() = Usage(*a, 10, 1000);
  *r1.add_slots() = Usage(99, 10, 1000);  // never handed out
  r1.mutable_slots(0)->set_late(2);
  r1.set_cpu_ns(1000);
  r1.set_gathers_cut_short(3);
  ReportDigest d1 = slots.Apply(r1);
  ASSERT_EQ(d1.deltas.size(), 1u);
  EXPECT_EQ(d1.deltas[0].session_id, "s-a");
  EXPECT_EQ(d1.deltas[0].cpu_ns, 1000u);
  EXPECT_EQ(d1.deltas[0].late, 2u);
  EXPECT_EQ(d1.cpu_ns, 1000u);
  EXPECT_EQ(d1.gathers_cut_short, 3u);

  executor_ipc::ExecutorReport r2;
  *r2.add_slots() = Usage(*a, 5, 400);  // went backwards: no negative delta
  r2.set_cpu_ns(1500);
  r2.set_gathers_cut_short(7);
  ReportDigest d2 = slots.Apply(r2);
  EXPECT_TRUE(d2.deltas.empty());
  EXPECT_EQ(d2.cpu_ns, 500u);
  EXPECT_EQ(d2.gathers_cut_short, 4u) << "the totals' growth since the previous report";

  slots.Detach(*b);
  executor_ipc::ExecutorReport r3;
  executor_ipc::SlotEvent* gone = r3.add_events();
  gone->set_slot_id(*b);
  gone->set_kind(executor_ipc::SlotEvent::REMOVED);
  *gone->mutable_usage() = Usage(*b, 3, 300);
  r3.set_cpu_ns(1500);
  ReportDigest d3 = slots.Apply(r3);
  ASSERT_EQ(d3.deltas.size(), 1u);
  EXPECT_EQ(d3.deltas[0].policy, "gold") << "a removed slot's final usage counts for its policy";
  EXPECT_EQ(d3.deltas[0].session_id, "");
  EXPECT_FALSE(slots.Holds(*b));
  EXPECT_THAT(slots.Reset(), ElementsAre("s-a"));
  EXPECT_EQ(slots.in_use(), 0u);
}

TEST(FairShareTest, ASessionOverItsQuotaIsPausedAndOneWithoutIsNot) {
  FairShare fair(int64_t{1'000'000'000});
  fair.Track("quota", 0.5, 0);
  fair.Track("free", std::nullopt, 0);
  // 0.5 CPU x 1 s window = 0.5 s of burst; 1.5 s used within 0.1 s leaves ~1 s of debt.
  const int64_t pause = fair.Charge("quota", 1'500'000'000, 100'000'000);
  EXPECT_GT(pause, 0);
  EXPECT_LE(pause, kMaxExecutorPauseNs);
  EXPECT_LT(fair.Balance("quota"), 0);
  EXPECT_EQ(fair.Charge("quota", 0, 200'000'000), 0) << "still paused from the last charge";
  EXPECT_EQ(fair.Charge("free", 5'000'000'000, 100'000'000), 0);
  EXPECT_GT(fair.RecentCpus("free"), 0);
  fair.Untrack("quota");
  EXPECT_FALSE(fair.Tracks("quota"));
  EXPECT_EQ(fair.Charge("quota", 1'000'000'000, 300'000'000), 0);
}

TEST(FairShareTest, TheExecutorsWeightIsItsSessionsSumWithinTheCgroupBounds) {
  FairShare fair(int64_t{1'000'000'000});
  EXPECT_EQ(fair.CgroupWeight(), cgroup::kCpuWeightDefault) << "serving nobody: the default";
  fair.Track("a", std::nullopt, 0);
  EXPECT_EQ(fair.CgroupWeight(), 100u);
  fair.Track("b", 0.5, 0, 300);
  fair.Track("c", std::nullopt, 0, 50);
  EXPECT_EQ(fair.CgroupWeight(), 450u);
  fair.Track("b", 0.5, 0, 20);  // tracked again: replaced, not added
  EXPECT_EQ(fair.CgroupWeight(), 170u);
  fair.Untrack("a");
  EXPECT_EQ(fair.CgroupWeight(), 70u);
  fair.Track("zero", std::nullopt, 0, 0);  // below the bounds: counted as 1
  EXPECT_EQ(fair.CgroupWeight(), 71u);
  for (int i = 0; i < 3; ++i) fair.Track("big" + std::to_string(i), std::nullopt, 0, 9000);
  EXPECT_EQ(fair.CgroupWeight(), cgroup::kCpuWeightMax) << "capped at cgroup's maximum";
  fair.Untrack("b");
  fair.Untrack("c");
  fair.Untrack("zero");
  for (int i = 0; i < 3; ++i) fair.Untrack("big" + std::to_string(i));
  EXPECT_EQ(fair.CgroupWeight(), cgroup::kCpuWeightDefault);
}

TEST(ExecutorEndTest, ClassifiesTheEndAndBacksOffRestarts) {
  ExitStatus sys;
  sys.kind = ExitStatus::Kind::kSignaled;
  sys.signal = SIGSYS;
  ExecutorEnd e = ClassifyExecutorEnd({.status = sys, .seccomp_syscall = "getuid"});
  EXPECT_EQ(e.reason, "seccomp");
  EXPECT_THAT(e.message, HasSubstr("'getuid'"));

  ExitStatus kill;
  kill.kind = ExitStatus::Kind::kSignaled;
  kill.signal = SIGKILL;
  EXPECT_EQ(ClassifyExecutorEnd({.status = kill, .oom_kills = 1}).reason, "oom");
  EXPECT_EQ(ClassifyExecutorEnd({.status = kill, .stop_requested = true}).reason, "stopped");
  EXPECT_EQ(ClassifyExecutorEnd({.status = kill}).reason, "killed");
  ExitStatus wait_failed;
  wait_failed.kind = ExitStatus::Kind::kExited;
  wait_failed.code = 15;  // executor::ExecutorExit::kWaitFailed
  EXPECT_THAT(ClassifyExecutorEnd({.status = wait_failed}).message, HasSubstr("futex_waitv"));

  RestartBackoff backoff;
  EXPECT_EQ(backoff.Next(0), RestartBackoff::kFirstNs);
  EXPECT_EQ(backoff.Next(0), 2 * RestartBackoff::kFirstNs);
  for (int i = 0; i < 20; ++i) backoff.Next(0);
  EXPECT_EQ(backoff.Next(0), RestartBackoff::kMaxNs);
  EXPECT_EQ(backoff.Next(RestartBackoff::kHealthyNs), RestartBackoff::kFirstNs);
}

}  // namespace
}  // namespace cellhouse::supervisor
