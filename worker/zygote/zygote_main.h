// The body of cell-zygote's main, as a library function: the shipped binary calls it as is; a
// test-only zygote (tests/e2e/probe) passes a wrapper around the engine factory to run its probe
// inside the very same sandbox, another (tests/e2e/shared) a fake executor compute. The shipped
// binary never contains either.
#ifndef CELLHOUSE_WORKER_ZYGOTE_ZYGOTE_MAIN_H_
#define CELLHOUSE_WORKER_ZYGOTE_ZYGOTE_MAIN_H_

#include <functional>
#include <optional>

#include "engine/executor_compute.h"
#include "engine/model.h"
#include "worker/zygote/zygote.h"

namespace cellhouse::zygote_runtime {

// Receives the real engine factory, returns the one workers use.
using EngineFactoryWrapper = std::function<EngineFactory(EngineFactory)>;

// What a zygote built on ZygoteMain adds to the shipped one.
struct ZygoteHooks {
  EngineFactoryWrapper wrap_engine;
  // The model's shared step executor (its slot shape and entry), made once the model is mapped;
  // nullopt, or no hook: this zygote starts no executor (ZygoteReady.executor_slot_bytes 0) and
  // celld runs every session in its own worker. The shipped zygote passes GgufExecutorSupport.
  std::function<std::optional<ExecutorSupport>(const engine::Model& model)> executor;
};

// A GGUF model's executor: GgufStepCompute over the zygote's mapping (no copy of the weights),
// slots of kExecutorChunkRows rows. nullopt for other formats, or a model whose slot would be
// too large (its sessions compute alone).
inline constexpr uint32_t kExecutorChunkRows = engine::kGgufSlotRows;
std::optional<ExecutorSupport> GgufExecutorSupport(const engine::Model& model);

int ZygoteMain(int argc, char** argv, const ZygoteHooks& hooks);
int ZygoteMain(int argc, char** argv, const EngineFactoryWrapper& wrap);

}  // namespace cellhouse::zygote_runtime

#endif  // CELLHOUSE_WORKER_ZYGOTE_ZYGOTE_MAIN_H_
