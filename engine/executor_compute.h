// The shared executor's part of a GGUF model's step (executor/compute.h, docs/EXECUTOR.md): the
// position-independent, weight-heavy work of every ready session's rows in one batch, so the
// weights are read once per round for all of them.
//
//   auto compute = GgufStepCompute::Create(weights, BestKernelIsa(), /*max_rows=*/16,
//                                          /*max_batch_rows=*/512);
//   executor::BatchLoop::Create(**compute, pool, options) ...
//
// A step of L layers is L + 1 rounds. A row travels as [x | a] (the residual stream and the
// attention output the worker computed) and comes back as [x | q | k | v]:
//   round 0:        RMSNorm, Q/K/V of layer 0 (biases, qwen3's q/k norms); a is ignored
//   round r < L:    x += attn_output · a, the feed-forward block of layer r - 1, then layer r's
//                   RMSNorm and Q/K/V
//   round L:        the same for layer L - 1, then the final norm and the classifier on each
//                   entry's last row: the logits ([vocab]) are the entry's answer
// An entry's rows are computed in its kind's order (RowKind::kPrefill: a prompt's, step_kind.h),
// as the worker's own path computes them.
// These are gguf_forward.h's steps, called on the whole batch: the type kernels give every row
// the bits it gets alone (type_kernels.h), so a session's results do not depend on its
// neighbours, and a worker computing its rounds itself (executor_rounds.h) gets the same bits.
// The products are split by output rows over the executor's threads.
#ifndef CELLHOUSE_ENGINE_EXECUTOR_COMPUTE_H_
#define CELLHOUSE_ENGINE_EXECUTOR_COMPUTE_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "base/result.h"
#include "engine/formats/gguf_model.h"
#include "engine/gguf_forward.h"
#include "engine/kernels/type_kernels.h"
#include "executor/compute.h"

namespace cellhouse::engine {

// The slot of a model whose rounds carry up to max_rows rows (a prefill chunk).
executor::SlotShape GgufSlotShape(const ModelConfig& c, uint32_t max_rows);

// The rows of celld's executor slots (a prompt goes in chunks of this many tokens).
inline constexpr uint32_t kGgufSlotRows = 16;

// What one session's slot costs, as celld counts it for a policy that shares the executor; 0
// when the model's slot would be too large (its sessions compute alone).
uint64_t GgufExecutorSlotBytes(const ModelConfig& c);

class GgufStepCompute final : public executor::StepCompute {
 public:
  // `weights` must outlive the compute. max_batch_rows bounds Batch::total_rows (the executor's
  // ExecutorOptions::max_batch_rows); every buffer is allocated here. The classifier runs on up
  // to 16 entries' last rows at once, or `max_entries` when fewer are expected (a worker's own
  // LocalRounds: 1, so that it does not keep 16 rows of logits); more entries take more passes.
  static Result<std::unique_ptr<GgufStepCompute>> Create(const GgufWeights& weights, KernelIsa isa,
                                                         uint32_t max_rows, uint32_t max_batch_rows,
                                                         uint32_t max_entries = UINT32_MAX);

  executor::SlotShape shape() const override { return shape_; }
  uint32_t max_batch_rows() const { return max_batch_rows_; }
  void Run(const executor::Batch& batch, executor::ThreadPool& pool) override;

 private:
  GgufStepCompute(const GgufWeights& weights, KernelIsa isa, uint32_t max_rows,
                  uint32_t max_batch_rows, uint32_t logit_rows);
  // The scratch rows as gguf_steps takes them.
  gguf_steps::Buffers Scratch();
  void WriteRows(const executor::Batch& batch);
  // The final norm and the classifier on each entry's last row; b: h and typed_input as scratch.
  void WriteLogits(const executor::Batch& batch, const gguf_steps::Buffers& b);

  const GgufWeights& w_;
  const KernelIsa isa_;
  const executor::SlotShape shape_;
  const uint32_t max_batch_rows_;
  const uint32_t logit_rows_;  // entries whose logits are computed at once
  // [max_batch_rows][width] each; typed: the partner-type form of the widest input row.
  std::vector<float> x_, h_, h2_, q_, k_, v_, gate_, up_;
  std::vector<std::byte> typed_;
  // at_[i]: where the batch's row i is computed. A prompt's rows (RowKind::kPrefill) come first,
  // so that a product takes them in their own order (PromptOrder) and the rest in decode's.
  std::vector<uint32_t> at_;
  std::vector<uint8_t> prompt_row_;  // per batch row: a prompt's
  std::vector<float> last_rows_;     // [logit_rows][dim]: entries' last rows, gathered
  std::vector<float> logits_;        // [logit_rows][vocab]
};

}  // namespace cellhouse::engine

#endif  // CELLHOUSE_ENGINE_EXECUTOR_COMPUTE_H_
