// `cellmodel tokenize`, `render` and `chat`: a model's tokenizer and chat template checked
// without the daemon.
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/print.h"
#include "base/strings.h"
#include "base/text.h"
#include "cli/cellmodel/cli_util.h"
#include "cli/cellmodel/commands.h"
#include "cli/cellmodel/model_vocabulary.h"
#include "engine/chat/chat_session.h"
#include "engine/chat/chat_template.h"
#include "engine/conversation.h"
#include "engine/model.h"

namespace cellhouse::cellmodel {
namespace {

// An OpenAI-style array of messages ([{"role": ..., "content": ...}, ...]). nlohmann throws on
// malformed JSON; this is its one adapter, so nothing else here catches.
Result<std::vector<engine::chat::ChatMessage>> ParseMessages(const std::string& text) {
  const nlohmann::json doc = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return Error("the input is not valid JSON");
  if (!doc.is_array()) return Error("expected a JSON array of messages");
  std::vector<engine::chat::ChatMessage> messages;
  for (size_t i = 0; i < doc.size(); ++i) {
    const nlohmann::json& m = doc[i];
    const std::string where = "message " + std::to_string(i);
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string()) {
      return Error(where + " has no string \"role\"");
    }
    engine::chat::ChatMessage message{m["role"].get<std::string>(), "", {}};
    if (m.contains("content") && !m["content"].is_null()) {
      if (!m["content"].is_string()) return Error(where + ": \"content\" must be a string");
      message.content = m["content"].get<std::string>();
    }
    if (m.contains("reasoning_content") && m["reasoning_content"].is_string()) {
      message.reasoning_content = m["reasoning_content"].get<std::string>();
    }
    messages.push_back(std::move(message));
  }
  return messages;
}

std::string ReadStdin() {
  std::string text;
  char buf[64 * 1024];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), stdin)) > 0) text.append(buf, n);
  return text;
}

}  // namespace

int TokenizeCommand(const std::vector<std::string>& args) {
  std::string model, tokenizer;
  bool ids_only = false, no_bos = false;
  FlagSet flags("cellmodel tokenize --model FILE [--ids] TEXT",
                "Prints the tokens of TEXT in the model's vocabulary (a GGUF file's own, or a "
                "llama2.c tokenizer beside the checkpoint), with the BOS the vocabulary adds. "
                "Special-token parsing is off: \"<|im_end|>\" in TEXT is plain text.");
  flags.String("model", &model, "FILE", "GGUF file or llama2.c checkpoint (required)");
  flags.String("tokenizer", &tokenizer, "FILE", "llama2.c tokenizer (default: FILE.tokenizer)");
  flags.Bool("ids", &ids_only, "print only the ids, as a JSON array");
  flags.Bool("no-bos", &no_bos, "do not add the vocabulary's BOS");
  Parsed parsed = ParseFlags(flags, args);
  if (parsed.exit_code) return *parsed.exit_code;
  if (model.empty() || parsed.positional.size() != 1) {
    return Fail("tokenize", Error("expected --model FILE and one TEXT; see --help"), kExitUsage);
  }
  Result<engine::Tokenizer> tok = OpenModelTokenizer(model, tokenizer);
  if (!tok) return Fail("tokenize", tok.error(), kExitRuntimeError);
  Result<std::vector<int32_t>> ids =
      tok->Encode(parsed.positional[0], {.add_bos = tok->add_bos() && !no_bos});
  if (!ids) return Fail("tokenize", ids.error(), kExitRuntimeError);
  if (ids_only) {
    std::string out = "[";
    for (size_t i = 0; i < ids->size(); ++i) {
      out += (i == 0 ? "" : ", ") + std::to_string((*ids)[i]);
    }
    Printf(stdout, "%s]\n", out.c_str());
    return kExitOk;
  }
  for (int32_t id : *ids) {
    Printf(stdout, "%8d -> %s\n", id, JsonQuote(tok->DisplayPiece(id)).c_str());
  }
  return kExitOk;
}

int RenderCommand(const std::vector<std::string>& args) {
  std::string model, tokenizer, chat_template;
  bool no_generation_prompt = false, no_think = false, tokens = false;
  FlagSet flags("cellmodel render --model FILE [--no-generation-prompt] < messages.json",
                "Prints the prompt the model's chat template makes from an OpenAI-style JSON "
                "array of messages on standard input ([{\"role\": \"user\", \"content\": "
                "\"Hi\"}]).");
  flags.String("model", &model, "FILE", "GGUF file or llama2.c checkpoint (required)");
  flags.String("tokenizer", &tokenizer, "FILE", "llama2.c tokenizer (default: FILE.tokenizer)");
  flags.String("chat-template", &chat_template, "NAME",
               "template family instead of the model's: " + engine::chat::ChatFamilyList());
  flags.Bool("no-generation-prompt", &no_generation_prompt,
             "do not end with the assistant's header");
  flags.Bool("no-think", &no_think, "Qwen3: enable_thinking=false");
  flags.Bool("tokens", &tokens, "print the token ids (content never parsed for special tokens)");
  Parsed parsed = ParseFlags(flags, args);
  if (parsed.exit_code) return *parsed.exit_code;
  if (model.empty() || !parsed.positional.empty()) {
    return Fail("render", Error("expected --model FILE and messages on stdin; see --help"),
                kExitUsage);
  }
  Result<engine::Tokenizer> tok = OpenModelTokenizer(model, tokenizer);
  if (!tok) return Fail("render", tok.error(), kExitRuntimeError);
  Result<engine::chat::ChatTemplate> tmpl =
      engine::chat::ChatTemplate::ForModel(*tok, chat_template);
  if (!tmpl) return Fail("render", tmpl.error(), kExitRuntimeError);
  Result<std::vector<engine::chat::ChatMessage>> messages = ParseMessages(ReadStdin());
  if (!messages) return Fail("render", messages.error(), kExitUsage);
  engine::chat::RenderOptions options{.add_generation_prompt = !no_generation_prompt};
  if (no_think) options.enable_thinking = false;
  Result<engine::chat::Prompt> prompt = tmpl->Render(*messages, options);
  if (!prompt) return Fail("render", prompt.error(), kExitUsage);
  if (!tokens) {
    WriteAndFlush(stdout, prompt->Text());
    return kExitOk;
  }
  Result<std::vector<int32_t>> ids = prompt->Encode(*tok);
  if (!ids) return Fail("render", ids.error(), kExitRuntimeError);
  for (int32_t id : *ids) {
    Printf(stdout, "%8d -> %s\n", id, JsonQuote(tok->DisplayPiece(id)).c_str());
  }
  return kExitOk;
}

int ChatCommand(const std::vector<std::string>& args) {
  std::string model_path, tokenizer, chat_template, system;
  std::vector<std::string> stop;
  int64_t max_tokens = 256, seed = 0, context = 0, top_k = 0;
  double temperature = 0.0, top_p = 0.9, min_p = 0.0, repeat_penalty = 1.0;
  bool no_think = false, stats = false;
  FlagSet flags("cellmodel chat --model FILE [options] < lines",
                "A conversation with the engine alone, no sandbox: each line of standard input is "
                "a user message, rendered with the model's chat template; the reply ends at the "
                "model's end of turn (reasoning goes to stderr).");
  flags.String("model", &model_path, "FILE", "GGUF file or llama2.c checkpoint (required)");
  flags.String("tokenizer", &tokenizer, "FILE", "llama2.c tokenizer (default: FILE.tokenizer)");
  flags.String("chat-template", &chat_template, "NAME",
               "template family instead of the model's: " + engine::chat::ChatFamilyList());
  flags.String("system", &system, "TEXT", "a system message first");
  flags.Int("max-tokens", &max_tokens, "N", "new tokens per reply");
  flags.Int("context", &context, "N", "context length (0: the model's)");
  flags.Double("temperature", &temperature, "T", "0 is greedy decoding");
  flags.Double("top-p", &top_p, "P", "nucleus sampling mass in (0, 1]");
  flags.Int("top-k", &top_k, "K", "keep the K most likely tokens (0: off)");
  flags.Double("min-p", &min_p, "P", "drop tokens below P times the most likely (0: off)");
  flags.Double("repeat-penalty", &repeat_penalty, "R", "penalty on recent tokens (1: off)");
  flags.Int("seed", &seed, "S", "random seed");
  flags.StringList("stop", &stop, "TEXT", "end a reply where TEXT appears (repeatable)");
  flags.Bool("no-think", &no_think, "Qwen3: answer without reasoning");
  flags.Bool("stats", &stats, "token counts and speeds to stderr after each reply");
  Parsed parsed = ParseFlags(flags, args);
  if (parsed.exit_code) return *parsed.exit_code;
  if (model_path.empty() || !parsed.positional.empty()) {
    return Fail("chat", Error("expected --model FILE; see --help"), kExitUsage);
  }
  if (max_tokens < 0 || max_tokens > INT32_MAX || context < 0 || context > INT32_MAX || top_k < 0 ||
      top_k > INT32_MAX) {
    return Fail("chat", Error("--max-tokens, --context and --top-k must be in 0..2^31-1"),
                kExitUsage);
  }
  Result<engine::Model> model = engine::Model::Open(model_path);
  if (!model) return Fail("chat", model.error(), kExitRuntimeError);
  Result<engine::Tokenizer> tok = OpenModelTokenizer(model_path, tokenizer);
  if (!tok) return Fail("chat", tok.error(), kExitRuntimeError);
  Result<engine::chat::ChatTemplate> tmpl =
      engine::chat::ChatTemplate::ForModel(*tok, chat_template);
  if (!tmpl) return Fail("chat", tmpl.error(), kExitRuntimeError);
  const int32_t length = context == 0 ? model->config().seq_len : static_cast<int32_t>(context);
  Result<engine::Conversation> conversation = engine::Conversation::Create(*model, *tok, length);
  if (!conversation) return Fail("chat", conversation.error(), kExitRuntimeError);
  engine::chat::ChatSession chat(*conversation, *tok, std::move(*tmpl),
                                 engine::chat::ContextPolicy::kError);
  engine::chat::ChatRequest request;
  request.append = true;
  request.stop = stop;
  if (no_think) request.enable_thinking = false;
  request.sampling = {.max_new_tokens = static_cast<int32_t>(max_tokens),
                      .temperature = static_cast<float>(temperature),
                      .top_p = static_cast<float>(top_p),
                      .seed = static_cast<uint64_t>(seed),
                      .top_k = static_cast<int32_t>(top_k),
                      .min_p = static_cast<float>(min_p),
                      .repetition_penalty = static_cast<float>(repeat_penalty)};
  if (!system.empty()) request.messages.push_back({"system", system, {}});
  std::string line;
  while (std::getline(std::cin, line)) {
    if (Trim(line).empty()) continue;
    request.messages.push_back({"user", line, {}});
    Result<engine::chat::ChatTurnResult> turn =
        chat.Turn(request, [](const engine::chat::ReplyPiece& p) {
          if (!p.reasoning.empty()) WriteAndFlush(stderr, p.reasoning);
          WriteAndFlush(stdout, p.content);
          return true;
        });
    if (!turn) return Fail("chat", turn.error(), kExitRuntimeError);
    WriteAndFlush(stdout, "\n");
    if (stats) {
      Printf(stderr, "[%d prompt tokens, %d cached, %d evaluated, %d generated, stop: %s%s]\n",
             turn->stats.prompt_tokens, turn->stats.reused_tokens, turn->stats.evaluated_tokens,
             turn->stats.generated_tokens,
             std::string(engine::StopReasonName(turn->stats.stop)).c_str(),
             turn->stop_string ? " (stop string)" : "");
    }
    request.messages.clear();
  }
  return kExitOk;
}

}  // namespace cellhouse::cellmodel
