// Request validation (types, ranges, limits, unsupported parameters) and response shapes, as the
// OpenAI API reference defines them.
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "gateway/openai_request.h"
#include "gateway/openai_response.h"

namespace cellhouse::gateway {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

Json Parse(const std::string& text) {
  Result<Json> j = ParseJson(text);
  EXPECT_TRUE(j) << text;
  return j ? *j : Json();
}

std::optional<ApiError> Chat(const std::string& text, ChatCompletionRequest* out = nullptr,
                             const TenantLimits& limits = {}) {
  ChatCompletionRequest ignored;
  return ParseChatCompletionRequest(Parse(text), limits, out != nullptr ? out : &ignored);
}

constexpr const char* kMessages = R"("messages": [{"role": "user", "content": "hi"}])";

std::string ChatWith(const std::string& extra) {
  return std::string(R"({"model": "m", )") + kMessages + (extra.empty() ? "" : ", " + extra) + "}";
}

TEST(ChatRequestTest, AcceptsAFullRequestAndIgnoresUnknownFields) {
  ChatCompletionRequest r;
  std::optional<ApiError> e = Chat(R"({
    "model": "m", "stream": true, "stream_options": {"include_usage": true},
    "messages": [{"role": "system", "content": "be brief"},
                 {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
                 {"role": "assistant", "content": null},
                 {"role": "user", "content": "c", "name": "bob"}],
    "max_completion_tokens": 20, "temperature": 0.5, "top_p": 0.9, "seed": -3,
    "stop": ["x", "y"], "n": 1, "frequency_penalty": 0, "presence_penalty": 0,
    "logprobs": false, "user": "u1", "metadata": {"k": "v"}, "some_future_field": [1, 2]})",
                                   &r);
  ASSERT_FALSE(e) << e->message;
  EXPECT_EQ(r.params.model, "m");
  EXPECT_TRUE(r.params.stream);
  EXPECT_TRUE(r.params.include_usage);
  EXPECT_EQ(r.params.max_tokens, 20u);
  EXPECT_EQ(r.params.sampling.temperature, 0.5);
  EXPECT_EQ(r.params.sampling.seed, static_cast<uint64_t>(int64_t{-3}));
  EXPECT_EQ(r.params.stop, (std::vector<std::string>{"x", "y"}));
  ASSERT_EQ(r.messages.size(), 4u);
  EXPECT_EQ(r.messages[1].content, "ab");
  EXPECT_EQ(r.messages[2].content, "");
  EXPECT_EQ(r.messages[3].name, "bob");
}

TEST(ChatRequestTest, MaxTokensDefaultsToTheLimitAndIsCheckedAgainstIt) {
  TenantLimits limits;
  limits.max_tokens = 100;
  ChatCompletionRequest r;
  ASSERT_FALSE(Chat(ChatWith(""), &r, limits));
  EXPECT_EQ(r.params.max_tokens, 100u);
  std::optional<ApiError> e = Chat(ChatWith(R"("max_tokens": 101)"), nullptr, limits);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->status, 400);
  EXPECT_EQ(e->param, "max_tokens");
  EXPECT_THAT(e->message, HasSubstr("limit of 100"));
  e = Chat(ChatWith(R"("max_completion_tokens": 0)"), nullptr, limits);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->param, "max_completion_tokens");
  limits.context_length = 50;
  e = Chat(ChatWith(R"("max_tokens": 60)"), nullptr, limits);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->code, "context_length_exceeded");
}

TEST(ChatRequestTest, WrongTypesAreRefusedNamingTheParameter) {
  struct Case {
    std::string extra;
    std::string param;
  };
  for (const Case& c :
       std::vector<Case>{{R"("temperature": "0.5")", "temperature"},
                         {R"("temperature": 2.5)", "temperature"},
                         {R"("top_p": -0.1)", "top_p"},
                         {R"("max_tokens": 1.5)", "max_tokens"},
                         {R"("stream": "yes")", "stream"},
                         {R"("seed": "1")", "seed"},
                         {R"("stop": 5)", "stop"},
                         {R"("stop": [1])", "stop"},
                         {R"("stop": ["a","b","c","d","e"])", "stop"},
                         {R"("stop": [""])", "stop"},
                         {R"("presence_penalty": 3)", "presence_penalty"},
                         {R"("stream_options": {"include_usage": true})", "stream_options"},
                         {R"("n": 2)", "n"},
                         {R"("logprobs": true)", "logprobs"},
                         {R"("top_logprobs": 2)", "top_logprobs"},
                         {R"("tools": [{"type": "function"}])", "tools"},
                         {R"("logit_bias": {"1": 2})", "logit_bias"},
                         {R"("response_format": {"type": "json_object"})", "response_format"},
                         {R"("user": 3)", "user"}}) {
    std::optional<ApiError> e = Chat(ChatWith(c.extra));
    ASSERT_TRUE(e) << c.extra;
    EXPECT_EQ(e->status, 400) << c.extra;
    EXPECT_EQ(e->param, c.param) << c.extra;
    EXPECT_EQ(e->type, "invalid_request_error");
  }
}

TEST(ChatRequestTest, MessagesAreValidated) {
  EXPECT_EQ(Chat(R"({"model": "m"})")->param, "messages");
  EXPECT_EQ(Chat(R"({"model": "m", "messages": []})")->param, "messages");
  EXPECT_EQ(Chat(R"({"model": "m", "messages": "hi"})")->param, "messages");
  EXPECT_EQ(Chat(R"({"model": "m", "messages": [{"role": "wizard", "content": "x"}]})")->param,
            "messages[0].role");
  EXPECT_EQ(Chat(R"({"model": "m", "messages": [{"role": "user"}]})")->param,
            "messages[0].content");
  EXPECT_EQ(Chat(R"({"model": "m", "messages": [{"role": "user", "content": 5}]})")->param,
            "messages[0].content");
  std::optional<ApiError> image =
      Chat(R"({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]})");
  ASSERT_TRUE(image);
  EXPECT_EQ(image->code, "unsupported_parameter");
  EXPECT_EQ(Chat(R"({"messages": [{"role": "user", "content": "x"}]})")->param, "model");
  EXPECT_EQ(Chat(R"({"model": 3, "messages": [{"role": "user", "content": "x"}]})")->param,
            "model");
  EXPECT_THAT(Chat("[1, 2]")->message, HasSubstr("JSON object"));
  TenantLimits limits;
  limits.max_messages = 1;
  EXPECT_THAT(Chat(R"({"model": "m", "messages": [{"role": "user", "content": "a"},
                                                   {"role": "user", "content": "b"}]})",
                   nullptr, limits)
                  ->message,
              HasSubstr("at most 1"));
  limits = TenantLimits{};
  limits.max_prompt_bytes = 3;
  EXPECT_EQ(
      Chat(R"({"model": "m", "messages": [{"role": "user", "content": "abcd"}]})", nullptr, limits)
          ->code,
      "context_length_exceeded");
}

TEST(CompletionRequestTest, PromptShapesAndTheDocumentedDefault) {
  CompletionRequest r;
  ASSERT_FALSE(ParseCompletionRequest(Parse(R"({"model": "m", "prompt": "Once"})"), {}, &r));
  EXPECT_EQ(r.prompt, "Once");
  EXPECT_EQ(r.params.max_tokens, kCompletionsDefaultMaxTokens);
  ASSERT_FALSE(ParseCompletionRequest(Parse(R"({"model": "m", "prompt": ["One"]})"), {}, &r));
  EXPECT_EQ(r.prompt, "One");
  auto refused = [](const std::string& text) {
    CompletionRequest ignored;
    return ParseCompletionRequest(Parse(text), {}, &ignored);
  };
  EXPECT_EQ(refused(R"({"model": "m", "prompt": ["a", "b"]})")->code, "unsupported_parameter");
  EXPECT_EQ(refused(R"({"model": "m", "prompt": [1, 2, 3]})")->code, "unsupported_parameter");
  EXPECT_EQ(refused(R"({"model": "m", "prompt": 3})")->param, "prompt");
  EXPECT_EQ(refused(R"({"model": "m"})")->param, "prompt");
  EXPECT_EQ(refused(R"({"model": "m", "prompt": "x", "echo": true})")->param, "echo");
  EXPECT_EQ(refused(R"({"model": "m", "prompt": "x", "logprobs": 2})")->param, "logprobs");
  EXPECT_EQ(refused(R"({"model": "m", "prompt": "x", "best_of": 3})")->param, "best_of");
  EXPECT_EQ(refused(R"({"model": "m", "prompt": "x", "suffix": "y"})")->param, "suffix");
}

TEST(ResponseShapeTest, ChatCompletionHasTheDocumentedFieldsInOrder) {
  ResponseMeta meta = NewResponseMeta(Route::kChat, "m");
  EXPECT_THAT(meta.id, StartsWith("chatcmpl-"));
  EXPECT_EQ(meta.id.size(), std::string("chatcmpl-").size() + 24);
  EXPECT_NE(meta.id, NewResponseMeta(Route::kChat, "m").id);
  EXPECT_GT(meta.created, 1700000000);
  meta.id = "chatcmpl-x";
  meta.created = 5;
  Json j = ChatCompletion(meta, "Hi", "", FinishReason::kStop, Usage{3, 2});
  EXPECT_EQ(DumpJson(j),
            R"({"id":"chatcmpl-x","object":"chat.completion","created":5,"model":"m",)"
            R"("system_fingerprint":"cellhouse-0.1.0","choices":[{"index":0,"message":)"
            R"({"role":"assistant","content":"Hi","refusal":null},"logprobs":null,)"
            R"("finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":2,)"
            R"("total_tokens":5}})");
}

TEST(ResponseShapeTest, ChunksCarryUsageNullWhenAskedAndAFinalUsageChunk) {
  ResponseMeta meta{"chatcmpl-x", 5, "m"};
  Json first = ChatChunk(meta, ChatDelta{.role = true}, std::nullopt, true);
  EXPECT_EQ(DumpJson(first["choices"][0]["delta"]), R"({"role":"assistant","content":""})");
  EXPECT_TRUE(first["usage"].is_null());
  EXPECT_TRUE(first["choices"][0]["finish_reason"].is_null());
  Json piece =
      ChatChunk(meta, ChatDelta{.content = "a", .reasoning_content = "think"}, std::nullopt, false);
  EXPECT_EQ(DumpJson(piece["choices"][0]["delta"]),
            R"({"content":"a","reasoning_content":"think"})");
  EXPECT_FALSE(piece.contains("usage"));
  Json last = ChatChunk(meta, ChatDelta{}, FinishReason::kLength, false);
  EXPECT_EQ(DumpJson(last["choices"][0]["delta"]), "{}");
  EXPECT_EQ(last["choices"][0]["finish_reason"], "length");
  Json usage = ChatUsageChunk(meta, Usage{1, 2});
  EXPECT_TRUE(usage["choices"].empty());
  EXPECT_EQ(usage["usage"]["total_tokens"], 3);
  EXPECT_EQ(SseEvent(Json{{"a", 1}}), "data: {\"a\":1}\n\n");
}

TEST(ResponseShapeTest, TextCompletionAndModels) {
  ResponseMeta meta{"cmpl-x", 5, "m"};
  Json j = TextCompletion(meta, "t", FinishReason::kLength, Usage{1, 1});
  EXPECT_EQ(j["object"], "text_completion");
  EXPECT_EQ(j["choices"][0]["text"], "t");
  EXPECT_TRUE(j["choices"][0]["logprobs"].is_null());
  EXPECT_EQ(TextCompletionChunk(meta, "u", std::nullopt, false)["object"], "text_completion");
  Json list = ModelList({{.id = "a", .created = 1}, {.id = "b", .created = 2}});
  EXPECT_EQ(
      DumpJson(list),
      R"({"object":"list","data":[{"id":"a","object":"model","created":1,"owned_by":"cellhouse"},)"
      R"({"id":"b","object":"model","created":2,"owned_by":"cellhouse"}]})");
}

TEST(ApiErrorTest, BodiesAndStatuses) {
  EXPECT_EQ(
      DumpJson(ErrorBody(InvalidRequest("bad", "temperature"))),
      R"({"error":{"message":"bad","type":"invalid_request_error","param":"temperature","code":null}})");
  EXPECT_EQ(InvalidApiKey().status, 401);
  EXPECT_EQ(ModelNotFound("x").status, 404);
  EXPECT_EQ(ModelNotFound("x").code, "model_not_found");
  EXPECT_EQ(BodyTooLarge(10).status, 413);
  EXPECT_EQ(RateLimited("busy", 2).status, 429);
  EXPECT_EQ(RateLimited("busy", 2).retry_after_s, 2);
  EXPECT_EQ(FromBackend({BackendError::Kind::kNoCapacity, "full"}).status, 503);
  EXPECT_EQ(FromBackend({BackendError::Kind::kTenantLimit, "cap"}).status, 429);
  EXPECT_EQ(FromBackend({BackendError::Kind::kContextFull, "long"}).code,
            "context_length_exceeded");
}

}  // namespace
}  // namespace cellhouse::gateway
