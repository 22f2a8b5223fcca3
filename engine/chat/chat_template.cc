#include "engine/chat/chat_template.h"

#include <array>
#include <utility>

#include "engine/chat/prompt_builder.h"
#include "engine/chat/python_strings.h"
#include "engine/chat/renderers.h"

namespace cellhouse::engine::chat {
namespace {

struct FamilyName {
  ChatFamily family;
  std::string_view name;
};
constexpr std::array<FamilyName, 10> kFamilies = {{
    {ChatFamily::kChatMl, "chatml"},
    {ChatFamily::kQwen3, "qwen3"},
    {ChatFamily::kLlama3, "llama3"},
    {ChatFamily::kLlama2, "llama2"},
    {ChatFamily::kMistral, "mistral"},
    {ChatFamily::kGemma, "gemma"},
    {ChatFamily::kPhi3, "phi3"},
    {ChatFamily::kZephyr, "zephyr"},
    {ChatFamily::kDeepSeek, "deepseek"},
    {ChatFamily::kDeepSeek3, "deepseek3"},
}};

bool Contains(std::string_view text, std::string_view needle) {
  return text.find(needle) != std::string_view::npos;
}

// ChatML templates that write a system message of their own when the conversation has none
// (Qwen2: "You are a helpful assistant.", Qwen2.5: "You are Qwen, created by Alibaba Cloud...")
// spell it as one literal: '<|im_start|>system\nTEXT<|im_end|>\n'.
std::string DefaultSystemMessage(std::string_view template_text) {
  constexpr std::string_view kOpen = "'<|im_start|>system\\n";
  constexpr std::string_view kClose = "<|im_end|>\\n'";
  const size_t open = template_text.find(kOpen);
  if (open == std::string_view::npos) return {};
  const size_t start = open + kOpen.size();
  const size_t close = template_text.find(kClose, start);
  if (close == std::string_view::npos) return {};
  const std::string_view text = template_text.substr(start, close - start);
  // Only a plain literal (no quotes, no expressions) is a default message.
  if (text.find_first_of("'\"{}+") != std::string_view::npos || text.empty()) return {};
  return std::string(text);
}

}  // namespace

std::string_view ChatFamilyName(ChatFamily family) {
  for (const FamilyName& f : kFamilies) {
    if (f.family == family) return f.name;
  }
  return "?";
}

std::optional<ChatFamily> ParseChatFamily(std::string_view name) {
  for (const FamilyName& f : kFamilies) {
    if (f.name == name) return f.family;
  }
  return std::nullopt;
}

std::string ChatFamilyList() {
  std::string out;
  for (const FamilyName& f : kFamilies) {
    if (!out.empty()) out += ", ";
    out += f.name;
  }
  return out;
}

std::string Prompt::Text() const {
  std::string out;
  for (const Segment& s : segments) out += s.text;
  return out;
}

Result<std::vector<int32_t>> Prompt::Encode(const Tokenizer& tokenizer) const {
  std::vector<TextSegment> views;
  views.reserve(segments.size());
  for (const Segment& s : segments) views.push_back({s.text, s.markup});
  return tokenizer.EncodeSegments(views, {.add_bos = tokenizer.add_bos()});
}

void PromptBuilder::Append(std::string_view text, bool markup) {
  if (text.empty()) return;
  if (!barrier_ && !prompt_.segments.empty() && prompt_.segments.back().markup == markup) {
    prompt_.segments.back().text += text;
    return;
  }
  prompt_.segments.push_back({std::string(text), markup});
  barrier_ = false;
}

void PromptBuilder::Strip(size_t from) {
  auto& segs = prompt_.segments;
  for (size_t i = from; i < segs.size(); ++i) {
    const size_t n = PyLeadingSpace(segs[i].text);
    segs[i].text.erase(0, n);
    if (!segs[i].text.empty()) break;
  }
  for (size_t i = segs.size(); i > from; --i) {
    std::string& text = segs[i - 1].text;
    text.erase(text.size() - PyTrailingSpace(text));
    if (!text.empty()) break;
  }
  // Emptied segments go; neighbours of one kind they separated join again.
  std::vector<Prompt::Segment> kept(segs.begin(), segs.begin() + static_cast<ptrdiff_t>(from));
  for (size_t i = from; i < segs.size(); ++i) {
    if (segs[i].text.empty()) continue;
    if (!kept.empty() && kept.back().markup == segs[i].markup) {
      kept.back().text += segs[i].text;
    } else {
      kept.push_back(std::move(segs[i]));
    }
  }
  segs = std::move(kept);
}

std::optional<ChatFamily> ChatTemplate::Detect(std::string_view t) {
  if (std::optional<ChatFamily> named = ParseChatFamily(t)) return named;
  if (Contains(t, "<|im_start|>")) {
    return Contains(t, "<think>") || Contains(t, "enable_thinking") ? ChatFamily::kQwen3
                                                                    : ChatFamily::kChatMl;
  }
  if (Contains(t, "[INST]")) {
    return Contains(t, "<<SYS>>") ? ChatFamily::kLlama2 : ChatFamily::kMistral;
  }
  if (Contains(t, "<|start_header_id|>") && Contains(t, "<|end_header_id|>")) {
    return ChatFamily::kLlama3;
  }
  if (Contains(t, "<|assistant|>") && Contains(t, "<|end|>")) return ChatFamily::kPhi3;
  if (Contains(t, "<|user|>") && Contains(t, "<|assistant|>")) return ChatFamily::kZephyr;
  if (Contains(t, "<start_of_turn>")) return ChatFamily::kGemma;
  if (Contains(t, "### Instruction:") && Contains(t, "<|EOT|>")) return ChatFamily::kDeepSeek;
  if (Contains(t,
               "<\xEF\xBD\x9C"
               "User\xEF\xBD\x9C>") &&
      Contains(t,
               "<\xEF\xBD\x9C"
               "Assistant\xEF\xBD\x9C>")) {
    return ChatFamily::kDeepSeek3;
  }
  return std::nullopt;
}

ChatTemplate ChatTemplate::Make(ChatFamily family, std::string bos_text, std::string eos_text,
                                std::string_view template_text) {
  ChatTemplate t;
  t.family_ = family;
  t.bos_ = std::move(bos_text);
  t.eos_ = std::move(eos_text);
  if (family == ChatFamily::kChatMl) t.default_system_ = DefaultSystemMessage(template_text);
  if (family == ChatFamily::kLlama3) {
    t.knowledge_date_ = Contains(template_text, "Cutting Knowledge Date");
    // Llama 3.0's template ends every rendering with the assistant header.
    t.generation_prompt_always_ =
        !template_text.empty() && !Contains(template_text, "add_generation_prompt");
  }
  return t;
}

Result<ChatTemplate> ChatTemplate::ForModel(const Tokenizer& tokenizer,
                                            std::string_view override_name) {
  std::optional<ChatFamily> family;
  if (!override_name.empty()) {
    family = ParseChatFamily(override_name);
    if (!family) {
      return Error("unknown chat template '" + std::string(override_name) +
                   "'; the families are: " + ChatFamilyList());
    }
  } else if (tokenizer.chat_template().empty()) {
    return Error(
        "the model has no chat template (tokenizer.chat_template), so chat is refused; choose "
        "one with --chat-template NAME (or the policy's chat_template), NAME one of: " +
        ChatFamilyList());
  } else {
    family = Detect(tokenizer.chat_template());
    if (!family) {
      return Error(
          "the model's chat template is not one this engine renders, so chat is refused; choose "
          "one with --chat-template NAME (or the policy's chat_template), NAME one of: " +
          ChatFamilyList());
    }
  }
  auto text_of = [&](int32_t id) {
    if (id < 0) return std::string();
    if (tokenizer.kind() == TokenizerKind::kLlama2c) {
      return std::string(id == kBosToken ? "<s>" : id == kEosToken ? "</s>" : "");
    }
    return std::string(tokenizer.Piece(id));
  };
  // A model whose vocabulary does not add BOS (Qwen) has none for the template to write.
  return Make(*family, tokenizer.add_bos() ? text_of(tokenizer.bos()) : std::string(),
              text_of(tokenizer.eos()), tokenizer.chat_template());
}

Result<Prompt> ChatTemplate::Render(const std::vector<ChatMessage>& messages,
                                    const RenderOptions& options) const {
  for (size_t i = 0; i < messages.size(); ++i) {
    const std::string& role = messages[i].role;
    if (role != "system" && role != "user" && role != "assistant" && role != "tool") {
      return Error("message " + std::to_string(i) + " has role '" + role +
                   "'; the roles are system, user, assistant and tool");
    }
  }
  const RenderContext context{.bos = bos_,
                              .eos = eos_,
                              .default_system = default_system_,
                              .generation_prompt_always = generation_prompt_always_,
                              .knowledge_date = knowledge_date_};
  PromptBuilder b;
  switch (family_) {
    case ChatFamily::kChatMl:
      RenderChatMl(messages, options, context, b);
      break;
    case ChatFamily::kQwen3:
      RenderQwen3(messages, options, context, b);
      break;
    case ChatFamily::kLlama3:
      RenderLlama3(messages, options, context, b);
      break;
    case ChatFamily::kLlama2:
      RenderLlama2(messages, options, context, b);
      break;
    case ChatFamily::kMistral:
      RenderMistral(messages, options, context, b);
      break;
    case ChatFamily::kGemma:
      RenderGemma(messages, options, context, b);
      break;
    case ChatFamily::kPhi3:
      RenderPhi3(messages, options, context, b);
      break;
    case ChatFamily::kZephyr:
      RenderZephyr(messages, options, context, b);
      break;
    case ChatFamily::kDeepSeek:
      RenderDeepSeek(messages, options, context, b);
      break;
    case ChatFamily::kDeepSeek3:
      RenderDeepSeek3(messages, options, context, b);
      break;
  }
  return std::move(b).Finish();
}

}  // namespace cellhouse::engine::chat
