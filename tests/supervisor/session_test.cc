// A Session owns its timers and its state changes: timers die with the session or when it ends,
// re-arming replaces a deadline, and the state moves only forward with the first reason kept.
#include "supervisor/session.h"

#include <gtest/gtest.h>

#include "base/clock.h"

namespace cellhouse::supervisor {
namespace {

class SessionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto loop = EventLoop::Create(clock_);
    ASSERT_TRUE(loop);
    loop_ = std::move(*loop);
  }
  void Run(int64_t advance) {
    clock_.Advance(advance);
    ASSERT_TRUE(loop_->RunOnce(0));
  }

  FakeClock clock_{1000};
  std::unique_ptr<EventLoop> loop_;
};

TEST_F(SessionTest, AnOwnedTimerFiresOnceIsReplacedWhenReArmedAndDiesWithItsHolder) {
  int fired = 0;
  {
    OwnedTimer timer(*loop_);
    timer.Arm(1100, [&] { fired += 1; });
    timer.Arm(1200, [&] { fired += 10; });  // replaces the first
    EXPECT_TRUE(timer.armed());
    EXPECT_EQ(loop_->timers(), 1u);
    Run(150);
    EXPECT_EQ(fired, 0);
    Run(100);
    EXPECT_EQ(fired, 10);
    EXPECT_FALSE(timer.armed());
    timer.Arm(2000, [&] { fired += 100; });
  }  // the holder goes: so does its timer
  EXPECT_EQ(loop_->timers(), 0u);
  Run(5000);
  EXPECT_EQ(fired, 10);
}

TEST_F(SessionTest, ACallbackMayDestroyTheTimersHolder) {
  auto holder = std::make_unique<OwnedTimer>(*loop_);
  bool ran = false;
  holder->Arm(1010, [&] {
    holder.reset();
    ran = true;
  });
  Run(20);
  EXPECT_TRUE(ran);
  EXPECT_EQ(loop_->timers(), 0u);
}

TEST_F(SessionTest, StateMovesForwardAndEndingKeepsTheFirstReasonAndStopsTheClocks) {
  Session s("id", 7, nullptr, *loop_, clock_.NowNanos());
  EXPECT_EQ(s.number(), 7u);
  EXPECT_EQ(s.state(), Session::State::kSpawning);
  EXPECT_FALSE(s.VisibleToClients());
  s.BecomePooled();
  EXPECT_EQ(s.state(), Session::State::kPooled);
  s.StartRunning(5000);
  EXPECT_EQ(s.state(), Session::State::kRunning);
  EXPECT_EQ(s.running_since_ns, 5000);
  EXPECT_TRUE(s.VisibleToClients());
  int fired = 0;
  s.lifetime_timer.Arm(9000, [&] { ++fired; });
  s.heartbeat_timer.Arm(9000, [&] { ++fired; });
  s.detach_timer.Arm(9000, [&] { ++fired; });
  EXPECT_TRUE(s.BeginEnding(api::KILLED, "killed by its owner"));
  EXPECT_FALSE(s.BeginEnding(api::SHUTDOWN, "celld is shutting down"));
  EXPECT_EQ(s.state(), Session::State::kEnding);
  EXPECT_EQ(*s.requested_end(), api::KILLED);
  EXPECT_EQ(s.requested_reason(), "killed by its owner");
  s.StartRunning(6000);  // an ending session does not come back
  EXPECT_EQ(s.state(), Session::State::kEnding);
  s.kill_timer.Arm(9000, [&] { ++fired; });  // what ending needs still runs
  Run(10'000);
  EXPECT_EQ(fired, 1);
}

TEST_F(SessionTest, AttachAndDetachAndAFailedSetup) {
  Session s("id", 1, nullptr, *loop_, clock_.NowNanos());
  s.StartRunning(1000);
  s.MarkAttached();
  EXPECT_TRUE(s.attached());
  s.MarkDetached(2000);
  EXPECT_FALSE(s.attached());
  EXPECT_EQ(s.detached_since_ns(), 2000);
  bool ended = false;
  s.detach_timer.Arm(3000, [&] { ended = true; });
  s.MarkAttached();  // re-attached in time: the grace timer is off
  Run(5000);
  EXPECT_FALSE(ended);
  EXPECT_EQ(s.detached_since_ns(), 0);

  Session failed("id2", 2, nullptr, *loop_, clock_.NowNanos());
  failed.FailSetup("sandbox step 'pivot_root' failed");
  EXPECT_EQ(failed.state(), Session::State::kEnding);
  EXPECT_FALSE(failed.VisibleToClients());
  EXPECT_EQ(*failed.setup_failure(), "sandbox step 'pivot_root' failed");
}

}  // namespace
}  // namespace cellhouse::supervisor
