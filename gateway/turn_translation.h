// A turn, as the gateway has validated it, in the words of celld's protocol (ipc/api.proto),
// and celld's answers back in the gateway's: the one place that knows both, so that the
// chat-turn protocol of issue 15 changes this file and nothing above it.
//
//   if (std::optional<BackendError> e = CheckTranslatable(turn)) refuse(*e);
//   api::Request request = TranslateTurn(turn);      // a Generate today
//   TurnDone done = TranslateDone(response.done());
//
// Today celld's Generate carries a plain prompt that is appended to the session's history, and
// sampling by temperature, top-p and seed. A chat turn is therefore rendered as plain text by
// RenderPlainPromptForTodaysProtocol, which is TEMPORARY (see below). When the chat-turn request
// lands, TranslateTurn sends the messages (role, content), the stop sequences, the penalties and
// max tokens as they are, and the worker renders the model's own template (control tokens from
// the template only, never from a message) and reuses its longest common token prefix.
#ifndef CELLHOUSE_GATEWAY_TURN_TRANSLATION_H_
#define CELLHOUSE_GATEWAY_TURN_TRANSLATION_H_

#include <optional>
#include <string>
#include <vector>

#include "gateway/backend.h"
#include "ipc/api.pb.h"

namespace cellhouse::gateway {

// A parameter today's protocol cannot carry (frequency/presence penalties) is refused before a
// session is opened.
std::optional<BackendError> CheckTranslatable(const TurnRequest& turn);

// The Generate request for a turn (CheckTranslatable first).
api::Request TranslateTurn(const TurnRequest& turn);

// TEMPORARY, for replacement by the chat-turn request of issue 15: not the final behaviour.
// Writes messages[held..] as a plain transcript ("user: ...\n") ending with "assistant:", the
// continuation of a session that already holds messages[0..held) and its own reply to them. It
// knows no model's chat template, and a message can imitate its markup: it exists only so that
// /v1/chat/completions works end to end before celld understands messages.
std::string RenderPlainPromptForTodaysProtocol(const std::vector<ChatMessage>& messages,
                                               size_t held);

TurnDone TranslateDone(const api::Done& done);
BackendError TranslateError(const api::Error& error);

}  // namespace cellhouse::gateway

#endif  // CELLHOUSE_GATEWAY_TURN_TRANSLATION_H_
