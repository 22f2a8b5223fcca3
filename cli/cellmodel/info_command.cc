// `cellmodel info`: a checkpoint's configuration, parameter count, size and chunk count.
#include <cstdio>
#include <string>
#include <vector>

#include "base/print.h"
#include "base/strings.h"
#include "cli/cellmodel/cli_util.h"
#include "cli/cellmodel/commands.h"
#include "engine/formats/checkpoint.h"
#include "engine/model.h"
#include "engine/run_state.h"

namespace cellhouse::cellmodel {

namespace {

// What the file's format says about it, and how it compares with the fp32 file of its shape.
struct FormatFacts {
  std::string name;         // "f32" or "q8"
  std::string description;  // for the text output
  uint64_t fp32_bytes = 0;  // the llama2.c file of the same shape
  int64_t bytes_saved = 0;  // negative for toy shapes, where tile padding outweighs the saving
};

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
  Printf(
      stdout,
      "{\"path\": %s, \"format\": %s, \"group_size\": %d, \"dim\": %d, \"hidden_dim\": %d, "
      "\"n_layers\": %d, \"n_heads\": %d, \"n_kv_heads\": %d, \"vocab_size\": %d, "
      "\"seq_len\": %d, \"shared_classifier\": %s, \"parameters\": %llu, \"bytes\": %zu, "
      "\"fp32_bytes\": %llu, \"bytes_saved\": %lld, \"chunk_bytes\": %zu, \"chunks\": %zu, "
      "\"kv_bytes_per_token\": %llu, \"state_fixed_bytes\": %llu}\n",
      JsonQuote(model.path()).c_str(), JsonQuote(f.name).c_str(), model.group_size(), c.dim,
      c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads, c.vocab_size, c.seq_len,
      c.shared_classifier ? "true" : "false", static_cast<unsigned long long>(c.ParameterCount()),
      model.bytes().size(), static_cast<unsigned long long>(f.fp32_bytes),
      static_cast<unsigned long long>(f.bytes_saved), engine::kModelChunkBytes, model.ChunkCount(),
      static_cast<unsigned long long>(engine::KvCacheBytesPerToken(c, model.kv_precision())),
      static_cast<unsigned long long>(engine::StateFixedBytes(c)));
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
  // What a session costs besides the shared weights, as celld's admission counts it.
  Printf(stdout, "session:    %s per token of context (%s KV cache) + %s of state\n",
         FormatBytes(engine::KvCacheBytesPerToken(c, model.kv_precision())).c_str(),
         std::string(engine::KvPrecisionName(model.kv_precision())).c_str(),
         FormatBytes(engine::StateFixedBytes(c)).c_str());
}

}  // namespace

int InfoCommand(const std::vector<std::string>& args) {
  bool json = false;
  FlagSet flags("cellmodel info FILE [--json]",
                "Shows a checkpoint's format (f32 or q8, and the group size), configuration, "
                "parameter count, size in bytes (and for q8 the bytes saved against fp32), "
                "number of 16 MiB chunks, and what a session costs besides the shared weights "
                "(KV cache per token, fixed state): `cellctl policy check --model` reads those.");
  flags.Bool("json", &json, "print one JSON object");
  Parsed parsed = ParseFlags(flags, args);
  if (parsed.exit_code) {
    return *parsed.exit_code;
  }
  if (parsed.positional.size() != 1) {
    return Fail("info", Error("expected exactly one FILE; see --help"), kExitUsage);
  }
  Result<engine::Model> model = engine::Model::Open(parsed.positional[0]);
  if (!model) {
    return Fail("info", model.error(), kExitRuntimeError);
  }
  if (json) {
    PrintJson(*model);
  } else {
    PrintText(*model);
  }
  return kExitOk;
}

}  // namespace cellhouse::cellmodel
