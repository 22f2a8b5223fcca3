// The seam between a session's protocol handling and the model: one conversation that runs turns.
// The worker adapts engine::Conversation (and engine::chat::ChatSession for chat turns) to it;
// tests use a scripted fake, so the session server's behaviour (streaming, cancel, busy, detach
// and re-attach) is tested without a model.
#ifndef CELLHOUSE_WORKER_SESSION_TURN_ENGINE_H_
#define CELLHOUSE_WORKER_SESSION_TURN_ENGINE_H_

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "ipc/api.pb.h"
#include "ipc/defaults.h"

namespace cellhouse::session {

struct TurnRequest {
  std::string_view prompt;
  const api::ChatTurn* chat = nullptr;  // a chat turn instead of a prompt
  int32_t max_new_tokens = 0;
  float temperature = ipc::kDefaultTemperature;
  float top_p = ipc::kDefaultTopP;
  uint64_t seed = 0;
  int32_t top_k = 0;
  float min_p = 0.0f;
  float repetition_penalty = 1.0f;
  float frequency_penalty = 0.0f;
  float presence_penalty = 0.0f;
  std::vector<std::string> stop;
};

// Why a turn stopped, as the client is told it (Done.stop_reason): one definition for the
// protocol and the session, converted once from the engine's own (engine_turn_engine.cc).
using StopReason = api::Done::StopReason;

struct TurnResult {
  int32_t prompt_tokens = 0;  // tokens of the prompt (a chat turn: the whole rendering)
  int32_t cached_tokens = 0;  // of them, reused from the KV cache
  int32_t generated_tokens = 0;
  int32_t dropped_messages = 0;
  int64_t time_to_first_token_ns = 0;
  int64_t prefill_ns = 0;
  int64_t decode_ns = 0;
  StopReason stop = api::Done::MAX_TOKENS;
};

// What one generated token releases: its text (raw bytes for a plain prompt; valid UTF-8 for a
// chat turn or with stop strings, possibly empty while held back) and, for templates with think
// blocks, reasoning text. token -1: what was held back when the turn ended.
struct TurnPiece {
  int32_t token = -1;
  std::string_view text;
  std::string_view reasoning;
};
// Called for every generated token; returning false cancels the turn.
using TokenCallback = std::function<bool(const TurnPiece& piece)>;

// Errors a turn can end with before generating anything (the conversation is unchanged).
enum class TurnErrorKind { kContextFull, kInvalid, kInternal };

class TurnEngine {
 public:
  virtual ~TurnEngine() = default;
  virtual Result<TurnResult> Turn(const TurnRequest& request, const TokenCallback& on_token) = 0;
  // When Turn fails, why (the error's message is for people).
  virtual TurnErrorKind last_error_kind() const = 0;
  virtual int32_t context_used() const = 0;
  virtual int32_t context_length() const = 0;
  virtual uint64_t KvBytesInUse() const = 0;
  virtual std::string Describe() const = 0;
  // The chat-template family chat turns use, or "" when they are refused (ChatError says why).
  virtual std::string ChatTemplateName() const { return {}; }
  virtual std::string ChatError() const { return "this session's engine has no chat template"; }
};

}  // namespace cellhouse::session

#endif  // CELLHOUSE_WORKER_SESSION_TURN_ENGINE_H_
