#include "gateway/turn_translation.h"

#include <algorithm>

namespace cellhouse::gateway {

std::optional<BackendError> CheckTranslatable(const TurnRequest& turn) {
  const Sampling& s = turn.sampling;
  if (s.frequency_penalty != 0 || s.presence_penalty != 0) {
    return BackendError{BackendError::Kind::kInvalidRequest,
                        "frequency_penalty and presence_penalty other than 0 are not supported "
                        "by this server yet."};
  }
  return std::nullopt;
}

std::string RenderPlainPromptForTodaysProtocol(const std::vector<ChatMessage>& messages,
                                               size_t held) {
  std::string out;
  // The session's history ends with its own reply, right after "assistant:": end that line.
  if (held > 0) out += "\n";
  for (size_t i = held; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    // "assistant:" is written without a space, as the model's reply followed it.
    out += m.role == "assistant" ? "assistant:" : m.role + ": ";
    out += m.content;
    out += "\n";
  }
  out += "assistant:";
  return out;
}

api::Request TranslateTurn(const TurnRequest& turn) {
  api::Request request;
  api::Generate* g = request.mutable_generate();
  if (turn.kind == TurnRequest::Kind::kChat) {
    g->set_prompt(RenderPlainPromptForTodaysProtocol(turn.messages, turn.messages_held));
  } else {
    g->set_prompt(turn.prompt);
  }
  g->set_max_new_tokens(turn.max_tokens);
  const Sampling& s = turn.sampling;
  // The API's defaults are temperature 1 and top_p 1 (celld's top-p default is 0.9); top_p 0
  // keeps only the most likely token, which is greedy decoding.
  double top_p = s.top_p.value_or(1.0);
  double temperature = s.temperature.value_or(1.0);
  if (top_p <= 0) temperature = 0;
  g->set_temperature(static_cast<float>(temperature));
  g->set_top_p(static_cast<float>(std::clamp(top_p, 1e-6, 1.0)));
  if (s.seed) g->set_seed(*s.seed);
  return request;
}

TurnDone TranslateDone(const api::Done& done) {
  TurnDone out;
  switch (done.stop_reason()) {
    case api::Done::END_OF_TEXT:
      out.reason = TurnDone::Reason::kEndOfText;
      break;
    case api::Done::CONTEXT_FULL:
      out.reason = TurnDone::Reason::kContextFull;
      break;
    case api::Done::CANCELLED:
      out.reason = TurnDone::Reason::kCancelled;
      break;
    default:
      out.reason = TurnDone::Reason::kLength;
      break;
  }
  out.completion_tokens = done.generated_tokens();
  // The API's prompt_tokens is the whole prompt the answer followed, also when a reused session
  // evaluated only the new part of it (done.prompt_tokens).
  out.prompt_tokens = done.context_used() >= done.generated_tokens()
                          ? done.context_used() - done.generated_tokens()
                          : done.prompt_tokens();
  out.time_to_first_token_us = done.time_to_first_token_us();
  return out;
}

BackendError TranslateError(const api::Error& error) {
  using Kind = BackendError::Kind;
  Kind kind = Kind::kInternal;
  switch (error.code()) {
    case api::INVALID_ARGUMENT:
    case api::FRAME_TOO_LARGE:
      kind = Kind::kInvalidRequest;
      break;
    case api::CONTEXT_FULL:
      kind = Kind::kContextFull;
      break;
    case api::PERMISSION_DENIED:
      kind = Kind::kPermission;
      break;
    // celld does not yet tell a tenant's own cap from the server's capacity: both are
    // ADMISSION_REFUSED, answered as 503 with Retry-After (docs/ARCHITECTURE.md, gateway).
    case api::ADMISSION_REFUSED:
    case api::SHUTTING_DOWN:
    case api::SPAWN_FAILED:
      kind = Kind::kNoCapacity;
      break;
    case api::SESSION_ENDED:
      kind = Kind::kSessionEnded;
      break;
    default:
      break;
  }
  return BackendError{kind, error.message()};
}

}  // namespace cellhouse::gateway
