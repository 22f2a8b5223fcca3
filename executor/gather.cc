#include "executor/gather.h"

#include <algorithm>

namespace cellhouse::executor {

GatherDecision DecideGather(std::span<const GatherSlot> slots, uint32_t rounds, const Sweep& sweep,
                            int64_t now_ns, int64_t window_ns) {
  if (rounds == 0) return {};
  const uint32_t position = sweep.position % rounds;
  // The first round at or after the sweep's position (cyclically) with anyone ready or expected.
  uint32_t nearest = rounds;
  for (const GatherSlot& s : slots) {
    if (!s.ready && !s.expected) continue;
    const uint32_t distance = (s.round % rounds + rounds - position) % rounds;
    nearest = std::min(nearest, distance);
  }
  if (nearest == rounds) return {};
  const uint32_t round = (position + nearest) % rounds;
  size_t ready = 0;
  size_t expected = 0;
  int64_t oldest_ready = std::numeric_limits<int64_t>::max();
  for (const GatherSlot& s : slots) {
    if (s.round != round) continue;
    if (s.ready) {
      ++ready;
      oldest_ready = std::min(oldest_ready, s.ready_since_ns);
    } else if (s.expected) {
      ++expected;
    }
  }
  GatherDecision d;
  d.round = round;
  if (ready == 0) {
    // Only expected slots: nobody is held up yet, so wait for them without a deadline of ours
    // (the caller stops expecting a slot that stays away too long).
    d.kind = GatherDecision::kWait;
    return d;
  }
  if (expected == 0) {
    d.kind = GatherDecision::kRun;
    return d;
  }
  const int64_t deadline = std::max(sweep.arrived_ns, oldest_ready) + window_ns;
  if (now_ns >= deadline) {
    d.kind = GatherDecision::kRun;
  } else {
    d.kind = GatherDecision::kWait;
    d.wait_until_ns = deadline;
  }
  return d;
}

}  // namespace cellhouse::executor
