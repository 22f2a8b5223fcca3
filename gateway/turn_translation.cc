#include "gateway/turn_translation.h"

#include <algorithm>

namespace cellhouse::gateway {

std::optional<BackendError> CheckTranslatable(const TurnRequest& /*turn*/) { return std::nullopt; }

api::Request TranslateTurn(const TurnRequest& turn) {
  api::Request request;
  api::Generate* g = request.mutable_generate();
  if (turn.kind == TurnRequest::Kind::kChat) {
    api::ChatTurn* chat = g->mutable_chat();
    // Stateless, as the API is: the whole conversation each time. A reused session finds its
    // own tokens as the common prefix, whatever messages_held says.
    chat->set_append(false);
    for (const ChatMessage& m : turn.messages) {
      api::ChatMessage* out = chat->add_messages();
      // OpenAI's "developer" messages are the newer models' system messages; templates know
      // only "system". A participant's `name` has no place in the templates and is dropped.
      out->set_role(m.role == "developer" ? "system" : m.role);
      out->set_content(m.content);
    }
  } else {
    g->set_prompt(turn.prompt);
  }
  g->set_max_new_tokens(turn.max_tokens);
  for (const std::string& s : turn.stop) g->add_stop(s);
  const Sampling& s = turn.sampling;
  // The API's defaults are temperature 1 and top_p 1 (celld's top-p default is 0.9); top_p 0
  // keeps only the most likely token, which is greedy decoding.
  double top_p = s.top_p.value_or(1.0);
  double temperature = s.temperature.value_or(1.0);
  if (top_p <= 0) temperature = 0;
  g->set_temperature(static_cast<float>(temperature));
  g->set_top_p(static_cast<float>(std::clamp(top_p, 1e-6, 1.0)));
  if (s.seed) g->set_seed(*s.seed);
  if (s.frequency_penalty != 0) g->set_frequency_penalty(static_cast<float>(s.frequency_penalty));
  if (s.presence_penalty != 0) g->set_presence_penalty(static_cast<float>(s.presence_penalty));
  return request;
}

TurnDone TranslateDone(const api::Done& done, TurnRequest::Kind kind) {
  TurnDone out;
  switch (done.stop_reason()) {
    case api::Done::END_OF_TEXT:
      out.reason = TurnDone::Reason::kEndOfText;
      break;
    case api::Done::STOP_STRING:
      out.reason = TurnDone::Reason::kStopString;
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
  // The API's prompt_tokens is the whole prompt the answer followed. A chat turn reports exactly
  // that (its whole rendering, cached_tokens of it reused); a prompt on a session reports only
  // its own tokens, so count what the context held before the generation.
  out.prompt_tokens =
      kind == TurnRequest::Kind::kChat || done.context_used() < done.generated_tokens()
          ? done.prompt_tokens()
          : done.context_used() - done.generated_tokens();
  out.cached_tokens = done.cached_tokens();
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
