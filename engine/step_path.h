// How a Conversation runs a step (tokens at positions pos ..) through the model. Without one it
// calls Forward() in its own process; a session that shares the model's step executor gives it a
// path through its slot (engine/shared_step_path.h), which falls back to its own process.
#ifndef CELLHOUSE_ENGINE_STEP_PATH_H_
#define CELLHOUSE_ENGINE_STEP_PATH_H_

#include <cstdint>
#include <span>

#include "engine/run_state.h"
#include "engine/step_kind.h"

namespace cellhouse::engine {

class StepPath {
 public:
  virtual ~StepPath() = default;
  // Forward()'s contract: the tokens (valid ids, within the state's context; of `kind`) go
  // through the model; returns the last one's logits (state.logits). Must not fail.
  virtual const float* Forward(RunState& state, std::span<const int32_t> tokens, int32_t pos,
                               StepKind kind) = 0;
  // A turn ended: nothing more comes until the next one.
  virtual void TurnEnded() {}
};

}  // namespace cellhouse::engine

#endif  // CELLHOUSE_ENGINE_STEP_PATH_H_
