// A TurnEngine for tests that runs probes inside a real sandboxed worker. A turn whose prompt is
//   probe:attack:NAME     runs one attack of attacks.h; the piece says "NAME: ok" or its errno
//   probe:memory-bomb     allocates and touches memory until the OOM killer ends the worker
//   probe:fork            forks once (the child exits at once); "fork: ok" or the errno
//   probe:spin:MS         burns CPU for MS milliseconds; the piece is the iterations done
//   probe:env:NAME        the worker's value of environment variable NAME, or "(unset)"
//   probe:lie             tells celld on the control channel it used more context than it has
//   probe:flood           sends celld thousands of (valid) heartbeats at once
//   probe:hang            never answers again (no token, no heartbeat)
// (lie and flood find the control channel among the open descriptors by its socket type, so the
// policy must allow getsockopt)
// and any other prompt goes to the real engine, so a probe worker is also an ordinary session.
// Test-only: linked into cell-zygote-probe, never into the shipped worker.
#ifndef CELLHOUSE_TESTS_E2E_PROBE_PROBE_ENGINE_H_
#define CELLHOUSE_TESTS_E2E_PROBE_PROBE_ENGINE_H_

#include <memory>

#include "worker/session/turn_engine.h"

namespace cellhouse::probe {

class ProbeTurnEngine final : public session::TurnEngine {
 public:
  explicit ProbeTurnEngine(std::unique_ptr<session::TurnEngine> real) : real_(std::move(real)) {}

  Result<session::TurnResult> Turn(const session::TurnRequest& request,
                                   const session::TokenCallback& on_token) override;
  session::TurnErrorKind last_error_kind() const override { return real_->last_error_kind(); }
  int32_t context_used() const override { return real_->context_used(); }
  int32_t context_length() const override { return real_->context_length(); }
  uint64_t KvBytesInUse() const override { return real_->KvBytesInUse(); }
  std::string Describe() const override { return "probe over " + real_->Describe(); }

 private:
  std::unique_ptr<session::TurnEngine> real_;
};

}  // namespace cellhouse::probe

#endif  // CELLHOUSE_TESTS_E2E_PROBE_PROBE_ENGINE_H_
