#include "tests/executor/fake_session.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "base/clock.h"

namespace cellhouse::testing {
namespace {

using executor::RowKind;
using executor::SlotClient;
using executor::SlotOutcome;

float InitialInput(uint32_t seed, uint32_t step, uint32_t row, uint32_t i) {
  return static_cast<float>((seed * 31 + step * 17 + row * 7 + i) % 23) * 0.25F - 2.75F;
}

// One fake session's state: the rows of the current step and the worker's own answer to them.
class FakeSession {
 public:
  FakeSession(SlotClient& client, const SessionPlan& plan)
      : client_(client),
        plan_(plan),
        shape_(plan.shape),
        x_(size_t{shape_.max_rows} * shape_.input_row_floats),
        expected_(std::max<size_t>(size_t{shape_.max_rows} * shape_.output_row_floats,
                                   shape_.final_floats)) {}

  SessionResult Run() {
    for (uint32_t step = 0; step < plan_.steps; ++step) {
      if (plan_.deadline_ns != 0 && step > 0 && MonotonicNanos() >= plan_.deadline_ns) break;
      BeginStep(step);
      const uint32_t last_round = flags_ != 0 ? shape_.rounds - 2 : shape_.rounds - 1;
      for (uint32_t round = 0; round <= last_round; ++round) {
        ComputeLocally(round);
        if (client_.active()) ExchangeAndCompare(round);
        if (!client_.active() && result_.failover_step == kNoFailover) {
          // The step restarts from round 0 on the worker's own path (here: the same values).
          result_.failover_step = step;
          result_.failover_reason = static_cast<uint32_t>(client_.failover_reason());
        }
        if (!Final(round)) NextInput();
        if (plan_.after_round) plan_.after_round(step, round, client_);
      }
      ++result_.steps_done;
    }
    if (plan_.idle_at_end && client_.active()) client_.Idle();
    return result_;
  }

 private:
  bool Final(uint32_t round) const { return round + 1 == shape_.rounds; }
  float* X(uint32_t r) { return &x_[size_t{r} * shape_.input_row_floats]; }
  float* Expected(uint32_t r) { return &expected_[size_t{r} * shape_.output_row_floats]; }

  void BeginStep(uint32_t step) {
    if (plan_.rows != 0) {
      rows_ = std::min(plan_.rows, shape_.max_rows);
      kind_ = rows_ > 1 ? RowKind::kPrefill : RowKind::kDecode;
      flags_ = 0;
    } else {
      const bool prefill = plan_.prefill && step % 3 == 1;
      rows_ = prefill ? 1 + (plan_.seed + step) % shape_.max_rows : 1;
      kind_ = prefill ? RowKind::kPrefill : RowKind::kDecode;
      flags_ = prefill && step % 2 == 0 ? executor::kStepSkipsFinal : 0;
    }
    for (uint32_t r = 0; r < rows_; ++r) {
      for (uint32_t i = 0; i < shape_.input_row_floats; ++i) {
        X(r)[i] = InitialInput(plan_.seed, step, r, i);
      }
    }
  }

  // What failover runs, and the reference for every answer.
  void ComputeLocally(uint32_t round) {
    if (Final(round)) {
      FakeFinalOutput(shape_, X(rows_ - 1), expected_.data());
      return;
    }
    for (uint32_t r = 0; r < rows_; ++r) FakeRowOutput(shape_, round, X(r), Expected(r));
  }

  void ExchangeAndCompare(uint32_t round) {
    for (uint32_t r = 0; r < rows_; ++r) {
      std::memcpy(client_.row(r), X(r), shape_.input_row_floats * sizeof(float));
    }
    const int64_t start = MonotonicNanos();
    const SlotOutcome outcome = client_.Exchange(round, rows_, kind_, flags_);
    result_.max_exchange_ns = std::max(result_.max_exchange_ns, MonotonicNanos() - start);
    if (outcome != SlotOutcome::kOk) return;
    ++result_.exchanges;
    if (Final(round)) {
      const size_t bytes = shape_.final_floats * sizeof(float);
      result_.mismatches += std::memcmp(client_.final_output(), expected_.data(), bytes) != 0;
      return;
    }
    for (uint32_t r = 0; r < rows_; ++r) {
      const size_t bytes = shape_.output_row_floats * sizeof(float);
      result_.mismatches += std::memcmp(client_.row(r), Expected(r), bytes) != 0;
    }
  }

  void NextInput() {
    const uint32_t out = shape_.output_row_floats;
    for (uint32_t r = 0; r < rows_; ++r) {
      for (uint32_t i = 0; i < shape_.input_row_floats; ++i) {
        X(r)[i] = Expected(r)[(i * 3) % out] * 0.0625F;
      }
    }
  }

  SlotClient& client_;
  const SessionPlan& plan_;
  const executor::SlotShape& shape_;
  std::vector<float> x_;
  std::vector<float> expected_;
  uint32_t rows_ = 1;
  RowKind kind_ = RowKind::kDecode;
  uint32_t flags_ = 0;
  SessionResult result_;
};

}  // namespace

SessionResult RunFakeSession(SlotClient& client, const SessionPlan& plan) {
  return FakeSession(client, plan).Run();
}

}  // namespace cellhouse::testing
