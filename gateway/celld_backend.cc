#include "gateway/celld_backend.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>

#include <spdlog/spdlog.h>

#include "base/strings.h"
#include "gateway/turn_translation.h"
#include "ipc/frame.h"

namespace cellhouse::gateway {
namespace {

constexpr size_t kReadChunk = size_t{64} << 10;

BackendError Unreachable(const std::string& why) {
  return BackendError{BackendError::Kind::kUnavailable,
                      "The session service is not reachable right now (" + why + ")."};
}

}  // namespace

void AssertTenantToCelld(const Tenant& tenant, api::Request* request) {
  request->set_tenant(tenant.name);
}

// ---- one connection: a session from connect to close ----

class CelldBackend::Connection {
 public:
  enum class State { kNew, kOpening, kWaitingReady, kIdle, kGenerating, kClosing, kDead };

  Connection(CelldBackend& backend, Tenant tenant)
      : backend_(backend), tenant_(std::move(tenant)), decoder_(ipc::kDefaultMaxFrameBytes) {}

  ~Connection() {
    EventLoop& loop = backend_.loop_;
    if (fd_.valid() && loop.Watching(fd_.get())) loop.Remove(fd_.get());
    if (timer_ != 0) loop.CancelTimer(timer_);
  }

  void Open(BackendSession::OpenCallback done) {
    open_done_ = std::move(done);
    state_ = State::kOpening;
    Status connected = Connect();
    if (!connected) {
      // Never from inside Open: the caller is still setting up.
      std::string why = connected.error().message();
      Defer([this, why] { Fail(Unreachable(why)); });
      return;
    }
    api::Request open;
    open.mutable_open()->set_policy(backend_.options_.policy);
    AssertTenantToCelld(tenant_, &open);
    Send(open);
    SetTimer(backend_.options_.open_timeout_ms, [this] {
      Fail(Unreachable("no session within " + std::to_string(backend_.options_.open_timeout_ms) +
                       " ms"));
    });
  }

  void StartTurn(const TurnRequest& turn, TurnObserver* observer) {
    if (state_ != State::kIdle) {
      TurnObserver* o = observer;
      Defer([o] {
        o->OnFailed(BackendError{BackendError::Kind::kInternal, "the session is not idle"});
      });
      return;
    }
    observer_ = observer;
    turn_kind_ = turn.kind;
    cancel_sent_ = false;
    state_ = State::kGenerating;
    api::Request request = TranslateTurn(turn);
    if (turn.max_tokens_is_default && policy_max_tokens_ != 0) {
      request.mutable_generate()->set_max_new_tokens(std::min(turn.max_tokens, policy_max_tokens_));
    }
    Send(request);
  }

  void Cancel() {
    if (state_ != State::kGenerating || cancel_sent_) return;
    cancel_sent_ = true;
    api::Request cancel;
    cancel.mutable_cancel();
    Send(cancel);
  }

  void SetPaused(bool paused) {
    if (paused_ == paused) return;
    paused_ = paused;
    UpdateInterest();
    if (!paused_) Defer([this] { ProcessFrames(); });
  }

  bool idle() const { return state_ == State::kIdle && !refused_; }

  // The handle is gone: close the session however far it got.
  void Abandon() {
    abandoned_ = true;
    observer_ = nullptr;
    open_done_ = nullptr;
    paused_ = false;
    switch (state_) {
      case State::kIdle:
      case State::kGenerating:
        SendClose();
        break;
      case State::kOpening:
      case State::kWaitingReady:
        break;  // closed when Ready arrives (or the open fails)
      case State::kNew:
      case State::kDead:
        Retire();
        break;
      case State::kClosing:
        break;
    }
    UpdateInterest();
  }

 private:
  Status Connect() {
    const std::string& path = backend_.options_.socket_path;
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.size() >= sizeof(addr.sun_path)) return Error("the socket path is too long");
    std::memcpy(addr.sun_path, path.data(), path.size());
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd.valid()) return Error::FromErrno(errno, "socket");
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      // A Unix stream socket connects at once or not at all (EAGAIN: celld's backlog is full).
      return Error::FromErrno(errno, "connect to " + Quote(path));
    }
    fd_ = std::move(fd);
    return backend_.loop_.Add(fd_.get(), EPOLLIN, [this](uint32_t events) { OnEvents(events); });
  }

  void Send(const api::Request& request) {
    ipc::AppendFrame(request, &out_);
    Flush();
  }

  void SendClose() {
    if (state_ == State::kGenerating && !cancel_sent_) Cancel();
    api::Request close;
    close.mutable_close();
    state_ = State::kClosing;
    Send(close);
    SetTimer(backend_.options_.close_timeout_ms, [this] { Retire(); });
  }

  void Flush() {
    while (!out_.empty() && fd_.valid()) {
      ssize_t n = ::send(fd_.get(), out_.data(), out_.size(), MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN) break;
        Lost(Error::FromErrno(errno, "send to celld").message());
        return;
      }
      out_.erase(0, static_cast<size_t>(n));
    }
    UpdateInterest();
  }

  void UpdateInterest() {
    if (!fd_.valid() || !backend_.loop_.Watching(fd_.get())) return;
    uint32_t events = 0;
    if (!paused_) events |= EPOLLIN;
    if (!out_.empty()) events |= EPOLLOUT;
    static_cast<void>(backend_.loop_.Modify(fd_.get(), events));
  }

  void OnEvents(uint32_t events) {
    if ((events & EPOLLOUT) != 0) Flush();
    if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR)) == 0 || !fd_.valid()) return;
    char buf[kReadChunk];
    ssize_t n = ::read(fd_.get(), buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) return;
      Lost(Error::FromErrno(errno, "read from celld").message());
      return;
    }
    if (n == 0) {
      ProcessFrames();
      Lost("celld closed the connection");
      return;
    }
    Status fed = decoder_.Feed(std::string_view(buf, static_cast<size_t>(n)));
    if (!fed) {
      Lost(fed.error().message());
      return;
    }
    ProcessFrames();
  }

  void ProcessFrames() {
    while (!paused_ && state_ != State::kDead && fd_.valid()) {
      Result<std::optional<std::string>> frame = decoder_.Next();
      if (!frame) {
        Lost(frame.error().message());
        return;
      }
      if (!frame->has_value()) return;
      api::Response response;
      if (!response.ParseFromString(**frame)) {
        Lost("celld sent a malformed response");
        return;
      }
      Handle(response);
    }
  }

  void Handle(const api::Response& r) {
    if (r.has_error()) {
      last_error_ = r.error();
      if (state_ == State::kClosing) return;
      if (state_ == State::kGenerating && r.error().code() != api::SESSION_ENDED) {
        // The worker refused the turn (a parameter over the policy, a prompt too long) and
        // lives on: keep the connection so that dropping the handle closes the session.
        RefuseTurn(TranslateError(r.error()));
        return;
      }
      Fail(TranslateError(r.error()));
      return;
    }
    switch (state_) {
      case State::kOpening:
        if (r.has_opened()) {
          backend_.Learned(tenant_, r.opened());
          policy_max_tokens_ = r.opened().max_new_tokens();
          state_ = State::kWaitingReady;
        }
        return;
      case State::kWaitingReady:
        if (!r.has_ready()) return;
        CancelTimer();
        state_ = State::kIdle;
        if (abandoned_) {
          SendClose();
          return;
        }
        if (open_done_) {
          BackendSession::OpenCallback done = std::move(open_done_);
          open_done_ = nullptr;
          done(std::nullopt);
        }
        return;
      case State::kGenerating:
        if (r.has_piece()) {
          if (observer_ == nullptr) return;
          if (!r.piece().reasoning().empty()) {
            observer_->OnPiece(r.piece().reasoning(), TextChannel::kReasoning);
          }
          if (observer_ != nullptr && !r.piece().text().empty()) {
            observer_->OnPiece(r.piece().text(), TextChannel::kContent);
          }
        } else if (r.has_done()) {
          state_ = State::kIdle;
          TurnObserver* o = std::exchange(observer_, nullptr);
          if (o != nullptr) o->OnDone(TranslateDone(r.done(), turn_kind_));
        }
        return;
      default:
        return;  // an Ack, or anything while closing
    }
  }

  void RefuseTurn(const BackendError& error) {
    state_ = State::kIdle;
    refused_ = true;  // not offered for reuse
    if (TurnObserver* o = std::exchange(observer_, nullptr)) o->OnFailed(error);
  }

  // The connection ended under us.
  void Lost(const std::string& why) {
    if (state_ == State::kClosing || state_ == State::kDead) {
      Retire();
      return;
    }
    if (last_error_) {
      Fail(TranslateError(*last_error_));
    } else {
      Fail(BackendError{state_ == State::kGenerating ? BackendError::Kind::kSessionEnded
                                                     : BackendError::Kind::kUnavailable,
                        "The session ended unexpectedly (" + why + ")."});
    }
  }

  void Fail(const BackendError& error) {
    CancelTimer();
    State was = state_;
    state_ = State::kDead;
    if (fd_.valid()) {
      backend_.loop_.Remove(fd_.get());
      fd_.reset();
    }
    if (abandoned_) {
      Retire();
      return;
    }
    if (open_done_ && (was == State::kOpening || was == State::kWaitingReady)) {
      BackendSession::OpenCallback done = std::move(open_done_);
      open_done_ = nullptr;
      done(error);
      return;
    }
    if (TurnObserver* o = std::exchange(observer_, nullptr)) o->OnFailed(error);
  }

  void Retire() {
    CancelTimer();
    if (fd_.valid()) {
      backend_.loop_.Remove(fd_.get());
      fd_.reset();
    }
    state_ = State::kDead;
    if (abandoned_) backend_.Forget(this);
  }

  void SetTimer(int64_t ms, std::function<void()> callback) {
    CancelTimer();
    EventLoop& loop = backend_.loop_;
    timer_ = loop.AddTimer(loop.clock().NowNanos() + ms * kNanosPerMilli,
                           [this, callback = std::move(callback)] {
                             timer_ = 0;
                             callback();
                           });
  }

  void CancelTimer() {
    if (timer_ != 0) backend_.loop_.CancelTimer(timer_);
    timer_ = 0;
  }

  // Runs `f` on the next loop iteration, unless this connection is gone by then.
  void Defer(std::function<void()> f) {
    EventLoop& loop = backend_.loop_;
    std::weak_ptr<int> alive = alive_;
    loop.AddTimer(loop.clock().NowNanos(), [alive, f = std::move(f)] {
      if (!alive.expired()) f();
    });
  }

  CelldBackend& backend_;
  Tenant tenant_;
  UniqueFd fd_;
  ipc::FrameDecoder decoder_;
  std::string out_;
  State state_ = State::kNew;
  BackendSession::OpenCallback open_done_;
  TurnObserver* observer_ = nullptr;
  std::optional<api::Error> last_error_;
  TimerId timer_ = 0;
  bool paused_ = false;
  bool cancel_sent_ = false;
  bool abandoned_ = false;
  bool refused_ = false;
  TurnRequest::Kind turn_kind_ = TurnRequest::Kind::kCompletion;
  uint32_t policy_max_tokens_ = 0;                         // SessionOpened.max_new_tokens
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);  // for Defer
};

namespace {

// What the gateway holds: dropping it abandons (closes) the connection.
class CelldSession final : public BackendSession {
 public:
  explicit CelldSession(CelldBackend::Connection* connection) : connection_(connection) {}
  ~CelldSession() override { connection_->Abandon(); }
  void Open(OpenCallback done) override { connection_->Open(std::move(done)); }
  void StartTurn(const TurnRequest& turn, TurnObserver* observer) override {
    connection_->StartTurn(turn, observer);
  }
  void Cancel() override { connection_->Cancel(); }
  void SetPaused(bool paused) override { connection_->SetPaused(paused); }
  bool idle() const override { return connection_->idle(); }

 private:
  CelldBackend::Connection* connection_;
};

}  // namespace

// ---- CelldBackend ----

CelldBackend::CelldBackend(EventLoop& loop, CelldBackendOptions options)
    : loop_(loop), options_(std::move(options)), started_unix_(std::time(nullptr)) {}

CelldBackend::~CelldBackend() {
  if (forget_timer_ != 0) loop_.CancelTimer(forget_timer_);
  connections_.clear();
}

TenantLimits CelldBackend::Limits(const Tenant& tenant) {
  TenantLimits limits = options_.limits;
  auto it = learned_.find(tenant.name);
  if (it != learned_.end()) {
    if (it->second.max_tokens != 0) {
      limits.max_tokens = std::min(limits.max_tokens, it->second.max_tokens);
    }
    if (it->second.context_length != 0) limits.context_length = it->second.context_length;
  }
  return limits;
}

void CelldBackend::Learned(const Tenant& tenant, const api::SessionOpened& opened) {
  TenantLimits& l = learned_[tenant.name];
  l.max_tokens = opened.max_new_tokens();
  l.context_length = opened.context_length();
}

std::vector<ModelInfo> CelldBackend::Models(const Tenant& /*tenant*/) {
  std::vector<ModelInfo> out;
  for (const std::string& name : options_.models) {
    out.push_back(ModelInfo{.id = name, .created = started_unix_, .owned_by = "cellhouse"});
  }
  return out;
}

std::optional<BackendError> CelldBackend::Check(const TurnRequest& turn) {
  return CheckTranslatable(turn);
}

std::unique_ptr<BackendSession> CelldBackend::CreateSession(const Tenant& tenant,
                                                            const std::string& /*model*/) {
  auto connection = std::make_unique<Connection>(*this, tenant);
  Connection* raw = connection.get();
  connections_.emplace(raw, std::move(connection));
  return std::make_unique<CelldSession>(raw);
}

void CelldBackend::Forget(Connection* connection) {
  // Not now: the connection may be deep in its own callback.
  forgotten_.push_back(connection);
  if (forget_timer_ != 0) return;
  forget_timer_ = loop_.AddTimer(loop_.clock().NowNanos(), [this] {
    forget_timer_ = 0;
    std::vector<Connection*> gone = std::move(forgotten_);
    forgotten_.clear();
    for (Connection* c : gone) connections_.erase(c);
  });
}

}  // namespace cellhouse::gateway
