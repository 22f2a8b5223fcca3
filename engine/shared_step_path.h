// A conversation's steps through the model's shared step executor (docs/EXECUTOR.md): each step's
// rounds go through the worker's slot; when the executor is gone, hung, or drops the slot, the
// step restarts at round 0 in this process (LocalRounds, the same compute on one thread, made
// here before the first step) and so does every later one. While the executor says no other
// session is busy (--executor-solo), decode steps run in this process's own ForwardGguf (no
// round trips with nobody to batch with; prompts still go to the executor's threads), and come
// back when another session starts. Either way the tokens are the same.
//
//   CH_ASSIGN_OR_RETURN(std::unique_ptr<StepPath> path, MakeSharedStepPath(model, slot));
//   if (path) conversation.UseStepPath(std::move(path));   // nullptr: computes alone
#ifndef CELLHOUSE_ENGINE_SHARED_STEP_PATH_H_
#define CELLHOUSE_ENGINE_SHARED_STEP_PATH_H_

#include <memory>

#include "base/result.h"
#include "engine/executor_rounds.h"
#include "engine/model.h"
#include "engine/step_path.h"
#include "executor/slot_client.h"
#include "executor/slot_memory.h"

namespace cellhouse::engine {

class SharedStepPath final : public StepPath {
 public:
  SharedStepPath(const GgufWeights& weights, KernelIsa isa, executor::WorkerSlot slot,
                 std::unique_ptr<LocalRounds> local, executor::SlotClientOptions options)
      : weights_(weights),
        isa_(isa),
        client_(slot, options),
        shared_(client_),
        local_(std::move(local)) {}

  const float* Forward(RunState& state, std::span<const int32_t> tokens, int32_t pos,
                       StepKind kind) override;
  void TurnEnded() override;

  // False once the worker computes alone (failover_reason() says why).
  bool shared() const { return client_.active(); }
  // Decode steps taken on the worker's own path because no other session was busy.
  uint64_t solo_steps() const { return solo_steps_; }
  executor::FailoverReason failover_reason() const { return client_.failover_reason(); }

 private:
  const GgufWeights& weights_;
  const KernelIsa isa_;
  executor::SlotClient client_;
  SlotRounds shared_;
  std::unique_ptr<LocalRounds> local_;
  bool solo_ = false;  // told the executor Solo() and took no round since
  uint64_t solo_steps_ = 0;
};

// The path for a session with `slot`: nullptr (computes alone) when the slot is empty or the
// model is not GGUF (the executor computes GGUF models only); an error when the slot's shape is
// not the model's.
Result<std::unique_ptr<StepPath>> MakeSharedStepPath(const Model& model, executor::WorkerSlot slot,
                                                     executor::SlotClientOptions options = {});

}  // namespace cellhouse::engine

#endif  // CELLHOUSE_ENGINE_SHARED_STEP_PATH_H_
