// The response bodies and stream chunks of the OpenAI API, shaped as its reference documents
// them: chat.completion and chat.completion.chunk, text_completion (also for its chunks), the
// model list; ids ("chatcmpl-…", "cmpl-…"), `created` in Unix seconds, finish_reason, usage, and
// Server-Sent Events framing ("data: {json}\n\n", ending with "data: [DONE]\n\n").
//
//   ResponseMeta meta = NewResponseMeta(Route::kChat, "qwen3");
//   std::string event = SseEvent(ChatChunk(meta, ChatDelta{.content = "Hel"}, std::nullopt));
//   Json whole = ChatCompletion(meta, "Hello", "", FinishReason::kStop, usage);
#ifndef CELLHOUSE_GATEWAY_OPENAI_RESPONSE_H_
#define CELLHOUSE_GATEWAY_OPENAI_RESPONSE_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "gateway/backend.h"
#include "gateway/json.h"

namespace cellhouse::gateway {

enum class Route { kChat, kCompletion };
enum class FinishReason { kStop, kLength };

struct ResponseMeta {
  std::string id;       // "chatcmpl-<hex>" or "cmpl-<hex>"
  int64_t created = 0;  // Unix seconds
  std::string model;
};

struct Usage {
  uint32_t prompt_tokens = 0;
  uint32_t completion_tokens = 0;
  // Of prompt_tokens, reused from the session's KV cache (prompt_tokens_details.cached_tokens,
  // written only when non-zero).
  uint32_t cached_tokens = 0;
};

// A fresh id (96 random bits) and the current time.
ResponseMeta NewResponseMeta(Route route, std::string_view model);

std::string_view FinishReasonName(FinishReason reason);
Json UsageJson(const Usage& usage);

// One streamed change of the assistant message.
struct ChatDelta {
  bool role = false;  // the first chunk names the role
  std::string content;
  std::string reasoning_content;  // Qwen3-style thinking, apart from the answer
};

Json ChatCompletion(const ResponseMeta& meta, const std::string& content,
                    const std::string& reasoning_content, FinishReason finish, const Usage& usage);
// `include_usage` adds "usage": null, as the API does on every chunk when the client asked for
// a final usage chunk.
Json ChatChunk(const ResponseMeta& meta, const ChatDelta& delta, std::optional<FinishReason> finish,
               bool include_usage);
// The last chunk before [DONE] with stream_options.include_usage: no choices, the usage.
Json ChatUsageChunk(const ResponseMeta& meta, const Usage& usage);

Json TextCompletion(const ResponseMeta& meta, const std::string& text, FinishReason finish,
                    const Usage& usage);
Json TextCompletionChunk(const ResponseMeta& meta, const std::string& text,
                         std::optional<FinishReason> finish, bool include_usage);
Json TextCompletionUsageChunk(const ResponseMeta& meta, const Usage& usage);

Json ModelObject(const ModelInfo& model);
Json ModelList(const std::vector<ModelInfo>& models);

// "data: <json>\n\n"
std::string SseEvent(const Json& data);
inline constexpr std::string_view kSseDone = "data: [DONE]\n\n";

// What identifies this server's build in responses (OpenAI's system_fingerprint).
std::string_view SystemFingerprint();

}  // namespace cellhouse::gateway

#endif  // CELLHOUSE_GATEWAY_OPENAI_RESPONSE_H_
