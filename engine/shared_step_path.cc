#include "engine/shared_step_path.h"

#include <utility>
#include <variant>

#include "engine/gguf_forward.h"
#include "engine/kernels/type_kernels.h"

namespace cellhouse::engine {

const float* SharedStepPath::Forward(RunState& state, std::span<const int32_t> tokens, int32_t pos,
                                     StepKind kind) {
  if (kind == StepKind::kDecode && client_.alone()) {
    if (!solo_) client_.Solo();
    solo_ = true;
    solo_steps_ += 1;
    // The worker's own forward pass: for one decode token, the rounds' bits without their copies.
    return ForwardGguf(weights_, isa_, state, tokens, pos, kind);
  }
  solo_ = false;
  StepTransport& rounds = client_.active() ? static_cast<StepTransport&>(shared_) : *local_;
  return ForwardGgufRounds(weights_, isa_, state, tokens, pos, kind, rounds, local_.get());
}

void SharedStepPath::TurnEnded() {
  if (client_.active()) client_.Idle();
  solo_ = false;
}

Result<std::unique_ptr<StepPath>> MakeSharedStepPath(const Model& model, executor::WorkerSlot slot,
                                                     executor::SlotClientOptions options) {
  const auto* weights = std::get_if<GgufWeights>(&model.weights());
  if (!slot.valid() || weights == nullptr) return std::unique_ptr<StepPath>();
  const KernelIsa isa = BestKernelIsa();
  if (slot.shape.max_rows == 0 ||
      slot.shape != GgufSlotShape(model.config(), slot.shape.max_rows)) {
    return Error("the executor's slot does not fit this model (its rows are not this model's)");
  }
  // The fallback's buffers are made now, before the first step: failing over allocates nothing.
  CH_ASSIGN_OR_RETURN(std::unique_ptr<LocalRounds> local,
                      LocalRounds::Create(*weights, isa, slot.shape.max_rows));
  return std::unique_ptr<StepPath>(
      std::make_unique<SharedStepPath>(*weights, isa, slot, std::move(local), options));
}

}  // namespace cellhouse::engine
