#include "supervisor/event_loop.h"

#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "base/io.h"

namespace cellhouse::supervisor {
namespace {

TEST(EventLoopTest, TimersFireInDeadlineOrderOnTheInjectedClock) {
  FakeClock clock(1000);
  auto loop = EventLoop::Create(clock);
  ASSERT_TRUE(loop);
  std::vector<int> fired;
  (*loop)->AddTimer(1000 + 30, [&] { fired.push_back(3); });
  (*loop)->AddTimer(1000 + 10, [&] { fired.push_back(1); });
  TimerId cancelled = (*loop)->AddTimer(1000 + 20, [&] { fired.push_back(2); });
  (*loop)->CancelTimer(cancelled);
  ASSERT_TRUE((*loop)->RunOnce(0));
  EXPECT_TRUE(fired.empty());
  clock.Advance(25);
  ASSERT_TRUE((*loop)->RunOnce(0));
  EXPECT_EQ(fired, std::vector<int>{1});
  clock.Advance(100);
  ASSERT_TRUE((*loop)->RunOnce(0));
  EXPECT_EQ(fired, (std::vector<int>{1, 3}));
  EXPECT_EQ((*loop)->timers(), 0u);
}

TEST(EventLoopTest, ACallbackMayRemoveAnotherDescriptorOfTheSameBatch) {
  RealClock clock;
  auto loop = EventLoop::Create(clock);
  ASSERT_TRUE(loop);
  auto a = MakeSocketPair(SOCK_STREAM);
  auto b = MakeSocketPair(SOCK_STREAM);
  ASSERT_TRUE(a && b);
  int calls = 0;
  int first = a->second.get(), second = b->second.get();
  // Whichever runs first removes the other: the other's already-fetched event is dropped.
  ASSERT_TRUE((*loop)->Add(first, EPOLLIN, [&](uint32_t) {
    ++calls;
    (*loop)->Remove(second);
    (*loop)->Remove(first);
  }));
  ASSERT_TRUE((*loop)->Add(second, EPOLLIN, [&](uint32_t) {
    ++calls;
    (*loop)->Remove(first);
    (*loop)->Remove(second);
  }));
  ASSERT_TRUE(WriteFull(a->first.get(), std::string_view("x"), "a"));
  ASSERT_TRUE(WriteFull(b->first.get(), std::string_view("y"), "b"));
  ASSERT_TRUE((*loop)->RunOnce(1000));
  EXPECT_EQ(calls, 1);
  EXPECT_EQ((*loop)->watched(), 0u);
}

TEST(EventLoopTest, SignalsArriveThroughTheLoop) {
  RealClock clock;
  auto loop = EventLoop::Create(clock);
  ASSERT_TRUE(loop);
  int got = 0;
  ASSERT_TRUE((*loop)->HandleSignals({SIGUSR1}, [&](int sig) { got = sig; }));
  ASSERT_EQ(::kill(::getpid(), SIGUSR1), 0);
  for (int i = 0; i < 10 && got == 0; ++i) ASSERT_TRUE((*loop)->RunOnce(100));
  EXPECT_EQ(got, SIGUSR1);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGUSR1);
  ::pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
}

TEST(EventLoopTest, WatchingTheSameDescriptorTwiceIsAnError) {
  RealClock clock;
  auto loop = EventLoop::Create(clock);
  ASSERT_TRUE(loop);
  auto p = MakePipe();
  ASSERT_TRUE(p);
  ASSERT_TRUE((*loop)->Add(p->first.get(), EPOLLIN, [](uint32_t) {}));
  EXPECT_FALSE((*loop)->Add(p->first.get(), EPOLLIN, [](uint32_t) {}));
  (*loop)->Remove(p->first.get());
  EXPECT_FALSE((*loop)->Watching(p->first.get()));
}

}  // namespace
}  // namespace cellhouse::supervisor
