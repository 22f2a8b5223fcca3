// The real TurnEngine: one engine::Conversation over the zygote's model and tokenizer.
//
//   CH_ASSIGN_OR_RETURN(auto engine, EngineTurnEngine::Create(model, tokenizer, 1024));
//   SessionServer server(control, *engine, config, clock);
#ifndef CELLHOUSE_WORKER_SESSION_ENGINE_TURN_ENGINE_H_
#define CELLHOUSE_WORKER_SESSION_ENGINE_TURN_ENGINE_H_

#include <memory>

#include "engine/conversation.h"
#include "engine/model.h"
#include "engine/tokenizer/tokenizer.h"
#include "worker/session/turn_engine.h"

namespace cellhouse::session {

class EngineTurnEngine final : public TurnEngine {
 public:
  static Result<std::unique_ptr<TurnEngine>> Create(const engine::Model& model,
                                                    const engine::Tokenizer& tokenizer,
                                                    uint32_t context_length);

  Result<TurnResult> Turn(const TurnRequest& request, const TokenCallback& on_token) override;
  TurnErrorKind last_error_kind() const override { return last_error_kind_; }
  int32_t context_used() const override { return conversation_.context_used(); }
  int32_t context_length() const override { return conversation_.context_length(); }
  uint64_t KvBytesInUse() const override { return conversation_.KvBytesInUse(); }
  std::string Describe() const override { return description_; }

 private:
  EngineTurnEngine(engine::Conversation conversation, std::string description)
      : conversation_(std::move(conversation)), description_(std::move(description)) {}
  engine::Conversation conversation_;
  std::string description_;
  TurnErrorKind last_error_kind_ = TurnErrorKind::kInternal;
};

}  // namespace cellhouse::session

#endif  // CELLHOUSE_WORKER_SESSION_ENGINE_TURN_ENGINE_H_
