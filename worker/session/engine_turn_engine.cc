#include "worker/session/engine_turn_engine.h"

#include <utility>

#include "engine/chat/reply_stream.h"
#include "engine/sampler.h"
#include "engine/shared_step_path.h"

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

engine::Conversation::TurnOptions OptionsOf(const TurnRequest& r) {
  return {.max_new_tokens = r.max_new_tokens,
          .temperature = r.temperature,
          .top_p = r.top_p,
          .seed = r.seed,
          .top_k = r.top_k,
          .min_p = r.min_p,
          .repetition_penalty = r.repetition_penalty,
          .frequency_penalty = r.frequency_penalty,
          .presence_penalty = r.presence_penalty};
}

TurnResult ResultOf(const engine::Conversation::TurnStats& stats) {
  TurnResult result;
  result.prompt_tokens = stats.prompt_tokens;
  result.cached_tokens = stats.reused_tokens;
  result.generated_tokens = stats.generated_tokens;
  result.time_to_first_token_ns = stats.time_to_first_token_ns;
  result.prefill_ns = stats.prefill_ns;
  result.decode_ns = stats.decode_ns;
  result.stop = FromEngine(stats.stop);
  return result;
}

}  // namespace

Result<std::unique_ptr<TurnEngine>> EngineTurnEngine::Create(const engine::Model& model,
                                                             const engine::Tokenizer& tokenizer,
                                                             const EngineOptions& options) {
  CH_ASSIGN_OR_RETURN(
      engine::Conversation conversation,
      engine::Conversation::Create(model, tokenizer, static_cast<int32_t>(options.context_length)));
  CH_ASSIGN_OR_RETURN(std::unique_ptr<engine::StepPath> path,
                      engine::MakeSharedStepPath(model, options.slot));
  if (path) conversation.UseStepPath(std::move(path));
  std::unique_ptr<EngineTurnEngine> e(new EngineTurnEngine());
  e->tokenizer_ = &tokenizer;
  e->conversation_ = std::make_unique<engine::Conversation>(std::move(conversation));
  e->description_ = model.Describe();
  // A template that cannot be used refuses chat turns only; prompts still work.
  Result<engine::chat::ChatTemplate> tmpl =
      engine::chat::ChatTemplate::ForModel(tokenizer, options.chat_template);
  if (tmpl) {
    e->chat_.emplace(*e->conversation_, tokenizer, std::move(*tmpl),
                     options.drop_oldest_messages ? engine::chat::ContextPolicy::kDropOldest
                                                  : engine::chat::ContextPolicy::kError);
  } else {
    e->chat_error_ = tmpl.error().message();
  }
  return std::unique_ptr<TurnEngine>(std::move(e));
}

std::string EngineTurnEngine::ChatTemplateName() const {
  return chat_ ? std::string(chat_->chat_template().name()) : std::string();
}

Result<TurnResult> EngineTurnEngine::Turn(const TurnRequest& request,
                                          const TokenCallback& on_token) {
  last_error_kind_ = TurnErrorKind::kInvalid;
  engine::SamplingParams sampling{.temperature = request.temperature,
                                  .top_p = request.top_p,
                                  .top_k = request.top_k,
                                  .min_p = request.min_p,
                                  .repetition_penalty = request.repetition_penalty,
                                  .frequency_penalty = request.frequency_penalty,
                                  .presence_penalty = request.presence_penalty};
  CH_RETURN_IF_ERROR(engine::ValidateSamplingParams(sampling, tokenizer_->vocab_size()));
  return request.chat != nullptr ? ChatTurn(request, on_token) : PromptTurn(request, on_token);
}

Result<TurnResult> EngineTurnEngine::PromptTurn(const TurnRequest& request,
                                                const TokenCallback& on_token) {
  // With stop strings the text goes through a ReplyStream (valid UTF-8, stops held back);
  // without, each token's raw bytes, as llama2.c prints them.
  std::optional<engine::chat::ReplyStream> stream;
  if (!request.stop.empty()) stream.emplace(engine::chat::ReplyStream::Options{request.stop});
  bool cancelled = false;
  Result<engine::Conversation::TurnStats> stats = conversation_->Turn(
      request.prompt, OptionsOf(request), [&](int32_t token, std::string_view piece) {
        if (!stream) return on_token({.token = token, .text = piece});
        const engine::chat::ReplyStream::Out out = stream->Append(piece);
        cancelled = !on_token({.token = token, .text = out.content});
        return !cancelled && !stream->stopped();
      });
  if (!stats) {
    last_error_kind_ = conversation_->last_failure() == engine::Conversation::Failure::kContextFull
                           ? TurnErrorKind::kContextFull
                           : TurnErrorKind::kInvalid;
    return std::move(stats).error();
  }
  TurnResult result = ResultOf(*stats);
  if (stream) {
    if (stream->stopped() && !cancelled) {
      result.stop = api::Done::STOP_STRING;
    } else if (!stream->stopped()) {
      const engine::chat::ReplyStream::Out rest = stream->Finish();
      if (!rest.content.empty()) on_token({.token = -1, .text = rest.content});
    }
  }
  return result;
}

Result<TurnResult> EngineTurnEngine::ChatTurn(const TurnRequest& request,
                                              const TokenCallback& on_token) {
  if (!chat_) return Error(chat_error_);
  if (!request.prompt.empty()) return Error("a chat turn carries messages, not a prompt");
  engine::chat::ChatRequest chat_request;
  for (const api::ChatMessage& m : request.chat->messages()) {
    engine::chat::ChatMessage message{m.role(), m.content(), {}};
    if (m.has_reasoning_content()) message.reasoning_content = m.reasoning_content();
    chat_request.messages.push_back(std::move(message));
  }
  chat_request.append = request.chat->append();
  if (request.chat->has_enable_thinking()) {
    chat_request.enable_thinking = request.chat->enable_thinking();
  }
  chat_request.stop = request.stop;
  chat_request.sampling = OptionsOf(request);
  Result<engine::chat::ChatTurnResult> turn =
      chat_->Turn(chat_request, [&](const engine::chat::ReplyPiece& p) {
        return on_token({.token = p.token, .text = p.content, .reasoning = p.reasoning});
      });
  if (!turn) {
    last_error_kind_ = chat_->last_failure() == engine::chat::ChatSession::Failure::kContextFull
                           ? TurnErrorKind::kContextFull
                           : TurnErrorKind::kInvalid;
    return std::move(turn).error();
  }
  TurnResult result = ResultOf(turn->stats);
  result.dropped_messages = turn->dropped_messages;
  if (turn->stop_string) result.stop = api::Done::STOP_STRING;
  return result;
}

}  // namespace cellhouse::session
