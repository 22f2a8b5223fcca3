// The seam between the executor's machinery and the engine: what the executor computes for one
// round of a batch of slots. The engine implements StepCompute (phase 2: a decoder layer's
// output projection, residual, norms, feed-forward and the next layer's Q/K/V projections; the
// classifier in the last round); tests and benchmarks use fakes.
//
//   class LayerCompute final : public StepCompute {
//     void Run(const Batch& batch, ThreadPool& pool) override {
//       // batch.input: [batch.total_rows][input_row_floats], the executor's private copy
//       pool.ForEachPart([&](int part, int parts) { ... one part of every product ... });
//       for (const BatchEntry& e : batch.entries) ... write e.output ...
//     }
//   };
//
// Rules for an implementation:
//  - Batch invariance: every output element of a row is computed from that row's input alone,
//    by the same operations in the same order, whatever the other rows, their number, the
//    thread count or the split (split the work by output element, never by the reduction).
//    This is what keeps neighbours from influencing each other's results, and what makes the
//    worker's own path (failover) bit-identical.
//  - Choose arithmetic by BatchEntry::kind (decode or prefill), never by the batch's shape.
//  - Outputs are in the slot, shared with a worker that may rewrite them at any moment: write
//    them, never read them back. Work in private scratch memory, allocated before the first
//    batch (the executor's seccomp filter allows memory calls, but a batch should not need any).
//  - No system calls but futex (through the pool); no state kept from one batch to the next
//    (the executor holds no conversation: everything a round needs comes in its input rows).
#ifndef CELLHOUSE_EXECUTOR_COMPUTE_H_
#define CELLHOUSE_EXECUTOR_COMPUTE_H_

#include <cstdint>
#include <span>

#include "executor/slot_layout.h"
#include "executor/thread_pool.h"

namespace cellhouse::executor {

// One slot's part of a batch.
struct BatchEntry {
  uint32_t first_row = 0;  // its first row in Batch::input
  uint32_t rows = 0;
  RowKind kind = RowKind::kDecode;
  uint32_t step_flags = 0;
  // Where its answer goes, in its slot. Rounds before the last: row r's output_row_floats at
  // output + r * output_stride_floats. The last round: final_floats at output.
  float* output = nullptr;
  uint32_t output_stride_floats = 0;
};

// One round for a batch of slots, all at the same round.
struct Batch {
  uint32_t round = 0;
  bool final_round = false;  // round == shape.rounds - 1
  std::span<const BatchEntry> entries;
  uint32_t total_rows = 0;
  const float* input = nullptr;  // [total_rows][shape.input_row_floats], dense, private
};

class StepCompute {
 public:
  virtual ~StepCompute() = default;
  // The slot shape this compute reads and writes (fixed for the executor's life).
  virtual SlotShape shape() const = 0;
  // Computes one round for every entry of the batch. Must not fail: anything a worker can send
  // is valid input (a row of garbage gives a row of garbage, for that worker only).
  virtual void Run(const Batch& batch, ThreadPool& pool) = 0;
};

}  // namespace cellhouse::executor

#endif  // CELLHOUSE_EXECUTOR_COMPUTE_H_
