// Chat templates: a model's tokenizer.chat_template recognised by family and rendered natively,
// as the reference runtimes did before they embedded a Jinja engine. The output is the text that
// Hugging Face's Jinja rendering of the family's template gives (checked byte for byte against
// ../shared/models/gguf/chat_templates.json), cut into segments: the template's own markup and
// the messages' content, which the tokenizer encodes apart so that content can never become a
// control token (Tokenizer::EncodeSegments).
//
//   CH_ASSIGN_OR_RETURN(ChatTemplate tmpl, ChatTemplate::ForModel(tokenizer, override_name));
//   CH_ASSIGN_OR_RETURN(Prompt prompt, tmpl.Render(messages, {.add_generation_prompt = true}));
//   CH_ASSIGN_OR_RETURN(std::vector<int32_t> ids, prompt.Encode(tokenizer));
//
// Families: chatml (and Qwen's default system prompt), qwen3 (think blocks, enable_thinking),
// llama3 (3.0's template; 3.1's knowledge-date system header), llama2 (<<SYS>>, [INST]),
// mistral ([INST] without <<SYS>>), gemma, phi3, zephyr, deepseek (coder's "### Instruction"),
// deepseek3 (V3/R1). An unknown template is refused with the list, and a name given by the
// caller (cellmodel/celld --chat-template NAME, the policy's chat_template) overrides detection.
//
// Where the markup is plain text in the vocabulary ("[INST]" in Llama 2 and Mistral's,
// "### Instruction:" in DeepSeek Coder's), content that imitates it reads to the model like the
// template's own: no tokenizer can tell them apart. Only control tokens are protected.
#ifndef CELLHOUSE_ENGINE_CHAT_CHAT_TEMPLATE_H_
#define CELLHOUSE_ENGINE_CHAT_CHAT_TEMPLATE_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "engine/tokenizer/tokenizer.h"

namespace cellhouse::engine::chat {

enum class ChatFamily {
  kChatMl,
  kQwen3,
  kLlama3,
  kLlama2,
  kMistral,
  kGemma,
  kPhi3,
  kZephyr,
  kDeepSeek,
  kDeepSeek3,
};
std::string_view ChatFamilyName(ChatFamily family);
std::optional<ChatFamily> ParseChatFamily(std::string_view name);
// "chatml, qwen3, llama3, ..." for messages and --help.
std::string ChatFamilyList();

struct ChatMessage {
  std::string role;  // system, user, assistant or tool
  std::string content;
  // An assistant turn's reasoning (Qwen3's think block), kept apart from its content.
  std::optional<std::string> reasoning_content;
};

// A rendered prompt: markup and content in order.
struct Prompt {
  struct Segment {
    std::string text;
    bool markup = false;
  };
  std::vector<Segment> segments;

  std::string Text() const;  // everything, as Jinja would print it
  Result<std::vector<int32_t>> Encode(const Tokenizer& tokenizer) const;
};

struct RenderOptions {
  bool add_generation_prompt = true;
  // Qwen3: false writes an empty think block so that the model answers at once.
  std::optional<bool> enable_thinking;
};

class ChatTemplate {
 public:
  // The family of `template_text`, if it is one of ours.
  static std::optional<ChatFamily> Detect(std::string_view template_text);
  // The template of a model: `override_name` if not empty (refused if unknown), else the
  // detected family of tokenizer.chat_template (refused with the families and
  // --chat-template NAME when there is none or it is not recognised).
  static Result<ChatTemplate> ForModel(const Tokenizer& tokenizer, std::string_view override_name);
  // A family with explicit special-token texts and, for its variants, the template text.
  static ChatTemplate Make(ChatFamily family, std::string bos_text, std::string eos_text,
                           std::string_view template_text);

  ChatFamily family() const { return family_; }
  std::string_view name() const { return ChatFamilyName(family_); }
  // The family writes reasoning in <think> blocks (its replies may start with one).
  bool supports_thinking() const { return family_ == ChatFamily::kQwen3; }

  // Refuses a role other than system, user, assistant and tool.
  Result<Prompt> Render(const std::vector<ChatMessage>& messages,
                        const RenderOptions& options) const;

 private:
  ChatTemplate() = default;
  ChatFamily family_ = ChatFamily::kChatMl;
  std::string bos_;  // "<s>", "<|begin_of_text|>", "" when the vocabulary has none
  std::string eos_;
  std::string default_system_;             // chatml: the system message written when there is none
  bool generation_prompt_always_ = false;  // llama3 3.0: its template always ends with one
  bool knowledge_date_ = false;            // llama3 3.1+: the "Cutting Knowledge Date" header
};

}  // namespace cellhouse::engine::chat

#endif  // CELLHOUSE_ENGINE_CHAT_CHAT_TEMPLATE_H_
