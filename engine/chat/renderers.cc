#include "engine/chat/renderers.h"

#include <string>

#include "engine/chat/python_strings.h"

namespace cellhouse::engine::chat {

// ChatML: <|im_start|>ROLE\nCONTENT<|im_end|>\n per message.
void RenderChatMl(const Messages& m, const RenderOptions& o, const RenderContext& c,
                  PromptBuilder& b) {
  if (!c.default_system.empty() && (m.empty() || m.front().role != "system")) {
    b.Markup("<|im_start|>system\n" + std::string(c.default_system) + "<|im_end|>\n");
  }
  for (const ChatMessage& msg : m) {
    b.Markup("<|im_start|>" + msg.role + "\n");
    b.Content(msg.content);
    b.Markup("<|im_end|>\n");
  }
  if (o.add_generation_prompt) b.Markup("<|im_start|>assistant\n");
}

// Qwen3's template (without tools): the first system message, then each turn; an assistant turn
// after the last user query shows its reasoning in a think block (the last one always), earlier
// ones drop it; tool results go into user turns.
void RenderQwen3(const Messages& m, const RenderOptions& o, const RenderContext& /*c*/,
                 PromptBuilder& b) {
  if (!m.empty() && m.front().role == "system") {
    b.Markup("<|im_start|>system\n");
    b.Content(m.front().content);
    b.Markup("<|im_end|>\n");
  }
  // The last user message that is not a wrapped tool response.
  size_t last_query = m.empty() ? 0 : m.size() - 1;
  for (size_t i = m.size(); i > 0; --i) {
    const ChatMessage& msg = m[i - 1];
    const std::string_view content = msg.content;
    const bool tool_response =
        content.starts_with("<tool_response>") && content.ends_with("</tool_response>");
    if (msg.role == "user" && !tool_response) {
      last_query = i - 1;
      break;
    }
  }
  for (size_t i = 0; i < m.size(); ++i) {
    const ChatMessage& msg = m[i];
    if (msg.role == "user" || (msg.role == "system" && i != 0)) {
      b.Markup("<|im_start|>" + msg.role + "\n");
      b.Content(msg.content);
      b.Markup("<|im_end|>\n");
    } else if (msg.role == "assistant") {
      std::string_view content = msg.content;
      std::string_view reasoning;
      if (msg.reasoning_content) {
        reasoning = *msg.reasoning_content;
      } else if (content.find("</think>") != std::string_view::npos) {
        reasoning = PyLStrip(
            PySplitLast(PyRStrip(PySplitFirst(content, "</think>"), "\n"), "<think>"), "\n");
        content = PyLStrip(PySplitLast(content, "</think>"), "\n");
      }
      const bool last = i + 1 == m.size();
      if (i > last_query && (last || !reasoning.empty())) {
        b.Markup("<|im_start|>" + msg.role + "\n<think>\n");
        b.Content(PyStrip(reasoning, "\n"));
        b.Markup("\n</think>\n\n");
        b.Content(PyLStrip(content, "\n"));
      } else {
        b.Markup("<|im_start|>" + msg.role + "\n");
        b.Content(content);
      }
      b.Markup("<|im_end|>\n");
    } else if (msg.role == "tool") {
      if (i == 0 || m[i - 1].role != "tool") b.Markup("<|im_start|>user");
      b.Markup("\n<tool_response>\n");
      b.Content(msg.content);
      b.Markup("\n</tool_response>");
      if (i + 1 == m.size() || m[i + 1].role != "tool") b.Markup("<|im_end|>\n");
    }
  }
  if (o.add_generation_prompt) {
    b.Markup("<|im_start|>assistant\n");
    if (o.enable_thinking == false) b.Markup("<think>\n\n</think>\n\n");
  }
}

// Llama 3: BOS, then per message a header, the trimmed content and <|eot_id|>. Llama 3.1's
// template also writes a system turn with its knowledge-date lines, always.
void RenderLlama3(const Messages& m, const RenderOptions& o, const RenderContext& c,
                  PromptBuilder& b) {
  size_t first = 0;
  b.Markup(c.bos);
  if (c.knowledge_date) {
    std::string_view system;
    if (!m.empty() && m.front().role == "system") {
      system = PyStrip(m.front().content);
      first = 1;
    }
    b.Markup(
        "<|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n"
        "Today Date: 26 Jul 2024\n\n");
    b.Content(system);
    b.Markup("<|eot_id|>");
  }
  for (size_t i = first; i < m.size(); ++i) {
    b.Markup("<|start_header_id|>" + m[i].role + "<|end_header_id|>\n\n");
    const size_t mark = b.mark();
    b.Content(m[i].content);
    b.Strip(mark);
    b.Markup("<|eot_id|>");
  }
  if (o.add_generation_prompt || c.generation_prompt_always) {
    b.Markup("<|start_header_id|>assistant<|end_header_id|>\n\n");
  }
}

// Llama 2 chat: the system message goes, in <<SYS>> markers, before the first turn's content;
// each user turn is BOS [INST] ... [/INST], each answer " ... </s>", both stripped. The template
// has no generation prompt: a rendering ending in [/INST] is already one.
void RenderLlama2(const Messages& m, const RenderOptions& /*o*/, const RenderContext& c,
                  PromptBuilder& b) {
  size_t first = 0;
  const ChatMessage* system = nullptr;
  if (!m.empty() && m.front().role == "system") {
    system = &m.front();
    first = 1;
  }
  for (size_t i = first; i < m.size(); ++i) {
    const ChatMessage& msg = m[i];
    auto content = [&] {
      const size_t mark = b.mark();
      if (i == first && system != nullptr) {
        b.Markup("<<SYS>>\n");
        b.Content(system->content);
        b.Markup("\n<</SYS>>\n\n");
      }
      b.Content(msg.content);
      b.Strip(mark);
    };
    if (msg.role == "user") {
      b.Markup(std::string(c.bos) + "[INST] ");
      content();
      b.Markup(" [/INST]");
    } else if (msg.role == "assistant") {
      b.Markup(" ");
      content();
      b.Markup(" ");
      b.Markup(c.eos);
    }
  }
}

// Mistral's [INST] templates (v3): a system message opens the turn it precedes; answers are
// trimmed and end with EOS.
void RenderMistral(const Messages& m, const RenderOptions& /*o*/, const RenderContext& c,
                   PromptBuilder& b) {
  b.Markup(c.bos);
  bool inside_turn = false;
  for (const ChatMessage& msg : m) {
    if (!inside_turn) {
      b.Markup("[INST] ");
      inside_turn = true;
    }
    if (msg.role == "system") {
      b.Content(msg.content);
      b.Markup("\n\n");
    } else if (msg.role == "assistant") {
      b.Markup(" ");
      b.Content(PyStrip(msg.content));
      b.Markup(c.eos);
      inside_turn = false;
    } else {
      b.Content(msg.content);
      b.Markup("[/INST]");
    }
  }
}

// Gemma: no system role; a system message is put before the first user turn's content.
void RenderGemma(const Messages& m, const RenderOptions& o, const RenderContext& c,
                 PromptBuilder& b) {
  b.Markup(c.bos);
  std::string_view system;
  bool system_pending = false;
  for (const ChatMessage& msg : m) {
    if (msg.role == "system") {
      system = msg.content;
      system_pending = true;
      continue;
    }
    b.Markup("<start_of_turn>" + std::string(msg.role == "assistant" ? "model" : msg.role) + "\n");
    if (system_pending) {
      b.Content(system);
      b.Markup("\n\n");
      system_pending = false;
    }
    b.Content(PyStrip(msg.content));
    b.Markup("<end_of_turn>\n");
  }
  if (o.add_generation_prompt) b.Markup("<start_of_turn>model\n");
}

// Phi-3: <|ROLE|>\nCONTENT<|end|>\n.
void RenderPhi3(const Messages& m, const RenderOptions& o, const RenderContext& /*c*/,
                PromptBuilder& b) {
  for (const ChatMessage& msg : m) {
    b.Markup("<|" + msg.role + "|>\n");
    b.Content(msg.content);
    b.Markup("<|end|>\n");
  }
  if (o.add_generation_prompt) b.Markup("<|assistant|>\n");
}

// Zephyr: <|ROLE|>\nCONTENT EOS\n.
void RenderZephyr(const Messages& m, const RenderOptions& o, const RenderContext& c,
                  PromptBuilder& b) {
  for (const ChatMessage& msg : m) {
    b.Markup("<|" + msg.role + "|>\n");
    b.Content(msg.content);
    b.Markup(std::string(c.eos) + "\n");
  }
  if (o.add_generation_prompt) b.Markup("<|assistant|>\n");
}

// DeepSeek Coder: a system message as is, "### Instruction:" and "### Response:" blocks.
void RenderDeepSeek(const Messages& m, const RenderOptions& o, const RenderContext& /*c*/,
                    PromptBuilder& b) {
  for (const ChatMessage& msg : m) {
    if (msg.role == "system") {
      b.Content(msg.content);
    } else if (msg.role == "assistant") {
      b.Markup("### Response:\n");
      b.Content(msg.content);
      b.Markup("\n<|EOT|>\n");
    } else {
      b.Markup("### Instruction:\n");
      b.Content(msg.content);
      b.Markup("\n");
    }
  }
  if (o.add_generation_prompt) b.Markup("### Response:\n");
}

// DeepSeek V3 / R1: <｜User｜> and <｜Assistant｜> turns, answers end with EOS.
void RenderDeepSeek3(const Messages& m, const RenderOptions& o, const RenderContext& c,
                     PromptBuilder& b) {
  constexpr std::string_view kUser = "<\xEF\xBD\x9CUser\xEF\xBD\x9C>";
  constexpr std::string_view kAssistant =
      "<\xEF\xBD\x9C"
      "Assistant\xEF\xBD\x9C>";
  b.Markup(c.bos);
  for (const ChatMessage& msg : m) {
    if (msg.role == "system") {
      b.Content(msg.content);
    } else if (msg.role == "assistant") {
      b.Markup(kAssistant);
      b.Content(msg.content);
      b.Markup(c.eos);
    } else {
      b.Markup(kUser);
      b.Content(msg.content);
    }
  }
  if (o.add_generation_prompt) b.Markup(kAssistant);
}

}  // namespace cellhouse::engine::chat
