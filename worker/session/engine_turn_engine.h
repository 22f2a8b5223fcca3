// The real TurnEngine: one engine::Conversation over the zygote's model and tokenizer, with an
// engine::chat::ChatSession on it for chat turns when the model's (or the policy's) chat
// template is one the engine renders.
//
//   CH_ASSIGN_OR_RETURN(auto engine, EngineTurnEngine::Create(model, tokenizer,
//                                                             {.context_length = 1024}));
//   SessionServer server(control, *engine, config, clock);
#ifndef CELLHOUSE_WORKER_SESSION_ENGINE_TURN_ENGINE_H_
#define CELLHOUSE_WORKER_SESSION_ENGINE_TURN_ENGINE_H_

#include <memory>
#include <optional>
#include <string>

#include "engine/chat/chat_session.h"
#include "engine/conversation.h"
#include "engine/model.h"
#include "engine/tokenizer/tokenizer.h"
#include "executor/slot_memory.h"
#include "worker/session/turn_engine.h"

namespace cellhouse::session {

struct EngineOptions {
  uint32_t context_length = 0;
  // A chat-template family name overriding the model's (policy, then celld --chat-template).
  std::string chat_template;
  bool drop_oldest_messages = false;  // the policy's context_overflow
  // The worker's slot in the model's shared step executor (docs/EXECUTOR.md): a GGUF model's
  // steps go through it, falling back to this process. Empty: every step computes here.
  executor::WorkerSlot slot;
};

class EngineTurnEngine final : public TurnEngine {
 public:
  static Result<std::unique_ptr<TurnEngine>> Create(const engine::Model& model,
                                                    const engine::Tokenizer& tokenizer,
                                                    const EngineOptions& options);

  Result<TurnResult> Turn(const TurnRequest& request, const TokenCallback& on_token) override;
  TurnErrorKind last_error_kind() const override { return last_error_kind_; }
  int32_t context_used() const override { return conversation_->context_used(); }
  int32_t context_length() const override { return conversation_->context_length(); }
  uint64_t KvBytesInUse() const override { return conversation_->KvBytesInUse(); }
  std::string Describe() const override { return description_; }
  std::string ChatTemplateName() const override;
  std::string ChatError() const override { return chat_error_; }

 private:
  EngineTurnEngine() = default;
  Result<TurnResult> PromptTurn(const TurnRequest& request, const TokenCallback& on_token);
  Result<TurnResult> ChatTurn(const TurnRequest& request, const TokenCallback& on_token);

  const engine::Tokenizer* tokenizer_ = nullptr;
  // Heap-held: the chat session keeps a pointer to the conversation.
  std::unique_ptr<engine::Conversation> conversation_;
  std::optional<engine::chat::ChatSession> chat_;
  std::string chat_error_;
  std::string description_;
  TurnErrorKind last_error_kind_ = TurnErrorKind::kInternal;
};

}  // namespace cellhouse::session

#endif  // CELLHOUSE_WORKER_SESSION_ENGINE_TURN_ENGINE_H_
