// PromptBuilder: how the family renderers (renderers.cc) write a Prompt: markup and content
// appended in order, neighbours of the same kind joined, and Python's str.strip() applied to a
// run of segments as Jinja applies it to one concatenated string.
//
//   PromptBuilder b;
//   b.Markup("[INST] ");
//   size_t mark = b.mark();
//   b.Content(message.content);
//   b.Strip(mark);            // content.strip()
//   b.Markup(" [/INST]");
#ifndef CELLHOUSE_ENGINE_CHAT_PROMPT_BUILDER_H_
#define CELLHOUSE_ENGINE_CHAT_PROMPT_BUILDER_H_

#include <string_view>
#include <utility>

#include "engine/chat/chat_template.h"

namespace cellhouse::engine::chat {

class PromptBuilder {
 public:
  void Markup(std::string_view text) { Append(text, true); }
  void Content(std::string_view text) { Append(text, false); }
  // A position before the segments to strip later: what is appended next starts a segment of
  // its own, so that Strip reaches it and nothing before.
  size_t mark() {
    barrier_ = true;
    return prompt_.segments.size();
  }
  // Strips leading and trailing whitespace (Python's) from the text of segments [from, end).
  void Strip(size_t from);
  Prompt Finish() && { return std::move(prompt_); }

 private:
  void Append(std::string_view text, bool markup);
  Prompt prompt_;
  bool barrier_ = false;
};

}  // namespace cellhouse::engine::chat

#endif  // CELLHOUSE_ENGINE_CHAT_PROMPT_BUILDER_H_
