// A fake session: a worker's side of the executor protocol over the fake compute, checking every
// answer bit for bit against its own computation and computing alone after a failover, as the
// engine's per-step loop will (docs/EXECUTOR.md, "Failover"). No gtest: test zygotes link it.
//
//   SlotClient client(worker_slot);
//   SessionResult r = RunFakeSession(client, {.seed = 3, .steps = 30});
//   // r.mismatches == 0, r.failover_step == kNoFailover ...
#ifndef CELLHOUSE_TESTS_EXECUTOR_FAKE_SESSION_H_
#define CELLHOUSE_TESTS_EXECUTOR_FAKE_SESSION_H_

#include <cstdint>
#include <functional>
#include <limits>

#include "executor/slot_client.h"
#include "tests/executor/fake_compute.h"

namespace cellhouse::testing {

inline constexpr uint32_t kNoFailover = std::numeric_limits<uint32_t>::max();

// What a fake session saw; fixed size, sent over a pipe.
struct SessionResult {
  uint32_t steps_done = 0;
  uint32_t exchanges = 0;   // rounds answered by the executor
  uint32_t mismatches = 0;  // answers that differ from the local computation
  uint32_t failover_step = kNoFailover;
  uint32_t failover_reason = 0;  // executor::FailoverReason
  int64_t max_exchange_ns = 0;
};

struct SessionPlan {
  // The worker's own idea of the shape (from its model), whether or not it has a slot.
  executor::SlotShape shape = SmallShape();
  uint32_t seed = 1;
  uint32_t steps = 20;
  bool prefill = true;  // mix prefill chunks (some ending early) with decode steps
  // Non-zero: every step has this many rows instead (a prefill chunk when above 1), and none
  // ends early: a steady load of a known size.
  uint32_t rows = 0;
  // Non-zero (CLOCK_MONOTONIC): stop after the step that ends past it, even before `steps`.
  int64_t deadline_ns = 0;
  bool idle_at_end = true;  // send Idle after the last step
  // Called after every round (answered or computed locally): misbehaviour goes here.
  std::function<void(uint32_t step, uint32_t round, executor::SlotClient& client)> after_round;
};

// Runs `plan.steps` steps through the executor, checking every answer against FakeRowOutput /
// FakeFinalOutput; after a failover, computes the rest locally.
SessionResult RunFakeSession(executor::SlotClient& client, const SessionPlan& plan);

}  // namespace cellhouse::testing

#endif  // CELLHOUSE_TESTS_EXECUTOR_FAKE_SESSION_H_
