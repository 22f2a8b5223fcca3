// A scripted SessionBackend for the gateway's tests: sessions open and answer from the event
// loop, piece by piece on timers, as celld's would, and every call is recorded (behind a mutex:
// the tests read it from another thread than the loop's).
//
//   FakeBackend backend(loop);
//   backend.script().pieces = {"Hel", "lo"};
//   ... requests through the gateway ...
//   EXPECT_EQ(backend.Snapshot().turns.size(), 1u);
#ifndef CELLHOUSE_TESTS_GATEWAY_FAKE_BACKEND_H_
#define CELLHOUSE_TESTS_GATEWAY_FAKE_BACKEND_H_

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "gateway/backend.h"
#include "gateway/http_server.h"

namespace cellhouse::gateway::testing {

struct FakeScript {
  std::vector<std::string> reasoning;  // sent first, as reasoning text
  std::vector<std::string> pieces = {"Hello", ",", " world"};
  TurnDone::Reason reason = TurnDone::Reason::kEndOfText;
  std::optional<BackendError> open_error;
  std::optional<BackendError> turn_error;  // instead of Done, after the pieces
  int64_t open_delay_ms = 0;
  int64_t piece_interval_ms = 0;
  // Repeats the pieces until cancelled (a generation that never ends by itself).
  bool endless = false;
};

// What the backend saw.
struct FakeRecord {
  int sessions_created = 0;
  int sessions_abandoned = 0;       // handles dropped
  int abandoned_while_running = 0;  // dropped during a turn (the generation was cancelled)
  int cancels = 0;
  int pauses = 0;
  std::vector<TurnRequest> turns;
  std::vector<int> turn_session_ids;  // which session ran each turn
  std::vector<std::string> tenants;   // per session created
};

class FakeBackend : public SessionBackend {
 public:
  explicit FakeBackend(EventLoop& loop);
  ~FakeBackend() override;

  // Set before the loop runs (or from the loop's thread).
  FakeScript& script() { return script_; }
  TenantLimits& limits() { return limits_; }
  std::vector<ModelInfo>& models() { return models_; }

  FakeRecord Snapshot() const;

  TenantLimits Limits(const Tenant& tenant) override;
  std::vector<ModelInfo> Models(const Tenant& tenant) override;
  std::optional<BackendError> Check(const TurnRequest& turn) override;
  std::unique_ptr<BackendSession> CreateSession(const Tenant& tenant,
                                                const std::string& model) override;

  class Session;

 private:
  friend class Session;
  EventLoop& loop_;
  FakeScript script_;
  TenantLimits limits_;
  std::vector<ModelInfo> models_ = {{.id = "fake-model", .created = 1700000000}};
  mutable std::mutex mutex_;
  FakeRecord record_;
  int next_session_ = 1;
};

}  // namespace cellhouse::gateway::testing

#endif  // CELLHOUSE_TESTS_GATEWAY_FAKE_BACKEND_H_
