// The body of cell-zygote's main, as a library function: the shipped binary calls it as is; a
// test-only zygote (tests/e2e/probe) passes a wrapper around the engine factory to run its probe
// inside the very same sandbox. The shipped binary never contains a probe.
#ifndef CELLHOUSE_WORKER_ZYGOTE_ZYGOTE_MAIN_H_
#define CELLHOUSE_WORKER_ZYGOTE_ZYGOTE_MAIN_H_

#include <functional>

#include "worker/zygote/zygote.h"

namespace cellhouse::zygote_runtime {

// Receives the real engine factory, returns the one workers use.
using EngineFactoryWrapper = std::function<EngineFactory(EngineFactory)>;

int ZygoteMain(int argc, char** argv, const EngineFactoryWrapper& wrap);

}  // namespace cellhouse::zygote_runtime

#endif  // CELLHOUSE_WORKER_ZYGOTE_ZYGOTE_MAIN_H_
