#include "gateway/openai_response.h"

#include <sodium.h>

#include <ctime>

#include "base/strings.h"

namespace cellhouse::gateway {
namespace {

#ifndef CELLHOUSE_VERSION
#define CELLHOUSE_VERSION "0"
#endif

Json Null() { return Json(nullptr); }

Json Base(const ResponseMeta& meta, std::string_view object) {
  Json j = Json::object();
  j["id"] = meta.id;
  j["object"] = object;
  j["created"] = meta.created;
  j["model"] = meta.model;
  j["system_fingerprint"] = SystemFingerprint();
  return j;
}

Json Finish(std::optional<FinishReason> finish) {
  return finish ? Json(FinishReasonName(*finish)) : Null();
}

}  // namespace

std::string_view SystemFingerprint() { return "cellhouse-" CELLHOUSE_VERSION; }

ResponseMeta NewResponseMeta(Route route, std::string_view model) {
  // randombytes_buf cannot fail once libsodium is initialised (main does it before confinement;
  // it reads getrandom(2)).
  std::array<std::byte, 12> random{};
  if (sodium_init() >= 0) randombytes_buf(random.data(), random.size());
  ResponseMeta meta;
  meta.id = std::string(route == Route::kChat ? "chatcmpl-" : "cmpl-") + HexEncode(random);
  meta.created = static_cast<int64_t>(std::time(nullptr));
  meta.model = std::string(model);
  return meta;
}

std::string_view FinishReasonName(FinishReason reason) {
  return reason == FinishReason::kStop ? "stop" : "length";
}

Json UsageJson(const Usage& usage) {
  Json u = Json::object();
  u["prompt_tokens"] = usage.prompt_tokens;
  u["completion_tokens"] = usage.completion_tokens;
  u["total_tokens"] = usage.prompt_tokens + usage.completion_tokens;
  if (usage.cached_tokens != 0) {
    u["prompt_tokens_details"] = Json{{"cached_tokens", usage.cached_tokens}};
  }
  return u;
}

Json ChatCompletion(const ResponseMeta& meta, const std::string& content,
                    const std::string& reasoning_content, FinishReason finish, const Usage& usage) {
  Json message = Json::object();
  message["role"] = "assistant";
  message["content"] = content;
  if (!reasoning_content.empty()) message["reasoning_content"] = reasoning_content;
  message["refusal"] = Null();
  Json choice = Json::object();
  choice["index"] = 0;
  choice["message"] = std::move(message);
  choice["logprobs"] = Null();
  choice["finish_reason"] = FinishReasonName(finish);
  Json j = Base(meta, "chat.completion");
  j["choices"] = Json::array({std::move(choice)});
  j["usage"] = UsageJson(usage);
  return j;
}

Json ChatChunk(const ResponseMeta& meta, const ChatDelta& delta, std::optional<FinishReason> finish,
               bool include_usage) {
  Json d = Json::object();
  if (delta.role) d["role"] = "assistant";
  if (!delta.content.empty() || delta.role) d["content"] = delta.content;
  if (!delta.reasoning_content.empty()) d["reasoning_content"] = delta.reasoning_content;
  Json choice = Json::object();
  choice["index"] = 0;
  choice["delta"] = std::move(d);
  choice["logprobs"] = Null();
  choice["finish_reason"] = Finish(finish);
  Json j = Base(meta, "chat.completion.chunk");
  j["choices"] = Json::array({std::move(choice)});
  if (include_usage) j["usage"] = Null();
  return j;
}

Json ChatUsageChunk(const ResponseMeta& meta, const Usage& usage) {
  Json j = Base(meta, "chat.completion.chunk");
  j["choices"] = Json::array();
  j["usage"] = UsageJson(usage);
  return j;
}

Json TextCompletion(const ResponseMeta& meta, const std::string& text, FinishReason finish,
                    const Usage& usage) {
  Json choice = Json::object();
  choice["text"] = text;
  choice["index"] = 0;
  choice["logprobs"] = Null();
  choice["finish_reason"] = FinishReasonName(finish);
  Json j = Base(meta, "text_completion");
  j["choices"] = Json::array({std::move(choice)});
  j["usage"] = UsageJson(usage);
  return j;
}

Json TextCompletionChunk(const ResponseMeta& meta, const std::string& text,
                         std::optional<FinishReason> finish, bool include_usage) {
  Json choice = Json::object();
  choice["text"] = text;
  choice["index"] = 0;
  choice["logprobs"] = Null();
  choice["finish_reason"] = Finish(finish);
  Json j = Base(meta, "text_completion");
  j["choices"] = Json::array({std::move(choice)});
  if (include_usage) j["usage"] = Null();
  return j;
}

Json TextCompletionUsageChunk(const ResponseMeta& meta, const Usage& usage) {
  Json j = Base(meta, "text_completion");
  j["choices"] = Json::array();
  j["usage"] = UsageJson(usage);
  return j;
}

Json ModelObject(const ModelInfo& model) {
  Json m = Json::object();
  m["id"] = model.id;
  m["object"] = "model";
  m["created"] = model.created;
  m["owned_by"] = model.owned_by;
  return m;
}

Json ModelList(const std::vector<ModelInfo>& models) {
  Json data = Json::array();
  for (const ModelInfo& m : models) data.push_back(ModelObject(m));
  Json j = Json::object();
  j["object"] = "list";
  j["data"] = std::move(data);
  return j;
}

std::string SseEvent(const Json& data) { return "data: " + DumpJson(data) + "\n\n"; }

}  // namespace cellhouse::gateway
