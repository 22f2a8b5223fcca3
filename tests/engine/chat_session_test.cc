// Chat sessions: the reply stream (stop strings across tokens, think blocks, split characters),
// multi-turn reuse of the KV cache (the second turn equals a fresh session given the same tokens
// at once, and only the tokens after the common prefix are evaluated), stop strings in a real
// generation, and context overflow.
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "engine/chat/chat_session.h"
#include "engine/chat/reply_stream.h"
#include "engine/conversation.h"
#include "engine/model.h"
#include "engine/tokenizer/gguf_vocabulary.h"
#include "tests/engine/test_models.h"

namespace cellhouse::engine::chat {
namespace {

struct Collected {
  std::string content;
  std::string reasoning;
};

Collected Feed(ReplyStream& s, const std::vector<std::string>& pieces) {
  Collected c;
  for (const std::string& p : pieces) {
    ReplyStream::Out out = s.Append(p);
    c.content += out.content;
    c.reasoning += out.reasoning;
    if (s.stopped()) return c;
  }
  ReplyStream::Out out = s.Finish();
  c.content += out.content;
  c.reasoning += out.reasoning;
  return c;
}

TEST(ReplyStreamTest, StopStringAcrossTokensIsNotEmitted) {
  ReplyStream s({.stop = {"END"}});
  ReplyStream::Out out = s.Append("Hello E");
  EXPECT_EQ(out.content, "Hello ");  // "E" may begin the stop string: held
  out = s.Append("N");
  EXPECT_EQ(out.content, "");
  out = s.Append("Dtrailing");
  EXPECT_EQ(out.content, "");
  EXPECT_TRUE(s.stopped());
  EXPECT_EQ(s.content(), "Hello ");
}

TEST(ReplyStreamTest, HeldTextIsReleasedWhenItIsNotAStop) {
  ReplyStream s({.stop = {"END"}});
  Collected c = Feed(s, {"an E", "N", "d"});
  EXPECT_FALSE(s.stopped());
  EXPECT_EQ(c.content, "an ENd");
  ReplyStream tail({.stop = {"END"}});
  c = Feed(tail, {"to the EN"});  // the reply ends while "EN" is held
  EXPECT_EQ(c.content, "to the EN");
}

TEST(ReplyStreamTest, EarliestOfSeveralStopsWins) {
  ReplyStream s({.stop = {"bb", "a b"}});
  Collected c = Feed(s, {"xa bb"});
  EXPECT_EQ(c.content, "x");
}

TEST(ReplyStreamTest, ThinkBlockIsReasoning) {
  ReplyStream s({.thinking = true});
  Collected c = Feed(s, {"<th", "ink>", "\nLet me ", "see.\n</th", "ink>\n\n", "Four."});
  EXPECT_EQ(c.reasoning, "Let me see.\n");
  EXPECT_EQ(c.content, "Four.");
  ReplyStream plain({.thinking = true});
  c = Feed(plain, {"<b>", "bold"});  // starts like a tag, is not one
  EXPECT_EQ(c.content, "<b>bold");
  EXPECT_EQ(c.reasoning, "");
}

TEST(ReplyStreamTest, SplitCharactersWaitForTheirEnd) {
  ReplyStream s({});
  EXPECT_EQ(s.Append("caf\xC3").content, "caf");
  EXPECT_EQ(s.Append("\xA9").content, "\xC3\xA9");
  EXPECT_EQ(s.Append("\xE4").content, "");
  EXPECT_EQ(s.Finish().content, kReplacementCharacter);
}

class ChatSessionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // int8 weights: batched prefill and one-token decode give bit-identical logits, so a cache
    // filled by decoding equals one filled by a prefill of the same tokens.
    files_ = testing::WriteQuantizedModelFiles(dir_, testing::TinyConfig(), 11, 32);
    Result<Model> model = Model::Open(files_.model);
    ASSERT_TRUE(model) << model.error().message();
    model_.emplace(std::move(*model));
    Result<Tokenizer> tok = Tokenizer::Open(files_.tokenizer, model_->config().vocab_size);
    ASSERT_TRUE(tok) << tok.error().message();
    tok_.emplace(std::move(*tok));
  }
  ChatTemplate Template() { return *ChatTemplate::ForModel(*tok_, "chatml"); }
  Conversation NewConversation(int32_t context) {
    return std::move(Conversation::Create(*model_, *tok_, context).value());
  }
  struct Reply {
    std::vector<int32_t> tokens;
    std::string text;
    ChatTurnResult result;
  };
  Reply Run(ChatSession& chat, const ChatRequest& request) {
    Reply r;
    Result<ChatTurnResult> result = chat.Turn(request, [&](const ReplyPiece& p) {
      if (p.token >= 0) r.tokens.push_back(p.token);
      r.text += p.content;
      return true;
    });
    EXPECT_TRUE(result) << (result ? "" : result.error().message());
    if (result) r.result = *result;
    return r;
  }

  cellhouse::testing::TempDir dir_;
  testing::ModelFiles files_;
  std::optional<Model> model_;
  std::optional<Tokenizer> tok_;
};

TEST_F(ChatSessionTest, SecondTurnReusesTheCacheAndEqualsAFreshSession) {
  Conversation conversation = NewConversation(160);
  ChatSession chat(conversation, *tok_, Template(), ContextPolicy::kError);
  ChatRequest first;
  first.messages = {{"system", "be", {}}, {"user", "once upon", {}}};
  first.sampling = {.max_new_tokens = 8, .temperature = 0.0F};
  Reply one = Run(chat, first);
  ASSERT_FALSE(one.tokens.empty());
  // What the cache holds after turn one: every token but the last generated one.
  std::vector<int32_t> cached(conversation.tokens().begin(),
                              conversation.tokens().begin() + conversation.context_used());

  ChatRequest second;
  second.messages = {{"user", "then", {}}};
  second.append = true;
  second.sampling = first.sampling;
  Reply two = Run(chat, second);
  ASSERT_FALSE(two.tokens.empty());

  // The same conversation rendered and tokenized independently.
  Result<Prompt> prompt = Template().Render(
      {first.messages[0], first.messages[1], {"assistant", one.text, {}}, second.messages[0]}, {});
  ASSERT_TRUE(prompt);
  Result<std::vector<int32_t>> ids = prompt->Encode(*tok_);
  ASSERT_TRUE(ids);
  size_t common = 0;
  while (common < cached.size() && common < ids->size() && cached[common] == (*ids)[common]) {
    ++common;
  }
  EXPECT_GT(common, 0U);
  EXPECT_EQ(two.result.stats.prompt_tokens, static_cast<int32_t>(ids->size()));
  EXPECT_EQ(two.result.stats.reused_tokens, static_cast<int32_t>(common));
  EXPECT_EQ(two.result.stats.evaluated_tokens, static_cast<int32_t>(ids->size() - common));

  // A fresh session given the whole sequence at once generates the same tokens.
  Conversation fresh = NewConversation(160);
  std::vector<int32_t> fresh_tokens;
  Result<Conversation::TurnStats> stats =
      fresh.TurnTokens(*ids, second.sampling, [&](int32_t token, std::string_view) {
        fresh_tokens.push_back(token);
        return true;
      });
  ASSERT_TRUE(stats);
  EXPECT_EQ(stats->evaluated_tokens, static_cast<int32_t>(ids->size()));
  EXPECT_EQ(fresh_tokens, two.tokens);
  EXPECT_EQ(chat.history().size(), 5U);
  EXPECT_EQ(chat.history().back().role, "assistant");
}

TEST_F(ChatSessionTest, ResendingTheSameConversationEvaluatesOneToken) {
  Conversation conversation = NewConversation(160);
  ChatSession chat(conversation, *tok_, Template(), ContextPolicy::kError);
  ChatRequest request;
  request.messages = {{"user", "hello there", {}}};
  request.sampling = {.max_new_tokens = 4, .temperature = 0.0F};
  Reply one = Run(chat, request);
  Reply again = Run(chat, request);  // stateless client: same messages again
  EXPECT_EQ(again.result.stats.evaluated_tokens, 1);
  EXPECT_EQ(again.tokens, one.tokens);
}

TEST_F(ChatSessionTest, StopStringEndsTheReplyAndIsNotEmitted) {
  Conversation conversation = NewConversation(160);
  ChatSession chat(conversation, *tok_, Template(), ContextPolicy::kError);
  ChatRequest request;
  request.messages = {{"user", "tell me", {}}};
  request.sampling = {.max_new_tokens = 30, .temperature = 0.0F};
  Reply full = Run(chat, request);
  ASSERT_GE(full.text.size(), 6U);
  // A stop string from the middle of the reply, likely spanning tokens.
  const std::string stop = full.text.substr(full.text.size() / 2, 3);
  Conversation other = NewConversation(160);
  ChatSession stopped_chat(other, *tok_, Template(), ContextPolicy::kError);
  request.stop = {stop};
  Reply cut = Run(stopped_chat, request);
  EXPECT_TRUE(cut.result.stop_string);
  EXPECT_EQ(cut.text, full.text.substr(0, full.text.find(stop)));
  EXPECT_EQ(stopped_chat.history().back().content, cut.text);
}

TEST_F(ChatSessionTest, ContextOverflowIsAnErrorOrDropsOldestMessages) {
  ChatRequest request;
  request.messages = {{"system", "s", {}},
                      {"user", std::string(300, 'a'), {}},
                      {"assistant", "b", {}},
                      {"user", "short", {}}};
  request.sampling = {.max_new_tokens = 2, .temperature = 0.0F};
  // A context that holds the system message and the last question, not the rest.
  Result<Prompt> kept = Template().Render({request.messages[0], request.messages[3]}, {});
  ASSERT_TRUE(kept);
  const auto context = static_cast<int32_t>(kept->Encode(*tok_)->size() + 8);
  {
    Conversation conversation = NewConversation(context);
    ChatSession chat(conversation, *tok_, Template(), ContextPolicy::kError);
    Result<ChatTurnResult> r = chat.Turn(request, [](const ReplyPiece&) { return true; });
    ASSERT_FALSE(r);
    EXPECT_EQ(chat.last_failure(), ChatSession::Failure::kContextFull);
    EXPECT_NE(r.error().message().find("context of " + std::to_string(context)), std::string::npos);
    EXPECT_TRUE(chat.history().empty());
  }
  Conversation conversation = NewConversation(context);
  ChatSession chat(conversation, *tok_, Template(), ContextPolicy::kDropOldest);
  Reply r = Run(chat, request);
  EXPECT_EQ(r.result.dropped_messages, 2);  // the long user message and the answer to it
  ASSERT_EQ(chat.history().size(), 3U);
  EXPECT_EQ(chat.history()[0].role, "system");
  EXPECT_EQ(chat.history()[1].content, "short");
}

}  // namespace
}  // namespace cellhouse::engine::chat

namespace cellhouse::engine::chat {
namespace {

// The same on the GGUF models with real vocabularies (Llama 3 and Qwen3 templates): the second
// turn reuses the cache and generates what a fresh session given the whole sequence does.
TEST(GgufChatSessionTest, SecondTurnOnRealTemplatesEqualsAFreshSession) {
  for (const char* name : {"qwen-vocab-Q8_0", "llama3-vocab-Q8_0"}) {
    std::optional<std::string> path =
        cellhouse::testing::SharedModelPath(std::string("gguf/") + name + ".gguf");
    if (!path) GTEST_SKIP() << "../shared/models/gguf absent: skipping";
    Result<Model> model = Model::Open(*path);
    ASSERT_TRUE(model) << model.error().message();
    Result<Tokenizer> tok = TokenizerFromGguf(*model->gguf());
    ASSERT_TRUE(tok) << tok.error().message();
    Result<ChatTemplate> tmpl = ChatTemplate::ForModel(*tok, "");
    ASSERT_TRUE(tmpl) << tmpl.error().message();
    Result<Conversation> conversation = Conversation::Create(*model, *tok, 200);
    ASSERT_TRUE(conversation);
    ChatSession chat(*conversation, *tok, *tmpl, ContextPolicy::kError);
    ChatRequest request;
    request.messages = {{"user", "Hello there!", {}}};
    request.append = true;
    request.sampling = {.max_new_tokens = 10, .temperature = 0.0F};
    auto run = [&](const ChatRequest& r) {
      std::vector<int32_t> tokens;
      Result<ChatTurnResult> result = chat.Turn(r, [&](const ReplyPiece& p) {
        if (p.token >= 0) tokens.push_back(p.token);
        return true;
      });
      EXPECT_TRUE(result) << (result ? "" : result.error().message());
      return std::make_pair(tokens, result ? result->stats : Conversation::TurnStats{});
    };
    run(request);
    const int32_t cached_before = conversation->context_used();
    request.messages = {{"user", "And then?", {}}};
    auto [second, stats] = run(request);
    EXPECT_GT(stats.reused_tokens, 0) << name;
    EXPECT_LE(stats.reused_tokens, cached_before) << name;
    EXPECT_EQ(stats.evaluated_tokens, stats.prompt_tokens - stats.reused_tokens) << name;

    Result<Prompt> prompt = tmpl->Render(
        std::vector<ChatMessage>(chat.history().begin(), chat.history().end() - 1), {});
    ASSERT_TRUE(prompt);
    Result<std::vector<int32_t>> ids = prompt->Encode(*tok);
    ASSERT_TRUE(ids);
    EXPECT_EQ(static_cast<int32_t>(ids->size()), stats.prompt_tokens) << name;
    Result<Conversation> fresh = Conversation::Create(*model, *tok, 200);
    ASSERT_TRUE(fresh);
    std::vector<int32_t> fresh_tokens;
    ASSERT_TRUE(fresh->TurnTokens(*ids, request.sampling, [&](int32_t t, std::string_view) {
      fresh_tokens.push_back(t);
      return true;
    }));
    EXPECT_EQ(fresh_tokens, second) << name;
  }
}

}  // namespace
}  // namespace cellhouse::engine::chat
