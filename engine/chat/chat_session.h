// ChatSession: a conversation held as messages, each turn rendered by the model's chat template,
// tokenized with content kept apart from markup, and run on a Conversation that reuses the
// longest token prefix its KV cache shares with the new rendering (a re-rendered history need
// not extend the cached tokens: Qwen3 drops earlier think blocks, Llama 2 re-strips answers).
// The reply streams through a ReplyStream (stop strings, reasoning) and joins the history.
//
//   ChatSession chat(conversation, tokenizer, std::move(tmpl), {});
//   ChatRequest request;
//   request.messages = {{"user", "Hello!", {}}};
//   request.append = true;                     // after the session's own conversation
//   CH_ASSIGN_OR_RETURN(ChatTurnResult r, chat.Turn(request, [](const ReplyPiece& p) {
//     Send(p.content, p.reasoning);
//     return true;                             // false cancels
//   }));
//
// Context: a rendering that does not fit is refused (kContextFull) or, with the policy
// kDropOldest, the oldest messages after a leading system message are dropped until it fits;
// never a silently cut prompt.
#ifndef CELLHOUSE_ENGINE_CHAT_CHAT_SESSION_H_
#define CELLHOUSE_ENGINE_CHAT_CHAT_SESSION_H_

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "engine/chat/chat_template.h"
#include "engine/conversation.h"
#include "engine/tokenizer/tokenizer.h"

namespace cellhouse::engine::chat {

enum class ContextPolicy {
  kError,       // a conversation that does not fit is an error
  kDropOldest,  // drop the oldest messages (keeping a leading system message) until it fits
};

struct ChatRequest {
  std::vector<ChatMessage> messages;
  // false: `messages` is the whole conversation (OpenAI style); true: they follow the session's
  // own history (earlier messages and the replies it generated).
  bool append = false;
  std::optional<bool> enable_thinking;
  std::vector<std::string> stop;
  Conversation::TurnOptions sampling;
};

// Released text of one generated token (token -1: what was held back at the end).
struct ReplyPiece {
  int32_t token = -1;
  std::string_view content;
  std::string_view reasoning;
};
using ReplyCallback = std::function<bool(const ReplyPiece& piece)>;

struct ChatTurnResult {
  Conversation::TurnStats stats;
  bool stop_string = false;      // a stop string ended the reply (stats.stop is kCancelled)
  int32_t dropped_messages = 0;  // by kDropOldest
};

class ChatSession {
 public:
  // Keeps references to `conversation` and `tokenizer`: both must outlive the session.
  ChatSession(Conversation& conversation, const Tokenizer& tokenizer, ChatTemplate chat_template,
              ContextPolicy policy);

  // Errors before generation leave the history unchanged; failure_kind() tells them apart.
  Result<ChatTurnResult> Turn(const ChatRequest& request, const ReplyCallback& on_piece);
  enum class Failure { kNone, kInvalid, kContextFull };
  Failure last_failure() const { return last_failure_; }

  const std::vector<ChatMessage>& history() const { return history_; }
  const ChatTemplate& chat_template() const { return template_; }

 private:
  Conversation* conversation_;
  const Tokenizer* tokenizer_;
  ChatTemplate template_;
  ContextPolicy policy_;
  std::vector<ChatMessage> history_;
  Failure last_failure_ = Failure::kNone;
};

}  // namespace cellhouse::engine::chat

#endif  // CELLHOUSE_ENGINE_CHAT_CHAT_SESSION_H_
