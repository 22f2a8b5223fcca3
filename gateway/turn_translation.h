// A turn, as the gateway has validated it, in the words of celld's protocol (ipc/api.proto),
// and celld's answers back in the gateway's: the one place that knows both.
//
//   if (std::optional<BackendError> e = CheckTranslatable(turn)) refuse(*e);
//   api::Request request = TranslateTurn(turn);      // a Generate
//   TurnDone done = TranslateDone(response.done(), turn.kind);
//
// A chat completion becomes a chat turn (Generate.chat) carrying the whole conversation the
// client sent (append = false): the worker renders it with the model's own chat template
// (control tokens come from the template only, never from a message), reuses the longest token
// prefix its session already holds and evaluates only the rest. A completion is a plain prompt,
// continued as it is. Stop sequences, penalties, seed, temperature and top_p go as they are.
#ifndef CELLHOUSE_GATEWAY_TURN_TRANSLATION_H_
#define CELLHOUSE_GATEWAY_TURN_TRANSLATION_H_

#include <optional>

#include "gateway/backend.h"
#include "ipc/api.pb.h"

namespace cellhouse::gateway {

// A parameter celld's protocol cannot carry is refused before a session is opened (nothing
// today: kept as the seam for the next one).
std::optional<BackendError> CheckTranslatable(const TurnRequest& turn);

// The Generate request for a turn (CheckTranslatable first).
api::Request TranslateTurn(const TurnRequest& turn);

TurnDone TranslateDone(const api::Done& done, TurnRequest::Kind kind);
BackendError TranslateError(const api::Error& error);

}  // namespace cellhouse::gateway

#endif  // CELLHOUSE_GATEWAY_TURN_TRANSLATION_H_
