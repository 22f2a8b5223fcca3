// The gather policy: which round runs, when the executor waits for stragglers, and that a slot
// out of step joins the crowd instead of running alone.
#include "executor/gather.h"

#include <vector>

#include <gtest/gtest.h>

namespace cellhouse::executor {
namespace {

constexpr uint32_t kRounds = 5;
constexpr int64_t kWindow = 1000;

GatherSlot Ready(uint32_t round, int64_t since) {
  return {.ready = true, .round = round, .ready_since_ns = since};
}
GatherSlot Expecting(uint32_t round) { return {.round = round, .expected = true}; }
GatherSlot Idle() { return {}; }

TEST(GatherTest, NothingReadyOrExpectedMeansNothing) {
  EXPECT_EQ(DecideGather({}, kRounds, {}, 0, kWindow).kind, GatherDecision::kNothing);
  std::vector<GatherSlot> idle = {Idle(), Idle()};
  EXPECT_EQ(DecideGather(idle, kRounds, {}, 0, kWindow).kind, GatherDecision::kNothing);
}

TEST(GatherTest, AloneItRunsAtOnce) {
  std::vector<GatherSlot> slots = {Ready(3, 100), Idle()};
  GatherDecision d = DecideGather(slots, kRounds, {.position = 0}, 100, kWindow);
  EXPECT_EQ(d.kind, GatherDecision::kRun);
  EXPECT_EQ(d.round, 3u);
}

TEST(GatherTest, WaitsForTheCrowdUntilTheWindowCloses) {
  std::vector<GatherSlot> slots = {Ready(2, 100), Expecting(2), Expecting(2)};
  Sweep sweep{.position = 2, .arrived_ns = 50};
  GatherDecision d = DecideGather(slots, kRounds, sweep, 150, kWindow);
  EXPECT_EQ(d.kind, GatherDecision::kWait);
  EXPECT_EQ(d.round, 2u);
  // From the later of the sweep's arrival and the first ready slot.
  EXPECT_EQ(d.wait_until_ns, 100 + kWindow);
  d = DecideGather(slots, kRounds, sweep, 100 + kWindow, kWindow);
  EXPECT_EQ(d.kind, GatherDecision::kRun);
}

TEST(GatherTest, AStragglerBehindTheSweepWaitsForItToComeRound) {
  // The crowd is at round 3 (ready and expected); one slot is ready at round 1, which the
  // sweep has passed: the crowd goes first, the straggler is picked up when the sweep wraps.
  std::vector<GatherSlot> slots = {Ready(1, 0), Ready(3, 10), Expecting(3), Expecting(3)};
  Sweep sweep{.position = 3, .arrived_ns = 5};
  GatherDecision d = DecideGather(slots, kRounds, sweep, 20, kWindow);
  EXPECT_EQ(d.kind, GatherDecision::kWait);
  EXPECT_EQ(d.round, 3u);
  // With the crowd in flight toward round 4 (none ready yet), the executor waits for them
  // rather than run the straggler alone.
  slots = {Ready(1, 0), Expecting(4), Expecting(4), Expecting(4)};
  sweep = {.position = 4, .arrived_ns = 30};
  d = DecideGather(slots, kRounds, sweep, 40, kWindow);
  EXPECT_EQ(d.kind, GatherDecision::kWait);
  EXPECT_EQ(d.round, 4u);
  // The crowd finishes its step and comes back at round 0, then 1: the straggler's round.
  slots = {Ready(1, 0), Expecting(1), Ready(1, 70), Expecting(1)};
  sweep = {.position = 1, .arrived_ns = 60};
  d = DecideGather(slots, kRounds, sweep, 75, kWindow);
  EXPECT_EQ(d.round, 1u);
  EXPECT_EQ(d.kind, GatherDecision::kWait);  // and it waits for the rest of the crowd with it
}

TEST(GatherTest, TheSweepWrapsAround) {
  std::vector<GatherSlot> slots = {Ready(0, 5), Ready(1, 6)};
  GatherDecision d = DecideGather(slots, kRounds, {.position = 4}, 10, kWindow);
  EXPECT_EQ(d.kind, GatherDecision::kRun);
  EXPECT_EQ(d.round, 0u);
  d = DecideGather(slots, kRounds, {.position = 1}, 10, kWindow);
  EXPECT_EQ(d.round, 1u);
}

TEST(GatherTest, TheDecisionDoesNotDependOnTheSlotsOrder) {
  std::vector<GatherSlot> a = {Ready(2, 7), Expecting(2), Ready(4, 3), Expecting(0), Idle()};
  std::vector<GatherSlot> b = {Idle(), Expecting(0), Ready(4, 3), Expecting(2), Ready(2, 7)};
  for (uint32_t position = 0; position < kRounds; ++position) {
    Sweep sweep{.position = position, .arrived_ns = 1};
    GatherDecision da = DecideGather(a, kRounds, sweep, 9, kWindow);
    GatherDecision db = DecideGather(b, kRounds, sweep, 9, kWindow);
    EXPECT_EQ(da.kind, db.kind);
    EXPECT_EQ(da.round, db.round);
    EXPECT_EQ(da.wait_until_ns, db.wait_until_ns);
  }
}

}  // namespace
}  // namespace cellhouse::executor
