// A session's side of a GGUF model's step through the shared executor (docs/EXECUTOR.md): the
// worker keeps what depends on its positions and history (embedding lookup, RoPE, its own KV
// cache and attention, sampling) and sends the rest, round by round, through a StepTransport:
// the executor's slot (SlotRounds), or its own process (LocalRounds, the same compute on one
// thread, which is what it falls back to when the executor is gone).
//
//   LocalRounds local(weights, isa, shape);         // built before the sandbox's filter
//   SlotRounds shared(slot_client);
//   const float* logits = ForwardGgufRounds(weights, isa, state, tokens, pos, shared, &local);
//
// The rounds run executor_compute.h's steps on the rows, so a token gets the same bits whichever
// way its rounds went, alone or in any batch; and the same bits as ForwardGguf (gguf_forward.h),
// except where a prompt's chunking differs: a chunk of one token takes decode's attention. Prompts
// are cut into chunks of at most shape.max_rows tokens, evenly, so that no chunk of a prompt longer
// than one token is a single token when max_rows >= 2 (as ForwardGguf's 128 would rarely).
#ifndef CELLHOUSE_ENGINE_EXECUTOR_ROUNDS_H_
#define CELLHOUSE_ENGINE_EXECUTOR_ROUNDS_H_

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "base/result.h"
#include "engine/executor_compute.h"
#include "engine/formats/gguf_model.h"
#include "engine/run_state.h"
#include "engine/step_kind.h"
#include "executor/slot_client.h"
#include "executor/thread_pool.h"

namespace cellhouse::engine {

// Where a step's rounds go.
class StepTransport {
 public:
  virtual ~StepTransport() = default;
  virtual const executor::SlotShape& shape() const = 0;
  // Row r: input_row_floats to write before a round, output_row_floats to read after it.
  virtual float* row(uint32_t r) = 0;
  // The last round's answer: final_floats.
  virtual const float* final_output() const = 0;
  // Sends a round and waits for its answer; false: this transport cannot go on (the step is to
  // be computed elsewhere from round 0).
  virtual bool Exchange(uint32_t round, uint32_t rows, executor::RowKind kind,
                        uint32_t step_flags) = 0;
};

// A slot's payload in private memory (the rounds of LocalRounds and ThreadRounds): rows at the
// slot's stride, or the final answer.
class PayloadRows {
 public:
  explicit PayloadRows(const executor::SlotShape& shape)
      : shape_(shape), floats_(executor::PayloadFloats(shape)) {}
  const executor::SlotShape& shape() const { return shape_; }
  float* row(uint32_t r) { return floats_.data() + size_t{r} * executor::RowStrideFloats(shape_); }
  float* data() { return floats_.data(); }
  const float* data() const { return floats_.data(); }

 private:
  executor::SlotShape shape_;
  std::vector<float> floats_;
};

// The shared executor's slot.
class SlotRounds final : public StepTransport {
 public:
  explicit SlotRounds(executor::SlotClient& client) : client_(client) {}
  const executor::SlotShape& shape() const override { return client_.shape(); }
  float* row(uint32_t r) override { return client_.row(r); }
  const float* final_output() const override { return client_.final_output(); }
  bool Exchange(uint32_t round, uint32_t rows, executor::RowKind kind,
                uint32_t step_flags) override {
    return client_.Exchange(round, rows, kind, step_flags) == executor::SlotOutcome::kOk;
  }

 private:
  executor::SlotClient& client_;
};

// The rounds computed in this process, on this thread, by the executor's own compute: a slot of
// one's own. Never fails.
class LocalRounds final : public StepTransport {
 public:
  static Result<std::unique_ptr<LocalRounds>> Create(const GgufWeights& weights, KernelIsa isa,
                                                     uint32_t max_rows);
  const executor::SlotShape& shape() const override { return rows_.shape(); }
  float* row(uint32_t r) override { return rows_.row(r); }
  const float* final_output() const override { return rows_.data(); }
  bool Exchange(uint32_t round, uint32_t rows, executor::RowKind kind,
                uint32_t step_flags) override;

 private:
  LocalRounds(std::unique_ptr<GgufStepCompute> compute, std::unique_ptr<executor::ThreadPool> pool,
              std::vector<float> input);
  std::unique_ptr<GgufStepCompute> compute_;
  std::unique_ptr<executor::ThreadPool> pool_;
  PayloadRows rows_;          // the payload, as a slot's
  std::vector<float> input_;  // the round's rows, dense (the executor's private copy)
};

// Runs `tokens` (of `kind`: step_kind.h) at positions pos .. (non-empty, below the vocabulary,
// within the state's context) through `rounds`, in chunks of at most its (and the fallback's)
// shape's max_rows, each sent as its kind's rows (a prompt's: RowKind::kPrefill); returns the
// last token's logits (state.logits). When `rounds` cannot go on, the chunk it failed in and every
// later one go through `fallback` from round 0 (the cache entries already written are rewritten
// with the same bits); without a fallback, returns nullptr.
const float* ForwardGgufRounds(const GgufWeights& weights, KernelIsa isa, RunState& state,
                               std::span<const int32_t> tokens, int32_t pos, StepKind kind,
                               StepTransport& rounds, StepTransport* fallback);

}  // namespace cellhouse::engine

#endif  // CELLHOUSE_ENGINE_EXECUTOR_ROUNDS_H_
