#include "tests/gateway/fake_backend.h"

#include <utility>

namespace cellhouse::gateway::testing {

class FakeBackend::Session : public BackendSession {
 public:
  Session(FakeBackend& backend, int id) : backend_(backend), id_(id) {}

  ~Session() override {
    Stop();
    std::lock_guard<std::mutex> lock(backend_.mutex_);
    ++backend_.record_.sessions_abandoned;
    if (running_) ++backend_.record_.abandoned_while_running;
  }

  void Open(OpenCallback done) override {
    const FakeScript& s = backend_.script_;
    Schedule(s.open_delay_ms, [this, done = std::move(done)] {
      std::optional<BackendError> error = backend_.script_.open_error;
      open_ = !error.has_value();
      done(error);
    });
  }

  void StartTurn(const TurnRequest& turn, TurnObserver* observer) override {
    {
      std::lock_guard<std::mutex> lock(backend_.mutex_);
      backend_.record_.turns.push_back(turn);
      backend_.record_.turn_session_ids.push_back(id_);
    }
    observer_ = observer;
    running_ = true;
    cancelled_ = false;
    step_ = 0;
    Next();
  }

  void Cancel() override {
    {
      std::lock_guard<std::mutex> lock(backend_.mutex_);
      ++backend_.record_.cancels;
    }
    cancelled_ = true;
  }

  void SetPaused(bool paused) override {
    if (paused) {
      std::lock_guard<std::mutex> lock(backend_.mutex_);
      ++backend_.record_.pauses;
    }
    paused_ = paused;
    if (!paused_ && running_ && timer_ == 0) Next();
  }

  bool idle() const override { return open_ && !running_ && !failed_; }

 private:
  void Schedule(int64_t ms, std::function<void()> f) {
    EventLoop& loop = backend_.loop_;
    timer_ = loop.AddTimer(loop.clock().NowNanos() + ms * kNanosPerMilli, [this, f = std::move(f)] {
      timer_ = 0;
      f();
    });
  }

  void Stop() {
    if (timer_ != 0) backend_.loop_.CancelTimer(timer_);
    timer_ = 0;
  }

  // One step of the turn: a piece, or the end.
  void Next() {
    if (paused_) return;
    Schedule(backend_.script_.piece_interval_ms, [this] { Step(); });
  }

  void Step() {
    const FakeScript& s = backend_.script_;
    size_t total = s.reasoning.size() + s.pieces.size();
    if (cancelled_) return End(TurnDone::Reason::kCancelled);
    if (step_ < total || (s.endless && !s.pieces.empty())) {
      size_t i = step_++;
      ++generated_;
      if (i < s.reasoning.size()) {
        observer_->OnPiece(s.reasoning[i], TextChannel::kReasoning);
      } else {
        observer_->OnPiece(s.pieces[(i - s.reasoning.size()) % s.pieces.size()],
                           TextChannel::kContent);
      }
      if (running_) Next();
      return;
    }
    if (s.turn_error) {
      running_ = false;
      failed_ = true;
      observer_->OnFailed(*s.turn_error);
      return;
    }
    End(s.reason);
  }

  void End(TurnDone::Reason reason) {
    running_ = false;
    TurnDone done;
    done.reason = reason;
    done.completion_tokens = static_cast<uint32_t>(step_);
    done.prompt_tokens = 7;
    observer_->OnDone(done);
  }

  FakeBackend& backend_;
  int id_;
  TurnObserver* observer_ = nullptr;
  TimerId timer_ = 0;
  size_t step_ = 0;
  uint32_t generated_ = 0;
  bool open_ = false;
  bool running_ = false;
  bool cancelled_ = false;
  bool paused_ = false;
  bool failed_ = false;
};

FakeBackend::FakeBackend(EventLoop& loop) : loop_(loop) {}
FakeBackend::~FakeBackend() = default;

FakeRecord FakeBackend::Snapshot() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return record_;
}

TenantLimits FakeBackend::Limits(const Tenant& /*tenant*/) { return limits_; }

std::vector<ModelInfo> FakeBackend::Models(const Tenant& /*tenant*/) { return models_; }

std::optional<BackendError> FakeBackend::Check(const TurnRequest& turn) {
  if (turn.sampling.frequency_penalty != 0) {
    return BackendError{BackendError::Kind::kInvalidRequest, "no penalties here"};
  }
  return std::nullopt;
}

std::unique_ptr<BackendSession> FakeBackend::CreateSession(const Tenant& tenant,
                                                           const std::string& /*model*/) {
  std::lock_guard<std::mutex> lock(mutex_);
  ++record_.sessions_created;
  record_.tenants.push_back(tenant.name);
  return std::make_unique<Session>(*this, next_session_++);
}

}  // namespace cellhouse::gateway::testing
