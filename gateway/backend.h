// The seam between the gateway and whatever runs the sessions: celld over its Unix socket in
// production (celld_backend.h), a scripted fake in tests (tests/gateway/fake_backend.h). The
// gateway never touches the protocol itself: it asks for a tenant's limits and models, opens a
// session, runs turns on it and closes it, all from its one event loop, nothing blocking.
//
//   std::unique_ptr<BackendSession> s = backend.CreateSession(tenant, "qwen3");
//   s->Open([&](std::optional<BackendError> failed) { ... s->StartTurn(turn, &observer); });
//   ... observer.OnPiece(bytes) ... observer.OnDone(done) | observer.OnFailed(error)
//   s.reset();   // closes the session (Cancel first if a turn runs), however far it got
#ifndef CELLHOUSE_GATEWAY_BACKEND_H_
#define CELLHOUSE_GATEWAY_BACKEND_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace cellhouse::gateway {

// The tenant a request is served under, as its API key says (keys.h). The gateway asserts it to
// the backend; celld will accept that assertion only from the gateway's Unix user.
struct Tenant {
  std::string name;
  bool operator==(const Tenant&) const = default;
};

// What a tenant may ask for, enforced by the gateway before any work is queued. Today the
// celld backend fills it from its flags and from what celld's policy said when it last opened
// a session for the tenant (SessionOpened.max_new_tokens, context_length); once celld answers
// for a tenant's policy directly, from that.
struct TenantLimits {
  size_t max_body_bytes = size_t{1} << 20;
  size_t max_messages = 256;
  size_t max_prompt_bytes = size_t{256} << 10;  // all message contents (or the prompt) together
  uint32_t max_tokens = 256;                    // new tokens per request
  uint32_t context_length = 0;                  // 0: not known yet (the worker then decides)
  size_t max_stop_strings = 4;
  size_t max_stop_bytes = 256;  // each stop string
  size_t max_concurrent_requests = 8;
  size_t max_idle_sessions = 2;  // kept for conversation reuse, per tenant and model
};

struct ModelInfo {
  std::string id;
  int64_t created = 0;  // Unix seconds
  std::string owned_by = "cellhouse";
};

struct ChatMessage {
  std::string role;  // system, developer, user, assistant, tool
  std::string content;
  std::string name;  // optional participant name
  bool operator==(const ChatMessage&) const = default;
};

// Sampling as the API spells it, already validated (openai_request.h).
struct Sampling {
  std::optional<double> temperature;  // [0, 2]
  std::optional<double> top_p;        // [0, 1]
  std::optional<uint64_t> seed;
  double frequency_penalty = 0;  // [-2, 2]
  double presence_penalty = 0;   // [-2, 2]
};

// One turn for a session.
struct TurnRequest {
  enum class Kind { kCompletion, kChat };
  Kind kind = Kind::kCompletion;
  std::string prompt;                 // kCompletion
  std::vector<ChatMessage> messages;  // kChat: the whole conversation the client sent
  // kChat on a reused session: how many leading messages of `messages` the session already
  // holds (the conversation cache matched them); the rest is new.
  size_t messages_held = 0;
  uint32_t max_tokens = 0;
  // Stop sequences: generation ends where one appears, which is not sent.
  std::vector<std::string> stop;
  // The client gave no max_tokens: `max_tokens` is the tenant's limit as the gateway knew it,
  // and the backend may lower it to what the session's policy allows.
  bool max_tokens_is_default = false;
  Sampling sampling;
};

struct TurnDone {
  // kEndOfText: the model's end-of-generation token; kStopString: one of TurnRequest::stop.
  enum class Reason { kLength, kEndOfText, kStopString, kContextFull, kCancelled };
  Reason reason = Reason::kLength;
  uint32_t prompt_tokens = 0;      // tokens in the conversation before this turn's generation
  uint32_t completion_tokens = 0;  // generated this turn
  uint32_t cached_tokens = 0;      // of prompt_tokens, reused from the session's cache
  uint64_t time_to_first_token_us = 0;
};

struct BackendError {
  enum class Kind {
    kInvalidRequest,  // the backend refused a parameter (400)
    kContextFull,     // the prompt does not fit the context (400, context_length_exceeded)
    kPermission,      // the tenant may not do this (403)
    kTenantLimit,     // the tenant is at one of its caps (429)
    kNoCapacity,      // the server is full or stopping (503)
    kUnavailable,     // the backend cannot be reached (503)
    kSessionEnded,    // the session died under the turn (500; the message says why)
    kInternal,        // anything else (500)
  };
  Kind kind = Kind::kInternal;
  std::string message;  // one sentence, safe to show the client
};

// Which part of the reply a piece belongs to: the answer, or a reasoning model's thinking
// (Qwen3's <think> block), which the API returns apart as `reasoning_content` (celld's
// Piece.reasoning).
enum class TextChannel { kContent, kReasoning };

class TurnObserver {
 public:
  virtual ~TurnObserver() = default;
  // Raw generated bytes, in order (a multi-byte character may be split across calls).
  virtual void OnPiece(std::string_view bytes, TextChannel channel) = 0;
  // The turn ended; the session can take another one.
  virtual void OnDone(const TurnDone& done) = 0;
  // The turn failed; the session is unusable afterwards.
  virtual void OnFailed(const BackendError& error) = 0;
};

class BackendSession {
 public:
  // Destroying the handle closes the session: a running turn is cancelled and the session
  // closed, an open in progress is closed as soon as it completes. No callback runs after.
  virtual ~BackendSession() = default;
  using OpenCallback = std::function<void(std::optional<BackendError> failed)>;
  // Opens the session; `done` runs later from the event loop, never from inside Open.
  virtual void Open(OpenCallback done) = 0;
  // Starts a turn on an open, idle session. The observer must outlive the turn (or the handle).
  virtual void StartTurn(const TurnRequest& turn, TurnObserver* observer) = 0;
  // Stops the running turn; OnDone(kCancelled) (or OnFailed) follows.
  virtual void Cancel() = 0;
  // While paused no more pieces are read from the worker (it then stops producing): how a
  // slow HTTP reader holds back its own generation without holding anyone else's.
  virtual void SetPaused(bool paused) = 0;
  // Open, not failed, no turn running.
  virtual bool idle() const = 0;
};

class SessionBackend {
 public:
  virtual ~SessionBackend() = default;
  virtual TenantLimits Limits(const Tenant& tenant) = 0;
  // The models the tenant may use.
  virtual std::vector<ModelInfo> Models(const Tenant& tenant) = 0;
  // Whether the backend can run this turn as asked (a parameter its protocol cannot carry yet
  // is refused here, before a session is opened for nothing).
  virtual std::optional<BackendError> Check(const TurnRequest& turn) = 0;
  virtual std::unique_ptr<BackendSession> CreateSession(const Tenant& tenant,
                                                        const std::string& model) = 0;
};

}  // namespace cellhouse::gateway

#endif  // CELLHOUSE_GATEWAY_BACKEND_H_
