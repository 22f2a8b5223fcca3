// The executor's thread pool: every part runs once per dispatch, whether the threads are still
// spinning from the last dispatch, parked on the futex, or the caller has to park for a slow
// part; and it stops with parked threads.
#include "executor/thread_pool.h"

#include <time.h>

#include <atomic>
#include <vector>

#include <gtest/gtest.h>

namespace cellhouse::executor {
namespace {

void SleepNanos(int64_t nanos) {
  timespec ts{.tv_sec = nanos / 1'000'000'000, .tv_nsec = nanos % 1'000'000'000};
  ::nanosleep(&ts, nullptr);
}

// Runs `dispatches` dispatches over a pool of `threads`, `pause_ns` apart, and checks that each
// ran every part exactly once, with the right part count, before Run returned.
void ExpectEveryPartOnce(ThreadPool& pool, int dispatches, int64_t pause_ns,
                         int64_t slow_part_ns = 0) {
  const int parts = pool.parts();
  std::vector<std::atomic<int>> runs(static_cast<size_t>(parts));
  for (int d = 0; d < dispatches; ++d) {
    for (auto& r : runs) r.store(0);
    pool.ForEachPart([&](int part, int n) {
      ASSERT_EQ(n, parts);
      if (part == parts - 1 && slow_part_ns > 0) SleepNanos(slow_part_ns);
      runs[static_cast<size_t>(part)].fetch_add(1);
    });
    for (int p = 0; p < parts; ++p) {
      ASSERT_EQ(runs[static_cast<size_t>(p)].load(), 1) << "dispatch " << d << ", part " << p;
    }
    if (pause_ns > 0) SleepNanos(pause_ns);
  }
}

TEST(ThreadPoolTest, BackToBackDispatchesFindTheThreadsSpinning) {
  auto pool = ThreadPool::Start(3);
  ASSERT_TRUE(pool) << pool.error().message();
  ExpectEveryPartOnce(**pool, 20000, 0);
}

TEST(ThreadPoolTest, DispatchesAfterAPauseWakeParkedThreads) {
  auto pool = ThreadPool::Start(3);
  ASSERT_TRUE(pool) << pool.error().message();
  // Longer than the spin: the threads have parked before each dispatch.
  ExpectEveryPartOnce(**pool, 50, 4 * ThreadPool::kSpinNs);
}

TEST(ThreadPoolTest, ACallerWaitingOnASlowPartParksAndIsWoken) {
  auto pool = ThreadPool::Start(2);
  ASSERT_TRUE(pool) << pool.error().message();
  ExpectEveryPartOnce(**pool, 20, 0, 4 * ThreadPool::kSpinNs);
}

TEST(ThreadPoolTest, MixedPausesAroundTheSpinBound) {
  auto pool = ThreadPool::Start(4);
  ASSERT_TRUE(pool) << pool.error().message();
  for (int64_t pause :
       {int64_t{0}, ThreadPool::kSpinNs / 2, ThreadPool::kSpinNs, 2 * ThreadPool::kSpinNs}) {
    ExpectEveryPartOnce(**pool, 200, pause, pause);
  }
}

TEST(ThreadPoolTest, DispatchesAfterRestWakeTheThreadsItParked) {
  auto pool = ThreadPool::Start(3);
  ASSERT_TRUE(pool) << pool.error().message();
  for (int i = 0; i < 2000; ++i) {
    ExpectEveryPartOnce(**pool, 1, i % 3 == 0 ? 0 : ThreadPool::kSpinNs / 4);
    (*pool)->Rest();
  }
}

TEST(ThreadPoolTest, StopsWithParkedThreads) {
  for (int i = 0; i < 20; ++i) {
    auto pool = ThreadPool::Start(3);
    ASSERT_TRUE(pool) << pool.error().message();
    ExpectEveryPartOnce(**pool, 1, 0);
    SleepNanos(2 * ThreadPool::kSpinNs);  // parked by now
  }                                       // each destructor wakes and joins them
}

TEST(ThreadPoolTest, OneThreadRunsOnTheCaller) {
  auto pool = ThreadPool::Start(1);
  ASSERT_TRUE(pool) << pool.error().message();
  EXPECT_EQ((*pool)->parts(), 1);
  ExpectEveryPartOnce(**pool, 10, 0);
  EXPECT_FALSE(ThreadPool::Start(0));
}

}  // namespace
}  // namespace cellhouse::executor
