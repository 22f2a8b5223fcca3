// A deterministic stand-in for the engine's per-layer work, and the worker's own copy of it: each
// output element is a fixed sum over its row's input in a fixed order, so the executor's answer
// and the worker's local computation (what failover runs) are bit-identical, and any influence of
// one row on another would show as a mismatch.
//
//   FakeCompute compute(shape);            // the executor's StepCompute
//   FakeRowOutput(shape, round, in, out);  // the worker's reference for one row
#ifndef CELLHOUSE_TESTS_EXECUTOR_FAKE_COMPUTE_H_
#define CELLHOUSE_TESTS_EXECUTOR_FAKE_COMPUTE_H_

#include <atomic>
#include <cstdint>

#include "executor/compute.h"

namespace cellhouse::testing {

// out[j] for j < output_row_floats, from in[i] for i < input_row_floats.
void FakeRowOutput(const executor::SlotShape& shape, uint32_t round, const float* in, float* out);
// The last round's final_floats, from the last row's input.
void FakeFinalOutput(const executor::SlotShape& shape, const float* last_row_in, float* out);

class FakeCompute final : public executor::StepCompute {
 public:
  explicit FakeCompute(const executor::SlotShape& shape) : shape_(shape) {}
  executor::SlotShape shape() const override { return shape_; }
  void Run(const executor::Batch& batch, executor::ThreadPool& pool) override;

 private:
  executor::SlotShape shape_;
};

// A small shape for tests: 4 rounds, up to 4 rows, 24 floats in, 40 out, 16 final.
executor::SlotShape SmallShape();

}  // namespace cellhouse::testing

#endif  // CELLHOUSE_TESTS_EXECUTOR_FAKE_COMPUTE_H_
