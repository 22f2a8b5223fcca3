// cell-zygote-probe: the real zygote (worker/zygote/zygote_main.cc) whose workers can also run
// the probes of probe_engine.h. Built only into the tests; celld runs it with --zygote.
#include <memory>

#include "tests/e2e/probe/probe_engine.h"
#include "worker/zygote/zygote_main.h"

int main(int argc, char** argv) {
  using cellhouse::zygote_runtime::EngineFactory;
  return cellhouse::zygote_runtime::ZygoteMain(argc, argv, [](const EngineFactory& real) {
    return EngineFactory(
        [real](const cellhouse::zygote::SessionLimits& limits, cellhouse::executor::WorkerSlot slot)
            -> cellhouse::Result<std::unique_ptr<cellhouse::session::TurnEngine>> {
          CH_ASSIGN_OR_RETURN(std::unique_ptr<cellhouse::session::TurnEngine> engine,
                              real(limits, slot));
          return std::unique_ptr<cellhouse::session::TurnEngine>(
              std::make_unique<cellhouse::probe::ProbeTurnEngine>(std::move(engine)));
        });
  });
}
