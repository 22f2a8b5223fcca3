#include "engine/chat/chat_session.h"

#include <utility>

#include "engine/chat/reply_stream.h"

namespace cellhouse::engine::chat {

ChatSession::ChatSession(Conversation& conversation, const Tokenizer& tokenizer,
                         ChatTemplate chat_template, ContextPolicy policy)
    : conversation_(&conversation),
      tokenizer_(&tokenizer),
      template_(std::move(chat_template)),
      policy_(policy) {}

Result<ChatTurnResult> ChatSession::Turn(const ChatRequest& request,
                                         const ReplyCallback& on_piece) {
  last_failure_ = Failure::kInvalid;
  std::vector<ChatMessage> messages;
  if (request.append) messages = history_;
  messages.insert(messages.end(), request.messages.begin(), request.messages.end());
  if (messages.empty()) return Error("the conversation has no messages");
  for (const std::string& s : request.stop) {
    if (s.empty()) return Error("a stop string is empty");
  }
  const RenderOptions render{.add_generation_prompt = true,
                             .enable_thinking = request.enable_thinking};
  ChatTurnResult result;
  std::vector<int32_t> tokens;
  for (;;) {
    CH_ASSIGN_OR_RETURN(Prompt prompt, template_.Render(messages, render));
    CH_ASSIGN_OR_RETURN(tokens, prompt.Encode(*tokenizer_));
    // The prompt plus at least one generated token must fit.
    if (std::cmp_less(tokens.size(), conversation_->context_length())) break;
    const size_t first = !messages.empty() && messages.front().role == "system" ? 1 : 0;
    if (policy_ == ContextPolicy::kError || messages.size() <= first + 1) {
      last_failure_ = Failure::kContextFull;
      return Error(
          "the conversation is " + std::to_string(tokens.size()) +
          " tokens, more than the session's context of " +
          std::to_string(conversation_->context_length()) +
          " leaves room for (one token must be left for the reply)" +
          (policy_ == ContextPolicy::kError ? "" : "; even its last message alone does not fit"));
    }
    messages.erase(messages.begin() + static_cast<ptrdiff_t>(first));
    ++result.dropped_messages;
  }

  ReplyStream stream(
      {.stop = request.stop,
       .thinking = template_.supports_thinking() && request.enable_thinking.value_or(true)});
  bool cancelled = false;
  Result<Conversation::TurnStats> stats = conversation_->TurnTokens(
      tokens, request.sampling, [&](int32_t token, std::string_view bytes) {
        const ReplyStream::Out out = stream.Append(bytes);
        if (!on_piece({token, out.content, out.reasoning})) cancelled = true;
        return !cancelled && !stream.stopped();
      });
  if (!stats) {
    last_failure_ = conversation_->last_failure() == Conversation::Failure::kContextFull
                        ? Failure::kContextFull
                        : Failure::kInvalid;
    return std::move(stats).error();
  }
  last_failure_ = Failure::kNone;
  if (!stream.stopped()) {
    const ReplyStream::Out rest = stream.Finish();
    if (!rest.content.empty() || !rest.reasoning.empty()) {
      on_piece({-1, rest.content, rest.reasoning});
    }
  }
  result.stats = *stats;
  result.stop_string = stream.stopped() && !cancelled;
  ChatMessage reply{"assistant", stream.content(), {}};
  if (!stream.reasoning().empty()) reply.reasoning_content = stream.reasoning();
  messages.push_back(std::move(reply));
  history_ = std::move(messages);
  return result;
}

}  // namespace cellhouse::engine::chat
