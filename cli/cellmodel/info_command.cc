// `cellmodel info`: a model's format, configuration, parameter count, size and chunk count; for a
// GGUF file also its architecture, tensor types, vocabulary, context and chat template.
#include <climits>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/print.h"
#include "base/strings.h"
#include "cli/cellmodel/cli_util.h"
#include "cli/cellmodel/commands.h"
#include "engine/executor_compute.h"
#include "engine/formats/checkpoint.h"
#include "engine/formats/gguf.h"
#include "engine/formats/gguf_model.h"
#include "engine/model.h"
#include "engine/run_state.h"
#include "engine/tokenizer/gguf_vocabulary.h"

namespace cellhouse::cellmodel {

namespace {

// What the file's format says about it, and how it compares with the fp32 file of its shape.
struct FormatFacts {
  std::string name;         // "f32" or "q8"
  std::string description;  // for the text output
  uint64_t fp32_bytes = 0;  // the llama2.c file of the same shape
  int64_t bytes_saved = 0;  // negative for toy shapes, where tile padding outweighs the saving
};

// Tensors of each type in a GGUF file: how many, and their bytes.
struct TypeCount {
  int count = 0;
  uint64_t bytes = 0;
};
std::map<std::string, TypeCount> TypeHistogram(const engine::GgufFile& gguf) {
  std::map<std::string, TypeCount> types;
  for (const engine::GgufTensor& t : gguf.tensors()) {
    TypeCount& c = types[std::string(engine::GetTypeInfo(t.type).name)];
    ++c.count;
    c.bytes += t.bytes;
  }
  return types;
}

const engine::GgufWeights& Gguf(const engine::Model& model) {
  return std::get<engine::GgufWeights>(model.weights());
}

using Json = nlohmann::ordered_json;

void PrintJsonLine(const Json& j) {
  Printf(stdout, "%s\n", j.dump(-1, ' ', false, Json::error_handler_t::replace).c_str());
}

// What a session costs besides the shared weights, as celld's admission counts it.
void PrintSessionCost(const engine::Model& model, const char* label) {
  const engine::ModelConfig& c = model.config();
  Printf(stdout, "%s%s per token of context (%s KV cache) + %s of state\n", label,
         FormatBytes(engine::KvCacheBytesPerToken(c, model.kv_precision())).c_str(),
         std::string(engine::KvPrecisionName(model.kv_precision())).c_str(),
         FormatBytes(engine::StateFixedBytes(c)).c_str());
}

void PrintGgufJson(const engine::Model& model) {
  const engine::ModelConfig& c = model.config();
  const engine::GgufFile& g = *model.gguf();
  const engine::GgufVocabularyInfo vocab = engine::DescribeGgufVocabulary(g);
  Json types = Json::object();
  for (const auto& [name, t] : TypeHistogram(g)) {
    types[name] = Json{{"tensors", t.count}, {"bytes", t.bytes}};
  }
  Json j = {{"path", model.path()},
            {"format", "gguf"},
            {"gguf_version", g.version()},
            {"architecture", std::string(engine::GgufArchitectureName(Gguf(model).architecture))},
            {"dim", c.dim},
            {"hidden_dim", c.hidden_dim},
            {"n_layers", c.n_layers},
            {"n_heads", c.n_heads},
            {"n_kv_heads", c.n_kv_heads},
            {"head_size", c.head_size()},
            {"vocab_size", c.vocab_size},
            {"context_length", Gguf(model).file_context_length},
            // What celld's admission counts, under the names cellctl policy check reads (the
            // same for every format): seq_len is the context a session may use.
            {"seq_len", c.seq_len},
            {"kv_bytes_per_token", engine::KvCacheBytesPerToken(c, model.kv_precision())},
            {"state_fixed_bytes", engine::StateFixedBytes(c)},
            // What a session of a policy that shares celld's executor adds (its slot).
            {"executor_slot_bytes", engine::GgufExecutorSlotBytes(c)},
            {"rope_base", static_cast<double>(c.rope_base)},
            {"rms_eps", static_cast<double>(c.rms_eps)},
            {"shared_classifier", c.shared_classifier},
            {"parameters", model.ParameterCount()},
            {"bytes", model.bytes().size()},
            {"tensor_types", types},
            {"vocabulary", vocab.model},
            {"vocabulary_size", vocab.size},
            {"chat_template", vocab.chat_template},
            {"chunk_bytes", engine::kModelChunkBytes},
            {"chunks", model.ChunkCount()}};
  PrintJsonLine(j);
}

void PrintGgufText(const engine::Model& model) {
  const engine::ModelConfig& c = model.config();
  const engine::GgufFile& g = *model.gguf();
  const engine::GgufWeights& w = Gguf(model);
  const engine::GgufVocabularyInfo vocab = engine::DescribeGgufVocabulary(g);
  Printf(stdout, "model:         %s\n", model.path().c_str());
  Printf(stdout, "format:        GGUF version %u\n", g.version());
  Printf(stdout, "architecture:  %s\n",
         std::string(engine::GgufArchitectureName(w.architecture)).c_str());
  Printf(stdout, "config:        %s\n", c.Describe().c_str());
  Printf(stdout, "heads:         size %d (q dim %d, kv dim %d), RoPE %s over %d dims, base %g%s\n",
         c.head_size(), c.q_dim(), c.kv_dim(),
         c.rope_style == engine::RopeStyle::kNeox ? "NEOX" : "NORM", c.rotated_dims(),
         static_cast<double>(c.rope_base), w.rope_freqs.empty() ? "" : ", frequency factors");
  Printf(stdout, "rms epsilon:   %g\n", static_cast<double>(c.rms_eps));
  if (static_cast<uint32_t>(c.seq_len) != w.file_context_length) {
    Printf(stdout, "context:       %u tokens (the file's), capped to %d\n", w.file_context_length,
           c.seq_len);
  } else {
    Printf(stdout, "context:       %u tokens\n", w.file_context_length);
  }
  Printf(stdout, "parameters:    %llu (%.1f M)\n",
         static_cast<unsigned long long>(model.ParameterCount()),
         static_cast<double>(model.ParameterCount()) / 1e6);
  Printf(stdout, "bytes:         %zu (%s)\n", model.bytes().size(),
         FormatBytes(model.bytes().size()).c_str());
  Printf(stdout, "tensor types:\n");
  for (const auto& [name, t] : TypeHistogram(g)) {
    Printf(stdout, "  %-6s %4d tensors, %s\n", name.c_str(), t.count, FormatBytes(t.bytes).c_str());
  }
  Printf(stdout, "vocabulary:    %s\n", vocab.Describe().c_str());
  Printf(stdout, "chat template: %s\n", vocab.chat_template ? "present" : "none");
  Printf(stdout, "chunks:        %zu of %s\n", model.ChunkCount(),
         FormatBytes(engine::kModelChunkBytes).c_str());
  PrintSessionCost(model, "session:       ");
  if (const uint64_t slot = engine::GgufExecutorSlotBytes(c); slot > 0) {
    Printf(stdout, "               + %s of shared-executor slot (policies that share it)\n",
           FormatBytes(slot).c_str());
  } else {
    Printf(stdout, "               (no shared-executor slot: its sessions compute alone)\n");
  }
}

FormatFacts Facts(const engine::Model& model) {
  FormatFacts f{.name = std::string(engine::WeightFormatName(model.format()))};
  Result<engine::CheckpointLayout> fp32 = engine::ComputeLayout(model.config());
  f.fp32_bytes = fp32 ? fp32->file_bytes : 0;
  const uint64_t size = model.bytes().size();
  f.bytes_saved = static_cast<int64_t>(f.fp32_bytes) - static_cast<int64_t>(size);
  if (model.format() == engine::WeightFormat::kQ8) {
    f.description = "q8: int8 groups of " + std::to_string(model.group_size()) +
                    " with fp32 scales, norms in fp32 (cellhouse format version " +
                    std::to_string(engine::kQuantizedVersion) + ")";
  } else {
    f.description = "f32: llama2.c checkpoint (legacy version 0)";
  }
  return f;
}

void PrintJson(const engine::Model& model) {
  const engine::ModelConfig& c = model.config();
  const FormatFacts f = Facts(model);
  Json j = {{"path", model.path()},
            {"format", f.name},
            {"group_size", model.group_size()},
            {"dim", c.dim},
            {"hidden_dim", c.hidden_dim},
            {"n_layers", c.n_layers},
            {"n_heads", c.n_heads},
            {"n_kv_heads", c.n_kv_heads},
            {"vocab_size", c.vocab_size},
            {"seq_len", c.seq_len},
            {"shared_classifier", c.shared_classifier},
            {"parameters", c.ParameterCount()},
            {"bytes", model.bytes().size()},
            {"fp32_bytes", f.fp32_bytes},
            {"bytes_saved", f.bytes_saved},
            {"chunk_bytes", engine::kModelChunkBytes},
            {"chunks", model.ChunkCount()},
            {"kv_bytes_per_token", engine::KvCacheBytesPerToken(c, model.kv_precision())},
            {"state_fixed_bytes", engine::StateFixedBytes(c)}};
  PrintJsonLine(j);
}

void PrintText(const engine::Model& model) {
  const engine::ModelConfig& c = model.config();
  const FormatFacts f = Facts(model);
  Printf(stdout, "model:      %s\n", model.path().c_str());
  Printf(stdout, "format:     %s\n", f.description.c_str());
  Printf(stdout, "config:     %s\n", c.Describe().c_str());
  Printf(stdout, "head size:  %d (kv dim %d)\n", c.head_size(), c.kv_dim());
  Printf(stdout, "parameters: %llu (%.1f M)\n", static_cast<unsigned long long>(c.ParameterCount()),
         static_cast<double>(c.ParameterCount()) / 1e6);
  Printf(stdout, "bytes:      %zu (%s)\n", model.bytes().size(),
         FormatBytes(model.bytes().size()).c_str());
  if (model.format() != engine::WeightFormat::kF32 && f.bytes_saved >= 0) {
    const auto saved = static_cast<uint64_t>(f.bytes_saved);
    Printf(stdout, "saved:      %llu bytes (%s, %.1f%%) against the fp32 file of %s\n",
           static_cast<unsigned long long>(saved), FormatBytes(saved).c_str(),
           100.0 * static_cast<double>(saved) / static_cast<double>(f.fp32_bytes),
           FormatBytes(f.fp32_bytes).c_str());
  } else if (model.format() != engine::WeightFormat::kF32) {
    Printf(stdout,
           "saved:      none: %lld bytes more than the fp32 file of %s (at this toy size, "
           "padding to 16-row tiles and whole groups outweighs the saving)\n",
           static_cast<long long>(-f.bytes_saved), FormatBytes(f.fp32_bytes).c_str());
  }
  Printf(stdout, "chunks:     %zu of %s\n", model.ChunkCount(),
         FormatBytes(engine::kModelChunkBytes).c_str());
  PrintSessionCost(model, "session:    ");
}

}  // namespace

int InfoCommand(const std::vector<std::string>& args) {
  bool json = false;
  int64_t ctx_size = 0;
  FlagSet flags("cellmodel info FILE [--json] [--ctx-size N]",
                "Shows a model's format (f32 or q8, and the group size, or GGUF), configuration, "
                "parameter count, size in bytes (and for q8 the bytes saved against fp32), "
                "number of 16 MiB chunks, and what a session costs besides the shared weights "
                "(KV cache per token, fixed state): `cellctl policy check --model` reads those; "
                "for GGUF also the architecture, the tensors of each type, the vocabulary, the "
                "context length and whether a chat template is present.");
  flags.Bool("json", &json, "print one JSON object");
  flags.Int("ctx-size", &ctx_size, "N",
            "cap the model's context as celld --ctx-size does (0: the model's own); the session "
            "costs follow it");
  Parsed parsed = ParseFlags(flags, args);
  if (parsed.exit_code) {
    return *parsed.exit_code;
  }
  if (parsed.positional.size() != 1) {
    return Fail("info", Error("expected exactly one FILE; see --help"), kExitUsage);
  }
  if (ctx_size < 0 || ctx_size > INT32_MAX) {
    return Fail("info", Error("--ctx-size must be 0 to " + std::to_string(INT32_MAX)), kExitUsage);
  }
  Result<engine::Model> model =
      engine::Model::Open(parsed.positional[0], {.max_context = static_cast<int32_t>(ctx_size)});
  if (!model) {
    return Fail("info", model.error(), kExitRuntimeError);
  }
  if (model->gguf() != nullptr) {
    json ? PrintGgufJson(*model) : PrintGgufText(*model);
  } else if (json) {
    PrintJson(*model);
  } else {
    PrintText(*model);
  }
  return kExitOk;
}

}  // namespace cellhouse::cellmodel
