// The request bodies of POST /v1/chat/completions and POST /v1/completions, read and validated
// as the OpenAI API reference defines them, against the tenant's limits, before any work is
// queued. Unknown fields are ignored (clients send many); a known field of the wrong type or out
// of range is refused with a 400 naming it (`param`); parameters the API defines but this
// server cannot honour (n > 1, logprobs, tools, ...) are refused clearly rather than ignored.
//
//   ChatCompletionRequest chat;
//   if (std::optional<ApiError> e = ParseChatCompletionRequest(body, limits, &chat)) return *e;
//   ... chat.messages, chat.common.max_tokens (filled from the limits when absent) ...
#ifndef CELLHOUSE_GATEWAY_OPENAI_REQUEST_H_
#define CELLHOUSE_GATEWAY_OPENAI_REQUEST_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "gateway/api_error.h"
#include "gateway/backend.h"
#include "gateway/json.h"

namespace cellhouse::gateway {

// What both routes share.
struct GenerationParams {
  std::string model;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  uint32_t max_tokens = 0;     // always filled in (the default when the client gave none)
  bool max_tokens_given = false;
  Sampling sampling;
  std::vector<std::string> stop;
};

struct ChatCompletionRequest {
  GenerationParams params;
  std::vector<ChatMessage> messages;
};

struct CompletionRequest {
  GenerationParams params;
  std::string prompt;
};

// The legacy completions API's documented default for max_tokens.
inline constexpr uint32_t kCompletionsDefaultMaxTokens = 16;

std::optional<ApiError> ParseChatCompletionRequest(const Json& body, const TenantLimits& limits,
                                                   ChatCompletionRequest* out);
std::optional<ApiError> ParseCompletionRequest(const Json& body, const TenantLimits& limits,
                                               CompletionRequest* out);

}  // namespace cellhouse::gateway

#endif  // CELLHOUSE_GATEWAY_OPENAI_REQUEST_H_
