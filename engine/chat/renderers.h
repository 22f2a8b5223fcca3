// One renderer per chat-template family (chat_template.h), each reproducing its family's Jinja
// template (Hugging Face's rendering: trim_blocks, lstrip_blocks) with markup and content apart.
#ifndef CELLHOUSE_ENGINE_CHAT_RENDERERS_H_
#define CELLHOUSE_ENGINE_CHAT_RENDERERS_H_

#include <string_view>
#include <vector>

#include "engine/chat/chat_template.h"
#include "engine/chat/prompt_builder.h"

namespace cellhouse::engine::chat {

// What a renderer needs besides the messages: special-token texts and the template's variant.
struct RenderContext {
  std::string_view bos;
  std::string_view eos;
  std::string_view default_system;
  bool generation_prompt_always = false;
  bool knowledge_date = false;
};

using Messages = std::vector<ChatMessage>;

void RenderChatMl(const Messages& m, const RenderOptions& o, const RenderContext& c,
                  PromptBuilder& b);
void RenderQwen3(const Messages& m, const RenderOptions& o, const RenderContext& c,
                 PromptBuilder& b);
void RenderLlama3(const Messages& m, const RenderOptions& o, const RenderContext& c,
                  PromptBuilder& b);
void RenderLlama2(const Messages& m, const RenderOptions& o, const RenderContext& c,
                  PromptBuilder& b);
void RenderMistral(const Messages& m, const RenderOptions& o, const RenderContext& c,
                   PromptBuilder& b);
void RenderGemma(const Messages& m, const RenderOptions& o, const RenderContext& c,
                 PromptBuilder& b);
void RenderPhi3(const Messages& m, const RenderOptions& o, const RenderContext& c,
                PromptBuilder& b);
void RenderZephyr(const Messages& m, const RenderOptions& o, const RenderContext& c,
                  PromptBuilder& b);
void RenderDeepSeek(const Messages& m, const RenderOptions& o, const RenderContext& c,
                    PromptBuilder& b);
void RenderDeepSeek3(const Messages& m, const RenderOptions& o, const RenderContext& c,
                     PromptBuilder& b);

}  // namespace cellhouse::engine::chat

#endif  // CELLHOUSE_ENGINE_CHAT_RENDERERS_H_
