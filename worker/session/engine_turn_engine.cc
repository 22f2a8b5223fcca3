#include "worker/session/engine_turn_engine.h"

namespace cellhouse::session {
namespace {

// The engine keeps its own reasons (it knows nothing of the protocol); this is the one place
// they become the client's.
StopReason FromEngine(engine::Conversation::StopReason stop) {
  switch (stop) {
    case engine::Conversation::StopReason::kMaxTokens:
      return api::Done::MAX_TOKENS;
    case engine::Conversation::StopReason::kEndOfText:
      return api::Done::END_OF_TEXT;
    case engine::Conversation::StopReason::kContextFull:
      return api::Done::CONTEXT_FULL;
    case engine::Conversation::StopReason::kCancelled:
      return api::Done::CANCELLED;
  }
  return api::Done::STOP_REASON_UNSPECIFIED;
}

}  // namespace

Result<std::unique_ptr<TurnEngine>> EngineTurnEngine::Create(const engine::Model& model,
                                                             const engine::Tokenizer& tokenizer,
                                                             uint32_t context_length) {
  CH_ASSIGN_OR_RETURN(
      engine::Conversation conversation,
      engine::Conversation::Create(model, tokenizer, static_cast<int32_t>(context_length)));
  return std::unique_ptr<TurnEngine>(
      new EngineTurnEngine(std::move(conversation), model.Describe()));
}

Result<TurnResult> EngineTurnEngine::Turn(const TurnRequest& request,
                                          const TokenCallback& on_token) {
  engine::Conversation::TurnOptions options;
  options.max_new_tokens = request.max_new_tokens;
  options.temperature = request.temperature;
  options.top_p = request.top_p;
  options.seed = request.seed;
  Result<engine::Conversation::TurnStats> stats =
      conversation_.Turn(request.prompt, options, on_token);
  if (!stats) {
    last_error_kind_ = conversation_.last_failure() == engine::Conversation::Failure::kContextFull
                           ? TurnErrorKind::kContextFull
                           : TurnErrorKind::kInvalid;
    return std::move(stats).error();
  }
  TurnResult result;
  result.prompt_tokens = stats->prompt_tokens;
  result.generated_tokens = stats->generated_tokens;
  result.time_to_first_token_ns = stats->time_to_first_token_ns;
  result.prefill_ns = stats->prefill_ns;
  result.decode_ns = stats->decode_ns;
  result.stop = FromEngine(stats->stop);
  return result;
}

}  // namespace cellhouse::session
