// Which round the executor runs next, and whether it waits for stragglers first: pure code over a
// snapshot of the slots, so the policy has plain unit tests (tests/executor/gather_test.cc).
//
//   GatherDecision d = DecideGather(slots, shape.rounds, sweep, now, window);
//   switch (d.kind) {
//     case GatherDecision::kRun:  RunBatch(d.round); ...   // possibly with no slot: give up
//     case GatherDecision::kWait: sleep until d.wait_until_ns or a slot's message
//     case GatherDecision::kNothing: sleep until a slot's message
//   }
//
// A batch holds one round (one layer's weights), so sessions must be kept in step for batches to
// stay full. The executor sweeps the rounds in order, 0, 1, ..., rounds - 1, 0, ...: from its
// position it takes the first round that has a slot ready or expected (a worker busy with its
// attention, or between two steps), and runs it. A slot that is ready at a round the sweep has
// passed waits for the sweep to come round again — at most one step — and from then on moves
// with the crowd: a new session, or one that fell behind, joins the others instead of running
// alone forever.
//
// Before running, the executor waits for the slots expected at that round, but only until
// `window` after the sweep reached the round or its first slot was ready (whichever is later):
// that window is the one bounded delay a stopped, killed or slow neighbour costs the others. The
// caller marks the ones left behind late: a late slot is not waited for again until it has sent
// its next round.
#ifndef CELLHOUSE_EXECUTOR_GATHER_H_
#define CELLHOUSE_EXECUTOR_GATHER_H_

#include <cstdint>
#include <limits>
#include <span>

namespace cellhouse::executor {

struct GatherSlot {
  bool ready = false;          // a round was taken from it and waits for a batch
  uint32_t round = 0;          // ready: that round; otherwise the round it is expected at
  bool expected = false;       // not ready: waited for at `round`
  int64_t ready_since_ns = 0;  // ready: when its round was taken
};

// Where the sweep is: the round it looks at first, and when it got there.
struct Sweep {
  uint32_t position = 0;
  int64_t arrived_ns = 0;
};

struct GatherDecision {
  enum Kind {
    kNothing,  // no slot is ready or expected
    kRun,      // run `round` now with the slots ready at it (none: give up on its stragglers)
    kWait,     // wait for `round`'s expected slots until `wait_until_ns` (or a message)
  };
  Kind kind = kNothing;
  uint32_t round = 0;
  int64_t wait_until_ns = std::numeric_limits<int64_t>::max();
};

// `rounds` is the shape's rounds per step; every slot's round is below it.
GatherDecision DecideGather(std::span<const GatherSlot> slots, uint32_t rounds, const Sweep& sweep,
                            int64_t now_ns, int64_t window_ns);

}  // namespace cellhouse::executor

#endif  // CELLHOUSE_EXECUTOR_GATHER_H_
